//! A tiny app to put behind the sidecar in the quickstart: answers every request with JSON
//! describing what it received (method, path, headers), so you can see which identity headers
//! the sidecar added and which client headers it removed.
//!
//! `cargo run --example echo -- 127.0.0.1:3000`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("echo app listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let headers: serde_json::Map<String, serde_json::Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into()))
                    .collect();
                let body = serde_json::json!({
                    "app": "echo",
                    "method": req.method().as_str(),
                    "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                    "headers": headers,
                });
                let mut resp = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
                resp.headers_mut().insert("content-type", "application/json".parse().expect("static header value"));
                Ok::<_, Infallible>(resp)
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

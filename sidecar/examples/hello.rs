//! The lightest possible app (a fixed 2-byte answer), for benchmarks where the upstream's own
//! cost should not matter. It answers the `Cf-Access-Authenticated-User-Email` it received
//! instead, when there is one, so that the bench can check which identity reached the app.
//! `cargo run --release --example hello -- 127.0.0.1:3001`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3001".into());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req: Request<Incoming>| async move {
                let body = match req.headers().get("cf-access-authenticated-user-email") {
                    Some(email) => Bytes::copy_from_slice(email.as_bytes()),
                    None => Bytes::from_static(b"ok"),
                };
                Ok::<_, Infallible>(Response::new(Full::new(body)))
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

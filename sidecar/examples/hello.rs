//! The lightest possible app (a fixed 2-byte answer), for benchmarks where the upstream's own
//! cost should not matter. It answers the `Cf-Access-Authenticated-User-Email` it received
//! instead, when there is one, so that the bench can check which identity reached the app.
//! An optional second argument delays every answer by that many milliseconds (a slow app, for
//! bench/connections.sh). `cargo run --release --example hello -- 127.0.0.1:3001 [DELAY_MS]`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3001".into());
    let delay = std::time::Duration::from_millis(std::env::args().nth(2).and_then(|d| d.parse().ok()).unwrap_or(0));
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
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

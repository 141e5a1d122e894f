//! A client connection's hyper service: the request handler's answer, never an error.
//!
//! Owns [`Handled`] and its future. Hand-written rather than `service_fn` around an `async`
//! block: the block would hold the handler's future twice over (as its capture and as its
//! awaitee), and hyper keeps one such future per connection and moves it on every request
//! (measured: 9.7 KiB instead of the handler's 4.8 KiB). Must not look at the request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::outbound::OutBody;

/// The service of one connection from `peer`: each request goes to `handler`.
#[derive(Clone)]
pub struct Handled<H> {
    pub handler: H,
    pub peer: SocketAddr,
}

impl<H, Fut> hyper::service::Service<Request<Incoming>> for Handled<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut,
    Fut: Future<Output = Response<OutBody>>,
{
    type Response = Response<OutBody>;
    type Error = Infallible;
    type Future = Infallibly<Fut>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        Infallibly { answer: (self.handler)(req, self.peer) }
    }
}

pin_project_lite::pin_project! {
    /// The handler's future as the service's: its answer, as `Ok`.
    pub struct Infallibly<F> {
        #[pin]
        answer: F,
    }
}

impl<F: Future<Output = Response<OutBody>>> Future for Infallibly<F> {
    type Output = Result<Response<OutBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().answer.poll(cx).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// What the service's future adds to the handler's: nothing (an `async` block around it
    /// doubled it).
    #[test]
    fn the_service_future_is_the_handler_future() {
        fn future_of<A, B, R>(_: &impl Fn(A, B) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        fn service_future_of<S: hyper::service::Service<Request<Incoming>>>(_: &S) -> usize {
            std::mem::size_of::<S::Future>()
        }
        let handler = |req: Request<Incoming>, peer: SocketAddr| async move {
            let big = [0u8; 1024]; // held across an await, as the proxy's state is
            tokio::task::yield_now().await;
            let _ = (req, peer, big[peer.port() as usize % 1024]);
            Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed())
        };
        let handler_size = future_of(&handler);
        let service = Handled { handler, peer: "127.0.0.1:1".parse().unwrap() };
        assert_eq!(service_future_of(&service), handler_size);
    }
}

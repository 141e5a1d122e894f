//! A request body with a deadline (`--body-read-timeout`): a client that trickles its body in
//! cannot hold an upstream request open for ever (api.md: cut after the timeout, `408`).
//!
//! Owns only the deadline. The glue asks [`Expired::get`] after a failed upstream call to tell
//! this cause from an upstream failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::outbound::BoxError;

/// Set once the body's deadline passed before its end.
#[derive(Clone, Debug, Default)]
pub struct Expired(Arc<AtomicBool>);

impl Expired {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The error a body past its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within --body-read-timeout")]
pub struct BodyTimeout;

/// `inner`, failing with [`BodyTimeout`] if it has not ended `timeout` after it was made.
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
    expired: Expired,
}

impl<B> Deadline<B> {
    pub fn new(inner: B, timeout: Duration) -> (Self, Expired) {
        let expired = Expired::default();
        (Self { inner, sleep: Box::pin(tokio::time::sleep(timeout)), expired: expired.clone() }, expired)
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired.0.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// One data frame, then nothing ever again: a client that stopped sending.
    struct Stalling(bool);

    impl Body for Stalling {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"a")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_the_deadline() {
        let (mut body, expired) = Deadline::new(Stalling(false), Duration::from_secs(30));
        assert!(body.frame().await.unwrap().is_ok());
        assert!(!expired.get());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyTimeout>());
        assert!(expired.get());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_in_time_is_untouched() {
        let full = http_body_util::Full::new(Bytes::from_static(b"abc"));
        let (mut body, expired) = Deadline::new(full, Duration::from_secs(1));
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "abc");
        assert!(body.frame().await.is_none());
        assert!(!expired.get());
    }
}

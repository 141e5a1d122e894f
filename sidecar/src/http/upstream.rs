//! The kept-alive HTTP/1.1 connections to the one app beside us (`--upstream`, plain `http`):
//! a stack of idle connections, most recently used first. A sidecar has exactly one such
//! upstream, so this needs none of a general client's machinery (pool keys hashed per request,
//! absolute URIs rebuilt and parsed back, a checkout race per request); HTTPS upstreams and
//! forward routes keep the general client (`outbound`).
//!
//! Owns connecting (bounded by `--connect-timeout`), reuse and retry of a request a closed idle
//! connection never sent, and the deadline on the app's answer (`--upstream-timeout`): each
//! connection keeps one timer, re-armed per request. Must not edit requests or answers:
//! `forward` decides what is sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::outbound::OutBody;

/// Idle connections kept beyond this many are closed (as hyper-util's pool, per host).
const MAX_IDLE: usize = 256;

/// A connection idle longer than this is closed rather than reused (hyper-util's pool default):
/// after a burst, an app that never closes idle connections itself would otherwise hold up to
/// `MAX_IDLE` of them, and their buffers here, for the sidecar's life.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The idle connections, most recently used last.
type Idle = Arc<Mutex<Vec<AppConnection>>>;

/// One connection to the app and the timer that bounds the exchange on it. The timer is armed
/// once and re-armed for each request: moving a registered deadline later only stores a number,
/// where a new timer per request would enter and leave the runtime's timer wheel (a lock each
/// way). While the connection idles its timer may fire: that wakes the last request's task once
/// (a spurious poll), and until then the timer's waker keeps that task's allocation even if its
/// client connection has closed (at most `MAX_IDLE` tasks, for at most `--upstream-timeout`).
struct AppConnection {
    sender: SendRequest<OutBody>,
    timer: Pin<Box<Sleep>>,
}

/// What became of a request offered to an idle connection.
enum Offered {
    Answered(Response<Incoming>),
    /// The connection had closed before sending it: the request, to try on another.
    Closed(Request<OutBody>),
    Failed(hyper::Error),
}

/// Why a request did not get an answer from the app.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to the app failed: {0}")]
    Connect(std::io::Error),
    #[error("connecting to the app timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("HTTP/1.1 handshake with the app failed: {0}")]
    Handshake(hyper::Error),
    #[error("the exchange with the app failed: {0}")]
    Exchange(hyper::Error),
    #[error("the app sent no answer before the deadline")]
    Timeout,
}

impl UpstreamError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Handshake(_) => "connect",
            Self::Exchange(_) => "io",
            Self::Timeout => "timeout",
        }
    }
}

/// Connections to the app: `host:port` and the idle ones.
pub struct AppConnections {
    address: String,
    connect_timeout: Duration,
    idle: Idle,
}

impl AppConnections {
    /// For an `http` upstream `authority` (`host[:port]`, port 80 when absent).
    pub fn new(authority: &str, connect_timeout: Duration) -> Self {
        let has_port = authority.rsplit_once(':').is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            && !authority.ends_with(']');
        let address = if has_port { authority.to_owned() } else { format!("{authority}:80") };
        Self { address, connect_timeout, idle: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Sends `req` (origin-form target, `Host` set by the caller) on an idle connection, or a
    /// new one, and waits for the answer's head until `deadline` ([`UpstreamError::Timeout`]).
    /// A request an idle connection closed before sending is sent once more on a new
    /// connection; one that was sent is never repeated.
    pub async fn request(
        &self,
        mut req: Request<OutBody>,
        deadline: Instant,
    ) -> Result<Response<ToPool>, UpstreamError> {
        while let Some(mut conn) = self.pop_idle(deadline) {
            conn.timer.as_mut().reset(deadline);
            match until(conn.timer.as_mut(), offer(&mut conn.sender, req)).await? {
                Offered::Answered(resp) => return Ok(self.returning(resp, conn)),
                Offered::Closed(unsent) => req = unsent, // try another
                Offered::Failed(e) => return Err(UpstreamError::Exchange(e)),
            }
        }
        let mut timer = Box::pin(tokio::time::sleep_until(deadline));
        // Boxed: connecting is rare once connections are kept, and its future (the handshake
        // holds a whole client connection) would otherwise size every request's.
        let sender = until(timer.as_mut(), Box::pin(self.connect())).await??;
        let mut conn = AppConnection { sender, timer };
        let resp = until(conn.timer.as_mut(), conn.sender.send_request(req)).await?.map_err(UpstreamError::Exchange)?;
        Ok(self.returning(resp, conn))
    }

    /// The most recently used idle connection, after closing those idle past [`IDLE_TIMEOUT`]
    /// (the bottom of the stack idled longest). A connection's timer still holds its last
    /// request's deadline, and every deadline is that request's start plus the same
    /// `--upstream-timeout`: the two deadlines are as far apart as the two requests' starts, so
    /// no clock is read for this.
    fn pop_idle(&self, deadline: Instant) -> Option<AppConnection> {
        let mut idle = self.idle.lock().ok()?;
        let stale =
            idle.iter().take_while(|c| deadline.saturating_duration_since(c.timer.deadline()) > IDLE_TIMEOUT).count();
        if stale > 0 {
            idle.drain(..stale);
        }
        idle.pop()
    }

    async fn connect(&self) -> Result<SendRequest<OutBody>, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "app connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The answer, its body handing the connection back once read to the end.
    fn returning(&self, resp: Response<Incoming>, conn: AppConnection) -> Response<ToPool> {
        let idle = self.idle.clone();
        resp.map(|inner| {
            let mut body = ToPool { inner, home: Some((conn, idle)) };
            body.hand_back_if_done();
            body
        })
    }
}

/// Offers `req` to an idle connection: sent, or handed back when the connection closed first.
async fn offer(sender: &mut SendRequest<OutBody>, req: Request<OutBody>) -> Offered {
    if sender.ready().await.is_err() {
        return Offered::Closed(req); // closed while idle
    }
    match sender.try_send_request(req).await {
        Ok(resp) => Offered::Answered(resp),
        Err(mut e) => match e.take_message() {
            Some(unsent) => Offered::Closed(unsent),
            None => Offered::Failed(e.into_error()),
        },
    }
}

/// `work`'s output, or [`UpstreamError::Timeout`] once `timer` fires; `work` is polled first
/// (as `tokio::time::timeout` does), so an answer that is ready is never lost to the deadline.
fn until<F: Future>(timer: Pin<&mut Sleep>, work: F) -> Until<'_, F> {
    Until { timer, work }
}

pin_project_lite::pin_project! {
    /// [`until`]'s future: a struct rather than an `async fn`, which would hold `work` twice
    /// (its argument and the pinned copy it polls) in every request's future.
    struct Until<'t, F> {
        timer: Pin<&'t mut Sleep>,
        #[pin]
        work: F,
    }
}

impl<F: Future> Future for Until<'_, F> {
    type Output = Result<F::Output, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.work.poll(cx) {
            Poll::Ready(out) => Poll::Ready(Ok(out)),
            Poll::Pending => this.timer.as_mut().poll(cx).map(|()| Err(UpstreamError::Timeout)),
        }
    }
}

/// An answer's body from the app. When it has been read to the end, its connection is idle
/// again and goes back on the stack; dropped before that, the connection closes with it.
pub struct ToPool {
    inner: Incoming,
    home: Option<(AppConnection, Idle)>,
}

impl ToPool {
    fn hand_back_if_done(&mut self) {
        if !self.inner.is_end_stream() {
            return;
        }
        if let Some((conn, idle)) = self.home.take() {
            if let Ok(mut idle) = idle.lock() {
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
            }
        }
    }
}

impl Body for ToPool {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Ok(_))) => self.hand_back_if_done(),
            // An error ends the exchange; the connection is not reused.
            Poll::Ready(Some(Err(_))) => self.home = None,
            Poll::Pending => {}
        }
        polled
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An app on loopback answering `ok` to every request of every connection, counting the
    /// connections it accepted.
    async fn app() -> (String, Arc<AtomicUsize>) {
        app_answering(usize::MAX).await
    }

    /// [`app`] answering only the first `answers` requests of a connection (the rest: never).
    async fn app_answering(answers: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut left = answers;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if left == 0 {
                                continue;
                            }
                            left -= 1;
                            if socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// A deadline `ms` milliseconds from now.
    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    fn get() -> Request<OutBody> {
        let body = Empty::<Bytes>::new().map_err(|never| match never {}).boxed();
        Request::get("/").header("host", "app").body(body).unwrap()
    }

    #[tokio::test]
    async fn answers_read_to_the_end_hand_their_connection_back() {
        let (addr, accepted) = app().await;
        let connections = AppConnections::new(&addr, Duration::from_secs(5));
        for _ in 0..3 {
            let resp = connections.request(get(), soon(5_000)).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection served all three");
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_takes_its_connection_with_it() {
        let (addr, accepted) = app().await;
        let connections = AppConnections::new(&addr, Duration::from_secs(5));
        let first = connections.request(get(), soon(5_000)).await.unwrap();
        // Still borrowed by the first exchange: the second needs a connection of its own.
        let second = connections.request(get(), soon(5_000)).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop((first, second));
        assert!(connections.idle.lock().unwrap().is_empty(), "neither was read to the end: neither is reused");
    }

    #[tokio::test]
    async fn connections_idle_past_the_idle_timeout_are_closed_not_reused() {
        let (addr, accepted) = app().await;
        let connections = AppConnections::new(&addr, Duration::from_secs(5));
        let start = soon(5_000);
        // Two at once: two connections, both idle afterwards.
        let (a, b) =
            (connections.request(get(), start).await.unwrap(), connections.request(get(), start).await.unwrap());
        for resp in [a, b] {
            resp.into_body().collect().await.unwrap();
        }
        assert_eq!(connections.idle.lock().unwrap().len(), 2);
        // A request within the idle timeout reuses one.
        let within = start + IDLE_TIMEOUT - Duration::from_secs(1);
        connections.request(get(), within).await.unwrap().into_body().collect().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "reused");
        // Past it (from the reused one's last use too): both are closed, a new one serves.
        let past = within + IDLE_TIMEOUT + Duration::from_secs(1);
        connections.request(get(), past).await.unwrap().into_body().collect().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "a new connection");
        assert_eq!(connections.idle.lock().unwrap().len(), 1, "only the new one is kept");
    }

    #[tokio::test]
    async fn no_answer_before_the_deadline_is_a_timeout() {
        let (addr, _) = app_answering(0).await; // reads requests, never answers
        let connections = AppConnections::new(&addr, Duration::from_secs(5));
        let failed = connections.request(get(), soon(100)).await;
        assert!(matches!(failed, Err(UpstreamError::Timeout)), "{:?}", failed.map(|r| r.status()));
        assert!(connections.idle.lock().unwrap().is_empty(), "a timed-out connection is not reused");
    }

    #[tokio::test]
    async fn a_kept_connection_rearms_its_timer_for_each_request() {
        let (addr, accepted) = app().await;
        let connections = AppConnections::new(&addr, Duration::from_secs(5));
        let read = |resp: Response<ToPool>| async { resp.into_body().collect().await.unwrap().to_bytes() };
        // A short deadline, then idle until it has passed: the kept timer fires while idle.
        assert_eq!(read(connections.request(get(), soon(50)).await.unwrap()).await, "ok");
        let fired = |c: &AppConnections| c.idle.lock().unwrap().iter().all(|conn| conn.timer.is_elapsed());
        for _ in 0..500 {
            if fired(&connections) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(fired(&connections), "the first deadline passed while the connection idled");
        // The same connection, re-armed with a later deadline: answered, not timed out.
        assert_eq!(read(connections.request(get(), soon(5_000)).await.unwrap()).await, "ok");
        // And with an earlier one than it holds now: still answered in time.
        assert_eq!(read(connections.request(get(), soon(2_000)).await.unwrap()).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection served all three");
    }

    #[tokio::test]
    async fn a_kept_connection_times_out_on_its_rearmed_timer() {
        let (addr, accepted) = app_answering(1).await;
        let connections = AppConnections::new(&addr, Duration::from_secs(5));
        let first = connections.request(get(), soon(5_000)).await.unwrap();
        first.into_body().collect().await.unwrap();
        let failed = connections.request(get(), soon(100)).await;
        assert!(matches!(failed, Err(UpstreamError::Timeout)), "{:?}", failed.map(|r| r.status()));
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "the second request went on the kept connection");
    }

    #[test]
    fn the_address_gets_port_80_when_the_authority_has_none() {
        let d = Duration::from_secs(1);
        assert_eq!(AppConnections::new("127.0.0.1:3000", d).address, "127.0.0.1:3000");
        assert_eq!(AppConnections::new("app.local", d).address, "app.local:80");
        assert_eq!(AppConnections::new("[::1]:8080", d).address, "[::1]:8080");
        assert_eq!(AppConnections::new("[::1]", d).address, "[::1]:80");
    }
}

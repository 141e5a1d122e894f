//! Parking idle HTTP/1.1 keep-alive connections: between two requests the socket is taken back
//! from hyper, which frees its per-connection state (an 8 KiB read and an 8 KiB write buffer, the
//! boxed slot for the service's future), and the connection waits for its next request holding
//! only the socket; a fresh hyper connection serves that request. Only plain-TCP HTTP/1.1
//! connections park (not h2c, not TLS, never an upgraded connection), and only when more than
//! `--park-connections-above` connections are open (see [`Parking`]); below it connections are
//! served as before and pay nothing. This module must not decide anything about requests.
//!
//! # How a connection is parked, and why it is safe
//!
//! hyper (1.x, `proto/h1`) ends an HTTP/1 connection cleanly when the transport reports EOF
//! while it waits for a request head and holds no partial head: `Conn::on_read_head_error`
//! answers 400 only when `was_mid_parse` (a parse error, or bytes left in its read buffer after
//! `consume_leading_lines` skipped empty lines) or `must_error` (never for a server), else it
//! closes both halves and `Dispatcher::poll_read_head` returns with the dispatcher done.
//! `Dispatcher::poll_inner` then runs `Conn::poll_shutdown`, which is `Buffered::poll_shutdown`:
//! it flushes every byte hyper still buffers *before* calling the transport's `poll_shutdown`.
//! [`ParkIo`] reports that EOF (a `poll_read` of 0 bytes instead of `Pending`), and its
//! `poll_shutdown` then does not shut the socket down, so the round ends with every response
//! written and the socket open; `http1::UpgradeableConnection::into_parts` gives the socket back
//! (with hyper's unconsumed read bytes, which are replayed first in the next round).
//!
//! The invariant: [`ParkIo`] reports EOF only when all of these hold at that `poll_read`:
//! 1. hyper is reading a request head: our [`Timer`] was asked for the header-read timer (hyper
//!    arms it in `Conn::poll_read_head`, which requires `Reading::Init`) and hyper has not yet
//!    handed a parsed head to the service ([`Watched`] clears the mark). `Reading::Init` is only
//!    reached through `State::idle`, i.e. after the previous request's body was read to its end
//!    and its response was encoded in full (`Writing::KeepAlive`), and the service future is
//!    gone (`Server::poll_ready` blocks head reads while one is in flight). No header-read
//!    timeout configured: the mark is never set, nothing parks.
//! 2. No request on this connection asked for an upgrade (`Upgrade:` or `CONNECT`; hyper then
//!    attaches `OnUpgrade`, which [`Watched`] sees): a pending upgrade makes hyper end the round
//!    with `Dispatched::Upgrade`, which skips the flush above.
//! 3. Everything delivered to hyper in this round ends with `\r\n\r\n`, or nothing was
//!    delivered. hyper's read buffer is a suffix of what was delivered, left after the last
//!    message it consumed. A suffix that ends with `\r\n\r\n` and holds anything but CR/LF
//!    contains a complete request head (or an invalid one): hyper would have parsed it (or
//!    answered 400) instead of reading, so when it reads, its buffer is only empty lines, which
//!    it skips. A request whose body was the last thing read (its tail is body bytes) therefore
//!    does not park until a request without a body follows: when in doubt, do not park.
//! 4. The socket itself has nothing to read (its `poll_read` returned `Pending`), and no replayed
//!    bytes are left.
//! 5. More than the threshold of connections are open.
//! 6. The wait for this head has lasted `--park-idle-after` (default 1 s): the connection's
//!    timer fires then (before the header deadline) and wakes it, and the read that follows
//!    parks. A connection whose requests come closer together never parks, so a busy one does
//!    not pay a fresh hyper connection per request; `0` parks at the first read that would
//!    wait.
//!
//! Pipelined requests are safe by 1 and 3 (a complete head in hyper's buffer is parsed without a
//! read); a head split across writes fails 3; a response still being written is flushed by
//! hyper before the round ends (above); a response sent before its request body was read fails
//! 1 until hyper has read that body to its end.
//!
//! While parked: the wait is bounded by the header-read deadline hyper had armed (kept across
//! the park: the next round's first head must arrive by it, as when hyper waited itself), the
//! drain closes the connection at once, and the `--max-connections` slot and
//! `portcullis_connections_open` stay held (the caller's `OpenConnection` lives on);
//! `portcullis_connections_parked` counts the connections parked now.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper::rt::{ReadBufCursor, Sleep, Timer};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::conn_timer::ConnTimer;

/// The HTTP/2 connection preface (RFC 9113 §3.4): a plain connection that starts with it is h2c.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most bytes one `poll_read` takes from the socket (through a stack buffer: the crate forbids
/// `unsafe`, so hyper's buffer cannot be filled in place while we look at the bytes). hyper asks
/// for 8 KiB at a time.
const READ_CHUNK: usize = 8192;

/// `\r\n\r\n` as the last four bytes delivered, most recent byte lowest.
const CRLF_CRLF: u32 = u32::from_be_bytes(*b"\r\n\r\n");

/// When connections park, shared by all of them.
pub struct Parking {
    /// Park only while more connections than this are open.
    above: i64,
    /// How long a connection waits for its next request before it parks (invariant 6).
    idle_after: Duration,
    /// `--header-read-timeout`: hyper arms each head's deadline this far after the wait starts.
    header_read_timeout: Duration,
    /// `portcullis_connections_open` (read, not changed).
    open: prometheus::IntGauge,
    /// `portcullis_connections_parked`.
    parked: prometheus::IntGauge,
}

impl Parking {
    /// Registers `portcullis_connections_parked` with `metrics`.
    pub fn new(
        above: usize,
        idle_after: Duration,
        header_read_timeout: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        // A constant valid name and help: `new` only fails on invalid ones.
        let parked = prometheus::IntGauge::new(
            "portcullis_connections_parked",
            "Idle HTTP/1.1 keep-alive client connections waiting for their next request without hyper's buffers.",
        )
        .expect("a valid metric name");
        metrics.register(Box::new(parked.clone()));
        // A wait the header-read deadline always ends first never parks (invariant 6): say so at
        // start, and serve every connection the plain way rather than ready to park for nothing.
        let above = if can_park(idle_after, header_read_timeout) {
            i64::try_from(above).unwrap_or(i64::MAX)
        } else {
            tracing::warn!(
                park_idle_after = ?idle_after,
                header_read_timeout = ?header_read_timeout,
                "no connection will park: --park-idle-after is not below --header-read-timeout, which closes an idle \
                 keep-alive connection first; lower --park-idle-after (or raise --header-read-timeout) to park them"
            );
            i64::MAX
        };
        Self { above, idle_after, header_read_timeout, open: metrics.connections_open.clone(), parked }
    }

    /// Whether a connection that starts now is served by [`serve_h1`] (able to park): never when
    /// no wait could last `--park-idle-after` ([`can_park`]).
    pub fn wanted(&self) -> bool {
        self.open.get() > self.above
    }
}

/// Whether a plain connection surely speaks HTTP/1 (and may park): its first bytes, peeked
/// (not read), already differ from the HTTP/2 preface. Anything else (the preface, or too few
/// bytes to tell) is left to hyper-util's protocol detection, unparked.
pub async fn surely_http1(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    match stream.peek(&mut buf).await {
        Ok(n) => buf[..n] != H2_PREFACE[..n],
        Err(_) => false,
    }
}

/// Serves one plain HTTP/1.1 connection, parking it between requests while [`Parking`] says so.
/// `prefix`: bytes already read from `stream` (replayed first). Returns when the connection
/// ends (closed by either side, timed out, upgraded, or the drain).
pub async fn serve_h1<S>(
    stream: TcpStream,
    prefix: Bytes,
    service: S,
    builder: &http1::Builder,
    parking: Arc<Parking>,
    mut drain: watch::Receiver<()>,
) where
    S: Service<Request<Incoming>, Response = http::Response<crate::outbound::OutBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let marks = Arc::new(Marks::new());
    let mut builder = builder.clone();
    builder.timer(MarkingTimer {
        marks: marks.clone(),
        timer: ConnTimer::new(),
        idle_after: parking.idle_after,
        header_read_timeout: parking.header_read_timeout,
    });
    let (mut stream, mut prefix) = (stream, prefix);
    loop {
        let io = ParkIo::new(stream, prefix, marks.clone(), parking.clone());
        let service = Watched { marks: marks.clone(), inner: service.clone() };
        // Boxed, so that a parked task is sized for the wait, not for hyper's state (an
        // argument of `round` would be kept in its future).
        let conn = Box::new(builder.serve_connection(io, service).with_upgrades());
        let Some(parked) = round(conn, &mut drain).await else { return };
        let deadline = marks.deadline();
        (stream, prefix) = parked;
        if prefix.is_empty() {
            let _parked = ParkedGuard::new(&parking.parked);
            let woken = tokio::select! {
                ready = stream.readable() => ready.is_ok(),
                () = sleep_until(deadline) => false, // the header-read timeout, as hyper's
                _ = drain.changed() => false,
            };
            if !woken {
                return;
            }
        }
        marks.carry(deadline);
    }
}

/// Serves one hyper connection (one round) to its end. `Some`: it parked, and here are the
/// socket and hyper's unconsumed bytes (copied: the rest of hyper's read buffer, normally
/// empty, still holds its whole 8 KiB allocation, which is what parking gives back). Nothing of
/// the round outlives it.
async fn round<S>(
    mut conn: Box<http1::UpgradeableConnection<ParkIo, Watched<S>>>,
    drain: &mut watch::Receiver<()>,
) -> Option<(TcpStream, Bytes)>
where
    S: Service<Request<Incoming>, Response = http::Response<crate::outbound::OutBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let result = until_drained(Pin::new(&mut *conn), drain, http1::UpgradeableConnection::graceful_shutdown).await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
        return None;
    }
    let parts = conn.into_parts()?; // None: upgraded, the upgrade owns the socket now
    let io = parts.io;
    if !io.parked || !io.prefix.is_empty() || drain.has_changed().unwrap_or(true) {
        return None; // closed (hyper shut the socket down), or draining
    }
    Some((io.stream.into_inner(), Bytes::copy_from_slice(&parts.read_buf)))
}

/// Runs a hyper connection to its end; once `drain` signals (a send, or the server gone), asks
/// it to `shut_down` gracefully first: hyper closes an idle connection at once and ends a busy
/// one after its response. The one drain rule of every connection served outside hyper-util's
/// `GracefulShutdown` (those that may park).
pub async fn until_drained<C: Future>(
    mut conn: Pin<&mut C>,
    drain: &mut watch::Receiver<()>,
    shut_down: fn(Pin<&mut C>),
) -> C::Output {
    tokio::select! {
        biased;
        done = conn.as_mut() => done,
        _ = drain.changed() => {
            shut_down(conn.as_mut());
            conn.await
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Counts a parked connection in `portcullis_connections_parked` while it lives.
struct ParkedGuard<'a>(&'a prometheus::IntGauge);

impl<'a> ParkedGuard<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl Marks ===

/// What hyper's state tells [`ParkIo`] through the timer and the service (one per connection).
struct Marks {
    /// hyper is reading a request head (invariant 1).
    reading_head: AtomicBool,
    /// That wait has lasted `--park-idle-after` (invariant 6).
    idle_long_enough: AtomicBool,
    /// A request asked for an upgrade: never park this connection (invariant 2).
    upgrade_asked: AtomicBool,
    /// The header-read deadline hyper armed last, as nanoseconds after `base` (0: none).
    deadline: AtomicU64,
    /// A deadline carried over a park for the next round's first head (0: none).
    carried: AtomicU64,
    base: Instant,
}

impl Marks {
    fn new() -> Self {
        Self {
            reading_head: AtomicBool::new(false),
            idle_long_enough: AtomicBool::new(false),
            upgrade_asked: AtomicBool::new(false),
            deadline: AtomicU64::new(0),
            carried: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn nanos_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    fn instant_at(&self, nanos: u64) -> Option<Instant> {
        (nanos != 0).then(|| self.base + Duration::from_nanos(nanos))
    }

    fn deadline(&self) -> Option<Instant> {
        self.instant_at(self.deadline.load(Relaxed))
    }

    fn carry(&self, deadline: Option<Instant>) {
        self.carried.store(deadline.map_or(0, |d| self.nanos_at(d)), Relaxed);
    }

    /// hyper arms its header-read timer for `deadline`: a head read starts. The first head of a
    /// round after a park keeps the deadline armed before the park.
    fn head_read_starts(&self, deadline: Instant) -> Instant {
        let deadline = match self.instant_at(self.carried.swap(0, Relaxed)) {
            Some(carried) => carried.min(deadline),
            None => deadline,
        };
        self.deadline.store(self.nanos_at(deadline), Relaxed);
        self.idle_long_enough.store(false, Relaxed);
        self.reading_head.store(true, Relaxed);
        deadline
    }
}

// === impl MarkingTimer ===

/// hyper's timer for one connection: the connection's [`ConnTimer`] (kept across rounds),
/// marking when hyper arms the header-read timer (the only timer hyper's HTTP/1 server uses:
/// `Conn::poll_read_head`), and waking the connection once its wait has lasted `idle_after`.
#[derive(Clone)]
struct MarkingTimer {
    marks: Arc<Marks>,
    timer: ConnTimer,
    idle_after: Duration,
    header_read_timeout: Duration,
}

impl Timer for MarkingTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.timer.sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let (header_deadline, idle_at) = self.arm(deadline);
        let sleep = self.timer.sleep_until(idle_at.unwrap_or(header_deadline));
        Box::pin(WaitSleep { sleep, idle_at, header_deadline, marks: self.marks.clone(), timer: self.timer.clone() })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        let (header_deadline, idle_at) = self.arm(new_deadline);
        if let Some(ours) = sleep.as_mut().downcast_mut_pin::<WaitSleep>() {
            let ours = ours.get_mut();
            (ours.idle_at, ours.header_deadline) = (idle_at, header_deadline);
            self.timer.reset(&mut ours.sleep, idle_at.unwrap_or(header_deadline));
        }
    }

    fn now(&self) -> Instant {
        self.timer.now()
    }
}

impl MarkingTimer {
    /// A head wait starts, with hyper's `deadline` (its clock's now + the header-read timeout):
    /// the head's deadline (carried over a park), and when the wait will have lasted
    /// `idle_after` (`None`: already, for `--park-idle-after 0`, or not before the deadline).
    fn arm(&self, deadline: Instant) -> (Instant, Option<Instant>) {
        let header_deadline = self.marks.head_read_starts(deadline);
        if self.idle_after.is_zero() {
            self.marks.idle_long_enough.store(true, Relaxed);
            return (header_deadline, None);
        }
        let idle_at = deadline.checked_sub(self.header_read_timeout).map(|start| start + self.idle_after);
        (header_deadline, idle_at.filter(|at| *at < header_deadline))
    }
}

/// What hyper holds for a head wait: the connection's timer set for `idle_at` first, then for
/// the header deadline. Reaching `idle_at` is not hyper's timeout: it marks the wait long
/// enough to park and wakes the connection, whose next read (nothing arrived) parks.
struct WaitSleep {
    sleep: Pin<Box<dyn Sleep>>,
    idle_at: Option<Instant>,
    header_deadline: Instant,
    marks: Arc<Marks>,
    timer: ConnTimer,
}

impl Future for WaitSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if this.idle_at.take().is_none() {
            return Poll::Ready(()); // the header deadline: hyper's timeout
        }
        this.marks.idle_long_enough.store(true, Relaxed);
        this.timer.reset(&mut this.sleep, this.header_deadline);
        cx.waker().wake_by_ref(); // hyper reads again, and that read parks
        Poll::Pending
    }
}

impl Sleep for WaitSleep {}

// === impl Watched ===

/// The service, clearing the head-read mark when hyper hands it a parsed head and marking
/// requests that asked for an upgrade (before the service takes their `OnUpgrade`).
#[derive(Clone)]
struct Watched<S> {
    marks: Arc<Marks>,
    inner: S,
}

impl<S: Service<Request<Incoming>>> Service<Request<Incoming>> for Watched<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.marks.reading_head.store(false, Relaxed);
        if req.extensions().get::<hyper::upgrade::OnUpgrade>().is_some() {
            self.marks.upgrade_asked.store(true, Relaxed);
        }
        self.inner.call(req)
    }
}

// === impl ParkIo ===

/// The socket as hyper sees it in one round: replays `prefix`, then reads the socket, and
/// reports EOF instead of `Pending` when the connection may park (the module's invariant).
pub struct ParkIo {
    stream: TokioIo<TcpStream>,
    prefix: Bytes,
    marks: Arc<Marks>,
    parking: Arc<Parking>,
    /// The last four bytes delivered to hyper this round, most recent lowest.
    tail: u32,
    /// Whether any byte was delivered this round.
    delivered: bool,
    /// EOF was reported to park: `poll_shutdown` keeps the socket open.
    parked: bool,
}

impl ParkIo {
    fn new(stream: TcpStream, prefix: Bytes, marks: Arc<Marks>, parking: Arc<Parking>) -> Self {
        Self { stream: TokioIo::new(stream), prefix, marks, parking, tail: 0, delivered: false, parked: false }
    }

    fn note(&mut self, bytes: &[u8]) {
        let (tail, delivered) = tail_after(self.tail, bytes);
        (self.tail, self.delivered) = (tail, self.delivered | delivered);
    }

    fn may_park(&self) -> bool {
        self.parking.wanted()
            && self.marks.idle_long_enough.load(Relaxed)
            && self.marks.reading_head.load(Relaxed)
            && !self.marks.upgrade_asked.load(Relaxed)
            && (!self.delivered || self.tail == CRLF_CRLF)
            && self.prefix.is_empty()
    }
}

impl hyper::rt::Read for ParkIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            let chunk = this.prefix.split_to(n);
            buf.put_slice(&chunk);
            this.note(&chunk);
            return Poll::Ready(Ok(()));
        }
        // Read into an uninitialised stack buffer (hyper-util's `TokioIo` fills it; nothing to
        // zero) so that the bytes can be looked at, then copied into hyper's buffer.
        let mut tmp = [const { MaybeUninit::<u8>::uninit() }; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        let mut read = hyper::rt::ReadBuf::uninit(&mut tmp[..want]);
        match Pin::new(&mut this.stream).poll_read(cx, read.unfilled()) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(read.filled());
                this.note(read.filled());
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.may_park() => {
                this.parked = true;
                Poll::Ready(Ok(())) // EOF: hyper ends the round cleanly
            }
            other => other,
        }
    }
}

/// `tail` (the last four bytes delivered, most recent lowest) after `bytes`, and whether
/// `bytes` delivered any.
fn tail_after(mut tail: u32, bytes: &[u8]) -> (u32, bool) {
    for &b in &bytes[bytes.len().saturating_sub(4)..] {
        tail = (tail << 8) | u32::from(b);
    }
    (tail, !bytes.is_empty())
}

impl hyper::rt::Write for ParkIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.stream)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// After a park's EOF, hyper has flushed everything (`Buffered::poll_shutdown`) and the
    /// socket stays open for the next round; otherwise a real shutdown.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// Whether a head wait can last `idle_after` before hyper's header-read deadline ends it: `0`
/// parks at once; otherwise only a wait shorter than the timeout (hyper then closes the idle
/// connection, as [`MarkingTimer::arm`] would find: no `idle_at` before the deadline).
fn can_park(idle_after: Duration, header_read_timeout: Duration) -> bool {
    idle_after.is_zero() || idle_after < header_read_timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_served_ready_to_park_only_when_a_wait_can_last_park_idle_after() {
        let s = Duration::from_secs;
        // Five connections open, above a threshold of 0: only the timings decide.
        let wanted = |idle_after, header_read_timeout| {
            let metrics = crate::metrics::Metrics::new();
            metrics.connections_open.set(5);
            Parking::new(0, idle_after, header_read_timeout, &metrics).wanted()
        };
        assert!(wanted(s(1), s(10)), "the defaults park");
        assert!(wanted(Duration::ZERO, s(10)), "0 parks at once");
        assert!(wanted(Duration::ZERO, Duration::ZERO));
        assert!(wanted(Duration::from_millis(999), s(1)));
        assert!(!wanted(s(1), s(1)), "the deadline ends the wait as it would park");
        assert!(!wanted(s(30), s(10)));
        assert!(!wanted(s(1), Duration::ZERO));
    }

    #[test]
    fn the_tail_is_the_last_four_bytes_across_deliveries() {
        let (tail, delivered) = tail_after(0, b"GET / HTTP/1.1\r\n\r");
        assert!(delivered);
        assert_ne!(tail, CRLF_CRLF);
        let (tail, _) = tail_after(tail, b"\n");
        assert_eq!(tail, CRLF_CRLF, "a terminator split across two reads");
        assert_ne!(tail_after(tail, b"x").0, CRLF_CRLF);
        assert_eq!(tail_after(tail, b""), (CRLF_CRLF, false));
        assert_eq!(tail_after(0, b"0\r\n\r\n").0, CRLF_CRLF, "the end of a chunked body");
    }
}

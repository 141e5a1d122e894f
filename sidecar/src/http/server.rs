//! Accept loop: HTTP/1.1 and h2c on one port, header limits, header-read timeout, and a
//! graceful drain — on shutdown the listener closes (new connections are refused), in-flight
//! requests finish, idle keep-alive connections are closed, and after `drain` the rest is cut.
//! Above `--park-connections-above` open connections, new plain HTTP/1.1 connections are served
//! by [`super::park`] (their idle waits without hyper's buffers).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// A client connection being served: holds its `--max-connections` slot and counts itself in
/// `portcullis_connections_open` until it ends, however it ends.
struct OpenConnection(#[allow(dead_code)] OwnedSemaphorePermit, Arc<Metrics>);

impl OpenConnection {
    fn new(slot: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics.connections_open.inc();
        Self(slot, metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.1.connections_open.dec();
    }
}

use super::conn_timer::ConnTimer;
use super::park::{self, Parking};
use super::pipeline::handle;
use super::proxy::Proxy;
use super::service::Handled;
use super::tls::TlsReloader;
use crate::outbound::OutBody;

/// hyper's own HTTP/1 header-count limit (beyond it: 431).
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// Connection-level limits.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Longest time to receive a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Most bytes of request line + headers; beyond it hyper answers 431.
    pub max_header_bytes: usize,
    /// Most header fields; beyond it hyper answers 431.
    pub max_headers: usize,
    /// Longest graceful drain before remaining connections are closed.
    pub drain: Duration,
    /// Most client connections open at once (`--max-connections`); beyond it new connections
    /// wait in the kernel's listen backlog rather than being accepted.
    pub max_connections: usize,
    /// Above this many open connections, new plain HTTP/1.1 connections park between requests
    /// (`--park-connections-above`, [`super::park`]).
    pub park_above: usize,
    /// How long a connection that may park waits for its next request before it does
    /// (`--park-idle-after`).
    pub park_idle_after: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: HYPER_DEFAULT_MAX_HEADERS,
            drain: Duration::from_secs(30),
            max_connections: 10_000,
            park_above: 100,
            park_idle_after: Duration::from_secs(1),
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then drains. With `tls`, every connection is a
/// TLS handshake first (under the header-read deadline), then HTTP/1.1 or h2 as ALPN chose.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: ServerLimits,
    tls: Option<Arc<TlsReloader>>,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = proxy.metrics.clone();
    let handler = move |req, peer| handle(proxy.clone(), req, peer);
    serve_with(listener, handler, metrics, limits, tls, shutdown).await
}

/// [`serve`] with any request handler: the external authorizer (`authz`) answers on the same
/// accept loop, limits and drain as the proxy.
pub async fn serve_with<H, Fut>(
    listener: TcpListener,
    handler: H,
    metrics: Arc<Metrics>,
    limits: ServerLimits,
    tls: Option<Arc<TlsReloader>>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<OutBody>> + Send + 'static,
{
    let builders = Arc::new(Builders { auto: connection_builder(&limits), http1: http1_builder(&limits) });
    let parking =
        Arc::new(Parking::new(limits.park_above, limits.park_idle_after, limits.header_read_timeout, &metrics));
    let graceful = GracefulShutdown::new();
    let (drain_tx, _) = watch::channel(());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let Some(slot) = next_slot(&slots, &metrics, limits.max_connections, &mut shutdown).await else { break };
        let Some((stream, peer)) = accept(&listener, &mut shutdown).await else { break };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::new(slot, metrics.clone());
        let connection = Connection {
            handler: handler.clone(),
            builders: builders.clone(),
            parking: parking.clone(),
            tls: tls.as_ref().map(|t| t.config()),
            first_byte_deadline: limits.header_read_timeout,
        };
        if connection.tls.is_none() && parking.wanted() {
            tokio::spawn(connection.serve_parking(stream, peer, open, drain_tx.subscribe()));
        } else {
            tokio::spawn(connection.serve(stream, peer, open, graceful.watcher()));
        }
    }
    drop(listener);
    drain(graceful, drain_tx, limits.drain).await;
}

/// The connection builders every connection shares.
struct Builders {
    /// HTTP/1.1 and h2c on one port (and whatever TLS's ALPN chose).
    auto: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 alone, for connections that park (the same settings as `auto`'s HTTP/1).
    http1: http1::Builder,
}

/// Applies the HTTP/1.1 settings of every client connection (hyper's header-read timer and
/// the header limits) to `$builder`: hyper's own `http1::Builder` (connections that park) and
/// hyper-util's `auto::Builder::http1()` have the same setters but no common trait, and one
/// list keeps a parking connection's limits those of every other.
macro_rules! set_http1 {
    ($builder:expr, $limits:expr) => {{
        let limits: &ServerLimits = $limits;
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            // hyper keeps the default limit on the stack; a custom one costs an allocation per
            // request, so it is only set when it differs.
            $builder.max_headers(limits.max_headers);
        }
    }};
}

/// HTTP/1.1 (with hyper's header-read timer and limits) and h2c on one port.
fn connection_builder(limits: &ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    set_http1!(builder.http1(), limits);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// A `--max-connections` slot, before accepting: at the limit, connections queue in the
/// backlog (and the kernel refuses them once it is full) instead of costing memory here.
/// `None` on shutdown.
async fn next_slot<S: Future<Output = ()>>(
    slots: &Arc<Semaphore>,
    metrics: &Metrics,
    max: usize,
    shutdown: &mut std::pin::Pin<&mut S>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    metrics.connection_limit_reached.inc();
    tracing::warn!(max, "--max-connections reached; new connections wait");
    tokio::select! {
        slot = slots.clone().acquire_owned() => slot.ok(), // the semaphore is never closed
        () = shutdown.as_mut() => None,
    }
}

/// The next client connection; `None` on shutdown.
async fn accept<S: Future<Output = ()>>(
    listener: &TcpListener,
    shutdown: &mut std::pin::Pin<&mut S>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = shutdown.as_mut() => return None,
        }
    }
}

/// `connection_builder`'s HTTP/1.1 settings as hyper's own builder (the timer is set per
/// connection by [`park::serve_h1`]).
fn http1_builder(limits: &ServerLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    set_http1!(builder, limits);
    builder
}

/// On shutdown: in-flight requests finish and idle connections close, for at most `drain`.
/// Connections served by hyper-util watch `graceful`; those that park (they are several hyper
/// connections in turn, and wait outside hyper) hold a receiver of `parking` until they end.
async fn drain(graceful: GracefulShutdown, parking: watch::Sender<()>, drain: Duration) {
    tracing::info!("draining connections");
    let _ = parking.send(());
    let all = async { tokio::join!(graceful.shutdown(), parking.closed()) };
    tokio::select! {
        _ = all => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("drain timeout; closing remaining connections"),
    }
}

/// What one accepted connection needs to be served.
struct Connection<H> {
    handler: H,
    builders: Arc<Builders>,
    parking: Arc<Parking>,
    tls: Option<Arc<rustls::ServerConfig>>,
    first_byte_deadline: Duration,
}

impl<H, Fut> Connection<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<OutBody>> + Send + 'static,
{
    /// Serves one connection to its end: the first byte, then (with TLS) the handshake, both
    /// under the header-read deadline, then HTTP until the client or the drain (`watcher`)
    /// closes it.
    async fn serve(self, stream: TcpStream, peer: SocketAddr, _open: OpenConnection, watcher: Watcher) {
        if !first_byte_arrives(&stream, self.first_byte_deadline).await {
            return;
        }
        let service = Handled { handler: self.handler, peer };
        // The connection's own header-read timer: one `Sleep` re-armed per request head
        // (conn_timer.rs) instead of a new one per request.
        let mut builder = self.builders.auto.clone();
        builder.http1().timer(ConnTimer::new());
        let result = match self.tls {
            None => {
                watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
            }
            Some(config) => {
                let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                let stream = match tokio::time::timeout(self.first_byte_deadline, handshake).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %peer, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    }

    /// Serves a plain connection that parks between requests ([`park::serve_h1`]), unless it
    /// may be h2c (it opens with the HTTP/2 preface, or too little to tell): then as `serve`
    /// does, boxed. A task of its own, sized for a parked wait: `serve`'s future holds
    /// hyper-util's connection inline.
    async fn serve_parking(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        _open: OpenConnection,
        mut drain: watch::Receiver<()>,
    ) {
        if !first_byte_arrives(&stream, self.first_byte_deadline).await {
            return;
        }
        let service = Handled { handler: self.handler, peer };
        if park::surely_http1(&stream).await {
            return park::serve_h1(stream, Bytes::new(), service, &self.builders.http1, self.parking, drain).await;
        }
        // The same connection type as `serve`'s (one copy of hyper's code in the binary).
        let mut conn = Box::pin(self.builders.auto.serve_connection_with_upgrades(TokioIo::new(stream), service));
        let result =
            park::until_drained(conn.as_mut(), &mut drain, auto::UpgradeableConnection::graceful_shutdown).await;
        if let Err(e) = result {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    }
}

/// Whether a connection's first byte arrives within `deadline` (peeked, not read): hyper arms
/// its header-read timer only once it knows the protocol, so a client that connects and sends
/// nothing would hold the connection forever (after that, hyper's timer covers every request
/// head, including the idle wait between keep-alive requests). False: timed out, closed, or
/// failed first.
async fn first_byte_arrives(stream: &TcpStream, deadline: Duration) -> bool {
    let mut probe = [0u8; 1];
    matches!(tokio::time::timeout(deadline, stream.peek(&mut probe)).await, Ok(Ok(n)) if n > 0)
}

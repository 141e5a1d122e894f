//! Paths, clocks, temporary directories and bounded polling shared by every harness module.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// The sidecar binary next to this test executable (cargo builds it for `cargo test --workspace`),
/// or `$PORTCULLIS_SIDECAR_BIN` (the chaos run measures a release build from debug tests).
pub fn sidecar_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_SIDECAR_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps");
    let bin = dir.join("portcullis-sidecar");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p portcullis-sidecar` (the README's test command does)",
        bin.display()
    );
    bin
}

/// A loopback port for a server this test is about to start (a process, or a listener on a port
/// that must be known first), kept from everyone else meanwhile.
///
/// A port merely found free and released can be handed to the next `bind(0)` or `connect()` of a
/// test running in parallel before our server binds it (a CI run met another test's app on such a
/// port). So the port is left in `TIME_WAIT` (the trick of Yelp's `ephemeral-port-reserve`): a
/// connection to our own listener is accepted and our side closes first. For about a minute the
/// kernel then gives the port to no `bind(0)` and no `connect()`, while a server that sets
/// `SO_REUSEADDR` (tokio, std, Go, node, Python's `HTTPServer`, Envoy, nginx, HAProxy all do) binds
/// it at once. Use [`ClosedPort`] for a port nothing may ever answer on.
pub fn free_port() -> u16 {
    // std sets SO_REUSEADDR, which the TIME_WAIT socket inherits: what lets the server bind.
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = std::net::TcpStream::connect(addr).expect("connect to our own listener");
    let (ours, _) = listener.accept().expect("accept");
    drop(ours); // the side that closes first keeps the port in TIME_WAIT
    drop(client);
    addr.port()
}

/// A loopback port nothing listens on, held for as long as the value lives: a connection to it
/// is refused. The socket is bound without `listen`, and without `SO_REUSEADDR`, so no other
/// socket can bind the port meanwhile and the kernel hands it to no `bind(0)`. (A port from
/// [`free_port`] is for a server to bind; once a CI run met another test's app on a "down" port,
/// answering 404 where the test asserted the sidecar's 502 for an app that is down.)
pub struct ClosedPort {
    port: u16,
    _held: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let held = tokio::net::TcpSocket::new_v4().expect("socket");
        held.bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let port = held.local_addr().expect("addr").port();
        ClosedPort { port, _held: held }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, for an app, provider or collector that is down.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Default for ClosedPort {
    fn default() -> ClosedPort {
        ClosedPort::new()
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// Polls `f` every 20 ms until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "portcullis-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).expect("create temp dir");
            Self(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_handed_to_no_other_bind_and_taken_by_the_server_it_is_for() {
        let reserved: Vec<u16> = (0..8).map(|_| free_port()).collect();
        // A released port comes back from bind(0) about once in 7,000 binds on this kernel (eight
        // of them, in 30,000: ~30 times); a reserved one never does.
        for _ in 0..30_000 {
            let other = StdListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            assert!(!reserved.contains(&other), "port {other} was handed to another bind(0)");
        }
        for port in reserved {
            let server = StdListener::bind(("127.0.0.1", port)).expect("the server binds its port");
            let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            drop((server.accept().expect("accept"), client));
        }
    }

    #[tokio::test]
    async fn a_closed_port_refuses_connections_and_cannot_be_bound_while_held() {
        let closed = ClosedPort::new();
        let err = tokio::net::TcpStream::connect(("127.0.0.1", closed.port())).await.expect_err("nothing listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        // std and tokio listeners set SO_REUSEADDR; the held socket does not, so theirs fail.
        assert!(StdListener::bind(("127.0.0.1", closed.port())).is_err(), "the port is held");
        assert!(tokio::net::TcpListener::bind(("127.0.0.1", closed.port())).await.is_err(), "the port is held");
        let port = closed.port();
        drop(closed);
        assert!(StdListener::bind(("127.0.0.1", port)).is_ok(), "released on drop");
    }
}

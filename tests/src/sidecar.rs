//! The sidecar under test, built with [`sidecar`] or [`authorizer`]: by default in-process, on
//! listeners bound to `127.0.0.1:0` before it starts (`run::serve_on`, on a runtime of its own
//! so a test that blocks its thread cannot stall it); with [`SidecarBuilder::process`] (or an
//! environment variable) the real binary as a process, for tests that read its log or signal
//! it. Also a sidecar in cluster mode, configured by sealed pushes.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_sidecar::cli::Args;
use portcullis_sidecar::run::{serve_on, Role};

use crate::*;

/// A running sidecar; stopped on drop (a process is killed by its own PID).
pub struct Sidecar {
    backend: Backend,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempdir::TempDir,
    /// The process's log file (a process sidecar only).
    pub log: PathBuf,
}

enum Backend {
    Process(Child),
    /// Serving on its own thread until `stop` fires (a graceful drain).
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// Builder for a sidecar.
pub struct SidecarBuilder {
    manifests: String,
    upstream: String,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    port: Option<u16>,
    wait_ready: bool,
    /// `authz`: serve as the external authorizer instead of the proxy.
    authz: bool,
    /// Run the binary as a process.
    process: bool,
}

pub fn sidecar(manifests: &str, upstream: &str) -> SidecarBuilder {
    SidecarBuilder {
        manifests: manifests.to_owned(),
        upstream: upstream.to_owned(),
        extra: vec![],
        env: vec![],
        port: None,
        wait_ready: true,
        authz: false,
        process: false,
    }
}

/// `portcullis-sidecar authz` with these manifests.
pub fn authorizer(manifests: &str) -> SidecarBuilder {
    SidecarBuilder { authz: true, ..sidecar(manifests, "http://127.0.0.1:9") }
}

impl SidecarBuilder {
    /// An environment variable of the process (e.g. `SSL_CERT_FILE`): runs it as a process.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self.process = true;
        self
    }

    /// Listen on this port (when the manifests must name it) instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_owned());
        self
    }

    /// [`SidecarBuilder::arg`] for each of `args`, in order.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Do not wait for /readyz (for sidecars that must stay unready).
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// The real binary as a process: for tests that read its log ([`Sidecar::logs`]) or send it
    /// SIGTERM.
    pub fn process(mut self) -> Self {
        self.process = true;
        self
    }

    pub async fn start(self) -> Sidecar {
        if self.process {
            self.start_process().await
        } else {
            self.start_in_process().await
        }
    }

    async fn start_in_process(self) -> Sidecar {
        let dir = tempdir::TempDir::new("sidecar");
        let manifests = dir.path().join("access.yaml");
        std::fs::write(&manifests, &self.manifests).expect("write manifests");
        let mut flags = vec!["--manifests".to_owned(), manifests.display().to_string()];
        flags.extend(["--upstream".to_owned(), self.upstream.clone()]);
        if !self.extra.iter().any(|a| a == "--drain-timeout") {
            // A dropped sidecar should not hold the test for the default 30 s.
            flags.extend(["--drain-timeout".to_owned(), "1s".to_owned()]);
        }
        flags.extend(self.extra.iter().cloned());
        let args = Args::from_flags(flags).expect("sidecar flags");
        let role = if self.authz { Role::Authorizer } else { Role::Sidecar };
        let log = dir.path().join("sidecar.log");
        let mut s = in_process(role, args, self.port.unwrap_or(0), 0, dir, log);
        s.wait_up(self.wait_ready).await.unwrap_or_else(|e| panic!("sidecar did not come up: {e}"));
        s
    }

    async fn start_process(self) -> Sidecar {
        let mut dir = tempdir::TempDir::new("sidecar");
        let manifests = dir.path().join("access.yaml");
        std::fs::write(&manifests, &self.manifests).expect("write manifests");
        // A process cannot take our pre-bound listeners: it binds a port from free_port(), which
        // no other bind(0) gets meanwhile; a start that still fails on a taken port (another
        // test's explicit bind) is retried on new ports.
        for attempt in 1..=5 {
            let log = dir.path().join("sidecar.log");
            let (port, admin_port) = (self.port.unwrap_or_else(free_port), free_port());
            let child = Command::new(sidecar_bin())
                .args(self.authz.then_some("authz"))
                .arg("--manifests")
                .arg(&manifests)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
                .args(["--upstream", &self.upstream])
                // Two worker threads and debug logs, unless the test gives its own.
                .args(
                    [["--worker-threads", "2"], ["--log", "debug"]]
                        .into_iter()
                        .filter(|[flag, _]| !self.extra.iter().any(|a| a == flag))
                        .flatten(),
                )
                .args(&self.extra)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("start sidecar");
            let mut s = Sidecar {
                backend: Backend::Process(child),
                addr: ([127, 0, 0, 1], port).into(),
                admin: ([127, 0, 0, 1], admin_port).into(),
                dir,
                log,
            };
            match s.wait_up(self.wait_ready).await {
                Ok(()) => return s,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {
                    // Take the directory back for the next attempt; the dead child is reaped.
                    if let Backend::Process(child) = &mut s.backend {
                        let _ = child.wait();
                    }
                    dir = std::mem::replace(&mut s.dir, tempdir::TempDir::new("sidecar-unused"));
                }
                Err(log) => panic!("sidecar did not come up; log:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// A sidecar serving `args` in-process on listeners bound now (`port` 0: any free one).
fn in_process(role: Role, args: Args, port: u16, admin_port: u16, dir: tempdir::TempDir, log: PathBuf) -> Sidecar {
    let bind = |port: u16| {
        let l = StdListener::bind(("127.0.0.1", port)).expect("bind a loopback listener");
        l.set_nonblocking(true).expect("non-blocking listener");
        l
    };
    let (listener, admin) = (bind(port), bind(admin_port));
    let (addr, admin_addr) = (listener.local_addr().expect("addr"), admin.local_addr().expect("admin addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("sidecar runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let admin = tokio::net::TcpListener::from_std(admin).expect("admin listener");
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = serve_on(role, args, listener, admin, shutdown).await {
                panic!("the sidecar did not start: {e}");
            }
        });
    });
    let backend = Backend::InProcess { stop: Some(stop), thread: Some(thread) };
    Sidecar { backend, addr, admin: admin_addr, dir, log }
}

impl Sidecar {
    /// Waits for `/readyz` to answer 200 (`ready`) or for the admin port to answer at all.
    /// `Err` with the log when the sidecar stopped or did not come up within 10 s.
    async fn wait_up(&mut self, ready: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let path = if ready { "readyz" } else { "healthz" };
        loop {
            if let Ok(r) = get(&format!("http://{}/{path}", self.admin), &[]).await {
                if !ready || r.status == 200 {
                    return Ok(());
                }
            }
            if self.stopped() || Instant::now() > deadline {
                return Err(match self.backend {
                    Backend::Process(_) => self.logs(),
                    Backend::InProcess { .. } => "the in-process sidecar stopped or is not ready".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stopped(&mut self) -> bool {
        match &mut self.backend {
            Backend::Process(child) => matches!(child.try_wait(), Ok(Some(_))),
            Backend::InProcess { thread, .. } => thread.as_ref().is_none_or(|t| t.is_finished()),
        }
    }

    /// A process sidecar's PID (`None` in-process).
    pub fn pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Process(child) => Some(child.id()),
            Backend::InProcess { .. } => None,
        }
    }

    /// A process sidecar's exit status once it exited (`None` while it runs, and in-process).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        match &mut self.backend {
            Backend::Process(child) => child.try_wait().expect("wait for the sidecar"),
            Backend::InProcess { .. } => None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn manifests_path(&self) -> PathBuf {
        self.dir.path().join("access.yaml")
    }

    /// The process's log. An in-process sidecar keeps none: build it with `.process()`.
    pub fn logs(&self) -> String {
        assert!(
            matches!(self.backend, Backend::Process(_)),
            "an in-process sidecar keeps no log: start it with `.process()` to read its log"
        );
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin), &[]).await.expect("metrics").text()
    }

    /// Starts the graceful drain: SIGTERM to a process, the shutdown signal in-process.
    pub fn terminate(&mut self) {
        match &mut self.backend {
            Backend::Process(child) => {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
            Backend::InProcess { stop, .. } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        match &mut self.backend {
            Backend::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Backend::InProcess { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// A sidecar in cluster mode: no manifests, configured only by signed pushes; in-process.
pub async fn sidecar_without_manifests(upstream: &str, push_key_b64: &str, namespace: &str, pod: &str) -> Sidecar {
    sidecar_without_manifests_on(upstream, push_key_b64, namespace, pod, 0, 0).await
}

/// [`sidecar_without_manifests`] on given ports (a restarted container keeps its ports; 0 for
/// any free one).
pub async fn sidecar_without_manifests_on(
    upstream: &str,
    push_key_b64: &str,
    namespace: &str,
    pod: &str,
    port: u16,
    admin_port: u16,
) -> Sidecar {
    let dir = tempdir::TempDir::new("sidecar-push");
    let key_file = dir.path().join("push.pub");
    std::fs::write(&key_file, push_key_b64).expect("write key");
    let flags = [
        "--upstream",
        upstream,
        "--push-public-key",
        key_file.to_str().expect("utf-8 temp path"),
        "--pod-namespace",
        namespace,
        "--pod-name",
        pod,
        "--drain-timeout",
        "1s",
    ];
    let args = Args::from_flags(flags.iter().map(|f| f.to_string())).expect("sidecar flags");
    let log = dir.path().join("sidecar.log");
    let mut s = in_process(Role::Sidecar, args, port, admin_port, dir, log);
    s.wait_up(false).await.unwrap_or_else(|e| panic!("sidecar did not come up: {e}"));
    s
}

/// The sidecar's current boot (`GET /config/boot`), which pushes are sealed to.
pub async fn boot_info(sc: &Sidecar) -> portcullis_crds::push::BootInfo {
    let r = get(&format!("http://{}/config/boot", sc.admin), &[]).await.expect("boot info");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("boot info JSON")
}

/// A push of `snapshot` to `shop/<pod>`, issued now, sealed to `boot` and signed by `key`:
/// the body the operator sends.
pub fn sealed_push(
    key: &portcullis_crds::push::SigningKey,
    boot: &portcullis_crds::push::BootInfo,
    sequence: u64,
    pod: &str,
    snapshot: portcullis_crds::Snapshot,
) -> String {
    let push = portcullis_crds::push::ConfigPush {
        sequence,
        target: portcullis_crds::push::PushTarget { namespace: "shop".into(), pod: pod.into() },
        issued_at: now(),
        snapshot,
    };
    serde_json::to_string(&key.seal(&push, boot).expect("seal")).expect("JSON")
}

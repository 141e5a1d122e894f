//! The README's quickstart, checked: the bundled example compiles, the curl commands the README
//! shows behave as it says (preflight answered, request refused with a readable 401, service
//! token let through), `examples/quickstart/run.sh` stops with a message naming the port or the
//! process when a port is taken or a process exits, and the README's shell blocks marked
//! `<!-- runnable: … -->` run against the quickstart with the exit statuses it states.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn quickstart_manifests() -> String {
    std::fs::read_to_string(repo_root().join("examples/quickstart/access.yaml")).expect("quickstart manifests")
}

// Behaviour: B-STATUS-1, B-STATUS-4, B-TOKEN-4 (docs/behaviour.md).
#[tokio::test]
async fn the_readme_curl_commands_do_what_the_readme_says() {
    let up = Upstream::start().await;
    let sc = sidecar(&quickstart_manifests(), &up.url()).start().await;
    let host = ("host", "api.mysite.com");
    let origin = ("origin", "https://example.com");

    let r = send(
        "OPTIONS",
        &sc.url("/data"),
        &[host, origin, ("access-control-request-method", "GET"), ("access-control-request-headers", "office")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));

    let r = get(&sc.url("/data"), &[host, origin]).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));

    let r = get(
        &sc.url("/data"),
        &[
            host,
            ("cf-access-client-id", "quickstart.access"),
            ("cf-access-client-secret", "quickstart-demo-secret-do-not-use-in-production"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().headers["cf-access-client-id"], "quickstart.access");

    let token = mint(
        "rsa.pem",
        jsonwebtoken::Algorithm::RS256,
        Some("rsa-1"),
        serde_json::json!({"iss": "https://issuer.example.test", "aud": "quickstart", "email": "alice@mysite.com", "exp": now() + 600}),
    );
    let cookie = format!("CF_Authorization={token}");
    let r = get(&sc.url("/data"), &[host, ("cookie", &cookie)]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn the_bench_config_compiles() {
    let jwks = jwks_json();
    let text = std::fs::read_to_string(repo_root().join("bench/access.yaml"))
        .unwrap()
        .replace("JWKS_PLACEHOLDER\n", &yaml_block(&jwks, 10));
    let mut res = portcullis_crds::manifests::Resources::default();
    res.add_yaml("bench/access.yaml", &text).unwrap();
    let compiled = res.compile("default").unwrap();
    assert_eq!(compiled.snapshot.applications.len(), 2);
}

// === examples/quickstart/run.sh, run as the README runs it ===

/// The script with its three ports (sidecar, admin, app), running the binaries under test
/// (`QUICKSTART_BIN_DIR`) rather than building release ones.
fn quickstart_script(ports: [u16; 3], extra: &[&str]) -> Command {
    let bin_dir = sidecar_bin().parent().expect("target/<profile>").to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg("examples/quickstart/run.sh")
        .args(extra)
        .current_dir(repo_root())
        .env("QUICKSTART_PORT", ports[0].to_string())
        .env("QUICKSTART_ADMIN_PORT", ports[1].to_string())
        .env("QUICKSTART_APP_PORT", ports[2].to_string())
        .env("QUICKSTART_BIN_DIR", &bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to its end, or kills it after `limit`: `(exit status, stdout, stderr)`.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<i32>, String, String) {
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_taken_port_stops_the_quickstart_at_once_naming_the_port_and_the_variable() {
    let cases = [
        (0, "the sidecar", "QUICKSTART_PORT"),
        (1, "the sidecar's admin endpoint", "QUICKSTART_ADMIN_PORT"),
        (2, "the echo app", "QUICKSTART_APP_PORT"),
    ];
    for (index, what, var) in cases {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut ports = [free_port(), free_port(), free_port()];
        ports[index] = taken.local_addr().expect("addr").port();
        let (status, _, stderr) = run_bounded(quickstart_script(ports, &[]), Duration::from_secs(60));
        assert_eq!(status, Some(1), "{var}: {stderr}");
        let want = format!("port {} on 127.0.0.1 ({what}) is already in use", ports[index]);
        assert!(stderr.contains(&want), "{var}: {stderr}");
        assert!(stderr.contains(&format!("{var}=<port> examples/quickstart/run.sh")), "{var}: {stderr}");
        // Nothing was started: the other ports are still free.
        for (i, port) in ports.iter().enumerate() {
            assert!(i == index || !accepts(*port), "{var}: something listens on {port}");
        }
    }
}

#[test]
fn the_quickstart_stops_and_says_which_process_exited() {
    let ports = [free_port(), free_port(), free_port()];
    // An argument the sidecar refuses: it exits at once, after the echo app has started.
    let (status, _, stderr) = run_bounded(quickstart_script(ports, &["--no-such-flag"]), Duration::from_secs(60));
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("the sidecar exited (status 2)"), "{stderr}");
    assert!(stderr.contains("QUICKSTART_PORT=<port> or QUICKSTART_ADMIN_PORT=<port>"), "{stderr}");
    // The echo app was stopped with it (bounded: SIGTERM takes effect asynchronously).
    let start = Instant::now();
    while accepts(ports[2]) {
        assert!(start.elapsed() < Duration::from_secs(10), "the echo app still listens on {}", ports[2]);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A README shell block marked `<!-- runnable: exit statuses … -->`: its commands (comment lines
/// dropped, `\` continuations joined) and the exit status the README says each one has.
struct RunnableBlock {
    line: usize,
    commands: Vec<String>,
    statuses: Vec<i32>,
}

fn runnable_blocks(readme: &str) -> Vec<RunnableBlock> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix("<!-- runnable: exit statuses ") else { continue };
        let statuses = rest.split_whitespace().map_while(|w| w.parse::<i32>().ok()).collect();
        assert!(
            lines.get(i + 1).is_some_and(|l| l.starts_with("```sh")),
            "README.md:{}: the marker must precede a ```sh block",
            i + 1
        );
        let mut commands = Vec::new();
        let mut current = String::new();
        for body in lines[i + 2..].iter().take_while(|l| !l.starts_with("```")) {
            if current.is_empty() && (body.trim().is_empty() || body.trim_start().starts_with('#')) {
                continue;
            }
            current.push_str(body);
            current.push('\n');
            if !body.ends_with('\\') {
                commands.push(std::mem::take(&mut current));
            }
        }
        out.push(RunnableBlock { line: i + 1, commands, statuses });
    }
    out
}

/// Stops the quickstart script with SIGTERM (its trap stops the sidecar and the echo app),
/// also when the test fails.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// The README's runnable blocks ("Try it", `explain`, `doctor cors`), run as written against
/// the quickstart started by its own script, with the quickstart's ports and the binaries'
/// folder substituted (the README says `./target/release/`; the tests run the debug build).
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_runnable_blocks_run_against_the_quickstart() {
    let ports = [free_port(), free_port(), free_port()];
    let mut cmd = quickstart_script(ports, &[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let _running = Running(cmd.spawn().expect("start the quickstart"));
    let readyz = format!("http://127.0.0.1:{}/readyz", ports[1]);
    eventually(Duration::from_secs(30), "the quickstart is ready", || async {
        get(&readyz, &[]).await.ok().filter(|r| r.status == 200)
    })
    .await;

    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let blocks = runnable_blocks(&readme);
    assert!(blocks.len() >= 3, "README.md marks {} runnable blocks", blocks.len());
    let bin_dir = sidecar_bin().parent().expect("target/<profile>").display().to_string();
    let work = tempdir::TempDir::new("readme-blocks");
    for block in &blocks {
        assert_eq!(block.commands.len(), block.statuses.len(), "README.md:{}: one exit status per command", block.line);
        let status_file = work.path().join(format!("statuses-{}", block.line));
        let mut script = format!("exec 3>'{}'\n", status_file.display());
        for command in &block.commands {
            let command = command
                .replace(":8080", &format!(":{}", ports[0]))
                .replace(":9901", &format!(":{}", ports[1]))
                .replace(":3000", &format!(":{}", ports[2]))
                .replace("./target/release/", &format!("{bin_dir}/"));
            script.push_str(&command);
            script.push_str("echo $? >&3\n");
        }
        let mut bash = Command::new("bash");
        bash.arg("-c")
            .arg(&script)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (_, stdout, stderr) =
            tokio::task::spawn_blocking(move || run_bounded(bash, Duration::from_secs(60))).await.unwrap();
        let statuses: Vec<i32> =
            std::fs::read_to_string(&status_file).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect();
        assert_eq!(
            statuses, block.statuses,
            "README.md:{}: exit statuses\nstdout:\n{stdout}\nstderr:\n{stderr}",
            block.line
        );
        if block.commands.iter().any(|c| c.contains("curl -i")) {
            // "Try it": the statuses its comments announce, in order.
            // (A JSON body ends without a newline, so a status line may follow it on the same line;
            // "HTTP/1.1 " followed by anything but a three-digit status is other text, e.g. a
            // metric's help.)
            let http: Vec<&str> = stdout
                .match_indices("HTTP/1.1 ")
                .filter_map(|(i, _)| stdout.get(i + 9..i + 12))
                .filter(|status| status.bytes().all(|b| b.is_ascii_digit()))
                .collect();
            assert_eq!(http, ["200", "401", "200", "200"], "README.md:{}:\n{stdout}", block.line);
            assert!(stdout.contains("ready"), "{stdout}");
            assert!(stdout.contains("portcullis_requests_total"), "{stdout}");
        }
    }
}

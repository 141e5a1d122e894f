//! Real servers that reinterpret requests, behind the real sidecar: Python's `http.server`
//! (decodes `%2F`, drops empty segments so `//admin` is `/admin`) and a WSGI app on `wsgiref`
//! (reads `Cf_Access_Authenticated_User_Email` as the identity header, decodes `%2F` in
//! PATH_INFO). Each test first shows that the server itself does serve the protected content
//! for the attack (so the test can fail), then that through the sidecar it never does.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

/// A Python server started from tests/servers, stopped on drop.
struct PyServer {
    child: Child,
    port: u16,
    _dir: tempdir::TempDir,
}

impl PyServer {
    fn start(script: &str, extra: &[&str], dir: tempdir::TempDir) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("python3")
                .arg(repo_root().join("tests/servers").join(script))
                .arg(port.to_string())
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 is installed (tests/run.sh)");
            let mut line = String::new();
            let ready = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).is_ok()
                && line.trim() == "ready";
            if ready {
                return Self { child, port, _dir: dir };
            }
            let _ = child.kill(); // the port was taken meanwhile: try another
            let _ = child.wait();
        }
        panic!("{script} did not start");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn manifests() -> String {
    format!(
        r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: site, namespace: shop }}
spec:
  domains: [www.example.test]
  policies:
    - {{ name: public, action: Bypass, include: [ {{ everyone: {{}} }} ] }}
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: admin, namespace: shop }}
spec:
  domains: [www.example.test/admin]
  identity:
    issuers:
      - issuer: {ISSUER}
        audiences: [{AUDIENCE}]
{jwks}
  policies:
    - {{ name: staff, action: Allow, include: [ {{ emailDomain: mysite.com }} ] }}
"#,
        jwks = inline_jwks()
    )
}

/// Paths that name `/admin/secret.txt` to a server that merges slashes, decodes `%2F`, reads
/// `\` as `/` or resolves dot segments after decoding.
const ATTACKS: [&str; 9] = [
    "//admin/secret.txt",
    "/admin%2Fsecret.txt",
    "/%2Fadmin/secret.txt",
    "/public/..%2Fadmin/secret.txt",
    "/public/%2e%2e/admin/secret.txt",
    "/%61dmin/secret.txt",
    "/public/../admin/secret.txt",
    "/admin;x/secret.txt",
    "/public\\..\\admin\\secret.txt",
];

fn http_get(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().expect("address");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let answer = raw(addr, req.as_bytes());
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn python_http_server_never_serves_the_protected_file() {
    let dir = tempdir::TempDir::new("static");
    std::fs::create_dir_all(dir.path().join("admin")).unwrap();
    std::fs::create_dir_all(dir.path().join("public")).unwrap();
    std::fs::write(dir.path().join("admin/secret.txt"), "TOP SECRET").unwrap();
    std::fs::write(dir.path().join("public/index.txt"), "hello").unwrap();
    let root = dir.path().display().to_string();
    let app = PyServer::start("static_files.py", &[&root], dir);

    // The server itself reads at least some of the attacks as the protected file.
    let direct: Vec<_> = ATTACKS.iter().filter(|p| http_get(&app.url(), p, &[]).1.contains("TOP SECRET")).collect();
    assert!(direct.len() >= 3, "http.server should serve the secret for several spellings: {direct:?}");

    let sc = sidecar(&manifests(), &app.url()).start().await;
    let base = format!("http://{}", sc.addr);
    let (status, body) = http_get(&base, "/public/index.txt", &[]);
    assert_eq!((status, body.contains("hello")), (200, true), "{body}");
    for path in ATTACKS {
        let (status, body) = http_get(&base, path, &[]);
        assert!(!body.contains("TOP SECRET"), "{path} reached the protected file through the sidecar: {body}");
        assert!(matches!(status, 400 | 401), "{path}: {status} {body}");
    }
}

#[tokio::test]
async fn wsgi_never_sees_a_forged_identity_or_the_admin_path() {
    let app = PyServer::start("wsgi_echo.py", &[], tempdir::TempDir::new("wsgi"));
    let forged = [("Cf_Access_Authenticated_User_Email", "admin@mysite.com"), ("Cf_Access_Jwt_Assertion", "forged")];

    // Directly, wsgiref takes the underscore spelling for the identity header.
    let (_, body) = http_get(&app.url(), "/hello", &forged);
    assert!(body.contains("admin@mysite.com"), "{body}");

    let sc = sidecar(&manifests(), &app.url()).start().await;
    let base = format!("http://{}", sc.addr);
    let (status, body) = http_get(&base, "/hello", &forged);
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("admin@mysite.com") && !body.contains("forged"),
        "the forged identity reached the app: {body}"
    );
    assert!(body.contains("\"forwarded_host\": \"www.example.test\""), "{body}");
    for path in ATTACKS {
        let (status, body) = http_get(&base, path, &forged);
        assert!(!body.contains("TOP SECRET"), "{path} reached /admin through the sidecar: {body}");
        assert!(matches!(status, 400 | 401), "{path}: {status} {body}");
    }
}

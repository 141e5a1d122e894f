//! The TLS listener (`--tls-cert`/`--tls-key`): serves the certificate, offers h2 and
//! HTTP/1.1 by ALPN, picks up a new pair when the files change, keeps the last good pair on a
//! bad edit, and refuses to start on unusable files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::signin::Pki;
use common::tempdir::TempDir;
use common::{eventually, sidecar, sidecar_bin, Upstream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTS: [&str; 1] = ["api.mysite.com"];

const MANIFESTS: &str = r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: api, namespace: shop }
spec:
  domains: [api.mysite.com]
  policies:
    - name: public
      action: Bypass
      include: [ { ipRange: 0.0.0.0/0 } ]
"#;

/// Connects with `alpn`, returns the served leaf certificate, the negotiated protocol, and the
/// answer to one HTTP/1.1 request when HTTP/1.1 was chosen.
async fn handshake(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    alpn: &[&[u8]],
) -> (Vec<u8>, Option<Vec<u8>>, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).expect("CA pem")).expect("CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("api.mysite.com").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().expect("peer cert")[0].to_vec();
    let protocol = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut answer = String::new();
    if protocol.as_deref() != Some(b"h2") {
        tls.write_all(b"GET /x HTTP/1.1\r\nHost: api.mysite.com\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
        answer = String::from_utf8_lossy(&buf).into_owned();
    }
    (leaf, protocol, answer)
}

fn leaf_der(pki: &Pki) -> Vec<u8> {
    CertificateDer::from_pem_file(&pki.cert).expect("cert pem").to_vec()
}

// Behaviour: B-TLS-1 (docs/behaviour.md).
#[tokio::test]
async fn serves_tls_and_reloads_the_certificate_keeping_the_last_good_pair() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(dir.path(), &HOSTS);
    let upstream = Upstream::start().await;
    let s = sidecar(MANIFESTS, &upstream.url())
        .process()
        .arg("--tls-cert")
        .arg(pki.cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(pki.key.to_str().unwrap())
        .start()
        .await;

    let first = leaf_der(&pki);
    let (leaf, protocol, answer) = handshake(s.addr, &pki.ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!((leaf == first, protocol.as_deref()), (true, Some(&b"h2"[..])));
    let (_, protocol, answer11) = handshake(s.addr, &pki.ca, &[b"http/1.1"]).await;
    assert_eq!(protocol.as_deref(), Some(&b"http/1.1"[..]));
    assert!(answer11.starts_with("HTTP/1.1 200"), "{answer11}{answer}");
    assert_eq!(upstream.last().headers["x-forwarded-proto"], "https");

    // A new pair: served within the poll interval.
    pki.issue(&HOSTS, "server-2");
    let second = leaf_der(&pki);
    assert_ne!(first, second);
    let (addr, ca) = (s.addr, pki.ca.clone());
    eventually(Duration::from_secs(10), "the new certificate", || {
        let (ca, second) = (ca.clone(), second.clone());
        async move { (handshake(addr, &ca, &[b"http/1.1"]).await.0 == second).then_some(()) }
    })
    .await;

    // A bad edit (a key that does not belong to the certificate): logged, counted, and the
    // last good pair keeps serving.
    let (_, other_key) = pki.server_pem(&HOSTS, "other");
    std::fs::write(&pki.key, other_key).unwrap();
    eventually(Duration::from_secs(10), "the reload failure in the log", || {
        let logs = s.logs();
        async move { logs.contains("TLS certificate reload failed").then_some(()) }
    })
    .await;
    assert_eq!(handshake(s.addr, &pki.ca, &[b"http/1.1"]).await.0, second);
    let metrics = s.metrics().await;
    assert!(metrics.contains(r#"portcullis_tls_reloads_total{result="error"}"#), "{metrics}");
    assert!(metrics.contains(r#"portcullis_tls_reloads_total{result="ok"} 1"#), "{metrics}");
    assert!(!s.logs().contains("PRIVATE KEY"), "no key material in the logs");
}

#[test]
fn unusable_tls_files_stop_the_start_with_a_clear_message() {
    let dir = TempDir::new("tls-bad");
    let pki = Pki::new(dir.path(), &HOSTS);
    let manifests = dir.path().join("access.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        (garbage.clone(), pki.key.clone(), "no PEM certificate"),
        (pki.cert.clone(), garbage.clone(), "no PEM private key"),
        (missing, pki.key.clone(), "cannot read"),
        (pki.cert.clone(), pki.ca.clone(), "no PEM private key"),
    ];
    for (cert, key, want) in cases {
        let out = std::process::Command::new(sidecar_bin())
            .args(["--manifests", manifests.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0", "--tls-cert", cert.to_str().unwrap()])
            .args(["--tls-key", key.to_str().unwrap()])
            .output()
            .expect("run sidecar");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {cert:?} {key:?}");
        assert!(stderr.contains(want), "want {want:?} in: {stderr}");
    }
    // Only one of the pair is a usage error.
    let out = std::process::Command::new(sidecar_bin())
        .args(["--manifests", manifests.to_str().unwrap(), "--tls-cert", pki.cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

//! Writes the seed corpus (`cargo run -p portcullis-fuzz --example write-seeds`): requests,
//! manifests, sealed envelopes and tokens minted with the committed test keys, so the fuzzer
//! starts from inputs that get deep. Run by hand when the seeds change; `fuzz/run.sh` adds what
//! fuzzing finds beside them. ES256 signatures and boot keys are random, so a rerun rewrites
//! those seeds with different (equally valid) bytes.

use std::path::Path;

fn main() {
    let tokens = jwt_seeds();
    request_seeds(&tokens);
    let snapshot = manifest_seeds();
    push_seeds(snapshot);
}

/// Writes `data` as the seed `name` of fuzz target `target`.
fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
}

/// A token for `email` signed with the committed test key `pem_file` under `kid`.
fn sign(alg: jsonwebtoken::Algorithm, kid: &str, pem_file: &str, email: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/keys").join(pem_file))
        .expect("fixture key");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("key");
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let claims = serde_json::json!({"iss": "https://issuer.test", "aud": "aud-tag-1", "email": email, "sub": email,
        "iat": 1_899_990_000, "exp": 2_000_000_000, "groups": ["staff"], "amr": ["mfa"]});
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// Tokens the request seeds carry.
struct Tokens {
    rsa: String,
    ec: String,
    ed: String,
}

/// The `jwt` target's seeds: a token per key type, a forged one, the JWKS, an `alg: none`.
fn jwt_seeds() -> Tokens {
    use jsonwebtoken::Algorithm::*;
    let tokens = Tokens {
        rsa: sign(RS256, "rsa-1", "rsa.pem", "alice@mysite.com"),
        ec: sign(ES256, "ec-1", "ec.pem", "bob@mysite.com"),
        ed: sign(EdDSA, "ed-1", "ed25519.pem", "contractor@mysite.com"),
    };
    let forged = sign(RS256, "rsa-1", "rsa2.pem", "mallory@mysite.com");
    for (name, t) in [("rsa", &tokens.rsa), ("ec", &tokens.ec), ("ed", &tokens.ed), ("forged", &forged)] {
        write("jwt", name, t.as_bytes());
    }
    write("jwt", "jwks", portcullis_fuzz::decide::JWKS.as_bytes());
    write("jwt", "none-alg", b"eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0In0.");
    tokens
}

/// The `decide` and `headers` targets' seeds: requests with each credential, a preflight,
/// forwarded-for chains, a sign-in callback, underscore header names.
fn request_seeds(Tokens { rsa, ec, ed }: &Tokens) {
    let requests: Vec<(&str, String)> = vec![
        ("get-cookie", format!("GET\n/api/items?x=1\nhost: api.mysite.com\ncookie: a=b; CF_Authorization={rsa}; c=d\n")),
        ("get-header", format!("GET\n/\nhost: api.mysite.com\ncf-access-jwt-assertion: {ec}\norigin: https://example.com\n")),
        ("bearer", format!("POST\n/x\nhost: x.apps.mysite.com\nauthorization: Bearer {ed}\n")),
        ("service-token", "GET\n/\nhost: api.mysite.com\ncf-access-client-id: ci.access\ncf-access-client-secret: fuzz-secret\n".into()),
        ("preflight", "OPTIONS\n/data\nhost: api.mysite.com\norigin: https://x.example.org\naccess-control-request-method: POST\naccess-control-request-headers: office, content-type\n".into()),
        ("xff", "GET\n/public/x\nhost: api.mysite.com\nx-forwarded-for: 203.0.113.9, 10.1.2.3\nx-forwarded-for: [2001:db8::1]:80\n".into()),
        ("callback", "GET\n/.portcullis/callback?code=abc&state=def\nhost: api.mysite.com\ncookie: portcullis_login=x\n".into()),
        ("underscores", "GET\n/\nhost: api.mysite.com\ncf_access_jwt_assertion: x\nx_y: z\n".into()),
    ];
    for (name, r) in &requests {
        write("decide", name, r.as_bytes());
        write("headers", name, r.as_bytes());
    }
}

/// The `manifests` target's seeds: the decide seed's manifests (with the JWKS inlined), the
/// examples, a JSON manifest. Returns the decide seed's compiled snapshot.
fn manifest_seeds() -> portcullis_crds::snapshot::Snapshot {
    let seed_yaml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/decide.yaml")).expect("yaml");
    let indented: String = portcullis_fuzz::decide::JWKS.lines().map(|l| format!("          {l}\n")).collect();
    let seed_yaml = seed_yaml.replace("          JWKS\n", &indented);
    write("manifests", "decide", seed_yaml.as_bytes());
    for example in ["quickstart", "sign-in"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{example}/access.yaml"));
        write("manifests", example, &std::fs::read(path).expect("example manifests"));
    }
    let json = serde_json::to_vec(&serde_json::json!({"apiVersion": "access.portcullis.dev/v1alpha1",
        "kind": "AccessApplication", "metadata": {"name": "j", "namespace": "n"},
        "spec": {"domains": ["j.test"], "policies": [{"name": "all", "action": "Bypass", "include": [{"everyone": true}]}]}}))
    .expect("json");
    write("manifests", "json", &json);
    let mut res = portcullis_crds::manifests::Resources::default();
    res.add_yaml("seed", &seed_yaml).expect("seed parses");
    res.compile("default").expect("seed compiles").snapshot
}

/// The `push` target's seeds (see fuzz/src/push.rs for the mode byte): an envelope sealed to a
/// boot of the seed writer (mode 0: verifies, then refused as stale_boot), `snapshot` to seal
/// (mode 1), and envelope fields to sign (mode 2).
fn push_seeds(snapshot: portcullis_crds::snapshot::Snapshot) {
    let target = portcullis_crds::push::PushTarget { namespace: "shop".into(), pod: "api-0".into() };
    let boot = portcullis_crds::push::BootKey::generate().expect("boot").info(&target);
    let push = portcullis_crds::push::ConfigPush { sequence: 7, target, issued_at: 1_899_999_000, snapshot };
    let signing = portcullis_crds::push::SigningKey::from_pem(portcullis_fuzz::push::KEY_PEM).expect("signing key");
    let sealed = signing.seal(&push, &boot).expect("seal");
    let envelope = serde_json::to_vec(&sealed).expect("envelope");
    write("push", "envelope", &[&[0u8][..], &envelope].concat());
    write("push", "snapshot", &[&[1u8][..], &serde_json::to_vec(&push.snapshot).expect("snapshot")].concat());
    write("push", "fields", &[&[2u8][..], &envelope].concat());
    write("push", "old-format", b"\x00{\"payload\":\"e30=\",\"signature\":\"AAAA\",\"key_id\":\"x\"}");
}

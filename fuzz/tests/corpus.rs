//! Replays the committed corpus (`fuzz/corpus/<target>/`: the seeds and every input a fuzzing
//! run kept or crashed on) through each target, as an ordinary stable `cargo test` on every CI
//! run. A target without corpus fails: an emptied directory must not look like a pass.

use std::path::{Path, PathBuf};

use portcullis_fuzz::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

#[test]
fn every_corpus_input_passes_its_target() {
    for (target, run) in TARGETS {
        let dir = corpus_dir(target);
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 3, "{target}: only {} corpus inputs in {}", inputs.len(), dir.display());
        for input in &inputs {
            let data = std::fs::read(input).expect("read corpus input");
            // A panic names the input, so a regression points at the file to debug with.
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{target}: {} fails its target", input.display());
        }
        println!("{target}: {} inputs replayed", inputs.len());
    }
}

/// The seeds get past the first checks (a valid token verifies, a signed envelope verifies,
/// the seed manifests compile), so the fuzzer starts deep rather than at the parsers' doors.
#[test]
fn seeds_reach_past_the_first_checks() {
    let read = |target: &str, name: &str| std::fs::read(corpus_dir(target).join(format!("seed-{name}"))).expect("seed");
    let app = &portcullis_fuzz::decide::harness().apps[0];
    let token = String::from_utf8(read("jwt", "rsa")).expect("utf-8");
    let user = app.jwt.authenticate(&token, &app.keys, portcullis_fuzz::jwt::NOW).expect("the seed token verifies");
    assert_eq!(user.email.as_deref(), Some("alice@mysite.com"));
    let forged = String::from_utf8(read("jwt", "forged")).expect("utf-8");
    assert!(app.jwt.authenticate(&forged, &app.keys, portcullis_fuzz::jwt::NOW).is_err());

    let envelope = read("push", "envelope");
    let key = portcullis_crds::push::SigningKey::from_pem(portcullis_fuzz::push::KEY_PEM).expect("key");
    portcullis_crds::push::verify(&envelope[1..], &[key.verifying_key()]).expect("the seed envelope verifies");

    let yaml = String::from_utf8(read("manifests", "decide")).expect("utf-8");
    let mut res = portcullis_crds::manifests::Resources::default();
    res.add_yaml("seed", &yaml).expect("parses");
    res.compile("default").expect("the seed manifests compile");
}

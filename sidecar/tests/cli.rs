//! The binary's command line: help, version, and clear refusals of bad flags.
//! (Also makes `cargo test` build the binary that the end-to-end tests in tests/ run.)

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis-sidecar"))
}

#[test]
fn help_lists_the_contract_flags() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--manifests", "--listen", "--upstream", "--admin-listen", "--trusted-proxies"] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn bad_flags_exit_non_zero_with_a_message_naming_the_flag() {
    for (args, needle) in [
        (vec!["--listen", "8080"], "--listen"),
        (vec!["--upstream", "ftp://x"], "--upstream"),
        (vec!["--trusted-proxies", "10.0.0.0/99"], "--trusted-proxies"),
        (vec!["--log", "[bad"], "--log"),
    ] {
        let out = bin().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn a_taken_port_is_a_clear_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bin().args(["--listen", &addr, "--admin-listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

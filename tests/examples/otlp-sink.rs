//! The tests' OTLP/gRPC receiver as a process, for `bench/traces.sh`: listens on
//! `127.0.0.1:<PORT>`, prints `listening`, and on SIGTERM or SIGINT prints how many spans it
//! received. Usage: otlp-sink PORT

use portcullis_tests::OtlpReceiver;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "4317".to_owned());
    let rx = OtlpReceiver::start_on(&format!("127.0.0.1:{port}")).await;
    println!("listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("received {} spans", rx.spans().len());
}

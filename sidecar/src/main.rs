//! `portcullis-sidecar`: parse flags, set up logging, run until SIGTERM/SIGINT, drain, exit.
//! `authz` serves the same way, as the external authorizer of another proxy.
//! The `explain` and `doctor cors` subcommands run once and exit: 0 when the request would be
//! served (or the CORS setup works), 1 when not, 2 on a usage or configuration error.

use std::process::ExitCode;

use clap::Parser;
use portcullis_sidecar::cli::{Args, Command, DoctorCommand, LogFormat};
use portcullis_sidecar::run::Role;
use portcullis_sidecar::{doctor, explain};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    let (role, args) = match args.command.clone() {
        Some(Command::Authz(authz)) => match authz.serving() {
            Ok(args) => (Role::Authorizer, args),
            Err(e) => e.exit(),
        },
        Some(command) => return run_once(command),
        None => (Role::Sidecar, args),
    };
    match serve(role, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

/// `explain` / `doctor cors`: one answer on stdout, problems on stderr.
fn run_once(command: Command) -> ExitCode {
    // JWKS fetch warnings go to stderr; the answer stays alone on stdout.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_ansi(stderr_is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let (text, ok) = match command {
        Command::Explain(args) => match runtime.block_on(explain::command::run(&args)) {
            Ok(e) => (explain::command::render(&e, args.request.output), e.served()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        Command::Doctor(DoctorCommand::Cors(args)) => match runtime.block_on(doctor::run::run(&args)) {
            Ok(report) => (report.render_text(), report.ok()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        // main() serves `authz` itself; this arm only keeps the match exhaustive.
        Command::Authz(_) => {
            eprintln!("error: `authz` serves; it is not a one-shot command");
            return ExitCode::from(2);
        }
    };
    print!("{text}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn serve(role: Role, args: Args) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log).map_err(|e| anyhow::anyhow!("--log {:?}: {e}", args.log))?;
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .init(),
        // Colour codes only for a person at a terminal: `kubectl logs` and log shippers would
        // show them as escape sequences (api.md, "Standalone").
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(stderr_is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    // One worker: a current-thread runtime does the same work without the work-stealing
    // scheduler's cross-thread bookkeeping (measurably cheaper per request).
    let mut runtime = match args.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async move {
        portcullis_sidecar::run::run_as(role, args, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}

fn stderr_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

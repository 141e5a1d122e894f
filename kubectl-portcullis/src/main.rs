//! `kubectl-portcullis` (run as `kubectl portcullis …`): `explain -n NS APP --url …` against the
//! cluster's resources, and `doctor cors …` (no cluster needed). Exit status: 0 served / works,
//! 1 refused / broken, 2 usage, permission or configuration error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_sidecar::cli::{DoctorCommand, RequestArgs};
use portcullis_sidecar::explain::command::{live_from_snapshot, options_from_args, render, request_from_args};
use portcullis_sidecar::{doctor, explain};

/// Portcullis from kubectl: explain a request against an AccessApplication; diagnose CORS.
#[derive(Parser, Debug)]
#[command(name = "kubectl-portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Explain what the sidecars of APP would do with a request (no request is sent).
    Explain {
        /// The application's namespace (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// The AccessApplication's name.
        app: String,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Diagnose a running deployment from outside.
    #[command(subcommand)]
    Doctor(DoctorCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(anyhow::anyhow!("cannot start the runtime: {e}")),
    };
    let result = match cli.command {
        Cmd::Explain { namespace, app, request } => runtime.block_on(explain_in_cluster(namespace, &app, &request)),
        Cmd::Doctor(DoctorCommand::Cors(args)) => {
            runtime.block_on(doctor::run::run(&args)).map(|r| (r.render_text(), r.ok())).map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok((text, ok)) => {
            print!("{text}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}

async fn explain_in_cluster(
    namespace: Option<String>,
    app: &str,
    request: &RequestArgs,
) -> anyhow::Result<(String, bool)> {
    let client = kube::Client::try_default().await?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    let mut fetched = kubectl_portcullis::fetch(client, &namespace, app).await?;
    let snapshot = fetched.compile(&namespace)?;
    for w in &fetched.warnings {
        eprintln!("warning: {w}");
    }
    let live = live_from_snapshot(snapshot).await?;
    let mut options = options_from_args(request);
    options.secrets_unavailable = fetched.secrets_unavailable;
    let e = explain::explain(&live, &request_from_args(request), &options)?;
    Ok((render(&e, request.output), e.served()))
}

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

use aws_secrets_csi::commands::{self, CheckArgs, CrdsArgs, DiagnoseArgs, MountArgs, ServeArgs};
use aws_secrets_csi::telemetry::{self, LogFormat};

/// CSI node driver that mounts AWS Secrets Manager and SSM Parameter Store
/// values into pods, from SecretProviderClass manifests.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format (RUST_LOG sets the level).
    #[arg(long, global = true, env = "LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Log how long each step of each publish took (class, token proof,
    /// credentials, fetch, write, status), as the step ends.
    #[arg(long, global = true, env = "LOG_STEP_TIMES")]
    log_step_times: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve CSI Identity and Node on a unix socket (the DaemonSet).
    Serve(Box<ServeArgs>),
    /// Validate a SecretProviderClass offline and list its files.
    Check(CheckArgs),
    /// Fetch a SecretProviderClass's objects into a directory, without Kubernetes.
    Mount(MountArgs),
    /// Keep Kubernetes Secrets in sync from External Secrets manifests
    /// (SecretStore, ClusterSecretStore, ExternalSecret), with leader election.
    Controller(aws_secrets_csi::controller::ControllerArgs),
    /// Walk what a publish for a pod would do, against the cluster and AWS,
    /// writing nothing; each step OK or its cause and fix.
    Diagnose(DiagnoseArgs),
    /// Print the External Secrets CRDs (ExternalSecret, SecretStore,
    /// ClusterSecretStore, ClusterExternalSecret), generated from the types
    /// the controller reads: `aws-secrets-csi crds | kubectl apply --server-side -f -`.
    Crds(CrdsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The AWS SDK logs request bodies (which hold web-identity tokens) at
    // trace level when this is set; this process must never do that, and
    // it refuses rather than unset it (that would need unsafe code).
    if std::env::var_os("LOG_SIGNABLE_BODY").is_some() {
        eprintln!(
            "error: LOG_SIGNABLE_BODY is set: the AWS SDK would log request bodies, which carry web-identity tokens; unset it"
        );
        return std::process::ExitCode::FAILURE;
    }
    // The node server reports everything; `check` and `mount` say what went
    // wrong in their error, without pages of the SDK's credential-chain and
    // instance-metadata warnings.
    let default_filter = match cli.command {
        Command::Serve(_) | Command::Controller(_) => "info",
        _ => "info,aws_config=off,aws_smithy_runtime=off",
    };
    telemetry::init(cli.log_format, default_filter, cli.log_step_times);
    // One TLS crypto provider for both the AWS SDK and kube (two would panic).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The work is waiting on AWS, the API server and small file writes: two
    // workers serve a node's pods, whatever its size (tokio's default of one
    // per core would give a 96-core node 96 threads, each with its own
    // stack and malloc arena, for nothing). The blocking threads do tmpfs
    // mounts, writes of a few KiB and the DNS lookups of new AWS
    // connections: with eight instead of 64, waves of 50 publishes were no
    // slower and left fewer stacks and malloc arenas holding memory; four
    // were slower (docs/benchmarks.md).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Serve(args) => commands::serve(args).await,
            Command::Check(args) => commands::check(args),
            Command::Mount(args) => commands::mount(args).await,
            Command::Diagnose(args) => commands::diagnose(args).await,
            Command::Controller(args) => aws_secrets_csi::controller::run(args).await,
            Command::Crds(args) => commands::crds(args),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Our errors already carry their causes in their text.
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

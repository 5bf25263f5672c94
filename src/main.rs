//! The `tritonrs` binary; install or link it as `tritonserver` and launch
//! commands written for Triton work unchanged.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use tritonrs::{cli, server};

fn main() -> ExitCode {
    let command_line = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(error) => error.exit(),
    };
    init_logging(command_line.args.log_verbose);
    for warning in &command_line.warnings {
        tracing::warn!("{warning}");
    }
    for note in &command_line.notes {
        tracing::info!("{note}");
    }
    let args = command_line.args;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let worker_threads = args.frontend_threads(cores);
    tracing::info!("{worker_threads} frontend thread(s) on {cores} core(s)");
    // One frontend thread gets tokio's single-threaded scheduler: it runs
    // tasks in the order they were woken, which the gRPC frontend uses to
    // write the answers of a batch a few at a time (`grpc::answer_pacing`).
    let mut builder = if worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let exit = runtime.block_on(server::run(args));
    // `server::run` has waited for what it must, up to --exit-timeout-secs;
    // dropping the runtime would wait on without limit for a blocking task
    // (a model instance still finishing a batch).
    runtime.shutdown_background();
    exit
}

/// `RUST_LOG` wins when set; otherwise `--log-verbose` picks the level.
fn init_logging(verbose: u32) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let default = format!("{level},h2=info,hyper=info,tower=info,ort=warn");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal; container logs stay plain.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

//! The `tritonrs` binary; install or link it as `tritonserver` and launch
//! commands written for Triton work unchanged.

use std::process::ExitCode;

use tritonrs::logging::{self, LogSettings};
use tritonrs::{cli, server};

/// mimalloc rather than glibc's malloc: see its entry in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command_line = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(error) => error.exit(),
    };
    let args = &command_line.args;
    let settings = LogSettings {
        file: args.log_file.as_ref().map(|path| path.display().to_string()).unwrap_or_default(),
        info: args.log_info,
        warning: args.log_warning,
        error: args.log_error,
        verbose_level: args.log_verbose,
        format: args.log_format,
    };
    let log_control = match logging::init(settings, args.log_file.clone()) {
        Ok(control) => control,
        Err(reason) => {
            eprintln!("tritonserver: {reason}");
            return ExitCode::FAILURE;
        }
    };
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
    let exit = runtime.block_on(server::run(args, log_control));
    // `server::run` has waited for what it must, up to --exit-timeout-secs;
    // dropping the runtime would wait on without limit for a blocking task
    // (a model instance still finishing a batch).
    runtime.shutdown_background();
    exit
}

//! What every sidecar binary does first, in one place: logs to stderr filtered by `RUST_LOG`, core
//! dumps off in processes that hold secrets, and the config file named on the command line (or the
//! defaults), refused with exit 2 and the file's own error.

use std::{
    fmt,
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// Logs to stderr, filtered by `RUST_LOG`, else by `default_filter`; colours only on a terminal.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Keeps this process's memory (the secrets it holds) out of core dumps and out of ptrace by other
/// processes of its uid (`PR_SET_DUMPABLE` 0); a refusal is logged (once logging is set up), not
/// fatal.
pub fn disable_core_dumps() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("could not disable core dumps: {e}");
    }
}

/// The config at `path` read by `load`, or the defaults without a path. A file that cannot be
/// used is printed as `program: <its error>` and gives exit status 2.
pub fn load_config<C: Default, E: fmt::Display>(
    program: &str,
    path: Option<&Path>,
    load: impl FnOnce(&Path) -> Result<C, E>,
) -> Result<C, ExitCode> {
    match path {
        Some(path) => load(path).map_err(|e| {
            eprintln!("{program}: {e}");
            ExitCode::from(2)
        }),
        None => Ok(C::default()),
    }
}

/// Runs `main` to completion on a current-thread tokio runtime (the async sidecars' whole life).
/// A failure, starting the runtime included, is logged and printed once as `program: <error>`
/// and returned, for the caller to pick the exit status.
pub fn run_async(program: &str, main: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(main));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
        eprintln!("{program}: {e:#}");
    }
    result
}

/// A flag raised by SIGTERM or SIGINT. Call it inside the runtime of [`run_async`].
pub fn stop_flag() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for kind in [tokio::signal::unix::SignalKind::terminate(), tokio::signal::unix::SignalKind::interrupt()] {
        let mut signal = tokio::signal::unix::signal(kind)?;
        let stop = stop.clone();
        tokio::spawn(async move {
            signal.recv().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    Ok(stop)
}

//! `qilin-mirror`: rebuilds a qilin segment on this host from the feed's NATS JetStream stream,
//! with the feed's sequences and epoch, for the unchanged readers (docs/DISTRIBUTION.md).
//!
//! Exit codes: 0 stopped on SIGTERM/SIGINT; 1 failed; 2 bad configuration; 3 the stream's input
//! was refused (another layout, a segment of another feed session): restarting will not help.
//! Secrets come from the environment or secret files, as for qilin-nats.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use clap::Parser;
use qilin_sidecar::mirror::{Config, Refused, run};

/// Rebuilds a qilin segment from the feed's JetStream stream.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML); see config/mirror.example.toml. Without it the defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Segment to write (overrides `segment`).
    #[arg(long)]
    segment: Option<PathBuf>,
    /// NATS server URL (overrides `nats.urls`; repeat for several).
    #[arg(long = "url")]
    urls: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("could not disable core dumps: {e}");
    }
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("qilin-mirror: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(segment) = args.segment {
        config.segment = segment;
    }
    if !args.urls.is_empty() {
        config.nats.urls = args.urls;
    }
    if let Err(e) = config.validate("command line") {
        eprintln!("qilin-mirror: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qilin-mirror: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let result = runtime.block_on(async {
        for kind in [tokio::signal::unix::SignalKind::terminate(), tokio::signal::unix::SignalKind::interrupt()] {
            let mut signal = tokio::signal::unix::signal(kind)?;
            let stop = stop.clone();
            tokio::spawn(async move {
                signal.recv().await;
                stop.store(true, Ordering::Relaxed);
            });
        }
        run(config, stop.clone()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("qilin-mirror: {e:#}");
            if e.chain().any(|c| c.downcast_ref::<Refused>().is_some()) { ExitCode::from(3) } else { ExitCode::FAILURE }
        }
    }
}

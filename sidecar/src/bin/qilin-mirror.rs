//! `qilin-mirror`: rebuilds a qilin segment on this host from the feed's NATS JetStream stream,
//! with the feed's sequences and epoch, for the unchanged readers (docs/DISTRIBUTION.md).
//!
//! Exit codes: 0 stopped on SIGTERM/SIGINT; 1 failed; 2 bad configuration; 3 the stream's input
//! was refused (another layout, a segment of another feed session): restarting will not help.
//! Secrets come from the environment or secret files, as for qilin-nats.

use std::{path::PathBuf, process::ExitCode};

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
    qilin_sidecar::process::init_logging("info,async_nats=warn");
    qilin_sidecar::process::disable_core_dumps();
    let args = Args::parse();
    let mut config = match qilin_sidecar::process::load_config("qilin-mirror", args.config.as_deref(), Config::load) {
        Ok(config) => config,
        Err(code) => return code,
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
    let result = qilin_sidecar::process::run_async("qilin-mirror", async {
        let stop = qilin_sidecar::process::stop_flag()?;
        run(config, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| c.downcast_ref::<Refused>().is_some()) => ExitCode::from(3),
        Err(_) => ExitCode::FAILURE,
    }
}

//! `qilin-nats`: publishes every tick of a qilin segment to NATS (core NATS or JetStream).
//!
//! Secrets come from the environment (`NATS_PASSWORD`, `NATS_TOKEN`, `NATS_NKEY_SEED`,
//! `NATS_CREDS_FILE`) or from secret files named in the config, never from the command line.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use clap::Parser;
use qilin_shm::Reader;
use qilin_sidecar::{
    nats::{Config, Sidecar, Starting},
    recorder::SegmentFile,
};

/// Publishes every tick of a qilin segment to NATS.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML); see config/nats.example.toml. Without it the defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Segment to read (overrides `segment`).
    #[arg(long)]
    segment: Option<PathBuf>,
    /// Instance name (overrides `name`).
    #[arg(long)]
    name: Option<String>,
    /// NATS server URL (overrides `nats.urls`; repeat for several).
    #[arg(long = "url")]
    urls: Vec<String>,
    /// Directory of the cursor file (overrides `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    qilin_sidecar::process::init_logging("info,async_nats=warn");
    // Secrets live in this process: keep them out of core dumps.
    qilin_sidecar::process::disable_core_dumps();
    let args = Args::parse();
    let mut config = match qilin_sidecar::process::load_config("qilin-nats", args.config.as_deref(), Config::load) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(segment) = args.segment {
        config.segment = segment;
    }
    if let Some(name) = args.name {
        config.name = name;
    }
    if !args.urls.is_empty() {
        config.nats.urls = args.urls;
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if let Err(e) = config.validate("command line") {
        eprintln!("qilin-nats: {e}");
        return ExitCode::from(2);
    }
    match qilin_sidecar::process::run_async("qilin-nats", run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let stop = qilin_sidecar::process::stop_flag()?;
    // The status file from the first moment: waiting for the segment, then for NATS.
    let starting = Starting::begin(&config);
    let started = async {
        let (reader, file) = open_segment(&config, &stop, &starting).await?;
        tracing::info!(
            "reading feed {:?} from {} (epoch {}, newest sequence {})",
            reader.feed_name(),
            reader.path().display(),
            reader.epoch(),
            reader.write_cursor()
        );
        Sidecar::start_reporting(config.clone(), reader, file, &stop, &starting).await
    };
    let mut sidecar = match started.await {
        Ok(sidecar) => sidecar,
        Err(e) => {
            starting.failed(&format!("{e:#}"));
            return Err(e);
        }
    };
    sidecar.run(&stop, None).await?;
    tracing::info!("stopped at sequence {}", sidecar.confirmed());
    Ok(())
}

/// Waits for the segment to appear (the sidecar may start before the core); returns the reader
/// and the identity of the file it mapped (to notice a segment re-created under the same path).
async fn open_segment(
    config: &Config,
    stop: &AtomicBool,
    starting: &Starting,
) -> anyhow::Result<(Reader, SegmentFile)> {
    let mut told = false;
    loop {
        match SegmentFile::open(&config.segment) {
            Ok(Ok(opened)) => return Ok(opened),
            Ok(Err(reason)) => {
                if !told {
                    tracing::warn!("{reason}; waiting for the core");
                    told = true;
                }
                starting.waiting_for_segment(&reason);
            }
            Err(e) => anyhow::bail!("segment {}: {e}", config.segment.display()),
        }
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!("stopped while waiting for segment {}", config.segment.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

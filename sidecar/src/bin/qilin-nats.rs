//! `qilin-nats`: publishes every tick of a qilin segment to NATS (core NATS or JetStream).
//!
//! Secrets come from the environment (`NATS_PASSWORD`, `NATS_TOKEN`, `NATS_NKEY_SEED`,
//! `NATS_CREDS_FILE`) or from secret files named in the config, never from the command line.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Secrets live in this process: keep them out of core dumps.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("could not disable core dumps: {e}");
    }
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("qilin-nats: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
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
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qilin-nats: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("qilin-nats: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for kind in [tokio::signal::unix::SignalKind::terminate(), tokio::signal::unix::SignalKind::interrupt()] {
        let mut signal = tokio::signal::unix::signal(kind)?;
        let stop = stop.clone();
        tokio::spawn(async move {
            signal.recv().await;
            stop.store(true, Ordering::Relaxed);
        });
    }
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

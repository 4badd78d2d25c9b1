//! `qilin-recorder`: journals every tick of a qilin segment to `<journal_dir>/<feed>-<YYYYMMDD>.qj`.
//!
//! SIGTERM or SIGINT: the buffered block is written and fsynced, the status file updated, exit 0.
//! A SIGKILL loses nothing either: the next start resumes from the journal's last whole block.
//! With `[[audit_anchor]]` it is also the witness of those audit logs, from its start on (before
//! the segment exists): see `recorder/audit_anchor.rs`.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use qilin_shm::Reader;
use qilin_sidecar::{
    metrics::{Exporter, LatencyHistograms, MetricsServer},
    recorder::{AuditAnchors, Config, Recorder, SegmentFile},
};

/// Journals every tick of a qilin segment to disk, one file per trading day.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML); see config/recorder.example.toml. Without it the defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Segment to read (overrides `segment`).
    #[arg(long)]
    segment: Option<PathBuf>,
    /// Instance name (overrides `name`).
    #[arg(long)]
    name: Option<String>,
    /// Directory of the journal files (overrides `journal_dir`).
    #[arg(long)]
    journal_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    // It may hold the audit-signing key ([[audit_anchor]] key_file): keep it out of core dumps.
    qilin_sidecar::process::disable_core_dumps();
    qilin_sidecar::process::init_logging("info");
    let args = Args::parse();
    let mut config = match qilin_sidecar::process::load_config("qilin-recorder", args.config.as_deref(), Config::load) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(segment) = args.segment {
        config.segment = segment;
    }
    if let Some(name) = args.name {
        config.name = name;
    }
    if let Some(dir) = args.journal_dir {
        config.journal_dir = dir;
    }
    if let Err(e) = config.validate("command line") {
        eprintln!("qilin-recorder: {e}");
        return ExitCode::from(2);
    }
    let stop = match stop_on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("qilin-recorder: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(config, stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("qilin-recorder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks SIGTERM and SIGINT in every thread and waits for them in a thread of their own, which
/// sets the returned flag (no signal handler, so no unsafe code).
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Ok(signal) = set.wait() {
            tracing::info!("{signal}: stopping");
        }
        flag.store(true, Ordering::Relaxed);
    })?;
    Ok(stop)
}

fn run(config: Config, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    // The audit logs are witnessed whether or not the segment is there: started first, stopped last.
    let anchors = AuditAnchors::start(&config.audit_anchor, config.audit_anchor_interval_ms, stop.clone())
        .context("starting the audit-anchor thread")?;
    let result = record(config, &stop, &anchors);
    stop.store(true, Ordering::Relaxed);
    anchors.join();
    result
}

fn record(config: Config, stop: &AtomicBool, anchors: &AuditAnchors) -> anyhow::Result<()> {
    let (reader, file) = open_segment(&config, stop)?;
    tracing::info!(
        "reading feed {:?} from {} (epoch {}, newest sequence {}); journal in {}",
        reader.feed_name(),
        reader.path().display(),
        reader.epoch(),
        reader.write_cursor(),
        config.journal_dir.display()
    );
    let metrics = config.metrics.clone();
    let feed = reader.feed_name();
    let segment = config.segment.clone();
    let config_anchors_empty = config.audit_anchor.is_empty();
    let mut recorder = Recorder::start(config, reader)?;
    recorder.watch_segment(file);
    if !config_anchors_empty {
        recorder.show_audit_anchors(anchors.stats());
    }
    let _server = if metrics.enabled {
        let latency = Arc::new(LatencyHistograms::new());
        recorder.record_latency(latency.clone());
        let exporter = Exporter::new(feed, segment, &metrics).with_journal(recorder.stats()).with_latency(latency);
        // Journaling matters more than its metrics: a taken port is an error, not a stop (the
        // "metrics down" alert fires on the missing scrape target).
        match MetricsServer::start(&metrics, exporter) {
            Ok(server) => {
                tracing::info!("metrics on http://{}/metrics (/healthz, /readyz)", server.local_addr());
                Some(server)
            }
            Err(e) => {
                tracing::error!("metrics server not started: {e}; journaling goes on without it");
                None
            }
        }
    } else {
        None
    };
    recorder.run(stop)?;
    tracing::info!("stopped at sequence {}", recorder.position());
    Ok(())
}

/// Waits for the segment to appear (the recorder may start before the core). Returns the reader
/// and the identity of the file it mapped (to notice a segment re-created under the same path).
fn open_segment(config: &Config, stop: &AtomicBool) -> anyhow::Result<(Reader, SegmentFile)> {
    let mut told = false;
    loop {
        match SegmentFile::open(&config.segment) {
            Ok(Ok(opened)) => return Ok(opened),
            Ok(Err(reason)) if !told => {
                tracing::warn!("{reason}; waiting for the core");
                told = true;
            }
            Ok(Err(_)) => {}
            Err(e) => anyhow::bail!("segment {}: {e}", config.segment.display()),
        }
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!("stopped while waiting for segment {}", config.segment.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

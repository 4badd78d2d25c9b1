//! `qilin-bars`: bars from the ticks of a qilin segment (1, 5, 15, 30, 60 minutes and the trading
//! day), session-aware, published to JetStream exactly once on `<prefix>.bar.<period>.<EX>.<ID>`.
//! The rules are in `qilin_sidecar::bars` and docs/BARS.md.

use std::{path::PathBuf, process::ExitCode, sync::atomic::Ordering, time::Duration};

use clap::Parser;
use qilin_sidecar::bars::{Config, Driver};

/// Builds bars from the ticks of a qilin segment and publishes them to NATS JetStream.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Config file (TOML); see config/bars.example.toml. Without it the defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Segment to read (overrides `segment`).
    #[arg(long)]
    segment: Option<PathBuf>,
    /// NATS server URL (overrides `nats.urls`; repeat for several).
    #[arg(long = "url")]
    urls: Vec<String>,
    /// Directory of the cursor file (overrides `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Offline: build the bars of this journal directory (the recorder's) and print them as JSON
    /// lines, byte for byte the bodies qilin-bars publishes; no segment, no NATS.
    #[arg(long, requires = "feed")]
    replay_journal: Option<PathBuf>,
    /// With --replay-journal: the feed whose journal files to read.
    #[arg(long)]
    feed: Option<String>,
    /// With --replay-journal: the first trading day (YYYYMMDD) to read; default every file.
    #[arg(long, default_value_t = 0)]
    from_day: u32,
}

fn main() -> ExitCode {
    qilin_sidecar::process::init_logging("info,async_nats=warn");
    qilin_sidecar::process::disable_core_dumps();
    let args = Args::parse();
    let mut config = match qilin_sidecar::process::load_config("qilin-bars", args.config.as_deref(), Config::load) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(segment) = args.segment {
        config.segment = segment;
    }
    if !args.urls.is_empty() {
        config.nats.urls = args.urls;
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if let Err(e) = config.validate("command line") {
        eprintln!("qilin-bars: {e}");
        return ExitCode::from(2);
    }
    if let (Some(dir), Some(feed)) = (&args.replay_journal, &args.feed) {
        return match replay(&config, dir, feed, args.from_day) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("qilin-bars: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match qilin_sidecar::process::run_async("qilin-bars", run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// `--replay-journal`: every bar of the journal as a JSON line on stdout, the ones still open at
/// its end included.
fn replay(config: &Config, dir: &std::path::Path, feed: &str, from_day: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let market = qilin_market::Market::find(Some(&config.instruments_file))
        .map_err(|e| anyhow::anyhow!(e))?
        .ok_or_else(|| anyhow::anyhow!("product table {} not found", config.instruments_file.display()))?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = None;
    let builder = qilin_sidecar::bars::replay::journal_bars(
        qilin_sidecar::bars::Builder::new(market, &config.periods(), config.close_delay_ms),
        dir,
        feed,
        from_day..=u32::MAX,
        qilin_sidecar::journal_keys(&config.journal_key_files)?,
        false,
        |bar| {
            if failed.is_none()
                && let Err(e) = stdout.write_all(&bar.to_json()).and_then(|()| stdout.write_all(b"\n"))
            {
                failed = Some(e);
            }
        },
    )?;
    if let Some(e) = failed {
        anyhow::bail!("writing to stdout: {e}");
    }
    stdout.flush()?;
    let c = builder.counters();
    eprintln!(
        "qilin-bars: {} ticks, {} used, {} stale, {} outside, {} late; {} bars",
        c.ticks, c.used, c.stale, c.outside, c.late, c.bars
    );
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let stop = qilin_sidecar::process::stop_flag()?;
    let reader = loop {
        match qilin_sidecar::open_segment(&config.segment) {
            Ok(Ok(reader)) => break reader,
            Ok(Err(reason)) => tracing::debug!("{reason}; waiting for the core"),
            Err(e) => anyhow::bail!("segment {}: {e}", config.segment.display()),
        }
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!("stopped while waiting for segment {}", config.segment.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tracing::info!("reading feed {:?} from {}", reader.feed_name(), reader.path().display());
    let (mut driver, mut reader) = Driver::start(config, reader, &stop).await?;
    driver.run(&mut reader, &stop).await
}

//! `qilin-core`: the feed process. With no arguments it runs the built-in simulator into
//! `/dev/shm/qilin`; `--demo` also prints what a reader sees, once a second.

use std::{
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use clap::Parser;
use qilin_audit::AuditLog;
use qilin_core::{
    config::{Config, SourceKind},
    control::{ControlServer, Listed, SessionControl},
    engine::{Command, Engine, EngineOptions, Event, Input},
    handoff::handoff,
    session::{
        Fronts, Links,
        manager::{Manager, Msg},
        sim::SimFronts,
    },
    sim::Simulator,
    udp::UdpBound,
};
use qilin_market::{Calendar, Date, Instruments};
use qilin_shm::{SegmentOptions, Source, Writer};

/// qilin-core: CTP depth market data → normalized ticks in a shared-memory segment.
///
/// Runs the built-in simulator by default (no external service needed). Every option below
/// overrides the same key of the configuration file.
#[derive(Debug, Parser)]
#[command(version, after_help = "Example: qilin-core --demo   (simulator, prints ticks as a reader sees them)")]
struct Args {
    /// TOML configuration file (see config/core.example.toml); defaults apply without one.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Tick source [config: source.kind].
    #[arg(long, value_enum)]
    source: Option<SourceKind>,
    /// Segment file [config: feed.segment_path; default /dev/shm/<feed name>].
    #[arg(long)]
    segment: Option<PathBuf>,
    /// Feed name [config: feed.name].
    #[arg(long)]
    feed: Option<String>,
    /// CPU to pin the hot thread to [config: core.cpu].
    #[arg(long)]
    cpu: Option<usize>,
    /// Control socket path [config: core.control_socket].
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// UDP bind address, e.g. 0.0.0.0:7400 [config: source.udp.bind].
    #[arg(long)]
    udp_bind: Option<std::net::SocketAddr>,
    /// Simulator total ticks per second; 0 = real 500 ms cadence [config: source.sim.ticks_per_second].
    #[arg(long)]
    sim_rate: Option<u64>,
    /// Simulator: stop producing after this many ticks [config: source.sim.max_ticks].
    #[arg(long)]
    sim_max_ticks: Option<u64>,
    /// Replay this journal file or directory (implies --source replay) [config: source.replay.path].
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Replay pace: 0 = as fast as possible, 1.0 = original speed [config: source.replay.speed].
    #[arg(long)]
    replay_speed: Option<f64>,
    /// Encrypted journals: a `qilinctl keys render-key journal-encryption` file; repeat for each
    /// key version the journal needs [config: source.replay.key_files].
    #[arg(long = "replay-key-file")]
    replay_key_files: Vec<PathBuf>,
    /// Print, once a second, the rate and the latest ticks as a reader of the segment sees them.
    #[arg(long)]
    demo: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The core holds the CTP passwords once they are handed over: no core dump of it, and no
    // ptrace by other processes of its uid (its unit also sets LimitCORE=0).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not disable core dumps (PR_SET_DUMPABLE)");
    }
    let args = Args::parse();
    let config = load_config(&args)?;
    run(config, args.demo)
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let (mut config, file) = match &args.config {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None => (Config::default(), "<defaults>".to_string()),
    };
    if let Some(v) = args.source {
        config.source.kind = v;
    }
    if let Some(v) = &args.segment {
        config.feed.segment_path = Some(v.clone());
    }
    if let Some(v) = &args.feed {
        config.feed.name = v.clone();
    }
    if let Some(v) = args.cpu {
        config.core.cpu = Some(v);
    }
    if let Some(v) = &args.control_socket {
        config.core.control_socket = Some(v.clone());
    }
    if let Some(v) = args.udp_bind {
        config.source.udp.bind = v;
    }
    if let Some(v) = args.sim_rate {
        config.source.sim.ticks_per_second = v;
    }
    if let Some(v) = args.sim_max_ticks {
        config.source.sim.max_ticks = v;
    }
    if let Some(v) = &args.replay {
        config.source.kind = SourceKind::Replay;
        config.source.replay.path = v.clone();
    }
    if let Some(v) = args.replay_speed {
        config.source.replay.speed = v;
    }
    if !args.replay_key_files.is_empty() {
        config.source.replay.key_files = args.replay_key_files.clone();
    }
    config.validate(&format!("{file} (with command-line overrides)"))?;
    Ok(config)
}

fn run(config: Config, demo: bool) -> anyhow::Result<()> {
    let products = Instruments::load(&config.core.instruments_file)?;
    let calendar = Calendar::load_dir(&config.core.calendar_dir)?;
    warn_if_calendar_missing(&calendar, qilin_shm::now_ns());
    // The CTP SDK is checked before anything else exists: a wrong path or version stops here.
    #[cfg(feature = "ctp")]
    let ctp_sdk = if config.source.kind == SourceKind::Ctp {
        use qilin_core::{config::SdkStdout, session::ctp};
        if config.source.ctp.sdk_stdout == SdkStdout::Log && !demo {
            ctp::stdout::capture_into_log().context("capturing the CTP SDK's stdout")?;
        }
        let sdk = ctp::Sdk::check(&config.source.ctp.sdk_path)?;
        tracing::info!(path = %sdk.path.display(), version = %sdk.version, built_for = ctp::BUILT_FOR, "CTP SDK loaded");
        if sdk.is_standin() {
            tracing::warn!(
                path = %sdk.path.display(),
                "this is qilin's CTP stand-in (ctp-standin/), not the vendor's library: its fronts are scenario drivers, not exchanges"
            );
        }
        Some(sdk)
    } else {
        None
    };
    if config.core.lock_memory {
        lock_memory();
    }
    let segment = config.feed.segment_path();
    let writer = Writer::open(
        &segment,
        &SegmentOptions {
            feed_name: config.feed.name.clone(),
            ring_slots: config.feed.ring_slots,
            instrument_capacity: config.feed.instrument_capacity,
        },
    )
    .with_context(|| format!("opening segment {}", segment.display()))?;
    let report = writer.open_report();
    tracing::info!(
        segment = %segment.display(),
        created = report.created,
        epoch = report.epoch,
        next_sequence = report.next_sequence,
        adopted_slots = report.adopted_slots,
        cleared_lvc_entries = report.cleared_lvc_entries,
        "segment open"
    );

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    let (command_tx, command_rx) = crossbeam_channel::bounded::<Command>(config.core.command_queue_capacity);
    let (event_tx, event_rx) = rtrb::RingBuffer::<Event>::new(config.core.event_queue_capacity);
    spawn_named("qilin-events", move || log_events(event_rx))?;

    let audit_path = qilin_audit::resolve_path(config.core.audit_log.as_deref());
    let sessions_enabled = (config.source.kind == SourceKind::Sim && config.source.sim.sessions.enabled)
        || config.source.kind == SourceKind::Ctp;
    let open_audit = || match AuditLog::open(&audit_path) {
        Ok(log) => Ok(Some(log)),
        Err(e) if sessions_enabled => Err(anyhow::anyhow!(
            "{e}: session switches and refused credentials must be audited (set core.audit_log or QILIN_AUDIT_LOG)"
        )),
        Err(e) => {
            tracing::warn!(error = %e, "audit log unavailable: refused control connections are only logged");
            Ok(None)
        }
    };
    let control_path = config.core.control_socket(&config.feed.name);
    let mut control =
        ControlServer::bind(&control_path, &config.core.control_allowed_uids, &segment, command_tx.clone())?
            .with_listed(Listed::new(&products, &config.core.subscribe, config.feed.instrument_capacity));
    if let Some(log) = open_audit()? {
        control = control.with_audit(log);
    }
    // Two sessions (simulated, or the CTP SDK's): their manager thread and hand-offs.
    let mut session_inputs = None;
    #[cfg(feature = "ctp")]
    let mut ctp_shutdown = None;
    if sessions_enabled {
        let links = Links::new();
        let (msg_tx, msg_rx) = crossbeam_channel::unbounded::<Msg>();
        let (ptx, prx) = handoff(config.core.handoff_capacity);
        let (btx, brx) = handoff(config.core.handoff_capacity);
        let (fronts, sim_market): (Box<dyn Fronts>, _) = match config.source.kind {
            #[cfg(feature = "ctp")]
            SourceKind::Ctp => {
                let sdk = ctp_sdk.clone().context("the CTP SDK was not checked")?;
                use qilin_core::sim::MdCallback;
                let callbacks = [MdCallback::new(ptx, Source::Primary), MdCallback::new(btx, Source::Backup)];
                let (fronts, shutdown) = qilin_core::session::ctp::CtpFronts::start(
                    sdk,
                    &config.source.ctp,
                    &config.feed.name,
                    links.clone(),
                    msg_tx.clone(),
                    callbacks,
                    &config.core.subscribe,
                )
                .context("starting the CTP fronts' thread")?;
                ctp_shutdown = Some(shutdown);
                (Box::new(fronts), None)
            }
            _ => {
                let sim = Simulator::new(&config.source.sim, &products)?.with_calendar(calendar.clone());
                let fronts =
                    SimFronts::start(&config.source.sim.sessions, links.clone(), msg_tx.clone(), sim.trading_day_now())
                        .context("starting the simulated fronts")?;
                (Box::new(fronts), Some((sim, ptx, btx)))
            }
        };
        let manager = Manager::new(
            config.failover.clone(),
            fronts,
            links.clone(),
            command_tx,
            open_audit()?,
            segment.clone(),
            msg_rx,
        );
        spawn_named("qilin-sessions", move || manager.run())?;
        let secrets_uid = config.core.secrets_uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        control = control.with_sessions(SessionControl {
            manager: msg_tx,
            secrets_uid,
            timeout: Duration::from_millis(config.failover.command_timeout_ms),
        });
        if let Some((sim, ptx, btx)) = sim_market {
            tracing::info!(
                instruments = sim.instrument_count(),
                rate = config.source.sim.ticks_per_second,
                secrets_uid,
                audit_log = %audit_path.display(),
                "simulator with primary and backup sessions ready; waiting for credentials on the control socket"
            );
            let sim_links = links.clone();
            spawn_named("qilin-sim", move || sim.run_sessions(ptx, btx, sim_links))?;
        } else {
            tracing::info!(
                secrets_uid,
                audit_log = %audit_path.display(),
                "CTP primary and backup sessions ready; waiting for credentials on the control socket"
            );
        }
        session_inputs = Some(Input::Sessions { primary: prx, backup: brx, links });
    }
    let command_drops = control.dropped_commands();
    let control_gate = control.exit_gate();
    tracing::info!(socket = %control.path().display(), "control socket listening");
    spawn_named("qilin-control", move || control.serve())?;

    let capacity = config.feed.instrument_capacity;
    let options = EngineOptions {
        admit: config.core.admit,
        heartbeat_interval_ns: config.core.heartbeat_interval_ms as i64 * 1_000_000,
        batch: 256,
    };
    let mut engine = Engine::new(writer, products.clone(), capacity, options, command_rx, event_tx, Arc::clone(&stop))
        .with_calendar(calendar.clone())
        .with_unknown_products(config.core.unknown_products);
    engine.count_command_drops(command_drops);
    for id in &config.core.subscribe {
        if engine.subscribe(id).is_none() {
            tracing::warn!(instrument = %id, "core.subscribe: not admitted (unknown product or directory full)");
        }
    }

    let input = match config.source.kind {
        SourceKind::Sim | SourceKind::Ctp if session_inputs.is_some() => session_inputs.take().expect("checked"),
        SourceKind::Ctp => anyhow::bail!("source.kind = \"ctp\": {}", qilin_core::config::CTP_NOT_BUILT),
        SourceKind::Sim => {
            let (tx, rx) = handoff(config.core.handoff_capacity);
            let sim = Simulator::new(&config.source.sim, &products)?.with_calendar(calendar.clone());
            tracing::info!(
                instruments = sim.instrument_count(),
                rate = config.source.sim.ticks_per_second,
                "simulator ready"
            );
            spawn_named("qilin-sim", move || sim.run(tx))?;
            Input::Handoff(rx)
        }
        SourceKind::Udp => {
            let socket = UdpBound::bind(&config.source.udp)?;
            tracing::info!(addr = %socket.local_addr()?, group = ?config.source.udp.multicast_group, "UDP source bound");
            Input::Udp(socket, Source::Udp)
        }
        SourceKind::Replay => {
            let (tx, rx) = rtrb::RingBuffer::new(config.core.handoff_capacity);
            qilin_core::replay::spawn(&config.source.replay, tx, Arc::clone(&stop))?;
            tracing::info!(path = %config.source.replay.path.display(), speed = config.source.replay.speed, "replay started");
            Input::Replay(rx)
        }
    };
    if demo {
        let segment = segment.clone();
        spawn_named("qilin-demo", move || qilin_core::demo::print_forever(&segment))?;
    }

    let cpu = config.core.cpu;
    let hot = std::thread::Builder::new()
        .name("qilin-hot".into())
        .spawn(move || {
            pin(cpu);
            engine.run(input, || {})
        })
        .context("starting the hot thread")?;
    let report = hot.join().map_err(|_| anyhow::anyhow!("the hot thread panicked"))?;
    #[cfg(feature = "ctp")]
    if let Some(ctp) = ctp_shutdown {
        // The SDK's teardown (RegisterSpi(NULL), Release) before the process exits, bounded.
        match ctp.shutdown(Duration::from_secs(10)) {
            Ok(()) => tracing::info!("CTP sessions released"),
            Err(e) => tracing::error!(error = %e, "CTP sessions not released cleanly"),
        }
    }
    // A command the control thread is executing (a `shutdown`) gets its reply out, and every
    // control audit entry is written.
    let _control_done = control_gate.close(Duration::from_secs(10));
    tracing::info!(received = report.received, published = report.published, rejected = report.rejected, "stopped");
    let _ = std::fs::remove_file(&control_path);
    Ok(())
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).with_context(|| format!("starting thread {name}"))?;
    Ok(())
}

fn pin(cpu: Option<usize>) {
    let Some(cpu) = cpu else {
        tracing::info!("hot thread not pinned (core.cpu unset)");
        return;
    };
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        let isolated = std::fs::read_to_string("/sys/devices/system/cpu/isolated").unwrap_or_default();
        if qilin_core::cpulist_contains(isolated.trim(), cpu) {
            tracing::info!(cpu, "hot thread pinned to an isolated CPU");
        } else {
            tracing::warn!(cpu, "hot thread pinned, but CPU {cpu} is not isolated (isolcpus): other work may share it");
        }
    } else {
        tracing::warn!(cpu, "could not pin the hot thread to CPU {cpu}; running unpinned");
    }
}

fn lock_memory() {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        Ok(()) => tracing::info!("memory locked (mlockall)"),
        Err(e) => {
            tracing::warn!(error = %e, "memory not locked (mlockall refused; raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)")
        }
    }
}

fn log_events(mut events: rtrb::Consumer<Event>) {
    let id = |key: &[u8; 32]| qilin_shm::layout::id_str(key).unwrap_or("?").to_string();
    loop {
        while let Ok(event) = events.pop() {
            match event {
                Event::Admitted { id: key, index } => {
                    tracing::info!(instrument = %id(&key), index, "instrument admitted")
                }
                Event::DirectoryFull { id: key } => tracing::warn!(instrument = %id(&key), "instrument directory full"),
                Event::UnknownProduct { id: key } => {
                    tracing::warn!(instrument = %id(&key), "product not in the instruments file; ticks rejected")
                }
                Event::Subscription { id: key, subscribed } => {
                    tracing::info!(instrument = %id(&key), subscribed, "subscription")
                }
            }
        }
        if events.is_abandoned() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Warns when the calendar has no file for today's year (China time), or, in December, for the
/// next one: the weekday rule answers for such days (holidays would be taken for trading days).
fn warn_if_calendar_missing(calendar: &Calendar, now_ns: i64) {
    let missing = calendar.missing_years(Date::china_of(now_ns));
    if !missing.is_empty() {
        tracing::warn!(
            dir = %calendar.dir().map(|d| d.display().to_string()).unwrap_or_default(),
            missing = ?missing,
            loaded = ?calendar.years(),
            "the trading calendar has no file for these years: their weekdays count as trading days and \
             holidays are not known (add config/calendar/YYYY.toml, docs/CALENDAR.md)"
        );
    }
}

//! What a scrape reads and how it is named: the segment's header, directory and last-value cache
//! (opened read-only afresh for every scrape, so a core restart or a recreated segment is simply
//! seen); `report.rs` adds the sidecars' status files, the journal and the tick latencies. Every value is read when Prometheus asks; nothing is sampled in between, so
//! rates are PromQL's job (`rate(qilin_core_ticks_published_total[1m])`).
//! The metric names are listed, with their meaning, in docs/SIDECARS.md ("Metrics and health").

use std::{fmt, path::PathBuf, sync::Arc};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
use qilin_shm::{
    Counter, Exchange, LinkState, Liveness, Next, OpenError, Reader, RunState, Source, Start, TickRecord, now_ns,
};

// Also reachable here as `collect::age_s`, where the unit tests look for it.
pub(crate) use super::encode::age_s;
use super::{
    calendar::Schedule,
    encode::{Out, SECONDS, flag, label},
    journal::JournalSource,
    latency::LatencyHistograms,
    report,
};

/// Everything the exporter reads, and its thresholds. The registered collector.
#[derive(Debug)]
pub(crate) struct Sources {
    pub segment: PathBuf,
    pub heartbeat_stale_ns: i64,
    pub ticks_stale_ns: i64,
    pub sidecar_stale_ns: i64,
    pub schedule: Schedule,
    /// `metrics.keys_schedule`, and the last error reading it (logged once per distinct error).
    pub keys_schedule: Option<PathBuf>,
    pub keys_error: std::sync::Mutex<Option<String>>,
    pub journal: Option<Arc<dyn JournalSource>>,
    pub latency: Option<Arc<LatencyHistograms>>,
}

/// One exchange the feed carries, as the last-value cache shows it.
#[derive(Debug)]
pub(crate) struct ExchangeView {
    pub exchange: Exchange,
    /// Instruments of it in the directory.
    pub instruments: u32,
    /// Latest `receive_ns` over its instruments' last values (`None`: no tick yet).
    pub last_receive_ns: Option<i64>,
}

/// The segment as one scrape or readiness check sees it.
#[derive(Debug)]
pub(crate) struct CoreView {
    pub reader: Reader,
    /// The record at the write cursor (`None` before the first tick).
    pub newest: Option<TickRecord>,
    /// Exchanges with instruments in the directory, in code order.
    pub exchanges: Vec<ExchangeView>,
}

impl Sources {
    /// Opens the segment and reads what both `/metrics` and `/readyz` need.
    pub fn core_view(&self) -> Result<CoreView, OpenError> {
        // The newest tick and the last-value entries, on every scrape: no pre-fault of the ring.
        let mut reader = Reader::open_unpopulated(&self.segment)?;
        let newest = newest_tick(&mut reader);
        let mut exchanges: Vec<ExchangeView> = Vec::new();
        let mut tick = TickRecord::ZERO;
        for (index, entry) in reader.instruments().iter().enumerate() {
            let Some(exchange) = Exchange::from_code(entry.exchange) else { continue };
            let pos = match exchanges.iter().position(|e| e.exchange == exchange) {
                Some(pos) => pos,
                None => {
                    exchanges.push(ExchangeView { exchange, instruments: 0, last_receive_ns: None });
                    exchanges.len() - 1
                }
            };
            let view = &mut exchanges[pos];
            view.instruments += 1;
            if reader.latest(index as u32, &mut tick) == Ok(true) {
                view.last_receive_ns = view.last_receive_ns.max(Some(tick.receive_ns));
            }
        }
        exchanges.sort_by_key(|e| e.exchange);
        Ok(CoreView { reader, newest, exchanges })
    }

    /// Since when (ns) the longest-open session of an exchange the feed carries has been open.
    /// With an empty directory (nothing has ticked since the segment was created) every exchange
    /// counts: a feed that stays empty through a session is not working.
    pub fn session_open_since(&self, view: &CoreView, now: i64) -> Option<i64> {
        if view.exchanges.is_empty() {
            return Exchange::ALL.into_iter().filter_map(|e| self.schedule.open_since(e, now)).max();
        }
        view.exchanges.iter().filter_map(|e| self.schedule.open_since(e.exchange, now)).max()
    }

    fn encode_core(&self, out: &mut Out, view: &CoreView, now: i64) -> fmt::Result {
        let reader = &view.reader;
        let (mut rejects, mut flags) = (Vec::new(), Vec::new());
        for &counter in Counter::ALL {
            let name = counter.name();
            let value = reader.counter(counter);
            if let Some(reason) = name.strip_prefix("reject_") {
                rejects.push((label("reason", reason), value));
            } else if let Some(flag) = name.strip_prefix("flag_") {
                flags.push((label("flag", flag), value));
            } else {
                out.counter(&format!("core_{name}"), core_counter_help(counter), None, value)?;
            }
        }
        out.counters("core_rejects", "Raw ticks the core rejected, by reason (header counters reject_*).", rejects)?;
        out.counters(
            "core_flagged_ticks",
            "Ticks published with a quality flag, by flag (header counters flag_*).",
            flags,
        )?;
        let liveness = reader.liveness(now, self.heartbeat_stale_ns);
        out.gauge(
            "core_up",
            "1 while the core's heartbeat is fresh (metrics.heartbeat_stale_ms), 0 when stale or stopped.",
            None,
            flag(matches!(liveness, Liveness::Live { .. })),
        )?;
        out.gauge(
            "core_heartbeat_age",
            "Age of the core's last heartbeat (written about every millisecond while it runs).",
            Some(&SECONDS),
            age_s(now, reader.heartbeat_ns()),
        )?;
        let run_state = reader.run_state();
        out.gauges(
            "core_run_state",
            "The core's run state from the header: 1 for the current state.",
            None,
            [
                ("starting", Some(RunState::Starting)),
                ("running", Some(RunState::Running)),
                ("stopped", Some(RunState::Stopped)),
                ("unknown", None),
            ]
            .map(|(name, state)| (label("state", name), flag(run_state == state))),
        )?;
        out.gauge("core_epoch", "Segment epoch: incremented by every core start.", None, reader.current_epoch())?;
        out.gauge(
            "ring_write_cursor",
            "Last published sequence (continues across core restarts).",
            None,
            reader.write_cursor(),
        )?;
        out.gauge("ring_slots", "Capacity of the ring in slots.", None, reader.identity().ring_slots)?;
        if let Some(newest) = &view.newest {
            out.gauge(
                "core_last_publish_age",
                "Time since the newest tick in the ring was published.",
                Some(&SECONDS),
                age_s(now, newest.publish_ns),
            )?;
        }
        out.gauge("directory_instruments", "Instruments in the segment's directory.", None, reader.directory_len())?;
        out.gauge(
            "directory_capacity",
            "Capacity of the instrument directory (ticks of further instruments are dropped and counted).",
            None,
            reader.identity().instrument_capacity,
        )?;
        self.encode_link(out, reader)?;
        self.encode_exchanges(out, view, now)
    }

    fn encode_link(&self, out: &mut Out, reader: &Reader) -> fmt::Result {
        let Ok(status) = reader.status() else { return Ok(()) };
        let state = LinkState::from_code(status.link_state);
        out.gauges(
            "link_state",
            "State of the core's active market-data session: 1 for the current state.",
            None,
            LINK_STATES.map(|(name, s)| (label("state", name), flag(state == Some(s)))),
        )?;
        let source = Source::from_code(status.active_source as u8).filter(|_| status.active_source <= 0xff);
        out.gauges(
            "link_active_source",
            "Source of the active session (primary, backup, sim, replay, udp; none): 1 for the current one.",
            None,
            SOURCES.map(|(name, s)| (label("source", name), flag(source == s))),
        )?;
        out.gauge(
            "link_failovers",
            "Failovers since the core started (from the link status).",
            None,
            status.failovers,
        )?;
        out.gauge(
            "link_trading_day",
            "Trading day the front reports, YYYYMMDD (0 if unknown).",
            None,
            status.trading_day,
        )
    }

    fn encode_exchanges(&self, out: &mut Out, view: &CoreView, now: i64) -> fmt::Result {
        let by_exchange = |e: &ExchangeView| label("exchange", e.exchange.as_str());
        out.gauges(
            "exchange_instruments",
            "Instruments of each exchange in the directory.",
            None,
            view.exchanges.iter().map(|e| (by_exchange(e), e.instruments)),
        )?;
        out.gauges(
            "exchange_last_tick_age",
            "Time since the newest tick of each exchange was received (+Inf: none of its instruments has ticked).",
            Some(&SECONDS),
            view.exchanges.iter().map(|e| (by_exchange(e), e.last_receive_ns.map_or(f64::INFINITY, |r| age_s(now, r)))),
        )?;
        out.gauges(
            "exchange_session_open",
            "1 while the exchange is in a trading session (metrics.sessions, China time).",
            None,
            view.exchanges.iter().map(|e| (by_exchange(e), flag(self.schedule.open_since(e.exchange, now).is_some()))),
        )?;
        out.gauge(
            "trading_session_open",
            "1 while any exchange the feed carries is in a trading session.",
            None,
            flag(self.session_open_since(view, now).is_some()),
        )
    }
}

impl Collector for Sources {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut out = Out::new(encoder);
        let now = now_ns();
        let view = self.core_view();
        out.gauge(
            "core_segment_up",
            "1 when the segment could be opened and its layout is the one this exporter reads.",
            None,
            flag(view.is_ok()),
        )?;
        if let Ok(view) = &view {
            self.encode_core(&mut out, view, now)?;
        }
        report::encode_sidecars(&mut out, &self.segment, self.sidecar_stale_ns, now)?;
        if let Some(journal) = &self.journal {
            report::encode_journal(&mut out, journal.as_ref())?;
        }
        if let Some(latency) = &self.latency {
            report::encode_latency(&mut out, latency)?;
        }
        if let Some(path) = &self.keys_schedule {
            report::encode_keys(&mut out, path, &self.keys_error, now)?;
        }
        Ok(())
    }
}

const LINK_STATES: [(&str, LinkState); 6] = [
    ("idle", LinkState::Idle),
    ("connecting", LinkState::Connecting),
    ("connected", LinkState::Connected),
    ("logged_in", LinkState::LoggedIn),
    ("failed_over", LinkState::FailedOver),
    ("disconnected", LinkState::Disconnected),
];

const SOURCES: [(&str, Option<Source>); 6] = [
    ("none", None),
    ("primary", Some(Source::Primary)),
    ("backup", Some(Source::Backup)),
    ("sim", Some(Source::Sim)),
    ("replay", Some(Source::Replay)),
    ("udp", Some(Source::Udp)),
];

/// HELP text of a plain core counter (rejects and flags have their own families).
fn core_counter_help(counter: Counter) -> &'static str {
    match counter {
        Counter::TicksReceived => "Raw structs the core thread took from the SDK hand-off.",
        Counter::TicksPublished => "Ticks written to the ring.",
        Counter::HandoffFull => "Raw structs dropped because the SDK-to-core hand-off was full.",
        Counter::DirectoryFull => "Ticks dropped because the instrument directory was full.",
        Counter::Duplicates => "Duplicate ticks dropped during a failover overlap.",
        Counter::CommandQueueFull => "Commands dropped because the control-to-core channel was full.",
        Counter::EventQueueFull => "Events dropped because the core-to-logger event queue was full.",
        Counter::FrontDisconnects => "Front disconnects seen.",
        Counter::Failovers => "Switches between the primary and backup sessions.",
        Counter::UdpDatagrams => "Datagrams received by the UDP source.",
        Counter::UdpReceiveErrors => "recvmmsg calls that failed with an error other than nothing-there.",
        Counter::UdpRefused => "Datagrams dropped because their sender is not in source.udp.allow.",
        _ => "A core header counter (see qilin_shm::Counter).",
    }
}

/// The record at the write cursor: its `publish_ns` says when the core last published.
fn newest_tick(reader: &mut Reader) -> Option<TickRecord> {
    let mut tick = TickRecord::ZERO;
    for _ in 0..4 {
        let cursor = reader.write_cursor();
        if cursor == 0 {
            return None;
        }
        reader.seek(Start::Sequence(cursor));
        loop {
            match reader.try_next(&mut tick) {
                Next::Tick => return Some(tick),
                Next::NewEpoch { .. } => continue,
                // Overwritten while we looked (a ring lapping in microseconds): look again.
                Next::Gap { .. } | Next::Empty => break,
            }
        }
    }
    None
}

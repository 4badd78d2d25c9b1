//! What a scrape reads and how it is named: the segment's header, directory and last-value cache
//! (opened read-only afresh for every scrape, so a core restart or a recreated segment is simply
//! seen), every sidecar's status file, and what the recorder reported about its journal and the
//! tick latencies. Every value is read when Prometheus asks; nothing is sampled in between, so
//! rates are PromQL's job (`rate(qilin_core_ticks_published_total[1m])`).
//! The metric names are listed, with their meaning, in docs/SIDECARS.md ("Metrics and health").

use std::{fmt, path::PathBuf, sync::Arc};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
use qilin_shm::{
    Counter, Exchange, LinkState, Liveness, Next, OpenError, Reader, RunState, Source, Start, TickRecord, now_ns,
};
use serde_json::Value;

use super::{
    calendar::Schedule,
    encode::{BYTES, Labels, Out, SECONDS, flag, label},
    journal::{FSYNC_BOUNDS_S, JournalMetrics},
    latency::{EXCHANGE_TO_RECEIVE_BOUNDS_S, LatencyHistograms, RECEIVE_TO_PUBLISH_BOUNDS_S, Skip},
};

/// Everything the exporter reads, and its thresholds. The registered collector.
#[derive(Debug)]
pub(crate) struct Sources {
    pub segment: PathBuf,
    pub heartbeat_stale_ns: i64,
    pub ticks_stale_ns: i64,
    pub sidecar_stale_ns: i64,
    pub schedule: Schedule,
    pub journal: Option<Arc<JournalMetrics>>,
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
        let mut reader = Reader::open(&self.segment)?;
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
    pub fn session_open_since(&self, view: &CoreView, now: i64) -> Option<i64> {
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
            (now - reader.heartbeat_ns()) as f64 / 1e9,
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
                (now - newest.publish_ns) as f64 / 1e9,
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
            view.exchanges
                .iter()
                .map(|e| (by_exchange(e), e.last_receive_ns.map_or(f64::INFINITY, |r| (now - r) as f64 / 1e9))),
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

    fn encode_sidecars(&self, out: &mut Out, now: i64) -> fmt::Result {
        let statuses = qilin_tools::sidecar_statuses(&self.segment);
        let by = |name: &str| label("sidecar", name);
        let num = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64);
        out.gauges(
            "sidecar_info",
            "One per sidecar status file, labelled with the program that writes it.",
            None,
            statuses.iter().map(|(name, v)| {
                let program = v.get("sidecar").and_then(Value::as_str).unwrap_or("unknown");
                (vec![("sidecar", name.clone()), ("program", program.to_string())], 1u32)
            }),
        )?;
        out.gauges(
            "sidecar_up",
            "1 while the sidecar rewrites its status file (younger than metrics.sidecar_stale_ms), else 0.",
            None,
            statuses.iter().map(|(name, v)| {
                let updated = v.get("updated_ns").and_then(Value::as_i64);
                (by(name), flag(updated.is_some_and(|u| now - u <= self.sidecar_stale_ns)))
            }),
        )?;
        out.gauges(
            "sidecar_status_age",
            "Age of the sidecar's status file (when it was last rewritten).",
            Some(&SECONDS),
            statuses.iter().filter_map(|(name, v)| {
                v.get("updated_ns").and_then(Value::as_i64).map(|u| (by(name), (now - u) as f64 / 1e9))
            }),
        )?;
        out.gauges(
            "sidecar_position",
            "Last sequence the sidecar confirmed downstream (its durable position).",
            None,
            statuses.iter().filter_map(|(name, v)| num(v, "position").map(|p| (by(name), p))),
        )?;
        out.gauges(
            "sidecar_lag_sequences",
            "Sequences the sidecar is behind the core's write cursor (when it wrote its status).",
            None,
            statuses.iter().filter_map(|(name, v)| num(v, "lag_sequences").map(|p| (by(name), p))),
        )?;
        out.gauges(
            "sidecar_lag",
            "Age of the newest tick the sidecar confirmed, while it is behind (0 when caught up).",
            Some(&SECONDS),
            statuses
                .iter()
                .filter_map(|(name, v)| v.get("lag_ns").and_then(Value::as_i64).map(|l| (by(name), l as f64 / 1e9))),
        )?;
        let counters: Vec<(Labels, u64)> = statuses
            .iter()
            .flat_map(|(name, v)| {
                let fields = v.get("counters").and_then(Value::as_object).into_iter().flatten();
                fields.filter_map(move |(counter, value)| {
                    let labels = vec![("sidecar", name.clone()), ("counter", counter.clone())];
                    value.as_u64().map(|value| (labels, value))
                })
            })
            .collect();
        out.counters(
            "sidecar_counts",
            "The sidecar's own counters from its status file (see each sidecar's docs).",
            counters,
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
        self.encode_sidecars(&mut out, now)?;
        if let Some(journal) = &self.journal {
            encode_journal(&mut out, journal)?;
        }
        if let Some(latency) = &self.latency {
            encode_latency(&mut out, latency)?;
        }
        Ok(())
    }
}

fn encode_journal(out: &mut Out, journal: &JournalMetrics) -> fmt::Result {
    journal.with(|t, writable, disk_full, fsync| {
        out.counter("journal_written", "Bytes written to journal files.", Some(&BYTES), t.bytes)?;
        out.counter("journal_records", "Tick records written to the journal.", None, t.records)?;
        out.counter(
            "journal_gap_records",
            "Gap records written (sequences the recorder could not get).",
            None,
            t.gap_records,
        )?;
        out.counter("journal_gap_sequences", "Sequences covered by gap records.", None, t.gap_sequences)?;
        out.counter("journal_blocks", "Checksummed blocks written.", None, t.blocks)?;
        out.counter("journal_fsyncs", "fdatasync calls on journal files.", None, t.fsyncs)?;
        out.counter("journal_files", "Journal files created.", None, t.files)?;
        out.counter("journal_errors", "Journal write, sync and open failures (disk full included).", None, t.errors)?;
        out.counter(
            "journal_disk_full_events",
            "Times the journal's disk filled up (one per episode).",
            None,
            t.disk_full_events,
        )?;
        out.gauge("journal_position", "Last sequence in a written journal block.", None, t.position)?;
        out.gauge("journal_synced_position", "Last sequence fdatasynced to the journal.", None, t.synced)?;
        out.gauge("journal_writable", "1 while the journal is open and writes succeed.", None, flag(writable))?;
        out.gauge(
            "journal_disk_full",
            "1 while the journal's disk is full (recording paused, retried).",
            None,
            flag(disk_full),
        )?;
        out.histogram("journal_fsync_duration", "Duration of each fdatasync of a journal file.", fsync, &FSYNC_BOUNDS_S)
    })
}

fn encode_latency(out: &mut Out, latency: &LatencyHistograms) -> fmt::Result {
    latency.with(|p| {
        out.histogram(
            "latency_exchange_to_receive",
            "Exchange timestamp to local receive, per tick (stale snapshots and negative values left out).",
            &p.exchange_to_receive.hist,
            &EXCHANGE_TO_RECEIVE_BOUNDS_S,
        )?;
        out.histogram(
            "latency_receive_to_publish",
            "Local receive to publication in the ring (the core's own path), per tick.",
            &p.receive_to_publish.hist,
            &RECEIVE_TO_PUBLISH_BOUNDS_S,
        )?;
        let skipped = [("exchange_to_receive", &p.exchange_to_receive), ("receive_to_publish", &p.receive_to_publish)]
            .into_iter()
            .flat_map(|(path, data)| {
                Skip::ALL.map(move |s| {
                    (vec![("path", path.to_string()), ("reason", s.as_str().to_string())], data.skipped[s as usize])
                })
            });
        out.counters("latency_not_recorded", "Ticks left out of a latency histogram, by path and reason.", skipped)
    })
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

//! The exporter and the readiness checks against a segment written by a `qilin_shm::Writer` in the
//! test (the process tests in `tests/metrics.rs` run the same against a real core over HTTP).

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use qilin_shm::{Counter, Exchange, LinkState, RunState, SegmentOptions, Source, StatusRecord, TickRecord, Writer};
use serde_json::json;

use qilin_market::{Date, date::utc_ns};

use super::*;
use qilin_market::status::StatusFile;

/// UTC ns of a China local time.
fn china(date: &str, hh: i64, mm: i64) -> i64 {
    utc_ns(Date::parse_iso(date).unwrap(), (hh * 3600 + mm * 60) as u32, 0)
}

/// Monday 2026-05-04 10:00 China time: inside the default SHFE and CFFEX day sessions.
fn monday_10am() -> i64 {
    china("2026-05-04", 10, 0)
}

/// `series → value` of a Prometheus text exposition.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            };
            (series.to_string(), value)
        })
        .collect()
}

fn get(s: &BTreeMap<String, f64>, series: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("{series} missing from\n{}", s.keys().cloned().collect::<Vec<_>>().join("\n")))
}

struct Feed {
    dir: tempfile::TempDir,
    writer: Writer,
}

impl Feed {
    /// A segment with rb2605 (SHFE, two ticks), m2609 (DCE, one tick) and IF2606 (CFFEX, none).
    fn new(now: i64) -> Feed {
        let dir = tempfile::tempdir().unwrap();
        let options = SegmentOptions { feed_name: "unit".into(), ring_slots: 64, instrument_capacity: 8 };
        let mut writer = Writer::open(dir.path().join("unit"), &options).unwrap();
        let rb = writer.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
        let m = writer.add_instrument("m2609", Exchange::Dce, 10, 1.0).unwrap();
        writer.add_instrument("IF2606", Exchange::Cffex, 300, 0.2).unwrap();
        for (index, exchange, receive_ns) in [
            (rb, Exchange::Shfe, now - 3_000_000_000),
            (m, Exchange::Dce, now - 7_000_000_000),
            (rb, Exchange::Shfe, now - 500_000_000),
        ] {
            let mut t = TickRecord::ZERO;
            t.instrument_index = index;
            t.exchange = exchange as u8;
            t.exchange_time_ns = receive_ns - 20_000_000;
            t.receive_ns = receive_ns;
            t.publish_ns = receive_ns + 2_000;
            writer.publish(&mut t).unwrap();
        }
        writer.add_counter(Counter::TicksReceived, 7);
        writer.add_counter(Counter::TicksPublished, 3);
        writer.add_counter(Counter::RejectPrice, 4);
        writer.add_counter(Counter::FlagStaleSnapshot, 2);
        writer.add_counter(Counter::Failovers, 1);
        let mut status = <StatusRecord as zerocopy::FromZeros>::new_zeroed();
        status.link_state = LinkState::FailedOver as u32;
        status.active_source = Source::Backup as u32;
        status.failovers = 1;
        status.trading_day = 20260504;
        writer.set_status(&status);
        writer.set_run_state(RunState::Running);
        writer.heartbeat(now - 1_000_000);
        Feed { dir, writer }
    }

    fn segment(&self) -> std::path::PathBuf {
        self.dir.path().join("unit")
    }
}

fn exporter(segment: &Path, config: &MetricsConfig) -> Exporter {
    Exporter::new("unit", segment, config)
}

#[test]
fn the_exposition_reports_header_cache_and_sidecars() {
    let now = qilin_shm::now_ns();
    let feed = Feed::new(now);
    StatusFile::new(&feed.segment(), "nats")
        .unwrap()
        .write(&json!({
            "sidecar": "qilin-nats", "updated_ns": now, "position": 2, "lag_sequences": 1,
            "lag_ns": 250_000_000, "counters": {"published": 2, "acked": 2, "errors": 0},
        }))
        .unwrap();
    StatusFile::new(&feed.segment(), "old").unwrap().write(&json!({"updated_ns": now - 60_000_000_000})).unwrap();
    let text = exporter(&feed.segment(), &MetricsConfig::default()).encode(Format::PrometheusText).unwrap();
    let s = samples(&text);
    assert_eq!(get(&s, r#"qilin_core_segment_up{feed="unit"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_core_ticks_received_total{feed="unit"}"#), 7.0);
    assert_eq!(get(&s, r#"qilin_core_ticks_published_total{feed="unit"}"#), 3.0);
    assert_eq!(get(&s, r#"qilin_core_handoff_full_total{feed="unit"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_core_failovers_total{feed="unit"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_core_rejects_total{feed="unit",reason="price"}"#), 4.0);
    assert_eq!(get(&s, r#"qilin_core_rejects_total{feed="unit",reason="unknown_instrument"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_core_flagged_ticks_total{feed="unit",flag="stale_snapshot"}"#), 2.0);
    assert!(!text.contains("qilin_core_reject_price"), "rejects are one metric with a reason label");
    assert_eq!(get(&s, r#"qilin_core_up{feed="unit"}"#), 1.0);
    assert!(get(&s, r#"qilin_core_heartbeat_age_seconds{feed="unit"}"#) < 1.0);
    assert_eq!(get(&s, r#"qilin_core_run_state{feed="unit",state="running"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_core_run_state{feed="unit",state="stopped"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_core_epoch{feed="unit"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_ring_write_cursor{feed="unit"}"#), 3.0);
    assert_eq!(get(&s, r#"qilin_ring_slots{feed="unit"}"#), 64.0);
    let publish_age = get(&s, r#"qilin_core_last_publish_age_seconds{feed="unit"}"#);
    assert!((0.49..1.5).contains(&publish_age), "{publish_age}");
    assert_eq!(get(&s, r#"qilin_directory_instruments{feed="unit"}"#), 3.0);
    assert_eq!(get(&s, r#"qilin_directory_capacity{feed="unit"}"#), 8.0);
    assert_eq!(get(&s, r#"qilin_link_state{feed="unit",state="failed_over"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_link_state{feed="unit",state="logged_in"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_link_active_source{feed="unit",source="backup"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_link_active_source{feed="unit",source="primary"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_link_failovers{feed="unit"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_link_trading_day{feed="unit"}"#), 20260504.0);
    // Last tick per exchange: the newest receive time of its instruments; +Inf for none yet.
    let shfe = get(&s, r#"qilin_exchange_last_tick_age_seconds{feed="unit",exchange="SHFE"}"#);
    let dce = get(&s, r#"qilin_exchange_last_tick_age_seconds{feed="unit",exchange="DCE"}"#);
    assert!((0.49..1.5).contains(&shfe) && (6.99..8.0).contains(&dce), "{shfe} {dce}");
    assert_eq!(get(&s, r#"qilin_exchange_last_tick_age_seconds{feed="unit",exchange="CFFEX"}"#), f64::INFINITY);
    assert_eq!(get(&s, r#"qilin_exchange_instruments{feed="unit",exchange="SHFE"}"#), 1.0);
    assert!(!text.contains(r#"exchange="GFEX""#), "only exchanges the feed carries");
    // Sidecars.
    assert_eq!(get(&s, r#"qilin_sidecar_up{feed="unit",sidecar="nats"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_sidecar_up{feed="unit",sidecar="old"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_sidecar_info{feed="unit",sidecar="nats",program="qilin-nats"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_sidecar_position{feed="unit",sidecar="nats"}"#), 2.0);
    assert_eq!(get(&s, r#"qilin_sidecar_lag_sequences{feed="unit",sidecar="nats"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_sidecar_lag_seconds{feed="unit",sidecar="nats"}"#), 0.25);
    assert_eq!(get(&s, r#"qilin_sidecar_counts_total{feed="unit",sidecar="nats",counter="acked"}"#), 2.0);
    assert!(get(&s, r#"qilin_sidecar_status_age_seconds{feed="unit",sidecar="old"}"#) >= 60.0);
    // Without a journal or latency source, their metrics are left out.
    assert!(!text.contains("qilin_journal_") && !text.contains("qilin_latency_"), "{text}");
    // Every sample carries the feed label.
    assert!(s.keys().all(|k| k.contains(r#"feed="unit""#)));
}

#[test]
fn journal_and_latency_sources_are_exported() {
    let now = qilin_shm::now_ns();
    let feed = Feed::new(now);
    let journal = Arc::new(JournalMetrics::new());
    let latency = Arc::new(LatencyHistograms::new());
    let e = exporter(&feed.segment(), &MetricsConfig::default())
        .with_journal(journal.clone())
        .with_latency(latency.clone());
    assert_eq!(e.feed(), "unit");
    journal.set_totals(JournalTotals {
        bytes: 24_576,
        records: 64,
        fsyncs: 2,
        position: 64,
        synced: 60,
        ..Default::default()
    });
    journal.set_writable(true);
    journal.observe_fsync(Duration::from_micros(700));
    journal.observe_fsync(Duration::from_millis(30));
    let mut t = TickRecord::ZERO;
    (t.exchange_time_ns, t.receive_ns, t.publish_ns) = (now - 40_000_000, now, now + 3_000);
    latency.record(&t);
    t.exchange_time_ns = now + 1_000_000; // the exchange clock ahead of ours
    latency.record(&t);
    let s = samples(&e.encode(Format::PrometheusText).unwrap());
    assert_eq!(get(&s, r#"qilin_journal_written_bytes_total{feed="unit"}"#), 24_576.0);
    assert_eq!(get(&s, r#"qilin_journal_records_total{feed="unit"}"#), 64.0);
    assert_eq!(get(&s, r#"qilin_journal_fsyncs_total{feed="unit"}"#), 2.0);
    assert_eq!(get(&s, r#"qilin_journal_synced_position{feed="unit"}"#), 60.0);
    assert_eq!(get(&s, r#"qilin_journal_writable{feed="unit"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_journal_disk_full{feed="unit"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_journal_fsync_duration_seconds_bucket{feed="unit",le="0.001"}"#), 1.0);
    assert_eq!(get(&s, r#"qilin_journal_fsync_duration_seconds_bucket{feed="unit",le="0.05"}"#), 2.0);
    assert_eq!(get(&s, r#"qilin_journal_fsync_duration_seconds_bucket{feed="unit",le="+Inf"}"#), 2.0);
    assert_eq!(get(&s, r#"qilin_journal_fsync_duration_seconds_count{feed="unit"}"#), 2.0);
    assert!((get(&s, r#"qilin_journal_fsync_duration_seconds_sum{feed="unit"}"#) - 0.0307).abs() < 1e-9);
    let e2r = "qilin_latency_exchange_to_receive_seconds";
    assert_eq!(get(&s, &format!(r#"{e2r}_bucket{{feed="unit",le="0.025"}}"#)), 0.0);
    assert_eq!(get(&s, &format!(r#"{e2r}_bucket{{feed="unit",le="0.05"}}"#)), 1.0);
    assert_eq!(get(&s, &format!(r#"{e2r}_count{{feed="unit"}}"#)), 1.0);
    assert_eq!(get(&s, r#"qilin_latency_receive_to_publish_seconds_count{feed="unit"}"#), 2.0);
    assert_eq!(get(&s, r#"qilin_latency_receive_to_publish_seconds_bucket{feed="unit",le="5e-06"}"#), 2.0);
    assert_eq!(
        get(&s, r#"qilin_latency_not_recorded_total{feed="unit",path="exchange_to_receive",reason="negative"}"#),
        1.0
    );
}

#[test]
fn openmetrics_is_served_when_asked_for() {
    let feed = Feed::new(qilin_shm::now_ns());
    let e = exporter(&feed.segment(), &MetricsConfig::default());
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    assert_eq!(Format::negotiate(accept), Format::OpenMetrics);
    assert_eq!(Format::negotiate("text/plain"), Format::PrometheusText);
    assert_eq!(Format::negotiate(""), Format::PrometheusText);
    let om = e.encode(Format::OpenMetrics).unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE qilin_core_ticks_published counter\n"), "{om}");
    assert!(om.contains("# UNIT qilin_core_heartbeat_age_seconds seconds\n"), "{om}");
}

#[test]
fn a_missing_segment_is_reported_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = exporter(&dir.path().join("none"), &MetricsConfig::default());
    let s = samples(&e.encode(Format::PrometheusText).unwrap());
    assert_eq!(get(&s, r#"qilin_core_segment_up{feed="unit"}"#), 0.0);
    assert!(!s.keys().any(|k| k.starts_with("qilin_core_ticks")));
    let r = e.sources.readiness_at(monday_10am());
    let checks: Vec<&str> = r.failing.iter().map(|(c, _)| *c).collect();
    assert_eq!(checks, ["segment", "heartbeat"], "{r}");
    assert!(r.to_string().contains("none"), "the error names the segment: {r}");
}

#[test]
fn readiness_checks_heartbeat_ticks_in_session_and_journal() {
    let now = monday_10am();
    let feed = Feed::new(now);
    let config = MetricsConfig { ticks_stale_ms: 5000, ..MetricsConfig::default() };
    let journal = Arc::new(JournalMetrics::new());
    let e = exporter(&feed.segment(), &config).with_journal(journal.clone());
    let r = e.sources.readiness_at(now);
    assert_eq!(r.failing.len(), 1, "{r}");
    assert_eq!(r.failing[0].0, "journal", "{r}");
    journal.set_writable(true);
    let r = e.sources.readiness_at(now);
    assert!(r.is_ready(), "{r}");
    assert_eq!(r.to_string(), "ready\n");

    // 3 s later: the heartbeat (limit 2 s) is stale; the newest tick is 3.5 s old (limit 5 s).
    let r = e.sources.readiness_at(now + 3_000_000_000);
    let checks: Vec<&str> = r.failing.iter().map(|(c, _)| *c).collect();
    assert_eq!(checks, ["heartbeat"], "{r}");
    assert!(r.to_string().starts_with("heartbeat: the core's heartbeat is 3.0 s old (limit 2.0 s)"), "{r}");

    // 6 s later, the core beating but quiet: no tick for 6.5 s inside the SHFE session.
    feed.writer.heartbeat(now + 6_000_000_000);
    journal.set_disk_full(true);
    let r = e.sources.readiness_at(now + 6_000_000_000);
    let checks: Vec<&str> = r.failing.iter().map(|(c, _)| *c).collect();
    assert_eq!(checks, ["ticks", "journal"], "{r}");
    assert!(r.to_string().contains("no tick published for 6.5 s"), "{r}");
    assert!(r.to_string().contains("disk is full"), "{r}");

    // The same quiet on Saturday is no failure: no session.
    let saturday = china("2026-05-09", 10, 0);
    feed.writer.heartbeat(saturday);
    journal.set_disk_full(false);
    assert!(e.sources.readiness_at(saturday).is_ready());

    // A session that opened less than ticks_stale_ms ago is not judged yet (09:00:03).
    let open = china("2026-05-04", 9, 0) + 3_000_000_000;
    feed.writer.heartbeat(open);
    assert!(e.sources.readiness_at(open).is_ready());
}

#[test]
fn a_stopped_core_is_not_ready() {
    let now = qilin_shm::now_ns();
    let Feed { dir, writer } = Feed::new(now);
    drop(writer);
    let e = exporter(&dir.path().join("unit"), &MetricsConfig::default());
    let r = e.readiness();
    assert_eq!(r.failing.len(), 1, "{r}");
    assert!(r.to_string().starts_with("heartbeat: the core stopped"), "{r}");
    let s = samples(&e.encode(Format::PrometheusText).unwrap());
    assert_eq!(get(&s, r#"qilin_core_up{feed="unit"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_core_run_state{feed="unit",state="stopped"}"#), 1.0);
}

#[test]
fn the_recorder_stats_feed_the_journal_metrics_and_check() {
    let now = monday_10am();
    let feed = Feed::new(now);
    let stats: crate::recorder::SharedStats = Arc::new(std::sync::Mutex::new(crate::recorder::Stats::default()));
    let e = exporter(&feed.segment(), &MetricsConfig::default()).with_journal(stats.clone());
    let r = e.sources.readiness_at(now);
    assert_eq!(r.to_string(), "journal: the journal is not writable (not open yet, or writes fail)\n");
    {
        let mut s = stats.lock().unwrap();
        s.updated_ns = now - 100_000_000;
        s.file = Some("journal/unit-20260504.qj".into());
        s.last_fsync_latency_us = 800.0;
        s.max_fsync_latency_us = 2500.0;
        s.counters.ticks = 3;
        s.counters.fsyncs = 1;
    }
    assert!(e.sources.readiness_at(now).is_ready());
    // The recorder's loop stuck: its stats are not refreshed.
    let r = e.sources.readiness_at(now + 5_000_000_000);
    assert!(r.failing.iter().any(|(c, why)| *c == "journal" && why.contains("last reported 5.1 s ago")), "{r}");
    stats.lock().unwrap().last_error = Some("journal/unit-20260504.qj: Input/output error".into());
    let r = e.sources.readiness_at(now);
    assert!(
        r.to_string()
            .contains("not writable (not open yet, or writes fail) (journal/unit-20260504.qj: Input/output error)"),
        "{r}"
    );
    let s = samples(&e.encode(Format::PrometheusText).unwrap());
    assert_eq!(get(&s, r#"qilin_journal_records_total{feed="unit"}"#), 3.0);
    assert_eq!(get(&s, r#"qilin_journal_writable{feed="unit"}"#), 0.0);
    assert_eq!(get(&s, r#"qilin_journal_fsync_last_seconds{feed="unit"}"#), 0.0008);
    assert_eq!(get(&s, r#"qilin_journal_fsync_max_seconds{feed="unit"}"#), 0.0025);
    assert!(!s.keys().any(|k| k.starts_with("qilin_journal_fsync_duration")), "no histogram from these stats");
}

#[test]
fn an_empty_feed_in_session_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let options = SegmentOptions { feed_name: "unit".into(), ring_slots: 64, instrument_capacity: 8 };
    let writer = Writer::open(dir.path().join("unit"), &options).unwrap();
    let now = monday_10am();
    writer.heartbeat(now);
    let e = exporter(&dir.path().join("unit"), &MetricsConfig::default());
    let r = e.sources.readiness_at(now);
    assert_eq!(r.failing.len(), 1, "{r}");
    assert!(r.to_string().starts_with("ticks: no tick published yet in a trading session open for 3600.0 s"), "{r}");
    let saturday = china("2026-05-09", 10, 0);
    writer.heartbeat(saturday);
    assert!(e.sources.readiness_at(saturday).is_ready(), "no session, nothing expected");
}

#[test]
fn ages_are_never_negative() {
    // The core may stamp its heartbeat just after a scrape read the clock.
    assert_eq!(collect::age_s(1_000, 1_500), 0.0);
    assert_eq!(collect::age_s(2_500_000_000, 500_000_000), 2.0);
}

//! The metrics server over real HTTP against a real qilin-core on the simulator: the scraped values
//! against the segment, `promtool check metrics` on the exposition, `promtool check rules` and
//! `promtool test rules` on config/alerts.yml, `/readyz` going 503 when the core is SIGKILLed, and
//! a real `prometheus` server scraping the endpoint and answering a query about it.
//!
//! Needs Debian's `prometheus` package (`promtool`, `prometheus`); CI installs it. A missing tool
//! fails the test with a message saying so: nothing is skipped.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::*;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use qilin_market::status::StatusFile;
use qilin_shm::{Counter, Exchange, Next, Reader, Start, TickRecord, now_ns};
use qilin_sidecar::metrics::{
    Exporter, JournalMetrics, JournalTotals, LatencyHistograms, MetricsConfig, MetricsServer, SessionConfig,
};
use serde_json::{Value, json};

/// One HTTP/1.1 response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr` with an optional `Accept` header, over a plain TCP connection (the server
/// answers with a Content-Length; `Connection: close` ends the exchange).
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<(String, String)>>();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok(Reply { status, headers, body })
}

/// The body of a `Transfer-Encoding: chunked` response (Prometheus's API answers that way).
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").expect("CRLF after a chunk");
    }
}

fn get_ok(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    get(addr, path, accept).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// `series → value` of a Prometheus text exposition.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {l:?}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            };
            (series.to_string(), value)
        })
        .collect()
}

fn value(s: &BTreeMap<String, f64>, series: &str) -> f64 {
    *s.get(series).unwrap_or_else(|| panic!("{series} is not in the scrape"))
}

/// A tool of Debian's `prometheus` package.
fn tool(name: &str) -> Command {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    assert!(
        found.status.success(),
        "`{name}` is not installed: these tests need Debian's `prometheus` package (apt-get install prometheus; .ci/run installs it)"
    );
    Command::new(name)
}

fn run(mut cmd: Command, stdin: Option<&str>) -> (bool, String) {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn alerts_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/alerts.yml")
}

/// A session covering every minute of every day, so "ticks flowing" is always checked.
fn always_in_session() -> Vec<SessionConfig> {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].map(String::from).to_vec();
    vec![SessionConfig { exchanges: Vec::new(), days, times: vec!["00:00-24:00".into()] }]
}

fn config(sessions: Vec<SessionConfig>) -> MetricsConfig {
    MetricsConfig { listen: "127.0.0.1:0".into(), sessions, ..MetricsConfig::default() }
}

/// Every tick still in the ring, in order (what a recorder would have read).
fn read_ring(reader: &mut Reader) -> Vec<TickRecord> {
    reader.seek(Start::Oldest);
    let mut out = Vec::new();
    let mut tick = TickRecord::ZERO;
    loop {
        match reader.try_next(&mut tick) {
            Next::Tick => out.push(tick),
            Next::Empty => return out,
            Next::Gap { .. } | Next::NewEpoch { .. } => {}
        }
    }
}

/// Waits until the simulator has published `n` ticks and the counters stand still.
fn wait_finished(reader: &Reader, n: u64) {
    wait_for("the simulator to publish every tick", || (reader.counter(Counter::TicksPublished) >= n).then_some(()));
    assert_eq!(reader.counter(Counter::TicksPublished), n);
    assert_eq!(reader.write_cursor(), n);
}

#[test]
fn scrape_matches_the_segment_and_promtool_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("metrics");
    const TICKS: u64 = 20_000;
    let core = Core::start(dir.path(), &feed, 32_768, 100_000, TICKS);
    let mut reader = core.reader();
    wait_finished(&reader, TICKS);

    // A sidecar status file, as qilin-nats writes it.
    let cursor = reader.write_cursor();
    StatusFile::new(&core.segment, "probe")
        .unwrap()
        .write(&json!({
            "sidecar": "qilin-probe", "name": "probe", "pid": std::process::id(), "feed": feed,
            "updated_ns": now_ns() + 60_000_000_000, // stays fresh for the whole test
            "position": cursor - 10, "read": cursor, "write_cursor": cursor,
            "lag_sequences": 10, "lag_ns": 1_500_000_000,
            "counters": {"published": cursor - 10, "errors": 2},
        }))
        .unwrap();

    // The recorder's part, played by the test: every tick's latency and the journal's totals.
    let journal = Arc::new(JournalMetrics::new());
    let latency = Arc::new(LatencyHistograms::new());
    let ticks = read_ring(&mut reader);
    assert_eq!(ticks.len() as u64, TICKS);
    let (first, rest) = ticks.split_at(100);
    for t in first {
        latency.record(t);
    }
    latency.record_all(rest);
    journal.set_writable(true);
    journal.observe_fsync(Duration::from_micros(900));
    journal.set_totals(JournalTotals {
        records: TICKS,
        bytes: TICKS * 376,
        fsyncs: 1,
        position: TICKS,
        ..Default::default()
    });

    let config = config(Vec::new());
    let exporter =
        Exporter::new(feed.clone(), &core.segment, &config).with_journal(journal).with_latency(latency.clone());
    let server = MetricsServer::start(&config, exporter).unwrap();
    let addr = server.local_addr();

    let reply = get_ok(addr, "/metrics", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let s = samples(&reply.body);
    let f = format!(r#"feed="{feed}""#);

    // Core counters and ring state equal what the segment holds (the simulator has finished).
    for &counter in Counter::ALL {
        let name = counter.name();
        let series = if let Some(reason) = name.strip_prefix("reject_") {
            format!(r#"qilin_core_rejects_total{{{f},reason="{reason}"}}"#)
        } else if let Some(flag) = name.strip_prefix("flag_") {
            format!(r#"qilin_core_flagged_ticks_total{{{f},flag="{flag}"}}"#)
        } else {
            format!("qilin_core_{name}_total{{{f}}}")
        };
        assert_eq!(value(&s, &series), reader.counter(counter) as f64, "{series}");
    }
    assert_eq!(value(&s, &format!("qilin_core_ticks_published_total{{{f}}}")), TICKS as f64);
    assert_eq!(value(&s, &format!("qilin_ring_write_cursor{{{f}}}")), TICKS as f64);
    assert_eq!(value(&s, &format!("qilin_ring_slots{{{f}}}")), 32_768.0);
    assert_eq!(value(&s, &format!("qilin_core_epoch{{{f}}}")), reader.current_epoch() as f64);
    assert_eq!(value(&s, &format!("qilin_directory_instruments{{{f}}}")), f64::from(reader.directory_len()));
    assert_eq!(value(&s, &format!("qilin_core_up{{{f}}}")), 1.0);
    assert_eq!(value(&s, &format!(r#"qilin_core_run_state{{{f},state="running"}}"#)), 1.0);
    let link = reader.status().unwrap();
    let state =
        ["idle", "connecting", "connected", "logged_in", "failed_over", "disconnected"][link.link_state as usize];
    let source = ["none", "primary", "backup", "sim", "replay", "udp"][link.active_source as usize];
    assert_eq!(value(&s, &format!(r#"qilin_link_state{{{f},state="{state}"}}"#)), 1.0);
    assert_eq!(value(&s, &format!(r#"qilin_link_active_source{{{f},source="{source}"}}"#)), 1.0);
    let active: f64 = s.iter().filter(|(k, _)| k.starts_with("qilin_link_active_source{")).map(|(_, v)| v).sum();
    assert_eq!(active, 1.0, "exactly one active source");
    let heartbeat_age = value(&s, &format!("qilin_core_heartbeat_age_seconds{{{f}}}"));
    assert!((0.0..2.0).contains(&heartbeat_age), "heartbeat age {heartbeat_age}");

    // Last tick age for exactly the exchanges the simulator ticked, from the last-value cache.
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    let mut tick = TickRecord::ZERO;
    for (index, entry) in reader.instruments().iter().enumerate() {
        if reader.latest(index as u32, &mut tick) == Ok(true) {
            let exchange = Exchange::from_code(entry.exchange).unwrap().as_str();
            let e = newest.entry(exchange).or_insert(i64::MIN);
            *e = (*e).max(tick.receive_ns);
        }
    }
    assert!(newest.len() >= 3, "the simulator covers several exchanges: {newest:?}");
    let scraped: BTreeSet<String> = s
        .iter()
        .filter(|(k, v)| k.starts_with("qilin_exchange_last_tick_age_seconds{") && v.is_finite())
        .map(|(k, _)| k.split("exchange=\"").nth(1).unwrap().trim_end_matches("\"}").to_string())
        .collect();
    assert_eq!(scraped, newest.keys().map(|k| k.to_string()).collect::<BTreeSet<_>>());
    let scraped_at = now_ns();
    for (exchange, receive_ns) in &newest {
        let age = value(&s, &format!(r#"qilin_exchange_last_tick_age_seconds{{{f},exchange="{exchange}"}}"#));
        let expected = (scraped_at - receive_ns) as f64 / 1e9;
        assert!(
            age <= expected + 0.01 && age > expected - 5.0,
            "{exchange}: scraped {age} s, segment says {expected} s"
        );
    }

    // The sidecar's status file.
    let probe = |m: &str| format!(r#"{m}{{{f},sidecar="probe"}}"#);
    assert_eq!(value(&s, &probe("qilin_sidecar_up")), 1.0);
    assert_eq!(value(&s, &probe("qilin_sidecar_position")), (cursor - 10) as f64);
    assert_eq!(value(&s, &probe("qilin_sidecar_lag_sequences")), 10.0);
    assert_eq!(value(&s, &probe("qilin_sidecar_lag_seconds")), 1.5);
    assert_eq!(value(&s, &format!(r#"qilin_sidecar_counts_total{{{f},sidecar="probe",counter="errors"}}"#)), 2.0);
    assert_eq!(value(&s, &format!(r#"qilin_sidecar_info{{{f},sidecar="probe",program="qilin-probe"}}"#)), 1.0);

    // The recorder's journal and latency figures.
    assert_eq!(value(&s, &format!("qilin_journal_records_total{{{f}}}")), TICKS as f64);
    assert_eq!(value(&s, &format!("qilin_journal_writable{{{f}}}")), 1.0);
    assert_eq!(value(&s, &format!("qilin_journal_fsync_duration_seconds_count{{{f}}}")), 1.0);
    let recorded = latency.snapshot();
    assert_eq!(recorded.receive_to_publish.hist.count(), TICKS, "every sim tick has both timestamps");
    assert_eq!(value(&s, &format!("qilin_latency_receive_to_publish_seconds_count{{{f}}}")), TICKS as f64);
    assert_eq!(
        value(&s, &format!(r#"qilin_latency_receive_to_publish_seconds_bucket{{{f},le="+Inf"}}"#)),
        TICKS as f64
    );
    assert_eq!(
        value(&s, &format!("qilin_latency_exchange_to_receive_seconds_count{{{f}}}")),
        recorded.exchange_to_receive.hist.count() as f64
    );

    // promtool reads the exposition and finds nothing to lint.
    let (ok, out) = run(
        {
            let mut c = tool("promtool");
            c.args(["check", "metrics"]);
            c
        },
        Some(&reply.body),
    );
    assert!(ok, "promtool check metrics failed:\n{out}\n--- exposition ---\n{}", reply.body);

    // OpenMetrics when asked for, as Prometheus does.
    let om =
        get_ok(addr, "/metrics", Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"));
    assert_eq!(om.status, 200);
    assert!(om.header("content-type").unwrap().starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(om.body.ends_with("# EOF\n"));

    // The probes and the errors.
    let health = get_ok(addr, "/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = get_ok(addr, "/readyz", None);
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"), "no sessions configured: ticks are not checked");
    assert_eq!(get_ok(addr, "/nope", None).status, 404);
    server.stop();
    assert!(get(addr, "/healthz", None).is_err(), "stopped servers do not answer");
}

#[test]
fn readyz_fails_on_a_killed_core_and_a_full_journal() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("ready");
    let core = Core::start(dir.path(), &feed, 4096, 2000, 0);
    let reader = core.reader();
    let journal = Arc::new(JournalMetrics::new());
    let config = MetricsConfig { ticks_stale_ms: 1500, ..config(always_in_session()) };
    let exporter = Exporter::new(feed.clone(), &core.segment, &config).with_journal(journal.clone());
    let server = MetricsServer::start(&config, exporter).unwrap();
    let addr = server.local_addr();

    // Not ready until the journal says it is writable: once the core beats and ticks, the journal
    // is the one failing check. (Waits, not single looks: on a loaded 2-core machine a scheduling
    // hiccup of the busy-polling core may briefly fail the heartbeat or ticks check as well.)
    let readyz = || get_ok(addr, "/readyz", None);
    wait_for("the first ticks", || (reader.write_cursor() > 0).then_some(()));
    let r = wait_for("/readyz to fail on the journal alone", || {
        let r = readyz();
        (r.status == 503 && r.body.lines().count() == 1).then_some(r)
    });
    assert!(r.body.starts_with("journal: the journal is not writable"), "{}", r.body);
    journal.set_writable(true);
    let r = wait_for("/readyz to turn 200 (ticks flowing, heartbeat fresh)", || {
        let r = readyz();
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.body, "ready\n");

    journal.set_disk_full(true);
    let r = readyz();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("journal: the journal's disk is full"), "{}", r.body);
    journal.set_disk_full(false);
    wait_for("/readyz to turn 200 again", || (readyz().status == 200).then_some(()));

    // SIGKILL: the heartbeat goes stale (2 s) and the ticks stop (1.5 s): both are named.
    let pid = reader.writer_pid() as i32;
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let mut last = String::new();
    let r = wait_for("/readyz to name the stale heartbeat and the missing ticks", || {
        let r = readyz();
        if r.body != last {
            println!("/readyz {}: {}", r.status, r.body);
            last = r.body.clone();
        }
        (r.status == 503 && r.body.contains("heartbeat:") && r.body.contains("ticks:")).then_some(r)
    });
    assert!(r.body.contains("heartbeat: the core's heartbeat is"), "{}", r.body);
    assert!(r.body.contains("ticks: no tick published for"), "{}", r.body);
    assert!(!r.body.contains("journal"), "{}", r.body);
    assert_eq!(get_ok(addr, "/healthz", None).status, 200, "the process itself is fine");
    let s = samples(&get_ok(addr, "/metrics", None).body);
    assert_eq!(value(&s, &format!(r#"qilin_core_up{{feed="{feed}"}}"#)), 0.0);
    assert!(value(&s, &format!(r#"qilin_core_heartbeat_age_seconds{{feed="{feed}"}}"#)) > 2.0);
    assert_eq!(
        value(&s, &format!(r#"qilin_core_run_state{{feed="{feed}",state="running"}}"#)),
        1.0,
        "killed, not stopped"
    );
}

#[test]
fn alert_rules_pass_promtool_and_fire_on_the_conditions_they_name() {
    let rules = alerts_file();
    let (ok, out) = run(
        {
            let mut c = tool("promtool");
            c.arg("check").arg("rules").arg(&rules);
            c
        },
        None,
    );
    assert!(ok, "promtool check rules {}:\n{out}", rules.display());

    // Unit tests of the rules: synthetic series in, expected alerts out.
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("alerts_test.yml");
    let l = r#"feed="f",instance="h:9464",job="qilin-recorder""#;
    fs::write(
        &tests,
        format!(
            r#"rule_files: [{rules:?}]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'qilin_core_up{{{l}}}'
        values: '1 1 0 0 0'
      - series: 'qilin_core_segment_up{{{l}}}'
        values: '1 1 1 1 1'
      - series: 'qilin_exchange_last_tick_age_seconds{{{l},exchange="SHFE"}}'
        values: '1 40 55 70 85 100 115'
      - series: 'qilin_exchange_session_open{{{l},exchange="SHFE"}}'
        values: '1 1 1 1 1 1 1'
      - series: 'qilin_exchange_last_tick_age_seconds{{{l},exchange="DCE"}}'
        values: '1 40 55 70 85 100 115'
      - series: 'qilin_exchange_session_open{{{l},exchange="DCE"}}'
        values: '0 0 0 0 0 0 0'
      - series: 'qilin_sidecar_up{{{l},sidecar="nats"}}'
        values: '1 0 0 0 0 0 0'
      - series: 'qilin_journal_disk_full{{{l}}}'
        values: '0 1'
      - series: 'qilin_journal_writable{{{l}}}'
        values: '1 1'
      - series: 'qilin_core_failovers_total{{{l}}}'
        values: '0 0 1 1'
      - series: 'qilin_sidecar_counts{{{l},sidecar="secrets",counter="rotations_failed"}}'
        values: '0 0 0 1 1'
      - series: 'qilin_key_overdue{{{l},key="audit-signing",type="signing"}}'
        values: '0 1x300'
      - series: 'qilin_key_overdue{{{l},key="nats-token",type="api"}}'
        values: '0x300'
      - series: 'qilin_keys_schedule_age_seconds{{{l}}}'
        values: '172800+15x200'
    alert_rule_test:
      - eval_time: 45s
        alertname: QilinCoreDown
        exp_alerts:
          - exp_labels: {{severity: critical, feed: f, instance: "h:9464", job: qilin-recorder}}
            exp_annotations:
              summary: "feed f: qilin-core is down or stalled"
              description: "The core's heartbeat is stale or the core stopped (heartbeat age: see qilin_core_heartbeat_age_seconds). Strategies on h:9464 get no data."
      - eval_time: 15s
        alertname: QilinCoreDown
        exp_alerts: []
      - eval_time: 90s
        alertname: QilinExchangeStale
        exp_alerts:
          - exp_labels: {{severity: critical, feed: f, instance: "h:9464", job: qilin-recorder, exchange: SHFE}}
            exp_annotations:
              summary: "feed f: no SHFE tick for 1m 55s in session"
              description: "SHFE is in a trading session (metrics.sessions) but none of its instruments has ticked for over 30 s."
      - eval_time: 90s
        alertname: QilinSidecarNotRunning
        exp_alerts:
          - exp_labels: {{severity: critical, feed: f, instance: "h:9464", job: qilin-recorder, sidecar: nats}}
            exp_annotations:
              summary: "feed f: sidecar nats is not running"
              description: "Its status file has not been rewritten for over a minute (qilinctl status shows it too). An instance retired for good: delete its status file."
      - eval_time: 15s
        alertname: QilinJournalDiskFull
        exp_alerts:
          - exp_labels: {{severity: critical, feed: f, instance: "h:9464", job: qilin-recorder}}
            exp_annotations:
              summary: "feed f: journal disk full, recording paused"
              description: "The recorder on h:9464 cannot write its journal: free space. It resumes by itself from the ring while the ring still holds its position."
      - eval_time: 45s
        alertname: QilinFailoverHappened
        exp_alerts:
          - exp_labels: {{severity: warning, feed: f, instance: "h:9464", job: qilin-recorder}}
            exp_annotations:
              summary: "feed f: market-data session switched between primary and backup"
              description: "A failover or failback happened in the last 10 minutes on h:9464; check the audit log and the link state."
      - eval_time: 30s
        alertname: QilinSecretsRotationFailed
        exp_alerts: []
      - eval_time: 60s
        alertname: QilinSecretsRotationFailed
        exp_alerts:
          - exp_labels: {{severity: warning, feed: f, instance: "h:9464", job: qilin-recorder, sidecar: secrets, counter: rotations_failed}}
            exp_annotations:
              summary: "feed f: a credential rotation failed"
              description: "qilin-secrets could not complete a rotation in the last 30 minutes (it rolled back or is retrying); see its status file and the audit log."
      - eval_time: 59m
        alertname: QilinKeyOverdue
        exp_alerts: []
      - eval_time: 61m
        alertname: QilinKeyOverdue
        exp_alerts:
          - exp_labels: {{severity: warning, feed: f, instance: "h:9464", job: qilin-recorder, key: audit-signing, type: signing}}
            exp_annotations:
              summary: "feed f: managed key audit-signing is past its rotation date"
              description: "The signing key audit-signing was due for rotation and has not been rotated for an hour: the qilin-keys-rotate timer failed or is not installed (systemctl status qilin-keys-rotate.service)."
      - eval_time: 5m
        alertname: QilinKeyScheduleStale
        exp_alerts: []
      - eval_time: 20m
        alertname: QilinKeyScheduleStale
        exp_alerts:
          - exp_labels: {{severity: warning, feed: f, instance: "h:9464", job: qilin-recorder}}
            exp_annotations:
              summary: "feed f: key rotation timer has not run for 2d 0h 20m 0s"
              description: "The key schedule was last written by `qilinctl keys rotate --due` over two days ago; the daily qilin-keys-rotate timer is not running, so no key rotates on time."
"#
        ),
    )
    .unwrap();
    let (ok, out) = run(
        {
            let mut c = tool("promtool");
            c.arg("test").arg("rules").arg(&tests);
            c
        },
        None,
    );
    assert!(ok, "promtool test rules:\n{out}");
}

/// A real Prometheus server; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a PromQL query for a URL.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_endpoint_and_answers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("prom");
    const TICKS: u64 = 5000;
    let core = Core::start(dir.path(), &feed, 8192, 50_000, TICKS);
    let reader = core.reader();
    wait_finished(&reader, TICKS);
    let config = config(Vec::new());
    let server = MetricsServer::start(&config, Exporter::new(feed.clone(), &core.segment, &config)).unwrap();

    let port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{:?}]\nscrape_configs:\n  - job_name: qilin-recorder\n    static_configs:\n      - targets: ['{}']\n",
            alerts_file().display().to_string(),
            server.local_addr()
        ),
    )
    .unwrap();
    let log = fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = tool("prometheus")
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg("--storage.tsdb.retention.time=30d")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let prometheus = Prometheus { child, port };
    let api = SocketAddr::from(([127, 0, 0, 1], prometheus.port));
    let query = |q: &str| -> Option<Value> {
        let reply = get(api, &format!("/api/v1/query?query={}", url_encode(q)), None).ok()?;
        let v: Value = serde_json::from_str(&reply.body).ok()?;
        (v["status"] == "success").then(|| v["data"]["result"].clone())
    };
    let q = format!(r#"qilin_core_ticks_published_total{{feed="{feed}",job="qilin-recorder"}}"#);
    let result = wait_for("prometheus to scrape and answer the query", || {
        query(&q).filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    });
    let log = || fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let sample = &result[0];
    assert_eq!(sample["metric"]["instance"], server.local_addr().to_string(), "{result}\n{}", log());
    assert_eq!(sample["value"][1], TICKS.to_string(), "{result}");
    // The scrape itself is healthy and the rule file loaded.
    let up = query(&format!(r#"up{{job="qilin-recorder",instance="{}"}}"#, server.local_addr())).unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up}\n{}", log());
    let rules: Value = serde_json::from_str(&get(api, "/api/v1/rules", None).unwrap().body).unwrap();
    let groups: Vec<&str> =
        rules["data"]["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(groups.contains(&"qilin-core") && groups.contains(&"qilin-journal"), "{groups:?}\n{}", log());
}

#[test]
fn journal_metrics_come_from_a_real_recorder() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use qilin_sidecar::recorder::{Config as RecorderConfig, Recorder};

    let dir = tempfile::tempdir().unwrap();
    let feed = unique("rec");
    const TICKS: u64 = 5000;
    let core = Core::start(dir.path(), &feed, 8192, 50_000, TICKS);
    wait_finished(&core.reader(), TICKS);

    // The recorder's loop on its own thread, as qilin-recorder runs it; its stats come back here.
    let recorder_config = RecorderConfig {
        segment: core.segment.clone(),
        journal_dir: dir.path().join("journal"),
        status_interval_ms: 50,
        ..RecorderConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (stats_tx, stats_rx) = std::sync::mpsc::channel();
    let recorder = {
        let (config, stop) = (recorder_config.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut recorder = Recorder::start(config.clone(), Reader::open(&config.segment).unwrap()).unwrap();
            stats_tx.send(recorder.stats()).unwrap();
            recorder.run(&stop).unwrap();
        })
    };
    let stats = stats_rx.recv_timeout(WATCHDOG).unwrap();
    let config = config(Vec::new());
    let exporter = Exporter::new(feed.clone(), &core.segment, &config).with_journal(stats);
    let server = MetricsServer::start(&config, exporter).unwrap();
    let addr = server.local_addr();
    let f = format!(r#"feed="{feed}""#);

    let s = wait_for("the recorder's journal to hold every tick and fsync it", || {
        let s = samples(&get_ok(addr, "/metrics", None).body);
        let synced = s.get(&format!("qilin_journal_synced_position{{{f}}}")).copied();
        (synced == Some(TICKS as f64)).then_some(s)
    });
    assert_eq!(value(&s, &format!("qilin_journal_records_total{{{f}}}")), TICKS as f64);
    assert_eq!(value(&s, &format!("qilin_journal_position{{{f}}}")), TICKS as f64);
    assert_eq!(value(&s, &format!("qilin_journal_writable{{{f}}}")), 1.0);
    assert_eq!(value(&s, &format!("qilin_journal_disk_full{{{f}}}")), 0.0);
    assert!(value(&s, &format!("qilin_journal_written_bytes_total{{{f}}}")) > (TICKS * 376) as f64);
    assert!(value(&s, &format!("qilin_journal_fsyncs_total{{{f}}}")) >= 1.0);
    assert!(value(&s, &format!("qilin_journal_fsync_max_seconds{{{f}}}")) > 0.0);
    // The recorder's own status file shows up as a sidecar, caught up.
    let rec = |m: &str| format!(r#"{m}{{{f},sidecar="recorder"}}"#);
    assert_eq!(value(&s, &format!(r#"qilin_sidecar_info{{{f},sidecar="recorder",program="qilin-recorder"}}"#)), 1.0);
    assert_eq!(value(&s, &rec("qilin_sidecar_up")), 1.0);
    assert_eq!(value(&s, &rec("qilin_sidecar_position")), TICKS as f64);
    assert_eq!(value(&s, &rec("qilin_sidecar_lag_sequences")), 0.0);
    let ready = wait_for("/readyz to be 200", || Some(get_ok(addr, "/readyz", None)).filter(|r| r.status == 200));
    assert_eq!(ready.body, "ready\n");

    // Stopped, the recorder's stats go stale: /readyz says so.
    stop.store(true, Ordering::Relaxed);
    recorder.join().unwrap();
    let r = wait_for("/readyz to notice the recorder stopped reporting", || {
        let r = get_ok(addr, "/readyz", None);
        (r.status == 503).then_some(r)
    });
    assert!(r.body.starts_with("journal: the recorder last reported"), "{}", r.body);
}

#[test]
fn the_qilin_recorder_process_serves_metrics_for_its_journal_and_latencies() {
    let dir = tempfile::tempdir().unwrap();
    let feed = unique("met-proc");
    const TICKS: u64 = 3000;
    let core = Core::start(dir.path(), &feed, 1 << 14, 20_000, TICKS);
    let port = free_port();
    let config = dir.path().join("recorder.toml");
    std::fs::write(
        &config,
        format!(
            "segment = {:?}\njournal_dir = {:?}\nstatus_interval_ms = 50\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            core.segment.display().to_string(),
            dir.path().join("journal").display().to_string()
        ),
    )
    .unwrap();
    let _recorder = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_qilin-recorder"))
            .arg("--config")
            .arg(&config)
            .stderr(std::fs::File::create(dir.path().join("recorder.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let series = wait_for("the recorder's metrics to show every tick journaled", || {
        let reply = get(addr, "/metrics", None).ok()?;
        let s = samples(&reply.body);
        (s.get(&format!("qilin_journal_records_total{{feed=\"{feed}\"}}")) == Some(&(TICKS as f64))).then_some(s)
    });
    let count = |name: &str| value(&series, &format!("{name}_count{{feed=\"{feed}\"}}"));
    assert_eq!(count("qilin_latency_receive_to_publish_seconds"), TICKS as f64, "every tick read feeds the histogram");
    assert_eq!(value(&series, &format!("qilin_core_ticks_published_total{{feed=\"{feed}\"}}")), TICKS as f64);
    assert_eq!(get_ok(addr, "/healthz", None).status, 200);
}

#[test]
fn managed_keys_due_dates_and_an_overdue_key_are_scraped_from_the_schedule_file() {
    use qilin_market::secrets::schedule::{FORMAT, KeyDue, KeySchedule};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys-schedule.json");
    let now_s = now_ns() / 1_000_000_000;
    let key = |name: &str, key_type: &str, due: Option<i64>| KeyDue {
        name: name.into(),
        key_type: key_type.into(),
        active_version: due.map(|_| 2),
        next_due_unix_s: due,
    };
    // Written three days ago: nats-token due in 30 days, audit-signing a day overdue, one retired.
    let schedule = KeySchedule {
        format: FORMAT.into(),
        written_unix_s: now_s - 3 * 86_400,
        keys: vec![
            key("nats-token", "api", Some(now_s + 30 * 86_400)),
            key("audit-signing", "signing", Some(now_s - 86_400)),
            key("old-token", "api", None),
        ],
    };
    fs::write(&path, schedule.to_json()).unwrap();
    // No core at all: the key metrics do not depend on the segment.
    let config = MetricsConfig { keys_schedule: Some(path.clone()), ..config(always_in_session()) };
    let exporter = Exporter::new("keys", dir.path().join("no-segment"), &config);
    let server = MetricsServer::start(&config, exporter).unwrap();
    let scrape = || samples(&get_ok(server.local_addr(), "/metrics", None).body);

    let s = scrape();
    let l = |k: &str, t: &str| format!(r#"{{feed="keys",key="{k}",type="{t}"}}"#);
    assert_eq!(value(&s, r#"qilin_keys_schedule_up{feed="keys"}"#), 1.0);
    assert_eq!(
        value(&s, &format!("qilin_key_next_due_timestamp_seconds{}", l("nats-token", "api"))),
        (now_s + 30 * 86_400) as f64
    );
    assert_eq!(value(&s, &format!("qilin_key_overdue{}", l("nats-token", "api"))), 0.0);
    assert_eq!(value(&s, &format!("qilin_key_overdue{}", l("audit-signing", "signing"))), 1.0);
    assert_eq!(value(&s, &format!("qilin_key_overdue{}", l("old-token", "api"))), 0.0);
    assert!(!s.keys().any(|k| k.starts_with("qilin_key_next_due_timestamp_seconds") && k.contains("old-token")));
    let age = value(&s, r#"qilin_keys_schedule_age_seconds{feed="keys"}"#);
    assert!((3.0 * 86_400.0..3.0 * 86_400.0 + 600.0).contains(&age), "age {age}");

    // promtool reads the key metrics too.
    let (ok, out) = run(
        {
            let mut c = tool("promtool");
            c.arg("check").arg("metrics");
            c
        },
        Some(&get_ok(server.local_addr(), "/metrics", None).body),
    );
    assert!(ok, "promtool check metrics:\n{out}");

    // A damaged file: the metrics say so, the key series are gone (no stale values).
    fs::write(&path, "{\"format\":").unwrap();
    let s = scrape();
    assert_eq!(value(&s, r#"qilin_keys_schedule_up{feed="keys"}"#), 0.0);
    assert!(!s.keys().any(|k| k.starts_with("qilin_key_")), "no key series from a damaged file");
    server.stop();
}

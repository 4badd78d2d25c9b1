//! `qilinctl` as a process against segments this test writes with `qilin_shm::Writer`: exit codes
//! (0 live, 2 missing or foreign segment, 3 stale or stopped), `tail` output (JSON with CTP field
//! names, gaps, instrument filter) and `instruments`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
};

use qilin_shm::{Exchange, RunState, SegmentOptions, TickRecord, Writer, layout::fixed_id};
use serde_json::Value;

struct Segment(PathBuf);

impl Segment {
    fn new(tag: &str) -> Segment {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Segment(PathBuf::from(format!("/dev/shm/qilinctl-test-{tag}-{}-{n}", std::process::id())))
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        qilin_testkit::remove_segment(&self.0);
    }
}

fn qilinctl(segment: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qilinctl")).arg("--segment").arg(segment).args(args).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A writer with two instruments and `n` ticks alternating between them.
fn writer(segment: &Segment, ring_slots: u64, n: u64) -> Writer {
    let options = SegmentOptions { feed_name: "ctltest".into(), ring_slots, instrument_capacity: 8 };
    let mut w = Writer::open(&segment.0, &options).unwrap();
    w.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
    w.add_instrument("m2605", Exchange::Dce, 10, 1.0).unwrap();
    for i in 0..n {
        let mut t = TickRecord::ZERO;
        t.instrument_index = (i % 2) as u32;
        t.instrument_id = fixed_id(if i % 2 == 0 { "rb2605" } else { "m2605" }).unwrap();
        t.exchange = if i % 2 == 0 { Exchange::Shfe as u8 } else { Exchange::Dce as u8 };
        t.last_price = 3000.0 + i as f64;
        t.settlement_price = f64::NAN;
        t.update_time_ms = 9 * 3_600_000 + i as u32 * 500;
        w.publish(&mut t).unwrap();
    }
    w.set_run_state(RunState::Running);
    w.heartbeat(qilin_shm::now_ns());
    w
}

#[test]
fn missing_or_foreign_segment_exits_2_with_a_one_line_reason() {
    let missing = Segment::new("missing");
    let out = qilinctl(&missing.0, &["status"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&missing.0.display().to_string()), "{err}");

    let foreign = Segment::new("foreign");
    drop(writer(&foreign, 16, 1));
    let mut bytes = std::fs::read(&foreign.0).unwrap();
    bytes[8] = 99; // layout_version
    std::fs::write(&foreign.0, &bytes).unwrap();
    let out = qilinctl(&foreign.0, &["tail"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("layout version 99"), "{err}");
}

#[test]
fn status_is_0_when_live_and_3_when_stale_or_stopped() {
    let segment = Segment::new("status");
    let mut w = writer(&segment, 16, 5);
    let out = qilinctl(&segment.0, &["status", "--json", "--stale-ms", "60000"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["write_cursor"], 5);
    assert_eq!(v["instruments"], 2);
    assert_eq!(v["liveness"], "live");
    assert_eq!(v["counters"]["ticks_published"], 0, "counters are the core's, not the writer's");

    w.heartbeat(qilin_shm::now_ns() - 10_000_000_000);
    let out = qilinctl(&segment.0, &["status", "--stale-ms", "1000"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(err.contains("stale"), "{err}");
    assert!(stdout.contains("sequence     5"), "{stdout}");

    w.set_run_state(RunState::Stopped);
    let out = qilinctl(&segment.0, &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains("stopped"));
}

#[test]
fn status_lists_each_sidecar_with_its_position_and_liveness() {
    let segment = Segment::new("sidecars");
    let _w = writer(&segment, 64, 10);
    let dir = qilin_tools::sidecar_status_dir(&segment.0);
    std::fs::create_dir_all(&dir).unwrap();
    let now = qilin_shm::now_ns();
    let fresh = serde_json::json!({"sidecar": "qilin-nats", "pid": 77, "updated_ns": now, "position": 9,
        "lag_sequences": 1, "lag_ns": 2_000_000, "connected": true, "last_error": null});
    let old = serde_json::json!({"sidecar": "qilin-nats", "pid": 78, "updated_ns": now - 60_000_000_000i64,
        "position": 3, "lag_sequences": 7, "lag_ns": 0, "connected": false, "last_error": "flush: timed out"});
    std::fs::write(dir.join("nats.json"), fresh.to_string()).unwrap();
    std::fs::write(dir.join("nats-b.json"), old.to_string()).unwrap();
    std::fs::write(dir.join(".nats.json.tmp"), "half").unwrap();
    // qilin-secrets follows no position: its status has the rotation's state instead.
    let secrets = serde_json::json!({"sidecar": "qilin-secrets", "pid": 79, "updated_ns": now,
        "rotation": {"state": "retrying", "last_rotation": "r-3", "last_outcome": "failed: backup not logged in",
                     "next_attempt_in_ms": 1500},
        "counters": {"watch_rounds": 12, "rotations_failed": 1}, "last_error": "backup not logged in"});
    std::fs::write(dir.join("secrets.json"), secrets.to_string()).unwrap();

    let out = qilinctl(&segment.0, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sidecars = v["sidecars"].as_array().unwrap();
    assert_eq!(sidecars.len(), 3, "{v}");
    assert_eq!((sidecars[0]["instance"].as_str(), sidecars[0]["alive"].as_bool()), (Some("nats"), Some(true)));
    assert_eq!(sidecars[0]["position"], 9);
    assert_eq!((sidecars[1]["instance"].as_str(), sidecars[1]["alive"].as_bool()), (Some("nats-b"), Some(false)));

    let (stdout, _) = text(&qilinctl(&segment.0, &["status"]));
    let line = stdout.lines().find(|l| l.contains("nats-b")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("position 3") && line.contains("NOT RUNNING") && line.contains("DISCONNECTED"), "{line}");
    assert!(line.contains("last error: flush: timed out"), "{line}");
    let line = stdout.lines().find(|l| l.contains("nats (")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("position 9") && line.contains("lag 1 ticks / 2.0 ms") && line.contains("alive"), "{line}");
    let line = stdout.lines().find(|l| l.contains("secrets (")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(!line.contains("position") && !line.contains("null"), "{line}");
    assert!(line.contains("rotation retrying, next attempt in 1500 ms") && line.contains("alive"), "{line}");
    assert!(line.contains("last rotation r-3: failed: backup not logged in"), "{line}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tail_prints_ctp_json_filters_by_instrument_and_reports_gaps() {
    let segment = Segment::new("tail");
    let _w = writer(&segment, 16, 10);
    let out = qilinctl(&segment.0, &["tail", "--from", "oldest", "--json", "--count", "3"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["sequence"], 1);
    assert_eq!(lines[0]["InstrumentID"], "rb2605");
    assert_eq!(lines[0]["ExchangeID"], "SHFE");
    assert_eq!(lines[0]["LastPrice"], 3000.0);
    assert_eq!(lines[0]["SettlementPrice"], Value::Null, "NaN is null");
    assert_eq!(lines[1]["UpdateTime"], "09:00:00");
    assert_eq!(lines[1]["UpdateMillisec"], 500);

    let out = qilinctl(&segment.0, &["tail", "--from", "1", "--json", "--instrument", "m2605", "--count", "2"]);
    let lines: Vec<Value> = text(&out).0.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|l| l["sequence"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 4]);

    // A ring of 16 holding 40 ticks (25..=40): reading from 1 starts with the gap 1..=24 plus the
    // default lap headroom of 16 / 8 = 2 sequences.
    let lapped = Segment::new("lapped");
    let _w = writer(&lapped, 16, 40);
    let out = qilinctl(&lapped.0, &["tail", "--from", "1", "--count", "1", "--idle-exit-ms", "2000"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("-- gap: sequences 1..=26 lost (26 ticks)"), "{stdout}");
}

/// `qilinctl tail | head`: the reader closing the pipe ends tail quietly with exit 0, as `cat`
/// would, not with a panic and a backtrace. The segment holds far more rows than a pipe buffers, so
/// tail is still writing when the read end closes.
#[test]
fn tail_into_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader, Read};
    let segment = Segment::new("pipe");
    let _w = writer(&segment, 8192, 8000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_qilinctl"))
        .arg("--segment")
        .arg(&segment.0)
        .args(["tail", "--from", "oldest", "--json"])
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"sequence\":1"), "{first}");
    drop(stdout); // `head -1` exits
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "qilinctl tail kept running after its reader went away");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "tail said something on a closed pipe: {err}");
}

#[test]
fn instruments_lists_the_directory_with_last_values() {
    let segment = Segment::new("instruments");
    let _w = writer(&segment, 16, 4);
    let out = qilinctl(&segment.0, &["instruments", "--json"]);
    let lines: Vec<Value> = text(&out).0.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["InstrumentID"], "m2605");
    assert_eq!(lines[1]["ExchangeID"], "DCE");
    assert_eq!(lines[1]["last"]["sequence"], 4);
    assert_eq!(lines[0]["last"]["LastPrice"], 3002.0);
}

#[test]
fn instruments_unknown_lists_only_products_admitted_without_a_spec() {
    let segment = Segment::new("instruments-unknown");
    let mut w = writer(&segment, 16, 4);
    assert_eq!(text(&qilinctl(&segment.0, &["instruments", "--unknown"])).0, "", "none unknown yet");
    let index = w.add_instrument("xx2605", Exchange::Shfe, 1, 0.0001).unwrap();
    let mut t = TickRecord::ZERO;
    t.instrument_index = index;
    t.instrument_id = fixed_id("xx2605").unwrap();
    t.exchange = Exchange::Shfe as u8;
    t.quality = qilin_shm::quality::UNKNOWN_PRODUCT;
    w.publish(&mut t).unwrap();
    let out = qilinctl(&segment.0, &["instruments", "--unknown", "--json"]);
    let lines: Vec<Value> = text(&out).0.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0]["InstrumentID"].as_str(), lines[0]["index"].as_u64()), (Some("xx2605"), Some(2)));
    assert_eq!(lines[0]["last"]["quality"], serde_json::json!(["unknown_product"]));
}

#[test]
fn layout_prints_every_field_offset() {
    let out = Command::new(env!("CARGO_BIN_EXE_qilinctl")).arg("layout").output().unwrap();
    let stdout = text(&out).0;
    let fingerprint = qilin_shm::layout::fingerprint_text(qilin_shm::FINGERPRINT);
    assert!(stdout.contains(&format!("fingerprint {fingerprint}")), "{stdout}");
    assert!(stdout.contains("TickRecord (376 bytes)"), "{stdout}");
    assert!(stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["88", "8", "last_price"]), "{stdout}");
}

#[test]
fn snapshot_prints_every_last_value_and_layout_json_has_every_field() {
    let segment = Segment::new("snapshot");
    let _w = writer(&segment, 16, 5);
    let out = qilinctl(&segment.0, &["snapshot", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let lines: Vec<Value> = text(&out).0.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last: Vec<_> = lines.iter().map(|l| (l["InstrumentID"].clone(), l["sequence"].clone())).collect();
    assert_eq!(last, [(Value::from("rb2605"), Value::from(5)), (Value::from("m2605"), Value::from(4))]);

    let out = Command::new(env!("CARGO_BIN_EXE_qilinctl")).args(["layout", "--json"]).output().unwrap();
    let layout: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(layout["layout_version"], qilin_shm::LAYOUT_VERSION);
    let record = layout["structs"].as_array().unwrap().iter().find(|s| s["name"] == "TickRecord").unwrap();
    assert_eq!(record["size"], 376);
    let field = record["fields"].as_array().unwrap().iter().find(|f| f["name"] == "ask_volume").unwrap();
    assert_eq!((field["offset"].as_u64(), field["size"].as_u64()), (Some(340), Some(20)));
    assert_eq!(layout["counters"][0], "ticks_received");
}

#[test]
fn calendar_check_names_missing_years_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let today = qilin_market::Date::china_of(qilin_shm::now_ns());
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_qilinctl")).args(args).output().unwrap();
    let d = dir.path().to_str().unwrap();
    // Nothing yet: this year is missing (exit 1, named).
    let out = run(&["calendar", "check", "--dir", d]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).0.contains(&format!("{}: MISSING", today.year())), "{:?}", text(&out));
    // This year (and, in December, the next): valid and complete.
    for year in [today.year(), today.year() + 1] {
        std::fs::write(dir.path().join(format!("{year}.toml")), format!("year = {year}\n")).unwrap();
    }
    let out = run(&["calendar", "check", "--dir", d, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let v: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(v["missing"], serde_json::json!([]));
    assert!(v["years"][0]["trading_days"].as_u64().unwrap() >= 260, "a year of weekdays: {v}");
    // A holiday on a Saturday: the file and the date are named, exit 2.
    let saturday = (0..7).map(|i| today.add_days(i)).find(|d| d.weekday() == 5 && d.year() == today.year());
    if let Some(saturday) = saturday {
        let text_file = format!("year = {}\n[[holiday]]\ndate = \"{}\"\nname = \"x\"\n", today.year(), saturday.iso());
        std::fs::write(dir.path().join(format!("{}.toml", today.year())), text_file).unwrap();
        let out = run(&["calendar", "check", "--dir", d]);
        assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
        let err = text(&out).1;
        assert!(err.contains(&format!("{}.toml", today.year())) && err.contains(&saturday.iso()), "{err}");
    }
}

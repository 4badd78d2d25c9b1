//! The journal commands of the real `qilinctl` binary: `import --csv` / `export --csv` round trips
//! (byte-identical CSV, byte-identical records), a vendor CTP export, refusals that leave nothing
//! behind, `quality` on a journal crafted with known defects, and `replay` through the real
//! `qilin-core` into a segment, audited.

mod common;

use common::{qilinctl, repo_instruments, s, text};

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use qilin_journal::{Entry, GapReason, JournalReader, JournalWriter, WriterOptions, file_path};
use qilin_market::{Date, date::utc_ns};
use qilin_shm::{Counter, Exchange, Next, Reader, SegmentOptions, Source, Start, TickRecord, Writer, quality};
use qilin_tools::tick_csv::TickCsvWriter;
use serde_json::Value;
use zerocopy::IntoBytes;

/// A hang guard for anything that waits on a process, never a performance bound.
const WATCHDOG: Duration = Duration::from_secs(120);

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("qilin-test-jcli-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A tick of `id` at China-local `hh:mm:ss.ms` on `day` (a day-session tick: trading day = calendar day).
fn tick(seq: u64, id: &str, exchange: Exchange, day: u32, hms: (u32, u32, u32), ms: u32) -> TickRecord {
    let mut t = TickRecord::ZERO;
    t.sequence = seq;
    t.instrument_id = qilin_shm::layout::fixed_id(id).unwrap();
    t.exchange = exchange as u8;
    t.trading_day = day;
    t.action_day = day;
    t.update_time_ms = (hms.0 * 3600 + hms.1 * 60 + hms.2) * 1000 + ms;
    t.exchange_time_ns = utc_ns(Date::from_ymd(day).unwrap(), t.update_time_ms / 1000, t.update_time_ms % 1000);
    t.receive_ns = t.exchange_time_ns + 2_345_678;
    t.publish_ns = t.receive_ns + 910;
    t.source = Source::Sim as u8;
    t.last_price = 3100.0 + seq as f64;
    t.upper_limit_price = 3400.0;
    t.lower_limit_price = 2800.0;
    t.bid_price = [3099.0, 3098.0, 3097.0, 3096.0, f64::NAN];
    t.ask_price = [3101.0, 3102.0, 3103.0, 3104.0, f64::NAN];
    t.bid_volume = [5, 4, 3, 2, 0];
    t.ask_volume = [6, 7, 8, 9, 0];
    t.volume = 1000 + seq as i64;
    t.turnover = 31_000_000.5 + seq as f64;
    t.open_interest = 123_456.0;
    t.average_price = 3100.25;
    t.settlement_price = f64::NAN;
    t.pre_delta = -0.0;
    t.quality = quality::ABSENT_PRICE;
    t
}

/// Ticks over two trading days, with the values a CSV can get wrong.
fn sample_ticks() -> Vec<TickRecord> {
    let mut out = Vec::new();
    let mut seq = 0;
    for day in [20250512, 20250513] {
        for i in 0..40u32 {
            seq += 1;
            let (id, ex) =
                [("rb2605", Exchange::Shfe), ("m2609", Exchange::Dce), ("SR609", Exchange::Czce)][i as usize % 3];
            let mut t = tick(seq, id, ex, day, (9, 1 + i / 60, i % 60), (i * 137) % 1000);
            t.instrument_index = i % 3;
            t.last_price = [0.1 + 0.2, 1e-7, 123_456_789.012_345_6, 3612.0][i as usize % 4];
            t.curr_delta = if i % 5 == 0 { f64::NAN } else { -1.5e-12 * f64::from(i) };
            t.quality = [0, quality::STALE_SNAPSHOT | quality::ABSENT_PRICE, 1 << 25][i as usize % 3];
            t.source = [Source::Primary, Source::Backup, Source::Udp][i as usize % 3] as u8;
            out.push(t);
        }
    }
    out
}

fn csv_of(ticks: &[TickRecord]) -> Vec<u8> {
    let mut w = TickCsvWriter::new(Vec::new()).unwrap();
    for t in ticks {
        w.write(t).unwrap();
    }
    w.finish().unwrap()
}

fn journal_ticks(path: &Path) -> Vec<TickRecord> {
    JournalReader::open(path)
        .unwrap()
        .map(|e| match e.unwrap() {
            Entry::Tick(t) => t,
            Entry::Gap(g) => panic!("unexpected gap {g:?}"),
        })
        .collect()
}

fn audit_lines(log: &Path) -> Vec<Value> {
    fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn import_then_export_gives_back_the_same_csv_and_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let (journals, log) = (dir.path().join("journal"), dir.path().join("audit.jsonl"));
    let ticks = sample_ticks();
    let input = dir.path().join("in.csv");
    fs::write(&input, csv_of(&ticks)).unwrap();

    let out = qilinctl(&[
        "import",
        "--csv",
        s(&input),
        "--journal-dir",
        s(&journals),
        "--feed",
        "rt",
        "--audit-log",
        s(&log),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // One journal per trading day; the records are the originals, byte for byte, sequences kept.
    let day1 = journal_ticks(&file_path(&journals, "rt", 20250512));
    let day2 = journal_ticks(&file_path(&journals, "rt", 20250513));
    assert_eq!((day1.len(), day2.len()), (40, 40));
    for (a, b) in ticks.iter().zip(day1.iter().chain(&day2)) {
        assert_eq!(a.as_bytes(), b.as_bytes(), "record {} changed on the way through CSV", a.sequence);
    }
    assert_eq!(JournalReader::open(file_path(&journals, "rt", 20250513)).unwrap().header().base_sequence, 40);
    let names: Vec<String> =
        fs::read_dir(&journals).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "no temporary directory left behind: {names:?}");

    let exported = dir.path().join("out.csv");
    let out = qilinctl(&["export", "--csv", "--journal-dir", s(&journals), "--feed", "rt", "-o", s(&exported)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&exported).unwrap(), fs::read(&input).unwrap(), "export → import → export is byte-identical");

    // Stdout, one day, one instrument.
    let out = qilinctl(&[
        "export",
        "--csv",
        "--journal-dir",
        s(&journals),
        "--feed",
        "rt",
        "--day",
        "20250513",
        "--instrument",
        "m2609",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1 + 13, "header + the 13 m2609 ticks of the day");
    assert!(stdout.lines().skip(1).all(|l| l.starts_with("20250513,m2609,DCE,")), "{stdout}");

    // The import was audited.
    let entries = audit_lines(&log);
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0]["command"].as_str(), entries[0]["exit_code"].as_i64()), (Some("import"), Some(0)));
    assert_eq!(entries[0]["actions"][0]["rows"], 80);
    assert_eq!(entries[0]["actions"][0]["sequences"], "kept");

    // Existing journals are not overwritten without --force; with it they are.
    let before = fs::read(file_path(&journals, "rt", 20250512)).unwrap();
    let out = qilinctl(&[
        "import",
        "--csv",
        s(&exported),
        "--journal-dir",
        s(&journals),
        "--feed",
        "rt",
        "--audit-log",
        s(&log),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{}", text(&out));
    assert_eq!(fs::read(file_path(&journals, "rt", 20250512)).unwrap(), before);
    assert_eq!(audit_lines(&log)[1]["exit_code"], 2, "a refused import is audited too");
    let out = qilinctl(&[
        "import",
        "--csv",
        s(&exported),
        "--journal-dir",
        s(&journals),
        "--feed",
        "rt",
        "--force",
        "--audit-log",
        s(&log),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(audit_lines(&log)[2]["actions"][0]["replaced"].as_array().unwrap().len(), 2);
}

#[test]
fn a_bad_row_names_file_line_and_column_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journal");
    let mut csv = String::from_utf8(csv_of(&sample_ticks())).unwrap();
    // Break the UpdateTime of the 61st tick (line 62), in the second day.
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    lines[61] = lines[61].replacen(",09:01:", ",9:01:", 1);
    csv = lines.join("\n") + "\n";
    let input = dir.path().join("bad.csv");
    fs::write(&input, csv).unwrap();
    let out = qilinctl(&[
        "import",
        "--csv",
        s(&input),
        "--journal-dir",
        s(&journals),
        "--feed",
        "bad",
        "--audit-log",
        s(&dir.path().join("a.jsonl")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}: line 62, column 20 (UpdateTime): \"9:01:", input.display())), "{stderr}");
    let left = fs::read_dir(&journals).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no journal of the first, good day was written either");
}

#[test]
fn a_vendor_ctp_export_imports_with_the_feed_columns_derived() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journal");
    let input = dir.path().join("vendor.csv");
    fs::write(
        &input,
        "TradingDay,InstrumentID,ExchangeID,ExchangeInstID,LastPrice,Volume,UpperLimitPrice,LowerLimitPrice,UpdateTime,UpdateMillisec,BidPrice1,BidVolume1,AskPrice1,AskVolume1,AveragePrice,ActionDay\r\n\
         20250512,rb2605,SHFE,rb2605,3101,10,3400,2800,21:00:00,500,3100,1,3102,2,31010,20250509\r\n\
         20250512,rb2605,SHFE,rb2605,3102,12,3400,2800,21:00:01,0,3101,1,1.7976931348623157e+308,3,31020,20250509\r\n",
    )
    .unwrap();
    let instruments = repo_instruments();
    let out = qilinctl(&[
        "import",
        "--csv",
        s(&input),
        "--journal-dir",
        s(&journals),
        "--feed",
        "vendor",
        "--instruments",
        s(&instruments),
        "--audit-log",
        s(&dir.path().join("a.jsonl")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vendor CTP export"), "{}", text(&out));
    let ticks = journal_ticks(&file_path(&journals, "vendor", 20250512));
    assert_eq!(ticks.iter().map(|t| t.sequence).collect::<Vec<_>>(), [1, 2], "numbered from 1 in file order");
    assert_eq!(ticks[0].exchange_time_ns, 1_746_795_600_500_000_000, "2025-05-09 21:00:00.500 China time");
    assert_eq!(ticks[0].receive_ns, ticks[0].exchange_time_ns);
    assert_eq!(ticks[0].average_price, 3101.0, "per unit: ÷ 10 for rb");
    assert_eq!(ticks[0].quality, 0, "a normal tick carries no flag (AveragePrice per unit is no anomaly)");
    assert!(
        ticks[1].ask_price[0].is_nan() && ticks[1].quality & quality::ABSENT_PRICE != 0,
        "DBL_MAX ask with volume 3: absent where a price is expected"
    );
    assert!(ticks[0].settlement_price.is_nan(), "a column the file lacks is absent");

    // Exported, it carries the feed's columns; imported again and exported, the same bytes.
    let exported = dir.path().join("out.csv");
    let out =
        qilinctl(&["export", "--csv", "--file", s(&file_path(&journals, "vendor", 20250512)), "-o", s(&exported)]);
    assert!(out.status.success(), "{}", text(&out));
    let again = dir.path().join("again");
    let out = qilinctl(&[
        "import",
        "--csv",
        s(&exported),
        "--journal-dir",
        s(&again),
        "--feed",
        "vendor",
        "--audit-log",
        s(&dir.path().join("a.jsonl")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = qilinctl(&["export", "--csv", "--journal-dir", s(&again), "--feed", "vendor"]);
    assert_eq!(out.stdout, fs::read(&exported).unwrap());
}

/// The day under test: Tuesday 2025-05-13, SHFE day session.
const DAY: u32 = 20250513;

/// rb2605: a crossed book, a last price over the upper limit, a timestamp regression, a 5-minute
/// silence, an absent ask that must not count as crossed; a gap record 7..=9. cu2605: a silence
/// across the lunch break only (15 s of trading time). al2605: clean. A second day whose file
/// does not continue the sequence.
fn defect_journal(dir: &Path) {
    let (mut w, _) = JournalWriter::open(dir, "q", DAY, 0, WriterOptions::default()).unwrap();
    let rb = |seq, hms, ms| {
        let mut t = tick(seq, "rb2605", Exchange::Shfe, DAY, hms, ms);
        t.quality = 0;
        t
    };
    w.append_tick(&rb(1, (9, 0, 0), 0)).unwrap();
    let mut crossed = rb(2, (9, 0, 0), 500);
    crossed.bid_price[0] = 3101.0;
    w.append_tick(&crossed).unwrap();
    let mut over = rb(3, (9, 0, 1), 0);
    over.last_price = 3400.5;
    w.append_tick(&over).unwrap();
    w.append_tick(&rb(4, (9, 0, 0), 800)).unwrap(); // back in time
    w.append_tick(&rb(5, (9, 0, 2), 0)).unwrap();
    w.append_tick(&rb(6, (9, 5, 2), 0)).unwrap(); // 300 s after the previous
    w.append_gap(7, 9, GapReason::Lapped).unwrap();
    let mut no_ask = rb(10, (9, 5, 3), 0);
    no_ask.ask_price[0] = f64::NAN;
    no_ask.bid_price[0] = 9999.0;
    no_ask.quality = quality::ABSENT_PRICE;
    w.append_tick(&no_ask).unwrap();
    let cu = |seq, hms| {
        let mut t = tick(seq, "cu2605", Exchange::Shfe, DAY, hms, 0);
        t.quality = 0;
        t
    };
    w.append_tick(&cu(11, (11, 29, 50))).unwrap();
    w.append_tick(&cu(12, (13, 30, 5))).unwrap();
    let mut al = tick(13, "al2605", Exchange::Shfe, DAY, (14, 0, 0), 0);
    al.quality = 0;
    w.append_tick(&al).unwrap();
    w.finish().unwrap();
    let (mut w, _) = JournalWriter::open(dir, "q", 20250514, 20, WriterOptions::default()).unwrap();
    w.append_tick(&tick(21, "al2605", Exchange::Shfe, 20250514, (9, 30, 0), 0)).unwrap();
    w.finish().unwrap();
}

fn quality_json(args: &[&str]) -> Value {
    let out = qilinctl(&[&["quality", "--json", "--stale-after-s", "60"][..], args].concat());
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn quality_reports_exactly_the_defects_put_in() {
    let dir = tempfile::tempdir().unwrap();
    defect_journal(dir.path());
    let instruments = repo_instruments();
    let r = quality_json(&["--journal-dir", s(dir.path()), "--feed", "q", "--instruments", s(&instruments)]);
    let days = r["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    let day = &days[0];
    assert_eq!(day["trading_day"], DAY);
    assert_eq!(day["sequences"], serde_json::json!([1, 13]));
    assert_eq!(day["gap_records"], serde_json::json!([{"first": 7, "last": 9, "reason": "lapped"}]));
    assert_eq!(day["gap_sequences"], 3);
    assert_eq!(day["sequence_jump"], Value::Null);

    let rb = &day["instruments"]["rb2605"];
    assert_eq!(rb["ticks"], 7);
    assert_eq!(rb["crossed_books"], 1, "the absent ask is not a crossed book");
    assert_eq!(rb["outside_limits"], 1);
    assert_eq!(rb["timestamp_regressions"], 1);
    assert_eq!(rb["stale_periods"], 1);
    assert_eq!(rb["longest_silence_s"], 300.0);
    assert_eq!(rb["flags"]["absent_price"], 1);
    assert_eq!(rb["flags"]["stale_snapshot"], 0);
    let cu = &day["instruments"]["cu2605"];
    assert_eq!(
        (cu["stale_periods"].as_u64(), cu["longest_silence_s"].as_f64()),
        (Some(0), Some(15.0)),
        "the lunch break is no silence"
    );
    let al = &day["instruments"]["al2605"];
    for key in ["crossed_books", "outside_limits", "timestamp_regressions", "stale_periods"] {
        assert_eq!(al[key], 0, "al2605 {key}");
    }
    let totals = &day["totals"];
    assert_eq!(
        (totals["ticks"].as_u64(), totals["crossed_books"].as_u64(), totals["stale_periods"].as_u64()),
        (Some(10), Some(1), Some(1))
    );
    assert_eq!(days[1]["sequence_jump"], serde_json::json!({"previous_last": 13, "first": 21, "missing": 7}));
    assert_eq!(r["rejects"]["available"], false);

    // Without the product file every silence counts: the lunch break becomes a stale period.
    let r = quality_json(&["--journal-dir", s(dir.path()), "--feed", "q", "--day", "20250513"]);
    assert_eq!(r["days"].as_array().unwrap().len(), 1);
    assert_eq!(r["sessions_from"], Value::Null);
    assert_eq!(r["days"][0]["instruments"]["cu2605"]["stale_periods"], 1);

    // The table says the same, and where rejects are.
    let out = qilinctl(&[
        "quality",
        "--journal-dir",
        s(dir.path()),
        "--feed",
        "q",
        "--day",
        "20250513",
        "--instruments",
        s(&instruments),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("rb2605")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..8], ["rb2605", "SHFE", "7", "1", "1", "1", "300.0", "1"], "{table}");
    assert!(table.contains("gap records  1 covering 3 sequences: 7..=9 (lapped)"), "{table}");
    assert!(table.contains("rejects: not available from the journal"), "{table}");
}

#[test]
fn quality_adds_the_segment_reject_counters_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    defect_journal(dir.path());
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("rejects")));
    let writer =
        Writer::open(&segment, &SegmentOptions { feed_name: "q".into(), ring_slots: 64, instrument_capacity: 8 })
            .unwrap();
    writer.add_counter(Counter::RejectPrice, 3);
    writer.add_counter(Counter::RejectUnknownInstrument, 2);
    let r = quality_json(&["--journal-dir", s(dir.path()), "--feed", "q", "--segment", s(&segment)]);
    drop(writer);
    qilin_testkit::remove_segment(&segment);
    let rejects = &r["rejects"];
    assert_eq!(rejects["available"], true);
    assert_eq!(rejects["by_reason"]["price"], 3);
    assert_eq!(rejects["by_reason"]["unknown_instrument"], 2);
    assert_eq!(rejects["by_reason"]["size"], 0);
    assert!(rejects["scope"].as_str().unwrap().contains("feed-wide"));
}

/// The `qilin-core` binary beside `qilinctl` (`cargo test --workspace` builds it); built with cargo
/// when missing (this crate's tests run alone). qilinctl itself never links the core.
fn ensure_core_beside_qilinctl() {
    let dir = Path::new(env!("CARGO_BIN_EXE_qilinctl")).parent().unwrap().to_owned();
    if !dir.join("qilin-core").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "qilin-core", "--bin", "qilin-core"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building qilin-core failed");
    }
    assert!(dir.join("qilin-core").exists(), "qilin-core not found beside qilinctl in {}", dir.display());
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {WATCHDOG:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Running(std::process::Child, PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        qilin_testkit::remove_segment(&self.1);
    }
}

#[test]
fn replay_runs_the_core_beside_qilinctl_and_reproduces_the_records() {
    ensure_core_beside_qilinctl();
    let dir = tempfile::tempdir().unwrap();
    let (journals, log) = (dir.path().join("journal"), dir.path().join("audit.jsonl"));
    // 3000 ticks of real products, a gap record in the middle (not replayed).
    let ids =
        [("rb2605", Exchange::Shfe), ("cu2605", Exchange::Shfe), ("m2609", Exchange::Dce), ("IF2606", Exchange::Cffex)];
    let mut original = Vec::new();
    let (mut w, _) = JournalWriter::open(&journals, "rp", DAY, 500, WriterOptions::default()).unwrap();
    for seq in 501..=3500u64 {
        if (1001..=1100).contains(&seq) {
            if seq == 1001 {
                w.append_gap(1001, 1100, GapReason::Restart).unwrap();
            }
            continue;
        }
        let i = seq as u32;
        let (id, ex) = ids[i as usize % ids.len()];
        let mut t = tick(seq, id, ex, DAY, (9 + i / 3600 % 2, i / 60 % 60, i % 60), i % 1000);
        t.instrument_index = i % 4 + 10;
        t.quality = [0, quality::ABSENT_PRICE, quality::VOLUME_REGRESSION | quality::REPEATED_SECOND][i as usize % 3];
        w.append_tick(&t).unwrap();
        original.push(t);
    }
    w.finish().unwrap();

    // Without --segment: refused.
    let out = qilinctl(&["replay", "--journal-dir", s(&journals), "--feed", "rp", "--audit-log", s(&log)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--segment"));

    let segment = PathBuf::from(format!("/dev/shm/{}", unique("replay")));
    let socket = dir.path().join("control.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_qilinctl"))
        .args(["replay", "--journal-dir", s(&journals), "--feed", "rp", "--segment", s(&segment)])
        .args(["--control-socket", s(&socket), "--audit-log", s(&log)])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let running = Running(child, segment.clone());
    let n = original.len() as u64;
    let mut reader = wait_for("the segment", || Reader::open(&segment).ok());
    wait_for("every tick replayed", || (reader.write_cursor() >= n).then_some(()));
    assert_eq!(reader.writer_pid(), u64::from(pid), "qilinctl became the core (exec)");
    reader.seek(Start::Sequence(1));
    let mut replayed = Vec::new();
    let mut t = TickRecord::ZERO;
    while (replayed.len() as u64) < n {
        match reader.try_next(&mut t) {
            Next::Tick => replayed.push(t),
            Next::Empty | Next::NewEpoch { .. } => {}
            Next::Gap { first, last } => panic!("lost {first}..={last} in the test's own segment"),
        }
    }
    for (i, (r, o)) in replayed.iter().zip(&original).enumerate() {
        assert_eq!(r.sequence, i as u64 + 1, "the segment numbers its own ticks");
        assert_eq!(r.source, Source::Replay as u8);
        let mut same = *r;
        (same.sequence, same.instrument_index, same.publish_ns, same.source) =
            (o.sequence, o.instrument_index, o.publish_ns, o.source);
        assert_eq!(same.as_bytes(), o.as_bytes(), "tick {i} differs beyond sequence, index, publish time and source");
    }
    assert_eq!(reader.write_cursor(), n, "nothing more than the journal's ticks");
    drop(running);

    let entries = audit_lines(&log);
    assert_eq!(entries.len(), 1, "one entry: the start (the refusal before it needed no audit)");
    let e = &entries[0];
    assert_eq!((e["command"].as_str(), e["exit_code"].as_i64()), (Some("replay"), Some(0)));
    let verified = &e["actions"][0]["verified"][0];
    assert_eq!((verified["ticks"].as_u64(), verified["gap_sequences"].as_u64()), (Some(n), Some(100)));
    let exec: Vec<&str> = e["actions"][1]["exec"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(exec[0].ends_with("/qilin-core"), "{exec:?}");
    assert!(exec.windows(2).any(|w| w == ["--segment", s(&segment)]), "{exec:?}");
}

#[test]
fn replay_refuses_a_damaged_journal_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (mut w, _) = JournalWriter::open(dir.path(), "dmg", DAY, 0, WriterOptions::default()).unwrap();
    for seq in 1..=200 {
        w.append_tick(&tick(seq, "rb2605", Exchange::Shfe, DAY, (9, 0, (seq % 60) as u32), 0)).unwrap();
    }
    w.finish().unwrap();
    let path = file_path(dir.path(), "dmg", DAY);
    let mut bytes = fs::read(&path).unwrap();
    bytes[128 + 32 + 1000] ^= 0xff; // inside the first block's records
    fs::write(&path, bytes).unwrap();
    let segment = format!("/dev/shm/{}", unique("never"));
    let out = qilinctl(&["replay", "--file", s(&path), "--segment", &segment, "--audit-log", s(&log)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&path.display().to_string()), "{}", text(&out));
    assert!(!Path::new(&segment).exists(), "no core was started");
    assert!(audit_lines(&log).is_empty(), "nothing was started, so nothing to audit");
}

#[test]
fn a_torn_tail_is_read_up_to_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = JournalWriter::open(dir.path(), "torn", DAY, 0, WriterOptions::default()).unwrap();
    for seq in 1..=10 {
        w.append_tick(&tick(seq, "rb2605", Exchange::Shfe, DAY, (9, 0, seq as u32), 0)).unwrap();
    }
    w.finish().unwrap();
    let path = file_path(dir.path(), "torn", DAY);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"QJBK\x01\x00\x00\x00half a block");
    fs::write(&path, bytes).unwrap();

    let r = quality_json(&["--file", s(&path)]);
    assert_eq!(r["days"][0]["instruments"]["rb2605"]["ticks"], 10);
    assert!(r["days"][0]["note"].as_str().unwrap().contains("torn tail"), "{r}");
    let out = qilinctl(&["export", "--csv", "--file", s(&path)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), 11);
    assert!(String::from_utf8_lossy(&out.stderr).contains("torn tail"), "{}", text(&out));
}

/// A journal of another record layout (its header names another layout fingerprint), and one cut
/// inside its header: `export`, `quality` and `replay` refuse each with the file and the reason
/// (exit 2), print no tick, start nothing and do not panic; the files are left as they were.
#[test]
fn a_journal_of_another_layout_or_cut_in_its_header_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = JournalWriter::open(dir.path(), "other", DAY, 0, WriterOptions::default()).unwrap();
    for seq in 1..=10 {
        w.append_tick(&tick(seq, "rb2605", Exchange::Shfe, DAY, (9, 0, seq as u32), 0)).unwrap();
    }
    w.finish().unwrap();
    let path = file_path(dir.path(), "other", DAY);
    let mut bytes = fs::read(&path).unwrap();
    let mut header = qilin_journal::FileHeader::new("other", DAY, 0, 1);
    header.fingerprint ^= 0x5a5a;
    bytes[..128].copy_from_slice(&header.encode());
    let other_layout = dir.path().join("other-layout.qj");
    fs::write(&other_layout, &bytes).unwrap();
    let cut = dir.path().join("cut-in-header.qj");
    fs::write(&cut, &bytes[..64]).unwrap();

    let segment = format!("/dev/shm/{}", unique("refused"));
    for (file, reason) in [(&other_layout, "was written with"), (&cut, "not a qilin journal")] {
        let before = fs::read(file).unwrap();
        for args in [
            vec!["export", "--csv", "--file", s(file)],
            vec!["quality", "--file", s(file)],
            vec!["replay", "--file", s(file), "--segment", &segment],
        ] {
            let out = qilinctl(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert!(stderr.contains(&file.display().to_string()) && stderr.contains(reason), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert!(out.stdout.iter().filter(|b| **b == b'\n').count() <= 1, "{args:?} printed ticks: {}", text(&out));
        }
        assert_eq!(fs::read(file).unwrap(), before, "{} was changed", file.display());
    }
    assert!(!Path::new(&segment).exists(), "a core was started for a refused journal");
}

//! `qilinctl products import` and `products check` as the real binary: a CTP instrument-query CSV
//! with futures of several exchanges (a CZCE three-digit id), options in every id form (CFFEX
//! index options whose UnderlyingInstrID is not a future), a combination row, a product the table
//! lacks; bad rows named by line and column with nothing written; a journal and a segment holding
//! an instrument the table lacks.

mod common;

use common::{qilinctl, repo_instruments, s, text};

use std::{
    fs,
    path::{Path, PathBuf},
    process::Output,
};

use qilin_journal::{JournalWriter, WriterOptions};
use qilin_market::{Instruments, Kind, Segment, products::default_day_sessions};
use qilin_shm::{Exchange, SegmentOptions, TickRecord, Writer};
use serde_json::Value;

fn audit_lines(log: &Path) -> Vec<Value> {
    fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Column order free, unknown columns ignored: the header is not in the struct's order.
const HEADER: &str = "ExchangeInstID,InstrumentID,InstrumentName,ExchangeID,ProductID,ProductClass,DeliveryYear,\
DeliveryMonth,MaxMarketOrderVolume,VolumeMultiple,PriceTick,CreateDate,OpenDate,ExpireDate,UnderlyingInstrID,\
StrikePrice,OptionsType,UnderlyingMultiple,CombinationType,SomeVendorColumn";

/// A row: id, name, exchange, ProductID, ProductClass, VolumeMultiple, PriceTick, ExpireDate,
/// UnderlyingInstrID.
#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    name: &str,
    ex: &str,
    product: &str,
    class: &str,
    mult: &str,
    tick: &str,
    exp: &str,
    und: &str,
) -> String {
    let (strike, kind) = if class == "2" { ("3000", "1") } else { ("0", "") };
    format!(
        "{id},{id},{name},{ex},{product},{class},2026,5,100,{mult},{tick},20250101,20250102,{exp},{und},{strike},{kind},1,0,x"
    )
}

/// Lines 2 to 18 (line 1 is the header).
fn good_rows() -> Vec<String> {
    vec![
        row("rb2605", "螺纹钢2605", "SHFE", "rb", "1", "10", "1", "20260515", ""), // 2
        row("rb2610", "螺纹钢2610", "SHFE", "rb", "1", "10", "1.0", "20261015", ""), // 3
        row("rb2601", "螺纹钢2601", "SHFE", "rb", "1", "10", "1", "20260115", ""), // 4
        row("rb2609", "螺纹钢2609", "SHFE", "rb", "1", "10", "1", "20260915", ""), // 5
        row("cu2606", "铜2606", "SHFE", "cu", "1", "5", "30", "20260615", ""),     // 6: tick 10 → 30
        row("cu2607", "铜2607", "SHFE", "cu", "1", "5", "30", "20260715", ""),     // 7
        row("SR605", "白糖605", "CZCE", "SR", "1", "10", "1", "20260514", ""),     // 8: three-digit month
        row("SR609", "白糖609", "CZCE", "SR", "1", "10", "1", "20260914", ""),     // 9
        row("m2605", "豆粕2605", "DCE", "m", "1", "10", "1", "20260515", ""),      // 10
        row("IF2612", "沪深2612", "CFFEX", "IF", "1", "300", "0.2", "20261218", ""), // 11
        row("m2605-C-3000", "豆粕看涨", "DCE", "m_o", "2", "10", "0.5", "20260407", "m2605"), // 12
        row("cu2606C80000", "铜看涨", "SHFE", "cu_o", "2", "5", "2", "20260525", "cu2606"), // 13
        row("SR605C6000", "白糖看涨", "CZCE", "SR_o", "2", "10", "1", "20260408", "SR605"), // 14: 0.5 → 1
        // CTP gives the CFFEX index options their own month as UnderlyingInstrID, not a future.
        row("IO2612-C-4000", "沪深300看涨", "CFFEX", "IO", "2", "100", "0.2", "20261218", "IO2612"), // 15
        row("SP m2605&m2609", "豆粕跨期", "DCE", "SP", "3", "10", "1", "20260515", ""),              // 16: combination
        row("xx2605", "新品2605", "SHFE", "xx", "1", "5", "10", "20260515", ""), // 17: not in the table
        row("xx2605C100", "新品看涨", "SHFE", "xx_o", "2", "5", "1", "20260415", "xx2605"), // 18
    ]
}

fn write_csv(dir: &Path, name: &str, header: &str, rows: &[String]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    path
}

fn assert_no_temporary_file(dir: &Path) {
    let names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
}

fn import(csv: &Path, out: &Path, log: &Path, extra: &[&str]) -> Output {
    let table = repo_instruments();
    let mut args = vec!["products", "import", "--csv", s(csv), "--instruments", s(&table), "--out", s(out)];
    args.extend(["--audit-log", s(log)]);
    args.extend(extra);
    qilinctl(&args)
}

#[test]
fn a_product_the_table_lacks_is_an_error_without_default_sessions_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), "in.csv", HEADER, &good_rows());
    let (out, log) = (dir.path().join("new.toml"), dir.path().join("audit.jsonl"));
    let run = import(&csv, &out, &log, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: line 17: InstrumentID: xx2605: product \"xx\" of SHFE is not in {}",
            csv.display(),
            repo_instruments().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--default-sessions"), "{stderr}");
    assert_eq!(stderr.matches("line ").count(), 1, "only that problem: {stderr}");
    assert!(!out.exists());
    assert_no_temporary_file(dir.path());
    let entries = audit_lines(&log);
    assert_eq!((entries[0]["command"].as_str(), entries[0]["exit_code"].as_i64()), (Some("products import"), Some(1)));
}

#[test]
fn import_merges_the_csv_into_the_table_and_reports_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path(), "in.csv", HEADER, &good_rows());
    let (out, log) = (dir.path().join("new.toml"), dir.path().join("audit.jsonl"));
    let run = import(&csv, &out, &log, &["--default-sessions"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));

    let old = Instruments::load(&repo_instruments()).unwrap();
    let new = Instruments::load(&out).unwrap_or_else(|e| panic!("{e}\n{}", fs::read_to_string(&out).unwrap()));
    let written = fs::read_to_string(&out).unwrap();
    assert!(written.starts_with("# Product table generated by `qilinctl products import` from "), "{written}");
    assert!(written.contains(s(&csv)));

    // Futures: tick changed, the reference price moved onto the new tick; sessions and name kept.
    let cu = new.product("cu").unwrap();
    assert_eq!((cu.price_tick, cu.volume_multiple, cu.reference_price), (30.0, 5, 80010.0));
    assert_eq!(
        (&cu.name, cu.night_session),
        (&old.product("cu").unwrap().name, old.product("cu").unwrap().night_session)
    );
    assert_eq!(cu.instruments, ["cu2606", "cu2607"]);
    let rb = new.product("rb").unwrap();
    assert_eq!(rb.instruments, ["rb2601", "rb2605", "rb2609"], "the three nearest by ExpireDate");
    assert_eq!(rb.night_session, old.product("rb").unwrap().night_session);
    assert_eq!(new.product("SR").unwrap().instruments, ["SR605", "SR609"]);
    // Options: every id form resolves to its series, the CFFEX index options to IF.
    for (id, code, underlying) in [
        ("m2605-C-3000", "m", "m"),
        ("cu2606C80000", "cu", "cu"),
        ("SR605C6000", "SR", "SR"),
        ("IO2612-C-4000", "IO", "IF"),
        ("xx2605C100", "xx", "xx"),
    ] {
        let spec = new.spec_for(id).unwrap_or_else(|| panic!("{id}"));
        assert_eq!((spec.code.as_str(), spec.underlying.as_deref()), (code, Some(underlying)), "{id}");
    }
    assert_eq!(new.spec_for("SR605C6000").unwrap().price_tick, 1.0);
    // A product the table lacked: default sessions, no night session, 1000 ticks.
    let xx = new.product("xx").unwrap();
    assert_eq!((xx.exchange, xx.name.as_str(), xx.price_tick, xx.volume_multiple), (Exchange::Shfe, "新品", 10.0, 5));
    assert_eq!(
        (xx.day_sessions.clone(), xx.night_session, xx.reference_price),
        (default_day_sessions(Exchange::Shfe), None::<Segment>, 10000.0)
    );
    assert!(matches!(new.spec_for("xx2605C100").unwrap().kind, Kind::Option { .. }));
    // Products absent from the CSV are kept as they were.
    assert_eq!(new.product("al"), old.product("al"));
    assert_eq!(new.spec_for("al2605C20000"), old.spec_for("al2605C20000"));
    assert_eq!(new.spec_for("rb2605C3000"), old.spec_for("rb2605C3000"), "rb's options: not in the CSV, kept");
    assert_eq!(new.products().len(), old.products().len() + 2);

    let old_futures = old.products().iter().filter(|p| p.kind == Kind::Future).count();
    let old_series = old.products().len() - old_futures;
    let report = String::from_utf8_lossy(&run.stdout);
    for line in [
        "read 17 rows of",
        ": 11 futures, 5 options, 1 skipped",
        "skipped ProductClass 3 (combination): 1 row(s)",
        "added SHFE xx (新品): tick 10 x5, default day sessions 09:00-10:15 10:30-11:30 13:30-15:00, no night session, reference price 10000",
        "changed cu price_tick: 10.0 -> 30.0",
        "changed cu reference_price: 80000.0 -> 80010.0",
        "options added SHFE xx on xx (compact): tick 1 x5",
        "options changed SR price_tick: 0.5 -> 1.0",
        &format!("not in the CSV, kept as they were: {} futures: SHFE al, SHFE zn,", old_futures - 5),
        &format!("not in the CSV, kept as they were: {} option series: SHFE al (options on al), ", old_series - 4),
        "SHFE rb (options on rb)",
        "simulator contracts updated for",
        &format!("wrote {}", out.display()),
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
    assert!(!report.contains("changed rb"), "{report}");
    let entries = audit_lines(&log);
    assert_eq!((entries[0]["command"].as_str(), entries[0]["exit_code"].as_i64()), (Some("products import"), Some(0)));
    assert_eq!(entries[0]["actions"][0]["added"][0]["code"], "xx");

    // --json, and an --out that exists is replaced.
    let run = import(&csv, &out, &log, &["--default-sessions", "--json"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let json: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["written"], true);
    assert_eq!(json["skipped"]["3 (combination)"], 1);
    assert_eq!(json["added"][0]["code"], "xx");
    assert_eq!(json["options_added"][0]["code"], "xx");
    let changed: Vec<(&str, &str)> = json["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["code"].as_str().unwrap(), c["field"].as_str().unwrap()))
        .collect();
    assert_eq!(changed, [("cu", "price_tick"), ("cu", "reference_price")]);
    assert_eq!(json["options_changed"][0]["old"], 0.5);
    assert!(json["not_in_csv"].as_array().unwrap().iter().any(|n| n["code"] == "al" && n["kind"] == "future"));
    assert_eq!(fs::read_to_string(&out).unwrap(), written, "the same import renders the same file");
}

#[test]
fn every_bad_row_is_named_by_line_and_column_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = good_rows();
    rows.extend([
        row("rb2612", "螺纹钢2612", "SHFE", "rb", "1", "10", "abc", "20261215", ""), // 19
        row("cu2609", "铜2609", "SHFE", "cu", "1", "0", "30", "20260915", ""),       // 20
        row("m2605-P-3000", "豆粕看跌", "DCE", "m_o", "2", "10", "0.5", "20260407", "zz2605"), // 21
        row("l2607F", "塑料月均", "DCE", "l", "1", "5", "1", "20260715", ""),        // 22
        row("CL2607", "原油", "NYMEX", "CL", "1", "1000", "0.01", "20260620", ""),   // 23
        row("rb2611", "螺纹钢2611", "SHFE", "rb", "1", "10", "2", "20261115", ""),   // 24: disagrees
        row("SR607", "白糖607", "CZCE", "SR", "1", "10", "-1", "20260714", ""),      // 25
    ]);
    let csv = write_csv(dir.path(), "bad.csv", HEADER, &rows);
    let (out, log) = (dir.path().join("new.toml"), dir.path().join("audit.jsonl"));
    fs::write(&out, "previous contents").unwrap();
    let run = import(&csv, &out, &log, &["--default-sessions"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let f = csv.display();
    for problem in [
        format!("{f}: line 19: PriceTick: \"abc\" is not a number"),
        format!("{f}: line 20: VolumeMultiple: \"0\" must be at least 1"),
        format!("{f}: line 21: UnderlyingInstrID: \"zz2605\" of option m2605-P-3000: no futures product \"zz\" of DCE"),
        format!("{f}: line 22: InstrumentID: \"l2607F\" is neither a future's id"),
        format!("{f}: line 23: ExchangeID: \"NYMEX\" is not one of SHFE, INE, DCE, CZCE, CFFEX, GFEX"),
        format!("{f}: line 24: PriceTick: 2.0 for rb2611 disagrees with 1.0 for rb2605 at line 2"),
        format!("{f}: line 25: PriceTick: \"-1\" must be a positive number"),
    ] {
        assert!(stderr.contains(&problem), "{problem:?} missing from:\n{stderr}");
    }
    assert!(stderr.contains("nothing written (7 problem(s))"), "{stderr}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "previous contents", "--out untouched");
    assert_no_temporary_file(dir.path());

    // A missing required column is named; the header is line 1.
    let header = HEADER.replace("VolumeMultiple,", "");
    let rows: Vec<String> = good_rows()
        .iter()
        .map(|r| {
            let mut fields: Vec<&str> = r.split(',').collect();
            fields.remove(9);
            fields.join(",")
        })
        .collect();
    let csv = write_csv(dir.path(), "nocol.csv", &header, &rows);
    let run = import(&csv, &out, &log, &["--default-sessions"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(&format!("{}: line 1: missing required column VolumeMultiple", csv.display())), "{stderr}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "previous contents");

    // An unreadable CSV: exit 2.
    let run = import(&dir.path().join("absent.csv"), &out, &log, &[]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(String::from_utf8_lossy(&run.stderr).contains("absent.csv"), "{}", text(&run));
    let codes: Vec<i64> = audit_lines(&log).iter().map(|e| e["exit_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [1, 1, 2], "refusals are audited too");
}

fn tick(seq: u64, id: &str, exchange: Exchange) -> TickRecord {
    let mut t = TickRecord::ZERO;
    t.sequence = seq;
    t.instrument_id = qilin_shm::layout::fixed_id(id).unwrap();
    t.exchange = exchange as u8;
    t.trading_day = 20260512;
    t.action_day = 20260512;
    t.update_time_ms = 10 * 3_600_000 + seq as u32 * 500;
    t.last_price = 3100.0;
    t
}

#[test]
fn check_lists_the_journal_instruments_without_a_product() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = JournalWriter::open(dir.path(), "chk", 20260512, 0, WriterOptions::default()).unwrap();
    for (seq, id) in [(1, "rb2605"), (2, "xx2605"), (3, "rb2605"), (4, "xx2605"), (5, "xx2605")] {
        w.append_tick(&tick(seq, id, Exchange::Shfe)).unwrap();
    }
    w.finish().unwrap();
    let table = repo_instruments();
    let args = ["products", "check", "--journal-dir", s(dir.path()), "--feed", "chk", "--instruments", s(&table)];
    let run = qilinctl(&args);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["xx2605           SHFE   3 tick(s)"], "{stdout}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("1 of 2 instrument(s) in 1 journal file(s)"));

    let run = qilinctl(&[&args[..], &["--day", "20260512"]].concat());
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let run = qilinctl(&[&args[..], &["--day", "20260513"]].concat());
    assert_eq!(run.status.code(), Some(2), "no journal that day: {}", text(&run));
    let run = qilinctl(&["products", "check", "--instruments", s(&table)]);
    assert_eq!(run.status.code(), Some(2), "neither --journal-dir nor --segment: {}", text(&run));
}

/// An encrypted journal (format 2) is checked with `--key-file` like the other journal commands;
/// without it the error names the key version and the exit is 2.
#[test]
fn check_reads_an_encrypted_journal_with_its_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let material = [0x5au8; 32];
    let key = qilin_journal::JournalKey::new(3, &material).unwrap();
    let journal = dir.path().join("journal");
    let (mut w, _) =
        JournalWriter::open_keyed(&journal, "enc", 20260512, 0, WriterOptions::default(), Some(&key)).unwrap();
    for (seq, id) in [(1, "rb2605"), (2, "xx2605"), (3, "xx2605")] {
        w.append_tick(&tick(seq, id, Exchange::Shfe)).unwrap();
    }
    w.finish().unwrap();
    // The file `qilinctl keys render-key journal-encryption` writes (0600).
    let key_file = dir.path().join("journal.key");
    let hex: String = material.iter().map(|b| format!("{b:02x}")).collect();
    fs::write(&key_file, format!("# qilin-key/1\nversion=3\nkey={hex}\n")).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    let table = repo_instruments();
    let args = ["products", "check", "--journal-dir", s(&journal), "--feed", "enc", "--instruments", s(&table)];

    let run = qilinctl(&[&args[..], &["--key-file", s(&key_file)]].concat());
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["xx2605           SHFE   2 tick(s)"], "{stdout}");

    let run = qilinctl(&args);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("journal-encryption key version 3") && stderr.contains("no key was given"), "{stderr}");
}

#[test]
fn check_lists_the_segment_instruments_without_a_product() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("seg");
    let options = SegmentOptions { feed_name: "chk".into(), ring_slots: 64, instrument_capacity: 8 };
    let mut w = Writer::open(&segment, &options).unwrap();
    w.add_instrument("rb2605", Exchange::Shfe, 10, 1.0).unwrap();
    w.add_instrument("xx2605", Exchange::Shfe, 5, 10.0).unwrap();
    w.add_instrument("IO2612-C-4000", Exchange::Cffex, 100, 0.2).unwrap();
    let table = repo_instruments();
    let run = qilinctl(&["--segment", s(&segment), "products", "check", "--instruments", s(&table)]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["    1 xx2605           SHFE"], "{stdout}");
    drop(w);
}

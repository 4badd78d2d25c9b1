//! Runs the real `qilin-bench --quick` (with the real `qilin-core` binary for the end-to-end series)
//! and checks its outputs: every series is in the JSON with ordered, finite percentiles and ratios
//! equal to value ÷ floor, nothing was skipped, the ping-pong series hold exactly the samples asked
//! for and the paced ones no more, every latency series was merged from both interleaved rounds,
//! throughput rounds are there, and the SVG is well-formed and names every plotted series. No
//! figure is judged: a test never asserts a wall-clock threshold.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The run takes seconds in release and under a minute in debug; past this it has hung.
const WATCHDOG: Duration = Duration::from_secs(600);

const SERIES: [&str; 28] = [
    "floor/c2c_one_way",
    "floor/clock_read",
    "baseline/crossbeam_spsc",
    "baseline/crossbeam_pingpong",
    "baseline/uds_pair",
    "baseline/uds_pair_pingpong",
    "segment/1_reader_pingpong",
    "segment/1_reader",
    "writer_cost/1_reader",
    "segment/4_readers",
    "writer_cost/4_readers",
    "segment/16_readers",
    "writer_cost/16_readers",
    "segment/32_readers",
    "writer_cost/32_readers",
    "core/handoff",
    "core/udp_relay",
    "core/ctp",
    "core/ctp_front",
    "e2e/udp_rust",
    "e2e/udp_c",
    "e2e/udp_python",
    "e2e/udp_python_batch",
    "e2e/udp_rust_closed",
    "floor/c2c_one_way_end",
    "floor/clock_read_end",
    // Only with --features iceoryx2 (filtered out below otherwise).
    "baseline/iceoryx2",
    "baseline/iceoryx2_pingpong",
];

/// Ping-pong series: every round trip is a sample, none can be lost.
const PINGPONG: [&str; 4] = [
    "segment/1_reader_pingpong",
    "baseline/crossbeam_pingpong",
    "baseline/uds_pair_pingpong",
    "baseline/iceoryx2_pingpong",
];

/// Rounds of the --quick run.
const ROUNDS: u64 = 2;

fn expected(name: &str) -> bool {
    cfg!(feature = "iceoryx2") || !name.contains("iceoryx2")
}

const KEYS: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];

/// `qilin-core` beside `qilin-bench` (a workspace build makes it; built here, with the ctp feature,
/// when this crate's tests run alone).
fn ensure_core_beside(bench: &Path) {
    let dir = bench.parent().unwrap();
    if !dir.join("qilin-core").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // With the ctp feature, as a workspace build unifies it (qilin-ctp-standin asks for it): the
        // core/ctp series run the binary on the ctp source.
        cmd.args(["build", "-p", "qilin-core", "--bin", "qilin-core", "--features", "ctp-6-7-11"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building qilin-core failed");
    }
    assert!(dir.join("qilin-core").exists(), "qilin-core not found beside qilin-bench in {}", dir.display());
}

/// A minimal well-formedness check: tags nest and close, attributes are quoted, no bare `&` or `<`
/// in text.
fn assert_well_formed(svg: &str) {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"].iter().any(|e| entity.starts_with(e)),
                "bare & in text: {:?}",
                &entity[..entity.len().min(20)]
            );
        }
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "< inside a tag: {tag:?}");
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in {tag:?}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            stack.push(tag.split_whitespace().next().expect("tag name"));
        }
        rest = &rest[close + 1..];
    }
    assert!(rest.trim().is_empty(), "text after the root element");
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
}

#[test]
fn quick_run_writes_every_series_to_json_and_svg() {
    let bench = Path::new(env!("CARGO_BIN_EXE_qilin-bench"));
    ensure_core_beside(bench);
    let dir = tempfile::tempdir().unwrap();
    let (json_path, svg_path) = (dir.path().join("bench.json"), dir.path().join("bench.svg"));
    let mut child = Command::new(bench)
        .args(["--quick", "--cores", "0,1", "--rounds", &ROUNDS.to_string(), "--json"])
        .arg(&json_path)
        .arg("--svg")
        .arg(&svg_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting qilin-bench");
    let deadline = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("watchdog: qilin-bench --quick did not finish within {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut table = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut table).unwrap();
    eprintln!("{table}");
    assert!(status.success(), "qilin-bench --quick failed: {status}");

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(doc["skipped"].as_array().map(Vec::len), Some(0), "skipped series: {}", doc["skipped"]);
    for key in ["cpu_model", "cpus", "isolated_cpus", "load_average", "virtual_machine"] {
        assert!(!doc["machine"][key].is_null(), "machine.{key} missing");
    }
    let floor = doc["floor"]["floor_ns"].as_f64().expect("floor.floor_ns");
    assert!(floor >= 1.0);
    assert_eq!(
        floor,
        doc["floor"]["c2c_one_way_p50_ns"].as_f64().unwrap() + doc["floor"]["clock_read_p50_ns"].as_f64().unwrap()
    );
    let series = doc["series"].as_array().expect("series");
    let plan = &doc["plan"];
    assert_eq!(plan["rounds"].as_u64(), Some(ROUNDS));
    let per_round = |key: &str| plan["round"][key].as_u64().unwrap_or_else(|| panic!("plan.round.{key}"));
    let (samples, e2e_samples) = (per_round("samples") * ROUNDS, per_round("e2e_samples") * ROUNDS);
    assert!(samples >= plan["samples"].as_u64().unwrap() && e2e_samples >= plan["e2e_samples"].as_u64().unwrap());
    for name in SERIES.into_iter().filter(|n| expected(n)) {
        let s = series.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("series {name} missing"));
        let n = s["n"].as_u64().unwrap();
        assert!(n > 0, "{name}: no samples");
        if PINGPONG.contains(&name) {
            assert_eq!(n, samples, "{name}: a ping-pong series records every round trip of every round");
        } else if name == "e2e/udp_rust_closed" {
            assert_eq!(n, e2e_samples, "{name}: the closed loop records every datagram it sends");
        } else if name.starts_with("e2e/") {
            assert!(n <= e2e_samples, "{name}: {n} samples, more than the {e2e_samples} asked for");
        } else if name.starts_with("segment/") || name.starts_with("baseline/") {
            // Paced readers record what they read; a lapped reader records fewer, never more.
            let readers = name.split('/').nth(1).and_then(|r| r.split('_').next()?.parse().ok()).unwrap_or(1);
            assert!(n <= samples * readers, "{name}: {n} samples, more than {readers} × {samples}");
        }
        if !name.starts_with("floor/") {
            let notes = s["notes"].as_array().expect("notes");
            let merged = format!("merged from {ROUNDS} of {ROUNDS} interleaved rounds");
            assert!(
                notes.iter().any(|note| note.as_str().is_some_and(|t| t.starts_with(&merged))),
                "{name}: no note of its {ROUNDS} rounds: {notes:?}"
            );
        }
        let values: Vec<f64> = KEYS.iter().map(|k| s["percentiles"][k].as_f64().expect(k)).collect();
        assert!(values.iter().all(|v| v.is_finite() && *v >= 1.0), "{name}: percentiles {values:?}");
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{name}: percentiles out of order {values:?}");
        for (k, v) in KEYS.iter().zip(&values) {
            let ratio = s["ratio_to_floor"][k].as_f64().expect(k);
            assert!(
                (ratio - v / floor).abs() <= 1e-9 * (v / floor).max(1.0),
                "{name} {k}: ratio {ratio} ≠ {v} / {floor}"
            );
        }
    }
    for name in ["e2e/udp_rust", "e2e/udp_c", "e2e/udp_python"] {
        let s = series.iter().find(|s| s["name"] == name).unwrap();
        let what = s["what"].as_str().unwrap();
        assert!(what.contains("--source udp") && what.contains("due time"), "{name}: {what}");
    }
    assert!(series.len() >= SERIES.iter().filter(|n| expected(n)).count());
    let rounds = doc["throughput"]["rounds"].as_array().expect("throughput rounds");
    assert!(!rounds.is_empty() && rounds.iter().all(|r| r["ticks_per_s"].as_f64().unwrap() > 0.0));
    assert!(doc["targets"].as_array().is_some_and(|t| !t.is_empty()));
    for name in SERIES.into_iter().filter(|n| expected(n)) {
        assert!(table.contains(name), "the terminal table lacks {name}");
    }

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"), "not an SVG document");
    assert_well_formed(&svg);
    for name in SERIES.iter().filter(|n| !n.ends_with("_end") && expected(n)) {
        assert!(svg.contains(&format!(">{name}</text>")), "the plot's legend lacks {name}");
    }
    for label in ["90%", "99%", "99.9%"] {
        assert!(svg.contains(&format!(">{label}</text>")), "the percentile axis lacks {label}");
    }
}

//! One harness run from start to finish, and its three outputs: the terminal table (absolute ns and
//! ratio to the floor for each percentile), the JSON file, and the SVG plot.

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};

use super::{
    Plan, Series, baselines, core_ctp, core_paths, e2e,
    floor::{self, Availability, Floor},
    machine::Machine,
    pingpong, segment,
    series::PERCENTILES,
    svg, throughput,
};

/// What the rules of measurement were, printed and stored with every run.
pub const HONESTY: [&str; 6] = [
    "warm-up excluded: the first `warmup` samples of every series (of every round) are taken and discarded",
    "coordinated omission avoided: writers and senders follow a paced schedule and every latency is measured from \
     the tick's due time (the e2e series: the paced UDP sender stamps each datagram with its due time)",
    "ping-pong series (`*_pingpong`): one-way = round trip / 2, back to back, each sample independent: a lost CPU \
     costs the sample it falls in, not every later one (the paced series charge it to every tick it delays)",
    "rounds: each latency series runs `rounds` times for 1/rounds of its samples, all series round robin, merged \
     per series (per-round p50s in the notes), so a change in load falls on every series alike",
    "floor measured in the same run on the same CPUs: cache-line ping-pong one-way + one clock read; ratio = value ÷ floor",
    "read the machine line: a shared or virtual machine with few cores is noisy, and readers beyond the cores available \
     take turns on one CPU",
];

/// Printed when the optional iceoryx2 baseline is not compiled in.
const NOT_BUILT: &str =
    "baseline/iceoryx2: not in this build (cargo build --release -p qilin-benches --features iceoryx2)";

/// Everything one run measured.
#[derive(Debug)]
pub struct Run {
    /// The machine when the run started.
    pub machine_start: Machine,
    /// The load average when it ended.
    pub load_end: String,
    /// How much of each CPU a spinning thread got: at the start, before each round (when there are
    /// several) and at the end.
    pub availability: Vec<(String, Availability)>,
    /// The floor (first measurement).
    pub floor: Floor,
    /// Every measured series, in run order.
    pub series: Vec<Series>,
    /// Series that could not be measured here, with why.
    pub skipped: Vec<(String, String)>,
    /// The throughput rounds (or why not).
    pub throughput: Value,
}

/// Runs one measurement on a thread of its own, so the pinning it does ends with it: the main thread
/// stays unpinned and the processes started later (the core, readers) inherit no one-CPU mask.
fn on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("measurement thread panicked"))
}

fn step(what: &str) {
    eprintln!("qilin-bench: {what} (load {})", super::machine::load_average());
}

/// What a job measured: each series by name, or why it could not be.
type Results = Vec<(String, anyhow::Result<Series>)>;

/// One step of a round: a label for the log and the measurement.
type Job<'a> = (String, Box<dyn Fn(&Plan) -> Results + Sync + 'a>);

/// Wraps a measurement of one series.
fn one<'a>(name: &'a str, f: impl Fn(&Plan) -> anyhow::Result<Series> + Sync + 'a) -> Job<'a> {
    (name.to_string(), Box::new(move |plan: &Plan| vec![(name.to_string(), f(plan))]))
}

/// The latency measurements `plan` asks for, in the order a round runs them.
fn jobs(plan: &Plan) -> Vec<Job<'static>> {
    let mut jobs: Vec<Job<'static>> = Vec::new();
    if plan.runs("baseline") {
        jobs.push(one("baseline/crossbeam_spsc", baselines::measure_crossbeam));
        jobs.push(one("baseline/crossbeam_pingpong", pingpong::measure_crossbeam));
        jobs.push(one("baseline/uds_pair", baselines::measure_uds));
        jobs.push(one("baseline/uds_pair_pingpong", pingpong::measure_uds));
        #[cfg(feature = "iceoryx2")]
        {
            jobs.push(one("baseline/iceoryx2", super::iceoryx2::measure));
            jobs.push(one("baseline/iceoryx2_pingpong", super::iceoryx2::measure_pingpong));
        }
    }
    if plan.runs("segment") {
        jobs.push(one("segment/1_reader_pingpong", pingpong::measure_segment));
        for &n in &plan.reader_counts {
            let job = move |plan: &Plan| match segment::measure(plan, n) {
                Ok((latency, cost)) => vec![(latency.name.clone(), Ok(latency)), (cost.name.clone(), Ok(cost))],
                Err(e) => vec![(format!("segment/{n}_readers"), Err(e))],
            };
            jobs.push((format!("segment, {n} reader(s)"), Box::new(job)));
        }
    }
    if plan.runs("core") {
        jobs.push(one("core/handoff", core_paths::measure_handoff));
        jobs.push(one("core/udp_relay", core_paths::measure_udp));
        jobs.push(("core/ctp (qilin-core binary on the CTP stand-in)".into(), Box::new(core_ctp::measure)));
    }
    if plan.runs("e2e") {
        jobs.push(("end to end (qilin-core binary on its UDP source, paced sender)".into(), Box::new(e2e::measure)));
    }
    jobs
}

/// Series merged over the rounds, in the order first measured.
#[derive(Default)]
struct Merged {
    series: Vec<Series>,
    /// Each series' p50 in each round it ran, by position in `series`.
    round_p50: Vec<Vec<u64>>,
    skipped: Vec<(String, String)>,
}

impl Merged {
    fn add(&mut self, round: u64, rounds: u64, name: String, result: anyhow::Result<Series>) {
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                eprintln!("qilin-bench: {name} skipped: {e:#}");
                let why = if rounds > 1 { format!("round {}: {e:#}", round + 1) } else { format!("{e:#}") };
                self.skipped.push((name, why));
                return;
            }
        };
        let p50 = s.percentiles()[0];
        match self.series.iter().position(|m| m.name == s.name) {
            None => {
                self.round_p50.push(vec![p50]);
                self.series.push(s);
            }
            Some(at) => {
                self.round_p50[at].push(p50);
                let merged = &mut self.series[at];
                merged.hist.add(&s.hist).expect("same histogram bounds");
                for note in s.notes {
                    if !merged.notes.contains(&note) {
                        merged.notes.push(format!("round {}: {note}", round + 1));
                    }
                }
            }
        }
    }

    /// Notes each series with its per-round p50s.
    fn finish(mut self, rounds: u64) -> (Vec<Series>, Vec<(String, String)>) {
        if rounds > 1 {
            for (s, p50s) in self.series.iter_mut().zip(&self.round_p50) {
                s.notes.push(format!(
                    "merged from {} of {rounds} interleaved rounds (every series of the run takes its turn in each \
                     round); p50 per round {p50s:?} ns",
                    p50s.len()
                ));
            }
        }
        (self.series, self.skipped)
    }
}

/// How long the availability probe runs on each CPU before each round.
const ROUND_PROBE_NS: i64 = 50_000_000;

/// Runs every series of `plan`.
pub fn run(plan: &Plan) -> Run {
    let machine_start = Machine::now();
    let mut series = Vec::new();
    let probe_ns = if plan.samples >= 100_000 { 1_000_000_000 } else { 200_000_000 };
    let mut availability = Vec::new();
    step("CPU availability");
    for &cpu in &plan.cores {
        availability.push(("start".to_string(), floor::availability(cpu, probe_ns)));
    }
    step("floor");
    let (floor, floor_series) = on_thread(|| floor::measure(plan));
    series.extend(floor_series);
    let rounds = plan.rounds.max(1);
    let round_plan = plan.round();
    let mut merged = Merged::default();
    let jobs = jobs(plan);
    for round in 0..rounds {
        if rounds > 1 {
            // A short probe per round: the load each round ran under, beside its per-round p50s.
            for &cpu in &plan.cores {
                availability.push((format!("start of round {}", round + 1), floor::availability(cpu, ROUND_PROBE_NS)));
            }
        }
        for (label, job) in &jobs {
            step(&if rounds > 1 { format!("round {}/{rounds}: {label}", round + 1) } else { label.clone() });
            for (name, result) in on_thread(|| job(&round_plan)) {
                merged.add(round, rounds, name, result);
            }
        }
    }
    let (measured, skipped) = merged.finish(rounds);
    series.extend(measured);
    let throughput = if plan.runs("throughput") {
        step("throughput");
        on_thread(|| throughput::measure(plan)).unwrap_or_else(|e| json!({ "skipped": format!("{e:#}") }))
    } else {
        json!({ "skipped": "not asked for (--only)" })
    };
    step("floor again (to see whether it moved during the run)");
    let (_, again) = on_thread(|| floor::measure(plan));
    for mut s in again {
        s.name.push_str("_end");
        s.what.push_str(" — measured again at the end of the run; the ratios use the first measurement");
        s.plot = false;
        series.push(s);
    }
    for &cpu in &plan.cores {
        availability.push(("end".to_string(), floor::availability(cpu, probe_ns)));
    }
    Run { machine_start, load_end: super::machine::load_average(), availability, floor, series, skipped, throughput }
}

fn find<'a>(run: &'a Run, name: &str) -> Option<&'a Series> {
    run.series.iter().find(|s| s.name == name)
}

/// The design's targets that this run can judge, as `(target, measured, met)`.
pub fn targets(run: &Run) -> Vec<(String, String, Option<bool>)> {
    let mut out = Vec::new();
    // The design's one-way target against the same run's core-to-core floor, for a series' p50.
    let within_two_c2c = |what: &str, p50: u64| {
        let limit = 2 * run.floor.c2c_p50;
        (
            what.to_string(),
            format!(
                "{p50} ns vs 2 × {} = {limit} ns ({:.2} × c2c)",
                run.floor.c2c_p50,
                p50 as f64 / run.floor.c2c_p50.max(1) as f64
            ),
            Some(p50 <= limit),
        )
    };
    if let Some(s) = find(run, "segment/1_reader") {
        let p = s.percentiles();
        out.push(within_two_c2c("writer → reader in another process, median ≤ 2 × core-to-core (same run)", p[0]));
        out.push(("writer → reader, p99.9 ≤ 2 µs".into(), format!("{} ns", p[3]), Some(p[3] <= 2_000)));
    }
    if let Some(s) = find(run, "segment/1_reader_pingpong") {
        out.push(within_two_c2c(
            "writer → reader in another process, ping-pong (round trip / 2), median ≤ 2 × core-to-core (same run)",
            s.percentiles()[0],
        ));
    }
    for name in e2e::NAMES.iter().filter(|n| !n.ends_with("_batch")) {
        if let Some(s) = find(run, name) {
            let p = s.percentiles();
            out.push((
                format!("{name}: datagram → reader through the qilin-core binary, p50 ≤ 5 µs (issue 20, quiet run)"),
                format!("p50 {} / p99 {} / p99.9 {} ns", p[0], p[2], p[3]),
                Some(p[0] <= 5_000),
            ));
        }
    }
    let last = run.series.iter().rfind(|s| s.name.starts_with("writer_cost/"));
    if let (Some(one), Some(last)) = (find(run, "writer_cost/1_reader"), last) {
        let (a, b) = (one.percentiles()[0], last.percentiles()[0]);
        out.push((
            format!("writer cost flat: ≤ 10 % more from 1 reader to {}", last.name.trim_start_matches("writer_cost/")),
            format!("p50 {a} → {b} ns ({:+.0} %)", (b as f64 / a.max(1) as f64 - 1.0) * 100.0),
            Some(b as f64 <= a as f64 * 1.10),
        ));
    }
    if let Some(median) = run.throughput["median_ticks_per_s_without_loss"].as_f64() {
        out.push((
            "sustained ingest, one reader keeping up, zero loss: ≥ 5 M ticks/s".into(),
            format!("{:.2} M ticks/s (median of the rounds without loss)", median / 1e6),
            Some(median >= 5e6),
        ));
    }
    out
}

/// The terminal table.
pub fn table(run: &Run, plan: &Plan) -> String {
    let mut t = String::new();
    t.push_str(&format!("machine: {}\n", run.machine_start.line()));
    t.push_str(&format!("load average at the end: {}\n", run.load_end));
    t.push_str(&format!(
        "cores: {:?} (writer/sender CPU {}, reader CPU(s) {:?}); paced at {} ticks/s; {} samples per series after {} warm-up; e2e at {} ticks/s, {} samples; {} round(s), interleaved\n",
        plan.cores,
        plan.writer_cpu(),
        &plan.cores[1..],
        plan.rate,
        plan.samples,
        plan.warmup,
        plan.e2e_rate,
        plan.e2e_samples,
        plan.rounds.max(1)
    ));
    for (when, a) in &run.availability {
        t.push_str(&format!(
            "CPU {} at the {when}: a spinning thread was off the CPU {:.1} % of the time ({} gaps > 20 µs, longest {:.2} ms)\n",
            a.cpu,
            a.off_cpu * 100.0,
            a.gaps,
            a.longest_ns as f64 / 1e6
        ));
    }
    t.push_str(&format!(
        "floor = c2c one-way p50 {} ns + clock read p50 {} ns = {} ns\n\n",
        run.floor.c2c_p50,
        run.floor.clock_p50,
        run.floor.ns()
    ));
    t.push_str(&format!("{:<28} {:>9}", "series (ns; second row × floor)", "n"));
    for (key, _) in PERCENTILES {
        t.push_str(&format!(" {key:>10}"));
    }
    t.push('\n');
    for s in &run.series {
        let p = s.percentiles();
        t.push_str(&format!("{:<28} {:>9}", s.name, s.hist.len()));
        for v in p {
            t.push_str(&format!(" {v:>10}"));
        }
        t.push_str(&format!("\n{:<28} {:>9}", "", ""));
        for v in p {
            t.push_str(&format!(" {:>9.2}×", v as f64 / run.floor.ns() as f64));
        }
        t.push('\n');
    }
    for (name, why) in &run.skipped {
        t.push_str(&format!("{name:<28} skipped: {why}\n"));
    }
    if !cfg!(feature = "iceoryx2") {
        t.push_str(&format!("{NOT_BUILT}\n"));
    }
    t.push_str(&format!("\nthroughput: {}\n", run.throughput));
    t.push_str("\ndesign.md targets:\n");
    for (target, measured, met) in targets(run) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        t.push_str(&format!("  [{verdict}] {target}: {measured}\n"));
    }
    t.push_str("\nrules:\n");
    for rule in HONESTY {
        t.push_str(&format!("  - {rule}\n"));
    }
    t
}

fn keyed(values: impl Iterator<Item = Value>) -> Value {
    let mut map = Map::new();
    for ((key, _), v) in PERCENTILES.iter().zip(values) {
        map.insert((*key).to_string(), v);
    }
    Value::Object(map)
}

/// The JSON document.
pub fn json(run: &Run, plan: &Plan) -> Value {
    let floor = run.floor.ns() as f64;
    let series: Vec<Value> = run
        .series
        .iter()
        .map(|s| {
            let p = s.percentiles();
            json!({
                "name": s.name,
                "what": s.what,
                "unit": "ns",
                "n": s.hist.len(),
                "percentiles": keyed(p.iter().map(|v| json!(v))),
                "ratio_to_floor": keyed(p.iter().map(|v| json!(*v as f64 / floor))),
                "notes": s.notes,
            })
        })
        .collect();
    json!({
        "tool": "qilin-bench",
        "machine": run.machine_start.json(),
        "load_average_end": run.load_end,
        "cpu_availability": run.availability.iter().map(|(when, a)| json!({
            "when": when, "cpu": a.cpu, "off_cpu_share": a.off_cpu, "gaps_over_20us": a.gaps, "longest_gap_ns": a.longest_ns,
        })).collect::<Vec<_>>(),
        "plan": {
            "cores": plan.cores, "writer_cpu": plan.writer_cpu(), "reader_cpus": &plan.cores[1..],
            "rate_ticks_per_s": plan.rate, "samples": plan.samples, "warmup": plan.warmup,
            "e2e_rate_ticks_per_s": plan.e2e_rate, "e2e_samples": plan.e2e_samples,
            "reader_counts": plan.reader_counts, "rounds": plan.rounds.max(1),
            "round": { "samples": plan.round().samples, "warmup": plan.round().warmup, "e2e_samples": plan.round().e2e_samples },
        },
        "floor": {
            "c2c_one_way_p50_ns": run.floor.c2c_p50,
            "clock_read_p50_ns": run.floor.clock_p50,
            "floor_ns": run.floor.ns(),
            "definition": "c2c one-way p50 + clock read p50 (floor/c2c_one_way, floor/clock_read); every ratio_to_floor is value / floor_ns",
        },
        "rules": HONESTY,
        "series": series,
        "not_built": if cfg!(feature = "iceoryx2") { json!([]) } else { json!([NOT_BUILT]) },
        "skipped": run.skipped.iter().map(|(n, why)| json!({"name": n, "reason": why})).collect::<Vec<_>>(),
        "throughput": run.throughput,
        "targets": targets(run).into_iter().map(|(t, m, met)| json!({"target": t, "measured": m, "met": met})).collect::<Vec<_>>(),
    })
}

/// Writes the JSON and SVG files asked for.
pub fn write_outputs(run: &Run, plan: &Plan, json_path: Option<&Path>, svg_path: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = json_path {
        let text = serde_json::to_string_pretty(&json(run, plan))?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = svg_path {
        let title = format!(
            "qilin-bench {} — {} ({} CPUs, load {}) — cores {:?}",
            run.machine_start.utc,
            run.machine_start.cpu_model,
            run.machine_start.cpus,
            run.machine_start.load,
            plan.cores
        );
        let all: Vec<&Series> = run.series.iter().collect();
        std::fs::write(path, svg::render(&title, &all)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::harness::{new_histogram, record};

    fn series(name: &str, values: &[i64], note: &str) -> Series {
        let mut h = new_histogram();
        values.iter().for_each(|v| record(&mut h, *v));
        Series::new(name, "what", h).note(note)
    }

    #[test]
    fn rounds_merge_per_series_with_their_p50s_and_failures() {
        let mut merged = Merged::default();
        merged.add(0, 3, "a".into(), Ok(series("a", &[100, 100, 100], "same")));
        merged.add(0, 3, "b".into(), Ok(series("b", &[7], "b note")));
        merged.add(1, 3, "a".into(), Ok(series("a", &[300, 300], "same")));
        merged.add(1, 3, "b".into(), Err(anyhow::anyhow!("gone")));
        merged.add(2, 3, "a".into(), Ok(series("a", &[200], "differs")));
        let (series, skipped) = merged.finish(3);
        assert_eq!(series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let a = &series[0];
        assert_eq!(a.hist.len(), 6);
        assert_eq!((a.hist.min(), a.hist.max()), (100, a.hist.highest_equivalent(300)));
        assert_eq!(a.notes[0], "same");
        assert_eq!(a.notes[1], "round 3: differs");
        assert!(a.notes[2].starts_with("merged from 3 of 3 interleaved rounds"), "{:?}", a.notes);
        assert!(a.notes[2].ends_with("p50 per round [100, 300, 200] ns"), "{:?}", a.notes);
        assert!(series[1].notes[1].starts_with("merged from 1 of 3"), "{:?}", series[1].notes);
        assert_eq!(skipped, [("b".to_string(), "round 2: gone".to_string())]);
    }

    #[test]
    fn a_round_takes_its_share_of_the_samples_and_enough_warm_up() {
        let plan = Plan {
            cores: vec![0, 1],
            samples: 500_001,
            warmup: 20_000,
            rate: 1,
            e2e_rate: 1,
            e2e_samples: 200_000,
            rounds: 5,
            reader_counts: vec![1],
            throughput_ticks: 1,
            throughput_rounds: 1,
            only: Vec::new(),
            repo: PathBuf::new(),
            core_bin: PathBuf::new(),
            self_bin: PathBuf::new(),
        };
        let round = plan.round();
        assert_eq!((round.samples, round.e2e_samples, round.warmup), (100_001, 40_000, 4_000));
        let small = Plan { warmup: 2_000, rounds: 4, ..plan.clone() }.round();
        assert_eq!(small.warmup, 1_000, "at least 1 000 warm-up samples per round");
        let tiny = Plan { warmup: 300, rounds: 4, ..plan }.round();
        assert_eq!(tiny.warmup, 300, "never more warm-up per round than the whole run asked for");
    }
}

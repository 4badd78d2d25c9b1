//! Segment commands: `status`, `tail`, `instruments`, `snapshot` (read a running feed's segment,
//! never linking the core) and `layout` (the shared structs' layout, no segment needed).
//!
//! Exit codes: 0 ok; 2 the segment is missing, unreadable or of another layout; 3 the writer is
//! stale (heartbeat older than `--stale-ms`) or stopped.

use std::{path::Path, process::ExitCode, time::Duration};

use qilin_shm::{Liveness, Next, Reader, Start, TickRecord, layout};
use qilin_tools::{TICK_HEADER, exchange_name, sidecars_json, status_json, tick_json, tick_row};

/// A sidecar whose status file is older than this is shown as not running.
const SIDECAR_STALE_NS: i64 = 2_000_000_000;

/// Opens the segment the reading commands look at [default: /dev/shm/qilin]; exit code 2 if it
/// cannot be read.
pub fn open(segment: Option<&Path>) -> Result<Reader, ExitCode> {
    let segment = segment.map_or_else(|| Path::new("/dev/shm/qilin").to_owned(), Path::to_owned);
    Reader::open(&segment).map_err(|e| {
        eprintln!("qilinctl: {e}");
        ExitCode::from(2)
    })
}

/// `layout`: the C header, the JSON, or the text table.
pub fn layout(json: bool, c_header: bool) -> ExitCode {
    if c_header {
        print!("{}", qilin_shm::cheader::c_header());
    } else if json {
        println!("{}", qilin_tools::layout_json());
    } else {
        print_layout();
    }
    ExitCode::SUCCESS
}

pub fn status(reader: &Reader, json: bool, stale_ms: u64) -> ExitCode {
    let stale_ns = stale_ms as i64 * 1_000_000;
    let before = reader.write_cursor();
    std::thread::sleep(Duration::from_millis(200));
    let rate = (reader.write_cursor() - before) * 5;
    // After the rate sample: a `now` from before it made the heartbeat look 200 ms in the future.
    let now = qilin_shm::now_ns();
    let mut value = status_json(reader, now, stale_ns);
    value["rate_per_s"] = serde_json::json!(rate);
    value["sidecars"] = sidecars_json(reader.path(), now, SIDECAR_STALE_NS.max(stale_ns));
    if json {
        println!("{value}");
    } else {
        println!("segment      {}", value["segment"].as_str().unwrap_or(""));
        println!(
            "feed         {}  (layout v{}, fingerprint {})",
            value["feed"], value["layout_version"], value["fingerprint"]
        );
        println!("capacity     {} slots, {} instruments", value["ring_slots"], value["instrument_capacity"]);
        println!(
            "writer       pid {}  epoch {}  state {}  {}",
            value["writer_pid"], value["epoch"], value["run_state"], value["liveness"]
        );
        println!("heartbeat    {:.1} ms ago", value["heartbeat_age_ms"].as_f64().unwrap_or(f64::NAN));
        println!("sequence     {}  ({rate} ticks/s)", value["write_cursor"]);
        println!("instruments  {}", value["instruments"]);
        let link = &value["link"];
        if link.is_object() && link["state"] != "idle" {
            println!(
                "link         {}  active session {}  front {}  trading day {}  failovers {}  api {}",
                link["state"].as_str().unwrap_or("?"),
                link["active_source"].as_str().unwrap_or("none"),
                link["front"].as_str().filter(|f| !f.is_empty()).unwrap_or("-"),
                link["trading_day"],
                link["failovers"],
                link["api_version"].as_str().filter(|f| !f.is_empty()).unwrap_or("-"),
            );
        }
        if let Some(counters) = value["counters"].as_object() {
            for (name, v) in counters.iter().filter(|(_, v)| v.as_u64() != Some(0)) {
                println!("  {name:<28} {v}");
            }
        }
        for sc in value["sidecars"].as_array().into_iter().flatten() {
            if let Some(error) = sc["error"].as_str() {
                println!("sidecar      {}  unreadable status: {error}", sc["instance"].as_str().unwrap_or("?"));
                continue;
            }
            // A reader of the ring (qilin-nats, the recorder) has a position and a lag; qilin-secrets
            // has its rotation's state instead.
            let progress = match sc["rotation"].as_object() {
                Some(rotation) => {
                    let next = rotation["next_attempt_in_ms"]
                        .as_u64()
                        .map(|ms| format!(", next attempt in {ms} ms"))
                        .unwrap_or_default();
                    let last = match (rotation["last_rotation"].as_str(), rotation["last_outcome"].as_str()) {
                        (Some(id), Some(outcome)) => format!("  last rotation {id}: {outcome}"),
                        _ => String::new(),
                    };
                    format!("rotation {}{next}{last}", rotation["state"].as_str().unwrap_or("?"))
                }
                None => format!(
                    "position {}  lag {} ticks / {:.1} ms  {}",
                    sc["position"],
                    sc["lag_sequences"],
                    sc["lag_ns"].as_f64().unwrap_or(0.0) / 1e6,
                    if sc["connected"] == false { "DISCONNECTED" } else { "connected" },
                ),
            };
            println!(
                "sidecar      {} ({}) pid {}  {progress}  {} (status {:.0} ms old){}",
                sc["instance"].as_str().unwrap_or("?"),
                sc["sidecar"].as_str().unwrap_or("?"),
                sc["pid"],
                if sc["alive"] == true { "alive" } else { "NOT RUNNING" },
                sc["age_ms"].as_f64().unwrap_or(f64::NAN),
                sc["last_error"].as_str().map(|e| format!("  last error: {e}")).unwrap_or_default(),
            );
        }
    }
    match reader.liveness(now, stale_ns) {
        Liveness::Live { .. } => ExitCode::SUCCESS,
        Liveness::Stale { age_ns } => {
            eprintln!("qilinctl: writer is stale: last heartbeat {:.0} ms ago", age_ns as f64 / 1e6);
            ExitCode::from(3)
        }
        Liveness::Stopped { .. } => {
            eprintln!("qilinctl: writer stopped");
            ExitCode::from(3)
        }
    }
}

pub fn tail(
    mut reader: Reader,
    from: &str,
    instruments: &[String],
    json: bool,
    count: Option<u64>,
    idle_exit_ms: Option<u64>,
) -> ExitCode {
    let start = match from {
        "oldest" => Start::Oldest,
        "newest" => Start::Newest,
        seq => match seq.parse() {
            Ok(seq) => Start::Sequence(seq),
            Err(_) => {
                eprintln!("qilinctl: --from {seq:?}: expected oldest, newest or a sequence number");
                return ExitCode::from(2);
            }
        },
    };
    reader.seek(start);
    let mut stdout = std::io::stdout().lock();
    // One line out; a reader that has gone (`qilinctl tail | head`) ends the command quietly.
    macro_rules! emit {
        ($($arg:tt)*) => {
            if let Err(code) = write_line(&mut stdout, format_args!($($arg)*)) {
                return code;
            }
        };
    }
    if !json {
        emit!("{TICK_HEADER}");
    }
    let mut out = TickRecord::ZERO;
    let (mut printed, mut last_tick) = (0u64, std::time::Instant::now());
    loop {
        match reader.try_next(&mut out) {
            Next::Tick => {
                last_tick = std::time::Instant::now();
                if !instruments.is_empty() && !instruments.iter().any(|i| Some(i.as_str()) == out.instrument_id_str()) {
                    continue;
                }
                if json {
                    emit!("{}", tick_json(&out));
                } else {
                    emit!("{}", tick_row(&out));
                }
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    return ExitCode::SUCCESS;
                }
            }
            Next::Gap { first, last } => {
                if json {
                    emit!("{}", serde_json::json!({"gap": {"first": first, "last": last}}));
                } else {
                    emit!("-- gap: sequences {first}..={last} lost ({} ticks)", last - first + 1);
                }
            }
            Next::NewEpoch { previous, current } => {
                if json {
                    emit!("{}", serde_json::json!({"epoch": {"previous": previous, "current": current}}));
                } else {
                    emit!("-- writer restarted: epoch {previous} -> {current}");
                }
            }
            Next::Empty => {
                if idle_exit_ms.is_some_and(|ms| last_tick.elapsed() >= Duration::from_millis(ms)) {
                    return ExitCode::SUCCESS;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

/// Writes one line; `Err` with the exit code when stdout is gone: 0 for a closed pipe (its reader
/// has all it wanted, as with `cat`), 1 for any other write error, said on stderr.
fn write_line(out: &mut impl std::io::Write, line: std::fmt::Arguments) -> Result<(), ExitCode> {
    writeln!(out, "{line}").map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            ExitCode::SUCCESS
        } else {
            eprintln!("qilinctl: writing to stdout: {e}");
            ExitCode::from(1)
        }
    })
}

/// `instruments [--unknown]`: the directory, each entry with its last value; with `unknown_only`,
/// the entries whose last tick carries `unknown_product` (every tick of such an instrument does).
pub fn instruments(reader: &Reader, json: bool, unknown_only: bool) -> ExitCode {
    let mut out = TickRecord::ZERO;
    for (index, entry) in reader.instruments().iter().enumerate() {
        let has = reader.latest(index as u32, &mut out).unwrap_or(false);
        if unknown_only && !(has && out.quality & qilin_shm::quality::UNKNOWN_PRODUCT != 0) {
            continue;
        }
        let id = entry.instrument_id_str().unwrap_or("?");
        if json {
            let last = if has { tick_json(&out) } else { serde_json::Value::Null };
            let line = serde_json::json!({
                "index": index, "InstrumentID": id, "ExchangeID": exchange_name(entry.exchange),
                "VolumeMultiple": entry.volume_multiple, "PriceTick": entry.price_tick, "last": last,
            });
            println!("{line}");
        } else if has {
            println!(
                "{index:>5} {id:<10} {:<5} x{:<5} {}",
                exchange_name(entry.exchange),
                entry.volume_multiple,
                tick_row(&out)
            );
        } else {
            println!(
                "{index:>5} {id:<10} {:<5} x{:<5} (no tick yet)",
                exchange_name(entry.exchange),
                entry.volume_multiple
            );
        }
    }
    ExitCode::SUCCESS
}

pub fn snapshot(reader: &Reader, json: bool) -> ExitCode {
    let snapshot = match reader.snapshot() {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("qilinctl: {e}");
            return ExitCode::from(2);
        }
    };
    if !json {
        println!("{TICK_HEADER}");
    }
    for tick in &snapshot.ticks {
        if json {
            println!("{}", tick_json(tick));
        } else {
            println!("{}", tick_row(tick));
        }
    }
    if !json {
        println!(
            "-- {} instruments with a last value, consistent as of sequence {}",
            snapshot.ticks.len(),
            snapshot.as_of
        );
    }
    ExitCode::SUCCESS
}

fn print_layout() {
    println!(
        "layout version {}  fingerprint {}",
        layout::LAYOUT_VERSION,
        layout::fingerprint_text(layout::FINGERPRINT)
    );
    for s in layout::STRUCTS {
        println!("\n{} ({} bytes)", s.name, s.size);
        for f in s.fields {
            println!("  {:>5} {:>4}  {}", f.offset, f.size, f.name);
        }
    }
    println!("\ncounters (header counter block, u64 each):");
    for (i, name) in qilin_shm::Counter::NAMES.iter().enumerate() {
        println!("  {i:>3}  {name}");
    }
}

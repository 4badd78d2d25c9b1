//! Reads a live segment for a number of seconds and reports whether it kept up: ticks read, rate,
//! gaps. Exit status 1 if any sequence was lost. Used for the "keeps up with the simulator at its
//! maximum rate" figure in BENCHMARKS.md.
//!
//! ```sh
//! target/release/qilin-core --segment /dev/shm/k --control-socket /tmp/k.sock --sim-rate 100000000 &
//! cargo run --release -p qilin-shm --example keepup -- /dev/shm/k 30
//! ```

use std::time::{Duration, Instant};

use qilin_shm::{Next, Reader, Start, TickRecord};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/dev/shm/qilin".into());
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let mut reader = Reader::open(&path)?;
    reader.seek(Start::Newest);
    let (mut ticks, mut lost, mut gaps, mut max_lag) = (0u64, 0u64, 0u64, 0u64);
    let mut out = TickRecord::ZERO;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let first = reader.next_sequence();
    while Instant::now() < end {
        for _ in 0..1024 {
            match reader.try_next(&mut out) {
                Next::Tick => ticks += 1,
                Next::Gap { first, last } => {
                    lost += last - first + 1;
                    gaps += 1;
                }
                Next::NewEpoch { .. } => {}
                Next::Empty => break,
            }
        }
        max_lag = max_lag.max(reader.write_cursor().saturating_sub(reader.next_sequence() - 1));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "keepup: {ticks} ticks from sequence {first} in {secs:.1} s = {:.0} ticks/s; {gaps} gaps, {lost} lost; max lag {max_lag} slots",
        ticks as f64 / secs
    );
    std::process::exit(if lost == 0 { 0 } else { 1 });
}

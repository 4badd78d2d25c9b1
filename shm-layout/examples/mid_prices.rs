//! A minimal strategy loop: join late (snapshot of every instrument's book), then print the
//! mid-price of each tick as it arrives, plus gaps and restarts.
//!
//! ```sh
//! cargo run --release -p qilin-core -- &          # a feed on the simulator
//! cargo run --release -p qilin-shm --example mid_prices -- /dev/shm/qilin 20
//! ```

use qilin_shm::{Liveness, Next, Reader, TickRecord};

fn mid(t: &TickRecord) -> f64 {
    (t.bid_price[0] + t.ask_price[0]) / 2.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/dev/shm/qilin".into());
    let count: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(u64::MAX);

    let mut reader = Reader::open(&path)?;
    if let Liveness::Stale { age_ns } = reader.liveness(qilin_shm::now_ns(), 1_000_000_000) {
        eprintln!("warning: the feed's heartbeat is {:.1} s old", age_ns as f64 / 1e9);
    }
    let snapshot = reader.join()?;
    for t in &snapshot.ticks {
        println!("snapshot {:<8} mid {:.3}", t.instrument_id_str().unwrap_or("?"), mid(t));
    }
    let mut tick = TickRecord::ZERO;
    let mut printed = 0;
    while printed < count {
        match reader.next_blocking(&mut tick) {
            Next::Tick => {
                println!("#{:<8} {:<8} mid {:.3}", tick.sequence, tick.instrument_id_str().unwrap_or("?"), mid(&tick));
                printed += 1;
            }
            Next::Gap { first, last } => println!("gap: lost {first}..={last}"),
            Next::NewEpoch { current, .. } => println!("feed restarted (epoch {current}); sequences continue"),
            Next::Empty => unreachable!("next_blocking spins"),
        }
    }
    Ok(())
}

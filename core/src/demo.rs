//! `qilin-core --demo`: a reader thread in the same process that prints, once a second, what any
//! strategy mapping the segment would see — the rate, the sequence, and the latest tick. It uses
//! only the public `qilin_shm::Reader`, exactly as an external process would.

use std::{path::Path, time::Duration};

use qilin_shm::{Next, Reader, Start, TickRecord};

/// Formats one tick as a short line.
pub fn tick_line(t: &TickRecord) -> String {
    let ms = t.update_time_ms;
    format!(
        "#{:<9} {:<8} {:>02}:{:>02}:{:>02}.{:03}  last {:>10.2}  bid {:>10.2} x {:<4} ask {:>10.2} x {:<4} vol {}",
        t.sequence,
        t.instrument_id_str().unwrap_or("?"),
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000,
        t.last_price,
        t.bid_price[0],
        t.bid_volume[0],
        t.ask_price[0],
        t.ask_volume[0],
        t.volume,
    )
}

/// Opens the segment (waiting for it to appear) and prints a line a second, forever.
pub fn print_forever(segment: &Path) {
    let mut reader = loop {
        match Reader::open(segment) {
            Ok(reader) => break reader,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    reader.seek(Start::Newest);
    let mut out = TickRecord::ZERO;
    let mut last = TickRecord::ZERO;
    let (mut ticks, mut lost) = (0u64, 0u64);
    let mut next_print = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match reader.try_next(&mut out) {
            Next::Tick => {
                ticks += 1;
                last = out;
            }
            Next::Gap { first, last } => lost += last - first + 1,
            Next::NewEpoch { current, .. } => println!("demo: writer restarted, epoch {current}"),
            Next::Empty => std::thread::sleep(Duration::from_micros(200)),
        }
        if std::time::Instant::now() >= next_print {
            next_print += Duration::from_secs(1);
            println!(
                "demo: {ticks:>7} ticks/s  lost {lost}  instruments {:<4} | {}",
                reader.directory_len(),
                if last.sequence > 0 { tick_line(&last) } else { "waiting for ticks".into() }
            );
            (ticks, lost) = (0, 0);
        }
    }
}

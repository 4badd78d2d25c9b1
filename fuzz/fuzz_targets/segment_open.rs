//! Opening a segment file of any content as a reader: a clear error or a reader whose every
//! accessor stays in bounds; never a panic, never a fault from reading past the mapping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qilin_shm::{Reader, Start, TickRecord};

fuzz_target!(|data: &[u8]| {
    let path = format!("/dev/shm/qilin-fuzz-segment-{}", std::process::id());
    std::fs::write(&path, data).unwrap();
    let Ok(mut reader) = Reader::open(&path) else { return };
    let _ = reader.status();
    let _ = reader.feed_name();
    let _ = reader.instruments();
    let mut tick = TickRecord::ZERO;
    for index in 0..4 {
        let _ = reader.latest(index, &mut tick);
    }
    reader.seek(Start::Oldest);
    for _ in 0..64 {
        let _ = reader.try_next(&mut tick);
    }
});

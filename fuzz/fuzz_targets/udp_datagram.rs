//! The UDP source's path: any datagram, as `Input::Udp` hands it to the engine (parse by size,
//! text checks, normalization, admission, publication). Must never panic; a bad datagram is a
//! counted reject.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qilin_shm::Source;

#[path = "engine.rs"]
mod engine;

fuzz_target!(|data: &[u8]| {
    let mut engine = engine::engine().lock().unwrap();
    engine.process(data, 1_767_225_600_000_000_000, Source::Udp);
});

//! The normalizer, driven deep: a well-formed 6.7.x struct for a known instrument (so parsing
//! passes) whose numeric block, update time, millisecond and dates come from the input, fed
//! several times in a row so the per-instrument state (volume regression, repeated seconds, day
//! changes) is exercised. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qilin_core::ctp::{BODY_OFFSET, RawFields, V67_SIZE};
use qilin_shm::Source;

#[path = "engine.rs"]
mod engine;

const INSTRUMENTS: [(&str, &str); 6] = [
    ("rb2605", "SHFE"),
    ("sc2605", "INE"),
    ("m2605", "DCE"),
    ("SR605", "CZCE"),
    ("IF2606", "CFFEX"),
    ("si2605", "GFEX"),
];
const BODY: usize = 312;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (id, exchange) = INSTRUMENTS[pick as usize % INSTRUMENTS.len()];
    let fields = RawFields {
        instrument_id: id.into(),
        exchange_id: exchange.into(),
        trading_day: "20260302".into(),
        action_day: "20260302".into(),
        update_time: "09:00:00".into(),
        ..RawFields::default()
    };
    let template = fields.to_v67_bytes();
    let mut engine = engine::engine().lock().unwrap();
    for chunk in rest.chunks(BODY + 2) {
        let mut raw = template;
        let (flags, body) = chunk.split_at(chunk.len().min(2));
        raw[BODY_OFFSET..BODY_OFFSET + body.len()].copy_from_slice(body);
        // Optionally scramble the dates' digits too (still NUL-terminated inside their fields).
        if flags.first().is_some_and(|f| f & 1 == 1) {
            raw[0..8].copy_from_slice(b"20260229");
        }
        if flags.get(1).is_some_and(|f| f & 1 == 1) {
            raw[392..400].copy_from_slice(b"20261301");
        }
        debug_assert_eq!(raw.len(), V67_SIZE);
        engine.process(&raw, 1_767_225_600_000_000_000, Source::Udp);
    }
});

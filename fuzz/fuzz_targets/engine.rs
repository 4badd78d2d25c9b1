// Shared by the two CTP targets: one engine over a segment in /dev/shm, built once per process.

use std::{
    path::Path,
    sync::{Arc, Mutex, OnceLock, atomic::AtomicBool},
};

use qilin_market::Instruments;
use qilin_core::{
    config::Admit,
    engine::{Engine, EngineOptions},
};
use qilin_shm::{SegmentOptions, Writer};

pub fn engine() -> &'static Mutex<Engine> {
    static ENGINE: OnceLock<Mutex<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let path = format!("/dev/shm/qilin-fuzz-{}", std::process::id());
        let _ = std::fs::remove_file(&path);
        let writer = Writer::open(
            &path,
            &SegmentOptions { feed_name: "fuzz".into(), ring_slots: 1 << 10, instrument_capacity: 256 },
        )
        .expect("a fuzz segment in /dev/shm");
        let instruments =
            Instruments::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml")).unwrap();
        let (_commands_tx, commands) = crossbeam_channel::bounded(1);
        let (events, _events_rx) = rtrb::RingBuffer::new(16);
        let options = EngineOptions { admit: Admit::AnyKnownProduct, heartbeat_interval_ns: 1_000_000, batch: 1 };
        Mutex::new(Engine::new(writer, instruments, 256, options, commands, events, Arc::new(AtomicBool::new(false))))
    })
}

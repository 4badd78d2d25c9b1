//! The journal reader on any file: opening, iterating every entry and `verify` either succeed or
//! return an error; never a panic, never an endless loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qilin_journal::{JournalReader, verify};

fuzz_target!(|data: &[u8]| {
    let path = format!("/dev/shm/qilin-fuzz-journal-{}.qj", std::process::id());
    std::fs::write(&path, data).unwrap();
    if let Ok(mut reader) = JournalReader::open(&path) {
        for _ in 0..100_000 {
            match reader.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    let _ = verify(&path);
});

//! Generates the C header `qilin_shm.h` from the Rust layout definitions (being written).

/// The header text.
pub fn c_header() -> String {
    String::from("/* qilin_shm.h: not generated yet */\n")
}

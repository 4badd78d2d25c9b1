//! The dotenv parser of `qilinctl validate-env` and `qilin-secrets`: any file content loads
//! without a panic, and no problem quotes a value (values of 8 characters or more are checked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qilin_market::secrets::{Source, dotenv, load};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = dotenv::parse_line(line);
        }
    }
    let path = format!("/dev/shm/qilin-fuzz-dotenv-{}", std::process::id());
    std::fs::write(&path, data).unwrap();
    if let Ok(loaded) = load(&Source::File(path.into())) {
        let text = String::from_utf8_lossy(data);
        let values: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(_, v)| v.trim()))
            .filter(|v| v.len() >= 8 && !v.contains(['=', ' ']))
            .collect();
        for problem in &loaded.problems {
            for value in &values {
                assert!(!problem.reason.contains(value), "a problem quotes a value: {problem}");
            }
        }
    }
});

//! The `credentials {json}` command of the control socket: never panics, and a refusal never
//! quotes the password (or any other string value of six characters or more) it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qilin_core::session::{Credentials, check_front};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = check_front(text);
    let Err(error) = Credentials::parse(text) else { return };
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(text) {
        for (key, value) in &fields {
            if let Some(value) = value.as_str()
                && value.len() >= 6
                && (key == "password" || key == "auth_code")
            {
                assert!(!error.contains(value), "the error quotes the {key}: {error}");
            }
        }
    }
});

//! The managed keys' schedule as `qilinctl keys rotate --schedule-out FILE` publishes it for
//! monitoring: which keys exist, their active version and when each is next due. It holds no key
//! material and is readable without the master key, so the recorder's `/metrics` can show a key
//! past its due date (a rotation timer that stopped) without ever opening the key store.
//!
//! ```text
//! {"format":"qilin-keys-schedule/1","written_unix_s":1767225600,
//!  "keys":[{"name":"nats-token","type":"api","active_version":3,"next_due_unix_s":1774828800}]}
//! ```
//!
//! qilinctl writes it (temporary file + rename) after every `keys rotate`, so its `written_unix_s`
//! also tells whether the timer still runs.

use std::{fmt, path::Path};

use serde::{Deserialize, Serialize};

/// The `format` this code reads and writes.
pub const FORMAT: &str = "qilin-keys-schedule/1";

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySchedule {
    /// [`FORMAT`].
    pub format: String,
    /// When qilinctl wrote it (Unix seconds, its clock or `--now-unix-s`).
    pub written_unix_s: i64,
    /// Every key of the store, in the store's order.
    pub keys: Vec<KeyDue>,
}

/// One key's place in the schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDue {
    pub name: String,
    /// `api`, `encryption` or `signing`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// The version in use; `None` if every version was retired.
    pub active_version: Option<u32>,
    /// When the active version is due for rotation (activation + period); `None` without one.
    pub next_due_unix_s: Option<i64>,
}

impl KeyDue {
    /// Past its due date at `now_unix_s` (due at exactly the due second, as `keys rotate --due`).
    pub fn overdue(&self, now_unix_s: i64) -> bool {
        self.next_due_unix_s.is_some_and(|due| due <= now_unix_s)
    }
}

/// Why a schedule file could not be used: the file and what is wrong with it.
#[derive(Debug)]
pub struct ScheduleError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key schedule {}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ScheduleError {}

impl KeySchedule {
    /// Reads and checks `path`: JSON of this format, each key named once.
    pub fn load(path: &Path) -> Result<KeySchedule, ScheduleError> {
        let error = |reason: String| ScheduleError { path: path.display().to_string(), reason };
        let bytes = std::fs::read(path).map_err(|e| error(format!("cannot be read: {e}")))?;
        let schedule: KeySchedule =
            serde_json::from_slice(&bytes).map_err(|e| error(format!("not a key schedule: {e}")))?;
        if schedule.format != FORMAT {
            return Err(error(format!("format {:?}, this build reads {FORMAT:?}", schedule.format)));
        }
        for (i, key) in schedule.keys.iter().enumerate() {
            if schedule.keys[..i].iter().any(|k| k.name == key.name) {
                return Err(error(format!("key {:?} is listed twice", key.name)));
            }
        }
        Ok(schedule)
    }

    /// The file's text (one JSON object and a newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string(self).expect("a schedule serializes");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, due: Option<i64>) -> KeyDue {
        KeyDue { name: name.into(), key_type: "api".into(), active_version: due.map(|_| 1), next_due_unix_s: due }
    }

    #[test]
    fn round_trip_and_overdue_from_the_due_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedule.json");
        let schedule = KeySchedule {
            format: FORMAT.into(),
            written_unix_s: 100,
            keys: vec![key("nats-token", Some(1_000)), key("old", None)],
        };
        std::fs::write(&path, schedule.to_json()).unwrap();
        let read = KeySchedule::load(&path).unwrap();
        assert_eq!(read, schedule);
        assert!(!read.keys[0].overdue(999));
        assert!(read.keys[0].overdue(1_000));
        assert!(!read.keys[1].overdue(i64::MAX), "a key with no active version is never due");
    }

    #[test]
    fn a_bad_file_is_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedule.json");
        let cases = [
            ("{", "not a key schedule"),
            (r#"{"format":"qilin-keys-schedule/9","written_unix_s":1,"keys":[]}"#, "format \"qilin-keys-schedule/9\""),
            (r#"{"format":"qilin-keys-schedule/1","written_unix_s":1,"keys":[],"material":"x"}"#, "unknown field"),
        ];
        for (text, expected) in cases {
            std::fs::write(&path, text).unwrap();
            let e = KeySchedule::load(&path).unwrap_err().to_string();
            assert!(e.starts_with(&format!("key schedule {}: ", path.display())) && e.contains(expected), "{e}");
        }
        let twice =
            KeySchedule { format: FORMAT.into(), written_unix_s: 1, keys: vec![key("a", None), key("a", None)] };
        std::fs::write(&path, twice.to_json()).unwrap();
        assert!(KeySchedule::load(&path).unwrap_err().to_string().contains("\"a\" is listed twice"));
        let missing = dir.path().join("none.json");
        assert!(KeySchedule::load(&missing).unwrap_err().to_string().contains("cannot be read"));
    }
}

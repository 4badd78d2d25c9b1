//! `qilin-bars` configuration: one TOML file (config/bars.example.toml), every key with a default,
//! unknown keys refused, every problem reported with its key. The `[nats]` and `[jetstream]` tables
//! are qilin-nats' (the same connection, TLS and authentication keys, checked by the same code);
//! bars are always JSON on JetStream.

use std::path::PathBuf;

use serde::Deserialize;

use super::bar::Period;
use crate::nats::config::{ConfigError, JetStreamConfig, Mode, NatsConfig};

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Instance name: cursor `<state_dir>/<name>.cursor`.
    pub name: String,
    /// The tick segment to read.
    pub segment: PathBuf,
    /// The bar segment every closed bar is written to; empty: `<segment>-bars` beside the tick
    /// segment (`/dev/shm/qilin-bars`).
    pub bar_segment: PathBuf,
    /// The bar segment's ring, in bars (a power of two; 192 bytes each).
    pub bar_ring_slots: u64,
    /// Directory of the cursor file.
    pub state_dir: PathBuf,
    /// The product table; the calendar is the `calendar/` directory beside it.
    pub instruments_file: PathBuf,
    /// The recorder's journal directory: at start the open bars are rebuilt from it. Empty: from
    /// the ring only (bars of a day joined late are flagged `partial`).
    pub journal_dir: PathBuf,
    /// The journal-encryption keys of an encrypted journal (`qilinctl keys render-key
    /// journal-encryption --in-force` files, 0600): the active version and any older one the
    /// journal's files from the cursor's day on were sealed with. Empty: the journal is not encrypted.
    pub journal_key_files: Vec<PathBuf>,
    /// Periods to build: `1m`, `5m`, `15m`, `30m`, `60m`, `1d`.
    pub periods: Vec<String>,
    /// A bar closes when the feed clock passes its end by this much (at least 1000: the closing second).
    pub close_delay_ms: u32,
    /// The idle timer uses the wall clock less this margin (a tick is written within it of its stamp).
    pub timer_margin_ms: u32,
    /// Sleep when the ring is idle (then the timer runs and bars are flushed).
    pub idle_sleep_ms: u64,
    /// How often the cursor is saved (when it moved and every bar before it is acknowledged).
    pub cursor_interval_ms: u64,
    /// `[nats]`: as qilin-nats'; `subject_prefix` empty means `qilin-bars.<feed>` (not qilin-nats'
    /// `qilin.<feed>`, whose stream owns `qilin.<feed>.>`); `mode` must be `jetstream`.
    pub nats: NatsConfig,
    /// `[jetstream]`: as qilin-nats'; `stream` empty means `QILIN_BARS_<FEED>`.
    pub jetstream: JetStreamConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "bars".into(),
            segment: PathBuf::from("/dev/shm/qilin"),
            bar_segment: PathBuf::new(),
            bar_ring_slots: 1 << 18,
            state_dir: qilin_market::paths::state_dir(),
            instruments_file: PathBuf::from(qilin_market::products::DEFAULT_PATH),
            journal_dir: PathBuf::new(),
            journal_key_files: Vec::new(),
            periods: Period::ALL.iter().map(|p| p.name().to_owned()).collect(),
            close_delay_ms: 2000,
            timer_margin_ms: 1000,
            idle_sleep_ms: 1,
            cursor_interval_ms: 200,
            nats: NatsConfig::default(),
            jetstream: JetStreamConfig { duplicate_window_s: 7200, ..JetStreamConfig::default() },
        }
    }
}

impl qilin_market::config::Validate for Config {
    fn check(&self, file: &str) -> Result<(), ConfigError> {
        self.validate(file)
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        qilin_market::config::load(path)
    }

    /// Checks every value, reporting all problems at once.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let mut problems = match self.as_nats().validate(file) {
            Ok(()) => Vec::new(),
            Err(e) => e.problems,
        };
        let mut bad = |key: &str, reason: String| problems.push((key.into(), reason));
        if self.periods.is_empty() {
            bad("periods", "at least one period".into());
        }
        for p in &self.periods {
            if Period::from_name(p).is_none() {
                bad("periods", format!("{p:?} is not one of 1m, 5m, 15m, 30m, 60m, 1d"));
            }
        }
        if !(1000..=60_000).contains(&self.close_delay_ms) {
            bad("close_delay_ms", format!("{}: 1000..=60000", self.close_delay_ms));
        }
        if self.timer_margin_ms > 60_000 {
            bad("timer_margin_ms", format!("{}: at most 60000", self.timer_margin_ms));
        }
        if !(1..=1000).contains(&self.idle_sleep_ms) {
            bad("idle_sleep_ms", format!("{}: 1..=1000", self.idle_sleep_ms));
        }
        if let Err(e) = qilin_shm::Geometry::of::<qilin_shm::BarRecord>(self.bar_ring_slots, 1) {
            bad("bar_ring_slots", e.to_string());
        }
        if self.nats.mode != Mode::Jetstream {
            bad("nats.mode", "qilin-bars publishes to JetStream only (exactly once by message id)".into());
        }
        ConfigError::check(file, problems)
    }

    /// The periods, parsed (after [`Config::validate`]).
    pub fn periods(&self) -> Vec<Period> {
        self.periods.iter().filter_map(|p| Period::from_name(p)).collect()
    }

    /// The qilin-nats config with the same connection keys (for its checks and connect options).
    pub fn as_nats(&self) -> crate::nats::Config {
        crate::nats::Config {
            name: self.name.clone(),
            segment: self.segment.clone(),
            state_dir: self.state_dir.clone(),
            nats: self.nats.clone(),
            jetstream: self.jetstream.clone(),
            ..crate::nats::Config::default()
        }
    }

    /// Subject prefix for `feed`.
    pub fn prefix(&self, feed: &str) -> String {
        if self.nats.subject_prefix.is_empty() {
            format!("qilin-bars.{}", crate::nats::subject_token(feed))
        } else {
            self.nats.subject_prefix.clone()
        }
    }

    /// Stream name for `feed`.
    pub fn stream_name(&self, feed: &str) -> String {
        if self.jetstream.stream.is_empty() {
            format!("QILIN_BARS_{}", feed.to_ascii_uppercase().replace('-', "_"))
        } else {
            self.jetstream.stream.clone()
        }
    }

    /// The bar segment's path ([`Config::bar_segment`], or the default beside the tick segment).
    pub fn bar_segment_path(&self) -> PathBuf {
        if self.bar_segment.as_os_str().is_empty() {
            qilin_market::paths::bar_segment_path(&self.segment)
        } else {
            self.bar_segment.clone()
        }
    }

    /// The cursor file.
    pub fn cursor_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}.cursor", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_bad_values_are_all_named() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bars.example.toml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.periods(), Period::ALL);
        assert_eq!(config.prefix("qilin"), "qilin-bars.qilin");
        assert_eq!(config.stream_name("sim-1"), "QILIN_BARS_SIM_1");
        assert_eq!(config.bar_segment_path(), PathBuf::from("/dev/shm/qilin-bars"));
        let text = "periods = [\"2m\"]\nclose_delay_ms = 10\nbar_ring_slots = 1000\n[nats]\nmode = \"core\"\n";
        let err = qilin_market::config::parse::<Config>(text, "b.toml").unwrap_err().to_string();
        for key in ["periods", "close_delay_ms", "bar_ring_slots", "nats.mode"] {
            assert!(err.contains(&format!("b.toml: {key}:")), "{key} in {err}");
        }
    }
}

//! `qilin-mirror` configuration: one TOML file loaded through `qilin_market::config` like every
//! other sidecar's, every key with a default, unknown keys refused, every problem reported at once
//! with its key. The `[nats]` table is qilin-nats's (`crate::nats::config::NatsConfig`: servers,
//! TLS, authentication, timeouts), so a mirror connects exactly as the publisher does.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use qilin_market::config::ConfigError;

use crate::nats::config::{self as nats_config, NatsConfig};

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Instance name: status file `<segment>.sidecars/<name>.json`.
    pub name: String,
    /// The feed mirrored: its name (the stream's subjects are `qilin.<feed>.…` and the stream
    /// `QILIN_<FEED>` unless `subject_prefix` / `stream` say otherwise). Also the local segment's
    /// feed name.
    pub feed: String,
    /// The local segment the mirror writes (readers on this host open it).
    pub segment: PathBuf,
    /// Ring capacity of the local segment in slots (a power of two); need not be the feed's.
    pub ring_slots: u64,
    /// Instrument capacity of the local segment: at least the feed's directory length.
    pub instrument_capacity: u32,
    /// Product table for the directory's multiplier and price tick (the feed's `instruments_file`);
    /// empty: `config/instruments.toml` if it exists, else unknown (multiplier 0, tick NaN).
    pub instruments_file: PathBuf,
    /// Where a fresh mirror (no segment yet) starts.
    pub start: StartAt,
    /// How often the status file is rewritten.
    pub status_interval_ms: u64,
    /// How often the segment's heartbeat is refreshed (readers judge the mirror alive by it).
    pub heartbeat_interval_ms: u64,
    /// After this long without a message, the mirror asks the stream's leader whether it holds
    /// more than was delivered; if so the consumer is stalled (its server stopped) and is recreated.
    /// Also the client's ping interval, so a stalled server it is connected to is left for another
    /// node after 2-3 of them.
    pub stall_check_ms: u64,
    /// `[stream]`: which JetStream stream.
    pub stream: StreamConfig,
    /// `[nats]`: connection, exactly as qilin-nats's.
    pub nats: NatsConfig,
}

/// Where a fresh mirror starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    /// At the stream's last message, after filling every instrument's last value from the
    /// stream: a strategy has the book at once; the ring starts empty (earlier sequences read as
    /// a gap).
    #[default]
    Last,
    /// At the stream's first message: the whole retained stream goes through the ring (and the
    /// last values), as if the mirror had run from the start.
    First,
}

/// `[stream]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Stream name; empty: `QILIN_<FEED>` (upper case, `-` → `_`), as qilin-nats names it.
    pub name: String,
    /// Subject prefix; empty: `qilin.<feed>`, as qilin-nats.
    pub subject_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "mirror".into(),
            feed: "qilin".into(),
            segment: PathBuf::from("/dev/shm/qilin"),
            ring_slots: 1 << 20,
            instrument_capacity: 4096,
            instruments_file: PathBuf::new(),
            start: StartAt::Last,
            status_interval_ms: 250,
            heartbeat_interval_ms: 10,
            stall_check_ms: 2000,
            stream: StreamConfig::default(),
            nats: NatsConfig::default(),
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
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        qilin_market::config::load(path)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        qilin_market::config::parse(text, file)
    }

    /// Checks every value, reporting all problems at once (the `[nats]` table by qilin-nats's rules).
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut bad = |key: &str, reason: String| problems.push((key.into(), reason));
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            bad("name", format!("{:?}: one or more of [A-Za-z0-9_-]", self.name));
        }
        if self.feed.is_empty() || self.feed.len() > 31 || !self.feed.is_ascii() {
            bad("feed", format!("{:?}: ASCII, 1 to 31 characters", self.feed));
        }
        if let Err(e) = qilin_shm::Geometry::new(self.ring_slots, self.instrument_capacity) {
            bad("ring_slots", e.to_string());
        }
        for (key, value, min, max) in [
            ("status_interval_ms", self.status_interval_ms, 10, 60_000),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms, 1, 1000),
            ("stall_check_ms", self.stall_check_ms, 100, 600_000),
        ] {
            if !(min..=max).contains(&value) {
                bad(key, format!("{value}: must be between {min} and {max}"));
            }
        }
        if !self.stream.name.is_empty()
            && !self.stream.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            bad("stream.name", format!("{:?}: [A-Za-z0-9_-] only", self.stream.name));
        }
        if let Err(e) = self.as_nats().validate(file) {
            problems.extend(e.problems);
        }
        ConfigError::check(file, problems)
    }

    /// A qilin-nats config with this one's connection, stream and prefix: its connect options,
    /// validation, subject prefix and stream name are the mirror's, one definition for both.
    pub fn as_nats(&self) -> nats_config::Config {
        let mut c = nats_config::Config { name: self.name.clone(), nats: self.nats.clone(), ..Default::default() };
        c.nats.subject_prefix = self.stream.subject_prefix.clone();
        c.jetstream.stream = self.stream.name.clone();
        c
    }

    /// The subject prefix of the feed's messages.
    pub fn subject_prefix(&self) -> String {
        self.as_nats().subject_prefix(&self.feed)
    }

    /// The stream name.
    pub fn stream_name(&self) -> String {
        self.as_nats().stream_name(&self.feed)
    }

    /// The local segment's capacities and name.
    pub fn segment_options(&self) -> qilin_shm::SegmentOptions {
        qilin_shm::SegmentOptions {
            feed_name: self.feed.clone(),
            ring_slots: self.ring_slots,
            instrument_capacity: self.instrument_capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_the_defaults_and_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mirror.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.stream_name(), "QILIN_QILIN");
        assert_eq!(c.subject_prefix(), "qilin.qilin");
        assert_eq!(c.ring_slots, Config::default().ring_slots);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let e = Config::parse(
            "name = \"a b\"\nring_slots = 1000\nstatus_interval_ms = 1\n[stream]\nname = \"x.y\"\n\
             [nats]\nurls = []\n",
            "m.toml",
        )
        .unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|(k, _)| k.as_str()).collect();
        for key in ["name", "ring_slots", "status_interval_ms", "stream.name", "nats.urls"] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert!(Config::parse("bogus = 1\n", "m.toml").is_err(), "unknown keys are refused");
    }
}

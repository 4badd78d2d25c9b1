//! `[metrics]`: where the endpoints listen, when the core, the ticks and a sidecar count as stale,
//! and the trading sessions (China time) during which ticks must flow. Every key has a default;
//! unknown keys are refused; [`MetricsConfig::problems`] reports every bad value with its key.

use std::{net::SocketAddr, path::PathBuf};

use qilin_market::Calendar;
use qilin_shm::Exchange;
use serde::Deserialize;

pub use qilin_market::config::ConfigError;

use super::calendar::{Schedule, Segment, parse_day, parse_segment};

/// `[metrics]`: the Prometheus `/metrics` endpoint and the `/healthz` and `/readyz` probes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the endpoints at all (the embedding program starts [`MetricsServer`] only when set).
    ///
    /// [`MetricsServer`]: super::MetricsServer
    pub enabled: bool,
    /// `host:port` of the HTTP listener (loopback by default: put a proxy or firewall rule in
    /// front before exposing it).
    pub listen: String,
    /// `/readyz` fails when the core's heartbeat is older than this (the core beats every ~1 ms).
    pub heartbeat_stale_ms: u64,
    /// `/readyz` fails when, inside a trading session of an exchange the feed carries, no tick was
    /// published for this long. Checked only once the session has been open this long.
    pub ticks_stale_ms: u64,
    /// A sidecar whose status file is older than this counts as not running (`qilinctl status`
    /// uses the same 2 s).
    pub sidecar_stale_ms: u64,
    /// Trading sessions in China time (UTC+8). Outside them no tick is expected.
    pub sessions: Vec<SessionConfig>,
    /// The exchanges' trading calendar (docs/CALENDAR.md): on its holidays no session starts, and
    /// on the evenings it lists without a night session no night segment starts. Default:
    /// `config/calendar` when it exists, else every weekday trades.
    pub calendar_dir: Option<PathBuf>,
    /// The managed keys' schedule that `qilinctl keys rotate --schedule-out FILE` writes (no key
    /// material): exported as each key's next due date and whether it is overdue, and the file's
    /// age (a rotation timer that stopped). Unset: no key metrics.
    pub keys_schedule: Option<PathBuf>,
}

/// One `[[metrics.sessions]]` entry: segments of trading time for some exchanges on some days.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// CTP ExchangeIDs (`SHFE`, `INE`, `DCE`, `CZCE`, `CFFEX`, `GFEX`); empty: every exchange.
    #[serde(default)]
    pub exchanges: Vec<String>,
    /// Days the segments start on: `mon` … `sun`.
    #[serde(default = "weekdays")]
    pub days: Vec<String>,
    /// `HH:MM-HH:MM` segments, China time; an end at or before the start crosses midnight
    /// (`21:00-02:30`); `00:00-24:00` is the whole day.
    pub times: Vec<String>,
}

fn weekdays() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"].map(String::from).to_vec()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Default for MetricsConfig {
    /// The sessions in which every listed product of the exchange trades (night sessions of
    /// some SHFE/INE products run on to 01:00 or 02:30; add them where the feed carries them).
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            heartbeat_stale_ms: 2000,
            ticks_stale_ms: 10_000,
            sidecar_stale_ms: 2000,
            sessions: vec![
                SessionConfig {
                    exchanges: strings(&["SHFE", "INE", "DCE", "CZCE", "GFEX"]),
                    days: weekdays(),
                    times: strings(&["09:00-10:15", "10:30-11:30", "13:30-15:00"]),
                },
                SessionConfig {
                    exchanges: strings(&["SHFE", "INE", "DCE", "CZCE"]),
                    days: weekdays(),
                    times: strings(&["21:00-23:00"]),
                },
                SessionConfig {
                    exchanges: strings(&["CFFEX"]),
                    days: weekdays(),
                    times: strings(&["09:30-11:30", "13:00-15:00"]),
                },
            ],
            calendar_dir: None,
            keys_schedule: None,
        }
    }
}

impl MetricsConfig {
    /// Checks every value; problems are reported with keys under `section` (`metrics` where it
    /// is embedded as `[metrics]`).
    pub fn validate(&self, file: &str, section: &str) -> Result<(), ConfigError> {
        ConfigError::check(file, self.problems(section))
    }

    /// Every problem as `(key, reason)`, keys under `section`: for a caller that gathers the
    /// problems of a whole file into its own error.
    pub fn problems(&self, section: &str) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let key = |k: &str| if section.is_empty() { k.to_string() } else { format!("{section}.{k}") };
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push((key("listen"), format!("{:?}: not an IP address and port (127.0.0.1:9464)", self.listen)));
        }
        for (name, value, min, max) in [
            ("heartbeat_stale_ms", self.heartbeat_stale_ms, 10, 600_000),
            ("ticks_stale_ms", self.ticks_stale_ms, 100, 3_600_000),
            ("sidecar_stale_ms", self.sidecar_stale_ms, 100, 600_000),
        ] {
            if !(min..=max).contains(&value) {
                problems.push((key(name), format!("{value}: must be between {min} and {max}")));
            }
        }
        for (i, session) in self.sessions.iter().enumerate() {
            let at = |k: &str| key(&format!("sessions[{i}].{k}"));
            for id in &session.exchanges {
                if Exchange::from_id(id).is_none() {
                    problems.push((at("exchanges"), format!("{id:?}: not one of SHFE, INE, DCE, CZCE, CFFEX, GFEX")));
                }
            }
            if session.days.is_empty() {
                problems.push((at("days"), "empty: give at least one of mon … sun".into()));
            }
            for day in &session.days {
                if parse_day(day).is_none() {
                    problems.push((at("days"), format!("{day:?}: one of mon, tue, wed, thu, fri, sat, sun")));
                }
            }
            if session.times.is_empty() {
                problems.push((at("times"), "empty: give at least one \"HH:MM-HH:MM\" segment".into()));
            }
            for time in &session.times {
                if let Err(reason) = parse_segment(time) {
                    problems.push((at("times"), format!("{time:?}: {reason}")));
                }
            }
        }
        if let Err(e) = Calendar::find(self.calendar_dir.as_deref()) {
            problems.push((key("calendar_dir"), e.to_string()));
        }
        problems
    }

    /// The listen address (validated by [`problems`](Self::problems)).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| ConfigError {
            file: "<metrics>".into(),
            problems: vec![("listen".into(), format!("{:?}: not an IP address and port", self.listen))],
        })
    }

    /// The sessions in a form that answers "is this exchange trading now" (invalid entries, which
    /// [`problems`](Self::problems) reports, are left out).
    pub fn schedule(&self) -> Schedule {
        let mut segments = Vec::new();
        for session in &self.sessions {
            let exchanges = if session.exchanges.is_empty() {
                Exchange::ALL.to_vec()
            } else {
                session.exchanges.iter().filter_map(|id| Exchange::from_id(id)).collect()
            };
            let days = session.days.iter().filter_map(|d| parse_day(d)).fold(0u8, |mask, d| mask | 1 << d);
            for time in &session.times {
                if let Ok((start_min, end_min)) = parse_segment(time) {
                    segments.push(Segment { exchanges: exchanges.clone(), days, start_min, end_min });
                }
            }
        }
        // Checked by `problems`; a calendar that became unreadable since falls back to weekdays.
        let calendar = Calendar::find(self.calendar_dir.as_deref()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "metrics: the trading calendar cannot be read; every weekday counts as trading");
            Calendar::weekdays_only()
        });
        Schedule::new(segments, calendar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        metrics: MetricsConfig,
    }

    #[test]
    fn defaults_are_valid_and_partial_sections_keep_them() {
        MetricsConfig::default().validate("<defaults>", "metrics").unwrap();
        let file: File = toml::from_str("[metrics]\nheartbeat_stale_ms = 500\n").unwrap();
        assert_eq!(file.metrics.heartbeat_stale_ms, 500);
        assert_eq!(file.metrics.listen, "127.0.0.1:9464");
        assert_eq!(file.metrics.sessions, MetricsConfig::default().sessions);
    }

    #[test]
    fn sessions_parse_with_default_days() {
        let text = "[metrics]\n[[metrics.sessions]]\ntimes = [\"00:00-24:00\"]\n";
        let file: File = toml::from_str(text).unwrap();
        assert_eq!(file.metrics.sessions.len(), 1);
        assert_eq!(file.metrics.sessions[0].days, weekdays());
        assert!(file.metrics.sessions[0].exchanges.is_empty());
        file.metrics.validate("f.toml", "metrics").unwrap();
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
            [metrics]
            listen = "localhost"
            heartbeat_stale_ms = 0
            ticks_stale_ms = 1
            sidecar_stale_ms = 0
            calendar_dir = "/nonexistent/calendar"
            [[metrics.sessions]]
            exchanges = ["SHFE", "NYMEX"]
            days = ["mon", "monday"]
            times = ["09:00-10:15", "9-10", "10:00-10:00"]
            [[metrics.sessions]]
            days = []
            times = []
        "#;
        let file: File = toml::from_str(text).unwrap();
        let err = file.metrics.validate("recorder.toml", "metrics").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "metrics.listen",
            "metrics.heartbeat_stale_ms",
            "metrics.ticks_stale_ms",
            "metrics.sidecar_stale_ms",
            "metrics.calendar_dir",
            "metrics.sessions[0].exchanges",
            "metrics.sessions[0].days",
            "metrics.sessions[0].times",
            "metrics.sessions[1].days",
            "metrics.sessions[1].times",
        ] {
            assert!(keys.contains(&key), "{key} missing from {err}");
        }
        let text = err.to_string();
        assert!(text.starts_with("recorder.toml has 11 problem(s):"), "{text}");
        assert!(text.contains("\"NYMEX\""), "{text}");
        assert!(text.contains("\"10:00-10:00\""), "{text}");
        assert!(text.contains("\"9-10\""), "{text}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<File>("[metrics]\nlisten_addr = \"x\"\n").is_err());
        assert!(toml::from_str::<File>("[metrics]\n[[metrics.sessions]]\ntimes = []\nexchange = []\n").is_err());
    }
}

//! `qilinctl keys render-all --plan FILE`: every rendering a site needs after a rotation, listed
//! once, so the rotation timer's unit (config/systemd/qilin-keys-rotate.service) re-renders what the
//! running processes read: the nats-server users and qilin-nats' credentials, the recorder's
//! signing key, … Without it a scheduled rotation changes the store and nothing that runs, and a
//! version whose grace has ended stays a NATS user until someone renders by hand.
//!
//! ```toml
//! [[nats]]                      # one `keys render-nats` each
//! key = "nats-token"
//! server_include = "/etc/nats/qilin-users.conf"
//! client_file = "/var/lib/qilin-nats/nats-credentials.env"
//! reload_pid_file = "/run/nats-server.pid"   # optional
//! server_owner = "nats"                      # optional (root)
//! client_owner = "qilin-nats"                # optional (root)
//! user_prefix = "qilin-nats"                 # optional
//!
//! [[key]]                       # one `keys render-key` each
//! key = "audit-signing"
//! out = "/var/lib/qilin-recorder/audit-signing.key"
//! owner = "qilin-recorder"                   # optional (root)
//! ```
//!
//! Each entry is rendered and audited as its own command would; one that fails does not stop the
//! others, and the exit code is the first failure's.

use std::path::PathBuf;

use qilin_market::config::{ConfigError, Validate};
use serde::Deserialize;

/// The default NATS user prefix (`render-nats --user-prefix`).
pub const DEFAULT_USER_PREFIX: &str = "qilin-nats";

/// A render plan file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// `keys render-nats` entries.
    #[serde(default)]
    pub nats: Vec<NatsEntry>,
    /// `keys render-key` entries.
    #[serde(default)]
    pub key: Vec<KeyFileEntry>,
}

/// One `keys render-nats`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsEntry {
    pub key: String,
    pub server_include: PathBuf,
    pub client_file: PathBuf,
    pub reload_pid_file: Option<PathBuf>,
    pub server_owner: Option<String>,
    pub client_owner: Option<String>,
    #[serde(default = "default_prefix")]
    pub user_prefix: String,
}

/// One `keys render-key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFileEntry {
    pub key: String,
    pub out: PathBuf,
    pub owner: Option<String>,
    /// Every version in force (`render-key --in-force`): for readers (the sidecars'
    /// `journal_key_files`), not for the recorder's key files.
    #[serde(default)]
    pub in_force: bool,
}

fn default_prefix() -> String {
    DEFAULT_USER_PREFIX.to_owned()
}

impl Validate for Plan {
    fn check(&self, file: &str) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.nats.is_empty() && self.key.is_empty() {
            problems.push(("(file)".into(), "renders nothing: add a [[nats]] or [[key]] entry".into()));
        }
        let mut outputs: Vec<(&PathBuf, String)> = Vec::new();
        for (i, n) in self.nats.iter().enumerate() {
            if n.key.is_empty() {
                problems.push((format!("nats[{i}].key"), "empty".into()));
            }
            if n.user_prefix.is_empty() {
                problems.push((format!("nats[{i}].user_prefix"), "empty".into()));
            }
            outputs.push((&n.server_include, format!("nats[{i}].server_include")));
            outputs.push((&n.client_file, format!("nats[{i}].client_file")));
        }
        for (i, k) in self.key.iter().enumerate() {
            if k.key.is_empty() {
                problems.push((format!("key[{i}].key"), "empty".into()));
            }
            outputs.push((&k.out, format!("key[{i}].out")));
        }
        for (i, (path, name)) in outputs.iter().enumerate() {
            if path.as_os_str().is_empty() {
                problems.push((name.clone(), "empty path".into()));
            } else if let Some((_, first)) = outputs[..i].iter().find(|(p, _)| p == path) {
                problems.push((name.clone(), format!("{} is also {first}: one file, two renderings", path.display())));
            }
        }
        ConfigError::check(file, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_parses_with_its_defaults() {
        let text = r#"
            [[nats]]
            key = "nats-token"
            server_include = "/etc/nats/u.conf"
            client_file = "/var/lib/qilin-nats/c.env"
            [[key]]
            key = "audit-signing"
            out = "/var/lib/qilin-recorder/a.key"
            owner = "qilin-recorder"
        "#;
        let plan: Plan = qilin_market::config::parse(text, "p.toml").unwrap();
        assert_eq!(plan.nats[0].user_prefix, DEFAULT_USER_PREFIX);
        assert_eq!(plan.nats[0].reload_pid_file, None);
        assert_eq!(plan.key[0].owner.as_deref(), Some("qilin-recorder"));
    }

    #[test]
    fn the_example_plan_is_valid() {
        let text = include_str!("../../../config/keys-render.example.toml");
        let plan: Plan = qilin_market::config::parse(text, "keys-render.example.toml").unwrap();
        assert_eq!((plan.nats.len(), plan.key.len()), (1, 3));
        assert_eq!(plan.key.iter().map(|k| k.in_force).collect::<Vec<_>>(), [false, false, true]);
    }

    #[test]
    fn problems_are_named_by_file_key_and_line() {
        let err = |text: &str| qilin_market::config::parse::<Plan>(text, "p.toml").unwrap_err().to_string();
        assert!(err("").contains("p.toml: (file): renders nothing"), "{}", err(""));
        let typo = "[[key]]\nkey = \"a\"\nout = \"/x\"\n[[nat]]\nkey = \"b\"\n";
        assert!(err(typo).contains("p.toml: line 4"), "{}", err(typo));
        let missing = "[[key]]\nkey = \"a\"\n";
        assert!(err(missing).contains("missing field `out`"), "{}", err(missing));
        let twice = "[[key]]\nkey = \"a\"\nout = \"/x\"\n[[key]]\nkey = \"\"\nout = \"/x\"\n";
        let e = err(twice);
        assert!(e.contains("key[1].key: empty") && e.contains("key[1].out: /x is also key[0].out"), "{e}");
    }
}

//! The keys qilin-feed reads as secrets or secret-adjacent settings, which profile requires which,
//! and the format each must have. `config/.env.example` documents the same table for operators;
//! a unit test keeps the two in step.

use std::fmt;

/// Which deployment a set of secrets is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The built-in simulator: no broker, so no CTP credential is required; anything given is still
    /// checked for its format.
    Sim,
    /// Real CTP sessions: primary and backup accounts required, files private, NATS over TLS.
    Live,
}

impl Profile {
    /// `sim` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Sim => "sim",
            Profile::Live => "live",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    /// `sim` or `live` (command lines take it through this).
    fn from_str(text: &str) -> Result<Profile, String> {
        match text {
            "sim" => Ok(Profile::Sim),
            "live" => Ok(Profile::Live),
            _ => Err(format!("{text:?} is not a profile: sim or live")),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a key must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Optional in every profile.
    Optional,
    /// Required in `live`, optional in `sim`.
    Live,
}

/// The format a value must have. Checks never quote the value in their reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// 1 to `max` printable ASCII characters without spaces (CTP `char[max+1]` fields).
    Id {
        /// Longest accepted length.
        max: usize,
    },
    /// 1 to `max` characters, no control characters (CTP password fields).
    Text {
        /// Longest accepted length.
        max: usize,
    },
    /// Comma-separated `tcp://host:port` CTP front addresses.
    Fronts,
    /// Comma-separated `nats://` / `tls://` / `ws://` / `wss://` server URLs.
    NatsUrls,
    /// An NATS user nkey seed: 58 base32 characters starting with `SU`.
    NkeySeed,
    /// A path to an existing file (NATS `.creds`).
    FilePath,
    /// A bearer token: at least `min` printable ASCII characters without spaces.
    Token {
        /// Shortest accepted length.
        min: usize,
    },
}

/// One key of the schema.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// Variable / file name.
    pub name: &'static str,
    /// When it is required.
    pub need: Need,
    /// Its format.
    pub format: Format,
}

const fn key(name: &'static str, need: Need, format: Format) -> KeySpec {
    KeySpec { name, need, format }
}

/// Prefix of the rate-limit tokens: `RATE_LIMIT_TOKEN`, `RATE_LIMIT_TOKEN_<NAME>` (one per client).
pub const RATE_LIMIT_PREFIX: &str = "RATE_LIMIT_TOKEN";
/// Format of every rate-limit token.
pub const RATE_LIMIT_FORMAT: Format = Format::Token { min: 16 };

/// The two CTP accounts, in the order failover uses them.
pub const ACCOUNTS: [&str; 2] = ["PRIMARY", "BACKUP"];

/// Every fixed key. `RATE_LIMIT_TOKEN*` keys are matched by [`spec`] through their prefix.
///
/// Lengths are CTP's field sizes less the terminating NUL (`TThostFtdcBrokerIDType` is `char[11]`,
/// `UserID` `char[16]`, `Password` `char[41]`, `AppID` `char[33]`, `AuthCode` `char[17]`).
/// `APP_ID`/`AUTH_CODE` are optional even in `live`: the market-data API logs in without terminal
/// authentication and only brokers that demand it issue them, but they come as a pair (one without
/// the other is reported). `QILIN_MASTER_KEY` is read by the key store (managed keys) and checked
/// here so a file written today stays valid when that lands.
pub const KEYS: &[KeySpec] = &[
    key("CTP_PRIMARY_BROKER_ID", Need::Live, Format::Id { max: 10 }),
    key("CTP_PRIMARY_USER_ID", Need::Live, Format::Id { max: 15 }),
    key("CTP_PRIMARY_PASSWORD", Need::Live, Format::Text { max: 40 }),
    key("CTP_PRIMARY_MD_FRONTS", Need::Live, Format::Fronts),
    key("CTP_PRIMARY_APP_ID", Need::Optional, Format::Id { max: 32 }),
    key("CTP_PRIMARY_AUTH_CODE", Need::Optional, Format::Id { max: 16 }),
    key("CTP_BACKUP_BROKER_ID", Need::Live, Format::Id { max: 10 }),
    key("CTP_BACKUP_USER_ID", Need::Live, Format::Id { max: 15 }),
    key("CTP_BACKUP_PASSWORD", Need::Live, Format::Text { max: 40 }),
    key("CTP_BACKUP_MD_FRONTS", Need::Live, Format::Fronts),
    key("CTP_BACKUP_APP_ID", Need::Optional, Format::Id { max: 32 }),
    key("CTP_BACKUP_AUTH_CODE", Need::Optional, Format::Id { max: 16 }),
    key("NATS_URL", Need::Optional, Format::NatsUrls),
    key("NATS_USER", Need::Optional, Format::Id { max: 256 }),
    key("NATS_PASSWORD", Need::Optional, Format::Text { max: 1024 }),
    key("NATS_TOKEN", Need::Optional, Format::Token { min: 16 }),
    key("NATS_NKEY_SEED", Need::Optional, Format::NkeySeed),
    key("NATS_CREDS_FILE", Need::Optional, Format::FilePath),
    key("QILIN_MASTER_KEY", Need::Optional, Format::Token { min: 32 }),
];

/// Prefixes that belong to us: a key with one of these that is not in the schema is a typo
/// (`CTP_PRIMARY_PASWORD`) and is reported, from every source.
pub const OWN_PREFIXES: &[&str] = &["CTP_", "NATS_", "QILIN_MASTER"];

/// The spec of `name`, if it is one of ours.
pub fn spec(name: &str) -> Option<KeySpec> {
    if let Some(found) = KEYS.iter().find(|k| k.name == name) {
        return Some(*found);
    }
    let rest = name.strip_prefix(RATE_LIMIT_PREFIX)?;
    let suffix_ok = rest.is_empty()
        || rest.strip_prefix('_').is_some_and(|s| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
    suffix_ok.then_some(KeySpec { name: RATE_LIMIT_PREFIX, need: Need::Optional, format: RATE_LIMIT_FORMAT })
}

/// Whether `name` looks like one of ours (see [`OWN_PREFIXES`]).
pub fn has_own_prefix(name: &str) -> bool {
    OWN_PREFIXES.iter().any(|p| name.starts_with(p)) || name.starts_with(RATE_LIMIT_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_tokens_match_by_prefix_only_with_a_clean_suffix() {
        assert!(spec("RATE_LIMIT_TOKEN").is_some());
        assert!(spec("RATE_LIMIT_TOKEN_GATEWAY_2").is_some());
        assert!(spec("RATE_LIMIT_TOKENS").is_none());
        assert!(spec("RATE_LIMIT_TOKEN_").is_none());
        assert!(spec("CTP_PRIMARY_PASWORD").is_none());
        assert!(has_own_prefix("CTP_PRIMARY_PASWORD"));
        assert!(!has_own_prefix("PATH"));
    }

    #[test]
    fn env_example_documents_every_key() {
        let example = include_str!("../../../config/.env.example");
        for k in KEYS {
            assert!(example.contains(&format!("{}=", k.name)), "config/.env.example lacks {}", k.name);
        }
        assert!(example.contains("RATE_LIMIT_TOKEN"));
    }
}

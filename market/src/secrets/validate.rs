//! The checks: presence per profile, formats, pairs that belong together, backup ≠ primary, file
//! permissions and NATS TLS in `live`. Every reason is written here and none quotes a value.

use std::{net::IpAddr, os::unix::fs::PermissionsExt, path::Path};

use secrecy::ExposeSecret;

use super::{
    Loaded, Problem, Profile, Source,
    schema::{self, Format, KEYS, Need},
};

/// Every problem of `loaded` for `profile`, in a stable order: reading problems, file permissions,
/// then each key in schema order, then the checks across keys.
pub fn validate(loaded: &Loaded, profile: Profile) -> Vec<Problem> {
    let mut problems = loaded.problems.clone();
    let live = profile == Profile::Live;
    if live
        && let (Source::File(path), Some(mode)) = (&loaded.source, loaded.file_mode)
        && let Some(reason) = exposed(mode)
    {
        problems.push(Problem::new(path.display().to_string(), reason));
    }
    // Per-key secret files that are group/world-readable were refused when read (secrets::file)
    // and are already among the problems; they are not reported missing as well.
    let refused: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
    for spec in KEYS {
        match loaded.get(spec.name) {
            None if live && spec.need == Need::Live && !refused.iter().any(|k| k == spec.name) => {
                problems.push(Problem::new(spec.name, "missing (required in the live profile)"));
            }
            None => {}
            Some(value) => {
                if let Err(reason) = check_format(spec.format, value.expose_secret(), profile) {
                    problems.push(Problem::new(spec.name, reason));
                }
            }
        }
    }
    for (key, value) in &loaded.values {
        if key.starts_with(schema::RATE_LIMIT_PREFIX)
            && let Err(reason) = check_format(schema::RATE_LIMIT_FORMAT, value.secret.expose_secret(), profile)
        {
            problems.push(Problem::new(key, reason));
        }
    }
    across(loaded, profile, &mut problems);
    problems
}

/// `Some(reason)` when `mode` lets the group or others read the file.
fn exposed(mode: u32) -> Option<String> {
    (mode & 0o044 != 0).then(|| format!("group/world-readable (mode {mode:04o}); the live profile requires chmod 0600"))
}

fn across(loaded: &Loaded, profile: Profile, problems: &mut Vec<Problem>) {
    let has = |k: &str| loaded.values.contains_key(k);
    let same = |a: &str, b: &str| match (loaded.get(a), loaded.get(b)) {
        (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
        _ => false,
    };
    for account in schema::ACCOUNTS {
        let app = format!("CTP_{account}_APP_ID");
        let auth = format!("CTP_{account}_AUTH_CODE");
        match (has(&app), has(&auth)) {
            (true, false) => problems.push(Problem::new(&auth, format!("missing: {app} is set, they come as a pair"))),
            (false, true) => problems.push(Problem::new(&app, format!("missing: {auth} is set, they come as a pair"))),
            _ => {}
        }
    }
    if same("CTP_PRIMARY_BROKER_ID", "CTP_BACKUP_BROKER_ID") && same("CTP_PRIMARY_USER_ID", "CTP_BACKUP_USER_ID") {
        problems.push(Problem::new(
            "CTP_BACKUP_USER_ID",
            "the backup account is the primary one (same broker and user): failover would gain nothing",
        ));
    }
    match (has("NATS_USER"), has("NATS_PASSWORD")) {
        (true, false) => problems.push(Problem::new("NATS_PASSWORD", "missing: NATS_USER is set without a password")),
        (false, true) => problems.push(Problem::new("NATS_USER", "missing: NATS_PASSWORD is set without a user")),
        _ => {}
    }
    let methods: Vec<&str> =
        ["NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY_SEED", "NATS_CREDS_FILE"].into_iter().filter(|k| has(k)).collect();
    if methods.len() > 1 {
        problems.push(Problem::new(
            methods[1],
            format!("more than one NATS authentication ({}): give exactly one", methods.join(", ")),
        ));
    }
    if profile == Profile::Live
        && let Some(path) = loaded.get("NATS_CREDS_FILE")
        && let Ok(meta) = std::fs::metadata(path.expose_secret())
        && let Some(reason) = exposed(meta.permissions().mode() & 0o777)
    {
        problems.push(Problem::new("NATS_CREDS_FILE", format!("the named .creds file is {reason}")));
    }
}

/// Checks `value` against `format`; the reason never contains the value.
pub fn check_format(format: Format, value: &str, profile: Profile) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty".into());
    }
    match format {
        Format::Id { max } => {
            if !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("contains a space, control or non-ASCII character".into());
            }
            if value.len() > max {
                return Err(format!("longer than {max} characters"));
            }
        }
        Format::Text { max } => {
            if value.chars().any(char::is_control) {
                return Err("contains a control character".into());
            }
            if value.chars().count() > max {
                return Err(format!("longer than {max} characters"));
            }
        }
        Format::Token { min } => {
            if !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("contains a space, control or non-ASCII character".into());
            }
            if value.len() < min {
                return Err(format!("shorter than {min} characters"));
            }
        }
        Format::NkeySeed => {
            let base32 = value.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
            if !(value.len() == 58 && value.starts_with("SU") && base32) {
                return Err("not a user nkey seed (58 base32 characters starting with SU)".into());
            }
        }
        Format::FilePath => {
            if !Path::new(value).is_file() {
                return Err("names no existing file".into());
            }
        }
        Format::Fronts => {
            for (i, entry) in value.split(',').enumerate() {
                front(entry.trim()).map_err(|reason| format!("front {}: {reason}", i + 1))?;
            }
        }
        Format::NatsUrls => {
            for (i, entry) in value.split(',').enumerate() {
                let in_clear = nats_plaintext_off_host(entry.trim(), false)
                    .map_err(|reason| format!("server {}: {reason}", i + 1))?;
                if profile == Profile::Live && in_clear {
                    return Err(format!(
                        "server {}: not TLS for a non-loopback host (the live profile requires tls://)",
                        i + 1
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `host:port` with a port 1–65535 and a host that is a name, IPv4 or `[IPv6]`.
fn host_port(rest: &str, need_port: bool) -> Result<&str, &'static str> {
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or("unclosed [ in an IPv6 address")?;
        inside.parse::<std::net::Ipv6Addr>().map_err(|_| "not an IPv6 address inside [ ]")?;
        (inside, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let name_ok = host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if !name_ok || host.starts_with(['-', '.']) {
        return Err("the host is not a host name or an IP address");
    }
    match port {
        Some(p) => match p.parse::<u16>() {
            Ok(1..) => {}
            _ => return Err("the port is not a number 1-65535"),
        },
        None if need_port => return Err("no port (tcp://host:port)"),
        None => {}
    }
    Ok(host)
}

/// A CTP front: `tcp://host:port`, nothing after the port.
fn front(entry: &str) -> Result<(), &'static str> {
    if entry.is_empty() {
        return Err("empty (a stray comma?)");
    }
    let rest = entry.strip_prefix("tcp://").ok_or("not tcp://host:port (the scheme must be tcp://)")?;
    if rest.contains(['/', '@', '?', '#']) {
        return Err("not tcp://host:port (a path, user or query after the address)");
    }
    host_port(rest, true).map(drop)
}

/// A NATS server URL: `(is TLS, host)`. Credentials in the URL are allowed and skipped.
fn nats_url(entry: &str) -> Result<(bool, &str), &'static str> {
    if entry.is_empty() {
        return Err("empty (a stray comma?)");
    }
    let (scheme, rest) = entry.split_once("://").ok_or("not scheme://host[:port]")?;
    let tls = match scheme {
        "tls" | "wss" => true,
        "nats" | "ws" => false,
        _ => return Err("unknown scheme (nats://, tls://, ws:// or wss://)"),
    };
    let rest = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hostport)| hostport);
    Ok((tls, host_port(rest, false)?))
}

/// Whether a NATS client given `url` would talk to another host without TLS (a `nats://` or
/// `ws://` URL whose host is not loopback): credentials sent there cross the network in clear.
/// `Err` names what is wrong with the URL. `tls_forced`: the client requires TLS whatever the scheme.
pub fn nats_plaintext_off_host(url: &str, tls_forced: bool) -> Result<bool, &'static str> {
    let (tls, host) = nats_url(url)?;
    Ok(!tls && !tls_forced && !is_loopback(host))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_and_urls() {
        assert!(front("tcp://180.168.146.187:10211").is_ok());
        assert!(front("tcp://md.example.com:41213").is_ok());
        assert!(front("tcp://[::1]:10211").is_ok());
        for bad in ["", "udp://h:1", "tcp://h", "tcp://h:0", "tcp://h:70000", "tcp://:1", "tcp://h:1/x", "tcp://a b:1"]
        {
            assert!(front(bad).is_err(), "{bad}");
        }
        assert_eq!(nats_url("tls://u:p@nats.example.com:4222"), Ok((true, "nats.example.com")));
        assert_eq!(nats_url("nats://127.0.0.1:4222"), Ok((false, "127.0.0.1")));
        assert_eq!(nats_url("nats://[::1]:4222"), Ok((false, "::1")));
        assert!(nats_url("http://h:1").is_err());
        assert!(is_loopback("::1") && is_loopback("LOCALHOST") && is_loopback("127.3.0.1") && !is_loopback("10.0.0.1"));
        assert_eq!(nats_plaintext_off_host("nats://10.1.2.3:4222", false), Ok(true));
        assert_eq!(nats_plaintext_off_host("nats://10.1.2.3:4222", true), Ok(false));
        assert_eq!(nats_plaintext_off_host("tls://10.1.2.3:4222", false), Ok(false));
        assert_eq!(nats_plaintext_off_host("nats://u:p@127.0.0.1:4222", false), Ok(false));
        assert!(nats_plaintext_off_host("http://x", false).is_err());
    }

    #[test]
    fn nats_tls_only_matters_in_live_and_off_loopback() {
        let urls = Format::NatsUrls;
        assert!(check_format(urls, "nats://10.1.2.3:4222", Profile::Sim).is_ok());
        assert!(check_format(urls, "nats://localhost:4222", Profile::Live).is_ok());
        assert!(
            check_format(urls, "tls://10.1.2.3:4222,nats://10.1.2.4", Profile::Live).unwrap_err().contains("server 2")
        );
    }

    #[test]
    fn reasons_never_quote_the_value() {
        let value = "tcp://SECRETHOST:99999";
        let reason = check_format(Format::Fronts, value, Profile::Live).unwrap_err();
        assert!(!reason.contains("SECRETHOST"), "{reason}");
        let reason = check_format(Format::Id { max: 3 }, "SECRETVALUE", Profile::Live).unwrap_err();
        assert!(!reason.contains("SECRETVALUE") && reason.contains("longer than 3"), "{reason}");
    }
}

//! Masking of secrets in a command line before it is written: [`mask_args`], [`is_secret_key`].

/// What a masked secret is replaced by.
pub const MASK: &str = "***";

/// Words that make a key secret. A key is split into words at every non-alphanumeric character and
/// at lower→upper case changes (`AuthCode` → `auth`, `code`); it is secret when a word, without one
/// plural `s`, ends with one of these (`password`, `NKEY`, `apikey`, `tokens`), or when `auth` is
/// followed by `code`. Over-masking (`monkey`, `--key-id`) is accepted: it only hides a value.
const SECRET_WORDS: [&str; 10] =
    ["password", "passwd", "passphrase", "secret", "token", "key", "seed", "cred", "credential", "authcode"];

/// Whether `key` (a flag like `--nats-token`, or the left side of `KEY=value`) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (prev_lower && c.is_ascii_uppercase());
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    let secret_word = |w: &str| {
        let w = w.strip_suffix('s').unwrap_or(w);
        SECRET_WORDS.iter().any(|s| w.ends_with(s))
    };
    words.iter().any(|w| secret_word(w)) || words.windows(2).any(|p| p[0] == "auth" && p[1] == "code")
}

/// Masks secrets in a command line, argument by argument:
///
/// - `KEY=value` / `--key=value` with a secret key (see [`is_secret_key`]) → `KEY=***`;
/// - a flag with a secret name and no `=` (`--password`, `-token`) masks the next argument unless
///   that one starts with `--` (`--password hunter2` → `--password ***`);
/// - `scheme://user:pass@host…` → `scheme://user:***@host…`, `scheme://token@host` →
///   `scheme://***@host`;
/// - anything else is kept.
///
/// Secrets have no business on a command line (they show in `ps`); this is the second line of
/// defence, not a licence.
pub fn mask_args<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for arg in args.iter().map(AsRef::as_ref) {
        if std::mem::take(&mut mask_next) && !arg.starts_with("--") {
            out.push(MASK.to_owned());
            continue;
        }
        match arg.split_once('=') {
            Some((key, _)) if is_secret_key(key) => out.push(format!("{key}={MASK}")),
            Some((key, value)) => out.push(format!("{key}={}", mask_url(value))),
            None => {
                mask_next = arg.starts_with('-') && is_secret_key(arg);
                out.push(mask_url(arg));
            }
        }
    }
    out
}

/// Masks the user information of a URL (`nats://u:p@h` → `nats://u:***@h`, `nats://t@h` →
/// `nats://***@h`).
fn mask_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://").map(|i| i + 3) else { return s.to_owned() };
    let authority_end = s[scheme_end..].find(['/', '?', '#']).map_or(s.len(), |i| scheme_end + i);
    let Some(at) = s[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else { return s.to_owned() };
    let userinfo = &s[scheme_end..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None => MASK.to_owned(),
    };
    format!("{}{masked}{}", &s[..scheme_end], &s[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_table() {
        let table: &[(&[&str], &[&str])] = &[
            (&["--password", "hunter2", "rb2605"], &["--password", "***", "rb2605"]),
            (&["--password=hunter2"], &["--password=***"]),
            (&["CTP_PRIMARY_PASSWORD=hunter2"], &["CTP_PRIMARY_PASSWORD=***"]),
            (&["CTP_BACKUP_AUTH_CODE=0000000000000000"], &["CTP_BACKUP_AUTH_CODE=***"]),
            (&["AuthCode=abc"], &["AuthCode=***"]),
            (&["NATS_NKEY_SEED=SUAxyz"], &["NATS_NKEY_SEED=***"]),
            (&["--nats-token", "t0k"], &["--nats-token", "***"]),
            (&["--api-key", "k", "--verbose"], &["--api-key", "***", "--verbose"]),
            (
                &["apiKey=k", "passwd=p", "client_secret=s", "creds=c", "RATE_LIMIT_TOKENS=a,b"],
                &["apiKey=***", "passwd=***", "client_secret=***", "creds=***", "RATE_LIMIT_TOKENS=***"],
            ),
            (&["--key-file", "/run/secrets/k"], &["--key-file", "***"]),
            // A secret flag followed by another flag masks nothing (it was a switch).
            (&["--show-token", "--json"], &["--show-token", "--json"]),
            // Not secrets: ids, words that merely contain a secret word, plain flags.
            (
                &["subscribe", "rb2605", "--feed", "qilin", "--segment=/dev/shm/qilin"],
                &["subscribe", "rb2605", "--feed", "qilin", "--segment=/dev/shm/qilin"],
            ),
            (
                &["--passthrough", "x", "keys", "rotate", "--tokenizer=y"],
                &["--passthrough", "x", "keys", "rotate", "--tokenizer=y"],
            ),
            (&["--url", "nats://alice:s3cret@10.0.0.1:4222/x"], &["--url", "nats://alice:***@10.0.0.1:4222/x"]),
            (&["url=tls://T0KEN@host:4222"], &["url=tls://***@host:4222"]),
            (&["http://host/a@b"], &["http://host/a@b"]),
        ];
        for (input, want) in table {
            assert_eq!(mask_args(input), *want, "input {input:?}");
        }
    }
}

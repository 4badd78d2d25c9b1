//! Managed keys as the processes that use them read them, rendered by `qilinctl keys` from the key
//! store (docs/KEYS.md), so that no process but qilinctl needs the master key:
//!
//! - the NATS credentials file `keys render-nats` writes for qilin-nats (`nats.credentials_file`):
//!   a dotenv file with `NATS_USER` and `NATS_PASSWORD` of the active version;
//! - the key file `keys render-key` writes (the recorder's `[[audit_anchor]] key_file`): lines
//!   `version=N` and `key=<64 hex>` of the active version.
//!
//! Read with the same loader and checks as every other secret file; errors name the file and what
//! is wrong, never the value.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString, zeroize::Zeroizing};

use super::{
    Source,
    file::{self, Exposure},
    load,
};

/// The user and password in `path`: private mode (0600/0400), no problem line, both keys present.
pub fn load_nats_credentials(path: &Path) -> Result<(String, SecretString), String> {
    let loaded = load(&Source::File(path.to_owned())).map_err(|e| e.to_string())?;
    if let Some(mode) = loaded.file_mode.filter(|m| m & 0o077 != 0) {
        return Err(format!("secret file {}: group/world-readable (mode {mode:04o}); chmod 0600", path.display()));
    }
    if let Some(problem) = loaded.problems.first() {
        return Err(format!("secret file {}: {problem}", path.display()));
    }
    let value = |key: &str| {
        loaded
            .values
            .get(key)
            .map(|v| v.secret.clone())
            .ok_or_else(|| format!("secret file {}: no {key}", path.display()))
    };
    let user = value("NATS_USER")?.expose_secret().to_owned();
    Ok((user, value("NATS_PASSWORD")?))
}

/// The format line `keys render-key` starts its file with.
pub const KEY_FILE_FORMAT: &str = "# qilin-key/1";

/// The version and the key bytes in a `keys render-key` file: private mode, `version=N` (N ≥ 1)
/// and `key=` 64 hex characters (32 bytes).
pub fn load_key_file(path: &Path) -> Result<(u32, Zeroizing<Vec<u8>>), String> {
    let contents = file::read(path, Exposure::Private).map_err(|e| e.to_string())?;
    let bad = |what: &str| format!("key file {}: {what}", path.display());
    let text = std::str::from_utf8(&contents.bytes).map_err(|_| bad("not UTF-8"))?;
    let (mut version, mut key) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("version", v)) => {
                version = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|&v| v > 0)
                        .ok_or_else(|| bad(&format!("line {}: version is not a number from 1", i + 1)))?,
                )
            }
            Some(("key", hex)) => {
                let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(bad(&format!("line {}: key is not 64 hex characters", i + 1)));
                }
                let bytes: Vec<u8> =
                    (0..32).map(|j| u8::from_str_radix(&hex[2 * j..2 * j + 2], 16).expect("checked hex")).collect();
                key = Some(Zeroizing::new(bytes));
            }
            _ => return Err(bad(&format!("line {}: not `version=` or `key=`", i + 1))),
        }
    }
    match (version, key) {
        (Some(v), Some(k)) => Ok((v, k)),
        (None, _) => Err(bad("no version")),
        (_, None) => Err(bad("no key")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("nats.env");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn reads_the_pair_and_names_what_is_wrong_without_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "NATS_USER=qilin-nats-v3\nNATS_PASSWORD=zq8-secret-zq8\n", 0o600);
        let (user, password) = load_nats_credentials(&path).unwrap();
        assert_eq!((user.as_str(), password.expose_secret()), ("qilin-nats-v3", "zq8-secret-zq8"));

        for (text, mode, expected) in [
            ("NATS_USER=u\nNATS_PASSWORD=zq8-secret-zq8\n", 0o640, "group/world-readable (mode 0640)"),
            ("NATS_USER=u\n", 0o600, "no NATS_PASSWORD"),
            ("NATS_PASSWORD=zq8-secret-zq8\n", 0o600, "no NATS_USER"),
            ("NATS_USER=u\nNATS_PASSWORD=zq8-secret-zq8\nNATS_PASWORD=zq8-secret-zq8\n", 0o600, "NATS_PASWORD"),
        ] {
            let path = write(dir.path(), text, mode);
            let e = load_nats_credentials(&path).unwrap_err();
            assert!(e.contains(&path.display().to_string()) && e.contains(expected), "{e}");
            assert!(!e.contains("zq8-secret"), "{e}");
        }
        let e = load_nats_credentials(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn a_key_file_gives_its_version_and_bytes_and_a_bad_one_is_named_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "00ff".repeat(16);
        let path = write(dir.path(), &format!("{KEY_FILE_FORMAT}\nversion=3\nkey={hex}\n"), 0o600);
        let (version, key) = load_key_file(&path).unwrap();
        assert_eq!((version, key.len(), key[0], key[1]), (3, 32, 0x00, 0xff));
        for (text, mode, expected) in [
            (format!("version=3\nkey={hex}\n"), 0o644, "group/world-readable"),
            (format!("version=0\nkey={hex}\n"), 0o600, "line 1: version is not a number from 1"),
            ("version=3\nkey=00ff\n".to_owned(), 0o600, "line 2: key is not 64 hex characters"),
            (format!("key={hex}\n"), 0o600, "no version"),
            (format!("version=2\nkey={hex}\nextra=1\n"), 0o600, "line 3: not `version=` or `key=`"),
        ] {
            let path = write(dir.path(), &text, mode);
            let e = load_key_file(&path).unwrap_err();
            assert!(e.contains(&path.display().to_string()) && e.contains(expected), "{e}");
            assert!(!e.contains(&hex), "{e}");
        }
    }
}

//! Managed keys as the processes that use them read them, rendered by `qilinctl keys` from the key
//! store (docs/KEYS.md), so that no process but qilinctl needs the master key:
//!
//! - the NATS credentials file `keys render-nats` writes for qilin-nats (`nats.credentials_file`):
//!   a dotenv file with `NATS_USER` and `NATS_PASSWORD` of the active version;
//! - the key file `keys render-key` writes (the recorder's `[[audit_anchor]] key_file`): lines
//!   `version=N` and `key=<64 hex>` of the active version; with `--in-force`, one such pair per
//!   version still in force (active and in grace), for readers of data older versions sealed.
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

/// A key version and its bytes, as a key file holds them.
pub type VersionedKey = (u32, Zeroizing<Vec<u8>>);

/// The version and the key bytes in a `keys render-key` file: private mode, `version=N` (N ≥ 1)
/// and `key=` 64 hex characters (32 bytes). A file of several versions (`render-key --in-force`)
/// is refused: a writer seals with one key.
pub fn load_key_file(path: &Path) -> Result<VersionedKey, String> {
    let mut versions = load_key_file_versions(path)?;
    if versions.len() > 1 {
        return Err(format!(
            "key file {}: holds {} versions (a `render-key --in-force` file, for readers); this takes one \
             (`render-key` without --in-force)",
            path.display(),
            versions.len()
        ));
    }
    Ok(versions.remove(0))
}

/// Every version and its key bytes in a `keys render-key` file: one pair (the lines in any order),
/// or several from `render-key --in-force` (each `version=` line followed by its `key=` line).
pub fn load_key_file_versions(path: &Path) -> Result<Vec<VersionedKey>, String> {
    let contents = file::read(path, Exposure::Private).map_err(|e| e.to_string())?;
    let bad = |what: &str| format!("key file {}: {what}", path.display());
    let text = std::str::from_utf8(&contents.bytes).map_err(|_| bad("not UTF-8"))?;
    // (line number, version) and (line number, key), in file order.
    let (mut versions, mut keys) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("version", v)) => versions.push((
                i + 1,
                v.parse::<u32>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| bad(&format!("line {}: version is not a number from 1", i + 1)))?,
            )),
            Some(("key", hex)) => {
                let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(bad(&format!("line {}: key is not 64 hex characters", i + 1)));
                }
                let bytes: Vec<u8> =
                    (0..32).map(|j| u8::from_str_radix(&hex[2 * j..2 * j + 2], 16).expect("checked hex")).collect();
                keys.push((i + 1, Zeroizing::new(bytes)));
            }
            _ => return Err(bad(&format!("line {}: not `version=` or `key=`", i + 1))),
        }
    }
    if versions.is_empty() {
        return Err(bad("no version"));
    }
    if keys.is_empty() {
        return Err(bad("no key"));
    }
    if versions.len() == 1 && keys.len() == 1 {
        let ((_, version), (_, key)) = (versions.remove(0), keys.remove(0));
        return Ok(vec![(version, key)]);
    }
    if versions.len() != keys.len() {
        return Err(bad(&format!("{} versions and {} keys", versions.len(), keys.len())));
    }
    let mut out: Vec<VersionedKey> = Vec::with_capacity(keys.len());
    for ((version_line, version), (key_line, key)) in versions.into_iter().zip(keys) {
        if key_line < version_line {
            return Err(bad(&format!("line {key_line}: a key before its version line")));
        }
        if out.iter().any(|(v, _)| *v == version) {
            return Err(bad(&format!("line {version_line}: version {version} twice")));
        }
        out.push((version, key));
    }
    Ok(out)
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

    #[test]
    fn an_in_force_key_file_gives_every_version_and_a_writer_s_loader_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let (k2, k1) = ("22".repeat(32), "11".repeat(32));
        let text = format!("{KEY_FILE_FORMAT}\n# in force\nversion=2\nkey={k2}\nversion=1\nkey={k1}\n");
        let path = write(dir.path(), &text, 0o600);
        let versions = load_key_file_versions(&path).unwrap();
        let got: Vec<(u32, u8)> = versions.iter().map(|(v, k)| (*v, k[0])).collect();
        assert_eq!(got, [(2, 0x22), (1, 0x11)]);
        let e = load_key_file(&path).unwrap_err();
        assert!(e.contains("holds 2 versions") && e.contains("without --in-force") && !e.contains(&k1), "{e}");
        // A single pair still reads in either order, from both loaders.
        let path = write(dir.path(), &format!("key={k1}\nversion=1\n"), 0o600);
        assert_eq!(load_key_file(&path).unwrap().0, 1);
        assert_eq!(load_key_file_versions(&path).unwrap().len(), 1);
        for (text, expected) in [
            (format!("version=2\nkey={k2}\nversion=1\n"), "2 versions and 1 keys"),
            (format!("version=2\nkey={k2}\nkey={k1}\nversion=1\n"), "line 3: a key before its version line"),
            (format!("version=2\nkey={k2}\nversion=2\nkey={k1}\n"), "line 3: version 2 twice"),
        ] {
            let path = write(dir.path(), &text, 0o600);
            let e = load_key_file_versions(&path).unwrap_err();
            assert!(e.contains(expected) && !e.contains(&k1) && !e.contains(&k2), "{e}");
        }
    }
}

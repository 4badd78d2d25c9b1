//! The NATS credentials file that `qilinctl keys render-nats` writes for qilin-nats
//! (`nats.credentials_file`, docs/KEYS.md "NATS credentials from the store"): a dotenv file with
//! `NATS_USER` and `NATS_PASSWORD`, the active version of a managed key. Read with the same loader
//! and checks as every other secret file; errors name the file and the key, never the value.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::{Source, load};

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
}

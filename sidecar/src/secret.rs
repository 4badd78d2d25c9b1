//! Secrets for a sidecar, from an environment variable or from a secret file (as Vault Agent or
//! systemd credentials render them). Values go straight into [`SecretString`], whose `Debug` prints
//! `[REDACTED]`; errors name the variable or the file and never the value.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use secrecy::SecretString;

/// A secret that could not be loaded. The message names the variable or file, never the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Both the variable and the file were given.
    #[error("{key} is set in the environment and {file_key} = {file:?} is configured: give one of them")]
    Ambiguous {
        /// Environment variable.
        key: String,
        /// Config key of the file.
        file_key: String,
        /// The file.
        file: PathBuf,
    },
    /// The environment variable is not valid UTF-8 or is empty.
    #[error("environment variable {key}: {reason}")]
    Env {
        /// Environment variable.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The secret file is missing, unreadable, empty or readable by other users.
    #[error("secret file {path:?} ({file_key}): {reason}")]
    File {
        /// Config key of the file.
        file_key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Loads one secret from environment variable `key` or from `file` (configured under `file_key`).
/// `Ok(None)` if neither is given. A file readable by every user is refused; a trailing newline is
/// dropped (secret files usually end with one).
pub fn load(key: &str, file_key: &str, file: Option<&Path>) -> Result<Option<SecretString>, SecretError> {
    let env = std::env::var_os(key);
    match (env, file) {
        (Some(_), Some(file)) => {
            Err(SecretError::Ambiguous { key: key.into(), file_key: file_key.into(), file: file.to_path_buf() })
        }
        (Some(value), None) => {
            let value = value
                .into_string()
                .map_err(|_| SecretError::Env { key: key.into(), reason: "not valid UTF-8".into() })?;
            if value.is_empty() {
                return Err(SecretError::Env { key: key.into(), reason: "empty".into() });
            }
            Ok(Some(SecretString::from(value)))
        }
        (None, Some(path)) => load_file(file_key, path).map(Some),
        (None, None) => Ok(None),
    }
}

fn load_file(file_key: &str, path: &Path) -> Result<SecretString, SecretError> {
    let fail = |reason: String| SecretError::File { file_key: file_key.into(), path: path.to_path_buf(), reason };
    let meta = fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(fail(format!("readable by every user (mode {mode:04o}); chmod 0600 or 0640")));
    }
    let bytes = fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut text = String::from_utf8(bytes).map_err(|_| fail("not valid UTF-8".into()))?;
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    if text.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn files_are_read_trimmed_and_world_readable_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, "hunter2-value\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let secret = load("QILIN_TEST_UNSET_VARIABLE", "nats.password_file", Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose_secret(), "hunter2-value");
        assert!(!format!("{secret:?}").contains("hunter2"));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load("QILIN_TEST_UNSET_VARIABLE", "nats.password_file", Some(&path)).unwrap_err().to_string();
        assert!(err.contains("nats.password_file") && err.contains("readable by every user"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        fs::write(&path, "\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load("QILIN_TEST_UNSET_VARIABLE", "nats.password_file", Some(&path)).unwrap_err().to_string();
        assert!(err.ends_with("empty"), "{err}");

        let err = load("QILIN_TEST_UNSET_VARIABLE", "k", Some(&dir.path().join("missing"))).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("No such file"), "{err}");
        assert!(matches!(load("QILIN_TEST_UNSET_VARIABLE", "k", None), Ok(None)));
    }

    #[test]
    fn variable_and_file_together_are_refused() {
        // PATH is always set; it stands in for a secret variable without modifying the environment.
        let err = load("PATH", "nats.token_file", Some(Path::new("/x"))).unwrap_err().to_string();
        assert!(err.contains("PATH is set") && err.contains("nats.token_file"), "{err}");
    }
}

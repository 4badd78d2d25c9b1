//! The one secret-file loader. Every secret the feed reads from a file goes through [`read`]: the
//! per-key files of a secrets directory (Vault Agent, systemd credentials), the dotenv file of
//! `validate-env` and `qilin-secrets`, and the single-value files of the sidecars' configs
//! (`nats.password_file`, the TLS key, …).
//!
//! The rules, the strictest of the loaders this replaced:
//! - opened `O_NOFOLLOW` (a symlink planted in place of the file is refused) and `O_NONBLOCK` (a
//!   FIFO planted there does not hang the loader until someone writes to it), then checked on the
//!   open descriptor (`fstat`): a regular file, not what the path names a moment later, and read
//!   through that same descriptor;
//! - [`Exposure::Private`]: no permission bit for the group or others (0600 or 0400), else refused
//!   with the mode and the fix. Only the dotenv file of the `sim` profile, which holds simulator
//!   credentials, is read with [`Exposure::Allowed`];
//! - the bytes live in a zeroizing buffer; errors name the file and never quote its content.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use secrecy::{SecretString, zeroize::Zeroizing};

/// Whether a file readable by the group or others may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// Refuse any group or other permission bit (the rule for every real secret).
    Private,
    /// Read it anyway and report the mode (the sim profile's dotenv file).
    Allowed,
}

/// A secret file that could not be read. Never quotes the content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading failed (missing, permission denied, a symlink: `O_NOFOLLOW` gives ELOOP).
    #[error("secret file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not a regular file.
    #[error("secret file {}: not a regular file", path.display())]
    NotFile {
        /// The path.
        path: PathBuf,
    },
    /// Group or others have a permission bit.
    #[error("secret file {}: group/world-readable (mode {mode:04o}); chmod 0600", path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// `mode & 0o777`.
        mode: u32,
    },
    /// Not UTF-8.
    #[error("secret file {}: not valid UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// Empty (after dropping trailing newlines).
    #[error("secret file {}: empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// A file's bytes (zeroized on drop) and its permission bits.
#[derive(Debug)]
pub struct Contents {
    /// The bytes as read.
    pub bytes: Zeroizing<Vec<u8>>,
    /// `mode & 0o777` of the open file.
    pub mode: u32,
    /// `(st_dev, st_ino)` of the open file: which file was read, to tell it from one put in its
    /// place later (shredding checks it).
    pub identity: (u64, u64),
}

impl Contents {
    /// The text of a single-value file: UTF-8 (else `None`), with the trailing newlines secret
    /// renderers write dropped.
    pub fn value(&self) -> Option<&str> {
        let mut end = self.bytes.len();
        while end > 0 && matches!(self.bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        std::str::from_utf8(&self.bytes[..end]).ok()
    }
}

/// Opens `path` without following a symlink, checks the open file and reads it.
pub fn read(path: &Path, exposure: Exposure) -> Result<Contents, FileError> {
    let io_error = |source| FileError::Io { path: path.to_owned(), source };
    let mut file: File = OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(FileError::NotFile { path: path.to_owned() });
    }
    let mode = meta.permissions().mode() & 0o777;
    if exposure == Exposure::Private && mode & 0o077 != 0 {
        return Err(FileError::Exposed { path: path.to_owned(), mode });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    file.read_to_end(&mut bytes).map_err(io_error)?;
    use std::os::unix::fs::MetadataExt;
    Ok(Contents { bytes, mode, identity: (meta.dev(), meta.ino()) })
}

/// One secret value from a file (private, trailing newlines dropped, UTF-8, not empty).
pub fn read_value(path: &Path) -> Result<SecretString, FileError> {
    let contents = read(path, Exposure::Private)?;
    let text = contents.value().ok_or_else(|| FileError::NotUtf8 { path: path.to_owned() })?;
    if text.is_empty() {
        return Err(FileError::Empty { path: path.to_owned() });
    }
    Ok(SecretString::from(text))
}

/// A secret configured as an environment variable or a file that could not be loaded. The message
/// names the variable or the file and its config key, never the value.
#[derive(Debug, thiserror::Error)]
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
    /// The file could not be used.
    #[error("{file_key}: {source}")]
    File {
        /// Config key of the file.
        file_key: String,
        /// Why.
        source: FileError,
    },
}

/// Loads one secret from environment variable `key` or from `file` (configured under `file_key`).
/// `Ok(None)` if neither is given.
pub fn load(key: &str, file_key: &str, file: Option<&Path>) -> Result<Option<SecretString>, SecretError> {
    match (std::env::var_os(key), file) {
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
        (None, Some(path)) => {
            read_value(path).map(Some).map_err(|source| SecretError::File { file_key: file_key.into(), source })
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use secrecy::ExposeSecret;

    use super::*;

    const UNSET: &str = "QILIN_TEST_UNSET_VARIABLE";

    #[test]
    fn files_are_read_trimmed_and_exposed_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, "hunter2-value\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let secret = load(UNSET, "nats.password_file", Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose_secret(), "hunter2-value");
        assert!(!format!("{secret:?}").contains("hunter2"));

        for mode in [0o640, 0o604, 0o620, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = load(UNSET, "nats.password_file", Some(&path)).unwrap_err().to_string();
            assert!(
                err.contains("nats.password_file")
                    && err.contains(&format!("group/world-readable (mode {mode:04o}); chmod 0600")),
                "{err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read(&path, Exposure::Allowed).unwrap().mode, 0o644, "the sim dotenv rule reads it");

        fs::write(&path, "\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        let err = load(UNSET, "nats.password_file", Some(&path)).unwrap_err().to_string();
        assert!(err.ends_with("empty"), "{err}");

        let err = load(UNSET, "k", Some(&dir.path().join("missing"))).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("No such file"), "{err}");
        assert!(matches!(load(UNSET, "k", None), Ok(None)));
    }

    #[test]
    fn symlinks_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        fs::write(&target, "value").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = read_value(&link).unwrap_err();
        assert!(
            matches!(&err, FileError::Io { source, .. } if source.raw_os_error() == Some(nix::libc::ELOOP)),
            "{err}"
        );
        assert!(matches!(read_value(dir.path()), Err(FileError::NotFile { .. })));
    }

    /// A FIFO in place of a secret file: refused as not a regular file, at once (the open does not
    /// wait for a writer; before O_NONBLOCK it blocked until one came).
    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("CTP_PRIMARY_PASSWORD");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_value(&path).map(|_| ()).map_err(|e| e.to_string()));
        });
        // A hang guard, not a performance bound: the answer needs no writer at all.
        let answer = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the loader hung on a FIFO");
        let err = answer.expect_err("a FIFO is not a secret file");
        assert!(err.contains("CTP_PRIMARY_PASSWORD") && err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn variable_and_file_together_are_refused() {
        // PATH is always set; it stands in for a secret variable without modifying the environment.
        let err = load("PATH", "nats.token_file", Some(Path::new("/x"))).unwrap_err().to_string();
        assert!(err.contains("PATH is set") && err.contains("nats.token_file"), "{err}");
    }
}

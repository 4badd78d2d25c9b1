//! Where the log is: an explicit path, `$QILIN_AUDIT_LOG`, or the XDG state directory.

use std::path::{Path, PathBuf};

/// The environment variable naming the log.
pub const ENV_PATH: &str = "QILIN_AUDIT_LOG";

/// The log path: `explicit`, else `$QILIN_AUDIT_LOG`, else [`default_path`].
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(path) => path.to_owned(),
        None => match std::env::var_os(ENV_PATH).filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => default_path(),
        },
    }
}

/// `audit.jsonl` in the feed's state directory (`qilin_market::paths::state_dir`:
/// `$XDG_STATE_HOME/qilin`, else `~/.local/state/qilin`).
pub fn default_path() -> PathBuf {
    qilin_market::paths::state_dir().join("audit.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_paths_win_and_the_default_is_in_the_state_directory() {
        assert_eq!(resolve_path(Some(Path::new("/x/a.jsonl"))), PathBuf::from("/x/a.jsonl"));
        assert!(default_path().ends_with("qilin/audit.jsonl") && default_path().is_absolute());
    }
}

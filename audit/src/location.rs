//! Where the log is: an explicit path, `$QILIN_AUDIT_LOG`, or the XDG state directory.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

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

/// `$XDG_STATE_HOME/qilin/audit.jsonl`, else `$HOME/.local/state/qilin/audit.jsonl`, else
/// `state/audit.jsonl`.
pub fn default_path() -> PathBuf {
    default_path_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn default_path_from(xdg_state_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    // The XDG spec says a relative value is invalid and must be ignored.
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(dir) = xdg_state_home.and_then(absolute) {
        dir.join("qilin/audit.jsonl")
    } else if let Some(home) = home.and_then(absolute) {
        home.join(".local/state/qilin/audit.jsonl")
    } else {
        PathBuf::from("state/audit.jsonl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_prefers_xdg_then_home_then_relative() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(default_path_from(os("/st"), os("/home/a")), PathBuf::from("/st/qilin/audit.jsonl"));
        assert_eq!(
            default_path_from(os("rel"), os("/home/a")),
            PathBuf::from("/home/a/.local/state/qilin/audit.jsonl")
        );
        assert_eq!(default_path_from(None, None), PathBuf::from("state/audit.jsonl"));
        assert_eq!(resolve_path(Some(Path::new("/x/a.jsonl"))), PathBuf::from("/x/a.jsonl"));
    }
}

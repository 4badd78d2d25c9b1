//! Where the feed keeps its state when the config does not say: the XDG state directory of the
//! user running it. Used for the audit log, the recorder's journal and qilin-nats' cursor, so that
//! the examples and the defaults never write into the working directory (a source checkout, when
//! started as the README shows). Production configs name absolute paths (`/var/lib/qilin/…`).

use std::{ffi::OsString, path::PathBuf};

/// `$XDG_STATE_HOME/qilin`, else `$HOME/.local/state/qilin`, else `/tmp/qilin-state-<uid>`.
pub fn state_dir() -> PathBuf {
    state_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"), nix::unistd::getuid().as_raw())
}

/// [`state_dir`] from the given environment values and uid.
pub fn state_dir_from(xdg_state_home: Option<OsString>, home: Option<OsString>, uid: u32) -> PathBuf {
    // The XDG spec says a relative value is invalid and must be ignored.
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(dir) = xdg_state_home.and_then(absolute) {
        dir.join("qilin")
    } else if let Some(home) = home.and_then(absolute) {
        home.join(".local/state/qilin")
    } else {
        PathBuf::from(format!("/tmp/qilin-state-{uid}"))
    }
}

/// The default bar segment of a tick segment (`qilin-bars`' `bar_segment`): `<segment>-bars` beside
/// it, `/dev/shm/qilin-bars` for the feed `qilin`'s `/dev/shm/qilin`.
pub fn bar_segment_path(tick_segment: &std::path::Path) -> PathBuf {
    let mut name = tick_segment.file_name().map(OsString::from).unwrap_or_default();
    name.push("-bars");
    tick_segment.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_segment_sits_beside_the_tick_segment() {
        assert_eq!(bar_segment_path(std::path::Path::new("/dev/shm/qilin")), PathBuf::from("/dev/shm/qilin-bars"));
    }

    #[test]
    fn state_dir_prefers_xdg_then_home_and_is_always_absolute() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(state_dir_from(os("/st"), os("/home/a"), 7), PathBuf::from("/st/qilin"));
        assert_eq!(state_dir_from(os("rel"), os("/home/a"), 7), PathBuf::from("/home/a/.local/state/qilin"));
        assert_eq!(state_dir_from(None, os("relative"), 7), PathBuf::from("/tmp/qilin-state-7"));
        assert!(state_dir().is_absolute());
    }
}

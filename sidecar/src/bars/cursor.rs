//! qilin-bars' durable cursor: the last tick sequence processed and the feed clock at a moment when
//! every bar emitted so far was acknowledged by the stream. A restart replays the ticks up to that
//! sequence (journal, then ring) without publishing, moves the clock to the saved value (closing
//! the bars the timer had closed), and publishes only what comes after. Replaced atomically: write
//! a temporary file, fsync, rename, fsync the directory.

use std::{fs, io::Write, path::PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarsCursor {
    /// Feed name of the segment.
    pub feed: String,
    /// The oldest trading day (`YYYYMMDD`) with a bar open then, else the last tick's: the journal
    /// is replayed from it.
    pub trading_day: u32,
    /// Last tick sequence processed.
    pub sequence: u64,
    /// The builder's feed clock then (UTC ns).
    pub clock_ns: i64,
}

/// Loads the cursor (`None`: no file, or another feed's, which is logged).
pub fn load(path: &std::path::Path, feed: &str) -> anyhow::Result<Option<BarsCursor>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading cursor {}", path.display())),
    };
    let cursor: BarsCursor =
        serde_json::from_str(&text).with_context(|| format!("cursor {} is malformed: move it away", path.display()))?;
    if cursor.feed != feed {
        anyhow::bail!("cursor {} belongs to feed {:?}, the segment is feed {feed:?}", path.display(), cursor.feed);
    }
    Ok(Some(cursor))
}

/// Saves the cursor atomically.
pub fn save(path: &std::path::Path, cursor: &BarsCursor) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut file = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec(cursor)?)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

//! The writer: [`AuditLog`] opens the log (creating it and its directory), locks it, chains and
//! appends one line per operation, and updates the head file.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use qilin_market::date::rfc3339_ns;

use crate::{
    chain::{GENESIS, Probe, sha256_hex},
    head::{FILE_MODE, Head, read_head, sync_dir, write_head},
    mask::mask_args,
    record::{Entry, Operator, Record},
};

/// Writing the log failed; the message names the file and the step.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}: {step}: {source}", path.display())]
pub struct AuditError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

/// An audit log file. Cheap to keep: every append opens, locks and closes the file, so it is
/// `Sync` and survives the file being replaced.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    operator: Operator,
    host: String,
    program: String,
}

impl AuditLog {
    /// Opens `path` for appending, creating it (mode 0640) and its directory (0750) if missing.
    /// Fails when it cannot be written, so an operation can be refused before it is done.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_owned();
        open_for_append(&path).map_err(|source| AuditError { path: path.clone(), step: "opening", source })?;
        let program = std::env::args_os()
            .next()
            .map(|a| Path::new(&a).file_name().unwrap_or(&a).to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(AuditLog { path, operator: operator(), host: hostname(), program })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as the next line of the chain (see the crate doc for the steps) and returns
    /// the record written.
    pub fn append(&self, entry: &Entry) -> Result<Record, AuditError> {
        let err = |step| move |source| AuditError { path: self.path.clone(), step, source };
        let file = open_for_append(&self.path).map_err(err("opening"))?;
        file.lock().map_err(err("locking"))?; // released when `file` is closed
        let len = file.metadata().map_err(err("reading metadata"))?.len();
        let (prev, last_seq, torn) = if len == 0 {
            (GENESIS.to_owned(), 0, false)
        } else {
            let (line, terminated) = last_line(&file, len).map_err(err("reading the last line"))?;
            let seq = match serde_json::from_slice::<Probe>(&line) {
                Ok(probe) => probe.seq,
                Err(_) => count_lines(&file, len).map_err(err("counting lines"))?,
            };
            (sha256_hex(&line), seq, !terminated)
        };
        let head_seq = read_head(&self.path).ok().flatten().map_or(0, |h| h.seq);
        let ts_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let record = Record {
            seq: last_seq.max(head_seq) + 1,
            prev,
            ts: rfc3339_ns(ts_ns),
            ts_ns,
            operator: self.operator.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            program: self.program.clone(),
            command: entry.command.clone(),
            args: mask_args(&entry.args),
            exit_code: entry.exit_code,
            actions: entry.actions.clone(),
        };
        let line = serde_json::to_vec(&record).map_err(|e| err("encoding")(e.into()))?;
        let mut buf = Vec::with_capacity(line.len() + 2);
        if torn {
            buf.push(b'\n'); // end the torn line; it stays as evidence and this line chains from it
        }
        buf.extend_from_slice(&line);
        buf.push(b'\n');
        if let Err(e) = (&file).write_all(&buf).and_then(|()| file.sync_all()) {
            let _ = file.set_len(len); // we hold the lock: take back a partial line
            return Err(err("writing")(e));
        }
        write_head(&self.path, &Head { seq: record.seq, hash: sha256_hex(&line) }).map_err(err("writing the head"))?;
        Ok(record)
    }
}

fn operator() -> Operator {
    let uid = nix::unistd::getuid();
    let user = match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.as_raw().to_string(),
    };
    let sudo_user = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty());
    Operator { user, uid: uid.as_raw(), sudo_user }
}

fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Opens the log read + append, creating it with mode 0640 (whatever the umask) and its directory.
fn open_for_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    match OpenOptions::new().read(true).append(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
            sync_dir(path)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new().read(true).append(true).open(path),
        Err(e) => Err(e),
    }
}

/// The last line of a non-empty file without its newline, and whether it had one.
fn last_line(file: &File, len: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    let terminated = last[0] == b'\n';
    let end = if terminated { len - 1 } else { len };
    let (mut start, mut pos) = (0, end);
    let mut chunk = vec![0u8; 8192];
    while pos > 0 {
        let n = chunk.len().min(pos as usize);
        pos -= n as u64;
        file.read_exact_at(&mut chunk[..n], pos)?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            start = pos + i as u64 + 1;
            break;
        }
    }
    let mut line = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut line, start)?;
    Ok((line, terminated))
}

/// Lines in the file (a last line without newline counts).
fn count_lines(file: &File, len: u64) -> io::Result<u64> {
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    Ok(newlines + u64::from(bytes.last() != Some(&b'\n')))
}

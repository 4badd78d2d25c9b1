//! What the session and rotation tests share: the secret file qilin-secrets watches, requests on
//! the core's control socket, and the audit entries of a rotation.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::Path,
};

use qilin_testkit::{WATCHDOG, audit_entries, wait_for};
use serde_json::Value;

/// A dotenv file of both accounts (the backup's front fixed, its password `backup_password`).
pub fn secrets_env(primary_password: &str, primary_front: &str, backup_password: &str) -> String {
    format!(
        "CTP_PRIMARY_BROKER_ID=9999\nCTP_PRIMARY_USER_ID=prim01\nCTP_PRIMARY_PASSWORD={primary_password}\n\
         CTP_PRIMARY_MD_FRONTS={primary_front}\nCTP_BACKUP_BROKER_ID=9999\nCTP_BACKUP_USER_ID=back01\n\
         CTP_BACKUP_PASSWORD={backup_password}\nCTP_BACKUP_MD_FRONTS=tcp://127.0.0.2:10211\n"
    )
}

/// Replaces `path` as Vault Agent does: a new file renamed over the old one.
pub fn write_secret_file(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// One request on the core's control socket.
pub fn ctl(socket: &Path, line: &str) -> Value {
    ctl_bytes(socket, format!("{line}\n").as_bytes())
}

/// Raw bytes on the control socket; the reply line.
pub fn ctl_bytes(socket: &Path, bytes: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket).unwrap_or_else(|e| panic!("connecting {}: {e}", socket.display()));
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).unwrap();
    let sent = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]);
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply to {sent:?} is not JSON ({e}): {reply:?}"))
}

/// Waits until an audit entry satisfies `f`.
pub fn await_audit(path: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, || audit_entries(path).into_iter().find(|e| f(e)))
}

/// The runbook step an audit entry records ("" if none).
pub fn step_of(e: &Value) -> &str {
    e["actions"][0]["step"].as_str().unwrap_or("")
}

//! Recording an operation in the audit log: open it first (an operation that cannot be audited is
//! refused, exit 4), then append one entry with the outcome (exit 5 when that fails).

use std::{path::Path, process::ExitCode};

use qilin_tools::audit::{self, AuditLog, Entry};
use serde_json::Value;

pub fn open_audit(path: Option<&Path>, what: &str) -> Result<AuditLog, ExitCode> {
    let log_path = audit::resolve_path(path);
    AuditLog::open(&log_path).map_err(|e| {
        eprintln!("qilinctl: {e}; {what} not done (operations that cannot be audited are refused)");
        ExitCode::from(4)
    })
}

pub fn audit_entry(log: &AuditLog, command: &str, code: u8, actions: Vec<Value>) -> ExitCode {
    let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    match log.append(&Entry { command: command.to_owned(), args, exit_code: i32::from(code), actions }) {
        Ok(_) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qilinctl: {command} was done (exit code {code}) but its audit entry failed: {e}");
            ExitCode::from(5)
        }
    }
}

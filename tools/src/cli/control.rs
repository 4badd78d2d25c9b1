//! Control-socket commands: `subscribe`, `unsubscribe`, `shutdown`, `failover`, `failback`,
//! `relogin` (audited operations) and `sessions` (read-only), over [`super::control_client`].
//!
//! Exit codes of the operations (each appends one audit entry carrying this code): 0 the core
//! accepted every request; 1 the core refused one (its reply says why); 2 the core could not be
//! reached or did not answer; 4 the audit log cannot be written, so nothing was sent; 5 the
//! operation was done but its audit entry could not be written.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Args as ClapArgs;
use qilin_market::control::Request;
use qilin_tools::audit::{self, AuditLog};

use super::{audited::audit_entry, control_client::send_requests};

/// Where the core's control socket and the audit log are.
#[derive(Debug, ClapArgs)]
pub struct ControlOpts {
    /// The core's control socket [default: /tmp/qilin-FEED.sock with FEED from --feed, as the core's].
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Feed name, for the default control socket.
    #[arg(long, default_value = "qilin")]
    feed: String,
    /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
    /// ~/.local/state/qilin/audit.jsonl].
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// How long to wait for each reply (a subscribe waits up to 2 s for the directory).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

impl ControlOpts {
    fn socket(&self) -> PathBuf {
        self.control_socket.clone().unwrap_or_else(|| PathBuf::from(format!("/tmp/qilin-{}.sock", self.feed)))
    }
}

/// `sessions`: asks the core for both sessions' state; read-only, not audited.
pub fn sessions(control: &ControlOpts) -> ExitCode {
    let (code, _) = send_requests(&control.socket(), &[Request::Sessions], Duration::from_millis(control.timeout_ms));
    ExitCode::from(code)
}

/// Sends `requests` to the core and appends one audit entry with the outcome. The log is opened
/// first: an operation that could not be audited is not done.
pub fn operate(command: &str, requests: &[Request<'_>], opts: &ControlOpts) -> ExitCode {
    let log_path = audit::resolve_path(opts.audit_log.as_deref());
    let log = match AuditLog::open(&log_path) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("qilinctl: {e}; nothing was sent (operations that cannot be audited are refused)");
            return ExitCode::from(4);
        }
    };
    let socket = opts.socket();
    let (code, actions) = send_requests(&socket, requests, Duration::from_millis(opts.timeout_ms));
    audit_entry(&log, command, code, actions)
}

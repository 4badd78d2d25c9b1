//! `audit verify` and `audit show`: read the audit log of operations.
//!
//! `audit verify`: 0 the chain is intact, 1 tampered (every problem is printed with its line), 2 the
//! log cannot be read. With `--anchor FILE` every anchor of the witness's file is checked too
//! (`qilin_audit::verify_anchored`): a mismatch is exit 1 like any tampering; an anchor file that
//! cannot be read (or is missing) is exit 2, never a pass. `audit show`: 0, or 2 when the log
//! cannot be read.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Subcommand;
use qilin_tools::audit;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain, the numbering and the head file (and with --anchor, the witness's
    /// anchors); name every damaged line.
    Verify {
        /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
        /// ~/.local/state/qilin/audit.jsonl].
        #[arg(long, visible_alias = "audit-log")]
        log: Option<PathBuf>,
        /// Anchor file written by the witness (qilin-recorder's `[[audit_anchor]]`): also check that
        /// every anchored seq still has its anchored hash and the log does not end before the last
        /// one. A missing anchor file is an error (exit 2), not a pass.
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
        /// With --anchor: check every keyed anchor's MAC with the versions of the managed key
        /// (default `audit-signing`) that still verify, read from the key store under
        /// QILIN_MASTER_KEY (docs/KEYS.md). A forged or chain-broken anchor is tampering (exit 1).
        #[arg(long, requires = "anchor", value_name = "KEY", num_args = 0..=1, default_missing_value = "audit-signing")]
        keys: Option<String>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the entries (as stored with --json).
    Show {
        /// Audit log [default: as for verify].
        #[arg(long, visible_alias = "audit-log")]
        log: Option<PathBuf>,
        /// The stored JSON lines, byte for byte.
        #[arg(long)]
        json: bool,
        /// Only the last N entries.
        #[arg(long)]
        last: Option<usize>,
    },
}

/// Runs an `audit` subcommand.
pub fn run(command: &AuditCmd) -> ExitCode {
    match command {
        AuditCmd::Verify { log, anchor, keys, json } => {
            audit_verify(log.as_deref(), anchor.as_deref(), keys.as_deref(), *json)
        }
        AuditCmd::Show { log, json, last } => audit_show(log.as_deref(), *json, *last),
    }
}

fn audit_verify(log: Option<&Path>, anchor: Option<&Path>, keys: Option<&str>, json: bool) -> ExitCode {
    let path = audit::resolve_path(log);
    let result = match (anchor, keys) {
        (Some(anchor), Some(name)) => {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let versions = match qilin_tools::keys::cli::verifying_keys(name, None, now) {
                Ok(versions) => versions,
                Err(e) => {
                    eprintln!("qilinctl: audit verify --keys: {e}: the anchors' MACs were not checked (not a pass)");
                    return ExitCode::from(2);
                }
            };
            let lookup = |v: u32| versions.iter().find(|(version, _)| *version == v).map(|(_, key)| key.clone());
            audit::verify_anchored_keyed(&path, anchor, &lookup)
        }
        (Some(anchor), None) => audit::verify_anchored(&path, anchor),
        (None, _) => audit::verify(&path),
    };
    let report = match result {
        Ok(report) => report,
        Err(e) if anchor == Some(e.path.as_path()) => {
            eprintln!(
                "qilinctl: audit anchor {}: {}: nothing was checked against it (not a pass)",
                e.path.display(),
                e.source
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("qilinctl: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        let mut value = json!(report);
        value["log"] = json!(path.display().to_string());
        value["clean"] = json!(report.is_clean());
        println!("{value}");
    } else {
        for problem in &report.problems {
            println!("{}", problem.detail);
        }
        for note in &report.notes {
            println!("note: {note}");
        }
        if report.is_clean() {
            let anchored = match &report.anchor {
                Some(a) => match (a.last_seq, &a.last_ts) {
                    (Some(seq), Some(ts)) => {
                        format!(
                            "; anchor {}: all {} anchor(s) match, the last seq {seq} at {ts}",
                            a.file.display(),
                            a.anchors
                        )
                    }
                    _ => format!("; anchor {}: no anchor yet", a.file.display()),
                },
                None => String::new(),
            };
            println!(
                "{}: {} entries, chain intact, head at seq {}{anchored}",
                path.display(),
                report.lines,
                report.last_seq
            );
        } else {
            println!("{}: TAMPERED: {} problem(s) in {} lines", path.display(), report.problems.len(), report.lines);
        }
    }
    if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn audit_show(log: Option<&Path>, json: bool, last: Option<usize>) -> ExitCode {
    let path = audit::resolve_path(log);
    let lines = match audit::read_lines(&path) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("qilinctl: {e}");
            return ExitCode::from(2);
        }
    };
    let skip = last.map_or(0, |n| lines.len().saturating_sub(n));
    for (line, record) in &lines[skip..] {
        match record {
            _ if json => println!("{line}"),
            Some(r) => {
                let who = match &r.operator.sudo_user {
                    Some(sudo) => format!("{} (sudo by {sudo})", r.operator.user),
                    None => r.operator.user.clone(),
                };
                let actions: Vec<String> = r.actions.iter().map(action_summary).collect();
                let args = if r.args.is_empty() { String::new() } else { format!(" ({})", r.args.join(" ")) };
                println!(
                    "{:>6} {} {who}@{} pid {} {} {}{args} -> exit {}  [{}]",
                    r.seq,
                    r.ts,
                    r.host,
                    r.pid,
                    r.program,
                    r.command,
                    r.exit_code,
                    actions.join("; ")
                );
            }
            None => println!("     ? (not an audit entry) {line}"),
        }
    }
    ExitCode::SUCCESS
}

/// `request → reply` for the control actions, the JSON otherwise.
fn action_summary(action: &Value) -> String {
    match (action["request"].as_str(), action.get("reply"), action["error"].as_str()) {
        (Some(request), Some(reply), _) => format!("{request} -> {reply}"),
        (Some(request), None, Some(error)) => format!("{request} -> error: {error}"),
        _ => match action.as_str() {
            Some(s) => s.to_owned(),
            None => action.to_string(),
        },
    }
}

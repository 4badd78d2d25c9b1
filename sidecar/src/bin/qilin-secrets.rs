//! `qilin-secrets`: loads the feed's secrets (CTP accounts, NATS credentials, rate-limit tokens)
//! from a dotenv file, a directory of secret files or the environment, runs the same checks as
//! `qilinctl validate-env`, optionally shreds the runtime file, records what it did in the audit
//! log (key names only), then holds the secrets until SIGTERM or SIGINT.
//!
//! Exit codes: 0 stopped by a signal after a clean load; 1 the secrets have problems (each printed
//! with its key, never the value; nothing shredded); 2 the source cannot be read, or shredding
//! failed; 4 the audit log cannot be written (nothing loaded); 5 the outcome could not be audited.
//!
//! Not yet: the hand-off to the core over its control socket and rotation (issue 8, items 4-5).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use qilin_sidecar::secrets::{self, Profile, Source};
use qilin_tools::audit::{self, AuditLog, Entry};
use serde_json::{Value, json};

/// Loads, validates and holds the feed's secrets.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A dotenv file or a directory of secret files (one per key) [default: the environment].
    #[arg(long)]
    source: Option<PathBuf>,
    /// Once loaded and validated, overwrite the source file with random bytes, fsync and unlink it.
    #[arg(long, requires = "source")]
    shred_source: bool,
    /// Profile the secrets are checked for.
    #[arg(long, value_enum, default_value_t = Profile::Live)]
    profile: Profile,
    /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
    /// ~/.local/state/qilin/audit.jsonl].
    #[arg(long)]
    audit_log: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    // This process holds every credential of the feed: keep them out of core dumps and ptrace by
    // other processes of the same uid.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("could not disable core dumps: {e}");
    }
    // Block the stop signals before anything else so a SIGTERM during loading is not lost; it is
    // taken by `wait` below.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGTERM);
    stop.add(Signal::SIGINT);
    if let Err(e) = stop.thread_block() {
        eprintln!("qilin-secrets: blocking SIGTERM/SIGINT: {e}");
        return ExitCode::from(2);
    }
    let args = Args::parse();
    let log = match AuditLog::open(audit::resolve_path(args.audit_log.as_deref())) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("qilin-secrets: {e}; nothing loaded (an unaudited load is refused)");
            return ExitCode::from(4);
        }
    };
    let source = args.source.clone().map_or(Source::Env, Source::from_path);
    if args.shred_source && !matches!(source, Source::File(_)) {
        eprintln!("qilin-secrets: --shred-source needs a dotenv file as --source, not a {source}");
        return ExitCode::from(2);
    }
    let mut action = json!({"profile": args.profile.as_str(), "source": source.to_string()});
    let (loaded, problems) = match secrets::check(&source, args.profile) {
        Ok(checked) => checked,
        Err(e) => {
            tracing::error!("{e}");
            action["error"] = json!(e.to_string());
            return audited(&log, 2, action);
        }
    };
    let keys: Vec<&str> = loaded.keys().collect();
    action["keys"] = json!(keys);
    if !problems.is_empty() {
        for problem in &problems {
            tracing::error!(key = %problem.key, "{}", problem.reason);
        }
        eprintln!(
            "qilin-secrets: {} problem(s) in {source} for the {} profile; nothing held",
            problems.len(),
            args.profile
        );
        action["problems"] = json!(problems);
        return audited(&log, 1, action);
    }
    tracing::debug!(count = keys.len(), "secrets loaded and valid");
    if args.shred_source
        && let Source::File(path) = &source
    {
        match secrets::shred(path) {
            Ok(bytes) => {
                tracing::info!(path = %path.display(), bytes, "runtime file shredded");
                action["shredded"] = json!({"path": path.display().to_string(), "bytes": bytes});
            }
            Err(e) => {
                tracing::error!(path = %path.display(), "shredding failed: {e}");
                action["error"] = json!(format!("shredding {}: {e}", path.display()));
                return audited(&log, 2, action);
            }
        }
    }
    if let Err(e) = log.append(&entry(0, action)) {
        eprintln!("qilin-secrets: the load's audit entry failed: {e}");
        return ExitCode::from(5);
    }
    println!("qilin-secrets: holding {} keys for the {} profile: {}", keys.len(), args.profile, keys.join(", "));
    tracing::info!("waiting for SIGTERM (the hand-off to the core is not written yet)");
    match stop.wait() {
        Ok(signal) => tracing::info!("{signal:?}: dropping the secrets and stopping"),
        Err(e) => tracing::error!("waiting for a signal: {e}"),
    }
    drop(loaded);
    ExitCode::SUCCESS
}

fn entry(code: u8, action: Value) -> Entry {
    let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    Entry { command: "secrets load".into(), args, exit_code: i32::from(code), actions: vec![action] }
}

fn audited(log: &AuditLog, code: u8, action: Value) -> ExitCode {
    match log.append(&entry(code, action)) {
        Ok(_) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qilin-secrets: exit code {code}, but its audit entry failed: {e}");
            ExitCode::from(5)
        }
    }
}

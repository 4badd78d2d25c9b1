//! `qilin-secrets`: loads the feed's secrets (CTP accounts, NATS credentials, rate-limit tokens)
//! from a dotenv file, a directory of secret files or the environment, runs the same checks as
//! `qilinctl validate-env`, optionally shreds the runtime file, records what it did in the audit
//! log (key names only), then holds the secrets until SIGTERM or SIGINT. With `--core-socket` it
//! hands the CTP credentials to the core over its control socket (peer uid checked both ways) and
//! again whenever the core asks (it restarted); with `--watch` it rotates them when the source
//! changes: validate → failover → re-login → failback → verify health from the segment, every step
//! audited; a failure after the failover puts the previous credentials back on the primary and fails
//! back (retried with a growing delay until it can), and the rotation's state and counters go to the
//! status file `<segment>.sidecars/secrets.json` (see `qilin_sidecar::secrets::rotate` and
//! docs/SIDECARS.md).
//!
//! Exit codes: 0 stopped by a signal after a clean load; 1 the secrets have problems (each printed
//! with its key, never the value; nothing shredded); 2 the source cannot be read, or shredding
//! failed, or the arguments do not fit together; 4 the audit log cannot be written (nothing
//! loaded); 5 the outcome could not be audited; 6 the core's control socket is served by another
//! uid, or the core refused the credentials (nothing more is sent).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use nix::sys::{
    signal::{SigSet, Signal},
    signalfd::{SfdFlags, SignalFd},
};
use qilin_audit::{self as audit, AuditLog, Entry};
use qilin_sidecar::secrets::{
    self, Profile, Source,
    handoff::{CoreLink, LinkError},
    rotate::{Holder, HolderConfig},
    status::Status,
};
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
    #[arg(long, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["sim", "live"]), |s| s.parse::<qilin_market::secrets::Profile>().expect("a listed value")), default_value_t = Profile::Live)]
    profile: Profile,
    /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
    /// ~/.local/state/qilin/audit.jsonl].
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// The core's control socket: hand the CTP credentials over there (and again when it restarts).
    #[arg(long)]
    core_socket: Option<PathBuf>,
    /// The uid the core runs as; a socket served by any other uid gets nothing [default: this uid].
    #[arg(long)]
    core_uid: Option<u32>,
    /// Watch --source for changes and rotate: validate, failover, re-login, failback, verify.
    #[arg(long, requires = "source", conflicts_with = "shred_source")]
    watch: bool,
    /// How often the watched source is read, and the core's sessions checked.
    #[arg(long, default_value_t = 500)]
    watch_interval_ms: u64,
    /// The segment read to verify health after a rotation [default: /dev/shm/qilin].
    #[arg(long, default_value = "/dev/shm/qilin")]
    segment: PathBuf,
    /// After a failback, the primary must publish ticks again within this long.
    #[arg(long, default_value_t = 5000)]
    health_within_ms: u64,
    /// How long one request to the core may take (a relogin waits for the broker's answer).
    #[arg(long, default_value_t = 15_000)]
    core_timeout_ms: u64,
    /// A changed source is taken only once it has read the same for this long (a file written in
    /// place, not renamed, can be read half-written).
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// First delay before a failed rotation or an unfinished recovery is tried again; doubled after
    /// each failure.
    #[arg(long, default_value_t = 1000)]
    retry_initial_ms: u64,
    /// The longest delay between two attempts.
    #[arg(long, default_value_t = 60_000)]
    retry_max_ms: u64,
}

fn main() -> ExitCode {
    qilin_sidecar::process::init_logging("info");
    // This process holds every credential of the feed: keep them out of core dumps and ptrace by
    // other processes of the same uid.
    qilin_sidecar::process::disable_core_dumps();
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
        match secrets::shred(path, loaded.file_identity) {
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
    let link = args.core_socket.as_ref().map(|path| {
        let uid = args.core_uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        CoreLink::new(path, uid, Duration::from_millis(args.core_timeout_ms))
    });
    let config = HolderConfig {
        source,
        profile: args.profile,
        segment: args.segment.clone(),
        health_within: Duration::from_millis(args.health_within_ms),
        watch: args.watch,
        settle: Duration::from_millis(args.settle_ms),
        retry_initial: Duration::from_millis(args.retry_initial_ms),
        retry_max: Duration::from_millis(args.retry_max_ms.max(args.retry_initial_ms)),
    };
    // The rotation's state goes to the status file beside the segment (only when watching: without
    // --watch there is no rotation to report).
    let status_file = args.watch.then(|| qilin_market::status::StatusFile::new(&args.segment, "secrets"));
    let status_file = match status_file {
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => {
            tracing::warn!(segment = %args.segment.display(), error = %e, "no status file: cannot create its directory");
            None
        }
        None => None,
    };
    let mut holder = Holder::new(config, link.clone(), log, loaded, Status::new(status_file));
    if link.is_some() {
        match holder.hand_over_all("start") {
            Ok(n) => tracing::info!(sessions = n, "credentials handed to the core"),
            Err(e @ LinkError::Unreachable { .. }) => {
                tracing::warn!(error = %e, "the core is not up yet; credentials are handed over when it is")
            }
            Err(e) => {
                eprintln!("qilin-secrets: {e}");
                return ExitCode::from(6);
            }
        }
    }
    let signals = match SignalFd::with_flags(&stop, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("qilin-secrets: signalfd: {e}");
            return ExitCode::from(2);
        }
    };
    let interval = Duration::from_millis(args.watch_interval_ms.max(10));
    loop {
        match signals.read_signal() {
            Ok(Some(info)) => {
                tracing::info!(signal = info.ssi_signo, "stop signal: dropping the secrets and stopping");
                break;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!("reading signals: {e}");
                break;
            }
        }
        if let Some(outcome) = holder.poll() {
            tracing::info!(?outcome, "rotation finished");
        }
        std::thread::sleep(interval);
    }
    drop(holder);
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

//! `qilinctl`: look at a running feed through its segment (read-only; never links the core), send
//! the core operations over its control socket (speaking its JSON-lines protocol, still without
//! linking it), and read the audit log those operations write.
//!
//! Exit codes of the segment commands: 0 ok; 2 the segment is missing, unreadable or of another
//! layout; 3 the writer is stale (heartbeat older than `--stale-ms`) or stopped.
//!
//! Exit codes of the operations (`subscribe`, `unsubscribe`, `shutdown`; each appends one audit
//! entry carrying this code): 0 the core accepted every request; 1 the core refused one (its reply
//! says why); 2 the core could not be reached or did not answer; 4 the audit log cannot be written,
//! so nothing was sent; 5 the operation was done but its audit entry could not be written.
//!
//! `audit verify`: 0 the chain is intact, 1 tampered (every problem is printed with its line), 2 the
//! log cannot be read. `audit show`: 0, or 2 when the log cannot be read.
//!
//! Journal commands (docs/CSV.md): `export --csv`, `quality`: 0 done, 2 the journal or the CSV could
//! not be read or written. `import --csv` (audited): 0 imported, 2 nothing imported (a bad row, a
//! journal that would be overwritten, …), 4 the audit log cannot be written so nothing was done, 5
//! imported but not audited. `replay` (audited when it starts): 2 the journal is missing or damaged
//! or `qilin-core` cannot be run, 4 the audit log cannot be written; otherwise qilinctl becomes the
//! core (exec) and the exit code is the core's.
//!
//! `validate-env` (audited): 0 the secrets are clean for the profile, 1 problems (every one printed
//! with its key and reason, never a value), 2 the source cannot be read, 4 the audit log cannot be
//! written so nothing was checked, 5 checked but not audited.
//!
//! `keys` (managed keys, docs/KEYS.md): 0 done, 1 `keys verify` refused the token, 2 the key store
//! cannot be used (nothing changed), 4 the audit log cannot be written so nothing was done, 5 done
//! but not audited.

use std::{
    io::{BufRead, BufReader, Write},
    ops::RangeInclusive,
    os::unix::{net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Args as ClapArgs, Parser, Subcommand};
use qilin_shm::{Liveness, Next, Reader, Start, TickRecord, layout};
use qilin_tools::{
    TICK_HEADER,
    audit::{self, AuditLog, Entry},
    exchange_name,
    journal_cli::{self, ImportOptions, JournalSel, parse_days},
    products::Products,
    quality_report::{self, QualityOptions},
    replay, secrets, sidecars_json, status_json, tick_json, tick_row,
};
use serde_json::{Value, json};

/// A sidecar whose status file is older than this is shown as not running.
const SIDECAR_STALE_NS: i64 = 2_000_000_000;

#[derive(Debug, Parser)]
#[command(version, about = "Inspect a qilin-feed segment, operate its core (audited), verify the audit log")]
struct Args {
    /// Segment file [default: /dev/shm/qilin]. `replay` writes into it (required there); `quality`
    /// reads its reject counters when given.
    #[arg(long, global = true)]
    segment: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Header, epoch, sequence, rate, heartbeat age, counters and rejects by reason.
    Status {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Heartbeat age beyond which the writer counts as stale (exit 3).
        #[arg(long, default_value_t = 1000)]
        stale_ms: u64,
    },
    /// Follow ticks as they are published; prints gaps and restarts.
    Tail {
        /// Where to start: oldest, newest, or a sequence number.
        #[arg(long, default_value = "newest")]
        from: String,
        /// Only these instruments (repeatable).
        #[arg(long)]
        instrument: Vec<String>,
        /// JSON lines with CTP field names instead of a table.
        #[arg(long)]
        json: bool,
        /// Stop after this many ticks (default: follow forever).
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long without a tick, in ms (default: wait forever).
        #[arg(long)]
        idle_exit_ms: Option<u64>,
    },
    /// The instrument directory with each instrument's last value.
    Instruments {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every instrument's last value (consistent per instrument), as a table or JSON lines.
    Snapshot {
        /// JSON lines with CTP field names instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Layout version, fingerprint and every shared struct's field offsets and sizes.
    Layout {
        /// Machine-readable JSON (what foreign-language readers check themselves against).
        #[arg(long, conflicts_with = "c_header")]
        json: bool,
        /// The C header `qilin_shm.h` generated from the Rust definitions.
        #[arg(long)]
        c_header: bool,
    },
    /// Admit instruments into the directory (control socket `subscribe ID`; audited).
    Subscribe {
        /// InstrumentIDs, e.g. rb2605.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Stop publishing instruments (control socket `unsubscribe ID`; audited).
    Unsubscribe {
        /// InstrumentIDs, e.g. rb2605.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Stop the core cleanly (control socket `shutdown`; audited).
    Shutdown {
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Switch the feed to the backup account's session (control socket `failover`; audited). The
    /// backup must be logged in; ticks of both sessions are taken, deduplicated, during the switch.
    /// A failover on command holds until `failback`.
    Failover {
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Switch the feed back to the primary account's session (control socket `failback`; audited).
    Failback {
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Log a standby session out and in again with its current credentials, waiting for the
    /// broker's answer (control socket `relogin`; audited). Refused for the active session.
    Relogin {
        /// `primary` or `backup`.
        #[arg(value_parser = ["primary", "backup"])]
        session: String,
        #[command(flatten)]
        control: ControlOpts,
    },
    /// Both sessions' state: which is active, logins, failures, disconnects, fronts (control
    /// socket `sessions`; read-only, not audited). Never shows credentials.
    Sessions {
        #[command(flatten)]
        control: ControlOpts,
    },
    /// The audit log of operations: verify its hash chain, show its entries.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Write journal ticks as CSV (format: docs/CSV.md); gap records are counted on stderr.
    Export {
        /// CSV (the only format; required so a later format is a choice, not a surprise).
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        journal: JournalOpts,
        /// Only these instruments (repeatable).
        #[arg(long)]
        instrument: Vec<String>,
        /// Output file (written under a temporary name, renamed when complete) [default: stdout].
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Read a CSV of ticks (ours or a vendor's CTP export) into one journal per trading day (audited).
    Import {
        /// The CSV file.
        #[arg(long, value_name = "IN")]
        csv: PathBuf,
        /// Journal directory to write `<feed>-<YYYYMMDD>.qj` into.
        #[arg(long)]
        journal_dir: PathBuf,
        /// Feed name of the journals.
        #[arg(long)]
        feed: String,
        /// Replace journals that exist for the same days (never one a recorder is writing).
        #[arg(long)]
        force: bool,
        /// The core's product file, used for vendor files (exchange, AveragePrice, stale flags)
        /// [default: config/instruments.toml if it exists].
        #[arg(long)]
        instruments: Option<PathBuf>,
        /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
        /// ~/.local/state/qilin/audit.jsonl].
        #[arg(long)]
        audit_log: Option<PathBuf>,
    },
    /// Verify a journal, then run qilin-core (beside qilinctl) replaying it into --segment (audited).
    Replay {
        #[command(flatten)]
        journal: JournalOpts,
        /// Pace: 0 = as fast as possible, 1.0 = original speed, 2.0 = twice as fast.
        #[arg(long, default_value_t = 0.0)]
        speed: f64,
        /// The core's control socket [default: the core's, /tmp/qilin-FEED.sock].
        #[arg(long)]
        control_socket: Option<PathBuf>,
        /// A core config file to start from (command-line values override it).
        #[arg(long)]
        core_config: Option<PathBuf>,
        /// The qilin-core binary [default: qilin-core in qilinctl's own directory].
        #[arg(long)]
        core: Option<PathBuf>,
        /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
        /// ~/.local/state/qilin/audit.jsonl].
        #[arg(long)]
        audit_log: Option<PathBuf>,
    },
    /// Check secrets before launch: every problem at once, with its key, never the value (audited).
    ValidateEnv {
        /// sim (no CTP credentials required) or live (accounts required, private files, NATS TLS).
        #[arg(long, value_enum)]
        profile: qilin_tools::secrets::Profile,
        /// A dotenv file or a directory of secret files (one per key) [default: the environment].
        #[arg(long)]
        source: Option<PathBuf>,
        /// The problems as JSON.
        #[arg(long)]
        json: bool,
        /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
        /// ~/.local/state/qilin/audit.jsonl].
        #[arg(long)]
        audit_log: Option<PathBuf>,
    },
    /// Managed keys (NATS and API tokens, signing and encryption keys): list, add, rotate,
    /// history, backup, restore; every change audited (docs/KEYS.md).
    Keys(qilin_tools::keys::cli::KeysArgs),
    /// Data-quality report of a journal, per trading day and instrument (table, or JSON).
    Quality {
        #[command(flatten)]
        journal: JournalOpts,
        /// JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// A silence longer than this many seconds (of trading time when the sessions are known)
        /// is a stale period.
        #[arg(long, default_value_t = 60)]
        stale_after_s: u64,
        /// The core's product file, for trading sessions [default: config/instruments.toml if it
        /// exists; without one every silence counts, session breaks included].
        #[arg(long)]
        instruments: Option<PathBuf>,
    },
}

/// Which journal files: a directory and feed (and days), or one file.
#[derive(Debug, ClapArgs)]
struct JournalOpts {
    /// Journal directory (the recorder's journal_dir).
    #[arg(long, default_value = "journal")]
    journal_dir: PathBuf,
    /// Feed whose journals to read [default: qilin; with --file, replay names the segment's feed
    /// after the file's].
    #[arg(long)]
    feed: Option<String>,
    /// Trading days: YYYYMMDD, YYYYMMDD..YYYYMMDD or all.
    #[arg(long, default_value = "all", value_parser = parse_days)]
    day: RangeInclusive<u32>,
    /// One journal file instead of a directory.
    #[arg(long, conflicts_with_all = ["journal_dir", "day"])]
    file: Option<PathBuf>,
}

impl JournalOpts {
    fn selection(&self) -> JournalSel {
        match &self.file {
            Some(file) => JournalSel::File(file.clone()),
            None => JournalSel::Dir {
                dir: self.journal_dir.clone(),
                feed: self.feed.clone().unwrap_or_else(|| "qilin".into()),
                days: self.day.clone(),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Check the hash chain, the numbering and the head file; name every damaged line.
    Verify {
        /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
        /// ~/.local/state/qilin/audit.jsonl].
        #[arg(long, visible_alias = "audit-log")]
        log: Option<PathBuf>,
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

/// Where the core's control socket and the audit log are.
#[derive(Debug, ClapArgs)]
struct ControlOpts {
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

fn main() -> ExitCode {
    let args = Args::parse();
    let requests = |verb: &str, ids: &[String]| ids.iter().map(|id| format!("{verb} {id}")).collect::<Vec<_>>();
    match &args.command {
        Cmd::Layout { json, c_header } => {
            if *c_header {
                print!("{}", qilin_tools::cheader::c_header());
            } else if *json {
                println!("{}", qilin_tools::layout_json());
            } else {
                print_layout();
            }
            return ExitCode::SUCCESS;
        }
        Cmd::Subscribe { ids, control } => return operate("subscribe", &requests("subscribe", ids), control),
        Cmd::Unsubscribe { ids, control } => return operate("unsubscribe", &requests("unsubscribe", ids), control),
        Cmd::Shutdown { control } => return operate("shutdown", &["shutdown".to_owned()], control),
        Cmd::Failover { control } => return operate("failover", &["failover".to_owned()], control),
        Cmd::Failback { control } => return operate("failback", &["failback".to_owned()], control),
        Cmd::Relogin { session, control } => return operate("relogin", &[format!("relogin {session}")], control),
        Cmd::Sessions { control } => {
            let (code, _) =
                send_requests(&control.socket(), &["sessions".to_owned()], Duration::from_millis(control.timeout_ms));
            return ExitCode::from(code);
        }
        Cmd::Audit { command: AuditCmd::Verify { log, json } } => return audit_verify(log.as_deref(), *json),
        Cmd::Audit { command: AuditCmd::Show { log, json, last } } => return audit_show(log.as_deref(), *json, *last),
        Cmd::Export { csv, journal, instrument, output } => {
            return export(*csv, journal, instrument, output.as_deref());
        }
        Cmd::Import { csv, journal_dir, feed, force, instruments, audit_log } => {
            return import(csv, journal_dir, feed, *force, instruments.as_deref(), audit_log.as_deref());
        }
        Cmd::Replay { journal, speed, control_socket, core_config, core, audit_log } => {
            let Some(segment) = &args.segment else {
                eprintln!("qilinctl: replay needs --segment: the segment the replaying core writes");
                return ExitCode::from(2);
            };
            let core_opts = CoreOpts {
                segment,
                speed: *speed,
                control_socket: control_socket.as_deref(),
                core_config: core_config.as_deref(),
                core: core.as_deref(),
            };
            return replay_cmd(journal, &core_opts, audit_log.as_deref());
        }
        Cmd::ValidateEnv { profile, source, json, audit_log } => {
            return validate_env(*profile, source.as_deref(), *json, audit_log.as_deref());
        }
        Cmd::Keys(keys) => return qilin_tools::keys::cli::run(keys),
        Cmd::Quality { journal, json, stale_after_s, instruments } => {
            return quality(journal, *json, *stale_after_s, instruments.as_deref(), args.segment.as_deref());
        }
        _ => {}
    }
    let segment = args.segment.clone().unwrap_or_else(|| PathBuf::from("/dev/shm/qilin"));
    let reader = match Reader::open(&segment) {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!("qilinctl: {e}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Cmd::Status { json, stale_ms } => status(&reader, json, stale_ms),
        Cmd::Tail { from, instrument, json, count, idle_exit_ms } => {
            tail(reader, &from, &instrument, json, count, idle_exit_ms)
        }
        Cmd::Instruments { json } => instruments(&reader, json),
        Cmd::Snapshot { json } => snapshot(&reader, json),
        Cmd::Layout { .. }
        | Cmd::Subscribe { .. }
        | Cmd::Unsubscribe { .. }
        | Cmd::Shutdown { .. }
        | Cmd::Failover { .. }
        | Cmd::Failback { .. }
        | Cmd::Relogin { .. }
        | Cmd::Sessions { .. }
        | Cmd::Audit { .. }
        | Cmd::Export { .. }
        | Cmd::Import { .. }
        | Cmd::Replay { .. }
        | Cmd::ValidateEnv { .. }
        | Cmd::Keys(_)
        | Cmd::Quality { .. } => unreachable!("handled above"),
    }
}

/// Sends `requests` to the core and appends one audit entry with the outcome. The log is opened
/// first: an operation that could not be audited is not done.
fn operate(command: &str, requests: &[String], opts: &ControlOpts) -> ExitCode {
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
    let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let entry = Entry { command: command.to_owned(), args, exit_code: i32::from(code), actions };
    match log.append(&entry) {
        Ok(_) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qilinctl: {command} was done (exit code {code}) but its audit entry failed: {e}");
            ExitCode::from(5)
        }
    }
}

fn export(csv: bool, journal: &JournalOpts, instruments: &[String], output: Option<&Path>) -> ExitCode {
    if !csv {
        eprintln!("qilinctl: export needs --csv (the only format)");
        return ExitCode::from(2);
    }
    let sel = journal.selection();
    let result = match output {
        Some(path) if path != Path::new("-") => journal_cli::export_to_file(&sel, instruments, path),
        _ => {
            journal_cli::export(&sel, instruments, std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))
        }
    };
    match result {
        Ok(report) => {
            for note in &report.notes {
                eprintln!("qilinctl: {note}");
            }
            eprintln!(
                "qilinctl: exported {} ticks from {} journal file(s){}{}",
                report.ticks,
                report.files,
                if report.filtered > 0 {
                    format!(", {} of other instruments left out", report.filtered)
                } else {
                    String::new()
                },
                if report.gaps > 0 {
                    format!(
                        "; {} gap record(s) covering {} sequences are not in the CSV (the sequence column skips them)",
                        report.gaps, report.gap_sequences
                    )
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qilinctl: export: {e}");
            ExitCode::from(2)
        }
    }
}

fn open_audit(path: Option<&Path>, what: &str) -> Result<AuditLog, ExitCode> {
    let log_path = audit::resolve_path(path);
    AuditLog::open(&log_path).map_err(|e| {
        eprintln!("qilinctl: {e}; {what} not done (operations that cannot be audited are refused)");
        ExitCode::from(4)
    })
}

fn audit_entry(log: &AuditLog, command: &str, code: u8, actions: Vec<Value>) -> ExitCode {
    let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    match log.append(&Entry { command: command.to_owned(), args, exit_code: i32::from(code), actions }) {
        Ok(_) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qilinctl: {command} was done (exit code {code}) but its audit entry failed: {e}");
            ExitCode::from(5)
        }
    }
}

/// `validate-env`: loads the source, prints every problem (key and reason, never a value) and
/// records the outcome (problem keys and reasons, no value) in the audit log.
fn validate_env(profile: secrets::Profile, source: Option<&Path>, json: bool, audit_log: Option<&Path>) -> ExitCode {
    let log = match open_audit(audit_log, "nothing checked") {
        Ok(log) => log,
        Err(code) => return code,
    };
    let source = source.map_or(secrets::Source::Env, secrets::Source::from_path);
    let mut action = json!({"profile": profile.as_str(), "source": source.to_string()});
    let (problems, keys) = match secrets::check(&source, profile) {
        Ok((loaded, problems)) => (problems, loaded.keys().map(str::to_owned).collect::<Vec<_>>()),
        Err(e) => {
            eprintln!("qilinctl: validate-env: {e}");
            action["error"] = json!(e.to_string());
            return audit_entry(&log, "validate-env", 2, vec![action]);
        }
    };
    if json {
        println!(
            "{}",
            json!({"profile": profile.as_str(), "source": source.to_string(), "keys": keys, "problems": problems})
        );
    } else if problems.is_empty() {
        println!("{source}: clean for the {profile} profile ({} keys: {})", keys.len(), keys.join(", "));
    } else {
        for problem in &problems {
            println!("{problem}");
        }
        eprintln!("qilinctl: validate-env: {} problem(s) in {source} for the {profile} profile", problems.len());
    }
    action["keys"] = json!(keys);
    action["problems"] = json!(problems);
    audit_entry(&log, "validate-env", if problems.is_empty() { 0 } else { 1 }, vec![action])
}

fn import(
    input: &Path,
    dir: &Path,
    feed: &str,
    force: bool,
    instruments: Option<&Path>,
    audit_log: Option<&Path>,
) -> ExitCode {
    let log = match open_audit(audit_log, "nothing imported") {
        Ok(log) => log,
        Err(code) => return code,
    };
    let products = match Products::find(instruments) {
        Ok(products) => products,
        Err(e) => {
            eprintln!("qilinctl: import: {e}");
            return audit_entry(&log, "import", 2, vec![json!({"error": e})]);
        }
    };
    let options = ImportOptions {
        input: input.to_owned(),
        dir: dir.to_owned(),
        feed: feed.to_owned(),
        force,
        products: products.clone(),
    };
    let report = match journal_cli::import(&options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("qilinctl: import: {e}; nothing was written");
            return audit_entry(
                &log,
                "import",
                2,
                vec![json!({"input": input.display().to_string(), "error": e.to_string()})],
            );
        }
    };
    let d = &report.derived;
    if d.vendor {
        eprintln!(
            "qilinctl: {} has no quality column: read as a vendor CTP export, normalized as the core does{}",
            input.display(),
            match &products {
                Some(p) => format!(
                    " (products from {}; {} row(s) of unknown products)",
                    p.path.display(),
                    d.rows_without_product
                ),
                None => " (no product file: ExchangeID, AveragePrice and stale flags as the file gives them)".into(),
            }
        );
    }
    if !d.missing.is_empty() {
        eprintln!("qilinctl: columns derived or left empty (docs/CSV.md): {}", d.missing.join(","));
    }
    if let Some(why) = &report.renumbered_because {
        eprintln!("qilinctl: {why}");
    }
    let journals: Vec<Value> = report
        .days
        .iter()
        .map(|day| {
            eprintln!(
                "qilinctl: wrote {} ({} ticks, sequences {}..={})",
                day.path.display(),
                day.ticks,
                day.sequences.0,
                day.sequences.1
            );
            json!({"file": day.path.display().to_string(), "trading_day": day.trading_day, "ticks": day.ticks,
                   "first_sequence": day.sequences.0, "last_sequence": day.sequences.1})
        })
        .collect();
    let action = json!({
        "input": input.display().to_string(),
        "rows": report.rows,
        "vendor_format": d.vendor,
        "sequences": if report.kept_sequences { "kept" } else { "renumbered" },
        "journals": journals,
        "replaced": report.replaced.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    audit_entry(&log, "import", 0, vec![action])
}

/// How to run the replaying core.
struct CoreOpts<'a> {
    segment: &'a Path,
    speed: f64,
    control_socket: Option<&'a Path>,
    core_config: Option<&'a Path>,
    core: Option<&'a Path>,
}

fn replay_cmd(journal: &JournalOpts, opts: &CoreOpts<'_>, audit_log: Option<&Path>) -> ExitCode {
    let sel = journal.selection();
    let plan = match replay::plan(&sel) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("qilinctl: replay: {e}");
            return ExitCode::from(2);
        }
    };
    let core = match opts.core.map(Path::to_owned).map_or_else(replay::core_beside_self, Ok) {
        Ok(core) if core.is_file() => core,
        Ok(core) => {
            eprintln!(
                "qilinctl: replay: {} not found (install qilin-core beside qilinctl, or give --core)",
                core.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("qilinctl: replay: {e}");
            return ExitCode::from(2);
        }
    };
    let feed = match (&journal.feed, &sel) {
        (Some(feed), _) => feed.clone(),
        (None, JournalSel::File(_)) => plan.verified[0].1.header.feed.clone(),
        (None, JournalSel::Dir { feed, .. }) => feed.clone(),
    };
    let mut command = std::process::Command::new(&core);
    if let Some(config) = opts.core_config {
        command.arg("--config").arg(config);
    }
    command.arg("--replay").arg(&plan.replay_path).arg("--segment").arg(opts.segment).arg("--feed").arg(&feed);
    command.arg("--replay-speed").arg(opts.speed.to_string());
    if let Some(socket) = opts.control_socket {
        command.arg("--control-socket").arg(socket);
    }
    let argv: Vec<String> = std::iter::once(core.display().to_string())
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let log = match open_audit(audit_log, "replay") {
        Ok(log) => log,
        Err(code) => return code,
    };
    let actions = vec![plan.verified_json(), json!({"exec": argv})];
    let audited = audit_entry(&log, "replay", 0, actions);
    if audited != ExitCode::SUCCESS {
        eprintln!("qilinctl: replay not started: it could not be audited");
        return ExitCode::from(4);
    }
    eprintln!(
        "qilinctl: journal verified ({} ticks in {} file(s)); running {}",
        plan.ticks(),
        plan.verified.len(),
        argv.join(" ")
    );
    let error = command.exec();
    eprintln!("qilinctl: replay: running {}: {error}", core.display());
    audit_entry(&log, "replay", 2, vec![json!({"exec": argv, "error": error.to_string()})]);
    ExitCode::from(2)
}

fn quality(
    journal: &JournalOpts,
    json: bool,
    stale_after_s: u64,
    instruments: Option<&Path>,
    segment: Option<&Path>,
) -> ExitCode {
    let products = match Products::find(instruments) {
        Ok(products) => products,
        Err(e) => {
            eprintln!("qilinctl: quality: {e}");
            return ExitCode::from(2);
        }
    };
    let options = QualityOptions { stale_after_s, products };
    let mut report = match quality_report::report(&journal.selection(), &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("qilinctl: quality: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(segment) = segment {
        match Reader::open(segment) {
            Ok(reader) => report.rejects = quality_report::rejects_from_segment(&reader),
            Err(e) => {
                eprintln!("qilinctl: quality: --segment {}: {e}", segment.display());
                return ExitCode::from(2);
            }
        }
    }
    if json {
        println!("{}", json!(report));
    } else {
        print!("{}", quality_report::render_table(&report));
    }
    ExitCode::SUCCESS
}

/// One connection, one request per line, one JSON reply per line. Each reply is printed; each
/// request becomes an action `{socket, request, reply}` or `{socket, request, error}`. After a
/// transport error the remaining requests are not sent (the connection's state is unknown).
fn send_requests(socket: &Path, requests: &[String], timeout: Duration) -> (u8, Vec<Value>) {
    let action = |request: &str, key: &str, value: Value| json!({"socket": socket.display().to_string(), "request": request, key: value});
    let connected = UnixStream::connect(socket).and_then(|stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let lines = BufReader::new(stream.try_clone()?);
        Ok((stream, lines))
    });
    let (mut stream, mut lines) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            let error = format!("connecting to {}: {e}", socket.display());
            eprintln!("qilinctl: {error}");
            return (2, requests.iter().map(|r| action(r, "error", json!(error))).collect());
        }
    };
    let (mut code, mut actions) = (0u8, Vec::new());
    for (i, request) in requests.iter().enumerate() {
        match ask(&mut stream, &mut lines, request) {
            Ok(reply) => {
                println!("{reply}");
                if reply["ok"] != json!(true) {
                    eprintln!(
                        "qilinctl: the core refused {request:?}: {}",
                        reply["error"].as_str().unwrap_or("no reason")
                    );
                    code = code.max(1);
                }
                actions.push(action(request, "reply", reply));
            }
            Err(error) => {
                eprintln!("qilinctl: {request:?}: {error}");
                actions.push(action(request, "error", json!(error)));
                for rest in &requests[i + 1..] {
                    actions.push(action(rest, "error", json!("not sent: an earlier request failed")));
                }
                return (2, actions);
            }
        }
    }
    (code, actions)
}

fn ask(stream: &mut UnixStream, lines: &mut BufReader<UnixStream>, request: &str) -> Result<Value, String> {
    writeln!(stream, "{request}").map_err(|e| format!("sending: {e}"))?;
    let mut line = String::new();
    match lines.read_line(&mut line) {
        Ok(0) => Err("the core closed the connection without a reply".to_owned()),
        Ok(_) => serde_json::from_str(&line).map_err(|e| format!("reply {:?} is not JSON: {e}", line.trim_end())),
        Err(e) => Err(format!("reading the reply: {e}")),
    }
}

fn audit_verify(log: Option<&Path>, json: bool) -> ExitCode {
    let path = audit::resolve_path(log);
    let report = match audit::verify(&path) {
        Ok(report) => report,
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
            println!("{}: {} entries, chain intact, head at seq {}", path.display(), report.lines, report.last_seq);
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

fn status(reader: &Reader, json: bool, stale_ms: u64) -> ExitCode {
    let stale_ns = stale_ms as i64 * 1_000_000;
    let before = reader.write_cursor();
    std::thread::sleep(Duration::from_millis(200));
    let rate = (reader.write_cursor() - before) * 5;
    // After the rate sample: a `now` from before it made the heartbeat look 200 ms in the future.
    let now = qilin_shm::now_ns();
    let mut value = status_json(reader, now, stale_ns);
    value["rate_per_s"] = serde_json::json!(rate);
    value["sidecars"] = sidecars_json(reader.path(), now, SIDECAR_STALE_NS.max(stale_ns));
    if json {
        println!("{value}");
    } else {
        println!("segment      {}", value["segment"].as_str().unwrap_or(""));
        println!(
            "feed         {}  (layout v{}, fingerprint {})",
            value["feed"], value["layout_version"], value["fingerprint"]
        );
        println!("capacity     {} slots, {} instruments", value["ring_slots"], value["instrument_capacity"]);
        println!(
            "writer       pid {}  epoch {}  state {}  {}",
            value["writer_pid"], value["epoch"], value["run_state"], value["liveness"]
        );
        println!("heartbeat    {:.1} ms ago", value["heartbeat_age_ms"].as_f64().unwrap_or(f64::NAN));
        println!("sequence     {}  ({rate} ticks/s)", value["write_cursor"]);
        println!("instruments  {}", value["instruments"]);
        let link = &value["link"];
        if link.is_object() && link["state"] != "idle" {
            println!(
                "link         {}  active session {}  front {}  trading day {}  failovers {}  api {}",
                link["state"].as_str().unwrap_or("?"),
                link["active_source"].as_str().unwrap_or("none"),
                link["front"].as_str().filter(|f| !f.is_empty()).unwrap_or("-"),
                link["trading_day"],
                link["failovers"],
                link["api_version"].as_str().filter(|f| !f.is_empty()).unwrap_or("-"),
            );
        }
        if let Some(counters) = value["counters"].as_object() {
            for (name, v) in counters.iter().filter(|(_, v)| v.as_u64() != Some(0)) {
                println!("  {name:<28} {v}");
            }
        }
        for sc in value["sidecars"].as_array().into_iter().flatten() {
            if let Some(error) = sc["error"].as_str() {
                println!("sidecar      {}  unreadable status: {error}", sc["instance"].as_str().unwrap_or("?"));
                continue;
            }
            println!(
                "sidecar      {} ({}) pid {}  position {}  lag {} ticks / {:.1} ms  {}  {} (status {:.0} ms old){}",
                sc["instance"].as_str().unwrap_or("?"),
                sc["sidecar"].as_str().unwrap_or("?"),
                sc["pid"],
                sc["position"],
                sc["lag_sequences"],
                sc["lag_ns"].as_f64().unwrap_or(0.0) / 1e6,
                if sc["connected"] == false { "DISCONNECTED" } else { "connected" },
                if sc["alive"] == true { "alive" } else { "NOT RUNNING" },
                sc["age_ms"].as_f64().unwrap_or(f64::NAN),
                sc["last_error"].as_str().map(|e| format!("  last error: {e}")).unwrap_or_default(),
            );
        }
    }
    match reader.liveness(now, stale_ns) {
        Liveness::Live { .. } => ExitCode::SUCCESS,
        Liveness::Stale { age_ns } => {
            eprintln!("qilinctl: writer is stale: last heartbeat {:.0} ms ago", age_ns as f64 / 1e6);
            ExitCode::from(3)
        }
        Liveness::Stopped { .. } => {
            eprintln!("qilinctl: writer stopped");
            ExitCode::from(3)
        }
    }
}

fn tail(
    mut reader: Reader,
    from: &str,
    instruments: &[String],
    json: bool,
    count: Option<u64>,
    idle_exit_ms: Option<u64>,
) -> ExitCode {
    let start = match from {
        "oldest" => Start::Oldest,
        "newest" => Start::Newest,
        seq => match seq.parse() {
            Ok(seq) => Start::Sequence(seq),
            Err(_) => {
                eprintln!("qilinctl: --from {seq:?}: expected oldest, newest or a sequence number");
                return ExitCode::from(2);
            }
        },
    };
    reader.seek(start);
    if !json {
        println!("{TICK_HEADER}");
    }
    let mut out = TickRecord::ZERO;
    let (mut printed, mut last_tick) = (0u64, std::time::Instant::now());
    loop {
        match reader.try_next(&mut out) {
            Next::Tick => {
                last_tick = std::time::Instant::now();
                if !instruments.is_empty() && !instruments.iter().any(|i| Some(i.as_str()) == out.instrument_id_str()) {
                    continue;
                }
                if json {
                    println!("{}", tick_json(&out));
                } else {
                    println!("{}", tick_row(&out));
                }
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    return ExitCode::SUCCESS;
                }
            }
            Next::Gap { first, last } => {
                if json {
                    println!("{}", serde_json::json!({"gap": {"first": first, "last": last}}));
                } else {
                    println!("-- gap: sequences {first}..={last} lost ({} ticks)", last - first + 1);
                }
            }
            Next::NewEpoch { previous, current } => {
                if json {
                    println!("{}", serde_json::json!({"epoch": {"previous": previous, "current": current}}));
                } else {
                    println!("-- writer restarted: epoch {previous} -> {current}");
                }
            }
            Next::Empty => {
                if idle_exit_ms.is_some_and(|ms| last_tick.elapsed() >= Duration::from_millis(ms)) {
                    return ExitCode::SUCCESS;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

fn instruments(reader: &Reader, json: bool) -> ExitCode {
    let mut out = TickRecord::ZERO;
    for (index, entry) in reader.instruments().iter().enumerate() {
        let has = reader.latest(index as u32, &mut out).unwrap_or(false);
        let id = entry.instrument_id_str().unwrap_or("?");
        if json {
            let last = if has { tick_json(&out) } else { serde_json::Value::Null };
            let line = serde_json::json!({
                "index": index, "InstrumentID": id, "ExchangeID": exchange_name(entry.exchange),
                "VolumeMultiple": entry.volume_multiple, "PriceTick": entry.price_tick, "last": last,
            });
            println!("{line}");
        } else if has {
            println!(
                "{index:>5} {id:<10} {:<5} x{:<5} {}",
                exchange_name(entry.exchange),
                entry.volume_multiple,
                tick_row(&out)
            );
        } else {
            println!(
                "{index:>5} {id:<10} {:<5} x{:<5} (no tick yet)",
                exchange_name(entry.exchange),
                entry.volume_multiple
            );
        }
    }
    ExitCode::SUCCESS
}

fn snapshot(reader: &Reader, json: bool) -> ExitCode {
    let snapshot = match reader.snapshot() {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("qilinctl: {e}");
            return ExitCode::from(2);
        }
    };
    if !json {
        println!("{TICK_HEADER}");
    }
    for tick in &snapshot.ticks {
        if json {
            println!("{}", tick_json(tick));
        } else {
            println!("{}", tick_row(tick));
        }
    }
    if !json {
        println!(
            "-- {} instruments with a last value, consistent as of sequence {}",
            snapshot.ticks.len(),
            snapshot.as_of
        );
    }
    ExitCode::SUCCESS
}

fn print_layout() {
    println!("layout version {}  fingerprint {:#018x}", layout::LAYOUT_VERSION, layout::FINGERPRINT);
    for s in layout::STRUCTS {
        println!("\n{} ({} bytes)", s.name, s.size);
        for f in s.fields {
            println!("  {:>5} {:>4}  {}", f.offset, f.size, f.name);
        }
    }
    println!("\ncounters (header counter block, u64 each):");
    for (i, name) in qilin_shm::Counter::NAMES.iter().enumerate() {
        println!("  {i:>3}  {name}");
    }
}

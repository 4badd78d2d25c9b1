//! `qilinctl`: look at a running feed through its segment (read-only; never links the core), send
//! the core operations over its control socket (speaking its JSON-lines protocol, still without
//! linking it), and read the audit log those operations write.
//!
//! This file holds the top-level clap definitions and the dispatch; the commands are in `cli/`, one
//! module per group, each stating its exit codes: `segment` (status, tail, instruments, snapshot,
//! layout), `control` (subscribe, unsubscribe, shutdown, failover, failback, relogin, sessions) over
//! `control_client`, `audit` (verify, show), `journal` (export, import, replay, quality),
//! `validate_env`; `audited` records operations in the audit log.
//!
//! `keys` (managed keys, docs/KEYS.md, implemented in the library): 0 done, 1 `keys verify` refused
//! the token, 2 the key store cannot be used (nothing changed), 4 the audit log cannot be written so
//! nothing was done, 5 done but not audited.

mod cli;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use cli::{
    audit::AuditCmd,
    control::{self, ControlOpts},
    journal::{self, CoreOpts, JournalOpts},
    products::ProductsCmd,
    segment, validate_env,
};
use qilin_market::control::{Request, Which};

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
        /// Only instruments whose product is not in the core's product table (admitted with
        /// `unknown_products = "admit"`: their last tick carries `unknown_product`).
        #[arg(long)]
        unknown: bool,
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
    /// Write journal ticks as CSV (docs/CSV.md) or Parquet (docs/PARQUET.md); gap records are
    /// counted on stderr.
    Export {
        /// CSV, to --output or stdout.
        #[arg(long, required_unless_present = "parquet", conflicts_with = "parquet")]
        csv: bool,
        /// Parquet, one file per trading day: --output FILE for one day, --output DIR (an existing
        /// directory) for `DIR/<feed>-<YYYYMMDD>.parquet` per day.
        #[arg(long)]
        parquet: bool,
        #[command(flatten)]
        journal: JournalOpts,
        /// Only these instruments (repeatable).
        #[arg(long)]
        instrument: Vec<String>,
        /// Output file, or with --parquet a directory (each file written under a temporary name,
        /// renamed when complete) [default for --csv: stdout].
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
        #[arg(long, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["sim", "live"]), |s| s.parse::<qilin_market::secrets::Profile>().expect("a listed value")))]
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
    /// The product table: `import` it from a CTP instrument query (audited), `check` a journal
    /// or a segment for instruments it lacks (docs/PRODUCTS.md).
    Products {
        #[command(subcommand)]
        command: ProductsCmd,
    },
    /// The trading calendar: `check` loads it as the core does and names the years the feed needs
    /// but has no file for (docs/CALENDAR.md).
    Calendar {
        #[command(subcommand)]
        command: CalendarCmd,
    },
}

#[derive(Debug, Subcommand)]
enum CalendarCmd {
    /// Validate `config/calendar/` (or `--dir`), print each year's trading days, holidays and
    /// evenings without a night session; exit 1 when this year (or, in December, the next) is missing.
    Check {
        /// The calendar directory [default: config/calendar].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Cmd::Layout { json, c_header } => return segment::layout(*json, *c_header),
        Cmd::Subscribe { ids, control } => {
            return control::operate(
                "subscribe",
                &ids.iter().map(|id| Request::Subscribe(id)).collect::<Vec<_>>(),
                control,
            );
        }
        Cmd::Unsubscribe { ids, control } => {
            return control::operate(
                "unsubscribe",
                &ids.iter().map(|id| Request::Unsubscribe(id)).collect::<Vec<_>>(),
                control,
            );
        }
        Cmd::Shutdown { control } => return control::operate("shutdown", &[Request::Shutdown], control),
        Cmd::Failover { control } => return control::operate("failover", &[Request::Failover], control),
        Cmd::Failback { control } => return control::operate("failback", &[Request::Failback], control),
        Cmd::Relogin { session, control } => {
            return control::operate(
                "relogin",
                &[Request::Relogin(Which::parse(session).expect("clap took primary or backup"))],
                control,
            );
        }
        Cmd::Sessions { control } => return control::sessions(control),
        Cmd::Audit { command } => return cli::audit::run(command),
        Cmd::Export { csv, parquet, journal, instrument, output } => {
            if *parquet {
                return journal::export_parquet(journal, instrument, output.as_deref());
            }
            return journal::export(*csv, journal, instrument, output.as_deref());
        }
        Cmd::Import { csv, journal_dir, feed, force, instruments, audit_log } => {
            return journal::import(csv, journal_dir, feed, *force, instruments.as_deref(), audit_log.as_deref());
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
            return journal::replay_cmd(journal, &core_opts, audit_log.as_deref());
        }
        Cmd::ValidateEnv { profile, source, json, audit_log } => {
            return validate_env::validate_env(*profile, source.as_deref(), *json, audit_log.as_deref());
        }
        Cmd::Keys(keys) => return qilin_tools::keys::cli::run(keys),
        Cmd::Quality { journal, json, stale_after_s, instruments } => {
            return journal::quality(journal, *json, *stale_after_s, instruments.as_deref(), args.segment.as_deref());
        }
        Cmd::Products { command } => return cli::products::run(command, args.segment.as_deref()),
        Cmd::Calendar { command: CalendarCmd::Check { dir, json } } => {
            return cli::calendar::check(dir.as_deref(), *json);
        }
        _ => {}
    }
    let reader = match segment::open(args.segment.as_deref()) {
        Ok(reader) => reader,
        Err(code) => return code,
    };
    match args.command {
        Cmd::Status { json, stale_ms } => segment::status(&reader, json, stale_ms),
        Cmd::Tail { from, instrument, json, count, idle_exit_ms } => {
            segment::tail(reader, &from, &instrument, json, count, idle_exit_ms)
        }
        Cmd::Instruments { json, unknown } => segment::instruments(&reader, json, unknown),
        Cmd::Snapshot { json } => segment::snapshot(&reader, json),
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
        | Cmd::Quality { .. }
        | Cmd::Products { .. }
        | Cmd::Calendar { .. } => unreachable!("handled above"),
    }
}

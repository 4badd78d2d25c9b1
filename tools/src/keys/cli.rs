//! `qilinctl keys`: list, add, rotate, history, show, verify, backup and restore managed keys
//! (docs/KEYS.md). Every change (add, rotate, retire, reveal, backup, restore) appends an audit
//! entry naming the key and versions and the outcome, never material; the audit log is opened
//! first, so a change that could not be audited is not made.
//!
//! Every successful audited entry also records the store's id and the generation it wrote or read
//! (`store_id`, `store_generation`): that is the witness ([`super::witness`]) against which every
//! command checks the store it opens, so an older copy put in place of the store is refused.
//!
//! Exit codes: 0 done; 1 `verify` refused the token; 2 the store cannot be used (master key
//! missing or wrong, store tampered with or corrupt, unknown key, I/O) and nothing was changed;
//! 4 the audit log cannot be written, so nothing was done; 5 done but not audited; 6 (`rotate
//! --schedule-out`) done and audited, but the schedule file could not be written; 7 (`render-nats
//! --reload-pid-file`) rendered and audited, but nats-server could not be signalled.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

use clap::{Args, Subcommand};
use qilin_market::secrets::schedule::{self, KeyDue, KeySchedule};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{
    KeyError, KeyType, MasterKey, Rotation, State, Store, Verdict, Witness, backup,
    crypto::{self, KdfParams},
    model::{CreatedBy, KeyEntry, Retirement, VersionEntry},
    plan::Plan,
    render, store,
};
use crate::audit::{self, AuditLog, Entry};

/// `qilinctl keys …`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Key store [default: $QILIN_KEY_STORE, else keys.json beside the default audit log:
    /// $XDG_STATE_HOME/qilin/keys.json, else ~/.local/state/qilin/keys.json].
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Audit log [default: $QILIN_AUDIT_LOG, else $XDG_STATE_HOME/qilin/audit.jsonl, else
    /// ~/.local/state/qilin/audit.jsonl].
    #[arg(long, global = true)]
    audit_log: Option<PathBuf>,
    /// The current time in Unix seconds instead of the clock (tests of the schedule).
    #[arg(long, global = true, hide = true)]
    now_unix_s: Option<i64>,
    #[command(subcommand)]
    command: KeysCmd,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Every key: type, active version, its age, when it is next due, versions per state.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a key with fresh random material as version 1 (creates the store if missing; audited).
    Add {
        /// Key name: lowercase letters, digits, '-', '_', '.' (nats-token, audit-signing, …).
        name: String,
        /// api (90 days), encryption (180 days) or signing (60 days); jwt and database are refused
        /// with the reason (docs/KEYS.md).
        #[arg(long = "type", value_parser = KeyType::parse)]
        key_type: KeyType,
        /// Rotation period in days [default: the type's].
        #[arg(long)]
        period_days: Option<u32>,
        /// How long a replaced version still verifies, in days.
        #[arg(long, default_value_t = super::model::DEFAULT_GRACE_DAYS)]
        grace_days: u32,
    },
    /// Rotate NAME now, or with --due every key whose period has elapsed (for a timer; audited,
    /// one entry per rotation).
    Rotate {
        /// The key to rotate now, whatever its schedule.
        #[arg(required_unless_present = "due", conflicts_with = "due")]
        name: Option<String>,
        /// Rotate every key that is due, and retire versions whose grace has ended.
        #[arg(long)]
        due: bool,
        /// Retire the previous version at once instead of giving it a grace period (it leaked).
        #[arg(long, requires = "name")]
        revoke_previous: bool,
        /// Afterwards write every key's next due date (no material) to FILE, for the recorder's
        /// metrics (`[metrics] keys_schedule`): docs/KEYS.md, "Scheduled rotation".
        #[arg(long, value_name = "FILE")]
        schedule_out: Option<PathBuf>,
    },
    /// Render an `api` key as NATS credentials: the nats-server include (one user per version that
    /// still verifies) and qilin-nats' credentials file (the active version), both 0600; then
    /// signal nats-server to reload (SIGHUP to the pid in --reload-pid-file). Audited, no material.
    RenderNats {
        name: String,
        /// Users are PREFIX-v<version>.
        #[arg(long, default_value = super::plan::DEFAULT_USER_PREFIX)]
        user_prefix: String,
        /// The file nats-server.conf includes in place of its `authorization` block.
        #[arg(long, value_name = "FILE")]
        server_include: PathBuf,
        /// The file qilin-nats reads (`nats.credentials_file`).
        #[arg(long, value_name = "FILE")]
        client_file: PathBuf,
        /// nats-server's `pid_file`: SIGHUP it afterwards, which reloads its configuration.
        #[arg(long, value_name = "FILE")]
        reload_pid_file: Option<PathBuf>,
        /// Give the server include to this user (and its group): the uid nats-server runs as
        /// (needs root).
        #[arg(long, value_name = "USER")]
        server_owner: Option<String>,
        /// Give the client file to this user (and its group): qilin-nats' uid (needs root).
        #[arg(long, value_name = "USER")]
        client_owner: Option<String>,
    },
    /// Write NAME's active version to FILE (`version=N`, `key=<64 hex>`, 0600, optionally given to
    /// --owner): the recorder's `[[audit_anchor]] key_file` for `audit-signing`. Audited, no material.
    RenderKey {
        name: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A version still in grace instead of the active one (e.g. the journal-encryption
        /// version an older journal was sealed with, for qilin-core's --replay-key-file).
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        /// Every version in force (active and in grace) in one file, for readers of data older
        /// versions sealed (qilin-nats' and qilin-bars' journal_key_files, --key-file); a writer's
        /// key file (the recorder's) refuses it.
        #[arg(long, conflicts_with = "version")]
        in_force: bool,
        /// Give the file to this user (and its group), e.g. qilin-recorder (needs root).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
    },
    /// Every rendering in a plan file (`[[nats]]` as render-nats, `[[key]]` as render-key), each
    /// audited as its own command; for the rotation timer, after `rotate --due` (docs/KEYS.md).
    /// The exit code is the first failed entry's; the others are rendered all the same.
    RenderAll {
        /// The plan (TOML; config/keys-render.example.toml).
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
    },
    /// Every version of a key with its state changes and their times.
    History {
        name: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A version's details; with --reveal, its material (64 hex characters) alone on stdout (audited).
    Show {
        name: String,
        /// The version [default: the active one].
        #[arg(long)]
        version: Option<u32>,
        /// Print the material. Nothing else ever does.
        #[arg(long)]
        reveal: bool,
    },
    /// Read a token from stdin: exit 0 if it is the active version or one still in its grace
    /// period, 1 if not.
    Verify { name: String },
    /// Copy the store (still encrypted under the master key, with a checksum) to a new file, mode
    /// 0600 (audited).
    Backup {
        /// The backup file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the store by a backup that decrypts under the current master key; the replaced
    /// store is kept as <store>.before-restore (audited). A backup older than the store's newest
    /// generation (as the audit log recorded it) is refused without --force.
    Restore {
        /// The backup file (`keys backup`), or a store file.
        #[arg(long)]
        from: PathBuf,
        /// Restore a backup older than the store's newest generation: a rollback that brings back
        /// versions rotated, retired or revoked since (audited as such).
        #[arg(long)]
        force: bool,
    },
}

/// Runs `qilinctl keys …`.
pub fn run(args: &KeysArgs) -> ExitCode {
    let path = store::resolve_path(args.store.as_deref());
    let now = args
        .now_unix_s
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64));
    let ctx = Ctx { path, now, audit_log: args.audit_log.as_deref() };
    if let Some(warning) = crypto::ignored_test_settings() {
        eprintln!("qilinctl: keys: warning: {warning}");
    }
    match &args.command {
        KeysCmd::List { json } => ctx.read(|s| list(s, now, *json)),
        KeysCmd::History { name, json } => ctx.read(|s| history(s, name, now, *json)),
        KeysCmd::Verify { name } => ctx.read(|s| verify(s, name, now)),
        KeysCmd::Show { name, version, reveal: false } => ctx.read(|s| show(s, name, *version, now)),
        KeysCmd::Show { name, version, reveal: true } => ctx.reveal(name, *version),
        KeysCmd::Add { name, key_type, period_days, grace_days } => ctx.add(name, *key_type, *period_days, *grace_days),
        KeysCmd::Rotate { name, revoke_previous, schedule_out, .. } => {
            ctx.rotate(name.as_deref(), *revoke_previous, schedule_out.as_deref())
        }
        KeysCmd::RenderNats {
            name,
            user_prefix,
            server_include,
            client_file,
            reload_pid_file,
            server_owner,
            client_owner,
        } => {
            let targets = NatsTargets {
                server: server_include,
                server_owner: server_owner.as_deref(),
                client: client_file,
                client_owner: client_owner.as_deref(),
                reload_pid_file: reload_pid_file.as_deref(),
            };
            ctx.render_nats(name, user_prefix, &targets)
        }
        KeysCmd::RenderKey { name, out, owner, version, in_force } => {
            let which = if *in_force { Which::InForce } else { Which::Version(*version) };
            ctx.render_key(name, out, owner.as_deref(), which)
        }
        KeysCmd::RenderAll { plan } => ctx.render_all(plan),
        KeysCmd::Backup { out } => ctx.backup(out),
        KeysCmd::Restore { from, force } => ctx.restore(from, *force),
    }
}

/// Which versions `render-key` writes.
#[derive(Clone, Copy)]
enum Which {
    /// One: the active version, or this one if still in grace.
    Version(Option<u32>),
    /// Every version in force.
    InForce,
}

struct Ctx<'a> {
    path: PathBuf,
    now: i64,
    audit_log: Option<&'a Path>,
}

fn fail(e: &KeyError) -> ExitCode {
    eprintln!("qilinctl: keys: {e}");
    ExitCode::from(2)
}

/// The audit log of one command: opened before anything is done.
struct Audit {
    log: AuditLog,
    failed: bool,
}

impl Audit {
    fn open(audit_log: Option<&Path>) -> Result<Audit, ExitCode> {
        AuditLog::open(audit::resolve_path(audit_log)).map(|log| Audit { log, failed: false }).map_err(|e| {
            eprintln!("qilinctl: keys: {e}; nothing done (operations that cannot be audited are refused)");
            ExitCode::from(4)
        })
    }

    /// Appends one entry; remembers a failure for [`Audit::exit`].
    fn record(&mut self, command: &str, code: u8, action: Value) {
        let args = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        let entry = Entry { command: command.to_owned(), args, exit_code: i32::from(code), actions: vec![action] };
        if let Err(e) = self.log.append(&entry) {
            eprintln!("qilinctl: keys: {command} was done (exit code {code}) but its audit entry failed: {e}");
            self.failed = true;
        }
    }

    /// Records a failed operation (exit 2) and returns its exit code.
    fn failed(&mut self, command: &str, mut action: Value, e: &KeyError) -> ExitCode {
        eprintln!("qilinctl: keys: {e}");
        action["error"] = json!(e.to_string());
        self.record(command, 2, action);
        if self.failed { ExitCode::from(5) } else { ExitCode::from(2) }
    }

    fn exit(&self, code: u8) -> ExitCode {
        if self.failed { ExitCode::from(5) } else { ExitCode::from(code) }
    }
}

/// Records in an audit action which store, at which generation, the operation wrote or read: the
/// witness a later command checks the store against.
fn stamp(action: &mut Value, store_id: Option<&str>, generation: u64) {
    action["store_id"] = json!(store_id);
    action["store_generation"] = json!(generation);
}

impl Ctx<'_> {
    fn store_json(&self) -> Value {
        json!(self.path.display().to_string())
    }

    /// The newest generation of each store, as this command's audit log recorded it.
    fn witness(&self) -> Result<Witness, KeyError> {
        Witness::from_audit_log(&audit::resolve_path(self.audit_log))
    }

    /// Opens and checks the store (master key, witness).
    fn open(&self) -> Result<Store, KeyError> {
        let master = MasterKey::from_env()?;
        Store::load(&self.path, &master, &self.witness()?)
    }

    /// Opens the store read-only (no lock: writers replace it atomically) and runs `f`.
    fn read(&self, f: impl FnOnce(&Store) -> ExitCode) -> ExitCode {
        let opened = self.open();
        match opened {
            Ok(store) => {
                for note in store.notes() {
                    eprintln!("qilinctl: keys: note: {note}");
                }
                f(&store)
            }
            Err(e) => fail(&e),
        }
    }

    /// Under the store's lock: opens the store (or creates it when `create`), runs `f`, saves
    /// when anything changed. Returns `f`'s result and the store's id and generation after it.
    fn change<T>(
        &self,
        create: bool,
        f: impl FnOnce(&mut Store) -> Result<T, KeyError>,
    ) -> Result<(T, Option<String>, u64), KeyError> {
        let master = MasterKey::from_env()?;
        let witness = self.witness()?;
        let _lock = store::lock(&self.path)?;
        let mut store = match Store::load(&self.path, &master, &witness) {
            Err(KeyError::NotFound { .. }) if create => {
                let store = Store::create(&self.path, &master, KdfParams::for_new_store()?)?;
                for note in store.notes() {
                    eprintln!("qilinctl: keys: note: {note}");
                }
                store
            }
            other => other?,
        };
        let before = (store.generation() > 0).then(|| store.content().clone());
        let out = f(&mut store)?;
        if before.as_ref() != Some(store.content()) {
            store.save()?;
        }
        Ok((out, store.store_id().map(str::to_owned), store.generation()))
    }

    fn add(&self, name: &str, key_type: KeyType, period_days: Option<u32>, grace_days: u32) -> ExitCode {
        let mut audit = match Audit::open(self.audit_log) {
            Ok(audit) => audit,
            Err(code) => return code,
        };
        let mut action = json!({"store": self.store_json(), "key": name, "type": key_type.as_str()});
        let added = self.change(true, |s| {
            s.add(name, key_type, period_days, Some(grace_days), self.now)?;
            Ok(s.key(name)?.clone())
        });
        match added {
            Ok((key, store_id, generation)) => {
                println!(
                    "added {name} ({}, rotates every {} days, grace {} days): version 1 active \
                     (`qilinctl keys show {name} --reveal` prints it)",
                    key_type.as_str(),
                    key.rotation_period_days,
                    key.grace_period_days
                );
                action["new_version"] = json!(1);
                action["rotation_period_days"] = json!(key.rotation_period_days);
                action["grace_period_days"] = json!(key.grace_period_days);
                stamp(&mut action, store_id.as_deref(), generation);
                audit.record("keys add", 0, action);
                audit.exit(0)
            }
            Err(e) => audit.failed("keys add", action, &e),
        }
    }

    fn rotate(&self, name: Option<&str>, revoke_previous: bool, schedule_out: Option<&Path>) -> ExitCode {
        let mut audit = match Audit::open(self.audit_log) {
            Ok(audit) => audit,
            Err(code) => return code,
        };
        let now = self.now;
        let result = self.change(false, |s| {
            let (rotations, retired, next) = match name {
                Some(name) => (vec![s.rotate(name, now, CreatedBy::Forced, revoke_previous)?], Vec::new(), None),
                None => {
                    let (rotations, retired) = s.rotate_due(now)?;
                    let next = s.keys().iter().filter_map(|k| Some((k.next_due()?, k.name.clone()))).min();
                    (rotations, retired, next)
                }
            };
            Ok(((rotations, retired, next), schedule(s.keys(), now)))
        });
        let (((rotations, retired, next), due_dates), store_id, generation) = match result {
            Ok(done) => done,
            Err(e) => {
                let action = json!({"store": self.store_json(), "key": name, "due": name.is_none()});
                return audit.failed("keys rotate", action, &e);
            }
        };
        for r in &rotations {
            println!("{}", rotation_line(r));
            for t in &r.retired {
                println!("{}", retirement_line(t));
            }
            let mut action = rotation_json(r, &self.path);
            stamp(&mut action, store_id.as_deref(), generation);
            audit.record("keys rotate", 0, action);
        }
        let loose: Vec<&Retirement> =
            retired.iter().filter(|t| !rotations.iter().any(|r| r.retired.contains(t))).collect();
        for t in &loose {
            println!("{}", retirement_line(t));
            let mut action = json!({"store": self.store_json(), "key": t.name, "version": t.version,
                                    "retired_at": ts(t.at), "because": "grace ended"});
            stamp(&mut action, store_id.as_deref(), generation);
            audit.record("keys retire", 0, action);
        }
        if rotations.is_empty() && name.is_none() {
            match next {
                Some((due, key)) => println!("nothing due (next: {key} at {})", ts(due)),
                None => println!("nothing due (no keys)"),
            }
        }
        if let Some(out) = schedule_out {
            // The rotations are saved and audited: a schedule that cannot be written is reported
            // and fails the run (the timer's unit shows it), and the stale file's age alerts.
            if let Err((step, e)) = store::write_public(out, due_dates.to_json().as_bytes()) {
                eprintln!("qilinctl: keys: the key schedule {} could not be written ({step}): {e}", out.display());
                return audit.exit(6);
            }
        }
        audit.exit(0)
    }

    fn reveal(&self, name: &str, version: Option<u32>) -> ExitCode {
        let mut audit = match Audit::open(self.audit_log) {
            Ok(audit) => audit,
            Err(code) => return code,
        };
        let mut action = json!({"store": self.store_json(), "key": name, "version": version});
        let token = self.open().and_then(|store| {
            let (version, token) = store.token(name, version)?;
            Ok((version, token, store.store_id().map(str::to_owned), store.generation()))
        });
        match token {
            Ok((version, token, store_id, generation)) => {
                action["version"] = json!(version);
                stamp(&mut action, store_id.as_deref(), generation);
                audit.record("keys reveal", 0, action);
                if audit.failed {
                    return audit.exit(0); // not revealed: it could not be audited
                }
                println!("{}", token.expose_secret());
                ExitCode::SUCCESS
            }
            Err(e) => audit.failed("keys reveal", action, &e),
        }
    }

    fn render_nats(&self, name: &str, prefix: &str, targets: &NatsTargets) -> ExitCode {
        let NatsTargets { server, client, reload_pid_file, .. } = *targets;
        let mut audit = match Audit::open(self.audit_log) {
            Ok(audit) => audit,
            Err(code) => return code,
        };
        let mut action = json!({"store": self.store_json(), "key": name,
                                "server_include": server.display().to_string(),
                                "client_file": client.display().to_string()});
        let rendered = self.open().and_then(|store| {
            let users = render::nats_users(&store, name, prefix, self.now)?;
            let client_text =
                render::client_env(&users).ok_or(KeyError::NoMaterial { name: name.to_owned(), version: 0 })?;
            let io = |path: &Path| {
                let path = path.to_owned();
                move |(step, source)| KeyError::Io { path, step, source }
            };
            let (server_owner, client_owner) = (owner(targets.server_owner)?, owner(targets.client_owner)?);
            // The server first: a client never holds a version the reloaded server does not know.
            let server_text = render::server_include(name, &users);
            store::write_atomic_for(server, server_text.expose_secret().as_bytes(), server_owner)
                .map_err(io(server))?;
            store::write_atomic_for(client, client_text.expose_secret().as_bytes(), client_owner)
                .map_err(io(client))?;
            let users: Vec<Value> = users
                .iter()
                .map(|u| json!({"version": u.version, "state": u.state.as_str(), "user": u.user}))
                .collect();
            Ok((users, store.store_id().map(str::to_owned), store.generation()))
        });
        let (users, store_id, generation) = match rendered {
            Ok(done) => done,
            Err(e) => return audit.failed("keys render-nats", action, &e),
        };
        let list: Vec<String> = users
            .iter()
            .map(|u| {
                format!(
                    "{} (version {}, {})",
                    u["user"].as_str().unwrap_or(""),
                    u["version"],
                    u["state"].as_str().unwrap_or("")
                )
            })
            .collect();
        println!("rendered {name} as NATS users {}", list.join(", "));
        action["users"] = json!(users);
        stamp(&mut action, store_id.as_deref(), generation);
        let mut code = 0;
        if let Some(pid_file) = reload_pid_file {
            match signal_reload(pid_file) {
                Ok(pid) => {
                    println!("nats-server (pid {pid}) told to reload");
                    action["reloaded_pid"] = json!(pid);
                }
                Err(e) => {
                    eprintln!("qilinctl: keys: rendered, but nats-server was not reloaded: {e}");
                    action["reload_error"] = json!(e);
                    code = 7;
                }
            }
        }
        audit.record("keys render-nats", code, action);
        audit.exit(code)
    }

    fn render_key(&self, name: &str, out: &Path, owner_name: Option<&str>, which: Which) -> ExitCode {
        let mut audit = match Audit::open(self.audit_log) {
            Ok(audit) => audit,
            Err(code) => return code,
        };
        let mut action = json!({"store": self.store_json(), "key": name, "out": out.display().to_string()});
        let rendered = self.open().and_then(|store| {
            let (versions, text) = match which {
                Which::Version(version) => {
                    let (version, text) = render::key_file(&store, name, version, self.now)?;
                    (vec![version], text)
                }
                Which::InForce => render::key_file_in_force(&store, name, self.now)?,
            };
            store::write_atomic_for(out, text.expose_secret().as_bytes(), owner(owner_name)?)
                .map_err(|(step, source)| KeyError::Io { path: out.to_owned(), step, source })?;
            Ok((versions, store.store_id().map(str::to_owned), store.generation()))
        });
        match rendered {
            Ok((versions, store_id, generation)) => {
                let list: Vec<String> = versions.iter().map(u32::to_string).collect();
                let plural = if versions.len() == 1 { "" } else { "s" };
                println!("rendered {name} version{plural} {} to {}", list.join(", "), out.display());
                if let [version] = versions[..] {
                    action["version"] = json!(version);
                } else {
                    action["versions"] = json!(versions);
                }
                stamp(&mut action, store_id.as_deref(), generation);
                audit.record("keys render-key", 0, action);
                audit.exit(0)
            }
            Err(e) => audit.failed("keys render-key", action, &e),
        }
    }

    fn render_all(&self, plan: &Path) -> ExitCode {
        let plan: Plan = match qilin_market::config::load(plan) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("qilinctl: keys render-all: {e}");
                return ExitCode::from(2);
            }
        };
        let mut first_failure = ExitCode::SUCCESS;
        let mut note = |code: ExitCode| {
            if first_failure == ExitCode::SUCCESS {
                first_failure = code;
            }
        };
        for n in &plan.nats {
            let targets = NatsTargets {
                server: &n.server_include,
                server_owner: n.server_owner.as_deref(),
                client: &n.client_file,
                client_owner: n.client_owner.as_deref(),
                reload_pid_file: n.reload_pid_file.as_deref(),
            };
            note(self.render_nats(&n.key, &n.user_prefix, &targets));
        }
        for k in &plan.key {
            let which = if k.in_force { Which::InForce } else { Which::Version(None) };
            note(self.render_key(&k.key, &k.out, k.owner.as_deref(), which));
        }
        first_failure
    }

    fn backup(&self, out: &Path) -> ExitCode {
        let mut audit = match Audit::open(self.audit_log) {
            Ok(audit) => audit,
            Err(code) => return code,
        };
        let mut action = json!({"store": self.store_json(), "out": out.display().to_string()});
        let done = MasterKey::from_env().and_then(|master| {
            let witness = self.witness()?;
            let _lock = store::lock(&self.path)?;
            backup::backup(&self.path, out, &master, &witness, self.now)
        });
        match done {
            Ok(summary) => {
                println!(
                    "backed up {} ({} keys, {} versions) to {} (sha256 {})",
                    self.path.display(),
                    summary.keys,
                    summary.versions,
                    out.display(),
                    summary.sha256
                );
                action["keys"] = json!(summary.keys);
                action["versions"] = json!(summary.versions);
                action["sha256"] = json!(summary.sha256);
                stamp(&mut action, Some(&summary.store_id), summary.generation);
                audit.record("keys backup", 0, action);
                audit.exit(0)
            }
            Err(e) => audit.failed("keys backup", action, &e),
        }
    }

    fn restore(&self, from: &Path, force: bool) -> ExitCode {
        let mut audit = match Audit::open(self.audit_log) {
            Ok(audit) => audit,
            Err(code) => return code,
        };
        let mut action = json!({"store": self.store_json(), "from": from.display().to_string(), "forced": force});
        let done = MasterKey::from_env().and_then(|master| {
            let witness = self.witness()?;
            let _lock = store::lock(&self.path)?;
            backup::restore(&self.path, from, &master, &witness, force)
        });
        match done {
            Ok(summary) => {
                let rollback = match summary.newest_generation.filter(|_| summary.rolled_back) {
                    Some(newest) => format!(
                        "; rolled back from generation {newest} to generation {} (forced): versions rotated, \
                         retired or revoked since are back, rotate the affected keys if that matters",
                        summary.backup_generation
                    ),
                    None => String::new(),
                };
                println!(
                    "restored {} from {} ({} keys, {} versions){}{rollback}; written as generation {}",
                    self.path.display(),
                    from.display(),
                    summary.keys,
                    summary.versions,
                    summary
                        .previous
                        .as_ref()
                        .map(|p| format!("; the replaced store is kept as {}", p.display()))
                        .unwrap_or_default(),
                    summary.generation
                );
                action["keys"] = json!(summary.keys);
                action["versions"] = json!(summary.versions);
                action["sha256"] = json!(summary.sha256);
                action["previous"] = json!(summary.previous.map(|p| p.display().to_string()));
                action["backup_generation"] = json!(summary.backup_generation);
                action["newest_generation"] = json!(summary.newest_generation);
                action["rolled_back"] = json!(summary.rolled_back);
                stamp(&mut action, Some(&summary.store_id), summary.generation);
                audit.record("keys restore", 0, action);
                audit.exit(0)
            }
            Err(e) => audit.failed("keys restore", action, &e),
        }
    }
}

/// `2026-01-01T00:00:00Z` from Unix seconds.
pub fn ts(unix_s: i64) -> String {
    let full = audit::rfc3339_ns(unix_s.saturating_mul(1_000_000_000));
    format!("{}Z", &full[..19])
}

/// `12d 3h`, `5h 2m`, `40s`.
pub fn span(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

fn rotation_line(r: &Rotation) -> String {
    let old = match (r.old_version, r.old_state, r.old_grace_until) {
        (Some(v), Some(State::Grace), Some(until)) => format!("; version {v} still verifies until {}", ts(until)),
        (Some(v), _, _) => format!("; version {v} retired at once"),
        (None, _, _) => String::new(),
    };
    let from = r.old_version.map(|v| format!("version {v} -> ")).unwrap_or_default();
    format!("rotated {}: {from}version {} ({}){old}", r.name, r.new_version, r.created_by.as_str())
}

fn retirement_line(t: &Retirement) -> String {
    format!("retired {} version {} (grace ended {})", t.name, t.version, ts(t.at))
}

fn rotation_json(r: &Rotation, store: &Path) -> Value {
    json!({
        "store": store.display().to_string(),
        "key": r.name,
        "old_version": r.old_version,
        "old_state": r.old_state.map(State::as_str),
        "old_grace_until": r.old_grace_until.map(ts),
        "new_version": r.new_version,
        "trigger": r.created_by.as_str(),
        "retired": r.retired.iter().map(|t| t.version).collect::<Vec<_>>(),
        "outcome": "ok",
    })
}

fn key_json(k: &KeyEntry, now: i64) -> Value {
    let active = k.active();
    let (a, g, r) = k.state_counts(now);
    json!({
        "name": k.name,
        "type": k.key_type.as_str(),
        "active_version": active.map(|v| v.version),
        "active_since": active.map(|v| ts(v.activated_unix_s)),
        "age_s": active.map(|v| now - v.activated_unix_s),
        "next_due": k.next_due().map(ts),
        "due": k.is_due(now),
        "rotation_period_days": k.rotation_period_days,
        "grace_period_days": k.grace_period_days,
        "states": {"active": a, "grace": g, "retired": r},
    })
}

fn list(store: &Store, now: i64, json: bool) -> ExitCode {
    if json {
        let kdf = store.kdf();
        let value = json!({
            "store": store.path().display().to_string(),
            "store_id": store.store_id(),
            "generation": store.generation(),
            "now": ts(now),
            "kdf": {"algorithm": kdf.algorithm, "m_cost_kib": kdf.m_cost_kib, "t_cost": kdf.t_cost, "p_cost": kdf.p_cost},
            "keys": store.keys().iter().map(|k| key_json(k, now)).collect::<Vec<_>>(),
        });
        println!("{value}");
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<24} {:<10} {:>6}  {:<8}  {:<30} {:>6} {:>5}  states",
        "name", "type", "active", "age", "next due", "period", "grace"
    );
    for k in store.keys() {
        let (a, g, r) = k.state_counts(now);
        let active = k.active();
        let due = match k.next_due() {
            Some(due) if due <= now => format!("{} (overdue)", ts(due)),
            Some(due) => ts(due),
            None => "now (no active version)".into(),
        };
        println!(
            "{:<24} {:<10} {:>6}  {:<8}  {:<30} {:>5}d {:>4}d  {a} active, {g} grace, {r} retired",
            k.name,
            k.key_type.as_str(),
            active.map_or("-".into(), |v| format!("v{}", v.version)),
            active.map_or("-".into(), |v| span(now - v.activated_unix_s)),
            due,
            k.rotation_period_days,
            k.grace_period_days,
        );
    }
    if store.keys().is_empty() {
        println!("(no keys in {})", store.path().display());
    }
    ExitCode::SUCCESS
}

fn version_json(v: &VersionEntry, now: i64) -> Value {
    json!({
        "version": v.version,
        "state": v.state_at(now).as_str(),
        "created_by": v.created_by.as_str(),
        "activated": ts(v.activated_unix_s),
        "grace_from": v.grace_from_unix_s.map(ts),
        "grace_until": v.grace_until_unix_s.map(ts),
        "retired": v.retired_unix_s.or(v.grace_until_unix_s.filter(|_| v.state_at(now) == State::Retired)).map(ts),
        "retired_because": v.retired_because.clone().or((v.state_at(now) == State::Retired).then(|| "grace ended".into())),
        "has_material": v.material.is_some() && v.state_at(now) != State::Retired,
    })
}

fn version_line(v: &VersionEntry, now: i64) -> String {
    let j = version_json(v, now);
    let mut line = format!(
        "  v{:<4} {:<8} by {:<10} active {}",
        v.version,
        v.state_at(now).as_str(),
        v.created_by.as_str(),
        ts(v.activated_unix_s)
    );
    if let (Some(from), Some(until)) = (v.grace_from_unix_s, v.grace_until_unix_s) {
        line += &format!("  replaced {}  verifies until {}", ts(from), ts(until));
    }
    if let (Some(at), Some(because)) = (j["retired"].as_str(), j["retired_because"].as_str()) {
        line += &format!("  retired {at} ({because})");
    }
    line
}

fn history(store: &Store, name: &str, now: i64, json: bool) -> ExitCode {
    let key = match store.key(name) {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    if json {
        let mut value = key_json(key, now);
        value["created"] = json!(ts(key.created_unix_s));
        value["versions"] = key.versions.iter().map(|v| version_json(v, now)).collect();
        println!("{value}");
    } else {
        println!(
            "{} ({}, rotates every {} days, grace {} days), added {}",
            key.name,
            key.key_type.as_str(),
            key.rotation_period_days,
            key.grace_period_days,
            ts(key.created_unix_s)
        );
        for v in &key.versions {
            println!("{}", version_line(v, now));
        }
    }
    ExitCode::SUCCESS
}

fn show(store: &Store, name: &str, version: Option<u32>, now: i64) -> ExitCode {
    let key = match store.key(name) {
        Ok(key) => key,
        Err(e) => return fail(&e),
    };
    let v = match version.map_or(key.active(), |n| key.version(n)) {
        Some(v) => v,
        None => return fail(&KeyError::NoMaterial { name: name.to_owned(), version: version.unwrap_or(0) }),
    };
    println!("{} ({})", key.name, key.key_type.as_str());
    println!("{}", version_line(v, now));
    println!("  material not shown (`--reveal` prints it)");
    ExitCode::SUCCESS
}

fn verify(store: &Store, name: &str, now: i64) -> ExitCode {
    let mut input = Zeroizing::new(String::new());
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("qilinctl: keys: verify: reading the token from stdin: {e}");
        return ExitCode::from(2);
    }
    let token = input.strip_suffix('\n').unwrap_or(&input);
    let token = token.strip_suffix('\r').unwrap_or(token);
    match store.verify(name, token.as_bytes(), now) {
        Ok(Verdict::Active { version }) => {
            println!("accepted: {name} version {version} (active)");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Grace { version, until_unix_s }) => {
            println!("accepted: {name} version {version} (grace, until {})", ts(until_unix_s));
            ExitCode::SUCCESS
        }
        Ok(Verdict::Rejected) => {
            println!("refused: not a current version of {name}");
            ExitCode::from(1)
        }
        Err(e) => fail(&e),
    }
}

/// Where `keys render-nats` writes, for whom, and which server it reloads.
struct NatsTargets<'a> {
    server: &'a Path,
    server_owner: Option<&'a str>,
    client: &'a Path,
    client_owner: Option<&'a str>,
    reload_pid_file: Option<&'a Path>,
}

/// A user name as (uid, its primary gid).
fn owner(user: Option<&str>) -> Result<Option<(u32, u32)>, KeyError> {
    let Some(user) = user else { return Ok(None) };
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(Some((u.uid.as_raw(), u.gid.as_raw()))),
        Ok(None) => Err(KeyError::Io {
            path: PathBuf::from("/etc/passwd"),
            step: "looking up the owner",
            source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("no user {user:?}")),
        }),
        Err(e) => {
            Err(KeyError::Io { path: PathBuf::from("/etc/passwd"), step: "looking up the owner", source: e.into() })
        }
    }
}

/// `nats-server --signal reload`'s effect: SIGHUP to the pid in nats-server's `pid_file`.
fn signal_reload(pid_file: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| format!("pid file {}: {e}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("pid file {}: not a process id", pid_file.display()))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP)
        .map_err(|e| format!("SIGHUP to pid {pid} (from {}): {e}", pid_file.display()))?;
    Ok(pid)
}

/// The versions of `name` that verify at `now` with their material, read from the store named by
/// `$QILIN_KEY_STORE` (or the default) under `$QILIN_MASTER_KEY`, checked against the key
/// commands' audit log (`audit_log`, else the default): for `qilinctl audit verify --keys`.
pub fn verifying_keys(name: &str, audit_log: Option<&Path>, now: i64) -> Result<Vec<(u32, Vec<u8>)>, KeyError> {
    let ctx = Ctx { path: store::resolve_path(None), now, audit_log };
    let store = ctx.open()?;
    render::verifying_versions(&store, name, now)
}

/// The `journal-encryption` versions for reading encrypted journals (`qilinctl export`, `quality`,
/// `replay --keys`), read from the store as [`verifying_keys`] reads it: every version that still
/// verifies at `now` with its material, and the others marked retired (their material is wiped),
/// so a journal sealed under one of them is refused as retired, naming the version.
pub fn journal_keyring(audit_log: Option<&Path>, now: i64) -> Result<qilin_journal::Keyring, KeyError> {
    let name = qilin_journal::crypt::KEY_NAME;
    let ctx = Ctx { path: store::resolve_path(None), now, audit_log };
    let store = ctx.open()?;
    let mut ring = qilin_journal::Keyring::new(format!("key store {}", store.path().display()));
    let usable = render::verifying_versions(&store, name, now)?;
    for (version, material) in &usable {
        let key = qilin_journal::JournalKey::new(*version, material)
            .map_err(|reason| KeyError::Invalid { path: store.path().to_owned(), reason })?;
        ring.insert(key);
    }
    for v in &store.key(name)?.versions {
        if !usable.iter().any(|(version, _)| *version == v.version) {
            ring.mark_retired(v.version);
        }
    }
    Ok(ring)
}

/// The schedule `rotate --schedule-out` publishes: every key's active version and next due date.
fn schedule(keys: &[KeyEntry], now: i64) -> KeySchedule {
    let keys = keys
        .iter()
        .map(|k| KeyDue {
            name: k.name.clone(),
            key_type: k.key_type.as_str().into(),
            active_version: k.active().map(|v| v.version),
            next_due_unix_s: k.next_due(),
        })
        .collect();
    KeySchedule { format: schedule::FORMAT.into(), written_unix_s: now, keys }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_spans_read_well() {
        assert_eq!(ts(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(ts(0), "1970-01-01T00:00:00Z");
        assert_eq!(span(40), "40s");
        assert_eq!(span(3 * 60 + 5), "3m");
        assert_eq!(span(5 * 3600 + 120), "5h 2m");
        assert_eq!(span(12 * 86_400 + 3 * 3600 + 59), "12d 3h");
    }
}

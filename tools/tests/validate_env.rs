//! `qilinctl validate-env` as a process: a table of bad inputs (each problem found, named by its
//! key, exit 1, the value never printed, audited), clean files and directories (exit 0), an
//! unreadable source (exit 2), every problem in one run, and a leak grep of stdout, stderr, the
//! audit log, the process's argv and environment (read from /proc while it is held on the audit
//! log's lock) for the secret values.

use std::{
    fs,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// A hang guard for a process the test blocks, never a performance bound.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A clean live set. Every value is distinctive so a leak is unmistakable.
const CLEAN: &[(&str, &str)] = &[
    ("CTP_PRIMARY_BROKER_ID", "BRKzq7a"),
    ("CTP_PRIMARY_USER_ID", "usrzq7prim"),
    ("CTP_PRIMARY_PASSWORD", "Pw-zq7-primary-$ecret"),
    ("CTP_PRIMARY_MD_FRONTS", "tcp://fronta-zq7.example:41213,tcp://10.9.8.7:41213"),
    ("CTP_PRIMARY_APP_ID", "appzq7prim"),
    ("CTP_PRIMARY_AUTH_CODE", "authzq7prim"),
    ("CTP_BACKUP_BROKER_ID", "BRKzq7b"),
    ("CTP_BACKUP_USER_ID", "usrzq7back"),
    ("CTP_BACKUP_PASSWORD", "Pw-zq7-backup-hunter2"),
    ("CTP_BACKUP_MD_FRONTS", "tcp://frontb-zq7.example:41213"),
    ("NATS_URL", "tls://natshost-zq7.example:4222"),
    ("NATS_USER", "natsuserzq7"),
    ("NATS_PASSWORD", "natspasszq7-xyzzy"),
    ("RATE_LIMIT_TOKEN_GATEWAY", "rltokzq7-0123456789abcdef"),
];

/// Values that may never appear in any output. Short fragments too: a value cut in half is a leak.
const LEAKS: &[&str] = &[
    "BRKzq7",
    "usrzq7",
    "zq7-primary",
    "zq7-backup",
    "hunter2",
    "fronta-zq7",
    "frontb-zq7",
    "appzq7",
    "authzq7",
    "natshost-zq7",
    "natsuserzq7",
    "natspasszq7",
    "xyzzy",
    "rltokzq7",
    "dupzq7",
    "badzq7",
];

fn dotenv(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect()
}

/// `CLEAN` with each key replaced, added, or removed when its value is `None`.
fn with(changes: &[(&'static str, Option<&str>)]) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = CLEAN.iter().map(|(k, v)| (*k, v.to_string())).collect();
    for (key, value) in changes {
        match (out.iter().position(|(k, _)| k == key), value) {
            (Some(i), Some(v)) => out[i].1 = v.to_string(),
            (Some(i), None) => {
                out.remove(i);
            }
            (None, Some(v)) => out.push((key, v.to_string())),
            (None, None) => {}
        }
    }
    out
}

fn text(pairs: &[(&'static str, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect()
}

fn write(path: &Path, content: &str, mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn qilinctl(profile: &str, source: &Path, audit: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qilinctl"));
    cmd.args(["validate-env", "--profile", profile, "--source"])
        .arg(source)
        .arg("--audit-log")
        .arg(audit)
        .env("RUST_LOG", "trace")
        .env_remove("QILIN_AUDIT_LOG");
    cmd
}

fn run(profile: &str, source: &Path, audit: &Path) -> Output {
    qilinctl(profile, source, audit).output().unwrap()
}

fn all_output(out: &Output, audit: &Path) -> String {
    format!(
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(audit).unwrap_or_default()
    )
}

fn assert_no_leak(what: &str, haystack: &str) {
    for value in LEAKS {
        assert!(!haystack.contains(value), "{what} leaks {value:?}:\n{haystack}");
    }
}

fn last_audit(audit: &Path) -> Value {
    let log = fs::read_to_string(audit).unwrap();
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

#[test]
fn every_bad_input_is_reported_with_its_key_and_never_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let dup = format!("{}CTP_BACKUP_PASSWORD='Pw-dupzq7-second'\n", dotenv(CLEAN));
    let bad_line = format!("{}CTP_BACKUP_AUTH_CODE=\"badzq7-unterminated\n", dotenv(CLEAN));
    // (case, profile, file content, mode, key expected, reason fragment expected)
    let table: Vec<(&str, &str, String, u32, &str, &str)> = vec![
        ("missing", "live", text(&with(&[("CTP_PRIMARY_PASSWORD", None)])), 0o600, "CTP_PRIMARY_PASSWORD", "missing"),
        (
            "missing backup",
            "live",
            text(&with(&[("CTP_BACKUP_MD_FRONTS", None)])),
            0o600,
            "CTP_BACKUP_MD_FRONTS",
            "missing",
        ),
        (
            "space in id",
            "live",
            text(&with(&[("CTP_PRIMARY_USER_ID", Some("usrzq7 badzq7"))])),
            0o600,
            "CTP_PRIMARY_USER_ID",
            "space",
        ),
        (
            "too long",
            "sim",
            text(&with(&[("CTP_PRIMARY_BROKER_ID", Some("BRKzq7-far-too-long"))])),
            0o600,
            "CTP_PRIMARY_BROKER_ID",
            "longer than 10",
        ),
        ("empty", "sim", text(&with(&[("CTP_BACKUP_PASSWORD", Some(""))])), 0o600, "CTP_BACKUP_PASSWORD", "empty"),
        ("duplicated", "sim", dup, 0o600, "CTP_BACKUP_PASSWORD", "duplicated"),
        (
            "front no port",
            "live",
            text(&with(&[("CTP_PRIMARY_MD_FRONTS", Some("tcp://fronta-zq7.example"))])),
            0o600,
            "CTP_PRIMARY_MD_FRONTS",
            "front 1: no port",
        ),
        (
            "front scheme",
            "sim",
            text(&with(&[("CTP_BACKUP_MD_FRONTS", Some("tcp://frontb-zq7.example:1,udp://frontb-zq7.example:2"))])),
            0o600,
            "CTP_BACKUP_MD_FRONTS",
            "front 2: not tcp://host:port",
        ),
        (
            "front port",
            "sim",
            text(&with(&[("CTP_BACKUP_MD_FRONTS", Some("tcp://frontb-zq7.example:99999"))])),
            0o600,
            "CTP_BACKUP_MD_FRONTS",
            "port",
        ),
        (
            "backup is primary",
            "live",
            text(&with(&[("CTP_BACKUP_BROKER_ID", Some("BRKzq7a")), ("CTP_BACKUP_USER_ID", Some("usrzq7prim"))])),
            0o600,
            "CTP_BACKUP_USER_ID",
            "same broker and user",
        ),
        ("group-readable", "live", dotenv(CLEAN), 0o640, "env", "group/world-readable"),
        ("world-readable", "live", dotenv(CLEAN), 0o604, "env", "group/world-readable"),
        (
            "nats not tls",
            "live",
            text(&with(&[("NATS_URL", Some("nats://natshost-zq7.example:4222"))])),
            0o600,
            "NATS_URL",
            "not TLS",
        ),
        (
            "nats scheme",
            "sim",
            text(&with(&[("NATS_URL", Some("http://natshost-zq7.example"))])),
            0o600,
            "NATS_URL",
            "unknown scheme",
        ),
        (
            "nats user alone",
            "sim",
            text(&with(&[("NATS_PASSWORD", None)])),
            0o600,
            "NATS_PASSWORD",
            "without a password",
        ),
        (
            "two nats auths",
            "sim",
            text(&with(&[("NATS_TOKEN", Some("natspasszq7-token-1234567"))])),
            0o600,
            "NATS_TOKEN",
            "more than one NATS authentication",
        ),
        (
            "app id alone",
            "sim",
            text(&with(&[("CTP_PRIMARY_AUTH_CODE", None)])),
            0o600,
            "CTP_PRIMARY_AUTH_CODE",
            "pair",
        ),
        (
            "short token",
            "sim",
            text(&with(&[("RATE_LIMIT_TOKEN_GATEWAY", Some("rltokzq7"))])),
            0o600,
            "RATE_LIMIT_TOKEN_GATEWAY",
            "shorter than 16",
        ),
        (
            "typo key",
            "sim",
            format!("{}CTP_PRIMARY_PASWORD='Pw-badzq7'\n", dotenv(CLEAN)),
            0o600,
            "CTP_PRIMARY_PASWORD",
            "not a key of the schema",
        ),
        ("unterminated", "sim", bad_line, 0o600, "CTP_BACKUP_AUTH_CODE", "unterminated double quote"),
        ("not key=value", "sim", format!("{}badzq7 no equals\n", dotenv(CLEAN)), 0o600, "line 15", "no '='"),
    ];
    for (case, profile, content, mode, key, reason) in table {
        let file = dir.path().join("env");
        write(&file, &content, mode);
        let out = run(profile, &file, &audit);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{case}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find(|l| l.contains(&format!("{key}: ")) && l.contains(reason));
        assert!(line.is_some(), "{case}: no `{key}: …{reason}…` in\n{stdout}");
        assert_no_leak(case, &all_output(&out, &audit));
        let entry = last_audit(&audit);
        assert_eq!(entry["command"], "validate-env", "{case}");
        assert_eq!(entry["exit_code"], 1, "{case}");
        let problems = entry["actions"][0]["problems"].as_array().unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p["key"].as_str().unwrap().ends_with(key) && p["reason"].as_str().unwrap().contains(reason)),
            "{case}: audit entry lacks the problem: {entry}"
        );
    }
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let file = dir.path().join("env");
    let bad = with(&[
        ("CTP_PRIMARY_PASSWORD", None),
        ("CTP_PRIMARY_MD_FRONTS", Some("tcp://fronta-zq7.example")),
        ("CTP_BACKUP_BROKER_ID", Some("BRKzq7a")),
        ("CTP_BACKUP_USER_ID", Some("usrzq7prim")),
        ("NATS_URL", Some("nats://natshost-zq7.example:4222")),
    ]);
    write(&file, &format!("{}CTP_BACKUP_PASSWORD='Pw-dupzq7'\n", text(&bad)), 0o644);
    let out = run("live", &file, &audit);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (key, reason) in [
        ("CTP_PRIMARY_PASSWORD", "missing"),
        ("CTP_PRIMARY_MD_FRONTS", "no port"),
        ("CTP_BACKUP_USER_ID", "same broker and user"),
        ("NATS_URL", "not TLS"),
        ("CTP_BACKUP_PASSWORD", "duplicated"),
        ("env", "group/world-readable"),
    ] {
        assert!(stdout.lines().any(|l| l.contains(key) && l.contains(reason)), "{key} {reason} missing from\n{stdout}");
    }
    assert_eq!(stdout.lines().count(), 6, "exactly the six problems:\n{stdout}");
    assert_no_leak("all problems", &all_output(&out, &audit));
    // The JSON report carries the same problems.
    let json = qilinctl("live", &file, &audit).arg("--json").output().unwrap();
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 6, "{report}");
    assert_no_leak("json", &String::from_utf8_lossy(&json.stdout));
}

#[test]
fn clean_sources_pass_and_profiles_differ() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let file = dir.path().join("env");
    write(&file, &format!("# comment\n\nexport {}", dotenv(CLEAN)), 0o600);
    let out = run("live", &file, &audit);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("clean for the live profile (14 keys"));
    assert_no_leak("clean", &all_output(&out, &audit));
    let entry = last_audit(&audit);
    assert_eq!((entry["command"].as_str(), entry["exit_code"].as_i64()), (Some("validate-env"), Some(0)));
    assert_eq!(entry["actions"][0]["keys"].as_array().unwrap().len(), 14);

    // Group-readable and no CTP account: fine for sim, two kinds of problem for live.
    write(&file, "NATS_URL=nats://natshost-zq7.example:4222\n", 0o640);
    assert_eq!(run("sim", &file, &audit).status.code(), Some(0));
    let live = run("live", &file, &audit);
    assert_eq!(live.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&live.stdout);
    assert_eq!(stdout.matches("missing (required in the live profile)").count(), 8, "{stdout}");
    assert!(stdout.contains("group/world-readable") && stdout.contains("NATS_URL: server 1: not TLS"), "{stdout}");
    // An empty file is a clean sim set.
    write(&file, "", 0o600);
    assert_eq!(run("sim", &file, &audit).status.code(), Some(0));
    // Loopback NATS without TLS is fine in live.
    write(&file, &text(&with(&[("NATS_URL", Some("nats://127.0.0.1:4222,nats://localhost"))])), 0o600);
    assert_eq!(run("live", &file, &audit).status.code(), Some(0));
}

#[test]
fn secret_directories_are_checked_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let secrets = dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    fs::create_dir(secrets.join("..2026_11_30")).unwrap();
    for (key, value) in CLEAN {
        write(&secrets.join(key), &format!("{value}\n"), 0o600);
    }
    write(&secrets.join(".hidden"), "ignored", 0o644);
    let out = run("live", &secrets, &audit);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    fs::set_permissions(secrets.join("CTP_BACKUP_PASSWORD"), fs::Permissions::from_mode(0o640)).unwrap();
    write(&secrets.join("CTP_PRIMARY_USER_ID"), "usrzq7 badzq7\n", 0o600);
    let out = run("live", &secrets, &audit);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CTP_BACKUP_PASSWORD: secret file group/world-readable (mode 0640)"), "{stdout}");
    assert!(stdout.contains("CTP_PRIMARY_USER_ID: contains a space"), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(run("sim", &secrets, &audit).status.code(), Some(1), "a malformed value fails sim too");
    assert_no_leak("dir", &all_output(&out, &audit));
}

#[test]
fn an_unreadable_source_exits_2_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = run("live", &dir.path().join("absent.env"), &audit);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.env"));
    let entry = last_audit(&audit);
    assert_eq!((entry["command"].as_str(), entry["exit_code"].as_i64()), (Some("validate-env"), Some(2)));
    // No audit log, no check.
    let blocked = dir.path().join("file");
    fs::write(&blocked, "").unwrap();
    let out = run("sim", &blocked, &blocked.join("audit.jsonl"));
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn debug_output_of_a_loaded_set_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    write(&file, &dotenv(CLEAN), 0o600);
    let loaded = qilin_tools::secrets::load(&qilin_tools::secrets::Source::File(file)).unwrap();
    assert_eq!(loaded.values.len(), CLEAN.len());
    assert_no_leak("Debug", &format!("{loaded:?}"));
}

/// The process's argv and environment, read from /proc while it waits on the audit log's lock
/// (held here), and every output: none holds a secret value.
#[test]
fn leak_grep_including_proc_cmdline_and_environ() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let file = dir.path().join("env");
    write(
        &file,
        &format!(
            "{}CTP_BACKUP_PASSWORD='Pw-dupzq7'\n",
            text(&with(&[("NATS_URL", Some("nats://natshost-zq7.example"))]))
        ),
        0o644,
    );
    fs::write(&audit, "").unwrap();
    let lock = nix::fcntl::Flock::lock(fs::File::open(&audit).unwrap(), nix::fcntl::FlockArg::LockExclusive).unwrap();
    let mut child = qilinctl("live", &file, &audit).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let proc = format!("/proc/{}", child.id());
    // Right after spawn the child may not have exec'd qilinctl yet: wait until /proc shows it.
    let started = Instant::now();
    let cmdline = loop {
        let cmdline = fs::read(format!("{proc}/cmdline")).unwrap();
        if String::from_utf8_lossy(&cmdline).contains("validate-env") {
            break cmdline;
        }
        assert!(started.elapsed() < WATCHDOG, "qilinctl never showed up in {proc}/cmdline");
        std::thread::sleep(Duration::from_millis(1));
    };
    let environ = fs::read(format!("{proc}/environ")).unwrap();
    // Still blocked on the lock: the check is done, its audit entry not yet written.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "qilinctl should wait for the audit lock");
    drop(lock);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < WATCHDOG, "qilinctl hangs");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stdout.contains("NATS_URL") && stdout.contains("duplicated"), "{stdout}");
    for (what, text) in [
        ("stdout", stdout),
        ("stderr", stderr),
        ("audit log", fs::read_to_string(&audit).unwrap()),
        ("cmdline", String::from_utf8_lossy(&cmdline).into_owned()),
        ("environ", String::from_utf8_lossy(&environ).into_owned()),
    ] {
        assert_no_leak(what, &text);
    }
}

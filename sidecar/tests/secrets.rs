//! `qilin-secrets` as a process: shredding (the runtime file is gone and a descriptor opened on
//! it before shows random bytes of the same length, not the secrets: overwritten before unlinked),
//! a refused set (nothing shredded, exit 1), and a leak grep of every output of full runs with
//! `RUST_LOG=trace`: stdout, stderr, the audit log, and `/proc/<pid>/cmdline` and `environ` read
//! while the sidecar holds its secrets.

use std::{
    fs::{self, File},
    io::{BufRead, BufReader, Read},
    os::unix::fs::{FileExt, PermissionsExt},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

/// A hang guard for anything that waits on a process, never a performance bound.
const WATCHDOG: Duration = Duration::from_secs(60);

const CLEAN: &str = "\
# runtime secrets
CTP_PRIMARY_BROKER_ID=BRKqx9a
CTP_PRIMARY_USER_ID=usrqx9prim
CTP_PRIMARY_PASSWORD='Pw-qx9-primary-$ecret'
CTP_PRIMARY_MD_FRONTS=tcp://fronta-qx9.example:41213
CTP_BACKUP_BROKER_ID=BRKqx9b
CTP_BACKUP_USER_ID=usrqx9back
export CTP_BACKUP_PASSWORD=\"Pw-qx9-backup-swordfish\"
CTP_BACKUP_MD_FRONTS=tcp://frontb-qx9.example:41213
NATS_URL=tls://natshost-qx9.example:4222
NATS_TOKEN=natstokqx9-0123456789
RATE_LIMIT_TOKEN=rltokqx9-0123456789abcdef
";

/// Fragments of every value above; none may appear in any output.
const LEAKS: &[&str] = &[
    "BRKqx9",
    "usrqx9",
    "qx9-primary",
    "$ecret",
    "qx9-backup",
    "swordfish",
    "fronta-qx9",
    "frontb-qx9",
    "natshost-qx9",
    "natstokqx9",
    "rltokqx9",
];

fn assert_no_leak(what: &str, haystack: &str) {
    for value in LEAKS {
        assert!(!haystack.contains(value), "{what} leaks {value:?}:\n{haystack}");
    }
}

fn write_private(path: &Path, content: &str) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn spawn(source: &Path, audit: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_qilin-secrets"))
        .arg("--source")
        .arg(source)
        .arg("--audit-log")
        .arg(audit)
        .args(extra)
        .env("RUST_LOG", "trace")
        .env_remove("QILIN_AUDIT_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the summary line on stdout (the secrets are loaded, validated, shredded if asked).
fn summary(child: &mut Child) -> (String, mpsc::Receiver<String>) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(line) => (line, rx),
        Err(e) => {
            let _ = child.kill();
            panic!("no summary from qilin-secrets: {e}");
        }
    }
}

/// SIGTERM, then the exit code, the rest of stdout and all of stderr.
fn stop(mut child: Child, rest: mpsc::Receiver<String>) -> (Option<i32>, String, String) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait(&mut child, rest)
}

fn wait(child: &mut Child, rest: mpsc::Receiver<String>) -> (Option<i32>, String, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            let _ = child.kill();
            panic!("qilin-secrets does not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let stdout: Vec<String> = rest.try_iter().collect();
    (status.code(), stdout.join("\n"), stderr)
}

fn audit_entries(audit: &Path) -> Vec<Value> {
    fs::read_to_string(audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn shredding_overwrites_before_unlinking() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, audit) = (dir.path().join(".env.runtime"), dir.path().join("audit.jsonl"));
    write_private(&runtime, CLEAN);
    // Held across the shred: the same inode, whatever happens to the name.
    let held = File::open(&runtime).unwrap();
    let mut child = spawn(&runtime, &audit, &["--shred-source", "--profile", "live"]);
    let (line, rest) = summary(&mut child);
    assert!(line.starts_with("qilin-secrets: holding 11 keys for the live profile"), "{line}");
    assert!(line.contains("CTP_PRIMARY_PASSWORD") && line.contains("RATE_LIMIT_TOKEN"), "{line}");
    assert!(!runtime.exists(), "the runtime file is still there");
    let mut after = vec![0u8; CLEAN.len() + 16];
    let n = held.read_at(&mut after, 0).unwrap();
    after.truncate(n);
    assert_eq!(n, CLEAN.len(), "the inode keeps its length: overwritten in place, not truncated");
    assert_ne!(after, CLEAN.as_bytes());
    assert_no_leak("the shredded inode", &String::from_utf8_lossy(&after));
    // Random bytes, not a constant fill: at least a quarter of the byte values differ per position.
    let same = after.iter().zip(CLEAN.as_bytes()).filter(|(a, b)| a == b).count();
    assert!(same < CLEAN.len() / 4, "{same} of {} bytes unchanged", CLEAN.len());
    let (code, _, stderr) = stop(child, rest);
    assert_eq!(code, Some(0), "{stderr}");
    let entry = audit_entries(&audit).pop().unwrap();
    assert_eq!(entry["command"], "secrets load");
    assert_eq!(entry["exit_code"], 0);
    assert_eq!(entry["actions"][0]["shredded"]["bytes"], CLEAN.len());
    assert_eq!(entry["actions"][0]["keys"].as_array().unwrap().len(), 11);
}

#[test]
fn the_library_shreds_and_refuses_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    write_private(&file, "SECRET-qx9-lib");
    let held = File::open(&file).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert!(qilin_sidecar::secrets::shred(&link, None).is_err(), "a symlink must be refused");
    assert!(file.exists());
    assert_eq!(qilin_sidecar::secrets::shred(&file, None).unwrap(), 14);
    assert!(!file.exists());
    let mut buf = [0u8; 14];
    held.read_exact_at(&mut buf, 0).unwrap();
    assert_ne!(&buf, b"SECRET-qx9-lib");
}

/// A file swapped in between the load and the shred (a vault agent writing the next version, or
/// someone planting one): the loader records which file it read (device and inode, from the
/// descriptor it read through), and shredding refuses a name that now names another file, leaving
/// that file whole. Before, shredding opened the name again and overwrote and unlinked whatever it
/// named. (The swap is made between the two calls: inside qilin-secrets the window cannot be hit
/// deterministically.)
#[test]
fn a_file_swapped_in_after_the_load_is_not_shredded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.env");
    write_private(&path, "CTP_PRIMARY_PASSWORD=Pw-qx9-first\n");
    let loaded = qilin_sidecar::secrets::load(&qilin_sidecar::secrets::Source::File(path.clone())).unwrap();
    let read = loaded.file_identity.expect("the identity of the file read");
    let next = dir.path().join("next.tmp");
    write_private(&next, "CTP_PRIMARY_PASSWORD=Pw-qx9-second\n");
    std::fs::rename(&next, &path).unwrap();
    let err = qilin_sidecar::secrets::shred(&path, Some(read)).expect_err("another file has the name now");
    assert!(err.to_string().contains("replaced since the secrets were read"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "CTP_PRIMARY_PASSWORD=Pw-qx9-second\n",
        "the new file was touched"
    );
}

#[test]
fn a_set_with_problems_is_refused_and_not_shredded() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, audit) = (dir.path().join(".env.runtime"), dir.path().join("audit.jsonl"));
    let bad =
        CLEAN.replace("CTP_BACKUP_USER_ID=usrqx9back", "CTP_BACKUP_USER_ID=usrqx9prim").replace("BRKqx9b", "BRKqx9a");
    write_private(&runtime, &format!("{bad}CTP_PRIMARY_PASSWORD=Pw-qx9-primary-again\n"));
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o640)).unwrap();
    let mut child = spawn(&runtime, &audit, &["--shred-source"]);
    let (tx, rx) = mpsc::channel();
    drop(tx);
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let (code, _, stderr) = wait(&mut child, rx);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(runtime.exists(), "a refused set must not be shredded");
    assert_eq!(
        fs::read_to_string(&runtime).unwrap().len(),
        bad.len() + "CTP_PRIMARY_PASSWORD=Pw-qx9-primary-again\n".len()
    );
    for needle in
        ["CTP_BACKUP_USER_ID", "same broker and user", "CTP_PRIMARY_PASSWORD", "duplicated", "group/world-readable"]
    {
        assert!(stderr.contains(needle), "{needle} not in\n{stderr}");
    }
    let all = format!("{stdout}\n{stderr}\n{}", fs::read_to_string(&audit).unwrap());
    assert_no_leak("refused run", &all);
    assert!(LEAKS.iter().any(|l| "Pw-qx9-primary-again".contains(l)), "the duplicate's value is grepped for too");
    assert!(!all.contains("primary-again"), "{all}");
    let entry = audit_entries(&audit).pop().unwrap();
    assert_eq!(entry["exit_code"], 1);
    assert_eq!(entry["actions"][0]["problems"].as_array().unwrap().len(), 3, "{entry}");
}

/// Everything a full run shows to the world: stdout, stderr (trace logging), the audit log, and its
/// argv and environment as /proc shows them while it holds the secrets.
#[test]
fn leak_grep_of_a_full_run() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, audit) = (dir.path().join(".env.runtime"), dir.path().join("audit.jsonl"));
    write_private(&runtime, CLEAN);
    let mut child = spawn(&runtime, &audit, &["--shred-source", "--profile", "live"]);
    let (line, rest) = summary(&mut child);
    let proc = format!("/proc/{}", child.id());
    let cmdline = fs::read(format!("{proc}/cmdline")).unwrap();
    let environ = fs::read(format!("{proc}/environ")).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains("RUST_LOG=trace"), "read the right process");
    let (code, more, stderr) = stop(child, rest);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("TRACE") || stderr.contains("DEBUG"), "trace logging was on:\n{stderr}");
    for (what, text) in [
        ("stdout", format!("{line}\n{more}")),
        ("stderr", stderr),
        ("audit log", fs::read_to_string(&audit).unwrap()),
        ("cmdline", String::from_utf8_lossy(&cmdline).into_owned()),
        ("environ", String::from_utf8_lossy(&environ).into_owned()),
    ] {
        assert_no_leak(what, &text);
    }
}

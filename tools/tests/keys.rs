//! `qilinctl keys` as a process: the rotation schedule across injected times (`--now-unix-s`) with
//! the default periods, grace verification (the previous key verifies during its grace, not after,
//! a retired one never), a flipped ciphertext byte detected and named, a wrong or missing master
//! key refused with the clear error, backup/restore round trip and a restore refused under another
//! master key, one audit entry per rotation with the chain intact, rotations from concurrent
//! processes not lost, and a leak grep of every output and file for key material and the master key.
//!
//! Every test uses its own directory (store, audit log) and a cheap Argon2id memory cost
//! (`QILIN_KEYS_TEST_KDF_M_COST_KIB`, which only debug builds obey), except the one that checks the
//! default parameters and the one that checks that a release build ignores the setting.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use serde_json::Value;

const MASTER: &str = "zq8-master-key-for-tests-0123456789abcdef";
const OTHER_MASTER: &str = "zq8-another-master-key-0123456789abcdef";
const DAY: i64 = 86_400;
const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// A store and an audit log in a fresh directory, and every output `qilinctl keys` printed there.
struct Keys {
    dir: tempfile::TempDir,
    master: String,
    cheap_kdf: bool,
    outputs: Vec<String>,
}

impl Keys {
    fn new() -> Keys {
        Keys { dir: tempfile::tempdir().unwrap(), master: MASTER.into(), cheap_kdf: true, outputs: Vec::new() }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("state/keys.json")
    }

    fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    fn command(&self, args: &[&str], now: i64) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qilinctl"));
        cmd.arg("keys").args(args).arg("--now-unix-s").arg(now.to_string());
        cmd.env("QILIN_KEY_STORE", self.store()).env("QILIN_AUDIT_LOG", self.audit_log()).env_remove("SUDO_USER");
        if self.master.is_empty() {
            cmd.env_remove("QILIN_MASTER_KEY");
        } else {
            cmd.env("QILIN_MASTER_KEY", &self.master);
        }
        if self.cheap_kdf {
            cmd.env("QILIN_KEYS_TEST_KDF_M_COST_KIB", "64");
        } else {
            cmd.env_remove("QILIN_KEYS_TEST_KDF_M_COST_KIB");
        }
        cmd
    }

    /// Runs `qilinctl keys ARGS --now-unix-s NOW` with `stdin`; keeps stdout and stderr for the leak grep.
    fn run_with(&mut self, args: &[&str], now: i64, stdin: &str) -> Output {
        let mut child = self
            .command(args, now)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        self.outputs.push(format!("{}{}", text(&out.stdout), text(&out.stderr)));
        out
    }

    fn run(&mut self, args: &[&str], now: i64) -> Output {
        self.run_with(args, now, "")
    }

    /// Runs and asserts the exit code.
    fn ok(&mut self, args: &[&str], now: i64) -> String {
        let out = self.run(args, now);
        assert_eq!(out.status.code(), Some(0), "keys {args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// The material of NAME (VERSION, default active), revealed on purpose (not kept for the leak grep).
    fn reveal(&mut self, name: &str, version: Option<u32>, now: i64) -> String {
        let version = version.map(|v| v.to_string());
        let mut args = vec!["show", name, "--reveal"];
        if let Some(v) = &version {
            args.extend(["--version", v]);
        }
        let out = self.command(&args, now).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let token = text(&out.stdout).trim_end().to_owned();
        assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()), "a 64-hex token");
        token
    }

    /// `keys verify NAME` with `token` on stdin: the exit code and stdout.
    fn verify(&mut self, name: &str, token: &str, now: i64) -> (i32, String) {
        let out = self.run_with(&["verify", name], now, &format!("{token}\n"));
        (out.status.code().unwrap(), text(&out.stdout))
    }

    fn list(&mut self, now: i64) -> Value {
        serde_json::from_str(&self.ok(&["list", "--json"], now)).unwrap()
    }

    /// The audit entries' (command, exit code, first action).
    fn audit_entries(&self) -> Vec<(String, i64, Value)> {
        fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["command"].as_str().unwrap().to_owned(), v["exit_code"].as_i64().unwrap(), v["actions"][0].clone())
            })
            .collect()
    }

    fn audit_verifies(&self) {
        let out = Command::new(env!("CARGO_BIN_EXE_qilinctl"))
            .args(["audit", "verify", "--log"])
            .arg(self.audit_log())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "audit verify: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains("chain intact"));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn active_versions(list: &Value) -> Vec<(String, u64)> {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap().to_owned(), k["active_version"].as_u64().unwrap()))
        .collect()
}

fn named(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

#[test]
fn the_schedule_rotates_each_type_at_its_default_period_and_audits_each_rotation() {
    let mut k = Keys::new();
    for (name, t) in [("nats-token", "api"), ("journal-encryption", "encryption"), ("audit-signing", "signing")] {
        k.ok(&["add", name, "--type", t], T0);
    }
    let list = k.list(T0);
    let periods: Vec<u64> =
        list["keys"].as_array().unwrap().iter().map(|k| k["rotation_period_days"].as_u64().unwrap()).collect();
    assert_eq!(periods, [90, 180, 60]);
    assert_eq!(list["keys"][2]["next_due"], "2026-03-02T00:00:00Z");

    assert!(
        k.ok(&["rotate", "--due"], T0 + 59 * DAY).contains("nothing due (next: audit-signing at 2026-03-02T00:00:00Z)")
    );
    assert_eq!(k.list(T0 + 60 * DAY - 1)["keys"][2]["due"], false);
    assert_eq!(k.list(T0 + 60 * DAY)["keys"][2]["due"], true);
    let out = k.ok(&["rotate", "--due"], T0 + 60 * DAY);
    assert!(out.contains("rotated audit-signing: version 1 -> version 2 (scheduled)"), "{out}");
    assert_eq!(
        active_versions(&k.list(T0 + 60 * DAY)),
        named(&[("nats-token", 1), ("journal-encryption", 1), ("audit-signing", 2)])
    );
    assert!(k.ok(&["rotate", "--due"], T0 + 89 * DAY).contains("nothing due"));
    let out = k.ok(&["rotate", "--due"], T0 + 90 * DAY);
    assert!(
        out.contains("rotated nats-token: version 1 -> version 2 (scheduled)") && !out.contains("audit-signing"),
        "{out}"
    );
    k.ok(&["rotate", "--due"], T0 + 120 * DAY);
    k.ok(&["rotate", "--due"], T0 + 180 * DAY);
    assert_eq!(
        active_versions(&k.list(T0 + 180 * DAY)),
        named(&[("nats-token", 3), ("journal-encryption", 2), ("audit-signing", 4)])
    );

    // One audit entry per rotation (6), each naming the key and both versions; retirements apart.
    let entries = k.audit_entries();
    let rotations: Vec<(String, u64, u64)> = entries
        .iter()
        .filter(|(c, _, _)| c == "keys rotate")
        .map(|(_, code, a)| {
            assert_eq!((*code, a["trigger"].as_str(), a["outcome"].as_str()), (0, Some("scheduled"), Some("ok")));
            (
                a["key"].as_str().unwrap().to_owned(),
                a["old_version"].as_u64().unwrap(),
                a["new_version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rotations,
        [
            ("audit-signing".to_owned(), 1, 2),
            ("nats-token".to_owned(), 1, 2),
            ("audit-signing".to_owned(), 2, 3),
            ("nats-token".to_owned(), 2, 3),
            ("journal-encryption".to_owned(), 1, 2),
            ("audit-signing".to_owned(), 3, 4),
        ]
    );
    assert_eq!(entries.iter().filter(|(c, _, _)| c == "keys add").count(), 3);
    assert!(
        entries.iter().all(|(c, _, _)| ["keys add", "keys rotate", "keys retire"].contains(&c.as_str())),
        "{entries:?}"
    );
    k.audit_verifies();
}

#[test]
fn the_previous_key_verifies_during_its_grace_only_and_a_retired_one_never() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    let v1 = k.reveal("nats-token", None, T0);
    assert_eq!(k.verify("nats-token", &v1, T0), (0, "accepted: nats-token version 1 (active)\n".into()));
    let t1 = T0 + 10 * DAY;
    let out = k.ok(&["rotate", "nats-token"], t1);
    assert!(
        out.contains(
            "rotated nats-token: version 1 -> version 2 (forced); version 1 still verifies until 2026-01-18T00:00:00Z"
        ),
        "{out}"
    );
    let v2 = k.reveal("nats-token", None, t1);
    assert_ne!(v1, v2);
    assert_eq!(k.verify("nats-token", &v2, t1).0, 0);
    assert_eq!(
        k.verify("nats-token", &v1, t1),
        (0, "accepted: nats-token version 1 (grace, until 2026-01-18T00:00:00Z)\n".into())
    );
    assert_eq!(k.verify("nats-token", &v1, t1 + 7 * DAY - 1).0, 0, "last second of grace");
    assert_eq!(k.verify("nats-token", &v1, t1 + 7 * DAY), (1, "refused: not a current version of nats-token\n".into()));
    assert_eq!(k.verify("nats-token", &"0".repeat(64), t1).0, 1, "a made-up token");
    let history: Value = serde_json::from_str(&k.ok(&["history", "nats-token", "--json"], t1 + 7 * DAY)).unwrap();
    assert_eq!(history["versions"][0]["state"], "retired", "state at the given time");

    // The scheduled run writes the retirement down and wipes the material: never again, even at
    // an earlier time.
    let out = k.ok(&["rotate", "--due"], t1 + 8 * DAY);
    assert!(out.contains("retired nats-token version 1 (grace ended 2026-01-18T00:00:00Z)"), "{out}");
    assert_eq!(k.verify("nats-token", &v1, t1).0, 1);
    let out = k.run(&["show", "nats-token", "--version", "1", "--reveal"], t1 + 8 * DAY);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("key nats-token has no version 1 holding material (retired versions are wiped)")
    );
    let store: Value = serde_json::from_slice(&fs::read(k.store()).unwrap()).unwrap();
    assert_eq!(store["keys"][0]["versions"][0]["state"], "retired");
    assert_eq!(store["keys"][0]["versions"][0].get("material"), None);
    let history = k.ok(&["history", "nats-token"], t1 + 8 * DAY);
    assert!(
        history.contains("v1    retired  by add") && history.contains("retired 2026-01-18T00:00:00Z (grace ended)"),
        "{history}"
    );

    // A leaked key is revoked: no grace at all.
    k.ok(&["rotate", "nats-token", "--revoke-previous"], t1 + 9 * DAY);
    assert_eq!(k.verify("nats-token", &v2, t1 + 9 * DAY).0, 1);
    let audit = k.audit_entries();
    let revoked = &audit.iter().rfind(|(c, _, _)| c == "keys rotate").unwrap().2;
    assert_eq!((revoked["old_version"].as_u64(), revoked["old_state"].as_str()), (Some(2), Some("retired")));
    k.audit_verifies();
}

/// Flips the first hex digit of the ciphertext of key `index`'s oldest version with material.
fn flip_ciphertext(k: &Keys, index: usize) {
    let text = fs::read_to_string(k.store()).unwrap();
    let store: Value = serde_json::from_str(&text).unwrap();
    let versions = store["keys"][index]["versions"].as_array().unwrap();
    let ct = versions.iter().find_map(|v| v["material"]["ciphertext"].as_str()).unwrap();
    let flipped = format!("{}{}", if ct.starts_with('f') { 'e' } else { 'f' }, &ct[1..]);
    assert_eq!(text.matches(ct).count(), 1);
    fs::write(k.store(), text.replace(ct, &flipped)).unwrap();
}

#[test]
fn a_tampered_ciphertext_is_detected_named_and_nothing_is_changed() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    k.ok(&["add", "journal-encryption", "--type", "encryption"], T0);
    flip_ciphertext(&k, 1);
    let before = fs::read(k.store()).unwrap();
    for args in
        [&["list"][..], &["rotate", "nats-token"], &["rotate", "--due"], &["backup", "--out", "/nonexistent/b.json"]]
    {
        let out = k.run(args, T0 + 365 * DAY);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(
                "key journal-encryption version 1: its ciphertext fails authentication (tampered with or damaged)"
            ),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(&k.store().display().to_string()));
    }
    assert_eq!(fs::read(k.store()).unwrap(), before, "the store is untouched");
    let failed: Vec<(String, i64)> = k.audit_entries().into_iter().skip(2).map(|(c, code, _)| (c, code)).collect();
    assert_eq!(failed, [("keys rotate".into(), 2), ("keys rotate".into(), 2), ("keys backup".into(), 2)]);
}

#[test]
fn a_wrong_or_missing_master_key_is_refused_with_a_clear_error() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    let before = fs::read(k.store()).unwrap();
    k.master = OTHER_MASTER.into();
    for args in [&["list"][..], &["rotate", "nats-token"], &["show", "nats-token", "--reveal"]] {
        let out = k.run(args, T0);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "qilinctl: keys: the key store {} cannot be decrypted with this QILIN_MASTER_KEY (wrong master key, or \
                 the store was tampered with)\n",
                k.store().display()
            ),
            "{args:?}"
        );
        assert_eq!(out.stdout, b"", "{args:?}");
    }
    k.master = String::new();
    let out = k.run(&["list"], T0);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("QILIN_MASTER_KEY is not set"), "{}", text(&out.stderr));
    k.master = "zq8-too-short".into();
    let out = k.run(&["list"], T0);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("QILIN_MASTER_KEY is unusable: shorter than 32 characters") && !stderr.contains("zq8"),
        "{stderr}"
    );
    assert_eq!(fs::read(k.store()).unwrap(), before);
    k.master = MASTER.into();
    assert_eq!(k.list(T0)["keys"][0]["name"], "nats-token", "the right key still opens it");
}

#[test]
fn corrupt_json_is_named_by_file_and_line() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    let text_before = fs::read_to_string(k.store()).unwrap();
    let broken = text_before.replacen("\"type\": \"api\"", "\"type\": api", 1);
    let line = broken.lines().position(|l| l.contains("\"type\": api")).unwrap() + 1;
    fs::write(k.store(), broken).unwrap();
    let out = k.run(&["list"], T0);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("the key store {}: line {line}, column", k.store().display())), "{stderr}");
}

#[test]
fn backup_and_restore_round_trip_and_another_master_key_is_refused() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    k.ok(&["add", "audit-signing", "--type", "signing"], T0);
    let v1 = k.reveal("nats-token", None, T0);
    let backup = k.dir.path().join("backups/keys-2026-01-01.json");
    let b = backup.to_str().unwrap();
    assert!(k.ok(&["backup", "--out", b], T0).contains("(2 keys, 2 versions)"));
    let mode = |p: &PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&backup), 0o600);
    let out = k.run(&["backup", "--out", b], T0);
    assert!(out.status.code() == Some(2) && text(&out.stderr).contains("never overwrites"), "{}", text(&out.stderr));

    k.ok(&["rotate", "nats-token", "--revoke-previous"], T0 + DAY);
    assert_eq!(k.verify("nats-token", &v1, T0 + DAY).0, 1);
    let rotated = fs::read(k.store()).unwrap();
    // Older than the store (a rollback of the revocation): only with --force (see
    // restoring_an_older_backup_needs_force_and_the_forced_rollback_is_audited).
    let out = k.ok(&["restore", "--from", b, "--force"], T0 + DAY);
    assert!(out.contains("the replaced store is kept as"), "{out}");
    let kept = k.dir.path().join("state/keys.json.before-restore");
    assert_eq!(fs::read(&kept).unwrap(), rotated);
    assert_eq!((mode(&kept), mode(&k.store())), (0o600, 0o600));
    assert_eq!(k.verify("nats-token", &v1, T0 + DAY), (0, "accepted: nats-token version 1 (active)\n".into()));

    // A backup made under another master key: refused, store untouched.
    let mut other = Keys::new();
    other.master = OTHER_MASTER.into();
    other.ok(&["add", "nats-token", "--type", "api"], T0);
    let foreign = other.dir.path().join("foreign.json");
    other.ok(&["backup", "--out", foreign.to_str().unwrap()], T0);
    let before = fs::read(k.store()).unwrap();
    let out = k.run(&["restore", "--from", foreign.to_str().unwrap()], T0 + DAY);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "qilinctl: keys: backup {}: it was made under a different QILIN_MASTER_KEY (or is damaged); nothing was restored\n",
            foreign.display()
        )
    );
    assert_eq!(fs::read(k.store()).unwrap(), before);

    // A damaged backup: caught by its checksum before any decryption.
    let damaged = fs::read_to_string(&backup).unwrap().replacen("nats-token", "nats-tokem", 1);
    fs::write(&backup, damaged).unwrap();
    let out = k.run(&["restore", "--from", b], T0 + DAY);
    assert!(out.status.code() == Some(2) && text(&out.stderr).contains("damaged: its checksum does not match"));
    assert_eq!(fs::read(k.store()).unwrap(), before);

    let commands: Vec<(String, i64)> = k.audit_entries().into_iter().map(|(c, code, _)| (c, code)).collect();
    let expected = [
        ("keys add", 0),
        ("keys add", 0),
        ("keys reveal", 0),
        ("keys backup", 0),
        ("keys backup", 2),
        ("keys rotate", 0),
        ("keys restore", 0),
        ("keys restore", 2),
        ("keys restore", 2),
    ];
    assert_eq!(commands, expected.map(|(c, code)| (c.to_owned(), code)));
    k.audit_verifies();
}

#[test]
fn rotations_from_concurrent_processes_are_serialized_not_lost() {
    let k = Keys::new();
    let out = k.command(&["add", "nats-token", "--type", "api"], T0).output().unwrap();
    assert!(out.status.success());
    let (processes, each) = (4, 3);
    let children: Vec<_> = (0..processes)
        .map(|_| {
            let mut sh = Command::new("sh");
            let qilinctl = env!("CARGO_BIN_EXE_qilinctl");
            let script = format!(
                "for i in $(seq {each}); do {qilinctl} keys rotate nats-token --now-unix-s {T0} || exit 1; done"
            );
            sh.arg("-c").arg(script);
            for (key, value) in k.command(&[], T0).get_envs() {
                match value {
                    Some(v) => sh.env(key, v),
                    None => sh.env_remove(key),
                };
            }
            sh.stdout(Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let mut k = k;
    assert_eq!(k.list(T0)["keys"][0]["active_version"], processes * each + 1);
    let rotations = k.audit_entries().into_iter().filter(|(c, _, _)| c == "keys rotate").count();
    assert_eq!(rotations as u64, processes * each);
    k.audit_verifies();
}

#[test]
fn nothing_is_done_when_the_audit_log_cannot_be_written() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    let before = fs::read(k.store()).unwrap();
    let blocker = k.dir.path().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    let out = k.run(&["rotate", "nats-token", "--audit-log", blocker.join("audit.jsonl").to_str().unwrap()], T0);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nothing done"));
    assert_eq!(fs::read(k.store()).unwrap(), before);
}

#[test]
fn a_store_created_without_the_test_setting_uses_the_default_argon2id_parameters() {
    let mut k = Keys::new();
    k.cheap_kdf = false;
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    let store: Value = serde_json::from_slice(&fs::read(k.store()).unwrap()).unwrap();
    let kdf = &store["kdf"];
    assert_eq!((kdf["algorithm"].as_str(), kdf["version"].as_u64()), (Some("argon2id"), Some(19)));
    assert_eq!(
        (kdf["m_cost_kib"].as_u64(), kdf["t_cost"].as_u64(), kdf["p_cost"].as_u64()),
        (Some(65_536), Some(3), Some(1))
    );
    assert_eq!(kdf["salt"].as_str().unwrap().len(), 32);
    assert_eq!(store["format"], "qilin-keys/1");
}

#[test]
fn no_output_file_or_log_ever_carries_key_material_or_the_master_key() {
    let mut k = Keys::new();
    let mut tokens = Vec::new();
    for (name, t) in [("nats-token", "api"), ("rate-limit-token", "api"), ("audit-signing", "signing")] {
        k.ok(&["add", name, "--type", t], T0);
        tokens.push(k.reveal(name, None, T0));
    }
    k.ok(&["list"], T0);
    k.ok(&["list", "--json"], T0);
    k.ok(&["rotate", "nats-token"], T0 + DAY);
    tokens.push(k.reveal("nats-token", None, T0 + DAY));
    k.ok(&["rotate", "--due"], T0 + 61 * DAY);
    tokens.push(k.reveal("audit-signing", None, T0 + 61 * DAY));
    k.ok(&["rotate", "rate-limit-token", "--revoke-previous"], T0 + 62 * DAY);
    tokens.push(k.reveal("rate-limit-token", None, T0 + 62 * DAY));
    for name in ["nats-token", "rate-limit-token", "audit-signing"] {
        k.ok(&["history", name], T0 + 62 * DAY);
        k.ok(&["history", name, "--json"], T0 + 62 * DAY);
        k.ok(&["show", name], T0 + 62 * DAY);
    }
    // Verifying echoes nothing of the token, accepted or not.
    assert_eq!(k.verify("nats-token", &tokens[3], T0 + 62 * DAY).0, 0);
    assert_eq!(k.verify("nats-token", &tokens[0][..40], T0 + 62 * DAY).0, 1);
    let backup = k.dir.path().join("backup.json");
    k.ok(&["backup", "--out", backup.to_str().unwrap()], T0 + 62 * DAY);
    k.ok(&["restore", "--from", backup.to_str().unwrap()], T0 + 62 * DAY);
    k.ok(&["rotate", "--due"], T0 + 200 * DAY);
    // Failures too.
    k.master = OTHER_MASTER.into();
    assert_eq!(k.run(&["list"], T0).status.code(), Some(2));
    k.master = "zq8-short".into();
    assert_eq!(k.run(&["list"], T0).status.code(), Some(2));
    k.master = MASTER.into();
    flip_ciphertext(&k, 0);
    assert_eq!(k.run(&["rotate", "--due"], T0).status.code(), Some(2));
    let audit_show = Command::new(env!("CARGO_BIN_EXE_qilinctl"))
        .args(["audit", "show", "--log"])
        .arg(k.audit_log())
        .output()
        .unwrap();
    k.outputs.push(text(&audit_show.stdout));

    let mut haystacks: Vec<(String, String)> =
        k.outputs.iter().enumerate().map(|(i, o)| (format!("output {i}"), o.clone())).collect();
    for name in ["state/keys.json", "state/keys.json.before-restore", "backup.json", "audit.jsonl", "audit.jsonl.head"]
    {
        haystacks.push((name.into(), fs::read_to_string(k.dir.path().join(name)).unwrap()));
    }
    assert_eq!(haystacks.len(), 26 + 5, "every output and file is searched");
    for (what, hay) in &haystacks {
        for token in &tokens {
            // Half a token is a leak too.
            for part in [&token[..32], &token[32..]] {
                assert!(!hay.contains(part) && !hay.contains(&part.to_uppercase()), "key material in {what}");
            }
        }
        assert!(!hay.contains(MASTER) && !hay.contains("master-key-for-tests"), "the master key in {what}");
        assert!(!hay.contains("zq8"), "a master key fragment in {what}");
    }
}

/// `qilinctl` as `cargo build --release` makes it. Under `cargo test --release` that is the binary
/// under test; otherwise it is built here with the release profile, into the same target directory
/// as the suite (`<target>/release/qilinctl`), so it is the same artefact a developer's `cargo
/// build --release` makes and is rebuilt only when the code changed. A plain `cargo test` holds the
/// lock of `<target>/debug` only while it compiles, so this nested build does not wait for it.
fn release_qilinctl() -> PathBuf {
    let under_test = PathBuf::from(env!("CARGO_BIN_EXE_qilinctl"));
    if !cfg!(debug_assertions) {
        return under_test;
    }
    let target = under_test.parent().and_then(|p| p.parent()).unwrap().to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "-p", "qilin-tools", "--bin", "qilinctl", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo build --release: {}", text(&out.stderr));
    target.join("release/qilinctl")
}

/// The store's recorded Argon2id memory cost and the command's stderr after `keys add` by `bin`
/// with `QILIN_KEYS_TEST_KDF_M_COST_KIB=64`.
fn m_cost_created_by(bin: &PathBuf) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let out = Command::new(bin)
        .args(["keys", "add", "nats-token", "--type", "api", "--now-unix-s", &T0.to_string()])
        .env("QILIN_KEY_STORE", &store)
        .env("QILIN_AUDIT_LOG", dir.path().join("audit.jsonl"))
        .env("QILIN_MASTER_KEY", MASTER)
        .env("QILIN_KEYS_TEST_KDF_M_COST_KIB", "64")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file: Value = serde_json::from_slice(&fs::read(&store).unwrap()).unwrap();
    (file["kdf"]["m_cost_kib"].as_u64().unwrap(), text(&out.stderr))
}

#[test]
fn the_release_build_ignores_the_test_kdf_setting_and_says_so() {
    let (m_cost, stderr) = m_cost_created_by(&release_qilinctl());
    assert_eq!(m_cost, 65_536, "the release build created the store with the test memory cost; stderr: {stderr}");
    assert!(
        stderr.contains("QILIN_KEYS_TEST_KDF_M_COST_KIB is set and ignored: this is a release build")
            && !stderr.contains("weak Argon2id"),
        "{stderr}"
    );
    if cfg!(debug_assertions) {
        // The debug build the suite runs still obeys it (what keeps the other tests fast).
        assert_eq!(m_cost_created_by(&PathBuf::from(env!("CARGO_BIN_EXE_qilinctl"))).0, 64);
    }
}

#[test]
fn a_store_file_copied_back_over_a_newer_one_is_refused_and_its_revoked_key_stays_refused() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    let v1 = k.reveal("nats-token", None, T0);
    let old = k.dir.path().join("keys.json.copy");
    fs::copy(k.store(), &old).unwrap();
    k.ok(&["rotate", "nats-token", "--revoke-previous"], T0 + DAY);
    assert_eq!(k.verify("nats-token", &v1, T0 + DAY).0, 1, "revoked");

    // A plain copy of the older file over the store: the revoked version must not come back.
    fs::copy(&old, k.store()).unwrap();
    let copied = fs::read(k.store()).unwrap();
    let (code, stdout) = k.verify("nats-token", &v1, T0 + DAY);
    assert_eq!((code, stdout.as_str()), (2, ""), "the revoked key after the copy: {}", k.outputs.last().unwrap());
    let expected = format!(
        "qilinctl: keys: the key store {store} is generation 1, but the audit log {log} recorded generation 2 of it",
        store = k.store().display(),
        log = k.audit_log().display()
    );
    for args in [&["list"][..], &["rotate", "--due"], &["show", "nats-token", "--reveal"]] {
        let out = k.run(args, T0 + DAY);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        assert!(stderr.contains("restore --force --from"), "{args:?}: {stderr}");
        assert_eq!(out.stdout, b"", "{args:?}");
    }
    assert_eq!(fs::read(k.store()).unwrap(), copied, "nothing was changed");

    // Keeping the older store is possible, on purpose only, and audited.
    let store = k.store();
    let from = store.to_str().unwrap();
    let out = k.run(&["restore", "--from", from], T0 + DAY);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = k.ok(&["restore", "--from", from, "--force"], T0 + DAY);
    assert!(out.contains("rolled back from generation 2 to generation 1 (forced)"), "{out}");
    assert_eq!(k.verify("nats-token", &v1, T0 + DAY).0, 0, "the older store, accepted");
    let (command, code, action) = k.audit_entries().pop().unwrap();
    assert_eq!((command.as_str(), code), ("keys restore", 0));
    assert_eq!(
        (&action["forced"], &action["rolled_back"], &action["backup_generation"], &action["newest_generation"]),
        (&Value::from(true), &Value::from(true), &Value::from(1), &Value::from(2))
    );
    assert_eq!(action["store_generation"], 3, "{action}");
    k.audit_verifies();
}

#[test]
fn restoring_an_older_backup_needs_force_and_the_forced_rollback_is_audited() {
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    let v1 = k.reveal("nats-token", None, T0);
    let backup = k.dir.path().join("backup-1.json");
    let b = backup.to_str().unwrap();
    k.ok(&["backup", "--out", b], T0);
    k.ok(&["rotate", "nats-token", "--revoke-previous"], T0 + DAY);
    let rotated = fs::read(k.store()).unwrap();

    let out = k.run(&["restore", "--from", b], T0 + DAY);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "an older backup restored without --force: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "qilinctl: keys: backup {b} holds generation 1 of the key store, but the audit log {} recorded generation 2 \
             of it",
            k.audit_log().display()
        )) && stderr.contains("nothing was restored (`--force` restores it anyway; the rollback is audited)"),
        "{stderr}"
    );
    assert_eq!(fs::read(k.store()).unwrap(), rotated, "nothing was restored");
    assert_eq!(k.verify("nats-token", &v1, T0 + DAY).0, 1, "the revoked key stays revoked");

    let out = k.ok(&["restore", "--from", b, "--force"], T0 + DAY);
    assert!(out.contains("rolled back from generation 2 to generation 1 (forced)"), "{out}");
    assert_eq!(k.verify("nats-token", &v1, T0 + DAY).0, 0, "restored on purpose");
    assert_eq!(k.list(T0 + DAY)["generation"], 3, "re-sealed above every generation seen");
    let restores: Vec<(i64, Value)> =
        k.audit_entries().into_iter().filter(|(c, _, _)| c == "keys restore").map(|(_, code, a)| (code, a)).collect();
    assert_eq!(restores.len(), 2);
    assert_eq!(restores[0].0, 2);
    assert!(restores[0].1["error"].as_str().unwrap().contains("holds generation 1 of the key store"));
    let (code, forced) = &restores[1];
    assert_eq!(*code, 0);
    assert_eq!((&forced["forced"], &forced["rolled_back"]), (&Value::from(true), &Value::from(true)));
    assert_eq!(
        (&forced["backup_generation"], &forced["newest_generation"], &forced["store_generation"]),
        (&Value::from(1), &Value::from(2), &Value::from(3))
    );
    k.audit_verifies();
}

#[test]
fn jwt_and_database_keys_are_refused_with_the_reason_and_nothing_is_written() {
    let mut k = Keys::new();
    for (key_type, reason) in [("jwt", "issues and verifies no JSON Web Tokens"), ("database", "has no database")] {
        let out = k.run(&["add", "some-key", "--type", key_type], T0);
        assert_eq!(out.status.code(), Some(2), "--type {key_type}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("key type '{key_type}' is not offered: qilin-feed {reason}"))
                && stderr.contains("the types are api, encryption and signing"),
            "--type {key_type}: {stderr}"
        );
    }
    let out = k.run(&["add", "some-key", "--type", "hsm"], T0);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown key type 'hsm'"), "{}", text(&out.stderr));
    assert!(!k.store().exists(), "a refused add creates no store");
    k.ok(&["add", "some-key", "--type", "Signing"], T0);
    assert_eq!(k.list(T0)["keys"][0]["type"], "signing");
}

#[test]
fn rotate_publishes_every_keys_next_due_date_without_material_for_the_metrics() {
    let mut k = Keys::new();
    for (name, t) in [("nats-token", "api"), ("journal-encryption", "encryption"), ("audit-signing", "signing")] {
        k.ok(&["add", name, "--type", t], T0);
    }
    let out = k.dir.path().join("schedule.json");
    let out_arg = out.to_str().unwrap().to_owned();
    let read = || -> Value { serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap() };
    let due = |v: &Value| -> Vec<(String, u64, i64)> {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["name"].as_str().unwrap().to_owned(),
                    k["active_version"].as_u64().unwrap(),
                    k["next_due_unix_s"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    k.ok(&["rotate", "--due", "--schedule-out", &out_arg], T0 + 10);
    let first = read();
    {
        use std::os::unix::fs::PermissionsExt;
        // No material, and the recorder (another uid) reads it: world-readable, unlike the store.
        assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o644);
    }
    assert_eq!(
        (first["format"].as_str(), first["written_unix_s"].as_i64()),
        (Some("qilin-keys-schedule/1"), Some(T0 + 10))
    );
    assert_eq!(
        due(&first),
        [
            ("nats-token".to_owned(), 1, T0 + 90 * DAY),
            ("journal-encryption".to_owned(), 1, T0 + 180 * DAY),
            ("audit-signing".to_owned(), 1, T0 + 60 * DAY),
        ]
    );
    // Day 60: audit-signing rotates; its next due date moves 60 days on.
    k.ok(&["rotate", "--due", "--schedule-out", &out_arg], T0 + 60 * DAY);
    assert_eq!(due(&read())[2], ("audit-signing".to_owned(), 2, T0 + 120 * DAY));
    let written = fs::read_to_string(&out).unwrap();
    for version in [1, 2] {
        let token = k.reveal("audit-signing", Some(version), T0 + 60 * DAY);
        assert!(!written.contains(&token), "the schedule holds no material");
    }

    // A schedule that cannot be written: the rotation is still made and audited, exit 6, named.
    let nowhere = k.dir.path().join("no-such-dir/schedule.json");
    let result = k.run(&["rotate", "nats-token", "--schedule-out", nowhere.to_str().unwrap()], T0 + 61 * DAY);
    assert_eq!(result.status.code(), Some(6), "{}", text(&result.stderr));
    assert!(
        text(&result.stderr).contains(&format!("the key schedule {} could not be written", nowhere.display())),
        "{}",
        text(&result.stderr)
    );
    assert_eq!(active_versions(&k.list(T0 + 61 * DAY))[0], ("nats-token".to_owned(), 2));
    k.audit_verifies();
}

#[test]
fn render_nats_writes_a_user_per_live_version_and_the_active_one_for_the_client() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut k = Keys::new();
    k.ok(&["add", "nats-token", "--type", "api"], T0);
    k.ok(&["rotate", "nats-token"], T0 + DAY);
    k.ok(&["rotate", "nats-token"], T0 + 5 * DAY);
    let (include, client) = (k.dir.path().join("srv/auth.conf"), k.dir.path().join("cli/nats.env"));
    let render = |k: &mut Keys, now: i64, extra: &[&str]| {
        let mut args =
            vec!["render-nats", "nats-token", "--server-include", include.to_str().unwrap(), "--client-file"];
        args.push(client.to_str().unwrap());
        args.extend_from_slice(extra);
        k.run(&args, now)
    };
    // Day 6: version 1's grace (rotation day 1 + 7) still runs: three users, the client on v3.
    let out = render(&mut k, T0 + 6 * DAY, &["--client-owner", "nobody"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let tokens: Vec<String> = (1..=3).map(|v| k.reveal("nats-token", Some(v), T0 + 6 * DAY)).collect();
    let server = fs::read_to_string(&include).unwrap();
    for (v, token) in tokens.iter().enumerate() {
        let v = v + 1;
        assert!(server.contains(&format!("{{ user: \"qilin-nats-v{v}\", password: \"{token}\" }}")), "{server}");
    }
    assert_eq!(fs::read_to_string(&client).unwrap(), format!("NATS_USER=qilin-nats-v3\nNATS_PASSWORD={}\n", tokens[2]));
    for path in [&include, &client] {
        assert_eq!(fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody user");
    assert_eq!(fs::metadata(&client).unwrap().uid(), nobody.uid.as_raw(), "the client file is given to its reader");

    // Day 9: version 1's grace is over, version 2's (day 5 + 7) is not.
    render(&mut k, T0 + 9 * DAY, &[]);
    let server = fs::read_to_string(&include).unwrap();
    assert!(!server.contains("qilin-nats-v1") && !server.contains(&tokens[0]), "{server}");
    assert!(server.contains("qilin-nats-v2") && server.contains("qilin-nats-v3"), "{server}");

    // A pid file that names no process: rendered and audited, exit 7, the reason on stderr.
    let pid_file = k.dir.path().join("nats.pid");
    fs::write(&pid_file, "999999999\n").unwrap();
    let out = render(&mut k, T0 + 9 * DAY, &["--reload-pid-file", pid_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("rendered, but nats-server was not reloaded"), "{}", text(&out.stderr));

    // The audit entries and everything printed name versions and users, never a token.
    let audit = fs::read_to_string(k.audit_log()).unwrap();
    assert!(tokens.iter().all(|t| !audit.contains(t.as_str())), "a token in the audit log");
    assert!(k.outputs.iter().all(|o| tokens.iter().all(|t| !o.contains(t.as_str()))), "a token printed");
    let renders: Vec<_> = k.audit_entries().into_iter().filter(|(c, _, _)| c == "keys render-nats").collect();
    assert_eq!(renders.iter().map(|(_, code, _)| *code).collect::<Vec<_>>(), [0, 0, 7]);
    assert_eq!(renders[0].2["users"].as_array().unwrap().len(), 3);
    k.audit_verifies();
}

//! Journal encryption at rest end to end (issue 23, item 3), with real processes: a key store and
//! `qilinctl keys render-key journal-encryption`, a qilin-core on the simulator, two qilin-recorders
//! on its segment (one plain, one with `[journal] encryption_key_file`), then the encrypted journal
//! read back by the journal crate, by `qilinctl export --csv` (with `--key-file` and with `--keys`)
//! and replayed by a second qilin-core (`--replay … --replay-key-file`), each compared byte for byte
//! with the plain journal of the same run; and the refusals: a wrong key, a retired version, a
//! block altered or moved, named by version and file, by qilinctl and by the core.

mod common;

use std::{
    fs,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Arc,
};

use common::*;
use nix::sys::signal::Signal;
use qilin_journal::{DirReader, Entry, Keyring, journal_files};
use qilin_shm::{Next, Reader, Start, TickRecord};
use zerocopy::IntoBytes;

/// `qilinctl` with the test's key store, master key and key audit log.
fn ctl(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = Command::new(workspace_bin("qilinctl"))
        .args(args)
        .env("QILIN_KEY_STORE", dir.join("keys.json"))
        .env("QILIN_AUDIT_LOG", dir.join("keys-audit.jsonl"))
        .env("QILIN_MASTER_KEY", "zq8-master-key-for-journal-tests-0123456789")
        .env("QILIN_KEYS_TEST_KDF_M_COST_KIB", "64")
        .output()
        .expect("running qilinctl");
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(dir, args);
    assert_eq!(code, Some(0), "qilinctl {args:?}: {out}{err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A second recorder config (its own name, so its status file is its own).
fn encrypted_recorder_config(dir: &Path, segment: &Path, journal: &Path, key_file: &Path) -> PathBuf {
    let path = dir.join("recorder-enc.toml");
    fs::write(
        &path,
        format!(
            "name = \"recorder-enc\"\nsegment = {:?}\njournal_dir = {:?}\nstatus_interval_ms = 50\n\
             [journal]\nretry_interval_ms = 100\nencryption_key_file = {:?}\n[metrics]\nenabled = false\n",
            s(segment),
            s(journal),
            s(key_file),
        ),
    )
    .unwrap();
    path
}

fn wait_position(segment: &Path, name: &str, n: u64) {
    wait_for(&format!("{name} to journal sequence {n}"), || {
        status(segment, name).filter(|s| s["position"].as_u64().is_some_and(|p| p >= n))
    });
}

/// A qilin-core replaying `journal` into its own segment; the segment is removed on drop.
struct ReplayCore {
    child: Child,
    segment: PathBuf,
    log: PathBuf,
}

impl ReplayCore {
    fn start(dir: &Path, name: &str, journal: &Path, key_file: Option<&Path>) -> ReplayCore {
        let feed = unique(name);
        let segment = PathBuf::from(format!("/dev/shm/{feed}"));
        let config = dir.join(format!("{name}.toml"));
        let instruments = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml");
        fs::write(
            &config,
            format!(
                "[feed]\nname = {feed:?}\nsegment_path = {:?}\nring_slots = {}\n\
                 [core]\nlock_memory = false\ncontrol_socket = {:?}\ninstruments_file = {:?}\n",
                s(&segment),
                1 << 15,
                s(&dir.join(format!("{name}.sock"))),
                s(&instruments),
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(workspace_bin("qilin-core"));
        command.arg("--config").arg(&config).arg("--replay").arg(journal);
        if let Some(key) = key_file {
            command.arg("--replay-key-file").arg(key);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::from(fs::File::create(&log).unwrap())).spawn().unwrap();
        ReplayCore { child, segment, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first `n` records the replay published, once it has published them.
    fn records(&mut self, n: u64) -> Vec<TickRecord> {
        let reader = wait_for("the replaying core's segment", || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("qilin-core exited ({status}):\n{}", self.log());
            }
            Reader::open(&self.segment).ok().filter(|r| r.write_cursor() >= n)
        });
        let mut reader = reader;
        reader.seek(Start::Sequence(1));
        let mut out = Vec::new();
        let mut tick = TickRecord::ZERO;
        while (out.len() as u64) < n {
            match reader.try_next(&mut tick) {
                Next::Tick => out.push(tick),
                Next::NewEpoch { .. } => {}
                other => panic!("reading the replay back: {other:?} after {} records", out.len()),
            }
        }
        out
    }
}

impl Drop for ReplayCore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        qilin_testkit::remove_segment_and_status(&self.segment);
    }
}

/// Every tick of the feed's journal in `dir`, read with `keys`.
fn ticks(dir: &Path, feed: &str, keys: Option<Arc<Keyring>>) -> Vec<TickRecord> {
    DirReader::open_keyed(dir, feed, 0..=u32::MAX, keys)
        .unwrap()
        .map(|e| e.unwrap_or_else(|e| panic!("{e}")))
        .filter_map(|e| match e {
            Entry::Tick(t) => Some(t),
            Entry::Gap(_) => None,
        })
        .collect()
}

/// A replayed record without what each replay assigns anew (its publish time).
fn replayed(mut t: TickRecord) -> TickRecord {
    t.publish_ns = 0;
    t
}

#[test]
fn an_encrypted_journal_of_a_live_run_reads_exports_and_replays_byte_for_byte_like_the_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_file = d.join("recorder/journal.key");
    ok(d, &["keys", "add", "journal-encryption", "--type", "encryption"]);
    let out = ok(d, &["keys", "render-key", "journal-encryption", "--out", s(&key_file)]);
    assert!(out.contains("version 1"), "{out}");

    const TICKS: u64 = 20_000;
    let feed = unique("jenc");
    let core = Core::start(d, &feed, 1 << 16, 10_000, TICKS);
    let (plain_dir, sealed_dir) = (d.join("journal-plain"), d.join("journal-sealed"));
    let mut plain = Recorder::start(&recorder_config(d, &core.segment, &plain_dir, ""), &d.join("recorder.log"));
    let mut sealed = Recorder::start(
        &encrypted_recorder_config(d, &core.segment, &sealed_dir, &key_file),
        &d.join("recorder-enc.log"),
    );
    wait_position(&core.segment, "recorder", TICKS);
    wait_position(&core.segment, "recorder-enc", TICKS);
    let enc = status(&core.segment, "recorder-enc").unwrap();
    assert_eq!(
        (enc["journal_key_version"].as_u64(), enc["encryption_key_version"].as_u64()),
        (Some(1), Some(1)),
        "{enc}"
    );
    let plain_status = status(&core.segment, "recorder").unwrap();
    assert!(plain_status["journal_key_version"].is_null(), "{plain_status}");
    assert_eq!(plain.signal(Signal::SIGTERM).code(), Some(0), "{}", plain.log());
    assert_eq!(sealed.signal(Signal::SIGTERM).code(), Some(0), "{}", sealed.log());
    assert!(sealed.log().contains("journal encryption on: new files are sealed with journal-encryption version 1"));

    // The journal crate: the same ticks, byte for byte; nothing of them in clear on disk.
    let keys = Arc::new(Keyring::from_key_files(&[&key_file]).unwrap());
    let (plain_ticks, _) = read_journal(&plain_dir, &feed, TICKS);
    let sealed_ticks = ticks(&sealed_dir, &feed, Some(keys.clone()));
    assert_eq!((plain_ticks.len() as u64, sealed_ticks.len() as u64), (TICKS, TICKS));
    for (a, b) in plain_ticks.iter().zip(&sealed_ticks) {
        assert!(a.as_bytes() == b.as_bytes(), "tick {} differs", a.sequence);
    }
    let files = journal_files(&sealed_dir, &feed).unwrap();
    let bytes = fs::read(&files[0].path).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2, "format 2");
    assert_eq!(u32::from_le_bytes(bytes[36..40].try_into().unwrap()), 1, "key version 1 in the header");
    assert!(
        !bytes.windows(64).any(|w| w == &plain_ticks[100].as_bytes()[..64]),
        "a record's first 64 bytes are in the encrypted file in clear"
    );

    // qilinctl export --csv: the same CSV with the key file and with the key store.
    let export = |journal: &Path, extra: &[&str]| {
        let mut args = vec!["export", "--csv", "--journal-dir", s(journal), "--feed", &feed];
        args.extend_from_slice(extra);
        ctl(d, &args)
    };
    let (code, plain_csv, err) = export(&plain_dir, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(plain_csv.lines().count() as u64 > TICKS, "{err}");
    let (code, csv, err) = export(&sealed_dir, &["--key-file", s(&key_file)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(csv == plain_csv, "export --key-file differs from the plain journal's export");
    let (code, csv, err) = export(&sealed_dir, &["--keys"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(csv == plain_csv, "export --keys differs from the plain journal's export");
    let (code, _, err) = export(&sealed_dir, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("journal-encryption key version 1") && err.contains("no key was given"), "{err}");

    // qilin-bars --replay-journal (the bars' history; its rebuild at start opens the journal the
    // same way): the encrypted journal with `journal_key_files` gives the plain journal's bars byte
    // for byte; without the key it stops and names the version it needs.
    let bars = |journal: &Path, keys: &[&Path]| {
        let config = d.join("bars.toml");
        let keys: Vec<&str> = keys.iter().map(|k| s(k)).collect();
        fs::write(
            &config,
            format!(
                "instruments_file = {:?}\njournal_key_files = {keys:?}\n",
                s(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/instruments.toml"))
            ),
        )
        .unwrap();
        let Output { status, stdout, stderr } = Command::new(workspace_bin("qilin-bars"))
            .arg("--config")
            .arg(&config)
            .arg("--replay-journal")
            .arg(journal)
            .arg("--feed")
            .arg(&feed)
            .output()
            .unwrap();
        (status.code(), stdout, String::from_utf8_lossy(&stderr).into_owned())
    };
    let (code, plain_bars, err) = bars(&plain_dir, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(plain_bars.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() >= 10, "too few bars: {err}");
    let (code, sealed_bars, err) = bars(&sealed_dir, &[&key_file]);
    assert_eq!(code, Some(0), "{err}");
    assert!(sealed_bars == plain_bars, "the encrypted journal's bars differ from the plain journal's");
    let (code, out, err) = bars(&sealed_dir, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty() && err.contains("journal-encryption key version 1"), "{err}");

    // Replays by qilin-core: the plain journal and the encrypted one publish the same records.
    drop(core);
    let mut from_plain = ReplayCore::start(d, "rplain", &plain_dir, None);
    let mut from_sealed = ReplayCore::start(d, "rsealed", &sealed_dir, Some(&key_file));
    let a = from_plain.records(TICKS);
    let b = from_sealed.records(TICKS);
    for (x, y) in a.iter().zip(&b) {
        assert!(replayed(*x).as_bytes() == replayed(*y).as_bytes(), "replayed record {} differs", x.sequence);
    }
    assert_eq!(b[0].last_price, plain_ticks[0].last_price);
    assert_eq!(b[TICKS as usize - 1].instrument_id, plain_ticks[TICKS as usize - 1].instrument_id);
}

#[test]
fn a_wrong_key_a_retired_version_and_a_moved_block_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_file = d.join("journal.key");
    ok(d, &["keys", "add", "journal-encryption", "--type", "encryption"]);
    ok(d, &["keys", "render-key", "journal-encryption", "--out", s(&key_file)]);
    // Another store's version 1: the wrong key under the right version.
    let other = d.join("other");
    fs::create_dir(&other).unwrap();
    let wrong_key = other.join("journal.key");
    ok(&other, &["keys", "add", "journal-encryption", "--type", "encryption"]);
    ok(&other, &["keys", "render-key", "journal-encryption", "--out", s(&wrong_key)]);

    // A journal sealed with version 1 (written by the journal crate; read by the processes).
    let journal = d.join("journal");
    let key = qilin_journal::JournalKey::from_key_file(&key_file).unwrap();
    let options = qilin_journal::WriterOptions { block_records: 8, ..Default::default() };
    let (mut w, _) =
        qilin_journal::JournalWriter::open_keyed(&journal, "enc", 20260302, 0, options, Some(&key)).unwrap();
    for sequence in 1..=64 {
        let mut t = TickRecord::ZERO;
        t.sequence = sequence;
        t.trading_day = 20260302;
        t.instrument_id[..6].copy_from_slice(b"rb2605");
        t.last_price = 3000.0 + sequence as f64;
        w.append_tick(&t).unwrap();
    }
    w.finish().unwrap();
    let file = qilin_journal::file_path(&journal, "enc", 20260302);
    let export = |extra: &[&str]| {
        let mut args = vec!["export", "--csv", "--file", s(&file)];
        args.extend_from_slice(extra);
        ctl(d, &args)
    };
    let (code, _, err) = export(&["--key-file", s(&key_file)]);
    assert_eq!(code, Some(0), "{err}");

    // The wrong key for version 1: qilinctl and the core both refuse, naming the version and file.
    let (code, _, err) = export(&["--key-file", s(&wrong_key)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("given as version 1 is not the key") && err.contains(s(&file)), "{err}");
    let mut core = ReplayCore::start(d, "rwrong", &file, Some(&wrong_key));
    let status = wait_for("the core to refuse the wrong key", || core.child.try_wait().unwrap());
    assert!(!status.success());
    let log = core.log();
    assert!(log.contains("given as version 1 is not the key") && log.contains(s(&file)), "{log}");

    // A rotation: version 2 seals new files, version 1 is in grace; `render-key --version 1` gives
    // the key file an older journal needs (for qilin-core's --replay-key-file).
    ok(d, &["keys", "rotate", "journal-encryption"]);
    let v1 = d.join("v1.key");
    let out = ok(d, &["keys", "render-key", "journal-encryption", "--version", "1", "--out", s(&v1)]);
    assert!(out.contains("version 1"), "{out}");
    let (code, _, err) = export(&["--key-file", s(&v1)]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = export(&["--keys"]);
    assert_eq!(code, Some(0), "version 1 is in grace: {err}");
    // `render-key --in-force`: both versions in one file, for the readers (the sidecars'
    // journal_key_files); a writer's loader (the recorder's encryption_key_file) refuses it.
    let in_force = d.join("in-force.key");
    let out = ok(d, &["keys", "render-key", "journal-encryption", "--in-force", "--out", s(&in_force)]);
    assert!(out.contains("versions 2, 1"), "{out}");
    let (code, _, err) = export(&["--key-file", s(&in_force)]);
    assert_eq!(code, Some(0), "{err}");
    let e = qilin_journal::JournalKey::from_key_file(&in_force).unwrap_err();
    assert!(e.contains("holds 2 versions"), "{e}");

    // Eight days later the scheduled run retires version 1 (its material is wiped): --keys says
    // so, and render-key cannot give it any more.
    let later = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 8 * 86_400)
        .to_string();
    let out = ok(d, &["keys", "rotate", "--due", "--now-unix-s", &later]);
    assert!(out.contains("retired"), "{out}");
    let (code, _, err) = export(&["--keys"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("key version 1") && err.contains("retired") && err.contains(s(&file)), "{err}");
    let (code, out, err) = ctl(d, &["keys", "render-key", "journal-encryption", "--version", "1", "--out", s(&v1)]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("no version 1 holding material"), "{err}");
    // The timer's render then leaves only version 2 in the in-force file: the v1 journal is refused.
    let out = ok(d, &["keys", "render-key", "journal-encryption", "--in-force", "--out", s(&in_force)]);
    assert!(out.contains("version 2 to"), "{out}");
    let (code, _, err) = export(&["--key-file", s(&in_force)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("key version 1") && err.contains(s(&file)), "{err}");

    // A block moved: the second block copied over the third (CRC valid, sequences edited to fit).
    let block = 32 + 8 * 376 + 40;
    let bytes = fs::read(&file).unwrap();
    let (second, third) = (128 + block, 128 + 2 * block);
    let mut moved = bytes[second..second + block].to_vec();
    moved[8..16].copy_from_slice(&17u64.to_le_bytes());
    let crc = qilin_journal::format::crc(&[&moved[..28], &moved[32..]]);
    moved[28..32].copy_from_slice(&crc.to_le_bytes());
    fs::OpenOptions::new().write(true).open(&file).unwrap().write_all_at(&moved, third as u64).unwrap();
    let (code, _, err) = export(&["--key-file", s(&key_file)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("block at byte {third} does not authenticate")) && err.contains("version 1"),
        "{err}"
    );
}

#[test]
fn a_recorder_whose_key_file_is_readable_by_others_does_not_start_and_writes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key_file = d.join("journal.key");
    ok(d, &["keys", "add", "journal-encryption", "--type", "encryption"]);
    ok(d, &["keys", "render-key", "journal-encryption", "--out", s(&key_file)]);
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).unwrap();
    let segment = PathBuf::from(format!("/dev/shm/{}", unique("jkey")));
    let options = qilin_shm::SegmentOptions { feed_name: "jkey".into(), ring_slots: 64, instrument_capacity: 4 };
    let _writer = qilin_shm::Writer::open(&segment, &options).unwrap();
    let journal = d.join("journal");
    let config = encrypted_recorder_config(d, &segment, &journal, &key_file);
    let out = Command::new(env!("CARGO_BIN_EXE_qilin-recorder")).arg("--config").arg(&config).output().unwrap();
    qilin_testkit::remove_segment(&segment);
    let _ = fs::remove_dir_all(format!("{}.sidecars", segment.display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("journal.encryption_key_file")
            && err.contains(s(&key_file))
            && err.contains("group/world-readable"),
        "{err}"
    );
    assert!(!err.contains("key="), "{err}");
    assert!(journal_files(&journal, "jkey").unwrap().is_empty(), "nothing journaled");
}

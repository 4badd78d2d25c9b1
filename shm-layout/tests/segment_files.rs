//! The segment as a file: every way opening can fail gives its own `OpenError` variant whose message
//! names the file; the writer's lock holds within a process and across processes; the file mode is
//! 0640; a reader needs only read permission and maps the file read-only.
//!
//! Damaged segments are made by patching a valid one at the offsets of `Identity::DESC`'s field
//! table (the identity line is at offset 0 of the header), so the tests follow the layout.

mod common;

use std::{
    fs::OpenOptions,
    os::unix::fs::{FileExt, MetadataExt, PermissionsExt},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{ChildProc, PATH, TempSegment, child_role, env, hear, options, say};
use qilin_shm::{FINGERPRINT, Identity, LAYOUT_VERSION, OpenError, Reader, Writer, layout::MAGIC};

/// A valid segment (64 slots, 4 instruments), written and cleanly closed.
fn segment(tag: &str) -> TempSegment {
    let segment = TempSegment::new(tag);
    drop(Writer::open(segment.path(), &options(64, 4)).expect("creating a segment"));
    segment
}

/// Overwrites the identity field `name` (found in the layout's field table) with `bytes`.
fn patch(path: &Path, name: &str, bytes: &[u8]) {
    let field = Identity::DESC.fields.iter().find(|f| f.name == name).expect("field in Identity::DESC");
    assert_eq!(field.size, bytes.len(), "size of {name}");
    let file = OpenOptions::new().write(true).open(path).expect("opening for patching");
    file.write_all_at(bytes, field.offset as u64).expect("patching");
}

/// The error a reader gets, after checking that its message names the file.
fn reader_error(segment: &TempSegment) -> OpenError {
    let error = Reader::open(segment.path()).expect_err("reader must refuse");
    assert!(error.to_string().contains(&segment.text()), "message does not name the file: {error}");
    error
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

#[test]
fn wrong_magic_is_refused_by_reader_and_writer() {
    let _no_spawn = common::no_spawn();
    let segment = segment("magic");
    patch(segment.path(), "magic", b"NOTQILIN");
    let error = reader_error(&segment);
    assert!(matches!(error, OpenError::BadMagic { found, expected, .. } if &found == b"NOTQILIN" && expected == MAGIC));
    let error = Writer::open(segment.path(), &options(64, 4)).expect_err("writer must not take over a foreign file");
    assert!(matches!(error, OpenError::BadMagic { .. }), "{error}");
    let mut magic = [0u8; 8];
    std::fs::File::open(segment.path()).unwrap().read_exact_at(&mut magic, 0).unwrap();
    assert_eq!(&magic, b"NOTQILIN", "the refused writer left the file alone");
}

#[test]
fn wrong_layout_version() {
    let _no_spawn = common::no_spawn();
    let segment = segment("version");
    patch(segment.path(), "layout_version", &(LAYOUT_VERSION + 1).to_ne_bytes());
    let error = reader_error(&segment);
    assert!(
        matches!(error, OpenError::Version { found, expected, .. } if found == LAYOUT_VERSION + 1 && expected == LAYOUT_VERSION)
    );
}

#[test]
fn wrong_fingerprint() {
    let _no_spawn = common::no_spawn();
    let segment = segment("fingerprint");
    patch(segment.path(), "fingerprint", &(FINGERPRINT ^ 0x10).to_ne_bytes());
    let error = reader_error(&segment);
    assert!(
        matches!(error, OpenError::Fingerprint { found, expected, .. } if found == FINGERPRINT ^ 0x10 && expected == FINGERPRINT)
    );
}

#[test]
fn truncated_file() {
    let _no_spawn = common::no_spawn();
    let segment = segment("truncated");
    let full = len(segment.path());
    OpenOptions::new().write(true).open(segment.path()).unwrap().set_len(full - 4096).unwrap();
    let error = reader_error(&segment);
    assert!(
        matches!(error, OpenError::Truncated { len, needed, .. } if len == full - 4096 && needed == full),
        "{error}"
    );
}

#[test]
fn file_shorter_than_a_header() {
    let _no_spawn = common::no_spawn();
    let segment = segment("short");
    OpenOptions::new().write(true).open(segment.path()).unwrap().set_len(100).unwrap();
    let error = reader_error(&segment);
    assert!(matches!(error, OpenError::Truncated { len: 100, needed: 1152, .. }), "{error}");
}

#[test]
fn zero_magic_is_not_initialised_and_a_writer_recreates_it() {
    let _no_spawn = common::no_spawn();
    let segment = segment("zero");
    patch(segment.path(), "magic", &[0; 8]);
    assert!(matches!(reader_error(&segment), OpenError::NotInitialised { .. }));
    let writer = Writer::open(segment.path(), &options(64, 4)).expect("a writer finishes an interrupted creation");
    assert!(writer.open_report().created);
    drop(writer);
    Reader::open(segment.path()).expect("initialised now");
}

#[test]
fn inconsistent_capacities_are_a_corrupt_header() {
    let _no_spawn = common::no_spawn();
    for (field, value) in
        [("ring_slots", 128u64), ("ring_slots", 3), ("ring_offset", 4096 * 9), ("total_size", 1 << 20)]
    {
        let segment = segment("corrupt");
        patch(segment.path(), field, &value.to_ne_bytes());
        let error = reader_error(&segment);
        assert!(matches!(error, OpenError::Corrupt { .. }), "{field} = {value}: {error}");
    }
}

#[test]
fn writer_with_other_capacities_is_refused_naming_the_key() {
    let _no_spawn = common::no_spawn();
    let segment = segment("capacity");
    for (opts, key, found, wanted) in
        [(options(128, 4), "ring_slots", 64, 128), (options(64, 8), "instrument_capacity", 4, 8)]
    {
        let error = Writer::open(segment.path(), &opts).expect_err("capacity mismatch");
        let text = error.to_string();
        assert!(text.contains(&segment.text()) && text.contains(key), "{text}");
        assert!(
            matches!(error, OpenError::CapacityMismatch { key: k, found: f, wanted: w, .. } if k == key && f == found && w == wanted),
            "{error}"
        );
    }
}

#[test]
fn second_writer_in_this_process_is_locked_out() {
    let _no_spawn = common::no_spawn();
    let segment = TempSegment::new("lock");
    let first = Writer::open(segment.path(), &options(64, 4)).expect("first writer");
    let error = Writer::open(segment.path(), &options(64, 4)).expect_err("second writer");
    assert!(error.to_string().contains(&segment.text()), "{error}");
    assert!(matches!(error, OpenError::Locked { pid, .. } if pid == u64::from(std::process::id())), "{error}");
    drop(first);
    Writer::open(segment.path(), &options(64, 4)).expect("the lock went with the first writer");
}

/// Child: holds a writer on `PATH` until its stdin closes.
#[test]
fn child_lock_holder() {
    if child_role("lock-holder").is_none() {
        return;
    }
    let writer = Writer::open(env(PATH), &options(64, 4)).expect("child writer");
    say(&format!("ready epoch={}", writer.epoch()));
    assert_eq!(hear(), None, "parent closes stdin");
}

#[test]
fn second_writer_in_another_process_is_locked_out() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let segment = TempSegment::new("lock-xproc");
    let mut child = ChildProc::spawn("child_lock_holder", "lock-holder", &[(PATH, segment.text())]);
    child.expect("ready", deadline);
    let error = Writer::open(segment.path(), &options(64, 4)).expect_err("the child holds the lock");
    assert!(error.to_string().contains(&segment.text()), "{error}");
    assert!(matches!(error, OpenError::Locked { pid, .. } if pid == u64::from(child.id())), "{error}");
    Reader::open(segment.path()).expect("readers do not need the lock");
    child.finish_ok(deadline);
    let writer = Writer::open(segment.path(), &options(64, 4)).expect("the child's lock died with it");
    assert_eq!(writer.epoch(), 2);
}

#[test]
fn segment_is_created_with_mode_0640() {
    let _no_spawn = common::no_spawn();
    let segment = segment("mode");
    let mode = std::fs::metadata(segment.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "mode {mode:o}");
}

/// Child: opens `PATH` as a reader (must work) and as a writer (must be refused), from a process
/// without write permission on it.
#[test]
fn child_read_only_open() {
    if child_role("read-only").is_none() {
        return;
    }
    let reader = Reader::open(env(PATH)).expect("read permission is enough for a reader");
    let writer = Writer::open(env(PATH), &options(64, 4)).expect_err("no write permission");
    say(&format!("result cursor={} writer_refused={}", reader.write_cursor(), matches!(writer, OpenError::Io { .. })));
}

#[test]
fn reader_needs_only_read_permission() {
    let segment = segment("readonly");
    std::fs::set_permissions(segment.path(), std::fs::Permissions::from_mode(0o440)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let child = if std::fs::metadata(segment.path()).unwrap().uid() == 0 {
        // Root ignores file modes: run the reader as `nobody`, owning the 0440 file, so that opening
        // it O_RDWR would fail with EACCES.
        std::os::unix::fs::chown(segment.path(), Some(65534), Some(65534)).unwrap();
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(std::env::current_exe().unwrap());
        command.args(["--exact", "child_read_only_open", "--nocapture", "--test-threads=1"]);
        command.env(common::ROLE, "read-only").env(PATH, segment.text());
        ChildProc::start(command, "read-only reader as nobody".into())
    } else {
        ChildProc::spawn("child_read_only_open", "read-only", &[(PATH, segment.text())])
    };
    let done = child.finish_ok(deadline);
    assert_eq!(done.lines, ["result cursor=0 writer_refused=true"]);
}

/// The permission column of `/proc/self/maps` for every mapping of `path`.
fn mapping_permissions(path: &Path) -> Vec<String> {
    let path = std::fs::canonicalize(path).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|line| line.ends_with(path.to_str().unwrap()))
        .map(|line| line.split_whitespace().nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn reader_mapping_is_read_only_and_writer_mapping_is_not() {
    let _no_spawn = common::no_spawn();
    let segment = TempSegment::new("maps");
    let writer = Writer::open(segment.path(), &options(64, 4)).unwrap();
    assert_eq!(mapping_permissions(segment.path()), ["rw-s"], "the writer's shared read-write mapping");
    drop(writer);
    let reader = Reader::open(segment.path()).unwrap();
    let perms = mapping_permissions(segment.path());
    assert_eq!(perms.len(), 1, "{perms:?}");
    assert!(perms[0].starts_with("r--s"), "reader mapping {perms:?}");
    drop(reader);
    assert!(mapping_permissions(segment.path()).is_empty(), "unmapped on drop");
}

/// A zero-magic file (creation interrupted, or damaged) is re-created from scratch: nothing of its
/// old session, directory, last values or ring survives, whatever the new capacities.
#[test]
fn recreating_a_zero_magic_segment_starts_clean() {
    let _no_spawn = common::no_spawn();
    let segment = TempSegment::new("recreate");
    let mut writer = Writer::open(segment.path(), &options(64, 4)).unwrap();
    for i in 0..4 {
        writer.add_instrument(&format!("i{i}"), qilin_shm::Exchange::Shfe, 1, 1.0).unwrap();
    }
    for seq in 1..=1000 {
        writer.publish(&mut common::record(seq, 4)).unwrap();
    }
    drop(writer);
    patch(segment.path(), "magic", &[0; 8]);
    let writer = Writer::open(segment.path(), &options(64, 40)).unwrap();
    let report = writer.open_report();
    assert!(report.created);
    assert_eq!((report.epoch, report.next_sequence, report.adopted_slots), (1, 1, 0), "{report:?}");
    let reader = Reader::open(segment.path()).unwrap();
    assert_eq!(reader.directory_len(), 0);
    assert_eq!(reader.write_cursor(), 0);
    // The old session's last values must not surface under the instruments of the new one: add
    // instruments again (the same ids, and more) and none of them may have a last value yet.
    let mut writer = writer;
    for i in 0..40 {
        writer.add_instrument(&format!("i{i}"), qilin_shm::Exchange::Shfe, 1, 1.0).unwrap();
    }
    assert_eq!(reader.directory_len(), 40);
    let mut r = qilin_shm::TickRecord::ZERO;
    let surfaced: Vec<u32> = (0..40).filter(|&i| reader.latest(i, &mut r) != Ok(false)).collect();
    assert!(surfaced.is_empty(), "instruments with a last value from before the re-creation: {surfaced:?}");
}

/// A file that exists but is still empty (its writer has created it and not yet sized it) is "not
/// initialised", not "truncated".
#[test]
fn an_empty_file_is_not_initialised() {
    let _no_spawn = common::no_spawn();
    let segment = TempSegment::new("empty");
    std::fs::File::create(segment.path()).unwrap();
    let error = Reader::open(segment.path()).unwrap_err();
    assert!(matches!(error, OpenError::NotInitialised { .. }), "{error}");
    assert!(error.to_string().contains(&segment.path().display().to_string()), "{error}");
}

/// A full /dev/shm: the writer backs every page before mapping (posix_fallocate), so a segment the
/// filesystem cannot hold is refused at open with its size, instead of a sparse file whose first
/// unbacked page kills the writer with SIGBUS. The fresh file is left empty (readers: "not
/// initialised"), and once there is room the same path opens. Needs root for the tmpfs (CI is).
#[test]
fn a_segment_larger_than_the_free_space_is_refused_at_open_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    // `mount` and `umount` are spawns: run alone while they fork (see `common::spawning`).
    let tmpfs = {
        let _spawning = common::spawning();
        qilin_testkit::Tmpfs::mount(dir.path().join("shm"), "1m")
    };
    let no_spawn = common::no_spawn();
    let path = tmpfs.dir.join("segment");
    // 16 384 slots of 256 bytes: 4 MiB of ring alone.
    let err = Writer::open(&path, &options(16_384, 64)).expect_err("a 4 MiB segment on a 1 MiB tmpfs");
    let text = err.to_string();
    assert!(matches!(err, OpenError::NoSpace { .. }), "{err:?}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("MiB") && text.contains("ring_slots"),
        "{text}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the refused segment is left empty");
    assert!(matches!(Reader::open(&path), Err(OpenError::NotInitialised { .. })));
    // A segment that fits opens, and every page of it can be written.
    let mut writer = Writer::open(&path, &options(1_024, 16)).expect("a segment that fits");
    writer.add_instrument("i0", qilin_shm::Exchange::Shfe, 1, 1.0).unwrap();
    for seq in 1..=3_000 {
        writer.publish(&mut common::record(seq, 1)).unwrap();
    }
    drop(writer);
    drop(no_spawn);
    let _spawning = common::spawning();
    drop(tmpfs);
}

/// A reader cannot hold the writer off: the writer's exclusive lock is on `<segment>.lock` (mode
/// 0600, which readers cannot open), not on the segment, which any reader opens and could `flock`
/// through its read-only descriptor. Here a process of the segment's readers holds an exclusive
/// flock on the segment file itself, and a new writer (a core restart) still opens it.
#[test]
fn a_reader_flocking_the_segment_does_not_block_the_writer() {
    let _no_spawn = common::no_spawn();
    let segment = TempSegment::new("flock");
    drop(Writer::open(segment.path(), &options(64, 4)).unwrap());
    let held = std::fs::File::open(segment.path()).unwrap();
    held.try_lock().expect("a read-only descriptor can take an exclusive flock");
    let writer = Writer::open(segment.path(), &options(64, 4)).expect("a restart despite the reader's flock");
    let lock = qilin_shm::lock_path(segment.path());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777, 0o600, "{}", lock.display());
    // A second writer is still refused, naming the first.
    match Writer::open(segment.path(), &options(64, 4)) {
        Err(OpenError::Locked { pid, .. }) => assert_eq!(pid, u64::from(std::process::id())),
        other => panic!("a second writer: {other:?}"),
    }
    drop(writer);
    drop(held);
}

/// The writer does not follow a symlink at the segment path (O_NOFOLLOW: someone who can write
/// /dev/shm could point it at a file of the core's uid), and it refuses an existing segment owned
/// by another uid or open to others (mode wider than 0640), naming the owner and mode. Root is
/// needed to chown (CI runs as root).
#[test]
fn a_symlink_or_a_foreign_or_exposed_file_is_refused_by_the_writer() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let _no_spawn = common::no_spawn();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("victim");
    std::fs::write(&target, b"").unwrap();
    let link = TempSegment::new("symlink");
    symlink(&target, link.path()).unwrap();
    let err = Writer::open(link.path(), &options(64, 4)).expect_err("a symlink at the segment path");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 0, "the symlink's target was written");

    let foreign = TempSegment::new("foreign");
    drop(Writer::open(foreign.path(), &options(64, 4)).unwrap());
    std::os::unix::fs::chown(foreign.path(), Some(65534), Some(65534)).unwrap();
    let err = Writer::open(foreign.path(), &options(64, 4)).expect_err("a segment owned by uid 65534");
    assert!(err.to_string().contains("owned by uid 65534"), "{err}");

    let exposed = TempSegment::new("exposed");
    drop(Writer::open(exposed.path(), &options(64, 4)).unwrap());
    std::fs::set_permissions(exposed.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = Writer::open(exposed.path(), &options(64, 4)).expect_err("a segment others may write");
    assert!(err.to_string().contains("mode 0666"), "{err}");
}

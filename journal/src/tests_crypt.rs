//! Unit tests of encryption at rest: round trips, the key version in the header and in each block,
//! missing, retired and wrong keys named by version, tampered, moved and foreign blocks refused,
//! torn tails cut without decrypting, a reopen after a rotation, unencrypted files unchanged.

use std::{fs, os::unix::fs::FileExt, path::Path, sync::Arc, time::Duration};

use qilin_shm::TickRecord;
use zerocopy::IntoBytes;

use crate::{
    crypt::SEAL_OVERHEAD,
    format::{BLOCK_HEADER_SIZE, FILE_HEADER_SIZE, RECORD_SIZE, crc},
    *,
};

const DAY: u32 = 20260302;

fn tick(sequence: u64) -> TickRecord {
    let mut t = TickRecord::ZERO;
    t.sequence = sequence;
    t.exchange_time_ns = 1_772_413_200_000_000_000 + sequence as i64 * 1_000;
    t.trading_day = DAY;
    t.instrument_id[..6].copy_from_slice(b"rb2605");
    t.last_price = 3100.0 + sequence as f64;
    t.ask_volume = [1, 2, 3, 4, sequence as i32];
    t
}

fn key(version: u32, fill: u8) -> JournalKey {
    JournalKey::new(version, &[fill; 32]).unwrap()
}

fn ring(keys: &[JournalKey]) -> Option<Arc<Keyring>> {
    let mut ring = Keyring::new("test keys");
    for k in keys {
        ring.insert(k.clone());
    }
    Some(Arc::new(ring))
}

fn options() -> WriterOptions {
    WriterOptions { block_records: 4, max_block_age: Duration::from_secs(3600), fsync: FsyncPolicy::Never }
}

/// Ticks 1..=10 in blocks of 4, a gap 11..=20, ticks 21..=22: blocks at known offsets.
fn write(dir: &Path, feed: &str, k: Option<&JournalKey>) -> std::path::PathBuf {
    let (mut w, report) = JournalWriter::open_keyed(dir, feed, DAY, 0, options(), k).unwrap();
    assert_eq!(report.key_version, k.map(JournalKey::version));
    for s in 1..=10 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.append_gap(11, 20, GapReason::Lapped).unwrap();
    w.append_tick(&tick(21)).unwrap();
    w.append_tick(&tick(22)).unwrap();
    w.finish().unwrap();
    file_path(dir, feed, DAY)
}

fn read(path: &Path, keys: Option<Arc<Keyring>>) -> Result<Vec<Entry>, JournalError> {
    JournalReader::open_keyed(path, keys)?.collect()
}

/// Offset of the second block (the first is a full ticks block of 4).
fn second_block(sealed: bool) -> u64 {
    let first = BLOCK_HEADER_SIZE + 4 * RECORD_SIZE + if sealed { SEAL_OVERHEAD } else { 0 };
    (FILE_HEADER_SIZE + first) as u64
}

/// Rewrites the CRC of the block at `at` (as someone who alters a block on purpose would).
fn fix_crc(path: &Path, at: u64) {
    let bytes = fs::read(path).unwrap();
    let at = at as usize;
    let len = u32::from_le_bytes(bytes[at + 20..at + 24].try_into().unwrap()) as usize;
    let end = at + BLOCK_HEADER_SIZE + len;
    let c = crc(&[&bytes[at..at + 28], &bytes[at + BLOCK_HEADER_SIZE..end]]);
    fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(&c.to_le_bytes(), at as u64 + 28).unwrap();
}

#[test]
fn an_encrypted_journal_reads_back_the_same_entries_and_holds_no_record_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(&dir.path().join("plain"), "f", None);
    let k3 = key(3, 7);
    let sealed = write(&dir.path().join("sealed"), "f", Some(&k3));

    let expected = read(&plain, None).unwrap();
    let got = read(&sealed, ring(std::slice::from_ref(&k3))).unwrap();
    assert_eq!((got.len(), expected.len()), (13, 13));
    for (a, b) in got.iter().zip(&expected) {
        match (a, b) {
            (Entry::Tick(a), Entry::Tick(b)) => assert!(a.as_bytes() == b.as_bytes(), "tick {} differs", a.sequence),
            // The gaps were recorded at different times.
            (Entry::Gap(a), Entry::Gap(b)) => assert_eq!((a.first, a.last, a.reason), (b.first, b.last, b.reason)),
            _ => panic!("entries differ at sequence {}", a.first_sequence()),
        }
    }

    let header = JournalReader::open_keyed(&sealed, ring(&[k3])).unwrap().header().clone();
    assert_eq!((header.format_version, header.encryption.as_ref().unwrap().key_version), (2, 3));
    let bytes = fs::read(&sealed).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[36..40].try_into().unwrap()), 3, "key version at +36");
    assert!(!bytes.windows(6).any(|w| w == b"rb2605"), "no instrument id in clear");
    let record = tick(5);
    assert!(!bytes.windows(RECORD_SIZE).any(|w| w == record.as_bytes()), "no record in clear");
    // Each block names its key version at +24.
    assert_eq!(u32::from_le_bytes(bytes[FILE_HEADER_SIZE + 24..FILE_HEADER_SIZE + 28].try_into().unwrap()), 3);

    // Without keys: verify checks the structure (gaps readable), not the records.
    let s = verify(&sealed).unwrap();
    assert_eq!((s.ticks, s.gaps, s.gap_sequences, s.last_sequence, s.authenticated), (12, 1, 10, 22, false));
    let s = verify_keyed(&sealed, ring(&[key(3, 7)])).unwrap();
    assert_eq!((s.ticks, s.last_sequence, s.authenticated), (12, 22, true));
    assert!(verify(&plain).unwrap().authenticated);
}

#[test]
fn an_unencrypted_journal_is_format_1_with_its_reserved_bytes_zero() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "f", None);
    let bytes = fs::read(&plain).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), FORMAT_VERSION);
    assert_eq!(&bytes[36..40], &[0; 4]);
    assert_eq!(&bytes[88..124], &[0; 36]);
    assert_eq!(&bytes[FILE_HEADER_SIZE + 24..FILE_HEADER_SIZE + 28], &[0; 4], "block key version 0");
    assert_eq!(bytes.len(), FILE_HEADER_SIZE + 4 * BLOCK_HEADER_SIZE + 12 * RECORD_SIZE + (BLOCK_HEADER_SIZE + 32));
    // Keys given to a reader of an unencrypted file change nothing.
    assert_eq!(read(&plain, ring(&[key(1, 1)])).unwrap().len(), 13);
}

#[test]
fn missing_retired_and_wrong_keys_are_named_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = write(dir.path(), "f", Some(&key(2, 9)));
    let name = sealed.display().to_string();

    let e = read(&sealed, None).unwrap_err();
    assert!(matches!(e, JournalError::KeyUnavailable { version: 2, why: KeyUnavailable::NoKeys, .. }), "{e}");
    let e = read(&sealed, ring(&[key(1, 9), key(3, 9)])).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("version 2") && text.contains(&name) && text.contains("holds versions 1, 3"), "{text}");

    let mut retired = Keyring::new("key store /k.json");
    retired.insert(key(3, 9));
    retired.mark_retired(2);
    let e = read(&sealed, Some(Arc::new(retired))).unwrap_err();
    assert!(matches!(e, JournalError::KeyUnavailable { version: 2, why: KeyUnavailable::Retired, .. }), "{e}");
    assert!(e.to_string().contains("retired") && e.to_string().contains(&name), "{e}");

    let e = read(&sealed, ring(&[key(2, 8)])).unwrap_err();
    assert!(matches!(e, JournalError::WrongKey { version: 2, .. }), "{e}");
    assert!(e.to_string().contains(&name), "{e}");
    // The key never shows in a Debug.
    assert!(!format!("{:?}", key(2, 0xab)).contains("171"));

    // A writer refuses to append without a key, or with a wrong one, and changes nothing.
    let before = fs::read(&sealed).unwrap();
    let e = JournalWriter::open(dir.path(), "f", DAY, 0, options()).unwrap_err();
    assert!(matches!(e, JournalError::KeyUnavailable { version: 2, .. }), "{e}");
    let e = JournalWriter::open_keyed(dir.path(), "f", DAY, 0, options(), Some(&key(2, 8))).unwrap_err();
    assert!(matches!(e, JournalError::WrongKey { version: 2, .. }), "{e}");
    assert_eq!(fs::read(&sealed).unwrap(), before);
}

#[test]
fn a_tampered_block_is_refused_and_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1, 5);
    let sealed = write(dir.path(), "f", Some(&k));
    let at = second_block(true);
    // One bit of the second block's ciphertext, the CRC made to match.
    let f = fs::OpenOptions::new().read(true).write(true).open(&sealed).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at + 100).unwrap();
    f.write_all_at(&[b[0] ^ 1], at + 100).unwrap();
    fix_crc(&sealed, at);
    let e = read(&sealed, ring(std::slice::from_ref(&k))).unwrap_err();
    assert!(matches!(e, JournalError::Unauthenticated { offset, version: 1, .. } if offset == at), "{e}");
    // The writer does not take it for a torn tail: it scans without opening, then a reader refuses.
    let before = fs::read(&sealed).unwrap();
    drop(JournalWriter::open_keyed(dir.path(), "f", DAY, 0, options(), Some(&k)).unwrap());
    assert_eq!(fs::read(&sealed).unwrap(), before, "nothing cut");
    let e = verify_keyed(&sealed, ring(&[k])).unwrap_err();
    assert!(matches!(e, JournalError::Unauthenticated { .. }), "{e}");
}

#[test]
fn a_block_moved_within_the_file_or_from_another_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1, 5);
    // Two files of the same feed, day, ticks and key: a block of one at the same offset in the other.
    let a = write(&dir.path().join("a"), "f", Some(&k));
    let b = write(&dir.path().join("b"), "f", Some(&k));
    let at = second_block(true);
    let len = (BLOCK_HEADER_SIZE + 4 * RECORD_SIZE + SEAL_OVERHEAD) as u64;
    let from_a = fs::read(&a).unwrap()[at as usize..(at + len) as usize].to_vec();
    fs::OpenOptions::new().write(true).open(&b).unwrap().write_all_at(&from_a, at).unwrap();
    let e = read(&b, ring(std::slice::from_ref(&k))).unwrap_err();
    assert!(matches!(e, JournalError::Unauthenticated { offset, .. } if offset == at), "{e}");

    // Within one file: the first two ticks blocks swapped, their headers' sequences edited back to
    // continue (CRC fixed): the offset in the associated data refuses it.
    let c = write(&dir.path().join("c"), "f", Some(&k));
    let bytes = fs::read(&c).unwrap();
    let (first, second) = (FILE_HEADER_SIZE as u64, at);
    let mut block1 = bytes[first as usize..(first + len) as usize].to_vec();
    let mut block2 = bytes[second as usize..(second + len) as usize].to_vec();
    block1[8..16].copy_from_slice(&5u64.to_le_bytes());
    block2[8..16].copy_from_slice(&1u64.to_le_bytes());
    let f = fs::OpenOptions::new().write(true).open(&c).unwrap();
    f.write_all_at(&block2, first).unwrap();
    f.write_all_at(&block1, second).unwrap();
    fix_crc(&c, first);
    fix_crc(&c, second);
    let e = read(&c, ring(&[k])).unwrap_err();
    assert!(matches!(e, JournalError::Unauthenticated { offset, .. } if offset == first), "{e}");
}

#[test]
fn a_torn_tail_is_cut_and_a_reopen_after_rotation_appends_with_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (key(1, 1), key(2, 2));
    let sealed = write(dir.path(), "f", Some(&k1));
    let whole = fs::metadata(&sealed).unwrap().len();
    // Half a block after the last whole one.
    let f = fs::OpenOptions::new().write(true).open(&sealed).unwrap();
    f.write_all_at(&[0x51, 0x4a, 0x42, 0x4b, 1, 0, 0, 0, 9, 9, 9], whole).unwrap();
    drop(f);

    // The recorder restarted after a rotation: it holds version 2 only.
    let (mut w, report) = JournalWriter::open_keyed(dir.path(), "f", DAY, 0, options(), Some(&k2)).unwrap();
    assert_eq!((report.truncated_bytes, report.last_sequence, report.key_version), (11, 22, Some(1)));
    assert_eq!(w.key_version(), Some(2));
    for s in 23..=25 {
        w.append_tick(&tick(s)).unwrap();
    }
    w.finish().unwrap();

    let entries = read(&sealed, ring(&[k1.clone(), k2.clone()])).unwrap();
    assert_eq!(entries.last().unwrap().last_sequence(), 25);
    assert_eq!(entries.iter().filter(|e| matches!(e, Entry::Tick(_))).count(), 15);
    // Version 1 alone opens the header and the old blocks, then stops at the first version-2 block.
    let e = read(&sealed, ring(&[k1])).unwrap_err();
    assert!(
        matches!(&e, JournalError::KeyUnavailable { version: 2, what, .. } if what.contains(&format!("byte {whole}"))),
        "{e}"
    );
    // Version 2 alone cannot open the file: its header is version 1's.
    let e = read(&sealed, ring(&[k2])).unwrap_err();
    assert!(matches!(&e, JournalError::KeyUnavailable { version: 1, what, .. } if what == "the file"), "{e}");
}

#[test]
fn a_plain_file_stays_plain_when_a_key_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "f", None);
    let (mut w, report) = JournalWriter::open_keyed(dir.path(), "f", DAY, 0, options(), Some(&key(1, 1))).unwrap();
    assert_eq!((report.key_version, w.key_version()), (None, None));
    w.append_tick(&tick(23)).unwrap();
    w.finish().unwrap();
    assert_eq!(read(&plain, None).unwrap().len(), 14);
}

#[test]
fn key_files_rendered_by_qilinctl_fill_a_keyring() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journal.key");
    fs::write(&file, format!("# qilin-key/1\nversion=4\nkey={}\n", "0a".repeat(32))).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let ring = Keyring::from_key_files(&[&file]).unwrap();
    assert_eq!(ring.newest().unwrap().version(), 4);
    let e = ring.get(5).unwrap_err().to_string();
    assert!(e.contains(&file.display().to_string()) && e.contains("holds versions 4"), "{e}");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let e = Keyring::from_key_files(&[&file]).unwrap_err();
    assert!(e.contains(&file.display().to_string()) && !e.contains("0a0a"), "{e}");
}

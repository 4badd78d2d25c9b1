//! Files and mappings: opening the segment file, the writer's exclusive lock, read-only mapping for
//! readers, validation of an existing header, and (in tests) a heap-backed segment for Miri.
#![allow(unsafe_code)] // mapping a file is unsafe by nature; each block argued below

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    ptr::NonNull,
};

use crate::{
    error::OpenError,
    layout::Header,
    record::{Record, kind_of_magic},
    region::{Geometry, Region, Word},
    sync::Ordering,
};

/// What keeps a segment's memory alive; dropped after the `Region` that points into it.
#[derive(Debug)]
pub(crate) enum Backing {
    /// A reader's `PROT_READ` mapping of a file opened `O_RDONLY`.
    ReadOnly(#[allow(dead_code)] memmap2::Mmap),
    /// The writer's read-write mapping and its locked `<segment>.lock` (the `flock` lives as long as
    /// the file).
    ReadWrite {
        #[allow(dead_code)]
        map: memmap2::MmapMut,
        #[allow(dead_code)]
        lock: File,
    },
    /// A heap buffer shared by a writer and readers in one process (tests, Miri).
    #[cfg(test)]
    Heap(#[allow(dead_code)] std::sync::Arc<heap::HeapSegment>),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> OpenError + 'a {
    move |source| OpenError::Io { what, path: path.to_owned(), source }
}

/// Opens an existing segment read-only and maps it `PROT_READ`; validates the header, then
/// pre-faults the whole mapping (`MADV_POPULATE_READ`, or `MAP_POPULATE` on kernels before 5.14).
///
/// The pre-fault maps every page of the file into this process at open, as the writer's mapping
/// does: without it a new reader takes a minor fault on its first touch of each page (or of each
/// 64 KiB with the kernel's default fault-around), one every 11 to 170 slots over its first lap of
/// the ring (tests/reader_prefault.rs counts them; benches/benches/first_lap.rs measures the cost). The writer backs every page
/// (`posix_fallocate`) before it publishes the magic, so on a valid segment every page exists.
pub(crate) fn open_read_only<R: Record>(path: &Path) -> Result<(Region<R>, Backing), OpenError> {
    open_read_only_with(path, true)
}

/// [`open_read_only`], with the pre-fault optional: `populate == false` is the plain mapping, whose
/// pages fault in one by one as the reader first touches them (kept for the first-lap benchmark's
/// comparison, [`crate::Reader::open_unpopulated`]).
pub(crate) fn open_read_only_with<R: Record>(path: &Path, populate: bool) -> Result<(Region<R>, Backing), OpenError> {
    let file = File::open(path).map_err(io("opening", path))?;
    if file.metadata().map_err(io("reading metadata of", path))?.len() == 0 {
        return Err(OpenError::NotInitialised { path: path.to_owned() });
    }
    // SAFETY: the file is a segment shared with a writer process that changes it while we read;
    // that is the point. We never form `&[u8]` over it: `Region` accesses mutable words only through
    // atomics, and the mapping stays alive in `Backing::ReadOnly` for as long as the `Region`.
    // The writer never truncates a segment (capacities are fixed at creation).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("mapping", path))?;
    let base = NonNull::new(map.as_ptr().cast_mut()).expect("mmap never returns null");
    // SAFETY: `base` is page aligned and valid for reads of `map.len()` bytes while `map` lives; the
    // returned `Backing` owns `map` and is kept beside the region.
    let region = unsafe { validate(base, map.len() as u64, path)? };
    // Pre-fault only what validated as a segment of this build (a huge or sparse file that is not
    // one is refused before any of its pages is touched): MADV_POPULATE_READ (Linux ≥ 5.14) maps
    // every page in place; on an older kernel, map the file again with MAP_POPULATE.
    if populate && map.advise(memmap2::Advice::PopulateRead).is_err() {
        // SAFETY: as above; the same descriptor, now known to be a segment of `map.len()` bytes.
        let populated = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(io("mapping", path))?;
        let base = NonNull::new(populated.as_ptr().cast_mut()).expect("mmap never returns null");
        // SAFETY: as above, for `populated`, which the returned `Backing` owns.
        let region = unsafe { validate(base, populated.len() as u64, path)? };
        return Ok((region, Backing::ReadOnly(populated)));
    }
    Ok((region, Backing::ReadOnly(map)))
}

/// How the writer found the file.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Newly created or never initialised: the caller must initialise it.
    Fresh,
    /// An initialised segment of this layout.
    Existing,
}

/// The writer's lock file beside a segment: `<segment>.lock`, mode 0600. The exclusive `flock` is
/// taken on it, not on the segment, which every reader opens (a read-only descriptor can `flock`
/// too, so a reader could otherwise hold a core restart off); readers cannot open this one.
pub fn lock_path(segment: &Path) -> PathBuf {
    let mut name = segment.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".lock");
    segment.with_file_name(name)
}

/// Creates or opens the segment for writing, takes the exclusive lock, sizes and maps it. Neither
/// the segment nor its lock file is followed through a symbolic link (O_NOFOLLOW); an existing
/// segment must belong to this process's uid and be closed to others (mode within 0640).
pub(crate) fn open_writer<R: Record>(
    path: &Path,
    geometry: Geometry,
) -> Result<(Region<R>, Backing, Opened), OpenError> {
    let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    let refuse_link = |what: &'static str, at: &Path| {
        let at = at.to_owned();
        move |e: std::io::Error| {
            if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                OpenError::Untrusted { path: at.clone(), reason: "it is a symbolic link (not followed)".into() }
            } else {
                OpenError::Io { what, path: at.clone(), source: e }
            }
        }
    };
    let lock_file = lock_path(path);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(&lock_file)
        .map_err(refuse_link("opening", &lock_file))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(OpenError::Locked { path: path.to_owned(), pid: peek_writer_pid::<R>(path) });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(OpenError::Io { what: "locking", path: lock_file, source });
        }
    }
    // umask may have widened nothing but may have narrowed; the contract is exactly 0600.
    lock.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io("setting mode 0600 on", &lock_file))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .custom_flags(nofollow)
        .open(path)
        .map_err(refuse_link("opening", path))?;
    // Checked on the descriptor (fstat), so what is checked is what is mapped.
    let meta = file.metadata().map_err(io("reading metadata of", path))?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        let reason = format!("it is owned by uid {}, not this process's uid {uid}", meta.uid());
        return Err(OpenError::Untrusted { path: path.to_owned(), reason });
    }
    let len = meta.len();
    let fresh = len == 0 || (len >= size_of::<Header>() as u64 && header_magic_is_zero(&file));
    if !fresh && meta.mode() & 0o137 != 0 {
        let reason = format!(
            "mode {:04o}: wider than 0640 (others, or the group's write); the writer creates it 0640",
            meta.mode() & 0o7777
        );
        return Err(OpenError::Untrusted { path: path.to_owned(), reason });
    }
    if fresh {
        // umask may have narrowed the mode; the contract is exactly 0640.
        file.set_permissions(std::fs::Permissions::from_mode(0o640)).map_err(io("setting mode 0640 on", path))?;
        // A file whose creation was interrupted may hold old bytes (or another geometry): empty it
        // first, so the new segment starts all zero.
        file.set_len(0).map_err(io("clearing", path))?;
        file.set_len(geometry.total_size).map_err(io("sizing", path))?;
    }
    // Back every page now: `set_len` leaves the file sparse, and MAP_POPULATE ignores a page the
    // filesystem cannot provide, so on a full /dev/shm the first write to it would kill the hot
    // thread with SIGBUS. A segment that cannot be backed is refused here, with its size; a fresh
    // one is emptied again (readers see "not initialised", the next start re-creates it), an
    // existing one keeps what it holds.
    let size = if fresh { geometry.total_size } else { len };
    if let Err(errno) = nix::fcntl::posix_fallocate(&file, 0, size as i64) {
        if fresh {
            let _ = file.set_len(0);
        }
        return Err(OpenError::NoSpace { path: path.to_owned(), needed: size, error: errno.into() });
    }
    // MAP_POPULATE: fault every page in now, not on the hot path's first write to it.
    // SAFETY: we hold the exclusive flock on the lock file, so no other writer maps this file for writing; readers map
    // it read-only. The mapping lives in `Backing::ReadWrite` as long as the region; memory is only
    // accessed through `Region` (atomics, plus the documented non-atomic writes of the writer).
    let mut map = unsafe { memmap2::MmapOptions::new().populate().map_mut(&file) }.map_err(io("mapping", path))?;
    let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
    let map_len = map.len() as u64;
    let region = if fresh {
        // SAFETY: page aligned, valid for reads and writes of `total_size` bytes (we just sized the
        // file to it) while `map` lives; `Backing` keeps it.
        unsafe { Region::new(base, geometry) }
    } else {
        // SAFETY: as above, for `map_len` bytes.
        unsafe { validate(base, map_len, path)? }
    };
    let opened = if fresh { Opened::Fresh } else { Opened::Existing };
    Ok((region, Backing::ReadWrite { map, lock }, opened))
}

fn header_magic_is_zero(file: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0).is_ok() && magic == [0; 8]
}

/// Best effort: the pid recorded by the current writer, for the "already locked" message.
fn peek_writer_pid<R: Record>(path: &Path) -> u64 {
    // Unpopulated: one header word is read, no reason to map the whole ring.
    open_read_only_with::<R>(path, false)
        .map(|(region, _backing)| region.word(Word::WriterPid).load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// Validates an existing segment's header against this build and the file size.
///
/// # Safety
/// `base` must be 8-aligned and valid for reads of `len` bytes for as long as the returned `Region`
/// is used (and for writes too if the caller writes through it), with the access discipline of
/// [`Region::new`].
pub(crate) unsafe fn validate<R: Record>(base: NonNull<u8>, len: u64, path: &Path) -> Result<Region<R>, OpenError> {
    let header_len = size_of::<Header>() as u64;
    if len == 0 {
        // Created but not yet sized: a writer is starting (or died right after creating the file).
        return Err(OpenError::NotInitialised { path: path.to_owned() });
    }
    if len < header_len {
        return Err(OpenError::Truncated { path: path.to_owned(), len, needed: header_len });
    }
    // A provisional geometry that covers only the header, to read the identity line.
    let header_only = Geometry { total_size: header_len, ..Geometry::of::<R>(2, 1).expect("valid constants") };
    // SAFETY: the header lies within `len` bytes (checked above); contract forwarded from the caller.
    let provisional = unsafe { Region::<R>::new(base, header_only) };
    let magic = provisional.magic();
    if magic == [0; 8] {
        return Err(OpenError::NotInitialised { path: path.to_owned() });
    }
    if magic != R::MAGIC {
        if let Some(found) = kind_of_magic(magic) {
            return Err(OpenError::WrongKind { path: path.to_owned(), found, expected: R::KIND });
        }
        return Err(OpenError::BadMagic { path: path.to_owned(), found: magic, expected: R::MAGIC });
    }
    let id = provisional.identity();
    if id.layout_version != R::LAYOUT_VERSION {
        return Err(OpenError::Version {
            path: path.to_owned(),
            found: id.layout_version,
            expected: R::LAYOUT_VERSION,
        });
    }
    if id.fingerprint != R::FINGERPRINT {
        return Err(OpenError::Fingerprint { path: path.to_owned(), found: id.fingerprint, expected: R::FINGERPRINT });
    }
    let corrupt = |detail: String| OpenError::Corrupt { path: path.to_owned(), detail };
    let geometry = Geometry::of::<R>(id.ring_slots, id.instrument_capacity).map_err(|e| corrupt(e.to_string()))?;
    let expected = geometry.identity::<R>(id.feed_name, id.created_ns);
    if expected != id {
        return Err(corrupt(format!(
            "identity line does not match its own capacities: found {id:?}, expected {expected:?}"
        )));
    }
    if len < geometry.total_size {
        return Err(OpenError::Truncated { path: path.to_owned(), len, needed: geometry.total_size });
    }
    // SAFETY: `len >= total_size` (checked above); contract forwarded from the caller.
    Ok(unsafe { Region::new(base, geometry) })
}

#[cfg(test)]
pub(crate) mod heap {
    //! A zeroed, page-aligned heap allocation standing in for a mapping, so Miri can run the writer
    //! and reader logic (Miri cannot map files).
    use std::{alloc::Layout, ptr::NonNull};

    /// Heap memory shaped like a segment.
    #[derive(Debug)]
    pub(crate) struct HeapSegment {
        pub(crate) base: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: the allocation is plain memory accessed only through `Region` (atomics and the
    // single writer's documented writes); sharing the pointer across threads is what a mapping does.
    unsafe impl Send for HeapSegment {}
    // SAFETY: as above.
    unsafe impl Sync for HeapSegment {}

    impl HeapSegment {
        pub(crate) fn new(len: u64) -> HeapSegment {
            let layout = Layout::from_size_align(len as usize, 4096).expect("segment size fits in memory");
            // SAFETY: `layout` has non-zero size (every geometry has a header).
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            HeapSegment { base: NonNull::new(ptr).expect("allocation failed"), layout }
        }
    }

    impl Drop for HeapSegment {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout, freed once.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
        }
    }
}

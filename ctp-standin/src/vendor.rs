//! The vendor's market-data library, for the tests that run against it: the official Linux
//! `libthostmduserapi_se.so` of CTP 6.7.11 from the PyPI wheel `openctp-ctp==6.7.11.0`, fetched
//! with `pip download` into the target directory (never committed). `QILIN_CTP_SDK=/path/to/lib`
//! uses another copy.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use crate::SDK_VERSION;

/// The wheel the library comes from; it reports version [`SDK_VERSION`].
pub const WHEEL: &str = "openctp-ctp==6.7.11.0";

/// The vendor's library, fetched once into `<tmpdir>/ctp-sdk-6.7.11/libthostmduserapi_se.so`
/// (`tmpdir` is the test's `CARGO_TARGET_TMPDIR`), or `QILIN_CTP_SDK` if set. `None`, after saying
/// `SKIPPED: …` and why on stderr (once per process), if it cannot be downloaded (no pip, no
/// network): the callers skip their test then.
pub fn library(tmpdir: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("QILIN_CTP_SDK") {
        return Some(PathBuf::from(path));
    }
    static FETCHED: Mutex<BTreeMap<PathBuf, Option<PathBuf>>> = Mutex::new(BTreeMap::new());
    let mut fetched = FETCHED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = fetched.get(tmpdir) {
        return known.clone();
    }
    let dir = tmpdir.join(format!("ctp-sdk-{SDK_VERSION}"));
    let lib = dir.join("libthostmduserapi_se.so");
    let found = if lib.is_file() {
        Some(lib)
    } else {
        match fetch(&dir, &lib) {
            Ok(()) => Some(lib),
            Err(why) => {
                eprintln!(
                    "SKIPPED: the CTP SDK tests need {WHEEL}'s libthostmduserapi_se.so and it could not be \
                     downloaded: {why}. Install pip (Debian: python3-pip) with network access, or set \
                     QILIN_CTP_SDK=/path/to/libthostmduserapi_se.so (version {SDK_VERSION})."
                );
                None
            }
        }
    };
    fetched.insert(tmpdir.to_owned(), found.clone());
    found
}

/// `pip download` the wheel into a directory of this process under `dir` and unpack the
/// market-data library to `lib` (under a temporary name, then renamed into place, so concurrent
/// test processes never see half a library).
fn fetch(dir: &Path, lib: &Path) -> Result<(), String> {
    let download = dir.join(format!("download-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| format!("creating {}: {e}", download.display()))?;
    let result = download_and_unpack(&download, lib);
    let _ = std::fs::remove_dir_all(&download);
    result
}

fn download_and_unpack(download: &Path, lib: &Path) -> Result<(), String> {
    let pip_args = [
        "download",
        WHEEL,
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--quiet",
        "--disable-pip-version-check",
        "-d",
    ];
    let mut tried = Vec::new();
    let mut fetched = false;
    for pip in [&["pip"][..], &["pip3"], &["python3", "-m", "pip"]] {
        match Command::new(pip[0]).args(&pip[1..]).args(pip_args).arg(download).output() {
            Ok(out) if out.status.success() => {
                fetched = true;
                break;
            }
            Ok(out) => tried.push(format!(
                "`{}` failed: {}",
                pip.join(" "),
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            )),
            Err(e) => tried.push(format!("`{}`: {e}", pip.join(" "))),
        }
    }
    if !fetched {
        return Err(tried.join("; "));
    }
    // Unpack with Python's zipfile (pip needs Python anyway): the wheel's openctp_ctp.libs/
    // libthostmduserapi_se-<hash>.so.
    let script = r#"
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "openctp_ctp-*.whl"))[0]
z = zipfile.ZipFile(wheel)
names = [n for n in z.namelist() if os.path.basename(n).startswith("libthostmduserapi_se") and n.endswith(".so")]
tmp = sys.argv[2] + ".part" + str(os.getpid())
open(tmp, "wb").write(z.read(names[0]))
os.replace(tmp, sys.argv[2])
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(download)
        .arg(lib)
        .output()
        .map_err(|e| format!("running python3 to unpack the wheel: {e}"))?;
    if !out.status.success() || !lib.is_file() {
        return Err(format!("unpacking the wheel failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

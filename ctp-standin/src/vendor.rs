//! The vendor's market-data library, for the tests that run against it: the official Linux
//! `libthostmduserapi_se.so` of CTP 6.7.11 from the PyPI wheel `openctp-ctp==6.7.11.0`, fetched
//! with `pip download --require-hashes` (the wheel's SHA-256 is pinned: [`WHEEL_SHA256`]) into the
//! target directory (never committed). `QILIN_CTP_SDK=/path/to/lib` uses another copy.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use crate::SDK_VERSION;

/// The wheel the library comes from; it reports version [`SDK_VERSION`].
pub const WHEEL: &str = "openctp-ctp==6.7.11.0";

/// The SHA-256 of that wheel for manylinux2014_x86_64, as PyPI serves it (checked by pip: a wheel
/// with another hash is refused, not unpacked).
pub const WHEEL_SHA256: &str = "5780d2a4e927a0c553e0c226764d270708f932d42eae1857ab694febbf2a4eac";

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
    let found = match fetch_library(tmpdir) {
        Ok(lib) => Some(lib),
        Err(why) => {
            eprintln!(
                "SKIPPED: the CTP SDK tests need {WHEEL}'s libthostmduserapi_se.so and it could not be \
                 downloaded: {why}. Install pip (Debian: python3-pip) with network access, or set \
                 QILIN_CTP_SDK=/path/to/libthostmduserapi_se.so (version {SDK_VERSION})."
            );
            None
        }
    };
    fetched.insert(tmpdir.to_owned(), found.clone());
    found
}

/// The library at `<tmpdir>/ctp-sdk-6.7.11/libthostmduserapi_se.so`, downloaded (hash-checked) and
/// unpacked there unless it already is; `Err` says why it cannot be. `scripts/test` calls this
/// through `ctp-probe fetch` so that a failure is loud there.
pub fn fetch_library(tmpdir: &Path) -> Result<PathBuf, String> {
    let dir = tmpdir.join(format!("ctp-sdk-{SDK_VERSION}"));
    let lib = dir.join("libthostmduserapi_se.so");
    if !lib.is_file() {
        fetch(&dir, &lib, WHEEL_SHA256)?;
    }
    Ok(lib)
}

/// `pip download` the wheel (which must have SHA-256 `sha256`) into a directory of this process
/// under `dir` and unpack the market-data library to `lib` (under a temporary name, then renamed
/// into place, so concurrent test processes never see half a library).
fn fetch(dir: &Path, lib: &Path, sha256: &str) -> Result<(), String> {
    let download = dir.join(format!("download-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| format!("creating {}: {e}", download.display()))?;
    let result = download_and_unpack(&download, lib, sha256);
    let _ = std::fs::remove_dir_all(&download);
    result
}

fn download_and_unpack(download: &Path, lib: &Path, sha256: &str) -> Result<(), String> {
    let requirements = download.join("requirements.txt");
    std::fs::write(&requirements, format!("{WHEEL} --hash=sha256:{sha256}\n"))
        .map_err(|e| format!("writing {}: {e}", requirements.display()))?;
    let pip_args = [
        "download",
        "--require-hashes",
        "-r",
        requirements.to_str().ok_or("the download directory's path is not UTF-8")?,
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
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                // pip explains a hash mismatch over several lines: keep the ones that say so.
                let said: Vec<&str> = stderr
                    .lines()
                    .filter(|l| l.contains("ERROR") || l.contains("Expected sha256") || l.contains("Got "))
                    .map(str::trim)
                    .collect();
                let said =
                    if said.is_empty() { stderr.lines().last().unwrap_or("").to_string() } else { said.join(" ") };
                tried.push(format!("`{}` failed: {said}", pip.join(" ")));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel whose hash is not the pinned one is refused by pip and never unpacked. (Needs PyPI,
    /// as the SDK tests do; CI has it.)
    #[test]
    fn a_wheel_with_another_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libthostmduserapi_se.so");
        let wrong = "0".repeat(64);
        let err = fetch(dir.path(), &lib, &wrong).expect_err("a wheel that does not match the pinned hash");
        assert!(err.contains("hash") || err.contains("HASH"), "{err}");
        assert!(!lib.exists(), "the library was unpacked from an unverified wheel");
    }
}

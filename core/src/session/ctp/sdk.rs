//! The SDK library on disk: the version this core was built for, the start-up check of the
//! configured library (a clear error naming the path and what was expected), and the decoding of
//! the SDK's text (GBK error messages, NUL-padded char arrays).

use std::path::{Path, PathBuf};

#[cfg(all(feature = "ctp-6-7-11", feature = "ctp-6-7-13"))]
compile_error!("choose one CTP SDK version: features ctp-6-7-11 and ctp-6-7-13 exclude each other");

/// The SDK version this core drives (its request structs follow this version's headers).
#[cfg(feature = "ctp-6-7-13")]
pub const BUILT_FOR: &str = "6.7.13";
/// The SDK version this core drives (its request structs follow this version's headers).
#[cfg(not(feature = "ctp-6-7-13"))]
pub const BUILT_FOR: &str = "6.7.11";

/// The cargo feature that selects [`BUILT_FOR`].
pub const BUILT_FOR_FEATURE: &str = if cfg!(feature = "ctp-6-7-13") { "ctp-6-7-13" } else { "ctp-6-7-11" };

/// What the start-up check found wrong with `source.ctp.sdk_path`.
#[derive(Debug, thiserror::Error)]
#[error("source.ctp.sdk_path {}: {problem}; expected the CTP market-data library (thostmduserapi_se.so) of version {BUILT_FOR}, which this qilin-core was built for (cargo feature {BUILT_FOR_FEATURE})", path.display())]
pub struct SdkError {
    /// The configured path.
    pub path: PathBuf,
    /// What is wrong, in words.
    pub problem: String,
}

/// A checked SDK library.
#[derive(Clone, Debug)]
pub struct Sdk {
    /// Where it is.
    pub path: PathBuf,
    /// What its `CThostFtdcMdApi::GetApiVersion()` returns (`v6.7.11_20250617 16:22:00.10369`).
    pub version: String,
}

impl Sdk {
    /// Loads the library, asks it its version and refuses anything but a market-data library of
    /// [`BUILT_FOR`]. Loading runs the library's initializers, as using it would.
    pub fn check(path: &Path) -> Result<Sdk, SdkError> {
        let fail = |problem: String| SdkError { path: path.to_owned(), problem };
        match std::fs::metadata(path) {
            Err(e) => return Err(fail(format!("cannot be read ({e})"))),
            Ok(m) if !m.is_file() => return Err(fail("is not a file".into())),
            Ok(_) => {}
        }
        let version = ctp2rs::v1alpha1::get_api_version_symbol(path, ctp2rs::v1alpha1::MDAPI_GET_API_VERSION_SYMBOL)
            .map_err(|e| match e {
                libloading::Error::DlSym { .. } => fail(format!(
                    "loads, but does not export CThostFtdcMdApi::GetApiVersion, so it is not a CTP market-data library ({e})"
                )),
                e => fail(format!("cannot be loaded ({e})")),
            })?;
        if !version_matches(&version, BUILT_FOR) {
            return Err(fail(format!(
                "reports version {version:?} (for another version, build qilin-core with --features ctp-<version>)"
            )));
        }
        Ok(Sdk { path: path.to_owned(), version })
    }
}

impl Sdk {
    /// Whether this is qilin's CTP stand-in (`ctp-standin/`): it reports `v<version>_qilin-standin`.
    pub fn is_standin(&self) -> bool {
        self.version.ends_with("_qilin-standin")
    }
}

/// Whether a `GetApiVersion()` string (`v6.7.11_20250617 16:22:00.10369`) is of `wanted` (`6.7.11`).
pub fn version_matches(reported: &str, wanted: &str) -> bool {
    let bare = reported.trim().strip_prefix('v').unwrap_or(reported.trim());
    bare.strip_prefix(wanted).is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit() || c == '.'))
}

/// A NUL-padded C char array as text: ASCII as is, anything else decoded from GBK (GB18030), as
/// the SDK writes Chinese error messages.
pub fn c_text(chars: &[std::os::raw::c_char]) -> String {
    ctp2rs::ffi::gb18030_cstr_i8_to_str(chars).map_or_else(|_| "<undecodable message>".to_string(), |s| s.into_owned())
}

/// A CTP date (`YYYYMMDD`, NUL-padded) as a number; 0 if it is not one.
pub fn c_date(chars: &[std::os::raw::c_char]) -> u32 {
    let text = c_text(chars);
    if text.len() == 8 { text.parse().unwrap_or(0) } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c_chars<const N: usize>(bytes: &[u8]) -> [std::os::raw::c_char; N] {
        let mut out = [0; N];
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = *b as std::os::raw::c_char;
        }
        out
    }

    #[test]
    fn versions_match_on_the_whole_number() {
        assert!(version_matches("v6.7.11_20250617 16:22:00.10369", "6.7.11"));
        assert!(version_matches("6.7.13_20260225", "6.7.13"));
        assert!(!version_matches("v6.7.13_20260225", "6.7.11"));
        assert!(!version_matches("v6.7.110_x", "6.7.11"));
        assert!(!version_matches("v6.7.1_x", "6.7.11"));
        assert!(!version_matches("", "6.7.11"));
    }

    #[test]
    fn gbk_messages_and_dates_decode() {
        // "CTP:不合法的登录" in GBK.
        let gbk =
            [b"CTP:".as_slice(), &[0xb2, 0xbb, 0xba, 0xcf, 0xb7, 0xa8, 0xb5, 0xc4, 0xb5, 0xc7, 0xc2, 0xbc]].concat();
        assert_eq!(c_text(&c_chars::<81>(&gbk)), "CTP:不合法的登录");
        assert_eq!(c_text(&c_chars::<9>(b"20260302")), "20260302");
        assert_eq!(c_date(&c_chars::<9>(b"20260302")), 20_260_302);
        assert_eq!(c_date(&c_chars::<9>(b"")), 0);
        assert_eq!(c_date(&c_chars::<9>(b"2026x302")), 0);
    }

    #[test]
    fn a_missing_library_is_named_with_what_was_expected() {
        let err = Sdk::check(Path::new("/nonexistent/thostmduserapi_se.so")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/thostmduserapi_se.so"), "{err}");
        assert!(err.contains(&format!("version {BUILT_FOR}")), "{err}");
        let err = Sdk::check(Path::new("/etc/passwd")).unwrap_err().to_string();
        assert!(err.contains("cannot be loaded"), "{err}");
    }
}

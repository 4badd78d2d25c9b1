//! `validate-env` (audited): check the secrets before launch.
//!
//! Exit codes: 0 the secrets are clean for the profile, 1 problems (every one printed with its key
//! and reason, never a value), 2 the source cannot be read, 4 the audit log cannot be written so
//! nothing was checked, 5 checked but not audited.

use std::{path::Path, process::ExitCode};

use qilin_tools::secrets;
use serde_json::json;

use super::audited::{audit_entry, open_audit};

/// `validate-env`: loads the source, prints every problem (key and reason, never a value) and
/// records the outcome (problem keys and reasons, no value) in the audit log.
pub fn validate_env(
    profile: secrets::Profile,
    source: Option<&Path>,
    json: bool,
    audit_log: Option<&Path>,
) -> ExitCode {
    let log = match open_audit(audit_log, "nothing checked") {
        Ok(log) => log,
        Err(code) => return code,
    };
    let source = source.map_or(secrets::Source::Env, secrets::Source::from_path);
    let mut action = json!({"profile": profile.as_str(), "source": source.to_string()});
    let (problems, keys) = match secrets::check(&source, profile) {
        Ok((loaded, problems)) => (problems, loaded.keys().map(str::to_owned).collect::<Vec<_>>()),
        Err(e) => {
            eprintln!("qilinctl: validate-env: {e}");
            action["error"] = json!(e.to_string());
            return audit_entry(&log, "validate-env", 2, vec![action]);
        }
    };
    if json {
        println!(
            "{}",
            json!({"profile": profile.as_str(), "source": source.to_string(), "keys": keys, "problems": problems})
        );
    } else if problems.is_empty() {
        println!("{source}: clean for the {profile} profile ({} keys: {})", keys.len(), keys.join(", "));
    } else {
        for problem in &problems {
            println!("{problem}");
        }
        eprintln!("qilinctl: validate-env: {} problem(s) in {source} for the {profile} profile", problems.len());
    }
    action["keys"] = json!(keys);
    action["problems"] = json!(problems);
    audit_entry(&log, "validate-env", if problems.is_empty() { 0 } else { 1 }, vec![action])
}

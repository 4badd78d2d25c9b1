//! Config loading shared by the core, the sidecars and the tools: [`ConfigError`], which reports every problem of a
//! file at once with its key (or its line, for TOML syntax and unknown keys), and the TOML loading
//! that produces it.

use std::{fmt, path::Path};

use serde::de::DeserializeOwned;

/// Every problem found in a configuration, each with its file and key.
#[derive(Debug)]
pub struct ConfigError {
    /// The file (or `<defaults>`, `command line`).
    pub file: String,
    /// `(key, reason)` pairs.
    pub problems: Vec<(String, String)>,
}

impl ConfigError {
    /// `Ok` when `problems` is empty, else the error listing them.
    pub fn check(file: &str, problems: Vec<(String, String)>) -> Result<(), ConfigError> {
        if problems.is_empty() { Ok(()) } else { Err(ConfigError { file: file.into(), problems }) }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} has {} problem(s):", self.file, self.problems.len())?;
        for (key, reason) in &self.problems {
            write!(f, "\n  {}: {key}: {reason}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A configuration that checks its own values.
pub trait Validate: DeserializeOwned {
    /// Checks every value, reporting all problems at once; `file` names the source.
    fn check(&self, file: &str) -> Result<(), ConfigError>;
}

/// Reads and validates a file.
pub fn load<T: Validate>(path: &Path) -> Result<T, ConfigError> {
    let config: T = load_toml(path)?;
    config.check(&path.display().to_string())?;
    Ok(config)
}

/// Parses and validates TOML text; `file` names it in errors.
pub fn parse<T: Validate>(text: &str, file: &str) -> Result<T, ConfigError> {
    let config: T = parse_toml(text, file)?;
    config.check(file)?;
    Ok(config)
}

/// Reads TOML from `path` (not validated).
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { file: file.clone(), problems: vec![("(file)".into(), e.to_string())] })?;
    parse_toml(&text, &file)
}

/// Parses TOML text (not validated); `file` names it in errors, which give the line.
pub fn parse_toml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let key = e.span().map(|s| format!("line {}", line_of(text, s.start))).unwrap_or_else(|| "(toml)".into());
        ConfigError { file: file.into(), problems: vec![(key, e.message().to_string())] }
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[allow(dead_code)] // read by serde; the test looks only at the error
        interval_ms: u64,
    }

    #[test]
    fn syntax_errors_and_unknown_keys_name_the_file_and_line() {
        let err = parse_toml::<Example>("\n\ninterval_ms = 5\ncolour = 1\n", "conf/x.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("conf/x.toml has 1 problem(s):"), "{text}");
        assert!(text.contains("conf/x.toml: line 4: unknown field `colour`"), "{text}");
        let err = load_toml::<Example>(Path::new("/nonexistent/x.toml")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/x.toml: (file): No such file"), "{err}");
        assert!(ConfigError::check("f", Vec::new()).is_ok());
    }
}

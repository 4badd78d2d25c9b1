//! Loading secrets from the process environment, a dotenv file or a directory of secret files.
//! Values are wrapped in [`SecretString`] as they are read; the raw file bytes live in
//! [`Zeroizing`](secrecy::zeroize::Zeroizing) buffers, so nothing but the `SecretString`s keeps a copy after loading.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use secrecy::SecretString;

use super::{
    Loaded, Origin, Problem, Source, Value,
    dotenv::{Line, parse_line},
    file::{self, Exposure, FileError},
    schema,
};

/// The source itself could not be read (missing, permission denied, not a file or directory).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {error}")]
pub struct SourceError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub error: io::Error,
}

fn source_error(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |error| SourceError { path: path.to_path_buf(), error }
}

/// Loads every value of `source`. Problems of individual lines or files are collected in
/// [`Loaded::problems`]; only a source that cannot be read at all is an error.
pub fn load(source: &Source) -> Result<Loaded, SourceError> {
    let mut loaded = Loaded {
        source: source.clone(),
        file_mode: None,
        file_identity: None,
        values: BTreeMap::new(),
        problems: Vec::new(),
    };
    match source {
        Source::Env => load_env(&mut loaded),
        Source::File(path) => load_file(path, &mut loaded)?,
        Source::Dir(path) => load_dir(path, &mut loaded)?,
    }
    Ok(loaded)
}

fn unknown(key: &str) -> Problem {
    Problem::new(key, "not a key of the schema (see config/.env.example): a typo?")
}

fn load_env(loaded: &mut Loaded) {
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if schema::spec(key).is_none() {
            if schema::has_own_prefix(key) {
                loaded.problems.push(unknown(key));
            }
            continue;
        }
        match value.into_string() {
            Ok(value) => {
                loaded.values.insert(key.to_owned(), Value { secret: SecretString::from(value), origin: Origin::Env });
            }
            Err(_) => loaded.problems.push(Problem::new(key, "not valid UTF-8")),
        }
    }
}

fn load_file(path: &Path, loaded: &mut Loaded) -> Result<(), SourceError> {
    // The profile decides whether the dotenv file may be group/world-readable (validate).
    let (bytes, mode) = match file::read(path, Exposure::Allowed) {
        Ok(contents) => {
            loaded.file_identity = Some(contents.identity);
            (contents.bytes, contents.mode)
        }
        Err(FileError::Io { source, .. }) => return Err(source_error(path)(source)),
        Err(other) => return Err(source_error(path)(io::Error::new(io::ErrorKind::InvalidInput, other.to_string()))),
    };
    loaded.file_mode = Some(mode);
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            loaded.problems.push(Problem::new(format!("line {number}"), "not valid UTF-8"));
            continue;
        };
        match parse_line(text) {
            Line::Empty => {}
            Line::Bad { key, reason } => {
                let key = key.unwrap_or_else(|| format!("line {number}"));
                loaded.problems.push(Problem::new(key, format!("line {number}: {reason}")));
            }
            Line::Pair { key, value } => {
                if let Some(first) = first_line.get(&key) {
                    loaded.problems.push(Problem::new(
                        &key,
                        format!("duplicated: set on line {first} and again on line {number} (the first is used)"),
                    ));
                    continue;
                }
                first_line.insert(key.clone(), number);
                if schema::spec(&key).is_none() {
                    loaded.problems.push(unknown(&key));
                    continue;
                }
                loaded.values.insert(key, Value { secret: value, origin: Origin::Line(number) });
            }
        }
    }
    Ok(())
}

fn load_dir(dir: &Path, loaded: &mut Loaded) -> Result<(), SourceError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(source_error(dir))? {
        let entry = entry.map_err(source_error(dir))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        // Hidden entries and directories are the renderer's bookkeeping (Kubernetes-style `..data`
        // links, Vault Agent temporaries), not keys.
        if name.starts_with('.') || entry.path().is_dir() {
            continue;
        }
        names.push(name);
    }
    names.sort();
    for name in names {
        if schema::spec(&name).is_none() {
            loaded.problems.push(unknown(&name));
            continue;
        }
        let path = dir.join(&name);
        let contents = match file::read(&path, Exposure::Private) {
            Ok(contents) => contents,
            Err(FileError::Exposed { mode, .. }) => {
                let reason = format!("secret file group/world-readable (mode {mode:04o}); chmod 0600 (not read)");
                loaded.problems.push(Problem::new(&name, reason));
                continue;
            }
            Err(e) => {
                loaded.problems.push(Problem::new(&name, e.to_string()));
                continue;
            }
        };
        match contents.value() {
            Some(text) => {
                let origin = Origin::File { path, mode: contents.mode };
                loaded.values.insert(name, Value { secret: SecretString::from(text), origin });
            }
            None => loaded.problems.push(Problem::new(&name, "not valid UTF-8")),
        }
    }
    Ok(())
}

//! A dotenv line parser that never touches the process environment and never repeats a value.
//!
//! Why not `dotenvy`: its iterator substitutes `$VAR` / `${VAR}` from the process environment (a
//! password containing `$` would silently change), its parse errors carry the whole offending line
//! (the value with it) into messages we would print, and it hides which line a duplicate came from.
//! This parser is small: `KEY=value` lines, `#` comments, blank lines, an optional `export `
//! prefix, single quotes (literal), double quotes (`\n`, `\t`, `\"`, `\\` escapes) and unquoted
//! values (trimmed, ` #` starts a comment). `$` is always literal. Values span one line.

use secrecy::SecretString;

/// One parsed line.
#[derive(Debug)]
pub enum Line {
    /// Blank or a comment.
    Empty,
    /// `KEY=value`; the value already held secret.
    Pair {
        /// The key.
        key: String,
        /// The value.
        value: SecretString,
    },
    /// A line that is not `KEY=value`. `key` when the key could be read; the reason never quotes
    /// the line.
    Bad {
        /// The key, if the line got that far.
        key: Option<String>,
        /// What is wrong.
        reason: &'static str,
    },
}

fn is_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses one line (without its `\n`; a trailing `\r` is dropped).
pub fn parse_line(line: &str) -> Line {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Line::Empty;
    }
    let body = match trimmed.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => trimmed,
    };
    let Some((key, rest)) = body.split_once('=') else {
        return Line::Bad { key: None, reason: "not KEY=value (no '=')" };
    };
    let key = key.trim_end();
    if !is_key(key) {
        return Line::Bad { key: None, reason: "the key is not a variable name ([A-Za-z_][A-Za-z0-9_]*)" };
    }
    let key = key.to_owned();
    let rest = rest.trim_start_matches([' ', '\t']);
    let bad = |reason| Line::Bad { key: Some(key.clone()), reason };
    let (value, after) = match rest.chars().next() {
        Some('\'') => {
            let inner = &rest[1..];
            let Some(end) = inner.find('\'') else {
                return bad("unterminated single quote (values span one line)");
            };
            (inner[..end].to_owned(), &inner[end + 1..])
        }
        Some('"') => {
            let mut value = String::new();
            let mut chars = rest[1..].char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 2);
                        break;
                    }
                    '\\' => match chars.next().map(|(_, e)| e) {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(e @ ('"' | '\\' | '$' | '\'')) => value.push(e),
                        Some(_) => {
                            // Wrapped only to be zeroized on drop: half a value is still secret.
                            let _ = SecretString::from(value);
                            return bad("unknown escape in double quotes (use \\n \\t \\r \\\" \\\\)");
                        }
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            let Some(end) = end else {
                let _ = SecretString::from(value);
                return bad("unterminated double quote (values span one line)");
            };
            (value, &rest[end..])
        }
        _ => {
            let end = rest.find(" #").or_else(|| rest.find("\t#")).unwrap_or(rest.len());
            (rest[..end].trim_end().to_owned(), "")
        }
    };
    let value = SecretString::from(value);
    let after = after.trim_start();
    if !after.is_empty() && !after.starts_with('#') {
        return bad("text after the closing quote");
    }
    Line::Pair { key, value }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn pair(line: &str) -> (String, String) {
        match parse_line(line) {
            Line::Pair { key, value } => (key, value.expose_secret().to_owned()),
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn forms_of_a_pair() {
        assert_eq!(pair("A=b"), ("A".into(), "b".into()));
        assert_eq!(pair("export  A = b c  # note"), ("A".into(), "b c".into()));
        assert_eq!(pair("A='x # $HOME \"'  # c"), ("A".into(), "x # $HOME \"".into()));
        assert_eq!(pair(r#"A="p\"w\\d\n$X" "#), ("A".into(), "p\"w\\d\n$X".into()));
        assert_eq!(pair("A=p#w\r"), ("A".into(), "p#w".into()));
        assert_eq!(pair("A="), ("A".into(), String::new()));
        assert_eq!(pair("exporter=1"), ("exporter".into(), "1".into()));
        assert!(matches!(parse_line("   # comment"), Line::Empty));
        assert!(matches!(parse_line(""), Line::Empty));
    }

    #[test]
    fn bad_lines_name_the_key_when_they_can() {
        for (line, key) in [
            ("JUSTTEXT", None),
            ("1A=x", None),
            ("A B=x", None),
            ("A='open", Some("A")),
            ("A=\"open", Some("A")),
            ("A=\"x\" y", Some("A")),
            ("A=\"\\q\"", Some("A")),
        ] {
            match parse_line(line) {
                Line::Bad { key: k, .. } => assert_eq!(k.as_deref(), key, "{line}"),
                other => panic!("{line:?} parsed: {other:?}"),
            }
        }
    }
}

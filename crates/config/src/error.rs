//! A config that could not be used, and where in the file the fault is: serde_yaml's own
//! position when it has one, else the line of the field, found by its dotted path.

use std::fmt;
use std::path::{Path, PathBuf};

/// A config that could not be used: which file, where in it, which field, and why.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the field at fault (`edge.cache.memory`, `routes[1].ttl`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

pub(crate) fn from_yaml(
    path: &Path,
    text: &str,
    e: serde_path_to_error::Error<serde_yaml::Error>,
) -> ConfigError {
    let field = e.path().to_string();
    let e = e.into_inner();
    // serde_yaml places an error raised while converting a value at the start of the enclosing
    // mapping; the field's own line is more useful, so look for it first.
    let position = locate(text, &field).or_else(|| e.location().map(|l| (l.line(), l.column())));
    // serde_yaml renders "<its path>: <message> at line L column C"; keep only the message.
    let mut message = e.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    if let Some((prefix, rest)) = message.split_once(": ") {
        if is_field_path(prefix) {
            message = rest.to_owned();
        }
    }
    let field = (!field.is_empty() && field != ".").then_some(field);
    ConfigError {
        file: path.to_owned(),
        position,
        field,
        message,
    }
}

fn is_field_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
}

/// Where a key starts on a line, past any "- " item markers: (indent, rest of line).
fn key_at(line: &str) -> (usize, &str) {
    let mut body = line.trim_start();
    while let Some(rest) = body.strip_prefix("- ") {
        body = rest.trim_start();
    }
    (line.len() - body.len(), body)
}

/// Finds the line and column of a dotted field path (`edge.cache.memory`, `routes[2].prefix`)
/// in block-style YAML, for errors found after parsing. `None` if it cannot be found.
pub(crate) fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    // Where a key starts on a line, past any "- " item markers.
    let (mut start, mut min_indent, mut found) = (0, 0, None);
    for part in field.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let mut i = start;
        loop {
            let (indent, body) = key_at(lines.get(i)?);
            // A top-level field starts a line; a nested one may be deeper than its parent.
            let level = indent >= min_indent && (found.is_some() || indent == 0);
            if level && body.starts_with(key) && body[key.len()..].starts_with(':') {
                found = Some((i + 1, indent + 1));
                min_indent = indent + 1;
                start = i + 1;
                break;
            }
            if indent < min_indent && !body.is_empty() && !body.starts_with('#') {
                return None; // left the enclosing block
            }
            i += 1;
        }
        if let Some(index) = index {
            let (mut seen, mut item_indent) = (0, None);
            let mut i = start;
            loop {
                let line = lines.get(i)?;
                let trimmed = line.trim_start();
                let indent = line.len() - trimmed.len();
                if trimmed.starts_with('-') && item_indent.is_none_or(|d| d == indent) {
                    item_indent = Some(indent);
                    if seen == index {
                        found = Some((i + 1, indent + 1));
                        start = i;
                        min_indent = indent + 1;
                        break;
                    }
                    seen += 1;
                }
                i += 1;
            }
        }
    }
    found
}

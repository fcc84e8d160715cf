//! Positioned configuration errors.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a configuration file, with enough position
/// information for an editor to jump to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {}: {message}", file.display(), display_path(path))]
pub struct ConfigError {
    /// The configuration file (as given to the loader).
    pub file: PathBuf,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value.
    pub column: usize,
    /// Field path such as `servers[1].include[0].server`; empty for the
    /// document root.
    pub path: String,
    /// What was found and what was expected.
    pub message: String,
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

/// Every problem found while loading one configuration file.
///
/// Loading does not stop at the first problem so that a user can fix a whole
/// file in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors, ordered by position in the file.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors (never the case for a value returned by
    /// the loader).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub(crate) fn from_problems(file: &Path, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.mark.line, p.mark.column));
        problems.dedup();
        ConfigErrors(
            problems
                .into_iter()
                .map(|p| ConfigError {
                    file: file.to_path_buf(),
                    line: p.mark.line,
                    column: p.mark.column,
                    path: p.path,
                    message: p.message,
                })
                .collect(),
        )
    }

    pub(crate) fn single(file: &Path, mark: Mark, path: &str, message: String) -> Self {
        Self::from_problems(
            file,
            vec![Problem {
                path: path.to_string(),
                mark,
                message,
            }],
        )
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A 1-based line/column position in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    pub const START: Mark = Mark { line: 1, column: 1 };
}

/// A problem before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: String,
    pub mark: Mark,
    pub message: String,
}

/// Appends `; did you mean "x"?` when a candidate is close enough to be a
/// plausible typo, so that users do not have to scan the whole list.
pub(crate) fn suggestion<'a>(found: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let limit = match found.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    let best = candidates
        .into_iter()
        .map(|c| (levenshtein(&found.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!("; did you mean \"{c}\"?"),
        None => String::new(),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("comand", "command"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_close_candidates() {
        assert_eq!(
            suggestion("comand", ["name", "command", "args"]),
            "; did you mean \"command\"?"
        );
        assert_eq!(suggestion("zzzzzz", ["name", "command"]), "");
    }

    #[test]
    fn display_formats() {
        let e = ConfigError {
            file: "g.yaml".into(),
            line: 3,
            column: 5,
            path: "servers[0].name".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "g.yaml:3:5: servers[0].name: bad");
        let root = ConfigError {
            path: String::new(),
            ..e.clone()
        };
        assert_eq!(root.to_string(), "g.yaml:3:5: (root): bad");
        let all = ConfigErrors(vec![e, root]);
        assert_eq!(all.to_string().lines().count(), 2);
    }
}

//! Field paths (`servers[1].include[0].server`) and the position index that
//! maps them back to the YAML source.

use std::collections::HashMap;

use crate::error::Mark;

/// Path of `key` inside the mapping at `parent`.
///
/// Keys that are not identifier-like are quoted so that a path stays
/// unambiguous even for header names or tool names containing dots.
pub(crate) fn key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !plain {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        return format!("{parent}[{quoted}]");
    }
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Path of item `index` inside the sequence at `parent`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Where a node sits in the source: the key that introduced it (for mapping
/// entries) and the start of the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeMarks {
    pub key: Option<Mark>,
    pub value: Mark,
}

/// Index from field path to source position, filled while building the
/// JSON value from YAML events.
#[derive(Debug, Default, Clone)]
pub(crate) struct Positions {
    nodes: HashMap<String, NodeMarks>,
    /// Explicit parent links; splitting a rendered path is only the fallback
    /// for paths the source never contained.
    parents: HashMap<String, String>,
}

impl Positions {
    pub fn insert(&mut self, path: String, parent: Option<&str>, marks: NodeMarks) {
        if let Some(parent) = parent {
            self.parents.insert(path.clone(), parent.to_string());
        }
        self.nodes.insert(path, marks);
    }

    /// Position of the value at `path`; for paths that do not exist in the
    /// source (defaults, missing fields) the closest existing ancestor.
    pub fn value(&self, path: &str) -> Mark {
        match self.nodes.get(path) {
            Some(m) => m.value,
            None => self.ancestor(path),
        }
    }

    /// Position of the key that introduced `path` (falls back to the value
    /// position for sequence items and the root).
    pub fn key(&self, path: &str) -> Mark {
        match self.nodes.get(path) {
            Some(m) => m.key.unwrap_or(m.value),
            None => self.ancestor(path),
        }
    }

    /// Whether the source text contains a node at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    fn ancestor(&self, path: &str) -> Mark {
        let mut current = path.to_string();
        loop {
            let parent = match self.parents.get(&current) {
                Some(p) => p.clone(),
                None => match syntactic_parent(&current) {
                    Some(p) => p,
                    None => return self.nodes.get("").map_or(Mark::START, |m| m.value),
                },
            };
            if let Some(m) = self.nodes.get(&parent) {
                return m.value;
            }
            current = parent;
        }
    }
}

/// Strips the last segment off a rendered path. Quoted keys may contain `.`
/// or `[`, so segments are scanned from the left honouring quotes.
fn syntactic_parent(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let mut last_boundary = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '.' | '[' => last_boundary = i,
            _ => {}
        }
    }
    Some(path[..last_boundary].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_paths() {
        assert_eq!(key("", "servers"), "servers");
        let s = index("servers", 1);
        assert_eq!(key(&s, "name"), "servers[1].name");
        assert_eq!(key("h", "a.b"), "h[\"a.b\"]");
    }

    #[test]
    fn parent_of_rendered_paths() {
        assert_eq!(syntactic_parent("a.b[2]").as_deref(), Some("a.b"));
        assert_eq!(syntactic_parent("a.b").as_deref(), Some("a"));
        assert_eq!(syntactic_parent("a").as_deref(), Some(""));
        assert_eq!(syntactic_parent("h[\"x.y\"]").as_deref(), Some("h"));
        assert_eq!(syntactic_parent(""), None);
    }

    #[test]
    fn falls_back_to_ancestor() {
        let mut p = Positions::default();
        let m = |line| NodeMarks {
            key: None,
            value: Mark { line, column: 1 },
        };
        p.insert(String::new(), None, m(1));
        p.insert("servers".into(), Some(""), m(2));
        assert_eq!(p.value("servers[3].name").line, 2);
        assert_eq!(p.value("nothing").line, 1);
    }
}

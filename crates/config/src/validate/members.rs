//! Rules for virtual servers and their members: paths, references between
//! sections and the tool names a member exposes.

use std::collections::HashMap;

use super::{Validator, is_tool_name_char, valid_tool_name};
use crate::error::suggestion;
use crate::model::{MemberConfig, VirtualServerConfig};
use crate::path;

const RESERVED_PATHS: [&str; 2] = ["/healthz", "/readyz"];

impl Validator<'_> {
    pub(super) fn virtual_server(&mut self, vs: &VirtualServerConfig, p: &str, servers: &[&str]) {
        let path_field = path::key(p, "path");
        if let Some(why) = path_problem(&vs.path) {
            self.at_value(&path_field, format!("found path \"{}\", {why}", vs.path));
        }
        let include = path::key(p, "include");
        if vs.include.is_empty() {
            self.at_value(
                &include,
                "found an empty include list, expected at least one server".into(),
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        // Exposed name → (member index, where it came from) for members
        // with an allow-list; only those names are known from the config.
        let mut exposed: HashMap<String, (usize, String)> = HashMap::new();
        for (i, member) in vs.include.iter().enumerate() {
            let mp = path::index(&include, i);
            let server_path = path::key(&mp, "server");
            if !servers.contains(&member.server.as_str()) {
                let list = if servers.is_empty() {
                    "no servers are defined".to_string()
                } else {
                    format!("expected one of: {}", servers.join(", "))
                };
                self.at_value(
                    &server_path,
                    format!(
                        "unknown server \"{}\", {list}{}",
                        member.server,
                        suggestion(&member.server, servers.iter().copied())
                    ),
                );
            }
            if let Some(first) = seen.insert(&member.server, i) {
                seen.insert(&member.server, first);
                self.at_value(
                    &server_path,
                    format!(
                        "server \"{}\" is already included by include[{first}], expected each server once per virtual server",
                        member.server
                    ),
                );
            }
            self.member(member, &mp, i, &mut exposed);
        }
    }

    fn member(
        &mut self,
        m: &MemberConfig,
        mp: &str,
        index: usize,
        exposed: &mut HashMap<String, (usize, String)>,
    ) {
        let prefix = m.prefix.as_deref().unwrap_or("");
        let prefix_ok = prefix.chars().all(is_tool_name_char);
        if !prefix_ok {
            self.at_value(
                &path::key(mp, "prefix"),
                format!("found prefix \"{prefix}\", expected only A-Z, a-z, 0-9, \"_\", \"-\" and \".\" (MCP tool name characters)"),
            );
        }
        let tools_path = path::key(mp, "tools");
        if let Some(tools) = &m.tools {
            let mut listed: HashMap<&str, usize> = HashMap::new();
            for (j, tool) in tools.iter().enumerate() {
                if let Some(&first) = listed.get(tool.as_str()) {
                    self.at_value(
                        &path::index(&tools_path, j),
                        format!("tool \"{tool}\" is already listed at tools[{first}], expected each tool once"),
                    );
                } else {
                    listed.insert(tool, j);
                }
            }
            for (map_name, map) in [("rename", &m.rename), ("describe", &m.describe)] {
                for key in map.keys() {
                    if !listed.contains_key(key.as_str()) {
                        self.at_key(
                            &path::key(&path::key(mp, map_name), key),
                            format!(
                                "{map_name} names tool \"{key}\", which is not in this member's tools list, expected one of: {}{}",
                                tools.join(", "),
                                suggestion(key, tools.iter().map(String::as_str))
                            ),
                        );
                    }
                }
            }
        }
        // Names whose exposure is certain from the config: the allow-list,
        // or without one the renamed tools.
        let originals: Vec<&str> = match &m.tools {
            Some(tools) => {
                let mut unique: Vec<&str> = Vec::new();
                for t in tools {
                    if !unique.contains(&t.as_str()) {
                        unique.push(t);
                    }
                }
                unique
            }
            None => m.rename.keys().map(String::as_str).collect(),
        };
        // Renamed tools go last so that a collision is blamed on the rename
        // that caused it rather than on the tool whose own name was taken.
        let mut originals = originals;
        originals.sort_by_key(|t| m.rename.contains_key(*t));
        let mut own: HashMap<String, &str> = HashMap::new();
        for original in originals {
            let source = self.name_source(m, mp, original);
            let Some(name) = m.exposed_name(original) else {
                continue;
            };
            if m.rename.get(original).is_some_and(|r| r.is_empty()) {
                self.at_value(
                    &source,
                    format!(
                        "found an empty new name for tool \"{original}\", expected a tool name"
                    ),
                );
                continue;
            }
            // A bad prefix is reported once, not once per tool.
            if prefix_ok && !valid_tool_name(&name) {
                self.at_value(
                    &source,
                    format!("exposed tool name \"{name}\" is invalid, expected 1 to 128 characters from A-Z, a-z, 0-9, \"_\", \"-\" and \".\""),
                );
                continue;
            }
            if let Some(other) = own.get(&name) {
                self.at_value(
                    &source,
                    format!("tool \"{original}\" would be exposed as \"{name}\", which tool \"{other}\" of the same server already uses, expected unique exposed names"),
                );
                continue;
            }
            own.insert(name.clone(), original);
            if m.tools.is_none() {
                continue;
            }
            if let Some((other, other_original)) = exposed.get(&name) {
                if *other != index {
                    self.at_value(
                        &source,
                        format!("tool \"{original}\" would be exposed as \"{name}\", which tool \"{other_original}\" of include[{other}] already uses, expected unique exposed names (use prefix or rename)"),
                    );
                }
            } else {
                exposed.insert(name, (index, original.to_string()));
            }
        }
    }

    /// The path to blame for a tool's exposed name: its rename entry if
    /// renamed, otherwise its allow-list entry.
    fn name_source(&self, m: &MemberConfig, mp: &str, tool: &str) -> String {
        if m.rename.contains_key(tool) {
            return path::key(&path::key(mp, "rename"), tool);
        }
        let position = m
            .tools
            .as_ref()
            .and_then(|ts| ts.iter().position(|t| t == tool))
            .unwrap_or(0);
        path::index(&path::key(mp, "tools"), position)
    }
}

fn path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("expected a path starting with \"/\" such as \"/mcp\"");
    }
    if path.len() > 1 && path.ends_with('/') {
        return Some("expected no trailing \"/\"");
    }
    if path.contains("//")
        || path
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '?' | '#'))
    {
        return Some("expected a plain path without \"//\", spaces, \"?\" or \"#\"");
    }
    if RESERVED_PATHS.contains(&path) {
        return Some("which is reserved for health checks, expected another path");
    }
    if path == "/.well-known" || path.starts_with("/.well-known/") {
        return Some("which is reserved (/.well-known), expected another path");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(path_problem("/mcp"), None);
        assert_eq!(path_problem("/"), None);
        assert_eq!(path_problem("/a/b"), None);
        for bad in [
            "mcp",
            "/mcp/",
            "/healthz",
            "/readyz",
            "/.well-known/x",
            "/a//b",
            "/a?b",
        ] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
    }
}

//! A synthetic RBAC corpus, the same in Cedar and Rego: each policy is scoped to one group and
//! one server or tool, as platform teams write them ("group X may read server Y", "group X may
//! call tool Z"); every tenth is a forbid on a network range. Shared by the decision benchmark
//! (`cargo bench -p gatehouse-policy`) and the end-to-end one (`gatehouse-bench --policy`).

#![allow(dead_code)]

/// Groups in the corpus.
pub const GROUPS: usize = 50;

/// Servers and tools in a corpus of `n` policies.
pub fn shape(n: usize) -> (usize, usize) {
    ((n / 4).max(1), (n / 2).max(1))
}

/// `n` Cedar policies, plus `extra` verbatim.
pub fn cedar(n: usize, extra: &str) -> String {
    let (servers, tools) = shape(n);
    let mut out = String::from(extra);
    for i in 0..n {
        let g = i % GROUPS;
        let policy = if i % 10 == 9 {
            format!(
                "forbid (principal, action == Gatehouse::Action::\"call_tool\", resource in Gatehouse::Server::\"s{}\")\nwhen {{ principal.groups.contains(\"g{g}\") && context.source_ip.isInRange(ip(\"192.0.2.0/24\")) }};\n",
                i % servers
            )
        } else if i % 2 == 0 {
            format!(
                "permit (principal, action == Gatehouse::Action::\"call_tool\", resource in Gatehouse::Server::\"s{}\")\nwhen {{ principal.groups.contains(\"g{g}\") && resource.operation == \"read\" }};\n",
                i % servers
            )
        } else {
            format!(
                "permit (principal, action == Gatehouse::Action::\"call_tool\", resource == Gatehouse::Tool::\"mcp/t{}\")\nwhen {{ principal.groups.contains(\"g{g}\") }};\n",
                i % tools
            )
        };
        out.push_str(&policy);
    }
    out
}

/// The same `n` policies in Rego, plus `extra` rule bodies (each becomes a `permitted` rule).
pub fn rego(n: usize, extra: &[&str]) -> String {
    let (servers, tools) = shape(n);
    let mut out = String::from(
        "package gatehouse\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n\tpermitted\n\tnot denied\n}\n\n",
    );
    for body in extra {
        out.push_str(&format!("permitted if {{\n{body}\n}}\n\n"));
    }
    for i in 0..n {
        let g = i % GROUPS;
        let rule = if i % 10 == 9 {
            format!(
                "denied if {{\n\tinput.action == \"call_tool\"\n\tinput.resource.server == \"s{}\"\n\t\"g{g}\" in input.principal.groups\n\tnet.cidr_contains(\"192.0.2.0/24\", input.context.source_ip)\n}}\n\n",
                i % servers
            )
        } else if i % 2 == 0 {
            format!(
                "permitted if {{\n\tinput.action == \"call_tool\"\n\tinput.resource.server == \"s{}\"\n\t\"g{g}\" in input.principal.groups\n\tinput.resource.operation == \"read\"\n}}\n\n",
                i % servers
            )
        } else {
            format!(
                "permitted if {{\n\tinput.action == \"call_tool\"\n\tinput.resource.type == \"Tool\"\n\tinput.resource.virtual_server == \"mcp\"\n\tinput.resource.name == \"t{}\"\n\t\"g{g}\" in input.principal.groups\n}}\n\n",
                i % tools
            )
        };
        out.push_str(&rule);
    }
    out
}

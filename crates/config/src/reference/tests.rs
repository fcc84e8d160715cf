use serde_json::{Value, json};

use super::*;

/// `docs/reference/configuration.md` is generated from the schema; this keeps it in step
/// (`GATEHOUSE_BLESS=1` rewrites it).
#[test]
fn the_committed_reference_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/reference/configuration.md");
    let want = reference_markdown();
    if std::env::var_os("GATEHOUSE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date: run GATEHOUSE_BLESS=1 cargo test -p gatehouse-config reference",
        path.display()
    );
}

/// The page shows descriptions, so every field, type and enum value of the configuration
/// needs a doc comment.
#[test]
fn every_field_type_and_value_is_described() {
    let schema = crate::json_schema();
    let mut missing = Vec::new();
    let mut objects = vec![("Config".to_string(), &schema)];
    for (name, def) in schema["$defs"].as_object().unwrap() {
        if description(def).is_none() {
            missing.push(format!("type {name}"));
        }
        objects.push((name.clone(), def));
    }
    for (owner, object) in objects {
        if let Some(props) = object.get("properties").and_then(Value::as_object) {
            for (field, prop) in props {
                if description(prop).is_none() {
                    missing.push(format!("field {owner}.{field}"));
                }
            }
        }
        // schemars lists undocumented enum values in a plain `enum` (of the type, or of one
        // `oneOf` branch beside the documented values' `const` branches).
        let branches = object.get("oneOf").and_then(Value::as_array);
        for branch in std::iter::once(object).chain(branches.into_iter().flatten()) {
            if let Some(values) = branch.get("enum") {
                missing.push(format!("values {owner}::{values}"));
            } else if let Some(value) = branch.get("const")
                && description(branch).is_none()
            {
                missing.push(format!("value {owner}::{value}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "add a /// doc comment to: {}",
        missing.join(", ")
    );
}

/// Every `(#anchor)` link points at a heading of the page, and no two headings share one.
#[test]
fn links_point_at_headings() {
    let page = reference_markdown();
    let headings: Vec<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#').trim()))
        .collect();
    let unique: BTreeSet<&String> = headings.iter().collect();
    assert_eq!(unique.len(), headings.len(), "duplicate heading anchors");
    for link in page.split("](#").skip(1) {
        let target = &link[..link.find(')').unwrap()];
        assert!(
            unique.contains(&target.to_string()),
            "no heading for #{target}"
        );
    }
}

#[test]
fn real_fields_are_listed_with_type_default_and_description() {
    let page = reference_markdown();
    for row in [
        "| `gateway.connections.header_timeout` | [Duration](#duration) | `10s` | How long a client",
        "| `servers[].name` | string | **required** | Unique name",
        "| `servers` | list of [objects](#servers) |  | Upstream MCP servers",
        "| `audit.durability` | one of `process`, `fsync` | `process` |",
        "| `virtual_servers[].auth.workloads[].type` | one of `jwt_svid`, `kubernetes` | **required** |",
    ] {
        assert!(page.contains(row), "missing {row:?} in:\n{page}");
    }
    assert!(page.contains("## `virtual_servers[]`\n"));
    assert!(page.contains("### Duration\n"));
}

/// The shapes schemars produces, on a schema small enough to read.
#[test]
fn renders_optional_refs_enums_lists_and_maps() {
    let schema = json!({
        "description": "Root.",
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "description": "The items."},
            "mode": {"anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}], "description": "How.\n\nMore."},
            "wait": {"$ref": "#/$defs/Duration", "default": "1m", "description": "Wait | pause."},
            "tags": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}, "description": "Tags."},
            "count": {"type": ["integer", "null"], "description": "Count."},
            "mixed": {"$ref": "#/$defs/Mixed", "description": "Mixed."}
        },
        "$defs": {
            "Item": {"type": "object", "description": "One item.", "required": ["name"],
                     "properties": {"name": {"type": "string", "description": "Its name."}}},
            "Mode": {"description": "A mode.", "oneOf": [
                {"type": "string", "const": "a", "description": "First."},
                {"type": "string", "const": "b", "description": "Second."}]},
            "Mixed": {"oneOf": [{"type": "string", "enum": ["x"]},
                                {"type": "string", "const": "y", "description": "Why."}]},
            "Duration": {"type": "string", "description": "A duration.", "examples": ["5s"]}
        }
    });
    let page = render(&schema);
    for want in [
        "| `items` | list of [objects](#items) |  | The items. |",
        "| `mode` | one of `a`, `b` | — | How.<br>More.<br>`a`: First.<br>`b`: Second. |",
        "| `wait` | [Duration](#duration) | `1m` | Wait \\| pause. |",
        "| `tags` | map of string to list of strings | — | Tags. |",
        "| `count` | integer | — | Count. |",
        "| `mixed` | one of `x`, `y` | — | Mixed.<br>`y`: Why. |",
        "## `items[]`\n\nOne item.\n\n",
        "| `items[].name` | string | **required** | Its name. |",
        "### Duration\n\nA duration.\n\nWritten as a string, for example `5s`.",
    ] {
        assert!(page.contains(want), "missing {want:?} in:\n{page}");
    }
}

#[test]
fn duration_defaults_are_shown_as_written() {
    for (schema, shown) in [
        ("1day", "1d"),
        ("14days", "14d"),
        ("1h", "1h"),
        ("1m 30s", "90s"),
        ("500ms", "500ms"),
        ("1s 500ms", "1500ms"),
        ("not a duration", "not a duration"),
    ] {
        assert_eq!(short_duration(schema), shown, "{schema}");
    }
}

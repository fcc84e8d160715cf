//! The configuration reference, `docs/reference/configuration.md`, rendered from the JSON
//! Schema ([`crate::json_schema`]) so that the page and the checks on a config file cannot
//! disagree: every field, its type, its default and its description (the doc comment of the
//! Rust field) come from the schema. A test keeps the committed page in step.
//!
//! The walk understands the shapes schemars produces for the model: objects with
//! `properties`, `$ref`s into `$defs`, optional fields (`anyOf [X, null]` or a `type` list
//! with `null`), string enums (`enum`, or `oneOf` of documented `const`s), arrays and maps
//! (`additionalProperties`). Anything else is shown as its JSON so it is visible in review
//! rather than silently dropped.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::duration::DurationSpec;

/// Top-level keys in the order a config file usually has them; keys not listed follow in
/// alphabetical order. Needed because the schema's property order depends on whether
/// serde_json keeps insertion order, which feature unification decides per build.
const TOP_LEVEL_ORDER: &[&str] = &[
    "version",
    "gateway",
    "servers",
    "virtual_servers",
    "store",
    "policies",
    "audit",
    "telemetry",
    "admin",
];

/// The header of the generated page: what it is generated from and how to regenerate it.
const HEADER: &str = "# Configuration reference\n\n\
    <!-- Generated file: do not edit. -->\n\
    Generated from the configuration's JSON Schema (`gatehouse schema`), whose descriptions are \
    the doc comments of the types in `crates/config/src/`; edit those, then run \
    `GATEHOUSE_BLESS=1 cargo test -p gatehouse-config reference` to rewrite this page \
    (`gatehouse schema --markdown` prints it).\n\n";

/// The configuration reference as Markdown, for `docs/reference/configuration.md`.
pub fn reference_markdown() -> String {
    render(crate::cached_schema())
}

/// Every field path the reference lists (`gateway.max_body_bytes`, `servers[].name`), in
/// page order: what the reload classes ([`crate::reload`]) must cover.
#[cfg(test)]
pub(crate) fn field_paths() -> Vec<String> {
    walk(crate::cached_schema()).paths
}

/// Renders the reference for `schema` (the root of a schemars draft 2020-12 schema).
pub(crate) fn render(schema: &Value) -> String {
    walk(schema).out
}

fn walk(schema: &Value) -> Renderer<'_> {
    let mut r = Renderer {
        defs: schema.get("$defs").and_then(Value::as_object),
        value_types: BTreeSet::new(),
        out: String::from(HEADER),
        paths: Vec::new(),
    };
    if let Some(d) = description(schema) {
        r.out.push_str(&paragraphs(&d));
        r.out.push_str("\n\n");
    }
    r.out.push_str(
        "Every table lists the fields of one object: its path in the file (`[]` stands for \
         each entry of a list, `<name>` for each key of a map), its type, its default \
         (**required** when it must be set whenever its parent is; an object's defaults are \
         those of its fields) and what it does. A default of \"—\" means the field is unset \
         unless given; its description says what unset means. *On reload* says what a change \
         does to a running gateway: `follows` — the next requests use the new value; \
         `restart` — the running value stays until a restart, and the reload's log line and \
         `config.change` audit event name the field. Any string value may use `${VAR}` to \
         read an environment variable.\n\n",
    );
    if let Some(root) = schema.as_object() {
        r.object_section(2, "Top level", "", root, None);
    }
    r.value_type_sections();
    r
}

/// One field as the reference lists it.
struct Row {
    path: String,
    ty: String,
    default: String,
    description: String,
}

/// An object with fields of its own, and its path (`servers[]`).
type Nested<'a> = (String, &'a Map<String, Value>);

/// An object whose fields get a table of their own, after the table that names it.
struct Child<'a> {
    path: String,
    object: &'a Map<String, Value>,
    /// The field's own description, shown when the object's type has none.
    field_description: Option<String>,
}

struct Renderer<'a> {
    defs: Option<&'a Map<String, Value>>,
    /// Named scalar types (`Duration`, `SecretRef`) that have a section at the end.
    value_types: BTreeSet<String>,
    out: String,
    /// The field paths of the rows written so far.
    paths: Vec<String>,
}

impl<'a> Renderer<'a> {
    /// A heading, the object's description, the table of its fields, then one section per
    /// field that is itself an object (depth first, so a path's sections stay together).
    fn object_section(
        &mut self,
        level: usize,
        title: &str,
        path: &str,
        object: &'a Map<String, Value>,
        fallback: Option<String>,
    ) {
        let hashes = "#".repeat(level.min(6));
        self.out.push_str(&format!("{hashes} {title}\n\n"));
        if !path.is_empty()
            && let Some(d) = description_of(object).or(fallback)
        {
            self.out.push_str(&paragraphs(&d));
            self.out.push_str("\n\n");
        }
        let mut children = Vec::new();
        let rows = self.rows(path, object, &mut children);
        self.out.push_str(
            "| field | type | default | description | on reload |\n|---|---|---|---|---|\n",
        );
        for row in rows {
            let reload = match crate::reload::class_of(&row.path) {
                Some(crate::reload::Reload::Follows) => "follows",
                Some(crate::reload::Reload::StartOnly) => "restart",
                None => "",
            };
            self.out.push_str(&format!(
                "| `{}` | {} | {} | {} | {reload} |\n",
                row.path, row.ty, row.default, row.description
            ));
            self.paths.push(row.path);
        }
        self.out.push('\n');
        for child in children {
            let title = format!("`{}`", child.path);
            self.object_section(
                level + usize::from(!path.is_empty()),
                &title,
                &child.path,
                child.object,
                child.field_description,
            );
        }
    }

    fn rows(
        &mut self,
        path: &str,
        object: &'a Map<String, Value>,
        children: &mut Vec<Child<'a>>,
    ) -> Vec<Row> {
        let Some(props) = object.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        let required: BTreeSet<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut rows = Vec::new();
        for name in ordered_keys(props, path.is_empty()) {
            let prop = &props[name];
            let field_path = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            let own = description(prop);
            let (ty, child) = self.type_of(prop, &field_path);
            let expands = child.is_some();
            let is_duration = self.resolve(non_null(prop)).0 == Some(&*DurationSpec::schema_name());
            let mut text = own.clone().or_else(|| self.def_description(prop));
            if let Some(variants) = self.variants_text(prop) {
                text = Some(match text {
                    Some(t) => format!("{t}\n\n{variants}"),
                    None => variants,
                });
            }
            let default = if required.contains(name) {
                "**required**".to_string()
            } else if expands {
                // An object's defaults are those of its fields, listed in its own table.
                String::new()
            } else {
                match prop.get("default").map(yaml_value) {
                    Some(v) if v.is_empty() => "`\"\"`".to_string(),
                    Some(v) if is_duration => format!("`{}`", short_duration(&v)),
                    Some(v) => format!("`{v}`"),
                    None => "—".to_string(),
                }
            };
            rows.push(Row {
                ty,
                default,
                description: cell(text.as_deref().unwrap_or("")),
                path: field_path,
            });
            if let Some((child_path, object)) = child {
                children.push(Child {
                    path: child_path,
                    object,
                    field_description: own,
                });
            }
        }
        rows
    }

    /// The type of a field in words and, when its values are objects with fields of their
    /// own, the path and schema of that object (`servers[]`, `gateway.tls`).
    fn type_of(&mut self, schema: &'a Value, path: &str) -> (String, Option<Nested<'a>>) {
        let (name, schema) = self.resolve(non_null(schema));
        let Some(obj) = schema.as_object() else {
            return (format!("`{schema}`"), None);
        };
        if obj.contains_key("properties") {
            let link = format!("[object](#{})", anchor(&format!("`{path}`")));
            return (link, Some((path.to_string(), obj)));
        }
        if let Some(values) = enum_values(obj) {
            let list: Vec<String> = values.iter().map(|(v, _)| format!("`{v}`")).collect();
            return (format!("one of {}", list.join(", ")), None);
        }
        if let Some(name) = name {
            self.value_types.insert(name.to_string());
            return (format!("[{name}](#{})", anchor(name)), None);
        }
        match primary_type(obj) {
            Some("array") => {
                let items = obj.get("items").unwrap_or(&Value::Bool(true));
                let item_path = format!("{path}[]");
                let (ty, child) = self.type_of(items, &item_path);
                (format!("list of {}", plural(&ty)), child)
            }
            Some("object") => match obj.get("additionalProperties") {
                Some(values @ Value::Object(_)) => {
                    let (ty, child) = self.type_of(values, &format!("{path}.<name>"));
                    (format!("map of string to {ty}"), child)
                }
                _ => ("object".to_string(), None),
            },
            Some(t) => (t.to_string(), None),
            None => (format!("`{schema}`"), None),
        }
    }

    /// The allowed values of an enum field with their descriptions, one per line.
    fn variants_text(&self, schema: &Value) -> Option<String> {
        let (_, resolved) = self.resolve(non_null(schema));
        let obj = resolved.as_object()?;
        // The values of a list or map of an enum (`servers[].operations`) are explained too.
        if let Some(inner) = obj
            .get("items")
            .or_else(|| obj.get("additionalProperties"))
            .filter(|v| v.is_object())
        {
            return self.variants_text(inner);
        }
        let values = enum_values(obj)?;
        let lines: Vec<String> = values
            .into_iter()
            .filter_map(|(v, d)| Some(format!("`{v}`: {}", d?)))
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n\n"))
    }

    /// The description of the type a field refers to, for a field without its own.
    fn def_description(&self, schema: &Value) -> Option<String> {
        let (name, resolved) = self.resolve(non_null(schema));
        name.and_then(|_| description(resolved))
    }

    /// Follows a `$ref` into `$defs`, returning the definition's name with it.
    fn resolve(&self, schema: &'a Value) -> (Option<&'a str>, &'a Value) {
        let name = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"));
        match name.and_then(|n| Some((n, self.defs?.get(n)?))) {
            Some((n, def)) => (Some(n), def),
            None => (None, schema),
        }
    }

    /// A section per named scalar type the tables link to (durations, secret references).
    fn value_type_sections(&mut self) {
        if self.value_types.is_empty() {
            return;
        }
        self.out.push_str("## Value types\n\n");
        for name in std::mem::take(&mut self.value_types) {
            let Some(def) = self.defs.and_then(|d| d.get(&name)) else {
                continue;
            };
            self.out.push_str(&format!("### {name}\n\n"));
            if let Some(d) = description(def) {
                self.out.push_str(&paragraphs(&d));
                self.out.push_str("\n\n");
            }
            if let Some(t) = def.as_object().and_then(primary_type) {
                self.out.push_str(&format!("Written as a {t}"));
                if let Some(examples) = def.get("examples").and_then(Value::as_array) {
                    let list: Vec<String> = examples
                        .iter()
                        .map(|e| format!("`{}`", yaml_value(e)))
                        .collect();
                    self.out
                        .push_str(&format!(", for example {}", list.join(", ")));
                }
                self.out.push_str(".\n\n");
            }
        }
    }
}

/// The keys of `props` in display order: alphabetical, except that the top level follows
/// [`TOP_LEVEL_ORDER`].
fn ordered_keys(props: &Map<String, Value>, top_level: bool) -> Vec<&str> {
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if top_level {
        let rank = |k: &str| {
            TOP_LEVEL_ORDER
                .iter()
                .position(|o| *o == k)
                .unwrap_or(TOP_LEVEL_ORDER.len())
        };
        keys.sort_by_key(|k| rank(k));
    }
    keys
}

/// An optional field's schema without its `null` alternative.
fn non_null(schema: &Value) -> &Value {
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<&Value> = branches
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [only] = rest.as_slice() {
            return only;
        }
    }
    schema
}

/// The one non-null `type` of a schema (`"string"` for `["string", "null"]`).
fn primary_type(obj: &Map<String, Value>) -> Option<&str> {
    match obj.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(ts) => {
            let mut rest = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null");
            let first = rest.next();
            rest.next().is_none().then_some(first).flatten()
        }
        _ => None,
    }
}

/// The values of a string enum with each value's description: `enum: [...]`, or `oneOf`
/// of `const`s (what schemars emits when the variants are documented).
fn enum_values(obj: &Map<String, Value>) -> Option<Vec<(String, Option<String>)>> {
    if let Some(values) = obj.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| (yaml_value(v), None))
                .collect(),
        );
    }
    // With only some variants documented, schemars puts the others in one `enum` branch.
    let mut values = Vec::new();
    for branch in obj.get("oneOf")?.as_array()? {
        if let Some(c) = branch.get("const") {
            values.push((yaml_value(c), description(branch)));
        } else {
            let more = branch.get("enum")?.as_array()?;
            values.extend(more.iter().map(|v| (yaml_value(v), None)));
        }
    }
    Some(values)
}

fn description(schema: &Value) -> Option<String> {
    description_of(schema.as_object()?)
}

fn description_of(obj: &Map<String, Value>) -> Option<String> {
    obj.get("description")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

/// A value as it would be written in YAML: strings bare, lists in flow style.
fn yaml_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(yaml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) if m.is_empty() => "{}".to_string(),
        other => other.to_string(),
    }
}

/// A duration default in its shortest written form: the schema has humantime's (`1day`,
/// `1m 30s`), a reader expects what they would write (`1d`, `90s`).
fn short_duration(text: &str) -> String {
    let Ok(d) = text.parse::<DurationSpec>().map(DurationSpec::get) else {
        return text.to_string();
    };
    if d.subsec_nanos() == 0 && d.as_secs() > 0 {
        let secs = d.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs % size == 0 {
                return format!("{}{unit}", secs / size);
            }
        }
    }
    if d.subsec_nanos() % 1_000_000 == 0 {
        return format!("{}ms", d.as_millis());
    }
    text.to_string()
}

/// "list of strings", but "list of one of `a`, `b`" and "list of [Duration](…)".
fn plural(ty: &str) -> String {
    match ty {
        "string" | "integer" | "number" | "boolean" => format!("{ty}s"),
        _ if ty.starts_with("[object]") => ty.replacen("[object]", "[objects]", 1),
        _ => ty.to_string(),
    }
}

/// A doc comment as Markdown paragraphs: rustdoc's line breaks inside a paragraph dropped.
fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A description fit for one table cell: paragraphs joined by `<br>`, `|` escaped.
fn cell(text: &str) -> String {
    paragraphs(text).replace('|', "\\|").replace("\n\n", "<br>")
}

/// The anchor GitHub gives a heading: lower case, punctuation other than `-` and `_`
/// dropped, spaces turned into `-`.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;

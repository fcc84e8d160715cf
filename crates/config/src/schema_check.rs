//! Checks a JSON value against the schema generated from the Rust types.
//!
//! Only the keywords schemars emits for this model are interpreted. A
//! hand-written walker (rather than a general validator) lets every message
//! say what was found and what is expected in YAML terms, list the allowed
//! keys, and suggest the closest one.

use serde_json::{Map, Value};

use crate::error::{Problem, suggestion};
use crate::model::NAME_PATTERN;
use crate::path::{self, Positions};

/// Every schema violation in `value`.
pub(crate) fn check(schema: &Value, value: &Value, positions: &Positions) -> Vec<Problem> {
    let mut checker = Checker {
        root: schema,
        positions,
        problems: Vec::new(),
    };
    checker.check(schema, value, "");
    checker.problems
}

struct Checker<'a> {
    root: &'a Value,
    positions: &'a Positions,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        // A `$ref` chain is at most a couple of hops deep in practice; the
        // bound guards against a cycle in a hand-edited schema.
        for _ in 0..16 {
            match schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#"))
            {
                Some(pointer) => match self.root.pointer(pointer) {
                    Some(target) => schema = target,
                    None => break,
                },
                None => break,
            }
        }
        schema
    }

    fn value_problem(&mut self, path: &str, message: String) {
        let mark = self.positions.value(path);
        self.problems.push(Problem {
            path: path.to_string(),
            mark,
            message,
        });
    }

    fn check(&mut self, schema: &'a Value, value: &Value, path: &str) {
        let schema = self.resolve(schema);
        if schema == &Value::Bool(false) {
            self.value_problem(path, "this value is not allowed here".into());
            return;
        }
        let Some(obj) = schema.as_object() else {
            return;
        };
        if let Some(branches) = obj
            .get("anyOf")
            .or_else(|| obj.get("oneOf"))
            .and_then(Value::as_array)
        {
            self.check_alternatives(branches, value, path);
            // schemars puts no other validation beside alternatives
            return;
        }
        if let Some(types) = obj.get("type")
            && !type_matches(types, value)
        {
            let expected = obj
                .get("pattern")
                .and_then(Value::as_str)
                .and_then(pattern_meaning)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}{}", expected_types(types), example_hint(obj)));
            let message = format!("found {}, expected {expected}", describe(value));
            self.value_problem(path, message);
            return;
        }
        if let Some(allowed) = obj.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            self.value_problem(path, one_of_message(value, allowed.iter()));
            return;
        }
        if let Some(c) = obj.get("const")
            && c != value
        {
            self.value_problem(path, one_of_message(value, std::iter::once(c)));
            return;
        }
        match value {
            Value::Object(map) => self.check_object(obj, map, path),
            Value::Array(items) => self.check_array(obj, items, path),
            Value::String(s) => self.check_string(obj, s, path),
            Value::Number(n) => self.check_number(obj, n.as_f64().unwrap_or(0.0), value, path),
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn check_alternatives(&mut self, branches: &'a [Value], value: &Value, path: &str) {
        let mut results = Vec::with_capacity(branches.len());
        for branch in branches {
            let mut sub = Checker {
                root: self.root,
                positions: self.positions,
                problems: Vec::new(),
            };
            sub.check(branch, value, path);
            if sub.problems.is_empty() {
                return;
            }
            results.push((self.resolve(branch), sub.problems));
        }
        let constants: Option<Vec<&Value>> = results
            .iter()
            .map(|(s, _)| s.get("const").or_else(|| null_type(s)))
            .collect();
        if let Some(constants) = constants {
            // A string enum: list the allowed spellings.
            let constants: Vec<&Value> = constants.into_iter().filter(|c| !c.is_null()).collect();
            self.value_problem(path, one_of_message(value, constants.into_iter()));
            return;
        }
        // Most alternatives are `T | null`; report the problems of T itself
        // (or of the one branch whose type fits) rather than a vague
        // "expected T or nothing".
        let non_null: Vec<usize> = (0..results.len())
            .filter(|&i| null_type(results[i].0).is_none())
            .collect();
        if non_null.len() == 1 {
            let (_, problems) = results.swap_remove(non_null[0]);
            self.problems.extend(problems);
            return;
        }
        let mut fitting: Vec<_> = results
            .into_iter()
            .filter(|(s, _)| s.get("type").is_none_or(|t| type_matches(t, value)))
            .collect();
        if fitting.len() == 1 {
            let (_, problems) = fitting.remove(0);
            self.problems.extend(problems);
            return;
        }
        let expected: Vec<String> = branches
            .iter()
            .map(|b| {
                let b = self.resolve(b);
                b.get("type")
                    .map(expected_types)
                    .or_else(|| b.get("const").map(|c| c.to_string()))
                    .unwrap_or_else(|| "another form".into())
            })
            .collect();
        self.value_problem(
            path,
            format!(
                "found {}, expected {}",
                describe(value),
                expected.join(" or ")
            ),
        );
    }

    fn check_object(&mut self, obj: &'a Map<String, Value>, map: &Map<String, Value>, path: &str) {
        let properties = obj.get("properties").and_then(Value::as_object);
        if let Some(required) = obj.get("required").and_then(Value::as_array) {
            for field in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(field) {
                    let mark = self.positions.value(path);
                    self.problems.push(Problem {
                        path: path.to_string(),
                        mark,
                        message: format!("missing required field \"{field}\""),
                    });
                }
            }
        }
        let additional = obj.get("additionalProperties");
        for (key, child) in map {
            let child_path = path::key(path, key);
            if let Some(prop) = properties.and_then(|p| p.get(key)) {
                self.check(prop, child, &child_path);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let names: Vec<&str> = properties
                        .into_iter()
                        .flat_map(|p| p.keys())
                        .map(String::as_str)
                        .collect();
                    let message = format!(
                        "unknown field \"{key}\", expected one of: {}{}",
                        names.join(", "),
                        suggestion(key, names.iter().copied())
                    );
                    let mark = self.positions.key(&child_path);
                    self.problems.push(Problem {
                        path: child_path,
                        mark,
                        message,
                    });
                }
                Some(extra @ Value::Object(_)) => self.check(extra, child, &child_path),
                _ => {}
            }
        }
    }

    fn check_array(&mut self, obj: &'a Map<String, Value>, items: &[Value], path: &str) {
        if let Some(min) = obj.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            self.value_problem(
                path,
                format!("found {} item(s), expected at least {min}", items.len()),
            );
        }
        if let Some(item_schema) = obj.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(item_schema, item, &path::index(path, i));
            }
        }
    }

    fn check_string(&mut self, obj: &Map<String, Value>, s: &str, path: &str) {
        let len = s.chars().count() as u64;
        let min = obj.get("minLength").and_then(Value::as_u64);
        let max = obj.get("maxLength").and_then(Value::as_u64);
        if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
            let range = match (min, max) {
                (Some(a), Some(b)) => format!("{a} to {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => unreachable!("checked above"),
            };
            self.value_problem(
                path,
                format!("found a string of {len} characters, expected {range} characters"),
            );
            return;
        }
        if let Some(pattern) = obj.get("pattern").and_then(Value::as_str) {
            // An uncompilable pattern is a bug in our own schema, not the
            // user's problem; skip it rather than reject valid input.
            if let Ok(re) = regex_lite::Regex::new(pattern)
                && !re.is_match(s)
            {
                let expected = pattern_meaning(pattern)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("a string matching {pattern}"));
                self.value_problem(
                    path,
                    format!("found {}, expected {expected}", describe_str(s)),
                );
            }
        }
    }

    fn check_number(&mut self, obj: &Map<String, Value>, n: f64, value: &Value, path: &str) {
        if let Some(min) = obj.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            self.value_problem(
                path,
                format!("found {}, expected at least {min}", describe(value)),
            );
        }
        if let Some(max) = obj.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            self.value_problem(
                path,
                format!("found {}, expected at most {max}", describe(value)),
            );
        }
    }
}

fn null_type(schema: &Value) -> Option<&Value> {
    static NULL: Value = Value::Null;
    (schema.get("type").and_then(Value::as_str) == Some("null")).then_some(&NULL)
}

fn type_matches(types: &Value, value: &Value) -> bool {
    let one = |t: &str| match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    };
    match types {
        Value::String(t) => one(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(one),
        _ => true,
    }
}

/// YAML-flavoured wording of a schema's `type`; `null` is left out because
/// writing nothing is never what a user means to do.
fn expected_types(types: &Value) -> String {
    match types {
        Value::String(t) => type_word(t).to_string(),
        Value::Array(ts) => {
            let words: Vec<&str> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null" || ts.len() == 1)
                .map(type_word)
                .collect();
            words.join(" or ")
        }
        _ => "a value".into(),
    }
}

fn type_word(t: &str) -> &str {
    match t {
        "boolean" => "true or false",
        "object" => "a mapping",
        "array" => "a sequence",
        "string" => "a string",
        "number" => "a number",
        "integer" => "an integer",
        "null" => "nothing",
        other => other,
    }
}

fn example_hint(obj: &Map<String, Value>) -> String {
    match obj
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        Some(example) => format!(" such as {example}"),
        None => String::new(),
    }
}

fn one_of_message<'v>(value: &Value, allowed: impl Iterator<Item = &'v Value>) -> String {
    let allowed: Vec<String> = allowed.map(Value::to_string).collect();
    let plain: Vec<&str> = allowed.iter().map(|a| a.trim_matches('"')).collect();
    let hint = match value {
        Value::String(s) => suggestion(s, plain.iter().copied()),
        _ => String::new(),
    };
    format!(
        "found {}, expected one of: {}{hint}",
        describe(value),
        allowed.join(", ")
    )
}

/// Human wording for the patterns used in this model.
fn pattern_meaning(pattern: &str) -> Option<&'static str> {
    if pattern == NAME_PATTERN {
        Some("a name of 1 to 64 characters from A-Z, a-z, 0-9, \"_\" and \"-\"")
    } else if pattern == crate::duration::DURATION_PATTERN {
        Some("a duration such as \"30s\", \"500ms\" or \"5m\"")
    } else if pattern == crate::isolation::BYTE_SIZE_PATTERN {
        Some("a size such as \"512Mi\" or \"2Gi\" (units k, Ki, M, Mi, G, Gi, T, Ti)")
    } else {
        None
    }
}

fn describe_str(s: &str) -> String {
    let shown: String = s.chars().take(60).collect();
    let ellipsis = if shown.len() < s.len() { "…" } else { "" };
    format!("string {}{ellipsis}", serde_json::Value::String(shown))
}

/// What a value is, for "found …" messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("number {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => describe_str(s),
        Value::Array(_) => "a sequence".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

//! YAML text → `serde_json::Value` plus a position for every node.
//!
//! serde-based YAML deserializers lose positions as soon as a value is
//! handed to a visitor, so the document is built from parser events here
//! instead. Scalars are typed with the YAML 1.2 core schema (no YAML 1.1
//! surprises such as `no` → false or `2025-06-18` → timestamp).

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

use crate::error::{Mark, Problem};
use crate::interpolate::{has_reference, interpolate};
use crate::path::{self, NodeMarks, Positions};

/// Deepest nesting of mappings and sequences accepted. A configuration needs a handful of
/// levels; without a bound, a line of `- - - …` nests thousands deep, and every node's path
/// (which repeats its ancestors') makes memory grow with the square of the depth.
pub(crate) const MAX_DEPTH: usize = 64;

/// Most bytes of field paths one document may produce: the paths index every node's position
/// and each repeats its parent's, so long keys above many nodes grow them quadratically.
/// Real configurations stay far below (the full example: under 20 KiB).
pub(crate) const MAX_PATH_BYTES: usize = 16 << 20;

/// A parsed document with positions.
#[derive(Debug)]
pub(crate) struct Document {
    pub value: Value,
    pub positions: Positions,
}

/// Parses `text`, interpolating `${VAR}` references in string values.
///
/// Syntax errors end parsing and are reported alone (`Err`: nothing after
/// them is trustworthy). Other problems (duplicate keys, aliases, missing
/// variables) come back beside a best-effort document so that the schema
/// check can still report the rest of the file.
pub(crate) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Document, Vec<Problem>), Problem> {
    let mut builder = Builder {
        env,
        stack: Vec::new(),
        root: None,
        positions: Positions::default(),
        problems: Vec::new(),
        documents: 0,
        skip_depth: 0,
        path_bytes: 0,
    };
    let lines = Lines::new(text);
    for event in Parser::new_from_str(text) {
        let (event, span) = match event {
            Ok(e) => e,
            Err(e) => {
                return Err(Problem {
                    path: builder.current_path(),
                    mark: lines.mark(*e.marker()),
                    message: format!("invalid YAML: {}", e.info()),
                });
            }
        };
        builder.event(event, lines.mark(span.start))?;
    }
    let document = Document {
        value: builder.root.unwrap_or(Value::Null),
        positions: builder.positions,
    };
    Ok((document, builder.problems))
}

/// Where each line of a text starts, to turn the parser's character index into a line and
/// column. The parser's own line count is not trusted: it places an error in a document that
/// ends without a line break on the line after the last, and misses line breaks after a `%`
/// directive (both found by fuzzing), so editors were sent past the end of a line.
struct Lines {
    /// Character index of the first character of each line; `starts[0]` is 0.
    starts: Vec<usize>,
    /// Character index of the line break ending each line (the text's length for the last).
    ends: Vec<usize>,
    /// Characters in the text.
    len: usize,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        let mut ends = Vec::new();
        let mut len = 0;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            len += 1;
            // YAML ends a line at CRLF, LF or a lone CR.
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
                ends.push(len - 1);
                len += 1;
                starts.push(len);
            } else if c == '\n' || c == '\r' {
                ends.push(len - 1);
                starts.push(len);
            }
        }
        ends.push(len);
        Lines { starts, ends, len }
    }

    /// The 1-based line and column of the character at `m`'s index (or just past the end).
    /// An index inside a line break (the parser may point between the CR and the LF of a
    /// CRLF) is the end of its line.
    fn mark(&self, m: Marker) -> Mark {
        let index = m.index().min(self.len);
        let line = self.starts.partition_point(|start| *start <= index);
        let column = index.min(self.ends[line - 1]) - self.starts[line - 1] + 1;
        Mark { line, column }
    }
}

enum Frame {
    Seq {
        path: String,
        items: Vec<Value>,
    },
    Map {
        path: String,
        map: Map<String, Value>,
        /// Key waiting for its value; `None` inside means the key was
        /// rejected (duplicate or complex) and its value must be dropped.
        pending: Option<Option<(String, Mark)>>,
        first_seen: HashMap<String, Mark>,
    },
}

struct Builder<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: Positions,
    problems: Vec<Problem>,
    documents: usize,
    /// Depth inside a subtree that is being discarded (a complex key).
    skip_depth: usize,
    /// Bytes of paths recorded so far (bounded by [`MAX_PATH_BYTES`]).
    path_bytes: usize,
}

impl Builder<'_> {
    /// Takes one parser event. `Err` ends parsing: the document is too deep or too large to
    /// index, and nothing after that point would be checked anyway.
    fn event(&mut self, event: Event<'_>, at: Mark) -> Result<(), Problem> {
        if self.skip_depth > 0 {
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skip_depth += 1,
                Event::MappingEnd | Event::SequenceEnd => self.skip_depth -= 1,
                _ => {}
            }
            return Ok(());
        }
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents == 2 {
                    self.problem(
                        String::new(),
                        at,
                        "found a second YAML document, expected exactly one".into(),
                    );
                }
            }
            Event::Scalar(text, style, _anchor, tag) => {
                if self.awaiting_key() {
                    self.key(text.into_owned(), at);
                } else {
                    let path = self.child_path();
                    let value = self.scalar(&text, style, tag.as_deref(), &path, at);
                    self.attach_leaf(path, value, at)?;
                }
            }
            Event::Alias(_) => {
                let path = self.child_path();
                self.problem(
                    path.clone(),
                    at,
                    "found a YAML alias (*name), which is not supported: repeat the value instead"
                        .into(),
                );
                if self.awaiting_key() {
                    self.reject_key();
                } else {
                    self.attach_leaf(path, Value::Null, at)?;
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if self.awaiting_key() {
                    let path = self.current_path();
                    self.problem(
                        path,
                        at,
                        "found a mapping or sequence used as a key, expected a plain key".into(),
                    );
                    self.reject_key();
                    self.skip_depth = 1;
                    return Ok(());
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Problem {
                        path: self.current_path(),
                        mark: at,
                        message: format!(
                            "found mappings or sequences nested more than {MAX_DEPTH} levels deep, expected at most {MAX_DEPTH}"
                        ),
                    });
                }
                let path = self.child_path();
                self.record(path.clone(), at)?;
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Map {
                        path,
                        map: Map::new(),
                        pending: None,
                        first_seen: HashMap::new(),
                    },
                    _ => Frame::Seq {
                        path,
                        items: Vec::new(),
                    },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let value = match self.stack.pop() {
                    Some(Frame::Map { map, .. }) => Value::Object(map),
                    Some(Frame::Seq { items, .. }) => Value::Array(items),
                    None => return Ok(()),
                };
                self.attach(value);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn awaiting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { pending: None, .. }))
    }

    fn current_path(&self) -> String {
        match self.stack.last() {
            Some(Frame::Map { path, .. } | Frame::Seq { path, .. }) => path.clone(),
            None => String::new(),
        }
    }

    /// Path that the next value will get.
    fn child_path(&self) -> String {
        match self.stack.last() {
            Some(Frame::Seq { path: p, items }) => path::index(p, items.len()),
            Some(Frame::Map {
                path: p,
                pending: Some(Some((k, _))),
                ..
            }) => path::key(p, k),
            Some(Frame::Map { path: p, .. }) => p.clone(),
            None => String::new(),
        }
    }

    fn key(&mut self, key: String, at: Mark) {
        let Some(Frame::Map {
            path: parent,
            pending,
            first_seen,
            ..
        }) = self.stack.last_mut()
        else {
            return;
        };
        if let Some(first) = first_seen.get(&key) {
            let message = format!(
                "duplicate key \"{key}\" (first defined at line {}, column {}), expected each key once",
                first.line, first.column
            );
            let path = path::key(parent, &key);
            *pending = Some(None);
            self.problem(path, at, message);
        } else {
            first_seen.insert(key.clone(), at);
            *pending = Some(Some((key, at)));
        }
    }

    fn reject_key(&mut self) {
        if let Some(Frame::Map { pending, .. }) = self.stack.last_mut() {
            *pending = Some(None);
        }
    }

    /// Remembers where the value at `path` starts (and its key, if any).
    fn record(&mut self, path: String, at: Mark) -> Result<(), Problem> {
        self.path_bytes += path.len();
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(Problem {
                path: String::new(),
                mark: at,
                message: format!(
                    "found a document too large to index: its field paths (every key above each value) exceed {} MiB, expected shorter keys or fewer values under them",
                    MAX_PATH_BYTES >> 20
                ),
            });
        }
        let (parent, key) = match self.stack.last() {
            Some(Frame::Map {
                path: p, pending, ..
            }) => (Some(p.clone()), pending.clone().flatten().map(|(_, m)| m)),
            Some(Frame::Seq { path: p, .. }) => (Some(p.clone()), None),
            None => (None, None),
        };
        self.positions
            .insert(path, parent.as_deref(), NodeMarks { key, value: at });
        Ok(())
    }

    fn attach_leaf(&mut self, path: String, value: Value, at: Mark) -> Result<(), Problem> {
        self.record(path, at)?;
        self.attach(value);
        Ok(())
    }

    fn attach(&mut self, value: Value) {
        match self.stack.last_mut() {
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, pending, .. }) => {
                if let Some(Some((k, _))) = pending.take() {
                    map.insert(k, value);
                }
            }
            None => {
                if self.root.is_none() {
                    self.root = Some(value);
                }
            }
        }
    }

    fn problem(&mut self, path: String, mark: Mark, message: String) {
        self.problems.push(Problem {
            path,
            mark,
            message,
        });
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        path: &str,
        at: Mark,
    ) -> Value {
        let text = match self.interpolated(text, path, at) {
            Ok(t) => t,
            Err(()) => return Value::String(text.to_string()),
        };
        if let Some(tag) = tag {
            return match (tag.handle.as_str(), tag.suffix.as_str()) {
                ("tag:yaml.org,2002:", "str") | ("!", "") => Value::String(text.0.into_owned()),
                ("tag:yaml.org,2002:", "int" | "float" | "bool" | "null") => core_schema(&text.0),
                (handle, suffix) => {
                    self.problem(
                        path.to_string(),
                        at,
                        format!("found YAML tag \"{handle}{suffix}\", which is not supported"),
                    );
                    Value::Null
                }
            };
        }
        let (text, retype) = text;
        match style {
            ScalarStyle::Plain if retype => core_schema(&text),
            _ => Value::String(text.into_owned()),
        }
    }

    /// Interpolates `${VAR}` references; returns the text and whether a plain
    /// scalar may still be typed by the core schema (true unless text was
    /// spliced into a larger string, which must stay a string).
    fn interpolated<'t>(
        &mut self,
        text: &'t str,
        path: &str,
        at: Mark,
    ) -> Result<(Cow<'t, str>, bool), ()> {
        if !has_reference(text) {
            return Ok((Cow::Borrowed(text), true));
        }
        match interpolate(text, self.env) {
            Ok(i) => Ok((Cow::Owned(i.text), i.whole)),
            Err(messages) => {
                for message in messages {
                    self.problem(path.to_string(), at, message);
                }
                Err(())
            }
        }
    }
}

/// Types a plain scalar per the YAML 1.2 core schema.
pub(crate) fn core_schema(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = core_int(text) {
        return Value::Number(n);
    }
    if is_core_float(text)
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

fn core_int(text: &str) -> Option<Number> {
    if let Some(hex) = text.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(Number::from);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return u64::from_str_radix(oct, 8).ok().map(Number::from);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if let Ok(u) = unsigned.parse::<u64>() {
        return Some(Number::from(u));
    }
    unsigned.parse::<i64>().ok().map(Number::from)
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`. Infinity and NaN
/// cannot be represented in JSON and no field wants them, so they stay
/// strings (and then fail type checking with a clear message).
fn is_core_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac_part {
        Some(f) => all_digits(int_part) && all_digits(f) && !(int_part.is_empty() && f.is_empty()),
        None => !int_part.is_empty() && all_digits(int_part),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn core_schema_typing() {
        assert_eq!(core_schema("~"), Value::Null);
        assert_eq!(core_schema("True"), json!(true));
        assert_eq!(core_schema("no"), json!("no"));
        assert_eq!(core_schema("42"), json!(42));
        assert_eq!(core_schema("-7"), json!(-7));
        assert_eq!(core_schema("0x1f"), json!(31));
        assert_eq!(core_schema("0o17"), json!(15));
        assert_eq!(core_schema("1.5e3"), json!(1500.0));
        assert_eq!(core_schema(".5"), json!(0.5));
        assert_eq!(core_schema("2025-06-18"), json!("2025-06-18"));
        assert_eq!(core_schema("127.0.0.1:8080"), json!("127.0.0.1:8080"));
        assert_eq!(core_schema(".inf"), json!(".inf"));
        assert_eq!(core_schema("30s"), json!("30s"));
    }

    #[test]
    fn builds_value_with_positions() {
        let text = "a: 1\nb:\n  - x: 'q'\n    y: [1, \"2\"]\n";
        let (doc, problems) = parse(text, &no_env).unwrap();
        assert!(problems.is_empty());
        assert_eq!(doc.value, json!({"a": 1, "b": [{"x": "q", "y": [1, "2"]}]}));
        let p = &doc.positions;
        assert_eq!(p.key("a"), Mark { line: 1, column: 1 });
        assert_eq!(p.value("a"), Mark { line: 1, column: 4 });
        assert_eq!(p.value("b[0]"), Mark { line: 3, column: 5 });
        assert_eq!(p.key("b[0].y"), Mark { line: 4, column: 5 });
        assert_eq!(
            p.value("b[0].y[1]"),
            Mark {
                line: 4,
                column: 12
            }
        );
    }

    #[test]
    fn rejects_duplicates_aliases_and_tags() {
        let text = "a: &x 1\nb: *x\na: 2\nc: !custom 3\n";
        let (doc, problems) = parse(text, &no_env).unwrap();
        assert_eq!(doc.value, json!({"a": 1, "b": null, "c": null}));
        let lines: Vec<_> = problems.iter().map(|p| p.mark.line).collect();
        assert_eq!(lines, vec![2, 3, 4], "{problems:?}");
        assert!(problems[1].message.contains("duplicate key \"a\""));
        assert!(problems[1].message.contains("line 1"));
    }

    #[test]
    fn one_document_only() {
        let (doc, problems) = parse("# only a comment\n", &no_env).unwrap();
        assert_eq!(doc.value, Value::Null);
        assert!(problems.is_empty());
        let (_, problems) = parse("---\na: 1\n---\nb: 2\n", &no_env).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].mark.line, 3);
        assert!(problems[0].message.contains("second YAML document"));
    }

    #[test]
    fn syntax_error_has_position() {
        let problem = parse("a: [1, 2\nb: 3\n", &no_env).unwrap_err();
        assert!(problem.message.starts_with("invalid YAML"), "{problem:?}");
        assert!(problem.mark.line >= 1);
    }

    #[test]
    fn deep_nesting_is_refused_at_its_position() {
        let ok = format!("a:\n  {}x\n", "- ".repeat(MAX_DEPTH - 1));
        assert!(parse(&ok, &no_env).is_ok());
        let deep = format!("a:\n  {}x\n", "- ".repeat(2_000));
        let problem = parse(&deep, &no_env).unwrap_err();
        assert!(
            problem.message.contains("nested more than 64"),
            "{problem:?}"
        );
        assert_eq!(problem.mark.line, 2);
        assert_eq!(problem.mark.column, 3 + 2 * MAX_DEPTH - 2, "{problem:?}");
    }

    #[test]
    fn long_keys_above_many_values_are_refused() {
        // 18 KB of text whose paths would take 40 MB (60 KB can take 1 GB and a minute).
        let text = format!("? {}\n: [{}1]\n", "k".repeat(8_000), "1,".repeat(5_000));
        let problem = parse(&text, &no_env).unwrap_err();
        assert!(
            problem.message.contains("too large to index"),
            "{problem:?}"
        );
        assert_eq!(problem.mark.line, 2);
    }

    #[test]
    fn syntax_error_at_the_end_stays_inside_the_text() {
        // No final line break: the parser would report line 2 of a one-line text.
        let problem = parse("{a: [1, 2]", &no_env).unwrap_err();
        assert_eq!(
            problem.mark,
            Mark {
                line: 1,
                column: 11
            },
            "{problem:?}"
        );
        let problem = parse("a: 1\r\nb: \"open", &no_env).unwrap_err();
        assert_eq!(problem.mark.line, 2, "{problem:?}");
    }

    #[test]
    fn interpolation_retypes_only_whole_plain_references() {
        let env = |n: &str| (n == "PORT").then(|| "8080".to_string());
        let (doc, _) = parse("a: ${PORT}\nb: \"${PORT}\"\nc: x${PORT}\n", &env).unwrap();
        assert_eq!(doc.value, json!({"a": 8080, "b": "8080", "c": "x8080"}));
    }
}

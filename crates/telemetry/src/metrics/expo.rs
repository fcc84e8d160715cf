//! The Prometheus text exposition format, version 0.0.4.

use std::fmt::Write;

use super::family::{Counter, DURATION_BUCKETS, Family, Gauge, Histogram};

/// `Content-Type` of [`crate::Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes the `# HELP` and `# TYPE` lines of a metric.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(out, help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// HELP text escapes only `\` and newline (a `"` is literal there).
fn escape_help(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A label value escapes `\`, `"` and newline; everything else (any UTF-8) is literal.
pub fn escape_label_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `{a="x",b="y"}` (with `extra` last, used for `le`), or nothing when there are no labels.
fn labels(out: &mut String, names: &[&str], values: &[Box<str>], extra: Option<(&str, &str)>) {
    if names.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in names
        .iter()
        .copied()
        .zip(values.iter().map(|v| &**v))
        .chain(extra)
    {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

fn sample(
    out: &mut String,
    name: &str,
    names: &[&str],
    values: &[Box<str>],
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    labels(out, names, values, None);
    let _ = writeln!(out, " {value}");
}

pub(crate) fn counters<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    names: [&str; N],
    family: &Family<Counter, N>,
) {
    header(out, name, "counter", help);
    for (values, c) in family.collect() {
        sample(out, name, &names, &values, c.get());
    }
}

pub(crate) fn gauges<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    names: [&str; N],
    family: &Family<Gauge, N>,
) {
    header(out, name, "gauge", help);
    for (values, g) in family.collect() {
        sample(out, name, &names, &values, g.get());
    }
}

/// A metric with no labels and one value.
pub(crate) fn single(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

pub(crate) fn histograms<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    names: [&str; N],
    family: &Family<Histogram, N>,
) {
    header(out, name, "histogram", help);
    let bucket = format!("{name}_bucket");
    let mut le = String::new();
    for (values, h) in family.collect() {
        let snap = h.snapshot();
        for (i, count) in snap.cumulative.iter().enumerate() {
            le.clear();
            match DURATION_BUCKETS.get(i) {
                Some(bound) => {
                    let _ = write!(le, "{bound}");
                }
                None => le.push_str("+Inf"),
            }
            out.push_str(&bucket);
            labels(out, &names, &values, Some(("le", &le)));
            let _ = writeln!(out, " {count}");
        }
        sample(
            out,
            &format!("{name}_sum"),
            &names,
            &values,
            Seconds(snap.sum_nanos),
        );
        sample(out, &format!("{name}_count"), &names, &values, snap.count());
    }
}

/// Nanoseconds rendered as seconds without going through a float (exact, never in
/// exponent notation).
struct Seconds(u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, ns) = (self.0 / 1_000_000_000, self.0 % 1_000_000_000);
        if ns == 0 {
            write!(f, "{s}")
        } else {
            let frac = format!("{ns:09}");
            write!(f, "{s}.{}", frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd é");
        assert_eq!(out, r#"a\\b\"c\nd é"#);
    }

    #[test]
    fn help_escapes_backslash_and_newline_only() {
        let mut out = String::new();
        header(&mut out, "m", "counter", "say \"hi\"\\\nbye");
        assert_eq!(out, "# HELP m say \"hi\"\\\\\\nbye\n# TYPE m counter\n");
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(Seconds(0).to_string(), "0");
        assert_eq!(Seconds(1_500_000_000).to_string(), "1.5");
        assert_eq!(Seconds(1).to_string(), "0.000000001");
        assert_eq!(Seconds(12_000_000_000).to_string(), "12");
    }
}

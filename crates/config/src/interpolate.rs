//! `${VAR}` environment interpolation in string scalars.
//!
//! Supported forms: `${VAR}`, `${VAR:-default}` (default used when `VAR` is
//! unset or empty, like the shell) and `$${` for a literal `${`. A `$` not
//! followed by `{` is kept as is, so prices and regexes need no escaping.

/// Result of interpolating one scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpolated {
    /// The text with every reference substituted.
    pub text: String,
    /// True when the scalar consisted of exactly one `${…}` reference; such
    /// plain scalars are re-typed so `port: ${PORT}` can become a number.
    pub whole: bool,
}

/// Substitutes references in `text`, looking variables up with `env`.
///
/// Every problem is reported (not just the first) so a file with several
/// missing variables is fixed in one pass.
pub(crate) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut references = 0usize;
    let mut literal_chars = false;
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        literal_chars |= pos > 0;
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            literal_chars = true;
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                errors.push(
                    "unterminated \"${\": expected \"${NAME}\" (write \"$${\" for a literal \"${\")"
                        .to_string(),
                );
                out.push_str(tail);
                rest = "";
                break;
            };
            references += 1;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !valid_name(name) {
                errors.push(format!(
                    "invalid environment variable name \"{name}\" in \"${{{inner}}}\": expected letters, digits and \"_\", not starting with a digit"
                ));
            } else {
                match (env(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => errors.push(format!(
                        "environment variable \"{name}\" is not set (write \"${{{name}:-default}}\" to give a default)"
                    )),
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            literal_chars = true;
            rest = &tail[1..];
        }
    }
    literal_chars |= !rest.is_empty();
    out.push_str(rest);
    if errors.is_empty() {
        Ok(Interpolated {
            text: out,
            whole: references == 1 && !literal_chars,
        })
    } else {
        Err(errors)
    }
}

/// Whether `text` needs interpolation at all; lets the YAML builder keep
/// the common case allocation-free.
pub(crate) fn has_reference(text: &str) -> bool {
    text.contains("${")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<Interpolated, Vec<String>> {
        interpolate(text, &env)
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(run("${HOME}/x").unwrap().text, "/home/me/x");
        assert_eq!(run("${NOPE:-fallback}").unwrap().text, "fallback");
        assert_eq!(run("${EMPTY:-fallback}").unwrap().text, "fallback");
        assert_eq!(run("${NOPE:-}").unwrap().text, "");
        assert_eq!(run("a ${PORT} b ${PORT}").unwrap().text, "a 8080 b 8080");
    }

    #[test]
    fn escapes_and_plain_dollars() {
        assert_eq!(run("$${HOME}").unwrap().text, "${HOME}");
        assert_eq!(run("cost $5 $").unwrap().text, "cost $5 $");
        assert!(!run("$${HOME}").unwrap().whole);
    }

    #[test]
    fn whole_reference_detection() {
        assert!(run("${PORT}").unwrap().whole);
        assert!(!run("x${PORT}").unwrap().whole);
        assert!(!run("${PORT}${PORT}").unwrap().whole);
        assert!(!run("plain").unwrap().whole);
    }

    #[test]
    fn reports_every_problem() {
        let errs = run("${A} ${B:-ok} ${C} ${1X} ${").unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("\"A\" is not set"));
        assert!(errs[1].contains("\"C\""));
        assert!(errs[2].contains("invalid environment variable name \"1X\""));
        assert!(errs[3].contains("unterminated"));
    }
}

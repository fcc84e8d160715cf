//! What of a call's arguments goes into the journal: nothing, a digest, a redacted copy or the
//! whole document, capped in size.

use std::sync::Arc;

use gatehouse_config::{ArgumentsMode, DEFAULT_SECRET_KEYS, PathStep, parse_redact_path};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::ArgumentsDigest;

/// The text that replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// How one server's arguments are recorded.
#[derive(Debug, Clone)]
pub struct ArgumentRecorder {
    mode: ArgumentsMode,
    max_bytes: usize,
    secret_words: Arc<Vec<String>>,
    paths: Vec<Vec<PathStep>>,
}

/// The recorded form of an argument document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordedArguments {
    /// The (redacted) document, when it fits.
    pub value: Option<Value>,
    /// Size and digest, when hashed or too large.
    pub digest: Option<ArgumentsDigest>,
}

/// A key as compared with the secret words: lower case without `-`, `_` and `.`, so
/// `X-Api-Key`, `api_key` and `apiKey` are one word.
fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl ArgumentRecorder {
    /// A recorder for `mode`, redacting the built-in secret keys, `extra_keys` and `paths`
    /// (already validated by the config loader; invalid ones are skipped).
    pub fn new(
        mode: ArgumentsMode,
        max_bytes: u32,
        extra_keys: &[String],
        paths: &[String],
    ) -> ArgumentRecorder {
        let words = DEFAULT_SECRET_KEYS
            .iter()
            .map(|k| normalize(k))
            .chain(extra_keys.iter().map(|k| normalize(k)))
            .filter(|k| !k.is_empty())
            .collect();
        ArgumentRecorder {
            mode,
            max_bytes: max_bytes as usize,
            secret_words: Arc::new(words),
            paths: paths
                .iter()
                .filter_map(|p| parse_redact_path(p).ok())
                .collect(),
        }
    }

    /// The recording mode.
    pub fn mode(&self) -> ArgumentsMode {
        self.mode
    }

    /// Whether `key` looks like it holds a secret: it is, starts with or ends with a secret
    /// word (`db_password`, `githubToken`, `password_hint`; not `max_tokens`).
    pub fn is_secret_key(&self, key: &str) -> bool {
        let k = normalize(key);
        self.secret_words
            .iter()
            .any(|w| k == *w || k.starts_with(w.as_str()) || k.ends_with(w.as_str()))
    }

    /// Records `arguments`; `extra_redact` names top-level arguments a policy obligation
    /// (`@redact`) asks to leave out.
    pub fn record(&self, arguments: Option<&Value>, extra_redact: &[String]) -> RecordedArguments {
        let Some(args) = arguments else {
            return RecordedArguments::default();
        };
        let digest_of = |text: &str, prefix: Option<String>| ArgumentsDigest {
            bytes: text.len() as u64,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            prefix,
        };
        match self.mode {
            ArgumentsMode::Off => RecordedArguments::default(),
            ArgumentsMode::Hashed => RecordedArguments {
                value: None,
                digest: Some(digest_of(&args.to_string(), None)),
            },
            ArgumentsMode::Redacted | ArgumentsMode::Full => {
                let mut copy = args.clone();
                if self.mode == ArgumentsMode::Redacted {
                    self.redact_keys(&mut copy, 0);
                    for path in &self.paths {
                        redact_path(&mut copy, path);
                    }
                }
                if let Value::Object(map) = &mut copy {
                    for name in extra_redact {
                        if let Some(v) = map.get_mut(name) {
                            *v = Value::String(REDACTED.into());
                        }
                    }
                }
                // Measured without building the text: most documents fit.
                let mut size = ByteCount(0);
                let _ = serde_json::to_writer(&mut size, &copy);
                if size.0 <= self.max_bytes {
                    return RecordedArguments {
                        value: Some(copy),
                        digest: None,
                    };
                }
                let text = copy.to_string();
                // The digest is of what was received, so it can be matched with the server's
                // own logs; the prefix is of the redacted form.
                let original = args.to_string();
                let kept = crate::bound::prefix(&text, self.max_bytes).to_string();
                let mut d = digest_of(&original, Some(kept));
                d.bytes = original.len() as u64;
                RecordedArguments {
                    value: None,
                    digest: Some(d),
                }
            }
        }
    }

    fn redact_keys(&self, v: &mut Value, depth: usize) {
        // Normalized arguments are at most 32 levels deep; a deeper document is cut off
        // rather than walked without bound.
        if depth > 64 {
            *v = Value::String(REDACTED.into());
            return;
        }
        match v {
            Value::Object(map) => {
                for (k, inner) in map.iter_mut() {
                    if self.is_secret_key(k) {
                        *inner = Value::String(REDACTED.into());
                    } else {
                        self.redact_keys(inner, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                for inner in items {
                    self.redact_keys(inner, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// Replaces every value `path` reaches with [`REDACTED`].
fn redact_path(v: &mut Value, path: &[PathStep]) {
    let Some((step, rest)) = path.split_first() else {
        *v = Value::String(REDACTED.into());
        return;
    };
    match (step, v) {
        (PathStep::Key(k), Value::Object(map)) => {
            if let Some(inner) = map.get_mut(k) {
                redact_path(inner, rest);
            }
        }
        (PathStep::Index(i), Value::Array(items)) => {
            if let Some(inner) = items.get_mut(*i) {
                redact_path(inner, rest);
            }
        }
        (PathStep::Any, Value::Object(map)) => {
            for inner in map.values_mut() {
                redact_path(inner, rest);
            }
        }
        (PathStep::Any, Value::Array(items)) => {
            for inner in items {
                redact_path(inner, rest);
            }
        }
        _ => {}
    }
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recorder(mode: ArgumentsMode) -> ArgumentRecorder {
        ArgumentRecorder::new(
            mode,
            4096,
            &["ssn".into()],
            &["$.fields.description".into(), "$.items[*].body".into()],
        )
    }

    #[test]
    fn redacts_secret_keys_at_any_depth_and_configured_paths() {
        let args = json!({
            "query": "status = open",
            "password": "hunter2",
            "nested": {"githubToken": "ghp_x", "X-Api-Key": "k", "max_tokens": 10, "SSN": "1"},
            "list": [{"client_secret": "s"}],
            "fields": {"description": "private text", "title": "t"},
            "items": [{"body": "a"}, {"body": "b", "id": 2}],
        });
        let r = recorder(ArgumentsMode::Redacted).record(Some(&args), &[]);
        let v = r.value.unwrap();
        assert_eq!(v["query"], "status = open");
        assert_eq!(v["password"], REDACTED);
        assert_eq!(v["nested"]["githubToken"], REDACTED);
        assert_eq!(v["nested"]["X-Api-Key"], REDACTED);
        assert_eq!(v["nested"]["SSN"], REDACTED);
        assert_eq!(v["nested"]["max_tokens"], 10);
        assert_eq!(v["list"][0]["client_secret"], REDACTED);
        assert_eq!(v["fields"]["description"], REDACTED);
        assert_eq!(v["fields"]["title"], "t");
        assert_eq!(v["items"][1]["body"], REDACTED);
        assert_eq!(v["items"][1]["id"], 2);
        assert!(!v.to_string().contains("hunter2"));
    }

    #[test]
    fn modes_record_nothing_a_digest_or_everything() {
        let args = json!({"password": "p", "a": 1});
        assert_eq!(
            recorder(ArgumentsMode::Off).record(Some(&args), &[]),
            RecordedArguments::default()
        );
        let hashed = recorder(ArgumentsMode::Hashed).record(Some(&args), &[]);
        assert!(hashed.value.is_none());
        let d = hashed.digest.unwrap();
        assert_eq!(d.bytes, args.to_string().len() as u64);
        assert_eq!(d.sha256.len(), 64);
        let full = recorder(ArgumentsMode::Full).record(Some(&args), &[]);
        assert_eq!(full.value.unwrap()["password"], "p");
    }

    #[test]
    fn policy_obligations_redact_named_arguments_even_in_full_mode() {
        let args = json!({"card_number": "4111", "amount": 3});
        let r = recorder(ArgumentsMode::Full).record(Some(&args), &["card_number".into()]);
        let v = r.value.unwrap();
        assert_eq!(v["card_number"], REDACTED);
        assert_eq!(v["amount"], 3);
    }

    #[test]
    fn large_documents_become_a_digest_with_a_redacted_prefix() {
        let args = json!({"token": "t0ps3cret", "body": "é".repeat(5000)});
        let r =
            ArgumentRecorder::new(ArgumentsMode::Redacted, 100, &[], &[]).record(Some(&args), &[]);
        assert!(r.value.is_none());
        let d = r.digest.unwrap();
        assert_eq!(d.bytes, args.to_string().len() as u64);
        let prefix = d.prefix.unwrap();
        assert!(prefix.len() <= 100);
        assert!(!prefix.contains("t0ps3cret"));
    }
}

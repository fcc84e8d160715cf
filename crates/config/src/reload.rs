//! The reload boundary: which settings a running gateway takes on a reload and which wait for a
//! restart. Every field of the configuration has a class here ([`FIELD_CLASSES`]); a test
//! fails on a field without one, so no setting can be silently start-only.
//!
//! A reload that changes a start-only field still applies everything else; the gateway's log
//! line and the `config.change` audit event name the fields waiting for a restart
//! ([`restart_needed`]).

use crate::Config;

/// How a running gateway takes a change of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A reload applies it: requests that start after the reload see the new value.
    Follows,
    /// Read once at start (listeners, TLS, the store, the journal's files): a change waits for
    /// a restart, and the reload says so.
    StartOnly,
}

/// The class of every configuration field, by its path as the configuration reference writes
/// it (`gateway.max_body_bytes`, `servers[]`). An entry covers the fields below it unless one
/// of them has an entry of its own; `servers[]` covers every field of a server.
pub const FIELD_CLASSES: &[(&str, Reload)] = &[
    ("version", Reload::Follows),
    // The listener and what is bound to it.
    ("gateway.listen", Reload::StartOnly),
    ("gateway.tls", Reload::StartOnly),
    ("gateway.public_url", Reload::StartOnly),
    ("gateway.connections", Reload::StartOnly),
    // Read per request or per session from the snapshot.
    ("gateway.max_body_bytes", Reload::Follows),
    ("gateway.body_timeout", Reload::Follows),
    ("gateway.max_body_bytes_in_flight", Reload::Follows),
    ("gateway.request_timeout", Reload::Follows),
    ("gateway.shutdown_grace", Reload::Follows),
    ("gateway.allowed_origins", Reload::Follows),
    ("gateway.session_ttl", Reload::Follows),
    ("gateway.sessions", Reload::Follows),
    ("gateway.sse_queue_bytes", Reload::Follows),
    ("gateway.stderr", Reload::Follows),
    // A changed server gets a new backend; unchanged ones carry over.
    ("servers[]", Reload::Follows),
    ("virtual_servers[]", Reload::Follows),
    ("policies", Reload::Follows),
    ("store.url", Reload::StartOnly),
    // The journal's files and chain are opened once.
    ("audit.enabled", Reload::StartOnly),
    ("audit.dir", Reload::StartOnly),
    ("audit.durability", Reload::StartOnly),
    ("audit.on_failure", Reload::StartOnly),
    ("audit.signing_key", Reload::StartOnly),
    ("audit.segment_bytes", Reload::StartOnly),
    ("audit.coalesce", Reload::StartOnly),
    // What an event records, and the background work, read the snapshot.
    ("audit.arguments", Reload::Follows),
    ("audit.max_argument_bytes", Reload::Follows),
    ("audit.max_field_bytes", Reload::Follows),
    ("audit.secret_keys", Reload::Follows),
    ("audit.sinks", Reload::Follows),
    ("audit.retention", Reload::Follows),
    ("audit.anomalies", Reload::Follows),
    ("telemetry", Reload::Follows),
    ("admin.listen", Reload::StartOnly),
];

/// The class of the field at `path` (as the reference writes it), or `None` when no entry
/// covers it.
pub fn class_of(path: &str) -> Option<Reload> {
    FIELD_CLASSES
        .iter()
        .filter(|(entry, _)| covers(entry, path))
        .max_by_key(|(entry, _)| entry.len())
        .map(|(_, class)| *class)
}

/// Whether the entry `entry` is `path` or one of its ancestors.
fn covers(entry: &str, path: &str) -> bool {
    path.strip_prefix(entry)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// How each start-only entry of [`FIELD_CLASSES`] reads and keeps its value in a typed
/// [`Config`] (a whole optional section where the entry names its only field).
macro_rules! start_only_fields {
    ($($path:literal => $($field:ident).+;)*) => {
        /// The start-only entries, in table order.
        const START_ONLY: &[&str] = &[$($path),*];

        /// Whether the start-only setting `path` differs between two configs.
        fn differs(path: &str, a: &Config, b: &Config) -> bool {
            match path {
                $($path => a.$($field).+ != b.$($field).+,)*
                _ => false,
            }
        }

        /// Gives `next` the running value of the start-only setting `path`.
        fn keep(path: &str, running: &Config, next: &mut Config) {
            match path {
                $($path => next.$($field).+ = running.$($field).+.clone(),)*
                _ => {}
            }
        }
    };
}

start_only_fields! {
    "gateway.listen" => gateway.listen;
    "gateway.tls" => gateway.tls;
    "gateway.public_url" => gateway.public_url;
    "gateway.connections" => gateway.connections;
    "store.url" => store;
    "audit.enabled" => audit.enabled;
    "audit.dir" => audit.dir;
    "audit.durability" => audit.durability;
    "audit.on_failure" => audit.on_failure;
    "audit.signing_key" => audit.signing_key;
    "audit.segment_bytes" => audit.segment_bytes;
    "audit.coalesce" => audit.coalesce;
    "admin.listen" => admin;
}

/// The start-only settings whose values differ between `running` and `next`, in the order of
/// [`FIELD_CLASSES`]: what a reload from one to the other leaves waiting for a restart.
pub fn restart_needed(running: &Config, next: &Config) -> Vec<&'static str> {
    START_ONLY
        .iter()
        .copied()
        .filter(|path| differs(path, running, next))
        .collect()
}

/// Prepares a reloaded config for a running gateway: every start-only setting keeps the value
/// the gateway runs with, so the snapshot's config says what is in effect. Returns the
/// settings whose new values wait for a restart, as [`restart_needed`] does.
pub fn keep_start_only(running: &Config, next: &mut Config) -> Vec<&'static str> {
    let waiting = restart_needed(running, next);
    for path in &waiting {
        keep(path, running, next);
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Config {
        crate::load_str(yaml, std::path::Path::new("t.yaml"), &|_| None).expect("valid config")
    }

    /// Every field the configuration reference lists has a class, and every entry of the
    /// table names a field: a new setting cannot be silently start-only, nor can a removed one
    /// linger here.
    #[test]
    fn every_config_field_has_a_reload_class() {
        let fields = crate::reference::field_paths();
        assert!(
            fields.len() > 100,
            "the reference lists the fields: {fields:?}"
        );
        // A section (`gateway`, `servers`) is classed through the fields it holds.
        let section = |p: &str| fields.iter().any(|f| f.len() > p.len() && covers(p, f));
        let unclassed: Vec<&String> = fields
            .iter()
            .filter(|f| class_of(f).is_none() && !section(f))
            .collect();
        assert!(
            unclassed.is_empty(),
            "fields without a reload class: add each to FIELD_CLASSES in crates/config/src/reload.rs \
             (Follows when the running gateway reads it from the current snapshot, StartOnly \
             when it is read once at start, then also in start_only_fields!): {unclassed:?}"
        );
        let unused: Vec<&str> = FIELD_CLASSES
            .iter()
            .map(|(entry, _)| *entry)
            .filter(|entry| !fields.iter().any(|f| covers(entry, f)))
            .collect();
        assert!(unused.is_empty(), "entries that name no field: {unused:?}");
    }

    #[test]
    fn the_typed_start_only_fields_are_the_tables() {
        let table: Vec<&str> = FIELD_CLASSES
            .iter()
            .filter(|(_, c)| *c == Reload::StartOnly)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(table, START_ONLY);
    }

    #[test]
    fn the_longest_entry_decides() {
        assert_eq!(class_of("gateway.listen"), Some(Reload::StartOnly));
        assert_eq!(class_of("gateway.connections.max"), Some(Reload::StartOnly));
        assert_eq!(
            class_of("gateway.sessions.idle_timeout"),
            Some(Reload::Follows)
        );
        assert_eq!(class_of("servers[].command"), Some(Reload::Follows));
        assert_eq!(class_of("telemetry.otlp.traces"), Some(Reload::Follows));
        // A prefix that is not a whole segment covers nothing.
        assert_eq!(class_of("gateway.listener_backlog"), None);
        assert_eq!(class_of("gateway"), None);
    }

    #[test]
    fn a_changed_start_only_field_is_named_and_a_followed_one_is_not() {
        let running = load("gateway:\n  session_ttl: 24h\n");
        let next = load(
            "gateway:\n  session_ttl: 1h\n  listen: 127.0.0.1:9090\nadmin:\n  listen: 127.0.0.1:9464\n",
        );
        assert_eq!(
            restart_needed(&running, &next),
            vec!["gateway.listen", "admin.listen"]
        );
        assert!(restart_needed(&running, &running).is_empty());
        let ttl_only = load("gateway:\n  session_ttl: 1h\n");
        assert!(restart_needed(&running, &ttl_only).is_empty());
    }

    #[test]
    fn a_reloaded_config_keeps_the_running_start_only_values_and_takes_the_rest() {
        let running = load("gateway:\n  listen: 127.0.0.1:8080\n  session_ttl: 24h\n");
        let mut next = load(
            "gateway:\n  listen: 127.0.0.1:9090\n  session_ttl: 1h\nadmin:\n  listen: 127.0.0.1:9464\nstore:\n  url: sqlite:///tmp/x.db\n",
        );
        let waiting = keep_start_only(&running, &mut next);
        assert_eq!(waiting, vec!["gateway.listen", "store.url", "admin.listen"]);
        assert_eq!(next.gateway.listen, "127.0.0.1:8080");
        assert!(
            next.admin.is_none(),
            "an admin listener the running gateway lacks"
        );
        assert!(next.store.is_none());
        assert_eq!(next.gateway.session_ttl.get().as_secs(), 3600);
        // Nothing is left waiting once the kept config is the running one.
        assert!(restart_needed(&running, &next).is_empty());
    }

    /// The full example config sets every start-only field: keeping the running values must
    /// leave nothing differing (the kept config deserialises).
    #[test]
    fn every_start_only_field_of_the_example_config_can_be_kept() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gatehouse.yaml");
        let text = std::fs::read_to_string(&path).expect("the example config");
        let env = |name: &str| Some(format!("example-{name}"));
        let example = crate::load_str(&text, &path, &env).expect("the example loads");
        let running = Config::default();
        let mut next = example.clone();
        let waiting = keep_start_only(&running, &mut next);
        assert!(!waiting.is_empty(), "the example sets start-only fields");
        assert!(
            restart_needed(&running, &next).is_empty(),
            "{waiting:?} kept"
        );
        assert_eq!(
            next.servers, example.servers,
            "what follows reloads is taken"
        );
    }
}

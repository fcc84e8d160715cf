//! Rules for `servers[].isolation`: which fields go with which runtime, secret references,
//! limits, and what this platform can run.

use crate::auth::SecretSource;
use crate::isolation::{IsolationConfig, RuntimeKind};
use crate::model::ServerConfig;
use crate::path;

use super::Validator;

/// Smallest memory limit accepted: below it no interpreter starts, and the error would be an
/// out-of-memory kill rather than a clear message.
const MIN_MEMORY: u64 = 16 << 20;

impl Validator<'_> {
    /// `p` is the server's path (`servers[3]`).
    pub(super) fn isolation(&mut self, s: &ServerConfig, p: &str) {
        let field = path::key(p, "isolation");
        let Some(iso) = &s.isolation else {
            if !cfg!(target_os = "linux") && s.command.is_some() {
                self.at_key(
                    &path::key(p, "command"),
                    format!(
                        "server \"{}\" has no isolation, and the sandbox needs Linux: write `isolation: {{ runtime: container, image: … }}` to run it in a container, or `isolation: {{ runtime: process }}` to run it without isolation",
                        s.name
                    ),
                );
            }
            return;
        };
        if s.url.is_some() {
            self.at_key(
                &field,
                "isolation is only valid for local servers (with command): a remote server runs elsewhere".into(),
            );
            return;
        }
        let runtime = iso.runtime();
        let k = |f: &str| path::key(&field, f);
        match runtime {
            RuntimeKind::Sandbox if !cfg!(target_os = "linux") => self.at_value(
                &k("runtime"),
                "the sandbox needs Linux, expected runtime container or process on this system"
                    .into(),
            ),
            RuntimeKind::Container => self.isolation_container(iso, &field),
            RuntimeKind::Process => {
                for (set, name) in [
                    (iso.preset.is_some(), "preset"),
                    (!iso.filesystem.is_empty(), "filesystem"),
                    (!iso.network.is_empty(), "network"),
                    (self.positions.contains(&k("resources")), "resources"),
                    (!iso.secret_files.is_empty(), "secret_files"),
                ] {
                    if set {
                        self.at_key(
                            &k(name),
                            format!("{name} has no effect with runtime process (no isolation), expected runtime sandbox or container"),
                        );
                    }
                }
            }
            RuntimeKind::Sandbox => {}
        }
        if runtime != RuntimeKind::Container {
            for (set, name) in [
                (iso.image.is_some(), "image"),
                (iso.runtime_class.is_some(), "runtime_class"),
                (iso.http.is_some(), "http"),
            ] {
                if set {
                    self.at_key(
                        &k(name),
                        format!("{name} is only valid with runtime container"),
                    );
                }
            }
        }
        self.isolation_paths(iso, &field);
        self.isolation_lockfile(s, iso, &field);
        self.isolation_network(iso, &field);
        self.isolation_resources(iso, &field);
        self.isolation_secrets(iso, &field);
    }

    /// A container needs its image; the preset is the image's business.
    fn isolation_container(&mut self, iso: &IsolationConfig, field: &str) {
        let k = |f: &str| path::key(field, f);
        match iso.image.as_deref().map(str::trim) {
            None => self.at_key(
                field,
                "runtime container needs an image, e.g. `image: localhost/mcp-node:22` (images are not pulled: build or load it into the engine first)".into(),
            ),
            Some("") => self.at_value(&k("image"), "found an empty image name, expected an image such as localhost/mcp-node:22".into()),
            Some(_) => {}
        }
        if iso.preset.is_some() {
            self.at_key(
                &k("preset"),
                "preset has no effect with runtime container (the image brings the interpreter), expected it only with runtime sandbox".into(),
            );
        }
        if iso
            .runtime_class
            .as_deref()
            .is_some_and(|c| c.trim().is_empty() || c.contains(char::is_whitespace))
        {
            self.at_value(&k("runtime_class"), "found an empty or spaced runtime class, expected an OCI runtime name the engine knows, such as runc or runsc".into());
        }
        if let Some(http) = &iso.http {
            let k = |f: &str| path::key(&k("http"), f);
            if http.port == 0 {
                self.at_value(
                    &k("port"),
                    "found port 0, expected the port the server listens on inside its container (1 to 65535)".into(),
                );
            }
            if !http.path.starts_with('/') || http.path.contains(char::is_whitespace) {
                self.at_value(
                    &k("path"),
                    format!(
                        "found path {:?}, expected an absolute URL path such as /mcp",
                        http.path
                    ),
                );
            }
        }
    }

    fn isolation_paths(&mut self, iso: &IsolationConfig, field: &str) {
        let fs = path::key(field, "filesystem");
        for (list, name) in [
            (&iso.filesystem.read, "read"),
            (&iso.filesystem.write, "write"),
        ] {
            for (i, p) in list.iter().enumerate() {
                let at = path::index(&path::key(&fs, name), i);
                if p.as_os_str().is_empty() || p.to_str().is_some_and(|s| s.contains('\0')) {
                    self.at_value(&at, "found an empty path, expected a file or folder".into());
                } else if p.parent().is_none() {
                    self.at_value(
                        &at,
                        "found the root folder, expected the folders the server needs (granting / would undo the sandbox)".into(),
                    );
                }
            }
        }
        for p in iso.secret_files.keys() {
            if !p.is_absolute() || p.parent().is_none() {
                self.at_key(
                    &path::key(&path::key(field, "secret_files"), &p.to_string_lossy()),
                    format!(
                        "found \"{}\", expected an absolute path inside the sandbox such as /run/secrets/token",
                        p.display()
                    ),
                );
            }
        }
    }

    /// A lockfile is read by the `npx`/`uvx` install only; anywhere else it would be ignored.
    fn isolation_lockfile(&mut self, s: &ServerConfig, iso: &IsolationConfig, field: &str) {
        let Some(lockfile) = &iso.lockfile else {
            return;
        };
        let at = path::key(field, "lockfile");
        let command = s.command.as_deref().unwrap_or_default();
        let name = std::path::Path::new(command)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(command);
        let installs = matches!(name, "npx" | "uvx")
            || (name == "uv"
                && s.args
                    .as_deref()
                    .and_then(|a| a.first())
                    .is_some_and(|a| a == "tool"));
        if !installs {
            self.at_key(
                &at,
                format!("lockfile is only used when the command is npx or uvx (the gateway installs their package from it), found command \"{command}\""),
            );
        } else if iso.runtime() == RuntimeKind::Process {
            self.at_key(
                &at,
                "lockfile has no effect with runtime process (npx and uvx run as written), expected runtime sandbox".into(),
            );
        } else if lockfile.as_os_str().is_empty() {
            self.at_value(&at, "found an empty path, expected a lockfile".into());
        }
    }

    fn isolation_network(&mut self, iso: &IsolationConfig, field: &str) {
        let egress = path::key(&path::key(field, "network"), "egress");
        for (i, rule) in iso.network.egress.iter().enumerate() {
            let at = path::index(&egress, i);
            if let Err(e) = crate::isolation::EgressRule::parse(rule) {
                self.at_value(&at, e);
            }
        }
    }

    fn isolation_resources(&mut self, iso: &IsolationConfig, field: &str) {
        let r = path::key(field, "resources");
        if iso.resources.memory.0 < MIN_MEMORY {
            self.at_value(
                &path::key(&r, "memory"),
                format!(
                    "found {}, expected at least 16Mi (interpreters need more to start)",
                    iso.resources.memory
                ),
            );
        }
        if let Some(cpus) = iso.resources.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            self.at_value(
                &path::key(&r, "cpus"),
                format!("found {cpus}, expected a number of CPUs above 0, such as 0.5 or 2"),
            );
        }
        if iso.resources.pids == 0 {
            self.at_value(
                &path::key(&r, "pids"),
                "found 0, expected at least 1 (the server itself)".into(),
            );
        }
    }

    fn isolation_secrets(&mut self, iso: &IsolationConfig, field: &str) {
        let secrets = path::key(field, "secrets");
        for (name, secret) in &iso.secrets {
            if name.is_empty() || name.contains(['=', '\0']) {
                self.at_key(
                    &path::key(&secrets, name),
                    format!("found environment variable name \"{name}\", expected a non-empty name without \"=\""),
                );
            }
            self.secret_reference(&path::key(&secrets, name), secret);
        }
        let files = path::key(field, "secret_files");
        for (p, secret) in &iso.secret_files {
            self.secret_reference(&path::key(&files, &p.to_string_lossy()), secret);
        }
    }

    fn secret_reference(&mut self, at: &str, secret: &crate::auth::SecretRef) {
        match secret.source() {
            Some(SecretSource::Env(_) | SecretSource::File(_) | SecretSource::Store(_)) => {}
            None if secret.0.starts_with("store:") => self.at_value(
                at,
                "found an invalid stored secret's name, expected store:NAME with 1-128 characters of A-Z a-z 0-9 . _ -".into(),
            ),
            // The value is not echoed: a literal here may be the secret itself.
            None => self.at_value(
                at,
                "found a literal, expected a secret reference: env:NAME, file:PATH or store:NAME (secrets are never written in the config)".into(),
            ),
        }
    }
}

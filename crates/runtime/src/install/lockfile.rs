//! Installs from a lockfile: the installation is keyed by the file's content, npm gets the
//! project `npm ci` needs, and the result is checked against the command line.

use std::path::Path;

use super::{InstallError, InstallSpec};

/// `lock-<hash of the content>`: a changed lockfile is a new installation.
pub(super) fn key(lock: &Path) -> Result<String, InstallError> {
    let content = std::fs::read(lock).map_err(|e| {
        InstallError::Layout(format!("cannot read the lockfile {}: {e}", lock.display()))
    })?;
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let h = content.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    Ok(format!("lock-{h:016x}"))
}

/// Writes the `package.json` and `package-lock.json` `npm ci` installs from into `dir`: the
/// lockfile's root entry is the project it was made for.
pub(super) fn npm_project(lock: &Path, dir: &Path) -> Result<(), InstallError> {
    let bad = |why: String| {
        InstallError::Layout(format!(
            "the lockfile {} {why}; make it with `npm install --package-lock-only PACKAGE@VERSION` in an empty folder",
            lock.display()
        ))
    };
    let text = std::fs::read(lock).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("is not JSON: {e}")))?;
    let root = &parsed["packages"][""];
    if !root.is_object() {
        return Err(bad(
            "has no root package (`packages[\"\"]`, lockfileVersion 2 or later)".into(),
        ));
    }
    let write = |name: &str, content: &[u8]| {
        std::fs::write(dir.join(name), content)
            .map_err(|e| InstallError::Layout(format!("cannot write {}: {e}", dir.display())))
    };
    write("package.json", root.to_string().as_bytes())?;
    write("package-lock.json", &text)
}

/// The lockfile installed the command line's package, at its pinned version if it has one.
pub(super) fn npm_check(spec: &InstallSpec, lock: &Path, dir: &Path) -> Result<(), InstallError> {
    let manifest = dir
        .join("node_modules")
        .join(&spec.main.name)
        .join("package.json");
    let installed: Option<serde_json::Value> = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let version = installed
        .as_ref()
        .and_then(|m| m["version"].as_str())
        .ok_or_else(|| {
            InstallError::Layout(format!(
                "the lockfile {} does not install {}; add it with `npm install --package-lock-only {}`",
                lock.display(),
                spec.main.name,
                spec.main.spec
            ))
        })?;
    match &spec.main.pinned {
        Some(pinned) if pinned != version => Err(InstallError::Layout(format!(
            "the lockfile {} installs {}@{version}, but the command names {}; make them agree",
            lock.display(),
            spec.main.name,
            spec.main.spec
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_content_and_npm_gets_the_root_project() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("package-lock.json");
        std::fs::write(
            &lock,
            r#"{"lockfileVersion":3,"packages":{"":{"dependencies":{"a":"1.0.0"}}}}"#,
        )
        .unwrap();
        let first = key(&lock).unwrap();
        assert!(first.starts_with("lock-") && first.len() == 21, "{first}");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        npm_project(&lock, &out).unwrap();
        let project: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("package.json")).unwrap()).unwrap();
        assert_eq!(project["dependencies"]["a"], "1.0.0");
        std::fs::write(&lock, r#"{"lockfileVersion":1,"dependencies":{}}"#).unwrap();
        assert_ne!(key(&lock).unwrap(), first);
        let e = npm_project(&lock, &out).unwrap_err().to_string();
        assert!(e.contains("has no root package"), "{e}");
        let e = key(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("cannot read the lockfile"), "{e}");
    }
}

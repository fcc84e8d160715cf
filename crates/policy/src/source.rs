//! Policy files: finding them from `policies.paths`, and positions inside them.

use std::path::{Path, PathBuf};

use crate::PolicyError;

/// One file of a policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl SourceFile {
    /// The file name, as policy ids and messages show it.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// 1-based line and column of byte `offset`.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        position(&self.text, offset)
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// What a policy set is made of, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Policy files (`*.cedar` or `*.rego`).
    pub policies: Vec<SourceFile>,
    /// Cedar schema fragments (`*.cedarschema`).
    pub schemas: Vec<SourceFile>,
    /// Test cases (`*.tests.yaml`).
    pub tests: Vec<SourceFile>,
}

impl Sources {
    /// Every file, for the version hash and change detection.
    pub fn all(&self) -> impl Iterator<Item = &SourceFile> {
        self.policies.iter().chain(&self.schemas).chain(&self.tests)
    }
}

/// The files `patterns` name for `extension` (`cedar` or `rego`). A pattern is a file, a
/// folder (every matching file in it), or a file name with `*` / `?` in its last component.
/// Test files (`*.tests.yaml`) in the folders of the policy files are picked up too.
pub fn collect(patterns: &[String], extension: &str) -> Result<Sources, PolicyError> {
    let paths = files(patterns)?;
    let mut sources = Sources::default();
    let schema_ext = format!("{extension}schema");
    for path in paths {
        let name = path.to_string_lossy().into_owned();
        let bucket = if name.ends_with(".tests.yaml") {
            &mut sources.tests
        } else if has_extension(&path, extension) {
            &mut sources.policies
        } else if has_extension(&path, &schema_ext) {
            &mut sources.schemas
        } else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
            path: path.clone(),
            source,
        })?;
        bucket.push(SourceFile { path, text });
    }
    Ok(sources)
}

/// The files a policy set of `patterns` is read from, sorted: the patterns' matches and the
/// `.tests.yaml` files beside them (the caller keeps those of its engine's extension).
pub fn files(patterns: &[String]) -> Result<Vec<PathBuf>, PolicyError> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut folders: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let matched = expand(pattern)?;
        if matched.is_empty() {
            return Err(PolicyError::NoFiles {
                pattern: pattern.clone(),
            });
        }
        for p in matched {
            if let Some(parent) = p.parent()
                && !folders.iter().any(|f| f == parent)
            {
                folders.push(parent.to_path_buf());
            }
            paths.push(p);
        }
    }
    for folder in &folders {
        for entry in read_dir(folder)? {
            if entry.to_string_lossy().ends_with(".tests.yaml") {
                paths.push(entry);
            }
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// The metadata stamp of the files of `patterns`: each one's path, size, modification time
/// and inode (see `crate::stamp`).
pub fn stamp(patterns: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match files(patterns) {
        Ok(files) => {
            for f in files {
                f.hash(&mut h);
                if let Ok(m) = std::fs::metadata(&f) {
                    (m.len(), m.mtime(), m.mtime_nsec(), m.ino(), m.dev()).hash(&mut h);
                }
            }
        }
        Err(e) => e.to_string().hash(&mut h),
    }
    h.finish()
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

fn read_dir(folder: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let entries = std::fs::read_dir(folder).map_err(|source| PolicyError::Io {
        path: folder.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()) {
            out.push(e.path());
        }
    }
    Ok(out)
}

fn expand(pattern: &str) -> Result<Vec<PathBuf>, PolicyError> {
    let path = Path::new(pattern);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        if path.is_dir() {
            return read_dir(path);
        }
        return Ok(if path.exists() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    if folder.to_string_lossy().contains(['*', '?']) {
        return Err(PolicyError::Pattern {
            pattern: pattern.to_string(),
            message: "wildcards are supported in the file name only, not in folders".into(),
        });
    }
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    Ok(read_dir(folder)?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| wildcard(&name, &n.to_string_lossy()))
        })
        .collect())
}

/// `*` matches any run of characters, `?` one character.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_moves_with_an_edit_an_added_file_and_a_rename_over_and_not_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.cedar");
        std::fs::write(&a, "permit(principal, action, resource);").unwrap();
        let patterns = vec![dir.path().display().to_string()];
        let first = stamp(&patterns);
        assert_eq!(stamp(&patterns), first, "nothing changed");
        std::fs::write(&a, "forbid(principal, action, resource);").unwrap();
        let edited = stamp(&patterns);
        assert_ne!(edited, first, "an edit of the same size");
        std::fs::write(dir.path().join("b.cedar"), "").unwrap();
        let added = stamp(&patterns);
        assert_ne!(added, edited, "an added file");
        let next = dir.path().join("next");
        std::fs::write(&next, std::fs::read(&a).unwrap()).unwrap();
        std::fs::rename(&next, &a).unwrap();
        assert_ne!(stamp(&patterns), added, "the same content renamed over");
    }

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard("*.cedar", "jira.cedar"));
        assert!(!wildcard("*.cedar", "jira.cedarschema"));
        assert!(wildcard("a?c*", "abcdef"));
        assert!(!wildcard("a?c", "ac"));
    }

    #[test]
    fn collects_policies_schemas_and_tests_next_to_them() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a.cedar",
            "b.cedar",
            "args.cedarschema",
            "a.tests.yaml",
            "x.rego",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let pattern = format!("{}/*.ceda?", dir.path().display());
        let s = collect(&[pattern], "cedar").unwrap();
        let names = |v: &[SourceFile]| v.iter().map(SourceFile::name).collect::<Vec<_>>();
        assert_eq!(names(&s.policies), ["a.cedar", "b.cedar"]);
        assert!(s.schemas.is_empty());
        assert_eq!(names(&s.tests), ["a.tests.yaml"]);
        let s = collect(&[dir.path().display().to_string()], "cedar").unwrap();
        assert_eq!(names(&s.schemas), ["args.cedarschema"]);
        let missing = format!("{}/*.nothing", dir.path().display());
        assert!(matches!(
            collect(&[missing], "cedar"),
            Err(PolicyError::NoFiles { .. })
        ));
    }
}

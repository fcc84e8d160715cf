//! The program an installation runs: an npm package's `bin` (run with Node) or a console
//! script of the virtual environment (run with its Python).

use std::path::{Path, PathBuf};

use super::{Ecosystem, InstallError, InstallSpec, Installed, NPM_FIX, Package, program};

/// The installed program and how to run it.
pub(super) fn entry_point(spec: &InstallSpec, dir: &Path) -> Result<Installed, InstallError> {
    let (command, script) = match spec.ecosystem {
        Ecosystem::Npm => {
            let node = program(&spec.main.spec, "node", NPM_FIX)?;
            (node, npm_bin(spec, dir)?)
        }
        Ecosystem::Python => {
            let bin = dir.join("venv/bin");
            let name = spec.program.as_deref().unwrap_or(&spec.main.name);
            let script = bin.join(name);
            if !script.is_file() {
                return Err(InstallError::Layout(format!(
                    "{} installed no program named {name:?} in {} (name it with `uvx --from {} PROGRAM`)",
                    spec.main.spec,
                    bin.display(),
                    spec.main.spec
                )));
            }
            (bin.join("python"), script)
        }
    };
    let mut args = vec![script.display().to_string()];
    args.extend(spec.args.iter().cloned());
    Ok(Installed {
        dir: dir.to_path_buf(),
        command,
        args,
    })
}

/// The script of the program an npm install runs: `program` from any installed package's
/// `bin`, else the main package's only `bin` or the one named like the package.
fn npm_bin(spec: &InstallSpec, dir: &Path) -> Result<PathBuf, InstallError> {
    let modules = dir.join("node_modules");
    let bins = |pkg: &Package| -> Vec<(String, PathBuf)> {
        let root = modules.join(&pkg.name);
        let manifest: serde_json::Value = std::fs::read(root.join("package.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let unscoped = pkg.name.rsplit('/').next().unwrap_or(&pkg.name).to_string();
        match &manifest["bin"] {
            serde_json::Value::String(s) => vec![(unscoped, root.join(s))],
            serde_json::Value::Object(m) => m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), root.join(v.as_str()?))))
                .collect(),
            _ => Vec::new(),
        }
    };
    let main = bins(&spec.main);
    let found = match &spec.program {
        Some(want) => std::iter::once(&spec.main)
            .chain(&spec.extra)
            .flat_map(bins)
            .find(|(k, _)| k == want),
        None if main.len() == 1 => main.first().cloned(),
        None => {
            let unscoped = spec.main.name.rsplit('/').next().unwrap_or_default();
            main.iter().find(|(k, _)| k == unscoped).cloned()
        }
    };
    found.map(|(_, p)| p).ok_or_else(|| {
        // Sorted: the manifest's order depends on serde_json's features in the build.
        let mut names: Vec<&str> = main.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        InstallError::Layout(format!(
            "{} has no program {} to run (its bin names: {}); name one with `npx -p {} PROGRAM`",
            spec.main.spec,
            spec.program
                .as_deref()
                .map_or("of its own name".into(), |p| format!("{p:?}")),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
            spec.main.spec
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npx(args: &[&str]) -> InstallSpec {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        super::super::spec::parse("npx", &args).unwrap().unwrap()
    }

    #[test]
    fn the_npm_program_is_the_named_bin_or_the_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("node_modules/@s/tool");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(
            pkg.join("package.json"),
            r#"{"bin": {"tool": "dist/a.js", "other": "dist/b.js"}}"#,
        )
        .unwrap();
        let s = npx(&["@s/tool@1.0.0"]);
        assert_eq!(npm_bin(&s, dir.path()).unwrap(), pkg.join("dist/a.js"));
        let s = npx(&["-p", "@s/tool@1.0.0", "other"]);
        assert_eq!(npm_bin(&s, dir.path()).unwrap(), pkg.join("dist/b.js"));
        let e = npm_bin(&npx(&["-p", "@s/tool", "nope"]), dir.path()).unwrap_err();
        assert!(e.to_string().contains("its bin names: other, tool"), "{e}");
    }
}

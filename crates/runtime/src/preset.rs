//! Runtime presets: what an interpreter needs to read, so common servers run sandboxed
//! without hand-written paths. The script or package the command runs is readable without
//! being listed; nothing else of its folder is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_config::Preset;

use crate::RuntimeError;

/// How long the Python interpreter may take to say where it lives.
const PYTHON_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The preset a command implies: `node`, `npx` → node, `python*`/`uv`/`uvx` → python, else binary.
pub(crate) fn detect(command: &str) -> Preset {
    let name = Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(command);
    if name == "node" || name == "nodejs" || name == "npx" {
        Preset::Node
    } else if name.starts_with("python") || name == "uv" || name == "uvx" {
        Preset::Python
    } else {
        Preset::Binary
    }
}

/// What a preset resolves to for one command line.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Resolved {
    /// The program to execute inside (absolute; an interpreter found behind a shim).
    pub program: PathBuf,
    /// Paths to show read-only, beyond the system's own (`/usr`, parts of `/etc`).
    pub read: Vec<PathBuf>,
    /// The arguments, the script's path made real: the sandbox shows it where it really is,
    /// not behind the links that led to it.
    pub args: Vec<String>,
}

/// Resolves `program` (absolute, from `PATH`) and its arguments under `preset`.
pub(crate) async fn resolve(
    preset: Preset,
    program: &Path,
    args: &[String],
) -> Result<Resolved, RuntimeError> {
    let mut args = args.to_vec();
    let script = script_arg(&args).map(|(i, real)| {
        args[i] = real.display().to_string();
        real
    });
    let mut r = Resolved {
        program: program.to_path_buf(),
        read: Vec::new(),
        args,
    };
    match preset {
        Preset::Binary => {
            r.read.push(program.to_path_buf());
            // `sh script.sh`, `bash run.sh`: the script is what the command runs.
            r.read.extend(script);
        }
        Preset::Node => {
            let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
            r.read.push(installation(&real));
            r.program = real;
            if let Some(script) = script {
                let package = node_package(&script);
                // A package's node_modules may be a link to elsewhere (a shared install, pnpm).
                if let Ok(real) = std::fs::canonicalize(package.join("node_modules"))
                    && !real.starts_with(&package)
                {
                    r.read.push(real);
                }
                r.read.push(package);
            }
        }
        Preset::Python => {
            let (exe, prefixes) = python_layout(program).await?;
            r.program = exe;
            r.read.extend(prefixes);
            r.read.extend(script);
        }
    }
    Ok(r)
}

/// `…/bin/node` → `…` (the installation with its `lib/`); a lone binary → itself.
fn installation(binary: &Path) -> PathBuf {
    match binary.parent() {
        Some(bin) if bin.file_name().is_some_and(|n| n == "bin") => bin
            .parent()
            .filter(|p| p.parent().is_some())
            .unwrap_or(binary)
            .to_path_buf(),
        _ => binary.to_path_buf(),
    }
}

/// The first argument that names an existing file (the script the interpreter runs): its
/// index and real path.
fn script_arg(args: &[String]) -> Option<(usize, PathBuf)> {
    let (i, p) = args
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.starts_with('-'))
        .find(|(_, a)| Path::new(a).is_file())?;
    Some((i, std::fs::canonicalize(p).ok()?))
}

/// What a Node script needs: the outermost `node_modules` it sits in (its package and the
/// packages it imports), else the nearest folder with a `package.json`, else the file.
fn node_package(script: &Path) -> PathBuf {
    if let Some(top) = script
        .ancestors()
        .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
        .last()
    {
        return top.to_path_buf();
    }
    script
        .ancestors()
        .skip(1)
        .find(|a| a.parent().is_some() && a.join("package.json").is_file())
        .map_or_else(|| script.to_path_buf(), Path::to_path_buf)
}

/// Asks the interpreter where it lives: the real executable behind a shim (pyenv, asdf) and
/// its prefixes (standard library and site-packages; a virtual environment's base too).
async fn python_layout(program: &Path) -> Result<(PathBuf, Vec<PathBuf>), RuntimeError> {
    let probe = tokio::process::Command::new(program)
        .args([
            "-I",
            "-c",
            "import sys, json; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix]))",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PYTHON_PROBE_TIMEOUT, probe)
        .await
        .map_err(|_| {
            RuntimeError::Profile(format!(
                "{} did not say where its standard library is within {PYTHON_PROBE_TIMEOUT:?}",
                program.display()
            ))
        })?
        .map_err(|e| RuntimeError::Profile(format!("cannot run {}: {e}", program.display())))?;
    let parsed: Option<Vec<PathBuf>> = serde_json::from_slice(&out.stdout).ok();
    match parsed.as_deref() {
        Some([exe, prefix, base]) if out.status.success() && exe.is_absolute() => {
            let mut prefixes = vec![prefix.clone()];
            if base != prefix {
                prefixes.push(base.clone());
            }
            Ok((exe.clone(), prefixes))
        }
        _ => Err(RuntimeError::Profile(format!(
            "{} is not a Python interpreter the python preset understands (it did not print its prefix; status {}); name the paths with preset: binary and filesystem.read",
            program.display(),
            out.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_command_name() {
        assert_eq!(detect("node"), Preset::Node);
        assert_eq!(detect("/opt/node-22/bin/node"), Preset::Node);
        assert_eq!(detect("python3.11"), Preset::Python);
        assert_eq!(detect("uvx"), Preset::Python);
        assert_eq!(detect("/usr/local/bin/github-mcp-server"), Preset::Binary);
        assert_eq!(detect("nodemon"), Preset::Binary);
    }

    #[test]
    fn a_node_script_brings_its_outermost_node_modules_or_its_package() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let nested = root.join("app/node_modules/@scope/pkg/node_modules/dep/dist");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(
            node_package(&nested.join("index.js")),
            root.join("app/node_modules")
        );
        std::fs::create_dir_all(root.join("proj/src")).unwrap();
        std::fs::write(root.join("proj/package.json"), "{}").unwrap();
        assert_eq!(
            node_package(&root.join("proj/src/main.js")),
            root.join("proj")
        );
        assert_eq!(node_package(&root.join("lone.js")), root.join("lone.js"));
    }

    #[test]
    fn an_installation_is_the_folder_above_bin() {
        assert_eq!(
            installation(Path::new("/opt/node-22/bin/node")),
            PathBuf::from("/opt/node-22")
        );
        assert_eq!(
            installation(Path::new("/srv/tools/node")),
            PathBuf::from("/srv/tools/node")
        );
        // Never the root folder.
        assert_eq!(
            installation(Path::new("/bin/node")),
            PathBuf::from("/bin/node")
        );
    }

    #[tokio::test]
    async fn a_script_behind_a_link_is_run_and_shown_at_its_real_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::fs::write(root.join("real/run.sh"), "exit 0\n").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        let written = root.join("link/run.sh").display().to_string();
        let r = resolve(
            Preset::Binary,
            Path::new("/bin/sh"),
            &["-e".into(), written],
        )
        .await
        .unwrap();
        let real = root.join("real/run.sh");
        assert_eq!(r.args, ["-e".to_string(), real.display().to_string()]);
        assert!(r.read.contains(&real), "{r:?}");
    }

    #[tokio::test]
    async fn the_python_preset_finds_the_interpreter_behind_a_shim() {
        let Some(python) = crate::probe::find_on_path("python3") else {
            panic!("python3 is needed on PATH for this test");
        };
        let r = resolve(Preset::Python, &python, &[]).await.unwrap();
        assert!(r.program.is_absolute() && r.program.is_file(), "{r:?}");
        assert!(
            r.read.iter().any(|p| r.program.starts_with(p)),
            "the interpreter's prefix holds it: {r:?}"
        );
        let e = resolve(Preset::Python, Path::new("/bin/true"), &[])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("preset: binary"), "{e}");
    }
}

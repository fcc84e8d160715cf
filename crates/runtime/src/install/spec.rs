//! Reading an `npx` or `uvx` command line as "install these packages, then run this program
//! with these arguments". Only the shapes whose meaning is certain are accepted; anything
//! else is refused with the option named, so a config never runs something other than what
//! its author meant.

use std::path::Path;

use super::InstallError;

/// The package ecosystem an install uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ecosystem {
    /// npm packages, run with Node (`npx`).
    Npm,
    /// Python packages from PyPI, run from a virtual environment (`uvx`, `uv tool run`).
    Python,
}

impl Ecosystem {
    /// The directory prefix and the word used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Npm => "npm",
            Ecosystem::Python => "pypi",
        }
    }
}

/// One package as written: its name and, when the spec pins one exactly, its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The name (`@scope/name` for npm; with extras `name[extra]` stripped for Python).
    pub name: String,
    /// The spec as the installer gets it (`name@1.2.3`, `name[cli]==1.2`, `name`).
    pub spec: String,
    /// The exact version the spec pins, `None` when it must be resolved (no version, a
    /// range, a tag such as `latest`).
    pub pinned: Option<String>,
}

/// An `npx`/`uvx` command line read as an install followed by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSpec {
    /// Which installer.
    pub ecosystem: Ecosystem,
    /// The package whose program runs.
    pub main: Package,
    /// Further packages installed with it (`npx -p a -p b`, `uvx --with x`).
    pub extra: Vec<Package>,
    /// The program to run from the installed packages; `None`: the main package's own
    /// (its only `bin`, or the one named like it).
    pub program: Option<String>,
    /// The server's own arguments.
    pub args: Vec<String>,
    /// The lockfile to install from (`isolation.lockfile`), set by the caller.
    pub lockfile: Option<std::path::PathBuf>,
}

/// Reads `command args` when the command is `npx`, `uvx` or `uv tool run`/`uv tool x`;
/// `Ok(None)` for any other command.
pub fn parse(command: &str, args: &[String]) -> Result<Option<InstallSpec>, InstallError> {
    let name = Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(command);
    match name {
        "npx" => parse_npx(args).map(Some),
        "uvx" => parse_uvx(args).map(Some),
        "uv" if matches!(args.first().map(String::as_str), Some("tool"))
            && matches!(args.get(1).map(String::as_str), Some("run" | "x")) =>
        {
            parse_uvx(&args[2..]).map(Some)
        }
        _ => Ok(None),
    }
}

fn unsupported(tool: &str, what: impl std::fmt::Display) -> InstallError {
    InstallError::CommandLine(format!(
        "{tool}: {what}; write the command line as `{tool} [-y] package@version args…`, or install the package yourself and name its program as the command"
    ))
}

fn parse_npx(args: &[String]) -> Result<InstallSpec, InstallError> {
    let mut packages = Vec::new();
    let mut it = args.iter();
    let mut rest: Vec<String> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            // Consent to download: the gateway installs either way.
            "-y" | "--yes" | "-q" | "--quiet" | "--no-install" => {}
            "-p" | "--package" => {
                let v = it
                    .next()
                    .ok_or_else(|| unsupported("npx", format!("{a} needs a package")))?;
                packages.push(v.clone());
            }
            "--" => {
                rest.extend(it.by_ref().cloned());
                break;
            }
            _ if a.starts_with("--package=") => packages.push(a["--package=".len()..].into()),
            "-c" | "--call" => {
                return Err(unsupported(
                    "npx",
                    format!("{a} runs a shell command, which the gateway does not install for"),
                ));
            }
            _ if a.starts_with('-') => {
                return Err(unsupported(
                    "npx",
                    format!("the option {a} is not understood"),
                ));
            }
            _ => {
                rest.push(a.clone());
                rest.extend(it.by_ref().cloned());
                break;
            }
        }
    }
    let mut rest = rest.into_iter();
    let first = rest
        .next()
        .ok_or_else(|| unsupported("npx", "no package to run"))?;
    let (main, extra, program) = if packages.is_empty() {
        (npm_package(&first)?, Vec::new(), None)
    } else {
        // `npx -p pkg prog`: the first word is the program one of the packages provides.
        let mut all = packages
            .iter()
            .map(|p| npm_package(p))
            .collect::<Result<Vec<_>, _>>()?;
        let main = all.remove(0);
        (main, all, Some(first))
    };
    Ok(InstallSpec {
        ecosystem: Ecosystem::Npm,
        main,
        extra,
        program,
        args: rest.collect(),
        lockfile: None,
    })
}

/// `@scope/name@1.2.3`, `name@^1`, `name`: name, spec and the version when exact.
fn npm_package(spec: &str) -> Result<Package, InstallError> {
    let (name, version) = match spec.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('@') {
            Some((n, v)) => (format!("@{n}"), Some(v)),
            None => (spec.to_string(), None),
        },
        None => match spec.split_once('@') {
            Some((n, v)) => (n.to_string(), Some(v)),
            None => (spec.to_string(), None),
        },
    };
    let valid_name = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~@/".contains(&b) || b > 127
        })
        && name.matches('/').count() == usize::from(name.starts_with('@'))
        && !name.starts_with('.');
    if !valid_name {
        return Err(unsupported(
            "npx",
            format!(
                "{spec:?} is not a registry package name (paths, URLs and git specs are not installed by the gateway)"
            ),
        ));
    }
    Ok(Package {
        name,
        spec: spec.to_string(),
        pinned: version.filter(|v| is_exact_semver(v)).map(str::to_string),
    })
}

/// `1.2.3`, `1.2.3-beta.1`, `2026.8.31+build`: one version, nothing to resolve.
fn is_exact_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b))
}

fn parse_uvx(args: &[String]) -> Result<InstallSpec, InstallError> {
    let mut from = None;
    let mut with = Vec::new();
    let mut it = args.iter();
    let mut rest: Vec<String> = Vec::new();
    let value = |it: &mut std::slice::Iter<'_, String>, a: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| unsupported("uvx", format!("{a} needs a value")))
    };
    while let Some(a) = it.next() {
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        match opt {
            "-q" | "--quiet" | "--isolated" | "--no-cache" | "--offline" | "--refresh" => {}
            "--from" => from = Some(inline.map_or_else(|| value(&mut it, a), Ok)?),
            "--with" => with.push(inline.map_or_else(|| value(&mut it, a), Ok)?),
            "--" => {
                rest.extend(it.by_ref().cloned());
                break;
            }
            _ if a.starts_with('-') => {
                return Err(unsupported(
                    "uvx",
                    format!(
                        "the option {a} is not understood (the gateway installs with the python3 on its PATH)"
                    ),
                ));
            }
            _ => {
                rest.push(a.clone());
                rest.extend(it.by_ref().cloned());
                break;
            }
        }
    }
    let mut rest = rest.into_iter();
    let first = rest
        .next()
        .ok_or_else(|| unsupported("uvx", "no package to run"))?;
    let (main, program) = match from {
        // `uvx --from pkg==1 prog`: the program is a console script of `pkg`.
        Some(spec) => (python_package(&spec)?, first),
        None => {
            let main = python_package(&first)?;
            let program = main.name.clone();
            (main, program)
        }
    };
    Ok(InstallSpec {
        ecosystem: Ecosystem::Python,
        main,
        extra: with
            .iter()
            .map(|w| python_package(w))
            .collect::<Result<_, _>>()?,
        program: Some(program),
        args: rest.collect(),
        lockfile: None,
    })
}

/// `name`, `name==1.2`, `name@1.2` (uvx's pin), `name[extra]>=1`: name, pip spec, exact pin.
fn python_package(spec: &str) -> Result<Package, InstallError> {
    let spec = match spec.split_once('@') {
        // `name@1.2.3` is uvx's way of writing `name==1.2.3`; `name @ https://…` is a URL.
        Some((n, v)) if !v.trim_start().is_empty() && !v.contains(':') && !n.ends_with(' ') => {
            format!("{n}=={v}")
        }
        _ => spec.to_string(),
    };
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(spec.len());
    let name = &spec[..end];
    let tail = spec[end..].trim();
    let tail_without_extras = match tail.strip_prefix('[') {
        Some(t) => t.split_once(']').map(|(_, r)| r.trim()).unwrap_or("?"),
        None => tail,
    };
    let ok_tail = tail_without_extras.is_empty()
        || ["==", ">=", "<=", "~=", "!=", ">", "<"]
            .iter()
            .any(|op| tail_without_extras.starts_with(op));
    if name.is_empty() || !ok_tail || tail.contains(['@', ';', ' ']) {
        return Err(unsupported(
            "uvx",
            format!(
                "{spec:?} is not a PyPI package requirement (paths, URLs and git specs are not installed by the gateway)"
            ),
        ));
    }
    let pinned = tail_without_extras
        .strip_prefix("==")
        .filter(|v| !v.is_empty() && !v.contains([',', '*', '<', '>', '!', '=', '~']))
        .map(str::to_string);
    Ok(Package {
        name: name.to_ascii_lowercase().replace(['_', '.'], "-"),
        spec,
        pinned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(command: &str, args: &[&str]) -> Result<Option<InstallSpec>, InstallError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(command, &args)
    }

    fn ok(command: &str, args: &[&str]) -> InstallSpec {
        p(command, args).unwrap().expect("an install")
    }

    fn err(command: &str, args: &[&str]) -> String {
        p(command, args).unwrap_err().to_string()
    }

    #[test]
    fn other_commands_are_not_installs() {
        assert_eq!(p("node", &["server.js"]).unwrap(), None);
        assert_eq!(p("uv", &["run", "server.py"]).unwrap(), None);
        assert_eq!(p("/usr/bin/python3", &["-m", "x"]).unwrap(), None);
    }

    #[test]
    fn npx_with_a_scoped_pinned_package_and_server_args() {
        let s = ok(
            "npx",
            &[
                "-y",
                "@modelcontextprotocol/server-filesystem@2026.8.31",
                "/srv",
                "-x",
            ],
        );
        assert_eq!(s.ecosystem, Ecosystem::Npm);
        assert_eq!(s.main.name, "@modelcontextprotocol/server-filesystem");
        assert_eq!(s.main.pinned.as_deref(), Some("2026.8.31"));
        assert_eq!(s.program, None);
        assert_eq!(
            s.args,
            ["/srv", "-x"],
            "options after the package are the server's"
        );
    }

    #[test]
    fn npx_versions_that_need_resolving_are_not_pinned() {
        for (spec, name) in [
            ("pkg", "pkg"),
            ("pkg@latest", "pkg"),
            ("pkg@^1.2.0", "pkg"),
            ("@s/pkg", "@s/pkg"),
            ("@s/pkg@1", "@s/pkg"),
        ] {
            let s = ok("/usr/local/bin/npx", &["--yes", spec]);
            assert_eq!(
                (s.main.name.as_str(), s.main.pinned),
                (name, None),
                "{spec}"
            );
            assert_eq!(s.main.spec, spec);
        }
        let s = ok("npx", &["pkg@1.0.0-rc.1"]);
        assert_eq!(s.main.pinned.as_deref(), Some("1.0.0-rc.1"));
    }

    #[test]
    fn npx_package_options_name_the_packages_and_the_first_word_the_program() {
        let s = ok(
            "npx",
            &["-y", "-p", "a@1.0.0", "--package=@b/c@2.0.0", "prog", "arg"],
        );
        assert_eq!(s.main.name, "a");
        assert_eq!(s.extra[0].name, "@b/c");
        assert_eq!(s.program.as_deref(), Some("prog"));
        assert_eq!(s.args, ["arg"]);
        let s = ok("npx", &["--package", "a", "--", "prog", "--flag"]);
        assert_eq!(
            (s.program.as_deref(), s.args),
            (Some("prog"), vec!["--flag".to_string()])
        );
    }

    #[test]
    fn npx_shapes_the_gateway_cannot_install_are_refused_by_name() {
        assert!(err("npx", &["-y"]).contains("no package to run"));
        assert!(err("npx", &["-c", "echo hi"]).contains("shell command"));
        assert!(err("npx", &["--registry", "x", "pkg"]).contains("--registry"));
        assert!(err("npx", &["./local-dir"]).contains("not a registry package name"));
        assert!(err("npx", &["github:user/repo"]).contains("not a registry package name"));
        assert!(err("npx", &["Pkg@1.0.0"]).contains("not a registry package name"));
        assert!(err("npx", &["-p"]).contains("-p needs a package"));
    }

    #[test]
    fn uvx_package_with_each_way_of_pinning() {
        let s = ok("uvx", &["mcp-server-time", "--local-timezone", "UTC"]);
        assert_eq!(s.ecosystem, Ecosystem::Python);
        assert_eq!(
            (s.main.name.as_str(), s.main.pinned),
            ("mcp-server-time", None)
        );
        assert_eq!(s.program.as_deref(), Some("mcp-server-time"));
        assert_eq!(s.args, ["--local-timezone", "UTC"]);
        let s = ok("uvx", &["mcp-server-time@2026.10.19"]);
        assert_eq!(s.main.spec, "mcp-server-time==2026.10.19");
        assert_eq!(s.main.pinned.as_deref(), Some("2026.10.19"));
        let s = ok("uvx", &["mcp_server.Time==1.0"]);
        assert_eq!(s.main.name, "mcp-server-time", "names are normalised");
        assert_eq!(s.program.as_deref(), Some("mcp-server-time"));
        let s = ok("uvx", &["pkg>=1,<2"]);
        assert_eq!(s.main.pinned, None);
        let s = ok("uvx", &["pkg[cli]==2.0"]);
        assert_eq!(
            (s.main.name.as_str(), s.main.pinned.as_deref()),
            ("pkg", Some("2.0"))
        );
    }

    #[test]
    fn uvx_from_and_with_and_uv_tool_run() {
        let s = ok(
            "uvx",
            &[
                "--from",
                "mcp-server-git==1.0",
                "--with=tzdata",
                "mcp-server-git",
                "--repo",
                "/r",
            ],
        );
        assert_eq!(s.main.spec, "mcp-server-git==1.0");
        assert_eq!(s.extra[0].name, "tzdata");
        assert_eq!(s.program.as_deref(), Some("mcp-server-git"));
        assert_eq!(s.args, ["--repo", "/r"]);
        let s = ok("uv", &["tool", "run", "--from=pkg==3", "prog"]);
        assert_eq!(
            (s.main.name.as_str(), s.program.as_deref()),
            ("pkg", Some("prog"))
        );
    }

    #[test]
    fn uvx_shapes_the_gateway_cannot_install_are_refused_by_name() {
        assert!(err("uvx", &["--python", "3.12", "pkg"]).contains("--python"));
        assert!(err("uvx", &["--from"]).contains("--from needs a value"));
        assert!(err("uvx", &["--from", "git+https://x/y", "p"]).contains("not a PyPI package"));
        assert!(err("uvx", &["pkg @ https://x/y.whl"]).contains("not a PyPI package"));
        assert!(err("uvx", &[]).contains("no package to run"));
    }
}

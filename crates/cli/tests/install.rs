//! `npx`/`uvx` servers with the real binary, real npm and pip against the real registries, and
//! the real sandbox: the gateway installs the package once into its data directory, the server
//! runs from there without network, and a second gateway on the same data directory reuses the
//! install without asking the registry.
//!
//! Downloads are cached in the tools folder (`$GATEHOUSE_TOOLS`, default
//! `~/.cache/gatehouse-tools`: `npm-cache/`, `pip-cache/`), so a fresh clone's run is quick.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const FILESYSTEM: &str = "@modelcontextprotocol/server-filesystem@2026.8.31";
const FILESYSTEM_DIR: &str = "npm-modelcontextprotocol+server-filesystem-2026.8.31";
const TIME: &str = "mcp-server-time==2026.10.19";
const TIME_DIR: &str = "pypi-mcp-server-time-2026.10.19";
/// No registry answers here: any registry request of npm or pip fails at once.
const DEAD_REGISTRY: &str = "http://127.0.0.1:9/";

fn tools_cache(sub: &str) -> String {
    let root = std::env::var_os("GATEHOUSE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/gatehouse-tools")
        });
    let dir = root.join(sub);
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

/// Whether `program` is on PATH; when not, says loudly that the test is skipped.
fn have(program: &str, test: &str) -> bool {
    if gatehouse_runtime::probe::find_on_path(program).is_some() {
        return true;
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED {test}: {program} is not on PATH; install it (scripts/test does) !!!!!!!!\n"
    );
    false
}

/// The text of a tool call's first content item, or the whole answer when there is none.
async fn call(gw: &Gatehouse, id: i64, name: &str, arguments: Value) -> String {
    let (status, v) = modern(
        &client(),
        &gw.url("/mcp"),
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
    .await;
    assert_eq!(status, 200, "{name}: {v}");
    v["result"]["content"][0]["text"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_string)
}

async fn tool_names(gw: &Gatehouse) -> Vec<String> {
    let (status, v) = modern(&client(), &gw.url("/mcp"), 1, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{v}");
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {v}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

/// Waits until the gateway logged `needle` (an install in the background at its start).
fn wait_logged(gw: &Gatehouse, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !gw.logged(needle) {
        assert!(
            Instant::now() < deadline,
            "not logged within {within:?}: {needle}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Starts a gateway on `data_dir` with `config`, the registry caches in the tools folder and
/// `env` on top.
fn start(config: &Path, data_dir: tempfile::TempDir, env: &[(&str, &str)]) -> Gatehouse {
    let npm_cache = tools_cache("npm-cache");
    let pip_cache = tools_cache("pip-cache");
    let mut all = vec![
        ("npm_config_cache", npm_cache.as_str()),
        ("PIP_CACHE_DIR", pip_cache.as_str()),
    ];
    all.extend_from_slice(env);
    Gatehouse::start_full(&["--config", config.to_str().unwrap()], &all, data_dir)
}

#[tokio::test]
async fn an_npx_server_is_installed_once_and_runs_sandboxed_from_the_install() {
    if !have("npm", "an_npx_server_is_installed_once…") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("files")).unwrap();
    std::fs::write(root.join("files/hello.txt"), "hello from the grant").unwrap();
    let files = root.join("files").display().to_string();
    let config = write_config(
        &root,
        &format!(
            "servers:
  - name: files
    command: npx
    args: [\"-y\", \"{FILESYSTEM}\", \"{files}\"]
    timeout: 300s
    isolation:
      filesystem: {{ read: [\"{files}\"] }}
virtual_servers:
  - name: v
    path: /mcp
    include: [{{ server: files }}]
"
        ),
    );

    let (code, out, err) = gatehouse(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("note: server \"files\" runs npx: before its first start the gateway installs {FILESYSTEM} from the npm registry (install scripts not run) into <data-dir>/packages/files/{FILESYSTEM_DIR}/ and runs it from there, read-only and without network")),
        "{out}"
    );

    let data_dir = tempfile::tempdir().unwrap();
    let installed = data_dir.path().join("packages/files").join(FILESYSTEM_DIR);
    let first = Instant::now();
    let mut gw = start(&config, data_dir, &[]);
    let tools = tool_names(&gw).await;
    let first_list = first.elapsed();
    assert!(tools.iter().any(|t| t == "read_text_file"), "{tools:?}");
    let text = call(
        &gw,
        2,
        "read_text_file",
        json!({"path": root.join("files/hello.txt")}),
    )
    .await;
    assert_eq!(text, "hello from the grant");
    // The install started with the gateway and the first request's start waited for it:
    // one install, not two.
    assert_eq!(
        gw.log
            .lock()
            .unwrap()
            .matches("installing package before the server's first start")
            .count(),
        1
    );
    assert!(gw.logged("installed package"), "the finish is logged");
    assert!(
        gw.logged("runtime=\"sandbox\"") && gw.logged(" net "),
        "it runs in the sandbox with a network namespace of its own"
    );
    let marker = installed.join(gatehouse_runtime::install::MARKER);
    let recorded: Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert_eq!(recorded["version"], "2026.8.31", "{recorded}");
    // Outside its grant and its install, the server sees nothing of the host.
    let denied = call(&gw, 3, "read_text_file", json!({"path": config})).await;
    assert!(!denied.contains("servers:"), "{denied}");
    let written = modified(&marker);

    // The same data directory on the next start: no registry is reachable, and none is asked.
    let data_dir = std::mem::replace(&mut gw.data_dir, tempfile::tempdir().unwrap());
    drop(gw);
    let second = Instant::now();
    let gw = start(&config, data_dir, &[("npm_config_registry", DEAD_REGISTRY)]);
    let tools = tool_names(&gw).await;
    let second_list = second.elapsed();
    assert!(tools.iter().any(|t| t == "read_text_file"), "{tools:?}");
    assert!(!gw.logged("installing package"), "the install is reused");
    assert_eq!(modified(&marker), written, "the marker is untouched");
    eprintln!(
        "first tools/list (install + start): {first_list:?}; after a restart: {second_list:?}"
    );
}

#[tokio::test]
async fn an_npx_server_is_installed_from_its_lockfile() {
    if !have("npm", "an_npx_server_is_installed_from_its_lockfile") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    // The operator's lockfile, made as docs/isolation.md says.
    std::fs::create_dir(root.join("lock")).unwrap();
    let made = std::process::Command::new("npm")
        .args([
            "install",
            "--package-lock-only",
            "--no-audit",
            "--no-fund",
            FILESYSTEM,
        ])
        .current_dir(root.join("lock"))
        .env("npm_config_cache", tools_cache("npm-cache"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let config = write_config(
        &root,
        &format!(
            "servers:
  - name: files
    command: npx
    args: [\"-y\", \"{FILESYSTEM}\", \"{dir}\"]
    timeout: 300s
    isolation:
      filesystem: {{ read: [\"{dir}\"] }}
      lockfile: lock/package-lock.json
virtual_servers:
  - name: v
    path: /mcp
    include: [{{ server: files }}]
",
            dir = root.join("lock").display()
        ),
    );
    let (code, out, err) = gatehouse(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("its dependencies come from the lockfile"),
        "{out}"
    );
    let gw = start(&config, tempfile::tempdir().unwrap(), &[]);
    wait_logged(&gw, "installed package", Duration::from_secs(300));
    let tools = tool_names(&gw).await;
    assert!(tools.iter().any(|t| t == "read_text_file"), "{tools:?}");
    let installed: Vec<String> = std::fs::read_dir(gw.data_dir.path().join("packages/files"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(installed.len(), 1, "{installed:?}");
    assert!(
        installed[0].starts_with("npm-modelcontextprotocol+server-filesystem-lock-"),
        "keyed by the lockfile: {installed:?}"
    );

    // An install cut short (no marker, a stray file) is removed and done again at the next start.
    let folder = gw
        .data_dir
        .path()
        .join("packages/files")
        .join(&installed[0]);
    std::fs::remove_file(folder.join(gatehouse_runtime::install::MARKER)).unwrap();
    std::fs::write(folder.join("node_modules/stray"), "left by a crash").unwrap();
    let mut gw = gw;
    let data_dir = std::mem::replace(&mut gw.data_dir, tempfile::tempdir().unwrap());
    drop(gw);
    let gw = start(&config, data_dir, &[]);
    wait_logged(&gw, "installed package", Duration::from_secs(300));
    assert!(gw.logged("removing an unfinished install"));
    assert!(!folder.join("node_modules/stray").exists());
    assert!(folder.join(gatehouse_runtime::install::MARKER).is_file());
    let tools = tool_names(&gw).await;
    assert!(tools.iter().any(|t| t == "read_text_file"), "{tools:?}");
}

#[test]
fn validate_says_which_command_lines_it_cannot_install_for() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "servers:
  - name: shell
    command: npx
    args: [\"-c\", \"echo hi\"]
  - name: latest
    command: uvx
    args: [mcp-server-time]
  - name: plain
    command: npx
    args: [\"-y\", \"pkg\"]
    isolation: { runtime: process }
virtual_servers:
  - name: v
    path: /mcp
    include: [{ server: shell }, { server: latest }, { server: plain }]
",
    );
    let (code, out, err) = gatehouse(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("note: server \"shell\" runs npx, which the gateway installs for before the start, but cannot read this command line, so the server will not start in the sandbox: npx: -c runs a shell command"),
        "{out}"
    );
    assert!(
        out.contains("<data-dir>/packages/latest/pypi-mcp-server-time-VERSION/")
            && out.contains("mcp-server-time names no exact version, so the version is resolved at the first install and kept until that folder is deleted"),
        "{out}"
    );
    assert!(
        out.contains("note: server \"plain\" runs npx with runtime process, so it runs as written: npx downloads its package when it starts"),
        "{out}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_stops_the_start_with_the_cause_and_nothing_half_installed() {
    if !have("npm", "an_unreachable_registry_stops_the_start…") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "servers:
  - name: files
    command: npx
    args: [\"-y\", \"@modelcontextprotocol/server-everything@2099.1.1\"]
virtual_servers:
  - name: v
    path: /mcp
    include: [{ server: files }]
",
    );
    let data_dir = tempfile::tempdir().unwrap();
    let packages = data_dir.path().join("packages/files");
    let gw = start(
        &config,
        data_dir,
        &[
            ("npm_config_registry", DEAD_REGISTRY),
            ("npm_config_fetch_retries", "0"),
        ],
    );
    let (_, v) = modern(&client(), &gw.url("/mcp"), 1, "tools/list", json!({})).await;
    eprintln!("the client got: {v}");
    wait_logged(
        &gw,
        "npm could not reach the registry",
        Duration::from_secs(60),
    );
    assert!(gw.logged(DEAD_REGISTRY), "the error names the registry");
    let left: Vec<_> = std::fs::read_dir(&packages)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n.to_string_lossy().ends_with(".lock")),
        "only the lock file stays: {left:?}"
    );
}

#[tokio::test]
async fn a_uvx_server_is_installed_into_a_venv_and_runs_sandboxed() {
    if !have("python3", "a_uvx_server_is_installed_into_a_venv…") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "servers:
  - name: time
    command: uvx
    args: [\"{TIME}\", \"--local-timezone\", \"UTC\"]
    timeout: 300s
virtual_servers:
  - name: v
    path: /mcp
    include: [{{ server: time }}]
"
        ),
    );
    let data_dir = tempfile::tempdir().unwrap();
    let installed = data_dir.path().join("packages/time").join(TIME_DIR);
    let mut gw = start(&config, data_dir, &[]);
    // The gateway installs at its start, before any request; a venv of the MCP SDK takes a
    // while the first time.
    wait_logged(&gw, "installed package", Duration::from_secs(300));
    let tools = tool_names(&gw).await;
    assert!(tools.iter().any(|t| t == "get_current_time"), "{tools:?}");
    let now = call(&gw, 2, "get_current_time", json!({"timezone": "UTC"})).await;
    assert!(now.contains("UTC"), "{now}");
    assert!(installed.join(gatehouse_runtime::install::MARKER).is_file());

    let data_dir = std::mem::replace(&mut gw.data_dir, tempfile::tempdir().unwrap());
    drop(gw);
    let gw = start(&config, data_dir, &[("PIP_INDEX_URL", DEAD_REGISTRY)]);
    let tools = tool_names(&gw).await;
    assert!(tools.iter().any(|t| t == "get_current_time"), "{tools:?}");
    assert!(!gw.logged("installing package"), "the install is reused");

    // The same server from a lockfile (the first install's `pip freeze`): only what it pins.
    let frozen = std::process::Command::new(installed.join("venv/bin/python"))
        .args(["-m", "pip", "freeze"])
        .output()
        .unwrap();
    assert!(frozen.status.success());
    std::fs::write(dir.path().join("requirements.txt"), &frozen.stdout).unwrap();
    let locked = std::fs::read_to_string(&config).unwrap().replace(
        "    timeout: 300s\n",
        "    timeout: 300s\n    isolation: { lockfile: requirements.txt }\n",
    );
    std::fs::write(&config, locked).unwrap();
    let gw = start(&config, tempfile::tempdir().unwrap(), &[]);
    wait_logged(&gw, "installed package", Duration::from_secs(300));
    let tools = tool_names(&gw).await;
    assert!(tools.iter().any(|t| t == "get_current_time"), "{tools:?}");
    assert!(
        gw.logged("pypi-mcp-server-time-lock-"),
        "keyed by the lockfile"
    );
}

//! Stored secrets end to end with the real binary: `gatehouse secret set|list|rm|rotate-key`,
//! `store:` references read by a sandboxed server (the hostile test server reports what it
//! got) and by a server's `credentials`, a running gateway that follows replaced values and a
//! rotated key file — and the value in no command line, log or data-dir file in clear.

mod common;

use std::time::Duration;

use common::hostile::*;
use common::*;
use serde_json::{Value, json};

/// Runs `gatehouse secret ARGS` with `stdin`: exit code, stdout, stderr.
fn secret_cli(args: &[&str], stdin: &str) -> (i32, String, String) {
    secret_cli_with(args, stdin, &[])
}

/// [`secret_cli`] with extra environment variables and no input.
fn secret_cli_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    secret_cli_with(args, "", env)
}

fn secret_cli_with(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .arg("secret")
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_stored_secret_reaches_the_sandbox_and_nothing_else() {
    const VALUE: &str = "stored-s3cret-4711";
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_string();
    let (code, out, err) = secret_cli(
        &["set", "gh-token", "--data-dir", &d],
        &format!("{VALUE}\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(VALUE) && !err.contains(VALUE), "{out}{err}");
    let (code, out, _) = secret_cli(&["list", "--data-dir", &d], "");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("gh-token\t") && !out.contains(VALUE),
        "{out}"
    );
    let (code, _, err) = secret_cli(&["set", "bad name", "--data-dir", &d], "x");
    assert_eq!(code, 2, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "servers:\n  - name: hostile\n    command: python3\n    args: [{}]\n    isolation:\n      secrets: {{ STORED: \"store:gh-token\" }}\n      secret_files: {{ /run/secrets/gh: \"store:gh-token\" }}\n  - name: unset\n    command: python3\n    args: [{}]\n    isolation:\n      secrets: {{ X: \"store:never-set\" }}\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: hostile }}]\n  - name: other\n    path: /other\n    include: [{{ server: unset }}]\n",
        fixture().display(),
        fixture().display()
    );
    let path = write_config(dir.path(), &config);
    let gw = Gatehouse::start_in(&["--config", path.to_str().unwrap()], data);
    let env: Value = probe_json(&gw, "env").await;
    assert_eq!(env["STORED"], VALUE);
    assert_eq!(
        probe(&gw, "read", "/run/secrets/gh").await,
        format!("ok: {VALUE}")
    );
    for pid in descendants(gw.child.id()) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(VALUE),
            "pid {pid}"
        );
    }
    // A reference to a secret never set: the server does not start, and the log says how to set it.
    let _ = modern(&client(), &gw.url("/other"), 1, "tools/list", json!({})).await;
    assert!(
        eventually(Duration::from_secs(5), || gw
            .logged("gatehouse secret set never-set"))
        .await,
        "the missing secret is named with the command that sets it"
    );
    // Not in the log, not in any file of the data directory (journal, index, store) in clear.
    assert!(!gw.logged(VALUE));
    for f in walk(gw.data_dir.path()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
            "{} holds the secret in clear",
            f.display()
        );
    }
    let d = gw.data_dir.path().to_str().unwrap().to_string();
    // Replaced while the server runs: the server starts again with the new value.
    assert_eq!(
        secret_cli(&["set", "gh-token", "--data-dir", &d], "rotated-value").0,
        0
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let env: Value = probe_json(&gw, "env").await;
        if env["STORED"] == "rotated-value" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server kept the old secret: {}",
            env["STORED"]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(gw.logged("a stored secret changed: the server starts again with it"));
    assert_eq!(secret_cli(&["rm", "gh-token", "--data-dir", &d], "").0, 0);
    assert_eq!(secret_cli(&["rm", "gh-token", "--data-dir", &d], "").0, 1);
}

/// Polls the hostile server's environment until `var` is `want`.
async fn wait_for_env(gw: &Gatehouse, var: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let env: Value = probe_json(gw, "env").await;
        if env[var] == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{var} is still {} (want {want})",
            env[var]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The keys of a key file (its non-comment lines).
fn keys_in(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn rotate_key_reseals_every_secret_and_running_gateways_follow_without_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_string();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("vault.key");
    let kf = key_file.to_str().unwrap().to_string();
    // An explicit key file must exist: the error says how to make one.
    let (code, _, err) = secret_cli(
        &["set", "api", "--data-dir", &d, "--secrets-key-file", &kf],
        "v1",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("does not exist") && err.contains("basenc --base64url"),
        "{err}"
    );
    std::fs::write(&key_file, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n").unwrap();
    let old_keys = keys_in(&key_file);
    let set = |name: &str, value: &str| {
        secret_cli(
            &["set", name, "--data-dir", &d, "--secrets-key-file", &kf],
            value,
        )
        .0
    };
    assert_eq!(set("api", "value-one"), 0);
    assert_eq!(set("other", "value-two"), 0);

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "servers:\n  - name: hostile\n    command: python3\n    args: [{}]\n    isolation:\n      secrets: {{ API: \"store:api\" }}\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: hostile }}]\n",
        fixture().display()
    );
    let path = write_config(dir.path(), &config);
    let gw = Gatehouse::start_full(
        &["--config", path.to_str().unwrap()],
        &[("GATEHOUSE_SECRETS_KEY_FILE", kf.as_str())],
        data,
    );
    wait_for_env(&gw, "API", "value-one").await;
    let pids_before = hostile_pids(gw.child.id());

    let (code, _, err) = secret_cli(
        &["rotate-key", "--data-dir", &d, "--secrets-key-file", &kf],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 stored secrets and tokens re-sealed"),
        "{err}"
    );
    let new_keys = keys_in(&key_file);
    assert_eq!(
        new_keys.len(),
        1,
        "the old key left the file once nothing used it"
    );
    assert_ne!(new_keys, old_keys);
    // A second rotation has nothing left under an older key but re-seals both again.
    let (code, _, err) = secret_cli(
        &["rotate-key", "--data-dir", &d, "--secrets-key-file", &kf],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 stored secrets and tokens re-sealed"),
        "{err}"
    );
    // The old key alone opens nothing any more: the secret reads as missing with it.
    let old_only = keys.path().join("old.key");
    std::fs::write(&old_only, format!("{}\n", old_keys[0])).unwrap();
    let (code, _, err) = secret_cli(
        &[
            "rotate-key",
            "--data-dir",
            &d,
            "--secrets-key-file",
            old_only.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 stored rows open with no key of the key file"),
        "{err}"
    );
    // Nothing restarted: same value, same processes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(probe_json(&gw, "env").await["API"], "value-one");
    assert_eq!(hostile_pids(gw.child.id()), pids_before);
    assert!(!gw.logged("a stored secret changed"));
    // The running gateway, which started with the first key, reads a value sealed with the
    // newest one: it re-read the key file.
    assert_eq!(set("api", "value-three"), 0);
    wait_for_env(&gw, "API", "value-three").await;
    assert!(gw.logged("vault keys re-read"));
    // A key from the environment cannot be rewritten: the error says what to use instead.
    let (code, _, err) = secret_cli_env(
        &["rotate-key", "--data-dir", &d],
        &[("GATEHOUSE_VAULT_KEY", old_keys[0].as_str())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--secrets-key-file"), "{err}");
    for value in ["value-one", "value-two", "value-three"] {
        assert!(!gw.logged(value));
    }
}

#[tokio::test]
async fn a_credential_reads_a_stored_secret_and_follows_a_new_value() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "servers:\n  - name: hostile\n    command: python3\n    args: [{}]\n    credentials:\n      type: static_secret\n      secret: store:api-key\n      env: API_KEY\nvirtual_servers:\n  - name: tools\n    path: /mcp\n    include: [{{ server: hostile }}]\n",
        fixture().display()
    );
    let path = write_config(dir.path(), &config);
    // Not set yet: the gateway does not start, and says how to set it.
    let (code, out, err) = gatehouse(&[
        "up",
        "--config",
        path.to_str().unwrap(),
        "--data-dir",
        &d,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("credentials.secret: the stored secret api-key is not set (set it with `gatehouse secret set api-key`)"), "{err}");
    assert_eq!(
        secret_cli(&["set", "api-key", "--data-dir", &d], "first-key").0,
        0
    );
    let gw = Gatehouse::start_in(&["--config", path.to_str().unwrap()], data);
    wait_for_env(&gw, "API_KEY", "first-key").await;
    assert_eq!(
        secret_cli(&["set", "api-key", "--data-dir", &d], "second-key").0,
        0
    );
    wait_for_env(&gw, "API_KEY", "second-key").await;
    assert!(gw.logged("the servers whose credentials read it were rebuilt with it"));
    assert!(!gw.logged("first-key") && !gw.logged("second-key"));
}

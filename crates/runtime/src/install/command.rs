//! Running an installer command: bounded in time, with the gateway's environment, and a
//! failure turned into its likely cause and the end of its output.

use std::time::Duration;

use super::{Ecosystem, InstallError};

/// How long one installer command may run.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of an installer's output an error carries.
const OUTPUT_TAIL: usize = 1500;

/// Runs an installer command to the end with the gateway's environment (its registry and
/// proxy settings: `npm_config_registry`, `.npmrc`, `PIP_INDEX_URL`, `pip.conf`); its stdout
/// on success.
pub(super) async fn run(
    package: &str,
    step: &str,
    ecosystem: Ecosystem,
    cmd: &mut tokio::process::Command,
) -> Result<String, InstallError> {
    cmd.stdin(std::process::Stdio::null())
        .env("npm_config_update_notifier", "false")
        .kill_on_drop(true);
    let failed = |cause: String, output: String| InstallError::Failed {
        package: package.to_string(),
        step: step.to_string(),
        cause,
        output,
    };
    let out = match tokio::time::timeout(INSTALL_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(failed(
                format!("did not finish within {INSTALL_TIMEOUT:?}"),
                String::new(),
            ));
        }
        Ok(Err(e)) => return Err(failed(format!("could not run: {e}"), String::new())),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(failed(
        format!("exited with {}: {}", out.status, cause(ecosystem, &text)),
        tail(&text),
    ))
}

/// What an installer's output says went wrong, with the fix.
fn cause(ecosystem: Ecosystem, output: &str) -> String {
    let has = |needles: &[&str]| needles.iter().any(|n| output.contains(n));
    match ecosystem {
        Ecosystem::Npm if has(&["ENOTFOUND", "ECONNREFUSED", "ETIMEDOUT", "EAI_AGAIN", "ECONNRESET"]) => format!(
            "npm could not reach the registry {} (check the gateway's network and proxy, or set npm_config_registry / the registry in .npmrc)",
            std::env::var("npm_config_registry").unwrap_or_else(|_| "(npm config get registry)".into())
        ),
        Ecosystem::Npm if has(&["E404", "ETARGET", "No matching version"]) => {
            "the package or version does not exist on the registry (check the name and version in the config)".into()
        }
        Ecosystem::Python if has(&["NewConnectionError", "Failed to establish a new connection", "ConnectTimeout", "ProxyError", "Temporary failure in name resolution"]) => format!(
            "pip could not reach the package index {} (check the gateway's network and proxy, or set PIP_INDEX_URL / pip.conf)",
            std::env::var("PIP_INDEX_URL").unwrap_or_else(|_| "(pip config list)".into())
        ),
        Ecosystem::Python if has(&["No matching distribution", "Could not find a version"]) => {
            "no wheel of that package and version on the index (check the name and version; the gateway installs wheels only, never building from source)".into()
        }
        _ => "see its output below".into(),
    }
}

fn tail(text: &str) -> String {
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(OUTPUT_TAIL - 1)
        .map_or(0, |(i, _)| i);
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_cause_and_the_fix() {
        let c = cause(
            Ecosystem::Npm,
            "npm error code ENOTFOUND\nnpm error network",
        );
        assert!(c.contains("npm could not reach the registry"), "{c}");
        let c = cause(Ecosystem::Npm, "npm error code E404");
        assert!(c.contains("does not exist"), "{c}");
        let c = cause(
            Ecosystem::Python,
            "ERROR: No matching distribution found for x",
        );
        assert!(c.contains("wheels only"), "{c}");
        assert_eq!(tail(&"x".repeat(5000)).len(), OUTPUT_TAIL);
    }
}

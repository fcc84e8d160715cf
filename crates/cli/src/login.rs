//! `gatehouse login SERVER`: authorize Gatehouse at a `user_oauth` server ahead of the first tool
//! call. Asks the gateway (as the user, with their token) for the authorization URL, opens it in
//! a browser, and waits until the gateway has stored the user's grant.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Arguments of `gatehouse login`.
pub struct LoginArgs {
    pub server: String,
    pub url: String,
    pub token: String,
    pub open_browser: bool,
    pub force: bool,
    pub timeout: Duration,
}

async fn status(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    force: bool,
) -> anyhow::Result<Value> {
    let url = if force {
        format!("{endpoint}?force=1")
    } else {
        endpoint.to_string()
    };
    let resp = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {endpoint}"))?;
    let code = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if code == reqwest::StatusCode::UNAUTHORIZED {
        bail!("the gateway refused the token (401): get a fresh one from your identity provider");
    }
    if !code.is_success() {
        let why = body["error"].as_str().unwrap_or("no details");
        bail!("the gateway answered {code}: {why}");
    }
    Ok(body)
}

fn open_in_browser(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

pub async fn run(args: LoginArgs) -> anyhow::Result<()> {
    let endpoint = format!(
        "{}/.gatehouse/authorize/{}",
        args.url.trim_end_matches('/'),
        args.server
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let first = status(&http, &endpoint, &args.token, args.force).await?;
    if first["authorized"] == true && !args.force {
        println!(
            "Already authorized: Gatehouse can call {} for you.",
            args.server
        );
        return Ok(());
    }
    let url = first["url"]
        .as_str()
        .context("the gateway returned no authorization URL")?;
    println!("Open this URL to authorize Gatehouse at {}:", args.server);
    println!("  {url}");
    if args.open_browser && !open_in_browser(url) {
        eprintln!("(could not start a browser; open the URL yourself)");
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("waiting for the authorization to complete…");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + args.timeout;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if status(&http, &endpoint, &args.token, false).await?["authorized"] == true {
            spinner.finish_and_clear();
            println!(
                "Authorized: Gatehouse can now call {} for you.",
                args.server
            );
            return Ok(());
        }
    }
    spinner.finish_and_clear();
    bail!(
        "no authorization within {}s; run `gatehouse login {}` again",
        args.timeout.as_secs(),
        args.server
    )
}

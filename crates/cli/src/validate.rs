//! `gatehouse validate`'s warnings about the URLs of the config file: a URL written there is
//! the operator's choice and is used as written, but a host *name* that resolves into an
//! internal range (private, loopback, link-local …) deserves a second look — a name can be
//! repointed later, which is how server-side request forgery reaches internal services.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatehouse_config::Config;

/// How long the lookups of one `validate` may take in all (a name the resolver cannot reach
/// must not hang the command).
const LOOKUP_BUDGET: Duration = Duration::from_secs(3);

/// The config's URLs whose host is a name: (field path, host).
fn named_hosts(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |field: String, text: &str| {
        if let Some(host) = url::Url::parse(text).ok().and_then(|u| match u.host() {
            Some(url::Host::Domain(d)) => Some(d.to_string()),
            _ => None,
        }) {
            out.push((field, host));
        }
    };
    for (i, s) in config.servers.iter().enumerate() {
        if let Some(u) = &s.url {
            add(format!("servers[{i}].url"), u);
        }
        if let Some(c) = &s.credentials {
            for (name, u) in [
                ("token_url", &c.token_url),
                ("issuer", &c.issuer),
                ("authorization_url", &c.authorization_url),
            ] {
                if let Some(u) = u {
                    add(format!("servers[{i}].credentials.{name}"), u);
                }
            }
        }
    }
    out
}

/// One warning per URL of the config whose host name resolves into an internal range.
pub fn internal_url_warnings(config: &Config) -> Vec<String> {
    let hosts = named_hosts(config);
    let (tx, rx) = mpsc::channel();
    for (i, (_, host)) in hosts.iter().enumerate() {
        let (tx, host) = (tx.clone(), host.clone());
        // One thread per name: the system resolver blocks, and a slow one must not delay the
        // others past the budget.
        std::thread::spawn(move || {
            use std::net::ToSocketAddrs;
            let found: Vec<std::net::IpAddr> = (host.as_str(), 0)
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default();
            let _ = tx.send((i, found));
        });
    }
    drop(tx);
    let deadline = Instant::now() + LOOKUP_BUDGET;
    let mut resolved = vec![Vec::new(); hosts.len()];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((i, found)) => resolved[i] = found,
            Err(_) => break,
        }
    }
    let mut warnings = Vec::new();
    for ((field, host), addrs) in hosts.iter().zip(resolved) {
        if let Some((ip, range)) = addrs
            .iter()
            .find_map(|ip| gatehouse_config::forbidden_range(*ip).map(|r| (ip, r)))
        {
            warnings.push(format!(
                "{field}: host \"{host}\" resolves to {ip}, in the {range} range; a URL in the config file is used as written, so make sure this internal address is intended (a name can be repointed later)"
            ));
        }
    }
    warnings
}

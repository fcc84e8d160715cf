//! The syslog sink against a real rsyslog (Debian's rsyslogd with the gtls driver), fed by a
//! real journal through the SinkRunner: every event arrives once per transport with the
//! right PRI, MSGID, structured data and a parseable MSG; UDP cuts oversized messages; and
//! an rsyslog outage over TCP and TLS loses nothing.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_audit::{AuditEvent, EventKind, Outcome, TargetRecord};
use gatehouse_testkit::rsyslog::{Received, Rsyslog, Transport};
use serde_json::{Value, json};
use support::{Fixture, config, drain};

/// A CA and a server certificate for 127.0.0.1 (PEM files), generated per test.
struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gatehouse test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let put = |name: &str, pem: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Certs {
        ca: put("ca.pem", ca.pem()),
        cert: put("cert.pem", leaf.pem()),
        key: put("key.pem", leaf_key.serialize_pem()),
        _dir: dir,
    }
}

fn receiver() -> Option<(Rsyslog, Certs)> {
    let bin = gatehouse_testkit::tools::rsyslogd()?;
    let c = certs();
    Some((Rsyslog::start(&bin, &c.ca, &c.cert, &c.key), c))
}

fn url(t: Transport, r: &Rsyslog) -> String {
    match t {
        Transport::Udp => format!("udp://{}", r.udp),
        Transport::Tcp => format!("tcp://{}", r.tcp),
        Transport::Tls => format!("tls://{}", r.tls),
    }
}

const HOSTILE: &str = r#"a"b]c\d"#;

/// The events of the delivery test: outcomes that map to different severities, and a tool
/// name that must be escaped in the structured data.
async fn append_mix(b: &Fixture) {
    for (i, outcome) in [
        Outcome::Ok,
        Outcome::Denied,
        Outcome::Error,
        Outcome::Rejected,
        Outcome::Ok,
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = AuditEvent::new(EventKind::Request, outcome);
        e.method = Some("tools/call".into());
        e.target = Some(TargetRecord {
            kind: "tool".into(),
            name: if i == 4 {
                HOSTILE.into()
            } else {
                format!("tool_{i}")
            },
            operation: None,
        });
        b.journal.append(&e).await.unwrap();
    }
    b.journal.flush().await.unwrap();
}

/// The MSG of a received message: after the structured data, without the BOM.
fn msg(r: &Received) -> Value {
    let at = r.raw.find("] \u{feff}").expect("SD, space, BOM before MSG") + 5;
    serde_json::from_str(&r.raw[at..]).unwrap_or_else(|e| panic!("{e}: {}", r.raw))
}

#[tokio::test]
async fn every_event_arrives_once_per_transport_with_pri_msgid_and_sd() {
    let Some((rsyslog, certs)) = receiver() else {
        return;
    };
    let b = Fixture::new().await;
    append_mix(&b).await;
    for (transport, facility, code) in [
        (Transport::Udp, "local0", 16u16),
        (Transport::Tcp, "authpriv", 10),
        (Transport::Tls, "local7", 23),
    ] {
        let mut runner = b.runner(config(json!({
            "name": format!("s-{facility}"), "type": "syslog", "url": url(transport, &rsyslog),
            "facility": facility, "ca": certs.ca,
        })));
        let pass = drain(&mut runner).await;
        assert_eq!(pass.delivered, 6, "{transport:?}");
        let got = rsyslog
            .wait_for(transport, 6, Duration::from_secs(10))
            .await;
        assert_eq!(got.len(), 6, "{transport:?}: {got:#?} {}", rsyslog.errors());
        let start = &got[0];
        assert_eq!(start.msgid, "journal.start");
        assert_eq!(start.pri, code * 8 + 6);
        let want = [
            (6, "tool_0"),
            (4, "tool_1"),
            (3, "tool_2"),
            (5, "tool_3"),
            (6, HOSTILE),
        ];
        let mut ids = BTreeSet::new();
        for (r, (severity, tool)) in got[1..].iter().zip(want) {
            assert_eq!(r.pri, code * 8 + severity, "{transport:?} {r:?}");
            assert_eq!(r.msgid, "mcp.request");
            assert!(r.raw.starts_with(&format!("<{}>1 ", code * 8 + severity)));
            let m = msg(r);
            assert_eq!(m["target"]["name"], tool);
            let id = m["id"].as_str().unwrap().to_string();
            // rsyslog parsed our structured data as one element holding these params.
            assert!(r.structured_data.starts_with("[gatehouse@32473 "), "{r:?}");
            assert!(r.structured_data.ends_with(']'), "{r:?}");
            assert!(r.structured_data.contains(&format!("id=\"{id}\"")), "{r:?}");
            let mut escaped = String::new();
            gatehouse_audit::sinks::syslog::message::escape_into(&mut escaped, tool);
            assert!(
                r.structured_data.contains(&format!("tool=\"{escaped}\"")),
                "{r:?}"
            );
            assert!(ids.insert(id), "once");
        }
    }
}

#[tokio::test]
async fn udp_cuts_oversized_messages_to_a_datagram_receivers_take() {
    let Some((rsyslog, _certs)) = receiver() else {
        return;
    };
    let b = Fixture::new().await;
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    e.arguments = Some(json!({ "text": "x".repeat(20_000) }));
    b.journal.append(&e).await.unwrap();
    b.journal.flush().await.unwrap();
    let mut runner = b.runner(config(json!({
        "name": "udp", "type": "syslog", "url": url(Transport::Udp, &rsyslog),
        "events": ["mcp.request"],
    })));
    assert_eq!(drain(&mut runner).await.delivered, 1);
    let got = rsyslog
        .wait_for(Transport::Udp, 1, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 1, "{}", rsyslog.errors());
    assert_eq!(got[0].msgid, "mcp.request");
    let cut = gatehouse_audit::sinks::syslog::MAX_DATAGRAM;
    assert!(
        got[0].raw.len() <= cut && got[0].raw.len() > cut - 16,
        "{}",
        got[0].raw.len()
    );
}

#[tokio::test]
async fn an_rsyslog_outage_loses_nothing_over_tcp_and_tls() {
    let Some((mut rsyslog, certs)) = receiver() else {
        return;
    };
    let b = Fixture::new().await;
    let mut stops = Vec::new();
    for transport in [Transport::Tcp, Transport::Tls] {
        let runner = b.runner(config(json!({
            "name": format!("{transport:?}"), "type": "syslog", "url": url(transport, &rsyslog),
            "ca": certs.ca, "flush_interval": "100ms", "max_backoff": "300ms", "batch_size": 7,
        })));
        let (tx, rx) = tokio::sync::watch::channel(false);
        stops.push((tx, tokio::spawn(runner.run(rx))));
    }
    b.append_requests(0, 20).await;
    for t in [Transport::Tcp, Transport::Tls] {
        let got = rsyslog.wait_for(t, 21, Duration::from_secs(10)).await;
        assert_eq!(
            got.len(),
            21,
            "{t:?} before the outage: {}",
            rsyslog.errors()
        );
    }
    rsyslog.kill();
    b.append_requests(20, 30).await;
    // Both sinks notice the dead receiver and keep retrying while it is down.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = b.store.sink_cursors().status().await.unwrap();
    assert!(
        status.iter().all(|s| s.failing_since.is_some()),
        "{status:?}"
    );
    rsyslog.start_again();
    for t in [Transport::Tcp, Transport::Tls] {
        let got = rsyslog.wait_for(t, 51, Duration::from_secs(20)).await;
        let tools: BTreeSet<String> = got
            .iter()
            .filter(|r| r.msgid == "mcp.request")
            .map(|r| msg(r)["target"]["name"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = (0..50).map(|i| format!("tool_{i}")).collect();
        assert_eq!(tools, want, "{t:?}: every event, across the outage");
    }
    for (tx, task) in stops {
        tx.send(true).unwrap();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn tls_refuses_a_receiver_whose_ca_is_not_trusted() {
    let Some((rsyslog, _certs)) = receiver() else {
        return;
    };
    let b = Fixture::new().await;
    b.append_requests(0, 1).await;
    // No `ca`: the test CA is in no system store, so the handshake must fail and the batch
    // stay pending (a retry), never be reported delivered.
    let cfg =
        config(json!({"name": "tls", "type": "syslog", "url": url(Transport::Tls, &rsyslog)}));
    let mut sink = gatehouse_audit::sinks::syslog::SyslogSink::new(&cfg).unwrap();
    let line = std::fs::read_to_string(
        gatehouse_audit::reader::segment_files(&b.journal_dir()).unwrap()[0]
            .path
            .clone(),
    )
    .unwrap();
    let raw = line.lines().next().unwrap().as_bytes().to_vec();
    let shipped = gatehouse_audit::sinks::Shipped {
        event: gatehouse_audit::StoredEvent::parse(&raw).unwrap(),
        raw,
    };
    use gatehouse_audit::sinks::Sink;
    match sink.deliver(std::slice::from_ref(&shipped)).await {
        Err(gatehouse_audit::sinks::SinkError::Retry { message, .. }) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}");
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    assert!(rsyslog.received(Transport::Tls).is_empty());
}

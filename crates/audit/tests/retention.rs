//! Retention on a real journal with a synthetic history: expired segments go, per event
//! class, behind signed anchors that keep `verify` passing; deleting without the key, or
//! forging an anchor, still shows.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::retention::{Retention, anchors_path, enforce, plan};
use gatehouse_audit::segments::list;
use gatehouse_audit::{
    AuditEvent, DamageKind, EventKind, Journal, JournalOptions, Outcome, verify,
};
use gatehouse_config::{Durability, DurationSpec, OnFailure, RetentionConfig};

const DAY: u64 = 86_400;

fn key(dir: &Path) -> PathBuf {
    dir.join("keys/audit.key")
}

fn open(dir: &Path) -> Journal {
    Journal::open(JournalOptions {
        dir: dir.join("audit"),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        // Small segments: a few dozen events each.
        segment_bytes: 4096,
        signer: CheckpointSigner::load_or_create(&key(dir), true).unwrap(),
        sync_interval: Duration::from_millis(50),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap()
}

/// An event `days_ago` days old; a tool call or another request.
fn event(days_ago: u64, tool_call: bool, i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
    let t = SystemTime::now() - Duration::from_secs(days_ago * DAY);
    e.time = humantime::format_rfc3339_micros(t).to_string();
    e.method = Some(
        if tool_call {
            "tools/call"
        } else {
            "tools/list"
        }
        .into(),
    );
    e.request_id = Some(format!("r{i}"));
    e
}

/// Writes one chain: `events` (days ago, tool call?) in order, then closes it.
async fn chain(dir: &Path, events: &[(u64, bool)]) -> String {
    let journal = open(dir);
    for (i, (ago, tool)) in events.iter().enumerate() {
        journal.append(&event(*ago, *tool, i)).await.unwrap();
    }
    let instance = journal.instance().to_string();
    journal.close().await.unwrap();
    instance
}

fn retention(default_days: u64, tool_call_days: Option<u64>) -> Retention {
    Retention::new(&RetentionConfig {
        default: Some(DurationSpec::from_secs(default_days * DAY)),
        tool_call: tool_call_days.map(|d| DurationSpec::from_secs(d * DAY)),
        ..Default::default()
    })
}

fn segments(dir: &Path, instance: &str) -> Vec<u32> {
    list(&dir.join("audit"))
        .unwrap()
        .get(instance)
        .map(|s| s.keys().copied().collect())
        .unwrap_or_default()
}

async fn store(dir: &Path) -> gatehouse_store::Store {
    gatehouse_store::Store::open_sqlite_in(dir).await.unwrap()
}

#[tokio::test]
async fn expired_segments_go_per_class_and_the_journal_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 500 days ago: plain requests (expired under 400d), then tool calls (kept 7y), then
    // recent requests.
    let mut history: Vec<(u64, bool)> = (0..120).map(|_| (500, false)).collect();
    history.extend((0..60).map(|_| (450, true)));
    history.extend((0..60).map(|_| (1, false)));
    let old = chain(dir, &history).await;
    let newest = chain(dir, &[(0, false), (0, true)]).await;
    let before = segments(dir, &old);
    assert!(
        before.len() > 6,
        "the history spans many segments: {before:?}"
    );
    let audit = dir.join("audit");
    let total = verify(&audit, None).unwrap();
    assert!(total.intact(), "{:?}", total.damages);

    let signer = CheckpointSigner::load_or_create(&key(dir), false).unwrap();
    let store = store(dir).await;
    gatehouse_audit::index::catch_up(&store.audit_index(), &audit)
        .await
        .unwrap();
    let calls = |store: gatehouse_store::Store| async move {
        let rows = store
            .usage()
            .report(gatehouse_store::UsageBy::User, 0, i64::MAX, 100)
            .await
            .unwrap();
        rows.iter().map(|r| r.counts.calls).sum::<i64>()
    };
    assert_eq!(
        calls(store.clone()).await,
        240 + 2,
        "every request is in the rollups"
    );
    let done = enforce(
        &audit,
        &retention(400, Some(7 * 365)),
        &signer,
        &store,
        &[],
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        done.anchors.len(),
        1,
        "one chain was cut: {:?}",
        done.anchors
    );
    assert!(
        done.events >= 100,
        "most of the 500-day-old requests went: {}",
        done.events
    );
    // The rollups of hours past the default period (400d) went too: the recent ones stay.
    assert!(done.rollups > 0);
    assert_eq!(
        calls(store.clone()).await,
        60 + 2,
        "only the last day's calls are left"
    );
    let after = segments(dir, &old);
    assert_eq!(
        after.first().copied(),
        Some(done.anchors[0].through_segment + 1)
    );
    // Nothing that holds a tool call went: every tool call is still in the journal.
    let lines: Vec<String> = after
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(audit.join(gatehouse_audit::segments::segment_name(&old, *n)))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let tool_calls = lines
        .iter()
        .filter(|l| l.contains("\"tools/call\""))
        .count();
    assert_eq!(tool_calls, 60, "tool calls are kept 7 years");
    assert!(
        segments(dir, &newest).len() == 1,
        "the newest chain is untouched"
    );

    let report = verify(&audit, None).unwrap();
    assert!(report.intact(), "after retention: {:?}", report.damages);
    assert_eq!(report.events, total.events - done.events);
    // The index forgot the removed lines.
    let rows = store
        .audit_index()
        .query(&gatehouse_store::AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len() as u64, total.events - done.events);
    assert!(rows.iter().all(|r| !done.removed.contains(&r.segment)));

    // A second pass at the same time removes nothing more.
    let again = enforce(
        &audit,
        &retention(400, Some(7 * 365)),
        &signer,
        &store,
        &[],
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert!(again.removed.is_empty(), "{:?}", again.removed);

    // Deleting the next segment by hand (no anchor) is still damage.
    let next = audit.join(gatehouse_audit::segments::segment_name(&old, after[0]));
    std::fs::remove_file(&next).unwrap();
    let damaged = verify(&audit, None).unwrap();
    assert!(
        damaged
            .damages
            .iter()
            .any(|d| d.kind == DamageKind::Deleted),
        "{:?}",
        damaged.damages
    );
}

#[tokio::test]
async fn a_whole_expired_chain_goes_and_the_next_chain_still_links_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = chain(dir, &(0..100).map(|_| (30, false)).collect::<Vec<_>>()).await;
    let newest = chain(dir, &[(0, false)]).await;
    let audit = dir.join("audit");
    let signer = CheckpointSigner::load_or_create(&key(dir), false).unwrap();
    let store = store(dir).await;
    let done = enforce(
        &audit,
        &retention(7, None),
        &signer,
        &store,
        &[],
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert!(done.anchors[0].whole_chain);
    assert!(segments(dir, &old).is_empty());
    assert_eq!(segments(dir, &newest).len(), 1);
    let report = verify(&audit, None).unwrap();
    assert!(report.intact(), "{:?}", report.damages);

    // A forged anchor (claims more was removed) does not verify.
    let path = anchors_path(&audit, &old);
    let text = std::fs::read_to_string(&path).unwrap();
    let forged = text.replacen("\"whole_chain\":true", "\"whole_chain\":false", 1);
    assert_ne!(forged, text);
    std::fs::write(&path, forged).unwrap();
    let report = verify(&audit, None).unwrap();
    assert!(
        report
            .damages
            .iter()
            .any(|d| d.kind == DamageKind::BadSignature),
        "{:?}",
        report.damages
    );
}

#[tokio::test]
async fn the_running_chain_keeps_its_last_segment_and_unshipped_segments_wait_for_their_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let only = chain(dir, &(0..100).map(|_| (30, false)).collect::<Vec<_>>()).await;
    let audit = dir.join("audit");
    let count = segments(dir, &only).len();
    let planned = plan(&audit, &retention(7, None), SystemTime::now()).unwrap();
    assert_eq!(
        planned[0].segments.len(),
        count - 1,
        "all but the newest chain's last segment"
    );

    // A sink that shipped only the first segment holds back the rest.
    let store = store(dir).await;
    let first = gatehouse_audit::segments::segment_name(&only, 1);
    let len = std::fs::metadata(audit.join(&first)).unwrap().len();
    store
        .sink_cursors()
        .advance("siem", &first, len as i64, 1, 0)
        .await
        .unwrap();
    let signer = CheckpointSigner::load_or_create(&key(dir), false).unwrap();
    let done = enforce(
        &audit,
        &retention(7, None),
        &signer,
        &store,
        &["siem".into()],
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(done.removed, vec![first]);
    assert_eq!(done.held_for_sinks.len(), count - 2);
    assert!(verify(&audit, None).unwrap().intact());

    // Nothing expires without a retention setting.
    let keep = Retention::new(&RetentionConfig::default());
    assert!(
        plan(
            &audit,
            &keep,
            SystemTime::now() + Duration::from_secs(100 * 365 * DAY)
        )
        .unwrap()
        .is_empty()
    );
}

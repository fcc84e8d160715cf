//! The sink runner's own promises, on a real journal and a real SQLite store: ordered, at
//! least once, from its own cursor across restarts; retries with backoff and the receiver's
//! `Retry-After`; refused events to the dead-letter file; the `events` filter; status rows.
//! The receiver here is a scripted in-process `Sink` (a test double): the real receivers are
//! exercised by each sink's own tests.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gatehouse_audit::chain::CheckpointSigner;
use gatehouse_audit::sinks::{Delivered, Shipped, Sink, SinkError, SinkRunner, dead_letter_path};
use gatehouse_audit::{AuditEvent, EventKind, Journal, JournalOptions, Outcome};
use gatehouse_config::{Durability, DurationSpec, OnFailure, SinkConfig, SinkKind, SinkStart};
use tokio::sync::watch;

/// What the scripted receiver answers, in order; `Ok` once the script is used up.
type Script = Arc<Mutex<VecDeque<Result<Delivered, SinkError>>>>;

#[derive(Clone, Default)]
struct Receiver {
    script: Script,
    got: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<Vec<Instant>>>,
}

impl Sink for Receiver {
    fn deliver<'a>(
        &'a mut self,
        batch: &'a [Shipped],
    ) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            self.attempts.lock().unwrap().push(Instant::now());
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(Delivered::default()));
            if let Ok(d) = &answer {
                let mut got = self.got.lock().unwrap();
                for (i, s) in batch.iter().enumerate() {
                    if !d.rejected.iter().any(|(r, _)| *r == i) {
                        got.push(s.event.id.clone());
                    }
                }
            }
            answer
        })
    }
}

fn config(events: &[&str]) -> SinkConfig {
    SinkConfig {
        name: "test".into(),
        kind: SinkKind::File,
        format: None,
        path: None,
        url: None,
        token: None,
        username: None,
        password: None,
        index: None,
        source: None,
        sourcetype: None,
        tenant_id: None,
        client_id: None,
        client_secret: None,
        dcr_id: None,
        stream: None,
        authority: None,
        protocol: None,
        headers: Default::default(),
        ca: None,
        facility: None,
        start: SinkStart::Beginning,
        events: events.iter().map(|e| e.to_string()).collect(),
        batch_size: 10,
        flush_interval: DurationSpec::new(Duration::from_millis(50)),
        timeout: DurationSpec::from_secs(5),
        max_backoff: DurationSpec::from_secs(2),
    }
}

/// A journal with `n` requests (and its `journal.start`) in segments of `segment_bytes`;
/// returns the ids in order.
async fn journal(dir: &Path, n: usize, segment_bytes: u64) -> Vec<String> {
    let j = Journal::open(JournalOptions {
        dir: dir.join("audit"),
        durability: Durability::Process,
        on_failure: OnFailure::Refuse,
        segment_bytes,
        signer: CheckpointSigner::load_or_create(&dir.join("key"), true).unwrap(),
        sync_interval: Duration::from_millis(50),
        max_field_bytes: gatehouse_audit::bound::DEFAULT_MAX_FIELD_BYTES,
    })
    .unwrap();
    for i in 0..n {
        let mut e = AuditEvent::new(EventKind::Request, Outcome::Ok);
        e.request_id = Some(format!("r{i}"));
        j.append(&e).await.unwrap();
    }
    let instance = j.instance().to_string();
    j.close().await.unwrap();
    (1..=n as u64 + 1)
        .map(|s| format!("{instance}-{s}"))
        .collect()
}

async fn runner(dir: &Path, cfg: SinkConfig, rx: Receiver) -> (SinkRunner, gatehouse_store::Store) {
    let store = gatehouse_store::Store::open_sqlite_in(dir).await.unwrap();
    let r = SinkRunner::with_sink(cfg, dir.join("audit"), store.sink_cursors(), Box::new(rx));
    (r, store)
}

#[tokio::test]
async fn ships_in_order_once_and_resumes_from_its_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = journal(tmp.path(), 45, 2048).await;
    let rx = Receiver::default();
    let (mut r, store) = runner(tmp.path(), config(&[]), rx.clone()).await;
    let (_tx, mut stop) = watch::channel(false);
    let pass = r.catch_up(&mut stop).await.unwrap();
    assert_eq!(pass.delivered, 46);
    assert_eq!(
        *rx.got.lock().unwrap(),
        ids,
        "every event, in journal order, once"
    );
    // A new runner (a restart) starts from the cursor: nothing again.
    let (mut again, _) = runner(tmp.path(), config(&[]), rx.clone()).await;
    assert_eq!(again.catch_up(&mut stop).await.unwrap().delivered, 0);
    assert_eq!(rx.got.lock().unwrap().len(), 46);
    let status = store.sink_cursors().status().await.unwrap();
    assert_eq!(status[0].delivered, 46);
    assert!(status[0].last_delivery.is_some() && status[0].failing_since.is_none());
}

#[tokio::test]
async fn failures_are_retried_with_backoff_and_retry_after_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = journal(tmp.path(), 5, 2048).await;
    let rx = Receiver::default();
    rx.script.lock().unwrap().extend([
        Err(SinkError::retry("connection refused")),
        Err(SinkError::Retry {
            message: "HTTP 429".into(),
            after: Some(Duration::from_secs(1)),
        }),
    ]);
    let (mut r, store) = runner(tmp.path(), config(&[]), rx.clone()).await;
    let (_tx, mut stop) = watch::channel(false);
    let pass = r.catch_up(&mut stop).await.unwrap();
    assert_eq!(pass.delivered, 6);
    assert_eq!(*rx.got.lock().unwrap(), ids);
    let attempts = rx.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 3);
    let first_wait = attempts[1] - attempts[0];
    let second_wait = attempts[2] - attempts[1];
    assert!(
        first_wait >= Duration::from_millis(450),
        "backoff starts at 500ms: {first_wait:?}"
    );
    assert!(
        second_wait >= Duration::from_millis(950),
        "Retry-After: 1 is honoured: {second_wait:?}"
    );
    let status = &store.sink_cursors().status().await.unwrap()[0];
    assert_eq!(
        status.last_error.as_deref(),
        Some("HTTP 429"),
        "the last failure is kept"
    );
    assert!(status.failing_since.is_none(), "and it recovered");
}

#[tokio::test]
async fn refused_events_go_to_the_dead_letter_file_and_the_rest_moves_on() {
    let tmp = tempfile::tempdir().unwrap();
    // One segment: batches of exactly batch_size (10).
    let ids = journal(tmp.path(), 15, 1 << 20).await;
    let rx = Receiver::default();
    rx.script.lock().unwrap().extend([
        // First batch (10): the 3rd is refused; second batch: all refused.
        Ok(Delivered {
            rejected: vec![(2, "mapper_parsing_exception".into())],
        }),
        Err(SinkError::Rejected("HTTP 400: invalid data format".into())),
    ]);
    let (mut r, store) = runner(tmp.path(), config(&[]), rx.clone()).await;
    let (_tx, mut stop) = watch::channel(false);
    let pass = r.catch_up(&mut stop).await.unwrap();
    assert_eq!((pass.delivered, pass.rejected), (9, 7));
    let dead =
        std::fs::read_to_string(dead_letter_path(&tmp.path().join("audit"), "test")).unwrap();
    let dead_ids: Vec<String> = dead
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut expected = vec![ids[2].clone()];
    expected.extend(ids[10..].iter().cloned());
    assert_eq!(
        dead_ids, expected,
        "the refused lines, byte for byte journal lines"
    );
    let status = &store.sink_cursors().status().await.unwrap()[0];
    assert_eq!((status.delivered, status.rejected), (9, 7));
    let note = status.last_error.as_deref().unwrap();
    assert!(
        note.contains("refused for good") && note.contains("invalid data format"),
        "{note}"
    );
    assert!(
        status.failing_since.is_none(),
        "refusals do not make the sink failing"
    );
}

#[tokio::test]
async fn the_events_filter_ships_only_the_named_types_and_stop_interrupts_a_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = journal(tmp.path(), 4, 2048).await;
    let rx = Receiver::default();
    let (mut r, _store) = runner(tmp.path(), config(&["journal.start"]), rx.clone()).await;
    let (_tx, mut stop) = watch::channel(false);
    r.catch_up(&mut stop).await.unwrap();
    assert_eq!(
        *rx.got.lock().unwrap(),
        vec![ids[0].clone()],
        "only journal.start"
    );

    // A receiver that never recovers: stopping ends the retry loop promptly, cursor unmoved.
    let tmp = tempfile::tempdir().unwrap();
    journal(tmp.path(), 2, 2048).await;
    let down = Receiver::default();
    down.script
        .lock()
        .unwrap()
        .extend((0..100).map(|_| Err(SinkError::retry("down"))));
    let (r, store) = runner(tmp.path(), config(&[]), down.clone()).await;
    let (tx, stop) = watch::channel(false);
    let task = tokio::spawn(r.run(stop));
    tokio::time::sleep(Duration::from_millis(800)).await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("stops while retrying")
        .unwrap();
    assert!(down.got.lock().unwrap().is_empty());
    let status = &store.sink_cursors().status().await.unwrap()[0];
    assert_eq!(status.delivered, 0);
    assert!(status.failing_since.is_some(), "still failing");
    assert!(
        store
            .sink_cursors()
            .cursors("test")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_new_sink_that_starts_now_skips_the_backlog_but_not_what_comes_after() {
    let tmp = tempfile::tempdir().unwrap();
    journal(tmp.path(), 30, 2048).await;
    // A torn last line (being written) is not skipped: only complete lines are.
    let last = std::fs::read_dir(tmp.path().join("audit"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .max()
        .unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap()
        .write_all(b"{\"seq\":")
        .unwrap();
    assert_eq!(
        gatehouse_audit::reader::complete_len(&last, len + 7).unwrap(),
        len
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len)
        .unwrap();
    let mut cfg = config(&[]);
    cfg.start = SinkStart::Now;
    let rx = Receiver::default();
    let (mut r, store) = runner(tmp.path(), cfg.clone(), rx.clone()).await;
    let (_tx, mut stop) = watch::channel(false);
    assert_eq!(
        r.catch_up(&mut stop).await.unwrap().delivered,
        0,
        "the backlog is skipped"
    );
    let later = journal(tmp.path(), 3, 2048).await;
    r.catch_up(&mut stop).await.unwrap();
    assert_eq!(*rx.got.lock().unwrap(), later, "what came after is shipped");

    // Restarted, the same sink keeps its cursor: `start` applies only to a new sink.
    let more = journal(tmp.path(), 2, 2048).await;
    let (mut again, _) = runner(tmp.path(), cfg, rx.clone()).await;
    again.catch_up(&mut stop).await.unwrap();
    let mut want = later.clone();
    want.extend(more);
    assert_eq!(*rx.got.lock().unwrap(), want);
    assert_eq!(
        store.sink_cursors().status().await.unwrap()[0].delivered,
        want.len() as i64
    );
}

//! The file sink fed by a real journal through the SinkRunner, with its cursor in a real
//! SQLite store: order, exactly-once across restarts, logrotate, the `events` filter.

mod support;

use gatehouse_audit::StoredEvent;
use gatehouse_audit::sinks::{Shipped, Sink, SinkError};
use serde_json::{Value, json};
use support::{Fixture, config, drain};

/// One test at a time: `a_batch_cut_by_a_full_disk_is_rolled_back` lowers the process's
/// file size limit, which would hit the others when `cargo test` runs them as threads of one
/// process (nextest runs each in its own).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn tools(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| StoredEvent::parse(l.as_bytes()))
        .filter_map(|e| e.event.target.map(|t| t.name))
        .collect()
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("tool_{i}")).collect()
}

#[tokio::test]
async fn every_event_arrives_once_in_order_and_a_restart_continues_from_the_cursor() {
    let _serial = SERIAL.lock().await;
    let b = Fixture::new().await;
    let out = b.dir.path().join("out/nested/audit.jsonl");
    let cfg = config(json!({"name": "f", "type": "file", "path": out, "batch_size": 7}));
    b.append_requests(0, 50).await;
    let mut runner = b.runner(cfg.clone());
    let pass = drain(&mut runner).await;
    assert_eq!(pass.delivered, 51, "50 requests and journal.start");
    let got = lines(&out);
    assert_eq!(got.len(), 51);
    assert!(got[0].contains("\"journal.start\""));
    assert_eq!(tools(&got), expected(0..50));
    // jsonl is the journal line itself: ids and the chain fields are there.
    let seqs: Vec<u64> = got
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let first: Value = serde_json::from_str(&got[1]).unwrap();
    assert!(first["prev"].is_string() && first["id"].is_string());

    drop(runner);
    b.append_requests(50, 30).await;
    let mut runner = b.runner(cfg);
    assert_eq!(drain(&mut runner).await.delivered, 30);
    assert_eq!(drain(&mut runner).await.delivered, 0, "nothing twice");
    let got = lines(&out);
    assert_eq!(tools(&got), expected(0..80));
    let status = b.store.sink_cursors().status().await.unwrap();
    assert_eq!(status[0].delivered, 81);
}

#[tokio::test]
async fn a_rotated_file_is_reopened() {
    let _serial = SERIAL.lock().await;
    let b = Fixture::new().await;
    let out = b.dir.path().join("audit.jsonl");
    let mut runner = b.runner(config(json!({"name": "f", "type": "file", "path": out})));
    b.append_requests(0, 10).await;
    drain(&mut runner).await;
    // What logrotate does without copytruncate: move the file away, the writer must notice.
    let rotated = b.dir.path().join("audit.jsonl.1");
    std::fs::rename(&out, &rotated).unwrap();
    b.append_requests(10, 5).await;
    drain(&mut runner).await;
    assert_eq!(tools(&lines(&rotated)), expected(0..10));
    assert_eq!(tools(&lines(&out)), expected(10..15));
    // And a file that was removed outright.
    std::fs::remove_file(&out).unwrap();
    b.append_requests(15, 3).await;
    drain(&mut runner).await;
    assert_eq!(tools(&lines(&out)), expected(15..18));
}

#[tokio::test]
async fn the_events_filter_and_the_format_apply() {
    let _serial = SERIAL.lock().await;
    let b = Fixture::new().await;
    let out = b.dir.path().join("ecs.jsonl");
    let mut runner = b.runner(config(json!({
        "name": "ecs", "type": "file", "path": out, "format": "ecs", "events": ["mcp.request"],
    })));
    b.append_requests(0, 12).await;
    assert_eq!(
        drain(&mut runner).await.delivered,
        12,
        "journal.start filtered out"
    );
    let got = lines(&out);
    assert_eq!(got.len(), 12);
    for (i, l) in got.iter().enumerate() {
        let d: Value = serde_json::from_str(l).unwrap();
        assert_eq!(d["event"]["action"], "mcp.request");
        assert_eq!(d["gatehouse"]["target"]["name"], format!("tool_{i}"));
        assert_eq!(d["ecs"]["version"], "8.11.0");
    }
}

#[tokio::test]
async fn an_unwritable_path_is_retried_and_nothing_is_lost() {
    let _serial = SERIAL.lock().await;
    let b = Fixture::new().await;
    // A directory where the file should be: every write fails until it is removed.
    let out = b.dir.path().join("blocked");
    std::fs::create_dir_all(&out).unwrap();
    let cfg = config(json!({"name": "f", "type": "file", "path": out, "max_backoff": "100ms"}));
    let runner = b.runner(cfg);
    b.append_requests(0, 5).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(runner.run(rx));
    // The runner records the failure in the store and keeps retrying.
    let mut failing = false;
    for _ in 0..100 {
        let s = b.store.sink_cursors().status().await.unwrap();
        if s.first().is_some_and(|s| s.last_error.is_some()) {
            failing = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(failing, "the failure is recorded");
    std::fs::remove_dir(&out).unwrap();
    let mut arrived = Vec::new();
    for _ in 0..100 {
        if out.is_file() {
            arrived = tools(&lines(&out));
            if arrived.len() == 5 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(arrived, expected(0..5));
}

/// Sets the soft and hard file size limit (`RLIMIT_FSIZE`) of this process.
fn file_size_limit(bytes: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain system calls with a valid struct; SIGXFSZ is ignored so an oversized
    // write fails with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

#[tokio::test]
async fn a_batch_cut_by_a_full_disk_is_rolled_back() {
    let _serial = SERIAL.lock().await;
    let b = Fixture::new().await;
    b.append_requests(0, 40).await;
    b.journal.close().await.unwrap();
    let segment = gatehouse_audit::reader::segment_files(&b.journal_dir()).unwrap()[0].clone();
    let (journal_lines, _) = gatehouse_audit::reader::read_lines(&segment.path, 0, 100).unwrap();
    let shipped: Vec<Shipped> = journal_lines
        .into_iter()
        .map(|l| Shipped {
            event: StoredEvent::parse(&l.bytes).unwrap(),
            raw: l.bytes,
        })
        .collect();
    let (first, second) = shipped.split_at(20);
    let first_bytes: u64 = first.iter().map(|s| s.raw.len() as u64 + 1).sum();
    let out = b.dir.path().join("out.jsonl");
    let mut sink = gatehouse_audit::sinks::file::FileSink::new(&config(
        json!({"name": "f", "type": "file", "path": out}),
    ))
    .unwrap();
    // Room for the first batch and half of the second: the second write is cut (EFBIG),
    // as on a full disk.
    let second_bytes: u64 = second.iter().map(|s| s.raw.len() as u64 + 1).sum();
    file_size_limit(first_bytes + second_bytes / 2);
    let ok = sink.deliver(first).await;
    let cut = sink.deliver(second).await;
    let len_after_cut = std::fs::metadata(&out).unwrap().len();
    file_size_limit(libc::RLIM_INFINITY);
    assert!(ok.is_ok(), "{ok:?}");
    assert!(matches!(cut, Err(SinkError::Retry { .. })), "{cut:?}");
    assert_eq!(
        len_after_cut, first_bytes,
        "the half-written batch is cut off"
    );
    sink.deliver(second).await.unwrap();
    let got = lines(&out);
    assert_eq!(got.len(), 41);
    assert!(
        got.iter()
            .all(|l| StoredEvent::parse(l.as_bytes()).is_some())
    );
}

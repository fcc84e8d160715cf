//! Resumable response streams for handshake-era sessions (`Last-Event-ID`).
//!
//! In the 2025 era a dropped SSE connection is not a cancellation: the request keeps running,
//! its events are kept (bounded) in the session, and the client resumes with a GET carrying
//! `Last-Event-ID`. Event ids are `<stream>-<seq>`, unique within the session. Buffers live in
//! the process that serves the stream; resuming on another replica is not supported.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_wire::{Message, sse};
use tokio::sync::mpsc;

/// Most events kept per stream for replay.
const MAX_EVENTS: usize = 1024;
/// Most bytes of events kept per stream for replay (the oldest go first): a few large
/// results cannot pin memory for as long as the stream stays resumable.
const MAX_REPLAY_BYTES: usize = 16 * 1024 * 1024;
/// How long a stalled reader is waited for before its events only go to the replay buffer.
const LIVE_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished stream stays resumable.
const KEEP_FINISHED: Duration = Duration::from_secs(300);

/// The replay buffer of one response stream.
#[derive(Debug, Default)]
struct StreamLog {
    events: VecDeque<(u64, Bytes)>,
    /// Bytes in `events`.
    bytes: usize,
    next_seq: u64,
    live: Option<mpsc::Sender<Bytes>>,
    finished: Option<Instant>,
}

/// A session's resumable streams.
#[derive(Debug, Default)]
pub struct Streams {
    logs: Mutex<HashMap<u64, StreamLog>>,
    next: AtomicU64,
}

impl Streams {
    /// Opens a new response stream whose events go to `live` while it is connected.
    pub(super) fn open(&self, live: mpsc::Sender<Bytes>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logs = self.logs.lock().expect("streams lock");
        logs.retain(|_, l| l.finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
        logs.insert(
            id,
            StreamLog {
                live: Some(live),
                ..Default::default()
            },
        );
        id
    }

    /// Records an event and sends it to the live connection, if there is one. A reader that is
    /// merely slow is waited for; one that is gone (or stalled for long) is detached, and the
    /// events stay buffered for a resume.
    pub(super) async fn push(&self, stream: u64, msg: &Message, last: bool) {
        let live = {
            let mut logs = self.logs.lock().expect("streams lock");
            let Some(log) = logs.get_mut(&stream) else {
                return;
            };
            log.next_seq += 1;
            let id = format!("{stream}-{}", log.next_seq);
            let frame = sse::encode(Some(&id), None, &String::from_utf8_lossy(&msg.to_bytes()));
            log.bytes += frame.len();
            log.events.push_back((log.next_seq, frame.clone()));
            while log.events.len() > MAX_EVENTS || log.bytes > MAX_REPLAY_BYTES {
                match log.events.pop_front() {
                    Some((_, old)) => log.bytes -= old.len(),
                    None => break,
                }
            }
            let live = log.live.clone().map(|l| (l, frame));
            if last {
                log.finished = Some(Instant::now());
                log.live = None;
            }
            live
        };
        if let Some((live, frame)) = live
            && !matches!(
                tokio::time::timeout(LIVE_SEND_TIMEOUT, live.send(frame)).await,
                Ok(Ok(()))
            )
        {
            let mut logs = self.logs.lock().expect("streams lock");
            if let Some(log) = logs.get_mut(&stream)
                && log.live.as_ref().is_some_and(|l| l.same_channel(&live))
            {
                log.live = None;
            }
        }
    }

    /// Re-attaches a client after `Last-Event-ID: <stream>-<seq>`: the events after `seq`, and,
    /// while the stream is still running, a channel for the rest. `None` for an unknown id.
    pub fn resume(
        &self,
        last_event_id: &str,
    ) -> Option<(Vec<Bytes>, Option<mpsc::Receiver<Bytes>>)> {
        let (stream, seq) = last_event_id.split_once('-')?;
        let (stream, seq): (u64, u64) = (stream.parse().ok()?, seq.parse().ok()?);
        let mut logs = self.logs.lock().expect("streams lock");
        let log = logs.get_mut(&stream)?;
        let replay = log
            .events
            .iter()
            .filter(|(s, _)| *s > seq)
            .map(|(_, b)| b.clone())
            .collect();
        let rest = if log.finished.is_none() {
            let (tx, rx) = mpsc::channel(64);
            log.live = Some(tx);
            Some(rx)
        } else {
            None
        };
        Some((replay, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_wire::Id;
    use serde_json::json;
    use std::sync::Arc;

    #[tokio::test]
    async fn replays_after_the_last_seen_event_and_reattaches() {
        let streams = Streams::default();
        let (tx, rx) = mpsc::channel(1);
        let s = streams.open(tx);
        drop(rx); // the client disconnects
        for i in 0..3 {
            streams
                .push(
                    s,
                    &Message::notification("notifications/progress", Some(json!({"progress": i}))),
                    false,
                )
                .await;
        }
        let (replay, rest) = streams.resume(&format!("{s}-1")).unwrap();
        assert_eq!(replay.len(), 2, "events 2 and 3");
        assert!(String::from_utf8_lossy(&replay[0]).contains(&format!("id: {s}-2")));
        let mut rest = rest.expect("still running");
        streams
            .push(s, &Message::result(Id::Number(1), &json!({})), true)
            .await;
        assert!(String::from_utf8_lossy(&rest.try_recv().unwrap()).contains("\"result\""));
        assert!(streams.resume("99-1").is_none());
        let (_, rest) = streams.resume(&format!("{s}-0")).unwrap();
        assert!(rest.is_none(), "a finished stream only replays");
    }

    #[tokio::test]
    async fn a_slow_reader_still_gets_every_event() {
        let streams = Arc::new(Streams::default());
        let (tx, mut rx) = mpsc::channel(1);
        let s = streams.open(tx);
        let writer = {
            let streams = streams.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    let m = Message::notification("n", Some(json!({ "i": i })));
                    streams.push(s, &m, i == 99).await;
                }
            })
        };
        let mut got = 0;
        while let Some(_frame) = rx.recv().await {
            got += 1;
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        assert_eq!(
            got, 100,
            "a burst larger than the channel is delivered, not dropped"
        );
    }
}

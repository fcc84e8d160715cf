//! The one pump that drives a running call to its client, whatever carries it: a stateless
//! SSE response (closing it cancels the call), a handshake-era response stream that outlives
//! its connection and can be resumed, or a legacy HTTP+SSE connection.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use gatehouse_wire::{Message, sse};
use tokio::sync::mpsc;

use super::call::{CallStream, Step};
use super::resume::Streams;
use crate::Gateway;

/// Where a running call's messages go.
pub(super) trait Sink: Send + 'static {
    /// Sends one message (`last`: the response). False when the client is gone for good and
    /// the call should stop.
    fn send(&mut self, msg: Message, last: bool) -> impl Future<Output = bool> + Send;

    /// Resolves when the client is gone for good (a sink that outlives its client never
    /// resolves).
    fn gone(&self) -> impl Future<Output = ()> + Send;
}

/// Drives `call` to its end: `first` (when the front door already took it from the call),
/// then every step, into `sink`. Stops early — dropping the call, which cancels it — when the
/// sink's client is gone.
pub(super) async fn run(
    gw: Arc<Gateway>,
    mut call: CallStream,
    first: Option<Message>,
    mut sink: impl Sink,
) {
    if let Some(first) = first
        && !sink.send(first, false).await
    {
        return;
    }
    loop {
        let step = tokio::select! {
            step = call.next(&gw) => step,
            () = sink.gone() => return,
        };
        let (msg, last) = match step {
            Some(Step::Message(m)) => (m, false),
            Some(Step::Final(m)) => (m, true),
            None => return,
        };
        if !sink.send(msg, last).await || last {
            return;
        }
    }
}

/// An SSE response body: each message one event, no id (nothing to resume).
pub(super) struct BodySink(pub mpsc::Sender<Bytes>);

impl Sink for BodySink {
    async fn send(&mut self, msg: Message, _last: bool) -> bool {
        let frame = sse::encode(None, None, &String::from_utf8_lossy(&msg.to_bytes()));
        self.0.send(frame).await.is_ok()
    }

    async fn gone(&self) {
        self.0.closed().await
    }
}

/// A resumable handshake-era response stream: every event is kept for `Last-Event-ID`, and
/// the call goes on when the connection drops (a dropped stream is not a cancellation).
pub(super) struct ResumableSink {
    pub streams: Arc<Streams>,
    pub stream: u64,
}

impl Sink for ResumableSink {
    async fn send(&mut self, msg: Message, last: bool) -> bool {
        self.streams.push(self.stream, &msg, last).await;
        true
    }

    async fn gone(&self) {
        std::future::pending().await
    }
}

/// A channel of SSE frames as an HTTP body stream.
pub(super) fn body_from(
    rx: mpsc::Receiver<Bytes>,
) -> futures::stream::BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    )
    .boxed()
}

//! One upstream request: the POST with its headers and credential, and reading the reply —
//! a JSON body or an SSE stream, resumed with `Last-Event-ID` when the server closes it early.

use std::time::Duration;

use futures::StreamExt;
use gatehouse_wire::{Era, Id, Message, MessageKind, ProtocolVersion, headers as h, sse};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::mpsc;

use super::{Auth, HttpBackend};
use crate::backend::{BackendError, CallEvent};

/// How often one call may resume a response stream the server closed early.
const MAX_STREAM_RESUMES: usize = 16;

/// What one POST produced.
pub(super) enum Posted {
    Accepted,
    Reply(Box<Message>, Option<String>),
}

impl HttpBackend {
    fn too_large(&self) -> BackendError {
        BackendError::Protocol {
            server: self.name.clone(),
            reason: format!(
                "a message exceeds {} bytes",
                crate::backend::MAX_MESSAGE_BYTES
            ),
        }
    }

    /// Reads a whole response body, refusing one larger than [`crate::backend::MAX_MESSAGE_BYTES`].
    async fn read_limited(&self, resp: reqwest::Response) -> Result<bytes::Bytes, BackendError> {
        if resp
            .content_length()
            .is_some_and(|n| n > crate::backend::MAX_MESSAGE_BYTES as u64)
        {
            return Err(self.too_large());
        }
        let mut body = resp.bytes_stream();
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.unavailable(describe_reqwest(&e)))?;
            if out.len() + chunk.len() > crate::backend::MAX_MESSAGE_BYTES {
                return Err(self.too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    pub(super) async fn post(
        &self,
        msg: &Message,
        session: Option<&str>,
        version: ProtocolVersion,
        extra_headers: &[(String, String)],
        events: Option<mpsc::Sender<CallEvent>>,
        auth: &Auth,
    ) -> Result<Posted, BackendError> {
        if let Some(local) = &self.local
            && !local.is_running()
        {
            // Boxed: starting a container is a large future that every call's would carry.
            Box::pin(local.ensure()).await?;
        }
        let mut req = self
            .client
            .post(self.url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json");
        if msg.method() != "initialize" {
            req = req.header(h::PROTOCOL_VERSION, version.as_str());
        }
        if let Some(s) = session {
            req = req.header(h::SESSION_ID, s);
        }
        if let Some((name, value)) = auth {
            req = req.header(name, value);
        }
        if version.era() == Era::Stateless && msg.method.is_some() {
            req = req.header(h::METHOD, msg.method());
            if h::name_field(msg.method()).is_some()
                && let Some(name) = msg.target_name()
            {
                req = req.header(h::NAME, h::encode_value(name));
            }
            for (k, v) in extra_headers {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        let resp = req
            .body(msg.to_bytes())
            .send()
            .await
            .map_err(|e| self.unavailable(describe_reqwest(&e)))?;
        let status = resp.status();
        let new_session = resp
            .headers()
            .get(h::SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(Posted::Accepted);
        }
        if status == reqwest::StatusCode::NOT_FOUND && session.is_some() {
            return Err(BackendError::SessionExpired {
                server: self.name.clone(),
            });
        }
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if is_sse && status.is_success() {
            return self
                .read_stream(resp, msg.id.as_ref(), session, version, events, auth)
                .await
                .map(|m| Posted::Reply(Box::new(m), new_session));
        }
        let body = self.read_limited(resp).await?;
        match Message::parse(&body) {
            Ok(m) if matches!(m.kind(), MessageKind::Result | MessageKind::Error) => {
                Ok(Posted::Reply(Box::new(m), new_session))
            }
            _ if !status.is_success() => Err(BackendError::HttpStatus {
                server: self.name.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }),
            _ => Err(BackendError::Protocol {
                server: self.name.clone(),
                reason: "response is not a JSON-RPC response".into(),
            }),
        }
    }

    async fn read_stream(
        &self,
        resp: reqwest::Response,
        want: Option<&Id>,
        session: Option<&str>,
        version: ProtocolVersion,
        events: Option<mpsc::Sender<CallEvent>>,
        auth: &Auth,
    ) -> Result<Message, BackendError> {
        let mut resp = resp;
        let mut last_event_id: Option<String> = None;
        let mut retry = Duration::ZERO;
        for attempt in 0..=MAX_STREAM_RESUMES {
            let mut decoder = sse::Decoder::new();
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BackendError::Failed {
                    server: self.name.clone(),
                    reason: describe_reqwest(&e),
                })?;
                let decoded = decoder.feed(&chunk);
                if decoder.buffered() > crate::backend::MAX_MESSAGE_BYTES {
                    return Err(self.too_large());
                }
                for ev in decoded {
                    if let Some(id) = ev.id {
                        last_event_id = Some(id);
                    }
                    if let Some(ms) = ev.retry {
                        retry = Duration::from_millis(ms.min(30_000));
                    }
                    if ev.data.is_empty() {
                        continue;
                    }
                    let Ok(m) = Message::parse(ev.data.as_bytes()) else {
                        tracing::warn!(server = %self.name, "server sent an SSE event that is not JSON-RPC");
                        continue;
                    };
                    match m.kind() {
                        MessageKind::Result | MessageKind::Error if m.id.as_ref() == want => {
                            return Ok(m);
                        }
                        MessageKind::Result | MessageKind::Error => {}
                        MessageKind::Notification => self.relay.on_notification(m, events.as_ref()),
                        MessageKind::Request => {
                            self.relay
                                .on_server_request(m, session, version, events.as_ref(), auth)
                        }
                    }
                }
            }
            // The stream ended before the response. A 2025-11-25 server may do that on purpose
            // (SSE polling, SEP-1699): come back after `retry` with Last-Event-ID.
            let (Some(session), Some(last)) = (session, last_event_id.as_deref()) else {
                break;
            };
            // The first time, come back at once: some servers keep a closed stream's events only
            // while the request is still running (rmcp drops them once it completes).
            if attempt > 0 {
                tokio::time::sleep(retry).await;
            }
            let mut get = self
                .client
                .get(self.url.clone())
                .header(ACCEPT, "text/event-stream")
                .header(h::SESSION_ID, session)
                .header(h::PROTOCOL_VERSION, version.as_str())
                .header(h::LAST_EVENT_ID, last);
            if let Some((name, value)) = auth {
                get = get.header(name, value);
            }
            let r = get.send().await.map_err(|e| BackendError::Failed {
                server: self.name.clone(),
                reason: describe_reqwest(&e),
            })?;
            if !r.status().is_success() {
                break;
            }
            resp = r;
        }
        Err(BackendError::Failed {
            server: self.name.clone(),
            reason: "the response stream ended without a response".into(),
        })
    }
}

pub(super) fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

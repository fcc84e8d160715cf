//! Server-initiated traffic of remote servers (notifications and server→client requests,
//! answered by POSTing the client's reply back) and the cancellation of abandoned calls.

use std::sync::Arc;

use gatehouse_wire::{Id, Message, ProtocolVersion, headers as h};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::HttpBackend;
use crate::backend::CallEvent;
use crate::notify::ChangeHub;

/// What server-initiated traffic needs, detached from the backend so stream readers running
/// on their own tasks can use it.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    pub(super) name: String,
    pub(super) client: reqwest::Client,
    pub(super) url: reqwest::Url,
    pub(super) hub: Arc<ChangeHub>,
}

impl Relay {
    pub(super) fn on_notification(&self, m: Message, events: Option<&mpsc::Sender<CallEvent>>) {
        match m.method() {
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed"
            | "notifications/resources/updated" => self.hub.publish(&self.name, m),
            // Outside a call, a task notification goes to the task's creator (the front door
            // knows who that is); inside one it belongs to that call.
            "notifications/tasks" | "notifications/tasks/status" if events.is_none() => {
                self.hub.publish(&self.name, m)
            }
            _ => {
                if let Some(ev) = events {
                    let _ = ev.try_send(CallEvent::Notification(m));
                }
            }
        }
    }

    pub(super) fn on_server_request(
        &self,
        m: Message,
        session: Option<&str>,
        version: ProtocolVersion,
        events: Option<&mpsc::Sender<CallEvent>>,
        auth: &super::Auth,
    ) {
        let server_id = m.id.clone().unwrap_or(Id::Null);
        let (tx, rx) = oneshot::channel();
        let delivered = if m.method() == "ping" {
            let _ = tx.send(Message::result(Id::Null, &json!({})));
            true
        } else {
            events.is_some_and(|ev| {
                ev.try_send(CallEvent::ServerRequest {
                    request: m,
                    reply: tx,
                })
                .is_ok()
            })
        };
        let client = self.client.clone();
        let url = self.url.clone();
        let session = session.map(str::to_string);
        let auth = auth.clone();
        tokio::spawn(async move {
            let answered = tokio::time::timeout(crate::backend::CLIENT_ANSWER_TIMEOUT, rx).await;
            let mut answer = match (delivered, answered) {
                (true, Ok(Ok(a))) => a,
                _ => Message::error(
                    Id::Null,
                    gatehouse_wire::ErrorObject::new(
                        gatehouse_wire::codes::INTERNAL_ERROR,
                        "the client did not answer",
                    ),
                ),
            };
            answer.id = Some(server_id);
            let mut req = client
                .post(url)
                .header(ACCEPT, "application/json, text/event-stream")
                .header(CONTENT_TYPE, "application/json")
                .header(h::PROTOCOL_VERSION, version.as_str());
            if let Some(s) = session {
                req = req.header(h::SESSION_ID, s);
            }
            if let Some((name, value)) = auth {
                req = req.header(name, value);
            }
            let _ = req.body(answer.to_bytes()).send().await;
        });
    }
}

pub(super) struct CancelGuard<'a> {
    pub(super) backend: &'a HttpBackend,
    pub(super) session: Option<String>,
    pub(super) version: ProtocolVersion,
    pub(super) id: i64,
    pub(super) armed: bool,
    pub(super) auth: super::Auth,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let msg = Message::notification(
            "notifications/cancelled",
            Some(json!({"requestId": self.id, "reason": "cancelled by the client"})),
        );
        let mut req = self
            .backend
            .client
            .post(self.backend.url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .header(h::PROTOCOL_VERSION, self.version.as_str());
        if let Some(s) = &self.session {
            req = req.header(h::SESSION_ID, s);
        }
        if let Some((name, value)) = &self.auth {
            req = req.header(name, value);
        }
        let req = req.body(msg.to_bytes());
        tokio::spawn(async move {
            let _ = req.send().await;
        });
    }
}

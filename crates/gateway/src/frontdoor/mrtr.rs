//! MRTR (2026-07-28 multi-round-trip requests) for stateless clients: a member's
//! server→client request becomes an `input_required` result with a sealed `requestState`, the
//! backend call waits parked on this process, and the client's retry — bound to the same
//! principal, virtual server, method, target and arguments — resumes it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_wire::{Era, ErrorObject, Id, Message, capability, codes};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::seal::Keyring;

/// Purpose bound into sealed request states.
const STATE_PURPOSE: &str = "gatehouse/request-state/v1";
/// Marks request states the gateway minted (others belong to a backend and are relayed).
pub const STATE_PREFIX: &str = "gatehouse:";
/// Most calls parked at once on this process.
const MAX_PARKED: usize = 10_000;
/// How long a parked call waits for the client's retry.
const PARK_TTL: Duration = Duration::from_secs(600);

/// The binding of a request for MRTR: a retry resumes a parked call only if the same principal
/// asks for the same thing on the same virtual server.
pub fn request_scope(vs_path: &str, principal: &str, msg: &Message) -> String {
    use sha2::Digest;
    let arguments = msg
        .params
        .as_ref()
        .and_then(|p| p.get("arguments"))
        .map(|a| a.to_string())
        .unwrap_or_default();
    let digest = hex::encode(sha2::Sha256::digest(arguments.as_bytes()));
    format!(
        "{vs_path} {principal} {} {} {digest}",
        msg.method(),
        msg.target_name().unwrap_or("")
    )
}

/// What an MRTR round is bound to: the client's request id, and the scope a retry must match
/// ([`request_scope`]).
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The id of the request the round answers.
    pub client_id: &'a Id,
    /// The request's binding.
    pub scope: &'a str,
}

/// A parked call answering, once resumed, to the retry's id.
pub trait Resumable {
    /// The call now answers to `id`.
    fn answer_to(&mut self, id: Id);
}

/// Turns server→client requests into an MRTR `input_required` result for a stateless
/// client, parking `call` (the running backend call) until the client retries.
pub(super) fn park<S: Resumable>(
    round: Round<'_>,
    call: S,
    requests: Vec<(Message, oneshot::Sender<Message>)>,
    keys: &Keyring,
    parked: &Parked<S>,
) -> Message {
    let mut input_requests = Map::new();
    let mut replies = HashMap::new();
    for (i, (req, reply)) in requests.into_iter().enumerate() {
        let key = format!("input-{}", i + 1);
        input_requests.insert(
            key.clone(),
            json!({"method": req.method(), "params": req.params.clone().unwrap_or(json!({}))}),
        );
        replies.insert(key, reply);
    }
    let handle = parked.insert(ParkedCall {
        stream: call,
        replies,
        created: Instant::now(),
    });
    let token = RequestState {
        call: Some(handle),
        scope: round.scope.to_string(),
    }
    .seal(keys);
    Message::result(
        round.client_id.clone(),
        &json!({"resultType": "input_required", "inputRequests": input_requests, "requestState": token}),
    )
}

/// A stateless client that can open URLs is asked to authorize Gatehouse at a server (a
/// `user_oauth` credential) with an MRTR URL elicitation instead of the `-32042` error; its
/// retry runs the request again.
pub(super) fn authorize_round(
    round: Round<'_>,
    era: Era,
    client_caps: &Value,
    reply: &Message,
    keys: &Keyring,
) -> Option<Message> {
    if era != Era::Stateless || !capability::declared(client_caps, ("elicitation", Some("url"))) {
        return None;
    }
    let error = reply
        .error
        .as_ref()
        .filter(|e| e.code == crate::backend::URL_ELICITATION_REQUIRED)?;
    let elicitation = error.data.as_ref()?.get("elicitations")?.get(0)?;
    let token = RequestState {
        call: None,
        scope: round.scope.to_string(),
    }
    .seal(keys);
    let request = json!({"method": "elicitation/create", "params": {
        "mode": "url", "url": elicitation.get("url")?, "message": elicitation.get("message")?}});
    Some(Message::result(
        round.client_id.clone(),
        &json!({"resultType": "input_required", "inputRequests": {"authorize": request}, "requestState": token}),
    ))
}

#[derive(Serialize, Deserialize)]
struct RequestState {
    /// The parked call; `None` when nothing is parked and the retry runs the request again
    /// (the gateway's own input requests, such as "authorize at this URL").
    call: Option<u64>,
    scope: String,
}

impl RequestState {
    fn seal(&self, keys: &Keyring) -> String {
        let plaintext = serde_json::to_vec(self).expect("state serialises");
        format!("{STATE_PREFIX}{}", keys.seal(STATE_PURPOSE, &plaintext))
    }
}

/// What a retry carrying a gateway `requestState` resumes.
pub enum Resumed<S> {
    /// The parked backend call, now answering to the retry.
    Parked(S),
    /// Nothing was parked: run the request again (without `requestState`/`inputResponses`).
    /// `declined` when the user declined the gateway's input request.
    Again {
        /// The user answered `decline` or `cancel`.
        declined: bool,
    },
}

/// A backend call waiting for a stateless client's `inputResponses`.
#[derive(Debug)]
pub struct ParkedCall<S> {
    stream: S,
    replies: HashMap<String, oneshot::Sender<Message>>,
    created: Instant,
}

/// Calls parked by MRTR, held by the process that serves them.
#[derive(Debug)]
pub struct Parked<S> {
    calls: Mutex<HashMap<u64, ParkedCall<S>>>,
}

impl<S> Default for Parked<S> {
    fn default() -> Self {
        Parked {
            calls: Mutex::default(),
        }
    }
}

impl<S: Resumable> Parked<S> {
    /// Drops parked calls whose client never came back.
    pub fn sweep(&self) {
        self.calls
            .lock()
            .expect("parked lock")
            .retain(|_, c| c.created.elapsed() < PARK_TTL);
    }

    fn insert(&self, call: ParkedCall<S>) -> u64 {
        // Random, so a parked call cannot be guessed even apart from the sealed state.
        let id = rand::random::<u64>();
        let mut calls = self.calls.lock().expect("parked lock");
        calls.retain(|_, c| c.created.elapsed() < PARK_TTL);
        if calls.len() >= MAX_PARKED {
            // Refuse rather than grow: the oldest parked call is dropped (its backend call ends).
            if let Some(oldest) = calls.iter().min_by_key(|(_, c)| c.created).map(|(k, _)| *k) {
                calls.remove(&oldest);
            }
        }
        calls.insert(id, call);
        id
    }

    /// Resumes a parked call with the client's retry: delivers `inputResponses` to the waiting
    /// backend requests and returns the call, now answering to the retry's id.
    pub fn resume(
        &self,
        keys: &Keyring,
        token: &str,
        retry: &Message,
        vs_path: &str,
        principal: &str,
    ) -> Result<Resumed<S>, ErrorObject> {
        let invalid =
            || ErrorObject::new(codes::INVALID_PARAMS, "requestState is invalid or expired");
        let sealed = token.strip_prefix(STATE_PREFIX).ok_or_else(invalid)?;
        let state: RequestState = keys
            .open(STATE_PURPOSE, sealed)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(invalid)?;
        if state.scope != request_scope(vs_path, principal, retry) {
            return Err(ErrorObject::new(
                codes::INVALID_PARAMS,
                "requestState belongs to a different request",
            ));
        }
        let responses = retry
            .params
            .as_ref()
            .and_then(|p| p.get("inputResponses"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(parked) = state.call else {
            let action = responses
                .values()
                .next()
                .and_then(|r| r.get("action"))
                .and_then(Value::as_str);
            return Ok(Resumed::Again {
                declined: matches!(action, Some("decline" | "cancel")),
            });
        };
        let mut call = self
            .calls
            .lock()
            .expect("parked lock")
            .remove(&parked)
            .ok_or_else(invalid)?;
        if call.created.elapsed() > PARK_TTL {
            return Err(invalid());
        }
        for (key, reply) in call.replies.drain() {
            let answer = match responses.get(&key) {
                Some(v) => Message::result(Id::Null, v),
                None => Message::error(
                    Id::Null,
                    ErrorObject::new(
                        codes::INVALID_PARAMS,
                        format!("no input response for {key}"),
                    ),
                ),
            };
            let _ = reply.send(answer);
        }
        call.stream.answer_to(retry.id.clone().unwrap_or(Id::Null));
        Ok(Resumed::Parked(call.stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Value) -> Message {
        Message::request(
            Id::Number(1),
            "tools/call",
            Some(json!({"name": name, "arguments": args})),
        )
    }

    #[test]
    fn request_scope_binds_server_target_and_arguments() {
        let base = request_scope("/mcp", "anonymous", &call("delete", json!({"id": 1})));
        let mut retry = call("delete", json!({"id": 1}));
        retry.params.as_mut().unwrap()["inputResponses"] = json!({"k": {}});
        assert_eq!(
            request_scope("/mcp", "anonymous", &retry),
            base,
            "a retry with answers matches"
        );
        assert_ne!(
            request_scope("/mcp", "anonymous", &call("delete", json!({"id": 2}))),
            base
        );
        assert_ne!(
            request_scope("/mcp", "anonymous", &call("harmless", json!({"id": 1}))),
            base
        );
        assert_ne!(
            request_scope("/other", "anonymous", &call("delete", json!({"id": 1}))),
            base
        );
        assert_ne!(
            request_scope(
                "/mcp",
                "https://idp#mallory",
                &call("delete", json!({"id": 1}))
            ),
            base,
            "another principal"
        );
    }
}

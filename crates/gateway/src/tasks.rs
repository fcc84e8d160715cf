//! Task ids (2025-11-25 experimental tasks and the SEP-2663 `io.modelcontextprotocol/tasks`
//! extension) as clients see them: sealed handles bound to the principal and virtual server
//! that created the task, naming the member that runs it.
//!
//! A member keeps its own task ids, often in one store for every caller. The gateway never
//! shows them: each `taskId` leaving the gateway becomes a handle sealed (deterministically, so
//! the id in a result equals the id in later notifications) with the caller and the virtual
//! server as associated data. Any replica holding the key opens a handle without a shared
//! store; a handle sealed for another principal, guessed or replayed, does not open and gets
//! the same error as an id that never existed.
//!
//! What a handle cannot tell — which of a member's tasks belong to a caller, for `tasks/list`
//! and for task notifications that arrive outside any call — comes from [`TaskOwners`], a
//! bounded record of the tasks created through this process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_wire::{ErrorObject, Id, Message, codes};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::seal::Keyring;

/// The 2026-07-28 tasks extension (SEP-2663).
pub const EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// Marks task ids the gateway minted.
pub const HANDLE_PREFIX: &str = "gatehouse-task.";
/// Purpose bound into sealed task handles.
const PURPOSE: &str = "gatehouse/task/v1";
/// `_meta` key that relates a message to a task (2025-11-25).
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// Most task owners remembered on this process (oldest forgotten first).
const MAX_OWNERS: usize = 100_000;
/// How long an owner is remembered.
const OWNER_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Who a task belongs to: the caller and the virtual server it was created through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskScope {
    /// The principal's key.
    pub principal: String,
    /// The virtual server's path.
    pub vs_path: String,
}

impl TaskScope {
    /// The scope of `ctx`'s caller on `vs`.
    pub fn of(vs: &crate::snapshot::VirtualServer, ctx: &crate::context::CallCtx) -> TaskScope {
        TaskScope {
            principal: ctx.client.caller.principal.key().to_string(),
            vs_path: vs.path.clone(),
        }
    }

    fn aad(&self) -> String {
        format!("{PURPOSE}\n{}\n{}", self.vs_path, self.principal)
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The member server's name.
    s: String,
    /// The member's own task id.
    t: String,
}

/// The error for a task id that does not name a task of this caller.
pub fn not_found() -> ErrorObject {
    ErrorObject::new(codes::INVALID_PARAMS, "Task not found")
}

/// The handle a caller sees for `server`'s task `task_id`.
pub fn seal(keys: &Keyring, scope: &TaskScope, server: &str, task_id: &str) -> String {
    let plain = serde_json::to_vec(&Sealed {
        s: server.to_string(),
        t: task_id.to_string(),
    })
    .expect("task handle serialises");
    format!(
        "{HANDLE_PREFIX}{}",
        keys.seal_deterministic(&scope.aad(), &plain)
    )
}

/// The member server and its task id behind `handle`, if `scope` created it.
pub fn open(keys: &Keyring, scope: &TaskScope, handle: &str) -> Option<(String, String)> {
    let sealed = handle.strip_prefix(HANDLE_PREFIX)?;
    let plain = keys.open(&scope.aad(), sealed).ok()?;
    let s: Sealed = serde_json::from_slice(&plain).ok()?;
    Some((s.s, s.t))
}

/// Every place a task id travels in a result or notification: `taskId` at the top (SEP-2663
/// results and notifications, 2025-11-25 `tasks/get`), under `task` (2025-11-25
/// `CreateTaskResult`), in `tasks[]` (`tasks/list`) and in the related-task `_meta`.
fn task_ids(v: &mut Value) -> Vec<&mut Value> {
    let Value::Object(o) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut meta_ids = None;
    for (k, field) in o.iter_mut() {
        match k.as_str() {
            "taskId" => out.push(field),
            "task" => {
                if let Some(id) = field.get_mut("taskId") {
                    out.push(id);
                }
            }
            "tasks" => {
                if let Value::Array(items) = field {
                    out.extend(items.iter_mut().filter_map(|t| t.get_mut("taskId")));
                }
            }
            "_meta" => {
                meta_ids = field
                    .get_mut(RELATED_TASK)
                    .and_then(|r| r.get_mut("taskId"))
            }
            _ => {}
        }
    }
    out.extend(meta_ids);
    out
}

/// Replaces every member task id in `v` by the caller's handle. Returns the member ids seen.
fn seal_ids(keys: &Keyring, scope: &TaskScope, server: &str, v: &mut Value) -> Vec<String> {
    let mut seen = Vec::new();
    for id in task_ids(v) {
        if let Value::String(s) = id {
            seen.push(s.clone());
            *s = seal(keys, scope, server, s);
        }
    }
    seen
}

/// Rewrites the task ids in a member's reply to `scope`'s handles, and remembers who owns the
/// tasks it names (a reply reaches only the caller whose request it answers).
pub fn seal_reply(
    keys: &Keyring,
    owners: &TaskOwners,
    scope: &TaskScope,
    server: &str,
    reply: &mut Message,
) {
    if !reply
        .result
        .as_ref()
        .is_some_and(|r| r.get().contains("\"taskId\""))
    {
        return;
    }
    let Some(mut v) = reply.result_value() else {
        return;
    };
    let seen = seal_ids(keys, scope, server, &mut v);
    if seen.is_empty() {
        return;
    }
    for id in seen {
        owners.record(server, &id, scope);
    }
    *reply = Message::result(reply.id.clone().unwrap_or(Id::Null), &v);
}

/// Rewrites the task ids of a notification to `scope`'s handles.
pub fn seal_notification(keys: &Keyring, scope: &TaskScope, server: &str, msg: &mut Message) {
    if let Some(p) = msg.params.as_mut() {
        seal_ids(keys, scope, server, p);
    }
}

/// The member task id a task notification from a server is about.
pub fn notified_task(msg: &Message) -> Option<&str> {
    let p = msg.params.as_ref()?;
    p.get("taskId")
        .or_else(|| p.get("_meta")?.get(RELATED_TASK)?.get("taskId"))
        .and_then(Value::as_str)
}

/// True for the server notifications that report on a task.
pub fn is_task_notification(method: &str) -> bool {
    matches!(method, "notifications/tasks" | "notifications/tasks/status")
}

/// The owners of tasks created through this process, bounded in number and age.
#[derive(Debug, Default)]
pub struct TaskOwners {
    inner: Mutex<Owners>,
}

#[derive(Debug, Default)]
struct Owners {
    by_task: HashMap<(String, String), (TaskScope, Instant)>,
    order: VecDeque<((String, String), Instant)>,
}

impl TaskOwners {
    /// Records that `scope` owns `server`'s task `task_id`.
    pub fn record(&self, server: &str, task_id: &str, scope: &TaskScope) {
        let key = (server.to_string(), task_id.to_string());
        let now = Instant::now();
        let mut o = self.inner.lock().expect("task owners lock");
        o.expire(now);
        if o.by_task.contains_key(&key) {
            return;
        }
        if o.by_task.len() >= MAX_OWNERS
            && let Some((oldest, _)) = o.order.pop_front()
        {
            o.by_task.remove(&oldest);
        }
        o.order.push_back((key.clone(), now));
        o.by_task.insert(key, (scope.clone(), now));
    }

    /// The servers where `scope` created tasks through this process (`tasks/list` asks
    /// only those: a member holding none of the caller's tasks is not asked at all).
    pub fn servers_of(&self, scope: &TaskScope) -> std::collections::BTreeSet<String> {
        let o = self.inner.lock().expect("task owners lock");
        o.by_task
            .iter()
            .filter(|(_, (s, at))| s == scope && at.elapsed() < OWNER_TTL)
            .map(|((server, _), _)| server.clone())
            .collect()
    }

    /// Who owns `server`'s task `task_id`, if it was created through this process.
    pub fn owner(&self, server: &str, task_id: &str) -> Option<TaskScope> {
        let o = self.inner.lock().expect("task owners lock");
        o.by_task
            .get(&(server.to_string(), task_id.to_string()))
            .filter(|(_, at)| at.elapsed() < OWNER_TTL)
            .map(|(s, _)| s.clone())
    }
}

impl Owners {
    fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            if now.duration_since(*at) < OWNER_TTL {
                break;
            }
            let key = key.clone();
            self.order.pop_front();
            self.by_task.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(who: &str) -> TaskScope {
        TaskScope {
            principal: who.into(),
            vs_path: "/mcp".into(),
        }
    }

    #[test]
    fn a_handle_opens_only_for_its_creator_and_virtual_server() {
        let keys = Keyring::ephemeral();
        let h = seal(&keys, &scope("alice"), "jobs", "task-1");
        assert_eq!(h, seal(&keys, &scope("alice"), "jobs", "task-1"), "stable");
        assert_eq!(
            open(&keys, &scope("alice"), &h),
            Some(("jobs".into(), "task-1".into()))
        );
        assert_eq!(open(&keys, &scope("bob"), &h), None);
        let other_vs = TaskScope {
            vs_path: "/other".into(),
            ..scope("alice")
        };
        assert_eq!(open(&keys, &other_vs, &h), None);
        assert_eq!(open(&keys, &scope("alice"), "task-1"), None, "a bare id");
        assert_eq!(open(&Keyring::ephemeral(), &scope("alice"), &h), None);
    }

    #[test]
    fn every_shape_of_task_id_is_sealed_and_owned() {
        let keys = Keyring::ephemeral();
        let owners = TaskOwners::default();
        let alice = scope("alice");
        for result in [
            json!({"resultType": "task", "taskId": "t1", "status": "working"}),
            json!({"task": {"taskId": "t1", "status": "working"}}),
            json!({"tasks": [{"taskId": "t1"}], "nextCursor": null}),
            json!({"content": [], "_meta": {RELATED_TASK: {"taskId": "t1"}}}),
        ] {
            let mut reply = Message::result(Id::Number(1), &result);
            seal_reply(&keys, &owners, &alice, "jobs", &mut reply);
            let text = String::from_utf8(reply.to_bytes()).unwrap();
            assert!(!text.contains("\"t1\""), "{text}");
            assert!(text.contains(&seal(&keys, &alice, "jobs", "t1")), "{text}");
        }
        assert_eq!(owners.owner("jobs", "t1"), Some(alice.clone()));
        assert_eq!(owners.owner("other", "t1"), None);
        let mut n = Message::notification(
            "notifications/tasks",
            Some(json!({"taskId": "t1", "status": "completed"})),
        );
        assert_eq!(notified_task(&n), Some("t1"));
        seal_notification(&keys, &alice, "jobs", &mut n);
        assert_eq!(
            n.params.unwrap()["taskId"],
            json!(seal(&keys, &alice, "jobs", "t1"))
        );
    }
}

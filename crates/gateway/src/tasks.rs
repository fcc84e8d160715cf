//! Task ids of the tasks extension (`io.modelcontextprotocol/tasks`) across members.
//!
//! A task lives on the member that created it, but `tasks/get`, `tasks/update` and
//! `tasks/cancel` name only the task id. With one member the id is relayed as is; with several,
//! the gateway qualifies it as `<server>:<id>` on the way out (server names cannot contain `:`)
//! and routes and unqualifies it on the way in.

use gatehouse_wire::{ErrorObject, Id, Message, codes};
use serde_json::Value;

use crate::snapshot::VirtualServer;

/// True for the methods that address an existing task.
pub fn is_task_method(method: &str) -> bool {
    matches!(method, "tasks/get" | "tasks/update" | "tasks/cancel")
}

/// Rewrites a result's `taskId` to the qualified form, when the virtual server has several members.
pub fn qualify(vs: &VirtualServer, reply: &mut Message, server: &str) {
    if vs.members.len() < 2
        || !reply
            .result
            .as_ref()
            .is_some_and(|r| r.get().contains("\"taskId\""))
    {
        return;
    }
    let Some(mut v) = reply.result_value() else {
        return;
    };
    if let Some(Value::String(id)) = v.get_mut("taskId") {
        *id = format!("{server}:{id}");
        *reply = Message::result(reply.id.clone().unwrap_or(Id::Null), &v);
    }
}

/// Picks the member a task request goes to and gives the request the member's own task id.
pub fn route(vs: &VirtualServer, msg: &mut Message) -> Result<usize, ErrorObject> {
    if vs.members.len() == 1 {
        return Ok(0);
    }
    let unknown = || ErrorObject::new(codes::INVALID_PARAMS, "unknown taskId");
    let params = msg.params.as_mut().ok_or_else(unknown)?;
    let qualified = params
        .get("taskId")
        .and_then(Value::as_str)
        .ok_or_else(unknown)?;
    let (server, id) = qualified.split_once(':').ok_or_else(unknown)?;
    let member = vs
        .members
        .iter()
        .position(|m| m.server.config.name == server)
        .ok_or_else(unknown)?;
    params["taskId"] = Value::from(id);
    Ok(member)
}

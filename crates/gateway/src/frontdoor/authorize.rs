//! The front door's authorization step, the same for every transport: the table's decision
//! ([`crate::methods::authorize`]), then the step-up scope check of the tool it resolved (so
//! the name is resolved once per request).

use gatehouse_policy::ItemKind;
use gatehouse_wire::Message;

use super::request::{Refusal, RequestCtx};
use crate::context::CallCtx;
use crate::methods::{self, Route};

/// Decides `msg` for the caller of `cx` in the view `ctx`.
pub(super) async fn authorize(
    cx: &RequestCtx,
    ctx: &CallCtx,
    msg: Message,
) -> Result<Route, Refusal> {
    let route = methods::authorize(&cx.gw.keys, &cx.gw.tasks, &cx.vs, ctx, msg).await;
    if let Route::Member {
        item: Some(item), ..
    } = &route
        && item.kind == ItemKind::Tool
    {
        super::authn::check_tool_scopes(cx, item)?;
    }
    Ok(route)
}

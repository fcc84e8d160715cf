//! The endpoints of `user_oauth` credentials.
//!
//! - `GET /oauth/callback`: the browser comes back here from a server's authorization server
//!   with a code; Gatehouse exchanges it and stores the user's refresh token. No bearer token is
//!   needed: the sealed `state` (bound to the user who started the flow, with its PKCE
//!   verifier) is the proof.
//! - `GET <endpoint>/.gatehouse/authorize/<server>`: for an authenticated caller, whether they
//!   have authorized Gatehouse at a member server and, if not (or with `?force=1`), the URL that
//!   starts it. `gatehouse login` uses it.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_identity::Caller;
use gatehouse_identity::outbound::UserOauth;
use serde_json::json;

use crate::Gateway;
use crate::snapshot::VirtualServer;

/// Path segment of the authorize endpoint under a virtual server's path.
pub(super) const AUTHORIZE_SEGMENT: &str = "/.gatehouse/authorize/";

fn json_reply(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Handles `GET <endpoint>/.gatehouse/authorize/<server>[?force=1]`.
pub(super) async fn authorize(
    vs: &VirtualServer,
    server: &str,
    query: Option<&str>,
    caller: &Caller,
) -> Response {
    if caller.principal.kind == gatehouse_identity::PrincipalKind::Anonymous {
        return json_reply(
            StatusCode::FORBIDDEN,
            json!({"error": "this endpoint has no auth: there is no user to authorize for"}),
        );
    }
    let flow = vs
        .members
        .iter()
        .find(|m| m.server.config.name == server)
        .and_then(|m| m.server.credentials.as_ref())
        .and_then(|c| c.user_oauth().cloned());
    let Some(flow) = flow else {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("{server} is not a member of this endpoint with user_oauth credentials")}),
        );
    };
    let force = query.is_some_and(|q| q.split('&').any(|kv| kv == "force=1"));
    let authorized = match flow.is_authorized(caller).await {
        Ok(a) => a,
        Err(e) => {
            return json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            );
        }
    };
    if authorized && !force {
        return json_reply(
            StatusCode::OK,
            json!({"server": server, "authorized": true}),
        );
    }
    let p = &caller.principal;
    match flow.authorization_url_for(&p.issuer, &p.subject).await {
        Ok(url) => json_reply(
            StatusCode::OK,
            json!({"server": server, "authorized": authorized, "url": url}),
        ),
        Err(e) => json_reply(StatusCode::BAD_GATEWAY, json!({"error": e.to_string()})),
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>{0}</title><h1>{0}</h1><p>{1}</p>",
        escape(title),
        escape(text)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Handles `GET /oauth/callback?code=…&state=…` (or `?error=…`).
pub(super) async fn callback(gw: &Gateway, query: Option<&str>) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(error) = get("error") {
        let detail = get("error_description").unwrap_or("");
        return page(
            StatusCode::BAD_REQUEST,
            "Authorization was not granted",
            &format!("The authorization server answered {error}. {detail}"),
        );
    }
    let (Some(code), Some(state)) = (get("code"), get("state")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid callback",
            "The request has no code and state.",
        );
    };
    let Some(vault) = gw.vault() else {
        return page(
            StatusCode::NOT_FOUND,
            "Not available",
            "This gateway has no credential vault.",
        );
    };
    let snapshot = gw.snapshot();
    let flow = UserOauth::state_server(vault, state).and_then(|server| {
        snapshot
            .servers
            .get(&server)
            .and_then(|h| h.credentials.as_ref())
            .and_then(|c| c.user_oauth().cloned())
            .map(|f| (server, f))
    });
    let Some((server, flow)) = flow else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid or expired request",
            "Start the authorization again from your MCP client.",
        );
    };
    match flow.complete(state, code).await {
        Ok((_, subject)) => {
            tracing::info!(server = %crate::observe::shown(&server), subject = %crate::observe::shown(&subject), "user authorized Gatehouse at a server");
            page(
                StatusCode::OK,
                "Gatehouse is authorized",
                &format!(
                    "Gatehouse can now call {server} for {subject}. You can close this window and retry in your MCP client."
                ),
            )
        }
        Err(e) => {
            tracing::warn!(server = %crate::observe::shown(&server), error = %crate::observe::shown(&e), "completing a user authorization failed");
            page(
                StatusCode::BAD_GATEWAY,
                "Authorization failed",
                &e.to_string(),
            )
        }
    }
}

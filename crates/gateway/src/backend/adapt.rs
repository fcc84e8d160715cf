//! Era adaptation of outgoing requests: what `_meta` a backend of each era must (not) see.

use gatehouse_wire::{Era, ProtocolVersion, meta};
use serde_json::{Value, json};

use super::ClientContext;

/// Name and version Gatehouse reports when it is the client of a backend.
pub fn gateway_client_info() -> Value {
    json!({"name": "gatehouse", "version": env!("CARGO_PKG_VERSION")})
}

/// Capabilities Gatehouse declares to a handshake-era backend.
///
/// A shared backend connection serves many clients, so the gateway declares everything it can
/// relay; a server→client request for a capability the calling client lacks is refused then.
pub fn declared_client_capabilities() -> Value {
    json!({"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {"listChanged": true}})
}

/// The `initialize` params Gatehouse sends to a handshake-era backend.
pub fn initialize_params(version: ProtocolVersion) -> Value {
    json!({
        "protocolVersion": version.as_str(),
        "capabilities": declared_client_capabilities(),
        "clientInfo": gateway_client_info(),
    })
}

/// The `server/discover` params Gatehouse sends when probing a backend's era.
pub fn discover_params() -> Value {
    let mut p = json!({});
    stamp_modern(&mut p, &ClientContext::default());
    p
}

/// Rewrites `params` for a backend of `era`: stateless backends get the per-request `_meta`
/// fields; handshake backends lose them.
pub fn for_era(era: Era, params: Option<Value>, client: &ClientContext) -> Option<Value> {
    match era {
        Era::Stateless => {
            let mut p = params.unwrap_or_else(|| json!({}));
            stamp_modern(&mut p, client);
            Some(p)
        }
        Era::Handshake => params.map(|mut p| {
            meta::strip_protocol_keys(&mut p);
            p
        }),
    }
}

fn stamp_modern(params: &mut Value, client: &ClientContext) {
    let Some(m) = meta::get_mut(params) else {
        return;
    };
    // A stateless client's own _meta already says all of this: relay it untouched.
    if m.get(meta::PROTOCOL_VERSION).and_then(Value::as_str)
        == Some(ProtocolVersion::LATEST.as_str())
        && m.get(meta::CLIENT_CAPABILITIES)
            .is_some_and(Value::is_object)
    {
        return;
    }
    m.insert(
        meta::PROTOCOL_VERSION.into(),
        Value::from(ProtocolVersion::LATEST.as_str()),
    );
    let caps = if client.capabilities.is_object() {
        (*client.capabilities).clone()
    } else {
        json!({})
    };
    m.insert(meta::CLIENT_CAPABILITIES.into(), caps);
    let info = if client.client_info.is_object() {
        (*client.client_info).clone()
    } else {
        gateway_client_info()
    };
    m.insert(meta::CLIENT_INFO.into(), info);
    if let Some(level) = &client.log_level {
        m.entry(meta::LOG_LEVEL)
            .or_insert_with(|| Value::from(level.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn modern_gets_meta_and_legacy_loses_it() {
        let client = ClientContext {
            capabilities: Arc::new(json!({"elicitation": {}})),
            ..Default::default()
        };
        let p = for_era(Era::Stateless, Some(json!({"name": "echo"})), &client).unwrap();
        assert_eq!(p["_meta"][meta::PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(
            p["_meta"][meta::CLIENT_CAPABILITIES],
            json!({"elicitation": {}})
        );
        let back = for_era(Era::Handshake, Some(p), &client).unwrap();
        assert_eq!(back, json!({"name": "echo"}));
    }
}

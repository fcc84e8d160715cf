//! Which client capability a server→client request needs, and whether a client declared it.

use serde_json::{Value, json};

/// The capability a server→client request needs: `(capability, sub-capability)`, e.g.
/// `("elicitation", Some("url"))` for a URL-mode elicitation.
pub fn required_by(
    method: &str,
    params: Option<&Value>,
) -> Option<(&'static str, Option<&'static str>)> {
    match method {
        "elicitation/create" => {
            let url_mode =
                params.and_then(|p| p.get("mode")).and_then(Value::as_str) == Some("url");
            Some(("elicitation", url_mode.then_some("url")))
        }
        "sampling/createMessage" => Some(("sampling", None)),
        "roots/list" => Some(("roots", None)),
        _ => None,
    }
}

/// True when `capabilities` (a client's declared capabilities) include what is required.
/// A bare `elicitation: {}` means form mode only, per the 2025-11-25 rules.
pub fn declared(capabilities: &Value, required: (&str, Option<&str>)) -> bool {
    let Some(cap) = capabilities.get(required.0) else {
        return false;
    };
    match required.1 {
        None => true,
        Some(sub) => cap.get(sub).is_some(),
    }
}

/// The `data` of a `-32021` MissingRequiredClientCapability error.
pub fn missing_error_data(required: (&str, Option<&str>)) -> Value {
    let inner = match required.1 {
        Some(sub) => json!({ sub: {} }),
        None => json!({}),
    };
    json!({ "requiredCapabilities": { required.0: inner } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_requirements() {
        assert_eq!(
            required_by("sampling/createMessage", None),
            Some(("sampling", None))
        );
        let url = json!({"mode": "url"});
        assert_eq!(
            required_by("elicitation/create", Some(&url)),
            Some(("elicitation", Some("url")))
        );
        assert!(required_by("ping", None).is_none());
        let caps = json!({"elicitation": {}, "roots": {"listChanged": true}});
        assert!(declared(&caps, ("elicitation", None)));
        assert!(!declared(&caps, ("elicitation", Some("url"))));
        assert!(declared(&caps, ("roots", None)));
        assert!(!declared(&caps, ("sampling", None)));
        assert_eq!(
            missing_error_data(("sampling", None)),
            json!({"requiredCapabilities": {"sampling": {}}})
        );
    }
}

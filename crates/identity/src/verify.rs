//! Token validation: signed JWTs against an issuer's keys, opaque tokens by RFC 7662
//! introspection. Each failure has a [`Reason`] for the audit log; the caller only learns
//! `invalid_token`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use gatehouse_config::ClaimMapping;

use crate::jwks::{Jwks, KeyLookup};
use crate::principal::Principal;

/// Why a token was refused (recorded in logs and the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// The token came in the URL query.
    TokenInQuery,
    /// Not the Bearer scheme, or an empty token.
    MalformedHeader,
    /// Larger than the limit.
    Oversized,
    /// Not a JWT, not decodable.
    Malformed,
    /// `alg` not an allowed asymmetric algorithm (`none`, `HS256`, …).
    AlgorithmNotAllowed,
    /// No `kid` in the header.
    MissingKid,
    /// No key with that `kid`, even after a refresh.
    UnknownKid,
    /// The signature does not verify (tampered payload, wrong key).
    BadSignature,
    /// `exp` is past.
    Expired,
    /// `nbf` is in the future (beyond the clock-skew tolerance).
    NotYetValid,
    /// `iat` is in the future (beyond the clock-skew tolerance): the token claims to be
    /// issued later than now, which no honest issuer does.
    IssuedInFuture,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not contain this endpoint's audience.
    WrongAudience,
    /// A required claim is missing.
    MissingClaim,
    /// Introspection said the token is not active.
    Inactive,
    /// A SPIFFE ID outside the trusted trust domain.
    WrongTrustDomain,
    /// The IdP's keys (or introspection endpoint) are unavailable: 503.
    IdpUnavailable,
    /// Valid token, but a scope the endpoint requires is missing: 403.
    InsufficientScope,
}

impl Reason {
    /// A stable code for logs and audit.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::TokenInQuery => "token_in_query",
            Reason::MalformedHeader => "malformed_authorization_header",
            Reason::Oversized => "oversized_token",
            Reason::Malformed => "malformed_token",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::MissingKid => "missing_kid",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::MissingClaim => "missing_claim",
            Reason::Inactive => "inactive_token",
            Reason::WrongTrustDomain => "wrong_trust_domain",
            Reason::IdpUnavailable => "idp_unavailable",
            Reason::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A refused token: the reason and a description (safe to show the caller: it names no key
/// material and echoes no token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// Detail.
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

/// A verified token: who it names and when it expires.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The principal.
    pub principal: Arc<Principal>,
    /// `exp` (unix seconds).
    pub expires_at: Option<i64>,
}

/// The asymmetric algorithms accepted. HMAC is never accepted: the keys are public.
pub const ALLOWED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Validates JWTs from one issuer.
#[derive(Debug)]
pub struct JwtVerifier {
    /// Expected `iss`; `None` accepts any (SPIFFE bundles without an issuer).
    pub issuer: Option<String>,
    /// Expected `aud` (one of).
    pub audience: String,
    /// The issuer's keys.
    pub jwks: Arc<Jwks>,
    /// Clock-skew tolerance.
    pub leeway: Duration,
    /// Claim mapping.
    pub mapping: ClaimMapping,
    /// Principals from this issuer are workloads.
    pub workload: bool,
    /// SPIFFE: `sub` must be `spiffe://<trust_domain>/…`.
    pub trust_domain: Option<String>,
}

/// The unverified `alg`/`kid`/`iss` of a token, used to pick a verifier and key.
#[derive(Debug)]
pub(crate) struct Peek {
    pub alg: Option<String>,
    pub kid: Option<String>,
    pub iss: Option<String>,
}

/// Whether a token looks like a JWS compact serialization (three base64url parts).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_some() && parts.next().is_none()
}

pub(crate) fn peek(token: &str) -> Result<Peek, Refusal> {
    let mut parts = token.split('.');
    let decode = |p: Option<&str>| -> Option<Map<String, Value>> {
        let bytes = B64.decode(p?).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let header = decode(parts.next())
        .ok_or_else(|| Refusal::new(Reason::Malformed, "the token header is not base64url JSON"))?;
    let payload = decode(parts.next()).ok_or_else(|| {
        Refusal::new(Reason::Malformed, "the token payload is not base64url JSON")
    })?;
    let text =
        |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Peek {
        alg: text(&header, "alg"),
        kid: text(&header, "kid"),
        iss: text(&payload, "iss"),
    })
}

impl JwtVerifier {
    /// Verifies `token` (already peeked) and maps it to a principal.
    pub(crate) async fn verify(&self, token: &str, peek: &Peek) -> Result<Verified, Refusal> {
        let alg_name = peek.alg.as_deref().unwrap_or("");
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| ALLOWED_ALGORITHMS.contains(a))
            .ok_or_else(|| {
                Refusal::new(
                    Reason::AlgorithmNotAllowed,
                    format!(
                        "algorithm {alg_name:?} is not accepted (only asymmetric signatures are)"
                    ),
                )
            })?;
        let kid = peek
            .kid
            .as_deref()
            .ok_or_else(|| Refusal::new(Reason::MissingKid, "the token header has no kid"))?;
        let key = self.jwks.key(kid).await.map_err(|e| match e {
            KeyLookup::UnknownKid => Refusal::new(
                Reason::UnknownKid,
                "the token is signed with an unknown key",
            ),
            KeyLookup::Unavailable(why) => Refusal::new(Reason::IdpUnavailable, why),
        })?;
        if key.alg.is_some_and(|a| a != alg) {
            return Err(Refusal::new(
                Reason::AlgorithmNotAllowed,
                "the token's algorithm does not match its key",
            ));
        }
        let mut v = Validation::new(alg);
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.set_audience(&[&self.audience]);
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
            }
            None => v.set_required_spec_claims(&["exp", "aud"]),
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| refusal(e.kind()))?;
        let claims = data.claims;
        check_issued_at(&claims, jsonwebtoken::get_current_timestamp(), self.leeway)?;
        if let Some(domain) = &self.trust_domain {
            let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
            let prefix = format!("spiffe://{domain}/");
            if !sub.starts_with(&prefix) {
                return Err(Refusal::new(
                    Reason::WrongTrustDomain,
                    format!("the SPIFFE ID is not in trust domain {domain}"),
                ));
            }
        }
        let expires_at = claims.get("exp").and_then(Value::as_i64);
        let principal = Principal::from_claims(claims, &self.mapping, self.workload);
        if principal.subject.is_empty() {
            return Err(Refusal::new(
                Reason::MissingClaim,
                "the token names no subject",
            ));
        }
        Ok(Verified {
            principal: Arc::new(principal),
            expires_at,
        })
    }
}

/// Refuses a token whose `iat` is later than `now` (unix seconds) plus `leeway`; `iat` is
/// optional (RFC 7519 §4.1.6), but when present it must be a NumericDate. `jsonwebtoken`
/// checks `exp` and `nbf` only.
fn check_issued_at(claims: &Map<String, Value>, now: u64, leeway: Duration) -> Result<(), Refusal> {
    let Some(iat) = claims.get("iat") else {
        return Ok(());
    };
    let Some(iat) = iat.as_f64().filter(|t| t.is_finite()) else {
        return Err(Refusal::new(
            Reason::Malformed,
            "the token's iat claim is malformed",
        ));
    };
    let latest = now.saturating_add(leeway.as_secs()) as f64;
    if iat > latest {
        return Err(Refusal::new(
            Reason::IssuedInFuture,
            format!(
                "the token was issued {}s in the future, beyond the clock-skew tolerance of {}s",
                (iat - now as f64).ceil() as i64,
                leeway.as_secs()
            ),
        ));
    }
    Ok(())
}

fn refusal(kind: &ErrorKind) -> Refusal {
    let (reason, detail) = match kind {
        ErrorKind::ExpiredSignature => (Reason::Expired, "the token has expired".to_string()),
        ErrorKind::ImmatureSignature => (Reason::NotYetValid, "the token is not valid yet".into()),
        ErrorKind::InvalidIssuer => (
            Reason::WrongIssuer,
            "the token is from another issuer".into(),
        ),
        ErrorKind::InvalidAudience => (
            Reason::WrongAudience,
            "the token is for another audience (resource)".into(),
        ),
        ErrorKind::MissingRequiredClaim(c) => {
            (Reason::MissingClaim, format!("the token has no {c} claim"))
        }
        ErrorKind::InvalidClaimFormat(c) => (
            Reason::Malformed,
            format!("the token's {c} claim is malformed"),
        ),
        ErrorKind::InvalidSignature => (
            Reason::BadSignature,
            "the token signature does not verify".into(),
        ),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => (
            Reason::AlgorithmNotAllowed,
            "the token's algorithm does not match its key".into(),
        ),
        _ => (Reason::Malformed, "the token cannot be decoded".into()),
    };
    Refusal::new(reason, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape_detection() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(!looks_like_jwt("opaque-token-value"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b+.c"));
    }

    #[test]
    fn iat_in_the_future_beyond_the_skew_is_refused() {
        let skew = Duration::from_secs(60);
        let now = 1_800_000_000;
        let claims = |iat: Value| {
            let mut m = Map::new();
            m.insert("iat".into(), iat);
            m
        };
        assert!(
            check_issued_at(&Map::new(), now, skew).is_ok(),
            "iat is optional"
        );
        assert!(check_issued_at(&claims(now.into()), now, skew).is_ok());
        assert!(check_issued_at(&claims((now + 60).into()), now, skew).is_ok());
        assert!(check_issued_at(&claims((now - 86_400).into()), now, skew).is_ok());
        let r = check_issued_at(&claims((now + 61).into()), now, skew).unwrap_err();
        assert_eq!(r.reason, Reason::IssuedInFuture);
        assert_eq!(r.reason.code(), "issued_in_future");
        let year = check_issued_at(&claims((now + 31_536_000).into()), now, skew).unwrap_err();
        assert!(
            year.detail.contains("31536000s in the future"),
            "{}",
            year.detail
        );
        let text = check_issued_at(&claims("yesterday".into()), now, skew).unwrap_err();
        assert_eq!(text.reason, Reason::Malformed);
    }

    #[test]
    fn peek_reads_the_unverified_routing_fields() {
        let h = B64.encode(br#"{"alg":"none","kid":"k"}"#);
        let p = B64.encode(br#"{"iss":"https://idp"}"#);
        let pk = peek(&format!("{h}.{p}.")).unwrap();
        assert_eq!(pk.alg.as_deref(), Some("none"));
        assert_eq!(pk.kid.as_deref(), Some("k"));
        assert_eq!(pk.iss.as_deref(), Some("https://idp"));
        assert_eq!(peek("!!.x.y").unwrap_err().reason, Reason::Malformed);
    }
}

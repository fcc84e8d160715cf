//! Inbound token parsing: `gatehouse_identity::ResourceServer::authenticate`, the real path
//! from the `Authorization` header to a principal (size limit, JWT shape, unverified header
//! and issuer peek, algorithm and `kid` checks, key lookup, signature, claims validation,
//! claims → principal).
//!
//! The resource server trusts two workload issuers whose keys come from a JWKS file holding
//! one P-256 key generated at start (kid `fuzz-key`); the main issuer's JWKS URL is a closed
//! loopback port. The first input byte picks a mode:
//! - 0: the rest is the `Authorization` header: it must be refused (nothing here holds the
//!   private key, so nothing can be forged);
//! - 1: the rest is `header JSON NUL claims JSON`, signed here with the real key (ES256), so
//!   arbitrary headers and claims reach validation and the principal mapping. A token that
//!   is accepted must satisfy what the validation promises: ES256 with kid `fuzz-key`, an
//!   unexpired `exp`, the audience, a trusted issuer, a non-empty subject, a workload.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gatehouse_config::AuthConfig;
use gatehouse_identity::{PrincipalKind, ResourceServer};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://gw.fuzz.invalid/mcp";
const K8S_ISSUER: &str = "https://k8s.fuzz.invalid";
const TRUST_DOMAIN: &str = "fuzz.invalid";
const KID: &str = "fuzz-key";
/// `AuthConfig::DEFAULT_CLOCK_SKEW`, in seconds.
const LEEWAY: i64 = 60;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: ResourceServer,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key");
        // Uncompressed point: 0x04 ‖ x ‖ y.
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
        }]});
        let dir = std::env::temp_dir().join(format!("gatehouse-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let file = dir.join("jwks.json");
        std::fs::write(&file, jwks.to_string()).expect("JWKS file");
        let auth: AuthConfig = serde_json::from_value(json!({
            "issuer": "https://idp.fuzz.invalid",
            "audience": AUDIENCE,
            "jwks_url": "http://127.0.0.1:9/jwks",
            "workloads": [
                {"type": "kubernetes", "issuer": K8S_ISSUER, "jwks_file": file},
                {"type": "jwt_svid", "trust_domain": TRUST_DOMAIN, "jwks_file": file},
            ],
        }))
        .expect("auth config");
        let server =
            ResourceServer::build("fuzz", &auth, Vec::new(), gatehouse_identity::idp_client())
                .expect("resource server");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(server.warm_up());
        Fixture {
            runtime,
            server,
            key,
            rng: SystemRandom::new(),
        }
    })
}

/// Runs the check on one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    if mode % 2 == 0 {
        let header = String::from_utf8_lossy(rest);
        let result = f
            .runtime
            .block_on(f.server.authenticate(Some(&header), None));
        assert!(
            result.is_err(),
            "an unsigned or forged token was accepted: {header:?}"
        );
        return;
    }
    let mut parts = rest.splitn(2, |b| *b == 0);
    let header = parts.next().unwrap_or_default();
    let claims = parts.next().unwrap_or_default();
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let signature = f
        .key
        .sign(&f.rng, signing_input.as_bytes())
        .expect("signing");
    let token = format!("{signing_input}.{}", B64.encode(signature.as_ref()));
    let result = f.runtime.block_on(
        f.server
            .authenticate(Some(&format!("Bearer {token}")), None),
    );
    let Ok(caller) = result else {
        return;
    };
    let header: Value = serde_json::from_slice(header).expect("an accepted header is JSON");
    assert_eq!(
        header["alg"], "ES256",
        "accepted with alg {}",
        header["alg"]
    );
    assert_eq!(header["kid"], KID);
    let claims: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    let exp = claims["exp"]
        .as_f64()
        .expect("an accepted token has a numeric exp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as f64;
    assert!(
        exp + LEEWAY as f64 >= now,
        "accepted an expired token: exp {exp}"
    );
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == AUDIENCE,
        Value::Array(list) => list.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "accepted a token for audience {}", claims["aud"]);
    let p = &caller.principal;
    assert_eq!(p.kind, PrincipalKind::Workload);
    assert!(!p.subject.is_empty(), "accepted a token without a subject");
    let spiffe = format!("spiffe://{TRUST_DOMAIN}/");
    assert!(
        p.issuer.trim_end_matches('/') == K8S_ISSUER || p.subject.starts_with(&spiffe),
        "accepted issuer {:?} subject {:?}",
        p.issuer,
        p.subject
    );
}

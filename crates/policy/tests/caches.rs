//! The Cedar engine caches what requests are built from (entities per principal and item,
//! contexts, extension values). A cache must never change a decision: the same subject with
//! other groups, another address or another second is decided afresh.

use gatehouse_config::{Operation, PoliciesConfig, PolicyEngineKind};
use gatehouse_policy::{
    Action, ContextInput, ItemKind, Policies, PolicyRequest, PrincipalInput, ResourceInput,
};

fn load(policy: &str) -> (Policies, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.cedar"), policy).unwrap();
    let p = Policies::compile(&PoliciesConfig {
        engine: PolicyEngineKind::Cedar,
        paths: vec![dir.path().display().to_string()],
        url: None,
        timeout: None,
    })
    .unwrap();
    (p, dir)
}

fn req(groups: &[&str], email: &str, ip: &str, time: &str) -> PolicyRequest {
    PolicyRequest {
        principal: PrincipalInput {
            sub: "alice".into(),
            email: email.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..PrincipalInput::anonymous()
        },
        action: Action::CallTool,
        resource: ResourceInput {
            kind: ItemKind::Tool,
            name: "t".into(),
            server: "s".into(),
            virtual_server: "v".into(),
            operation: Operation::Read,
            annotations: Default::default(),
        },
        context: ContextInput {
            source_ip: ip.into(),
            time: time.into(),
            ..ContextInput::default()
        },
    }
}

#[test]
fn changed_attributes_addresses_and_times_are_decided_afresh() {
    let (p, _dir) = load(
        r#"permit (principal, action, resource)
when { principal.groups.contains("support") && principal.email like "*@corp.example"
       && context.source_ip.isInRange(ip("10.0.0.0/8"))
       && context.time.toTime() < duration("18h") };"#,
    );
    let noon = "2026-11-26T12:00:00Z";
    let night = "2026-11-26T20:00:00Z";
    let ok = |r: &PolicyRequest| p.decide_now(r).unwrap().allowed;
    assert!(ok(&req(&["support"], "a@corp.example", "10.1.1.1", noon)));
    assert!(
        !ok(&req(&[], "a@corp.example", "10.1.1.1", noon)),
        "groups changed"
    );
    assert!(
        !ok(&req(&["support"], "a@else.example", "10.1.1.1", noon)),
        "email changed"
    );
    assert!(
        !ok(&req(&["support"], "a@corp.example", "192.0.2.1", noon)),
        "address changed"
    );
    assert!(
        !ok(&req(&["support"], "a@corp.example", "10.1.1.1", night)),
        "time changed"
    );
    assert!(
        ok(&req(&["support"], "a@corp.example", "10.1.1.1", noon)),
        "and back"
    );
}

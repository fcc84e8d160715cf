//! Both in-process engines decide one shared table of cases identically: the same outcome,
//! the same deciding policies and the same obligations.

use std::path::PathBuf;

use gatehouse_config::{PoliciesConfig, PolicyEngineKind};
use gatehouse_policy::{Obligation, Policies, TestReport};

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

async fn run(engine: PolicyEngineKind, pattern: &str) -> TestReport {
    let config = PoliciesConfig {
        engine,
        paths: vec![fixture(pattern), fixture("matrix/matrix.tests.yaml")],
        url: None,
        timeout: None,
    };
    let policies = Policies::compile(&config).expect("the corpus loads");
    policies.run_tests().await.expect("the table parses")
}

#[tokio::test]
async fn cedar_and_rego_decide_the_shared_matrix_identically() {
    let cedar = run(PolicyEngineKind::Cedar, "matrix/cedar").await;
    let rego = run(PolicyEngineKind::Rego, "matrix/rego/*.rego").await;
    assert!(cedar.outcomes.len() >= 19, "{}", cedar.table());
    assert_eq!(cedar.failed(), 0, "cedar:\n{}", cedar.table());
    assert_eq!(rego.failed(), 0, "rego:\n{}", rego.table());
    assert_eq!(cedar.outcomes.len(), rego.outcomes.len());
    for (c, r) in cedar.outcomes.iter().zip(&rego.outcomes) {
        assert_eq!(c.case.name, r.case.name);
        assert_eq!(c.decision.allowed, r.decision.allowed, "{}", c.case.name);
        assert_eq!(c.decision.policies, r.decision.policies, "{}", c.case.name);
        assert_eq!(
            c.decision.obligations, r.decision.obligations,
            "{}",
            c.case.name
        );
    }
    let pay = cedar
        .outcomes
        .iter()
        .find(|o| o.case.name.starts_with("finance pays a small"))
        .unwrap();
    assert_eq!(
        pay.decision.obligations,
        [Obligation {
            kind: "redact".into(),
            target: "card_number".into()
        }]
    );
}

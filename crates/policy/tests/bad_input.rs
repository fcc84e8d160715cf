//! Policy sets that must be refused with a precise error, and requests that must be denied
//! with a reason rather than evaluated without bound.

use std::path::Path;

use gatehouse_config::{PoliciesConfig, PolicyEngineKind};
use gatehouse_policy::{
    Action, ContextInput, ItemKind, Policies, PolicyError, PolicyRequest, PrincipalInput,
    ResourceInput,
};

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn config(dir: &Path, engine: PolicyEngineKind) -> PoliciesConfig {
    PoliciesConfig {
        engine,
        paths: vec![dir.display().to_string()],
        url: None,
        timeout: None,
    }
}

fn cedar(files: &[(&str, &str)]) -> Result<Policies, PolicyError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    Policies::compile(&config(dir.path(), PolicyEngineKind::Cedar))
}

fn rego(files: &[(&str, &str)]) -> Result<Policies, PolicyError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    Policies::compile(&config(dir.path(), PolicyEngineKind::Rego))
}

fn call(arguments: serde_json::Value) -> PolicyRequest {
    PolicyRequest {
        principal: PrincipalInput {
            groups: vec!["support".into()],
            ..PrincipalInput::anonymous()
        },
        action: Action::CallTool,
        resource: ResourceInput {
            kind: ItemKind::Tool,
            name: "pay".into(),
            server: "payments".into(),
            virtual_server: "mcp".into(),
            operation: gatehouse_config::Operation::Write,
            annotations: Default::default(),
        },
        context: ContextInput {
            arguments,
            ..ContextInput::default()
        },
    }
}

#[test]
fn cedar_syntax_errors_name_file_and_line() {
    let e = cedar(&[(
        "a.cedar",
        "permit (principal, action, resource);\n\npermit (principal, action resource);\n",
    )])
    .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PolicyError::Syntax { line: 3, .. }), "{text}");
    assert!(text.starts_with("a.cedar:3: "), "{text}");
}

#[test]
fn cedar_type_errors_and_unknown_entity_types_fail_validation_with_lines() {
    let e = cedar(&[(
        "t.cedar",
        "permit (principal, action, resource)\nwhen { resource.operation > 1 };\n\npermit (principal in Gatehouse::Team::\"x\", action, resource);\n",
    )])
    .unwrap_err();
    let PolicyError::Validation { errors } = &e else {
        panic!("{e}")
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("t.cedar:2: policy t.cedar:1:"),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|l| l.contains("Gatehouse::Team")),
        "{errors:?}"
    );
}

#[test]
fn undeclared_arguments_fail_validation_until_the_deployment_declares_them() {
    let policy = (
        "p.cedar",
        "permit (principal, action, resource) when { context.arguments has project && context.arguments.project == \"OPS\" };",
    );
    let e = cedar(&[policy]).unwrap_err();
    assert!(e.to_string().contains("policy is impossible"), "{e}");
    assert!(e.to_string().contains("Gatehouse::Arguments"), "{e}");
    cedar(&[
        policy,
        (
            "args.cedarschema",
            "namespace Gatehouse { type Arguments = { project?: String }; }",
        ),
    ])
    .unwrap();
}

#[tokio::test]
async fn an_empty_policy_set_denies_everything() {
    let p = cedar(&[("empty.cedar", "// nothing yet\n")]).unwrap();
    assert!(p.is_empty());
    let d = p.decide(&call(serde_json::json!({}))).await;
    assert!(!d.allowed);
    assert!(d.reason.unwrap().contains("default deny"));
}

#[tokio::test]
async fn a_forbid_that_fails_to_evaluate_denies() {
    let p = cedar(&[
        ("permit.cedar", "permit (principal, action, resource);"),
        (
            "forbid.cedar",
            "@id(\"big-amounts\")\nforbid (principal, action, resource) when { context.arguments has amount && context.arguments.amount > 1000 };",
        ),
        (
            "args.cedarschema",
            "namespace Gatehouse { type Arguments = { amount?: Long }; }",
        ),
    ])
    .unwrap();
    assert!(
        p.decide(&call(serde_json::json!({"amount": 5})))
            .await
            .allowed
    );
    assert!(
        !p.decide(&call(serde_json::json!({"amount": 5000})))
            .await
            .allowed
    );
    // A string where the schema says Long: the forbid errors, and an erroring forbid denies.
    let d = p.decide(&call(serde_json::json!({"amount": "5000"}))).await;
    assert!(!d.allowed);
    assert_eq!(d.policies, ["big-amounts"]);
    assert!(d.reason.unwrap().contains("failed to evaluate"));
}

#[test]
fn duplicate_policy_ids_are_refused() {
    let e = cedar(&[
        (
            "a.cedar",
            "@id(\"x\")\npermit (principal, action, resource);",
        ),
        (
            "b.cedar",
            "@id(\"x\")\nforbid (principal, action, resource);",
        ),
    ])
    .unwrap_err();
    assert!(
        e.to_string().contains("\"x\" is also used in a.cedar"),
        "{e}"
    );
}

#[test]
fn rego_syntax_errors_and_a_missing_allow_rule_are_refused() {
    let e = rego(&[("a.rego", "package gatehouse\n\nallow if {\n  input.x ==\n")]).unwrap_err();
    assert!(e.to_string().starts_with("a.rego:"), "{e}");
    let e = rego(&[("b.rego", "package other\n\nallow := true\n")]).unwrap_err();
    assert!(
        e.to_string().contains("no rule data.gatehouse.allow"),
        "{e}"
    );
}

#[tokio::test]
async fn costly_rego_is_stopped_by_the_time_limit_and_denies() {
    let p = rego(&[(
        "slow.rego",
        "package gatehouse\nimport rego.v1\n\nallow if {\n  some i in numbers.range(1, 4000)\n  some j in numbers.range(1, 4000)\n  i * j == -1\n}\n",
    )])
    .unwrap();
    let d = p.decide(&call(serde_json::json!({}))).await;
    assert!(!d.allowed);
    let reason = d.reason.unwrap();
    assert!(reason.contains("policy evaluation failed"), "{reason}");
    assert!(
        d.latency < std::time::Duration::from_secs(2),
        "{:?}",
        d.latency
    );
}

#[tokio::test]
async fn failing_tests_reject_the_set_and_name_the_case() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "p.cedar",
                "permit (principal, action, resource) when { principal.groups.contains(\"support\") };",
            ),
            (
                "p.tests.yaml",
                "- name: support may call\n  principal: { sub: a, groups: [support] }\n  action: call_tool\n  resource: { type: Tool, name: t, server: s, virtual_server: v }\n  expect: allow\n- name: others may not\n  principal: { sub: b, groups: [support] }\n  action: call_tool\n  resource: { type: Tool, name: t, server: s, virtual_server: v }\n  expect: deny\n",
            ),
        ],
    );
    let e = Policies::load(&config(dir.path(), PolicyEngineKind::Cedar))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("1 of 2 policy tests failed"), "{text}");
    assert!(
        text.contains("\"others may not\": expected deny, got allow"),
        "{text}"
    );
}

#[tokio::test]
async fn malformed_test_files_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("p.cedar", "permit (principal, action, resource);"),
            (
                "p.tests.yaml",
                "- name: x\n  principal: { sub: a }\n  action: call_tool\n  resource: { type: Tool, name: t, server: s, virtual_server: v }\n  expect: maybe\n",
            ),
        ],
    );
    let e = Policies::load(&config(dir.path(), PolicyEngineKind::Cedar))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("p.tests.yaml:5:"), "{text}");
    assert!(text.contains("[0].expect"), "{text}");
}

//! The pure eras serve the other generation's interactive fixtures
//! ("bridging"): driven with rmcp's own client, a legacy session answers the
//! SEP-2322 tools' server→client requests, and a 2026-07-28 client answers
//! the legacy sampling/elicitation tools' `InputRequiredResult` rounds.

// Sampling and Roots are deprecated by SEP-2577 but bridged here.
#![allow(deprecated)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use gatehouse_testkit::{Era, FixtureServer};
use rmcp::{
    ClientHandler, ErrorData, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
        CreateMessageResult, ElicitRequestParams, ElicitResult, ElicitationAction,
        GetPromptRequestParams, Implementation, ListRootsResult, ProtocolVersion, Root,
        SamplingMessage,
    },
    service::{ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService},
};
use serde_json::{Value, json};

/// How long one scenario may take before the test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(10);

/// What the scripted client saw and how it answers.
#[derive(Clone)]
struct Scripted {
    caps: Value,
    /// `elicitation/create` messages, `sampling/createMessage` prompts and
    /// `roots/list`, in arrival order.
    seen: Arc<Mutex<Vec<String>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    /// When set, sampling is refused with this JSON-RPC error code.
    refuse_sampling: Option<i32>,
}

impl Scripted {
    fn new(caps: Value) -> Self {
        Self {
            caps,
            seen: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            refuse_sampling: None,
        }
    }

    /// Records a request and holds it briefly so concurrent ones overlap.
    async fn record(&self, what: String) {
        self.seen.lock().expect("seen").push(what);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

impl ClientHandler for Scripted {
    fn get_info(&self) -> ClientConfig {
        let caps: ClientCapabilities =
            serde_json::from_value(self.caps.clone()).expect("client capabilities");
        ClientConfig::new(caps, Implementation::new("bridged-test", "0"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        else {
            return Err(ErrorData::invalid_params("form elicitation expected", None));
        };
        self.record(format!("elicit: {message}")).await;
        let schema = serde_json::to_value(requested_schema).expect("schema");
        let content = match schema["properties"].as_object() {
            Some(props) if props.contains_key("ok") => json!({ "ok": true }),
            Some(props) if props.contains_key("color") => json!({ "color": "blue" }),
            Some(props) if props.contains_key("context") => json!({ "context": "test context" }),
            Some(props) if props.contains_key("value") => json!({ "value": "v1" }),
            _ => json!({ "name": "Alice" }),
        };
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(content))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let prompt =
            serde_json::to_value(&params.messages).expect("messages")[0]["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        self.record(format!("sample: {prompt}")).await;
        if let Some(code) = self.refuse_sampling {
            return Err(ErrorData::new(
                rmcp::model::ErrorCode(code),
                "sampling refused",
                None,
            ));
        }
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text("Paris."),
            "test-model".to_owned(),
        ))
    }

    async fn list_roots(
        &self,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.record("roots".to_owned()).await;
        Ok(ListRootsResult::new(vec![Root::new("file:///test/root")]))
    }
}

fn all_caps() -> Value {
    json!({ "elicitation": {}, "sampling": {}, "roots": { "listChanged": true } })
}

/// Connects `client` to an in-process fixture of `era`, over a duplex pipe.
async fn connect(era: Era, client: Scripted) -> RunningService<RoleClient, Scripted> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = FixtureServer::new(era).expect("fixture");
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    match era {
        Era::Modern => client
            .serve_with_lifecycle(
                client_io,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .expect("discover"),
        _ => client.serve(client_io).await.expect("initialize"),
    }
}

/// Calls `name` (driving MRTR rounds) and returns its first text block, or
/// the JSON-RPC error as `error <code>: <data>`.
async fn call(service: &RunningService<RoleClient, Scripted>, name: &str, args: Value) -> String {
    let params = CallToolRequestParams::new(name.to_owned())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    let outcome = tokio::time::timeout(DEADLINE, service.call_tool(params))
        .await
        .expect("call finished in time");
    match outcome {
        Ok(result) => {
            let value = serde_json::to_value(result).expect("json");
            value["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
        Err(rmcp::ServiceError::McpError(error)) => format!(
            "error {}: {}",
            error.code.0,
            error.data.unwrap_or(Value::Null)
        ),
        Err(other) => panic!("{name}: {other}"),
    }
}

#[tokio::test]
async fn legacy_era_serves_mrtr_tools_with_server_requests() {
    let client = Scripted::new(all_caps());
    let service = connect(Era::Legacy, client.clone()).await;

    let tools = service.list_all_tools().await.expect("tools");
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains(&"test_input_required_result_multi_round".to_owned()));
    assert!(names.contains(&"test_sampling".to_owned()));
    assert!(
        !names.contains(&"slow_compute".to_owned()),
        "no tasks in legacy"
    );

    let cases = [
        ("test_input_required_result_elicitation", "Hello, Alice!"),
        (
            "test_input_required_result_sampling",
            "Sampling response: Paris.",
        ),
        (
            "test_input_required_result_list_roots",
            "Client roots: [file:///test/root]",
        ),
        (
            "test_input_required_result_request_state",
            "Confirmed: state-ok",
        ),
        (
            "test_input_required_result_tampered_state",
            "Confirmed: state-ok",
        ),
        ("test_streaming_elicitation", "Received value: v1"),
        ("test_missing_capability", "Required capability declared"),
    ];
    for (name, expected) in cases {
        assert_eq!(call(&service, name, json!({})).await, expected, "{name}");
    }
    assert_eq!(
        client.seen()[..4],
        [
            "elicit: What is your name?",
            "sample: What is the capital of France?",
            "roots",
            "elicit: Please confirm",
        ]
    );
    service.cancel().await.expect("closed");
}

#[tokio::test]
async fn legacy_rounds_map_to_concurrent_and_successive_requests() {
    let client = Scripted::new(all_caps());
    let service = connect(Era::Legacy, client.clone()).await;

    // One MRTR round with three inputs: three requests in flight at once.
    let done = call(
        &service,
        "test_input_required_result_multiple_inputs",
        json!({}),
    )
    .await;
    assert_eq!(done, "All inputs received");
    assert_eq!(client.max_in_flight.load(Ordering::SeqCst), 3);
    let mut first = client.seen();
    first.sort();
    assert_eq!(
        first,
        [
            "elicit: What is your name?",
            "roots",
            "sample: Generate a greeting"
        ]
    );

    // Two MRTR rounds: two requests, one after the other.
    client.seen.lock().expect("seen").clear();
    client.max_in_flight.store(0, Ordering::SeqCst);
    let done = call(
        &service,
        "test_input_required_result_multi_round",
        json!({}),
    )
    .await;
    assert_eq!(done, "Multi-round flow complete");
    assert_eq!(
        client.seen(),
        [
            "elicit: Step 1: What is your name?",
            "elicit: Step 2: What is your favorite color?"
        ]
    );
    assert_eq!(client.max_in_flight.load(Ordering::SeqCst), 1);

    let prompt = tokio::time::timeout(
        DEADLINE,
        service.get_prompt(GetPromptRequestParams::new(
            "test_input_required_result_prompt",
        )),
    )
    .await
    .expect("in time")
    .expect("prompt");
    let prompt = serde_json::to_value(prompt).expect("json");
    assert_eq!(
        prompt["messages"][0]["content"]["text"],
        "Prompt with elicited context: test context"
    );
    service.cancel().await.expect("closed");
}

#[tokio::test]
async fn legacy_asks_only_for_declared_capabilities() {
    // Only sampling declared: the capability-aware tool samples and nothing else.
    let client = Scripted::new(json!({ "sampling": {} }));
    let service = connect(Era::Legacy, client.clone()).await;
    let done = call(
        &service,
        "test_input_required_result_capabilities",
        json!({}),
    )
    .await;
    assert_eq!(done, "Capability-aware flow complete");
    assert_eq!(client.seen(), ["sample: Generate a greeting"]);
    service.cancel().await.expect("closed");

    // Nothing declared: test_missing_capability fails like the modern tool.
    let client = Scripted::new(json!({}));
    let service = connect(Era::Legacy, client.clone()).await;
    let error = call(&service, "test_missing_capability", json!({})).await;
    assert!(error.starts_with("error -32021: "), "{error}");
    assert!(
        error.contains(r#""requiredCapabilities":{"sampling":{}}"#),
        "{error}"
    );
    assert!(client.seen().is_empty(), "nothing asked");
    service.cancel().await.expect("closed");

    // Declared but refused (a gateway whose own client lacks sampling).
    let mut client = Scripted::new(all_caps());
    client.refuse_sampling = Some(-32021);
    let service = connect(Era::Legacy, client.clone()).await;
    let error = call(&service, "test_missing_capability", json!({})).await;
    assert!(
        error.contains(r#""requiredCapabilities":{"sampling":{}}"#),
        "{error}"
    );
    // The capability-aware tool carries on with the inputs it did get.
    let done = call(
        &service,
        "test_input_required_result_capabilities",
        json!({}),
    )
    .await;
    assert_eq!(done, "Capability-aware flow complete");
    service.cancel().await.expect("closed");
}

#[tokio::test]
async fn modern_era_serves_legacy_tools_with_mrtr() {
    let client = Scripted::new(json!({ "elicitation": {}, "sampling": {} }));
    let service = connect(Era::Modern, client.clone()).await;

    let tools = service.list_all_tools().await.expect("tools");
    assert!(
        tools
            .iter()
            .any(|t| t.name == "test_elicitation_sep1330_enums")
    );

    let sampled = call(
        &service,
        "test_sampling",
        json!({ "prompt": "Test prompt for sampling" }),
    )
    .await;
    assert_eq!(sampled, "LLM response: Paris.");
    let elicited = call(
        &service,
        "test_elicitation",
        json!({ "message": "Please provide your information" }),
    )
    .await;
    assert_eq!(
        elicited,
        r#"User response: action=accept, content={"name":"Alice"}"#
    );
    let defaults = call(&service, "test_elicitation_sep1034_defaults", json!({})).await;
    assert!(
        defaults.starts_with("Elicitation completed: action=accept"),
        "{defaults}"
    );
    assert_eq!(
        client.seen(),
        [
            "sample: Test prompt for sampling",
            "elicit: Please provide your information",
            "elicit: Please review and update the form fields with defaults",
        ]
    );
    service.cancel().await.expect("closed");

    // Without the capability in _meta the tool refuses with -32021.
    let client = Scripted::new(json!({ "sampling": {} }));
    let service = connect(Era::Modern, client.clone()).await;
    let refused = call(&service, "test_elicitation_sep1330_enums", json!({})).await;
    assert!(
        refused.contains(r#""requiredCapabilities":{"elicitation":{}}"#),
        "{refused}"
    );
    assert!(client.seen().is_empty());
    service.cancel().await.expect("closed");
}

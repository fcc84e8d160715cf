//! Loading valid files: the example, defaults, accessors, round trips and
//! environment interpolation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_config::{
    Config, ConfigErrors, GatewayConfig, ProtocolSetting, ServerKind, Transport, json_schema,
    load_file, load_str,
};

const ORIGIN: &str = "/etc/gatehouse/gatehouse.yaml";

fn env(name: &str) -> Option<String> {
    match name {
        "ECHO_KEY" => Some("s3cret".into()),
        "BODY" => Some("1024".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, Path::new(ORIGIN), &env)
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gatehouse.yaml")
}

#[test]
fn example_file_loads_with_every_field() {
    let path = example_path();
    let config = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.version, Some(1));
    assert_eq!(config.gateway.listen_addr().unwrap().port(), 8080);
    assert_eq!(config.gateway.allowed_origins, ["https://app.example.com"]);
    assert_eq!(
        config.gateway.session_ttl.get(),
        Duration::from_secs(86_400)
    );

    let echo = config.server("echo").unwrap();
    let ServerKind::Remote {
        url,
        transport,
        headers,
        tls,
    } = echo.kind()
    else {
        panic!("echo should be remote");
    };
    assert_eq!(url, "http://127.0.0.1:18001/mcp");
    assert_eq!(transport, Transport::StreamableHttp);
    assert!(headers.contains_key("X-Api-Key"));
    let examples = path.parent().unwrap();
    assert_eq!(
        tls.unwrap().ca.as_deref(),
        Some(examples.join("certs/ca.pem").as_path()),
        "tls paths resolve against the config folder"
    );
    assert!(tls.unwrap().key.as_ref().unwrap().is_absolute());
    assert_eq!(config.call_timeout(echo), Duration::from_secs(30));

    let files = config.server("files").unwrap();
    let ServerKind::Stdio {
        command, args, env, ..
    } = files.kind()
    else {
        panic!("files should be stdio");
    };
    assert_eq!(command, "npx");
    assert_eq!(args.len(), 3);
    assert_eq!(env["LOG_LEVEL"], "info");
    assert_eq!(files.protocol, ProtocolSetting::V2025_06_18);
    assert_eq!(files.idle_timeout(), Duration::from_secs(600));
    assert_eq!(
        files.operations.get("read_text_file"),
        Some(&gatehouse_config::Operation::Read)
    );
    assert!(!files.trust_annotations);
    let policies = config.policies.as_ref().unwrap();
    assert_eq!(policies.engine, gatehouse_config::PolicyEngineKind::Cedar);
    assert_eq!(
        policies.paths,
        [examples.join("policies/*.cedar").display().to_string()],
        "policy paths resolve against the config folder"
    );

    let vs = config.virtual_server("default").unwrap();
    assert_eq!(vs.path, "/mcp");
    let member = &vs.include[1];
    assert_eq!(
        member.exposed_name("list_directory").as_deref(),
        Some("fs_ls")
    );
    assert_eq!(
        member.exposed_name("read_text_file").as_deref(),
        Some("fs_read_text_file")
    );
    assert_eq!(member.exposed_name("write_file"), None);
    assert_eq!(
        member.description_override("list_directory"),
        Some("List a folder")
    );
    assert_eq!(
        vs.include[0].exposed_name("anything").as_deref(),
        Some("anything")
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let config = load(
        "servers:\n  - name: a\n    url: https://example.com/mcp\nvirtual_servers:\n  - name: v\n    path: /\n    include: [{server: a}]\n",
    )
    .unwrap();
    assert_eq!(config.gateway, GatewayConfig::default());
    assert_eq!(config.gateway.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(
        config.call_timeout(&config.servers[0]),
        Duration::from_secs(60)
    );
    assert_eq!(config.servers[0].protocol, ProtocolSetting::Auto);
    assert!(!config.virtual_servers[0].fail_closed);
    assert_eq!(load("").unwrap(), Config::default());
}

#[test]
fn full_config_round_trips() {
    let config = load_file(&example_path()).unwrap();
    // JSON is YAML, so the serialised form must load back to the same value.
    let json = serde_json::to_string_pretty(&config).unwrap();
    let again = load(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert_eq!(again, config);
    let value = serde_json::to_value(&config).unwrap();
    assert_eq!(serde_json::from_value::<Config>(value).unwrap(), config);
}

#[test]
fn relative_cwd_resolves_against_config_folder() {
    let config =
        load("servers:\n  - name: a\n    command: ./srv\n    cwd: data/../work\n").unwrap();
    assert_eq!(
        config.servers[0].cwd.as_deref(),
        Some(Path::new("/etc/gatehouse/data/../work"))
    );
    // The command itself is left for PATH lookup / the process cwd.
    assert!(matches!(
        config.servers[0].kind(),
        ServerKind::Stdio {
            command: "./srv",
            ..
        }
    ));
}

#[test]
fn env_interpolation_default_escape_and_retyping() {
    let config = load(concat!(
        "gateway:\n",
        "  max_body_bytes: ${BODY}\n",
        "  listen: ${LISTEN:-0.0.0.0:9000}\n",
        "servers:\n",
        "  - name: a\n",
        "    url: https://example.com/mcp\n",
        "    headers:\n",
        "      X-Key: \"Bearer ${ECHO_KEY}\"\n",
        "      X-Literal: \"$${ECHO_KEY} costs $5\"\n",
        "      X-Empty: ${EMPTY:-fallback}\n",
        "      X-Quoted: \"${BODY}\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.gateway.max_body_bytes, 1024);
    assert_eq!(config.gateway.listen, "0.0.0.0:9000");
    let headers = config.servers[0].headers.as_ref().unwrap();
    assert_eq!(headers["X-Key"], "Bearer s3cret");
    assert_eq!(headers["X-Literal"], "${ECHO_KEY} costs $5");
    assert_eq!(headers["X-Empty"], "fallback");
    assert_eq!(headers["X-Quoted"], "1024");
}

#[test]
fn missing_env_var_is_reported_at_the_scalar() {
    let err = load("servers:\n  - name: a\n    url: https://example.com/mcp\n    headers:\n      X-Key: ${NOT_SET}\n      Y: ${ALSO_MISSING}x\n").unwrap_err();
    assert_eq!(err.len(), 2, "{err}");
    let e = &err.errors()[0];
    assert_eq!((e.line, e.column), (5, 14));
    assert_eq!(e.path, "servers[0].headers.X-Key");
    assert!(
        e.message.contains("\"NOT_SET\" is not set"),
        "{}",
        e.message
    );
    assert_eq!(err.errors()[1].line, 6);
    assert!(err.errors()[1].message.contains("ALSO_MISSING"));
}

#[test]
fn unset_whole_reference_is_not_reported_twice() {
    let err = load("gateway:\n  max_body_bytes: ${NOPE}\n").unwrap_err();
    assert_eq!(err.len(), 1, "{err}");
    assert_eq!(err.errors()[0].path, "gateway.max_body_bytes");
}

#[test]
fn schema_describes_the_model() {
    let schema = json_schema();
    assert_eq!(schema["title"], "Gatehouse configuration");
    assert!(schema["properties"]["servers"].is_object());
    assert!(schema["properties"]["virtual_servers"].is_object());
    let text = schema.to_string();
    for value in [
        "streamable_http",
        "sse",
        "auto",
        "2026-07-28",
        "2025-11-25",
        "2025-06-18",
        "2025-03-26",
        "2024-11-05",
    ] {
        assert!(
            text.contains(&format!("\"{value}\"")),
            "schema lacks {value}"
        );
    }
    let server = &schema["$defs"]["ServerConfig"];
    assert_eq!(server["additionalProperties"], false);
    assert!(
        server["properties"]["command"]["description"]
            .as_str()
            .unwrap()
            .contains("stdio")
    );
}

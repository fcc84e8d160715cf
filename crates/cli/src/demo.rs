//! The built-in demo MCP server (`gatehouse demo-server`): a real stdio MCP server, built with
//! the official Rust SDK, that `gatehouse up` runs when no config is given.

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use std::time::Duration;

use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone)]
struct DemoServer {
    #[allow(dead_code, reason = "read by the tool_handler macro")]
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// First addend.
    a: f64,
    /// Second addend.
    b: f64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CountdownArgs {
    /// Seconds to count down (at most 600).
    seconds: u32,
}

#[tool_router]
impl DemoServer {
    #[tool(
        description = "Returns its `text` argument unchanged.",
        annotations(read_only_hint = true)
    )]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(
        description = "Adds two numbers and returns the sum, as text and as structured content {\"sum\": …}.",
        annotations(read_only_hint = true)
    )]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> CallToolResult {
        let sum = a + b;
        let number = if sum.fract() == 0.0 && sum.abs() < 9.0e15 {
            json!(sum as i64)
        } else {
            json!(sum)
        };
        let mut result = CallToolResult::structured(json!({ "sum": number }));
        result.content = vec![ContentBlock::text(number.to_string())];
        result
    }

    #[tool(
        description = "Counts down `seconds`, reporting progress once a second; shows progress and cancellation.",
        annotations(read_only_hint = true)
    )]
    async fn countdown(
        &self,
        Parameters(CountdownArgs { seconds }): Parameters<CountdownArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        let seconds = seconds.min(600);
        let token = ctx.meta.get_progress_token();
        for done in 1..=seconds {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = ctx.ct.cancelled() => {
                    // stderr lands in the gateway's log, tagged with the server name.
                    eprintln!("countdown cancelled by the client after {} s", done - 1);
                    return format!("cancelled after {} s", done - 1);
                }
            }
            if let Some(token) = &token {
                let p = ProgressNotificationParam::new(token.clone(), f64::from(done))
                    .with_total(f64::from(seconds))
                    .with_message(format!("{} s left", seconds - done));
                let _ = ctx.peer.notify_progress(p).await;
            }
        }
        format!("countdown of {seconds} s finished")
    }
}

#[tool_handler]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "gatehouse-demo",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Gatehouse's built-in demo server: `echo`, `add` and `countdown`.")
    }
}

/// Serves the demo server on stdin/stdout until stdin closes.
pub async fn run() -> anyhow::Result<()> {
    let server = DemoServer {
        tool_router: DemoServer::tool_router(),
    };
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

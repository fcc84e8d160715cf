//! Usage attribution: the hourly rollup increments of a batch of journal lines, and the
//! estimate of the tokens a result adds to a model's context.
//!
//! The index computes them from the lines it indexes and writes them in the same transaction
//! (see [`AuditIndex::add_with_usage`](gatehouse_store::AuditIndex::add_with_usage)); a batch is
//! aggregated in memory first, so a busy hour costs one upsert per distinct rollup row rather
//! than one per call.
//!
//! # Token estimate
//!
//! A model sees what the client puts into its context: for MCP that is the result of
//! `tools/call`, `resources/read` and `prompts/get`, and the tool definitions of `tools/list`.
//! Gatehouse does not know the model or its tokenizer, so it estimates **one token per four
//! bytes** of the response ([`BYTES_PER_TOKEN`]), the usual figure for English text and JSON
//! with the byte-pair tokenizers of current models (OpenAI's and Anthropic's guidance for
//! English is about four characters per token). The response bytes include the JSON-RPC
//! envelope (some 40 bytes) and JSON escaping, and clients may drop parts (images, structured
//! content duplicated as text), so it is an estimate for comparing users, tools and servers,
//! not a bill: expect it to be off by a third against a real tokenizer, more for text in
//! scripts with multi-byte characters (CJK takes 3 bytes per character in UTF-8 and often a
//! token per character, so it is undercounted) and for base64 content. Other methods
//! (`initialize`, `ping`, list calls of prompts and resources, notifications) add no tokens.

use std::collections::HashMap;

use gatehouse_store::{UsageCounts, UsageIncrement, UsageKey};

use crate::event::{Outcome, ResultStatus};
use crate::line::LineView;
pub use crate::line::hour_of;

/// Bytes of a response per estimated token.
pub const BYTES_PER_TOKEN: u64 = 4;

/// The methods whose results enter a model's context.
pub const CONTEXT_METHODS: [&str; 4] =
    ["tools/call", "resources/read", "prompts/get", "tools/list"];

/// Estimated tokens a response of `bytes` to `method` adds to a model's context (see the
/// module documentation for the method and its limits).
pub fn estimated_tokens(method: &str, bytes: u64) -> u64 {
    if CONTEXT_METHODS.contains(&method) {
        bytes.div_ceil(BYTES_PER_TOKEN)
    } else {
        0
    }
}

/// The rollup increments of a batch of lines, aggregated per rollup row.
#[derive(Debug, Default)]
pub struct UsageBatch {
    rows: HashMap<UsageKey, (String, UsageCounts)>,
}

impl UsageBatch {
    /// Counts one parsed line; only `mcp.request` events are calls.
    pub fn count(&mut self, f: &LineView, time_us: i64) {
        if !f.is_request() {
            return;
        }
        let mut c = UsageCounts {
            calls: 1,
            ..Default::default()
        };
        if f.outcome.is(Outcome::Error) {
            c.errors = 1;
        } else if f.outcome.is(Outcome::Denied) || f.outcome.is(Outcome::Forbidden) {
            c.denied = 1;
        }
        if let Some(us) = f.latency_us {
            c.record_latency(us.max(0));
        }
        c.request_bytes = f.request_bytes.unwrap_or(0) as i64;
        let method = f.method.as_deref().unwrap_or("");
        if let Some(r) = &f.result {
            if r.status.is(ResultStatus::ToolError) {
                c.tool_errors = 1;
            }
            c.response_bytes = r.bytes as i64;
            c.tokens = estimated_tokens(method, r.bytes) as i64;
        }
        let p = f.principal.as_ref();
        let text = |v: Option<&String>| v.cloned().unwrap_or_default();
        let key = UsageKey {
            hour: hour_of(time_us),
            group: String::new(),
            principal: text(p.and_then(|p| p.subject.as_ref())),
            issuer: text(p.and_then(|p| p.issuer.as_ref())),
            tenant: text(p.and_then(|p| p.tenant.as_ref())),
            virtual_server: text(f.virtual_server.as_ref()),
            server: text(f.server.as_ref()),
            method: method.to_string(),
            target: text(f.target.as_ref().map(|t| &t.name)),
        };
        let email = text(p.and_then(|p| p.email.as_ref()));
        // Group rows carry only the hour and the group: `--by group` is all that reads them, and
        // keeping the other columns would multiply the rows written per call by the groups.
        for g in p.map(|p| p.groups.as_slice()).unwrap_or_default() {
            if !g.is_empty() {
                let key = UsageKey {
                    hour: key.hour,
                    group: g.clone(),
                    ..Default::default()
                };
                self.add(key, "", &c);
            }
        }
        self.add(key, &email, &c);
    }

    fn add(&mut self, key: UsageKey, email: &str, c: &UsageCounts) {
        let slot = self.rows.entry(key).or_default();
        if !email.is_empty() {
            slot.0 = email.to_string();
        }
        slot.1.add(c);
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The increments, one per rollup row (in key order, so that concurrent indexers lock
    /// rows in the same order), leaving the batch empty.
    pub fn take(&mut self) -> Vec<UsageIncrement> {
        let mut out: Vec<UsageIncrement> = self
            .rows
            .drain()
            .map(|(key, (email, counts))| UsageIncrement { key, email, counts })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

//! Test fixtures for Gatehouse.
//!
//! The main piece is the MCP conformance fixture ([`fixture`]): an
//! rmcp-based server implementing everything the official conformance
//! suites call, in the 2025 (session) era, the 2026-07-28 (stateless) era,
//! or both. The `conformance-fixture` binary serves it over Streamable HTTP
//! or stdio; tests can also start it in-process with
//! [`fixture::http::HttpFixture::start`].

pub mod fixture;
pub mod rsyslog;
pub mod tools;

pub use fixture::{
    Era, FixtureError, FixtureServer, Generation,
    http::{HttpFixture, HttpOptions},
    stdio::serve_stdio,
};

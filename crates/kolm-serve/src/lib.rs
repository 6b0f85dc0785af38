//! Serving artifacts to agents and apps: MCP over stdio and Streamable HTTP, and an
//! OpenAI-compatible HTTP API (`kolm serve`). It stands on the runtime alone: a server
//! compiles no build code.
//!
//! Every module of `kolm-runtime` is re-exported at this crate's root, so a path reads the
//! same (`crate::runtime`) in every crate above the one that defines it.

pub use kolm_runtime::*;

pub mod serve;

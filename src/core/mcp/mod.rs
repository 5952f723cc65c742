//! MCP (Model Context Protocol) both ways, on the official Rust SDK (`rmcp`):
//! - [`client`]: connect to an MCP server (a child process on this machine, the same on a fleet host through
//!   its ssh master, or a Streamable HTTP URL), list its tools and call them.
//! - [`server`]: serve tools on stdin/stdout; each call is handed to whoever registered the tools (the Lua
//!   runtime) over a channel, so the tools themselves need not be `Send`.
//!
//! Plain async Rust: no mlua.
pub mod client;
pub mod server;

use std::time::Duration;

/// Why an MCP operation failed. Messages do not repeat the server's name: callers prefix
/// `mcp.connect(git): `.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start {program}: {cause}")]
    Spawn {
        program: String,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Remote(#[from] crate::core::remote::RemoteError),
    #[error("initialize failed: {}", crate::core::text::escape(.0))]
    Initialize(String),
    #[error("timed out after {}", crate::core::duration::format(*.0))]
    Timeout(Duration),
    /// The server's process ended (or its connection closed); the detail carries its exit status and the
    /// tail of its stderr.
    #[error("server exited{}", crate::core::text::escape(.0))]
    Exited(String),
    /// Text from the server (its error, its stderr): control characters are escaped when shown.
    #[error("{}", crate::core::text::escape(.0))]
    Protocol(String),
    #[error("connection closed")]
    Closed,
}

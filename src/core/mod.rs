//! Plain async Rust: no mlua, no rustyline, no CLI.
pub mod duration;
pub mod fleet;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod notify;
pub mod process;
pub mod remote;
pub mod schedule;
pub mod secret;
pub mod state;
pub mod text;
pub mod wording;

//! baton: run a home fleet of machines from Lua playbooks.
//!
//! `core` is plain async Rust (no Lua); `lua` is the only code that touches mlua; `cli` and `repl` are the
//! front ends used by the binary.
pub mod cli;
pub mod core;
pub mod lua;
pub mod repl;

//! Lua bindings. Each file registers one global with a `register` function that reads like a table of
//! contents. Binding files never import each other: argument checks and conversions live in `args`, the
//! services they share (HTTP clients, ssh masters, the LLM router) in `services`.
pub mod args;
pub mod baton;
pub mod mcp;
pub mod notify;
pub mod ollama;
pub mod openrouter;
pub mod route;
pub mod schedule;
pub mod services;
pub mod ssh;
pub mod sync;

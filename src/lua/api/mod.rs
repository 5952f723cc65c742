//! Lua bindings. Each file registers one global with a `register` function that reads like a table of
//! contents. Binding files never import each other; what they share lives in three helper modules:
//! argument checks and conversions in `args`, the LLM bindings' tools, JSON Schemas, hooks and results in
//! `llm_args`, the services (HTTP clients, ssh masters, the LLM router) in `services`.

// Helpers.
pub mod args;
pub mod llm_args;
pub mod services;

// Bindings, one global each.
pub mod baton;
pub mod claude;
pub mod mcp;
pub mod notify;
pub mod ollama;
pub mod openrouter;
pub mod route;
pub mod schedule;
pub mod ssh;
pub mod sync;

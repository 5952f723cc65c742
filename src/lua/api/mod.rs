//! Lua bindings. Each file registers one global with a `register` function that reads like a table of
//! contents. Binding files never import each other: shared conversion helpers live in `conv`.
pub mod baton;
pub mod conv;
pub mod fast;
pub mod ollama;
pub mod openrouter;
pub mod route;
pub mod schedule;
pub mod ssh;
pub mod sync;

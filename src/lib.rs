//! baton: run a home fleet of machines from Lua playbooks.
//!
//! `core` is plain async Rust (no Lua); `lua` is the only code that touches mlua; `cli` and `repl` are the
//! front ends used by the binary.
pub mod cli;
pub mod core;
pub mod lua;
pub mod repl;

/// mimalloc for every program built on baton (the binary, its tests and benches): a request through Lua
/// allocates and frees many small objects, and glibc's allocator spent a fifth of that path's time on them
/// (its consolidation passes walk cold memory). Measured in benches/README.md (LLM section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

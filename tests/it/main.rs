//! The one integration-test binary: shared helpers in `common`, one module per area.
mod cli;
mod common;
mod llm;
mod lua_specs;
mod mcp;
mod ops;
mod playbooks;
mod repl;
mod schedule;
mod ssh;
mod sshd;
mod stubs;
mod sync;

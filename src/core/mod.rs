//! Plain async Rust: no mlua, no rustyline, no CLI.
pub mod claude;
pub mod duration;
pub mod fleet;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod notify;
pub mod process;
pub mod remote;
pub mod runs;
pub mod schedule;
pub mod secret;
pub mod state;
pub mod text;
pub mod wording;

/// Where unit tests put their state folders: under the crate's `target/`, so a test run leaves nothing in
/// the system's temporary folder (`cargo clean` removes it).
#[cfg(test)]
pub(crate) fn test_tmp() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/unit-tmp");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

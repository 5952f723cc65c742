//! How every entry point (run, REPL, daemon, benches) drives Lua: a current-thread tokio runtime with a
//! `LocalSet`, so async Lua functions, spawned coroutines and local tasks share one thread.
use std::future::Future;

/// Runs `fut` to completion on a fresh current-thread runtime inside a `LocalSet`. Fails only when the
/// runtime cannot be built (the OS refused its timer or I/O driver).
pub fn block_on<F: Future>(fut: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&rt, fut))
}

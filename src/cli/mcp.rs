//! `baton mcp serve [FILE]`: the tools a Lua file registers with `mcp.tool{…}`, served to MCP clients
//! (Claude Code, any agent) on stdin/stdout. stdout carries protocol messages only: the protocol keeps
//! private copies of stdin and stdout, and file descriptors 0 and 1 become /dev/null and stderr, so
//! nothing a tool does (`print`, `io.write`, `os.execute`, a child process, a log line) can write into
//! the protocol stream or read from it.
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{ScriptFailed, default_state};
use crate::core::fleet::Fleet;
use crate::core::mcp::server::{self, Tools};
use crate::lua::{self, Ctx};

/// `tools.lua` next to the fleet file, or in the config folder with the built-in fleet.
pub fn default_file(fleet: &Fleet) -> PathBuf {
    match fleet.source.as_deref().and_then(Path::parent) {
        Some(dir) => dir.join("tools.lua"),
        None => crate::core::fleet::config_dir().join("tools.lua"),
    }
}

pub fn serve(fleet: Arc<Fleet>, file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let file = file.unwrap_or_else(|| default_file(&fleet));
    if !file.is_file() {
        anyhow::bail!(
            "mcp serve: tools file {} not found (create it, or pass FILE)",
            file.display()
        );
    }
    let (protocol_in, protocol_out) =
        private_stdio().context("mcp serve: cannot set up stdin/stdout")?;
    let script = file.display().to_string();
    // Each worker (the first, and one replacing a worker stuck past a call's timeout) gets its own state
    // and database connection.
    let make = move || Ctx {
        fleet: fleet.clone(),
        state: default_state(),
        script: script.clone(),
        args: Vec::new(),
    };
    // The tools run on worker threads of their own, so nothing a tool does (C code no hook interrupts
    // included) keeps this thread from answering: pings, other calls, the end of input.
    let (pool, tools) = lua::api::mcp::Pool::start(make, &file).map_err(ScriptFailed)?;
    if tools.is_empty() {
        anyhow::bail!(
            "mcp serve: {} registered no tools (call mcp.tool{{name = …, run = function(args) … end}} in it)",
            file.display()
        );
    }
    let pool = Arc::new(pool);
    // Ctrl-C ends the server at once: the blocking read of stdin under way is not waited for.
    let served = lua::runtime::block_on_leaving(async {
        tokio::select! {
            r = server::serve(Tools::new(tools, pool.clone()).recording(default_state()), protocol_in, protocol_out) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
    .context("cannot start the async runtime")?;
    pool.shutdown(server::STUCK_AFTER);
    served.context("mcp serve")?;
    Ok(ExitCode::SUCCESS)
}

/// Copies of stdin and stdout for the protocol alone; then fd 0 reads /dev/null and fd 1 writes to stderr.
fn private_stdio() -> std::io::Result<(tokio::fs::File, tokio::fs::File)> {
    let input = std::io::stdin().as_fd().try_clone_to_owned()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned()?;
    rustix::stdio::dup2_stdin(std::fs::File::open("/dev/null")?)?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    Ok((
        tokio::fs::File::from_std(std::fs::File::from(input)),
        tokio::fs::File::from_std(std::fs::File::from(output)),
    ))
}

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
use crate::lua::{self, Ctx, Printer};

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
    let ctx = Ctx {
        fleet,
        state: default_state(),
        script: file.display().to_string(),
        args: Vec::new(),
    };
    lua::runtime::block_on(async {
        let lua = lua::new_runtime(ctx).map_err(|e| ScriptFailed(lua::format_error(&e)))?;
        lua.set_app_data(Printer::to(std::io::stderr()));
        // fd 1 is stderr now; Lua's own io library follows (its buffered stdout would otherwise hold
        // text that ends up on stderr at exit).
        lua.load("io.output(io.stderr); io.stdout = io.stderr")
            .set_name("=mcp serve")
            .exec()
            .map_err(|e| ScriptFailed(lua::format_error(&e)))?;
        lua::run_file(&lua, &file)
            .await
            .map_err(|e| ScriptFailed(lua::format_error(&e)))?;
        let tools = lua::api::mcp::registered(&lua);
        if tools.is_empty() {
            anyhow::bail!(
                "mcp serve: {} registered no tools (call mcp.tool{{name = …, run = function(args) … end}} in it)",
                file.display()
            );
        }
        let (calls, queue) = tokio::sync::mpsc::unbounded_channel();
        let runner = tokio::task::spawn_local(lua::api::mcp::run_calls(lua.clone(), queue));
        let served = tokio::select! {
            r = server::serve(Tools::new(tools, calls), protocol_in, protocol_out) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
        runner.abort();
        served.context("mcp serve")?;
        Ok(ExitCode::SUCCESS)
    })
    .context("cannot start the async runtime")?
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

//! `baton mcp serve [FILE]`: the tools a Lua file registers with `mcp.tool{…}`, served to MCP clients
//! (Claude Code, any agent) on stdin/stdout. stdout carries protocol messages only: `print` in a tool goes
//! to stderr, as do log lines.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{ScriptFailed, default_state};
use crate::core::fleet::Fleet;
use crate::core::mcp::server::{Tools, serve_stdio};
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
    let ctx = Ctx {
        fleet,
        state: default_state(),
        script: file.display().to_string(),
        args: Vec::new(),
    };
    lua::runtime::block_on(async {
        let lua = lua::new_runtime(ctx).map_err(|e| ScriptFailed(lua::format_error(&e)))?;
        lua.set_app_data(Printer::to(std::io::stderr()));
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
            r = serve_stdio(Tools::new(tools, calls)) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        };
        runner.abort();
        served.context("mcp serve")?;
        Ok(ExitCode::SUCCESS)
    })
    .context("cannot start the async runtime")?
}

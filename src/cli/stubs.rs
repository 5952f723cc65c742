//! `baton stubs DIR` (LuaLS stubs and `.luarc.json` for the editor) and `baton completions SHELL`.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{Cli, Out};
use crate::lua;

/// `baton completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "baton", &mut script);
    Out::new().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `baton stubs DIR`: writes `DIR/.baton/meta/` (the embedded LuaLS stubs and stdlib modules) and a
/// `.luarc.json` pointing at it. An existing `.luarc.json` is kept and only gains the entries.
pub fn write(dir: &Path) -> anyhow::Result<ExitCode> {
    let n = write_stubs(dir).context("stubs")?;
    writeln!(
        Out::new(),
        "wrote {n} stub files and .luarc.json to {}",
        dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn write_stubs(dir: &Path) -> anyhow::Result<usize> {
    // The globals' stubs go to `.baton/meta/`, the stdlib modules (annotated sources) to
    // `.baton/meta/baton/`, where the editor resolves `require("baton.args")`.
    let meta = dir.join(".baton/meta");
    let mut n = 0;
    for (file, body) in lua::stdlib::FILES {
        let target = meta.join(file.trim_start_matches("_meta/"));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, body)
            .with_context(|| format!("cannot write {}", target.display()))?;
        n += 1;
    }
    let rc = dir.join(".luarc.json");
    let mut config: serde_json::Value = match std::fs::read_to_string(&rc) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON; fix or remove it", rc.display()))?,
        Err(_) => serde_json::json!({}),
    };
    let obj = config
        .as_object_mut()
        .with_context(|| format!("{}: expected a JSON object", rc.display()))?;
    obj.entry("runtime.version")
        .or_insert_with(|| "Lua 5.4".into());
    let library = obj
        .entry("workspace.library")
        .or_insert_with(|| serde_json::json!([]));
    let entry = serde_json::Value::from(".baton/meta");
    if let Some(list) = library.as_array_mut()
        && !list.contains(&entry)
    {
        list.push(entry);
    }
    let globals = obj
        .entry("diagnostics.globals")
        .or_insert_with(|| serde_json::json!([]));
    if let Some(list) = globals.as_array_mut() {
        for g in lua::global_names() {
            if !list.iter().any(|v| v == g) {
                list.push(g.into());
            }
        }
    }
    let text = serde_json::to_string_pretty(&config)?;
    std::fs::write(&rc, text + "\n").with_context(|| format!("cannot write {}", rc.display()))?;
    Ok(n)
}

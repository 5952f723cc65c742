//! The `sync` global: rsync push/pull over the fleet's ssh masters, and git sync (issue 5). The remote
//! service (and so the ssh masters) is the one `ssh` uses, kept in app data and created on first use.
use std::io::IsTerminal;

use mlua::{Lua, Table, Value};
use tokio::sync::mpsc;

use super::{args, services};
use crate::core::remote::git::{self, GitOpts};
use crate::core::remote::rsync::{self, Endpoint, Progress, SyncOpts, SyncResult};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let sync = lua.create_table()?;
    sync.set("push", lua.create_async_function(push)?)?;
    sync.set("pull", lua.create_async_function(pull)?)?;
    sync.set("git", lua.create_async_function(git_local)?)?;
    sync.set("git_remote", lua.create_async_function(git_remote)?)?;
    Ok(sync)
}

/// A `"host:path"` argument.
fn host_path(func: &str, pos: usize, v: &Value) -> mlua::Result<(String, String)> {
    let s = args::string(func, pos, "remote", v)?;
    match rsync::split_host_path(&s) {
        Some((h, p)) => Ok((h.to_string(), p.to_string())),
        None => Err(args::arg_error(
            func,
            pos,
            "remote",
            "a \"host:path\" string",
            v,
        )),
    }
}

fn result_table(lua: &Lua, res: &SyncResult) -> mlua::Result<Table> {
    let changes = lua.create_table_with_capacity(res.changes.len(), 0)?;
    for (i, c) in res.changes.iter().enumerate() {
        let t = lua.create_table_with_capacity(0, 3)?;
        t.set("path", c.path.as_str())?;
        t.set("action", c.action.name())?;
        t.set("size", c.size)?;
        changes.raw_set(i + 1, t)?;
    }
    let t = lua.create_table_with_capacity(0, 5)?;
    t.set("changes", changes)?;
    t.set("files", res.files)?;
    t.set("bytes", res.bytes)?;
    t.set("dry_run", res.dry_run)?;
    t.set("duration", res.duration.as_secs_f64())?;
    Ok(t)
}

/// Runs one rsync transfer; `to_host` says which side is the fleet host. Progress goes to `on_progress`,
/// else to a bar on stderr when it is a terminal.
async fn transfer(
    lua: Lua,
    func: &str,
    local: Value,
    target: Value,
    opts: Value,
    to_host: bool,
) -> mlua::Result<Table> {
    let (local_pos, host_pos) = if to_host { (1, 2) } else { (2, 1) };
    let local = args::string(func, local_pos, "local_path", &local)?;
    let (host, path) = host_path(func, host_pos, &target)?;
    let (opts, mut cbs) = args::opts::<SyncOpts>(&lua, func, 3, opts, &["on_progress"])?;
    let on_progress = cbs.take("on_progress");
    let r = services::remote(&lua);
    let fail = |e| args::fail(format!("{func}({host}): {e}"));
    let far = Endpoint::remote(&r, &host, &path).map_err(fail)?;
    let near = Endpoint::Local(crate::core::remote::expand_home(&local));
    let (src, dst) = if to_host { (near, far) } else { (far, near) };
    let bar = on_progress.is_none() && std::io::stderr().is_terminal();
    if on_progress.is_none() && !bar {
        let res = rsync::sync(&r, &src, &dst, &opts, None)
            .await
            .map_err(fail)?;
        return result_table(&lua, &res);
    }
    let (tx, mut rx) = mpsc::channel::<Progress>(16);
    let work = rsync::sync(&r, &src, &dst, &opts, Some(tx));
    tokio::pin!(work);
    let res = loop {
        tokio::select! {
            biased;
            Some(p) = rx.recv() => match &on_progress {
                Some(cb) => cb.call_async::<()>(progress_table(&lua, &p)?).await?,
                None => draw_bar(&p),
            },
            res = &mut work => break res,
        }
    };
    while let Ok(p) = rx.try_recv() {
        match &on_progress {
            Some(cb) => cb.call_async::<()>(progress_table(&lua, &p)?).await?,
            None => draw_bar(&p),
        }
    }
    if bar {
        eprint!("\r\x1b[K");
    }
    result_table(&lua, &res.map_err(fail)?)
}

fn progress_table(lua: &Lua, p: &Progress) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 4)?;
    t.set("bytes", p.bytes)?;
    t.set("percent", p.percent)?;
    t.set("rate", p.rate.as_str())?;
    t.set("eta", p.eta.as_str())?;
    Ok(t)
}

/// `[##########··········]  50%  31.25MB/s  0:00:03` on one terminal line.
fn draw_bar(p: &Progress) {
    let filled = usize::from(p.percent.min(100)) / 5;
    eprint!(
        "\r\x1b[K[{}{}] {:>3}%  {}  {}",
        "#".repeat(filled),
        "·".repeat(20 - filled),
        p.percent,
        p.rate,
        p.eta
    );
}

/// `sync.push(local_path, "host:path" [, opts])`.
async fn push(lua: Lua, (local, target, opts): (Value, Value, Value)) -> mlua::Result<Table> {
    transfer(lua, "sync.push", local, target, opts, true).await
}

/// `sync.pull("host:path", local_path [, opts])`.
async fn pull(lua: Lua, (source, local, opts): (Value, Value, Value)) -> mlua::Result<Table> {
    transfer(lua, "sync.pull", local, source, opts, false).await
}

async fn git_steps(
    lua: Lua,
    func: &str,
    host: String,
    repo: Value,
    repo_pos: usize,
    opts: Value,
) -> mlua::Result<Table> {
    let repo = args::string(func, repo_pos, "repo_path", &repo)?;
    let (opts, _) = args::opts::<GitOpts>(&lua, func, repo_pos + 1, opts, &[])?;
    let res = git::sync(&services::remote(&lua), &host, &repo, &opts)
        .await
        .map_err(|e| args::fail(format!("{func}({host}): {e}")))?;
    let t = lua.create_table_with_capacity(0, 4)?;
    t.set("committed", res.committed)?;
    t.set("pulled", res.pulled)?;
    t.set("pushed", res.pushed)?;
    t.set("head", res.head)?;
    Ok(t)
}

/// `sync.git(repo_path [, {message, remote = "origin", branch}])` on this machine.
async fn git_local(lua: Lua, (repo, opts): (Value, Value)) -> mlua::Result<Table> {
    git_steps(lua, "sync.git", "local".into(), repo, 1, opts).await
}

/// `sync.git_remote(host, repo_path [, opts])`: the same steps on a fleet host over ssh.
async fn git_remote(lua: Lua, (host, repo, opts): (Value, Value, Value)) -> mlua::Result<Table> {
    let host = args::string("sync.git_remote", 1, "host", &host)?;
    git_steps(lua, "sync.git_remote", host, repo, 2, opts).await
}

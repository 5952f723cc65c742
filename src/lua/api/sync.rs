//! The `sync` global: rsync push/pull over the fleet's ssh masters, and git sync (issue 5). The remote
//! service (and so the ssh masters) is the one `ssh` uses, kept in app data and created on first use.
use std::io::IsTerminal;

use mlua::{Lua, Table, Value};
use tokio::sync::mpsc;

use super::{args, services};
use crate::core::duration::Dur;
use crate::core::remote::git::{self, GitOpts};
use crate::core::remote::rsync::{self, Endpoint, Progress, SyncOpts, SyncResult};
use crate::core::remote::syncthing;

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let sync = lua.create_table()?;
    sync.set("push", lua.create_async_function(push)?)?;
    sync.set("pull", lua.create_async_function(pull)?)?;
    sync.set("git", lua.create_async_function(git_local)?)?;
    sync.set("git_remote", lua.create_async_function(git_remote)?)?;
    sync.set("syncthing", lua.create_async_function(syncthing)?)?;
    sync.set("realpath", lua.create_async_function(realpath)?)?;
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
    let fail = |e| args::fail(format!("{}: {e}", args::call_name(func, &host)));
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
        crate::drawn!("\r\x1b[K");
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
    crate::drawn!(
        "\r\x1b[K[{}{}] {:>3}%  {}  {}",
        "#".repeat(filled),
        "·".repeat(20 - filled),
        p.percent,
        crate::core::text::escape(&p.rate),
        crate::core::text::escape(&p.eta)
    );
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RealpathOpts {
    missing_ok: bool,
}

/// `sync.realpath(host, path [, {missing_ok}])` → the absolute path with every link followed, on that host.
async fn realpath(lua: Lua, (host, path, opts): (Value, Value, Value)) -> mlua::Result<String> {
    const F: &str = "sync.realpath";
    let host = args::string(F, 1, "host", &host)?;
    let path = args::string(F, 2, "path", &path)?;
    let (opts, _) = args::opts::<RealpathOpts>(&lua, F, 3, opts, &[])?;
    rsync::realpath(&services::remote(&lua), &host, &path, opts.missing_ok)
        .await
        .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &host))))
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
        .map_err(|e| args::fail(format!("{}: {e}", args::call_name(func, &host))))?;
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

/// `sync.syncthing([host])` → a handle on that host's Syncthing REST API (default host: this machine).
async fn syncthing(lua: Lua, host: Value) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "sync.syncthing";
    let host = match &host {
        Value::Nil => "local".to_string(),
        other => args::string(F, 1, "host", other)?,
    };
    let client = syncthing::connect(&services::remote(&lua), &host)
        .await
        .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &host))))?;
    let handle = lua.create_userdata(Syncthing {
        host,
        client: std::sync::Arc::new(client),
    })?;
    crate::lua::keep_method_frames(&lua, handle)
}

struct Syncthing {
    host: String,
    client: std::sync::Arc<syncthing::Client>,
}

impl Syncthing {
    fn fail(&self, method: &str, e: crate::core::remote::RemoteError) -> mlua::Error {
        args::fail(format!("syncthing:{method}({}): {e}", self.host))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitSyncedOpts {
    device: Option<String>,
    #[serde(default = "ten_minutes")]
    timeout: Dur,
    #[serde(default = "one_second")]
    interval: Dur,
}

fn ten_minutes() -> Dur {
    Dur(std::time::Duration::from_secs(600))
}

fn one_second() -> Dur {
    Dur(std::time::Duration::from_secs(1))
}

impl Default for WaitSyncedOpts {
    fn default() -> Self {
        WaitSyncedOpts {
            device: None,
            timeout: ten_minutes(),
            interval: one_second(),
        }
    }
}

fn folder_status_table(lua: &Lua, s: &syncthing::FolderStatus) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("state", s.state.as_str())?;
    t.set("paused", s.paused)?;
    t.set("need_bytes", s.need_bytes)?;
    t.set("need_files", s.need_files)?;
    t.set("global_bytes", s.global_bytes)?;
    t.set("local_bytes", s.local_bytes)?;
    t.set("errors", s.errors)?;
    let devices = lua.create_table()?;
    for c in &s.completion {
        let d = lua.create_table()?;
        d.set("device", c.device.as_str())?;
        d.set("name", c.name.as_str())?;
        d.set("completion", c.completion)?;
        d.set("need_bytes", c.need_bytes)?;
        d.set("need_items", c.need_items)?;
        d.set("connected", c.connected)?;
        d.set("synced", c.synced())?;
        devices.set(c.name.as_str(), d)?;
    }
    t.set("completion", devices)?;
    Ok(t)
}

fn folder_arg(method: &str, v: &Value) -> mlua::Result<String> {
    args::string(&format!("syncthing:{method}"), 1, "folder", v)
}

impl mlua::UserData for Syncthing {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("id", |_, this, ()| async move {
            let c = this.client.clone();
            c.my_id().await.map_err(|e| this.fail("id", e))
        });
        methods.add_async_method("folders", |lua, this, ()| async move {
            let c = this.client.clone();
            let list = c.folders().await.map_err(|e| this.fail("folders", e))?;
            let out = lua.create_table_with_capacity(list.len(), 0)?;
            for (i, f) in list.iter().enumerate() {
                let t = lua.create_table()?;
                t.set("id", f.id.as_str())?;
                t.set("label", f.label.as_str())?;
                t.set("path", f.path.as_str())?;
                t.set("paused", f.paused)?;
                t.set(
                    "devices",
                    lua.create_sequence_from(f.devices.iter().map(String::as_str))?,
                )?;
                out.raw_set(i + 1, t)?;
            }
            Ok(out)
        });
        methods.add_async_method("status", |lua, this, folder: Value| async move {
            let folder = folder_arg("status", &folder)?;
            let c = this.client.clone();
            let s = c
                .status(&folder)
                .await
                .map_err(|e| this.fail("status", e))?;
            folder_status_table(&lua, &s)
        });
        methods.add_async_method("scan", |_, this, folder: Value| async move {
            let folder = folder_arg("scan", &folder)?;
            let c = this.client.clone();
            c.scan(&folder).await.map_err(|e| this.fail("scan", e))
        });
        methods.add_async_method("pause", |_, this, folder: Value| async move {
            let folder = folder_arg("pause", &folder)?;
            let c = this.client.clone();
            c.set_paused(&folder, true)
                .await
                .map_err(|e| this.fail("pause", e))
        });
        methods.add_async_method("resume", |_, this, folder: Value| async move {
            let folder = folder_arg("resume", &folder)?;
            let c = this.client.clone();
            c.set_paused(&folder, false)
                .await
                .map_err(|e| this.fail("resume", e))
        });
        methods.add_async_method("errors", |lua, this, ()| async move {
            let c = this.client.clone();
            let list = c.errors().await.map_err(|e| this.fail("errors", e))?;
            let out = lua.create_table_with_capacity(list.len(), 0)?;
            for (i, e) in list.iter().enumerate() {
                let t = lua.create_table()?;
                t.set("folder", e.folder.as_deref())?;
                t.set("path", e.path.as_deref())?;
                t.set("message", e.message.as_str())?;
                out.raw_set(i + 1, t)?;
            }
            Ok(out)
        });
        methods.add_async_method(
            "wait_synced",
            |lua, this, (folder, opts): (Value, Value)| async move {
                let folder = folder_arg("wait_synced", &folder)?;
                let (opts, _) =
                    args::opts::<WaitSyncedOpts>(&lua, "syncthing:wait_synced", 2, opts, &[])?;
                let c = this.client.clone();
                let s = c
                    .wait_synced(
                        &folder,
                        opts.device.as_deref(),
                        opts.timeout.0,
                        opts.interval.0,
                    )
                    .await
                    .map_err(|e| this.fail("wait_synced", e))?;
                folder_status_table(&lua, &s)
            },
        );
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!(
                "syncthing on {} ({})",
                this.host,
                this.client.url()
            ))
        });
    }
}

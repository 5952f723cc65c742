//! The `ssh` global: remote commands, detached jobs, reachability and fan-out (issue 4). Bindings convert
//! arguments, call `core::remote` and convert results; the session pool lives in app data, created on
//! first use.
use std::cell::RefCell;
use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt};
use mlua::{AnyUserData, Lua, Table, UserData, UserDataFields, UserDataMethods, Value};
use serde::Deserialize;

use super::{args, services};
use crate::core::duration::Dur;
use crate::core::process::Spec;
use crate::core::remote::jobs::{self, Job, Status};
use crate::core::remote::{Remote, RemoteError, wake};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let ssh = lua.create_table()?;
    ssh.set("run", lua.create_async_function(run)?)?;
    ssh.set("spawn", lua.create_async_function(spawn)?)?;
    ssh.set("job", lua.create_function(job)?)?;
    ssh.set("online", lua.create_async_function(online)?)?;
    ssh.set("wait_online", lua.create_async_function(wait_online)?)?;
    ssh.set("wake", lua.create_async_function(wake)?)?;
    ssh.set("each", lua.create_async_function(each)?)?;
    Ok(ssh)
}

/// `ssh.run(brain): cause`; misuse (unknown host, bad env name) raises even with `check = false`.
fn failure(
    lua: &Lua,
    func: &str,
    host: &str,
    err: RemoteError,
    check: bool,
) -> mlua::Result<Table> {
    if check
        || matches!(
            err,
            RemoteError::UnknownHost { .. } | RemoteError::Invalid(_)
        )
    {
        return Err(args::fail(format!(
            "{}: {err}",
            args::call_name(func, host)
        )));
    }
    let t = lua.create_table()?;
    t.set("ok", false)?;
    t.set("err", err.to_string())?;
    t.set("host", host)?;
    Ok(t)
}

/// `ssh.run(host, cmd [, opts])` → `{ok, code, signal, stdout, stderr, duration, host}`.
async fn run(lua: Lua, (host, cmd, opts): (Value, Value, Value)) -> mlua::Result<Table> {
    const F: &str = "ssh.run";
    let host = args::string(F, 1, "host", &host)?;
    let cmd = args::cmd(F, 2, &cmd)?;
    let (mut opts, mut cbs) = args::opts::<args::ProcessOpts>(&lua, F, 3, opts, &["on_line"])?;
    let spec = opts.spec();
    let r = services::remote(&lua);
    let out = args::with_lines(cbs.take("on_line"), |sink| r.run(&host, &cmd, &spec, sink)).await?;
    let out = match out {
        Ok(out) => out,
        Err(e) => return failure(&lua, F, &host, e, opts.check),
    };
    if opts.check && !out.ok() {
        return Err(args::fail(format!(
            "{F}({host}): {}",
            out.failure_summary()
        )));
    }
    let t = args::process_result(&lua, &out)?;
    t.set("host", host)?;
    Ok(t)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SpawnOpts {
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    notify: bool,
    #[serde(default)]
    tmux: bool,
    title: Option<String>,
}

/// `ssh.spawn(host, cmd [, opts])` → job handle.
async fn spawn(lua: Lua, (host, cmd, opts): (Value, Value, Value)) -> mlua::Result<AnyUserData> {
    const F: &str = "ssh.spawn";
    let host = args::string(F, 1, "host", &host)?;
    let cmd = args::cmd(F, 2, &cmd)?;
    let (opts, _) = args::opts::<SpawnOpts>(&lua, F, 3, opts, &[])?;
    let spec = Spec {
        cwd: opts.cwd.map(Into::into),
        env: opts.env.into_iter().collect(),
        ..Spec::default()
    };
    let state = crate::lua::ctx(&lua).state.clone();
    let job_opts = jobs::JobOpts {
        notify: opts.notify,
        tmux: opts.tmux,
        title: opts.title,
    };
    let job = jobs::spawn_with(
        &services::remote(&lua),
        &state,
        &host,
        &cmd,
        &spec,
        job_opts,
    )
    .await
    .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &host))))?;
    lua.create_userdata(JobHandle(RefCell::new(job)))
}

/// `ssh.job(id)` → the handle of a registered job.
fn job(lua: &Lua, id: Value) -> mlua::Result<AnyUserData> {
    let id = args::string("ssh.job", 1, "id", &id)?;
    let job = jobs::get(&crate::lua::ctx(lua).state, &id)
        .map_err(|e| args::fail(format!("ssh.job: {e}")))?;
    lua.create_userdata(JobHandle(RefCell::new(job)))
}

/// The id of a job handle (`None` for any other userdata): how the run journal keeps one.
pub(crate) fn job_id(ud: &AnyUserData) -> Option<String> {
    ud.borrow::<JobHandle>()
        .ok()
        .map(|j| j.0.borrow().id.clone())
}

/// The handle of registered job `id` (the run journal giving back what `ssh.spawn` returned).
pub(crate) fn job_handle(lua: &Lua, id: &str) -> mlua::Result<AnyUserData> {
    job(lua, Value::String(lua.create_string(id)?))
}

/// A detached job; the registry row is its source of truth, the handle caches the last status.
struct JobHandle(RefCell<Job>);

impl JobHandle {
    fn snapshot(&self) -> Job {
        self.0.borrow().clone()
    }

    /// Runs one job operation on a copy (no borrow is held across the await) and stores the result back.
    async fn update<T>(
        &self,
        lua: &Lua,
        method: &str,
        op: impl AsyncFnOnce(&Remote, &crate::core::state::State, &mut Job) -> Result<T, RemoteError>,
    ) -> mlua::Result<T> {
        let mut job = self.snapshot();
        let state = crate::lua::ctx(lua).state.clone();
        let result = op(&services::remote(lua), &state, &mut job).await;
        let label = format!("job:{method}({} on {})", job.id, job.host);
        *self.0.borrow_mut() = job;
        result.map_err(|e| args::fail(format!("{label}: {e}")))
    }
}

fn status_table(lua: &Lua, status: Status) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("state", status.state.name())?;
    t.set("code", status.code)?;
    Ok(t)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitOpts {
    #[serde(default = "ten_seconds")]
    poll: Dur,
    timeout: Option<Dur>,
}

fn ten_seconds() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}

impl Default for WaitOpts {
    fn default() -> Self {
        WaitOpts {
            poll: ten_seconds(),
            timeout: None,
        }
    }
}

impl UserData for JobHandle {
    fn add_fields<M: UserDataFields<Self>>(fields: &mut M) {
        fields.add_field_method_get("id", |_, this| Ok(this.0.borrow().id.clone()));
        fields.add_field_method_get("host", |_, this| Ok(this.0.borrow().host.clone()));
        fields.add_field_method_get("pid", |_, this| Ok(this.0.borrow().pid));
        fields.add_field_method_get("log", |_, this| Ok(this.0.borrow().log()));
        fields.add_field_method_get("command", |_, this| Ok(this.0.borrow().command.clone()));
        fields.add_field_method_get("notify", |_, this| Ok(this.0.borrow().notify));
        fields.add_field_method_get("cwd", |_, this| Ok(this.0.borrow().cwd.clone()));
        fields.add_field_method_get("title", |_, this| Ok(this.0.borrow().title.clone()));
        fields.add_field_method_get("tmux", |_, this| {
            let job = this.0.borrow();
            Ok(job.tmux.then(|| job.tmux_session()))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("status", |lua, this, ()| async move {
            let status = this
                .update(&lua, "status", async |r, s, j| jobs::status(r, s, j).await)
                .await?;
            status_table(&lua, status)
        });
        methods.add_async_method("wait", |lua, this, opts: Value| async move {
            let (opts, mut cbs) = args::opts::<WaitOpts>(&lua, "job:wait", 1, opts, &["on_line"])?;
            let on_line = cbs.take("on_line");
            let status = args::with_lines(on_line, |sink| {
                this.update(&lua, "wait", async |r, s, j| {
                    jobs::wait(
                        r,
                        s,
                        j,
                        opts.poll.0.max(std::time::Duration::from_millis(50)),
                        opts.timeout.map(|d| d.0),
                        sink,
                        crate::core::process::DEFAULT_MAX_LINE,
                    )
                    .await
                })
            })
            .await??;
            status_table(&lua, status)
        });
        methods.add_async_method("tail", |lua, this, n: Value| async move {
            let n = match n {
                Value::Nil => 10,
                Value::Integer(i) if i >= 0 => i as usize,
                other => {
                    return Err(args::arg_error(
                        "job:tail",
                        1,
                        "n",
                        "a non-negative integer",
                        &other,
                    ));
                }
            };
            let lines = this
                .update(&lua, "tail", async |r, _, j| jobs::tail(r, j, n).await)
                .await?;
            lua.create_sequence_from(lines)
        });
        methods.add_async_method("kill", |lua, this, ()| async move {
            let status = this
                .update(&lua, "kill", async |r, s, j| jobs::kill(r, s, j).await)
                .await?;
            status_table(&lua, status)
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            let job = this.0.borrow();
            let state = match job.status.code {
                Some(code) => format!("{} {code}", job.status.state.name()),
                None => job.status.state.name().to_string(),
            };
            Ok(format!(
                "job {} on {} ({state}): {}",
                job.id, job.host, job.command
            ))
        });
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnlineOpts {
    #[serde(default = "three_seconds")]
    timeout: Dur,
}

fn three_seconds() -> Dur {
    Dur(std::time::Duration::from_secs(3))
}

impl Default for OnlineOpts {
    fn default() -> Self {
        OnlineOpts {
            timeout: three_seconds(),
        }
    }
}

/// `ssh.online(host [, {timeout = "3s"}])` → boolean.
async fn online(lua: Lua, (host, opts): (Value, Value)) -> mlua::Result<bool> {
    const F: &str = "ssh.online";
    let host = args::string(F, 1, "host", &host)?;
    let (opts, _) = args::opts::<OnlineOpts>(&lua, F, 2, opts, &[])?;
    services::remote(&lua)
        .online(&host, opts.timeout.0)
        .await
        .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &host))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitOnlineOpts {
    #[serde(default = "five_minutes")]
    timeout: Dur,
    #[serde(default = "two_seconds")]
    interval: Dur,
    #[serde(default)]
    wake: bool,
}

fn five_minutes() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}

fn two_seconds() -> Dur {
    Dur(std::time::Duration::from_secs(2))
}

impl Default for WaitOnlineOpts {
    fn default() -> Self {
        WaitOnlineOpts {
            timeout: five_minutes(),
            interval: two_seconds(),
            wake: false,
        }
    }
}

/// `ssh.wait_online(host [, {timeout = "5m", interval = "2s", wake = false}])`; with `wake`, a host that
/// does not answer at once is sent the magic packet first.
async fn wait_online(lua: Lua, (host, opts): (Value, Value)) -> mlua::Result<()> {
    const F: &str = "ssh.wait_online";
    let host = args::string(F, 1, "host", &host)?;
    let (opts, _) = args::opts::<WaitOnlineOpts>(&lua, F, 2, opts, &[])?;
    let r = services::remote(&lua);
    let interval = opts.interval.0.max(std::time::Duration::from_millis(50));
    if opts.wake {
        return wake::wake_and_wait(&r, &host, opts.timeout.0, interval)
            .await
            .map(|_| ())
            .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &host))));
    }
    r.wait_online(&host, opts.timeout.0, interval)
        .await
        .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &host))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EachOpts {
    #[serde(default = "eight")]
    limit: usize,
    #[serde(default = "args::yes")]
    check: bool,
}

fn eight() -> usize {
    8
}

impl Default for EachOpts {
    fn default() -> Self {
        EachOpts {
            limit: eight(),
            check: true,
        }
    }
}

/// `ssh.each(hosts, fn [, {limit = 8, check = true}])` → results in host order.
async fn each(lua: Lua, (hosts, f, opts): (Value, Value, Value)) -> mlua::Result<Table> {
    const F: &str = "ssh.each";
    let list = args::table(F, 1, "hosts", &hosts)?;
    let f = args::function(F, 2, "fn", &f)?;
    let (opts, _) = args::opts::<EachOpts>(&lua, F, 3, opts, &[])?;
    if opts.limit == 0 {
        return Err(args::fail(format!(
            "{F}: options.limit must be at least 1, got 0"
        )));
    }
    let mut hosts = Vec::with_capacity(list.raw_len());
    for (i, item) in list.sequence_values::<Value>().enumerate() {
        match item? {
            Value::String(s) => hosts.push(args::text(
                F,
                &format!("argument 1 (hosts) at index {}", i + 1),
                &s,
            )?),
            other => {
                return Err(args::fail(format!(
                    "{F}: argument 1 (hosts) must be a list of host names, got a {} at index {}",
                    args::type_name(&other),
                    i + 1
                )));
            }
        }
    }
    // Each host's call is a task of its own in the run journal, numbered in the list's order.
    let mut calls = Vec::with_capacity(hosts.len());
    for h in &hosts {
        let (thread, guard) = crate::lua::journal::task_thread(&lua, f.clone())?;
        let run = thread.into_async::<Value>(h.clone())?;
        calls.push(async move {
            let r = run.await;
            drop(guard);
            r
        });
    }
    let results: Vec<_> = stream::iter(calls).buffered(opts.limit).collect().await;
    let out = lua.create_table_with_capacity(hosts.len(), 0)?;
    for (i, (host, result)) in hosts.iter().zip(results).enumerate() {
        let value = match result {
            Ok(v) => v,
            Err(e) if opts.check => {
                return Err(args::fail(format!(
                    "{F}({host}): {}",
                    crate::lua::split_error(&e).0
                )));
            }
            Err(e) => {
                let t = lua.create_table()?;
                t.set("ok", false)?;
                t.set("err", crate::lua::split_error(&e).0)?;
                t.set("host", host.as_str())?;
                Value::Table(t)
            }
        };
        out.raw_set(i + 1, value)?;
    }
    Ok(out)
}

/// `ssh.wake(host)` → `{to = "ip:port", via = host|nil, program = name|nil}`: sends the Wake-on-LAN magic
/// packet (it does not wait; see `ssh.wait_online(host, {wake = true})`).
async fn wake(lua: Lua, host: Value) -> mlua::Result<Table> {
    const F: &str = "ssh.wake";
    let host = args::string(F, 1, "host", &host)?;
    let sent = wake::wake(&services::remote(&lua), &host)
        .await
        .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &host))))?;
    let t = lua.create_table()?;
    t.set("to", sent.to.to_string())?;
    t.set("via", sent.via)?;
    t.set("program", sent.program)?;
    Ok(t)
}

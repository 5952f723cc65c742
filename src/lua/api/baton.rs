//! The `baton` global: runtime helpers for every playbook.
use std::cell::Cell;
use std::rc::Rc;

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use futures_util::stream::{self, StreamExt};
use mlua::{
    AnyUserData, Function, Lua, LuaSerdeExt, MultiValue, Table, UserData, UserDataMethods, Value,
};
use serde::Deserialize;

use super::args;
use crate::core::duration;
use crate::core::process;

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let baton = lua.create_table()?;
    baton.set(
        "args",
        lua.create_sequence_from(crate::lua::ctx(lua).args.clone())?,
    )?;
    baton.set("env", lua.create_function(env)?)?;
    baton.set("sleep", lua.create_async_function(sleep)?)?;
    baton.set("clock", lua.create_function(clock)?)?;
    baton.set("now", lua.create_function(now)?)?;
    baton.set("spawn", lua.create_function(spawn)?)?;
    baton.set("gather", lua.create_async_function(gather)?)?;
    baton.set("timeout", lua.create_async_function(timeout)?)?;
    baton.set("exec", lua.create_async_function(exec)?)?;
    baton.set("inspect", lua.create_function(inspect)?)?;
    baton.set("log", log_table(lua)?)?;
    baton.set("json", json_table(lua)?)?;
    baton.set("_paths", lua.create_function(paths)?)?;
    baton.set("_jobs", lua.create_function(jobs)?)?;
    Ok(baton)
}

/// `baton.env(name [, default])`.
fn env(_: &Lua, (name, default): (Value, Value)) -> mlua::Result<Option<String>> {
    let name = args::string("baton.env", 1, "name", &name)?;
    let default = args::opt_string("baton.env", 2, "default", &default)?;
    Ok(std::env::var(&name).ok().or(default))
}

/// A read-only view of the fleet with defaults applied (tiers and tasks filled in): `baton.fleet`, built on
/// its first use (the runtime's wiring in `lua/mod.rs` puts a stand-in there), since most playbooks never
/// read it and building it was a quarter of start-up.
pub fn fleet_view(lua: &Lua) -> mlua::Result<Value> {
    let fleet = &crate::lua::ctx(lua).fleet;
    fleet.check_hosts().map_err(mlua::Error::external)?;
    let view = fleet.view();
    let view = args::to_lua(lua, &view)?;
    let readonly: Function = lua
        .load(
            r#"
            local function ro(t, path)
              if type(t) ~= "table" then return t end
              local inner = {}
              for k, v in pairs(t) do inner[k] = ro(v, path .. "." .. tostring(k)) end
              return setmetatable({}, {
                __index = inner,
                __newindex = function(_, k) error(path .. " is read-only (tried to set " .. tostring(k) .. ")", 2) end,
                __pairs = function() return next, inner, nil end,
                __len = function() return #inner end,
              })
            end
            return ro(..., "baton.fleet")"#,
        )
        .set_name("=baton.fleet")
        .into_function()?;
    readonly.call(view)
}

/// `baton.clock()` → seconds on a monotonic clock (for measuring intervals).
fn clock(_: &Lua, (): ()) -> mlua::Result<f64> {
    thread_local! {
        static ORIGIN: std::time::Instant = std::time::Instant::now();
    }
    Ok(ORIGIN.with(|o| o.elapsed().as_secs_f64()))
}

/// `baton.now()` → wall-clock seconds since the Unix epoch, with fractions.
fn now(_: &Lua, (): ()) -> mlua::Result<f64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0))
}

/// `baton.sleep(dur)`.
async fn sleep(_: Lua, d: Value) -> mlua::Result<()> {
    let d = args::duration_arg("baton.sleep", 1, "dur", &d)?;
    if d.is_zero() {
        // Zero means "let other coroutines run", not "wait for the timer's next 1 ms tick".
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(d).await;
    }
    Ok(())
}

type TaskResult = Result<MultiValue, mlua::Error>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum TaskStatus {
    Running,
    Done,
    Failed,
    Cancelled,
}

/// A coroutine started by `baton.spawn`: `:wait()` returns its values or re-raises its error; `:cancel()`
/// stops it at its next wait.
pub struct Task {
    id: u64,
    /// The task's own coroutine, to refuse `t:wait()` from inside `t`.
    thread: usize,
    result: Shared<LocalBoxFuture<'static, TaskResult>>,
    abort: tokio::task::AbortHandle,
    status: Rc<Cell<TaskStatus>>,
}

thread_local! {
    static NEXT_TASK: Cell<u64> = const { Cell::new(1) };
}

impl Task {
    async fn wait(&self) -> TaskResult {
        self.result.clone().await
    }
}

impl UserData for Task {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("wait", |lua, this, ()| {
            let own = this.status.get() == TaskStatus::Running
                && lua.current_thread().to_pointer() as usize == this.thread;
            async move {
                if own {
                    return Err(args::fail(format!(
                        "task#{}:wait: task waits on itself (it would never finish)",
                        this.id
                    )));
                }
                this.wait().await
            }
        });
        methods.add_method("cancel", |_, this, ()| {
            if this.status.get() == TaskStatus::Running {
                this.abort.abort();
                this.status.set(TaskStatus::Cancelled);
            }
            Ok(())
        });
        methods.add_method("status", |_, this, ()| Ok(status_name(this.status.get())));
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!(
                "task#{} ({})",
                this.id,
                status_name(this.status.get())
            ))
        });
    }
}

fn status_name(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Running => "running",
        TaskStatus::Done => "done",
        TaskStatus::Failed => "failed",
        TaskStatus::Cancelled => "cancelled",
    }
}

/// `baton.spawn(fn, …)` → task handle; the function starts at once as its own coroutine.
fn spawn(lua: &Lua, (f, args): (Value, MultiValue)) -> mlua::Result<AnyUserData> {
    let f = args::function("baton.spawn", 1, "fn", &f)?;
    let (thread, guard) = crate::lua::journal::task_thread(lua, f)?;
    let thread_ptr = thread.to_pointer() as usize;
    let run = thread.into_async::<MultiValue>(args)?;
    let status = Rc::new(Cell::new(TaskStatus::Running));
    let st = status.clone();
    let handle = tokio::task::spawn_local(async move {
        let r = run.await;
        drop(guard);
        st.set(if r.is_ok() {
            TaskStatus::Done
        } else {
            TaskStatus::Failed
        });
        r
    });
    let abort = handle.abort_handle();
    let id = NEXT_TASK.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    let result = async move {
        match handle.await {
            Ok(r) => r,
            Err(e) if e.is_cancelled() => {
                Err(mlua::Error::runtime(format!("task#{id} was cancelled")))
            }
            Err(e) => Err(mlua::Error::runtime(format!("task#{id} panicked: {e}"))),
        }
    }
    .boxed_local()
    .shared();
    let task = lua.create_userdata(Task {
        id,
        thread: thread_ptr,
        result,
        abort,
        status,
    })?;
    crate::lua::keep_method_frames(lua, task)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatherOpts {
    limit: Option<usize>,
    #[serde(default = "args::yes")]
    check: bool,
}

impl Default for GatherOpts {
    fn default() -> Self {
        GatherOpts {
            limit: None,
            check: true,
        }
    }
}

/// `baton.gather(list [, {limit, check}])`: runs functions (and awaits tasks) concurrently, results in order.
async fn gather(lua: Lua, (list, opts): (Value, Value)) -> mlua::Result<Table> {
    const F: &str = "baton.gather";
    let list = args::table(F, 1, "list", &list)?;
    let (opts, _) = args::opts::<GatherOpts>(&lua, F, 2, opts, &[])?;
    if opts.limit == Some(0) {
        return Err(args::fail(format!(
            "{F}: options.limit must be at least 1, got 0"
        )));
    }
    let mut futs: Vec<LocalBoxFuture<'static, TaskResult>> = Vec::with_capacity(list.raw_len());
    for (i, item) in list.sequence_values::<Value>().enumerate() {
        let item = item?;
        match &item {
            Value::Function(f) => {
                // A task of its own in the run journal, numbered in the list's order.
                let (thread, guard) = crate::lua::journal::task_thread(&lua, f.clone())?;
                let run = thread.into_async::<MultiValue>(())?;
                futs.push(
                    async move {
                        let r = run.await;
                        drop(guard);
                        r
                    }
                    .boxed_local(),
                );
            }
            Value::UserData(ud) if ud.is::<Task>() => {
                let task = ud.borrow::<Task>()?;
                futs.push(task.result.clone().boxed_local());
            }
            other => {
                return Err(args::fail(format!(
                    "{F}: argument 1 (list) must hold functions or tasks, got a {} at index {}",
                    args::type_name(other),
                    i + 1
                )));
            }
        }
    }
    let n = futs.len();
    let limit = opts.limit.unwrap_or(n.max(1));
    let mut results = stream::iter(futs).buffered(limit).enumerate();
    let out = lua.create_table_with_capacity(n, 1)?;
    while let Some((i, r)) = results.next().await {
        let entry = match (r, opts.check) {
            (Ok(values), true) => values.into_iter().next().unwrap_or(Value::Nil),
            (Err(e), true) => {
                return Err(args::fail(format!(
                    "{F}: entry {} failed: {}",
                    i + 1,
                    crate::lua::split_error(&e).0
                )));
            }
            (Ok(values), false) => {
                let t = lua.create_table()?;
                t.set("ok", true)?;
                t.set("value", values.into_iter().next().unwrap_or(Value::Nil))?;
                Value::Table(t)
            }
            (Err(e), false) => {
                let t = lua.create_table()?;
                t.set("ok", false)?;
                t.set("err", crate::lua::split_error(&e).0)?;
                Value::Table(t)
            }
        };
        out.raw_set(i + 1, entry)?;
    }
    out.raw_set("n", n)?;
    Ok(out)
}

/// `baton.timeout(dur, fn, …)`: raises `timed out after 5s` and cancels fn's work (its processes included).
/// A loop that never waits is stopped too: the instruction hook raises the same error once the time is up.
async fn timeout(lua: Lua, (d, f, args): (Value, Value, MultiValue)) -> mlua::Result<MultiValue> {
    let d = args::duration_arg("baton.timeout", 1, "dur", &d)?;
    let f = args::function("baton.timeout", 2, "fn", &f)?;
    let msg = format!("timed out after {}", duration::format(d));
    let call = f.call_async::<MultiValue>(args);
    let r = match std::time::Instant::now().checked_add(d) {
        Some(deadline) => {
            let call = crate::lua::runtime::with_deadline(&lua, deadline, msg.clone(), call);
            tokio::time::timeout(d, call).await
        }
        None => tokio::time::timeout(d, call).await,
    };
    r.unwrap_or_else(|_| Err(args::fail(msg)))
}

/// `baton.exec(cmd [, opts])` → `{ok, code, signal, stdout, stderr, duration}`.
async fn exec(lua: Lua, (cmd, opts): (Value, Value)) -> mlua::Result<Table> {
    const F: &str = "baton.exec";
    let cmd = args::cmd(F, 1, &cmd)?;
    let (mut opts, mut cbs) = args::opts::<args::ProcessOpts>(&lua, F, 2, opts, &["on_line"])?;
    let spec = opts.spec();
    let out = args::with_lines(cbs.take("on_line"), |sink| process::run(&cmd, &spec, sink)).await?;
    let out = match out {
        Ok(out) => out,
        Err(e) if opts.check => return Err(args::fail(format!("{F}: {e}"))),
        Err(e) => {
            let t = lua.create_table()?;
            t.set("ok", false)?;
            t.set("err", e.to_string())?;
            return Ok(t);
        }
    };
    if opts.check && !out.ok() {
        return Err(args::fail(format!("{F}: {}", out.failure_summary())));
    }
    args::process_result(&lua, &out)
}

/// `baton._paths()` (private, for `baton doctor` / `baton status`): where baton keeps things on this machine.
fn paths(lua: &Lua, (): ()) -> mlua::Result<Table> {
    let ctx = crate::lua::ctx(lua);
    let t = lua.create_table()?;
    t.set("state_dir", ctx.state.dir().display().to_string())?;
    t.set(
        "config_dir",
        crate::core::fleet::config_dir().display().to_string(),
    )?;
    t.set(
        "fleet_file",
        ctx.fleet.source.as_ref().map(|p| p.display().to_string()),
    )?;
    t.set(
        "schedule_file",
        crate::lua::daemon::default_file(&ctx.fleet)
            .display()
            .to_string(),
    )?;
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    let unit = crate::core::schedule::unit::Platform::current()
        .install_path(&crate::core::state::home_dir(), config_home.as_deref());
    t.set("daemon_unit", unit.display().to_string())?;
    Ok(t)
}

/// `baton._jobs()` (private, for `baton status`): the registered remote jobs as last recorded.
fn jobs(lua: &Lua, (): ()) -> mlua::Result<Table> {
    let state = crate::lua::ctx(lua).state.clone();
    let list = crate::core::remote::jobs::list(&state)
        .map_err(|e| args::fail(format!("baton._jobs: {e}")))?;
    let out = lua.create_table()?;
    for job in list {
        let t = lua.create_table()?;
        t.set("id", job.id)?;
        t.set("host", job.host)?;
        t.set("command", job.command)?;
        t.set("state", job.status.state.name())?;
        t.set("code", job.status.code)?;
        t.set("started_at", job.started_at)?;
        out.push(t)?;
    }
    Ok(out)
}

/// `baton.inspect(value [, depth])` → the REPL's rendering of a value.
/// Tables nested deeper than `depth` (at most [`args::MAX_DEPTH`]) show as `{…}`.
fn inspect(_: &Lua, (v, depth): (Value, Value)) -> mlua::Result<String> {
    let depth = match depth {
        Value::Nil => 4,
        Value::Integer(d) if d >= 0 => (d as u64).min(args::MAX_DEPTH as u64) as usize,
        Value::Number(d) if d >= 0.0 && d.fract() == 0.0 => d.min(args::MAX_DEPTH as f64) as usize,
        other => {
            return Err(args::arg_error(
                "baton.inspect",
                2,
                "depth",
                "a whole number of at least 0",
                &other,
            ));
        }
    };
    Ok(crate::lua::pretty::inspect(&v, depth))
}

fn log_table(lua: &Lua) -> mlua::Result<Table> {
    let log = lua.create_table()?;
    for level in ["debug", "info", "warn", "error"] {
        let name = format!("baton.log.{level}");
        log.set(
            level,
            lua.create_function(move |lua, (msg, fields): (Value, Value)| {
                let msg = match &msg {
                    Value::String(s) => s.to_string_lossy(),
                    Value::Nil => return Err(args::arg_error(&name, 1, "msg", "a string", &msg)),
                    other => other.to_string()?,
                };
                let fields = match &fields {
                    Value::Nil => String::new(),
                    Value::Table(_) => {
                        args::check_depth(&name, 2, "fields", &fields)?;
                        let j: serde_json::Value = lua.from_value(fields.clone()).map_err(|e| {
                            args::fail(format!(
                                "{name}: argument 2 (fields) cannot be logged as JSON: {e}"
                            ))
                        })?;
                        j.to_string()
                    }
                    other => return Err(args::arg_error(&name, 2, "fields", "a table", other)),
                };
                let script = crate::lua::ctx(lua).script.clone();
                match level {
                    "debug" => tracing::debug!(target: "baton::script", script, fields, "{msg}"),
                    "info" => tracing::info!(target: "baton::script", script, fields, "{msg}"),
                    "warn" => tracing::warn!(target: "baton::script", script, fields, "{msg}"),
                    _ => tracing::error!(target: "baton::script", script, fields, "{msg}"),
                }
                Ok(())
            })?,
        )?;
    }
    Ok(log)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EncodeOpts {
    #[serde(default)]
    pretty: bool,
}

fn json_table(lua: &Lua) -> mlua::Result<Table> {
    let json = lua.create_table()?;
    json.set(
        "encode",
        lua.create_function(|lua, (v, opts): (Value, Value)| {
            let (opts, _) = args::opts::<EncodeOpts>(lua, "baton.json.encode", 2, opts, &[])?;
            args::check_depth("baton.json.encode", 1, "value", &v)?;
            let j: serde_json::Value = lua.from_value(v).map_err(|e| {
                args::fail(format!(
                    "baton.json.encode: argument 1 (value) cannot be encoded: {e}"
                ))
            })?;
            let text = if opts.pretty {
                serde_json::to_string_pretty(&j)
            } else {
                serde_json::to_string(&j)
            };
            text.map_err(|e| args::fail(format!("baton.json.encode: {e}")))
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, text: Value| {
            let text = args::string("baton.json.decode", 1, "text", &text)?;
            let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                args::fail(format!(
                    "baton.json.decode: argument 1 (text) is not valid JSON: {e}"
                ))
            })?;
            lua.to_value(&j)
        })?,
    )?;
    json.set(
        "array",
        lua.create_function(|lua, t: Value| {
            let t = match t {
                Value::Nil => lua.create_table()?,
                Value::Table(t) => t,
                other => {
                    return Err(args::fail(format!(
                        "baton.json.array: argument 1 (list) must be a table or nil, got {}",
                        other.type_name()
                    )));
                }
            };
            if t.metatable().is_some_and(|m| m != lua.array_metatable()) {
                return Err(args::fail(
                    "baton.json.array: argument 1 (list) already has a metatable of its own",
                ));
            }
            t.set_metatable(Some(lua.array_metatable()))?;
            Ok(t)
        })?,
    )?;
    json.set("null", lua.null())?;
    Ok(json)
}

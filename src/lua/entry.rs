//! The Lua side of the commands that drive a runtime to its end (`run`, `doctor`, `status`, `check`): each
//! builds a runtime, runs its chunk and hands back plain Rust values, so the CLI never touches mlua.
use std::future::Future;
use std::path::Path;

use mlua::{Lua, LuaSerdeExt};
use serde::de::DeserializeOwned;

use super::journal::{Journal, Start};
use super::{Ctx, exit_code, format_error, new_runtime, run_file, runtime};

/// How a Lua entry point ended.
#[derive(Debug)]
pub enum Ended<T> {
    /// It returned this value.
    Value(T),
    /// `os.exit(n)`.
    Exit(i32),
    /// Ctrl-C (while it waited, or through the instruction hook while it ran).
    Interrupted,
    /// A Lua error, as `file:line: message` and its traceback (`full`); `brief` is the message alone when
    /// the script (or a module it uses) raised it on purpose with `error(message, 0)`: a playbook's
    /// expected failure (`unknown fleet host "nosuch"`), which reads best as that one line.
    Failed { full: String, brief: Option<String> },
}

/// `baton run FILE` (or `baton resume RUN`): the playbook at `path`, as a durable run when `start` says
/// which (its journal in the state database; see `lua::journal`).
pub fn run(ctx: Ctx, path: &Path, start: Option<Start>) -> std::io::Result<Ended<()>> {
    durable(ctx, start, |lua| async move { run_file(&lua, path).await })
}

/// `baton resume RUN` of a scheduled function job's run: the schedule file evaluated again and the job's
/// function called with its `RUN` table, as the daemon does; finished calls come from the journal.
pub fn function_job(ctx: Ctx, file: &Path, job: &str, start: Start) -> std::io::Result<Ended<()>> {
    let src = std::fs::read(file);
    durable(ctx, Some(start), |lua| async move {
        let src = src.map_err(|e| {
            mlua::Error::runtime(format!(
                "{}: cannot read the schedule file: {e}",
                file.display()
            ))
        })?;
        let printer = lua.app_data_ref::<super::Printer>().map(|p| p.clone());
        lua.set_app_data(super::Printer::to(std::io::sink()));
        super::daemon::eval_file(&lua, file, &src).await?;
        let f = super::daemon::function_job(&lua, file, job)?;
        if let Some(p) = printer {
            lua.set_app_data(p);
        }
        let info = lua.create_table()?;
        info.set("job", job)?;
        info.set("run", super::journal::run_id(&lua))?;
        info.set("catchup", false)?;
        info.set("manual", true)?;
        let (thread, _task) = super::journal::root_thread(&lua, f)?;
        thread.into_async::<()>(info)?.await
    })
}

/// Drives `body` as a durable run (when `start` is given): what it writes to stdout and stderr also goes to
/// the run's log (`core::runs::copy_output`, kept until this returns), its boundary calls are journaled,
/// and its end is recorded.
fn durable<F, Fut>(ctx: Ctx, start: Option<Start>, body: F) -> std::io::Result<Ended<()>>
where
    F: FnOnce(Lua) -> Fut,
    Fut: Future<Output = mlua::Result<()>>,
{
    let state = ctx.state.clone();
    drive(ctx, |lua, _| async move {
        let mut copying = None;
        if let Some(start) = start {
            let id = match &start {
                Start::New(run) => run.id.clone(),
                Start::Resume { run, .. } => run.id.clone(),
            };
            // What the run writes also goes to its log (`baton runs show RUN --log`).
            copying = Some(crate::core::runs::copy_output(
                crate::core::runs::RunLog::open(state.dir(), &id),
            ));
            super::copy_lua_io(&lua)?;
            Journal::install(&lua, state, start).map_err(mlua::Error::runtime)?;
        }
        // A pause the script caught (`pcall(baton.approve, …)`) still ends the run paused.
        let result = super::journal::settle(&lua, body(lua.clone()).await);
        if let Err(e) = &result
            && copying.is_some()
            && super::journal::paused(e).is_none()
            && exit_code(e).is_none()
        {
            // The log ends with how the run ended, in full (stderr shows the message alone without `-v`).
            crate::core::runs::copy(format!("{}\n", format_error(e)).as_bytes());
        }
        // A pause for an answer (`baton.approve`) ends the process quietly.
        super::journal::end(&lua, result)
    })
}

/// `baton doctor`: the embedded module's `main(args)` with the context's arguments; what it returns is the
/// exit code.
pub fn doctor(ctx: Ctx) -> std::io::Result<Ended<Option<i32>>> {
    drive(ctx, |lua, args| async move {
        let main: mlua::Function = lua.load("return require('baton.doctor').main").eval()?;
        main.call_async::<Option<i32>>(lua.create_sequence_from(args)?)
            .await
    })
}

/// What `baton status` shows: the report as pretty JSON text, or decoded for the CLI to render.
#[derive(Debug)]
pub enum Status<R> {
    Json(String),
    Report(R),
}

/// `baton status`: `require("baton.status").collect()` (Lua, so it probes hosts with the same primitives
/// playbooks use), encoded by `baton.json.encode` when `json`, else decoded into `R`.
pub fn status<R: DeserializeOwned>(ctx: Ctx, json: bool) -> std::io::Result<Ended<Status<R>>> {
    drive(ctx, |lua, _| async move {
        let collect: mlua::Function = lua.load("return require('baton.status').collect").eval()?;
        let data: mlua::Value = collect.call_async(()).await?;
        if json {
            let encode: mlua::Function = lua.load("return baton.json.encode").eval()?;
            let opts = lua.create_table_from([("pretty", true)])?;
            Ok(Status::Json(encode.call((data, opts))?))
        } else {
            let report = lua.from_value(data).map_err(|e| {
                mlua::Error::runtime(format!(
                    "baton: status: baton.status.collect() gave a report that does not decode: {e}"
                ))
            })?;
            Ok(Status::Report(report))
        }
    })
}

/// Builds a runtime for `ctx` and drives `body` (given the runtime and the context's arguments) to its end.
/// Ctrl-C stops it, also inside Lua that never waits (the instruction hook raises). An error is only one
/// that keeps the async runtime from starting.
fn drive<T, F, Fut>(ctx: Ctx, body: F) -> std::io::Result<Ended<T>>
where
    F: FnOnce(Lua, Vec<String>) -> Fut,
    Fut: Future<Output = mlua::Result<T>>,
{
    let args = ctx.args.clone();
    runtime::block_on(async {
        let interrupt = runtime::Interrupt::new();
        let work = async {
            let lua = new_runtime(ctx)?;
            // Ctrl-C also stops Lua that never waits (the hook raises), where the select below cannot run.
            runtime::share_interrupt(&lua, interrupt.clone());
            runtime::interrupt_on_sigint(interrupt.clone());
            // A bound that passes while C code runs (no hook reaches it) ends the process.
            runtime::watchdog(&lua);
            body(lua, args).await
        };
        let result = tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => return Ended::Interrupted,
        };
        if interrupt.is_set() {
            return Ended::Interrupted;
        }
        match result {
            Ok(value) => Ended::Value(value),
            Err(e) => match exit_code(&e) {
                Some(code) => Ended::Exit(code),
                None => Ended::Failed {
                    full: format_error(&e),
                    brief: super::deliberate_error(&e),
                },
            },
        }
    })
}

/// `baton check`: compiles Lua files without running them, on one bare state.
pub struct SyntaxCheck {
    lua: Lua,
}

impl Default for SyntaxCheck {
    fn default() -> Self {
        SyntaxCheck { lua: Lua::new() }
    }
}

impl SyntaxCheck {
    /// The syntax error of `file` (or why it cannot be read), as a compiler words it.
    pub fn file(&self, file: &Path) -> Result<(), String> {
        std::fs::read(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|src| {
                self.lua
                    .load(src)
                    .set_name(format!("@{}", file.display()))
                    .into_function()
                    .map(drop)
                    .map_err(|e| format_error(&e))
            })
    }
}

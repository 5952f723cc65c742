//! The Lua side of `baton daemon` and `baton schedule`: load a schedule file (Lua that calls
//! `schedule.cron`) and turn its jobs into core scheduler jobs whose targets run Lua. The CLI
//! (`cli::schedule`) drives the scheduler and prints.
//!
//! Every run of a job, a function or a playbook, runs in a fresh Lua state on a thread of its own, so the
//! scheduler's thread never runs job code: a job spinning in Lua, in a callback called by C (a `table.sort`
//! comparator) or in one long C call (a pathological `string.find`) cannot delay the other jobs. A function
//! job's state evaluates the schedule file again (as it was read at start, its output discarded) and calls
//! the job's function, so values kept at the file's top level do not carry from one run to the next.
//! `print` and `baton.log` go to the run's log file. Each state has the job's memory limit; past its timeout
//! or when the daemon stops, the instruction hook raises wherever the job's Lua is. A thread stuck in one C
//! call is left behind (the process ends with the daemon).
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mlua::Lua;

use crate::core::fleet::Fleet;
use crate::core::schedule::{Job, RunContext, RunError, RunFuture, Target, Zone};
use crate::core::state::State;
use crate::lua::api::schedule::{JobTarget, registered};
use crate::lua::runtime::{self, Interrupt, block_on};
use crate::lua::{Ctx, Printer};

/// `schedule.lua` next to the fleet file, or in the config folder with the built-in fleet.
pub fn default_file(fleet: &Fleet) -> PathBuf {
    match fleet.source.as_deref().and_then(Path::parent) {
        Some(dir) => dir.join("schedule.lua"),
        None => crate::core::fleet::config_dir().join("schedule.lua"),
    }
}

/// Why a schedule file gives no jobs.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleFileError {
    #[error("schedule file {} not found (create it, or pass FILE)", .0.display())]
    NotFound(PathBuf),
    /// The file raised: `file:line: message` and the traceback.
    #[error("{0}")]
    Lua(String),
    #[error("{} registered no jobs (call schedule.cron(name, expr, target) in it)", .0.display())]
    NoJobs(PathBuf),
}

/// A schedule file's jobs, ready for the core scheduler, and the Lua state that evaluated the file.
pub struct Schedule {
    pub lua: Lua,
    pub jobs: Vec<Job>,
}

/// How long evaluating a fleet or schedule file may take.
pub const LOAD_TIME_LIMIT: Duration = Duration::from_secs(5);

/// Evaluates `src` as the file `file` in `lua` within [`LOAD_TIME_LIMIT`]: a file that never finishes
/// raises `did not finish within 5s`.
pub async fn eval_file(lua: &Lua, file: &Path, src: &[u8]) -> mlua::Result<()> {
    crate::lua::require_beside(lua, file)?;
    runtime::set_deadline(
        lua,
        Some(LOAD_TIME_LIMIT),
        &format!(
            "{}: did not finish within {}",
            file.display(),
            crate::core::duration::format(LOAD_TIME_LIMIT)
        ),
    );
    let r = lua
        .load(src)
        .set_name(format!("@{}", file.display()))
        .exec_async()
        .await;
    runtime::set_deadline(lua, None, "");
    r
}

/// Runs the schedule file and builds its jobs. Must run inside [`crate::lua::runtime::block_on`].
pub async fn load(
    fleet: &Arc<Fleet>,
    state: &State,
    file: &Path,
) -> Result<Schedule, ScheduleFileError> {
    if !file.is_file() {
        return Err(ScheduleFileError::NotFound(file.to_path_buf()));
    }
    let lua_err = |e: mlua::Error| ScheduleFileError::Lua(crate::lua::format_error(&e));
    let src = std::fs::read(file)
        .map_err(|e| ScheduleFileError::Lua(format!("cannot read {}: {e}", file.display())))?;
    let lua = crate::lua::new_runtime(schedule_ctx(fleet, state, file)).map_err(lua_err)?;
    eval_file(&lua, file, &src).await.map_err(lua_err)?;
    let registered = registered(&lua);
    if registered.is_empty() {
        return Err(ScheduleFileError::NoJobs(file.to_path_buf()));
    }
    let src: Arc<[u8]> = src.into();
    let default_timeout = fleet
        .limits
        .job_timeout
        .map_or(DEFAULT_JOB_TIMEOUT, |d| d.0);
    let jobs = registered
        .into_iter()
        .map(|(mut spec, target)| {
            if spec.timeout.is_none() {
                spec.timeout = Some(default_timeout);
            }
            let what = match target {
                JobTarget::Function(_) => What::Function {
                    file: file.to_path_buf(),
                    src: src.clone(),
                },
                JobTarget::Playbook(path) => What::Playbook(path),
            };
            let target = threaded_target(Arc::new(RunSpec {
                what,
                job: spec.name.clone(),
                memory: spec.memory,
                timeout: spec.timeout,
                fleet: fleet.clone(),
                state_dir: state.dir().to_path_buf(),
            }));
            Job { spec, target }
        })
        .collect();
    Ok(Schedule { lua, jobs })
}

/// A scheduled job's timeout when neither it nor the fleet (`limits.job_timeout`) sets one.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

fn schedule_ctx(fleet: &Arc<Fleet>, state: &State, file: &Path) -> Ctx {
    Ctx {
        fleet: fleet.clone(),
        state: state.clone(),
        script: file.display().to_string(),
        args: Vec::new(),
    }
}

/// What a run executes.
enum What {
    /// A function of the schedule file `file` (whose text was `src` when the daemon started).
    Function {
        file: PathBuf,
        src: Arc<[u8]>,
    },
    Playbook(PathBuf),
}

/// Everything a run's thread needs (shared by every run of the job).
struct RunSpec {
    what: What,
    job: String,
    memory: Option<u64>,
    timeout: Option<Duration>,
    fleet: Arc<Fleet>,
    state_dir: PathBuf,
}

/// A Lua error ending a run, as its record shows it (`file:line: message` and the traceback).
fn run_error(e: mlua::Error) -> RunError {
    RunError(crate::lua::format_error(&e))
}

fn open_log(ctx: &RunContext) -> Result<std::fs::File, RunError> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(&ctx.log)
        .map_err(|e| RunError(format!("cannot open log {}: {e}", ctx.log.display())))
}

/// Starts the durable run of a scheduled run (trigger `schedule`): `script` is the playbook, or the
/// schedule file with `args` `--job NAME` for a function job. Its output goes to the scheduled run's log
/// (`ctx.log`), which is also the durable run's (`baton runs show RUN --log`).
fn begin_run(
    lua: &Lua,
    spec: &RunSpec,
    ctx: &RunContext,
    script: &Path,
    args: Vec<String>,
) -> mlua::Result<()> {
    let run =
        crate::core::runs::NewRun::of_script(script, args, spec.fleet.source.clone(), "schedule");
    crate::core::runs::RunLog::link(&spec.state_dir, &run.id, &ctx.log);
    crate::lua::journal::Journal::install(
        lua,
        State::new(spec.state_dir.clone()),
        crate::lua::journal::Start::New(run),
    )
    .map_err(mlua::Error::runtime)
}

/// The args of a function job's run record: `--job NAME` (its script is the schedule file).
pub const FUNCTION_JOB: &str = "--job";

/// The function the schedule file registers as job `name`.
pub fn function_job(lua: &Lua, file: &Path, name: &str) -> mlua::Result<mlua::Function> {
    registered(lua)
        .into_iter()
        .find_map(|(s, t)| match t {
            JobTarget::Function(f) if s.name == name => Some(f),
            _ => None,
        })
        .ok_or_else(|| {
            mlua::Error::runtime(format!(
                "{}: the schedule file no longer registers function job {name:?}",
                file.display()
            ))
        })
}

/// The run as the job receives it: `{job, run, scheduled, catchup, manual, log}` (the function's argument,
/// a playbook's global `RUN`).
fn run_info(lua: &Lua, ctx: &RunContext) -> mlua::Result<mlua::Table> {
    let t = lua.create_table()?;
    t.set("job", ctx.job.as_str())?;
    t.set("run", ctx.run_id)?;
    t.set("scheduled", Zone::Local.format(ctx.scheduled))?;
    t.set("catchup", ctx.catchup)?;
    t.set("manual", ctx.manual)?;
    t.set("log", ctx.log.display().to_string())?;
    Ok(t)
}

const RUN_STACK: usize = 8 << 20;

const STOPPED: &str = "cancelled (timeout or daemon stopping)";

/// Interrupts a run's Lua when the run's future is dropped (timeout, or the daemon stopping).
struct CancelOnDrop(Interrupt, Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.trigger(STOPPED);
        self.1.take();
    }
}

fn threaded_target(spec: Arc<RunSpec>) -> Target {
    Rc::new(move |ctx: RunContext| -> RunFuture {
        let spec = spec.clone();
        Box::pin(async move {
            let interrupt = Interrupt::new();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let _cancel = CancelOnDrop(interrupt.clone(), Some(stop_tx));
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let log = open_log(&ctx)?;
            std::thread::Builder::new()
                .name(format!("job {}", ctx.job))
                // As much stack as a main thread gets: deep Lua ↔ Rust call chains run here too.
                .stack_size(RUN_STACK)
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| {
                        run_job(&spec, &ctx, log, interrupt, stop_rx)
                    });
                    let res = std::panic::catch_unwind(run).unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(RunError(format!("panicked: {msg}")))
                    });
                    let _ = done_tx.send(res);
                })
                .map_err(|e| RunError(format!("cannot start a thread for the run: {e}")))?;
            done_rx
                .await
                .unwrap_or_else(|_| Err(RunError("the run's thread ended without a result".into())))
        })
    })
}

/// One run on its own thread: a fresh runtime with the job's limits, then the playbook, or the schedule file
/// evaluated again and the job's function called.
fn run_job(
    spec: &RunSpec,
    ctx: &RunContext,
    log: std::fs::File,
    interrupt: Interrupt,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), RunError> {
    let log_for_tracing = log.try_clone().map_err(|e| {
        RunError(format!(
            "cannot share the run's log with its log lines: {e}"
        ))
    })?;
    let subscriber = tracing_subscriber::fmt()
        .log_internal_errors(false)
        .with_writer(std::sync::Mutex::new(log_for_tracing))
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        block_on(async move {
            let state = State::new(spec.state_dir.clone());
            let script = match &spec.what {
                What::Function { file, .. } => file.display().to_string(),
                What::Playbook(_) => ctx.job.clone(),
            };
            let rt_ctx = Ctx {
                fleet: spec.fleet.clone(),
                state,
                script,
                args: Vec::new(),
            };
            let lua = crate::lua::new_runtime(rt_ctx).map_err(run_error)?;
            runtime::share_interrupt(&lua, interrupt);
            if let Some(bytes) = spec.memory {
                runtime::set_memory_limit(&lua, bytes).map_err(run_error)?;
            }
            let info = run_info(&lua, ctx).map_err(run_error)?;
            let work = async {
                match &spec.what {
                    What::Playbook(path) => {
                        lua.set_app_data(Printer::to(log));
                        lua.globals().set("RUN", info)?;
                        set_timeout(&lua, spec.timeout);
                        // A durable run like `baton run`'s: `baton resume RUN` finishes it after a crash.
                        begin_run(&lua, spec, ctx, path, Vec::new())?;
                        let r = crate::lua::run_file(&lua, path).await;
                        crate::lua::journal::end(&lua, r)
                    }
                    What::Function { file, src } => {
                        lua.set_app_data(Printer::to(std::io::sink()));
                        eval_file(&lua, file, src).await?;
                        let f = function_job(&lua, file, &spec.job)?;
                        lua.set_app_data(Printer::to(log));
                        set_timeout(&lua, spec.timeout);
                        // A durable run too: `baton resume RUN` evaluates the file and calls the job again.
                        begin_run(
                            &lua,
                            spec,
                            ctx,
                            file,
                            vec![FUNCTION_JOB.into(), spec.job.clone()],
                        )?;
                        let r = async {
                            let (thread, _task) = crate::lua::journal::root_thread(&lua, f)?;
                            thread.into_async::<()>(info)?.await
                        }
                        .await;
                        crate::lua::journal::end(&lua, r)
                    }
                }
            };
            let result = tokio::select! {
                r = work => r,
                _ = stop => return Err(RunError(STOPPED.into())),
            };
            match result {
                Ok(()) => Ok(()),
                Err(e) => match crate::lua::exit_code(&e) {
                    Some(0) => Ok(()),
                    Some(code) => Err(RunError(format!("os.exit({code})"))),
                    None => Err(run_error(e)),
                },
            }
        })
        .map_err(|e| RunError(format!("cannot start a runtime for the run: {e}")))?
    })
}

/// The run's own deadline, so its Lua stops at its timeout even when the scheduler's timer cannot reach it.
fn set_timeout(lua: &Lua, timeout: Option<Duration>) {
    if let Some(t) = timeout {
        let msg = format!("timed out after {}", crate::core::duration::format(t));
        runtime::set_deadline(lua, Some(t), &msg);
    }
}

//! The Lua side of `baton daemon` and `baton schedule`: load a schedule file (Lua that calls
//! `schedule.cron`) and turn its jobs into core scheduler jobs whose targets run Lua. The CLI
//! (`cli::schedule`) drives the scheduler and prints.
//!
//! - A function target runs as a coroutine of the daemon's Lua state, so other jobs go on while it waits.
//!   Its `print` output goes to the run's log file (output of coroutines it spawns itself goes to the
//!   daemon's stdout). A hook yields it every few thousand instructions, so even a busy loop cannot stall
//!   the daemon and its timeout still applies.
//! - A playbook target runs in a fresh Lua state on its own thread for each run: `print` and `baton.log`
//!   output go to the run's log file, and a timeout or stop cancels it (at its next wait or instruction hook).
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mlua::{Function, HookTriggers, Lua, VmState};

use crate::core::fleet::Fleet;
use crate::core::schedule::{Job, RunContext, RunError, RunFuture, Target, Zone};
use crate::core::state::State;
use crate::lua::api::schedule::{JobTarget, registered};
use crate::lua::runtime::block_on;
use crate::lua::{Ctx, Printer};

/// How many Lua instructions a job runs between chances for other jobs and timers.
const PREEMPT_EVERY: u32 = 10_000;

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

/// A schedule file's jobs, ready for the core scheduler, and the Lua state their function targets run in
/// (it must outlive them).
pub struct Schedule {
    pub lua: Lua,
    pub jobs: Vec<Job>,
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
    let ctx = Ctx {
        fleet: fleet.clone(),
        state: state.clone(),
        script: file.display().to_string(),
        args: Vec::new(),
    };
    let lua_err = |e: mlua::Error| ScheduleFileError::Lua(crate::lua::format_error(&e));
    let lua = crate::lua::new_runtime(ctx).map_err(lua_err)?;
    crate::lua::run_file(&lua, file).await.map_err(lua_err)?;
    let registered = registered(&lua);
    if registered.is_empty() {
        return Err(ScheduleFileError::NoJobs(file.to_path_buf()));
    }
    let routes = Routes::default();
    lua.set_app_data(Printer::to(RoutedOutput {
        lua: lua.weak(),
        routes: routes.clone(),
    }));
    let jobs = registered
        .into_iter()
        .map(|(spec, target)| {
            let target = match target {
                JobTarget::Function(f) => function_target(&lua, f, routes.clone()),
                JobTarget::Playbook(path) => {
                    playbook_target(path, fleet.clone(), state.dir().to_path_buf())
                }
            };
            Job { spec, target }
        })
        .collect();
    Ok(Schedule { lua, jobs })
}

/// Open log files of running function jobs, by the address of their Lua thread.
type Routes = Rc<RefCell<HashMap<usize, std::fs::File>>>;

/// `print` in the daemon's state: to the log of the job whose coroutine is printing, else to stdout.
struct RoutedOutput {
    lua: mlua::WeakLua,
    routes: Routes,
}

impl Write for RoutedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let key = self
            .lua
            .try_upgrade()
            .map(|lua| lua.current_thread().to_pointer() as usize);
        if let Some(file) =
            key.and_then(|k| self.routes.borrow_mut().get_mut(&k).map(|f| f.write(buf)))
        {
            return file;
        }
        std::io::stdout().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Ends a function run's output route and preemption hook, however the run ends (mlua reuses threads).
struct RunGuard(Routes, usize, mlua::Thread);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.borrow_mut().remove(&self.1);
        self.2.remove_hook();
    }
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

/// The run as the job function receives it: `{job, run, scheduled, catchup, manual, log}`.
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

fn function_target(lua: &Lua, f: Function, routes: Routes) -> Target {
    let lua = lua.clone();
    Rc::new(move |ctx: RunContext| -> RunFuture {
        let (lua, f, routes) = (lua.clone(), f.clone(), routes.clone());
        Box::pin(async move {
            let log = open_log(&ctx)?;
            let thread = lua.create_thread(f).map_err(run_error)?;
            let key = thread.to_pointer() as usize;
            routes.borrow_mut().insert(key, log);
            let _guard = RunGuard(routes, key, thread.clone());
            thread
                .set_hook(
                    HookTriggers::new().every_nth_instruction(PREEMPT_EVERY),
                    move |lua, _| {
                        let own = lua.current_thread().to_pointer() as usize == key;
                        Ok(if own {
                            VmState::Yield
                        } else {
                            VmState::Continue
                        })
                    },
                )
                .map_err(run_error)?;
            let info = run_info(&lua, &ctx).map_err(run_error)?;
            thread
                .into_async::<()>(info)
                .map_err(run_error)?
                .await
                .map_err(run_error)
        })
    })
}

/// Cancels a playbook thread when the run's future is dropped (timeout, or the daemon stopping).
struct CancelOnDrop(Arc<AtomicBool>, Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        self.1.take();
    }
}

fn playbook_target(path: PathBuf, fleet: Arc<Fleet>, state_dir: PathBuf) -> Target {
    Rc::new(move |ctx: RunContext| -> RunFuture {
        let (path, fleet, state_dir) = (path.clone(), fleet.clone(), state_dir.clone());
        Box::pin(async move {
            let cancelled = Arc::new(AtomicBool::new(false));
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let _cancel = CancelOnDrop(cancelled.clone(), Some(stop_tx));
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let log = open_log(&ctx)?;
            std::thread::Builder::new()
                .name(format!("job {}", ctx.job))
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| {
                        run_playbook(
                            &path,
                            fleet,
                            State::new(state_dir),
                            &ctx,
                            log,
                            cancelled,
                            stop_rx,
                        )
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
                .map_err(|e| RunError(format!("cannot start a thread for the playbook: {e}")))?;
            done_rx.await.unwrap_or_else(|_| {
                Err(RunError(
                    "the playbook thread ended without a result".into(),
                ))
            })
        })
    })
}

fn run_playbook(
    path: &Path,
    fleet: Arc<Fleet>,
    state: State,
    ctx: &RunContext,
    log: std::fs::File,
    cancelled: Arc<AtomicBool>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), RunError> {
    let log_for_tracing = log.try_clone().map_err(|e| {
        RunError(format!(
            "cannot share the run's log with its log lines: {e}"
        ))
    })?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(log_for_tracing))
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        block_on(async move {
            let script = ctx.job.clone();
            let rt_ctx = Ctx {
                fleet,
                state,
                script,
                args: Vec::new(),
            };
            let lua = crate::lua::new_runtime(rt_ctx).map_err(run_error)?;
            lua.set_app_data(Printer::to(log));
            lua.set_global_hook(
                HookTriggers::new().every_nth_instruction(PREEMPT_EVERY),
                move |_, _| {
                    if cancelled.load(Ordering::SeqCst) {
                        Err(mlua::Error::runtime(
                            "cancelled (timeout or daemon stopping)",
                        ))
                    } else {
                        Ok(VmState::Continue)
                    }
                },
            )
            .map_err(run_error)?;
            lua.globals()
                .set("RUN", run_info(&lua, ctx).map_err(run_error)?)
                .map_err(run_error)?;
            let result = tokio::select! {
                r = crate::lua::run_file(&lua, path) => r,
                _ = stop => return Err(RunError("cancelled (timeout or daemon stopping)".into())),
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
        .map_err(|e| RunError(format!("cannot start a runtime for the playbook: {e}")))?
    })
}

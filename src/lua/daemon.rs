//! `baton daemon` and `baton schedule list|history|run`: load a schedule file (Lua that calls
//! `schedule.cron`), turn its jobs into core scheduler jobs, and run them.
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

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use mlua::{Function, HookTriggers, Lua, VmState};

use crate::core::duration;
use crate::core::fleet::Fleet;
use crate::core::schedule::unit::{self, Platform, UnitSpec};
use crate::core::schedule::{
    Daemon, DaemonOptions, Job, Outcome, RunContext, RunFuture, Store, SystemClock, Target, Zone,
};
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

/// `baton daemon [FILE]`: fire the jobs of FILE until SIGTERM/SIGINT, then exit 0 after running jobs finish
/// (or are cancelled after the grace period). Exit 1 when FILE fails or registers no jobs.
pub fn run(fleet: Arc<Fleet>, state: State, file: Option<PathBuf>) -> anyhow::Result<i32> {
    let file = file.unwrap_or_else(|| default_file(&fleet));
    block_on(async move {
        let Some((_lua, jobs)) = load_jobs(&fleet, &state, &file).await? else {
            return Ok(1);
        };
        let opts = DaemonOptions::default();
        eprintln!(
            "baton daemon: {} job(s) from {}",
            jobs.len(),
            file.display()
        );
        for job in &jobs {
            let next = job
                .spec
                .expr
                .next_after(Utc::now(), &job.spec.zone)
                .map(|t| job.spec.zone.format(t));
            eprintln!(
                "  {}  {}  next {}",
                job.spec.name,
                job.spec.expr.source(),
                next.as_deref().unwrap_or("never")
            );
        }
        let grace = opts.grace;
        let daemon = Daemon::new(jobs, &state, SystemClock::default(), opts)?;
        let report = daemon
            .run(async move {
                stop_signal().await;
                eprintln!(
                    "baton daemon: stopping; running jobs get {} to finish",
                    duration::format(grace)
                );
            })
            .await?;
        eprintln!(
            "baton daemon: stopped ({} run(s): {} ok, {} failed, {} cancelled; {} skipped)",
            report.started, report.ok, report.failed, report.cancelled, report.skipped
        );
        Ok(0)
    })?
}

/// `baton daemon --install [--print] [--platform linux|macos]`: write (or print) the service definition.
/// `--platform` picks the other system's format and needs `--print`.
pub fn install(
    fleet: Arc<Fleet>,
    state: State,
    file: Option<PathBuf>,
    print: bool,
    platform: Option<&str>,
) -> anyhow::Result<i32> {
    let current = Platform::current();
    let platform = platform
        .map(Platform::parse)
        .transpose()
        .map_err(|e| anyhow!("--platform: {e}"))?
        .unwrap_or(current);
    if platform != current && !print {
        bail!("--platform {platform:?} can only be printed on this system: add --print");
    }
    let file = absolute(file.unwrap_or_else(|| default_file(&fleet)));
    let exe = std::env::current_exe().context("cannot find the baton executable")?;
    let mut env = vec![(
        "BATON_STATE_DIR".to_string(),
        absolute(state.dir().to_path_buf()).display().to_string(),
    )];
    if let Some(source) = &fleet.source {
        env.push((
            "BATON_FLEET".into(),
            absolute(source.clone()).display().to_string(),
        ));
    }
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".into(), path));
    }
    let spec = UnitSpec {
        exe,
        file: file.clone(),
        env,
        log: absolute(state.dir().join("daemon.log")),
    };
    let text = unit::render(platform, &spec);
    if print {
        print!("{text}");
        return Ok(0);
    }
    let home = crate::core::state::home_dir();
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = platform.install_path(&home, config.as_deref());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    if !file.is_file() {
        println!(
            "note: the schedule file {} does not exist yet; create it before enabling",
            file.display()
        );
    }
    println!(
        "enable it with:\n  {}",
        platform.enable_hint(&path).replace('\n', "\n  ")
    );
    Ok(0)
}

/// `baton schedule list [FILE]`: each job with its expression, next three fire times and last outcome.
pub fn list(fleet: Arc<Fleet>, state: State, file: Option<PathBuf>) -> anyhow::Result<i32> {
    let file = file.unwrap_or_else(|| default_file(&fleet));
    block_on(async move {
        let Some((_lua, jobs)) = load_jobs(&fleet, &state, &file).await? else {
            return Ok(1);
        };
        let store = Store::open(&state)?;
        for job in &jobs {
            let s = &job.spec;
            println!(
                "{}  {}  (tz {}, missed {}, overlap {})  {}",
                s.name,
                s.expr.source(),
                s.zone.name(),
                s.missed.name(),
                s.overlap.name(),
                s.target
            );
            let next: Vec<String> = s
                .expr
                .upcoming(Utc::now(), &s.zone, 3)
                .into_iter()
                .map(|t| s.zone.format(t))
                .collect();
            println!(
                "  next: {}",
                if next.is_empty() {
                    "never".into()
                } else {
                    next.join(", ")
                }
            );
            match store.last_run(&s.name)? {
                Some(r) => println!("  last: {}", describe_run(&r, &s.zone)),
                None => println!("  last: never ran"),
            }
        }
        Ok(0)
    })?
}

/// `baton schedule history [JOB] [--limit N]`: runs, newest first.
pub fn history(state: State, job: Option<&str>, limit: usize) -> anyhow::Result<i32> {
    let runs = Store::open(&state)?.history(job, limit)?;
    if runs.is_empty() {
        println!(
            "no runs recorded{}",
            job.map(|j| format!(" for {j:?}")).unwrap_or_default()
        );
        return Ok(0);
    }
    println!(
        "{:>5}  {:<16} {:<25} {:>8}  {:<9} LOG / ERROR",
        "RUN", "JOB", "STARTED", "TOOK", "OUTCOME"
    );
    for r in &runs {
        let started = r
            .started
            .or(r.ended)
            .map(|t| Zone::Local.format(t))
            .unwrap_or_default();
        let took = match (r.started, r.ended) {
            (Some(s), Some(e)) => duration::format((e - s).to_std().unwrap_or_default()),
            _ => "-".into(),
        };
        let mut outcome = r.outcome.clone();
        if r.catchup {
            outcome.push('*');
        }
        let error = r
            .error
            .as_deref()
            .map(|e| e.lines().next().unwrap_or_default().to_string());
        let detail = match (&error, &r.log) {
            (Some(e), Some(log)) => format!("{}  {e}", log.display()),
            (Some(e), None) => e.clone(),
            (None, Some(log)) => log.display().to_string(),
            (None, None) => String::new(),
        };
        println!(
            "{:>5}  {:<16} {:<25} {:>8}  {:<9} {}",
            r.id, r.job, started, took, outcome, detail
        );
    }
    if runs.iter().any(|r| r.catchup) {
        println!("(* catch-up run for a time missed while asleep or stopped)");
    }
    Ok(0)
}

/// `baton schedule run JOB [FILE]`: run one job now, as the daemon would (record, log file, timeout).
pub fn run_job(
    fleet: Arc<Fleet>,
    state: State,
    name: &str,
    file: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let file = file.unwrap_or_else(|| default_file(&fleet));
    block_on(async move {
        let Some((_lua, jobs)) = load_jobs(&fleet, &state, &file).await? else {
            return Ok(1);
        };
        let Some(job) = jobs.iter().find(|j| j.spec.name == name) else {
            let hint =
                crate::core::schema::suggest(name, jobs.iter().map(|j| j.spec.name.as_str()));
            bail!("{}: no job named {name:?}{hint}", file.display());
        };
        let (ctx, outcome) =
            crate::core::schedule::run_now(job, &state, &SystemClock::default()).await?;
        match &outcome {
            Outcome::Ok => println!("{name}: run {} ok (log: {})", ctx.run_id, ctx.log.display()),
            other => eprintln!(
                "{name}: run {} {}: {} (log: {})",
                ctx.run_id,
                other.name(),
                match other {
                    Outcome::Failed(e) => e.as_str(),
                    _ => "",
                },
                ctx.log.display()
            ),
        }
        Ok(if outcome == Outcome::Ok { 0 } else { 1 })
    })?
}

fn describe_run(r: &crate::core::schedule::RunRecord, zone: &Zone) -> String {
    let when = r.started.map(|t| zone.format(t)).unwrap_or_default();
    let mut out = format!("{} at {when}", r.outcome);
    if let (Some(s), Some(e)) = (r.started, r.ended) {
        out.push_str(&format!(
            " ({})",
            duration::format((e - s).to_std().unwrap_or_default())
        ));
    }
    if let Some(e) = r.error.as_deref().and_then(|e| e.lines().next()) {
        out.push_str(&format!(": {e}"));
    }
    out
}

/// Runs the schedule file and builds its jobs; `None` (after saying why) when it registers none.
async fn load_jobs(
    fleet: &Arc<Fleet>,
    state: &State,
    file: &Path,
) -> anyhow::Result<Option<(Lua, Vec<Job>)>> {
    if !file.is_file() {
        bail!(
            "schedule file {} not found (create it, or pass FILE)",
            file.display()
        );
    }
    let ctx = Ctx {
        fleet: fleet.clone(),
        state: state.clone(),
        script: file.display().to_string(),
        args: Vec::new(),
    };
    let lua = crate::lua::new_runtime(ctx).map_err(|e| anyhow!(crate::lua::format_error(&e)))?;
    crate::lua::run_file(&lua, file)
        .await
        .map_err(|e| anyhow!(crate::lua::format_error(&e)))?;
    let registered = registered(&lua);
    if registered.is_empty() {
        eprintln!(
            "baton: {} registered no jobs (call schedule.cron(name, expr, target) in it)",
            file.display()
        );
        return Ok(None);
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
    Ok(Some((lua, jobs)))
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

fn open_log(ctx: &RunContext) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(&ctx.log)
        .map_err(|e| format!("cannot open log {}: {e}", ctx.log.display()))
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
            let lua_err = |e: mlua::Error| crate::lua::format_error(&e);
            let log = open_log(&ctx)?;
            let thread = lua.create_thread(f).map_err(lua_err)?;
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
                .map_err(lua_err)?;
            let info = run_info(&lua, &ctx).map_err(lua_err)?;
            thread
                .into_async::<()>(info)
                .map_err(lua_err)?
                .await
                .map_err(lua_err)
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
                        Err(format!("panicked: {msg}"))
                    });
                    let _ = done_tx.send(res);
                })
                .map_err(|e| format!("cannot start a thread for the playbook: {e}"))?;
            done_rx
                .await
                .unwrap_or_else(|_| Err("the playbook thread ended without a result".into()))
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
) -> Result<(), String> {
    let log_for_tracing = log.try_clone().map_err(|e| e.to_string())?;
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
            let lua = crate::lua::new_runtime(rt_ctx).map_err(|e| crate::lua::format_error(&e))?;
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
            .map_err(|e| crate::lua::format_error(&e))?;
            lua.globals()
                .set("RUN", run_info(&lua, ctx).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            let result = tokio::select! {
                r = crate::lua::run_file(&lua, path) => r,
                _ = stop => return Err("cancelled (timeout or daemon stopping)".to_string()),
            };
            match result {
                Ok(()) => Ok(()),
                Err(e) => match crate::lua::exit_code(&e) {
                    Some(0) => Ok(()),
                    Some(code) => Err(format!("os.exit({code})")),
                    None => Err(crate::lua::format_error(&e)),
                },
            }
        })
        .map_err(|e| format!("cannot start a runtime for the playbook: {e}"))?
    })
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

//! The `schedule` global: register cron jobs (fired by `baton daemon`), preview fire times, list jobs.
use std::cell::RefCell;
use std::path::{Path, PathBuf};

use chrono::Utc;
use mlua::{Function, Lua, Table, Value};
use serde::Deserialize;

use super::args;
use crate::core::duration::Dur;
use crate::core::schedule::{Expr, JobSpec, Missed, Overlap, Store, Zone};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    lua.set_app_data(Registry::default());
    let schedule = lua.create_table()?;
    schedule.set("cron", lua.create_function(cron)?)?;
    schedule.set("next", lua.create_function(next)?)?;
    schedule.set("jobs", lua.create_function(jobs)?)?;
    Ok(schedule)
}

/// What a job runs.
#[derive(Clone)]
pub enum JobTarget {
    /// A function of the schedule file, run in a fresh Lua state (that evaluates the file again) per run.
    Function(Function),
    /// A playbook, run in a fresh Lua state for each run.
    Playbook(PathBuf),
}

/// Jobs registered with `schedule.cron`, in registration order (app data of the Lua state).
#[derive(Default)]
pub struct Registry(pub RefCell<Vec<(JobSpec, JobTarget)>>);

/// The jobs registered so far in `lua`.
pub fn registered(lua: &Lua) -> Vec<(JobSpec, JobTarget)> {
    lua.app_data_ref::<Registry>()
        .map(|r| r.0.borrow().clone())
        .unwrap_or_default()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CronOpts {
    #[serde(default)]
    missed: Missed,
    #[serde(default)]
    overlap: Overlap,
    timeout: Option<Dur>,
    memory: Option<crate::core::fleet::Bytes>,
    jitter: Option<Dur>,
    tz: Option<String>,
    #[serde(default)]
    notify: crate::core::notify::When,
    #[serde(default)]
    resume: bool,
}

const CRON: &str = "schedule.cron";

/// `schedule.cron(name, expr, target [, opts])` → the job (as `schedule.jobs()` shows it).
fn cron(
    lua: &Lua,
    (name, expr, target, opts): (Value, Value, Value, Value),
) -> mlua::Result<Table> {
    let name = args::non_empty_string(CRON, 1, "name", &name)?;
    let expr = Expr::parse(&args::string(CRON, 2, "expr", &expr)?)
        .map_err(|e| args::fail(format!("{CRON}: {e}")))?;
    let target = match &target {
        Value::Function(f) => JobTarget::Function(f.clone()),
        Value::String(s) => {
            let path = resolve(lua, Path::new(&args::utf8(CRON, 3, "target", s)?));
            if !path.is_file() {
                return Err(args::fail(format!(
                    "{CRON}: argument 3 (target): playbook {} not found",
                    path.display()
                )));
            }
            JobTarget::Playbook(path)
        }
        other => {
            return Err(args::arg_error(
                CRON,
                3,
                "target",
                "a function or a playbook path",
                other,
            ));
        }
    };
    let (o, _) = args::opts::<CronOpts>(lua, CRON, 4, opts, &[])?;
    let zone = match o.tz.as_deref() {
        None => Zone::Local,
        Some(tz) => Zone::parse(tz).map_err(|e| args::fail(format!("{CRON}: options.tz: {e}")))?,
    };
    let mut spec = JobSpec::new(&name, expr)
        .with_zone(zone)
        .with_missed(o.missed)
        .with_overlap(o.overlap)
        .with_timeout(o.timeout.map(|d| d.0))
        .with_memory(o.memory.map(|b| b.0))
        .with_jitter(o.jitter.map(|d| d.0).unwrap_or_default())
        .with_notify(o.notify)
        .with_resume(o.resume);
    spec.target = match &target {
        JobTarget::Function(_) => "function".into(),
        JobTarget::Playbook(p) => p.display().to_string(),
    };
    {
        let registry = lua
            .app_data_ref::<Registry>()
            .ok_or_else(|| args::fail("schedule: not initialised"))?;
        let mut jobs = registry.0.borrow_mut();
        if jobs.iter().any(|(s, _)| s.name == name) {
            return Err(args::fail(format!(
                "{CRON}: a job named {name:?} is already registered"
            )));
        }
        jobs.push((spec.clone(), target));
    }
    job_table(lua, &spec, None)
}

/// A relative playbook path is relative to the file whose code calls `schedule.cron` (the schedule file,
/// whoever runs it: `baton daemon`, `schedule list`, `status`'s `dofile`), else to the running script, else
/// to the current folder. This is the one place such paths are resolved.
fn resolve(lua: &Lua, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let caller = (1..16)
        .map_while(|level| lua.inspect_stack(level, |d| d.source().source.map(|s| s.into_owned())))
        .flatten()
        .find_map(|source| source.strip_prefix('@').map(PathBuf::from))
        .filter(|file| file.is_file());
    let script = caller.unwrap_or_else(|| PathBuf::from(&crate::lua::ctx(lua).script));
    match script.parent() {
        Some(dir) if script.is_file() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// `schedule.next(expr [, n])` → the next `n` (default 5) fire times, ISO 8601 in local time.
fn next(lua: &Lua, (expr, n): (Value, Value)) -> mlua::Result<Table> {
    const NEXT: &str = "schedule.next";
    let expr = Expr::parse(&args::string(NEXT, 1, "expr", &expr)?)
        .map_err(|e| args::fail(format!("{NEXT}: {e}")))?;
    let n = match n {
        Value::Nil => 5,
        Value::Integer(i) if (1..=1000).contains(&i) => i as usize,
        other => {
            return Err(args::arg_error(
                NEXT,
                2,
                "n",
                "a whole number from 1 to 1000",
                &other,
            ));
        }
    };
    let zone = Zone::Local;
    lua.create_sequence_from(
        expr.upcoming(Utc::now(), &zone, n)
            .into_iter()
            .map(|t| zone.format(t)),
    )
}

/// `schedule.jobs()` → `{ {name, expr, tz, missed, overlap, timeout, jitter, target, next, last}, … }`.
fn jobs(lua: &Lua, (): ()) -> mlua::Result<Table> {
    let store = Store::open(&crate::lua::ctx(lua).state)
        .map_err(|e| args::fail(format!("schedule.jobs: {e}")))?;
    let out = lua.create_table()?;
    for (spec, _) in registered(lua) {
        out.push(job_table(lua, &spec, Some(&store))?)?;
    }
    Ok(out)
}

fn job_table(lua: &Lua, spec: &JobSpec, store: Option<&Store>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("name", spec.name.as_str())?;
    t.set("expr", spec.expr.source())?;
    t.set("tz", spec.zone.name())?;
    t.set("missed", spec.missed.name())?;
    t.set("overlap", spec.overlap.name())?;
    t.set("timeout", spec.timeout.map(|d| d.as_secs_f64()))?;
    t.set("jitter", spec.jitter.as_secs_f64())?;
    t.set("target", spec.target.as_str())?;
    t.set(
        "next",
        spec.expr
            .next_after(Utc::now(), &spec.zone)
            .map(|n| spec.zone.format(n)),
    )?;
    let last = match store {
        Some(store) => store
            .last_run(&spec.name)
            .map_err(|e| args::fail(format!("schedule.jobs: {e}")))?,
        None => None,
    };
    if let Some(run) = last {
        let r = lua.create_table()?;
        r.set("outcome", run.outcome)?;
        r.set("scheduled", spec.zone.format(run.scheduled))?;
        r.set("started", run.started.map(|s| spec.zone.format(s)))?;
        r.set("ended", run.ended.map(|s| spec.zone.format(s)))?;
        r.set("error", run.error)?;
        r.set("log", run.log.map(|p| p.display().to_string()))?;
        t.set("last", r)?;
    }
    Ok(t)
}

//! The journal of a durable run (`core::runs`): every call that crosses a boundary (`ssh.run`, `route.ask`,
//! `sync.push`, `baton.exec` … and each `baton.step`) is one step, at a position that a re-run of the same
//! script reaches again: the path of the Lua task it runs in (`0` for the playbook, `0/2` for the second
//! task the playbook started with `baton.spawn`, `baton.gather` or `ssh.each`) and its number in that task.
//! What a finished call returned is kept as JSON; under `baton resume` the same call at the same position
//! gets it back without running, so nothing is sent, run or paid twice. Only calls that returned are
//! journaled: a call that raised runs again on resume (the host may be up now), as does the one in flight
//! when the process died.
//!
//! The run's row is written at its first step, so a playbook that never crosses a boundary costs nothing
//! here; it is recorded at its end only when it fails.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use mlua::{Function, Lua, LuaSerdeExt, MultiValue, Table, Value};

use crate::core::runs::{self, NewRun, Run, RunStatus, Runs, Step};
use crate::lua::api::args;

/// The largest result kept for replay; a larger one is journaled as too large, and a resume that reaches it
/// stops with an error.
pub const MAX_RESULT: usize = 8 << 20;

/// The calls journaled, by module: everything that reaches a host, a model, a sync peer or a notify channel.
const BOUNDARY: &[(&str, &[&str])] = &[
    ("baton", &["exec", "notify"]),
    ("ssh", &["run", "spawn", "online", "wait_online", "wake"]),
    ("sync", &["push", "pull", "git", "git_remote"]),
    ("route", &["ask"]),
    (
        "ollama",
        &[
            "chat", "generate", "embed", "pull", "show", "version", "online",
        ],
    ),
    ("openrouter", &["chat", "models", "credits"]),
    ("claude", &["run"]),
];

/// A run's journal, kept in the Lua state's app data while the run lasts.
pub struct Journal {
    state: crate::core::state::State,
    run: NewRun,
    /// The run's row exists (written at the first step, or there from the start on resume).
    recorded: Cell<bool>,
    /// Resuming: the journaled steps by position, and whether a diverging call may run live (`--force`).
    replay: Option<(HashMap<String, Step>, bool)>,
    /// Lua thread (by address) → the task path it runs.
    paths: RefCell<HashMap<usize, String>>,
    /// Task path → calls made so far / child tasks started so far.
    counters: RefCell<HashMap<String, (u32, u32)>>,
    /// Calls answered from the journal (for `-v` and the tests).
    replayed: Cell<u64>,
    /// The runs table, opened (and the run's row written) at the first step.
    store: std::cell::OnceCell<Runs>,
    /// Tasks (by path) inside a journaled call right now: a boundary call that resolves to one of them
    /// comes from a callback of that call (a task itself waits in it), and is part of it.
    in_flight: RefCell<std::collections::HashSet<String>>,
    /// The run paused for an answer (`baton.approve`): it stays paused whatever the script makes of the
    /// error (see [`Journal::pause_stands`]).
    paused: RefCell<Option<Paused>>,
}

/// How a run begins: afresh, or again under its id.
pub enum Start {
    New(NewRun),
    Resume { run: Run, force: bool },
}

impl Journal {
    /// The journal of `start`, kept in `lua`'s app data. On resume the run is taken over at once.
    pub fn install(
        lua: &Lua,
        state: crate::core::state::State,
        start: Start,
    ) -> Result<(), String> {
        let journal = match start {
            Start::New(run) => Journal {
                state,
                run,
                recorded: Cell::new(false),
                replay: None,
                paths: RefCell::default(),
                counters: RefCell::default(),
                replayed: Cell::new(0),
                store: std::cell::OnceCell::new(),
                in_flight: RefCell::default(),
                paused: RefCell::default(),
            },
            Start::Resume { run, force } => {
                let runs = Runs::open(&state).map_err(|e| e.to_string())?;
                let steps = runs
                    .steps(&run.id)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|s| (s.pos.clone(), s))
                    .collect();
                runs.reopen(&run.id).map_err(|e| e.to_string())?;
                Journal {
                    state,
                    run: NewRun {
                        id: run.id,
                        script: run.script,
                        script_hash: run.script_hash,
                        args: run.args,
                        fleet: run.fleet,
                        trigger: run.trigger,
                    },
                    recorded: Cell::new(true),
                    replay: Some((steps, force)),
                    paths: RefCell::default(),
                    counters: RefCell::default(),
                    replayed: Cell::new(0),
                    store: std::cell::OnceCell::from(runs),
                    in_flight: RefCell::default(),
                    paused: RefCell::default(),
                }
            }
        };
        if let Ok(baton) = lua.globals().raw_get::<Table>("baton") {
            baton
                .raw_set("run_id", journal.run.id.as_str())
                .map_err(|e| e.to_string())?;
        }
        lua.set_app_data(Rc::new(journal));
        Ok(())
    }

    pub fn run_id(&self) -> &str {
        &self.run.id
    }

    fn runs(&self) -> mlua::Result<&Runs> {
        if let Some(runs) = self.store.get() {
            return Ok(runs);
        }
        let runs = Runs::open(&self.state).map_err(journal_error)?;
        if !self.recorded.get() {
            // The script's hash is taken here, off the path of a run that never records.
            let mut run = self.run.clone();
            if run.script_hash.is_empty() {
                run.script_hash = runs::hash(&std::fs::read(&run.script).unwrap_or_default());
            }
            runs.start(&run).map_err(journal_error)?;
            self.recorded.set(true);
        }
        Ok(self.store.get_or_init(|| runs))
    }

    /// Records how the run ended; a run that never crossed a boundary is recorded only when it failed.
    pub fn finish(&self, status: RunStatus, error: Option<&str>) -> Result<(), String> {
        if !self.recorded.get() && status == RunStatus::Ok {
            // Not a recorded run: what it printed is not kept either.
            crate::core::runs::RunLog::remove(self.state.dir(), &self.run.id);
            return Ok(());
        }
        let runs = self.runs().map_err(|e| e.to_string())?;
        runs.finish(&self.run.id, status, error)
            .map_err(|e| e.to_string())
    }

    /// Once the run paused for an answer, every later journaled call, `baton.step` and `baton.approve` raises
    /// the pause again, and the run ends paused ([`settle`]): a `pcall` around `baton.approve` (or around
    /// code that calls it) cannot catch the pause and go on to do what was to wait for the answer. Plain Lua
    /// after the caught error still runs until the next such call. The answer resumes the run as usual,
    /// where `approve` then returns it.
    fn pause_stands(&self) -> mlua::Result<()> {
        match &*self.paused.borrow() {
            Some(p) => Err(mlua::Error::external(p.clone())),
            None => Ok(()),
        }
    }

    /// Calls answered from the journal so far.
    pub fn replayed(&self) -> u64 {
        self.replayed.get()
    }

    /// The path of the task running on the current Lua thread (`0`: the playbook itself); `None` for a
    /// thread that is no task of the run: a callback (`on_line`, a `route.ask` tool, `accept`) running
    /// inside a call, whose own calls are part of that call (live when it runs, gone when it is replayed).
    fn path(&self, lua: &Lua) -> Option<String> {
        let key = lua.current_thread().to_pointer() as usize;
        self.paths.borrow().get(&key).cloned()
    }

    /// The position of the next call in the current task (`None`: not a task, see [`Journal::path`], or a
    /// task that is inside a journaled call, so this call comes from one of its callbacks).
    fn next_pos(&self, lua: &Lua) -> Option<String> {
        let path = self.path(lua)?;
        if self.in_flight.borrow().contains(&path) {
            return None;
        }
        let mut counters = self.counters.borrow_mut();
        let c = counters.entry(path.clone()).or_default();
        c.0 += 1;
        Some(format!("{path}.{}", c.0))
    }

    /// A path for a task started now by the current one (in the order the parent starts them).
    fn child_path(&self, lua: &Lua) -> Option<String> {
        let path = self.path(lua)?;
        let mut counters = self.counters.borrow_mut();
        let c = counters.entry(path.clone()).or_default();
        c.1 += 1;
        Some(format!("{path}/{}", c.1))
    }
}

fn journal_error(e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("run journal: {e}"))
}

fn journal(lua: &Lua) -> Option<Rc<Journal>> {
    lua.app_data_ref::<Rc<Journal>>().map(|j| Rc::clone(&j))
}

/// The run's result as it stands: the pause, when the run paused for an answer, whatever the script did
/// after catching it (it went on, failed or called `os.exit`; see [`Journal::pause_stands`]).
pub fn settle(lua: &Lua, result: mlua::Result<()>) -> mlua::Result<()> {
    match journal(lua).and_then(|j| j.paused.borrow().clone()) {
        Some(p) if !matches!(&result, Err(e) if paused(e).is_some()) => {
            Err(mlua::Error::external(p))
        }
        _ => result,
    }
}

/// Records how the run of `lua` ended ([`finish`]) and gives its result, a pause for an answer
/// (`baton.approve`, also one the script caught: [`settle`]) counting as an end without error: the process
/// or scheduled run is over, quietly.
pub fn end(lua: &Lua, result: mlua::Result<()>) -> mlua::Result<()> {
    let result = settle(lua, result);
    finish(lua, &result);
    match result {
        Err(e) if paused(&e).is_some() => Ok(()),
        other => other,
    }
}

/// Records how the run of `lua` ended (`result` of its playbook), if it has a journal: ok, failed with the
/// error, or nothing when it paused for an answer (`baton.approve` recorded that).
fn finish(lua: &Lua, result: &mlua::Result<()>) {
    let Some(j) = journal(lua) else { return };
    if let Err(e) = result
        && paused(e).is_some()
    {
        return;
    }
    let (status, error) = match result {
        Ok(()) => (RunStatus::Ok, None),
        Err(e) => match crate::lua::exit_code(e) {
            Some(0) => (RunStatus::Ok, None),
            Some(code) => (RunStatus::Failed, Some(format!("os.exit({code})"))),
            None => (RunStatus::Failed, Some(crate::lua::split_error(e).0)),
        },
    };
    if j.replayed() > 0 {
        tracing::info!(
            "run {}: {} finished calls replayed from the journal",
            j.run_id(),
            j.replayed()
        );
    }
    if let Err(e) = j.finish(status, error.as_deref()) {
        tracing::warn!("run {}: cannot record its end: {e}", j.run_id());
    }
}

/// `baton.run_id`: the run's id, `nil` outside a run (the REPL).
pub fn run_id(lua: &Lua) -> Option<String> {
    journal(lua).map(|j| j.run_id().to_string())
}

/// A thread for a task the current one starts (`baton.spawn`, each entry of `baton.gather`, each host of
/// `ssh.each`), with its own path in the journal while the returned guard lives.
pub fn task_thread(lua: &Lua, f: Function) -> mlua::Result<(mlua::Thread, TaskGuard)> {
    let thread = lua.create_thread(f)?;
    let guard = match journal(lua) {
        Some(j) => match j.child_path(lua) {
            Some(path) => registered(j, &thread, path),
            // Started by a callback inside a call: part of that call too.
            None => TaskGuard(None),
        },
        None => TaskGuard(None),
    };
    Ok((thread, guard))
}

/// The thread of the run's own code (the playbook's chunk, a scheduled job's function): task `0`.
pub fn root_thread(lua: &Lua, f: Function) -> mlua::Result<(mlua::Thread, TaskGuard)> {
    let thread = lua.create_thread(f)?;
    let guard = match journal(lua) {
        Some(j) => registered(j, &thread, "0".into()),
        None => TaskGuard(None),
    };
    Ok((thread, guard))
}

fn registered(j: Rc<Journal>, thread: &mlua::Thread, path: String) -> TaskGuard {
    let key = thread.to_pointer() as usize;
    j.paths.borrow_mut().insert(key, path);
    TaskGuard(Some((j, key)))
}

/// Marks a task's journaled call as over (also when it is cancelled).
struct InFlight(Rc<Journal>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.borrow_mut().remove(&self.1);
    }
}

/// Forgets a task's path when the task is over (threads are reused).
pub struct TaskGuard(Option<(Rc<Journal>, usize)>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some((j, key)) = self.0.take() {
            j.paths.borrow_mut().remove(&key);
        }
    }
}

/// Puts the boundary functions of module `name` behind the journal.
pub fn wrap_module(lua: &Lua, name: &str, module: &Table) -> mlua::Result<()> {
    let Some((_, fns)) = BOUNDARY.iter().find(|(m, _)| *m == name) else {
        return Ok(());
    };
    for f in fns.iter() {
        if let Ok(Value::Function(inner)) = module.raw_get::<Value>(*f) {
            let kind = format!("{name}.{f}");
            module.raw_set(*f, journaled(lua, kind, inner)?)?;
        }
    }
    Ok(())
}

/// `inner` as a journaled call of `kind`: outside a run it is `inner` itself.
fn journaled(lua: &Lua, kind: String, inner: Function) -> mlua::Result<Function> {
    let kind: Rc<str> = kind.into();
    lua.create_async_function(move |lua, args: MultiValue| {
        let (kind, inner) = (kind.clone(), inner.clone());
        async move {
            let shown = args.clone();
            journaled_call(&lua, &kind, &shown, || inner.call_async::<MultiValue>(args)).await
        }
    })
}

/// A boundary call that is a handle's method rather than a module function (`mcp:call`): journaled like a
/// module function of `kind` with arguments `args`; outside a run it is `live()` itself.
pub async fn journaled_call<F, Fut>(
    lua: &Lua,
    kind: &str,
    args: &MultiValue,
    live: F,
) -> mlua::Result<MultiValue>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = mlua::Result<MultiValue>>,
{
    let Some(j) = journal(lua) else {
        return live().await;
    };
    // Also a callback's call (no task of the run) after a pause.
    j.pause_stands()?;
    if j.path(lua).is_none() {
        return live().await;
    }
    let call = fingerprint(lua, kind, args);
    let label = label_of(kind, args);
    step(lua, &j, kind, label, call, |_| live()).await
}

/// One journaled unit: replayed from the journal when it finished before, else run and recorded.
async fn step<F, Fut>(
    lua: &Lua,
    j: &Rc<Journal>,
    kind: &str,
    label: String,
    call: String,
    live: F,
) -> mlua::Result<MultiValue>
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: std::future::Future<Output = mlua::Result<MultiValue>>,
{
    j.pause_stands()?;
    let Some(pos) = j.next_pos(lua) else {
        return live(None).await;
    };
    // While this call runs, calls that resolve to its task are its callbacks' (see `in_flight`).
    let path = pos
        .rsplit_once('.')
        .map_or(pos.as_str(), |(p, _)| p)
        .to_string();
    j.in_flight.borrow_mut().insert(path.clone());
    let _flight = InFlight(j.clone(), path);
    if let Some((steps, force)) = &j.replay
        && !steps.contains_key(&pos)
        && !*force
        && let Some(later) = later_step(steps, &pos)
    {
        return Err(mlua::Error::runtime(format!(
            "resume: the journal of run {} has no step {pos} but has {later} after it (was a row \
             deleted?); run `baton resume {} --force` to run it again live",
            j.run.id, j.run.id
        )));
    }
    if let Some((steps, force)) = &j.replay
        && let Some(done) = steps.get(&pos)
        // A call that raised runs again: the host may be up now.
        && done.outcome != "error"
    {
        if done.call == call {
            return replay(lua, j, done);
        }
        if !*force {
            return Err(mlua::Error::runtime(format!(
                "resume: the script no longer matches run {} at step {pos}: the journal has {} {}, the \
                 script now makes {kind} {}; run `baton resume {} --force` to go on live from here",
                j.run.id,
                done.kind,
                shown_call(&done.call),
                shown_call(&call),
                j.run.id
            )));
        }
    }
    // The journal must be writable before the call runs: a call whose result could not be kept would be
    // run again on resume.
    let store = j.runs()?;
    let started = runs::now();
    let clock = std::time::Instant::now();
    let lived = live(Some(pos.clone())).await;
    // A pause inside it (a `baton.step` whose body caught one) stands: the step did not finish, and on
    // resume its body runs again, to get the answer.
    j.pause_stands()?;
    let values = match lived {
        Ok(values) => values,
        Err(e) => {
            // Kept as a failed step (so the positions after it stay checkable), never replayed. A pause is
            // not a failure, and an interruption is not the call's.
            if paused(&e).is_none() && !crate::lua::runtime::interrupt(lua).is_set() {
                let row = Step {
                    pos,
                    kind: kind.to_string(),
                    label,
                    call,
                    started,
                    duration: clock.elapsed().as_secs_f64(),
                    outcome: "error".into(),
                    cost: None,
                    result: Some(crate::lua::split_error(&e).0),
                };
                store.put_step(&j.run.id, &row).map_err(journal_error)?;
            }
            return Err(e);
        }
    };
    let duration = clock.elapsed().as_secs_f64();
    let (outcome, result) = match results_json(lua, &values) {
        Ok(text) if text.len() <= MAX_RESULT => ("ok", Some(text)),
        Ok(_) => ("too_large", None),
        Err(why) => ("unreplayable", Some(why)),
    };
    let cost = values
        .iter()
        .next()
        .and_then(|v| v.as_table())
        .and_then(|t| t.raw_get::<Option<f64>>("cost").ok().flatten());
    let row = Step {
        pos,
        kind: kind.to_string(),
        label,
        call,
        started,
        duration,
        outcome: outcome.to_string(),
        cost,
        result,
    };
    store.put_step(&j.run.id, &row).map_err(journal_error)?;
    Ok(values)
}

/// A journaled step of the same task after `pos` (`0.3` → `0.5`), if any.
fn later_step(steps: &HashMap<String, Step>, pos: &str) -> Option<String> {
    let (path, n) = pos.rsplit_once('.')?;
    let n: u32 = n.parse().ok()?;
    steps
        .keys()
        .filter_map(|k| {
            let (p, m) = k.rsplit_once('.')?;
            (p == path && m.parse::<u32>().ok()? > n).then(|| k.clone())
        })
        .min_by_key(|k| k.rsplit_once('.').and_then(|(_, m)| m.parse::<u32>().ok()))
}

/// What a finished step returned, back as Lua values.
fn replay(lua: &Lua, j: &Journal, done: &Step) -> mlua::Result<MultiValue> {
    let text = match (done.outcome.as_str(), &done.result) {
        ("ok", Some(text)) => text,
        ("too_large", _) => {
            return Err(mlua::Error::runtime(format!(
                "resume: step {} ({} {}) returned more than {} MiB, too much to journal: it cannot be \
                 replayed",
                done.pos,
                done.kind,
                done.label,
                MAX_RESULT >> 20
            )));
        }
        (_, why) => {
            return Err(mlua::Error::runtime(format!(
                "resume: step {} ({} {}) cannot be replayed: {}",
                done.pos,
                done.kind,
                done.label,
                why.as_deref().unwrap_or("its result was not kept")
            )));
        }
    };
    let values: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| journal_error(format!("step {}: the result is not JSON: {e}", done.pos)))?;
    let list = values.as_array().cloned().unwrap_or_default();
    let mut out = MultiValue::new();
    for v in list {
        out.push_back(from_json(lua, &v)?);
    }
    j.replayed.set(j.replayed.get() + 1);
    Ok(out)
}

/// `baton.step(name, fn, ...)`: `fn(...)` as one journaled unit; what it returns (values that round-trip
/// through JSON) is kept, and on resume a finished step returns it without calling `fn`. The calls inside
/// are journaled under the step, so a step cut short resumes without repeating those that finished.
pub async fn baton_step(
    lua: Lua,
    (name, f, args): (Value, Value, MultiValue),
) -> mlua::Result<MultiValue> {
    const F: &str = "baton.step";
    let name = args::non_empty_string(F, 1, "name", &name)?;
    let Value::Function(f) = f else {
        return Err(mlua::Error::runtime(format!(
            "{F}({name}): argument 2 (fn) must be a function, got {}",
            f.type_name()
        )));
    };
    let Some(j) = journal(&lua) else {
        return f.call_async::<MultiValue>(args).await;
    };
    let call = fingerprint(&lua, &format!("step:{name}"), &args);
    let lua2 = lua.clone();
    let name2 = name.clone();
    let j2 = j.clone();
    let values = step(
        &lua,
        &j,
        "baton.step",
        name.clone(),
        call,
        |pos| async move {
            // The body's calls are journaled under the step's own position (`0.3` → `0.3.1`), so a replayed
            // step shifts nothing after it.
            let (thread, _guard) = match pos {
                Some(pos) => {
                    let thread = lua2.create_thread(f)?;
                    let guard = registered(j2, &thread, pos);
                    (thread, guard)
                }
                None => task_thread(&lua2, f)?,
            };
            let values = thread.into_async::<MultiValue>(args)?.await?;
            if let Err(why) = results_json(&lua2, &values) {
                return Err(mlua::Error::runtime(format!(
                    "{F}({name2}): its result cannot be journaled: {why}"
                )));
            }
            Ok(values)
        },
    )
    .await?;
    Ok(values)
}

/// A run stopping to wait for an answer (`baton.approve`): not a failure; the process ends with 0.
#[derive(Debug, Clone, thiserror::Error)]
#[error("run {run} paused: {message}")]
pub struct Paused {
    pub run: String,
    pub message: String,
}

/// Whether `e` is a run pausing for an answer.
pub fn paused(e: &mlua::Error) -> Option<&Paused> {
    let mut e = e;
    loop {
        match e {
            mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
                e = cause
            }
            mlua::Error::ExternalError(inner) => return inner.downcast_ref::<Paused>(),
            _ => return None,
        }
    }
}

/// `baton.approve(message [, opts])`: in a run, pauses it until someone answers with `baton runs approve
/// RUN [--answer TEXT]` or `baton runs deny RUN [--reason TEXT]` (from any process): the fleet's notify
/// channels get the question and those commands, the run is recorded `paused` and this process ends (exit
/// 0, holding nothing). The answer resumes the run, replaying what it did before; here `approve` then
/// returns `true, answer` or `false, reason`. The pause is an error so that nothing after it runs; one that
/// the script catches (`pcall(baton.approve, …)`) still stands: every later journaled call, `baton.step` or
/// `baton.approve` raises it again, a `baton.step` whose body caught it does not finish (its body runs again
/// on resume), and the run ends paused however the script ends ([`Journal::pause_stands`]).
pub async fn baton_approve(lua: Lua, (message, _opts): (Value, Value)) -> mlua::Result<MultiValue> {
    const F: &str = "baton.approve";
    let message = args::non_empty_string(F, 1, "message", &message)?;
    let Some(j) = journal(&lua) else {
        // The REPL has no run to pause: it asks here, on the terminal (a line from stdin).
        if crate::lua::ctx(&lua).script == "repl" {
            crate::errw!("{} [y/N] ", crate::core::text::escape_line(&message));
            let line = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .map_err(|e| mlua::Error::runtime(format!("{F}: {e}")))?
            .map_err(|e| mlua::Error::runtime(format!("{F}: cannot read the answer: {e}")))?;
            let yes = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
            return Ok(MultiValue::from_iter([Value::Boolean(yes)]));
        }
        return Err(mlua::Error::runtime(format!(
            "{F}: only a run can wait for an answer (`baton run`, a scheduled run) or the REPL ask"
        )));
    };
    j.pause_stands()?;
    let call = serde_json::json!(["baton.approve", [message]]).to_string();
    let Some(pos) = j.next_pos(&lua) else {
        return Err(mlua::Error::runtime(format!(
            "{F}: call it from the playbook's own code or a task, not from a callback inside a call"
        )));
    };
    if let Some((steps, _)) = &j.replay
        && let Some(done) = steps.get(&pos)
        && done.call == call
    {
        return replay(&lua, &j, done);
    }
    let runs = j.runs()?;
    let pending = runs::Pending {
        pos,
        call,
        message: message.clone(),
    };
    runs.pause(&j.run.id, &pending).map_err(journal_error)?;
    let id = j.run.id.clone();
    let msg = crate::core::notify::Message {
        title: format!("baton: run {id} waits for approval"),
        body: format!(
            "{message}\n\nbaton runs approve {id} [--answer TEXT]\nbaton runs deny {id} [--reason TEXT]"
        ),
        priority: None,
        tags: vec!["question".into()],
        click: None,
    };
    let notifier = crate::core::notify::Notifier::from_fleet(&crate::lua::ctx(&lua).fleet);
    if !notifier.channels().is_empty()
        && let Err(e) = notifier
            .send(&msg, None, crate::core::notify::DEFAULT_TIMEOUT)
            .await
    {
        tracing::warn!("run {id}: the approval request was not delivered: {e}");
    }
    crate::errln!(
        "run {id} paused: {}\n  approve: baton runs approve {id} [--answer TEXT]\n  deny:    baton runs deny {id} [--reason TEXT]",
        crate::core::text::escape_line(&message)
    );
    let pause = Paused { run: id, message };
    *j.paused.borrow_mut() = Some(pause.clone());
    Err(mlua::Error::external(pause))
}

/// The call as journaled: its kind and arguments, functions and handles named, not kept.
fn fingerprint(lua: &Lua, kind: &str, args: &MultiValue) -> String {
    let list: Vec<serde_json::Value> = args.iter().map(|v| to_json(lua, v, 0)).collect();
    let args = serde_json::Value::Array(list).to_string();
    if args.len() <= MAX_CALL_KEPT {
        return format!("[{},{args}]", serde_json::Value::from(kind));
    }
    // A long prompt or diff is not kept twice: its hash stands for it, with its start for error messages.
    let start: String = args.chars().take(120).collect();
    serde_json::json!([kind, {"sha256": runs::hash(args.as_bytes()), "start": start}]).to_string()
}

/// The longest call (its arguments as JSON) journaled as it is; a longer one is kept as its hash.
const MAX_CALL_KEPT: usize = 4096;

/// The call's fingerprint, cut to one short line for an error message.
fn shown_call(call: &str) -> String {
    let args = serde_json::from_str::<serde_json::Value>(call)
        .ok()
        .and_then(|v| v.get(1).map(|a| a.to_string()))
        .unwrap_or_default();
    crate::core::text::shown(&args)
}

/// A short label for the step list: the first string arguments (a host, a command, a task, a name).
fn label_of(kind: &str, args: &MultiValue) -> String {
    let words: Vec<String> = args
        .iter()
        .take(2)
        .filter_map(|v| match v {
            Value::String(s) => Some(s.to_string_lossy()),
            // An argv: its words.
            Value::Table(t) if t.raw_len() > 0 => Some(
                t.clone()
                    .sequence_values::<Value>()
                    .filter_map(|w| match w {
                        Ok(Value::String(s)) => Some(s.to_string_lossy()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect();
    let label = if words.is_empty() {
        kind.to_string()
    } else {
        words.join(" ")
    };
    crate::core::text::escape_line(&crate::core::text::truncate(&label, 80)).into_owned()
}

/// The returned values as a JSON list, or why they cannot be.
fn results_json(lua: &Lua, values: &MultiValue) -> Result<String, String> {
    let mut list = Vec::with_capacity(values.len());
    for v in values.iter() {
        list.push(strict_json(lua, v, 0)?);
    }
    Ok(serde_json::Value::Array(list).to_string())
}

const MAX_DEPTH: usize = 64;

/// A Lua value as JSON for replay: a list as a JSON list (an empty one marked as a list when it is one, see
/// `baton.json.array`), other keys kept (integer keys as `#1`, a string key starting with `#` escaped as
/// `##`), a job handle as its id; a function, coroutine or other handle is an error.
fn strict_json(lua: &Lua, v: &Value, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    if depth > MAX_DEPTH {
        return Err(format!("tables nested more than {MAX_DEPTH} deep"));
    }
    Ok(match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Number(n) => match serde_json::Number::from_f64(*n) {
            Some(n) => J::Number(n),
            None => return Err(format!("the number {n} has no JSON form")),
        },
        Value::String(s) => J::String(s.to_string_lossy()),
        Value::Table(t) => {
            let len = t.raw_len();
            let pairs = t.clone().pairs::<Value, Value>().count();
            if len > 0 && pairs == len {
                let mut out = Vec::with_capacity(len);
                for x in t.clone().sequence_values::<Value>() {
                    out.push(strict_json(lua, &x.map_err(|e| e.to_string())?, depth + 1)?);
                }
                J::Array(out)
            } else if pairs == 0 && t.metatable().is_some_and(|m| m == lua.array_metatable()) {
                serde_json::json!({ "__list": [] })
            } else {
                let mut map = serde_json::Map::new();
                for pair in t.clone().pairs::<Value, Value>() {
                    let (k, x) = pair.map_err(|e| e.to_string())?;
                    let key = match &k {
                        Value::String(s) => {
                            let s = s.to_string_lossy();
                            if s.starts_with('#') {
                                format!("#{s}")
                            } else {
                                s
                            }
                        }
                        Value::Integer(i) => format!("#{i}"),
                        other => {
                            return Err(format!("a table has a {} key", other.type_name()));
                        }
                    };
                    map.insert(key, strict_json(lua, &x, depth + 1)?);
                }
                J::Object(map)
            }
        }
        Value::UserData(ud) => match crate::lua::api::ssh::job_id(ud) {
            Some(id) => serde_json::json!({ "__job": id }),
            None => return Err("it holds a handle (userdata) that cannot be saved".into()),
        },
        other => return Err(format!("it holds a {}", other.type_name())),
    })
}

/// A Lua value as JSON for a fingerprint: like [`strict_json`], but a function or handle is named.
fn to_json(lua: &Lua, v: &Value, depth: usize) -> serde_json::Value {
    match strict_json(lua, v, depth) {
        Ok(j) => j,
        Err(_) => match v {
            Value::Table(t) if depth <= MAX_DEPTH => {
                let mut map = serde_json::Map::new();
                for (k, x) in t.clone().pairs::<Value, Value>().flatten() {
                    let key = match &k {
                        Value::String(s) => s.to_string_lossy(),
                        Value::Integer(i) => format!("#{i}"),
                        other => format!("<{}>", other.type_name()),
                    };
                    map.insert(key, to_json(lua, &x, depth + 1));
                }
                serde_json::Value::Object(map)
            }
            other => serde_json::Value::String(format!("<{}>", other.type_name())),
        },
    }
}

/// JSON journaled by [`strict_json`] back as a Lua value.
fn from_json(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, x) in items.iter().enumerate() {
                t.raw_set(i + 1, from_json(lua, x)?)?;
            }
            Value::Table(t)
        }
        J::Object(map) => {
            if map.len() == 1 {
                if let Some(J::Array(items)) = map.get("__list")
                    && items.is_empty()
                {
                    let t = lua.create_table()?;
                    t.set_metatable(Some(lua.array_metatable()))?;
                    return Ok(Value::Table(t));
                }
                if let Some(J::String(id)) = map.get("__job") {
                    return Ok(Value::UserData(crate::lua::api::ssh::job_handle(lua, id)?));
                }
            }
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, x) in map {
                let value = from_json(lua, x)?;
                match k.strip_prefix('#') {
                    Some(rest) if rest.starts_with('#') => t.raw_set(rest, value)?,
                    Some(rest) => match rest.parse::<i64>() {
                        Ok(i) => t.raw_set(i, value)?,
                        Err(_) => t.raw_set(k.as_str(), value)?,
                    },
                    None => t.raw_set(k.as_str(), value)?,
                }
            }
            Value::Table(t)
        }
    })
}

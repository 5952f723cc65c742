//! Durable runs: every run that crosses a boundary (a model, a host, a sync, a command) is a row in `runs`,
//! and each such call is a row in `steps` holding the result the script saw, so `baton resume RUN` replays
//! finished calls instead of repeating (or re-paying) them. Plain rows in the state database; the Lua side
//! (`lua::journal`) decides what a step is and turns results into JSON and back.
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::state::{State, StateError};

/// Schema of the runs and their steps (`state.migrate("runs", MIGRATIONS)`).
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        script TEXT NOT NULL,
        script_hash TEXT NOT NULL,
        args TEXT NOT NULL,
        fleet TEXT,
        trigger TEXT NOT NULL,
        machine TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        status TEXT NOT NULL,
        error TEXT
    );
    CREATE INDEX runs_started ON runs(started);
    CREATE TABLE steps (
        run_id TEXT NOT NULL,
        pos TEXT NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        call TEXT NOT NULL,
        started REAL NOT NULL,
        duration REAL NOT NULL,
        outcome TEXT NOT NULL,
        cost REAL,
        result TEXT,
        PRIMARY KEY (run_id, pos)
    ) WITHOUT ROWID;",
    // A paused run's question: `{"pos", "call", "message"}` until it is answered.
    "ALTER TABLE runs ADD COLUMN pending TEXT;",
];

/// How a run stands. A `running` run whose process is gone reads as `interrupted` ([`Run::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
    Interrupted,
    Paused,
    Cancelled,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Paused => "paused",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Ok,
            RunStatus::Failed,
            RunStatus::Interrupted,
            RunStatus::Paused,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|st| st.name() == s)
    }
}

/// What starts a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub id: String,
    /// The playbook's path (absolute).
    pub script: PathBuf,
    /// SHA-256 of the playbook's text, hex: `resume` refuses a changed script unless forced. Empty for a run
    /// that is one call (`baton ask`, an MCP tool call): not resumable.
    pub script_hash: String,
    pub args: Vec<String>,
    /// The fleet file in effect (`None`: the built-in fleet).
    pub fleet: Option<PathBuf>,
    /// `cli`, `schedule`, `ask`, `mcp`.
    pub trigger: String,
}

impl NewRun {
    /// A new run of the script at `path` (made absolute). Its hash is taken when the run is first
    /// recorded, so a run that never is does not read its script twice.
    pub fn of_script(
        path: &std::path::Path,
        args: Vec<String>,
        fleet: Option<PathBuf>,
        trigger: &str,
    ) -> NewRun {
        NewRun {
            id: new_id(),
            script: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            script_hash: String::new(),
            args,
            fleet,
            trigger: trigger.into(),
        }
    }
}

/// A recorded run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub script: PathBuf,
    pub script_hash: String,
    pub args: Vec<String>,
    pub fleet: Option<PathBuf>,
    pub trigger: String,
    pub machine: String,
    pub pid: i64,
    /// Unix seconds.
    pub started: f64,
    pub ended: Option<f64>,
    /// As recorded; see [`Run::status`].
    pub recorded: RunStatus,
    pub error: Option<String>,
    /// A paused run's question.
    pub pending: Option<Pending>,
}

/// What a paused run waits for: the answer to `baton.approve(message)` at `pos`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub pos: String,
    /// The call's fingerprint, as the answer's step row needs it.
    pub call: String,
    pub message: String,
}

impl Run {
    /// The status as it stands: a run recorded `running` whose process is gone (on this machine) was
    /// interrupted.
    pub fn status(&self) -> RunStatus {
        if self.recorded == RunStatus::Running
            && self.machine == machine()
            && !process_alive(self.pid)
        {
            RunStatus::Interrupted
        } else {
            self.recorded
        }
    }
}

/// One journaled call.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Where in the run: the task's path and the call's number in it (`0.3`, `0/s1.2`).
    pub pos: String,
    /// `ssh.run`, `route.ask`, `step` (a `baton.step`) …
    pub kind: String,
    /// A short description: host, command's first bytes, tier and model, the step's name.
    pub label: String,
    /// The call as a fingerprint (its kind and arguments as JSON): a resume checks the script makes the
    /// same call at the same position.
    pub call: String,
    /// Unix seconds.
    pub started: f64,
    /// Seconds.
    pub duration: f64,
    /// `ok`, `error` (the call raised: `result` is the error), `too_large` (the result was not kept).
    pub outcome: String,
    pub cost: Option<f64>,
    /// What the script saw, as JSON (a list of the returned values, or the error message).
    pub result: Option<String>,
}

/// Records a run that is one call and cannot be resumed (`baton ask`, a tool call served by `baton mcp
/// serve`): its row, its one step, how it ended. A failure to record is logged, never the call's failure.
pub fn record_call(
    state: &State,
    id: &str,
    trigger: &str,
    script: &str,
    args: &[String],
    step: Step,
    error: Option<&str>,
) {
    let id = id.to_string();
    let run = NewRun {
        id: id.clone(),
        script: PathBuf::from(script),
        script_hash: String::new(),
        args: args.to_vec(),
        fleet: None,
        trigger: trigger.into(),
    };
    let status = if error.is_some() {
        RunStatus::Failed
    } else {
        RunStatus::Ok
    };
    let recorded = Runs::open(state).and_then(|runs| {
        runs.start(&run)?;
        runs.put_step(&id, &step)?;
        runs.finish(&id, status, error)
    });
    match recorded {
        Ok(()) => tracing::info!("run {id}"),
        Err(e) => tracing::warn!("{script}: the run was not recorded: {e}"),
    }
}

/// A new run id: the start time (UTC: reading the local zone costs a file read and parse on every start)
/// and a random suffix, short and sortable (`20261206-041533-7f3a09c2`). 32 random bits: 100 runs started
/// in one second collide about once in a million (16 bits collided in 7 % of such bursts).
pub fn new_id() -> String {
    format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        fastrand::u32(..)
    )
}

/// This machine's name (`$HOSTNAME`-like), for runs started elsewhere on a shared state dir.
pub fn machine() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn process_alive(pid: i64) -> bool {
    match i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        Some(pid) => match rustix::process::test_kill_process(pid) {
            Ok(()) => true,
            Err(e) => e == rustix::io::Errno::PERM,
        },
        None => false,
    }
}

/// Unix seconds, with fractions.
pub fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// The runs table of one state database.
#[derive(Clone)]
pub struct Runs {
    state: State,
}

const COLUMNS: &str = "id, script, script_hash, args, fleet, trigger, machine, pid, started, ended, status, error, \
     pending";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let args: String = r.get(3)?;
    let status: String = r.get(10)?;
    Ok(Run {
        id: r.get(0)?,
        script: PathBuf::from(r.get::<_, String>(1)?),
        script_hash: r.get(2)?,
        args: serde_json::from_str(&args).unwrap_or_default(),
        fleet: r.get::<_, Option<String>>(4)?.map(PathBuf::from),
        trigger: r.get(5)?,
        machine: r.get(6)?,
        pid: r.get(7)?,
        started: r.get(8)?,
        ended: r.get(9)?,
        recorded: RunStatus::parse(&status).unwrap_or(RunStatus::Interrupted),
        error: r.get(11)?,
        pending: r
            .get::<_, Option<String>>(12)?
            .and_then(|p| serde_json::from_str(&p).ok()),
    })
}

fn step_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Step> {
    Ok(Step {
        pos: r.get(0)?,
        kind: r.get(1)?,
        label: r.get(2)?,
        call: r.get(3)?,
        started: r.get(4)?,
        duration: r.get(5)?,
        outcome: r.get(6)?,
        cost: r.get(7)?,
        result: r.get(8)?,
    })
}

impl Runs {
    pub fn open(state: &State) -> Result<Runs, StateError> {
        state.migrate("runs", MIGRATIONS)?;
        Ok(Runs {
            state: state.clone(),
        })
    }

    /// Records a run as started by this process.
    pub fn start(&self, run: &NewRun) -> Result<(), StateError> {
        let args = serde_json::to_string(&run.args).unwrap_or_else(|_| "[]".into());
        let (machine, pid) = (machine(), std::process::id() as i64);
        self.state.with(|c| {
            c.execute(
                "INSERT INTO runs(id, script, script_hash, args, fleet, trigger, machine, pid, started, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running')",
                params![
                    run.id,
                    run.script.to_string_lossy(),
                    run.script_hash,
                    args,
                    run.fleet.as_ref().map(|f| f.to_string_lossy().into_owned()),
                    run.trigger,
                    machine,
                    pid,
                    now()
                ],
            )
        })?;
        Ok(())
    }

    /// Takes a recorded run over for this process (a resume): `running` again, this pid and machine.
    pub fn reopen(&self, id: &str) -> Result<(), StateError> {
        let (machine, pid) = (machine(), std::process::id() as i64);
        self.state.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'running', ended = NULL, error = NULL, machine = ?2, pid = ?3
                 WHERE id = ?1",
                params![id, machine, pid],
            )
        })?;
        Ok(())
    }

    /// Pauses a run on a question: `paused`, with what it waits for.
    pub fn pause(&self, id: &str, pending: &Pending) -> Result<(), StateError> {
        let text = serde_json::to_string(pending).unwrap_or_default();
        self.state.with(|c| {
            c.execute(
                "UPDATE runs SET status = 'paused', pending = ?2, ended = ?3 WHERE id = ?1",
                params![id, text, now()],
            )
        })?;
        Ok(())
    }

    /// Records the answer to a paused run's question as the step it waited at, in one transaction; the run
    /// stays paused until it is resumed. `false` when the run was not paused (answered by someone else).
    pub fn answer(&self, id: &str, step: &Step) -> Result<bool, StateError> {
        let step = step.clone();
        let id = id.to_string();
        self.state.with(move |c| {
            let tx = c.transaction()?;
            let changed = tx.execute(
                "UPDATE runs SET pending = NULL WHERE id = ?1 AND status = 'paused' AND pending IS NOT NULL",
                [&id],
            )?;
            if changed == 1 {
                insert_step(&tx, &id, &step)?;
            }
            tx.commit()?;
            Ok(changed == 1)
        })
    }

    /// Records how a run ended.
    pub fn finish(
        &self,
        id: &str,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.state.with(|c| {
            c.execute(
                "UPDATE runs SET status = ?2, error = ?3, ended = ?4 WHERE id = ?1",
                params![id, status.name(), error, now()],
            )
        })?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Run>, StateError> {
        self.state.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
        })
    }

    /// The newest runs first, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<Run>, StateError> {
        self.state.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM runs ORDER BY started DESC, id DESC LIMIT ?1"
            ))?;
            stmt.query_map([limit as i64], from_row)?.collect()
        })
    }

    /// Journals one finished call (replacing what a forced resume ran again at that position).
    pub fn put_step(&self, run_id: &str, step: &Step) -> Result<(), StateError> {
        self.state.with(|c| insert_step(c, run_id, step))?;
        Ok(())
    }

    /// Every journaled call of a run, in the order they finished.
    pub fn steps(&self, run_id: &str) -> Result<Vec<Step>, StateError> {
        self.state.with(|c| {
            let mut stmt = c.prepare(
                "SELECT pos, kind, label, call, started, duration, outcome, cost, result FROM steps
                 WHERE run_id = ?1 ORDER BY started, pos",
            )?;
            stmt.query_map([run_id], step_from_row)?.collect()
        })
    }

    /// Forgets runs that ended before `before` (unix seconds) and their journals; running and paused runs
    /// stay. Returns how many runs went.
    pub fn prune(&self, before: f64) -> Result<usize, StateError> {
        let gone: Vec<String> = self.state.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id FROM runs WHERE started < ?1 AND status NOT IN ('running', 'paused')",
            )?;
            stmt.query_map([before], |r| r.get(0))?.collect()
        })?;
        for id in &gone {
            RunLog::remove(self.state.dir(), id);
        }
        self.state.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM steps WHERE run_id IN (SELECT id FROM runs WHERE started < ?1
                   AND status NOT IN ('running', 'paused'))",
                [before],
            )?;
            let n = tx.execute(
                "DELETE FROM runs WHERE started < ?1 AND status NOT IN ('running', 'paused')",
                [before],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    /// What the ledger booked for a run's model calls (every attempt, escalations and reservations of
    /// calls cut short included).
    pub fn cost(&self, run_id: &str) -> Result<f64, StateError> {
        self.state.with(|c| {
            // No ledger yet (no model was ever called here): nothing was booked.
            if c.prepare("SELECT run_id FROM llm_ledger LIMIT 0").is_err() {
                return Ok(0.0);
            }
            c.query_row(
                "SELECT COALESCE(SUM(cost), 0) FROM llm_ledger WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
        })
    }
}

/// Why a run refused an action (`baton runs cancel|approve|deny`, `baton resume`, the dashboard's buttons):
/// one line, said the same by the CLI (after its command's name) and the web page.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no run {} (see `baton runs`)", crate::core::text::quoted(.0))]
    NoRun(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl Runs {
    fn must_get(&self, id: &str) -> Result<Run, ActionError> {
        self.get(id)?
            .ok_or_else(|| ActionError::NoRun(id.to_string()))
    }

    /// Gives a run up: a paused, interrupted or failed one is recorded as cancelled (it cannot be resumed);
    /// a running one on this machine is recorded so, then its process gets SIGTERM. Returns the run as it
    /// was.
    pub fn cancel(&self, id: &str) -> Result<Run, ActionError> {
        let run = self.must_get(id)?;
        match run.status() {
            RunStatus::Paused | RunStatus::Interrupted | RunStatus::Failed => {}
            RunStatus::Running if run.machine == machine() => {}
            RunStatus::Running => {
                return Err(ActionError::Refused(format!(
                    "run {id} runs on {} (pid {}): cancel it there",
                    run.machine, run.pid
                )));
            }
            other => {
                return Err(ActionError::Refused(format!(
                    "run {id} is {}: only a paused, interrupted or failed run, or a running one, can be cancelled",
                    other.name()
                )));
            }
        }
        self.finish(id, RunStatus::Cancelled, run.error.as_deref())?;
        if run.status() == RunStatus::Running
            && let Some(pid) = i32::try_from(run.pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
        {
            // Recorded first: the process ends without a word of its own (baton leaves SIGTERM's default).
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        Ok(run)
    }

    /// Records the answer to a paused run's `baton.approve` (`approved`, with `text`) as the step it waits
    /// at; the run stays paused until it is resumed. Returns the run as it is now.
    pub fn answer_pending(
        &self,
        id: &str,
        approved: bool,
        text: Option<&str>,
    ) -> Result<Run, ActionError> {
        let run = self.must_get(id)?;
        let Some(pending) = run
            .pending
            .clone()
            .filter(|_| run.status() == RunStatus::Paused)
        else {
            return Err(ActionError::Refused(format!(
                "run {id} is not waiting for an answer (it is {})",
                run.status().name()
            )));
        };
        let step = Step {
            pos: pending.pos.clone(),
            kind: "baton.approve".into(),
            label: crate::core::text::truncate(&pending.message, 80).into_owned(),
            call: pending.call.clone(),
            started: now(),
            duration: 0.0,
            outcome: "ok".into(),
            cost: None,
            result: Some(serde_json::json!([approved, text]).to_string()),
        };
        if !self.answer(id, &step)? {
            return Err(ActionError::Refused(format!(
                "run {id} was answered meanwhile"
            )));
        }
        self.must_get(id)
    }

    /// The run `baton resume` may take over, or why not.
    pub fn resumable(&self, id: &str) -> Result<Run, ActionError> {
        let run = self.must_get(id)?;
        let refuse = |why: String| Err(ActionError::Refused(why));
        if run.script_hash.is_empty() {
            return refuse(format!(
                "run {id} is one call ({}, trigger {}), not a playbook: there is nothing to resume",
                run.script.display(),
                run.trigger
            ));
        }
        match run.status() {
            RunStatus::Interrupted | RunStatus::Failed => Ok(run),
            // Answered (`runs approve|deny`): its answer is a journaled step now.
            RunStatus::Paused if run.pending.is_none() => Ok(run),
            RunStatus::Running => refuse(format!(
                "run {id} is still running (pid {} on {})",
                run.pid, run.machine
            )),
            RunStatus::Ok => refuse(format!("run {id} finished ok; there is nothing to resume")),
            RunStatus::Cancelled => refuse(format!("run {id} was cancelled")),
            RunStatus::Paused => refuse(format!(
                "run {id} waits for an answer: `baton runs approve {id}` or `baton runs deny {id}`"
            )),
        }
    }
}

/// What a run printed: `<state>/runs/<id>.log`, and the older half in `<id>.log.1` once the log passed
/// [`LOG_HALF`] (so a run keeps at most twice that, the oldest output cut first).
pub fn log_path(state_dir: &std::path::Path, id: &str) -> PathBuf {
    state_dir.join("runs").join(format!("{id}.log"))
}

/// Where a run's log starts a new half.
pub const LOG_HALF: u64 = 5 << 20;

/// A run's log as a writer (appending; `write` never fails the run: a log that cannot be written is
/// skipped).
pub struct RunLog {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
}

impl RunLog {
    /// The log of run `id`, opened (appending) on the first write: a run that prints nothing has none.
    pub fn open(state_dir: &std::path::Path, id: &str) -> RunLog {
        RunLog {
            path: log_path(state_dir, id),
            file: None,
            written: 0,
        }
    }

    fn open_file(&mut self) {
        self.file = self
            .path
            .parent()
            .and_then(|dir| std::fs::create_dir_all(dir).ok())
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .ok()
            });
        self.written = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
    }

    /// Makes `file` run `id`'s log: a scheduled run's output already goes to a log of its own (the daemon's
    /// run log, `baton schedule history`), which `baton runs show RUN --log` then reads, and to which a resume
    /// of the run in another process appends. A link, so the output is kept once; one that cannot be made is
    /// said in the daemon's log and the run goes on.
    pub fn link(state_dir: &std::path::Path, id: &str, file: &std::path::Path) {
        let path = log_path(state_dir, id);
        let target = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let linked = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::os::unix::fs::symlink(&target, &path));
        if let Err(e) = linked {
            tracing::warn!("run {id}: cannot link its log to {}: {e}", target.display());
        }
    }

    /// Removes run `id`'s log (both halves).
    pub fn remove(state_dir: &std::path::Path, id: &str) {
        let path = log_path(state_dir, id);
        let mut old = path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::remove_file(PathBuf::from(old));
        let _ = std::fs::remove_file(path);
    }

    /// The run's whole log (older half first).
    pub fn read(state_dir: &std::path::Path, id: &str) -> String {
        Self::read_following(state_dir, id).0
    }

    /// The run's whole log, and the length of its current half: where a reader that follows the log
    /// (the dashboard's live view) goes on from.
    pub fn read_following(state_dir: &std::path::Path, id: &str) -> (String, u64) {
        let path = log_path(state_dir, id);
        let mut old = path.clone().into_os_string();
        old.push(".1");
        let mut text =
            String::from_utf8_lossy(&std::fs::read(PathBuf::from(old)).unwrap_or_default())
                .into_owned();
        let current = std::fs::read(path).unwrap_or_default();
        text.push_str(&String::from_utf8_lossy(&current));
        (text, current.len() as u64)
    }
}

impl std::io::Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() && self.written == 0 {
            self.open_file();
        }
        if self.written >= LOG_HALF {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            self.file = std::fs::rename(&self.path, PathBuf::from(old))
                .ok()
                .and_then(|()| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)
                        .ok()
                });
            self.written = 0;
        }
        if let Some(f) = &mut self.file
            && f.write_all(buf).is_ok()
        {
            self.written += buf.len() as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
        Ok(())
    }
}

/// The log of the run this process runs, while it runs: what the process writes to its stdout and stderr is
/// copied there ([`copy_output`]). One place for every writer, so the log keeps what they wrote in the order
/// they wrote it: Lua's `print`, `io.write` and `io.stderr:write` (each line a callback such as `on_line`
/// gets from a remote command reaches the terminal through those), the `errln!`/`errw!` lines (the pause
/// of `baton.approve`, Ctrl-C, the watchdog), and the log lines (`baton.log.*`, warnings). A process-wide
/// mutex rather than the Lua state's app data: the log lines come through the global `tracing` subscriber,
/// and the Ctrl-C and watchdog threads write too. Only one run per process uses it (`baton run`, `resume`,
/// `runs approve|deny`); the daemon, which runs several at once, gives each its job's log instead.
static COPY: std::sync::Mutex<Option<RunLog>> = std::sync::Mutex::new(None);

fn copy_target() -> std::sync::MutexGuard<'static, Option<RunLog>> {
    // A writer that panicked mid-write left a log that is still a log.
    COPY.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Copies what this process writes (through [`Teed`] and [`copy`]) to `log` until the guard is dropped.
pub fn copy_output(log: RunLog) -> Copying {
    *copy_target() = Some(log);
    Copying(())
}

/// While it lives, the process's output is copied to a run's log ([`copy_output`]).
pub struct Copying(());

impl Drop for Copying {
    fn drop(&mut self) {
        if let Some(mut log) = copy_target().take() {
            let _ = std::io::Write::flush(&mut log);
        }
    }
}

/// Appends `buf` to the log of the run under way ([`copy_output`]), if there is one.
pub fn copy(buf: &[u8]) {
    if let Some(log) = copy_target().as_mut() {
        let _ = std::io::Write::write_all(log, buf);
    }
}

/// A writer (the process's stdout or stderr) whose output is also copied to the run's log ([`copy`]).
/// What the first refuses (a closed pipe) is still copied.
pub struct Teed<W>(pub W);

impl<W: std::io::Write> std::io::Write for Teed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.0.write_all(buf);
        copy(buf);
        written.map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A writer to the run's log alone ([`copy`]): the uncoloured copy of the log lines shown on stderr.
pub struct CopyOnly;

impl std::io::Write for CopyOnly {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        copy(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a step row (replacing what a forced resume ran again at that position).
fn insert_step(c: &rusqlite::Connection, run_id: &str, step: &Step) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO steps(run_id, pos, kind, label, call, started, duration, outcome, cost, result)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        run_id,
        step.pos,
        step.kind,
        step.label,
        step.call,
        step.started,
        step.duration,
        step.outcome,
        step.cost,
        step.result
    ])?;
    Ok(())
}

/// SHA-256 of `bytes`, hex.
pub fn hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes through [`Teed`] reaches the run's log while [`copy_output`]'s guard lives, bounded as the
    /// log is (the oldest half dropped), and nothing after.
    #[test]
    fn output_is_copied_to_the_run_log_while_it_lasts() {
        use std::io::Write;
        let dir = crate::core::test_tmp().join(format!("runlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id = "20261206-000000-0002";
        let copying = copy_output(RunLog::open(&dir, id));
        let chunk = vec![b'x'; 64 << 10];
        // 12 MiB in all, then a last line: past two halves of the log.
        for _ in 0..192 {
            Teed(std::io::sink()).write_all(&chunk).unwrap();
        }
        Teed(std::io::sink()).write_all(b"\nlast\n").unwrap();
        drop(copying);
        Teed(std::io::sink()).write_all(b"not copied\n").unwrap();
        let log = RunLog::read(&dir, id);
        // Other tests of this process may write lines meanwhile: only the bound and the end are exact.
        assert!(
            log.len() as u64 <= 2 * LOG_HALF + 64 * 1024,
            "{}",
            log.len()
        );
        assert!(log.len() as u64 >= LOG_HALF, "{}", log.len());
        assert!(log.ends_with("\nlast\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn runs_and_steps_round_trip() {
        let dir = crate::core::test_tmp().join(format!("runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let runs = Runs::open(&State::new(&dir)).unwrap();
        let run = NewRun {
            id: "20261206-000000-0001".into(),
            script: "/p/x.lua".into(),
            script_hash: hash(b"print(1)"),
            args: vec!["a b".into(), "--c".into()],
            fleet: None,
            trigger: "cli".into(),
        };
        runs.start(&run).unwrap();
        let got = runs.get(&run.id).unwrap().unwrap();
        assert_eq!(
            (got.args.clone(), got.status(), got.trigger.as_str()),
            (run.args.clone(), RunStatus::Running, "cli")
        );
        let step = Step {
            pos: "0.1".into(),
            kind: "baton.exec".into(),
            label: "date".into(),
            call: r#"["baton.exec",["date"]]"#.into(),
            started: now(),
            duration: 0.01,
            outcome: "ok".into(),
            cost: Some(0.25),
            result: Some("[1]".into()),
        };
        runs.put_step(&run.id, &step).unwrap();
        assert_eq!(runs.steps(&run.id).unwrap(), [step]);
        // No ledger in this database: nothing booked.
        assert_eq!(runs.cost(&run.id).unwrap(), 0.0);
        runs.finish(&run.id, RunStatus::Failed, Some("x.lua:1: boom"))
            .unwrap();
        let got = runs.get(&run.id).unwrap().unwrap();
        assert_eq!(got.status(), RunStatus::Failed);
        assert_eq!(got.error.as_deref(), Some("x.lua:1: boom"));
        // A `running` row whose process is gone is interrupted.
        runs.reopen(&run.id).unwrap();
        runs.state
            .with(|c| c.execute("UPDATE runs SET pid = 999999999", []))
            .unwrap();
        assert_eq!(
            runs.get(&run.id).unwrap().unwrap().status(),
            RunStatus::Interrupted
        );
        assert_eq!(runs.list(10).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The daemon loop: fire jobs on the wall clock, record every run, survive failing, panicking and hanging
//! jobs, notice suspends and clock steps, and stop gracefully.
//!
//! Timekeeping: the loop sleeps until the earliest due job but never longer than `tick` of monotonic time.
//! Monotonic sleeps pause while the machine is suspended, so after a resume the loop wakes within `tick`,
//! sees from the wall clock that scheduled times have passed, and applies each job's missed policy. A wake
//! every `tick` (default 3 s) is all the idle cost.
//!
//! Runs are tokio tasks on the current `LocalSet` (targets need not be `Send`: a Lua coroutine is not), so a
//! panic in one is caught by tokio and recorded, and a run past its timeout is dropped (cancelled).
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::{JoinError, JoinSet};

use super::plan::{Decision, Fire, Plan};
use super::{Clock, JobSpec, ScheduleError, Store};
use crate::core::duration;
use crate::core::state::State;

/// What a run knows about itself.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub job: String,
    pub run_id: i64,
    pub scheduled: DateTime<Utc>,
    /// A late run standing in for missed scheduled times.
    pub catchup: bool,
    /// Started by `baton schedule run`, not by the schedule.
    pub manual: bool,
    /// The run's private log file (already created): its output goes here.
    pub log: PathBuf,
}

pub type RunFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// What a job runs: in baton, a Lua function or a playbook; in tests, any closure.
pub type Target = Rc<dyn Fn(RunContext) -> RunFuture>;

pub struct Job {
    pub spec: JobSpec,
    pub target: Target,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("spec", &self.spec).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Raised an error, panicked or timed out.
    Failed(String),
    /// Still running when the daemon stopped and the grace period ran out.
    Cancelled,
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Outcome::Failed(e) => Some(e),
            Outcome::Cancelled => Some("cancelled: the daemon stopped and the grace period ran out"),
            Outcome::Ok => None,
        }
    }

    fn from_join(res: Result<Outcome, JoinError>) -> Outcome {
        match res {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown payload".into());
                Outcome::Failed(format!("panicked: {msg}"))
            }
            Err(_) => Outcome::Cancelled,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The longest monotonic sleep between wall-clock checks.
    pub tick: Duration,
    /// How long running jobs may finish after a stop request before they are cancelled.
    pub grace: Duration,
    /// A run starting later than this after its scheduled time (plus jitter) counts as missed.
    pub late_tolerance: Duration,
    /// A wall-clock vs monotonic difference above this between two wakes is reported as a clock jump.
    pub jump_threshold: Duration,
    /// Seeds the jitter; fixed in tests.
    pub seed: u64,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            tick: Duration::from_secs(3),
            grace: Duration::from_secs(10),
            late_tolerance: Duration::from_secs(10),
            jump_threshold: Duration::from_secs(2),
            seed: fastrand::u64(..),
        }
    }
}

/// What happened while the daemon ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub started: usize,
    pub ok: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub skipped: usize,
    pub clock_jumps: usize,
}

pub struct Daemon<C: Clock> {
    jobs: Vec<Job>,
    store: Store,
    clock: C,
    opts: DaemonOptions,
}

type Running = JoinSet<Outcome>;

impl<C: Clock> Daemon<C> {
    pub fn new(jobs: Vec<Job>, state: &State, clock: C, opts: DaemonOptions) -> Result<Self, ScheduleError> {
        Ok(Daemon { jobs, store: Store::open(state)?, clock, opts })
    }

    /// Runs until `shutdown` completes, then lets running jobs finish within the grace period, cancels the
    /// rest and returns. Takes an exclusive lock on the state directory so two daemons never double-fire.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Report, ScheduleError> {
        let _lock = lock(self.store.state())?;
        let local = tokio::task::LocalSet::new();
        local.run_until(self.run_locked(shutdown)).await
    }

    async fn run_locked(self, shutdown: impl Future<Output = ()>) -> Result<Report, ScheduleError> {
        let now = self.clock.now();
        self.store.close_interrupted(now)?;
        let mut last = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            let prev = self.store.last_fire(&job.spec.name)?;
            if prev.is_none() {
                // First sight of this job: remember it, so a run missed before its first fire is caught up.
                self.store.set_last_fire(&job.spec.name, now)?;
            }
            last.push(Some(prev.unwrap_or(now)));
        }
        let specs = self.jobs.iter().map(|j| j.spec.clone()).collect();
        let mut plan = Plan::new(specs, &last, now, self.opts.seed, self.opts.late_tolerance);
        let mut report = Report::default();
        let mut running = Running::new();
        let mut ids: HashMap<tokio::task::Id, (usize, i64, PathBuf)> = HashMap::new();
        let (mut wall, mut mono) = (now, self.clock.monotonic());
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now();
            let elapsed = self.clock.monotonic();
            let drift = (now - wall).num_milliseconds() - (elapsed - mono).as_millis() as i64;
            if drift.unsigned_abs() > self.opts.jump_threshold.as_millis() as u64 {
                report.clock_jumps += 1;
                tracing::info!(
                    "wall clock jumped {}{} (suspend or clock change); applying missed policies",
                    if drift < 0 { "back " } else { "" },
                    duration::format(Duration::from_millis(drift.unsigned_abs()))
                );
            }
            (wall, mono) = (now, elapsed);
            for decision in plan.due(now) {
                let fire = decision.fire().clone();
                self.store.set_last_fire(&self.jobs[fire.job].spec.name, fire.scheduled)?;
                match decision {
                    Decision::Start(fire) => self.start(fire, &mut running, &mut ids, &mut report)?,
                    Decision::Queued(_) => {}
                    Decision::Skip(fire, reason) => self.skip(&fire, reason.message(), &mut report)?,
                }
            }
            let sleep = match plan.next_wake() {
                Some(wake) => (wake - now).to_std().unwrap_or_default().min(self.opts.tick),
                None => self.opts.tick,
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(res) = running.join_next_with_id(), if !running.is_empty() => {
                    let (job, _) = self.finish(res, &mut ids, &mut report)?;
                    if let Some(fire) = plan.finished(job) {
                        self.start(fire, &mut running, &mut ids, &mut report)?;
                    }
                }
                () = self.clock.sleep(sleep.max(Duration::from_millis(1))) => {}
            }
        }
        // Stopping: no new runs; queued ones are recorded as skipped.
        for fire in plan.drain_queued() {
            self.skip(&fire, "the daemon stopped before it could run", &mut report)?;
        }
        let grace = self.clock.sleep(self.opts.grace);
        tokio::pin!(grace);
        while !running.is_empty() {
            tokio::select! {
                Some(res) = running.join_next_with_id() => { self.finish(res, &mut ids, &mut report)?; }
                () = &mut grace => running.abort_all(),
            }
        }
        Ok(report)
    }

    fn start(
        &self,
        fire: Fire,
        running: &mut Running,
        ids: &mut HashMap<tokio::task::Id, (usize, i64, PathBuf)>,
        report: &mut Report,
    ) -> Result<(), ScheduleError> {
        let job = &self.jobs[fire.job];
        let (ctx, fut) = prepare(job, &self.store, fire.scheduled, self.clock.now(), fire.catchup, false)?;
        tracing::info!(job = %job.spec.name, run = ctx.run_id, catchup = fire.catchup, "run started");
        let handle = running.spawn_local(fut);
        ids.insert(handle.id(), (fire.job, ctx.run_id, ctx.log));
        report.started += 1;
        Ok(())
    }

    fn finish(
        &self,
        res: Result<(tokio::task::Id, Outcome), JoinError>,
        ids: &mut HashMap<tokio::task::Id, (usize, i64, PathBuf)>,
        report: &mut Report,
    ) -> Result<(usize, Outcome), ScheduleError> {
        let id = match &res {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let (job, run_id, log) = ids.remove(&id).expect("every run task is registered when spawned");
        let outcome = Outcome::from_join(res.map(|(_, o)| o));
        record_end(&self.store, run_id, &log, &outcome, self.clock.now())?;
        match outcome {
            Outcome::Ok => report.ok += 1,
            Outcome::Failed(ref e) => {
                report.failed += 1;
                tracing::warn!(job = %self.jobs[job].spec.name, run = run_id, "run failed: {e}");
            }
            Outcome::Cancelled => report.cancelled += 1,
        }
        Ok((job, outcome))
    }

    fn skip(&self, fire: &Fire, why: &str, report: &mut Report) -> Result<(), ScheduleError> {
        let name = &self.jobs[fire.job].spec.name;
        let at = self.clock.now();
        self.store.insert_run(&super::RunRecord {
            id: 0,
            job: name.clone(),
            scheduled: fire.scheduled,
            started: None,
            ended: Some(at),
            outcome: "skipped".into(),
            error: Some(why.into()),
            log: None,
            catchup: fire.catchup,
            manual: false,
        })?;
        tracing::info!(job = %name, "run skipped: {why}");
        report.skipped += 1;
        Ok(())
    }
}

/// Records the run as started and builds its future (timeout applied; panics surface through the task).
fn prepare(
    job: &Job,
    store: &Store,
    scheduled: DateTime<Utc>,
    now: DateTime<Utc>,
    catchup: bool,
    manual: bool,
) -> Result<(RunContext, impl Future<Output = Outcome> + 'static), ScheduleError> {
    let (run_id, log) = store.start_run(&job.spec.name, scheduled, now, catchup, manual)?;
    let ctx = RunContext { job: job.spec.name.clone(), run_id, scheduled, catchup, manual, log };
    let (target, timeout, ctx2) = (job.target.clone(), job.spec.timeout, ctx.clone());
    let fut = async move {
        let run = target(ctx2);
        let res = match timeout {
            Some(t) => tokio::time::timeout(t, run)
                .await
                .unwrap_or_else(|_| Err(format!("timed out after {}", duration::format(t)))),
            None => run.await,
        };
        match res {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Failed(e),
        }
    };
    Ok((ctx, fut))
}

fn record_end(
    store: &Store,
    run_id: i64,
    log: &std::path::Path,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<(), ScheduleError> {
    if let Some(err) = outcome.error() {
        // The log also says why the run ended, for whoever reads only the file.
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
            let _ = writeln!(f, "[baton] run {}: {err}", outcome.name());
        }
    }
    store.finish_run(run_id, now, outcome.name(), outcome.error())?;
    Ok(())
}

/// Runs `job` once now, as the daemon would (record, log file, timeout, panic capture), without touching
/// its schedule. Returns the run id and outcome.
pub async fn run_now(job: &Job, state: &State, clock: &impl Clock) -> Result<(RunContext, Outcome), ScheduleError> {
    let store = Store::open(state)?;
    let now = clock.now();
    let (ctx, fut) = prepare(job, &store, now, now, false, true)?;
    let local = tokio::task::LocalSet::new();
    let outcome = Outcome::from_join(local.run_until(async move { tokio::task::spawn_local(fut).await }).await);
    record_end(&store, ctx.run_id, &ctx.log, &outcome, clock.now())?;
    Ok((ctx, outcome))
}

/// An exclusive `flock` on `<state>/daemon.lock`, released when the file is dropped (or the process dies).
fn lock(state: &State) -> Result<std::fs::File, ScheduleError> {
    use std::os::unix::io::AsRawFd;
    let path = state.file("daemon.lock")?;
    crate::core::state::create_private_file(&path).map_err(|e| ScheduleError::Io(format!("{}: {e}", path.display())))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| ScheduleError::Io(format!("{}: {e}", path.display())))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(ScheduleError::AlreadyRunning(state.dir().to_path_buf()));
    }
    Ok(file)
}

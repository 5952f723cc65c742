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

/// Why a run failed, as its record and `baton schedule history` show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

pub type RunFuture = Pin<Box<dyn Future<Output = Result<(), RunError>>>>;

/// What a job runs: in baton, a Lua function or a playbook; in tests, any closure.
pub type Target = Rc<dyn Fn(RunContext) -> RunFuture>;

pub struct Job {
    pub spec: JobSpec,
    pub target: Target,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
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
            Outcome::Cancelled => {
                Some("cancelled: the daemon stopped and the grace period ran out")
            }
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
    notifier: Option<crate::core::notify::Notifier>,
}

type Running = JoinSet<Outcome>;

impl<C: Clock> Daemon<C> {
    pub fn new(
        jobs: Vec<Job>,
        state: &State,
        clock: C,
        opts: DaemonOptions,
    ) -> Result<Self, ScheduleError> {
        Ok(Daemon {
            jobs,
            store: Store::open(state)?,
            clock,
            opts,
            notifier: None,
        })
    }

    /// Sends the end of runs to `notifier`'s channels, as each job's `notify` policy asks.
    pub fn with_notifier(mut self, notifier: crate::core::notify::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Tells the fleet's channels how a run ended (in the background, so a slow channel holds up nothing).
    fn notify_end(&self, job: usize, log: &std::path::Path, outcome: &Outcome) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        if notifier.channels().is_empty() {
            return;
        }
        let Some(msg) = ended_notice(&self.jobs[job].spec, &self.store, log, outcome) else {
            return;
        };
        let notifier = notifier.clone();
        tokio::spawn(async move {
            let _ = notifier
                .send(&msg, None, crate::core::notify::DEFAULT_TIMEOUT)
                .await;
        });
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
                self.store
                    .set_last_fire(&self.jobs[fire.job].spec.name, fire.scheduled)?;
                match decision {
                    Decision::Start(fire) => {
                        self.start(fire, &mut running, &mut ids, &mut report)?
                    }
                    Decision::Queued(_) => {}
                    Decision::Skip(fire, reason) => {
                        self.skip(&fire, reason.message(), &mut report)?
                    }
                }
            }
            let sleep = match plan.next_wake() {
                Some(wake) => (wake - now)
                    .to_std()
                    .unwrap_or_default()
                    .min(self.opts.tick),
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
        let (ctx, fut) = prepare(
            job,
            &self.store,
            fire.scheduled,
            self.clock.now(),
            fire.catchup,
            false,
        )?;
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
        let (job, run_id, log) = ids
            .remove(&id)
            .expect("every run task is registered when spawned");
        let outcome = Outcome::from_join(res.map(|(_, o)| o));
        record_end(&self.store, run_id, &log, &outcome, self.clock.now())?;
        self.notify_end(job, &log, &outcome);
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
    let ctx = RunContext {
        job: job.spec.name.clone(),
        run_id,
        scheduled,
        catchup,
        manual,
        log,
    };
    let (target, timeout, ctx2) = (job.target.clone(), job.spec.timeout, ctx.clone());
    let fut = async move {
        let run = target(ctx2);
        let res = match timeout {
            Some(t) => tokio::time::timeout(t, run).await.unwrap_or_else(|_| {
                Err(RunError(format!("timed out after {}", duration::format(t))))
            }),
            None => run.await,
        };
        match res {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Failed(e.0),
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

/// The notification for a run of `spec` that just ended with `outcome` (its log at `log`, its record the
/// job's last in `store`), or `None` when the job's `notify` policy does not want it told. The daemon
/// sends it when a run ends, and so does `baton schedule run` (unless `--quiet`).
pub fn ended_notice(
    spec: &JobSpec,
    store: &Store,
    log: &std::path::Path,
    outcome: &Outcome,
) -> Option<crate::core::notify::Message> {
    use crate::core::notify;
    if !spec.notify.wants(*outcome == Outcome::Ok) {
        return None;
    }
    let took = match store.last_run(&spec.name) {
        Ok(Some(r)) => r
            .started
            .zip(r.ended)
            .and_then(|(s, e)| (e - s).to_std().ok())
            .unwrap_or_default(),
        _ => Duration::ZERO,
    };
    // The title says whether it failed; the body starts with why (not "failed: …" again).
    let what = match outcome.error() {
        Some(e) => e.lines().next().unwrap_or("").to_string(),
        None => outcome.name().to_string(),
    };
    Some(notify::ended_message(
        &format!("job {}", spec.name),
        &what,
        *outcome == Outcome::Ok,
        took,
        &notify::file_tail(log, notify::TAIL_LINES),
    ))
}

/// Runs `job` once now, as the daemon would (record, log file, timeout, panic capture), without touching
/// its schedule. Returns the run id and outcome.
pub async fn run_now(
    job: &Job,
    state: &State,
    clock: &impl Clock,
) -> Result<(RunContext, Outcome), ScheduleError> {
    let store = Store::open(state)?;
    let now = clock.now();
    let (ctx, fut) = prepare(job, &store, now, now, false, true)?;
    let local = tokio::task::LocalSet::new();
    let outcome = Outcome::from_join(
        local
            .run_until(async move { tokio::task::spawn_local(fut).await })
            .await,
    );
    record_end(&store, ctx.run_id, &ctx.log, &outcome, clock.now())?;
    Ok((ctx, outcome))
}

/// An exclusive lock on `<state>/daemon.lock`, released when the file is dropped (or the process dies).
fn lock(state: &State) -> Result<std::fs::File, ScheduleError> {
    let path = state.file("daemon.lock")?;
    crate::core::state::create_private_file(&path)
        .map_err(|e| ScheduleError::Io(format!("{}: {e}", path.display())))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| ScheduleError::Io(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ScheduleError::AlreadyRunning(state.dir().to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(ScheduleError::Io(format!("{}: {e}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::core::schedule::{Expr, Missed, Overlap, TestClock, Zone};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn temp_state(name: &str) -> State {
        let dir =
            crate::core::test_tmp().join(format!("baton-sched-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        State::new(dir)
    }

    fn spec(name: &str, expr: &str) -> JobSpec {
        JobSpec::new(name, Expr::parse(expr).unwrap()).with_zone(Zone::Utc)
    }

    /// A target that records each run's context and then behaves as `body` says.
    fn recording(
        log: &Rc<RefCell<Vec<RunContext>>>,
        body: impl Fn(RunContext) -> RunFuture + 'static,
    ) -> Target {
        let log = log.clone();
        Rc::new(move |ctx: RunContext| {
            log.borrow_mut().push(ctx.clone());
            body(ctx)
        })
    }

    fn ok_after(d: Duration) -> impl Fn(RunContext) -> RunFuture {
        move |_| {
            Box::pin(async move {
                tokio::time::sleep(d).await;
                Ok(())
            })
        }
    }

    fn opts() -> DaemonOptions {
        DaemonOptions {
            seed: 1,
            ..DaemonOptions::default()
        }
    }

    /// Runs the daemon until `stop_after` of monotonic time, calling `during` alongside.
    async fn run_for(
        jobs: Vec<Job>,
        state: &State,
        clock: &TestClock,
        opts: DaemonOptions,
        stop_after: Duration,
    ) -> Report {
        let daemon = Daemon::new(jobs, state, clock.clone(), opts).unwrap();
        daemon.run(tokio::time::sleep(stop_after)).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn every_ten_seconds_for_24_hours_no_miss_no_duplicate() {
        let state = temp_state("24h");
        let clock = TestClock::new(at("2026-01-01T00:00:00Z"));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let jobs = vec![Job {
            spec: spec("tick", "*/10 * * * * *"),
            target: recording(&seen, ok_after(Duration::ZERO)),
        }];
        let report = run_for(
            jobs,
            &state,
            &clock,
            opts(),
            Duration::from_secs(86_400) + Duration::from_millis(500),
        )
        .await;
        let seen = seen.borrow();
        assert_eq!(seen.len(), 8640);
        for (i, ctx) in seen.iter().enumerate() {
            assert_eq!(
                ctx.scheduled,
                at("2026-01-01T00:00:00Z") + chrono::Duration::seconds(10 * (i as i64 + 1))
            );
            assert!(!ctx.catchup);
        }
        assert_eq!(
            (
                report.started,
                report.ok,
                report.skipped,
                report.clock_jumps
            ),
            (8640, 8640, 0, 0)
        );
        let store = Store::open(&state).unwrap();
        assert_eq!(store.history(Some("tick"), 10_000).unwrap().len(), 8640);
        assert_eq!(
            store.last_fire("tick").unwrap(),
            Some(at("2026-01-02T00:00:00Z"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn catch_up_once_after_eight_hour_sleep() {
        for missed in [Missed::Once, Missed::Skip] {
            let state = temp_state(&format!("sleep-{}", missed.name()));
            let clock = TestClock::new(at("2026-01-01T10:00:00Z"));
            let seen = Rc::new(RefCell::new(Vec::new()));
            let hourly = spec("hourly", "0 * * * *").with_missed(missed);
            let jobs = vec![Job {
                spec: hourly,
                target: recording(&seen, ok_after(Duration::from_secs(1))),
            }];
            let suspend = {
                let clock = clock.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(1800)).await;
                    clock.jump(chrono::Duration::hours(8)); // asleep from 10:30 to 18:30
                }
            };
            let (report, ()) = tokio::join!(
                run_for(jobs, &state, &clock, opts(), Duration::from_secs(9000)), // until 20:30 wall time
                suspend
            );
            assert_eq!(report.clock_jumps, 1);
            let seen = seen.borrow();
            let scheduled: Vec<_> = seen.iter().map(|c| (c.scheduled, c.catchup)).collect();
            let store = Store::open(&state).unwrap();
            let skipped: Vec<_> = store
                .history(None, 100)
                .unwrap()
                .into_iter()
                .filter(|r| r.outcome == "skipped")
                .collect();
            let on_time = [
                (at("2026-01-01T19:00:00Z"), false),
                (at("2026-01-01T20:00:00Z"), false),
            ];
            if missed == Missed::Once {
                assert_eq!(scheduled[0], (at("2026-01-01T18:00:00Z"), true));
                assert_eq!(scheduled[1..], on_time);
                // Noticed within one tick of the resume.
                let started = store
                    .history(Some("hourly"), 100)
                    .unwrap()
                    .last()
                    .unwrap()
                    .started
                    .unwrap();
                assert!(
                    started - at("2026-01-01T18:30:00Z") <= chrono::Duration::seconds(3),
                    "{started}"
                );
                assert!(skipped.is_empty());
            } else {
                assert_eq!(scheduled, on_time);
                assert_eq!(skipped.len(), 1);
                assert_eq!(skipped[0].scheduled, at("2026-01-01T18:00:00Z"));
                assert!(skipped[0].error.as_deref().unwrap().contains("missed"));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn restart_after_missed_fire_runs_one_catch_up() {
        let state = temp_state("restart");
        let store = Store::open(&state).unwrap();
        // The daemon last fired the 03:00 job three days ago, then the machine was off.
        store
            .set_last_fire("nightly", at("2026-01-01T03:00:00Z"))
            .unwrap();
        let clock = TestClock::new(at("2026-01-04T09:00:00Z"));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let make = |seen: &Rc<RefCell<Vec<RunContext>>>| {
            vec![
                Job {
                    spec: spec("nightly", "0 3 * * *"),
                    target: recording(seen, ok_after(Duration::ZERO)),
                },
                Job {
                    spec: spec("fresh", "0 12 * * *"),
                    target: recording(seen, ok_after(Duration::ZERO)),
                },
            ]
        };
        run_for(make(&seen), &state, &clock, opts(), Duration::from_secs(60)).await;
        {
            let seen = seen.borrow();
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert_eq!(
                (seen[0].job.as_str(), seen[0].scheduled, seen[0].catchup),
                ("nightly", at("2026-01-04T03:00:00Z"), true)
            );
        }
        // The never-fired job got a baseline, so a fire missed while stopped is caught up too.
        assert_eq!(
            store.last_fire("fresh").unwrap(),
            Some(at("2026-01-04T09:00:00Z"))
        );
        // Restart at 13:00 (the 12:00 "fresh" run was missed while stopped): one catch-up, nothing repeated.
        clock.jump(chrono::Duration::hours(4));
        run_for(make(&seen), &state, &clock, opts(), Duration::from_secs(60)).await;
        let seen = seen.borrow();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            (seen[1].job.as_str(), seen[1].scheduled, seen[1].catchup),
            ("fresh", at("2026-01-04T12:00:00Z"), true)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn overlap_skip_and_queue_never_run_twice_at_once() {
        for overlap in [Overlap::Skip, Overlap::Queue] {
            let state = temp_state(&format!("overlap-{}", overlap.name()));
            let clock = TestClock::new(at("2026-01-01T00:00:00Z"));
            let seen = Rc::new(RefCell::new(Vec::new()));
            // Fires every second, each run takes 2.5 s.
            let slow = spec("slow", "* * * * * *").with_overlap(overlap);
            let jobs = vec![Job {
                spec: slow,
                target: recording(&seen, ok_after(Duration::from_millis(2500))),
            }];
            let report = run_for(jobs, &state, &clock, opts(), Duration::from_millis(10_500)).await;
            let mut runs: Vec<_> = Store::open(&state)
                .unwrap()
                .history(Some("slow"), 100)
                .unwrap();
            runs.reverse();
            let started: Vec<_> = runs.iter().filter(|r| r.outcome != "skipped").collect();
            for pair in started.windows(2) {
                assert!(pair[1].started >= pair[0].ended, "runs overlap: {pair:?}");
            }
            let skipped = runs.iter().filter(|r| r.outcome == "skipped").count();
            assert_eq!(skipped, report.skipped);
            if overlap == Overlap::Skip {
                // Fires at 1, 4, 7, 10 s; the ones in between are skipped.
                assert_eq!(report.started, 4);
                assert!(runs.iter().any(|r| r.error.as_deref()
                    == Some(super::super::plan::SkipReason::Overlap.message())));
            } else {
                // Back to back: each queued run starts the moment the previous one ends.
                assert_eq!(started[1].started, started[0].ended);
                assert_eq!(report.started, 4);
                assert!(skipped > 0);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failing_panicking_and_hanging_jobs_do_not_stop_a_healthy_one() {
        let state = temp_state("failures");
        let clock = TestClock::new(at("2026-01-01T00:00:00Z"));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let never = || -> RunFuture { Box::pin(std::future::pending()) };
        let jobs = vec![
            Job {
                spec: spec("healthy", "* * * * * *"),
                target: recording(&seen, ok_after(Duration::ZERO)),
            },
            Job {
                spec: spec("fails", "* * * * * *"),
                target: Rc::new(|_| Box::pin(async { Err(RunError("boom: disk full".into())) })),
            },
            Job {
                spec: spec("panics", "* * * * * *"),
                target: Rc::new(|_| panic!("index out of range")),
            },
            Job {
                spec: spec("hangs", "*/5 * * * * *").with_timeout(Some(Duration::from_secs(2))),
                target: Rc::new(move |_| never()),
            },
        ];
        let report = run_for(jobs, &state, &clock, opts(), Duration::from_millis(10_500)).await;
        assert_eq!(seen.borrow().len(), 10);
        let store = Store::open(&state).unwrap();
        let last = |job: &str| store.history(Some(job), 1).unwrap().remove(0);
        assert_eq!(last("healthy").outcome, "ok");
        assert_eq!(
            (
                last("fails").outcome.as_str(),
                last("fails").error.as_deref()
            ),
            ("failed", Some("boom: disk full"))
        );
        assert_eq!(
            last("panics").error.as_deref(),
            Some("panicked: index out of range")
        );
        assert_eq!(last("hangs").error.as_deref(), Some("timed out after 2s"));
        assert_eq!(report.failed, 10 + 10 + 2);
        let log = std::fs::read_to_string(last("fails").log.unwrap()).unwrap();
        assert!(log.contains("[baton] run failed: boom: disk full"), "{log}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_running_jobs_within_grace_then_cancels() {
        for (grace, outcome) in [(10, "ok"), (1, "cancelled")] {
            let state = temp_state(&format!("grace-{grace}"));
            let clock = TestClock::new(at("2026-01-01T00:00:00Z"));
            let seen = Rc::new(RefCell::new(Vec::new()));
            let jobs = vec![Job {
                spec: spec("long", "* * * * * *"),
                target: recording(&seen, ok_after(Duration::from_secs(5))),
            }];
            let opts = DaemonOptions {
                grace: Duration::from_secs(grace),
                ..opts()
            };
            let report = run_for(jobs, &state, &clock, opts, Duration::from_millis(1500)).await;
            assert_eq!(report.started, 1, "no new runs after the stop request");
            let runs = Store::open(&state)
                .unwrap()
                .history(Some("long"), 10)
                .unwrap();
            assert_eq!(runs.len(), 1);
            assert_eq!(runs[0].outcome, outcome);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_daemon_per_state_directory_and_manual_runs() {
        let state = temp_state("lock");
        let clock = TestClock::new(at("2026-01-01T00:00:00Z"));
        let first = Daemon::new(Vec::new(), &state, clock.clone(), opts()).unwrap();
        let second = Daemon::new(Vec::new(), &state, clock.clone(), opts()).unwrap();
        let (a, b) = tokio::join!(
            first.run(tokio::time::sleep(Duration::from_secs(1))),
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                second.run(std::future::ready(())).await
            }
        );
        assert!(a.is_ok());
        assert!(matches!(b, Err(ScheduleError::AlreadyRunning(_))), "{b:?}");

        let job = Job {
            spec: spec("manual", "0 0 1 1 *"),
            target: Rc::new(|ctx: RunContext| {
                Box::pin(async move {
                    std::fs::write(&ctx.log, "hello\n").map_err(|e| RunError(e.to_string()))
                })
            }),
        };
        let (ctx, outcome) = run_now(&job, &state, &clock).await.unwrap();
        assert_eq!(outcome, Outcome::Ok);
        assert_eq!(std::fs::read_to_string(&ctx.log).unwrap(), "hello\n");
        let rec = Store::open(&state)
            .unwrap()
            .history(Some("manual"), 1)
            .unwrap()
            .remove(0);
        assert!(rec.manual && rec.outcome == "ok");
        assert_eq!(
            Store::open(&state).unwrap().last_fire("manual").unwrap(),
            None,
            "manual runs leave the schedule alone"
        );
    }
}

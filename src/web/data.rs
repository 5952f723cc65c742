//! What each page shows, as data: the same structs are rendered as HTML (`pages`) and served as JSON under
//! `/api/`. Reads of the state database run on the blocking pool, so a slow disk never holds the runtime
//! (in the daemon, the schedule's) up; what needs the network (hosts, Ollama, Syncthing, jobs' states) is
//! probed in the background (`super::probe`) and read here from memory.
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::App;
use crate::core::llm::ledger::{GroupBy, Period};
use crate::core::remote::jobs::{self, Job, JobState};
use crate::core::runs::{Run, RunStatus, Step};
use crate::core::schedule::store::RunRecord;

/// Why a page could not be made: its HTTP status and a one-line message.
#[derive(Debug)]
pub struct Failure(pub axum::http::StatusCode, pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl Failure {
    pub fn not_found(what: String) -> Failure {
        Failure(axum::http::StatusCode::NOT_FOUND, what)
    }
}

/// Runs `f` on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Failure::from)?
}

// ---------------------------------------------------------------------------------------------- fleet

/// The hosts as the last probe saw them (`baton status --json`'s hosts, with what the server remembers).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetData {
    /// When the last probe ended (unix seconds); `None` before the first.
    pub probed_at: Option<f64>,
    /// Why the last probe failed (the hosts shown are then the previous probe's).
    pub error: Option<String>,
    pub hosts: Vec<HostData>,
}

/// One host: `baton.status.collect()`'s fields, and when it was last seen online / first seen offline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostData {
    pub host: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub online: bool,
    /// Offline with a `mac`: asleep, and the Wake button can bring it up.
    #[serde(default)]
    pub wakeable: bool,
    #[serde(default)]
    pub load: Option<f64>,
    /// `"down"`, `"none loaded"` or the loaded models, for a host with Ollama.
    #[serde(default)]
    pub ollama: Option<String>,
    #[serde(default)]
    pub ollama_models: Vec<String>,
    /// Running detached jobs.
    #[serde(default)]
    pub jobs: u64,
    #[serde(default)]
    pub syncthing: Option<SyncthingData>,
    /// The last probe that found it online (unix seconds; this server's memory).
    #[serde(default)]
    pub last_seen: Option<f64>,
    /// The first probe of the current offline spell (unix seconds).
    #[serde(default)]
    pub offline_since: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncthingData {
    #[serde(default)]
    pub folders: Vec<FolderData>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FolderData {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub need_bytes: u64,
    #[serde(default)]
    pub errors: u64,
}

pub fn fleet(app: &App) -> FleetData {
    app.probe.read().unwrap_or_else(|p| p.into_inner()).clone()
}

// ------------------------------------------------------------------------------------------- schedule

/// The schedule file's jobs, each with its next fire and how it stands.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleData {
    pub file: PathBuf,
    /// Why the file gave no jobs.
    pub error: Option<String>,
    pub jobs: Vec<JobData>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobData {
    pub name: String,
    pub cron: String,
    pub zone: String,
    pub target: String,
    /// Unix seconds.
    pub next: Option<i64>,
    /// As healthchecks.io says it: `up` (last run ok, none missed), `running`, `late` (a fire time passed
    /// without a run), `failed` (the last run failed or was cancelled), `new` (never ran).
    pub state: &'static str,
    pub last: Option<LastRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub id: i64,
    pub outcome: String,
    /// Unix seconds.
    pub scheduled: i64,
    pub started: Option<i64>,
    /// Seconds.
    pub duration: Option<f64>,
    pub error: Option<String>,
    pub manual: bool,
}

/// How long after a fire time a job without a run for it counts as late (the daemon adds up to `jitter`).
const LATE_AFTER: chrono::Duration = chrono::Duration::seconds(120);

fn job_state(
    spec: &crate::core::schedule::JobSpec,
    last: Option<&RunRecord>,
    now: DateTime<Utc>,
) -> &'static str {
    let grace = LATE_AFTER + chrono::Duration::from_std(spec.jitter).unwrap_or_default();
    let due = spec
        .expr
        .last_in(now - chrono::Duration::days(7), now - grace, &spec.zone);
    match last {
        Some(r) if r.outcome == "running" => "running",
        Some(r) if due.is_some_and(|d| d > r.scheduled) => "late",
        Some(r) if r.outcome == "ok" => "up",
        Some(_) => "failed",
        None => "new",
    }
}

pub async fn schedule(app: &App) -> Result<ScheduleData, Failure> {
    let (file, specs) = app.schedule_specs().await;
    let store = app.store.clone();
    blocking(move || {
        let now = Utc::now();
        let (specs, error) = match specs {
            Ok(specs) => (specs, None),
            Err(e) => (Arc::default(), Some(e)),
        };
        let mut jobs = Vec::with_capacity(specs.len());
        for spec in specs.iter() {
            let last = store.last_run(&spec.name)?;
            jobs.push(JobData {
                name: spec.name.clone(),
                cron: spec.expr.source().to_string(),
                zone: spec.zone.name(),
                target: spec.target.clone(),
                next: spec.expr.next_after(now, &spec.zone).map(|t| t.timestamp()),
                state: job_state(spec, last.as_ref(), now),
                last: last.map(|r| LastRun {
                    id: r.id,
                    duration: r
                        .started
                        .zip(r.ended)
                        .map(|(s, e)| (e - s).num_milliseconds() as f64 / 1000.0),
                    outcome: r.outcome,
                    scheduled: r.scheduled.timestamp(),
                    started: r.started.map(|t| t.timestamp()),
                    error: r.error,
                    manual: r.manual,
                }),
            });
        }
        Ok(ScheduleData { file, error, jobs })
    })
    .await
}

// ----------------------------------------------------------------------------------------------- runs

/// A run as `baton runs --json` gives it, with its script's file name.
#[derive(Debug, Clone, Serialize)]
pub struct RunData {
    pub id: String,
    pub script: PathBuf,
    pub name: String,
    pub args: Vec<String>,
    pub trigger: String,
    pub machine: String,
    pub pid: i64,
    pub status: &'static str,
    pub started: f64,
    pub ended: Option<f64>,
    pub error: Option<String>,
    pub cost: f64,
    /// What a paused run asks (`baton.approve`'s message) until it is answered.
    pub question: Option<String>,
    /// Paused and answered: the daemon or `baton resume` goes on with it.
    pub answered: bool,
}

impl RunData {
    fn of(r: Run, cost: f64) -> RunData {
        let status = r.status();
        RunData {
            name: r.script.file_name().map_or_else(
                || r.script.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            question: r.pending.as_ref().map(|p| p.message.clone()),
            answered: status == RunStatus::Paused && r.pending.is_none(),
            id: r.id,
            script: r.script,
            args: r.args,
            trigger: r.trigger,
            machine: r.machine,
            pid: r.pid,
            status: status.name(),
            started: r.started,
            ended: r.ended,
            error: r.error,
            cost,
        }
    }
}

/// Newest first, at most `limit`, only `status` when given.
pub async fn runs(
    app: &App,
    status: Option<RunStatus>,
    limit: usize,
) -> Result<Vec<RunData>, Failure> {
    let store = app.runs.clone();
    blocking(move || {
        // A status filter reads more rows than it shows: a run's status can depend on its process.
        let read = if status.is_some() {
            limit.saturating_mul(20)
        } else {
            limit
        };
        let mut out = Vec::new();
        for r in store.list(read)? {
            if status.is_some_and(|s| r.status() != s) {
                continue;
            }
            let cost = store.cost(&r.id)?;
            out.push(RunData::of(r, cost));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    })
    .await
}

#[derive(Debug, Clone, Serialize)]
pub struct StepData {
    pub pos: String,
    pub kind: String,
    pub label: String,
    pub started: f64,
    pub duration: f64,
    pub outcome: String,
    pub cost: Option<f64>,
}

impl From<Step> for StepData {
    fn from(s: Step) -> StepData {
        StepData {
            pos: s.pos,
            kind: s.kind,
            label: s.label,
            started: s.started,
            duration: s.duration,
            outcome: s.outcome,
            cost: s.cost,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunPage {
    pub run: RunData,
    pub steps: Vec<StepData>,
}

pub async fn run(app: &App, id: String) -> Result<RunPage, Failure> {
    let store = app.runs.clone();
    blocking(move || {
        let Some(r) = store.get(&id)? else {
            return Err(Failure::not_found(format!(
                "no run {}",
                crate::core::text::quoted(&id)
            )));
        };
        let cost = store.cost(&id)?;
        let steps = store.steps(&id)?.into_iter().map(StepData::from).collect();
        Ok(RunPage {
            run: RunData::of(r, cost),
            steps,
        })
    })
    .await
}

// ----------------------------------------------------------------------------------------------- jobs

/// A detached job as `baton jobs --json` gives it, with the command that attaches a terminal to it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub host: String,
    pub title: Option<String>,
    pub command: String,
    pub state: &'static str,
    pub code: Option<i32>,
    pub started_at: i64,
    pub cwd: Option<String>,
    pub dir: String,
    pub tmux: bool,
    /// `ssh -t HOST tmux attach -t baton-ID` (tmux jobs).
    pub attach: Option<String>,
}

impl JobInfo {
    pub fn of(app: &App, j: &Job) -> JobInfo {
        let attach = j
            .tmux
            .then(|| crate::cli::jobs::attach_argv(&app.fleet, j).ok())
            .flatten()
            .map(|argv| shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default());
        JobInfo {
            id: j.id.clone(),
            host: j.host.clone(),
            title: j.title.clone(),
            command: j.command.clone(),
            state: j.status.state.name(),
            code: j.status.code.filter(|_| j.status.state == JobState::Exited),
            started_at: j.started_at,
            cwd: j.cwd.clone(),
            dir: j.dir.clone(),
            tmux: j.tmux,
            attach,
        }
    }
}

/// One registered job (404 for an id the registry does not hold).
pub async fn job(app: &std::sync::Arc<App>, id: String) -> Result<JobInfo, Failure> {
    let state = app.state.clone();
    let job = tokio::task::spawn_blocking(move || jobs::get(&state, &id))
        .await
        .map_err(Failure::from)?;
    match job {
        Ok(j) => Ok(JobInfo::of(app, &j)),
        Err(crate::core::remote::RemoteError::Job(why)) => Err(Failure::not_found(why)),
        Err(e) => Err(Failure::from(e)),
    }
}

/// The registered jobs, newest first (their states as the background refresh last read them).
pub async fn jobs(app: &std::sync::Arc<App>) -> Result<Vec<JobInfo>, Failure> {
    let state = app.state.clone();
    let list = blocking(move || Ok(jobs::list(&state)?)).await?;
    let mut out: Vec<JobInfo> = list.iter().map(|j| JobInfo::of(app, j)).collect();
    out.sort_by_key(|j| std::cmp::Reverse(j.started_at));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------- spend

pub async fn spend(
    app: &App,
    period: Period,
    by: GroupBy,
) -> Result<crate::core::llm::budget::Report, Failure> {
    Ok(app.llm.budget().report(period, by).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::expr::Expr;

    fn record(scheduled: DateTime<Utc>, outcome: &str) -> RunRecord {
        RunRecord {
            id: 1,
            job: "j".into(),
            scheduled,
            started: Some(scheduled),
            ended: (outcome != "running").then_some(scheduled),
            outcome: outcome.into(),
            error: None,
            log: None,
            catchup: false,
            manual: false,
        }
    }

    #[test]
    fn a_job_is_up_running_late_failed_or_new_as_healthchecks_says() {
        // Every hour on the hour; now is 10:30.
        let spec = crate::core::schedule::JobSpec::new("j", Expr::parse("0 * * * *").unwrap());
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:30:00Z")
            .unwrap()
            .to_utc();
        let at = |h: u32, m: u32| now.date_naive().and_hms_opt(h, m, 0).unwrap().and_utc();
        assert_eq!(job_state(&spec, None, now), "new");
        assert_eq!(job_state(&spec, Some(&record(at(10, 0), "ok")), now), "up");
        assert_eq!(
            job_state(&spec, Some(&record(at(10, 0), "failed")), now),
            "failed"
        );
        assert_eq!(
            job_state(&spec, Some(&record(at(10, 0), "cancelled")), now),
            "failed"
        );
        assert_eq!(
            job_state(&spec, Some(&record(at(10, 0), "running")), now),
            "running"
        );
        // The 10:00 run never came: late, whatever the 09:00 one did.
        assert_eq!(job_state(&spec, Some(&record(at(9, 0), "ok")), now), "late");
        // Within the grace after its time a job is not late yet.
        let early = at(10, 1);
        assert_eq!(job_state(&spec, Some(&record(at(9, 0), "ok")), early), "up");
    }
}

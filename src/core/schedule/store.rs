//! Schedule rows in the state database: the last handled fire of each job (so a restarted daemon knows what
//! it missed) and one record per run (job, scheduled time, start, end, outcome, error, log path).
//! Times are Unix milliseconds (UTC).
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use crate::core::state::{State, StateError};

const SQL_V1: &str = "
CREATE TABLE schedule_last (
    job TEXT PRIMARY KEY,
    -- the latest scheduled time that was run or skipped, or when the job was first seen
    last_fire INTEGER NOT NULL
);
CREATE TABLE schedule_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    scheduled INTEGER NOT NULL,
    started INTEGER,
    ended INTEGER,
    outcome TEXT NOT NULL,  -- running | ok | failed | cancelled | skipped
    error TEXT,
    log TEXT,
    catchup INTEGER NOT NULL DEFAULT 0,
    manual INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX schedule_runs_job ON schedule_runs(job, id);
";

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// One job's newest runs, read through `schedule_runs_job` (job, id). A job's history and everyone's are two
/// statements: one `WHERE ?1 IS NULL OR job = ?1` cannot use the index (the plan is made before `?1` is
/// known), so each job's history scanned the table from its newest row until it had found `limit` rows of
/// that job; the dashboard reads the last run of every job, which with 50 jobs and three months of history
/// took ~50 ms of SQLite (benches/web.rs), and a job that never ran read the whole table.
const JOB_HISTORY: &str =
    "SELECT id, job, scheduled, started, ended, outcome, error, log, catchup, manual
     FROM schedule_runs WHERE job = ?1 ORDER BY id DESC LIMIT ?2";
const ALL_HISTORY: &str =
    "SELECT id, job, scheduled, started, ended, outcome, error, log, catchup, manual
     FROM schedule_runs ORDER BY id DESC LIMIT ?1";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        job: r.get(1)?,
        scheduled: time(r.get(2)?),
        started: r.get::<_, Option<i64>>(3)?.map(time),
        ended: r.get::<_, Option<i64>>(4)?.map(time),
        outcome: r.get(5)?,
        error: r.get(6)?,
        log: r.get::<_, Option<String>>(7)?.map(PathBuf::from),
        catchup: r.get(8)?,
        manual: r.get(9)?,
    })
}

/// One row of `schedule_runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    pub scheduled: DateTime<Utc>,
    pub started: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    pub outcome: String,
    pub error: Option<String>,
    pub log: Option<PathBuf>,
    pub catchup: bool,
    pub manual: bool,
}

#[cfg(test)]
impl RunRecord {
    /// A run of `job` scheduled at `scheduled` that ended as `outcome`, for tests (id 0: the database gives
    /// one; no times, log or flags).
    pub(crate) fn sample(job: &str, scheduled: DateTime<Utc>, outcome: &str) -> RunRecord {
        RunRecord {
            id: 0,
            job: job.into(),
            scheduled,
            started: None,
            ended: None,
            outcome: outcome.into(),
            error: None,
            log: None,
            catchup: false,
            manual: false,
        }
    }
}

/// The schedule tables of one state database.
#[derive(Debug, Clone)]
pub struct Store {
    state: State,
}

impl Store {
    pub fn open(state: &State) -> Result<Store, StateError> {
        state.migrate("schedule", &[SQL_V1])?;
        Ok(Store {
            state: state.clone(),
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn last_fire(&self, job: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let v: Option<i64> = self.state.with(|c| {
            c.query_row(
                "SELECT last_fire FROM schedule_last WHERE job = ?1",
                [job],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(v.map(time))
    }

    pub fn set_last_fire(&self, job: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.state.with(|c| {
            c.execute(
                "INSERT INTO schedule_last(job, last_fire) VALUES (?1, ?2)
                 ON CONFLICT(job) DO UPDATE SET last_fire = excluded.last_fire",
                params![job, ms(at)],
            )
        })?;
        Ok(())
    }

    /// Records a run as started and creates its private log file at `runs/<job>/<start>-<id>.log` under the
    /// state directory; returns the record id and the log path.
    pub fn start_run(
        &self,
        job: &str,
        scheduled: DateTime<Utc>,
        started: DateTime<Utc>,
        catchup: bool,
        manual: bool,
    ) -> Result<(i64, PathBuf), StateError> {
        let record = RunRecord {
            id: 0,
            job: job.to_string(),
            scheduled,
            started: Some(started),
            ended: None,
            outcome: "running".into(),
            error: None,
            log: None,
            catchup,
            manual,
        };
        let id = self.insert_run(&record)?;
        let safe: String = job
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let stamp = started.format("%Y%m%dT%H%M%S%.3fZ");
        let log = self.state.file(format!("runs/{safe}/{stamp}-{id}.log"))?;
        crate::core::state::create_private_file(&log).map_err(|cause| StateError::Dir {
            path: log.clone(),
            cause,
        })?;
        let text = log.to_string_lossy().into_owned();
        self.state.with(|c| {
            c.execute(
                "UPDATE schedule_runs SET log = ?2 WHERE id = ?1",
                params![id, text],
            )
        })?;
        Ok((id, log))
    }

    /// Inserts a run record and returns its id.
    pub fn insert_run(&self, r: &RunRecord) -> Result<i64, StateError> {
        self.state.with(|c| {
            c.execute(
                "INSERT INTO schedule_runs(job, scheduled, started, ended, outcome, error, log, catchup, manual)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.job,
                    ms(r.scheduled),
                    r.started.map(ms),
                    r.ended.map(ms),
                    r.outcome,
                    r.error,
                    r.log.as_ref().map(|p| p.to_string_lossy().into_owned()),
                    r.catchup,
                    r.manual
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn finish_run(
        &self,
        id: i64,
        ended: DateTime<Utc>,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.state.with(|c| {
            c.execute(
                "UPDATE schedule_runs SET ended = ?2, outcome = ?3, error = ?4 WHERE id = ?1",
                params![id, ms(ended), outcome, error],
            )
        })?;
        Ok(())
    }

    /// Runs left `running` by a daemon that died are marked failed.
    pub fn close_interrupted(&self, now: DateTime<Utc>) -> Result<usize, StateError> {
        self.state.with(|c| {
            c.execute(
                "UPDATE schedule_runs SET outcome = 'failed', ended = ?1,
                 error = 'interrupted: the daemon stopped before the run finished'
                 WHERE outcome = 'running' AND manual = 0",
                [ms(now)],
            )
        })
    }

    /// The newest runs first, of one job or all.
    pub fn history(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.state.with(|c| match job {
            Some(job) => c
                .prepare_cached(JOB_HISTORY)?
                .query_map(params![job, limit], record)?
                .collect(),
            None => c
                .prepare_cached(ALL_HISTORY)?
                .query_map(params![limit], record)?
                .collect(),
        })
    }

    /// The latest finished (or running) run of `job`, skipped ones excluded.
    pub fn last_run(&self, job: &str) -> Result<Option<RunRecord>, StateError> {
        Ok(self
            .history(Some(job), 50)?
            .into_iter()
            .find(|r| r.outcome != "skipped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> Store {
        let dir =
            crate::core::test_tmp().join(format!("baton-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&State::new(dir)).unwrap()
    }

    fn run(job: &str, minute: i64, outcome: &str) -> RunRecord {
        RunRecord::sample(job, time(minute * 60_000), outcome)
    }

    #[test]
    fn history_of_one_job_or_all_newest_first() {
        let s = store("history");
        for m in 0..30 {
            s.insert_run(&run(if m % 3 == 0 { "a" } else { "b" }, m, "ok"))
                .unwrap();
        }
        s.insert_run(&run("a", 30, "skipped")).unwrap();
        let a = s.history(Some("a"), 4).unwrap();
        let minutes = |v: &[RunRecord]| {
            v.iter()
                .map(|r| r.scheduled.timestamp() / 60)
                .collect::<Vec<_>>()
        };
        assert_eq!(minutes(&a), [30, 27, 24, 21]);
        assert!(a.iter().all(|r| r.job == "a"));
        assert_eq!(minutes(&s.history(None, 3).unwrap()), [30, 29, 28]);
        assert_eq!(s.history(Some("none"), 50).unwrap(), []);
        assert_eq!(s.history(Some("b"), 100).unwrap().len(), 20);
        assert_eq!(
            s.last_run("a")
                .unwrap()
                .map(|r| r.scheduled.timestamp() / 60),
            Some(27),
            "the newest run that was not skipped"
        );
    }

    /// A job's history is read through the (job, id) index, not by scanning every job's runs.
    #[test]
    fn history_of_one_job_uses_the_index() {
        let s = store("plan");
        let plan: Vec<String> = s
            .state
            .with(|c| {
                c.prepare(&format!("EXPLAIN QUERY PLAN {JOB_HISTORY}"))?
                    .query_map(params!["a", 50], |r| r.get::<_, String>(3))?
                    .collect()
            })
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("USING INDEX schedule_runs_job")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|p| p.starts_with("SCAN")), "{plan:?}");
    }
}

//! Cron schedules, the scheduler loop and run records.
//!
//! - [`expr`]: cron expressions, time zones and DST rules.
//! - [`plan`]: the pure scheduling decisions (missed and overlap policies, jitter).
//! - [`clock`]: wall and monotonic time, real or controllable.
//! - [`store`]: last handled fire per job and run records in the state database.
//! - [`runner`]: the daemon loop and one-off runs; job targets are closures, so no Lua here.
//! - [`unit`]: systemd user unit and launchd agent for `baton daemon --install`.
pub mod clock;
pub mod expr;
pub mod plan;
pub mod runner;
pub mod store;
pub mod unit;

use std::time::Duration;

pub use clock::{Clock, SystemClock, TestClock};
pub use expr::{Expr, ExprError, Zone};
pub use runner::{
    Daemon, DaemonOptions, Job, Outcome, Report, RunContext, RunError, RunFuture, Target,
    ended_notice, run_now,
};
pub use store::{RunRecord, Store};

/// What to do when scheduled times passed while the machine slept or the daemon was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missed {
    /// Run once to catch up, however many were missed.
    #[default]
    Once,
    /// Run nothing; wait for the next scheduled time.
    Skip,
}

/// What to do when a run is due while the previous run of the same job is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Record the run as skipped.
    #[default]
    Skip,
    /// Run it when the current one finishes; at most one waits (later fires are skipped meanwhile), so a
    /// job slower than its interval cannot pile up an endless backlog.
    Queue,
}

impl Missed {
    pub fn name(self) -> &'static str {
        match self {
            Missed::Once => "once",
            Missed::Skip => "skip",
        }
    }
}

impl Overlap {
    pub fn name(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }
}

/// A job's schedule and policies (what it runs is in [`Job`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub expr: Expr,
    pub zone: Zone,
    pub missed: Missed,
    pub overlap: Overlap,
    pub timeout: Option<Duration>,
    /// The memory limit of the run's Lua state in bytes (`None`: the fleet's, else 1 GiB).
    pub memory: Option<u64>,
    /// A random delay in `0..=jitter` before each run.
    pub jitter: Duration,
    /// What runs, for display: `function` or a playbook path.
    pub target: String,
    /// When the run's end is sent to the fleet's `notify` channels.
    pub notify: crate::core::notify::When,
    /// A playbook run the daemon did not see end (it was killed, the machine restarted) is resumed when the
    /// daemon starts again (`baton resume`), once; without it such a run is recorded as interrupted.
    pub resume: bool,
}

impl JobSpec {
    pub fn new(name: impl Into<String>, expr: Expr) -> JobSpec {
        JobSpec {
            name: name.into(),
            expr,
            zone: Zone::Local,
            missed: Missed::Once,
            overlap: Overlap::Skip,
            timeout: None,
            memory: None,
            jitter: Duration::ZERO,
            target: "function".into(),
            notify: crate::core::notify::When::Failure,
            resume: false,
        }
    }
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }
    pub fn with_notify(mut self, notify: crate::core::notify::When) -> Self {
        self.notify = notify;
        self
    }
    pub fn with_zone(mut self, zone: Zone) -> Self {
        self.zone = zone;
        self
    }
    pub fn with_missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }
    pub fn with_overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    pub fn with_memory(mut self, bytes: Option<u64>) -> Self {
        self.memory = bytes;
        self
    }
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    State(#[from] crate::core::state::StateError),
    #[error("another baton daemon is already running on state directory {0} (lock held)")]
    AlreadyRunning(std::path::PathBuf),
    #[error("{0}")]
    Io(String),
    #[error("no job named {name:?}{hint}")]
    UnknownJob { name: String, hint: String },
}

//! `baton runs`: the recorded runs, newest first, and one run's step timeline (`baton runs show RUN`).
use std::process::ExitCode;

use super::table::Table;
use super::{Out, default_state};
use crate::core::duration;
use crate::core::runs::{Run, RunStatus, Runs, Step};
use crate::core::text::money;

#[derive(clap::Subcommand, Debug)]
pub enum RunsCommand {
    /// Give up a paused, interrupted or failed run: it is recorded as cancelled and cannot be resumed
    Cancel { run: String },
    /// Forget ended runs (and their journals) started longer ago than --older-than (default: the fleet's
    /// limits.keep_runs, else 90d)
    Prune {
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
    /// Answer a paused run's `baton.approve` with yes, then resume it here
    Approve {
        run: String,
        /// Text `baton.approve` returns after `true`
        #[arg(long)]
        answer: Option<String>,
        /// Only record the answer: the daemon resumes a scheduled run, `baton resume RUN` any other
        #[arg(long)]
        no_resume: bool,
    },
    /// Answer a paused run's `baton.approve` with no, then resume it here
    Deny {
        run: String,
        /// Text `baton.approve` returns after `false`
        #[arg(long)]
        reason: Option<String>,
        /// Only record the answer: the daemon resumes a scheduled run, `baton resume RUN` any other
        #[arg(long)]
        no_resume: bool,
    },
    /// One run's steps in order: position, kind, label, duration (with a bar), cost, outcome
    Show {
        run: String,
        /// The run and its steps as JSON
        #[arg(long)]
        json: bool,
        /// Print what the run wrote on stdout and stderr instead (its log, the last 10 MiB)
        #[arg(long)]
        log: bool,
    },
}

/// `baton runs [--status S] [--limit N] [--json]`.
pub fn list(status: Option<&str>, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let wanted = match status {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            anyhow::anyhow!(
                "runs: --status must be running, ok, failed, interrupted, paused or cancelled, got {}",
                crate::core::text::quoted(s)
            )
        })?),
        None => None,
    };
    let store = Runs::open(&default_state())?;
    // A status filter reads more rows than it shows: the status of a run can depend on its process.
    let runs: Vec<(Run, f64)> = store
        .list(if wanted.is_some() {
            limit.saturating_mul(20)
        } else {
            limit
        })?
        .into_iter()
        .filter(|r| wanted.is_none_or(|w| r.status() == w))
        .take(limit)
        .map(|r| {
            let cost = store.cost(&r.id).unwrap_or(0.0);
            (r, cost)
        })
        .collect();
    let mut out = Out::new();
    if json {
        let list: Vec<serde_json::Value> =
            runs.iter().map(|(r, cost)| run_json(r, *cost)).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        writeln!(out, "no runs recorded")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new([
        "RUN", "SCRIPT", "TRIGGER", "STATUS", "STARTED", "TOOK", "COST",
    ])
    .align_right(&[5, 6])
    .limit(1, 40);
    for (r, cost) in &runs {
        table.row([
            r.id.clone(),
            script_name(r),
            r.trigger.clone(),
            r.status().name().to_string(),
            started(r.started),
            r.ended
                .map(|e| took(e - r.started))
                .unwrap_or_else(|| "-".into()),
            money(*cost),
        ]);
    }
    out.write_all(table.to_string().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `baton runs show RUN [--json]`.
pub fn show(id: &str, json: bool, log: bool) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let store = Runs::open(&state)?;
    let Some(run) = store.get(id)? else {
        anyhow::bail!(
            "runs show: no run {} (see `baton runs`)",
            crate::core::text::quoted(id)
        );
    };
    if log {
        let mut out = Out::new();
        out.write_all(crate::core::runs::RunLog::read(state.dir(), id).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let steps = store.steps(id)?;
    let cost = store.cost(id)?;
    let mut out = Out::new();
    if json {
        let mut v = run_json(&run, cost);
        v["steps"] = steps.iter().map(step_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "run {} · {} {} · {} · {} · started {}{}",
        run.id,
        run.script.display(),
        run.args.join(" "),
        run.trigger,
        run.status().name(),
        started(run.started),
        run.ended
            .map(|e| format!(" · took {}", took(e - run.started)))
            .unwrap_or_default()
    )?;
    if let Some(e) = &run.error {
        writeln!(out, "error: {}", crate::core::text::escape_line(e))?;
    }
    out.write_all(timeline(&steps).as_bytes())?;
    writeln!(out, "{} steps · {}", steps.len(), money(cost))?;
    Ok(ExitCode::SUCCESS)
}

/// The steps as a table, each duration with a bar scaled to the longest.
fn timeline(steps: &[Step]) -> String {
    if steps.is_empty() {
        return "no steps journaled\n".into();
    }
    let longest = steps.iter().map(|s| s.duration).fold(0.0, f64::max);
    let mut table = Table::new(["POS", "KIND", "LABEL", "TOOK", "", "COST", "OUTCOME"])
        .align_right(&[3, 5])
        .limit(2, 48);
    for s in steps {
        let cells = if longest > 0.0 {
            ((s.duration / longest) * 20.0).round().max(1.0) as usize
        } else {
            1
        };
        table.row([
            s.pos.clone(),
            s.kind.clone(),
            s.label.clone(),
            took(s.duration),
            "█".repeat(cells),
            s.cost.map(money).unwrap_or_default(),
            s.outcome.clone(),
        ]);
    }
    table.to_string()
}

fn run_json(r: &Run, cost: f64) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "script": r.script,
        "args": r.args,
        "fleet": r.fleet,
        "trigger": r.trigger,
        "machine": r.machine,
        "pid": r.pid,
        "status": r.status().name(),
        "started": r.started,
        "ended": r.ended,
        "error": r.error,
        "cost": cost,
    })
}

fn step_json(s: &Step) -> serde_json::Value {
    serde_json::json!({
        "pos": s.pos,
        "kind": s.kind,
        "label": s.label,
        "started": s.started,
        "duration": s.duration,
        "outcome": s.outcome,
        "cost": s.cost,
    })
}

fn script_name(r: &Run) -> String {
    r.script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| r.script.display().to_string())
}

fn started(unix: f64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

fn took(secs: f64) -> String {
    let d = std::time::Duration::from_secs_f64(secs.max(0.0));
    if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        duration::format(std::time::Duration::from_millis(
            d.as_millis() as u64 / 100 * 100,
        ))
    }
}

/// `baton runs cancel RUN`.
pub fn cancel(id: &str) -> anyhow::Result<ExitCode> {
    let run = Runs::open(&default_state())?
        .cancel(id)
        .map_err(|e| anyhow::anyhow!("runs cancel: {e}"))?;
    let mut out = Out::new();
    if run.status() == RunStatus::Running {
        writeln!(out, "run {id} cancelled (its process {} stopped)", run.pid)?;
    } else {
        writeln!(out, "run {id} cancelled")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How long ended runs are kept unless the fleet says otherwise (`limits.keep_runs`).
pub const KEEP_RUNS: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

/// `baton runs prune [--older-than D]`.
pub fn prune(
    fleet: &crate::core::fleet::Fleet,
    older_than: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let keep = match older_than {
        Some(text) => {
            duration::parse(text).map_err(|e| anyhow::anyhow!("runs prune: --older-than: {e}"))?
        }
        None => fleet.limits.keep_runs.map_or(KEEP_RUNS, |d| d.0),
    };
    let before = crate::core::runs::now() - keep.as_secs_f64();
    let n = Runs::open(&default_state())?.prune(before)?;
    let mut out = Out::new();
    writeln!(
        out,
        "{n} run{} older than {} forgotten",
        if n == 1 { "" } else { "s" },
        duration::format(keep)
    )?;
    Ok(ExitCode::SUCCESS)
}

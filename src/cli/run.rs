//! The commands that drive a Lua runtime: `run`, `check`, `doctor` and `status`. The Lua side of each is in
//! [`crate::lua::entry`]; this file loads the fleet, maps how the script ended to an exit code and renders.
use crate::core::text::money;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use super::table::Table;
use super::{Cli, Interrupted, Out, ScriptFailed, default_state, exit_code, load_fleet};
use crate::core::runs::{self, NewRun, Runs};
use crate::lua::Ctx;
use crate::lua::entry::{self, Ended, Status};
use crate::lua::journal::Start;

/// `baton run FILE [ARGS…]`.
pub fn run(cli: &Cli, file: &str, args: Vec<String>) -> anyhow::Result<ExitCode> {
    let ctx = ctx(cli, file.to_string(), args)?;
    let start = NewRun::of_script(
        Path::new(file),
        ctx.args.clone(),
        ctx.fleet.source.clone(),
        "cli",
    );
    tracing::info!("run {}", start.id);
    let ended = entry::run(ctx, Path::new(file), Some(Start::New(start)));
    finish(cli, ended)
}

/// `baton resume RUN [--force]`: the run's playbook again, with its args and fleet, under its id; calls
/// that finished are answered from its journal.
pub fn resume(cli: &Cli, id: &str, force: bool) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let run = Runs::open(&state)?
        .resumable(id)
        .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
    resume_run(cli, state, run, force)
}

/// `baton runs approve|deny RUN`: records the answer to the paused run's question, then resumes it here,
/// in the foreground (its output on this terminal).
pub fn answer(
    cli: &Cli,
    id: &str,
    approved: bool,
    text: Option<&str>,
    resume: bool,
) -> anyhow::Result<ExitCode> {
    let verb = if approved { "approve" } else { "deny" };
    let state = default_state();
    let run = Runs::open(&state)?
        .answer_pending(id, approved, text)
        .map_err(|e| anyhow::anyhow!("runs {verb}: {e}"))?;
    let said = if approved { "approved" } else { "denied" };
    if !resume {
        crate::errln!(
            "run {id}: {said}; {} goes on with it",
            if run.trigger == "schedule" {
                "the daemon".to_string()
            } else {
                format!("`baton resume {id}`")
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    crate::errln!("run {id}: {said}; resuming");
    resume_run(cli, state, run, false)
}

/// Runs a recorded run's playbook again under its id (see [`resume`]).
fn resume_run(
    cli: &Cli,
    state: crate::core::state::State,
    run: crate::core::runs::Run,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let id = run.id.clone();
    let text = std::fs::read(&run.script).with_context(|| {
        format!(
            "resume: run {id}: cannot read its script {}",
            run.script.display()
        )
    })?;
    if runs::hash(&text) != run.script_hash && !force {
        anyhow::bail!(
            "resume: run {id}: {} changed since the run started; `baton resume {id} --force` replays what \
             still matches and runs the rest live",
            run.script.display()
        );
    }
    let fleet = match &run.fleet {
        Some(file) => crate::lua::fleet::load_file(file)?,
        None => crate::core::fleet::Fleet::builtin(),
    };
    let script = run.script.clone();
    let ctx = Ctx {
        fleet: std::sync::Arc::new(fleet),
        state,
        script: script.display().to_string(),
        args: run.args.clone(),
    };
    tracing::info!("resuming run {id}");
    // A scheduled function job's run (`--job NAME`, its script the schedule file) calls that job again.
    let job = match run.args.as_slice() {
        [flag, name] if flag == crate::lua::daemon::FUNCTION_JOB && run.trigger == "schedule" => {
            Some(name.clone())
        }
        _ => None,
    };
    let start = Start::Resume { run, force };
    let ended = match job {
        Some(job) => entry::function_job(ctx, &script, &job, start),
        None => entry::run(ctx, &script, Some(start)),
    };
    finish(cli, ended)
}

/// The exit of a playbook run: 0, its `os.exit` code, or its error.
fn finish(cli: &Cli, ended: std::io::Result<Ended<()>>) -> anyhow::Result<ExitCode> {
    // A playbook's expected failure (`error(message, 0)`) is its message alone; `-v` adds where and how.
    let ended = ended.map(|e| match e {
        Ended::Failed {
            full: _,
            brief: Some(brief),
        } if cli.verbose == 0 => Ended::Failed {
            full: brief,
            brief: None,
        },
        other => other,
    });
    Ok(match value_or_exit(ended)? {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    })
}

/// `baton doctor [--json]`: the embedded module's `main(args)` prints the report; its return value is the
/// exit code.
pub fn doctor(cli: &Cli, json: bool) -> anyhow::Result<ExitCode> {
    let args = if json { vec!["--json".into()] } else { vec![] };
    let ended = entry::doctor(ctx(cli, "baton baton.doctor".into(), args)?);
    Ok(match value_or_exit(ended)? {
        Ok(code) => exit_code(code.unwrap_or(0)),
        Err(code) => code,
    })
}

/// What `require("baton.status").collect()` returns.
#[derive(Debug, Deserialize)]
struct StatusReport {
    hosts: Vec<HostStatus>,
    #[serde(default)]
    schedule: Vec<NextRun>,
    schedule_error: Option<String>,
    spend: MonthSpend,
}

#[derive(Debug, Deserialize)]
struct HostStatus {
    host: String,
    role: String,
    online: bool,
    /// Offline but has a `mac` (issue 19): shown as `asleep (wakeable)`.
    #[serde(default)]
    wakeable: bool,
    load: Option<f64>,
    ollama: Option<String>,
    jobs: u64,
}

#[derive(Debug, Deserialize)]
struct NextRun {
    name: String,
    next: Option<String>,
    last: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MonthSpend {
    month: f64,
    #[serde(default)]
    held: f64,
    #[serde(default)]
    interrupted: f64,
    budget: Option<f64>,
    fraction: Option<f64>,
}

/// `baton status [--json]`: the data comes from `baton.status.collect()` (Lua, so it probes hosts with the
/// same primitives playbooks use); the CLI renders it.
pub fn status(cli: &Cli, json: bool) -> anyhow::Result<ExitCode> {
    let ended = entry::status::<StatusReport>(ctx(cli, "baton baton.status".into(), vec![])?, json);
    let report = match value_or_exit(ended)? {
        Ok(Status::Report(report)) => report,
        Ok(Status::Json(text)) => {
            writeln!(Out::new(), "{text}")?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(code) => return Ok(code),
    };
    write!(Out::new(), "{}", status_text(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// Hosts, then up to five next runs, then the month's spend.
fn status_text(s: &StatusReport) -> String {
    let mut hosts =
        Table::new(["HOST", "ROLE", "ONLINE", "LOAD", "OLLAMA", "JOBS"]).align_right(&[3, 5]);
    for h in &s.hosts {
        hosts.row([
            h.host.clone(),
            h.role.clone(),
            match (h.online, h.wakeable) {
                (true, _) => "yes",
                (false, true) => "asleep (wakeable)",
                (false, false) => "no",
            }
            .into(),
            h.load.map_or("-".into(), |l| format!("{l:.2}")),
            h.ollama.clone().unwrap_or_else(|| "-".into()),
            h.jobs.to_string(),
        ]);
    }
    let mut text = format!("{hosts}\n");
    if let Some(e) = &s.schedule_error {
        text.push_str(&format!("schedule: {e}\n"));
    } else if s.schedule.is_empty() {
        text.push_str("schedule: no jobs\n");
    } else {
        let mut next = Table::new(["NEXT RUN", "JOB", "LAST"]);
        for j in s.schedule.iter().take(5) {
            next.row([
                j.next.clone().unwrap_or_else(|| "never".into()),
                j.name.clone(),
                j.last.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        text.push_str(&format!("{next}\n"));
    }
    text.push_str(&match s.spend.budget {
        Some(budget) => format!(
            "spend: {} of {} this month ({:.0}%)\n",
            money(s.spend.month),
            money(budget),
            s.spend.fraction.unwrap_or(0.0) * 100.0
        ),
        None => format!("spend: {} this month (no budget)\n", money(s.spend.month)),
    });
    if s.spend.held > 0.0 || s.spend.interrupted > 0.0 {
        text.push_str(&format!(
            "       {} held by calls under way, {} interrupted calls (at their worst case)\n",
            money(s.spend.held),
            money(s.spend.interrupted)
        ));
    }
    text
}

/// The context of a script run by a command: the fleet, the state folder, the script's name and arguments.
fn ctx(cli: &Cli, script: String, args: Vec<String>) -> anyhow::Result<Ctx> {
    Ok(Ctx {
        fleet: load_fleet(cli)?,
        state: default_state(),
        script,
        args,
    })
}

/// A Lua entry point's end: its value, or the exit code of `os.exit(n)`. Ctrl-C is [`Interrupted`] (exit
/// 130), a Lua error is [`ScriptFailed`] with the error as `file:line: message` and its traceback.
fn value_or_exit<T>(ended: std::io::Result<Ended<T>>) -> anyhow::Result<Result<T, ExitCode>> {
    match ended.context("cannot start the async runtime")? {
        Ended::Value(value) => Ok(Ok(value)),
        Ended::Exit(code) => Ok(Err(exit_code(code))),
        Ended::Interrupted => Err(Interrupted.into()),
        Ended::Failed { full, .. } => Err(ScriptFailed(full).into()),
    }
}

/// `baton check FILE…`: compiles each file and prints every syntax error; fails when any file did.
pub fn check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let check = entry::SyntaxCheck::default();
    let mut failed = 0;
    for file in files {
        if let Err(msg) = check.file(file) {
            // The report itself, like a compiler's: one error per broken file.
            crate::errln!("{msg}");
            failed += 1;
        }
    }
    if failed > 0 {
        anyhow::bail!("check: {failed} of {} file(s) failed", files.len());
    }
    writeln!(Out::new(), "baton check: {} file(s) ok", files.len())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_hosts_next_runs_and_spend() {
        let report = StatusReport {
            hosts: vec![
                HostStatus {
                    host: "brain".into(),
                    role: "inference".into(),
                    online: true,
                    wakeable: false,
                    load: Some(0.5),
                    ollama: Some("qwen2.5-coder:32b".into()),
                    jobs: 2,
                },
                HostStatus {
                    host: "pc".into(),
                    role: String::new(),
                    online: false,
                    wakeable: false,
                    load: None,
                    ollama: None,
                    jobs: 0,
                },
            ],
            schedule: vec![NextRun {
                name: "nightly".into(),
                next: Some("2026-12-04 02:30".into()),
                last: Some("ok".into()),
            }],
            schedule_error: None,
            spend: MonthSpend {
                month: 1.5,
                held: 0.0,
                interrupted: 0.0,
                budget: Some(25.0),
                fraction: Some(0.06),
            },
        };
        assert_eq!(
            status_text(&report),
            "HOST   ROLE       ONLINE  LOAD  OLLAMA             JOBS\n\
             brain  inference  yes     0.50  qwen2.5-coder:32b     2\n\
             pc                no         -  -                     0\n\
             \n\
             NEXT RUN          JOB      LAST\n\
             2026-12-04 02:30  nightly  ok\n\
             \n\
             spend: $1.50 of $25.00 this month (6%)\n"
        );
        // Held and interrupted amounts show when there are any.
        let mut report = report;
        (report.spend.held, report.spend.interrupted) = (0.12, 0.44);
        assert!(
            status_text(&report).ends_with(
                "spend: $1.50 of $25.00 this month (6%)\n       \
                 $0.12 held by calls under way, $0.44 interrupted calls (at their worst case)\n"
            ),
            "{}",
            status_text(&report)
        );
    }
}

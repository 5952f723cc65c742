//! `baton daemon [FILE] [--install [--print] [--platform P]]` and `baton schedule list|history|run`: the
//! jobs come from [`crate::lua::daemon::load`]; the core scheduler runs them; this module prints.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use chrono::Utc;

use super::table::Table;
use super::{Out, default_state};
use crate::core::duration;
use crate::core::fleet::Fleet;
use crate::core::schedule::unit::{self, Platform, UnitSpec};
use crate::core::schedule::{Daemon, DaemonOptions, Outcome, RunRecord, Store, SystemClock, Zone};
use crate::lua::daemon::{self as lua_daemon, default_file};
use crate::lua::runtime::block_on;

/// `baton daemon [FILE]`: fire the jobs of FILE until SIGTERM/SIGINT, then exit 0 after running jobs finish
/// (or are cancelled after the grace period). Fails when FILE fails or registers no jobs.
pub fn daemon(
    fleet: Arc<Fleet>,
    file: Option<PathBuf>,
    web: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let file = file.unwrap_or_else(|| default_file(&fleet));
    block_on(async move {
        let schedule = lua_daemon::load(&fleet, &state, &file).await?;
        // The dashboard, on the daemon's runtime: its bounds keep a hostile client from the schedule.
        if let Some(listen) = web {
            let server = crate::web::Server::bind(crate::web::Options {
                listen,
                token: None,
                fleet: fleet.clone(),
                state: state.clone(),
                schedule_file: file.clone(),
                in_daemon: true,
            })
            .await?;
            // The daemon's stderr is a log (journald, launchd): the link with the token goes to a private
            // file instead.
            let link = state.dir().join("web-login.url");
            let written = crate::core::state::create_private_file(&link)
                .and_then(|()| std::fs::write(&link, format!("{}\n", server.login_url())));
            match written {
                Ok(()) => crate::errln!(
                    "baton daemon: dashboard on http://{} (log in with the link in {})",
                    server.local_addr(),
                    link.display()
                ),
                Err(e) => crate::errln!(
                    "baton daemon: dashboard on http://{} (cannot write its login link to {}: {e}; \
                     set a token with the fleet's web.token_env)",
                    server.local_addr(),
                    link.display()
                ),
            }
            tokio::task::spawn_local(server.run());
        }
        let opts = DaemonOptions::default();
        crate::errln!(
            "baton daemon: {} job(s) from {}",
            schedule.jobs.len(),
            file.display()
        );
        for job in &schedule.jobs {
            let next = job
                .spec
                .expr
                .next_after(Utc::now(), &job.spec.zone)
                .map(|t| job.spec.zone.format(t));
            crate::errln!(
                "  {}  {}  next {}",
                job.spec.name,
                job.spec.expr.source(),
                next.as_deref().unwrap_or("never")
            );
        }
        recover_runs(&state, &schedule.jobs);
        // Scheduled runs answered without being resumed (`runs approve --no-resume`) go on here.
        let answered_state = state.clone();
        tokio::task::spawn_local(async move {
            let mut started = std::collections::HashSet::new();
            loop {
                resume_answered(&answered_state, &mut started);
                tokio::time::sleep(ANSWERED_POLL).await;
            }
        });
        // Ended runs older than `limits.keep_runs` (90 days) go, at start and once a day.
        let keep = fleet
            .limits
            .keep_runs
            .map_or(super::runs::KEEP_RUNS, |d| d.0);
        let prune_state = state.clone();
        tokio::task::spawn_local(async move {
            loop {
                let before = crate::core::runs::now() - keep.as_secs_f64();
                match crate::core::runs::Runs::open(&prune_state).and_then(|r| r.prune(before)) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!("forgot {n} runs older than {}", duration::format(keep))
                    }
                    Err(e) => tracing::warn!("cannot prune old runs: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
            }
        });
        let grace = opts.grace;
        let notifier = crate::core::notify::Notifier::from_fleet(&fleet);
        let daemon = Daemon::new(schedule.jobs, &state, SystemClock::default(), opts)?
            .with_notifier(notifier.clone());
        // Detached jobs started with `notify = true` are watched while the daemon runs (issue 19).
        let remote = crate::core::remote::Remote::new(fleet.clone());
        let poll = fleet
            .notify
            .as_ref()
            .and_then(|n| n.job_poll)
            .map_or(crate::core::remote::jobs::WATCH_POLL, |d| d.0);
        let watch = crate::core::remote::jobs::watch(&remote, &state, &notifier, poll);
        let run = daemon.run(async move {
            stop_signal().await;
            crate::errln!(
                "baton daemon: stopping; running jobs get {} to finish",
                duration::format(grace)
            );
            watchdog(grace + WATCHDOG_MARGIN);
        });
        let report = tokio::select! {
            report = run => report?,
            () = watch => unreachable!("the job watch never ends"),
        };
        remote.close().await;
        crate::errln!(
            "baton daemon: stopped ({} run(s): {} ok, {} failed, {} cancelled; {} skipped)",
            report.started,
            report.ok,
            report.failed,
            report.cancelled,
            report.skipped
        );
        Ok(ExitCode::SUCCESS)
    })
    .context("cannot start the async runtime")?
}

/// `baton daemon --install [--print] [--platform linux|macos]`: write (or print) the service definition.
/// `--platform` picks the other system's format and needs `--print`.
pub fn install(
    fleet: &Fleet,
    file: Option<PathBuf>,
    print: bool,
    platform: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let current = Platform::current();
    let platform = platform
        .map(Platform::parse)
        .transpose()
        .map_err(|e| anyhow!("--platform: {e}"))?
        .unwrap_or(current);
    if platform != current && !print {
        bail!("--platform {platform:?} can only be printed on this system: add --print");
    }
    let file = absolute(file.unwrap_or_else(|| default_file(fleet)));
    let exe = std::env::current_exe().context("cannot find the baton executable")?;
    let mut env = vec![(
        "BATON_STATE_DIR".to_string(),
        absolute(state.dir().to_path_buf()).display().to_string(),
    )];
    if let Some(source) = &fleet.source {
        env.push((
            "BATON_FLEET".into(),
            absolute(source.clone()).display().to_string(),
        ));
    }
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".into(), path));
    }
    let spec = UnitSpec {
        exe,
        file: file.clone(),
        env,
        log: absolute(state.dir().join("daemon.log")),
    };
    let text = unit::render(platform, &spec);
    let mut out = Out::new();
    if print {
        // The unit may be installed before the schedule is written (the daemon then fails and restarts
        // until it exists), but not without a word: stdout is the unit, so the warning goes to stderr.
        if !file.is_file() {
            crate::errln!(
                "baton daemon --install: warning: {}",
                missing_schedule(&file)
            );
        }
        write!(out, "{text}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let home = crate::core::state::home_dir();
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = platform.install_path(&home, config.as_deref());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(out, "wrote {}", path.display())?;
    if !file.is_file() {
        writeln!(out, "note: {}", missing_schedule(&file))?;
    }
    writeln!(
        out,
        "enable it with:\n  {}",
        platform.enable_hint(&path).replace('\n', "\n  ")
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What to say when the service would start the daemon on a schedule file that does not exist.
fn missing_schedule(file: &std::path::Path) -> String {
    format!(
        "the schedule file {} does not exist yet, and the daemon fails until it does; create it before \
         enabling the service (one job a line, e.g. `schedule.cron(\"backup\", \"0 3 * * *\", \"backup.lua\")`; \
         see examples/schedule.lua), or name another file: `baton daemon --install FILE`",
        file.display()
    )
}

/// `baton schedule list [FILE]`: each job with its expression, options, target, next three fire times and
/// last outcome.
pub fn list(fleet: Arc<Fleet>, file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let file = file.unwrap_or_else(|| default_file(&fleet));
    let text = block_on(async move {
        let schedule = lua_daemon::load(&fleet, &state, &file).await?;
        let store = Store::open(&state)?;
        let mut table = Table::new([
            "JOB", "SCHEDULE", "TZ", "MISSED", "OVERLAP", "TARGET", "NEXT", "LAST",
        ]);
        for job in &schedule.jobs {
            let s = &job.spec;
            let next: Vec<String> = s
                .expr
                .upcoming(Utc::now(), &s.zone, 3)
                .into_iter()
                .map(|t| s.zone.format(t))
                .collect();
            let last = match store.last_run(&s.name)? {
                Some(r) => describe_run(&r, &s.zone),
                None => "never ran".into(),
            };
            table.row([
                s.name.clone(),
                s.expr.source().to_string(),
                s.zone.name(),
                s.missed.name().to_string(),
                s.overlap.name().to_string(),
                s.target.to_string(),
                if next.is_empty() {
                    "never".into()
                } else {
                    next.join("\n")
                },
                last,
            ]);
        }
        anyhow::Ok(table.to_string())
    })
    .context("cannot start the async runtime")??;
    Out::new().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `baton schedule history [JOB] [--limit N]`: runs, newest first.
pub fn history(job: Option<&str>, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let runs = Store::open(&default_state())?.history(job, limit)?;
    let mut out = Out::new();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&history_json(&runs))?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        writeln!(
            out,
            "no runs recorded{}",
            job.map(|j| format!(" for {j:?}")).unwrap_or_default()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    out.write_all(history_table(&runs).as_bytes())?;
    if runs.iter().any(|r| r.catchup) {
        writeln!(
            out,
            "(* catch-up run for a time missed while asleep or stopped)"
        )?;
    }
    out.write_all(whole_errors(&runs).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The runs as `schedule history --json` prints them, each error whole (its traceback included).
fn history_json(runs: &[RunRecord]) -> serde_json::Value {
    runs.iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "job": r.job,
                "scheduled": r.scheduled.to_rfc3339(),
                "started": r.started.map(|t| t.to_rfc3339()),
                "ended": r.ended.map(|t| t.to_rfc3339()),
                "outcome": r.outcome,
                "error": r.error,
                "log": r.log,
                "catchup": r.catchup,
                "manual": r.manual,
            })
        })
        .collect()
}

/// After the table (one line a run), each error of more than one line in full, without its Lua traceback
/// (the run's log has it): `end_of_day: 2 problems:` and the problems under it.
fn whole_errors(runs: &[RunRecord]) -> String {
    let mut text = String::new();
    for r in runs {
        let Some(error) = &r.error else { continue };
        let message: Vec<&str> = error
            .lines()
            .take_while(|l| l.trim() != "stack traceback:")
            .collect();
        if message.len() < 2 {
            continue;
        }
        text.push_str(&format!("\nrun {} ({}) {}:\n", r.id, r.job, r.outcome));
        for line in message {
            text.push_str(&format!("  {}\n", crate::core::text::escape_line(line)));
        }
    }
    text
}

fn history_table(runs: &[RunRecord]) -> String {
    let mut table = Table::new(["RUN", "JOB", "STARTED", "TOOK", "OUTCOME", "LOG / ERROR"])
        .align_right(&[0, 3]);
    for r in runs {
        let started = r
            .started
            .or(r.ended)
            .map(|t| Zone::Local.format(t))
            .unwrap_or_default();
        let took = took(r).unwrap_or_else(|| "-".into());
        let mut outcome = r.outcome.clone();
        if r.catchup {
            outcome.push('*');
        }
        let detail = match (first_error_line(r), &r.log) {
            (Some(e), Some(log)) => format!("{}  {e}", log.display()),
            (Some(e), None) => e.to_string(),
            (None, Some(log)) => log.display().to_string(),
            (None, None) => String::new(),
        };
        table.row([
            r.id.to_string(),
            r.job.clone(),
            started,
            took,
            outcome,
            detail,
        ]);
    }
    table.to_string()
}

/// How often the daemon looks for answered scheduled runs to resume.
const ANSWERED_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Resumes (`baton resume RUN`, in the background) each scheduled run that was answered but not resumed;
/// `started` keeps this daemon from starting one twice.
fn resume_answered(
    state: &crate::core::state::State,
    started: &mut std::collections::HashSet<String>,
) {
    use crate::core::runs::{RunStatus, Runs};
    let Ok(store) = Runs::open(state) else { return };
    let answered = store.list(500).unwrap_or_default().into_iter().filter(|r| {
        r.trigger == "schedule" && r.recorded == RunStatus::Paused && r.pending.is_none()
    });
    for run in answered {
        if !started.insert(run.id.clone()) {
            continue;
        }
        crate::errln!("baton daemon: resuming answered run {}", run.id);
        spawn_resume(&run.id);
    }
}

/// `baton resume RUN` as a child of the daemon, its end logged.
fn spawn_resume(id: &str) {
    let exe = std::env::current_exe().unwrap_or_else(|_| "baton".into());
    let spawned = tokio::process::Command::new(exe)
        .args(["resume", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            let id = id.to_string();
            tokio::task::spawn_local(async move {
                match child.wait().await {
                    Ok(status) => tracing::info!("resumed run {id}: {status}"),
                    Err(e) => tracing::warn!("resumed run {id}: {e}"),
                }
            });
        }
        Err(e) => crate::errln!("baton daemon: cannot resume run {id}: {e}"),
    }
}

/// At start: each scheduled playbook run that no daemon saw end (killed, the machine restarted). A job
/// with `resume = true` gets it resumed (`baton resume RUN`, in the background, once); the others are
/// recorded as interrupted and reported.
fn recover_runs(state: &crate::core::state::State, jobs: &[crate::core::schedule::Job]) {
    use crate::core::runs::{RunStatus, Runs};
    let store = match Runs::open(state) {
        Ok(store) => store,
        Err(e) => {
            crate::errln!("baton daemon: cannot read the runs: {e}");
            return;
        }
    };
    let stranded: Vec<_> = store
        .list(1000)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.trigger == "schedule" && r.status() == RunStatus::Interrupted)
        .filter(|r| r.recorded == RunStatus::Running)
        .collect();
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    for run in stranded {
        // A playbook job by its path; a function job by its name (`--job NAME`).
        let job = jobs.iter().find(|j| match run.args.as_slice() {
            [flag, name] if flag == crate::lua::daemon::FUNCTION_JOB => *name == j.spec.name,
            _ => absolute(std::path::Path::new(&j.spec.target)) == run.script,
        });
        match job {
            Some(job) if job.spec.resume => {
                crate::errln!(
                    "baton daemon: resuming run {} of job {} (interrupted)",
                    run.id,
                    job.spec.name
                );
                spawn_resume(&run.id);
            }
            _ => {
                let why = "interrupted: the daemon or the machine stopped before the run ended";
                if let Err(e) = store.finish(&run.id, RunStatus::Interrupted, Some(why)) {
                    crate::errln!("baton daemon: run {}: {e}", run.id);
                } else {
                    crate::errln!(
                        "baton daemon: run {} ({}) was {why}; `baton resume {}` finishes it",
                        run.id,
                        run.script.display(),
                        run.id
                    );
                }
            }
        }
    }
}

/// `baton schedule run JOB [FILE] [--quiet]`: run one job now, as the daemon would (record, log file,
/// timeout), and, as the daemon does, tell the fleet's `notify` channels how it ended when the job's
/// `notify` policy asks (`--quiet`: not). Run by hand or by the clock, a job behaves the same, as with
/// cron or a systemd timer. A channel that fails is reported on stderr; the exit code is the run's.
pub fn run(
    fleet: Arc<Fleet>,
    name: &str,
    file: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let file = file.unwrap_or_else(|| default_file(&fleet));
    let (run_id, log, outcome) = block_on(async move {
        let schedule = lua_daemon::load(&fleet, &state, &file).await?;
        let Some(job) = schedule.jobs.iter().find(|j| j.spec.name == name) else {
            let names = schedule.jobs.iter().map(|j| j.spec.name.as_str());
            let hint = crate::core::wording::suggest(name, names);
            bail!("{}: no job named {name:?}{hint}", file.display());
        };
        let (ctx, outcome) =
            crate::core::schedule::run_now(job, &state, &SystemClock::default()).await?;
        let notifier = crate::core::notify::Notifier::from_fleet(&fleet);
        if !quiet && !notifier.channels().is_empty() {
            let store = Store::open(&state)?;
            if let Some(msg) =
                crate::core::schedule::ended_notice(&job.spec, &store, &ctx.log, &outcome)
            {
                let sent = notifier
                    .send(&msg, None, crate::core::notify::DEFAULT_TIMEOUT)
                    .await;
                let failed = match sent {
                    Ok(deliveries) => crate::core::notify::failures(&deliveries),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = failed {
                    crate::errln!(
                        "baton schedule run: {name}: notification not delivered: {}",
                        crate::core::text::remote(&why, 500)
                    );
                }
            }
        }
        anyhow::Ok((ctx.run_id, ctx.log, outcome))
    })
    .context("cannot start the async runtime")??;
    match outcome {
        Outcome::Ok => {
            writeln!(
                Out::new(),
                "{name}: run {run_id} ok (log: {})",
                log.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Failed(e) => bail!("{name}: run {run_id} failed: {e} (log: {})", log.display()),
        other => bail!(
            "{name}: run {run_id} {} (log: {})",
            other.name(),
            log.display()
        ),
    }
}

/// `ok at 2026-12-03T18:00:00Z (1.2s): first line of the error`.
fn describe_run(r: &RunRecord, zone: &Zone) -> String {
    let when = r.started.map(|t| zone.format(t)).unwrap_or_default();
    let mut out = format!("{} at {when}", r.outcome);
    if let Some(took) = took(r) {
        out.push_str(&format!(" ({took})"));
    }
    if let Some(e) = first_error_line(r) {
        out.push_str(&format!(": {e}"));
    }
    out
}

/// How long a finished run took, `1.2s`.
fn took(r: &RunRecord) -> Option<String> {
    let (start, end) = (r.started?, r.ended?);
    Some(duration::format((end - start).to_std().unwrap_or_default()))
}

/// The first line of a failed run's error: tables and summaries show one line a run.
fn first_error_line(r: &RunRecord) -> Option<&str> {
    r.error.as_deref().and_then(|e| e.lines().next())
}

/// How long after the grace period the watchdog waits for the daemon to finish its records.
const WATCHDOG_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends the process `after` from now if it is still running: the daemon stops within its grace period even
/// if something it waits for never returns.
fn watchdog(after: std::time::Duration) {
    let _ = std::thread::Builder::new()
        .name("baton watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            crate::errln!(
                "baton daemon: still running {} after the stop request; exiting",
                duration::format(after)
            );
            std::process::exit(1);
        });
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, job: &str, outcome: &str) -> RunRecord {
        RunRecord {
            id,
            ..RunRecord::sample(job, Utc::now(), outcome)
        }
    }

    #[test]
    fn history_is_one_row_per_run() {
        let start = Utc::now();
        let runs = [
            RunRecord {
                started: Some(start),
                ended: Some(start + chrono::Duration::seconds(90)),
                error: Some("nightly.lua:3: boom\nstack traceback:\n...".into()),
                log: Some("/state/runs/nightly/12.log".into()),
                catchup: true,
                ..record(12, "nightly", "failed")
            },
            record(9, "eod", "ok"),
        ];
        let text = history_table(&runs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("RUN  JOB      STARTED"), "{text}");
        assert!(
            lines[1].starts_with(" 12  nightly  ")
                && lines[1]
                    .contains("  1m30s  failed*  /state/runs/nightly/12.log  nightly.lua:3: boom"),
            "{text}"
        );
        assert!(lines[2].starts_with("  9  eod      "), "{text}");
        assert!(lines[2].ends_with("  -  ok"), "{text}");
    }

    /// A message of several lines is shown whole after the table (it used to stop at
    /// `end_of_day: 2 problems:`), without the traceback; `--json` carries it all.
    #[test]
    fn history_shows_a_long_error_whole() {
        let error = "end_of_day: 2 problems:\n  app: committed as 533e6b4, not pushed\n  CI: CI host h0 is \
                     offline\nstack traceback:\n  [C]: in ?";
        let runs = [
            RunRecord {
                error: Some(error.into()),
                ..record(7, "end_of_day", "failed")
            },
            RunRecord {
                error: Some("x.lua:1: one line\nstack traceback:\n...".into()),
                ..record(6, "other", "failed")
            },
        ];
        assert_eq!(
            whole_errors(&runs),
            "\nrun 7 (end_of_day) failed:\n  end_of_day: 2 problems:\n    app: committed as 533e6b4, not \
             pushed\n    CI: CI host h0 is offline\n"
        );
        let json = history_json(&runs);
        assert_eq!(json[0]["error"], error);
        assert_eq!(json[1]["job"], "other");
    }
}

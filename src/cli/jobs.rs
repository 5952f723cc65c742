//! `baton jobs [--prune]`: detached remote jobs started with `ssh.spawn`, running ones re-read from their
//! hosts.
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::table::Table;
use super::{Out, default_state, now_unix};
use crate::core::fleet::Fleet;
use crate::core::remote::jobs::{self, Job, JobState};
use crate::core::remote::{Remote, Target};

/// `baton jobs attach ID`.
#[derive(clap::Subcommand, Debug)]
pub enum JobsCommand {
    /// Open the tmux session of a job started with `ssh.spawn(…, {tmux = true})` (`ssh -t HOST tmux attach`)
    Attach {
        id: String,
        /// Print the command instead of running it
        #[arg(long)]
        print: bool,
    },
}

/// Runs a `baton jobs` subcommand.
pub fn action(fleet: Arc<Fleet>, cmd: &JobsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobsCommand::Attach { id, print } => attach(&fleet, id, *print),
    }
}

/// `baton jobs attach ID [--print]`: runs (or prints) the command that attaches this terminal to the job's
/// tmux session; exits with its code.
fn attach(fleet: &Fleet, id: &str, print: bool) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let job = jobs::get(&state, id)?;
    let argv = attach_argv(fleet, &job)?;
    if print {
        let line: Vec<String> = argv
            .iter()
            .map(|a| shlex::try_quote(a).map_or_else(|_| a.clone(), |q| q.into_owned()))
            .collect();
        writeln!(Out::new(), "{}", line.join(" "))?;
        return Ok(ExitCode::SUCCESS);
    }
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .with_context(|| format!("cannot run {}", argv[0]))?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// The command attaching a terminal to a tmux job: `ssh [-F config] -t DEST tmux attach -t baton-<id>`, or
/// `tmux attach …` for a job on this machine.
pub fn attach_argv(fleet: &Fleet, job: &Job) -> anyhow::Result<Vec<String>> {
    if !job.tmux {
        anyhow::bail!(
            "job {} on {} was not started with tmux = true; follow its log with `ssh.job({:?}):wait({{on_line = print}})`",
            job.id,
            job.host,
            job.id
        );
    }
    let tmux = ["tmux", "attach-session", "-t"]
        .into_iter()
        .map(String::from)
        .chain([job.tmux_session()]);
    Ok(match crate::core::remote::target(fleet, &job.host)? {
        Target::Local => tmux.collect(),
        Target::Ssh(dest) => {
            let mut argv = vec!["ssh".to_string(), "-t".to_string()];
            if let Some(config) = &dest.config {
                argv.push("-F".into());
                argv.push(config.display().to_string());
            }
            if dest.accept_new {
                argv.extend(["-o".into(), "StrictHostKeyChecking=accept-new".into()]);
            }
            // The fleet refuses destinations starting with `-`; `--` makes sure ssh never reads one as an
            // option whatever the way in.
            if let Some(why) = crate::core::fleet::destination_problem(&dest.dest) {
                anyhow::bail!(why);
            }
            argv.push("--".into());
            argv.push(dest.dest.clone());
            argv.extend(tmux);
            argv
        }
    })
}

/// How long each running job's host gets to answer.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands longer than this (display columns) are cut with `…`.
const COMMAND_MAX: u16 = 60;

/// Lists registered jobs, refreshing the state of running ones from their hosts (concurrently); with
/// `prune`, forgets ended ones first.
pub fn show(fleet: Arc<Fleet>, prune: bool, json: bool) -> anyhow::Result<ExitCode> {
    let state = default_state();
    let mut out = Out::new();
    if prune {
        let n = jobs::prune(&state)?;
        if !json {
            writeln!(out, "forgot {n} ended job(s)")?;
        }
    }
    let remote = Remote::new(fleet);
    let list = crate::lua::runtime::block_on(async {
        let list = jobs::refresh(&remote, &state, REFRESH_TIMEOUT).await;
        remote.pool().close_all().await;
        list
    })
    .context("cannot start the async runtime")??;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&as_json(&list))?)?;
    } else {
        out.write_all(table(&list, now_unix()).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs as `baton jobs --json` prints them: one object per job, `code` only once it exited.
fn as_json(list: &[Job]) -> serde_json::Value {
    list.iter()
        .map(|j| {
            serde_json::json!({
                "id": j.id,
                "host": j.host,
                "state": j.status.state.name(),
                "code": j.status.code,
                "command": j.command,
                "pid": j.pid,
                "dir": j.dir,
                "started_at": j.started_at,
                "tmux": j.tmux,
                "cwd": j.cwd,
                "title": j.title,
            })
        })
        .collect()
}

/// One line per job: id, host, state, age, and its title or else its command; `no jobs` when there are none.
pub fn table(list: &[Job], now_unix: i64) -> String {
    if list.is_empty() {
        return "no jobs\n".to_string();
    }
    let mut table = Table::new(["ID", "HOST", "STATE", "AGE", "WHAT"]).limit(4, COMMAND_MAX);
    for j in list {
        let state = match (j.status.state, j.status.code) {
            (JobState::Exited, Some(code)) => format!("exited {code}"),
            (s, _) => s.name().to_string(),
        };
        table.row([
            j.id.clone(),
            j.host.clone(),
            state,
            age(now_unix - j.started_at),
            match &j.title {
                Some(title) => title.clone(),
                None => j.command.replace('\n', " "),
            },
        ]);
    }
    table.to_string()
}

/// `45s`, `12m`, `3h`, `2d`.
fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: JobState, code: Option<i32>, started_at: i64, command: &str) -> Job {
        Job::sample(id, state, code, started_at, command)
    }

    #[test]
    fn one_line_per_job() {
        let cmd = "python train.py --epochs 3";
        let mut titled = job("b", JobState::Exited, Some(0), 50, cmd);
        titled.title = Some("nightly CI".into());
        let list = [
            job("a", JobState::Running, None, 100, cmd),
            titled,
            job("c", JobState::Lost, None, 3690, "sleep\n5"),
        ];
        assert_eq!(
            table(&list, 3700),
            "ID  HOST   STATE     AGE  WHAT\n\
             a   brain  running   1h   python train.py --epochs 3\n\
             b   brain  exited 0  1h   nightly CI\n\
             c   brain  lost      10s  sleep 5\n"
        );
        assert_eq!(table(&[], 0), "no jobs\n");
    }

    #[test]
    fn long_commands_are_cut() {
        let long = format!("echo {}", "x".repeat(100));
        let text = table(&[job("a", JobState::Running, None, 0, &long)], 0);
        let line = text.lines().nth(1).unwrap();
        assert!(
            line.ends_with('…') && line.chars().count() < 60 + 30,
            "{text}"
        );
    }

    #[test]
    fn attach_commands() {
        let fleet = Fleet::from_deserializer(serde_json::json!({
            "ssh_config": "/f/ssh_config",
            "hosts": {"gpu": {"ssh": "me@gpu", "known_hosts": "accept-new"}, "here": {"ssh": false}}
        }))
        .unwrap();
        let mut j = job("20261203-101500-ab12", JobState::Running, None, 0, "train");
        j.host = "gpu".into();
        assert!(attach_argv(&fleet, &j).is_err(), "not a tmux job");
        j.tmux = true;
        assert_eq!(
            attach_argv(&fleet, &j).unwrap(),
            [
                "ssh",
                "-t",
                "-F",
                "/f/ssh_config",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "--",
                "me@gpu",
                "tmux",
                "attach-session",
                "-t",
                "baton-20261203-101500-ab12"
            ]
        );
        j.host = "here".into();
        assert_eq!(
            attach_argv(&fleet, &j).unwrap(),
            ["tmux", "attach-session", "-t", "baton-20261203-101500-ab12"]
        );
    }

    #[test]
    fn ages() {
        assert_eq!(
            [-5, 45, 720, 3 * 3600, 2 * 86400].map(age),
            ["0s", "45s", "12m", "3h", "2d"]
        );
    }
}

//! Detached jobs: a command started on a host that survives the ssh connection and the script.
//!
//! On the host, a job lives in `~/.baton/jobs/<id>/`: `cmd` (the command), `pid` (its runner), `log` (stdout
//! and stderr) and `exit` (the exit code, written when the command ends). The runner is a small `sh` that
//! runs the command with the user's `$SHELL`, its output appended to `log`, then records the exit code.
//! Jobs are registered in the state database (`jobs` table) so any later script (`ssh.job(id)`) or
//! `baton jobs` finds them. A job whose runner is gone without an exit record is `lost` (a reboot, a
//! `kill -9`).
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};

use super::{Remote, RemoteError, env_and_cwd, quote, shell_text};
use crate::core::process::{Cmd, LineSink, LineTooLong, ProcessError, Spec, Stream};
use crate::core::state::State;

/// Schema of the job registry (`state.migrate("jobs", MIGRATIONS)`).
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        command TEXT NOT NULL,
        pid INTEGER NOT NULL,
        dir TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        code INTEGER,
        checked_at INTEGER NOT NULL
    )",
    // Issue 19: notify when the job ends (the daemon watches), run inside tmux, and whether its end was told.
    "ALTER TABLE jobs ADD COLUMN notify INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE jobs ADD COLUMN tmux INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE jobs ADD COLUMN notified INTEGER NOT NULL DEFAULT 0;",
    // Issue 31: the folder the job runs in (a resume finds its results there) and a short title that
    // notifications and listings use instead of the command.
    "ALTER TABLE jobs ADD COLUMN cwd TEXT;
     ALTER TABLE jobs ADD COLUMN title TEXT;",
];

/// Bound on each job housekeeping command (spawn, status, tail, kill).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a job's log read in one poll: a job that writes faster is read over several polls (with no
/// pause between them), never whole.
const LOG_CHUNK: u64 = 4 << 20;
const SPAWNED: &str = "__baton_job=";

/// A registered job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub host: String,
    pub command: String,
    pub pid: i64,
    /// The job's folder on the host (absolute).
    pub dir: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Last known status (as recorded in the registry).
    pub status: Status,
    /// Notify (fleet `notify`) when the job ends; the daemon watches it.
    pub notify: bool,
    /// Runs inside the tmux session [`Job::tmux_session`] on its host.
    pub tmux: bool,
    /// The folder the command runs in, as given (`~/x` is in the login folder; `None`: the login folder).
    pub cwd: Option<String>,
    /// A short name for notifications and listings (`end_of_day CI`), instead of the command.
    pub title: Option<String>,
}

/// How a job is started (`ssh.spawn` options beyond cwd and env).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOpts {
    pub notify: bool,
    pub tmux: bool,
    /// See [`Job::title`]: one line of at most [`TITLE_MAX`] characters.
    pub title: Option<String>,
}

/// The longest job title, in characters: it heads a notification on a phone.
pub const TITLE_MAX: usize = 80;

impl Job {
    pub fn log(&self) -> String {
        format!("{}/log", self.dir)
    }

    /// What to call the job: its title, else its id.
    pub fn name(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.id)
    }

    /// The tmux session of a `tmux = true` job: `baton-<id>`.
    pub fn tmux_session(&self) -> String {
        format!("baton-{}", self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Exited,
    Lost,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Exited => "exited",
            JobState::Lost => "lost",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "exited" => JobState::Exited,
            _ => JobState::Lost,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: JobState,
    pub code: Option<i32>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn registry(state: &State) -> Result<&State, RemoteError> {
    state.migrate("jobs", MIGRATIONS)?;
    Ok(state)
}

fn job_dir_expr(id: &str) -> String {
    format!("\"$HOME/.baton/jobs/{id}\"")
}

/// A new job id: local start time plus a random suffix (`20261121-105312-a3f9`); the runs' ids
/// ([`crate::core::runs::new_id`]) have a longer one.
fn new_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Local::now().format("%Y%m%d-%H%M%S"),
        fastrand::u16(..)
    )
}

const NO_TMUX: &str = "__baton_no_tmux";

/// The script that starts the runner in the background and reports its pid and folder.
#[cfg(test)]
fn spawn_script(id: &str, cmd: &Cmd, spec: &Spec) -> Result<String, RemoteError> {
    spawn_script_with(id, cmd, spec, false)
}

/// The runner inside tmux: the output goes to the pane and to the log (`tee`), the exit code through a file
/// (a POSIX pipeline gives only the last command's status).
const TMUX_RUNNER: &str = "d=$1; t() { s=$(date +%s.%N 2>/dev/null); case $s in *N*|'') s=$(date +%s);; esac; echo \"$s\" >\"$d/$1\"; }; \
                           t started; { \"${SHELL:-/bin/sh}\" -c \"$2\" 2>&1; echo \"$?\" >\"$d/code\"; } | tee -a \"$d/log\"; \
                           c=$(cat \"$d/code\" 2>/dev/null || echo 1); t ended; \
                           echo \"$c\" >\"$d/exit.tmp\" && mv \"$d/exit.tmp\" \"$d/exit\"";

fn spawn_script_with(id: &str, cmd: &Cmd, spec: &Spec, tmux: bool) -> Result<String, RemoteError> {
    if tmux {
        let command = shell_text(cmd)?;
        return Ok(format!(
            "d={dir}\nmkdir -p \"$d\" || exit 1\n: >\"$d/log\"\nprintf '%s\\n' {cmd} >\"$d/cmd\"\n{setup}\
             command -v tmux >/dev/null 2>&1 || {{ echo {NO_TMUX}; exit 3; }}\n\
             tmux new-session -d -s baton-{id} sh -c {runner} baton-job-{id} \"$d\" {cmd} || exit 1\n\
             p=$(tmux display-message -p -t baton-{id} '#{{pane_pid}}' 2>/dev/null)\n\
             [ -n \"$p\" ] || p=0\n\
             echo \"$p\" >\"$d/pid\"\necho \"{SPAWNED}$p $d\"\n",
            dir = job_dir_expr(id),
            cmd = quote(&command)?,
            setup = env_and_cwd(spec)?,
            runner = quote(TMUX_RUNNER)?,
        ));
    }
    let command = shell_text(cmd)?;
    // `started` and `ended` hold the wall clock with sub-second digits where `date` has `%N` (the
    // notification's duration), whole seconds elsewhere.
    let runner = "d=$1; t() { s=$(date +%s.%N 2>/dev/null); case $s in *N*|'') s=$(date +%s);; esac; echo \"$s\" >\"$d/$1\"; }; \
                  t started; \"${SHELL:-/bin/sh}\" -c \"$2\" >>\"$d/log\" 2>&1 </dev/null; c=$?; t ended; \
                  echo \"$c\" >\"$d/exit.tmp\" && mv \"$d/exit.tmp\" \"$d/exit\"";
    Ok(format!(
        "d={dir}\nmkdir -p \"$d\" || exit 1\n: >\"$d/log\"\nprintf '%s\\n' {cmd} >\"$d/cmd\"\n{setup}\
         nohup sh -c {runner} baton-job-{id} \"$d\" {cmd} >/dev/null 2>&1 </dev/null &\n\
         echo \"$!\" >\"$d/pid\"\necho \"{SPAWNED}$! $d\"\n",
        dir = job_dir_expr(id),
        cmd = quote(&command)?,
        setup = env_and_cwd(spec)?,
        runner = quote(runner)?,
    ))
}

/// Shell test for "the runner is still alive" (its pid exists and is still our runner, not a reused pid).
fn alive_test(job: &Job) -> String {
    format!(
        "ps -p {} -o args= 2>/dev/null | grep -q 'baton-job-{}'",
        job.pid, job.id
    )
}

fn status_script(job: &Job, log_offset: Option<u64>) -> String {
    let mut s = format!(
        "d={dir}\nif [ -f \"$d/exit\" ]; then echo \"exited $(cat \"$d/exit\")\"\n\
         elif {alive}; then echo running\n\
         elif [ -f \"$d/exit\" ]; then echo \"exited $(cat \"$d/exit\")\"\n\
         else echo lost; fi\n",
        dir = job_dir_expr(&job.id),
        alive = alive_test(job),
    );
    if let Some(offset) = log_offset {
        s.push_str(&format!(
            "[ -f \"$d/log\" ] && tail -c +{} \"$d/log\" | head -c {LOG_CHUNK}\n",
            offset + 1
        ));
    }
    s.push_str("exit 0\n");
    s
}

fn kill_script(job: &Job) -> String {
    format!(
        "d={dir}\ng=$(ps -o pgid= -p {pid} 2>/dev/null | tr -d ' ')\n\
         if [ -n \"$g\" ] && {alive}; then\n\
           kill -TERM -\"$g\" 2>/dev/null\n\
           i=0; while kill -0 -\"$g\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
           kill -KILL -\"$g\" 2>/dev/null\n\
           [ -f \"$d/exit\" ] || echo 143 >\"$d/exit\"\nfi\nexit 0\n",
        dir = job_dir_expr(&job.id),
        pid = job.pid,
        alive = alive_test(job),
    )
}

fn parse_status(line: &str) -> Status {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("running") => Status {
            state: JobState::Running,
            code: None,
        },
        Some("exited") => Status {
            state: JobState::Exited,
            code: words.next().and_then(|c| c.parse().ok()),
        },
        _ => Status {
            state: JobState::Lost,
            code: None,
        },
    }
}

async fn step(
    remote: &Remote,
    host: &str,
    script: &str,
    what: &str,
) -> Result<Vec<u8>, RemoteError> {
    let out = remote.script(host, script, STEP_TIMEOUT).await?;
    if !out.ok() {
        return Err(RemoteError::Job(format!(
            "{what}: {}",
            out.failure_summary()
        )));
    }
    Ok(out.stdout)
}

/// Starts `cmd` detached on `host` and registers it.
pub async fn spawn(
    remote: &Remote,
    state: &State,
    host: &str,
    cmd: &Cmd,
    spec: &Spec,
) -> Result<Job, RemoteError> {
    spawn_with(remote, state, host, cmd, spec, JobOpts::default()).await
}

/// [`spawn`] with `notify` (the daemon tells when it ends) and `tmux` (a tmux session on the host).
pub async fn spawn_with(
    remote: &Remote,
    state: &State,
    host: &str,
    cmd: &Cmd,
    spec: &Spec,
    opts: JobOpts,
) -> Result<Job, RemoteError> {
    if spec.stdin.is_some() || spec.timeout.is_some() {
        return Err(RemoteError::Invalid(
            "a detached job takes no stdin or timeout".into(),
        ));
    }
    if let Some(title) = &opts.title
        && (title.trim().is_empty()
            || title.chars().count() > TITLE_MAX
            || title.chars().any(char::is_control))
    {
        return Err(RemoteError::Invalid(format!(
            "title must be one line of 1 to {TITLE_MAX} characters, got {}",
            crate::core::text::quoted(title)
        )));
    }
    let id = new_id();
    let out = remote
        .script(
            host,
            &spawn_script_with(&id, cmd, spec, opts.tmux)?,
            STEP_TIMEOUT,
        )
        .await?;
    if String::from_utf8_lossy(&out.stdout).contains(NO_TMUX) {
        return Err(RemoteError::Job(format!(
            "tmux is not installed on host {host} (needed by tmux = true; install it there, or spawn without tmux)"
        )));
    }
    if !out.ok() {
        return Err(RemoteError::Job(format!(
            "cannot start the job: {}",
            out.failure_summary()
        )));
    }
    let stdout = out.stdout;
    let text = String::from_utf8_lossy(&stdout);
    let (pid, dir) = text
        .lines()
        .find_map(|l| l.strip_prefix(SPAWNED))
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(pid, dir)| Some((pid.parse::<i64>().ok()?, dir.to_string())))
        .ok_or_else(|| {
            RemoteError::Job(format!(
                "cannot start the job: unexpected reply {:?}",
                text.trim()
            ))
        })?;
    let job = Job {
        id,
        host: host.to_string(),
        command: shell_text(cmd)?,
        pid,
        dir,
        started_at: now(),
        status: Status {
            state: JobState::Running,
            code: None,
        },
        notify: opts.notify,
        tmux: opts.tmux,
        cwd: spec.cwd.as_ref().map(|c| c.to_string_lossy().into_owned()),
        title: opts.title,
    };
    let row = job.clone();
    registry(state)?
        .call(move |c| {
            c.execute(
                "INSERT INTO jobs(id, host, command, pid, dir, started_at, state, code, checked_at, notify, tmux,
                                  cwd, title)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', NULL, ?6, ?7, ?8, ?9, ?10)",
                params![
                    row.id,
                    row.host,
                    row.command,
                    row.pid,
                    row.dir,
                    row.started_at,
                    row.notify,
                    row.tmux,
                    row.cwd,
                    row.title
                ],
            )
        })
        .await?;
    Ok(job)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let state: String = r.get(6)?;
    Ok(Job {
        id: r.get(0)?,
        host: r.get(1)?,
        command: r.get(2)?,
        pid: r.get(3)?,
        dir: r.get(4)?,
        started_at: r.get(5)?,
        status: Status {
            state: JobState::parse(&state),
            code: r.get(7)?,
        },
        notify: r.get(8)?,
        tmux: r.get(9)?,
        cwd: r.get(10)?,
        title: r.get(11)?,
    })
}

const SELECT: &str = "SELECT id, host, command, pid, dir, started_at, state, code, notify, tmux, cwd, title FROM jobs";

/// A registered job by id.
pub fn get(state: &State, id: &str) -> Result<Job, RemoteError> {
    let found = registry(state)?.with(|c| {
        c.query_row(&format!("{SELECT} WHERE id = ?1"), [id], from_row)
            .optional()
    })?;
    found.ok_or_else(|| {
        RemoteError::Job(format!(
            "no job with id {} (see `baton jobs`)",
            crate::core::text::quoted(id)
        ))
    })
}

/// Every registered job, newest first.
pub fn list(state: &State) -> Result<Vec<Job>, RemoteError> {
    Ok(registry(state)?.with(|c| {
        let mut stmt = c.prepare(&format!("{SELECT} ORDER BY started_at DESC, id DESC"))?;
        stmt.query_map([], from_row)?.collect()
    })?)
}

/// Forgets jobs that ended (exited or lost); returns how many.
pub fn prune(state: &State) -> Result<usize, RemoteError> {
    Ok(registry(state)?.with(|c| c.execute("DELETE FROM jobs WHERE state != 'running'", []))?)
}

async fn record(state: &State, job: &mut Job, status: Status) -> Result<(), RemoteError> {
    job.status = status;
    let (id, name, code) = (job.id.clone(), status.state.name(), status.code);
    registry(state)?
        .call(move |c| {
            c.execute(
                "UPDATE jobs SET state = ?2, code = ?3, checked_at = ?4 WHERE id = ?1",
                params![id, name, code, now()],
            )
        })
        .await?;
    Ok(())
}

/// Reads the job's state on its host (and records it).
pub async fn status(remote: &Remote, state: &State, job: &mut Job) -> Result<Status, RemoteError> {
    let out = step(
        remote,
        &job.host,
        &status_script(job, None),
        "cannot read the job's status",
    )
    .await?;
    let status = parse_status(&String::from_utf8_lossy(&out));
    record(state, job, status).await?;
    Ok(status)
}

/// Waits until the job is no longer running, polling every `poll`, sending each new log line to `sink`.
/// The log is read [`LOG_CHUNK`] at a time, and only with a sink; a line longer than `max_line` bytes
/// stops the job and is an error ([`LineTooLong`]), so neither a long line nor a long log is held whole.
pub async fn wait(
    remote: &Remote,
    state: &State,
    job: &mut Job,
    poll: Duration,
    timeout: Option<Duration>,
    sink: Option<LineSink>,
    max_line: usize,
) -> Result<Status, RemoteError> {
    let started = Instant::now();
    // Lines already in the log when waiting starts are delivered too: the caller sees the whole output.
    let mut offset = 0u64;
    let mut partial = Vec::new();
    let mut lines = 0;
    loop {
        let out = step(
            remote,
            &job.host,
            &status_script(job, sink.as_ref().map(|_| offset)),
            "cannot read the job's status",
        )
        .await?;
        let (head, log) = match out.iter().position(|b| *b == b'\n') {
            Some(i) => (&out[..i], &out[i + 1..]),
            None => (&out[..], &[][..]),
        };
        let status = parse_status(&String::from_utf8_lossy(head));
        // A full chunk: more of the log may be waiting, read on at once (the status came first: a job
        // that ended has written all its log, but not all of it was read yet).
        let more = log.len() as u64 >= LOG_CHUNK;
        offset += log.len() as u64;
        if let Some(sink) = &sink {
            partial.extend_from_slice(log);
            let ended = status.state != JobState::Running && !more;
            let cut = if ended {
                partial.len()
            } else {
                partial
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
            };
            let complete: Vec<u8> = partial.drain(..cut).collect();
            let mut too_long = None;
            for line in String::from_utf8_lossy(&complete).lines() {
                lines += 1;
                if line.len() > max_line {
                    too_long = Some(lines);
                    break;
                }
                let _ = sink.send((Stream::Stdout, line.to_string())).await;
            }
            if too_long.is_none() && partial.len() > max_line {
                too_long = Some(lines + 1);
            }
            if let Some(line) = too_long {
                kill(remote, state, job).await?;
                return Err(ProcessError::LineTooLong(LineTooLong {
                    stream: Stream::Stdout,
                    line,
                    max: max_line,
                })
                .into());
            }
        }
        if status.state != JobState::Running && !more {
            record(state, job, status).await?;
            return Ok(status);
        }
        if let Some(limit) = timeout
            && started.elapsed() >= limit
        {
            record(state, job, status).await?;
            return Err(RemoteError::Job(format!(
                "job {} still running after {}",
                job.id,
                crate::core::duration::format(limit)
            )));
        }
        if more {
            continue;
        }
        let left = timeout.map_or(poll, |l| l.saturating_sub(started.elapsed()).min(poll));
        tokio::time::sleep(left).await;
    }
}

/// The last `n` lines of the job's log.
pub async fn tail(remote: &Remote, job: &Job, n: usize) -> Result<Vec<String>, RemoteError> {
    let script = format!(
        "d={}\n[ -f \"$d/log\" ] && tail -n {n} \"$d/log\"\nexit 0\n",
        job_dir_expr(&job.id)
    );
    let out = step(remote, &job.host, &script, "cannot read the job's log").await?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Stops the job's whole process group (TERM, then KILL after 5 s) and returns its final status.
pub async fn kill(remote: &Remote, state: &State, job: &mut Job) -> Result<Status, RemoteError> {
    step(remote, &job.host, &kill_script(job), "cannot kill the job").await?;
    status(remote, state, job).await
}

/// Every registered job, with the state of running ones re-read from their hosts (concurrently, at most
/// `timeout` each; an unreachable host keeps the last known state). For `baton jobs`.
pub async fn refresh(
    remote: &Remote,
    state: &State,
    timeout: Duration,
) -> Result<Vec<Job>, RemoteError> {
    let mut all = list(state)?;
    let checks = all
        .iter_mut()
        .filter(|j| j.status.state == JobState::Running)
        .map(|job| async move {
            let mut copy = job.clone();
            if let Ok(Ok(_)) = tokio::time::timeout(timeout, status(remote, state, &mut copy)).await
            {
                *job = copy;
            }
        });
    futures_util::future::join_all(checks).await;
    Ok(all)
}

#[cfg(test)]
impl Job {
    /// A job on host `brain` as the unit tests describe one.
    pub(crate) fn sample(
        id: &str,
        state: JobState,
        code: Option<i32>,
        started_at: i64,
        command: &str,
    ) -> Job {
        Job {
            id: id.into(),
            host: "brain".into(),
            command: command.into(),
            pid: 42,
            dir: format!("/home/u/.baton/jobs/{id}"),
            started_at,
            status: Status { state, code },
            notify: false,
            tmux: false,
            cwd: None,
            title: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: JobState, code: Option<i32>, started_at: i64) -> Job {
        Job::sample(id, state, code, started_at, "python train.py --epochs 3")
    }

    /// A titled job's notification is headed by its title and carries no command; an untitled one shows
    /// its command cut to one short line (a CI job's 1.2 KB of shell used to fill a phone's screen); the
    /// duration is the host's, to the millisecond (whole seconds made a 0.54 s job read "after 0ms").
    #[test]
    fn ended_messages_are_short_and_timed() {
        let ended = Ended {
            status: Status {
                state: JobState::Exited,
                code: Some(1),
            },
            took: ran_for(" 1733450000.120000000 1733450000.660000000"),
            tail: vec!["app: pass".into(), "lib: fail (exit 2)".into()],
        };
        let mut job = job("20261205-180000-a1b2", JobState::Exited, Some(1), 100);
        job.command = format!(
            "rc=0\n(\n{}\n) || rc=1\nexit $rc",
            "export X=1; ".repeat(100)
        );
        let plain = ended_message(&job, &ended, 200);
        assert_eq!(
            plain.title,
            "baton: job 20261205-180000-a1b2 on brain failed"
        );
        let first = plain.body.lines().next().unwrap();
        assert!(
            first.starts_with("$ rc=0 ( export X=1;") && first.chars().count() < 140,
            "{first}"
        );
        assert!(plain.body.contains("exit 1 after 540ms"), "{}", plain.body);
        job.title = Some("end_of_day CI (app, lib)".into());
        let titled = ended_message(&job, &ended, 200);
        assert_eq!(
            titled.title,
            "baton: end_of_day CI (app, lib) on brain failed"
        );
        assert_eq!(
            titled.body,
            "exit 1 after 540ms\n\napp: pass\nlib: fail (exit 2)"
        );
        // Without the runner's times (a job started by an older baton, or lost) the registry's start counts.
        let lost = Ended {
            took: None,
            ..ended
        };
        assert!(
            ended_message(&job, &lost, 160)
                .body
                .starts_with("exit 1 after 1m")
        );
        assert_eq!(ran_for(" 5"), None);
        assert_eq!(ran_for(" 5 7"), Some(Duration::from_secs(2)));
    }

    #[test]
    fn statuses_parse() {
        assert_eq!(
            parse_status("running\n"),
            Status {
                state: JobState::Running,
                code: None
            }
        );
        assert_eq!(
            parse_status("exited 3"),
            Status {
                state: JobState::Exited,
                code: Some(3)
            }
        );
        assert_eq!(
            parse_status("lost"),
            Status {
                state: JobState::Lost,
                code: None
            }
        );
    }

    #[test]
    fn spawn_script_quotes_the_command() {
        let s = spawn_script(
            "x-1",
            &Cmd::Argv(vec!["echo".into(), "a'b; rm -rf /".into()]),
            &Spec::default(),
        )
        .unwrap();
        assert!(s.contains("d=\"$HOME/.baton/jobs/x-1\""), "{s}");
        // The argv is quoted word by word, then the whole command once more for `sh -c`.
        let expected = r#"baton-job-x-1 "$d" "echo \"a'b; rm -rf /\"" >/dev/null"#;
        assert!(s.contains(expected), "{s}");
    }

    #[test]
    fn registry_round_trip() {
        let dir = crate::core::test_tmp().join(format!("baton-jobs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = State::new(&dir);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            registry(&state).unwrap();
            for j in [
                job("a", JobState::Running, None, 100),
                job("b", JobState::Exited, Some(0), 50),
            ] {
                let mut j2 = j.clone();
                state
                    .call(move |c| {
                        c.execute(
                            "INSERT INTO jobs(id, host, command, pid, dir, started_at, state, code, checked_at, notify)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', NULL, 0, ?7)",
                            params![j.id, j.host, j.command, j.pid, j.dir, j.started_at, j.id == "a"],
                        )
                    })
                    .await
                    .unwrap();
                let status = j2.status;
                record(&state, &mut j2, status).await.unwrap();
            }
        });
        assert_eq!(get(&state, "a").unwrap().status.state, JobState::Running);
        // Watched: running jobs with notify, until their end is told (once).
        let watched: Vec<String> = to_watch(&state)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(watched, ["a"]);
        assert!(get(&state, "a").unwrap().notify && !get(&state, "b").unwrap().notify);
        assert!(mark_notified(&state, "a").unwrap());
        assert!(!mark_notified(&state, "a").unwrap(), "told once");
        assert!(to_watch(&state).unwrap().is_empty());
        assert!(
            get(&state, "zz")
                .unwrap_err()
                .to_string()
                .contains("no job with id \"zz\"")
        );
        let listed = list(&state).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|j| (j.id.as_str(), j.status.state, j.status.code))
                .collect::<Vec<_>>(),
            [
                ("a", JobState::Running, None),
                ("b", JobState::Exited, Some(0))
            ]
        );
        assert_eq!(prune(&state).unwrap(), 1);
        assert_eq!(list(&state).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Running jobs with `notify` whose end has not been told yet (the daemon's watch list).
pub fn to_watch(state: &State) -> Result<Vec<Job>, RemoteError> {
    Ok(registry(state)?.with(|c| {
        let mut stmt = c.prepare(&format!(
            "{SELECT} WHERE notify = 1 AND notified = 0 ORDER BY started_at, id"
        ))?;
        stmt.query_map([], from_row)?.collect()
    })?)
}

/// Marks a job's end as told (so it is notified once, whoever noticed it).
pub fn mark_notified(state: &State, id: &str) -> Result<bool, RemoteError> {
    Ok(registry(state)?.with(|c| {
        c.execute(
            "UPDATE jobs SET notified = 1 WHERE id = ?1 AND notified = 0",
            [id],
        )
    })? == 1)
}

/// A job that ended, as the watcher tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub status: Status,
    /// How long the command ran, by the host's clock (sub-second where its `date` has `%N`); `None` for a
    /// job lost before it wrote its times.
    pub took: Option<Duration>,
    pub tail: Vec<String>,
}

/// One round trip: the job's state and, when it ended, how long it ran and the last `n` lines of its log.
pub async fn check_ended(
    remote: &Remote,
    state: &State,
    job: &mut Job,
    n: usize,
) -> Result<Option<Ended>, RemoteError> {
    let script = format!(
        "{}echo \"T $(cat \"$d/started\" 2>/dev/null) $(cat \"$d/ended\" 2>/dev/null)\"\n\
         [ -f \"$d/log\" ] && tail -n {n} \"$d/log\" | cut -c1-400\nexit 0\n",
        status_script(job, None).trim_end_matches("exit 0\n"),
    );
    let out = step(remote, &job.host, &script, "cannot read the job's status").await?;
    let text = String::from_utf8_lossy(&out);
    let mut lines = text.lines();
    let status = parse_status(lines.next().unwrap_or(""));
    record(state, job, status).await?;
    if status.state == JobState::Running {
        return Ok(None);
    }
    let mut rest: Vec<&str> = lines.collect();
    let took = match rest.first().and_then(|l| l.strip_prefix('T')) {
        Some(times) => {
            rest.remove(0);
            ran_for(times)
        }
        None => None,
    };
    Ok(Some(Ended {
        status,
        took,
        tail: rest.into_iter().map(str::to_string).collect(),
    }))
}

/// `STARTED ENDED` (seconds since the epoch, maybe with a fraction) → how long the job ran.
fn ran_for(times: &str) -> Option<Duration> {
    let mut t = times.split_whitespace().map(|w| w.parse::<f64>().ok());
    let (start, end) = (t.next()??, t.next()??);
    Duration::try_from_secs_f64(end - start).ok()
}

/// How often the daemon looks at watched jobs unless the fleet says otherwise (`notify.job_poll`).
pub const WATCH_POLL: Duration = Duration::from_secs(30);

/// The notification for a job that ended: headed by its title (else its id) and host; the body says how it
/// ended and how long it ran, then the log's last lines. An untitled job's command is shown too, cut to one
/// short line.
pub fn ended_message(job: &Job, ended: &Ended, now_unix: i64) -> crate::core::notify::Message {
    let (outcome, ok) = match (ended.status.state, ended.status.code) {
        (JobState::Exited, Some(code)) => (format!("exit {code}"), code == 0),
        (JobState::Exited, None) => ("exited (no code)".to_string(), false),
        _ => (
            "lost (its process is gone without an exit record)".to_string(),
            false,
        ),
    };
    let took = ended.took.unwrap_or_else(|| {
        Duration::from_secs(now_unix.saturating_sub(job.started_at).max(0) as u64)
    });
    let what = match &job.title {
        Some(title) => format!("{title} on {}", job.host),
        None => format!("job {} on {}", job.id, job.host),
    };
    let mut msg = crate::core::notify::ended_message(&what, &outcome, ok, took, &ended.tail);
    if job.title.is_none() {
        let command = job.command.split_whitespace().collect::<Vec<_>>().join(" ");
        msg.body = format!(
            "$ {}\n{}",
            crate::core::text::truncate(&command, COMMAND_SHOWN),
            msg.body
        );
    }
    msg
}

/// How much of an untitled job's command its notification shows, in characters.
const COMMAND_SHOWN: usize = 80;

/// One pass of the daemon's watch: every running job with `notify` is looked at on its host (concurrently,
/// each within `timeout`); those that ended are notified, once. Returns the ids notified. An unreachable
/// host is tried again on the next pass.
pub async fn watch_once(
    remote: &Remote,
    state: &State,
    notifier: &crate::core::notify::Notifier,
    timeout: Duration,
) -> Result<Vec<String>, RemoteError> {
    let jobs = to_watch(state)?;
    let checks = jobs.into_iter().map(|mut job| async move {
        let ended = match tokio::time::timeout(
            timeout,
            check_ended(remote, state, &mut job, crate::core::notify::TAIL_LINES),
        )
        .await
        {
            Ok(Ok(Some(ended))) => ended,
            Ok(Err(e)) => {
                tracing::debug!("watch: job {} on {}: {e}", job.id, job.host);
                return None;
            }
            _ => return None,
        };
        if !mark_notified(state, &job.id).ok()? {
            return None;
        }
        let msg = ended_message(&job, &ended, now());
        notifier
            .send(&msg, None, crate::core::notify::DEFAULT_TIMEOUT)
            .await
            .ok()?;
        Some(job.id)
    });
    Ok(futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect())
}

/// The daemon's watch loop: [`watch_once`] every `poll`, for as long as the future is polled.
pub async fn watch(
    remote: &Remote,
    state: &State,
    notifier: &crate::core::notify::Notifier,
    poll: Duration,
) {
    if notifier.channels().is_empty() {
        return std::future::pending().await;
    }
    loop {
        if let Err(e) = watch_once(remote, state, notifier, STEP_TIMEOUT).await {
            tracing::warn!("watching notified jobs: {e}");
        }
        tokio::time::sleep(poll).await;
    }
}

//! The ssh session pool: one multiplexed OpenSSH master per host (opened with the `openssh` crate on first
//! use, shared by every caller, closed by [`Pool::close_all`]) and commands run over it.
//!
//! - Sessions per master are bounded ([`SESSIONS_PER_MASTER`]) because sshd's default `MaxSessions` is 10;
//!   callers beyond the bound queue instead of failing.
//! - Every remote command starts with a one-line prologue that reports the remote shell's pid on stderr (the
//!   line is removed from the output). sshd makes each session's shell a process-group leader, so a timeout
//!   (or a dropped run) kills the whole remote process group over the master, not only the local client.
//! - Each command is a `ssh -S <control socket>` client run by baton itself rather than the crate's command
//!   wrapper, so exit codes come back unaltered (the crate turns 127 and 255 into errors).
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, Semaphore, watch};

use super::{RemoteError, SshDest, env_and_cwd, shell_text};
use crate::core::process::{self, Cmd, LineSink, Output, ProcessError, Spec, TIMEOUT_CODE};

/// Concurrent sessions baton opens on one master (sshd's default `MaxSessions` is 10; two stay free for
/// kills and the user's own tools).
pub const SESSIONS_PER_MASTER: usize = 8;
/// Time allowed to open a master connection unless the caller says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A master with no session for this long exits by itself (so a killed baton leaves nothing behind for long);
/// the pool reopens it when needed.
const IDLE_PERSIST_SECS: usize = 300;
/// Bound on the small housekeeping commands (kill, check).
const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(10);
const MARKER: &str = "__baton_pid=";

/// One open master connection.
pub struct Master {
    host: String,
    /// Declared before `session` so it is dropped first: kills still under way finish before the master
    /// closes.
    abandoned: Abandoned,
    session: Session,
    ctl: PathBuf,
    runs: Semaphore,
    kills: Semaphore,
}

impl Master {
    /// The control socket, for other OpenSSH clients (rsync's `-e ssh -S …`).
    pub fn control_path(&self) -> &Path {
        &self.ctl
    }

    /// Arguments for an OpenSSH client that reuses this master (followed by the placeholder destination and
    /// the remote command). `-p 9` makes a client whose master vanished fail instead of logging in anew.
    pub fn client_args(&self) -> Vec<String> {
        let mut args = vec!["-S".to_string(), self.ctl.to_string_lossy().into_owned()];
        for a in [
            "-F",
            "/dev/null",
            "-T",
            "-p",
            "9",
            "-o",
            "BatchMode=yes",
            "-o",
            "ControlMaster=no",
            "-o",
            "LogLevel=ERROR",
        ] {
            args.push(a.to_string());
        }
        args
    }

    /// `ssh <client args>` as one shell-quoted string (for rsync's `-e`).
    pub fn ssh_command_line(&self) -> Result<String, RemoteError> {
        let mut line = String::from("ssh");
        for a in self.client_args() {
            line.push(' ');
            line.push_str(&super::quote(&a)?);
        }
        Ok(line)
    }

    /// Waits for a free session slot on this master (queueing beyond [`SESSIONS_PER_MASTER`]).
    pub async fn slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.runs.acquire().await.expect("semaphore never closed")
    }

    fn client(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args(self.client_args()).arg("none");
        cmd
    }

    async fn alive(&self) -> bool {
        matches!(
            tokio::time::timeout(HOUSEKEEPING_TIMEOUT, self.session.check()).await,
            Ok(Ok(()))
        )
    }

    /// Whether the host answers over this master within `within`: a round trip (`exit 0`), not only the
    /// local mux process, which outlives a host gone to sleep (or whose sshd died) until its socket notices.
    async fn responds(&self, within: Duration) -> bool {
        let mut cmd = self.client();
        cmd.arg("exit 0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        matches!(
            tokio::time::timeout(within, cmd.status()).await,
            Ok(Ok(status)) if status.success()
        )
    }

    /// Kills the remote process group led by `pid`.
    async fn kill_group(&self, pid: i32) {
        let _permit = self.kills.acquire().await;
        let mut cmd = self.client();
        cmd.arg(kill_script(pid))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let _ = tokio::time::timeout(HOUSEKEEPING_TIMEOUT, cmd.status()).await;
    }

    /// Runs one prepared script; `None` when the remote shell never started (the master is unusable).
    /// `left` is what remains of `spec.timeout` once connected (a timeout still reports `spec.timeout`).
    async fn exec(
        &self,
        script: &str,
        spec: &Spec,
        left: Option<Duration>,
        sink: Option<LineSink>,
    ) -> Result<Exec, RemoteError> {
        let _permit = self.slot().await;
        let started = Instant::now();
        let mut client = self.client();
        let mut child = crate::core::process::piped(client.arg(script), spec)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: "ssh".into(),
                cause: source,
            })?;
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let stdin = child.stdin.take().zip(spec.stdin.clone());
        let (pid_tx, mut pid_rx) = watch::channel(None::<i32>);
        let (filtered, filter_in) = tokio::io::duplex(64 * 1024);
        let mut guard = RemoteGuard {
            master: self,
            pid: pid_rx.clone(),
            armed: true,
        };

        let mut timed_out = None;
        let collected = {
            // A failed read (a line over the bound) ends the work at once: the stderr copy would
            // otherwise wait for the command, which is killed below.
            let work = async {
                let ((), collected) = tokio::try_join!(
                    async {
                        let _ = strip_marker(stderr, filter_in, pid_tx).await;
                        Ok(())
                    },
                    process::collect(stdout, filtered, stdin, child.wait(), sink, spec.bounds())
                )?;
                Ok::<_, process::ReadError>(collected)
            };
            tokio::pin!(work);
            match left.zip(spec.timeout) {
                None => Some(work.as_mut().await),
                Some((left, limit)) => match tokio::time::timeout(left, work.as_mut()).await {
                    Ok(done) => Some(done),
                    Err(_) => {
                        timed_out = Some(limit);
                        // The pid line may not be read yet (a loaded machine, a slow start): keep the
                        // readers going while waiting for it, or the kill never comes.
                        let mut ended = None;
                        let wait_pid =
                            async { pid_rx.wait_for(Option::is_some).await.ok().and_then(|p| *p) };
                        let pid = tokio::time::timeout(Duration::from_secs(3), async {
                            tokio::select! {
                                pid = wait_pid => pid,
                                done = work.as_mut() => {
                                    ended = Some(done);
                                    None
                                }
                            }
                        })
                        .await;
                        if let Ok(Some(pid)) = pid {
                            self.kill_group(pid).await;
                        }
                        // With the remote group gone the session ends and the output read so far arrives.
                        match ended {
                            Some(done) => Some(done),
                            None => tokio::time::timeout(Duration::from_secs(5), work.as_mut())
                                .await
                                .ok(),
                        }
                    }
                },
            }
        };
        guard.armed = false;
        drop(guard);
        let mut output = Output {
            duration: started.elapsed(),
            ..Output::default()
        };
        let started_remote = pid_rx.borrow().is_some();

        match collected {
            Some(Ok((out, err, status))) => {
                output.stdout = out;
                output.stderr = err;
                output.set_status(status);
            }
            Some(Err(e)) => {
                // The command is stopped on the host, not left writing into a closed session.
                let pid = *pid_rx.borrow();
                if let Some(pid) = pid_to_kill(true, pid) {
                    self.kill_group(pid).await;
                }
                let _ = child.start_kill();
                return Err(e.running("ssh").into());
            }
            None => {
                let _ = child.start_kill();
            }
        }
        if let Some(limit) = timed_out {
            output.code = Some(TIMEOUT_CODE);
            output.signal = None;
            output.timed_out = Some(limit);
            return Ok(Exec::Done(output));
        }
        if output.code == Some(255) || output.signal.is_some() {
            if !started_remote {
                return Ok(Exec::NotStarted(remote_tail(&output.stderr)));
            }
            if !self.alive().await {
                let tail = remote_tail(&output.stderr);
                return Err(RemoteError::Disconnected(if tail.is_empty() {
                    "the ssh connection closed".into()
                } else {
                    tail
                }));
            }
        }
        Ok(Exec::Done(output))
    }
}

/// The last lines of a remote stderr for an error, control characters escaped.
fn remote_tail(stderr: &[u8]) -> String {
    crate::core::text::escape(&process::tail_lines(stderr, 3)).into_owned()
}

enum Exec {
    Done(Output),
    /// The ssh client could not open a session (stderr tail).
    NotStarted(String),
}

/// Kills the remote process group if a run is abandoned (its future dropped) before the command ended.
struct RemoteGuard<'a> {
    master: &'a Master,
    pid: watch::Receiver<Option<i32>>,
    armed: bool,
}

impl Drop for RemoteGuard<'_> {
    fn drop(&mut self) {
        let read = *self.pid.borrow();
        let Some(pid) = pid_to_kill(self.armed, read) else {
            return;
        };
        // A dropped future cannot await: start the kill now, and let the master wait for it before closing.
        let mut cmd = std::process::Command::new("ssh");
        cmd.args(self.master.client_args())
            .arg("none")
            .arg(kill_script(pid))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(child) = cmd.spawn() {
            self.master.abandoned.push(child);
        }
    }
}

/// Kill commands started for abandoned runs; waited for (at most 5 s) when dropped.
#[derive(Default)]
struct Abandoned(std::sync::Mutex<Vec<std::process::Child>>);

impl Abandoned {
    fn push(&self, child: std::process::Child) {
        let mut kids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kids.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        kids.push(child);
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let kids = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + HOUSEKEEPING_TIMEOUT / 2;
        for child in kids.iter_mut() {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The remote process group an abandoned run must kill: only once the run's own pid line was read (no pid,
/// no kill: an unknown pid must never become `kill -KILL -…` of something else), and never 0 or 1 (`kill -1`
/// would be every process of the user).
fn pid_to_kill(armed: bool, pid: Option<i32>) -> Option<i32> {
    pid.filter(|p| armed && *p > 1)
}

fn kill_script(pid: i32) -> String {
    format!("kill -KILL -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null; exit 0")
}

/// Copies `stderr` to `out`, removing the prologue's pid line and publishing the pid.
async fn strip_marker<R, W>(
    stderr: R,
    mut out: W,
    pid: watch::Sender<Option<i32>>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::with_capacity(64 * 1024, stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return out.shutdown().await;
        }
        if let Some(found) = parse_marker(&line) {
            pid.send_replace(Some(found));
            break;
        }
        out.write_all(&line).await?;
    }
    tokio::io::copy_buf(&mut reader, &mut out).await?;
    out.shutdown().await
}

fn parse_marker(line: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    text.strip_prefix(MARKER)?.parse().ok().filter(|p| *p > 1)
}

/// The script sent to the remote shell: the pid prologue, environment and directory, then the command.
pub fn remote_script(cmd: &Cmd, spec: &Spec) -> Result<String, RemoteError> {
    let exec = if matches!(cmd, Cmd::Argv(_)) {
        "exec "
    } else {
        ""
    };
    Ok(format!(
        "echo {MARKER}$$ >&2\n{}{exec}{}",
        env_and_cwd(spec)?,
        shell_text(cmd)?
    ))
}

/// A host's master, if open; its lock serialises connecting.
type Slot = Arc<Mutex<HostState>>;

/// A host's connection state. A failed connect is kept so that callers who queued behind the attempt get its
/// error at once instead of each retrying (50 coroutines on a dead host must not wait 50 connect timeouts).
#[derive(Default)]
struct HostState {
    master: Option<Arc<Master>>,
    failed: Option<(Instant, RemoteError)>,
}

/// Masters by fleet host name. Each host has its own lock so one slow connect does not block other hosts,
/// and 50 callers racing for a new host open exactly one master.
#[derive(Default)]
pub struct Pool {
    hosts: std::sync::Mutex<HashMap<String, Slot>>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    fn entry(&self, host: &str) -> Slot {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.entry(host.to_string()).or_default().clone()
    }

    /// The host's master, opened now if there is none.
    pub async fn master(
        &self,
        dest: &SshDest,
        timeout: Duration,
    ) -> Result<Arc<Master>, RemoteError> {
        let entry = self.entry(&dest.host);
        let queued_at = Instant::now();
        let mut slot = entry.lock().await;
        if let Some(master) = &slot.master {
            return Ok(master.clone());
        }
        if let Some((at, err)) = &slot.failed
            && *at >= queued_at
        {
            return Err(copy_connect_error(err));
        }
        match connect(dest, timeout).await {
            Ok(master) => {
                let master = Arc::new(master);
                *slot = HostState {
                    master: Some(master.clone()),
                    failed: None,
                };
                Ok(master)
            }
            Err(err) => {
                slot.failed = Some((Instant::now(), copy_connect_error(&err)));
                Err(err)
            }
        }
    }

    /// Forgets `master` if it is still the host's current one (it is closed when the last user drops it).
    async fn forget(&self, host: &str, master: &Arc<Master>) {
        let entry = self.entry(host);
        let mut slot = entry.lock().await;
        if slot.master.as_ref().is_some_and(|m| Arc::ptr_eq(m, master)) {
            slot.master = None;
        }
    }

    /// A live master for `dest`: the open one if the host still answers through it, else a new one.
    pub async fn checked_master(
        &self,
        dest: &SshDest,
        timeout: Duration,
    ) -> Result<Arc<Master>, RemoteError> {
        let master = self.master(dest, timeout).await?;
        if master.responds(timeout.min(HOUSEKEEPING_TIMEOUT)).await {
            return Ok(master);
        }
        self.forget(&dest.host, &master).await;
        self.master(dest, timeout).await
    }

    /// Connects (or checks the open master) within `timeout`.
    pub async fn probe(&self, dest: &SshDest, timeout: Duration) -> Result<(), RemoteError> {
        tokio::time::timeout(
            timeout + Duration::from_secs(1),
            self.checked_master(dest, timeout),
        )
        .await
        .map_err(|_| RemoteError::ConnectTimeout {
            after: timeout,
            detail: dest.dest.clone(),
        })?
        .map(|_| ())
    }

    /// Runs a command over the host's master; a master that died is reopened once if the command had not
    /// started. Connecting counts against `spec.timeout` (and takes at most [`CONNECT_TIMEOUT`]).
    pub async fn run(
        &self,
        dest: &SshDest,
        cmd: &Cmd,
        spec: &Spec,
        sink: Option<LineSink>,
    ) -> Result<Output, RemoteError> {
        let script = remote_script(cmd, spec)?;
        let started = Instant::now();
        let left = || spec.timeout.map(|t| t.saturating_sub(started.elapsed()));
        let mut retried = false;
        loop {
            let connect = left().map_or(CONNECT_TIMEOUT, |l| l.min(CONNECT_TIMEOUT));
            // Also bounds the wait behind another caller's connect to the same host.
            let master = tokio::time::timeout(connect, self.master(dest, connect))
                .await
                .map_err(|_| RemoteError::ConnectTimeout {
                    after: connect,
                    detail: dest.dest.clone(),
                })??;
            match master.exec(&script, spec, left(), sink.clone()).await? {
                Exec::Done(output) => return Ok(output),
                Exec::NotStarted(why) => {
                    let alive = master.alive().await;
                    if !alive {
                        self.forget(&dest.host, &master).await;
                    }
                    if retried {
                        return Err(RemoteError::Disconnected(why));
                    }
                    retried = true;
                    if alive {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    /// Closes every master.
    pub async fn close_all(&self) {
        let entries: Vec<_> = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            hosts.drain().map(|(_, e)| e).collect()
        };
        for entry in entries {
            if let Some(master) = entry.lock().await.master.take()
                && let Ok(master) = Arc::try_unwrap(master)
            {
                let Master {
                    abandoned, session, ..
                } = master;
                drop(abandoned);
                let _ = tokio::time::timeout(HOUSEKEEPING_TIMEOUT, session.close()).await;
            }
        }
    }
}

/// A copy of a connection error (they carry only text) for callers that queued behind the failed attempt.
fn copy_connect_error(err: &RemoteError) -> RemoteError {
    match err {
        RemoteError::Resolve(m) => RemoteError::Resolve(m.clone()),
        RemoteError::Refused(m) => RemoteError::Refused(m.clone()),
        RemoteError::Auth(m) => RemoteError::Auth(m.clone()),
        RemoteError::HostKeyMismatch(m) => RemoteError::HostKeyMismatch(m.clone()),
        RemoteError::HostKeyUnknown(m) => RemoteError::HostKeyUnknown(m.clone()),
        RemoteError::ConnectTimeout { after, detail } => RemoteError::ConnectTimeout {
            after: *after,
            detail: detail.clone(),
        },
        other => RemoteError::Connect(other.to_string()),
    }
}

/// The private directory holding control sockets (short path: sockets have a length limit).
fn control_dir() -> Result<PathBuf, RemoteError> {
    use std::os::unix::fs::DirBuilderExt;
    let uid = rustix::process::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("baton-ssh-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
        Err(e) => Err(RemoteError::Connect(format!(
            "control directory {}: {e}",
            dir.display()
        ))),
    }
}

/// Opens a master connection to `dest`.
async fn connect(dest: &SshDest, timeout: Duration) -> Result<Master, RemoteError> {
    // The fleet refuses such destinations at load; this guards any other way in (the openssh crate puts
    // the destination on ssh's command line without a `--`).
    if let Some(why) = crate::core::fleet::destination_problem(&dest.dest) {
        return Err(RemoteError::Invalid(why));
    }
    let mut builder = SessionBuilder::default();
    builder
        .known_hosts_check(if dest.accept_new {
            KnownHosts::Add
        } else {
            KnownHosts::Strict
        })
        .connect_timeout(timeout.max(Duration::from_secs(1)))
        .server_alive_interval(Duration::from_secs(10))
        .control_directory(control_dir()?)
        .control_persist(ControlPersist::IdleFor(
            NonZeroUsize::new(IDLE_PERSIST_SECS).expect("non-zero"),
        ));
    if let Some(config) = &dest.config {
        builder.config_file(config);
    }
    // ssh's ConnectTimeout (whole seconds, at least 1) also bounds the banner exchange; this bounds the rest.
    let session = match tokio::time::timeout(
        timeout.max(Duration::from_secs(1)),
        builder.connect(&dest.dest),
    )
    .await
    {
        Err(_) => {
            return Err(RemoteError::ConnectTimeout {
                after: timeout,
                detail: dest.dest.clone(),
            });
        }
        Ok(Err(e)) => return Err(classify(&e, timeout)),
        Ok(Ok(session)) => session,
    };
    let ctl = session.control_socket().to_path_buf();
    Ok(Master {
        host: dest.host.clone(),
        session,
        ctl,
        abandoned: Abandoned::default(),
        runs: Semaphore::new(SESSIONS_PER_MASTER),
        kills: Semaphore::new(2),
    })
}

/// Turns OpenSSH's words into a cause.
fn classify(err: &openssh::Error, timeout: Duration) -> RemoteError {
    let text = match err {
        openssh::Error::Connect(e) | openssh::Error::Master(e) => e.to_string(),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    };
    classify_text(&crate::core::text::escape(&text), timeout)
}

fn classify_text(text: &str, timeout: Duration) -> RemoteError {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@') && !l.starts_with("Warning: Permanently"))
        .collect();
    let last = lines
        .last()
        .copied()
        .unwrap_or("no message from ssh")
        .to_string();
    let has = |needle: &str| text.contains(needle);
    if has("HOST IDENTIFICATION HAS CHANGED") || (has("Host key for") && has("has changed")) {
        let detail: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| {
                l.starts_with("Offending")
                    || l.starts_with("Host key for")
                    || l.starts_with("SHA256:")
            })
            .collect();
        return RemoteError::HostKeyMismatch(detail.join("; "));
    }
    if has("you have requested strict checking") || has("Host key verification failed") {
        return RemoteError::HostKeyUnknown(lines.join("; "));
    }
    if has("Could not resolve hostname") {
        return RemoteError::Resolve(last);
    }
    if has("Connection refused") {
        return RemoteError::Refused(last);
    }
    if has("Permission denied (") || has("Too many authentication failures") {
        return RemoteError::Auth(last);
    }
    if has("timed out") {
        return RemoteError::ConnectTimeout {
            after: timeout,
            detail: last,
        };
    }
    RemoteError::Connect(last)
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("host", &self.host)
            .field("ctl", &self.ctl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_parse() {
        assert_eq!(parse_marker(b"__baton_pid=1234\n"), Some(1234));
        assert_eq!(parse_marker(b"__baton_pid=x\n"), None);
        assert_eq!(parse_marker(b"hello\n"), None);
        // Never a pid whose group kill would reach other processes.
        assert_eq!(parse_marker(b"__baton_pid=1\n"), None);
        assert_eq!(parse_marker(b"__baton_pid=0\n"), None);
        assert_eq!(parse_marker(b"__baton_pid=-1\n"), None);
    }

    #[test]
    fn an_abandoned_run_is_killed_only_once_its_pid_was_read() {
        assert_eq!(pid_to_kill(true, None), None, "pid not read yet: no kill");
        assert_eq!(
            pid_to_kill(false, Some(4242)),
            None,
            "run finished: no kill"
        );
        assert_eq!(pid_to_kill(true, Some(1)), None);
        assert_eq!(pid_to_kill(true, Some(4242)), Some(4242));
    }

    #[test]
    fn script_has_prologue_env_cwd_and_quoted_argv() {
        let spec = Spec {
            env: vec![("X".into(), "1 2".into())],
            cwd: Some("/srv".into()),
            ..Spec::default()
        };
        let s = remote_script(&Cmd::Argv(vec!["echo".into(), "$(id)".into()]), &spec).unwrap();
        assert_eq!(
            s,
            "echo __baton_pid=$$ >&2\nexport X='1 2'\ncd /srv || exit 1\nexec echo '$(id)'"
        );
        let s = remote_script(&Cmd::Shell("ls | wc -l".into()), &Spec::default()).unwrap();
        assert!(s.ends_with("\nls | wc -l"));
    }

    #[test]
    fn ssh_messages_are_classified() {
        let t = Duration::from_secs(5);
        let mismatch = "@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@\nIT IS POSSIBLE\n\
                        SHA256:abc.\nOffending ED25519 key in /k/known_hosts:1\nHost key for h0 has changed and you have requested strict checking.\nHost key verification failed.";
        let e = classify_text(mismatch, t);
        assert!(matches!(e, RemoteError::HostKeyMismatch(_)), "{e}");
        assert!(
            e.to_string()
                .contains("Offending ED25519 key in /k/known_hosts:1"),
            "{e}"
        );
        let unknown = "No ED25519 host key is known for h0 and you have requested strict checking.\nHost key verification failed.";
        assert!(matches!(
            classify_text(unknown, t),
            RemoteError::HostKeyUnknown(_)
        ));
        let e = classify_text(
            "ssh: Could not resolve hostname nope: Name or service not known",
            t,
        );
        assert!(matches!(e, RemoteError::Resolve(_)));
        assert!(matches!(
            classify_text("connect to host 127.0.0.1 port 1: Connection refused", t),
            RemoteError::Refused(_)
        ));
        assert!(matches!(
            classify_text("root@127.0.0.1: Permission denied (publickey).", t),
            RemoteError::Auth(_)
        ));
        assert!(matches!(
            classify_text("connect to host x port 22: Connection timed out", t),
            RemoteError::ConnectTimeout { .. }
        ));
    }
}

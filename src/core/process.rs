//! Local processes with one result shape shared by every runner (local and remote):
//! `{ok, code, signal, stdout, stderr, duration}`, live line delivery, and a timeout that kills the whole
//! process group and reports code 124.
//!
//! Lines delivered live are bounded ([`Spec::max_line`], default [`DEFAULT_MAX_LINE`]): a longer line is
//! found while it is read (at most two bytes past the bound are held), the command is stopped and the run
//! fails with [`LineTooLong`] — never unbounded memory for an endless line.
use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Exit code reported when a command was stopped by its timeout (as coreutils' `timeout` does).
pub const TIMEOUT_CODE: i32 = 124;

/// The longest line (bytes, without its line ending) delivered to a [`LineSink`] unless [`Spec::max_line`]
/// says otherwise: far above any line a person or a progress display writes, low enough that one line
/// never costs more than a few tens of MiB (it is held twice: as bytes and as the text sent).
pub const DEFAULT_MAX_LINE: usize = 16 << 20;

/// The most of one stream (stdout or stderr) kept for a command's result unless [`Spec::max_output`] says
/// otherwise: a command that prints without end (`yes`, a runaway log) is stopped there, never holding
/// baton's memory without bound.
pub const DEFAULT_MAX_OUTPUT: u64 = 128 << 20;

/// What one stream of a command may hold: its longest live line and its whole kept output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub line: usize,
    pub output: u64,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            line: DEFAULT_MAX_LINE,
            output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// What to run: a string for `sh -c`, or an argv list run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Shell(String),
    Argv(Vec<String>),
}

impl Cmd {
    /// A short description for error messages.
    pub fn display(&self) -> String {
        match self {
            Cmd::Shell(s) => s.clone(),
            Cmd::Argv(v) => v.join(" "),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub cwd: Option<PathBuf>,
    /// Merged over the inherited environment.
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    /// The longest line delivered live to a [`LineSink`] (none: [`DEFAULT_MAX_LINE`]); a longer one stops
    /// the command with [`LineTooLong`]. Output read without a sink is not split into lines.
    pub max_line: Option<usize>,
    /// The most of stdout, and of stderr, kept for the result (none: [`DEFAULT_MAX_OUTPUT`]); more stops
    /// the command with [`OutputTooLarge`].
    pub max_output: Option<u64>,
}

impl Spec {
    /// [`Spec::max_line`] or its default.
    pub fn max_line(&self) -> usize {
        self.max_line.unwrap_or(DEFAULT_MAX_LINE)
    }

    /// The line and output bounds in effect.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            line: self.max_line(),
            output: self.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
        }
    }
}

/// Which stream a live line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Receives each output line (without its line ending) as it arrives, stdout and stderr interleaved in
/// arrival order.
pub type LineSink = mpsc::Sender<(Stream, String)>;

/// A finished process, local or remote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
    pub timed_out: Option<Duration>,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn set_status(&mut self, status: ExitStatus) {
        use std::os::unix::process::ExitStatusExt;
        self.code = status.code();
        self.signal = status.signal();
    }

    /// `exit 2: <last lines of stderr>`, `killed by signal 9`, `timed out after 5s`.
    pub fn failure_summary(&self) -> String {
        let head = if let Some(limit) = self.timed_out {
            format!("timed out after {}", crate::core::duration::format(limit))
        } else if let Some(sig) = self.signal {
            format!("killed by signal {sig}")
        } else {
            format!("exit {}", self.code.unwrap_or(-1))
        };
        // The stderr may come from another machine: control characters are escaped.
        let tail = crate::core::text::escape(&tail_lines(&self.stderr, 5)).into_owned();
        if tail.is_empty() {
            head
        } else {
            format!("{head}: {tail}")
        }
    }
}

/// The last `n` non-empty lines of `bytes`, joined with `\n`, at most 2000 bytes.
pub fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if out.len() > 2000 {
        let cut = out.len() - 2000;
        let cut = (cut..out.len())
            .find(|i| out.is_char_boundary(*i))
            .unwrap_or(out.len());
        out = format!("…{}", &out[cut..]);
    }
    out
}

/// A line of output over its bound, found while reading it: `stdout line 4 is longer than 8 MiB, …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} line {line} is longer than {}, the bound on one line of output: the command was stopped",
    stream.name(),
    crate::core::text::size(*max)
)]
pub struct LineTooLong {
    pub stream: Stream,
    /// 1-based, counted on that stream.
    pub line: usize,
    pub max: usize,
}

/// A stream of output over its bound: `stdout is over 128 MiB, …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is over {}, the bound on what one command's output may hold: the command was stopped (send it \
     to a file and read the part you need)",
    stream.name(),
    crate::core::text::size(*max as usize)
)]
pub struct OutputTooLarge {
    pub stream: Stream,
    pub max: u64,
}

/// Why reading a child's output stopped: the pipe failed, or a line went over its bound.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    LineTooLong(#[from] LineTooLong),
    #[error(transparent)]
    OutputTooLarge(#[from] OutputTooLarge),
}

impl ReadError {
    /// The error of running `program` that this read failure ends.
    pub fn running(self, program: &str) -> ProcessError {
        match self {
            ReadError::Io(cause) => ProcessError::Io {
                program: program.into(),
                cause,
            },
            ReadError::LineTooLong(l) => ProcessError::LineTooLong(l),
            ReadError::OutputTooLarge(o) => ProcessError::OutputTooLarge(o),
        }
    }
}

/// Messages carry their cause in full (it is not also a `source()`, which `{:#}` would print again).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {}: {cause}", crate::core::text::shown(program))]
    Spawn {
        program: String,
        cause: std::io::Error,
    },
    #[error("empty command")]
    Empty,
    #[error("i/o error while running {program}: {cause}")]
    Io {
        program: String,
        cause: std::io::Error,
    },
    /// Not a source either: the message is the whole story.
    #[error("{0}")]
    LineTooLong(LineTooLong),
    #[error("{0}")]
    OutputTooLarge(OutputTooLarge),
}

/// Reads one stream to the end, handing every chunk of bytes to `keep` and each line (without its line
/// ending) to `sink` as it arrives. A line longer than `bounds.line` bytes (its ending not counted) is an
/// error once at most `bounds.line + 2` bytes of it are read (what was read is kept); so is a stream that
/// passes `bounds.output` bytes (what passes the bound is not kept): the caller stops the process.
pub async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    stream: Stream,
    sink: Option<LineSink>,
    bounds: Bounds,
    mut keep: impl FnMut(&[u8]),
) -> Result<(), ReadError> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut total: u64 = 0;
    let mut keep_within = |bytes: &[u8]| -> Result<(), ReadError> {
        total = total.saturating_add(bytes.len() as u64);
        if total > bounds.output {
            return Err(OutputTooLarge {
                stream,
                max: bounds.output,
            }
            .into());
        }
        keep(bytes);
        Ok(())
    };
    let Some(sink) = sink else {
        loop {
            let chunk = reader.fill_buf().await?;
            if chunk.is_empty() {
                return Ok(());
            }
            keep_within(chunk)?;
            let n = chunk.len();
            reader.consume(n);
        }
    };
    // At most the bound and two bytes more per read: a `\r\n` ending, or the proof the line is too long.
    let limit = u64::try_from(bounds.line)
        .unwrap_or(u64::MAX)
        .saturating_add(2);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?
            == 0
        {
            return Ok(());
        }
        n += 1;
        keep_within(&line)?;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > bounds.line {
            return Err(LineTooLong {
                stream,
                line: n,
                max: bounds.line,
            }
            .into());
        }
        // A receiver that went away only stops live delivery; the output is still collected.
        let _ = sink
            .send((stream, String::from_utf8_lossy(text).into_owned()))
            .await;
    }
}

/// Reads one stream to the end into a buffer (within `bounds`), sending each line to `sink`.
pub async fn read_stream<R: AsyncRead + Unpin>(
    reader: R,
    stream: Stream,
    sink: Option<LineSink>,
    bounds: Bounds,
) -> Result<Vec<u8>, ReadError> {
    let mut all = Vec::new();
    pump(reader, stream, sink, bounds, |bytes| {
        all.extend_from_slice(bytes)
    })
    .await?;
    Ok(all)
}

/// Writes `data` to a child's stdin and closes it. A command that does not read its input closes the pipe
/// early: that is not an error.
pub async fn feed_stdin<W: tokio::io::AsyncWrite + Unpin>(stdin: Option<(W, Vec<u8>)>) {
    if let Some((mut w, data)) = stdin {
        let _ = w.write_all(&data).await;
        let _ = w.shutdown().await;
    }
}

/// Collects stdout and stderr (and feeds stdin) while `wait` runs; shared by local and remote runners. The
/// first failure (a line or a stream over its bound, a pipe error) ends it at once, dropping the other readers and
/// the wait: the caller then stops the process.
pub async fn collect<O, E, W, F>(
    stdout: O,
    stderr: E,
    stdin: Option<(W, Vec<u8>)>,
    wait: F,
    sink: Option<LineSink>,
    bounds: Bounds,
) -> Result<(Vec<u8>, Vec<u8>, ExitStatus), ReadError>
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
    F: Future<Output = std::io::Result<ExitStatus>>,
{
    let (out, err, status, ()) = tokio::try_join!(
        read_stream(stdout, Stream::Stdout, sink.clone(), bounds),
        read_stream(stderr, Stream::Stderr, sink, bounds),
        async { Ok(wait.await?) },
        async {
            feed_stdin(stdin).await;
            Ok(())
        }
    )?;
    Ok((out, err, status))
}

/// Output piped, stdin piped only when `spec` has input, and the child killed if its handle is dropped:
/// how every runner (local or over ssh) starts a process.
pub fn piped<'a>(
    cmd: &'a mut tokio::process::Command,
    spec: &Spec,
) -> &'a mut tokio::process::Command {
    cmd.stdin(if spec.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
}

/// Kills the process group when dropped unless disarmed: a cancelled or timed-out run leaves nothing behind.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take().and_then(rustix::process::Pid::from_raw) {
            // The group may be gone already; there is nothing left to do then.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a local process. A timeout kills the process group and yields code 124 with what was read so far;
/// a line over [`Spec::max_line`] or a stream over [`Spec::max_output`] kills it too and is an error.
pub async fn run(cmd: &Cmd, spec: &Spec, sink: Option<LineSink>) -> Result<Output, ProcessError> {
    let (program, args): (String, Vec<String>) = match cmd {
        Cmd::Shell(s) => ("sh".into(), vec!["-c".into(), s.clone()]),
        Cmd::Argv(v) => {
            let (first, rest) = v.split_first().ok_or(ProcessError::Empty)?;
            (first.clone(), rest.to_vec())
        }
    };
    let mut command = tokio::process::Command::new(&program);
    piped(command.args(&args), spec).process_group(0);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    for (k, v) in &spec.env {
        command.env(k, v);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        cause: source,
    })?;
    let mut guard = GroupGuard {
        pgid: child.id().map(|p| p as i32),
    };
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    let stdin = child.stdin.take().zip(spec.stdin.clone());

    // Output is gathered into buffers that survive a timeout, so a timed-out run still reports what it printed.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
    let bounds = spec.bounds();
    let forward = |stream: Stream, reader: Box<dyn AsyncRead + Unpin + Send>| {
        let out_tx = out_tx.clone();
        let sink = sink.clone();
        async move {
            pump(reader, stream, sink, bounds, |bytes| {
                let _ = out_tx.send((stream, bytes.to_vec()));
            })
            .await
        }
    };
    // The first failure (a line over the bound) ends the work: the group is killed below.
    let work = async {
        let ((), (), (), status) = tokio::try_join!(
            forward(Stream::Stdout, Box::new(stdout)),
            forward(Stream::Stderr, Box::new(stderr)),
            async {
                feed_stdin(stdin).await;
                Ok(())
            },
            async { Ok(child.wait().await?) }
        )?;
        Ok::<_, ReadError>(status)
    };
    let result = match spec.timeout {
        Some(limit) => tokio::time::timeout(limit, work).await.ok(),
        None => Some(work.await),
    };
    let mut output = Output::default();
    match result {
        Some(Err(e)) => {
            guard.kill();
            return Err(e.running(&program));
        }
        Some(Ok(status)) => {
            output.set_status(status);
            // The leader is gone; stray background children of a finished command are not ours to kill.
            guard.pgid = None;
        }
        None => {
            guard.kill();
            output.code = Some(TIMEOUT_CODE);
            output.timed_out = spec.timeout;
        }
    }
    drop(out_tx);
    while let Ok((stream, bytes)) = out_rx.try_recv() {
        match stream {
            Stream::Stdout => output.stdout.extend_from_slice(&bytes),
            Stream::Stderr => output.stderr.extend_from_slice(&bytes),
        }
    }
    output.duration = started.elapsed();
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn shell_and_argv() {
        rt().block_on(async {
            let out = run(
                &Cmd::Shell("echo hi; echo err >&2; exit 3".into()),
                &Spec::default(),
                None,
            )
            .await
            .unwrap();
            assert_eq!(out.code, Some(3));
            assert_eq!(out.stdout, b"hi\n");
            assert_eq!(out.stderr, b"err\n");
            assert_eq!(out.failure_summary(), "exit 3: err");
            let out = run(
                &Cmd::Argv(vec!["printf".into(), "%s".into(), "$(x) ;".into()]),
                &Spec::default(),
                None,
            )
            .await
            .unwrap();
            assert_eq!(out.stdout, b"$(x) ;");
            assert!(out.ok());
        });
    }

    #[test]
    fn timeout_kills_group_and_keeps_output() {
        rt().block_on(async {
            let spec = Spec {
                timeout: Some(Duration::from_millis(300)),
                ..Default::default()
            };
            let out = run(
                &Cmd::Shell("echo started; sleep 30 & sleep 30".into()),
                &spec,
                None,
            )
            .await
            .unwrap();
            assert_eq!(out.code, Some(TIMEOUT_CODE));
            assert_eq!(out.stdout, b"started\n");
            assert!(out.failure_summary().starts_with("timed out after 300ms"));
        });
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        rt().block_on(async {
            let err = run(
                &Cmd::Argv(vec!["/nonexistent/prog".into()]),
                &Spec::default(),
                None,
            )
            .await
            .unwrap_err();
            assert!(
                err.to_string().contains("cannot start /nonexistent/prog"),
                "{err}"
            );
        });
    }

    /// A stream over its output bound stops at the bound: what passed it is not kept.
    #[test]
    fn a_stream_over_its_output_bound_is_an_error() {
        rt().block_on(async {
            let bounds = Bounds {
                line: 1 << 20,
                output: 10,
            };
            for sink in [None, Some(mpsc::channel(16).0)] {
                let mut kept = Vec::new();
                let err = pump(
                    &b"12345\n67890\nabc\n"[..],
                    Stream::Stdout,
                    sink,
                    bounds,
                    |b| kept.extend_from_slice(b),
                )
                .await
                .unwrap_err();
                assert!(matches!(
                    err,
                    ReadError::OutputTooLarge(OutputTooLarge {
                        stream: Stream::Stdout,
                        max: 10
                    })
                ));
                assert!(kept.len() <= 10, "{kept:?}");
                assert!(
                    err.to_string().starts_with(
                        "stdout is over 10 bytes, the bound on what one command's output may hold"
                    ),
                    "{err}"
                );
            }
            let mut kept = Vec::new();
            pump(&b"12345\n678\n"[..], Stream::Stdout, None, bounds, |b| {
                kept.extend_from_slice(b)
            })
            .await
            .unwrap();
            assert_eq!(kept, b"12345\n678\n");
        });
    }

    /// Lines up to the bound are delivered (with or without their ending); the first longer one is an
    /// error naming its stream and number, found after reading one byte past the bound.
    #[test]
    fn a_line_over_the_bound_is_an_error() {
        rt().block_on(async {
            let (tx, mut rx) = mpsc::channel(16);
            let input: &[u8] = b"abcd\r\nxy\nabcdefgh\nnever read\n";
            let mut kept = Vec::new();
            let err = pump(input, Stream::Stderr, Some(tx), Bounds { line: 4, output: u64::MAX }, |b| {
                kept.extend_from_slice(b)
            })
            .await
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "stderr line 3 is longer than 4 bytes, the bound on one line of output: the command was stopped"
            );
            assert!(matches!(
                err,
                ReadError::LineTooLong(LineTooLong {
                    stream: Stream::Stderr,
                    line: 3,
                    max: 4
                })
            ));
            assert_eq!(kept, b"abcd\r\nxy\nabcdef");
            let mut lines = Vec::new();
            while let Ok((_, l)) = rx.try_recv() {
                lines.push(l);
            }
            assert_eq!(lines, ["abcd", "xy"]);
            let (tx, _rx) = mpsc::channel(16);
            pump(&b"abcd\nwxyz"[..], Stream::Stdout, Some(tx), Bounds { line: 4, output: u64::MAX }, |_| {})
                .await
                .unwrap();
            for over in [&b"abcde"[..], b"abcde\r\n", b"abcd\r\r\n"] {
                let (tx, _rx) = mpsc::channel(16);
                let e = pump(over, Stream::Stdout, Some(tx), Bounds { line: 4, output: u64::MAX }, |_| {}).await;
                assert!(matches!(e, Err(ReadError::LineTooLong(_))), "{over:?}");
            }
        });
    }

    /// An endless line without a newline stops the command (its group killed) instead of filling memory,
    /// locally; the error says which line and the bound.
    #[test]
    fn an_endless_line_stops_the_command() {
        rt().block_on(async {
            let (tx, _rx) = mpsc::channel(16);
            let spec = Spec {
                max_line: Some(1 << 20),
                timeout: Some(Duration::from_secs(60)),
                ..Default::default()
            };
            let started = Instant::now();
            let err = run(
                &Cmd::Shell("echo first; tr -d '\\n' < /dev/zero".into()),
                &spec,
                Some(tx),
            )
            .await
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "stdout line 2 is longer than 1 MiB, the bound on one line of output: the command was stopped"
            );
            assert!(started.elapsed() < Duration::from_secs(30));
        });
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines(b"a\nb\n\nc\nd\ne\nf\ng\n", 3), "e\nf\ng");
    }
}

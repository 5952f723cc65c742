//! Safe rsync between this machine and a fleet host, over the host's existing ssh master (rsync's `-e` is an
//! `ssh -S <control socket>` client, so there is no second login), or locally for `local` hosts.
//!
//! Safety rules (checked before anything is changed):
//! - a source root that is missing or empty while `delete` is set and the destination is not empty: refused;
//! - with `delete`, a dry run first counts deletions; more than `max_delete`: refused;
//! - a destination of `/` or the home folder itself with `delete`: refused;
//! - `backup` (default on) keeps every overwritten or deleted file under `.baton-backup/<timestamp>/` at the
//!   destination root; `.baton-backup/` itself is never transferred nor deleted.
//!
//! Ignore files, read from the source root only: the `ignore_file` (default `.batonignore`) holds rsync
//! patterns, one per line (`- pat`/`+ pat` prefixes allowed, `#` comments); a `.stignore` (Syncthing) is
//! translated: `pat` → exclude, `!pat` → include, `//` comments dropped, `(?d)` prefix dropped; `(?i)` and
//! `#include` have no rsync equivalent and are refused rather than silently ignored (an ignored exclude could
//! let `delete` remove files the user meant to keep).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::process::Stdio;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::{
    Remote, RemoteError, Target, expand_home, login_relative, quote, quote_path, remote_path,
};
use crate::core::process::{self, Cmd, Output, ProcessError, Spec};

/// Seconds without any data after which rsync gives up (its `--timeout`).
const IO_TIMEOUT_SECS: u32 = 120;
/// Bound on the small probes (does the source exist, where is home).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
pub const BACKUP_DIR: &str = ".baton-backup";

/// The backup folder of one sync: local time to the millisecond, then this process and a counter, so two
/// syncs in the same second (or from two processes) never share a folder and overwrite each other's
/// backups.
fn backup_stamp() -> String {
    static SYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}-{}-{n}",
        chrono::Local::now().format("%Y%m%d-%H%M%S%.3f"),
        std::process::id()
    )
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncOpts {
    pub exclude: Vec<String>,
    pub ignore_file: String,
    pub delete: bool,
    pub backup: bool,
    pub dry_run: bool,
    pub checksum: bool,
    pub compress: bool,
    pub max_delete: usize,
    /// What happens to symbolic links inside the source tree (Lua: `links`).
    pub links: Links,
}

/// Symbolic links inside the transferred tree (the source root itself is always followed when it is a
/// link; resolve it first, e.g. with `sync.realpath`, to check where it leads). Links are never followed
/// (no `--copy-links`): a link is sent as a link, or not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Links {
    /// Sent as links, wherever they point (rsync `-a`).
    #[default]
    Keep,
    /// Links that stay inside the tree are sent; absolute links and links leading out of the tree are
    /// skipped (rsync `--safe-links`), so the destination never gains a way out of its root.
    Safe,
    /// No links at all (rsync `--no-links`).
    Skip,
}

impl Default for SyncOpts {
    fn default() -> Self {
        SyncOpts {
            exclude: Vec::new(),
            ignore_file: ".batonignore".into(),
            delete: false,
            backup: true,
            dry_run: false,
            checksum: false,
            compress: false,
            max_delete: 100,
            links: Links::Keep,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to the transfer root; directories end with `/`.
    pub path: String,
    pub action: Action,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResult {
    pub changes: Vec<Change>,
    /// Regular files transferred.
    pub files: u64,
    /// Bytes of file content transferred.
    pub bytes: u64,
    pub dry_run: bool,
    pub duration: Duration,
}

/// One side of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Local(PathBuf),
    /// A fleet host (not this machine) and a path there.
    Host {
        host: String,
        path: String,
    },
}

/// A local path as rsync must see it: a relative path gets `./` in front, so neither a leading `-` (an
/// option) nor a `name:` before the first `/` (a remote host) can change what it means.
pub fn local_arg(p: &Path) -> String {
    let s = p.display().to_string();
    if p.is_absolute() || s.starts_with("./") {
        s
    } else {
        format!("./{s}")
    }
}

/// Where `path` really is on `host` (`local` for this machine): an absolute path with every symbolic link
/// followed, resolved on the host where it lives by a fixed script (`realpath -- PATH`, the path passed as
/// one quoted word); `~` is that host's home, a relative path is relative to it (to the current folder
/// here). A missing path is an error, unless `missing_ok`: then its nearest existing ancestor is resolved
/// and the missing part (which may hold no `.` or `..`) appended. A dangling link counts as existing, so
/// the answer is where a write would really land.
pub async fn realpath(
    remote: &Remote,
    host: &str,
    path: &str,
    missing_ok: bool,
) -> Result<String, RemoteError> {
    let safe = remote_path(path);
    let p = if path.is_empty() {
        ".".into()
    } else {
        quote_path(&safe)?
    };
    let walk = if missing_ok {
        "while [ ! -e \"$p\" ] && [ ! -L \"$p\" ]; do\n\
           b=$(basename -- \"$p\"); case $b in .|..|/) echo \"has . or .. in its missing part\" >&2; exit 3;; esac\n\
           rest=/$b$rest; p=$(dirname -- \"$p\")\n\
         done\n"
    } else {
        "if [ ! -e \"$p\" ] && [ ! -L \"$p\" ]; then echo \"no such file or folder\" >&2; exit 3; fi\n"
    };
    let script = format!(
        "p={p}\nrest=\n{walk}r=$(realpath -- \"$p\") || exit 3\nprintf '%s%s\\n' \"$r\" \"$rest\"\n"
    );
    let out = remote.script(host, &script, PROBE_TIMEOUT).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.strip_suffix('\n').unwrap_or(&text);
    if !out.ok() || !line.starts_with('/') || line.contains('\n') {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(RemoteError::Sync(format!(
            "cannot resolve {path:?}: {}",
            if why.is_empty() {
                out.failure_summary()
            } else {
                crate::core::text::escape(&why).into_owned()
            }
        )));
    }
    Ok(line.to_string())
}

/// `host:path` → (host, path); `None` when there is no host part.
pub fn split_host_path(spec: &str) -> Option<(&str, &str)> {
    let (host, path) = spec.split_once(':')?;
    (!host.is_empty() && !host.contains('/')).then_some((host, path))
}

impl Endpoint {
    /// A fleet `host:path`; hosts that are this machine become local paths (`~/` is expanded).
    pub fn remote(remote: &Remote, host: &str, path: &str) -> Result<Endpoint, RemoteError> {
        Ok(match remote.target(host)? {
            Target::Local => Endpoint::Local(expand_home(path)),
            Target::Ssh(_) => Endpoint::Host {
                host: host.to_string(),
                path: remote_path(path),
            },
        })
    }

    fn display(&self) -> String {
        match self {
            Endpoint::Local(p) => p.display().to_string(),
            Endpoint::Host { host, path } => format!("{host}:{path}"),
        }
    }
}

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Missing,
    EmptyDir,
    Dir,
    File,
}

/// Probes `endpoint` and tells whether it is `/` or the home folder itself (after resolving links).
async fn probe(remote: &Remote, endpoint: &Endpoint) -> Result<(Probe, bool), RemoteError> {
    match endpoint {
        Endpoint::Local(p) => {
            let kind = match std::fs::metadata(p) {
                Err(_) => Probe::Missing,
                Ok(m) if m.is_dir() => {
                    let empty = std::fs::read_dir(p)
                        .map(|mut it| it.next().is_none())
                        .unwrap_or(false);
                    if empty { Probe::EmptyDir } else { Probe::Dir }
                }
                Ok(_) => Probe::File,
            };
            let resolved = std::fs::canonicalize(p).ok();
            let home = std::fs::canonicalize(crate::core::state::home_dir()).ok();
            let special = resolved
                .as_deref()
                .is_some_and(|r| r == Path::new("/") || Some(r) == home.as_deref());
            Ok((kind, special))
        }
        Endpoint::Host { host, path } => {
            let p = if path.is_empty() {
                "~".into()
            } else {
                quote_path(path)?
            };
            let script = format!(
                "p={p}\nif [ -d \"$p\" ]; then if [ -z \"$(ls -A \"$p\" 2>/dev/null)\" ]; then echo empty; else echo dir; fi\n\
                 elif [ -e \"$p\" ]; then echo file; else echo missing; fi\n\
                 r=$(cd \"$p\" 2>/dev/null && pwd -P); h=$(cd ~ && pwd -P)\n\
                 if [ -n \"$r\" ] && {{ [ \"$r\" = / ] || [ \"$r\" = \"$h\" ]; }}; then echo special; fi\n"
            );
            let out = remote.script(host, &script, PROBE_TIMEOUT).await?;
            if !out.ok() {
                return Err(RemoteError::Sync(format!(
                    "cannot inspect {}: {}",
                    endpoint.display(),
                    out.failure_summary()
                )));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let kind = match text.lines().next().unwrap_or("") {
                "empty" => Probe::EmptyDir,
                "dir" => Probe::Dir,
                "file" => Probe::File,
                _ => Probe::Missing,
            };
            Ok((kind, text.lines().any(|l| l == "special")))
        }
    }
}

/// Reads files in the source root (`None` for a missing one), in one round trip for a host.
async fn read_source_files(
    remote: &Remote,
    src: &Endpoint,
    names: &[&str],
) -> Result<Vec<Option<String>>, RemoteError> {
    let (host, path) = match src {
        Endpoint::Local(p) => {
            return Ok(names
                .iter()
                .map(|n| std::fs::read_to_string(p.join(n)).ok())
                .collect());
        }
        Endpoint::Host { host, path } => (host, path),
    };
    let dir = if path.is_empty() {
        "~".into()
    } else {
        quote_path(path)?
    };
    // Each file as its byte count on a line, then its bytes; -1 when absent.
    let mut script = format!("d={dir}\n");
    for name in names {
        script.push_str(&format!(
            "f=\"$d\"/{}; if [ -f \"$f\" ]; then wc -c <\"$f\" | tr -d ' '; cat \"$f\"; else echo -1; fi\n",
            quote(name)?
        ));
    }
    let out = remote.script(host, &script, PROBE_TIMEOUT).await?;
    if !out.ok() {
        return Err(RemoteError::Sync(format!(
            "cannot read ignore files in {}: {}",
            src.display(),
            out.failure_summary()
        )));
    }
    let mut rest = out.stdout.as_slice();
    let mut files = Vec::new();
    for _ in names {
        let nl = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let len: i64 = String::from_utf8_lossy(&rest[..nl])
            .trim()
            .parse()
            .unwrap_or(-1);
        rest = rest.get(nl + 1..).unwrap_or_default();
        if len < 0 {
            files.push(None);
            continue;
        }
        let n = (len as usize).min(rest.len());
        files.push(Some(String::from_utf8_lossy(&rest[..n]).into_owned()));
        rest = &rest[n..];
    }
    Ok(files)
}

/// `.batonignore` lines as rsync filter rules.
pub fn batonignore_rules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            if l.starts_with("- ") || l.starts_with("+ ") {
                l.to_string()
            } else {
                format!("- {l}")
            }
        })
        .collect()
}

/// A `.stignore` line rsync cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".stignore line {line}: {reason}")]
pub struct StignoreError {
    pub line: usize,
    pub reason: &'static str,
}

/// Syncthing `.stignore` lines as rsync filter rules.
pub fn stignore_rules(text: &str) -> Result<Vec<String>, StignoreError> {
    let mut rules = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if line.starts_with("#include") {
            return Err(StignoreError {
                line: n + 1,
                reason: "#include is not supported; list the patterns directly",
            });
        }
        let mut pat = line;
        loop {
            if let Some(rest) = pat.strip_prefix("(?d)") {
                pat = rest;
            } else if pat.starts_with("(?i)") {
                return Err(StignoreError {
                    line: n + 1,
                    reason: "(?i) (case-insensitive) has no rsync equivalent",
                });
            } else {
                break;
            }
        }
        match pat.strip_prefix('!') {
            Some(include) => rules.push(format!("+ {include}")),
            None => rules.push(format!("- {pat}")),
        }
    }
    Ok(rules)
}

/// A progress report from rsync's `--info=progress2` (whole transfer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes transferred so far.
    pub bytes: u64,
    pub percent: u8,
    /// `31.25MB/s`.
    pub rate: String,
    /// Estimated time left (`0:00:03`).
    pub eta: String,
}

/// `     32,768  15%   31.25MB/s    0:00:03 (xfr#1, to-chk=5/7)` → a [`Progress`].
pub fn parse_progress(segment: &str) -> Option<Progress> {
    let mut words = segment.split_whitespace();
    let bytes = words.next()?.replace(',', "").parse().ok()?;
    let percent = words.next()?.strip_suffix('%')?.parse().ok()?;
    let rate = words.next()?.to_string();
    let eta = words.next()?.to_string();
    rate.ends_with("/s").then_some(Progress {
        bytes,
        percent,
        rate,
        eta,
    })
}

/// Copies rsync's stdout to `out` unchanged while sending each `\r`-terminated progress segment to `sink`.
async fn split_progress<R, W>(
    stdout: R,
    mut out: W,
    sink: mpsc::Sender<Progress>,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stdout = stdout;
    let mut buf = vec![0u8; 64 * 1024];
    let mut segment = Vec::new();
    // The latest report a full channel could not take: delivered at the end, so the final figure is never lost.
    let mut pending = None;
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            if let Some(p) = pending {
                let _ = sink.send(p).await;
            }
            return out.shutdown().await;
        }
        out.write_all(&buf[..n]).await?;
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                if let Some(p) = parse_progress(&String::from_utf8_lossy(&segment)) {
                    pending = sink.try_send(p).err().map(|e| e.into_inner());
                }
                segment.clear();
            } else {
                segment.push(b);
            }
        }
    }
}

/// Runs rsync; with a progress sink, asks for `--info=progress2` and reports it while collecting the output.
async fn run_rsync(
    mut argv: Vec<String>,
    progress: Option<mpsc::Sender<Progress>>,
) -> Result<Output, RemoteError> {
    let Some(sink) = progress else {
        return Ok(process::run(&Cmd::Argv(argv), &Spec::default(), None).await?);
    };
    argv.insert(1, "--info=progress2".into());
    let started = Instant::now();
    let io_err = |source| ProcessError::Io {
        program: "rsync".into(),
        cause: source,
    };
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            program: "rsync".into(),
            cause: source,
        })?;
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    let (copied, copy_in) = tokio::io::duplex(64 * 1024);
    let no_stdin: Option<(tokio::process::ChildStdin, Vec<u8>)> = None;
    let (split, collected) = tokio::join!(
        split_progress(stdout, copy_in, sink),
        process::collect(
            copied,
            stderr,
            no_stdin,
            child.wait(),
            None,
            process::Bounds::default()
        )
    );
    split.map_err(io_err)?;
    let (stdout, stderr, status) = collected.map_err(|e| e.running("rsync"))?;
    let mut out = Output {
        stdout,
        stderr,
        duration: started.elapsed(),
        ..Output::default()
    };
    out.set_status(status);
    Ok(out)
}

/// One parsed line of rsync's `--out-format=%i|%l|%n`.
pub fn parse_change(line: &str) -> Option<Change> {
    let mut parts = line.splitn(3, '|');
    let (item, size, name) = (parts.next()?, parts.next()?, parts.next()?);
    // The transfer root itself (`./`) is not a change to report.
    if item.len() != 11 || name == "./" {
        return None;
    }
    let size = size.trim().parse().ok()?;
    let action = if item.starts_with("*deleting") {
        Action::Delete
    } else if item[2..].bytes().all(|b| b == b'+') {
        Action::Create
    } else if matches!(item.as_bytes()[0], b'<' | b'>' | b'c' | b'h') {
        Action::Update
    } else {
        return None; // attributes only (`.d..t......`)
    };
    Some(Change {
        path: unescape(name),
        action,
        size,
    })
}

/// Undoes rsync's `\#ooo` escapes of unprintable bytes in names.
fn unescape(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'#'))
            .then(|| bytes.get(i + 2..i + 5))
            .flatten()
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        if let Some(v) = escaped {
            out.push(v);
            i += 5;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Number of regular files transferred: 1,234` → 1234.
fn stat(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or(0)
}

fn parse_output(stdout: &[u8]) -> (Vec<Change>, u64, u64) {
    let text = String::from_utf8_lossy(stdout);
    let changes = text.lines().filter_map(parse_change).collect();
    (
        changes,
        stat(&text, "Number of regular files transferred"),
        stat(&text, "Total transferred file size"),
    )
}

/// Copies `src` to `dst` with the safety rules above. One side must be this machine. `progress` receives
/// reports from the real transfer (not from the dry run that counts deletions).
pub async fn sync(
    remote: &Remote,
    src: &Endpoint,
    dst: &Endpoint,
    opts: &SyncOpts,
    progress: Option<mpsc::Sender<Progress>>,
) -> Result<SyncResult, RemoteError> {
    let started = Instant::now();
    let host = match (src, dst) {
        (Endpoint::Host { .. }, Endpoint::Host { .. }) => {
            return Err(RemoteError::Invalid(
                "one side of a sync must be this machine".into(),
            ));
        }
        (Endpoint::Host { host, .. }, _) | (_, Endpoint::Host { host, .. }) => Some(host.clone()),
        _ => None,
    };
    let (src_kind, _) = probe(remote, src).await?;
    // The destination only matters for the delete refusals (saves a round trip otherwise).
    let (dst_kind, dst_special) = if opts.delete {
        probe(remote, dst).await?
    } else {
        (Probe::Dir, false)
    };
    if opts.delete {
        if dst_special {
            return Err(RemoteError::Sync(format!(
                "refusing to sync with delete into {} (it is / or the home folder itself)",
                dst.display()
            )));
        }
        if matches!(src_kind, Probe::Missing | Probe::EmptyDir)
            && matches!(dst_kind, Probe::Dir | Probe::File)
        {
            let what = if src_kind == Probe::Missing {
                "missing"
            } else {
                "empty"
            };
            return Err(RemoteError::Sync(format!(
                "refusing to sync with delete: source {} is {what} and destination {} is not empty",
                src.display(),
                dst.display()
            )));
        }
    }
    if src_kind == Probe::Missing {
        return Err(RemoteError::Sync(format!(
            "source {} does not exist",
            src.display()
        )));
    }
    let filters = filter_rules(remote, src, src_kind, opts).await?;
    let filter_file = FilterFile::write(&filters)?;
    let master = match &host {
        Some(h) => match remote.target(h)? {
            Target::Ssh(dest) => Some(
                remote
                    .pool()
                    .master(&dest, super::ssh::CONNECT_TIMEOUT)
                    .await?,
            ),
            Target::Local => None,
        },
        None => None,
    };
    let stamp = backup_stamp();
    let ssh_e = master.as_ref().map(|m| m.ssh_command_line()).transpose()?;
    let argv = |dry_run: bool| {
        let mut a: Vec<String> = [
            "rsync",
            "-a",
            "-8",
            "-s",
            "--out-format=%i|%l|%n",
            "--stats",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        a.push(format!("--timeout={IO_TIMEOUT_SECS}"));
        a.push(format!("--exclude=/{BACKUP_DIR}/"));
        a.push(format!("--exclude-from={}", filter_file.path.display()));
        if opts.delete {
            // Deletions after the transfer: nothing is deleted when the transfer fails half-way, and
            // rsync's generator (backing up what it deletes) no longer races its receiver (backing up what
            // it replaces) to create the backup folder, which failed one run in five with "make_backup
            // failed: File exists".
            a.push("--delete-delay".into());
        }
        if opts.backup {
            a.push("--backup".into());
            a.push(format!("--backup-dir={BACKUP_DIR}/{stamp}"));
        }
        if opts.checksum {
            a.push("--checksum".into());
        }
        if opts.compress {
            a.push("--compress".into());
        }
        if dry_run {
            a.push("--dry-run".into());
        }
        match opts.links {
            Links::Keep => {}
            Links::Safe => a.push("--safe-links".into()),
            Links::Skip => a.push("--no-links".into()),
        }
        if let Some(e) = &ssh_e {
            a.push("-e".into());
            a.push(e.clone());
        }
        let side = |e: &Endpoint, is_src: bool| match e {
            Endpoint::Local(p) => {
                let mut s = local_arg(p);
                if is_src && src_kind != Probe::File && !s.ends_with('/') {
                    s.push('/');
                }
                s
            }
            Endpoint::Host { path, .. } => {
                let mut s = login_relative(path);
                if is_src && src_kind != Probe::File && !s.ends_with('/') {
                    s.push('/');
                }
                format!("none:{s}")
            }
        };
        // The paths are never options: `--` ends them, and a relative local path is written `./…` (a
        // leading `-` or a `host:` part before any `/` would otherwise change its meaning).
        a.push("--".into());
        a.push(side(src, true));
        a.push(side(dst, false));
        a
    };
    let run = async |dry_run: bool, progress| -> Result<(Vec<Change>, u64, u64), RemoteError> {
        let _slot = match &master {
            Some(m) => Some(m.slot().await),
            None => None,
        };
        let out = run_rsync(argv(dry_run), progress).await?;
        if !out.ok() {
            return Err(RemoteError::Sync(format!(
                "rsync {} → {}: {}",
                src.display(),
                dst.display(),
                out.failure_summary()
            )));
        }
        Ok(parse_output(&out.stdout))
    };
    if opts.delete && !opts.dry_run {
        let (planned, _, _) = run(true, None).await?;
        let deletions = planned
            .iter()
            .filter(|c| c.action == Action::Delete)
            .count();
        if deletions > opts.max_delete {
            return Err(RemoteError::Sync(format!(
                "refusing to delete {deletions} files in {} (max_delete = {}); nothing was changed",
                dst.display(),
                opts.max_delete
            )));
        }
    }
    let (changes, files, bytes) = run(opts.dry_run, progress).await?;
    Ok(SyncResult {
        changes,
        files,
        bytes,
        dry_run: opts.dry_run,
        duration: started.elapsed(),
    })
}

async fn filter_rules(
    remote: &Remote,
    src: &Endpoint,
    kind: Probe,
    opts: &SyncOpts,
) -> Result<Vec<String>, RemoteError> {
    let mut rules: Vec<String> = opts.exclude.iter().map(|p| format!("- {p}")).collect();
    if kind != Probe::Dir {
        return Ok(rules);
    }
    let mut names = vec![".stignore"];
    if !opts.ignore_file.is_empty() && opts.ignore_file != ".stignore" {
        names.insert(0, opts.ignore_file.as_str());
    }
    let files = read_source_files(remote, src, &names).await?;
    for (name, text) in names.iter().zip(files) {
        let Some(text) = text else { continue };
        if *name == ".stignore" {
            rules.extend(stignore_rules(&text).map_err(|e| RemoteError::Sync(e.to_string()))?);
        } else {
            rules.extend(batonignore_rules(&text));
        }
    }
    Ok(rules)
}

/// A private temporary file holding filter rules, removed on drop.
struct FilterFile {
    path: PathBuf,
}

impl FilterFile {
    fn write(rules: &[String]) -> Result<FilterFile, RemoteError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!(
            "baton-filter-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                RemoteError::Sync(format!("cannot write filter file {}: {e}", path.display()))
            })?;
        let text: String = rules.iter().map(|r| format!("{r}\n")).collect();
        f.write_all(text.as_bytes())
            .map_err(|e| RemoteError::Sync(format!("cannot write filter file: {e}")))?;
        Ok(FilterFile { path })
    }
}

impl Drop for FilterFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn backup_stamps_never_repeat() {
        let a = backup_stamp();
        let b = backup_stamp();
        assert_ne!(a, b);
        assert!(
            a.starts_with(&chrono::Local::now().format("%Y%m%d-").to_string()),
            "{a}"
        );
    }

    use super::*;

    #[test]
    fn itemized_lines_parse() {
        let c = |p: &str, a, s| {
            Some(Change {
                path: p.into(),
                action: a,
                size: s,
            })
        };
        assert_eq!(parse_change(">f+++++++++|2|a"), c("a", Action::Create, 2));
        assert_eq!(
            parse_change("<f.st......|10|dir/b c"),
            c("dir/b c", Action::Update, 10)
        );
        assert_eq!(
            parse_change("*deleting  |0|old"),
            c("old", Action::Delete, 0)
        );
        assert_eq!(
            parse_change("cd+++++++++|4096|d/"),
            c("d/", Action::Create, 4096)
        );
        assert_eq!(
            parse_change(">f+++++++++|1|d/we|ird\\#012name"),
            c("d/we|ird\nname", Action::Create, 1)
        );
        assert_eq!(parse_change(".d..t......|4096|./"), None);
        assert_eq!(parse_change("cd+++++++++|4096|./"), None);
        assert_eq!(parse_change("Number of files: 4 (reg: 2, dir: 2)"), None);
        let (_, files, bytes) = parse_output(b"Number of regular files transferred: 1,234\nTotal transferred file size: 20,000 bytes\n");
        assert_eq!((files, bytes), (1234, 20000));
        let p =
            parse_progress("     32,768  15%   31.25MB/s    0:00:03 (xfr#1, to-chk=5/7)").unwrap();
        assert_eq!(
            (p.bytes, p.percent, p.rate.as_str(), p.eta.as_str()),
            (32768, 15, "31.25MB/s", "0:00:03")
        );
        assert_eq!(parse_progress(">f+++++++++|2|a"), None);
    }

    #[test]
    fn ignore_files_translate() {
        assert_eq!(
            batonignore_rules("# c\nnode_modules/\n\n+ keep\n*.pt\n"),
            ["- node_modules/", "+ keep", "- *.pt"]
        );
        assert_eq!(
            stignore_rules("// comment\n.venv\n!important.bin\n(?d).DS_Store\n/build\n**/*.ckpt\n")
                .unwrap(),
            [
                "- .venv",
                "+ important.bin",
                "- .DS_Store",
                "- /build",
                "- **/*.ckpt"
            ]
        );
        assert!(
            stignore_rules("(?i)foo")
                .unwrap_err()
                .to_string()
                .contains("line 1: (?i)")
        );
        assert!(
            stignore_rules("a\n#include other")
                .unwrap_err()
                .to_string()
                .contains("line 2: #include")
        );
    }

    #[test]
    fn host_paths_split() {
        assert_eq!(split_host_path("brain:~/code"), Some(("brain", "~/code")));
        assert_eq!(split_host_path("/tmp/a:b"), None);
        assert_eq!(split_host_path(":x"), None);
        assert_eq!(login_relative("~/x"), "x");
        assert_eq!(login_relative("~"), ".");
        assert_eq!(login_relative("/abs"), "/abs");
        assert_eq!(login_relative("~/-x"), "./-x");
        assert_eq!(remote_path("-x"), "./-x");
        assert_eq!(remote_path("~/-x"), "~/-x");
        assert_eq!(local_arg(Path::new("-e sh")), "./-e sh");
        assert_eq!(local_arg(Path::new("host:x")), "./host:x");
        assert_eq!(local_arg(Path::new("/abs/-x")), "/abs/-x");
    }
}

//! Remote hosts: ssh sessions and jobs, rsync and git sync.
//! Plain async Rust: no mlua, no rustyline, no CLI.
//!
//! [`Remote`] is the service the bindings hold: it resolves fleet host names to a [`Target`] (this machine, or
//! an OpenSSH destination with its config file and host-key policy) and runs commands there with the one
//! process result shape of [`crate::core::process`]. Remote commands go through one multiplexed master per
//! host ([`ssh::Pool`]).
pub mod git;
pub mod jobs;
pub mod rsync;
pub mod ssh;
pub mod syncthing;
pub mod wake;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::fleet::{Fleet, KnownHosts, SshTarget};
use crate::core::process::{self, Cmd, LineSink, Output, ProcessError, Spec};
use crate::core::wording::suggest;

/// Why a remote operation failed. Messages do not repeat the host: callers prefix `ssh.run(<host>): `.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("unknown fleet host {name:?}{hint}")]
    UnknownHost { name: String, hint: String },
    #[error("cannot resolve host name: {0}")]
    Resolve(String),
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error(
        "host key mismatch, connection refused (the host's key is not the one in known_hosts): {0}"
    )]
    HostKeyMismatch(String),
    #[error(
        "host key unknown and strict checking is on (add it to known_hosts or set known_hosts = \"accept-new\"): {0}"
    )]
    HostKeyUnknown(String),
    #[error("connection timed out after {}: {detail}", crate::core::duration::format(*after))]
    ConnectTimeout { after: Duration, detail: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Disconnected(String),
    #[error("not online after {}: {cause}", crate::core::duration::format(*after))]
    NotOnline {
        after: Duration,
        cause: Box<RemoteError>,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    State(#[from] crate::core::state::StateError),
    #[error("{0}")]
    Job(String),
    #[error("{0}")]
    Sync(String),
}

impl RemoteError {
    /// Errors that will not go away by waiting (misconfiguration, wrong keys).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RemoteError::UnknownHost { .. }
                | RemoteError::Auth(_)
                | RemoteError::HostKeyMismatch(_)
                | RemoteError::HostKeyUnknown(_)
                | RemoteError::Invalid(_)
        )
    }
}

/// Where a fleet host's commands run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This machine (`ssh = false`, or the built-in `local`).
    Local,
    Ssh(SshDest),
}

/// An OpenSSH destination with the settings its master connection is opened with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshDest {
    /// The fleet host name (used in messages and as the pool key).
    pub host: String,
    /// `brain`, `user@10.0.0.5`, `ssh://user@host:2222`.
    pub dest: String,
    pub config: Option<PathBuf>,
    pub accept_new: bool,
}

/// The most characters of an unknown host name an error repeats.
pub const MAX_NAME_SHOWN: usize = 100;

/// Resolves a fleet host name. `local` is always this machine unless the fleet defines a host by that name.
pub fn target(fleet: &Fleet, name: &str) -> Result<Target, RemoteError> {
    let Some(host) = fleet.host(name).map_err(|e| RemoteError::Invalid(e.0))? else {
        if name == "local" {
            return Ok(Target::Local);
        }
        let mut names: Vec<&str> = fleet
            .hosts
            .keys()
            .map(String::as_str)
            .chain(["local"])
            .collect();
        names.sort_unstable();
        names.dedup();
        // A name far longer than any host name gets no suggestion (and is not echoed in full).
        let mut hint = if name.len() > 4 * MAX_NAME_SHOWN {
            String::new()
        } else {
            suggest(name, names.iter().copied())
        };
        if hint.is_empty() {
            hint = format!(" (fleet hosts: {})", names.join(", "));
        }
        return Err(RemoteError::UnknownHost {
            name: crate::core::text::truncate(name, MAX_NAME_SHOWN).into_owned(),
            hint,
        });
    };
    let dest = match &host.ssh {
        SshTarget::Flag(false) => return Ok(Target::Local),
        SshTarget::HostName | SshTarget::Flag(true) => name.to_string(),
        SshTarget::Dest(d) => d.clone(),
    };
    Ok(Target::Ssh(SshDest {
        host: name.to_string(),
        dest,
        config: host.ssh_config.clone().or_else(|| fleet.ssh_config.clone()),
        accept_new: host.known_hosts == KnownHosts::AcceptNew,
    }))
}

/// Quotes one word for a POSIX shell (shlex): no character inside can start shell syntax. A NUL byte
/// cannot travel through a shell command line, so a word holding one is refused.
pub fn quote(word: &str) -> Result<Cow<'_, str>, RemoteError> {
    shlex::try_quote(word).map_err(|_| {
        RemoteError::Invalid(format!(
            "{:?} contains a NUL byte, which no shell command line can carry",
            word.replace('\0', "\\0")
        ))
    })
}

/// Quotes a remote path, keeping a leading `~` or `~/` meaningful (the remote home folder).
pub fn quote_path(path: &str) -> Result<Cow<'_, str>, RemoteError> {
    Ok(match path.strip_prefix('~') {
        Some("") => Cow::Borrowed("~"),
        Some(rest) if rest.starts_with('/') => {
            format!("~/{}", quote(rest.trim_start_matches('/'))?).into()
        }
        _ => quote(path)?,
    })
}

/// A path on this machine with a leading `~` expanded.
pub fn expand_home(path: &str) -> PathBuf {
    let home = crate::core::state::home_dir;
    match path.strip_prefix('~') {
        Some("") => home(),
        Some(rest) if rest.starts_with('/') => home().join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// A path for a remote program that takes it literally (no shell): `~/x` becomes `x`, relative to the login
/// folder where ssh starts commands.
pub fn login_relative(path: &str) -> String {
    let p = path.strip_prefix("~/").unwrap_or(path);
    if p.is_empty() || p == "~" {
        ".".to_string()
    } else {
        remote_path(p)
    }
}

/// A remote path that no program on the host can read as an option: `-x` becomes `./-x` (relative to the
/// login folder, as before).
pub fn remote_path(path: &str) -> String {
    if path.starts_with('-') {
        format!("./{path}")
    } else {
        path.to_string()
    }
}

/// The command as text for a shell: a string as is, an argv list quoted word by word.
pub fn shell_text(cmd: &Cmd) -> Result<String, RemoteError> {
    match cmd {
        Cmd::Shell(s) => Ok(s.clone()),
        Cmd::Argv(v) if v.is_empty() => Err(RemoteError::Process(ProcessError::Empty)),
        Cmd::Argv(v) => Ok(v
            .iter()
            .map(|a| quote(a))
            .collect::<Result<Vec<_>, _>>()?
            .join(" ")),
    }
}

/// `export K='v'` lines and a `cd` for a remote shell; environment names are checked.
pub fn env_and_cwd(spec: &Spec) -> Result<String, RemoteError> {
    let mut out = String::new();
    for (k, v) in &spec.env {
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(RemoteError::Invalid(format!(
                "env: {k:?} is not a valid environment variable name"
            )));
        }
        out.push_str(&format!("export {k}={}\n", quote(v)?));
    }
    if let Some(cwd) = &spec.cwd {
        // `./` before a folder starting with `-`: `cd` would read it as an option (`cd -` even moves).
        let cwd = remote_path(&cwd.to_string_lossy());
        out.push_str(&format!("cd {} || exit 1\n", quote_path(&cwd)?));
    }
    Ok(out)
}

/// The service as front ends keep it (e.g. in Lua app data): created on first use, so a script that never
/// touches a remote host pays nothing. Clones share one [`Remote`].
#[derive(Clone, Default)]
pub struct Shared(Arc<std::sync::OnceLock<Arc<Remote>>>);

impl Shared {
    pub fn get(&self, fleet: &Arc<Fleet>) -> Arc<Remote> {
        self.0
            .get_or_init(|| Arc::new(Remote::new(fleet.clone())))
            .clone()
    }
}

/// The remote-command service: fleet host resolution plus one ssh master per host.
pub struct Remote {
    fleet: Arc<Fleet>,
    pool: ssh::Pool,
}

impl Remote {
    pub fn new(fleet: Arc<Fleet>) -> Remote {
        Remote {
            fleet,
            pool: ssh::Pool::new(),
        }
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn pool(&self) -> &ssh::Pool {
        &self.pool
    }

    pub fn target(&self, host: &str) -> Result<Target, RemoteError> {
        target(&self.fleet, host)
    }

    /// Runs `cmd` on `host` (remote shell for strings, quoted argv for lists) and returns its output; a
    /// timeout kills the command on the host too and gives code 124. Non-zero exits are results, not errors.
    pub async fn run(
        &self,
        host: &str,
        cmd: &Cmd,
        spec: &Spec,
        sink: Option<LineSink>,
    ) -> Result<Output, RemoteError> {
        match self.target(host)? {
            Target::Local => Ok(process::run(cmd, spec, sink).await?),
            Target::Ssh(dest) => self.pool.run(&dest, cmd, spec, sink).await,
        }
    }

    /// Runs a baton-internal POSIX shell script on `host` (used by jobs and git), with a timeout.
    pub async fn script(
        &self,
        host: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<Output, RemoteError> {
        let spec = Spec {
            timeout: Some(timeout),
            ..Spec::default()
        };
        match self.target(host)? {
            Target::Local => Ok(process::run(
                &Cmd::Argv(vec!["sh".into(), "-c".into(), script.into()]),
                &spec,
                None,
            )
            .await?),
            Target::Ssh(dest) => {
                self.pool
                    .run(&dest, &Cmd::Shell(script.to_string()), &spec, None)
                    .await
            }
        }
    }

    /// Whether `host` answers within `timeout`. Only an unknown fleet host is an error.
    pub async fn online(&self, host: &str, timeout: Duration) -> Result<bool, RemoteError> {
        Ok(self.probe(host, timeout).await.is_ok())
    }

    async fn probe(&self, host: &str, timeout: Duration) -> Result<(), RemoteError> {
        match self.target(host)? {
            Target::Local => Ok(()),
            Target::Ssh(dest) => self.pool.probe(&dest, timeout).await,
        }
    }

    /// Returns once `host` answers; raises after `timeout` with the last cause, or at once for causes that
    /// waiting cannot fix (authentication, host key).
    pub async fn wait_online(
        &self,
        host: &str,
        timeout: Duration,
        interval: Duration,
    ) -> Result<(), RemoteError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = left.clamp(Duration::from_millis(100), Duration::from_secs(5));
            let err = match self.probe(host, attempt).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => e,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RemoteError::NotOnline {
                    after: timeout,
                    cause: Box::new(err),
                });
            }
            tokio::time::sleep(interval.min(left)).await;
        }
    }

    /// Closes every master connection (at the end of a script).
    pub async fn close(&self) {
        self.pool.close_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fleet::Host;

    #[test]
    fn quoting_neutralises_shell_syntax() {
        // What a real shell makes of each quoted word is the word itself.
        let words = [
            "plain-word_1.txt",
            "",
            "a b",
            "it's; rm -rf /",
            "$(id)\n`x`",
            "~user",
            "*",
            "!x \"y\" \\z",
            "é ü 数据",
        ];
        let line = words
            .iter()
            .map(|w| quote(w).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf '%s\\0' {line}")])
            .output()
            .unwrap();
        let got: Vec<&str> = std::str::from_utf8(&out.stdout)
            .unwrap()
            .split_terminator('\0')
            .collect();
        assert_eq!(got, words, "{line}");
        assert_eq!(quote("plain-word_1.txt").unwrap(), "plain-word_1.txt");
        let nul = quote("a\0b").unwrap_err().to_string();
        assert!(nul.contains("NUL byte"), "{nul}");
        assert_eq!(quote_path("~/my dir").unwrap(), "~/'my dir'");
        assert_eq!(quote_path("~").unwrap(), "~");
        assert_eq!(quote_path("~user").unwrap(), "'~user'");
        assert_eq!(
            shell_text(&Cmd::Argv(vec!["echo".into(), "a;b".into()])).unwrap(),
            "echo 'a;b'"
        );
        assert!(shell_text(&Cmd::Argv(vec![])).is_err());
        assert!(shell_text(&Cmd::Argv(vec!["a\0".into()])).is_err());
    }

    #[test]
    fn env_names_are_checked() {
        let spec = Spec {
            env: vec![("A_1".into(), "x y".into())],
            cwd: Some("/tmp/a b".into()),
            ..Spec::default()
        };
        assert_eq!(
            env_and_cwd(&spec).unwrap(),
            "export A_1='x y'\ncd '/tmp/a b' || exit 1\n"
        );
        let bad = Spec {
            env: vec![("A;rm".into(), "x".into())],
            ..Spec::default()
        };
        let dash = Spec {
            cwd: Some("-".into()),
            ..Spec::default()
        };
        assert_eq!(env_and_cwd(&dash).unwrap(), "cd ./- || exit 1\n");
        assert!(
            env_and_cwd(&bad)
                .unwrap_err()
                .to_string()
                .contains("not a valid environment variable name")
        );
    }

    #[test]
    fn targets_resolve() {
        let host = |ssh| Host {
            ssh,
            ssh_config: None,
            known_hosts: KnownHosts::Strict,
            role: None,
            tags: vec![],
            ollama: None,
            ollama_parallel: 1,
            mac: None,
            wake: None,
            syncthing: None,
            claude: false,
        };
        let mut fleet = Fleet {
            ssh_config: Some("/f/config".into()),
            ..Fleet::default()
        };
        fleet
            .hosts
            .insert("brain".into(), host(SshTarget::HostName));
        fleet
            .hosts
            .insert("pc".into(), host(SshTarget::Flag(false)));
        fleet
            .hosts
            .insert("gpu".into(), host(SshTarget::Dest("me@10.0.0.5".into())));
        assert_eq!(target(&fleet, "pc").unwrap(), Target::Local);
        assert_eq!(target(&fleet, "local").unwrap(), Target::Local);
        let Target::Ssh(d) = target(&fleet, "gpu").unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.dest.as_str(), d.config.as_deref()),
            ("me@10.0.0.5", Some(std::path::Path::new("/f/config")))
        );
        let Target::Ssh(d) = target(&fleet, "brain").unwrap() else {
            panic!()
        };
        assert_eq!(d.dest, "brain");
        let e = target(&fleet, "brainn").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown fleet host \"brainn\", did you mean brain?"
        );
        let e = target(&fleet, "zzz").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown fleet host \"zzz\" (fleet hosts: brain, gpu, local, pc)"
        );
        // A fleet host named `local` is listed once; a huge name is cut short.
        fleet
            .hosts
            .insert("local".into(), host(SshTarget::Flag(false)));
        let e = target(&fleet, "zzz").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown fleet host \"zzz\" (fleet hosts: brain, gpu, local, pc)"
        );
        let e = target(&fleet, &"a".repeat(1 << 20))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300, "{} bytes", e.len());
        assert!(e.contains("… (1048476 more characters)"), "{e}");
    }
}

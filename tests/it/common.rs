//! Shared helpers: private temp dirs, and running the real `baton` binary in an isolated environment (its
//! own HOME, config and state dirs; no inherited fleet, keys or Ollama address), always with a time limit.
#![allow(dead_code)]
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("baton-it-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes `content` to `rel` (parents created) and returns the full path.
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, content).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The finished `baton` process.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics with both streams when the exit code is not `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }
}

/// An isolated place to run baton: `home/`, `config/`, `state/` under one temp dir.
pub struct Env {
    pub dir: TempDir,
    pub fleet: Option<PathBuf>,
    pub vars: Vec<(String, String)>,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_baton"))
}

impl Env {
    pub fn new(name: &str) -> Env {
        let dir = TempDir::new(name);
        for sub in ["home", "config", "state"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Env {
            dir,
            fleet: None,
            vars: Vec::new(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Writes `fleet.lua` and passes it to every later command through `$BATON_FLEET`.
    pub fn with_fleet(mut self, fleet_lua: &str) -> Env {
        self.fleet = Some(self.dir.write("fleet.lua", fleet_lua));
        self
    }

    pub fn var(mut self, key: &str, value: &str) -> Env {
        self.vars.push((key.into(), value.into()));
        self
    }

    /// A `baton` command with the isolated environment.
    pub fn cmd(&self) -> Command {
        self.program(bin())
    }

    /// `program` (`sh`, `script`…) with baton's isolated environment, in the test's folder.
    pub fn program(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in [
            "BATON_FLEET",
            "BATON_LOG",
            "OPENROUTER_API_KEY",
            "OPENROUTER_BASE_URL",
            "OLLAMA_HOST",
            "XDG_STATE_HOME",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.dir.join("home"))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("BATON_STATE_DIR", self.state_dir())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        if let Some(f) = &self.fleet {
            cmd.env("BATON_FLEET", f);
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `baton ARGS…` on a terminal (util-linux `script` gives it a pty, stdin is empty) to completion
    /// (at most 60 s); `stdout` is what the terminal showed, stdout and stderr together, with `\r\n` read
    /// as `\n`.
    pub fn on_terminal(&self, args: &[&str]) -> Out {
        let line = std::iter::once(bin().display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = self.program("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        let mut out = output_within(cmd, Duration::from_secs(60));
        out.stdout = out.stdout.replace("\r\n", "\n");
        out
    }

    /// Runs `baton ARGS…` to completion (at most 60 s).
    pub fn baton(&self, args: &[&str]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        output_within(cmd, Duration::from_secs(60))
    }

    /// Writes `script` as `name` and runs it with `baton run`.
    pub fn run_lua(&self, name: &str, script: &str, args: &[&str]) -> Out {
        let path = self.dir.write(name, script);
        let mut all = vec!["run", path.to_str().unwrap()];
        all.extend_from_slice(args);
        self.baton(&all)
    }
}

/// Starts `cmd` with piped output and collects it, killing the process if it outlives `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> Out {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("start baton");
    wait_within(child, limit)
}

/// Waits for a started child, killing it after `limit`; what it wrote to a piped stdout or stderr is
/// gathered (a stream that is not piped reads as empty).
pub fn wait_within(mut child: Child, limit: Duration) -> Out {
    fn gather(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    }
    let t1 = gather(child.stdout.take());
    let t2 = gather(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process did not finish within {limit:?}\n--- stdout\n{}\n--- stderr\n{}",
                t1.join().unwrap(),
                t2.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code(),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// Polls `cond` (every 20 ms) until it holds, panicking with `what` after `limit`. Tests wait for an
/// event (a file, a row, a line, a port) with this instead of sleeping for a guessed time: `limit` is only
/// the point where the test gives up, so make it generous (seconds, not milliseconds).
#[track_caller]
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shell loop that waits (at most ~30 s) until `path` exists: a remote or child command blocks on it until
/// the test has seen what it wanted, instead of sleeping and hoping the test looked in time.
pub fn sh_wait_file(path: &Path) -> String {
    sh_wait_file_for(path, 30)
}

/// [`sh_wait_file`] giving up after about `secs` seconds (for a test that looks through a browser, slower).
pub fn sh_wait_file_for(path: &Path, secs: u32) -> String {
    let p = shlex::try_quote(path.to_str().unwrap())
        .unwrap()
        .into_owned();
    let polls = secs * 50;
    format!("n=0; until [ -e {p} ] || [ $n -ge {polls} ]; do sleep 0.02; n=$((n+1)); done")
}

/// `git -C dir ARGS…` (never prompting), asserting success; trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `files` (relative path, content) under `root`, creating folders.
pub fn write(root: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

//! `baton repl` as a new user meets it (issue 27): errors with their location once, a pasted chunk that runs
//! on its own newline, and output whose reader went away.
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, bin, wait_within};

/// `baton repl` fed `input` on a pipe (stdin then closed).
fn repl(env: &Env, input: &str) -> crate::common::Out {
    let mut cmd = env.cmd();
    cmd.arg("repl")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    wait_within(child, Duration::from_secs(60))
}

#[test]
fn errors_name_their_location_once() {
    let env = Env::new("shell-repl-errors");
    let out = repl(
        &env,
        "error('boom')\nlocal t = nil; t.x = 1\nssh.run()\nbaton.sleep('x')\n",
    );
    out.ok();
    let err = &out.stderr;
    assert!(err.contains("stdin:1: boom"), "{err}");
    assert!(
        err.contains("stdin:1: attempt to index a nil value (local 't')"),
        "{err}"
    );
    assert!(
        !err.contains("stdin:1: stdin:1:"),
        "doubled location:\n{err}"
    );
    // A call at the prompt is compiled as `return <call>`, a tail call: the location is still there.
    assert!(
        err.contains("stdin:1: ssh.run: argument 1 (host) must be a string, got nil"),
        "{err}"
    );
    assert!(
        err.contains("stdin:1: baton.sleep: argument 1 (dur)"),
        "{err}"
    );
}

/// The reader of stdout goes away while the REPL still has input (stdin stays open): the REPL ends at once,
/// exit 0, nothing on stderr. Both ways output is written: a value shown, and a chunk's `print`.
#[test]
fn a_closed_stdout_ends_the_repl_quietly() {
    for chunk in ["1 + 1\n", "print('x')\n"] {
        let env = Env::new("shell-repl-epipe");
        let mut cmd = env.cmd();
        cmd.arg("repl")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        stdout.read_line(&mut banner).unwrap();
        assert!(banner.contains("Ctrl-D exits"), "{banner:?}");
        drop(stdout);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(chunk.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let out = wait_within(child, Duration::from_secs(60));
        drop(stdin);
        assert_eq!(out.code, Some(0), "{chunk:?}: {out:?}");
        assert_eq!(out.stderr, "", "{chunk:?}");
    }
}

/// A write error other than a broken pipe (a full disk) is told once, and the REPL goes on to the end of
/// its input.
#[test]
fn another_write_error_is_told_once() {
    let env = Env::new("shell-repl-full");
    let mut cmd = env.cmd();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    cmd.arg("repl")
        .stdin(Stdio::piped())
        .stdout(full)
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"1\nprint(2)\n3\nerror('after')\n")
        .unwrap();
    let out = wait_within(child, Duration::from_secs(60));
    out.ok();
    assert_eq!(
        out.stderr.matches("cannot write the output").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    // The REPL went on: the last chunk ran.
    assert!(out.stderr.contains("stdin:1: after"), "{}", out.stderr);
}

/// `tmux -L NAME`: a tmux server of this test's own.
fn tmux(server: &str) -> Command {
    let mut cmd = Command::new("tmux");
    cmd.args(["-L", server]);
    cmd
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = tmux(&self.0).arg("kill-server").status();
    }
}

fn screen(name: &str) -> String {
    let out = tmux(name)
        .args(["capture-pane", "-p", "-t", name])
        .output()
        .unwrap();
    format!("\n{}", String::from_utf8_lossy(&out.stdout))
}

fn wait_screen(name: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = screen(name);
        if s.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "{needle:?} never appeared:\n{s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A multi-line paste in a terminal (tmux pastes with bracketed-paste markers when the program asks for
/// them) runs on its own last newline, like typed lines: no extra Enter. Its tabs stay tabs, also after a
/// keyword, where a Tab would otherwise complete.
#[test]
fn a_pasted_chunk_runs_on_its_own_newline() {
    let env = Env::new("shell-repl-paste");
    let name = format!("baton-paste-{}", std::process::id());
    let shell = format!(
        "env -u BATON_FLEET HOME={home} XDG_CONFIG_HOME={cfg} BATON_STATE_DIR={state} {bin} repl",
        home = env.dir.join("home").display(),
        cfg = env.dir.join("config").display(),
        state = env.state_dir().display(),
        bin = bin().display()
    );
    let started = tmux(&name)
        .args([
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "120",
            "-y",
            "40",
            &shell,
        ])
        .status()
        .expect("tmux is required for the REPL tests: apt-get install -y tmux");
    assert!(started.success());
    let _session = Session(name.clone());
    wait_screen(&name, "Ctrl-D exits");
    let paste = env.dir.write(
        "paste.lua",
        "x = 20\nfunction f(a)\n\tif a then\treturn a * 2 end\nend\nfor i = 1, 1 do\tprint(f(x) + i) end\n",
    );
    assert!(
        tmux(&name)
            .args(["load-buffer", "-b", "p"])
            .arg(&paste)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        tmux(&name)
            .args(["paste-buffer", "-p", "-b", "p", "-t", &name])
            .status()
            .unwrap()
            .success()
    );
    // No Enter is sent: the paste's last newline runs it.
    wait_screen(&name, "\n41\n");
}

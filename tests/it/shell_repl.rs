//! `baton repl` as a new user meets it (issue 27): errors with their location once, a pasted chunk that runs
//! on its own newline, and output whose reader went away.
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Env, wait_within};

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

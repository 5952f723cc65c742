//! `claude.run` overhead (issue 30), each figure beside its peer measured in the same run
//! (`cargo bench --bench claude`), against a minimal stand-in of the `claude` CLI (a `/bin/sh` script that
//! reads the prompt on stdin and prints three fixed stream-json lines: init, one text, the result), so the
//! figures are baton's own cost and not the stand-in's:
//! - locally: `N` calls of `claude.run("hi")` in one `baton run` playbook (timed inside it with
//!   `baton.clock`, after a warm-up call: start-up is not counted) vs `N` runs of the stand-in from a Rust
//!   loop (`std::process::Command`, the prompt on stdin, stdout read to the end): overhead per call
//!   (target ≤ 5 ms);
//! - on a loopback sshd host (the tests' harness): `claude.run("hi", {host = "h0"})` vs
//!   `ssh -F <config> -S <socket> h0 claude -p …` over an OpenSSH master opened beforehand (target
//!   ratio ≤ 1.2).
//!
//! Rounds alternate baton and the baseline, so a slow spell of the shared machine hits both; the figure is
//! the median round.
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::sshd::SshFleet;

/// Calls per round, locally and over ssh.
const LOCAL_CALLS: usize = 100;
const SSH_CALLS: usize = 50;
/// Rounds (baton and baseline alternate).
const ROUNDS: usize = 5;

/// The stand-in: reads stdin to its end with builtins (no `cat` process), prints fixed lines.
const STAND_IN: &str = r#"#!/bin/sh
while IFS= read -r l || [ -n "$l" ]; do :; done
printf '%s\n' '{"type":"system","subtype":"init","session_id":"s1","model":"claude-bench","cwd":"/","tools":[]}' '{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}' '{"type":"result","subtype":"success","is_error":false,"result":"hi","session_id":"s1","num_turns":1,"duration_ms":1,"total_cost_usd":0.001,"usage":{"input_tokens":1,"output_tokens":1}}'
"#;

/// The argv baton passes (`core::claude::argv` with no options).
const ARGV: [&str; 4] = ["-p", "--output-format", "stream-json", "--verbose"];

fn main() {
    let dir = std::env::temp_dir().join(format!("baton-bench-claude-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let baton = PathBuf::from(env!("CARGO_BIN_EXE_baton"));
    println!("claude.run overhead (release build, stand-in: /bin/sh printing 3 stream-json lines)");
    local(&baton, &dir);
    remote(&baton, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stand-in as `bin/claude` under `dir`; returns the bin folder.
fn install(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("claude");
    std::fs::write(&p, STAND_IN).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// A playbook of a warm-up call then `n` timed calls with `opts`; prints the seconds of the `n`.
fn playbook(dir: &Path, name: &str, n: usize, opts: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "local r = claude.run(\"hi\"{opts})\n\
             assert(r.text == \"hi\", r.text)\n\
             local t0 = baton.clock()\n\
             for _ = 1, {n} do claude.run(\"hi\"{opts}) end\n\
             print(baton.clock() - t0)\n"
        ),
    )
    .unwrap();
    path
}

/// Runs a playbook and returns the seconds it printed.
fn baton_run(baton: &Path, dir: &Path, script: &Path, fleet: &Path, path: &str) -> Duration {
    let out = Command::new(baton)
        .arg("run")
        .arg(script)
        .env("BATON_STATE_DIR", dir.join("state"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("BATON_FLEET", fleet)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("start baton");
    assert!(
        out.status.success(),
        "baton run {}: {}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the playbook prints its seconds");
    Duration::from_secs_f64(secs)
}

/// One run of `cmd` with "hi" on stdin, stdout read to the end; checks the result line came.
fn feed(cmd: &mut Command) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the stand-in");
    child.stdin.take().unwrap().write_all(b"hi").unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{cmd:?}");
    assert!(out.contains("\"type\":\"result\""), "{cmd:?}: {out}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_call(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1000.0 / n as f64
}

fn local(baton: &Path, dir: &Path) {
    let dir = dir.join("local");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = install(&dir);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let fleet = dir.join("fleet.lua");
    std::fs::write(&fleet, "return { hosts = {} }\n").unwrap();
    let script = playbook(&dir, "local.lua", LOCAL_CALLS, "");
    let (mut b, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        b.push(baton_run(baton, &dir, &script, &fleet, &path));
        feed(Command::new("claude").args(ARGV).env("PATH", &path)); // warm-up, as the playbook's
        let started = Instant::now();
        for _ in 0..LOCAL_CALLS {
            feed(Command::new("claude").args(ARGV).env("PATH", &path));
        }
        raw.push(started.elapsed());
    }
    let (b, raw) = (
        per_call(median(b), LOCAL_CALLS),
        per_call(median(raw), LOCAL_CALLS),
    );
    let over = b - raw;
    println!("local, {LOCAL_CALLS} sequential calls, median of {ROUNDS} rounds");
    println!("  stand-in from a Rust loop (Command, stdin)       {raw:>8.3} ms/call");
    println!(
        "  claude.run(\"hi\") in baton run                     {b:>8.3} ms/call   overhead {over:+.3} ms/call  (target ≤ 5 ms: {})",
        if over <= 5.0 { "ok" } else { "MISSED" }
    );
}

fn remote(baton: &Path, dir: &Path) {
    let mut fleet = SshFleet::prepare(1);
    fleet.hosts[0].path_first(&install(&fleet.hosts[0].dir));
    fleet.start_host(0);
    let dir = dir.join("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    let fleet_file = dir.join("fleet.lua");
    std::fs::write(&fleet_file, fleet.fleet_lua()).unwrap();
    let script = playbook(&dir, "ssh.lua", SSH_CALLS, ", { host = \"h0\" }");
    let socket = fleet.dir.join("bench-master");
    support::open_master(&fleet, "h0", &socket);
    let raw_call = || {
        feed(
            fleet
                .ssh()
                .arg("-S")
                .arg(&socket)
                .arg("h0")
                .arg("claude")
                .args(ARGV),
        )
    };
    let path = std::env::var("PATH").unwrap();
    let (mut b, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        b.push(baton_run(baton, &dir, &script, &fleet_file, &path));
        raw_call();
        let started = Instant::now();
        for _ in 0..SSH_CALLS {
            raw_call();
        }
        raw.push(started.elapsed());
    }
    support::close_master(&fleet, "h0", &socket);
    let (b, raw) = (
        per_call(median(b), SSH_CALLS),
        per_call(median(raw), SSH_CALLS),
    );
    let ratio = b / raw;
    println!(
        "over ssh (loopback sshd, masters open), {SSH_CALLS} sequential calls, median of {ROUNDS} rounds"
    );
    println!("  ssh -F <config> -S <socket> h0 claude -p …       {raw:>8.3} ms/call");
    println!(
        "  claude.run(\"hi\", {{host = \"h0\"}})                  {b:>8.3} ms/call   ratio {ratio:.2}x  (target ≤ 1.2: {})",
        if ratio <= 1.2 { "ok" } else { "MISSED" }
    );
}

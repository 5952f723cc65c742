//! `claude.run` against a test double of the `claude` CLI (a Python script first on PATH, locally and on a
//! test sshd host) that records its argv, stdin and folder and prints scripted stream-json: the result's
//! fields, the events in order, the flags, the ledger row, the budget cap and refusal, each failure, and a
//! durable run resumed without a second invocation. Nothing calls Anthropic.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Env, Out, TempDir, wait_for};
use crate::sshd::{SshFleet, require};

/// The double: the variant is the first `[word]` in the prompt (read from stdin). Each invocation writes
/// `<record>/<pid>.json` with its argv, stdin, folder and pid. `[huge]` writes a 100 MB line (in 1 MB
/// pieces, so the double never holds it either).
const DOUBLE: &str = r#"#!/usr/bin/env python3
import json, os, re, sys, time
prompt = sys.stdin.read()
with open(os.path.join(RECORD, "%d.json" % os.getpid()), "w") as f:
    json.dump({"argv": sys.argv[1:], "stdin": prompt, "cwd": os.getcwd(), "pid": os.getpid()}, f)
m = re.search(r"\[(\w+)\]", prompt)
v = m.group(1) if m else "success"
def out(o):
    print(json.dumps(o), flush=True)
out({"type": "system", "subtype": "init", "session_id": "sess-1", "model": "claude-test-1",
     "cwd": os.getcwd(), "tools": ["Bash", "Read"]})
if v == "hang":
    time.sleep(600)
if v == "write":
    with open("result.txt", "w") as f:
        f.write("from claude\n")
out({"type": "assistant", "message": {"content": [{"type": "text", "text": "Looking."},
     {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}})
out({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1",
     "content": "a.txt", "is_error": False}]}})
if v == "garbage":
    print("this is not json", flush=True)
if v == "huge":
    sys.stdout.write('{"type": "assistant", "pad": "')
    piece = "x" * 1000000
    for _ in range(100):
        sys.stdout.write(piece)
    print('"}', flush=True)
if v == "noresult":
    print("boom", file=sys.stderr)
    sys.exit(3)
subtype, is_error, text = "success", False, "All done."
if v == "turns":
    subtype, is_error, text = "error_max_turns", False, ""
if v == "budget":
    subtype, is_error, text = "error_max_budget_usd", True, ""
out({"type": "assistant", "message": {"content": [{"type": "text", "text": "All done."}]}})
out({"type": "result", "subtype": subtype, "is_error": is_error, "result": text, "session_id": "sess-1",
     "num_turns": 2, "duration_ms": 1500, "total_cost_usd": 0.25,
     "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100}})
"#;

/// The double installed in `dir/bin` (recording into `dir/record`); returns the bin folder.
fn install_double(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    require("python3");
    let bin = dir.join("bin");
    let record = dir.join("record");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&record).unwrap();
    let p = bin.join("claude");
    let body = DOUBLE.replacen(
        "prompt = sys.stdin.read()",
        &format!(
            "RECORD = {:?}\nprompt = sys.stdin.read()",
            record.display().to_string()
        ),
        1,
    );
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// A test sshd fleet of `n` hosts, all started, whose first host (`h0`) has the double first on its PATH.
fn fleet_with_double(n: usize) -> SshFleet {
    let mut ssh = SshFleet::prepare(n);
    ssh.hosts[0].path_first(&install_double(&ssh.hosts[0].dir));
    for i in 0..n {
        ssh.start_host(i);
    }
    ssh
}

/// The run that got `prompt` on stdin has ended: its process is gone (or a zombie about to be reaped), not
/// left writing. Waits a little: a killed process on the host takes a moment to be reaped.
fn assert_ended(calls: &[Value], prompt: &str) {
    let call = calls
        .iter()
        .find(|c| c["stdin"] == prompt)
        .unwrap_or_else(|| panic!("no run got {prompt:?}: {calls:?}"));
    let status = format!("/proc/{}/status", call["pid"]);
    wait_for("the double to end", Duration::from_secs(10), || {
        std::fs::read_to_string(&status)
            .map_or(true, |s| s.lines().any(|l| l.starts_with("State:\tZ")))
    });
}

/// Prints, at the end of a script, the script's peak memory (`VmHWM`, KiB) as `peak <kib>`.
const PEAK: &str = r#"
for l in io.lines("/proc/self/status") do
  local kib = l:match("^VmHWM:%s*(%d+) kB")
  if kib then print("peak " .. kib) end
end"#;

/// The peak memory (MiB) a script printed with [`PEAK`].
fn peak_mib(stdout: &str) -> u64 {
    let kib: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak "))
        .unwrap_or_else(|| panic!("no peak in {stdout}"))
        .parse()
        .unwrap();
    kib >> 10
}

/// What each invocation recorded, oldest first.
fn calls(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("record"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn rows(env: &Env, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Null => "nil".into(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Blob(_) => "blob".into(),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// An environment whose PATH starts with the double, with a fleet budget of `budget` USD a month.
fn local_env(name: &str, budget: Option<f64>) -> Env {
    let env = Env::new(name);
    let bin = install_double(env.dir.path());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let budget = budget
        .map(|b| format!("budget = {{ monthly_usd = {b}, alert_at = 0.9 }},"))
        .unwrap_or_default();
    env.with_fleet(&format!("return {{ hosts = {{}}, {budget} }}"))
        .var("PATH", &path)
}

fn run(env: &Env, script: &str) -> Out {
    env.run_lua("c.lua", script, &[])
}

const SUCCESS: &str = r#"
local evs = {}
local r = claude.run("-p --help [success] fix it", {
  cwd = WORK, model = "sonnet", max_turns = 3, allowed_tools = { "Bash(git diff:*)", "Read" },
  disallowed_tools = { "Edit" }, append_system_prompt = "--be brief", mcp_config = { mcpServers = {} },
  permission_mode = "acceptEdits", resume = "sess-0", max_usd = 2, host = HOST,
  on_event = function(ev)
    local s = ev.type
    if ev.type == "text" then s = s .. ":" .. ev.text end
    if ev.type == "tool_use" then s = s .. ":" .. ev.name .. ":" .. ev.input.command end
    if ev.type == "tool_result" then s = s .. ":" .. ev.tool_use_id .. ":" .. ev.content end
    if ev.type == "init" then s = s .. ":" .. ev.session_id end
    if ev.type == "result" then s = s .. ":" .. ev.subtype end
    evs[#evs + 1] = s
  end,
})
print(r.text, r.session_id, r.cost, r.turns, r.is_error, r.subtype, r.duration, r.model, r.host, r.max_usd)
print(r.usage.input_tokens, r.usage.output_tokens, r.usage.cache_read_input_tokens)
print(table.concat(evs, ","))
"#;

const EVENTS: &str =
    "init:sess-1,text:Looking.,tool_use:Bash:ls,tool_result:t1:a.txt,text:All done.,result:success";

fn expected_argv(cap: &str) -> Vec<String> {
    [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model=sonnet",
        "--max-turns=3",
        "--allowedTools=Bash(git diff:*)",
        "--allowedTools=Read",
        "--disallowedTools=Edit",
        "--append-system-prompt=--be brief",
        "--mcp-config={\"mcpServers\":{}}",
        "--permission-mode=acceptEdits",
        "--resume=sess-0",
        cap,
    ]
    .map(String::from)
    .to_vec()
}

/// A run on this machine: the result's fields, the events in order, the argv (each option one word, the
/// cap the lower of `max_usd` and what is left), the prompt on stdin, the folder, and its ledger row.
#[test]
fn a_local_run_gives_its_result_events_flags_and_ledger_row() {
    let env = local_env("claude-local", Some(10.0));
    let work = env.dir.join("my work");
    std::fs::create_dir_all(&work).unwrap();
    let script = format!("WORK = {:?}\n{SUCCESS}", work.display().to_string());
    let out = run(&env, &script);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "All done.\tsess-1\t0.25\t2\tfalse\tsuccess\t1.5\tclaude-test-1\tlocal\t2",
            "10\t5\t100",
            EVENTS,
        ],
        "{}",
        out.stderr
    );
    let c = calls(env.dir.path());
    assert_eq!(c.len(), 1);
    let argv: Vec<String> = serde_json::from_value(c[0]["argv"].clone()).unwrap();
    assert_eq!(argv, expected_argv("--max-budget-usd=2.00"));
    assert_eq!(c[0]["stdin"], "-p --help [success] fix it");
    assert_eq!(c[0]["cwd"], work.display().to_string());
    let booked = rows(
        &env,
        "SELECT provider, host, model, tokens_in, tokens_out, cost, cost_source, outcome, sent, \
         script LIKE '%c.lua' FROM llm_ledger",
    );
    assert_eq!(
        booked,
        [[
            "claude-code",
            "local",
            // The model the init line named (asked for: sonnet).
            "claude-test-1",
            "110",
            "5",
            "0.25",
            "provider",
            "ok",
            "1",
            "1"
        ]]
    );
}

/// With less than `min_usd` left of the month the run is refused before the CLI starts (a `budget` row);
/// a lower `min_usd` lets it run with what is left as its cap; a cap under a cent (nothing left, with
/// `min_usd = 0`) is refused too: the CLI takes no `--max-budget-usd` of 0.
#[test]
fn the_budget_caps_a_run_and_refuses_one_that_does_not_fit() {
    let env = local_env("claude-budget", Some(0.04));
    let out = run(
        &env,
        r#"local r = claude.run("[success] x", { check = false })
print(r.ok, r.err)
r = claude.run("[success] x", { min_usd = 0.01 })
print(r.max_usd, r.cost)
print(pcall(claude.run, "[success] x", { min_usd = 0 }))"#,
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "false\tclaude.run(local): over budget: $0.04 left of $0.04 this month, less than min_usd $0.05",
            "0.04\t0.25",
            "false\tclaude.run(local): over budget: a cap of $0.00 is under $0.01, the least \
             `--max-budget-usd` that can be passed (Claude Code refuses 0)",
        ],
        "{}",
        out.stderr
    );
    let c = calls(env.dir.path());
    assert_eq!(c.len(), 1, "the refused run never started the CLI");
    assert_eq!(
        c[0]["argv"].as_array().unwrap().last().unwrap(),
        "--max-budget-usd=0.04"
    );
    let booked = rows(
        &env,
        "SELECT provider, outcome, cost, sent FROM llm_ledger ORDER BY id",
    );
    assert_eq!(
        booked,
        [
            ["claude-code", "budget", "0", "0"],
            ["claude-code", "ok", "0.25", "1"],
            ["claude-code", "budget", "0", "0"]
        ]
    );
}

/// Each failure is an error naming the host and the cause (raised by default, `ok = false` and `err`
/// with `check = false`); a run that ends without a result line is booked at its cap and says so. A
/// 100 MB line is refused while it is read: the double is stopped and baton's memory stays far below it.
#[test]
fn failures_name_their_cause_and_a_run_without_result_is_booked_at_its_cap() {
    let env = local_env("claude-fail", Some(10.0));
    let out = run(
        &env,
        &format!(
            r#"for _, v in ipairs({{ "turns", "budget", "noresult", "garbage", "huge", "hang" }}) do
  local r = claude.run("[" .. v .. "]", {{ check = false, max_usd = 1, timeout = v == "hang" and "1s" or nil }})
  print(v, r.ok, r.subtype, r.cost, r.err)
end
local ok, err = pcall(claude.run, "[turns]", {{ max_usd = 1 }})
print(ok, err){PEAK}"#
        ),
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let want = [
        "turns\tfalse\terror_max_turns\t0.25\tclaude.run(local): stopped at max_turns",
        "budget\tfalse\terror_max_budget_usd\t0.25\tclaude.run(local): stopped at its budget cap (--max-budget-usd)",
        "noresult\tfalse\tnil\tnil\tclaude.run(local): Claude Code failed (exit 3: boom) without a result line; booked at its cap $1.00",
        "garbage\tfalse\tnil\tnil\tclaude.run(local): stdout line 4 is not a stream-json object (expected ident at line 1 column 2): this is not json; booked at its cap $1.00",
        "huge\tfalse\tnil\tnil\tclaude.run(local): stdout line 4 is longer than 8 MiB, the bound on one line of output: the command was stopped; booked at its cap $1.00",
        "hang\tfalse\tnil\tnil\tclaude.run(local): timed out after 1s without a result line; booked at its cap $1.00",
    ];
    assert_eq!(lines[..6], want, "{}", out.stderr);
    assert!(
        lines[6].starts_with("false\t")
            && lines[6].contains("claude.run(local): stopped at max_turns"),
        "{}",
        out.stdout
    );
    assert_ended(&calls(env.dir.path()), "[huge]");
    let peak = peak_mib(&out.stdout);
    assert!(
        peak < 80,
        "peak memory {peak} MiB: the 100 MB line was held"
    );
    let booked = rows(
        &env,
        "SELECT outcome, cost, cost_source, err LIKE '%booked at its cap $1.00' FROM llm_ledger ORDER BY id",
    );
    let capped = ["error", "1", "reserved", "1"];
    assert_eq!(
        booked,
        [
            ["error", "0.25", "provider", "0"],
            ["error", "0.25", "provider", "0"],
            capped,
            capped,
            capped,
            capped,
            ["error", "0.25", "provider", "0"],
        ]
    );
}

/// No `claude` on PATH: the error says so with the install hint, and nothing is booked as spent.
#[test]
fn a_missing_cli_gives_the_install_hint() {
    let env = Env::new("claude-missing");
    let empty = env.dir.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let env = env.var("PATH", empty.to_str().unwrap());
    let out = run(&env, r#"print(pcall(claude.run, "hi"))"#);
    out.ok();
    assert_eq!(
        out.stdout,
        "false\tclaude.run(local): Claude Code is not installed (`claude`: command not found); install it \
         with `npm install -g @anthropic-ai/claude-code`\n"
    );
    assert_eq!(
        rows(&env, "SELECT outcome, cost, sent FROM llm_ledger"),
        [["error", "0", "0"]]
    );
}

/// Bad options raise naming the option, before anything runs or is booked.
#[test]
fn bad_options_are_named() {
    let env = local_env("claude-args", None);
    let out = run(
        &env,
        r#"print(pcall(claude.run, 5))
print(pcall(claude.run, "x", { max_turn = 3 }))
print(pcall(claude.run, "x", { max_usd = -1 }))
print(pcall(claude.run, "x", { mcp_config = true }))
print(pcall(claude.run, "x", { host = "nosuch" }))
print(pcall(claude.run, "x", { on_event = 1 }))"#,
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    for (line, want) in lines.iter().zip([
        "claude.run: argument 1 (prompt)",
        "max_turn",
        "claude.run: options.max_usd must be a number ≥ 0 (USD), got -1",
        "claude.run: options.mcp_config must be a path (string) or a table, got a boolean",
        "claude.run(nosuch): unknown fleet host \"nosuch\"",
        "claude.run: options.on_event must be a function",
    ]) {
        assert!(line.starts_with("false\t") && line.contains(want), "{line}");
    }
    assert!(calls(env.dir.path()).is_empty());
}

/// On a fleet host over ssh: the same result, events and flags, the folder on the host; a host without
/// the CLI gives the install hint; a 100 MB line is refused while it is read and the double on the host
/// is stopped.
#[test]
fn a_run_on_a_fleet_host_goes_over_ssh() {
    let ssh = fleet_with_double(2);
    let env = Env::new("claude-ssh").with_fleet(&ssh.fleet_lua());
    let work = ssh.hosts[0].home.join("w d");
    std::fs::create_dir_all(&work).unwrap();
    let script = format!(
        "WORK = \"~/w d\"\nHOST = \"h0\"\n{SUCCESS}\nprint(pcall(claude.run, \"x\", {{ host = \"h1\" }}))
print(pcall(claude.run, \"[huge]\", {{ host = \"h0\", max_usd = 1 }})){PEAK}"
    );
    let out = run(&env, &script);
    out.ok();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("peak "))
        .collect();
    assert_eq!(
        lines,
        [
            "All done.\tsess-1\t0.25\t2\tfalse\tsuccess\t1.5\tclaude-test-1\th0\t2",
            "10\t5\t100",
            EVENTS,
            "false\tclaude.run(h1): Claude Code is not installed (`claude`: command not found); install it \
             with `npm install -g @anthropic-ai/claude-code`",
            "false\tclaude.run(h0): stdout line 4 is longer than 8 MiB, the bound on one line of output: the \
             command was stopped; booked at its cap $1.00",
        ],
        "{}",
        out.stderr
    );
    let peak = peak_mib(&out.stdout);
    assert!(
        peak < 80,
        "peak memory {peak} MiB: the 100 MB line was held"
    );
    let c = calls(&ssh.hosts[0].dir);
    assert_eq!(c.len(), 2);
    assert_ended(&c, "[huge]");
    let argv: Vec<String> = serde_json::from_value(c[0]["argv"].clone()).unwrap();
    // No fleet budget: the cap is max_usd.
    assert_eq!(argv, expected_argv("--max-budget-usd=2.00"));
    assert_eq!(c[0]["stdin"], "-p --help [success] fix it");
    assert_eq!(c[0]["cwd"], work.display().to_string());
    assert_eq!(
        rows(
            &env,
            "SELECT host, cost, outcome FROM llm_ledger ORDER BY id"
        ),
        [
            ["h0", "0.25", "ok"],
            ["h1", "0", "error"],
            ["h0", "1", "error"]
        ]
    );
}

/// A durable run killed after its `claude.run` and resumed: the journaled result is replayed, the CLI is
/// not started a second time, and the spend is booked once.
#[test]
fn a_resumed_run_does_not_run_claude_again() {
    let env = local_env("claude-resume", Some(10.0));
    let dir = TempDir::new("claude-resume-work");
    let work = dir.path();
    std::fs::write(
        work.join("r.lua"),
        r#"local r = claude.run("[success] job", { max_usd = 1, on_event = function(ev) end })
print(r.text, r.session_id, r.cost)
if baton.env("HOLD") then
  local f = assert(io.open("held", "w")); f:close()
  while true do baton.sleep(0.05) end
end
print("end")
"#,
    )
    .unwrap();
    let mut cmd = env.cmd();
    cmd.args(["run", "r.lua"])
        .current_dir(work)
        .env("HOLD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_for("the run to hold", Duration::from_secs(60), || {
        work.join("held").exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(calls(env.dir.path()).len(), 1);
    let id = serde_json::from_str::<Value>(&env.baton(&["runs", "--json"]).ok().stdout).unwrap()[0]
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut resume = env.cmd();
    resume.args(["resume", &id]).current_dir(work);
    let out = crate::common::output_within(resume, Duration::from_secs(60));
    out.ok();
    assert_eq!(
        out.stdout, "All done.\tsess-1\t0.25\nend\n",
        "{}",
        out.stderr
    );
    assert_eq!(calls(env.dir.path()).len(), 1, "claude ran again on resume");
    assert_eq!(
        rows(&env, "SELECT model, outcome, cost FROM llm_ledger"),
        [["claude-test-1", "ok", "0.25"]]
    );
}

/// `kill -9` of baton while Claude Code runs: the row written before start is settled as interrupted at
/// the run's cap by the next process.
#[test]
fn a_killed_run_is_booked_interrupted_at_its_cap() {
    let env = local_env("claude-kill", Some(10.0));
    let script = env.dir.write(
        "k.lua",
        r#"claude.run("[hang]", { max_usd = 1.5, cwd = "~" })"#,
    );
    let mut child = env
        .cmd()
        .args(["run", script.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let record = env.dir.join("record");
    wait_for("the double to start", Duration::from_secs(60), || {
        std::fs::read_dir(&record).unwrap().next().is_some()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The double runs in its own process group and outlives baton's SIGKILL: stop it by its pid.
    for e in std::fs::read_dir(&record).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let pid = name.trim_end_matches(".json");
        let _ = std::process::Command::new("kill").arg(pid).status();
    }
    let c = calls(env.dir.path());
    assert_eq!(c[0]["cwd"], env.dir.join("home").display().to_string());
    let out = env.baton(&["spend", "--json"]);
    out.ok();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ledger"]["interrupted"], 1.5, "{}", out.stdout);
    assert_eq!(
        rows(
            &env,
            "SELECT provider, outcome, cost, cost_source FROM llm_ledger"
        ),
        [["claude-code", "interrupted", "1.5", "reserved"]]
    );
}

/// `detach = true` on a fleet host: a tmux-backed job (the prompt written to a private file there, read
/// as stdin and removed), whose `wait` streams the events and gives the result; a detached run without a
/// result line is booked at its cap, naming the file its stderr went to; a 100 MB line in a job's log is
/// refused while the log is read (a few MiB at a time), never held whole.
#[test]
fn a_detached_run_is_a_tmux_job_whose_wait_gives_the_result() {
    require("tmux");
    let ssh = fleet_with_double(1);
    let env = Env::new("claude-detach").with_fleet(&ssh.fleet_lua());
    let work = ssh.hosts[0].home.join("w d");
    std::fs::create_dir_all(&work).unwrap();
    let out = run(
        &env,
        &(r#"local j = claude.run("-x [success] detached", { host = "h0", detach = true, max_usd = 1, cwd = "~/w d" })
print(j.host, j.tmux == "baton-" .. j.id)
local evs = {}
local r = j:wait({ poll = "100ms", on_event = function(ev) evs[#evs + 1] = ev.type end })
print(r.text, r.session_id, r.cost, r.max_usd)
print(table.concat(evs, ","))
local ok, err = pcall(j.wait, j)
print(ok, tostring(err):find("was waited for already", 1, true) ~= nil)
local j2 = claude.run("[noresult]", { host = "h0", detach = true, max_usd = 1, check = false })
local r2 = j2:wait({ poll = "100ms" })
print(r2.ok, r2.err)
print(j2.stderr)
local j3 = claude.run("[huge]", { host = "h0", detach = true, max_usd = 1, check = false })
local r3 = j3:wait({ poll = "100ms" })
print(r3.ok, r3.err)"#
            .to_string()
            + PEAK),
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        lines[..4],
        [
            "h0\ttrue",
            "All done.\tsess-1\t0.25\t1",
            "init,text,tool_use,tool_result,text,result",
            "false\ttrue"
        ]
    );
    assert!(
        lines[4].starts_with("false\tclaude.run(h0, job ")
            && lines[4].contains("Claude Code failed (exit 3; its stderr is in ")
            && lines[4].ends_with("without a result line; booked at its cap $1.00"),
        "{}",
        lines[4]
    );
    assert_eq!(std::fs::read_to_string(lines[5]).unwrap(), "boom\n");
    assert!(
        lines[6].starts_with("false\tclaude.run(h0, job ")
            && lines[6].ends_with(
                "stdout line 4 is longer than 8 MiB, the bound on one line of output: the command was \
                 stopped; booked at its cap $1.00"
            ),
        "{}",
        lines[6]
    );
    let peak = peak_mib(&out.stdout);
    assert!(
        peak < 80,
        "peak memory {peak} MiB: the 100 MB line was held"
    );
    let c = calls(&ssh.hosts[0].dir);
    assert_eq!(c.len(), 3);
    assert_ended(&c, "[huge]");
    assert_eq!(c[0]["stdin"], "-x [success] detached");
    assert_eq!(c[0]["cwd"], work.display().to_string());
    assert_eq!(
        c[0]["argv"].as_array().unwrap().last().unwrap(),
        "--max-budget-usd=1.00"
    );
    // The prompt files are gone (read as stdin, then removed); the stderr files stay.
    let left: Vec<String> = std::fs::read_dir(ssh.hosts[0].home.join(".baton/claude"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".err"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        rows(
            &env,
            "SELECT host, outcome, cost, cost_source FROM llm_ledger ORDER BY id"
        ),
        [
            ["h0", "ok", "0.25", "provider"],
            ["h0", "error", "1", "reserved"],
            ["h0", "error", "1", "reserved"]
        ]
    );
}

/// `scripts/gpu_claude.lua` on a GPU host (role "gpu") over ssh: the tree pushed, Claude Code run in the
/// pushed folder with the GPU's tools allowed and the cap given, what it wrote pulled back here.
#[test]
fn the_gpu_claude_playbook_pushes_runs_and_pulls_back() {
    require("rsync");
    let ssh = fleet_with_double(1);
    let env = Env::new("claude-gpu").with_fleet(&format!(
        "return {{ ssh_config = {:?}, hosts = {{ h0 = {{ ssh = \"h0\", role = \"gpu\" }} }} }}",
        ssh.ssh_config.display()
    ));
    let proj = env.dir.join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("train.py"), "print('train')\n").unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu_claude.lua");
    // Absolute: the test host's login folder is the real user's, its $HOME the host's own.
    let remote = ssh.hosts[0].home.join("baton-work/proj");
    let out = env.baton(&[
        "run",
        script.to_str().unwrap(),
        "--dir",
        proj.to_str().unwrap(),
        "--remote-dir",
        remote.to_str().unwrap(),
        "--max-usd",
        "1",
        "--",
        "[write]",
        "speed it up",
    ]);
    out.ok();
    assert!(
        out.stdout.contains("pushed ")
            && out.stdout.contains("Looking.\n[Bash] ls\nAll done.\n")
            && out
                .stdout
                .contains("Claude Code finished on h0: $0.25, 2 turns (session sess-1)"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("result.txt")).unwrap(),
        "from claude\n"
    );
    let c = calls(&ssh.hosts[0].dir);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["stdin"], "[write] speed it up");
    assert_eq!(c[0]["cwd"], remote.display().to_string());
    let argv: Vec<String> = serde_json::from_value(c[0]["argv"].clone()).unwrap();
    assert!(
        argv.contains(&"--allowedTools=Bash(nvidia-smi:*)".to_string()),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"--max-budget-usd=1.00".to_string()),
        "{argv:?}"
    );
}

/// `baton doctor` checks each host whose fleet entry says `claude = true`: the CLI's version, or that it is
/// not installed, with the fix.
#[test]
fn doctor_checks_claude_code_where_the_fleet_says_it_is() {
    let env = crate::common::Env::new("claude-doctor")
        .with_fleet("return { hosts = { studio = { ssh = false, claude = true } } }");
    let bin = env.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("claude");
    std::fs::write(&fake, "#!/bin/sh\necho '2.0.31 (Claude Code)'\n").unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .unwrap();
    let doctor = |path: String| {
        let mut cmd = env.cmd();
        cmd.arg("doctor").env("PATH", path);
        crate::common::output_within(cmd, std::time::Duration::from_secs(60))
    };
    let base = std::env::var("PATH").unwrap_or_default();
    let found = doctor(format!("{}:{base}", bin.display()));
    let line = found
        .stdout
        .lines()
        .find(|l| l.contains("claude studio"))
        .unwrap_or_else(|| panic!("{}", found.stdout))
        .to_string();
    assert!(
        line.contains("ok") && line.contains("2.0.31 (Claude Code)"),
        "{line}"
    );
    std::fs::remove_file(&fake).unwrap();
    let missing = doctor(base);
    assert!(
        missing.stdout.contains("not installed")
            && missing
                .stdout
                .contains("npm install -g @anthropic-ai/claude-code"),
        "{}",
        missing.stdout
    );
}

//! Nothing outlives its bound (issue 26): a timeout, a deadline or Ctrl-C ends the waiting caller whatever
//! the code does, C code that no hook reaches included (a backtracking `string.find`); and `baton mcp
//! serve` answers every request line, the ones it must refuse included. All against the real binary.
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Env, output_within, wait_for};
use crate::llm::server::{self, Reply, Stub};

/// C code that backtracks for minutes: no instruction runs, so no hook fires, until it returns.
const BACKTRACK: &str = r#"string.rep("a", 300000):find(".-.-.-.-.-.-b")"#;

/// Lua called from C that never ends: the hook reaches it.
const SPIN_SORT: &str = "table.sort({3, 2, 1, 5, 4}, function() while true do end end)";

/// Allowed on top of a bound on a loaded machine.
const MARGIN: Duration = Duration::from_secs(3);

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, sig).unwrap();
}

#[test]
fn a_timeout_ends_a_run_stuck_in_c_code() {
    let env = Env::new("bound-find");
    let path = env.dir.write(
        "find.lua",
        format!("print('start')\nbaton.timeout(1, function() return {BACKTRACK} end)\nprint('unreachable')"),
    );
    let mut cmd = env.cmd();
    cmd.args(["run", path.to_str().unwrap()]);
    let started = Instant::now();
    let out = output_within(cmd, Duration::from_secs(20));
    let took = started.elapsed();
    out.expect_code(124);
    assert!(took < Duration::from_secs(1) + MARGIN, "took {took:?}");
    assert_eq!(out.stdout, "start\n");
    assert!(
        out.stderr
            .contains("baton: timed out after 1s, and the script did not stop within 1s")
            && out.stderr.contains("exiting with code 124"),
        "{}",
        out.stderr
    );
}

#[test]
fn ctrl_c_says_it_interrupts_and_a_second_one_ends_a_run_stuck_in_c_code() {
    let env = Env::new("bound-sigint");
    let marker = env.dir.join("started");
    let path = env.dir.write(
        "stuck.lua",
        format!(
            "local f = io.open({:?}, 'w') f:close()\n{BACKTRACK}",
            marker.display().to_string()
        ),
    );
    let mut cmd = env.cmd();
    cmd.args(["run", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_for("the script to start", Duration::from_secs(30), || {
        marker.exists()
    });
    signal(&child, rustix::process::Signal::INT);
    let notice = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("a notice after the first Ctrl-C");
    assert_eq!(notice, "interrupting… press Ctrl-C again to exit now");
    // Still stuck: the first Ctrl-C cannot reach C code.
    assert!(child.try_wait().unwrap().is_none());
    signal(&child, rustix::process::Signal::INT);
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second Ctrl-C did not end the run");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(sent.elapsed() < MARGIN, "took {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(130), "{status}");
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(rest, ["baton: interrupted again: exiting now"]);
}

fn turn(req: &server::Request) -> usize {
    req.json()["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count())
}

/// An Ollama stub that asks for the tool `spin` once, then answers `done`.
async fn model_asking_for_spin() -> Stub {
    Stub::start(|req, _| {
        let lines = match turn(req) {
            0 => server::ollama_tool_calls(
                "qwen",
                json!([{"function": {"name": "spin", "arguments": {}}}]),
            ),
            _ => server::ollama_chat("qwen", &["done"], 5, 2),
        };
        Reply::ndjson(lines, 64)
    })
    .await
}

fn agent_env(name: &str, url: &str) -> Env {
    Env::new(name).with_fleet(&format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{url}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }} }} }},
}}"#
    ))
}

fn agent_script(body: &str) -> String {
    format!(
        r#"local tools = {{ spin = {{ description = "spins", run = function() {body} end }} }}
local r = route.ask("lint", "go", {{ tools = tools, max_tier = "local", tool_timeout = "2s", deadline = "20s" }})
for _, s in ipairs(r.steps) do if s.kind == "tool" then print(s.name, s.err) end end
print(r.text)"#
    )
}

/// Runs `script` with `baton run` (at most 20 s), timing it.
async fn timed_run(env: Env, script: String) -> (crate::common::Out, Duration) {
    tokio::task::spawn_blocking(move || {
        let path = env.dir.write("agent.lua", script);
        let mut cmd = env.cmd();
        cmd.args(["run", path.to_str().unwrap()]);
        let started = Instant::now();
        let out = output_within(cmd, Duration::from_secs(20));
        (out, started.elapsed())
    })
    .await
    .unwrap()
}

/// An agent tool that spins inside `table.sort` is stopped at `tool_timeout` and the model told; one stuck
/// in C code ends the run a moment after it (the caller does not wait on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_tool_stuck_in_a_loop_or_in_c_code_ends_at_its_tool_timeout() {
    let stub = model_asking_for_spin().await;
    let (out, took) = timed_run(agent_env("bound-agent", &stub.url), agent_script(SPIN_SORT)).await;
    out.ok();
    assert_eq!(
        out.stdout, "spin\ttimed out after 2s\ndone\n",
        "{}",
        out.stderr
    );
    assert!(took < Duration::from_secs(2) + MARGIN, "took {took:?}");
    let told = stub.requests()[1].json();
    let tool = told["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    assert_eq!(tool["content"], "error: timed out after 2s");

    let stub = model_asking_for_spin().await;
    let script = agent_script(&format!("return {BACKTRACK}"));
    let (out, took) = timed_run(agent_env("bound-agent-c", &stub.url), script).await;
    out.expect_code(124);
    assert!(took < Duration::from_secs(3) + MARGIN, "took {took:?}");
    assert!(
        out.stderr
            .contains("baton: timed out after 2s, and the script did not stop within 1s"),
        "{}",
        out.stderr
    );
}

/// `baton mcp serve` driven with raw JSON-RPC lines; its answers read on a thread so a silent server
/// fails the test instead of hanging it.
struct Serve {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    fn start(env: &Env, tools: &Path) -> Serve {
        let mut cmd = env.cmd();
        cmd.args(["mcp", "serve", tools.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            stdin,
            lines,
        };
        serve.send(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}}),
        );
        let init = serve.answer(Duration::from_secs(30));
        assert_eq!(init["id"], 0, "{init}");
        serve.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        serve
    }

    fn send_raw(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, msg: &Value) {
        self.send_raw(msg.to_string().as_bytes());
    }

    /// The next message from the server, within `limit`.
    fn answer(&self, limit: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("no answer within {limit:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    fn call(&mut self, id: u64, tool: &str, args: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}}));
    }

    /// Closes stdin and waits (at most `limit`) for the server to exit.
    fn close(mut self, limit: Duration) -> std::process::ExitStatus {
        self.stdin = None;
        let closed = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                closed.elapsed() < limit,
                "the server did not exit within {limit:?} of stdin closing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const STUCK_TOOLS: &str = r#"
mcp.tool{ name = "spin", timeout = "1s", run = function()
  table.sort({3, 2, 1, 5, 4}, function() while true do end end)
end }
mcp.tool{ name = "backtrack", timeout = "1s", run = function()
  return string.rep("a", 300000):find(".-.-.-.-.-.-b")
end }
mcp.tool{ name = "add", parameters = { type = "object", required = { "a", "b" },
  properties = { a = { type = "number" }, b = { type = "number" } } },
  run = function(args) return tostring(args.a + args.b) end }
"#;

/// A served tool stuck in Lua called from C, or in C code itself, is answered at its timeout; the server
/// goes on answering pings and calls (a fresh worker takes them) and exits when stdin closes.
#[test]
fn mcp_serve_answers_at_a_stuck_tools_timeout_and_keeps_serving() {
    let env = Env::new("bound-mcp");
    let tools = env.dir.write("tools.lua", STUCK_TOOLS);
    let mut serve = Serve::start(&env, &tools);
    for (id, tool) in [(2, "spin"), (3, "backtrack")] {
        let sent = Instant::now();
        serve.call(id, tool, json!({}));
        let answer = serve.answer(Duration::from_secs(1) + MARGIN);
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("{tool}: timed out after 1s")
        );
        assert!(sent.elapsed() < Duration::from_secs(1) + MARGIN);
        serve.send(&json!({"jsonrpc": "2.0", "id": id + 100, "method": "ping"}));
        let pong = serve.answer(MARGIN);
        assert_eq!(pong["id"], id + 100, "{pong}");
        assert_eq!(pong["result"], json!({}), "{pong}");
    }
    // Calls still run: a fresh worker took over from the stuck one.
    serve.call(4, "add", json!({"a": 1, "b": 2}));
    let sum = serve.answer(Duration::from_secs(10));
    assert_eq!(sum["id"], 4, "{sum}");
    assert_eq!(sum["result"]["content"][0]["text"], "3", "{sum}");
    let status = serve.close(MARGIN);
    assert!(status.success(), "{status}");
}

/// Every request line gets an answer (issue 26): too long, nested too deep, not JSON, a `tools/call` with
/// array arguments, without a tool name or without a required argument: each a JSON-RPC error naming the
/// limit or the mistake, with the request's id where it can be read; the server goes on serving.
#[test]
fn mcp_serve_answers_every_request_line_with_a_result_or_an_error() {
    let env = Env::new("bound-mcp-lines");
    let tools = env.dir.write(
        "tools.lua",
        format!(
            "{STUCK_TOOLS}\nmcp.tool{{ name = \"len\", run = function(args) return tostring(#args.s) end }}"
        ),
    );
    let mut serve = Serve::start(&env, &tools);
    let error = |serve: &Serve, id: Value, code: i64| -> String {
        let answer = serve.answer(Duration::from_secs(20));
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        answer["error"]["message"].as_str().unwrap().to_string()
    };
    // Long lines: over the limit (also over the protocol layer's own 16 MiB, where it said nothing).
    for (id, size) in [(2, 8 * 1024 * 1024 + 1), (3, 17_000_000)] {
        let head = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"len","arguments":{{"s":""#
        );
        let mut line = head.clone().into_bytes();
        line.resize(size - 4, b'a');
        line.extend_from_slice(b"\"}}}");
        assert_eq!(line.len(), size);
        serve.send_raw(&line);
        let msg = error(&serve, json!(id), -32600);
        assert_eq!(
            msg,
            format!("request line of {size} bytes is over the limit of 8388608 bytes (8 MiB)")
        );
    }
    // Just under the limit is served.
    serve.call(4, "len", json!({"s": "a".repeat(8_000_000)}));
    let answer = serve.answer(Duration::from_secs(20));
    assert_eq!(
        answer["result"]["content"][0]["text"], "8000000",
        "{answer}"
    );
    // Nested 126 deep in the arguments.
    let deep = format!("{}{}", "[".repeat(126), "]".repeat(126));
    serve.send_raw(
        format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"add","arguments":{{"a":{deep}}}}}}}"#)
            .as_bytes(),
    );
    let msg = error(&serve, json!(5), -32600);
    assert_eq!(
        msg,
        "request nests arrays and objects 129 deep, over the limit of 64"
    );
    // Not JSON: answered with the id when it can be read, else null.
    serve.send_raw(br#"{"jsonrpc":"2.0","id":6,"method":"#);
    let msg = error(&serve, json!(6), -32700);
    assert!(msg.starts_with("parse error: "), "{msg}");
    serve.send_raw(b"not json");
    let msg = error(&serve, Value::Null, -32700);
    assert!(msg.starts_with("parse error: "), "{msg}");
    // Invalid params.
    for (id, params, want) in [
        (
            7,
            json!({"name": "add", "arguments": [1, 2]}),
            "tools/call: params.arguments must be an object of named arguments, got an array",
        ),
        (
            8,
            json!({"arguments": {}}),
            "tools/call: params.name must name a tool, got none",
        ),
        (
            9,
            json!({"name": "", "arguments": {}}),
            "tools/call: params.name must name a tool, got an empty string",
        ),
        (
            10,
            json!([1]),
            "tools/call: params must be an object {name, arguments}, got an array",
        ),
        (
            11,
            json!({"name": "add", "arguments": {"a": 1}}),
            "add: missing required argument \"b\" (required by the tool's input schema)",
        ),
    ] {
        serve.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}));
        assert_eq!(error(&serve, json!(id), -32602), want);
    }
    // Still serving.
    serve.call(12, "add", json!({"a": 1, "b": 2}));
    let sum = serve.answer(Duration::from_secs(10));
    assert_eq!(
        (
            sum["id"].clone(),
            sum["result"]["content"][0]["text"].clone()
        ),
        (json!(12), json!("3"))
    );
    let status = serve.close(MARGIN);
    assert!(status.success(), "{status}");
}

/// Ctrl-C ends `baton mcp serve` at once, with its client still connected and a tool stuck in C code.
#[test]
fn ctrl_c_ends_mcp_serve_with_stdin_open_and_a_tool_stuck() {
    let env = Env::new("bound-mcp-sigint");
    let tools = env.dir.write("tools.lua", STUCK_TOOLS);
    let mut serve = Serve::start(&env, &tools);
    serve.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(serve.answer(MARGIN)["id"], 1);
    serve.call(2, "backtrack", json!({}));
    signal(&serve.child, rustix::process::Signal::INT);
    let sent = Instant::now();
    loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(1) + MARGIN,
            "mcp serve did not end on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command that prints without end (`yes`) is stopped at the output bound (128 MiB a stream), locally
/// and over ssh, with an error that says so; nothing waits for a timeout that was never set.
#[test]
fn endless_output_is_stopped_at_the_output_bound() {
    let fleet = crate::sshd::SshFleet::start(1);
    let env = Env::new("bounds-output").with_fleet(&format!(
        r#"return {{ ssh_config = {:?}, hosts = {{ h0 = {{}} }} }}"#,
        fleet.ssh_config.display()
    ));
    let out = env.run_lua(
        "yes.lua",
        r#"
print(select(2, pcall(baton.exec, {"yes"})))
print(select(2, pcall(ssh.run, "h0", "yes")))
print(select(2, pcall(ssh.run, "h0", "yes >&2")))
print(ssh.run("h0", "echo still fine").stdout)
"#,
        &[],
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0]
            .contains("stdout is over 128 MiB, the bound on what one command's output may hold"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].contains("stdout is over 128 MiB"),
        "{}",
        out.stdout
    );
    assert!(
        lines[2].contains("stderr is over 128 MiB"),
        "{}",
        out.stdout
    );
    assert_eq!(lines[3], "still fine");
}

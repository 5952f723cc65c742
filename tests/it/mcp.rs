//! MCP both ways against real peers (issue 18): baton's client against `mcp-server-git` and a server on the
//! official Python SDK (stdio, stdio over a fleet host's ssh master, Streamable HTTP on 127.0.0.1), and
//! `baton mcp serve` driven by the Python SDK's client. The PyPI packages live in a venv that `.ci/run`
//! creates (`target/mcp-venv`, or `$BATON_MCP_VENV`); a missing one fails the test, naming it.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, bin, git, output_within};
use crate::sshd::SshFleet;

fn venv() -> PathBuf {
    std::env::var_os("BATON_MCP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv"))
}

/// A program of the venv, failing loudly when the package that provides it is missing.
fn venv_bin(program: &str, package: &str) -> PathBuf {
    let path = venv().join("bin").join(program);
    assert!(
        path.is_file(),
        "{} not found: the MCP tests need the PyPI package `{package}` in the venv {} (set \
         BATON_MCP_VENV to use another); .ci/run installs it: python3 -m venv target/mcp-venv && \
         target/mcp-venv/bin/pip install mcp mcp-server-git",
        path.display(),
        venv().display()
    );
    path
}

/// The venv's python, with the `mcp` SDK installed.
fn python() -> PathBuf {
    venv_bin("mcp", "mcp");
    venv_bin("python", "mcp")
}

fn git_server() -> PathBuf {
    venv_bin("mcp-server-git", "mcp-server-git")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
}

/// A git repository with one commit.
fn repo(env: &Env) -> PathBuf {
    let dir = env.dir.join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q"]);
    std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
    git(&dir, &["add", "a.txt"]);
    git(
        &dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "first commit",
        ],
    );
    dir
}

fn lua_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("{{{}}}", quoted.join(", "))
}

#[test]
fn client_lists_and_calls_the_tools_of_mcp_server_git() {
    let server = git_server();
    let env = Env::new("mcp-git");
    let repo = repo(&env);
    let repo = repo.to_str().unwrap();
    let env = env.with_fleet(&format!(
        "return {{ mcp = {{ git = {{ command = {} }} }} }}",
        lua_list(&[server.to_str().unwrap(), "--repository", repo])
    ));
    let out = env.run_lua(
        "git.lua",
        &format!(
            r#"
            local repo = {repo:?}
            local h = mcp.connect("git")
            print("handle", tostring(h))
            local tools = h:tools()
            local by_name = {{}}
            for _, t in ipairs(tools) do by_name[t.name] = t end
            print("has git_status", by_name.git_status ~= nil, type(by_name.git_status.run))
            print("schema", by_name.git_log.parameters.type, by_name.git_log.parameters.properties.repo_path.type)
            local r = h:call("git_status", {{repo_path = repo}})
            print("status", r.is_error, r.text:match("nothing to commit") ~= nil, r.content[1].type)
            print("log via run", by_name.git_log.run({{repo_path = repo}}):match("first commit") ~= nil)
            print("log via call", by_name.git_log({{repo_path = repo}}):match("first commit") ~= nil)
            local bad = h:call("git_show", {{repo_path = repo, revision = "no-such-rev"}})
            print("error result", bad.is_error, bad.text:match("no%-such%-rev") ~= nil)
            local ok, err = pcall(by_name.git_show.run, {{repo_path = repo, revision = "no-such-rev"}})
            print("run raises", ok, tostring(err):match("^mcp.run%(git, git_show%)") ~= nil)
            print("shared", tostring(mcp.connect("git")) == tostring(h))
            print(pcall(mcp.connect, "gti"))
            print(pcall(mcp.connect, "gitt"))
            print(pcall(h.call, h, "git_status", "x"))
            h:close()
            print("after close", tostring(h):match("closed") ~= nil, pcall(h.call, h, "git_status", {{}}))
            "#
        ),
        &[],
    );
    out.ok();
    let s = &out.stdout;
    assert!(s.contains("handle\tmcp server git (stdio: "), "{s}");
    assert!(s.contains("has git_status\ttrue\tfunction"), "{s}");
    assert!(s.contains("schema\tobject\tstring"), "{s}");
    assert!(s.contains("status\tfalse\ttrue\ttext"), "{s}");
    assert!(s.contains("log via run\ttrue"), "{s}");
    assert!(s.contains("log via call\ttrue"), "{s}");
    assert!(s.contains("error result\ttrue\ttrue"), "{s}");
    assert!(s.contains("run raises\tfalse\ttrue"), "{s}");
    assert!(s.contains("shared\ttrue"), "{s}");
    assert!(
        s.contains("false\tmcp.connect: unknown MCP server \"gti\" (fleet mcp servers: git)"),
        "{s}"
    );
    assert!(
        s.contains("false\tmcp.connect: unknown MCP server \"gitt\", did you mean git?"),
        "{s}"
    );
    assert!(
        s.contains("false\tmcp:call: argument 2 (args) must be a table of named arguments, got string \"x\""),
        "{s}"
    );
    assert!(
        s.contains("after close\ttrue\tfalse\tmcp:call(git, git_status): connection closed"),
        "{s}"
    );
}

#[test]
fn a_server_that_exits_is_reported_with_its_status_and_stderr() {
    let py = python();
    let env = Env::new("mcp-exit").with_fleet(&format!(
        "return {{ mcp = {{ fx = {{ command = {} }} }} }}",
        lua_list(&[
            py.to_str().unwrap(),
            fixture("fixture_server.py").to_str().unwrap()
        ])
    ));
    let out = env.run_lua(
        "exit.lua",
        &format!(
            r#"
            local h = mcp.connect({{command = {}}})
            print("echo", h:call("echo", {{text = "still here"}}).text)
            print(pcall(h.call, h, "die"))
            print(pcall(h.call, h, "echo", {{text = "again"}}))
            local fx = mcp.connect("fx")
            print(pcall(fx.call, fx, "die"))
            print("reconnected", mcp.connect("fx"):call("echo", {{text = "new server"}}).text)
            print(pcall(mcp.connect, {{command = {{"sh", "-c", "echo bad config >&2; exit 2"}}}}))
            print(pcall(mcp.connect, {{command = {{"/nonexistent/mcp-server"}}}}))
            "#,
            lua_list(&[
                py.to_str().unwrap(),
                fixture("fixture_server.py").to_str().unwrap()
            ])
        ),
        &[],
    );
    out.ok();
    let s = &out.stdout;
    assert!(s.contains("echo\tstill here"), "{s}");
    assert!(
        s.contains("false\tmcp:call(fx, die): server exited (exit status: 3)"),
        "{s}"
    );
    // A fleet server that exited is started anew by the next connect.
    assert!(s.contains("reconnected\tnew server"), "{s}");
    assert!(
        s.contains("false\tmcp:call(python, die): server exited (exit status: 3): stderr: dying now: fixture asked to exit"),
        "{s}"
    );
    assert!(
        s.contains("false\tmcp:call(python, echo): server exited (exit status: 3)"),
        "{s}"
    );
    assert!(
        s.contains("false\tmcp.connect(sh): server exited (exit status: 2): stderr: bad config"),
        "{s}"
    );
    assert!(
        s.contains("false\tmcp.connect(mcp-server): cannot start /nonexistent/mcp-server: "),
        "{s}"
    );
}

#[test]
fn mcp_server_git_runs_on_a_fleet_host_through_its_ssh_master() {
    let server = git_server();
    let py = python();
    let ssh = SshFleet::start(1);
    let env = Env::new("mcp-ssh");
    let repo = repo(&env);
    let fleet = ssh.fleet_lua().replacen(
        "return {",
        &format!(
            "return {{\n  mcp = {{\n    git = {{ command = {}, host = \"h0\" }},\n    fx = {{ command = {}, host = \"h0\", env = {{ FROM_FLEET = \"yes\" }} }},\n  }},",
            lua_list(&[
                server.to_str().unwrap(),
                "--repository",
                repo.to_str().unwrap()
            ]),
            lua_list(&[
                py.to_str().unwrap(),
                fixture("fixture_server.py").to_str().unwrap()
            ])
        ),
        1,
    );
    let env = env.with_fleet(&fleet);
    let out = env.run_lua(
        "ssh.lua",
        &format!(
            r#"
            local h = mcp.connect("git")
            print(h)
            local r = h:call("git_status", {{repo_path = {:?}}})
            print("status", r.is_error, r.text:match("nothing to commit") ~= nil)
            local fx = mcp.connect("fx")
            print("home", fx:call("env", {{name = "HOME"}}).text)
            print("env", fx:call("env", {{name = "FROM_FLEET"}}).text)
            "#,
            repo.to_str().unwrap()
        ),
        &[],
    );
    out.ok();
    let s = &out.stdout;
    assert!(s.contains("mcp server git (stdio on h0: "), "{s}");
    assert!(s.contains("status\tfalse\ttrue"), "{s}");
    // sshd gives each test host its own HOME: the server really ran in the host's ssh session.
    assert!(
        s.contains(&format!("home\t{}\n", ssh.hosts[0].home.display())),
        "{s}"
    );
    assert!(s.contains("env\tyes"), "{s}");
}

/// A free loopback port (the server binds it right after; nothing else here takes ports from this range).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn streamable_http_with_headers() {
    let py = python();
    let port = free_port();
    let mut server = Killed(
        Command::new(&py)
            .arg(fixture("fixture_server.py"))
            .args(["--http", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the Python MCP server on port {port} exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the Python MCP server did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let env = Env::new("mcp-http").with_fleet(&format!(
        r#"return {{ mcp = {{ web = {{ url = "http://127.0.0.1:{port}/mcp", headers = {{ ["X-Token"] = "s3cret-value" }} }} }} }}"#
    ));
    let out = env.run_lua(
        "http.lua",
        r#"
        local h = mcp.connect("web")
        print(h)
        print("echo", h:call("echo", {text = "over http"}).text)
        print("header", h:call("header", {name = "X-Token"}).text)
        local names = {}
        for _, t in ipairs(h:tools()) do names[#names + 1] = t.name end
        table.sort(names)
        print("tools", table.concat(names, ","))
        "#,
        &[],
    );
    out.ok();
    let s = &out.stdout;
    assert!(
        s.contains(&format!(
            "mcp server web (http: http://127.0.0.1:{port}/mcp)"
        )),
        "{s}"
    );
    assert!(s.contains("echo\tover http"), "{s}");
    assert!(s.contains("header\ts3cret-value"), "{s}");
    assert!(s.contains("tools\tadd,die,echo,env,header"), "{s}");
    // The header's value is a secret: `baton fleet` does not show it.
    let shown = env.baton(&["fleet", "--json"]);
    assert!(!shown.stdout.contains("s3cret"), "{}", shown.stdout);
}

#[test]
fn serve_is_driven_by_the_python_sdk_client() {
    let py = python();
    let env = Env::new("mcp-serve");
    let stderr = env.dir.join("serve.err");
    let mut cmd = Command::new(py);
    cmd.arg(fixture("client.py"))
        .arg(bin())
        .arg(fixture("tools.lua"))
        .arg(&stderr)
        .env("HOME", env.dir.join("home"))
        .env("XDG_CONFIG_HOME", env.dir.join("config"))
        .env("BATON_STATE_DIR", env.state_dir())
        .env_remove("BATON_FLEET")
        .stdin(Stdio::null());
    let out = output_within(cmd, Duration::from_secs(60));
    out.ok();
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client.py printed no report ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    let server_err = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(report["server_name"], "baton");
    assert!(
        ["2025-06-18", "2025-11-25", "2026-07-28"]
            .contains(&report["protocol_version"].as_str().unwrap()),
        "{report}"
    );
    assert_eq!(
        report["tools"]["add"]["schema"],
        serde_json::json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"]
        })
    );
    assert_eq!(report["tools"]["add"]["description"], "Adds two numbers.");
    assert_eq!(
        report["tools"]["info"]["schema"],
        serde_json::json!({"type": "object"})
    );
    assert_eq!(
        report["add"],
        serde_json::json!({"text": "42", "is_error": false})
    );
    assert_eq!(
        report["info"]["structured"],
        serde_json::json!({"fleet": "test", "hosts": ["a", "b"]})
    );
    assert_eq!(report["boom"]["is_error"], true);
    assert!(
        report["boom"]["text"]
            .as_str()
            .unwrap()
            .ends_with("tools.lua:25: boom: on purpose"),
        "{report}"
    );
    // `print` in a tool reached stderr, and the protocol on stdout went on undisturbed.
    assert_eq!(
        report["noisy"],
        serde_json::json!({"text": "quiet answer", "is_error": false})
    );
    for line in [
        "printed by noisy",
        "io.write by noisy",
        "io.stdout by noisy",
        "os.execute by noisy",
    ] {
        assert!(
            server_err.contains(line),
            "{line:?} not on stderr: {server_err}"
        );
    }
    // Ten calls overlapped: every one started before the first one ended.
    let slow = report["slow"].as_array().unwrap();
    assert_eq!(slow.len(), 10, "{report}");
    let last_start = slow
        .iter()
        .map(|r| r["started"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let first_end = slow
        .iter()
        .map(|r| r["ended"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    assert!(
        last_start < first_end,
        "calls ran one after another: {slow:?}"
    );
    assert_eq!(
        report["spin_briefly"],
        serde_json::json!({"text": "spin_briefly: timed out after 300ms", "is_error": true})
    );
    assert!(
        report["spin"].as_str().unwrap().starts_with("abandoned"),
        "{report}"
    );
    // The cancelled busy loop stopped: its counter no longer moves.
    let counts = report["count_after_cancel"].as_array().unwrap();
    assert_ne!(counts[0], "0", "{report}");
    assert_eq!(counts[0], counts[1], "the cancelled tool kept running");
    // Each served call is a run of its own (trigger mcp) in `baton runs`, a failed one as failed.
    let runs: serde_json::Value = serde_json::from_str(
        &env.baton(&["runs", "--limit", "1000", "--json"])
            .ok()
            .stdout,
    )
    .unwrap();
    let served: Vec<(String, String)> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "mcp")
        .map(|r| {
            (
                r["script"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        served.contains(&("baton mcp serve: add".into(), "ok".into()))
            && served.contains(&("baton mcp serve: boom".into(), "failed".into())),
        "{served:?}"
    );
}

/// Reads one JSON-RPC message from the server's stdout, failing on anything that is not JSON.
fn read_message(out: &mut impl BufRead) -> serde_json::Value {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("stdout carried a non-protocol line ({e}): {line:?}"))
}

#[test]
fn serve_answers_each_initialize_version_and_keeps_stdout_to_the_protocol() {
    let env = Env::new("mcp-raw");
    let tools = fixture("tools.lua");
    for version in ["2025-06-18", "2025-11-25"] {
        let mut cmd = env.cmd();
        cmd.args(["mcp", "serve", tools.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = Killed(cmd.spawn().unwrap());
        let mut stdin = child.0.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
        let send = |stdin: &mut std::process::ChildStdin, msg: serde_json::Value| {
            writeln!(stdin, "{msg}").unwrap();
            stdin.flush().unwrap();
        };
        send(
            &mut stdin,
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"}}}),
        );
        let init = read_message(&mut stdout);
        assert_eq!(init["result"]["protocolVersion"], version, "{init}");
        assert_eq!(init["result"]["serverInfo"]["name"], "baton", "{init}");
        assert!(
            init["result"]["capabilities"]["tools"].is_object(),
            "{init}"
        );
        send(
            &mut stdin,
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        send(
            &mut stdin,
            serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "noisy", "arguments": {}}}),
        );
        let answer = read_message(&mut stdout);
        assert_eq!(answer["id"], 2, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "quiet answer");
        send(
            &mut stdin,
            serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "no_such_tool", "arguments": {}}}),
        );
        let unknown = read_message(&mut stdout);
        assert!(
            unknown["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown tool \"no_such_tool\""),
            "{unknown}"
        );
        // End of input ends the server, with nothing more on stdout.
        drop(stdin);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        assert_eq!(rest, "", "stdout carried more than protocol messages");
        let status = child.0.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

#[test]
fn serve_answers_the_2026_07_28_revision_without_initialize() {
    let env = Env::new("mcp-2026");
    let mut cmd = env.cmd();
    cmd.args(["mcp", "serve", fixture("tools.lua").to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Killed(cmd.spawn().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let meta = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
    });
    for msg in [
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}),
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": meta}}),
    ] {
        writeln!(stdin, "{msg}").unwrap();
    }
    stdin.flush().unwrap();
    let discover = read_message(&mut stdout);
    assert!(
        discover["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("2026-07-28")),
        "{discover}"
    );
    let call = read_message(&mut stdout);
    assert_eq!(call["id"], 2, "{call}");
    assert_eq!(call["result"]["content"][0]["text"], "3", "{call}");
    drop(stdin);
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn serve_refuses_a_missing_or_empty_tools_file() {
    let env = Env::new("mcp-files");
    let out = env.baton(&["mcp", "serve", "nope.lua"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("mcp serve: tools file nope.lua not found (create it, or pass FILE)"),
        "{}",
        out.stderr
    );
    let empty = env.dir.write("empty.lua", "local x = 1\n");
    let out = env.baton(&["mcp", "serve", empty.to_str().unwrap()]);
    out.expect_code(1);
    assert!(out.stderr.contains("registered no tools"), "{}", out.stderr);
    let bad = env.dir.write(
        "bad.lua",
        "mcp.tool{name = 'has space', run = function() end}\n",
    );
    let out = env.baton(&["mcp", "serve", bad.to_str().unwrap()]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "mcp.tool: tool.name must be 1 to 64 letters, digits, '_', '-' or '.', got \"has space\""
        ),
        "{}",
        out.stderr
    );
    let bad = env.dir.write(
        "bad2.lua",
        "mcp.tool{name = 'x', run = function() end, paramters = {}}\n",
    );
    let out = env.baton(&["mcp", "serve", bad.to_str().unwrap()]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("mcp.tool: tool.paramters: unknown key, did you mean parameters?"),
        "{}",
        out.stderr
    );
    // Default FILE: tools.lua next to the fleet file.
    let env = env.with_fleet("return {}");
    let out = env.baton(&["mcp", "serve"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "tools file {} not found",
            env.dir.join("tools.lua").display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn the_example_tools_file_serves_its_tools_to_baton_itself() {
    let env = Env::new("mcp-example").with_fleet("return { hosts = { brain = { ssh = false } } }");
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tools.lua");
    let out = env.run_lua(
        "example.lua",
        &format!(
            r#"
            local h = mcp.connect({{command = {}}})
            local names = {{}}
            for _, t in ipairs(h:tools()) do names[#names + 1] = t.name end
            table.sort(names)
            print("tools", table.concat(names, ","))
            local r = h:call("disk_memory", {{host = "elsewhere"}})
            print("host refused", r.is_error, r.text)
            r = h:call("job_spawn", {{host = "brain", job = "rm"}})
            print("job refused", r.is_error, r.text)
            r = h:call("disk_memory", {{host = "brain"}})
            print("allowed", r.is_error, r.data.disk ~= "")
            r = h:call("sync_push", {{path = "/etc", host = "brain", remote_path = "~/src/x"}})
            print("sync refused", r.is_error, r.text)
            r = h:call("spend", {{}})
            print("spend", r.is_error, #r.data.rows)
            "#,
            lua_list(&[
                bin().to_str().unwrap(),
                "mcp",
                "serve",
                tools.to_str().unwrap()
            ])
        ),
        &[],
    );
    out.ok();
    let s = &out.stdout;
    assert!(
        s.contains("tools\task,disk_memory,fleet_status,git_diff,git_log,git_status,gpu_status,job_spawn,job_status,job_tail,spend,sync_pull,sync_push"),
        "{s}"
    );
    assert!(
        s.contains("host refused\ttrue\t")
            && s.contains("disk_memory: host elsewhere is not allowed"),
        "{s}"
    );
    assert!(s.contains("job_spawn: no job named rm in JOBS"), "{s}");
    assert!(s.contains("allowed\tfalse\ttrue"), "{s}");
    assert!(
        s.contains("sync_push: /etc on local is outside the allowed roots"),
        "{s}"
    );
    assert!(s.contains("spend\tfalse\t0"), "{s}");
}

#[test]
fn misuse_and_unreachable_servers_raise_clear_errors() {
    let env = Env::new("mcp-misuse").with_fleet("return { hosts = { brain = {} } }");
    let out = env.run_lua(
        "misuse.lua",
        r#"
        print(pcall(mcp.tool, {run = function() end}))
        print(pcall(mcp.tool, {name = "x"}))
        print(pcall(mcp.tool, {name = "y", run = function() end, parameters = {type = "string"}}))
        print(pcall(mcp.tool, {name = "z", run = function() end, timeout = "soon"}))
        mcp.tool{name = "dup", run = function() end}
        print(pcall(mcp.tool, {name = "dup", run = function() end}))
        print(pcall(mcp.connect, {comand = {"x"}}))
        print(pcall(mcp.connect, {command = {"x"}, host = "brian"}))
        print(pcall(mcp.connect, 42))
        print(pcall(mcp.connect, "git"))
        print(pcall(mcp.connect, {url = "http://127.0.0.1:9/mcp"}, {timeout = "5s"}))
        "#,
        &[],
    );
    out.ok();
    let expected = [
        "false\tmcp.tool: tool: missing field `name`",
        "false\tmcp.tool: tool.run must be a function(args), got nil",
        "false\tmcp.tool(y): tool.parameters must have type = \"object\", got \"string\"",
        "false\tmcp.tool: tool.timeout: expected a duration",
        "false\tmcp.tool: a tool named \"dup\" is already registered",
        "false\tmcp.connect: spec.comand: unknown key, did you mean command?",
        "false\tmcp.connect: spec.host: unknown host \"brian\", did you mean brain?",
        "false\tmcp.connect: argument 1 (server) must be a fleet MCP server name or a table",
        "false\tmcp.connect: unknown MCP server \"git\" (the fleet file has no `mcp` servers)",
        "false\tmcp.connect(127.0.0.1:9): initialize failed: error sending request for url (http://127.0.0.1:9/mcp): ",
    ];
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{}", out.stdout);
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "{line:?} does not start with {want:?}"
        );
    }
    // rmcp's own log lines stay out of a plain run's stderr.
    assert!(
        !out.stderr.contains("rmcp") && !out.stderr.contains("ERROR"),
        "{}",
        out.stderr
    );
}

/// `route.ask` with tools from a real MCP server (mcp-server-git) mixed with a Lua tool: the scripted
/// model asks for `git_log` and the Lua tool in one step, gets both results back and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_ask_runs_mcp_server_tools_beside_lua_tools() {
    use crate::llm::server::{self as llm_server, Reply, Stub, refused_url};
    let server = git_server();
    let env = Env::new("mcp-route");
    let repo = repo(&env);
    let repo_s = repo.to_str().unwrap().to_string();
    let repo_json = repo_s.clone();
    let stub = Stub::start(move |req, _| {
        let tool_results = req.json()["messages"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
        let lines = if tool_results == 0 {
            llm_server::ollama_tool_calls(
                "qwen",
                serde_json::json!([
                    {"function": {"name": "git_log", "arguments": {"repo_path": repo_json}}},
                    {"function": {"name": "shout", "arguments": {"word": "done"}}}
                ]),
            )
        } else {
            llm_server::ollama_chat("qwen", &["read ", "the log"], 5, 2)
        };
        Reply::ndjson(lines, 32)
    })
    .await;
    let fleet = format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }} }} }},
  openrouter = {{ base_url = "{}/v1" }},
  mcp = {{ git = {{ command = {} }} }},
}}"#,
        stub.url,
        refused_url().await,
        lua_list(&[server.to_str().unwrap(), "--repository", &repo_s])
    );
    let env = env.with_fleet(&fleet);
    let out = tokio::task::spawn_blocking(move || {
        env.run_lua(
            "agent.lua",
            r#"
            local tools = mcp.connect("git"):tools()
            tools[#tools + 1] = { name = "shout", description = "upper-cases a word",
              parameters = { type = "object", properties = { word = { type = "string" } } },
              run = function(args) return args.word:upper() end }
            local r = route.ask("lint", "what happened?", { tools = tools, max_tier = "local" })
            print(r.text)
            for _, s in ipairs(r.steps) do
              if s.kind == "tool" then print(s.name, s.err or s.result) end
            end
            "#,
            &[],
        )
    })
    .await
    .unwrap();
    out.ok();
    let s = &out.stdout;
    assert!(s.starts_with("read the log\n"), "{s}");
    assert!(
        s.contains("\ngit_log\tCommit history:") && s.contains("Message: first commit"),
        "{s}"
    );
    assert!(s.trim_end().ends_with("\nshout\tDONE"), "{s}");
    // The model was offered the server's tools with their schemas, and got the log back.
    let first = stub.requests()[0].json();
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        offered.contains(&"git_log")
            && offered.contains(&"git_status")
            && offered.contains(&"shout"),
        "{offered:?}"
    );
    let second = stub.requests()[1].json();
    let log = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_name"] == "git_log")
        .expect("git_log result sent back");
    assert!(
        log["content"].as_str().unwrap().contains("first commit"),
        "{log}"
    );
}

/// `baton mcp serve FILE` finds the modules beside FILE (given relative, from another current folder).
#[test]
fn serve_requires_modules_beside_the_tools_file() {
    let env = Env::new("mcp-require");
    env.dir.write(
        "srv/helper.lua",
        "return { greet = function(n) return 'hi ' .. n end }",
    );
    env.dir.write(
        "srv/tools.lua",
        r#"local helper = require("helper")
        mcp.tool{ name = "greet", description = "greets",
          parameters = { type = "object", properties = { n = { type = "string" } } },
          run = function(a) return helper.greet(a.n) end }"#,
    );
    let script = format!(
        r#"local h = mcp.connect({{command = {{ {bin:?}, "mcp", "serve", "srv/tools.lua" }}}})
        print(h:call("greet", {{ n = "there" }}).text)"#,
        bin = bin().display().to_string(),
    );
    let out = env.run_lua("client.lua", &script, &[]);
    out.ok();
    assert_eq!(out.stdout, "hi there\n");
}

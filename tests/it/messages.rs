//! Error messages stay clear and bounded: an argument that is not UTF-8 is named (function and argument),
//! and a huge argument is echoed as a short prefix with its length, never whole.
use crate::common::Env;

/// A fleet whose only tier points at a closed port, so nothing reaches a real service.
const FLEET: &str = r#"return {
  hosts = { engine = { ssh = false, ollama = "http://127.0.0.1:9" } },
  tiers = { { name = "local", provider = "ollama", host = "engine", models = { code = "m", reason = "m" } } },
}"#;

/// Each call as `name`, the argument it passes the bad value as, and the Lua call with `a` standing for it.
const CALLS: &[(&str, &str, &str)] = &[
    ("route.pick", "argument 1 (task)", "route.pick(a)"),
    ("route.ask", "argument 1 (task)", "route.ask(a, 'hi')"),
    ("route.ask", "argument 2 (prompt)", "route.ask('lint', a)"),
    ("mcp.connect", "argument 1 (target)", "mcp.connect(a)"),
    ("sync.syncthing", "argument 1 (host)", "sync.syncthing(a)"),
    ("ssh.wake", "argument 1 (host)", "ssh.wake(a)"),
    ("ssh.run", "argument 1 (host)", "ssh.run(a, 'true')"),
    ("ssh.job", "argument 1 (id)", "ssh.job(a)"),
    ("schedule.next", "argument 1 (expr)", "schedule.next(a)"),
    ("baton.exec", "argument 1 (cmd)", "baton.exec(a)"),
    (
        "baton.exec",
        "argument 1 (cmd) at index 1",
        "baton.exec({a})",
    ),
    (
        "baton.exec",
        "options: a key",
        "baton.exec('true', {[a] = 1})",
    ),
    ("baton.sleep", "argument 1 (dur)", "baton.sleep(a)"),
];

fn script() -> String {
    let mut s = String::from(
        "local big = string.rep('x', 1024 * 1024)\n\
         local function try(i, kind, f)\n\
           local ok, err = pcall(f)\n\
           print(i .. '\\t' .. kind .. '\\t' .. tostring(ok) .. '\\t' .. (ok and '' or tostring(err):gsub('\\n', '\\\\n')))\n\
         end\n",
    );
    for (i, (_, _, call)) in CALLS.iter().enumerate() {
        s.push_str(&format!(
            "try({i}, 'utf8', function() local a = 'ab\\xff'; return {call} end)\n\
             try({i}, 'big', function() local a = big; return {call} end)\n"
        ));
    }
    s
}

#[test]
fn bad_text_and_huge_arguments_give_short_named_errors() {
    let env = Env::new("messages").with_fleet(FLEET);
    let out = env.run_lua("messages.lua", &script(), &[]);
    out.ok();
    let mut seen = 0;
    for line in out.stdout.lines() {
        let mut parts = line.splitn(4, '\t');
        let i: usize = parts.next().unwrap().parse().unwrap();
        let kind = parts.next().unwrap();
        let ok = parts.next().unwrap() == "true";
        let err = parts.next().unwrap_or_default();
        let (func, arg, call) = CALLS[i];
        seen += 1;
        assert!(
            err.len() < 300,
            "{call} with {kind}: {} bytes: {err:.400}",
            err.len()
        );
        match kind {
            "utf8" => {
                assert!(!ok, "{call} accepted invalid UTF-8");
                assert!(err.starts_with(&format!("{func}: {arg}")), "{call}: {err}");
                assert!(
                    err.contains("must be valid UTF-8 text, got invalid byte 0xff at 3"),
                    "{call}: {err}"
                );
            }
            _ => {
                // A call may accept the value (route.pick falls back to the lowest tier); when it fails, the
                // message names the function and shows the value cut short with its length.
                if !ok {
                    assert!(err.starts_with(func), "{call}: {err}");
                    assert!(!err.contains(&"x".repeat(101)), "{call}: {err}");
                }
            }
        }
    }
    assert_eq!(seen, 2 * CALLS.len(), "{}\n{}", out.stdout, out.stderr);
}

/// What a server sends reaches messages and logs escaped: no raw control character, and a newline in a
/// server's text cannot start a log line of its own.
fn assert_no_raw_controls(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{what} has a raw control character: {text:?}"
    );
}

/// OpenRouter's `/key` answering an error whose body has a newline and `ESC[2J`: baton's warning shows it
/// on one line, escaped; and with stderr not a terminal the log has no colours (no ESC byte at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_error_body_cannot_forge_a_log_line_or_drive_the_terminal() {
    use crate::llm::server::{self, Reply, Stub};
    let provider = Stub::start(|req, _| {
        if req.path.ends_with("/key") {
            return Reply::json(
                500,
                serde_json::json!({"error": {"message": "boom\n WARN forged: all fine\u{1b}[2J"}}),
            );
        }
        Reply::sse(server::sse("c/m", &["ok"], 1, 1, Some(0.0)), 64)
    })
    .await;
    let fleet = format!(
        r#"return {{
  hosts = {{}},
  tiers = {{ {{ name = "cheap", provider = "openrouter", model = "c/m", price = {{ input = 0, output = 1 }} }} }},
  openrouter = {{ base_url = "{}/api/v1" }},
  budget = {{ monthly_usd = 2 }},
}}"#,
        provider.url
    );
    let env = Env::new("messages-key")
        .with_fleet(&fleet)
        .var("OPENROUTER_API_KEY", "sk-or-v1-test-key-123456");
    let out = tokio::task::spawn_blocking(move || {
        env.run_lua(
            "key.lua",
            r#"print(openrouter.chat({ model = "c/m", messages = { { role = "user", content = "hi" } }, max_tokens = 1 }).text)"#,
            &[],
        )
    })
    .await
    .unwrap();
    out.ok();
    assert!(
        out.stderr.contains("cannot read the provider's usage"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(r"boom\n WARN forged: all fine\u{1b}[2J"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("WARN forged")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains('\u{1b}'),
        "colours or ESC: {:?}",
        out.stderr
    );
    assert_no_raw_controls("stderr", &out.stderr);
}

/// A stdio MCP server (a few lines of Python, no SDK) whose JSON-RPC error and stderr carry `ESC[2J` and a
/// newline: the error a script catches from `mcp:call` has them escaped.
#[test]
fn an_mcp_servers_error_is_escaped() {
    let env = Env::new("messages-mcp");
    let server = env.dir.write(
        "server.py",
        r#"import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    if msg["method"] == "initialize":
        result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                  "serverInfo": {"name": "evil", "version": "1"}}
        out = {"jsonrpc": "2.0", "id": msg["id"], "result": result}
    elif msg["method"] == "tools/call" and msg["params"]["name"] == "die":
        sys.stderr.write("dying\x1b]0;owned\x07 now\n")
        sys.stderr.flush()
        sys.exit(3)
    else:
        out = {"jsonrpc": "2.0", "id": msg["id"],
               "error": {"code": -32000, "message": "bad\n forged line\x1b[2J"}}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"#,
    );
    let out = env.run_lua(
        "mcp.lua",
        &format!(
            r#"
            local h = mcp.connect({{command = {{"python3", "{0}"}}}})
            local ok, err = pcall(h.call, h, "anything", {{}})
            print((tostring(err):gsub("\n", "<NL>")))
            local h = mcp.connect({{command = {{"python3", "{0}"}}}})
            local ok, err = pcall(h.call, h, "die", {{}})
            print((tostring(err):gsub("\n", "<NL>")))
            "#,
            server.display()
        ),
        &[],
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        lines[0].contains(r"bad\n forged line\u{1b}[2J (error -32000)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(r"dying\u{1b}]0;owned\u{7} now"),
        "{}",
        lines[1]
    );
    assert_no_raw_controls("stdout", &out.stdout);
}

mod lost_output {
    //! `baton ask` whose answer has nowhere to go fails (exit 1, a message on stderr, no panic) when stdout
    //! was closed (`>&-`) or the disk is full (`/dev/full`); a reader that went away (EPIPE) ends it
    //! quietly.
    use std::process::Stdio;
    use std::sync::{Mutex, mpsc};
    use std::time::Duration;

    use crate::common::{Env, Out, bin, wait_within};
    use crate::llm::server::{self, Reply, Stub};

    fn env(url: &str, name: &str) -> Env {
        Env::new(name).with_fleet(&format!(
            r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{url}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }} }} }},
}}"#
        ))
    }

    /// A stub answering "fix it" once `go` says so (so a test can close the pipe first).
    async fn stub(go: mpsc::Receiver<()>) -> Stub {
        let go = Mutex::new(go);
        Stub::start(move |_, _| {
            let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(30));
            Reply::ndjson(server::ollama_chat("qwen", &["fix ", "it"], 3, 2), 64)
        })
        .await
    }

    /// `sh -c SCRIPT` with baton's isolated environment, `$0` being the binary.
    fn sh(env: &Env, script: &str) -> Out {
        let mut cmd = env.program("sh");
        cmd.arg("-c").arg(script).arg(bin());
        crate::common::output_within(cmd, Duration::from_secs(60))
    }

    #[track_caller]
    fn failed_loudly(out: &Out, says: &str) {
        out.expect_code(1);
        assert!(out.stderr.contains(says), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_stdout_fails_before_asking() {
        let (tx, rx) = mpsc::channel();
        let stub = stub(rx).await;
        tx.send(()).unwrap();
        let env = env(&stub.url, "lost-closed");
        let out = tokio::task::spawn_blocking(move || {
            let ask = sh(&env, r#"exec "$0" ask lint "say hi" >&-"#);
            let fleet = sh(&env, r#"exec "$0" fleet --json >&-"#);
            let discarded = sh(&env, r#"exec "$0" ask lint "say hi" >/dev/null"#);
            (ask, fleet, discarded)
        })
        .await
        .unwrap();
        failed_loudly(&out.0, "stdout: it is closed");
        // The shared output path of the other commands fails the same way.
        failed_loudly(&out.1, "stdout: it is closed");
        // Output sent to /dev/null on purpose is not an error.
        out.2.ok();
        assert_eq!(
            stub.count(),
            1,
            "only the last ask was sent: nothing is asked (and paid for) for a closed stdout"
        );
    }

    /// Runs `baton ask lint "say hi" EXTRA` with stdout's reader closed before the answer comes.
    async fn ask_into_closed_pipe(extra: &[&str], name: &str) -> Out {
        let (tx, rx) = mpsc::channel();
        let stub = stub(rx).await;
        let env = env(&stub.url, name);
        let mut cmd = env.cmd();
        cmd.args(["ask", "lint", "say hi"]).args(extra);
        let out = tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start baton");
            drop(child.stdout.take());
            tx.send(()).unwrap();
            wait_within(child, Duration::from_secs(60))
        })
        .await
        .unwrap();
        assert_eq!(stub.count(), 1);
        out
    }

    /// A reader that went away (`baton ask … | head -c 5`) ends baton quietly, as ripgrep does: exit 0,
    /// nothing on stderr (it used to say `cannot write: Broken pipe` and exit 1). The answer was asked
    /// for and booked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_went_away_ends_quietly() {
        for (extra, name) in [(&[][..], "lost-pipe"), (&["--json"][..], "lost-pipe-json")] {
            let out = ask_into_closed_pipe(extra, name).await;
            out.ok();
            assert_eq!(out.stderr, "", "{extra:?}");
        }
    }

    /// A playbook printing into `| head -1` runs to its end and exits 0, silent on stderr: its work (here
    /// a file written after the prints) is not cut short because the reader of its report left, and
    /// nothing panics; log lines into a stderr whose reader left are dropped the same way.
    #[test]
    fn a_playbook_printing_into_a_closed_pipe_finishes_quietly() {
        let env = env("http://127.0.0.1:9", "lost-print");
        env.dir.write(
            "chatty.lua",
            "for i = 1, 20000 do print(('line %d'):format(i)); baton.log.warn('logged ' .. i) end\n\
             local f = assert(io.open('finished', 'w')); f:write('yes'); f:close()\n",
        );
        let out = sh(&env, r#""$0" run chatty.lua 2>/dev/null | head -1"#);
        out.ok();
        assert_eq!(out.stdout, "line 1\n");
        assert_eq!(out.stderr, "");
        assert_eq!(
            std::fs::read_to_string(env.dir.join("finished")).unwrap(),
            "yes"
        );
        std::fs::remove_file(env.dir.join("finished")).unwrap();
        let out = sh(
            &env,
            r#"{ "$0" run chatty.lua 2>&1 >/dev/null; echo "baton: $?" >&2; } | head -c 1"#,
        );
        assert_eq!((out.stdout.len(), out.stderr.as_str()), (1, "baton: 0\n"));
        assert_eq!(
            std::fs::read_to_string(env.dir.join("finished")).unwrap(),
            "yes"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_is_a_failure() {
        let (tx, rx) = mpsc::channel();
        let stub = stub(rx).await;
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        let env = env(&stub.url, "lost-full");
        let out = tokio::task::spawn_blocking(move || {
            let full = || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap()
            };
            let mut plain = env.cmd();
            plain.args(["ask", "lint", "say hi"]);
            let mut json = env.cmd();
            json.args(["ask", "lint", "say hi", "--json"]);
            [plain, json].map(|mut cmd| {
                let child = cmd
                    .stdout(full())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start baton");
                wait_within(child, Duration::from_secs(60))
            })
        })
        .await
        .unwrap();
        for o in &out {
            failed_loudly(o, "No space left on device");
        }
    }
}

/// Where the fleet expects a list, a table with other keys is an error naming the key, not a list with
/// those entries dropped (`tiers = {[0] = …}` used to give no tiers at all).
#[test]
fn fleet_lists_must_be_lists() {
    let tier = r#"{ name = "local", provider = "ollama", host = "engine", models = { code = "m", reason = "m" } }"#;
    let engine = r#"engine = { ssh = false, ollama = "http://127.0.0.1:9" }"#;
    let cases = [
        (
            format!("tiers = {{ [0] = {tier} }}, hosts = {{ {engine} }}"),
            "tiers: expected a list (keys 1..n), got key 0",
        ),
        (
            format!("tiers = {{ first = {tier} }}, hosts = {{ {engine} }}"),
            "tiers: expected a list (keys 1..n), got key first",
        ),
        (
            format!("tiers = {{ {tier}, [3] = {tier} }}, hosts = {{ {engine} }}"),
            "tiers: expected a list (keys 1..n), got key 3",
        ),
        (
            format!(
                "tiers = {{ {tier} }}, hosts = {{ engine = {{ ssh = false, ollama = \"http://127.0.0.1:9\", tags = {{ \"a\", x = 1 }} }} }}"
            ),
            "hosts.engine.tags: expected a list (keys 1..n), got key x",
        ),
        (
            format!(
                "tiers = {{ {tier} }}, hosts = {{ {engine} }}, mcp = {{ git = {{ command = {{ [0] = \"git\" }} }} }}"
            ),
            "mcp.git.command: expected a list (keys 1..n), got key 0",
        ),
    ];
    for (body, want) in cases {
        let env = Env::new("fleet-lists").with_fleet(&format!("return {{ {body} }}"));
        let out = env.baton(&["fleet"]);
        out.expect_code(2);
        assert!(out.stderr.contains(want), "{body}\n{}", out.stderr);
    }
}

/// A fleet of 100 000 hosts loads and an empty run succeeds (its speed is a figure of
/// `cargo bench --bench runtime`, not asserted here).
#[test]
fn a_fleet_of_100_000_hosts_loads() {
    let env = Env::new("fleet-big").with_fleet(
        r#"local hosts = {}
for i = 1, 100000 do
  hosts["h" .. i] = { ssh = "me@10.0." .. (i % 250) .. "." .. (i % 200 + 1), tags = { "a", "b" }, mac = "aa:bb:cc:dd:ee:ff" }
end
hosts.engine = { ssh = false, ollama = "http://127.0.0.1:9" }
return { hosts = hosts, tiers = { { name = "local", provider = "ollama", host = "engine", models = { code = "m", reason = "m" } } } }
"#,
    );
    let out = env.run_lua(
        "empty.lua",
        r#"print(baton.fleet.hosts.h99999.ssh, #baton.fleet.hosts.h1.tags)"#,
        &[],
    );
    out.ok();
    assert_eq!(out.stdout, "me@10.0.249.200\t2\n", "{}", out.stderr);
}

/// A fleet of more hosts than `READ_AT_ONCE` (1 000) reads each host on first use: a bad key in a host the
/// run never touches does not stop it, a run that uses that host gets the error naming `hosts.NAME.key`,
/// and `baton fleet` (which reads every host) reports it.
#[test]
fn a_big_fleet_reads_a_host_on_first_use_and_baton_fleet_checks_all() {
    let env = Env::new("fleet-lazy").with_fleet(
        r#"local hosts = {}
for i = 1, 2000 do hosts["h" .. i] = { ssh = "me@h" .. i, tags = { "a" } } end
hosts.h1500 = { ssh = "me@h1500", olama = "http://127.0.0.1:9" }
return { hosts = hosts }
"#,
    );
    let out = env.run_lua("untouched.lua", r#"print("ran")"#, &[]);
    out.ok();
    assert_eq!(out.stdout, "ran\n", "{}", out.stderr);
    let want = "hosts.h1500.olama: unknown key, did you mean ollama?";
    let out = env.run_lua(
        "touch.lua",
        r#"local ssh = require("ssh")
print(pcall(ssh.run, "h1500", "true"))"#,
        &[],
    );
    out.ok();
    assert!(out.stdout.starts_with("false\t"), "{}", out.stdout);
    assert!(out.stdout.contains(want), "{}", out.stdout);
    // Reading all of it (`baton.fleet`) fails the same way.
    let out = env.run_lua("view.lua", "print(baton.fleet.hosts.h1.ssh)", &[]);
    assert!(out.stderr.contains(want), "{}", out.stderr);
    let out = env.baton(&["fleet"]);
    out.expect_code(2);
    assert!(out.stderr.contains(want), "{}", out.stderr);
    let out = env.baton(&["fleet", "--json"]);
    out.expect_code(2);
    assert!(out.stderr.contains(want), "{}", out.stderr);
}

/// A job title is one short line: a newline, an empty one or one over 80 characters is refused before
/// anything starts, naming the call and the value.
#[test]
fn a_job_title_is_one_short_line() {
    let env = Env::new("job-title");
    let out = env.run_lua(
        "title.lua",
        r#"for _, t in ipairs({ "two\nlines", " ", ("x"):rep(81) }) do
  print((select(2, pcall(ssh.spawn, "local", "true", { title = t }))))
end"#,
        &[],
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    for line in lines {
        assert!(
            line.starts_with(
                "ssh.spawn(local): title must be one line of 1 to 80 characters, got \""
            ),
            "{line}"
        );
    }
    let jobs = env.baton(&["jobs", "--json"]);
    assert_eq!(jobs.ok().stdout.trim(), "[]", "nothing was started");
}

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

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

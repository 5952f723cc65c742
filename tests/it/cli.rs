//! The command line with real processes: exit codes, error text with file:line, `check`, `fleet`, and
//! output into a pipe whose reader goes away.
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Env, Out};

#[test]
fn run_passes_args_and_exits_zero() {
    let env = Env::new("cli-args");
    let out = env.run_lua(
        "args.lua",
        "print(#baton.args, baton.args[1], baton.args[2])",
        &["one", "--two"],
    );
    out.ok();
    assert_eq!(out.stdout, "2\tone\t--two\n");
}

#[test]
fn runtime_error_names_file_and_line_with_traceback() {
    let env = Env::new("cli-error");
    let out = env.run_lua(
        "boom.lua",
        "local x = 1\n\nlocal function f()\n  error('kaboom')\nend\nf()\n",
        &[],
    );
    out.expect_code(1);
    let first = out.stderr.lines().next().unwrap();
    assert!(first.ends_with("boom.lua:4: kaboom"), "{}", out.stderr);
    assert!(out.stderr.contains("stack traceback:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("boom.lua:6: in main chunk"),
        "{}",
        out.stderr
    );

    // An error raised by a Rust function is located at the calling line too.
    let out = env.run_lua(
        "exec.lua",
        "print('before')\nbaton.exec('echo nope >&2; exit 7')\n",
        &[],
    );
    out.expect_code(1);
    assert_eq!(out.stdout, "before\n");
    let first = out.stderr.lines().next().unwrap();
    assert!(
        first.ends_with("exec.lua:2: baton.exec: exit 7: nope"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("__mlua"),
        "internal frames leak into tracebacks: {}",
        out.stderr
    );
}

#[test]
fn syntax_error_names_file_line_and_token() {
    let env = Env::new("cli-syntax");
    let out = env.run_lua("bad.lua", "local a = 1\nlocal b = = 2\n", &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("bad.lua:2:") && out.stderr.contains("near '='"),
        "{}",
        out.stderr
    );
}

#[test]
fn os_exit_sets_the_code_and_missing_file_fails() {
    let env = Env::new("cli-exit");
    env.run_lua("exit.lua", "print('x') os.exit(3)", &[])
        .expect_code(3);
    env.run_lua("exit0.lua", "os.exit(true)", &[]).ok();
    let out = env.baton(&["run", "does-not-exist.lua"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot read does-not-exist.lua"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_reports_every_broken_file() {
    let env = Env::new("cli-check");
    let good = env.dir.write("good.lua", "return 1");
    let bad1 = env.dir.write("bad1.lua", "if x then");
    let bad2 = env.dir.write("bad2.lua", "local = 3");
    let out = env.baton(&[
        "check",
        good.to_str().unwrap(),
        bad1.to_str().unwrap(),
        bad2.to_str().unwrap(),
    ]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("bad1.lua:1:") && out.stderr.contains("'end' expected"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bad2.lua:1:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("2 of 3 file(s) failed"),
        "{}",
        out.stderr
    );
    env.baton(&["check", good.to_str().unwrap()]).ok();
}

#[test]
fn fleet_without_file_is_the_builtin_default() {
    let env = Env::new("cli-fleet-default");
    let out = env.baton(&["fleet"]);
    out.ok();
    assert!(
        out.stdout.starts_with("fleet: built-in default"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("local") && out.stdout.contains("http://127.0.0.1:11434"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("qwen2.5-coder:32b"), "{}", out.stdout);
    // Without a key there are no cloud tiers; with one there are (and the key itself is never shown).
    assert!(!out.stdout.contains("openrouter  "), "{}", out.stdout);
    let env = env
        .var("OPENROUTER_API_KEY", "sk-or-secret-123")
        .var("OLLAMA_HOST", "10.9.9.9");
    let out = env.baton(&["fleet", "--json"]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["source"], serde_json::Value::Null);
    assert_eq!(v["hosts"]["local"]["ollama"], "http://10.9.9.9:11434");
    let tiers: Vec<&str> = v["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["local", "cheap", "premium"]);
    assert_eq!(v["tasks"]["architecture"]["tier"], "premium");
    assert_eq!(v["openrouter"]["key_set"], true);
    assert!(!out.stdout.contains("sk-or-secret-123"));
}

#[test]
fn fleet_file_errors_name_the_path() {
    let env = Env::new("cli-fleet-bad")
        .with_fleet("return { hosts = { engine = { olama = 'http://engine:11434' } } }");
    let out = env.baton(&["fleet"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("hosts.engine.olama: unknown key, did you mean ollama?"),
        "{}",
        out.stderr
    );
    // The same error stops `run` before the script starts.
    let out = env.run_lua("noop.lua", "print('ran')", &[]);
    out.expect_code(2);
    assert!(!out.stdout.contains("ran"));

    let env = Env::new("cli-fleet-type")
        .with_fleet("return { hosts = { pc = { ollama_parallel = 'four' } } }");
    let out = env.baton(&["fleet"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("hosts.pc.ollama_parallel: wrong type"),
        "{}",
        out.stderr
    );

    let env = Env::new("cli-fleet-tier").with_fleet(
        "return { hosts = { brain = { ollama = 'http://brain:11434' } }, tiers = { { name = 'local', provider = 'ollama', host = 'brian', model = 'm' } } }",
    );
    let out = env.baton(&["fleet"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("tiers[1].host: unknown host \"brian\", did you mean brain?"),
        "{}",
        out.stderr
    );

    let env = Env::new("cli-fleet-syntax").with_fleet("return { hosts = ");
    let out = env.baton(&["fleet"]);
    out.expect_code(2);
    assert!(out.stderr.contains("fleet.lua:1:"), "{}", out.stderr);
}

#[test]
fn fleet_file_and_global_flags_in_any_position() {
    let env = Env::new("cli-fleet-file");
    let fleet = env.dir.write(
        "my-fleet.lua",
        r#"return {
          hosts = {
            brain = { ssh = "me@brain", role = "inference", tags = { "mac" }, ollama = "http://brain:11434", ollama_parallel = 2 },
            pc = { ssh = false, role = "gpu" },
          },
          budget = { monthly_usd = 40 },
        }"#,
    );
    let f = fleet.to_str().unwrap();
    for args in [
        vec!["--fleet", f, "fleet", "--json"],
        vec!["fleet", "--json", "--fleet", f],
        vec!["-v", "fleet", "--fleet", f, "--json"],
    ] {
        let out = env.baton(&args);
        out.ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["source"], f);
        assert_eq!(v["hosts"]["brain"]["ollama_parallel"], 2);
        assert_eq!(v["tiers"][0]["host"], "brain");
        assert_eq!(v["budget"]["monthly_usd"], 40.0);
        assert_eq!(v["budget"]["alert_at"], 0.8);
    }
    let out = env.baton(&["fleet", "--fleet", f]);
    out.ok();
    assert!(
        out.stdout.contains(&format!("fleet: {f}"))
            && out.stdout.contains("me@brain")
            && out.stdout.contains("(this machine)")
    );
    // baton.fleet in a script sees the same fleet.
    let script = env.dir.write("show.lua", "print(baton.fleet.hosts.brain.role, baton.fleet.tiers[1].name, baton.fleet.budget.monthly_usd)");
    let out = env.baton(&["run", "--fleet", f, script.to_str().unwrap()]);
    out.ok();
    assert_eq!(out.stdout, "inference\tlocal\t40\n");
    let out = env.baton(&["fleet", "--fleet", "/nonexistent/fleet.lua"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("/nonexistent/fleet.lua (from --fleet) does not exist"),
        "{}",
        out.stderr
    );
}

#[test]
fn user_modules_next_to_the_fleet_and_embedded_stdlib() {
    let env = Env::new("cli-modules");
    env.dir.write(
        "config/baton/lua/mine.lua",
        "return { hello = function() return 'from my module' end }",
    );
    let out = env.run_lua(
        "req.lua",
        "print(require('mine').hello()) print(type(require('baton.test').eq))",
        &[],
    );
    out.ok();
    assert_eq!(out.stdout, "from my module\nfunction\n");
}

#[test]
fn log_levels_formats_and_filter() {
    let env = Env::new("cli-log");
    let script = "baton.log.info('hello info', { host = 'brain', n = 3 }) baton.log.warn('careful') baton.log.debug('details')";
    let quiet = env.run_lua("log.lua", script, &[]);
    quiet.ok();
    assert!(
        quiet.stderr.contains("careful") && !quiet.stderr.contains("hello info"),
        "{}",
        quiet.stderr
    );
    let verbose = env.run_lua("log.lua", script, &["-v"]);
    assert!(
        !verbose.stderr.contains("hello info"),
        "flags after FILE belong to the script: {}",
        verbose.stderr
    );
    let path = env.dir.join("log.lua");
    let verbose = env.baton(&["-v", "run", path.to_str().unwrap()]);
    verbose.ok();
    assert!(
        verbose.stderr.contains("hello info") && verbose.stderr.contains("brain"),
        "{}",
        verbose.stderr
    );
    assert!(!verbose.stderr.contains("details"));
    let debug = env.baton(&["run", "-vv", path.to_str().unwrap()]);
    assert!(debug.stderr.contains("details"), "{}", debug.stderr);
    let json = env.baton(&["--log-format", "json", "-v", "run", path.to_str().unwrap()]);
    // Every line is JSON; the run's own `run <id>` line comes first, then the script's.
    let lines: Vec<serde_json::Value> = json
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("run "),
        "{lines:?}"
    );
    assert_eq!(lines[1]["fields"]["message"], "hello info");
    assert_eq!(lines[1]["level"], "INFO");
    let off = env
        .cmd()
        .args(["-vv", "run", path.to_str().unwrap()])
        .env("BATON_LOG", "off")
        .output()
        .unwrap();
    assert!(
        off.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
}

#[test]
fn completions_and_stubs() {
    let env = Env::new("cli-completions");
    for shell in ["bash", "zsh", "fish"] {
        let out = env.baton(&["completions", shell]);
        out.ok();
        assert!(
            out.stdout.contains("baton") && out.stdout.contains("repl"),
            "{shell}: {}",
            out.stdout
        );
    }
    env.baton(&["completions", "tcsh"]).expect_code(2);

    let dir = env.dir.join("playbooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".luarc.json"),
        r#"{ "workspace.library": ["mine"] }"#,
    )
    .unwrap();
    let out = env.baton(&["stubs", dir.to_str().unwrap()]);
    out.ok();
    let module = std::fs::read_to_string(dir.join(".baton/meta/baton/args.lua")).unwrap();
    assert!(
        module.contains("---@param list string[]?"),
        "stdlib modules are written with their annotations"
    );
    let stub = std::fs::read_to_string(dir.join(".baton/meta/baton.lua")).unwrap();
    assert!(stub.starts_with("---@meta") && stub.contains("function baton.exec("));
    let rc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".luarc.json")).unwrap()).unwrap();
    assert_eq!(
        rc["workspace.library"],
        serde_json::json!(["mine", ".baton/meta"])
    );
    assert!(
        rc["diagnostics.globals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "ssh")
    );
    // Running it twice does not duplicate entries.
    env.baton(&["stubs", dir.to_str().unwrap()]).ok();
    let rc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".luarc.json")).unwrap()).unwrap();
    assert_eq!(rc["workspace.library"].as_array().unwrap().len(), 2);
}

#[test]
fn spend_reads_the_ledger() {
    use baton::core::llm::ledger::{Ledger, Row};
    let env = Env::new("cli-spend");
    let out = env.baton(&["spend"]);
    out.ok();
    assert!(out.stdout.contains("no LLM calls"), "{}", out.stdout);
    let ledger = Ledger::new(baton::core::state::State::new(env.state_dir()));
    let rt = current_thread_rt();
    rt.block_on(async {
        for (tier, model, cost, tokens) in [
            ("local", "qwen", 0.0, 100),
            ("cheap", "sonnet", 0.5, 1000),
            ("cheap", "sonnet", 0.25, 500),
        ] {
            let row = Row {
                tier: Some(tier.into()),
                task: Some("code_review".into()),
                provider: "test".into(),
                model: model.into(),
                tokens_in: tokens,
                tokens_out: tokens / 10,
                cost,
                cost_source: "provider".into(),
                outcome: baton::core::llm::ledger::Outcome::Ok,
                sent: true,
                ..Row::default()
            };
            ledger.record(row, None).await.unwrap();
        }
    });
    let out = env.baton(&["spend", "--json"]);
    out.ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!((report["ledger"]["spent"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    let cheap = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "cheap")
        .expect("a cheap row");
    assert_eq!(cheap["calls"], 2);
    assert_eq!(cheap["tokens_in"], 1500);
    assert!((cheap["cost"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    let out = env.baton(&["spend", "--by", "model", "--period", "day"]);
    out.ok();
    assert!(
        out.stdout.contains("sonnet") && out.stdout.contains("qwen"),
        "{}",
        out.stdout
    );
    env.baton(&["spend", "--by", "colour"]).expect_code(2);
}

#[test]
fn jobs_lists_nothing_on_a_fresh_state() {
    let env = Env::new("cli-jobs");
    let out = env.baton(&["jobs"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "no jobs");
    let out = env.baton(&["jobs", "--json"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "[]");
    let out = env.baton(&["jobs", "--prune"]);
    out.ok();
    assert!(
        out.stdout.starts_with("forgot 0 ended job(s)"),
        "{}",
        out.stdout
    );
}

#[test]
fn example_fleet_parses_and_demo_runs() {
    let env = Env::new("cli-example-fleet");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fleet = root.join("examples/fleet.lua");
    let out = env.baton(&["fleet", "--json", "--fleet", fleet.to_str().unwrap()]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let hosts: Vec<&String> = v["hosts"].as_object().unwrap().keys().collect();
    // `local`, this machine, is listed though the file does not name it (as scripts see it).
    assert_eq!(hosts, ["brain", "engine", "local", "workstation"]);
    assert_eq!(v["hosts"]["local"]["ssh"], false);
    assert_eq!(v["hosts"]["engine"]["known_hosts"], "accept-new");
    assert_eq!(v["tiers"][2]["price"]["output"], 75.0);
    // The README's main job on the built-in fleet.
    let out = env.baton(&["run", root.join("examples/demo.lua").to_str().unwrap()]);
    out.ok();
    assert!(
        out.stdout.starts_with("fleet: built-in default\nlocal "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("free on /"), "{}", out.stdout);
}

#[test]
fn hosts_without_ssh_use_their_name() {
    let env = Env::new("cli-ssh-default")
        .with_fleet("return { hosts = { brain = {}, pc = { ssh = false } } }");
    let out = env.run_lua(
        "show.lua",
        "print(baton.fleet.hosts.brain.ssh, baton.fleet.hosts.pc.ssh)",
        &[],
    );
    out.ok();
    assert_eq!(out.stdout, "brain\tfalse\n");
    let out = env.baton(&["fleet"]);
    out.ok();
    assert!(out.stdout.contains("brain  brain"), "{}", out.stdout);
}

/// Runs `baton ARGS…` with its stdout read by a reader that takes the first line and closes the pipe, as
/// `| head -1` does. Returns that line and the finished process (stderr collected).
fn first_line_then_close(env: &Env, args: &[&str]) -> String {
    use std::io::{BufRead, BufReader, Read};
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone: every later write of baton meets a closed pipe.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("baton {args:?} did not end after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = Out {
        code: status.code(),
        stdout: first.clone(),
        stderr: errors.join().unwrap(),
    };
    // A closed pipe ends baton quietly: exit 0, no panic, nothing to report.
    out.ok();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(out.stderr, "", "a closed pipe is not an error to report");
    first
}

#[test]
fn closed_stdout_ends_fleet_quietly() {
    // Far more output than a pipe holds (64 KiB), so baton is still writing when the reader leaves.
    let env = Env::new("cli-pipe-fleet").with_fleet(
        r#"local hosts = {}
        for i = 1, 3000 do
          hosts[("host-%04d"):format(i)] = { ssh = false, role = ("inference-"):rep(8) }
        end
        return { hosts = hosts }"#,
    );
    let first = first_line_then_close(&env, &["fleet"]);
    assert!(first.starts_with("fleet: "), "{first}");
}

#[test]
fn closed_stdout_ends_spend_quietly() {
    use baton::core::llm::ledger::{Ledger, Row};
    let env = Env::new("cli-pipe-spend");
    let ledger = Ledger::new(baton::core::state::State::new(env.state_dir()));
    let rt = current_thread_rt();
    rt.block_on(async {
        for i in 0..1500 {
            let row = Row {
                task: Some(format!("task-{i:04}-{}", "x".repeat(30))),
                provider: "test".into(),
                model: "m".into(),
                tokens_in: 1000,
                cost: 0.001 * f64::from(i),
                cost_source: "provider".into(),
                outcome: baton::core::llm::ledger::Outcome::Ok,
                sent: true,
                ..Row::default()
            };
            ledger.record(row, None).await.unwrap();
        }
    });
    let full = env.baton(&["spend", "--by", "task"]);
    full.ok();
    assert!(full.stdout.len() > 128 * 1024, "{}", full.stdout.len());
    let first = first_line_then_close(&env, &["spend", "--by", "task"]);
    assert!(first.trim_end().ends_with("(UTC month)"), "{first}");
}

#[test]
fn closed_stdout_ends_schedule_history_quietly() {
    use baton::core::schedule::{RunRecord, Store};
    let env = Env::new("cli-pipe-history");
    let store = Store::open(&baton::core::state::State::new(env.state_dir())).unwrap();
    let now = chrono::Utc::now();
    for i in 0..1000 {
        store
            .insert_run(&RunRecord {
                id: 0,
                job: format!("job-{i:04}"),
                scheduled: now,
                started: Some(now),
                ended: Some(now),
                outcome: "ok".into(),
                error: None,
                log: Some(
                    env.state_dir()
                        .join(format!("runs/job-{i:04}/{}.log", "x".repeat(80))),
                ),
                catchup: false,
                manual: true,
            })
            .unwrap();
    }
    let first = first_line_then_close(&env, &["schedule", "history", "--limit", "1000"]);
    assert!(first.starts_with(" RUN  JOB "), "{first}");
}

#[test]
fn an_unusable_state_dir_is_reported_once_naming_the_path() {
    let env = Env::new("cli-bad-state");
    let not_a_dir = env.dir.write("state-is-a-file", "x");
    let env = env.var("BATON_STATE_DIR", not_a_dir.to_str().unwrap());
    for args in [&["spend"][..], &["schedule", "history"][..]] {
        let out = env.baton(args);
        out.expect_code(1);
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("baton: "), "{args:?}: {}", out.stderr);
        assert!(
            first.contains("state-is-a-file"),
            "{args:?}: {}",
            out.stderr
        );
        // The OS's words once: the cause is in the message, not also a chained source.
        let cause = first.rsplit(": ").next().unwrap();
        assert_eq!(
            out.stderr.matches(cause).count(),
            1,
            "{args:?}: the cause repeats: {}",
            out.stderr
        );
    }
}

/// A runtime for the core calls a test makes itself (filling a ledger, say).
fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `require` finds modules beside the playbook (`helper.lua`, `lib/init.lua`) whatever the current folder,
/// with the script given relative or absolute; a folder whose name Lua's path cannot hold (`;`) is skipped
/// with a warning naming it.
#[test]
fn require_finds_modules_beside_the_playbook() {
    let env = Env::new("cli-require");
    env.dir.write("pb/helper.lua", "return { n = 41 }");
    env.dir.write("pb/lib/init.lua", "return { m = 1 }");
    let main = env.dir.write(
        "pb/main.lua",
        "print(require('helper').n + require('lib').m)",
    );
    // The current folder is the temp root, not `pb/`.
    let out = env.baton(&["run", "pb/main.lua"]);
    out.ok();
    assert_eq!(out.stdout, "42\n");
    let out = env.baton(&["run", main.to_str().unwrap()]);
    out.ok();
    assert_eq!(out.stdout, "42\n");

    env.dir.write("a;b/helper.lua", "return 1");
    env.dir.write("a;b/main.lua", "print(require('helper'))");
    let out = env.baton(&["run", "a;b/main.lua"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("a;b/main.lua: its folder")
            && out.stderr.contains("package.path cannot express"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("module 'helper' not found"),
        "{}",
        out.stderr
    );
}

/// Log colours follow `--color`: `auto` (the default) colours only a terminal, so a pipe gets plain text;
/// `always` colours a pipe too (and beats `NO_COLOR`, as an explicit flag does); `never` never colours.
#[test]
fn log_colours_follow_the_color_flag() {
    let env = Env::new("cli-color");
    let script = env.dir.write("warn.lua", "baton.log.warn(\"careful\")");
    let script = script.to_str().unwrap();
    let run = |flags: &[&str], no_color: bool| {
        let mut cmd = env.cmd();
        cmd.args(flags).args(["run", script]);
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = crate::common::output_within(cmd, Duration::from_secs(60));
        out.ok();
        assert!(out.stderr.contains("careful"), "{}", out.stderr);
        out.stderr.contains('\x1b')
    };
    assert!(!run(&[], false), "auto into a pipe is plain");
    assert!(run(&["--color", "always"], false), "always colours a pipe");
    assert!(run(&["--color", "always"], true), "always beats NO_COLOR");
    assert!(!run(&["--color", "never"], false), "never is plain");
    let bad = env.baton(&["--color", "sometimes", "fleet"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("--color"), "{}", bad.stderr);
}

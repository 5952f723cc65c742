//! The ready playbooks in `scripts/`, end to end: the real binary against the sshd harness's hosts, bare git
//! repos on disk, real rsync and the in-test Ollama server. Each playbook: the happy path and failure paths.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Env, Out, git, output_within, write};
use crate::llm::server::{self as llm_server, Reply, Stub, refused_url};
use crate::sshd::{SshFleet, require};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str) -> String {
    root().join("scripts").join(name).display().to_string()
}

/// `baton run scripts/NAME ARGS…` in `env`, at most 90 s, without blocking the stub servers' runtime.
fn run(env: &Env, name: &str, args: &[&str]) -> Out {
    let mut cmd = env.cmd();
    cmd.arg("run").arg(script(name)).args(args);
    tokio::task::block_in_place(|| output_within(cmd, Duration::from_secs(90)))
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A bare repo `<root>/<name>.git` whose `main` holds `files`.
fn origin(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    require("git");
    let bare = root.join(format!("{name}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let seed = root.join(format!("{name}-seed"));
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    identity(&seed);
    write(&seed, files);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    bare
}

fn identity(repo: &Path) {
    git(repo, &["config", "user.email", "test@example.invalid"]);
    git(repo, &["config", "user.name", "test"]);
}

fn clone(origin: &Path, to: &Path) {
    let out = Command::new("git")
        .args(["clone", "-q"])
        .arg(origin)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    identity(to);
}

/// A fleet file: the harness's hosts with the given roles, and a local Ollama tier on `engine` at `ollama`.
fn fleet_lua(ssh: &SshFleet, roles: &[&str], ollama: &str) -> String {
    let hosts: String = ssh
        .hosts
        .iter()
        .zip(roles)
        .map(|(h, role)| {
            format!(
                "    {0} = {{ ssh = \"{0}\", role = \"{role}\" }},\n",
                h.name
            )
        })
        .collect();
    format!(
        r#"return {{
  ssh_config = {:?},
  hosts = {{
{hosts}    engine = {{ ssh = false, role = "inference", ollama = "{ollama}" }},
  }},
  tiers = {{
    {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "coder:7b", reason = "reasoner:7b" }} }},
  }},
  tasks = {{ commit_message = {{ tier = "local", model = "code" }}, bug_hunting = {{ tier = "local", model = "reason" }} }},
}}
"#,
        ssh.ssh_config.display()
    )
}

fn env(name: &str, fleet: &str, routines: &str) -> Env {
    require("rsync");
    let env = Env::new(name).with_fleet(fleet);
    env.dir.write("routines.lua", routines);
    env
}

/// An Ollama server whose chat answers are `answer` (streamed in small pieces).
async fn ollama(answer: &'static str) -> Stub {
    Stub::start(move |req, _| match req.path.as_str() {
        "/api/chat" => {
            let model = req.json()["model"].as_str().unwrap_or("?").to_string();
            Reply::ndjson(llm_server::ollama_chat(&model, &[answer], 10, 5), 9)
        }
        _ => Reply::json(404, json!({"error": "not found"})),
    })
    .await
}

/// The user message of every chat request the stub saw.
fn prompts(stub: &Stub) -> Vec<String> {
    stub.requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .map(|r| {
            r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "user")
                .map(|m| m["content"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Returns once the wall clock shows a new second (what a folder stamped to the second needs to differ).
fn next_second() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = now();
    crate::common::wait_for("the next second", Duration::from_secs(5), || now() > start);
}

// ---------------------------------------------------------------------------------------------------------

#[test]
fn every_playbook_and_example_passes_check() {
    let env = Env::new("pb-check");
    let mut files = Vec::new();
    for dir in ["scripts", "examples"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "lua") {
                files.push(path.display().to_string());
            }
        }
    }
    assert!(files.len() >= 9, "{files:?}");
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = env.baton(&args);
    out.ok();
    assert!(
        out.stdout.contains(&format!("{} file(s) ok", files.len())),
        "{}{}",
        out.stdout,
        out.stderr
    );
    // The example schedule registers its jobs against the real playbooks.
    let out = env.baton(&[
        "schedule",
        "list",
        root().join("examples/schedule.lua").to_str().unwrap(),
    ]);
    out.ok();
    // A table row per job: name, then the expression two or more blanks later.
    let schedule_of = |job: &str| {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{job} ")));
        line.and_then(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .nth(1)
        })
    };
    assert_eq!(
        schedule_of("end_of_day"),
        Some("0 18 * * MON-FRI"),
        "{}",
        out.stdout
    );
    assert_eq!(
        schedule_of("nightly_ci"),
        Some("30 2 * * *"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("scripts/nightly_ci.lua"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_ci_records_pass_and_fail_and_stores_a_diagnosis() {
    let ssh = SshFleet::start(1);
    let stub = ollama("Likely cause: add() is off by one in calc.sh.").await;
    let tmp = crate::common::TempDir::new("pb-ci-repos");
    let good = origin(
        tmp.path(),
        "good",
        &[("check.sh", "echo all 3 tests passed\n")],
    );
    let bad = origin(
        tmp.path(),
        "bad",
        &[(
            "check.sh",
            "echo running 2 tests\necho 'assertion failed: expected 4, got 5' >&2\nexit 2\n",
        )],
    );
    let ci = ssh.hosts[0].home.join("ci");
    let routines = format!(
        r#"return {{
  ci = {{ dir = {ci:?} }},
  repos = {{
    good = {{ url = {good:?}, test = "sh check.sh", timeout = "60s" }},
    bad = {{ url = {bad:?}, test = "sh check.sh", timeout = 60 }},
  }},
}}"#,
        ci = ci.display().to_string(),
        good = good.display().to_string(),
        bad = bad.display().to_string()
    );
    let env = env("pb-ci", &fleet_lua(&ssh, &["server"], &stub.url), &routines);
    let out = run(&env, "nightly_ci.lua", &[]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("nightly_ci on h0: 1 of 2 repos failed: bad (fail (exit 2))"),
        "{}",
        out.stderr
    );
    let latest = |repo: &str| ci.join("logs").join(repo).join("latest");
    assert_eq!(read(latest("good").join("result")), "pass\n");
    assert_eq!(
        read(latest("good").join("test.log")),
        "all 3 tests passed\n"
    );
    assert_eq!(read(latest("bad").join("result")), "fail (exit 2)\n");
    assert!(read(latest("bad").join("test.log")).contains("assertion failed: expected 4, got 5"));
    assert_eq!(
        read(latest("bad").join("commit")).trim(),
        git(&bad, &["rev-parse", "main"])
    );
    let diagnosis = read(latest("bad").join("diagnosis.md"));
    assert!(
        diagnosis.contains("add() is off by one") && diagnosis.contains("reasoner:7b"),
        "{diagnosis}"
    );
    assert!(!latest("good").join("diagnosis.md").exists());
    // The diagnosis was asked with the log tail, of the bug_hunting model.
    let asked = prompts(&stub);
    assert_eq!(asked.len(), 1);
    assert!(asked[0].contains("expected 4, got 5") && asked[0].contains("sh check.sh"));
    assert_eq!(stub.requests()[0].json()["model"], "reasoner:7b");
    let tsv = read(ci.join("results.tsv"));
    assert_eq!(tsv.lines().count(), 2, "{tsv}");
    assert!(tsv.contains("\tbad\t") && tsv.contains("\tfail (exit 2)"));
    assert!(
        out.stdout.contains("bad: diagnosis in h0:"),
        "{}",
        out.stdout
    );

    // A new commit upstream is what the next run tests; with no model up, no diagnosis but the run is kept.
    let work = tmp.join("bad-work");
    clone(&bad, &work);
    write(&work, &[("check.sh", "echo fixed\n")]);
    git(&work, &["commit", "-qam", "fix"]);
    git(&work, &["push", "-q", "origin", "main"]);
    next_second(); // a new run folder (stamps have seconds)
    let down = env.dir.write(
        "fleet.lua",
        fleet_lua(&ssh, &["server"], &refused_url().await),
    );
    assert_eq!(Some(down), env.fleet);
    write(&work, &[("check.sh", "exit 7\n")]);
    git(&work, &["commit", "-qam", "break again"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let out = run(&env, "nightly_ci.lua", &["bad"]);
    out.expect_code(1);
    assert!(out.stderr.contains("bad (fail (exit 7))"), "{}", out.stderr);
    assert!(out.stderr.contains("no diagnosis"), "{}", out.stderr);
    assert_eq!(read(latest("bad").join("result")), "fail (exit 7)\n");
    assert!(!latest("bad").join("diagnosis.md").exists());
    assert_eq!(read(ci.join("results.tsv")).lines().count(), 3);

    // A checkout that fails (the origin is gone) leaves its trace: a results line, `latest`, and the
    // summary points to the log that exists.
    std::fs::rename(&good, tmp.join("moved.git")).unwrap();
    std::fs::remove_dir_all(ci.join("src/good")).unwrap();
    next_second();
    let out = run(&env, "nightly_ci.lua", &["good"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("nightly_ci on h0: 1 of 1 repo failed: good (error: checkout failed: "),
        "{}",
        out.stderr
    );
    let result = read(latest("good").join("result"));
    assert!(result.starts_with("error: checkout failed: "), "{result}");
    let log = latest("good").join("checkout.log");
    assert!(log.exists() && !latest("good").join("test.log").exists());
    assert!(
        out.stdout.contains(&format!(
            "good: {} — log h0:{}/checkout.log",
            result.trim(),
            std::fs::canonicalize(latest("good")).unwrap().display()
        )),
        "{}",
        out.stdout
    );
    let tsv = read(ci.join("results.tsv"));
    let last = tsv.lines().last().unwrap();
    assert!(
        last.contains("\tgood\t-\terror: checkout failed: "),
        "{tsv}"
    );
}

/// The diagnosis is a tool-using agent: the in-test Ollama server calls read_log, git_log, read_file (once
/// inside the clone, once trying to leave it) and git_show, then answers with a `<think>` block first.
/// `diagnosis.md` gets the answer and the tools used, never the thinking; the refusal reached the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_ci_diagnosis_uses_read_only_tools_confined_to_the_clone() {
    let ssh = SshFleet::start(1);
    let stub = Stub::start(|req, _| {
        let body = req.json();
        let tools = body["messages"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
        let calls = |c: Value| Reply::ndjson(llm_server::ollama_tool_calls("reasoner:7b", c), 16);
        match tools {
            0 => calls(json!([{"function": {"name": "read_log", "arguments": {"lines": 5}}},
                              {"function": {"name": "git_log", "arguments": {"n": 3}}}])),
            2 => calls(json!([{"function": {"name": "read_file", "arguments": {"path": "calc.sh"}}},
                              {"function": {"name": "read_file", "arguments": {"path": "../../../etc/passwd"}}}])),
            4 => calls(json!([{"function": {"name": "git_show", "arguments": "{\"rev\": \"HEAD\", \"path\": \"calc.sh\"}"}}])),
            _ => Reply::ndjson(
                llm_server::ollama_chat(
                    "reasoner:7b",
                    &["<think>private musing", " about add()</think>\n\n", "Cause: add() in calc.sh adds 1 too many."],
                    10,
                    5,
                ),
                9,
            ),
        }
    })
    .await;
    let tmp = crate::common::TempDir::new("pb-ci-agent");
    let bad = origin(
        tmp.path(),
        "calc",
        &[
            ("calc.sh", "add() { echo $(($1 + $2 + 1)); }\n"),
            (
                "check.sh",
                "echo 'assertion failed: add 2 2 gave 5' >&2\nexit 1\n",
            ),
        ],
    );
    let ci = ssh.hosts[0].home.join("ci");
    let routines = format!(
        r#"return {{ ci = {{ dir = {ci:?} }}, repos = {{ calc = {{ url = {bad:?}, test = "sh check.sh" }} }} }}"#,
        ci = ci.display().to_string(),
        bad = bad.display().to_string()
    );
    let env = env(
        "pb-ci-agent",
        &fleet_lua(&ssh, &["server"], &stub.url),
        &routines,
    );
    let out = run(&env, "nightly_ci.lua", &[]);
    out.expect_code(1);
    let diagnosis = read(ci.join("logs/calc/latest/diagnosis.md"));
    assert!(
        diagnosis.contains("Cause: add() in calc.sh adds 1 too many."),
        "{diagnosis}"
    );
    assert!(
        !diagnosis.contains("private musing") && !diagnosis.contains("<think>"),
        "{diagnosis}"
    );
    for used in [
        "- read_log(lines=5)",
        "- git_log(n=3)",
        "- read_file(path=calc.sh)",
        "- read_file(path=../../../etc/passwd) — refused: ../../../etc/passwd leaves the repository (..)",
        "- git_show(path=calc.sh, rev=HEAD)",
    ] {
        assert!(diagnosis.contains(used), "{used} not in {diagnosis}");
    }
    // What the tools told the model.
    let last = stub.requests().last().unwrap().json();
    let results: Vec<String> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(results.len(), 5, "{results:?}");
    assert!(results[0].contains("add 2 2 gave 5"), "{}", results[0]);
    assert!(results[1].contains("seed"), "{}", results[1]);
    assert!(results[2].contains("$1 + $2 + 1"), "{}", results[2]);
    assert!(results[3].starts_with("error: refused"), "{}", results[3]);
    assert!(results[4].contains("$1 + $2 + 1"), "{}", results[4]);
    assert_eq!(last["tools"].as_array().map(Vec::len), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_ci_names_an_offline_server_and_a_missing_role() {
    let mut ssh = SshFleet::start(1);
    let routines = r#"return { repos = { app = { url = "/nowhere.git", test = "true" } } }"#;
    let env = env(
        "pb-ci-down",
        &fleet_lua(&ssh, &["server"], &refused_url().await),
        routines,
    );
    ssh.stop_host(0);
    let out = run(&env, "nightly_ci.lua", &["--online-timeout", "2s"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("ssh.wait_online(h0)") && out.stderr.contains("not online after 2s"),
        "{}",
        out.stderr
    );
    let env2 = self::env(
        "pb-ci-norole",
        &fleet_lua(&ssh, &["gpu"], &refused_url().await),
        routines,
    );
    let out = run(&env2, "nightly_ci.lua", &[]);
    out.expect_code(1);
    // An expected failure is its message alone: no stdlib location, no traceback (`-v` adds them).
    assert_eq!(
        out.stderr,
        "no fleet host has role \"server\": set role = \"server\" on one in the fleet file, or pass --host NAME\n"
    );
    let mut verbose = env2.cmd();
    verbose
        .args(["-v", "run"])
        .arg(script("nightly_ci.lua"))
        .args(["--host", "nosuch"]);
    let out = output_within(verbose, Duration::from_secs(90));
    out.expect_code(1);
    assert!(
        out.stderr.contains("stdlib/baton/routines.lua:")
            && out
                .stderr
                .contains(": unknown fleet host \"nosuch\" (fleet hosts: ")
            && out.stderr.contains("stack traceback:"),
        "{}",
        out.stderr
    );
    // A typo in the routines file is reported with its path.
    env2.dir.write(
        "routines.lua",
        r#"return { repos = { app = { tset = "x" } } }"#,
    );
    let out = run(&env2, "nightly_ci.lua", &[]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("routines.lua: repos.app.tset: unknown key"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_day_commits_with_the_model_message_pushes_and_starts_ci() {
    let ssh = SshFleet::start(1);
    let stub = ollama("Add a greeting to the notes\n\n- say hello").await;
    let env_dir = crate::common::TempDir::new("pb-eod-repos");
    let app = origin(
        env_dir.path(),
        "app",
        &[
            ("notes.txt", "one\n"),
            ("check.sh", "grep -q hello greeting.txt\n"),
        ],
    );
    let lib = origin(env_dir.path(), "lib", &[("lib.txt", "lib\n")]);
    let (app_wc, lib_wc) = (env_dir.join("app-wc"), env_dir.join("lib-wc"));
    clone(&app, &app_wc);
    clone(&lib, &lib_wc);
    let ci = ssh.hosts[0].home.join("ci");
    let routines = format!(
        r#"return {{
  ci = {{ dir = {ci:?} }},
  repos = {{
    app = {{ path = {app_wc:?}, url = {app:?}, test = "sh check.sh" }},
    lib = {{ path = {lib_wc:?}, url = {lib:?}, test = "true" }},
  }},
}}"#,
        ci = ci.display().to_string(),
        app_wc = app_wc.display().to_string(),
        app = app.display().to_string(),
        lib_wc = lib_wc.display().to_string(),
        lib = lib.display().to_string(),
    );
    let env = env(
        "pb-eod",
        &fleet_lua(&ssh, &["server"], &stub.url),
        &routines,
    );
    write(&app_wc, &[("greeting.txt", "hello\n")]);
    let out = run(&env, "end_of_day.lua", &[]);
    out.ok();
    assert_eq!(
        git(&app, &["log", "-1", "--format=%B", "main"]),
        "Add a greeting to the notes\n\n- say hello"
    );
    assert!(
        out.stdout
            .contains("lib: nothing to commit, up to date, nothing to push"),
        "{}",
        out.stdout
    );
    let asked = prompts(&stub);
    assert_eq!(asked.len(), 1, "only the dirty repo needs a message");
    assert!(
        asked[0].contains("greeting.txt") && asked[0].contains("+hello"),
        "{}",
        asked[0]
    );
    assert_eq!(stub.requests()[0].json()["model"], "coder:7b");
    // CI was started as a detached job on the server; its results land where the script said.
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("CI started on h0: job "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        out.stdout
            .contains(&format!("app: results in h0:{}/logs/app/", ci.display())),
        "{}",
        out.stdout
    );
    // lib pushed nothing: no CI for it, though it has a test command.
    assert!(!out.stdout.contains("lib: results"), "{}", out.stdout);
    let result = ci.join("logs/app/latest/result");
    // The file may appear before its line is written: wait for a whole line, not for a guessed moment.
    crate::common::wait_for("a whole result line", Duration::from_secs(60), || {
        std::fs::read_to_string(&result).is_ok_and(|t| t.ends_with('\n'))
    });
    assert_eq!(read(&result), "pass\n", "{line}");
    assert_eq!(
        read(ci.join("logs/app/latest/commit")).trim(),
        git(&app, &["rev-parse", "main"])
    );
    // The job is titled for its notification, and its log ends with the repo's result line.
    let jobs: Value = serde_json::from_str(&env.baton(&["jobs", "--json"]).ok().stdout).unwrap();
    assert_eq!(jobs[0]["title"], "end_of_day CI (app)", "{jobs}");
    let id = jobs[0]["id"].as_str().unwrap();
    let log = ssh.hosts[0].home.join(format!(".baton/jobs/{id}/log"));
    crate::common::wait_for("the job's last line", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.ends_with("app: pass\n"))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_day_falls_back_stops_on_a_conflict_and_names_an_offline_server() {
    let mut ssh = SshFleet::start(1);
    let tmp = crate::common::TempDir::new("pb-eod2-repos");
    let app = origin(tmp.path(), "app", &[("notes.txt", "line one\n")]);
    let lib = origin(tmp.path(), "lib", &[("lib.txt", "lib\n")]);
    let (app_wc, lib_wc, other) = (tmp.join("app-wc"), tmp.join("lib-wc"), tmp.join("other"));
    clone(&app, &app_wc);
    clone(&lib, &lib_wc);
    clone(&app, &other);
    // Someone else pushed a change to the same line.
    write(&other, &[("notes.txt", "line one by other\n")]);
    git(&other, &["commit", "-qam", "other edits"]);
    git(&other, &["push", "-q", "origin", "main"]);
    write(
        &app_wc,
        &[("notes.txt", "line one by me\n"), ("more.txt", "mine\n")],
    );
    write(&lib_wc, &[("new.txt", "new\n")]);
    let routines = format!(
        r#"return {{ repos = {{
  app = {{ path = {:?}, test = "true" }},
  lib = {{ path = {:?}, test = "true" }},
}} }}"#,
        app_wc.display().to_string(),
        lib_wc.display().to_string()
    );
    let env = env(
        "pb-eod2",
        &fleet_lua(&ssh, &["server"], &refused_url().await),
        &routines,
    );
    ssh.stop_host(0);
    let out = run(&env, "end_of_day.lua", &[]);
    out.expect_code(1);
    // No model: lib got the plain message and was pushed.
    let today = git(
        &lib_wc,
        &["log", "-1", "--format=%cd", "--date=format:%Y-%m-%d"],
    );
    assert_eq!(
        git(&lib, &["log", "-1", "--format=%s", "main"]),
        format!("End of day {today}: 1 file changed (new.txt)")
    );
    // The conflict stopped app cleanly: its own commit kept, nothing pushed, no rebase left behind, and the
    // report says so exactly, naming the commit.
    let short = git(&app_wc, &["rev-parse", "--short", "HEAD"]);
    let exactly = |lead: &str| {
        format!(
            "app: sync.git(local): {lead}, not pushed: origin/main has a conflicting change in notes.txt \
             (rebase aborted, the work tree as it was); resolve with: git -C {} pull --rebase origin main",
            app_wc.display()
        )
    };
    assert!(
        out.stderr
            .contains(&exactly(&format!("committed as {short}"))),
        "{}",
        out.stderr
    );
    assert_eq!(read(app_wc.join("notes.txt")), "line one by me\n");
    assert_eq!(git(&app_wc, &["status", "--porcelain"]), "");
    assert!(git(&app_wc, &["log", "-1", "--format=%s"]).starts_with("End of day "));
    assert_eq!(
        git(&app, &["log", "-1", "--format=%s", "main"]),
        "other edits"
    );
    assert!(!app_wc.join(".git/rebase-merge").exists());
    // The next run says the same of the same commit.
    let again = run(&env, "end_of_day.lua", &["app", "--no-ci"]);
    again.expect_code(1);
    assert!(
        again
            .stderr
            .contains(&exactly(&format!("local commits up to {short} kept"))),
        "{}",
        again.stderr
    );
    // CI for what was pushed could not start: the server is down, and the error says so.
    assert!(
        out.stderr
            .contains("CI: CI host h0 is offline; CI not started"),
        "{}",
        out.stderr
    );
}

/// A model that echoes a long line gets a subject of at most 72 characters, cut at a word, with the whole
/// line in the body; a message without a body gets the changed files as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_day_keeps_the_subject_to_72_characters_and_gives_a_body() {
    const LONG: &str = "Update the notes file with several new lines describing the greeting feature and also \
        mention the other things that were changed today in the repository in great detail";
    let tmp = crate::common::TempDir::new("pb-eod3-repos");
    let app = origin(tmp.path(), "app", &[("notes.txt", "one\n")]);
    let app_wc = tmp.join("app-wc");
    clone(&app, &app_wc);
    let eod = |name: &str, stub: &Stub| {
        env(
            name,
            &format!(
                r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "coder:7b", reason = "r" }} }} }},
}}"#,
                stub.url
            ),
            &format!(
                "return {{ repos = {{ app = {{ path = {:?} }} }} }}",
                app_wc.display().to_string()
            ),
        )
    };
    let stub = ollama(LONG).await;
    write(&app_wc, &[("notes.txt", "one\ntwo\n")]);
    run(&eod("pb-eod3", &stub), "end_of_day.lua", &["--no-ci"]).ok();
    let subject = git(&app, &["log", "-1", "--format=%s", "main"]);
    assert_eq!(
        subject,
        "Update the notes file with several new lines describing the greeting…"
    );
    assert!(subject.chars().count() <= 72, "{subject:?}");
    assert_eq!(
        git(&app, &["log", "-1", "--format=%b", "main"]).trim(),
        LONG
    );

    let stub = ollama("Add a third line").await;
    write(&app_wc, &[("notes.txt", "one\ntwo\nthree\n")]);
    run(&eod("pb-eod4", &stub), "end_of_day.lua", &["--no-ci"]).ok();
    assert_eq!(
        git(&app, &["log", "-1", "--format=%B", "main"]).trim(),
        "Add a third line\n\nChanged: notes.txt"
    );
}

#[test]
fn heavy_ai_task_pushes_starts_resumes_and_pulls_results_back() {
    let mut ssh = SshFleet::start(1);
    let env = env(
        "pb-heavy",
        &fleet_lua(&ssh, &["gpu"], "http://127.0.0.1:9"),
        "return {}",
    );
    let proj = env.dir.join("proj");
    write(
        &proj,
        &[
            ("data/input.txt", "3\n"),
            ("big/weights.bin", "not to be pushed"),
            (".batonignore", "big/\n"),
            (
                "train.sh",
                "for i in 1 2 3; do echo \"epoch $i\"; sleep 0.3; done\nmkdir -p out\necho \"trained on $(cat data/input.txt)\" > out/model.txt\nexit \"${1:-0}\"\n",
            ),
        ],
    );
    let remote = ssh.hosts[0].home.join("work/proj");
    let (proj_s, remote_s) = (proj.display().to_string(), remote.display().to_string());
    let base = ["h0", "--dir", &proj_s, "--remote-dir", &remote_s];
    // Start and return at once with the job id.
    let mut args = base.to_vec();
    args.extend(["--sync-back", "out", "results", "--", "sh", "train.sh"]);
    let out = run(&env, "heavy_ai_task.lua", &args);
    out.ok();
    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("started job "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}", out.stdout))
        .to_string();
    assert!(
        !out.stdout.contains("epoch 3"),
        "it did not wait: {}",
        out.stdout
    );
    let results = env.dir.join("results");
    let resume = format!(
        "baton run {} --job {id} --sync-back out {}",
        script("heavy_ai_task.lua"),
        results.display()
    );
    assert!(
        out.stdout.contains(&format!("resume with: {resume}\n")),
        "{}",
        out.stdout
    );
    assert_eq!(read(remote.join("data/input.txt")), "3\n");
    assert!(
        !remote.join("big").exists(),
        "the ignore file was not honoured"
    );
    // Resume as printed, from another folder: stream the log to the end, then pull the results from the
    // folder the job ran in (the job's record knows it).
    let elsewhere = env.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let bin_dir = env.dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(crate::common::bin(), bin_dir.join("baton")).unwrap();
    let mut cmd = env.program("sh");
    cmd.args(["-c", &resume]).current_dir(&elsewhere).env(
        "PATH",
        format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    let out = output_within(cmd, Duration::from_secs(90));
    out.ok();
    assert!(
        out.stdout.contains("epoch 1\nepoch 2\nepoch 3\n")
            && out
                .stdout
                .contains(&format!("job {id} on h0: exited, exit 0")),
        "{}",
        out.stdout
    );
    assert_eq!(read(results.join("model.txt")), "trained on 3\n");

    // --wait in one go; a failing job still brings its results back and ends with an error.
    let mut args = base.to_vec();
    let back = env.dir.join("back").display().to_string();
    args.extend([
        "--wait",
        "--poll",
        "200ms",
        "--sync-back",
        "out",
        &back,
        "--",
        "sh",
        "train.sh",
        "3",
    ]);
    let out = run(&env, "heavy_ai_task.lua", &args);
    out.expect_code(1);
    assert!(out.stdout.contains("epoch 3"), "{}", out.stdout);
    assert!(
        out.stderr.contains("on h0 exited with code 3"),
        "{}",
        out.stderr
    );
    assert_eq!(read(env.dir.join("back/model.txt")), "trained on 3\n");
    // A failing job whose results are missing: its own end is told first, then the missing results.
    let mut args = base.to_vec();
    args.extend([
        "--wait",
        "--poll",
        "200ms",
        "--sync-back",
        "nothing",
        &back,
        "--",
        "sh",
        "train.sh",
        "3",
    ]);
    let out = run(&env, "heavy_ai_task.lua", &args);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("on h0 exited with code 3; the results were not fetched: "),
        "{}",
        out.stderr
    );

    // A host that never comes online: a clear error naming it, nothing started.
    ssh.stop_host(0);
    let mut args = base.to_vec();
    args.extend(["--online-timeout", "2s", "--", "sh", "train.sh"]);
    let out = run(&env, "heavy_ai_task.lua", &args);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("ssh.wait_online(h0): not online after 2s"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("started job"));
}

/// Puts executable `tools` (name → shell script body) first on host `i`'s PATH (sshd's `SetEnv`).
fn fake_tools(ssh: &SshFleet, i: usize, tools: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt;
    let bin = ssh.hosts[i].dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in tools {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    ssh.hosts[i].path_first(&bin);
}

const NVIDIA_SMI: &str = r#"case "$*" in
  *--query-gpu=*) printf '0, GPU-5f1c2d3e-0000-4a4a-9b9b-000000000001, NVIDIA GeForce RTX 4090, 18234, 24564, 87\n1, GPU-5f1c2d3e-0000-4a4a-9b9b-000000000002, NVIDIA GeForce RTX 4090, 3, 24564, 0\n' ;;
  *--query-compute-apps=*) printf 'GPU-5f1c2d3e-0000-4a4a-9b9b-000000000001, 4242, python3, 18000\n' ;;
  *) echo "unexpected query: $*" >&2; exit 2 ;;
esac
"#;

const VM_STAT: &str = r#"cat <<'X'
Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12345.
Pages active:                           2000000.
Pages inactive:                         1000000.
Pages speculative:                        20000.
Pages wired down:                        500000.
Pages purgeable:                           1000.
Pages occupied by compressor:            100000.
X
"#;

const SYSCTL: &str = r#"case "$*" in
  "-n hw.memsize") echo 137438953472 ;;
  "-n machdep.cpu.brand_string") echo "Apple M2 Ultra" ;;
  *) exit 1 ;;
esac
"#;

#[test]
fn gpu_status_reads_nvidia_smi_apple_memory_no_gpu_and_offline() {
    let mut ssh = SshFleet::prepare(4);
    fake_tools(&ssh, 0, &[("nvidia-smi", NVIDIA_SMI)]);
    fake_tools(
        &ssh,
        1,
        &[
            ("uname", "echo Darwin\n"),
            ("sysctl", SYSCTL),
            ("vm_stat", VM_STAT),
        ],
    );
    for i in 0..3 {
        ssh.start_host(i);
    }
    let env = env(
        "pb-gpu-status",
        &fleet_lua(
            &ssh,
            &["gpu", "inference", "server", "gpu"],
            "http://127.0.0.1:9",
        ),
        "return {}",
    );
    // Default hosts: role gpu or inference (h0, h1, h3 and the Ollama host engine, which is this machine).
    let out = run(&env, "gpu_status.lua", &["--json"]);
    out.ok();
    let v: Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let hosts: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["engine", "h0", "h1", "h3"]);
    let by = |h: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == h)
            .unwrap()
            .clone()
    };
    let h0 = by("h0");
    assert_eq!(h0["kind"], "nvidia");
    assert_eq!(h0["gpus"][0]["name"], "NVIDIA GeForce RTX 4090");
    assert_eq!(h0["gpus"][0]["memory_used_mb"], 18234);
    assert_eq!(h0["gpus"][0]["memory_total_mb"], 24564);
    assert_eq!(h0["gpus"][0]["utilization"], 87);
    assert_eq!(h0["gpus"][0]["processes"][0]["name"], "python3");
    assert_eq!(h0["gpus"][0]["processes"][0]["memory_mb"], 18000);
    assert_eq!(h0["gpus"][1]["memory_used_mb"], 3);
    let h1 = by("h1");
    assert_eq!(h1["kind"], "apple");
    assert_eq!(h1["gpus"][0]["name"], "Apple M2 Ultra");
    assert_eq!(h1["gpus"][0]["unified"], true);
    assert_eq!(h1["gpus"][0]["memory_total_mb"], 131072);
    assert_eq!(h1["gpus"][0]["memory_used_mb"], 40625);
    assert_eq!(by("h3")["kind"], "offline");
    // Empty lists stay lists: no GPU on an offline host, no processes on a GPU (they read `{}` before).
    assert_eq!(by("h3")["gpus"], json!([]));
    assert_eq!(h0["gpus"][1]["processes"], json!([]));
    assert_eq!(h1["gpus"][0]["processes"], json!([]));
    // engine is this machine: no GPU here (nvidia where the test machine has one).
    assert!(["none", "nvidia"].contains(&by("engine")["kind"].as_str().unwrap()));
    // The table, for the hosts asked for.
    let out = run(&env, "gpu_status.lua", &["h0", "h1", "h2", "h3"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("HOST") && lines[0].contains("MEMORY (MiB)"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("h0")
            && lines[1].contains("0: NVIDIA GeForce RTX 4090")
            && lines[1].contains("18234 / 24564")
            && lines[1].contains("87%")
            && lines[1].contains("python3[4242] 18000 MiB"),
        "{}",
        out.stdout
    );
    assert!(
        lines[3].starts_with("h1") && lines[3].contains("40625 / 131072 unified"),
        "{}",
        out.stdout
    );
    assert!(
        lines[4].starts_with("h2") && lines[4].contains("no GPU (no nvidia-smi, not macOS)"),
        "{}",
        out.stdout
    );
    assert!(
        lines[5].starts_with("h3") && lines[5].contains("offline"),
        "{}",
        out.stdout
    );
    let out = run(&env, "gpu_status.lua", &["nosuch"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("unknown fleet host \"nosuch\""),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_models_loads_every_tier_model_and_reports_what_it_could_not() {
    let stub = Stub::start(|req, _| match req.path.as_str() {
        "/api/tags" => Reply::json(200, json!({"models": [{"name": "coder:7b", "model": "coder:7b"}, {"name": "reasoner:7b", "model": "reasoner:7b"}]})),
        "/api/generate" => Reply::ndjson(llm_server::ollama_generate(req.json()["model"].as_str().unwrap(), &[]), 50),
        "/api/ps" => Reply::json(200, json!({"models": [{"name": "coder:7b", "model": "coder:7b"}, {"name": "reasoner:7b", "model": "reasoner:7b"}]})),
        "/api/version" => Reply::json(200, json!({"version": "0.12.0"})),
        _ => Reply::json(404, json!({"error": "not found"})),
    })
    .await;
    let fleet = |extra_tier: &str, extra_host: &str| {
        format!(
            r#"return {{
  hosts = {{ engine = {{ ssh = false, role = "inference", ollama = "{}" }}, {extra_host} }},
  tiers = {{
    {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "coder:7b", reason = "reasoner:7b" }} }},
    {extra_tier}
  }},
}}"#,
            stub.url
        )
    };
    let env = Env::new("pb-warm").with_fleet(&fleet("", ""));
    let out = run(&env, "warm_models.lua", &["--keep-alive", "9h"]);
    out.ok();
    let loads: Vec<Value> = stub
        .requests()
        .iter()
        .filter(|r| r.path == "/api/generate")
        .map(|r| r.json())
        .collect();
    assert_eq!(loads.len(), 2, "{}", out.stdout);
    for (load, model) in loads.iter().zip(["coder:7b", "reasoner:7b"]) {
        assert_eq!(load["model"], model);
        assert_eq!(load["prompt"], "");
        assert_eq!(load["keep_alive"], "9h");
    }
    assert!(
        out.stdout
            .contains("engine: loaded now: coder:7b, reasoner:7b"),
        "{}",
        out.stdout
    );

    // A model that is not pulled and an Ollama that does not answer are reported; the rest still loads.
    let down = refused_url().await;
    let env = Env::new("pb-warm2").with_fleet(&fleet(
        r#"{ name = "spare", provider = "ollama", host = "studio", model = "big:70b" },
    { name = "more", provider = "ollama", host = "engine", model = "missing:1b" },"#,
        &format!(r#"studio = {{ ssh = false, ollama = "{down}" }}"#),
    ));
    let before = stub.count();
    let out = run(&env, "warm_models.lua", &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("warm_models: 2 problems"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("studio: Ollama does not answer"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "engine: missing:1b is not pulled (run with --pull, or ollama pull missing:1b)"
        ),
        "{}",
        out.stderr
    );
    let loaded: Vec<String> = stub.requests()[before..]
        .iter()
        .filter(|r| r.path == "/api/generate")
        .map(|r| r.json()["model"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(loaded, ["coder:7b", "reasoner:7b"]);
}

#[test]
fn gpu_sync_validates_on_the_gpu_host_merges_back_and_stops_cleanly_on_a_conflict() {
    let ssh = SshFleet::start(1);
    let tmp = crate::common::TempDir::new("pb-gpu-repos");
    let origin = origin(
        tmp.path(),
        "model",
        &[
            ("notes.txt", "line one\n"),
            (
                "validate.sh",
                "mkdir -p results\necho \"score for $(cat notes.txt)\" > results/score.txt\necho validated\n",
            ),
        ],
    );
    let (here, there) = (tmp.join("here"), ssh.hosts[0].home.join("model"));
    clone(&origin, &here);
    clone(&origin, &there);
    let routines = format!(
        r#"return {{ gpu = {{ local_path = {:?}, remote_path = {:?}, validate = "sh validate.sh", timeout = "60s" }} }}"#,
        here.display().to_string(),
        there.display().to_string()
    );
    let env = env(
        "pb-gpu-sync",
        &fleet_lua(&ssh, &["gpu"], "http://127.0.0.1:9"),
        &routines,
    );
    write(&here, &[("notes.txt", "line one, tuned\n")]);
    let out = run(&env, "gpu_sync.lua", &["--message", "tune the notes"]);
    out.ok();
    assert!(out.stdout.contains("[h0] validated"), "{}", out.stdout);
    // Local work reached main, the GPU host validated it on its branch, the results came home.
    assert_eq!(
        git(&origin, &["log", "-1", "--format=%s", "main"]),
        "tune the notes"
    );
    assert!(
        git(&origin, &["log", "-1", "--format=%s", "validation"])
            .starts_with("Validation passed: main at "),
    );
    assert_eq!(
        git(&there, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "validation"
    );
    // The branch tracks its own remote branch: a plain `git pull` / `git push` there acts on it, not on main.
    assert_eq!(
        git(
            &there,
            &["rev-parse", "--abbrev-ref", "validation@{upstream}"]
        ),
        "origin/validation"
    );
    assert_eq!(
        git(&there, &["status", "-sb"]),
        "## validation...origin/validation"
    );
    assert_eq!(
        read(here.join("results/score.txt")),
        "score for line one, tuned\n"
    );
    // (a fast-forward here: main had not moved since)
    assert_eq!(
        git(&here, &["rev-parse", "HEAD"]),
        git(&origin, &["rev-parse", "validation"])
    );
    assert_eq!(git(&here, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");

    // A conflict: the validation branch changed the line main changes too. The GPU host's merge is aborted,
    // nothing is validated, both trees stay as they were.
    let other = tmp.join("other");
    clone(&origin, &other);
    git(&other, &["checkout", "-q", "validation"]);
    write(&other, &[("notes.txt", "line one, validation edit\n")]);
    git(&other, &["commit", "-qam", "edit on validation"]);
    git(&other, &["push", "-q", "origin", "validation"]);
    write(&here, &[("notes.txt", "line one, main edit\n")]);
    let there_head = git(&there, &["rev-parse", "HEAD"]);
    let out = run(&env, "gpu_sync.lua", &["--message", "main edit"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("h0: merging origin/main into")
            && out
                .stderr
                .contains("conflicts in notes.txt; merge aborted, nothing changed"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("[h0] validated"), "{}", out.stdout);
    assert_eq!(git(&there, &["status", "--porcelain"]), "");
    assert!(!there.join(".git/MERGE_HEAD").exists());
    // Only the clean fast-forward of origin/validation happened before the conflicting merge.
    assert_eq!(
        git(&there, &["rev-parse", "HEAD"]),
        git(&origin, &["rev-parse", "validation"])
    );
    assert_ne!(git(&there, &["rev-parse", "HEAD"]), there_head);
    assert_eq!(read(here.join("notes.txt")), "line one, main edit\n");
    assert_eq!(
        read(there.join("results/score.txt")),
        "score for line one, tuned\n"
    );
}

#[test]
fn gpu_sync_setup_makes_the_branch_and_worktrees_on_both_machines_once_waiting_for_the_gpu_host() {
    let mut ssh = SshFleet::prepare(1);
    let tmp = crate::common::TempDir::new("pb-gpu-setup");
    let origin = gpu_origin(tmp.path());
    let here = tmp.join("here");
    clone(&origin, &here);
    std::fs::create_dir_all(tmp.join("trees")).unwrap();
    let here_wt = tmp.join("trees/here-gpu");
    let (there, there_wt) = (
        ssh.hosts[0].home.join("model"),
        ssh.hosts[0].home.join("model-gpu"),
    );
    let routines = format!(
        r#"return {{ gpu = {{ local_path = {:?}, remote_path = {:?}, local_worktree = {:?}, remote_worktree = {:?},
  validate = "sh validate.sh", timeout = "60s" }} }}"#,
        here.display().to_string(),
        there.display().to_string(),
        here_wt.display().to_string(),
        there_wt.display().to_string(),
    );
    let env = env(
        "pb-gpu-setup",
        &fleet_lua(&ssh, &["gpu"], "http://127.0.0.1:9"),
        &routines,
    );

    // The GPU host is off: setup does this machine's part, then waits for it.
    let mut cmd = env.cmd();
    cmd.arg("run")
        .arg(script("gpu_sync.lua"))
        .args(["--setup", "--online-timeout", "80s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    crate::common::wait_for("the local worktree", Duration::from_secs(60), || {
        here_wt.join(".git").exists()
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "setup ended while the GPU host was down"
    );
    assert!(!there.exists());
    ssh.start_host(0);
    let out = crate::common::wait_within(child, Duration::from_secs(90));
    out.ok();
    for said in [
        "origin: created branch validation from main at ",
        &format!(
            "local: created branch validation in {}, tracking origin/validation",
            here.display()
        ),
        &format!("local: added worktree {} on validation", here_wt.display()),
        "waiting for h0 …",
        &format!("h0: cloned {} into {}", origin.display(), there.display()),
        &format!(
            "h0: created branch validation in {}, tracking origin/validation",
            there.display()
        ),
        &format!("h0: added worktree {} on validation", there_wt.display()),
        "setup: done, 6 changes",
    ] {
        assert!(out.stdout.contains(said), "{said:?} in:\n{}", out.stdout);
    }
    // Real git: the branch on origin (from main), tracked on both machines, in a worktree on each; the main
    // checkouts stay on main.
    assert_eq!(
        git(&origin, &["rev-parse", "validation"]),
        git(&origin, &["rev-parse", "main"])
    );
    for (clone, wt) in [(&here, &here_wt), (&there, &there_wt)] {
        assert_eq!(git(clone, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
        assert_eq!(
            git(
                clone,
                &["rev-parse", "--abbrev-ref", "validation@{upstream}"]
            ),
            "origin/validation"
        );
        let canonical = std::fs::canonicalize(wt).unwrap();
        assert!(
            git(clone, &["worktree", "list", "--porcelain"]).contains(&format!(
                "worktree {}\nHEAD {}\nbranch refs/heads/validation",
                canonical.display(),
                git(&origin, &["rev-parse", "main"])
            )),
            "{}",
            git(clone, &["worktree", "list", "--porcelain"])
        );
        assert_eq!(
            git(wt, &["status", "-sb"]),
            "## validation...origin/validation"
        );
    }

    // Again: nothing to do, and it says so; refs, upstreams and worktrees are exactly as they were.
    let state = || {
        [&origin, &here, &there]
            .iter()
            .map(|r| {
                let refs = git(
                    r,
                    &[
                        "for-each-ref",
                        "--format=%(refname) %(objectname) %(upstream)",
                    ],
                );
                let trees = if *r == &origin {
                    String::new()
                } else {
                    git(r, &["worktree", "list", "--porcelain"])
                };
                format!("{refs}\n{trees}")
            })
            .collect::<Vec<_>>()
    };
    let before = state();
    let out = run(&env, "gpu_sync.lua", &["--setup"]);
    out.ok();
    assert!(
        out.stdout.contains(
            "setup: everything was already in place (validation on origin, tracked here and on h0; worktrees"
        ) && out.stdout.contains("nothing changed"),
        "{}",
        out.stdout
    );
    for word in ["created", "added", "cloned", "switched", "now tracks"] {
        assert!(!out.stdout.contains(word), "{word}: {}", out.stdout);
    }
    assert_eq!(state(), before);

    identity(&there); // (the clone setup made has no committer of its own; a real GPU host has one)
    // The day's run uses the worktrees: validation in the GPU host's worktree (its clone stays on main), the
    // results fast-forward the local worktree and are merged into main here.
    write(&here, &[("notes.txt", "line one, tuned\n")]);
    let out = run(&env, "gpu_sync.lua", &["--message", "tune the notes"]);
    out.ok();
    assert!(out.stdout.contains("[h0] validated"), "{}", out.stdout);
    assert_eq!(
        read(there_wt.join("results/score.txt")),
        "score for line one, tuned\n"
    );
    assert!(!there.join("results").exists());
    assert_eq!(git(&there, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(
        git(&there_wt, &["status", "-sb"]),
        "## validation...origin/validation"
    );
    assert_eq!(
        git(&here_wt, &["rev-parse", "HEAD"]),
        git(&origin, &["rev-parse", "validation"])
    );
    assert_eq!(
        read(here_wt.join("results/score.txt")),
        "score for line one, tuned\n"
    );
    assert_eq!(
        read(here.join("results/score.txt")),
        "score for line one, tuned\n"
    );
    assert!(
        out.stdout.contains(&format!(
            "local: {} fast-forwarded to origin/validation",
            here_wt.display()
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn gpu_sync_points_an_old_validation_branch_at_its_own_upstream_and_setup_moves_it_to_a_worktree() {
    let ssh = SshFleet::start(1);
    let tmp = crate::common::TempDir::new("pb-gpu-old");
    let origin = gpu_origin(tmp.path());
    let here = tmp.join("here");
    clone(&origin, &here);
    let (there, there_wt) = (
        ssh.hosts[0].home.join("model"),
        ssh.hosts[0].home.join("model-gpu"),
    );
    // What earlier versions left on the GPU host: `validation` checked out, tracking origin/main.
    clone(&origin, &there);
    git(
        &there,
        &["checkout", "-q", "-b", "validation", "origin/main"],
    );
    git(&there, &["push", "-q", "origin", "validation"]);
    assert_eq!(
        git(
            &there,
            &["rev-parse", "--abbrev-ref", "validation@{upstream}"]
        ),
        "origin/main"
    );
    let config = |extra: &str| {
        format!(
            r#"return {{ gpu = {{ local_path = {:?}, remote_path = {:?}, validate = "sh validate.sh"{extra} }} }}"#,
            here.display().to_string(),
            there.display().to_string(),
        )
    };
    let env = env(
        "pb-gpu-old",
        &fleet_lua(&ssh, &["gpu"], "http://127.0.0.1:9"),
        &config(""),
    );

    // A branch name git would read as an option is refused before anything runs.
    let bad = tmp.write(
        "bad-routines.lua",
        config(r#", branch = "--upload-pack=touch pwned""#),
    );
    for extra in [&[][..], &["--setup"][..]] {
        let mut args = vec!["--config", bad.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(&env, "gpu_sync.lua", &args);
        out.expect_code(1);
        assert!(
            out.stderr.contains(
                r#"gpu.branch = "--upload-pack=touch pwned" is not a usable branch name (it may not be empty, start with '-'"#
            ),
            "{}",
            out.stderr
        );
        assert!(!out.stdout.contains("local:"), "{}", out.stdout);
    }
    assert_eq!(git(&origin, &["branch", "--list"]).lines().count(), 2);

    // The plain run points the branch at origin/validation, so `git pull` / `git push` there act on it.
    let out = run(&env, "gpu_sync.lua", &[]);
    out.ok();
    assert!(
        out.stdout
            .contains("h0: validation now tracks origin/validation (was origin/main)"),
        "{}",
        out.stdout
    );
    assert_eq!(
        git(
            &there,
            &["rev-parse", "--abbrev-ref", "validation@{upstream}"]
        ),
        "origin/validation"
    );
    assert_eq!(
        git(&there, &["status", "-sb"]),
        "## validation...origin/validation"
    );

    // --setup with a worktree: the clone goes back to main, the branch moves to the worktree, its upstream
    // fixed again (set back to main by hand here).
    git(
        &there,
        &[
            "branch",
            "-q",
            "--set-upstream-to=origin/main",
            "validation",
        ],
    );
    env.dir.write(
        "routines.lua",
        config(&format!(
            ", remote_worktree = {:?}",
            there_wt.display().to_string()
        )),
    );
    let out = run(&env, "gpu_sync.lua", &["--setup"]);
    out.ok();
    for said in [
        &format!(
            "h0: validation in {} now tracks origin/validation (was origin/main)",
            there.display()
        ),
        &format!(
            "h0: switched {} from validation to main (the branch moves to its worktree)",
            there.display()
        ),
        &format!("h0: added worktree {} on validation", there_wt.display()),
    ] {
        assert!(out.stdout.contains(said), "{said:?} in:\n{}", out.stdout);
    }
    assert_eq!(git(&there, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(
        git(&there_wt, &["status", "-sb"]),
        "## validation...origin/validation"
    );
    assert_eq!(
        git(&there_wt, &["rev-parse", "HEAD"]),
        git(&origin, &["rev-parse", "validation"])
    );
    let out = run(&env, "gpu_sync.lua", &["--setup"]);
    out.ok();
    assert!(
        out.stdout
            .contains("setup: everything was already in place"),
        "{}",
        out.stdout
    );

    // The day's run validates in the worktree; a local worktree that --setup has not made yet is named, not
    // created, and does not fail the run.
    let missing = tmp.join("no-such-worktree");
    env.dir.write(
        "routines.lua",
        config(&format!(
            ", remote_worktree = {:?}, local_worktree = {:?}",
            there_wt.display().to_string(),
            missing.display().to_string()
        )),
    );
    let out = run(&env, "gpu_sync.lua", &[]);
    out.ok();
    assert!(out.stdout.contains("[h0] validated"), "{}", out.stdout);
    assert!(there_wt.join("results/score.txt").exists());
    assert!(!there.join("results").exists());
    assert!(
        out.stdout.contains(&format!(
            "local: no worktree at {} (gpu.local_worktree) to update: run gpu_sync.lua --setup",
            missing.display()
        )),
        "{}",
        out.stdout
    );
    assert!(!missing.exists());
}

/// A bare origin for gpu_sync: `notes.txt` and a `validate.sh` that writes `results/score.txt`.
fn gpu_origin(root: &Path) -> PathBuf {
    origin(
        root,
        "model",
        &[
            ("notes.txt", "line one\n"),
            (
                "validate.sh",
                "mkdir -p results\necho \"score for $(cat notes.txt)\" > results/score.txt\necho validated\n",
            ),
        ],
    )
}

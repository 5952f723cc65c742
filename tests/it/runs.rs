//! Durable runs through the real binary: a playbook killed with SIGKILL after each of its calls in turn and
//! resumed gives the output of an uninterrupted run, with every model request, remote command, sync and
//! step done exactly once and the same spend; parallel tasks; a script edited between kill and resume; bad
//! input.
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::{Env, Out, wait_for, wait_within};
use crate::llm::server::{self, Reply, Stub};
use crate::sshd::SshFleet;

/// The playbook: 10 boundary calls (3 model calls, 2 remote commands, a push, 3 steps appending a line to a
/// file, a local command). With `KILL_AT=i` set it writes `at-i` after call `i` and waits there to be killed.
const PLAYBOOK: &str = r#"
local n = 0
local function mark()
  n = n + 1
  if baton.env("KILL_AT") == tostring(n) then
    local f = assert(io.open("at-" .. n, "w")); f:close()
    while true do baton.sleep(0.05) end
  end
end
local function append(line)
  local f = assert(io.open("steps.txt", "a")); f:write(line, "\n"); f:close()
  return line
end
local out = {}
out[#out + 1] = route.ask("lint", "first question").text; mark()
local R = baton.env("REMOTE_DIR")
out[#out + 1] = ssh.run("h0", "echo one >> " .. R .. "/remote.txt; echo one").stdout; mark()
out[#out + 1] = baton.step("a", append, "alpha"); mark()
out[#out + 1] = route.ask("lint", "second question").text; mark()
out[#out + 1] = tostring(sync.push("tree", "h0:" .. R .. "/pushed").files); mark()
out[#out + 1] = baton.step("b", append, "beta"); mark()
out[#out + 1] = ssh.run("h0", "echo two >> " .. R .. "/remote.txt; echo two").stdout; mark()
out[#out + 1] = route.ask("lint", "third question").text; mark()
out[#out + 1] = baton.exec({ "sh", "-c", "echo local >> local.txt; echo local" }).stdout; mark()
out[#out + 1] = baton.step("c", append, "gamma"); mark()
for i, line in ipairs(out) do print(i, (line:gsub("%s+$", ""))) end
"#;

struct Setup {
    _ssh: SshFleet,
    stub: Stub,
    env: Env,
    work: PathBuf,
    remote: PathBuf,
}

/// A fresh world: the test sshd as h0, an Ollama that answers every question with its prompt, a priced
/// local tier, the playbook and a tree to push.
async fn setup(name: &str) -> Setup {
    let ssh = SshFleet::start(1);
    let stub = Stub::start(|req, _| {
        let prompt = req.json()["messages"][0]["content"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        Reply::ndjson(
            server::ollama_chat("qwen", &["answer to ", &prompt], 40, 6),
            16,
        )
    })
    .await;
    let fleet = ssh.fleet_lua().replacen(
        "  hosts = {\n",
        &format!(
            "  hosts = {{\n    engine = {{ ssh = false, ollama = \"{}\" }},\n",
            stub.url
        ),
        1,
    );
    let fleet = fleet.replacen(
        "return {\n",
        "return {\n  tiers = { { name = \"local\", provider = \"ollama\", host = \"engine\", \
         models = { code = \"qwen\", reason = \"qwen\" }, price = { input = 1000, output = 2000 } } },\n  \
         budget = { monthly_usd = 100 },\n",
        1,
    );
    let env = Env::new(name)
        .with_fleet(&fleet)
        .var("REMOTE_DIR", ssh.hosts[0].home.to_str().unwrap());
    let work = env.dir.join("work");
    std::fs::create_dir_all(work.join("tree")).unwrap();
    std::fs::write(work.join("tree/a.txt"), "a\n").unwrap();
    std::fs::write(work.join("p.lua"), PLAYBOOK).unwrap();
    let remote = ssh.hosts[0].home.join("remote.txt");
    Setup {
        _ssh: ssh,
        stub,
        env,
        work,
        remote,
    }
}

fn baton(s: &Setup, args: &[&str]) -> std::process::Command {
    let mut cmd = s.env.cmd();
    cmd.args(args).current_dir(&s.work);
    cmd
}

fn run_to_end(s: &Setup, args: &[&str]) -> Out {
    let mut cmd = baton(s, args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    wait_within(cmd.spawn().unwrap(), Duration::from_secs(90))
}

/// Starts the playbook with `KILL_AT=at` and kills it (SIGKILL) once it reached that point.
fn killed_at(s: &Setup, at: usize) {
    let mut cmd = baton(s, &["run", "p.lua"]);
    cmd.env("KILL_AT", at.to_string());
    let marker = s.work.join(format!("at-{at}"));
    killed_when(cmd, &format!("the run to reach call {at}"), || {
        marker.exists()
    });
    std::fs::remove_file(marker).unwrap();
}

/// The newest run, as `baton runs --json` lists it.
fn newest_run(env: &Env) -> serde_json::Value {
    let list: serde_json::Value = serde_json::from_str(&env.baton(&["runs", "--json"]).ok().stdout)
        .expect("`baton runs --json` gives JSON");
    list[0].clone()
}

/// What `baton runs show ID --log` prints: the run's log.
fn run_log(env: &Env, id: &str) -> String {
    env.baton(&["runs", "show", id, "--log"])
        .ok()
        .stdout
        .clone()
}

/// The newest run's id.
fn newest_id(env: &Env) -> String {
    newest_run(env)["id"]
        .as_str()
        .expect("the newest run has an id")
        .to_string()
}

/// Starts `cmd` with `HOLD=1` (the scripts' cue to write a marker and wait there), its output dropped, and
/// waits (60 s at most) until `held()` sees the marker.
fn held(mut cmd: std::process::Command, what: &str, held: impl FnMut() -> bool) -> Child {
    cmd.env("HOLD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    wait_for(what, Duration::from_secs(60), held);
    child
}

/// A `work` folder in the test's folder, for a playbook and what it writes.
fn work_dir(env: &Env) -> PathBuf {
    let work = env.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    work
}

/// `baton ARGS` run in `work`, to its end (60 s at most).
fn baton_in(env: &Env, work: &Path, args: &[&str]) -> Out {
    let mut cmd = env.cmd();
    cmd.args(args).current_dir(work);
    crate::common::output_within(cmd, Duration::from_secs(60))
}

/// Kills (SIGKILL) and reaps a process.
fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// [`held`], then killed with SIGKILL: a run cut off at its marker.
fn killed_when(cmd: std::process::Command, what: &str, ready: impl FnMut() -> bool) {
    kill(held(cmd, what, ready));
}

fn spend(s: &Setup) -> f64 {
    let out = run_to_end(s, &["spend", "--json"]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["ledger"]["spent"]
        .as_f64()
        .unwrap_or_else(|| panic!("no month total in {v}"))
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn questions(stub: &Stub) -> Vec<String> {
    stub.requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .map(|r| {
            r.json()["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Killed after each of its 10 calls in turn and resumed: every time, the resumed run prints what an
/// uninterrupted run prints, each model request was sent once, each remote and local command ran once,
/// each step appended its line once, and the month's spend is the uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_after_any_call_resumes_without_repeating_one() {
    let base = setup("runs-base").await;
    let whole = run_to_end(&base, &["run", "p.lua"]);
    whole.ok();
    assert_eq!(whole.stdout.lines().count(), 10, "{}", whole.stdout);
    let base_spend = spend(&base);
    assert!(base_spend > 0.0);
    let base_run = newest_run(&base.env);
    assert_eq!(base_run["cost"].as_f64(), Some(base_spend));
    for at in 1..=10 {
        let s = setup(&format!("runs-kill-{at}")).await;
        killed_at(&s, at);
        let run = newest_run(&s.env);
        assert_eq!(run["status"], "interrupted", "after call {at}: {run}");
        let id = run["id"].as_str().unwrap().to_string();
        let resumed = run_to_end(&s, &["resume", &id]);
        resumed.ok();
        assert_eq!(resumed.stdout, whole.stdout, "killed after call {at}");
        assert_eq!(
            questions(&s.stub),
            ["first question", "second question", "third question"],
            "killed after call {at}"
        );
        assert_eq!(lines(&s.remote), ["one", "two"], "killed after call {at}");
        assert_eq!(
            lines(&s.work.join("local.txt")),
            ["local"],
            "killed after call {at}"
        );
        assert_eq!(
            lines(&s.work.join("steps.txt")),
            ["alpha", "beta", "gamma"],
            "killed after call {at}"
        );
        assert_eq!(spend(&s), base_spend, "killed after call {at}");
        let run = newest_run(&s.env);
        assert_eq!(run["status"], "ok");
        // The run's cost is its ledger rows', booked by both processes under its id.
        assert_eq!(run["cost"], base_run["cost"], "killed after call {at}");
        // Finished: nothing more to resume.
        let again = run_to_end(&s, &["resume", &id]);
        again.expect_code(1);
        assert!(
            again
                .stderr
                .contains(&format!("resume: run {id} finished ok")),
            "{}",
            again.stderr
        );
    }
}

/// Four tasks making three calls each, killed when every task has made two: on resume no finished call
/// runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_tasks_resume_without_repeating_a_finished_call() {
    let env = Env::new("runs-parallel");
    let work = work_dir(&env);
    std::fs::write(
        work.join("par.lua"),
        r#"
local tasks = {}
for t = 1, 4 do
  tasks[t] = baton.spawn(function()
    for c = 1, 3 do
      baton.exec({ "sh", "-c", ("echo %d.%d >> calls.txt"):format(t, c) })
      if c == 2 and baton.env("HOLD") then
        local f = assert(io.open("held-" .. t, "w")); f:close()
        while true do baton.sleep(0.05) end
      end
    end
    return t
  end)
end
for _, task in ipairs(tasks) do print(task:wait()) end
"#,
    )
    .unwrap();
    let mut cmd = env.cmd();
    cmd.args(["run", "par.lua"]).current_dir(&work);
    killed_when(cmd, "every task to hold", || {
        (1..=4).all(|t| work.join(format!("held-{t}")).exists())
    });
    let id = newest_id(&env);
    let out = baton_in(&env, &work, &["resume", &id]);
    out.ok();
    assert_eq!(out.stdout, "1\n2\n3\n4\n");
    let mut calls = lines(&work.join("calls.txt"));
    calls.sort();
    let want: Vec<String> = (1..=4)
        .flat_map(|t| (1..=3).map(move |c| format!("{t}.{c}")))
        .collect();
    assert_eq!(calls, want, "each call once");
}

/// A script edited between kill and resume is refused, naming the journaled call and the new one;
/// `--force` replays what still matches and runs the rest live. Bad ids and states are one-line errors.
#[test]
fn a_changed_script_is_refused_unless_forced_and_bad_input_is_named() {
    let env = Env::new("runs-diverge");
    let work = work_dir(&env);
    let script = |word: &str| {
        format!(
            r#"baton.exec({{ "sh", "-c", "echo first >> calls.txt" }})
baton.exec({{ "sh", "-c", "echo {word} >> calls.txt" }})
if baton.env("HOLD") then
  local f = assert(io.open("held", "w")); f:close()
  while true do baton.sleep(0.05) end
end
print("end")
"#
        )
    };
    std::fs::write(work.join("d.lua"), script("second")).unwrap();
    let mut cmd = env.cmd();
    cmd.args(["run", "d.lua"]).current_dir(&work);
    let child = held(cmd, "the run to hold", || work.join("held").exists());
    let id = newest_id(&env);
    let resume = |args: &[&str]| baton_in(&env, &work, &[&["resume"], args].concat());
    // Still running: refused.
    let out = resume(&[&id]);
    out.expect_code(1);
    assert!(out.stderr.contains("is still running"), "{}", out.stderr);
    kill(child);

    std::fs::write(work.join("d.lua"), script("changed")).unwrap();
    let out = resume(&[&id]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("d.lua changed since the run started")
            && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    // Forced: the first call replays, the changed one runs live.
    let out = resume(&[&id, "--force"]);
    out.ok();
    assert_eq!(out.stdout, "end\n");
    assert_eq!(
        lines(&work.join("calls.txt")),
        ["first", "second", "changed"]
    );

    // Unknown id, and a finished run.
    let out = resume(&["nosuch"]);
    out.expect_code(1);
    assert_eq!(
        out.stderr,
        "baton: resume: no run \"nosuch\" (see `baton runs`)\n"
    );
    let out = resume(&[&id]);
    out.expect_code(1);
    assert!(out.stderr.contains("finished ok"), "{}", out.stderr);
}

/// A call the script makes differently at the same position, with the script file unchanged (the change
/// comes from outside: an argument, the environment), stops the resume naming both calls.
#[test]
fn a_different_call_at_a_journaled_position_names_both() {
    let env = Env::new("runs-diverge-call");
    let work = work_dir(&env);
    std::fs::write(
        work.join("e.lua"),
        r#"baton.exec({ "echo", baton.env("WORD") or "none" })
if baton.env("CRASH") then error("boom", 0) end
print("end")"#,
    )
    .unwrap();
    let mut cmd = env.cmd();
    cmd.args(["run", "e.lua"])
        .current_dir(&work)
        .env("WORD", "apples")
        .env("CRASH", "1");
    let out = crate::common::output_within(cmd, Duration::from_secs(60));
    out.expect_code(1);
    let run = newest_run(&env);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"], "boom");
    let id = run["id"].as_str().unwrap();
    let mut cmd = env.cmd();
    cmd.args(["resume", id])
        .current_dir(&work)
        .env("WORD", "pears");
    let out = crate::common::output_within(cmd, Duration::from_secs(60));
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "resume: the script no longer matches run {id} at step 0.1: the journal has baton.exec"
        )) && out.stderr.contains("apples")
            && out.stderr.contains("the script now makes baton.exec")
            && out.stderr.contains("pears"),
        "{}",
        out.stderr
    );
}

/// `baton.approve` pauses the run (exit 0, status paused, the question on the fleet's notify channels with
/// the commands to answer); `runs approve` and `runs deny`, from other processes, resume it in the
/// foreground, replaying what it did before; answering twice, or a run that is not paused, is refused.
#[test]
fn approve_and_deny_from_another_process() {
    let env = Env::new("runs-approve");
    let work = work_dir(&env);
    let told = env.dir.join("told.txt");
    let recorder = env.dir.write(
        "recorder.sh",
        format!(
            "#!/bin/sh\n# the notify command gets -- then the title and the body\nprintf '%s|%s\\n' \"$2\" \"$3\" >> {}\n",
            told.display()
        ),
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&recorder)
        .status()
        .unwrap();
    let env = env.with_fleet(&format!(
        "return {{ hosts = {{}}, notify = {{ command = {{ {:?} }} }} }}",
        recorder.display().to_string()
    ));
    std::fs::write(
        work.join("a.lua"),
        r#"baton.exec({ "sh", "-c", "echo before >> calls.txt" })
local ok, text = baton.approve("deploy v2 to prod?")
print("answer:", ok, text)
baton.exec({ "sh", "-c", ("echo %s >> calls.txt"):format(ok and "deployed" or "skipped") })
"#,
    )
    .unwrap();
    let cli = |args: &[&str]| baton_in(&env, &work, args);
    for (verb, extra, printed, done) in [
        (
            "approve",
            ["--answer", "ship it"],
            "answer:\ttrue\tship it\n",
            "deployed",
        ),
        (
            "deny",
            ["--reason", "not today"],
            "answer:\tfalse\tnot today\n",
            "skipped",
        ),
    ] {
        let _ = std::fs::remove_file(work.join("calls.txt"));
        let out = cli(&["run", "a.lua"]);
        out.ok();
        assert_eq!(out.stdout, "");
        let id = newest_id(&env);
        assert!(
            out.stderr
                .contains(&format!("run {id} paused: deploy v2 to prod?"))
                && out.stderr.contains(&format!("baton runs approve {id}")),
            "{}",
            out.stderr
        );
        let runs = cli(&["runs", "--status", "paused", "--json"]);
        assert!(runs.ok().stdout.contains(&id));
        let notified = std::fs::read_to_string(&told).unwrap();
        assert!(
            notified.contains(&format!(
                "baton: run {id} waits for approval|deploy v2 to prod?"
            )) && notified.contains(&format!("baton runs deny {id}")),
            "{notified}"
        );
        // Not answered yet: resume refuses.
        let early = cli(&["resume", &id]);
        early.expect_code(1);
        assert!(
            early.stderr.contains("waits for an answer"),
            "{}",
            early.stderr
        );
        let mut args = vec!["runs", verb, id.as_str()];
        args.extend(extra);
        let resumed = cli(&args);
        resumed.ok();
        assert_eq!(resumed.stdout, printed);
        assert_eq!(lines(&work.join("calls.txt")), ["before", done], "{verb}");
        // What the run wrote is kept in its log: the pause on stderr, then what the resume printed.
        assert_eq!(run_log(&env, &id), format!("{}{printed}", out.stderr));
        let again = cli(&["runs", verb, &id]);
        again.expect_code(1);
        assert!(
            again
                .stderr
                .contains(&format!("run {id} is not waiting for an answer (it is ok)")),
            "{}",
            again.stderr
        );
        std::fs::remove_file(&told).unwrap();
    }
    let out = cli(&["runs", "approve", "nosuch"]);
    out.expect_code(1);
    assert_eq!(
        out.stderr,
        "baton: runs approve: no run \"nosuch\" (see `baton runs`)\n"
    );
}

/// A scheduled playbook run killed mid-way (SIGKILL of the process running it) is resumed once by the next
/// daemon when its job says `resume = true`: the calls it finished are not made again; a job without it has
/// its run recorded as interrupted, with a line saying how to finish it.
#[test]
fn the_daemon_resumes_its_interrupted_runs_when_asked() {
    let env = Env::new("runs-daemon");
    let work = work_dir(&env);
    let calls = work.join("calls.txt");
    let playbook = |name: &str| {
        let path = work.join(format!("{name}.lua"));
        std::fs::write(
            &path,
            format!(
                r#"baton.exec({{ "sh", "-c", "echo {name} 1 >> {calls}" }})
if baton.env("HOLD") then
  local f = assert(io.open("{work}/held-{name}", "w")); f:close()
  while true do baton.sleep(0.05) end
end
baton.exec({{ "sh", "-c", "echo {name} 2 >> {calls}" }})
"#,
                calls = calls.display(),
                work = work.display()
            ),
        )
        .unwrap();
        path
    };
    let (again, left) = (playbook("again"), playbook("left"));
    let schedule = env.dir.write(
        "schedule.lua",
        format!(
            r#"schedule.cron("again", "0 0 1 1 *", {again:?}, {{ resume = true }})
schedule.cron("left", "0 0 1 1 *", {left:?})"#,
            again = again.display().to_string(),
            left = left.display().to_string()
        ),
    );
    for name in ["again", "left"] {
        let mut cmd = env.cmd();
        cmd.args(["schedule", "run", name, schedule.to_str().unwrap()]);
        killed_when(cmd, "the run to hold", || {
            work.join(format!("held-{name}")).exists()
        });
    }
    let stderr = env.dir.join("daemon.err");
    let mut daemon = env
        .cmd()
        .args(["daemon", schedule.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    wait_for("the resumed run to finish", Duration::from_secs(60), || {
        lines(&calls).contains(&"again 2".to_string())
    });
    let said = std::fs::read_to_string(&stderr).unwrap();
    let pid = rustix::process::Pid::from_raw(daemon.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    daemon.wait().unwrap();
    let mut got = lines(&calls);
    got.sort();
    assert_eq!(got, ["again 1", "again 2", "left 1"], "{said}");
    let runs: serde_json::Value =
        serde_json::from_str(&env.baton(&["runs", "--json"]).ok().stdout).unwrap();
    let status = |script: &std::path::Path| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["script"] == script.display().to_string())
            .map(|r| (r["trigger"].clone(), r["status"].clone()))
            .unwrap()
    };
    wait_for(
        "the resumed run to be recorded ok",
        Duration::from_secs(30),
        || {
            let runs: serde_json::Value =
                serde_json::from_str(&env.baton(&["runs", "--json"]).ok().stdout).unwrap();
            runs.as_array()
                .unwrap()
                .iter()
                .any(|r| r["script"] == again.display().to_string() && r["status"] == "ok")
        },
    );
    assert_eq!(
        status(&left),
        (
            serde_json::json!("schedule"),
            serde_json::json!("interrupted")
        )
    );
    assert!(
        said.contains("resuming run ") && said.contains("of job again"),
        "{said}"
    );
    assert!(
        said.contains("was interrupted: the daemon or the machine stopped before the run ended"),
        "{said}"
    );
}

/// `runs cancel` gives a failed run up (no resume after); `runs prune` forgets ended runs; bad input is a
/// one-line error.
#[test]
fn cancel_prune_and_bad_input() {
    let env = Env::new("runs-cancel");
    let script = env
        .dir
        .write("f.lua", "baton.exec({ 'true' })\nerror('no luck', 0)\n");
    env.baton(&["run", script.to_str().unwrap()]).expect_code(1);
    let id = newest_id(&env);
    let out = env.baton(&["runs", "show", &id]);
    out.ok();
    assert!(
        out.stdout.contains("· failed ·") && out.stdout.contains("error: no luck"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("baton.exec  true"), "{}", out.stdout);
    // The log ends with how the run ended, in full (where, and the traceback), as `-v` would say it.
    let log = run_log(&env, &id);
    assert!(log.contains("f.lua:2: no luck\nstack traceback:"), "{log}");
    assert_eq!(
        env.baton(&["runs", "cancel", &id]).ok().stdout,
        format!("run {id} cancelled\n")
    );
    let again = env.baton(&["runs", "cancel", &id]);
    again.expect_code(1);
    assert!(
        again
            .stderr
            .contains("is cancelled: only a paused, interrupted or failed run"),
        "{}",
        again.stderr
    );
    let resume = env.baton(&["resume", &id]);
    resume.expect_code(1);
    assert!(resume.stderr.contains("was cancelled"), "{}", resume.stderr);
    let bad = env.baton(&["runs", "--status", "sleepy"]);
    bad.expect_code(1);
    assert!(
        bad.stderr.contains("--status must be running, ok, failed"),
        "{}",
        bad.stderr
    );
    let show = env.baton(&["runs", "show", "nosuch"]);
    show.expect_code(1);
    assert_eq!(
        show.stderr,
        "baton: runs show: no run \"nosuch\" (see `baton runs`)\n"
    );
    assert_eq!(
        env.baton(&["runs", "prune", "--older-than", "1h"])
            .ok()
            .stdout,
        "0 runs older than 1h forgotten\n"
    );
    assert_eq!(
        env.baton(&["runs", "prune", "--older-than", "0s"])
            .ok()
            .stdout,
        "1 run older than 0ms forgotten\n"
    );
    assert_eq!(env.baton(&["runs"]).ok().stdout, "no runs recorded\n");
    assert!(!env.state_dir().join(format!("runs/{id}.log")).exists());
    // A run that crosses no boundary is not recorded, nor is its output kept.
    let plain = env.dir.write("plain.lua", "print('just lua')\n");
    assert_eq!(
        env.baton(&["run", plain.to_str().unwrap()]).ok().stdout,
        "just lua\n"
    );
    assert_eq!(env.baton(&["runs"]).ok().stdout, "no runs recorded\n");
    let logs = std::fs::read_dir(env.state_dir().join("runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(logs, 0);
}

/// What cannot be journaled or replayed gets a clear error and a failed run, never a lost result: a result
/// over 8 MiB (kept from replay, so resuming past it stops), a step returning a function, a journal row
/// deleted by hand, a read-only state database. A call that raised is journaled as such and runs again on
/// resume (no false "deleted row").
#[test]
fn what_cannot_be_journaled_is_named() {
    let env = Env::new("runs-limits");
    let run_lua = |name: &str, text: &str| {
        let path = env.dir.write(name, text);
        env.baton(&["run", path.to_str().unwrap()])
    };
    // Too large: the script gets it; the journal keeps a marker; a resume that reaches it stops.
    let out = run_lua(
        "big.lua",
        "local r = baton.exec({ 'head', '-c', '9437184', '/dev/zero' })\nprint(#r.stdout)\nerror('after', 0)\n",
    );
    out.expect_code(1);
    assert_eq!(out.stdout, "9437184\n");
    let id = newest_id(&env);
    let shown = env.baton(&["runs", "show", &id]).ok().stdout.clone();
    assert!(shown.contains("too_large"), "{shown}");
    let resumed = env.baton(&["resume", &id]);
    resumed.expect_code(1);
    assert!(
        resumed
            .stderr
            .contains("returned more than 8 MiB, too much to journal: it cannot be replayed"),
        "{}",
        resumed.stderr
    );
    // A step whose result is not JSON-able.
    let out = run_lua(
        "fn.lua",
        "baton.step('make', function() return function() end end)\n",
    );
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("baton.step(make): its result cannot be journaled: it holds a function"),
        "{}",
        out.stderr
    );
    assert_eq!(newest_run(&env)["status"], "failed");
    // A failed call caught by the script, then a crash: the resume runs the failed call again and replays
    // the others.
    let calls = env.dir.join("calls.txt");
    let flaky = format!(
        r#"baton.exec({{ "sh", "-c", "echo a >> {c}" }})
print(pcall(baton.exec, {{ "sh", "-c", "echo b >> {c}; exit 3" }}))
baton.exec({{ "sh", "-c", "echo c >> {c}" }})
if not baton.env("DONE") then error("crash", 0) end
"#,
        c = calls.display()
    );
    run_lua("flaky.lua", &flaky).expect_code(1);
    let id = newest_id(&env);
    let mut cmd = env.cmd();
    cmd.args(["resume", &id]).env("DONE", "1");
    crate::common::output_within(cmd, Duration::from_secs(60)).ok();
    assert_eq!(lines(&calls), ["a", "b", "c", "b"]);
    // A journal row deleted by hand: named, not silently run again.
    run_lua("flaky.lua", &flaky).expect_code(1);
    let id = newest_id(&env);
    let db = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    db.execute("DELETE FROM steps WHERE run_id = ?1 AND pos = '0.1'", [&id])
        .unwrap();
    drop(db);
    let mut cmd = env.cmd();
    cmd.args(["resume", &id]).env("DONE", "1");
    let out = crate::common::output_within(cmd, Duration::from_secs(60));
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "resume: the journal of run {id} has no step 0.1 but has 0.2 after it (was a row deleted?)"
        )),
        "{}",
        out.stderr
    );
    // A state database that cannot be written (here the state dir is a file; a read-only file would not
    // stop root): the first journaled call fails, saying why, and the run ends with that error.
    let ro = Env::new("runs-unwritable");
    let blocker = ro.dir.write("not-a-dir", "x");
    let path = ro
        .dir
        .write("w.lua", "baton.exec({ 'true' })\nprint('after')\n");
    let mut cmd = ro.cmd();
    cmd.args(["run", path.to_str().unwrap()])
        .env("BATON_STATE_DIR", &blocker);
    let out = crate::common::output_within(cmd, Duration::from_secs(60));
    out.expect_code(1);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("run journal: state directory") && out.stderr.contains("not-a-dir"),
        "{}",
        out.stderr
    );
}

/// `baton ask` is a run of its own (trigger `ask`) with its one step and cost; it is not resumable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_is_a_recorded_run() {
    let stub =
        Stub::start(|_, _| Reply::ndjson(server::ollama_chat("qwen", &["yes"], 10, 2), 16)).await;
    let env = Env::new("runs-ask").with_fleet(&format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }},
             price = {{ input = 1000, output = 1000 }} }} }},
  budget = {{ monthly_usd = 100 }},
}}"#,
        stub.url
    ));
    let out = tokio::task::spawn_blocking({
        let mut cmd = env.cmd();
        cmd.args(["ask", "lint", "is it fine?"]);
        move || crate::common::output_within(cmd, Duration::from_secs(60))
    })
    .await
    .unwrap();
    out.ok();
    let run = &newest_run(&env);
    assert_eq!(
        (&run["trigger"], &run["status"], &run["script"]),
        (
            &serde_json::json!("ask"),
            &serde_json::json!("ok"),
            &serde_json::json!("baton ask")
        )
    );
    assert!(
        (run["cost"].as_f64().unwrap() - 0.012).abs() < 1e-9,
        "{run}"
    );
    let id = run["id"].as_str().unwrap();
    let shown = env.baton(&["runs", "show", id]).ok().stdout.clone();
    assert!(shown.contains("route.ask  lint"), "{shown}");
    let resume = env.baton(&["resume", id]);
    resume.expect_code(1);
    assert!(
        resume
            .stderr
            .contains("is one call (baton ask, trigger ask), not a playbook"),
        "{}",
        resume.stderr
    );
}

/// A scheduled run (the daemon's run path, here through `baton schedule run`) that asks for approval ends
/// as a quiet scheduled run, is listed paused, and `runs approve` resumes it in the foreground.
#[test]
fn a_scheduled_run_pauses_and_is_approved() {
    let env = Env::new("runs-sched-approve");
    let work = work_dir(&env);
    let calls = work.join("calls.txt");
    let playbook = work.join("ask.lua");
    std::fs::write(
        &playbook,
        format!(
            r#"baton.exec({{ "sh", "-c", "echo before >> {c}" }})
print("asking")
local ok = baton.approve("restart the CI runner?")
baton.exec({{ "sh", "-c", "echo after " .. tostring(ok) .. " >> {c}" }})
"#,
            c = calls.display()
        ),
    )
    .unwrap();
    let schedule = env.dir.write(
        "schedule.lua",
        format!(
            r#"schedule.cron("ask", "0 0 1 1 *", {:?})"#,
            playbook.display().to_string()
        ),
    );
    let out = env.baton(&["schedule", "run", "ask", schedule.to_str().unwrap()]);
    out.ok();
    let run = newest_run(&env);
    assert_eq!(
        (&run["trigger"], &run["status"]),
        (&serde_json::json!("schedule"), &serde_json::json!("paused"))
    );
    let id = run["id"].as_str().unwrap().to_string();
    // Its log is the scheduled run's own (`baton schedule history`'s) …
    let log = run_log(&env, &id);
    assert!(log.contains("asking\n"), "{log}");
    env.baton(&["runs", "approve", &id]).ok();
    assert_eq!(lines(&calls), ["before", "after true"]);
    assert_eq!(newest_run(&env)["status"], "ok");
    // … and the resume in the foreground went on in it.
    let log = run_log(&env, &id);
    assert_eq!(log.matches("asking\n").count(), 2, "{log}");

    // Through the daemon: answered with --no-resume, the daemon that runs the schedule goes on with it.
    std::fs::remove_file(&calls).unwrap();
    env.baton(&["schedule", "run", "ask", schedule.to_str().unwrap()])
        .ok();
    let run = newest_run(&env);
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "paused");
    let mut daemon = env
        .cmd()
        .args(["daemon", schedule.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = env.baton(&["runs", "deny", &id, "--no-resume"]);
    out.ok();
    assert!(
        out.stderr
            .contains(&format!("run {id}: denied; the daemon goes on with it")),
        "{}",
        out.stderr
    );
    wait_for(
        "the daemon to resume the answered run",
        Duration::from_secs(60),
        || lines(&calls).contains(&"after false".to_string()),
    );
    let pid = rustix::process::Pid::from_raw(daemon.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    daemon.wait().unwrap();
    assert_eq!(lines(&calls), ["before", "after false"]);
}

/// In the REPL (no run to pause) `baton.approve` asks on the terminal: a line of stdin, `y`/`yes` for true.
#[test]
fn the_repl_asks_on_the_terminal() {
    let env = Env::new("runs-repl-approve");
    let ask = |input: &str| {
        let mut cmd = env.cmd();
        cmd.arg("repl")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        wait_within(child, Duration::from_secs(60))
    };
    let yes = ask("print(baton.approve('restart the runner?'))\nyes\nprint('after')\n");
    yes.ok();
    assert!(yes.stdout.ends_with("true\nafter\n"), "{}", yes.stdout);
    assert!(
        yes.stderr.contains("restart the runner? [y/N] "),
        "{}",
        yes.stderr
    );
    let no = ask("print(baton.approve('restart the runner?'))\nn\n");
    no.ok();
    assert!(no.stdout.ends_with("false\n"), "{}", no.stdout);
    // At the end of input: no.
    let eof = ask("print(baton.approve('restart the runner?'))\n");
    assert!(eof.stdout.ends_with("false\n"), "{}", eof.stdout);
}

/// A tool call to an MCP server (`handle:call`) is a journaled step: after a crash the resume gets its
/// result from the journal and the tool does not run again. The server is `baton mcp serve` of a tools file
/// whose tool appends a line to a file.
#[test]
fn an_mcp_tool_call_is_not_made_again_on_resume() {
    let env = Env::new("runs-mcp");
    let work = work_dir(&env);
    let calls = work.join("calls.txt");
    let tools = env.dir.write(
        "tools.lua",
        format!(
            r#"mcp.tool{{ name = "note", description = "Appends a line.",
  parameters = {{ type = "object", properties = {{ line = {{ type = "string" }} }}, required = {{ "line" }} }},
  run = function(a)
    local f = assert(io.open({:?}, "a")); f:write(a.line, "\n"); f:close()
    return "noted " .. a.line
  end }}"#,
            calls.display().to_string()
        ),
    );
    let playbook = env.dir.write(
        "p.lua",
        format!(
            r#"local h = mcp.connect({{ command = {{ {:?}, "mcp", "serve", {:?} }} }})
print(h:call("note", {{ line = "one" }}).text)
if not baton.env("DONE") then error("crash", 0) end
print(h:call("note", {{ line = "two" }}).text)
"#,
            crate::common::bin().display().to_string(),
            tools.display().to_string()
        ),
    );
    env.baton(&["run", playbook.to_str().unwrap()])
        .expect_code(1);
    let id = serde_json::from_str::<serde_json::Value>(&env.baton(&["runs", "--json"]).ok().stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trigger"] == "cli")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cmd = env.cmd();
    cmd.args(["resume", &id]).env("DONE", "1");
    let out = crate::common::output_within(cmd, Duration::from_secs(60));
    out.ok();
    assert_eq!(out.stdout, "noted one\nnoted two\n");
    assert_eq!(
        lines(&calls),
        ["one", "two"],
        "the first tool call was not made again"
    );
    let shown = env.baton(&["runs", "show", &id]).ok().stdout.clone();
    assert!(shown.contains("mcp.call"), "{shown}");
}

/// A scheduled function job's run is durable too: killed mid-way, `baton resume` evaluates the schedule
/// file again and calls the job, replaying the calls it finished.
#[test]
fn a_function_job_run_resumes() {
    let env = Env::new("runs-function-job");
    let calls = env.dir.join("calls.txt");
    let held = env.dir.join("held");
    let schedule = env.dir.write(
        "schedule.lua",
        format!(
            r#"schedule.cron("tidy", "0 0 1 1 *", function(run)
  baton.exec({{ "sh", "-c", "echo one " .. run.job .. " >> {c}" }})
  if baton.env("HOLD") then
    local f = assert(io.open({h:?}, "w")); f:close()
    while true do baton.sleep(0.05) end
  end
  baton.exec({{ "sh", "-c", "echo two >> {c}" }})
end)"#,
            c = calls.display(),
            h = held.display().to_string()
        ),
    );
    let mut cmd = env.cmd();
    cmd.args(["schedule", "run", "tidy", schedule.to_str().unwrap()]);
    killed_when(cmd, "the job to hold", || held.exists());
    let run = newest_run(&env);
    assert_eq!(run["args"], serde_json::json!(["--job", "tidy"]), "{run}");
    assert_eq!(run["status"], "interrupted");
    let out = env.baton(&["resume", run["id"].as_str().unwrap()]);
    out.ok();
    assert_eq!(lines(&calls), ["one tidy", "two"]);
}

/// Calls made by a callback inside a call (here a `route.ask` tool running `baton.exec`) belong to that
/// call: live while it runs, gone when it is replayed, so they shift no position after it; a replayed step
/// shifts nothing either (its body's calls sit under the step). The resume replays the ask, the step and the
/// spawned task's call, and makes none of them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_inside_a_call_and_steps_shift_nothing_on_resume() {
    let stub = Stub::start(|req, _| {
        // A tool call first, the answer once the tool's result came back.
        let answered = req.json()["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
        let lines = if answered {
            server::ollama_chat("qwen", &["done"], 5, 2)
        } else {
            server::ollama_tool_calls(
                "qwen",
                serde_json::json!([{"function": {"name": "note", "arguments": {}}}]),
            )
        };
        Reply::ndjson(lines, 32)
    })
    .await;
    let env = Env::new("runs-nested").with_fleet(&format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }} }} }},
}}"#,
        stub.url
    ));
    let work = work_dir(&env);
    let calls = work.join("calls.txt");
    std::fs::write(
        work.join("n.lua"),
        format!(
            r#"local C = {c:?}
local function log(word) baton.exec({{ "sh", "-c", "echo " .. word .. " >> " .. C }}) end
local r = route.ask("lint", "use the tool", {{ tools = {{ note = {{ description = "Notes.",
  parameters = {{ type = "object", properties = {{}} }},
  run = function() log("tool") return "noted" end }} }} }})
baton.step("inner", function() log("step") end)
baton.spawn(function() log("spawned") end):wait()
log("main")
if baton.env("HOLD") then
  local f = assert(io.open("held", "w")); f:close()
  while true do baton.sleep(0.05) end
end
log("last")
print(r.text)
"#,
            c = calls.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = env.cmd();
    cmd.args(["run", "n.lua"]).current_dir(&work);
    killed_when(cmd, "the run to hold", || work.join("held").exists());
    let id = newest_id(&env);
    let mut cmd = env.cmd();
    cmd.args(["resume", &id]).current_dir(&work);
    let out = tokio::task::spawn_blocking(move || {
        crate::common::output_within(cmd, Duration::from_secs(60))
    })
    .await
    .unwrap();
    out.ok();
    assert_eq!(out.stdout, "done\n");
    assert_eq!(lines(&calls), ["tool", "step", "spawned", "main", "last"]);
    assert_eq!(stub.count(), 2, "the ask was not sent again");
}

/// The run's log holds what it wrote on stdout and stderr, in order: `print`, `io.write`, `io.stdout:write`,
/// `io.stderr:write`, a log line, the live lines of a remote command (here printed and written to stderr by
/// its `on_line`), the pause of `baton.approve`, and how the run ended. The terminal gets the same.
#[test]
fn the_log_holds_stdout_stderr_and_live_remote_lines() {
    let ssh = SshFleet::start(1);
    let env = Env::new("runs-log").with_fleet(&ssh.fleet_lua());
    let script = env.dir.write(
        "l.lua",
        r#"print("printed")
io.write("written ", 1, " ", 2.5, "\n")
print(pcall(io.write, {}))
io.stdout:write("to stdout\n"):write("chained\n")
io.stderr:write("to stderr\n")
baton.log.warn("a warning")
ssh.run("h0", "echo out-line; sleep 0.3; echo err-line >&2", { on_line = function(stream, line)
  if stream == "stderr" then io.stderr:write("live ", stream, " ", line, "\n")
  else print("live " .. stream .. " " .. line) end
end })
error("the end", 0)
"#,
    );
    let out = env.baton(&["run", script.to_str().unwrap()]);
    out.expect_code(1);
    assert_eq!(
        out.stdout,
        "printed\nwritten 1 2.5\nfalse\tbad argument #1 to 'io.write' (string expected, got table)\n\
         to stdout\nchained\nlive stdout out-line\n"
    );
    for said in ["to stderr\n", "a warning", "live stderr err-line\n"] {
        assert!(out.stderr.contains(said), "{said:?} in {}", out.stderr);
    }
    let id = newest_id(&env);
    let log = run_log(&env, &id);
    let mut at = 0;
    for want in [
        "printed\n",
        "written 1 2.5\n",
        "to stdout\nchained\n",
        "to stderr\n",
        "WARN a warning",
        "live stdout out-line\n",
        "live stderr err-line\n",
        "l.lua:11: the end",
    ] {
        match log[at..].find(want) {
            Some(i) => at += i + want.len(),
            None => panic!("{want:?} not found after byte {at} of the log:\n{log}"),
        }
    }
    // The log is plain text: no terminal colours, whatever stderr was.
    assert!(!log.contains('\x1b'), "{log:?}");
}

/// A pause caught by `pcall` sticks: the script's plain Lua after it runs, but its next boundary call raises
/// the pause again, so the run ends paused (exit 0), having run nothing that was to wait for the answer; the
/// answer resumes it and it goes on. A script that fails after catching the pause ends paused too.
#[test]
fn a_pause_caught_by_pcall_still_pauses_the_run() {
    let env = Env::new("runs-pcall-approve");
    let work = work_dir(&env);
    std::fs::write(
        work.join("c.lua"),
        r#"baton.exec({ "sh", "-c", "echo before >> calls.txt" })
local ok, a = pcall(baton.approve, "ok?")
print("caught", ok, ok and a or "")
baton.exec({ "sh", "-c", "echo after >> calls.txt" })
print(pcall(baton.step, "s", function() return 1 end))
print("end")
"#,
    )
    .unwrap();
    let cli = |args: &[&str]| baton_in(&env, &work, args);
    let out = cli(&["run", "c.lua"]);
    out.ok();
    assert_eq!(out.stdout, "caught\tfalse\t\n");
    let run = newest_run(&env);
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "paused", "{run}");
    assert!(
        out.stderr.contains(&format!("run {id} paused: ok?")),
        "{}",
        out.stderr
    );
    assert_eq!(lines(&work.join("calls.txt")), ["before"]);
    let resumed = cli(&["runs", "approve", &id, "--answer", "yes"]);
    resumed.ok();
    assert_eq!(resumed.stdout, "caught\ttrue\ttrue\ntrue\t1\nend\n");
    assert_eq!(lines(&work.join("calls.txt")), ["before", "after"]);
    assert_eq!(newest_run(&env)["status"], "ok");

    // Caught, then a failure (or a second question): still the first pause, not a failed run.
    let out = cli(&[
        "run",
        env.dir
            .write(
                "f.lua",
                "baton.exec({ 'true' })\npcall(baton.approve, 'first?')\nprint(pcall(baton.approve, 'second?'))\nerror('later', 0)\n",
            )
            .to_str()
            .unwrap(),
    ]);
    out.ok();
    let run = newest_run(&env);
    assert_eq!(run["status"], "paused", "{run}");
    assert!(
        out.stdout.starts_with("false\t") && out.stdout.contains("paused: first?"),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("second?"), "{}", out.stderr);

    // Caught inside a step: the step did not finish, so the answer reaches its body on resume.
    let out = cli(&[
        "run",
        env.dir
            .write(
                "s.lua",
                "baton.step('ask', function()\n  local ok, a = pcall(baton.approve, 'inside?')\n                   print('inside', ok, ok and a or '')\nend)\nprint('after the step')\n",
            )
            .to_str()
            .unwrap(),
    ]);
    out.ok();
    assert_eq!(out.stdout, "inside\tfalse\t\n");
    let id = newest_id(&env);
    let resumed = cli(&["runs", "approve", &id, "--answer", "go"]);
    resumed.ok();
    assert_eq!(resumed.stdout, "inside\ttrue\ttrue\nafter the step\n");
}

/// `baton.step` and `baton.approve` name the function, the argument and what they expected.
#[test]
fn step_and_approve_want_a_non_empty_name() {
    let env = Env::new("runs-bad-args");
    for (script, said) in [
        (
            "baton.step('', function() end)",
            "baton.step: argument 1 (name) must be a non-empty string, got string \"\"",
        ),
        (
            "baton.step(nil, function() end)",
            "baton.step: argument 1 (name) must be a non-empty string, got nil",
        ),
        (
            "baton.approve('  ')",
            "baton.approve: argument 1 (message) must be a non-empty string, got string \"  \"",
        ),
        (
            "baton.approve(42)",
            "baton.approve: argument 1 (message) must be a non-empty string, got number 42",
        ),
    ] {
        let out = env.run_lua("bad.lua", script, &[]);
        out.expect_code(1);
        assert!(out.stderr.contains(said), "{script}: {}", out.stderr);
    }
}

//! Integration tests: `schedule` and `baton daemon`, in real time against the real binary (a few seconds
//! each). The scheduling logic itself, and every question of *when* (on time, no miss, no duplicate, catch-up
//! after a suspend), is tested on tokio's paused clock in `core::schedule`; here the tests wait for events
//! (recorded runs, a line on stderr) and assert what holds however loaded the machine is.
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use baton::core::schedule::{Expr, RunRecord, Store, Zone};
use baton::core::state::State;
use chrono::Utc;

use crate::common::{Env, Out, output_within, wait_for, wait_within};

fn start_daemon(env: &Env, file: &Path) -> Child {
    let mut cmd = env.cmd();
    cmd.args(["daemon", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start baton daemon")
}

/// SIGTERM, then the finished process (at most 15 s later).
fn stop(child: Child) -> Out {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    wait_within(child, Duration::from_secs(15))
}

/// Runs the daemon on `schedule` until the recorded runs satisfy `done` (given up after 60 s), then stops it
/// with SIGTERM; returns its output and runs.
fn run_daemon(
    env: &Env,
    schedule: &str,
    what: &str,
    done: impl Fn(&[RunRecord]) -> bool,
) -> (Out, Vec<RunRecord>) {
    let file = env.dir.write("schedule.lua", schedule);
    let child = start_daemon(env, &file);
    wait_for(what, Duration::from_secs(60), || done(&runs(env, None)));
    let out = stop(child);
    (out, runs(env, None))
}

/// How many runs of `job` have ended.
fn ended(runs: &[RunRecord], job: &str) -> usize {
    of(runs, job)
        .iter()
        .filter(|r| r.ended.is_some() && r.outcome != "skipped")
        .count()
}

/// Consecutive runs of a per-second job: whole seconds apart, and exactly one second unless the later one
/// is flagged as a catch-up (a loaded machine may wake the daemon after a fire time passed; it then runs
/// the latest missed time once, flagged, and never twice). Never started before its time.
fn assert_per_second(runs: &[&RunRecord]) {
    for pair in runs.windows(2) {
        let gap = (pair[1].scheduled - pair[0].scheduled).num_milliseconds();
        assert!(
            gap > 0 && gap % 1000 == 0,
            "{gap} ms between runs: {runs:#?}"
        );
        if !pair[1].catchup {
            assert_eq!(gap, 1000, "a missed second without a catch-up: {runs:#?}");
        }
    }
    for r in runs {
        assert!(
            r.started.unwrap() >= r.scheduled,
            "run {} started before its time",
            r.id
        );
    }
}

/// Recorded runs, oldest first.
fn runs(env: &Env, job: Option<&str>) -> Vec<RunRecord> {
    let store = Store::open(&State::new(env.state_dir())).unwrap();
    let mut runs = store.history(job, 1000).unwrap();
    runs.reverse();
    runs
}

fn of<'a>(runs: &'a [RunRecord], job: &str) -> Vec<&'a RunRecord> {
    runs.iter().filter(|r| r.job == job).collect()
}

#[test]
fn every_second_job_fires_on_time_and_logs_its_output() {
    let env = Env::new("sched-tick");
    let (out, runs) = run_daemon(
        &env,
        r#"schedule.cron("tick", "*/1 * * * * *", function(run) print("tick " .. run.job .. " " .. run.run) end)"#,
        "three ticks",
        |runs| ended(runs, "tick") >= 3,
    );
    out.ok();
    assert!(
        out.stderr.contains("baton daemon: 1 job(s)"),
        "{}",
        out.stderr
    );
    let ticks = of(&runs, "tick");
    assert!(ticks.len() >= 3, "{ticks:#?}");
    assert_per_second(&ticks);
    for r in &ticks {
        assert_eq!(r.outcome, "ok");
        let log = std::fs::read_to_string(r.log.as_ref().unwrap()).unwrap();
        assert_eq!(log, format!("tick tick {}\n", r.id));
    }
}

#[test]
fn failing_and_hanging_jobs_do_not_stop_a_healthy_one() {
    let env = Env::new("sched-failures");
    env.dir.write(
        "book.lua",
        "print('from the playbook') baton.log.info('logged') error('playbook broke')",
    );
    let (out, runs) = run_daemon(
        &env,
        r#"
        schedule.cron("healthy", "* * * * * *", function() print("fine") end)
        schedule.cron("fails", "* * * * * *", function() error("boom") end)
        schedule.cron("spins", "*/2 * * * * *", function() while true do end end, { timeout = "1s" })
        schedule.cron("sleeps", "*/2 * * * * *", function() baton.sleep(60) end, { timeout = 0.5 })
        schedule.cron("book", "*/2 * * * * *", "book.lua")
        "#,
        "three runs of healthy and fails, one of each other job",
        |runs| {
            ended(runs, "healthy") >= 3
                && ended(runs, "fails") >= 3
                && ["spins", "sleeps", "book"]
                    .iter()
                    .all(|job| ended(runs, job) >= 1)
        },
    );
    out.ok();
    let healthy = of(&runs, "healthy");
    assert!(
        healthy.len() >= 3 && healthy.iter().all(|r| r.outcome == "ok"),
        "{healthy:#?}"
    );
    assert_per_second(&healthy);
    let fails = of(&runs, "fails");
    assert!(fails.len() >= 3, "{fails:#?}");
    assert!(
        fails
            .iter()
            .all(|r| r.outcome == "failed" && r.error.as_deref().unwrap().contains("boom"))
    );
    for job in ["spins", "sleeps"] {
        let hung: Vec<_> = of(&runs, job)
            .into_iter()
            .filter(|r| r.ended.is_some())
            .collect();
        assert!(!hung.is_empty(), "{job}: {runs:#?}");
        assert!(
            hung.iter()
                .all(|r| r.error.as_deref().unwrap().starts_with("timed out after")),
            "{hung:#?}"
        );
    }
    let book = of(&runs, "book");
    assert!(!book.is_empty());
    assert!(
        book[0].error.as_deref().unwrap().contains("playbook broke"),
        "{book:#?}"
    );
    let log = std::fs::read_to_string(book[0].log.as_ref().unwrap()).unwrap();
    assert!(
        log.contains("from the playbook") && log.contains("logged"),
        "{log}"
    );
    assert!(log.contains("[baton] run failed"), "{log}");
}

#[test]
fn sigterm_lets_a_running_job_finish_and_exits_zero() {
    let env = Env::new("sched-sigterm");
    // The run holds until the test creates `go`, which it does only once the daemon has said it is stopping:
    // the run is certainly in progress at SIGTERM, however slow the machine.
    let go = env.dir.join("go");
    let file = env.dir.write(
        "schedule.lua",
        format!(
            r#"schedule.cron("slow", "* * * * * *", function()
              print("start")
              for _ = 1, 3000 do
                local f = io.open({go:?}) if f then f:close() break end
                baton.sleep(0.02)
              end
              print("done")
            end)"#
        ),
    );
    let stderr = env.dir.join("daemon.err");
    let mut child = env
        .cmd()
        .args(["daemon", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start baton daemon");
    wait_for("the first run to start", Duration::from_secs(60), || {
        !runs(&env, Some("slow")).is_empty()
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let said = || std::fs::read_to_string(&stderr).unwrap_or_default();
    wait_for(
        "the daemon to say it is stopping",
        Duration::from_secs(30),
        || said().contains("stopping"),
    );
    std::fs::write(&go, "").unwrap();
    let mut status = None;
    wait_for("the daemon to exit", Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0), "{}", said());
    let slow: Vec<RunRecord> = runs(&env, Some("slow"))
        .into_iter()
        .filter(|r| r.outcome != "skipped")
        .collect();
    assert_eq!(slow.len(), 1, "no new runs after SIGTERM: {slow:#?}");
    assert_eq!(slow[0].outcome, "ok", "{slow:#?}");
    let log = std::fs::read_to_string(slow[0].log.as_ref().unwrap()).unwrap();
    assert_eq!(log, "start\ndone\n");
}

#[test]
fn restart_after_missed_fire_runs_exactly_one_catch_up() {
    let env = Env::new("sched-restart");
    let expr = "0 3 * * *";
    // Seed: the 03:00 job last fired three days ago (the daemon was down since).
    let zone = Zone::Local;
    let now = Utc::now();
    let e = Expr::parse(expr).unwrap();
    let last = e
        .last_in(
            now - chrono::Duration::days(4),
            now - chrono::Duration::days(3),
            &zone,
        )
        .unwrap();
    let store = Store::open(&State::new(env.state_dir())).unwrap();
    store.set_last_fire("nightly", last).unwrap();
    // `probe` fires every second: once it has run, the daemon has made its start-up decisions (a catch-up
    // is decided on the first tick, before any later fire).
    let schedule = format!(
        r#"schedule.cron("nightly", "{expr}", function(run) print("caught up", run.catchup) end)
        schedule.cron("probe", "* * * * * *", function() end)"#
    );
    let (out, runs) = run_daemon(&env, &schedule, "the catch-up and a probe", |runs| {
        ended(runs, "nightly") >= 1 && ended(runs, "probe") >= 1
    });
    out.ok();
    let probes = ended(&runs, "probe");
    let runs: Vec<RunRecord> = runs.into_iter().filter(|r| r.job == "nightly").collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert!(runs[0].catchup && runs[0].outcome == "ok");
    assert_eq!(Some(runs[0].scheduled), e.last_in(last, now, &zone));
    assert_eq!(
        std::fs::read_to_string(runs[0].log.as_ref().unwrap()).unwrap(),
        "caught up\ttrue\n"
    );
    // A second restart has nothing left to catch up.
    let (out, runs) = run_daemon(&env, &schedule, "a probe after the restart", |runs| {
        ended(runs, "probe") > probes
    });
    out.ok();
    assert_eq!(of(&runs, "nightly").len(), 1, "{runs:#?}");
}

#[test]
fn install_print_shows_systemd_unit_and_launchd_plist() {
    let env = Env::new("sched-install");
    let out = env.baton(&["daemon", "--install", "--print", "--platform", "linux"]);
    out.ok();
    let state = env.state_dir();
    let file = env.dir.join("config/baton/schedule.lua");
    assert!(
        out.stdout.contains("[Service]") && out.stdout.contains("Restart=on-failure"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("\"daemon\" \"{}\"", file.display())),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!(
        "Environment=\"BATON_STATE_DIR={}\"",
        state.display()
    )));
    assert!(out.stdout.contains("WantedBy=default.target"));
    let out = env.baton(&["daemon", "--install", "--print", "--platform", "macos"]);
    out.ok();
    assert!(out.stdout.starts_with("<?xml"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("<key>Label</key>\n  <string>dev.baton.daemon</string>")
    );
    assert!(
        out.stdout
            .contains(&format!("<string>{}</string>", file.display()))
    );
    assert!(out.stdout.contains("<key>KeepAlive</key>"));
    // --print writes nothing.
    assert!(!env.dir.join("config/systemd").exists() && !env.dir.join("home/Library").exists());
    // The other platform's file is never written.
    let other = if cfg!(target_os = "macos") {
        "linux"
    } else {
        "macos"
    };
    let out = env.baton(&["daemon", "--install", "--platform", other]);
    assert!(
        out.code != Some(0) && out.stderr.contains("--print"),
        "{out:?}"
    );
}

#[test]
fn install_writes_the_unit_for_this_system() {
    let env = Env::new("sched-install-write");
    let out = env.baton(&["daemon", "--install"]);
    out.ok();
    let path = if cfg!(target_os = "macos") {
        env.dir
            .join("home/Library/LaunchAgents/dev.baton.daemon.plist")
    } else {
        env.dir.join("config/systemd/user/baton-daemon.service")
    };
    assert!(path.is_file(), "{out:?}");
    assert!(out.stdout.contains("enable it with"), "{}", out.stdout);
}

#[test]
fn schedule_file_without_jobs_exits_non_zero() {
    let env = Env::new("sched-empty");
    let file = env
        .dir
        .write("schedule.lua", "print('nothing to schedule')");
    let out = env.baton(&["daemon", file.to_str().unwrap()]);
    out.expect_code(1);
    assert!(out.stderr.contains("registered no jobs"), "{}", out.stderr);
    let out = env.baton(&["daemon", env.dir.join("missing.lua").to_str().unwrap()]);
    out.expect_code(1);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
}

#[test]
fn list_run_and_history_without_the_daemon() {
    let env = Env::new("sched-cli");
    let file = env.dir.write(
        "config/baton/schedule.lua",
        r#"schedule.cron("eod", "0 18 * * MON-FRI", function(run) print("end of day", run.manual) end, { tz = "UTC" })"#,
    );
    let out = env.baton(&["schedule", "list"]);
    out.ok();
    // One table row per job (the NEXT cell holds three lines); cells are two or more blanks apart.
    let row = |stdout: &str| -> Vec<String> {
        let line = stdout.lines().find(|l| l.starts_with("eod ")).unwrap();
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    assert!(out.stdout.starts_with("JOB  SCHEDULE  "), "{}", out.stdout);
    let cells = row(&out.stdout);
    assert_eq!(
        cells[..6],
        ["eod", "0 18 * * MON-FRI", "UTC", "once", "skip", "function"],
        "{}",
        out.stdout
    );
    assert!(cells[6].ends_with("T18:00:00Z"), "{}", out.stdout);
    assert_eq!(
        out.stdout.matches("T18:00:00Z").count(),
        3,
        "{}",
        out.stdout
    );
    assert_eq!(cells[7], "never ran", "{}", out.stdout);
    let out = env.baton(&["schedule", "run", "eod", file.to_str().unwrap()]);
    out.ok();
    assert!(out.stdout.contains("eod: run 1 ok"), "{}", out.stdout);
    let out = env.baton(&["schedule", "run", "eodd"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("no job named \"eodd\", did you mean eod?"),
        "{}",
        out.stderr
    );
    let out = env.baton(&["schedule", "history", "--limit", "5"]);
    out.ok();
    assert!(
        out.stdout.contains("eod") && out.stdout.contains(" ok "),
        "{}",
        out.stdout
    );
    let log = runs(&env, Some("eod"))[0].log.clone().unwrap();
    assert_eq!(std::fs::read_to_string(log).unwrap(), "end of day\ttrue\n");
    let out = env.baton(&["schedule", "list"]);
    out.ok();
    assert!(row(&out.stdout)[7].starts_with("ok at "), "{}", out.stdout);
}

#[test]
fn lua_api_validates_arguments_and_previews_times() {
    let env = Env::new("sched-api");
    let script = r#"
    local function err(f) local ok, e = pcall(f) assert(not ok) return tostring(e) end
    print(err(function() schedule.cron("x", "61 * * * *", function() end) end))
    print(err(function() schedule.cron("x", nil, function() end) end))
    print(err(function() schedule.cron("x", "@daily", 42) end))
    print(err(function() schedule.cron("x", "@daily", function() end, { overlpa = "skip" }) end))
    print(err(function() schedule.cron("x", "@daily", function() end, { missed = "twice" }) end))
    print(err(function() schedule.cron("x", "@daily", function() end, { tz = "Mars/Base" }) end))
    print(err(function() schedule.cron("x", "@daily", "nope.lua") end))
    print(err(function() schedule.next("* * *") end))
    schedule.cron("a", "*/5 * * * * *", function() end, { jitter = "2s", timeout = 30 })
    print(err(function() schedule.cron("a", "@daily", function() end) end))
    local n = schedule.next("0 0 * * *", 3)
    print(#n, n[1]:match("T00:00:00") ~= nil)
    local jobs = schedule.jobs()
    print(#jobs, jobs[1].name, jobs[1].expr, jobs[1].jitter, jobs[1].timeout, jobs[1].missed, jobs[1].overlap, jobs[1].next ~= nil)
    "#;
    let out = env.run_lua("api.lua", script, &[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let want = [
        "schedule.cron: bad cron expression \"61 * * * *\": minute field \"61\": 61 is out of range (expected 0-59)",
        "schedule.cron: argument 2 (expr) must be a string, got nil",
        "schedule.cron: argument 3 (target) must be a function or a playbook path, got number 42",
        "schedule.cron: options.overlpa: unknown key",
        "schedule.cron: options.missed",
        "schedule.cron: options.tz: unknown time zone \"Mars/Base\"",
        "schedule.cron: argument 3 (target): playbook",
        "schedule.next: bad cron expression \"* * *\": expected 5 fields",
        "schedule.cron: a job named \"a\" is already registered",
        "3\ttrue",
        "1\ta\t*/5 * * * * *\t2\t30\tonce\tskip\ttrue",
    ];
    assert_eq!(lines.len(), want.len(), "{}\n{}", out.stdout, out.stderr);
    for (line, want) in lines.iter().zip(want) {
        assert!(line.contains(want), "got {line:?}, want {want:?}");
    }
    assert!(lines[3].contains("did you mean overlap?"), "{}", lines[3]);
}

/// A relative playbook path in a schedule file is relative to that file, for every command that reads it.
#[test]
fn relative_playbooks_resolve_next_to_the_schedule_file_everywhere() {
    let env = Env::new("sched-relative");
    env.dir
        .write("config/baton/jobs/tidy.lua", "print('tidy')\n");
    env.dir.write(
        "config/baton/schedule.lua",
        "schedule.cron('tidy', '0 3 * * *', 'jobs/tidy.lua')\n",
    );
    let elsewhere = env.dir.join("home");
    let run = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args(args).current_dir(&elsewhere);
        output_within(cmd, Duration::from_secs(60))
    };
    let out = run(&["status", "--json"]);
    out.ok();
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(s["schedule_error"].is_null(), "{}", out.stdout);
    assert_eq!(s["schedule"][0]["name"], "tidy", "{}", out.stdout);
    let out = run(&["schedule", "list"]);
    out.ok();
    let target = env.dir.join("config/baton/jobs/tidy.lua");
    assert!(
        out.stdout.contains(target.to_str().unwrap()),
        "{}",
        out.stdout
    );
}

/// A scheduled job finds the modules beside its own file, whatever the current folder: the schedule
/// file's (at load and in a function job) and a playbook job's, in another folder.
#[test]
fn jobs_require_modules_beside_their_files() {
    let env = Env::new("sched-require");
    env.dir
        .write("sched/shared.lua", "return { word = 'shared' }");
    env.dir
        .write("sched/jobs/own.lua", "return { word = 'own' }");
    env.dir
        .write("sched/jobs/book.lua", "print(require('own').word)");
    let file = env.dir.write(
        "sched/schedule.lua",
        r#"local shared = require("shared")
        schedule.cron("fn", "@daily", function() print(shared.word, require("shared").word) end)
        schedule.cron("book", "@daily", "jobs/book.lua")"#,
    );
    let file = file.to_str().unwrap();
    for (job, log) in [("fn", "shared\tshared\n"), ("book", "own\n")] {
        let out = env.baton(&["schedule", "run", job, file]);
        out.ok();
        let path = runs(&env, Some(job))[0].log.clone().unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), log);
    }
}

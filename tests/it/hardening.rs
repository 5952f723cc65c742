//! Hardening against hostile scripts and config files (issue 15), against the real binary: spinning and
//! allocating jobs cannot freeze the daemon, SIGTERM and Ctrl-C end spinning Lua, fleet and schedule files
//! that never finish or allocate without bound give errors.
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use baton::core::schedule::{RunRecord, Store};
use baton::core::state::State;

use crate::common::{Env, Out, wait_for, wait_within};

fn start_daemon(env: &Env, file: &Path) -> Child {
    let mut cmd = env.cmd();
    cmd.args(["daemon", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start baton daemon")
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Recorded runs of `job`, oldest first.
fn runs(env: &Env, job: &str) -> Vec<RunRecord> {
    let store = Store::open(&State::new(env.state_dir())).unwrap();
    let mut runs = store.history(Some(job), 1000).unwrap();
    runs.reverse();
    runs
}

/// Waits (at most `limit`) until `job` has `n` finished runs.
fn wait_for_runs(env: &Env, job: &str, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while runs(env, job).iter().filter(|r| r.ended.is_some()).count() < n {
        assert!(
            Instant::now() < deadline,
            "{job}: fewer than {n} finished runs within {limit:?}: {:#?}",
            runs(env, job)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The healthy per-second job kept running: at least `at_least` runs, every one ok and none started before
/// its time. That it was not held up by the others is shown by events (a healthy run starting while a
/// misbehaving one is still running), not by a lateness window, which a loaded machine would break.
fn assert_on_schedule(healthy: &[RunRecord], at_least: usize) {
    let ran: Vec<&RunRecord> = healthy.iter().filter(|r| r.outcome != "skipped").collect();
    assert!(ran.len() >= at_least, "{healthy:#?}");
    for r in &ran {
        assert_eq!(r.outcome, "ok", "{r:#?}");
        assert!(
            r.started.unwrap() >= r.scheduled,
            "run {} started early",
            r.id
        );
    }
}

/// Some healthy run started while a run of one of `others` was still running (between its start and end).
fn assert_ran_beside(healthy: &[RunRecord], others: &[RunRecord]) {
    let during = healthy.iter().any(|h| {
        others.iter().any(|o| {
            matches!((h.started, o.started, o.ended), (Some(h), Some(s), Some(e)) if s < h && h < e)
        })
    });
    assert!(
        during,
        "no healthy run started while another job ran: {healthy:#?}\n{others:#?}"
    );
}

#[test]
fn spinning_and_allocating_jobs_do_not_stop_a_healthy_one() {
    let env = Env::new("hard-spin");
    let file = env.dir.write(
        "schedule.lua",
        r#"
        schedule.cron("healthy", "* * * * * *", function(run) print("tick", run.run) end)
        -- Staggered spinners, each stopped by its timeout; `loop` spins 2.5 s, so two healthy fire times fall
        -- well inside each of its runs: a daemon that ran jobs inline could not start one there.
        schedule.cron("sort", "0/3 * * * * *", function()
          table.sort({3, 2, 1, 5, 4}, function() while true do end end)
        end, { timeout = "1s" })
        schedule.cron("gsub", "1/3 * * * * *", function()
          string.gsub("abc", "%w", function() while true do end end)
        end, { timeout = "1s" })
        schedule.cron("loop", "2/3 * * * * *", function() while true do end end, { timeout = 2.5 })
        schedule.cron("hog", "*/3 * * * * *", function()
          local t, s = {}, "x"
          while true do s = s .. "y" t[#t + 1] = s end
        end, { memory = "32MiB" })
        "#,
    );
    let child = start_daemon(&env, &file);
    wait_for_runs(&env, "sort", 2, Duration::from_secs(30));
    wait_for_runs(&env, "hog", 2, Duration::from_secs(30));
    signal(&child, rustix::process::Signal::TERM);
    let out = wait_within(child, Duration::from_secs(20));
    out.ok();
    assert_on_schedule(&runs(&env, "healthy"), 4);
    let spinners: Vec<RunRecord> = ["sort", "gsub", "loop", "hog"]
        .iter()
        .flat_map(|job| runs(&env, job))
        .collect();
    assert_ran_beside(&runs(&env, "healthy"), &spinners);
    for job in ["sort", "gsub", "loop"] {
        let done: Vec<RunRecord> = runs(&env, job)
            .into_iter()
            .filter(|r| r.outcome == "failed")
            .collect();
        assert!(!done.is_empty(), "{job}: {:#?}", runs(&env, job));
        assert!(
            done.iter()
                .all(|r| r.error.as_deref().unwrap().contains("timed out after")),
            "{job}: {done:#?}"
        );
    }
    let hog = runs(&env, "hog");
    assert!(
        hog.iter().filter(|r| r.outcome == "failed").all(|r| r
            .error
            .as_deref()
            .unwrap()
            .contains("not enough memory")),
        "{hog:#?}"
    );
    assert!(hog.iter().filter(|r| r.outcome == "failed").count() >= 2);
}

#[test]
fn a_job_stuck_in_one_c_call_neither_delays_others_nor_blocks_sigterm() {
    let env = Env::new("hard-find");
    // A pathological pattern: string.find backtracks for ages inside C, where no hook runs.
    let file = env.dir.write(
        "schedule.lua",
        r#"
        schedule.cron("healthy", "* * * * * *", function() end)
        schedule.cron("find", "* * * * * *", function()
          string.find(string.rep("a", 50000), ".-.-.-.-b")
        end)
        "#,
    );
    let child = start_daemon(&env, &file);
    wait_for_runs(&env, "healthy", 4, Duration::from_secs(30));
    assert!(
        runs(&env, "find").iter().any(|r| r.ended.is_none()),
        "find is still running: {:#?}",
        runs(&env, "find")
    );
    signal(&child, rustix::process::Signal::TERM);
    // The grace period is 10 s; the stuck run is then cancelled and the daemon exits.
    let out = wait_within(child, Duration::from_secs(30));
    out.ok();
    assert_on_schedule(&runs(&env, "healthy"), 4);
    let find: Vec<RunRecord> = runs(&env, "find")
        .into_iter()
        .filter(|r| r.outcome != "skipped")
        .collect();
    assert_eq!(find.len(), 1, "{find:#?}");
    assert_eq!(find[0].outcome, "cancelled", "{find:#?}");
}

/// Starts `baton run` on `script`, waits until it created `marker`, then sends SIGINT.
fn interrupt_run(env: &Env, script: &str) -> Out {
    let marker = env.dir.join("started");
    let path = env.dir.write(
        "spin.lua",
        format!(
            "local f = io.open({:?}, 'w') f:close()\n{script}",
            marker.display().to_string()
        ),
    );
    let mut cmd = env.cmd();
    cmd.args(["run", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The marker is written just before the loop: a SIGINT from here on lands in the script, and the
    // cancellation it sets stays until the hook raises inside the loop.
    wait_for("the script to start", Duration::from_secs(30), || {
        marker.exists()
    });
    signal(&child, rustix::process::Signal::INT);
    let out = wait_within(child, Duration::from_secs(10));
    let _ = std::fs::remove_file(marker);
    out
}

#[test]
fn ctrl_c_stops_baton_run_in_a_loop_that_never_waits() {
    let env = Env::new("hard-sigint");
    interrupt_run(&env, "while true do end").expect_code(130);
    interrupt_run(
        &env,
        "local t = baton.spawn(function() while true do end end) t:wait()",
    )
    .expect_code(130);
    interrupt_run(
        &env,
        "table.sort({3, 2, 1, 5, 4}, function() while true do end end)",
    )
    .expect_code(130);
}

#[test]
fn fleet_and_schedule_files_that_never_finish_or_allocate_give_errors() {
    let env = Env::new("hard-fleet").with_fleet("while true do end");
    for args in [&["fleet"][..], &["jobs"], &["schedule", "list"]] {
        let out = env.baton(args);
        out.expect_code(2);
        assert!(
            out.stderr.contains("fleet.lua: did not finish within 5s"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let env = Env::new("hard-fleet-mem")
        .with_fleet("local t, s = {}, 'x' while true do s = s .. 'y' t[#t + 1] = s end");
    let out = env.baton(&["fleet"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("fleet.lua") && out.stderr.contains("not enough memory"),
        "{}",
        out.stderr
    );
    let env = Env::new("hard-schedule");
    env.dir
        .write("config/baton/schedule.lua", "while true do end");
    let out = env.baton(&["schedule", "list"]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr
            .contains("schedule.lua: did not finish within 5s"),
        "{}",
        out.stderr
    );
    let out = env.baton(&["status"]);
    out.ok();
    assert!(
        out.stdout.contains("schedule: timed out after 5s"),
        "{}",
        out.stdout
    );
}

#[test]
fn fleet_limits_set_the_memory_of_every_lua_state() {
    let env = Env::new("hard-limits")
        .with_fleet(r#"return { limits = { memory = "32MiB", job_timeout = "5m" } }"#);
    let out = env.run_lua(
        "hog.lua",
        "local t, s = {}, 'x' while true do s = s .. 'y' t[#t + 1] = s end",
        &[],
    );
    out.expect_code(1);
    assert!(out.stderr.contains("not enough memory"), "{}", out.stderr);
    // Within the limit all is well.
    env.run_lua(
        "fine.lua",
        "local t = {} for i = 1, 1000 do t[i] = i end",
        &[],
    )
    .ok();
    let env = Env::new("hard-limits-bad").with_fleet(r#"return { limits = { memory = "lots" } }"#);
    let out = env.baton(&["fleet"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("limits.memory") && out.stderr.contains("512MiB"),
        "{}",
        out.stderr
    );
}

//! Integration tests (issue 27, item 10): what a new user reads from `spend`, `fleet`, `doctor`,
//! `daemon --install --print` and `schedule run`: one money format, a spend chart with a scale, a way to
//! create a fleet file, a word about a missing schedule file, and manual runs notified as scheduled ones.
use baton::core::state::State;

use crate::common::{Env, TempDir};

/// Adds ledger rows for this month on chosen days (`(day of month, tier, cost)`), then rebuilds the
/// totals the reports read.
fn ledger_days(env: &Env, rows: &[(u32, &str, f64)]) {
    use baton::core::llm::ledger::{Ledger, this_month};
    let state = State::new(env.state_dir());
    let ledger = Ledger::new(state.clone());
    // Creates the schema.
    ledger.rebuild_totals().unwrap();
    let month = this_month();
    state
        .with(|conn| {
            for (day, tier, cost) in rows {
                let day = format!("{month}-{day:02}");
                conn.execute(
                    "INSERT INTO llm_ledger(ts, month, day, script, task, tier, provider, host, model,
                         tokens_in, tokens_out, cost, cost_source, outcome, sent)
                     VALUES (?1, ?2, ?3, 'play.lua', 'lint', ?4, 'test', 'test', 'm', 10, 5, ?5,
                         'provider', 'ok', 1)",
                    rusqlite::params![format!("{day}T12:00:00.000Z"), month, day, tier, cost],
                )?;
            }
            Ok(())
        })
        .unwrap();
    ledger.rebuild_totals().unwrap();
}

#[test]
fn spend_chart_has_a_scale_a_value_per_day_and_marks_free_days() {
    let env = Env::new("cli-spend-chart");
    // Day 1: free calls only; day 2: nothing; day 3: a cent; day 4: a dollar.
    ledger_days(
        &env,
        &[(1, "local", 0.0), (3, "cheap", 0.01), (4, "cheap", 1.0)],
    );
    let out = env.baton(&["spend"]);
    out.ok();
    let month = baton::core::llm::ledger::this_month();
    let text = &out.stdout;
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("cost per day"))
        .unwrap_or_else(|| panic!("no chart: {text}"));
    assert_eq!(
        lines[at],
        format!(
            "cost per day, {month}-01 … {month}-04 (UTC): █ = $0.05, the costliest day $1.00; · = nothing spent"
        ),
        "{text}"
    );
    let day = |n: usize| lines[at + n];
    let cells = |l: &str| l.matches('█').count();
    // A $0 day is a dot, with its value; a day without calls a dot and `-`.
    assert!(day(1).starts_with("01  $0.00  · "), "{text}");
    assert!(day(1).ends_with("local $0.00"), "{text}");
    assert_eq!(day(2), "02      -  ·", "{text}");
    // A small spend is at least one cell, with its value; a dollar is 20 cells of $0.05.
    assert!(day(3).starts_with("03  $0.01  █ "), "{text}");
    assert_eq!(cells(day(3)), 1, "{text}");
    assert!(day(4).starts_with("04  $1.00  ██"), "{text}");
    assert_eq!(cells(day(4)), 20, "{text}");
    assert!(day(4).ends_with("cheap $1.00"), "{text}");
    // One money format in the summary and the table: cents, not `$1.0100` or `$10`.
    assert!(
        text.contains("ledger    $1.01 this state directory"),
        "{text}"
    );
    assert!(text.contains("of $10.00 ("), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cheap") && l.contains(" $1.01")),
        "{text}"
    );
}

#[test]
fn fleet_init_writes_a_starter_that_loads_and_never_overwrites() {
    let env = Env::new("cli-fleet-init");
    let default = env.dir.join("config/baton/fleet.lua");
    // Without a fleet file, `baton fleet` says how to make one; the budget reads in cents.
    let out = env.baton(&["fleet"]);
    out.ok();
    assert!(
        out.stdout.contains("`baton fleet --init` writes a starter"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("budget: $10.00 a month"),
        "{}",
        out.stdout
    );

    let out = env.baton(&["fleet", "--init"]);
    out.ok();
    assert!(
        out.stdout
            .starts_with(&format!("wrote {}\n", default.display())),
        "{}",
        out.stdout
    );
    let written = std::fs::read_to_string(&default).unwrap();
    assert!(written.starts_with("-- "), "commented: {written}");
    // The file is what baton now reads: the built-in fleet written out.
    let out = env.baton(&["fleet"]);
    out.ok();
    assert!(
        out.stdout
            .starts_with(&format!("fleet: {}\n", default.display())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("local  (this machine)  workstation")
            && out.stdout.contains("http://127.0.0.1:11434")
            && out.stdout.contains("budget: $10.00 a month, alert at 80%"),
        "{}",
        out.stdout
    );

    // A second time: refused, the file left as it is.
    std::fs::write(&default, "return {}\n").unwrap();
    let out = env.baton(&["fleet", "--init"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("{} already exists", default.display())),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&default).unwrap(), "return {}\n");

    // Another path: written there (folders created), with how to use it.
    let other = env.dir.join("elsewhere/mine.lua");
    let out = env.baton(&["fleet", "--init", other.to_str().unwrap()]);
    out.ok();
    assert!(
        out.stdout.contains(&format!("--fleet {}", other.display())),
        "{}",
        out.stdout
    );
    let out = env.baton(&["fleet", "--fleet", other.to_str().unwrap()]);
    out.ok();
    assert!(
        out.stdout.contains("budget: $10.00 a month"),
        "{}",
        out.stdout
    );
}

/// `baton doctor --json`'s row for `check`.
fn doctor_row(env: &Env, check: &str) -> serde_json::Value {
    let out = env.baton(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check)
        .cloned()
        .unwrap_or_else(|| panic!("no {check} row: {}", out.stdout))
}

#[test]
fn doctor_on_the_built_in_fleet_says_how_to_create_a_fleet_file() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let down = rt.block_on(crate::llm::server::refused_url());
    let env = Env::new("cli-doctor-builtin").var("OLLAMA_HOST", &down);
    let row = doctor_row(&env, "ollama local");
    assert_eq!(row["status"], "FAIL", "{row}");
    let fix = row["fix"].as_str().unwrap();
    assert!(fix.contains("`baton fleet --init`"), "{fix}");
    assert!(fix.contains("OLLAMA_HOST"), "{fix}");
    assert!(!fix.contains("fix hosts.local.ollama"), "{fix}");
    let budget = doctor_row(&env, "budget");
    assert_eq!(budget["detail"], "$10.00 a month, alert at 80%", "{budget}");

    // With a fleet file, the fix names the setting in that file.
    let env = env.with_fleet(&format!(
        r#"return {{ hosts = {{ ["local"] = {{ ssh = false, ollama = "{down}" }} }} }}"#
    ));
    let fleet = env.fleet.clone().unwrap();
    let row = doctor_row(&env, "ollama local");
    let fix = row["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("fix hosts.local.ollama in {}", fleet.display())),
        "{fix}"
    );
}

#[test]
fn install_print_warns_when_the_schedule_file_is_missing() {
    let env = Env::new("cli-install-missing");
    let file = env.dir.join("config/baton/schedule.lua");
    let out = env.baton(&["daemon", "--install", "--print", "--platform", "linux"]);
    out.ok();
    // Stdout is the unit alone; the warning, on stderr, names the file and how to make it.
    assert!(
        out.stdout
            .starts_with("# Written by `baton daemon --install`.\n[Unit]")
            && !out.stdout.contains("warning"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(&format!(
            "warning: the schedule file {} does not exist yet",
            file.display()
        )) && out.stderr.contains("schedule.cron("),
        "{}",
        out.stderr
    );
    // With the file there, nothing is said.
    env.dir.write(
        "config/baton/schedule.lua",
        "schedule.cron(\"x\", \"0 3 * * *\", function() end)\n",
    );
    let out = env.baton(&["daemon", "--install", "--print", "--platform", "linux"]);
    out.ok();
    assert_eq!(out.stderr, "", "{}", out.stderr);
}

/// A command channel that appends `title|body` (newlines as `~`) to `<dir>/<name>.txt`.
fn recorder(dir: &TempDir, name: &str) -> (String, std::path::PathBuf) {
    let file = dir.join(format!("{name}.txt"));
    let script = dir.write(
        format!("{name}.sh"),
        format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"$BATON_NOTIFY_TITLE\" \"$(printf '%s' \"$BATON_NOTIFY_BODY\" | tr '\\n' '~')\" >>'{}'\n",
            file.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script.display().to_string(), file)
}

#[test]
fn schedule_run_notifies_as_the_daemon_does_unless_quiet() {
    let env = Env::new("cli-sched-run-notify");
    let (cmd, told) = recorder(&env.dir, "told");
    let env = env.with_fleet(&format!(
        r#"return {{ notify = {{ command = {{ "{cmd}" }} }} }}"#
    ));
    let schedule = env.dir.write(
        "schedule.lua",
        r#"
schedule.cron("boom", "0 3 * * *", function() print("about to fail"); error("boom happened") end)
schedule.cron("fine", "0 3 * * *", function() print("all good") end, { notify = "always" })
schedule.cron("plain", "0 3 * * *", function() print("plain") end)
"#,
    );
    let file = schedule.to_str().unwrap();
    let lines = || {
        std::fs::read_to_string(&told)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };

    env.baton(&["schedule", "run", "fine", file]).ok();
    let got = lines();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("baton: job fine succeeded|ok after ") && got[0].ends_with("~~all good"),
        "{got:?}"
    );

    let out = env.baton(&["schedule", "run", "boom", file]);
    out.expect_code(1);
    let got = lines();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[1].starts_with("baton: job boom failed|")
            && got[1].contains("boom happened")
            && got[1].contains("about to fail"),
        "{got:?}"
    );

    // The default policy tells failures only; --quiet tells nothing.
    env.baton(&["schedule", "run", "plain", file]).ok();
    env.baton(&["schedule", "run", "boom", file, "--quiet"])
        .expect_code(1);
    env.baton(&["schedule", "run", "fine", "--quiet", file])
        .ok();
    assert_eq!(lines().len(), 2, "{:?}", lines());
}

//! Integration tests: `baton.notify` to ntfy and webhook stubs, a fake `notify-send` and a command channel;
//! a failing channel beside working ones; scheduled jobs and detached jobs notified by the daemon.
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Env, Out, TempDir, wait_within};
use crate::llm::server::{Reply, Stub, refused_url};
use crate::sshd::SshFleet;

const TOKEN: &str = "tk_ntfy-secret-0123456789";
const HOOK_SECRET: &str = "hook-secret-abcdef123";

/// A directory with a fake `notify-send` that appends its arguments (one per line) to `calls`.
fn fake_notify_send(dir: &TempDir) -> String {
    let calls = dir.join("desktop-calls");
    dir.write(
        "bin/notify-send",
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >>'{}'\n",
            calls.display()
        ),
    );
    let bin = dir.join("bin/notify-send");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A command channel that appends `title|body-first-line|priority|tags|args` to `file`.
fn recorder(dir: &TempDir, name: &str) -> (String, std::path::PathBuf) {
    let file = dir.join(format!("{name}.txt"));
    let script = dir.write(
        format!("{name}.sh"),
        format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s\\n' \"$BATON_NOTIFY_TITLE\" \"$(printf '%s' \"$BATON_NOTIFY_BODY\" | tr '\\n' '~')\" \
             \"$BATON_NOTIFY_PRIORITY\" \"$BATON_NOTIFY_TAGS\" \"$1/$#\" >>'{}'\n",
            file.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script.display().to_string(), file)
}

async fn run_lua(env: Env, script: &str) -> (Env, Out) {
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let out = env.run_lua("play.lua", &script, &[]);
        (env, out)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_receives_the_message() {
    let ntfy = Stub::start(|_, _| Reply::json(200, json!({"id": "x"}))).await;
    let hook = Stub::start(|_, _| Reply::json(204, json!({}))).await;
    let env = Env::new("notify-all");
    let path = fake_notify_send(&env.dir);
    let (cmd, cmd_file) = recorder(&env.dir, "cmd");
    let fleet = format!(
        r#"return {{
  notify = {{
    ntfy = {{ url = "{ntfy}", topic = "alerts", token_env = "NTFY_TOKEN" }},
    webhook = {{ url = "{hook}/hook", headers = {{ ["X-Token"] = "{HOOK_SECRET}" }} }},
    desktop = true,
    command = {{ "{cmd}", "first-arg" }},
  }},
}}"#,
        ntfy = ntfy.url,
        hook = hook.url,
    );
    let env = env
        .with_fleet(&fleet)
        .var("NTFY_TOKEN", TOKEN)
        .var("PATH", &path);
    let (env, out) = run_lua(
        env,
        r#"
local r = baton.notify("Fertig ✓", "GPU job done\nsecond line", {
  priority = "high", tags = {"warning", "gpu"}, click = "https://example.invalid/run/1" })
for _, d in ipairs(r) do print(d.channel, d.ok, d.err) end
"#,
    )
    .await;
    out.ok();
    for ch in ["ntfy", "webhook", "desktop", "command"] {
        assert!(
            out.stdout.contains(&format!("{ch}\ttrue\tnil")),
            "{ch}: {}",
            out.stdout
        );
    }
    // ntfy: POST /topic, body = message, the headers, the bearer token.
    let reqs = ntfy.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/alerts"));
    assert_eq!(r.body, "GPU job done\nsecond line");
    assert_eq!(r.header("Title"), Some("=?UTF-8?Q?Fertig_=E2=9C=93?="));
    assert_eq!(r.header("Priority"), Some("4"));
    assert_eq!(r.header("Tags"), Some("warning,gpu"));
    assert_eq!(r.header("Click"), Some("https://example.invalid/run/1"));
    assert_eq!(
        r.header("Authorization").map(str::to_string),
        Some(format!("Bearer {TOKEN}"))
    );
    // webhook: JSON body with the fleet's headers.
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/hook");
    assert_eq!(reqs[0].header("X-Token"), Some(HOOK_SECRET));
    assert_eq!(
        reqs[0].json(),
        json!({"title": "Fertig ✓", "body": "GPU job done\nsecond line", "priority": "high",
               "tags": ["warning", "gpu"], "click": "https://example.invalid/run/1"})
    );
    // desktop: notify-send with urgency, title and body.
    let calls = std::fs::read_to_string(env.dir.join("desktop-calls")).unwrap();
    assert_eq!(
        calls,
        "-a\nbaton\n-u\nnormal\n--\nFertig ✓\nGPU job done\nsecond line\n"
    );
    // command: env variables, and `--`, title and body appended to its argv.
    let line = std::fs::read_to_string(cmd_file).unwrap();
    assert_eq!(
        line,
        "Fertig ✓|GPU job done~second line|high|warning,gpu|first-arg/4\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_channel_does_not_stop_the_others_and_leaks_no_secret() {
    // The ntfy server echoes the Authorization header back in its error: the token must still not show.
    let ntfy = Stub::start(|req, _| {
        Reply::json(
            403,
            json!({"error": format!("forbidden for {}", req.header("Authorization").unwrap_or(""))}),
        )
    })
    .await;
    let dead = refused_url().await;
    let env = Env::new("notify-fail");
    let (cmd, cmd_file) = recorder(&env.dir, "cmd");
    let fleet = format!(
        r#"return {{ notify = {{
    ntfy = {{ url = "{ntfy}", topic = "alerts", token_env = "NTFY_TOKEN" }},
    webhook = {{ url = "{dead}/hook", headers = {{ Authorization = "Bearer {HOOK_SECRET}" }} }},
    command = {{ "{cmd}" }},
}} }}"#,
        ntfy = ntfy.url,
    );
    let env = env.with_fleet(&fleet).var("NTFY_TOKEN", TOKEN);
    let (env, out) = run_lua(
        env,
        r#"
local r = baton.notify("t", "b")
for _, d in ipairs(r) do print(d.channel, d.ok, d.err) end
local ok, err = pcall(baton.notify, "t2", "b2", { check = true })
print("check:", ok, err)
local ok2, err2 = pcall(baton.notify, "t3", "b3", { to = { "desktop" } })
print("to:", ok2, err2)
"#,
    )
    .await;
    out.ok();
    assert!(out.stdout.contains("command\ttrue\tnil"), "{}", out.stdout);
    assert!(
        out.stdout.contains("ntfy\tfalse\tPOST http://127.0.0.1:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("HTTP 403"), "{}", out.stdout);
    assert!(
        out.stdout.contains("webhook\tfalse\tPOST"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("check:\tfalse\t") && out.stdout.contains("baton.notify: ntfy: POST"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("channel \"desktop\" is not configured"),
        "{}",
        out.stdout
    );
    // The working channel got both messages despite the failures.
    let lines = std::fs::read_to_string(cmd_file).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains(HOOK_SECRET), "webhook header leaked: {text}");
    }
    drop(env);
}

#[test]
fn notify_without_channels_warns_and_misuse_raises() {
    let env = Env::new("notify-none");
    let out = env.run_lua(
        "n.lua",
        r#"
print(#baton.notify("t", "b"))
print(pcall(baton.notify, "t", "b", { check = true }))
print(pcall(baton.notify, "t", "b", { priority = "loud" }))
print(pcall(baton.notify, 5))
"#,
        &[],
    );
    out.ok();
    assert!(out.stdout.starts_with("0\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("no notification channel is configured"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("baton.notify: options.priority: expected min, low, default, high, urgent or 1-5, got \"loud\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("baton.notify: argument 1 (title) must be a string, got number 5"),
        "{}",
        out.stdout
    );
}

#[test]
fn fleet_notify_and_wake_settings_are_validated() {
    for (fleet, want) in [
        (
            r#"return { notify = { ntfy = { topic = "a b" } } }"#,
            "notify.ntfy.topic: expected letters, digits",
        ),
        (
            r#"return { notify = { webhook = { url = "ftp://x" } } }"#,
            "notify.webhook.url: expected an http:// or https:// URL",
        ),
        (
            r#"return { notify = { desktp = true } }"#,
            "notify.desktp: unknown key, did you mean desktop?",
        ),
        (
            r#"return { hosts = { pc = { mac = "aa:bb:cc:dd:ee" } } }"#,
            "hosts.pc.mac: expected a MAC address",
        ),
        (
            r#"return { hosts = { pc = { mac = "aa:bb:cc:dd:ee:ff", wake = { via = "servr" } }, server = {} } }"#,
            "hosts.pc.wake.via: unknown host \"servr\", did you mean server?",
        ),
        (
            r#"return { hosts = { pc = { mac = "aa:bb:cc:dd:ee:ff", wake = { broadcast = "192.168.1" } } } }"#,
            "hosts.pc.wake.broadcast: expected an IPv4 address",
        ),
        (
            r#"return { hosts = { pc = { wake = { port = 9 } } } }"#,
            "hosts.pc.wake: needs `mac`",
        ),
        (
            r#"return { hosts = { pc = { syncthing = { url = "localhost:8384" } } } }"#,
            "hosts.pc.syncthing.url: expected an http:// or https:// URL",
        ),
    ] {
        let env = Env::new("notify-fleet").with_fleet(fleet);
        let out = env.baton(&["fleet"]);
        assert_eq!(out.code, Some(2), "{fleet}: {out:?}");
        assert!(out.stderr.contains(want), "{fleet}: {}", out.stderr);
    }
}

fn start_daemon(env: &Env, file: &Path) -> Child {
    let mut cmd = env.cmd();
    cmd.args(["daemon", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("start baton daemon")
}

fn stop(child: Child) -> Out {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    wait_within(child, Duration::from_secs(20))
}

/// Waits (at most `limit`) until `file` holds `n` lines; returns its text.
fn wait_lines(file: &Path, n: usize, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_daemon_notifies_scheduled_runs_by_policy() {
    let env = Env::new("notify-sched");
    let (cmd, file) = recorder(&env.dir, "cmd");
    let env = env.with_fleet(&format!(
        r#"return {{ notify = {{ command = {{ "{cmd}" }} }} }}"#
    ));
    let schedule = env.dir.write(
        "schedule.lua",
        r#"
schedule.cron("boom", "*/1 * * * * *", function() print("about to fail"); error("boom happened") end)
schedule.cron("fine", "*/1 * * * * *", function() print("all good") end, { notify = "always" })
schedule.cron("quiet", "*/1 * * * * *", function() print("quiet") end)
schedule.cron("muted", "*/1 * * * * *", function() error("muted failure") end, { notify = "never" })
"#,
    );
    let child = start_daemon(&env, &schedule);
    let text = wait_lines(&file, 4, Duration::from_secs(20));
    let out = stop(child);
    out.ok();
    let boom = text
        .lines()
        .find(|l| l.starts_with("baton: job boom failed|"))
        .unwrap_or_else(|| panic!("no failure notification: {text}\n{}", out.stderr));
    // The title says it failed; the body starts with why, without a second "failed".
    assert!(!boom.contains("failed|failed"), "{boom}");
    assert!(boom.contains("boom happened"), "{boom}");
    assert!(boom.contains("about to fail"), "the log tail: {boom}");
    assert!(boom.contains("|high|x|"), "{boom}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("baton: job fine succeeded|ok after ")
                && l.ends_with("~~all good|default|white_check_mark|--/3")),
        "{text}"
    );
    assert!(
        !text.contains("quiet"),
        "ok runs of a default job are not told: {text}"
    );
    assert!(!text.contains("muted"), "notify = never: {text}");
}

#[test]
fn the_daemon_notifies_when_a_detached_job_ends() {
    let fleet = SshFleet::start(1);
    let env = Env::new("notify-job");
    let (cmd, file) = recorder(&env.dir, "cmd");
    let env = env.with_fleet(&format!(
        r#"return {{ ssh_config = {:?}, hosts = {{ h0 = {{}} }},
  notify = {{ command = {{ "{cmd}" }}, job_poll = "200ms" }} }}"#,
        fleet.ssh_config.display()
    ));
    let out = env.run_lua(
        "spawn.lua",
        r#"
local j = ssh.spawn("h0", "echo hello; sleep 1; echo world; exit 3", { notify = true })
local plain = ssh.spawn("h0", "exit 0")
assert(j.notify and not plain.notify)
print(j.id)
"#,
        &[],
    );
    out.ok();
    let id = out.stdout.trim().to_string();
    let schedule = env.dir.write(
        "schedule.lua",
        r#"schedule.cron("yearly", "0 0 1 1 *", function() end)"#,
    );
    let child = start_daemon(&env, &schedule);
    let text = wait_lines(&file, 1, Duration::from_secs(30));
    // The end is told once: a job spawned only now ends many polls later, and its notification is the
    // event to wait for; by then the first job has been looked at again and again.
    let later = env.run_lua(
        "later.lua",
        r#"print(ssh.spawn("h0", "exit 5", { notify = true }).id)"#,
        &[],
    );
    later.ok();
    let later = later.stdout.trim().to_string();
    let text2 = wait_lines(&file, 2, Duration::from_secs(30));
    let out = stop(child);
    out.ok();
    assert!(
        text2
            .lines()
            .any(|l| l.starts_with(&format!("baton: job {later} on h0 failed|"))),
        "the later job was not told: {text2}\n{}",
        out.stderr
    );
    assert_eq!(
        text2.lines().count(),
        2,
        "told once: {text2}\n{}",
        out.stderr
    );
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no notification: {}", out.stderr));
    assert!(
        line.starts_with(&format!(
            "baton: job {id} on h0 failed|$ echo hello; sleep 1; echo world; exit 3~exit 3 after "
        )),
        "{line}"
    );
    assert!(line.contains("~~hello~world|high|x|"), "{line}");
}

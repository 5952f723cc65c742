//! Integration tests: detached jobs inside tmux on an sshd test host, and `baton jobs attach`.
use crate::common::{Env, sh_wait_file};
use crate::sshd::{SshFleet, require};

fn env_for(fleet: &SshFleet, name: &str) -> Env {
    Env::new(name).with_fleet(&format!(
        r#"return {{ ssh_config = {:?}, hosts = {{ h0 = {{}} }} }}"#,
        fleet.ssh_config.display()
    ))
}

#[test]
fn a_tmux_job_runs_in_its_session_logs_and_records_its_exit() {
    require("tmux");
    let fleet = SshFleet::start(1);
    let env = env_for(&fleet, "tmux-job");
    let go = env.dir.join("go");
    let out = env.run_lua(
        "t.lua",
        &r#"
local j = ssh.spawn("h0", "echo live; GATE; echo done; exit 4", { tmux = true })
assert(j.tmux == "baton-" .. j.id, tostring(j.tmux))
local has = ssh.run("h0", { "tmux", "has-session", "-t", j.tmux }, { check = false })
print("session", has.code)
io.open(GO, "w"):close() -- the job holds until the session was seen
local lines = {}
local s = j:wait({ poll = "100ms", on_line = function(_, l) lines[#lines + 1] = l end })
print("exit", s.state, s.code)
print("log", table.concat(lines, ","))
print("id", j.id)
-- The session closes just after the exit is recorded: look until it is gone (or give up after ~20 s).
local gone
for _ = 1, 200 do
  gone = ssh.run("h0", { "tmux", "has-session", "-t", j.tmux }, { check = false })
  if gone.code ~= 0 then break end
  baton.sleep(0.1)
end
print("after", gone.code ~= 0)
print(pcall(ssh.spawn, "h0", "true", { tmux = true, env = { PATH = "/nonexistent" } }))
"#
        .replace("GATE", &sh_wait_file(&go))
        .replace("GO", &format!("{go:?}")),
        &[],
    );
    out.ok();
    assert!(out.stdout.contains("session\t0\n"), "{}", out.stdout);
    assert!(out.stdout.contains("exit\texited\t4\n"), "{}", out.stdout);
    assert!(out.stdout.contains("log\tlive,done\n"), "{}", out.stdout);
    assert!(out.stdout.contains("after\ttrue\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("ssh.spawn(h0): tmux is not installed on host h0"),
        "{}",
        out.stdout
    );
    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("id\t"))
        .unwrap()
        .to_string();
    // `baton jobs --json` lists it, as JSON.
    let listed = env.baton(&["jobs", "--json"]);
    listed.ok();
    let jobs: serde_json::Value =
        serde_json::from_str(&listed.stdout).expect("jobs --json is JSON");
    let job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap_or_else(|| panic!("job {id} not in {jobs}"));
    assert_eq!(
        (job["host"].as_str(), job["tmux"].as_bool()),
        (Some("h0"), Some(true)),
        "{job}"
    );
    // The attach command, printed instead of run (no terminal here).
    let attach = env.baton(&["jobs", "attach", &id, "--print"]);
    attach.ok();
    assert_eq!(
        attach.stdout,
        format!(
            "ssh -t -F {} -- h0 tmux attach-session -t baton-{id}\n",
            fleet.ssh_config.display()
        )
    );
}

#[test]
fn attach_refuses_a_job_without_tmux() {
    let fleet = SshFleet::start(1);
    let env = env_for(&fleet, "tmux-none");
    let out = env.run_lua("t.lua", r#"print(ssh.spawn("h0", "true").id)"#, &[]);
    out.ok();
    let id = out.stdout.trim();
    let attach = env.baton(&["jobs", "attach", id, "--print"]);
    assert_eq!(attach.code, Some(1), "{attach:?}");
    assert!(
        attach.stderr.contains("was not started with tmux = true"),
        "{}",
        attach.stderr
    );
    let missing = env.baton(&["jobs", "attach", "nope", "--print"]);
    assert!(
        missing.stderr.contains("no job with id \"nope\""),
        "{}",
        missing.stderr
    );
}

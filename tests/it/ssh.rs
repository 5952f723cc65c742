//! Integration tests: ssh against real sshd processes (see `sshd.rs`).
use std::sync::Arc;
use std::time::Duration;

use baton::core::fleet::Fleet;
use baton::core::process::{Cmd, Spec, Stream};
use baton::core::remote::{Remote, RemoteError, jobs};

use crate::common::{TempDir, sh_wait_file, wait_for};
use crate::sshd::SshFleet;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The core service over the harness's hosts (`extra` adds host entries, e.g. `{"bad": {"ssh": "x"}}`).
fn remote(fleet: &SshFleet, extra: serde_json::Value) -> Remote {
    let mut hosts = serde_json::Map::new();
    for name in fleet.names() {
        hosts.insert(name, serde_json::json!({}));
    }
    if let serde_json::Value::Object(more) = extra {
        hosts.extend(more);
    }
    let value = serde_json::json!({"ssh_config": fleet.ssh_config, "hosts": hosts});
    Remote::new(Arc::new(Fleet::from_deserializer(value).unwrap()))
}

fn sh(s: &str) -> Cmd {
    Cmd::Shell(s.to_string())
}

#[test]
fn exit_codes_streams_and_large_output() {
    let fleet = SshFleet::start(1);
    rt().block_on(async {
        let r = remote(&fleet, serde_json::json!({}));
        let out = r
            .run(
                "h0",
                &sh("echo out; echo err >&2; exit 3"),
                &Spec::default(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            (out.code, out.stdout.as_slice(), out.stderr.as_slice()),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
        assert_eq!(out.failure_summary(), "exit 3: err");
        let out = r
            .run("h0", &sh("exit 255"), &Spec::default(), None)
            .await
            .unwrap();
        assert_eq!(
            out.code,
            Some(255),
            "a real exit 255 is a result, not a lost connection"
        );
        let out = r
            .run("h0", &sh("nosuchcommand-xyz"), &Spec::default(), None)
            .await
            .unwrap();
        assert_eq!(out.code, Some(127));
        // 10 MB of output arrives intact.
        let out = r
            .run(
                "h0",
                &sh("head -c 10485760 /dev/zero | tr '\\0' 'x'"),
                &Spec::default(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout.len(), 10 * 1024 * 1024);
        assert!(out.stdout.iter().all(|b| *b == b'x'));
        r.close().await;
    });
}

#[test]
fn stdin_env_cwd_and_hostile_argv() {
    let fleet = SshFleet::start(1);
    let home = fleet.hosts[0].home.clone();
    rt().block_on(async {
        let r = remote(&fleet, serde_json::json!({}));
        let spec = Spec {
            stdin: Some(b"line one\nline two\n".to_vec()),
            ..Spec::default()
        };
        let out = r.run("h0", &sh("wc -l"), &spec, None).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
        std::fs::create_dir_all(home.join("my dir")).unwrap();
        let spec = Spec {
            env: vec![("GREETING".into(), "hello 'world' $(id)".into())],
            cwd: Some("~/my dir".into()),
            ..Spec::default()
        };
        let out = r
            .run(
                "h0",
                &sh("printf '%s|%s' \"$GREETING\" \"$(pwd)\""),
                &spec,
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("hello 'world' $(id)|{}", home.join("my dir").display())
        );
        let canary = home.join("canary");
        std::fs::write(&canary, "x").unwrap();
        let hostile = [
            "; rm -rf ~/canary".to_string(),
            "'; rm -rf ~/canary; '".to_string(),
            "\"$(rm -rf ~/canary)\"".to_string(),
            "`rm -rf ~/canary`".to_string(),
            "a\nrm -rf ~/canary".to_string(),
            "$HOME && echo pwned".to_string(),
            String::new(),
            "back\\slash *".to_string(),
        ];
        let mut argv = vec!["printf".to_string(), "<%s>".to_string()];
        argv.extend(hostile.iter().cloned());
        let out = r
            .run("h0", &Cmd::Argv(argv), &Spec::default(), None)
            .await
            .unwrap();
        let expected: String = hostile.iter().map(|a| format!("<{a}>")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
        assert!(canary.exists(), "a hostile argument ran shell syntax");
        r.close().await;
    });
}

#[test]
fn live_lines_arrive_in_order() {
    let fleet = SshFleet::start(1);
    rt().block_on(async {
        let r = Arc::new(remote(&fleet, serde_json::json!({})));
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        // After each pair of lines the command waits for a file that the test creates only once it has
        // received that pair: the run can only finish if its lines arrive while it runs.
        let gates = TempDir::new("ssh-live");
        let script: String = (1..=3)
            .map(|i| {
                format!(
                    "echo out{i}; echo err{i} >&2; {}; ",
                    sh_wait_file(&gates.join(i.to_string()))
                )
            })
            .collect();
        let r2 = r.clone();
        let run =
            tokio::spawn(
                async move { r2.run("h0", &sh(&script), &Spec::default(), Some(tx)).await },
            );
        let mut seen = Vec::new();
        loop {
            let item = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no further line (not live?) after {seen:?}"));
            let Some(item) = item else { break };
            seen.push(item);
            let n = seen.len();
            if n % 2 == 0 {
                std::fs::write(gates.join((n / 2).to_string()), "").unwrap();
            }
        }
        let out = run.await.unwrap().unwrap();
        assert!(out.ok());
        let outs: Vec<_> = seen
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.as_str())
            .collect();
        let errs: Vec<_> = seen
            .iter()
            .filter(|(s, _)| *s == Stream::Stderr)
            .map(|(_, l)| l.as_str())
            .collect();
        assert_eq!(outs, ["out1", "out2", "out3"]);
        assert_eq!(
            errs,
            ["err1", "err2", "err3"],
            "the pid prologue line must not leak into stderr"
        );
        let pos = |l: &str| seen.iter().position(|(_, x)| x == l).unwrap();
        assert!(
            pos("out1") < pos("out2") && pos("err1") < pos("out2") && pos("out2") < pos("err3")
        );
        r.close().await;
    });
}

fn remote_processes(pattern: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-af", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until no process matches `pattern` (killed processes take a moment to go): the remote command
/// did not survive its timeout or kill.
#[track_caller]
fn wait_gone(pattern: &str) {
    wait_for(
        &format!("no process matching {pattern:?} (the remote command survived)"),
        Duration::from_secs(30),
        || remote_processes(pattern).is_empty(),
    );
}

#[test]
fn timeout_kills_the_remote_command() {
    let fleet = SshFleet::start(1);
    rt().block_on(async {
        let r = remote(&fleet, serde_json::json!({}));
        // Connected first, so the timeout is the command's alone; 3 s leaves a loaded machine time to start
        // the shell and print "before" (the command would run for 4712 s).
        r.run("h0", &sh("true"), &Spec::default(), None)
            .await
            .unwrap();
        let spec = Spec {
            timeout: Some(Duration::from_secs(3)),
            ..Spec::default()
        };
        // The outer limit only turns a hang into a failure.
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            r.run(
                "h0",
                &sh("echo before; sleep 4711 & sleep 4712; echo after"),
                &spec,
                None,
            ),
        )
        .await
        .expect("the run ended at its timeout")
        .unwrap();
        assert_eq!(out.code, Some(124));
        assert_eq!(out.stdout, b"before\n");
        assert!(out.failure_summary().starts_with("timed out after 3s"));
        // The kill runs on this runtime: wait without blocking it.
        for _ in 0..1500 {
            if remote_processes("sleep 471[12]").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            remote_processes("sleep 471[12]"),
            "",
            "the remote command survived its timeout"
        );
        r.close().await;
    });
}

#[test]
fn fifty_concurrent_runs_share_one_master() {
    let fleet = SshFleet::start(1);
    rt().block_on(async {
        let r = Arc::new(remote(&fleet, serde_json::json!({})));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move {
                    r.run(
                        "h0",
                        &sh(&format!("sleep 0.2; echo {i}")),
                        &Spec::default(),
                        None,
                    )
                    .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let out = t.await.unwrap().unwrap_or_else(|e| panic!("run {i}: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                i.to_string(),
                "run {i}: {}",
                out.failure_summary()
            );
        }
        // One master: sshd saw one authenticated connection.
        let log = std::fs::read_to_string(fleet.hosts[0].dir.join("sshd.log")).unwrap_or_default();
        assert!(log.matches("Accepted publickey").count() <= 1, "{log}");
        r.close().await;
    });
}

#[test]
fn connection_errors_name_the_cause() {
    let mut fleet = SshFleet::start(2);
    // h1's known_hosts entry gets h0's key: a host key mismatch.
    fleet.give_host_key_of_h0("h1");
    fleet.stop_host(0);
    rt().block_on(async {
        let r = remote(
            &fleet,
            serde_json::json!({"nowhere": {"ssh": "nosuchhost.invalid"}}),
        );
        let e = r
            .run("h1", &sh("true"), &Spec::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::HostKeyMismatch(_)), "{e}");
        assert!(e.to_string().contains("host key mismatch"), "{e}");
        let e = r
            .run("h0", &sh("true"), &Spec::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::Refused(_)), "{e}");
        // Callers queued behind a failed connect share its error instead of each retrying.
        let (cmd, spec) = (sh("true"), Spec::default());
        let runs = (0..20).map(|_| r.run("h0", &cmd, &spec, None));
        for e in futures_util::future::join_all(runs).await {
            assert!(matches!(e, Err(RemoteError::Refused(_))), "{e:?}");
        }
        let e = r
            .run("nowhere", &sh("true"), &Spec::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::Resolve(_)), "{e}");
        let e = r
            .run("h2", &sh("true"), &Spec::default(), None)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "unknown fleet host \"h2\", did you mean h0?");
        assert!(!r.online("h1", Duration::from_secs(3)).await.unwrap());
    });
    // A wrong user key is an authentication failure.
    let fleet = SshFleet::start(1);
    std::fs::write(fleet.dir.join("authorized_keys"), "").unwrap();
    rt().block_on(async {
        let r = remote(&fleet, serde_json::json!({}));
        let e = r
            .run("h0", &sh("true"), &Spec::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::Auth(_)), "{e}");
    });
}

#[test]
fn wait_online_waits_for_a_late_sshd() {
    let mut fleet = SshFleet::prepare(1);
    let runtime = rt();
    let r = Arc::new(remote(&fleet, serde_json::json!({})));
    let r2 = r.clone();
    assert!(
        !runtime
            .block_on(r.online("h0", Duration::from_secs(2)))
            .unwrap()
    );
    let waiter = runtime.spawn(async move {
        r2.wait_online("h0", Duration::from_secs(60), Duration::from_millis(250))
            .await
    });
    // Let it poll the dead port a few times (how many does not matter: it must still be waiting).
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !waiter.is_finished(),
        "wait_online ended while the host was down"
    );
    fleet.start_host(0);
    runtime.block_on(waiter).unwrap().unwrap();
    runtime.block_on(async {
        // A bound on the check, not a window: generous for a loaded machine.
        assert!(r.online("h0", Duration::from_secs(30)).await.unwrap());
        fleet.stop_host(0);
        let e = r
            .wait_online("h0", Duration::from_secs(1), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("not online after 1s: "), "{e}");
        r.close().await;
    });
}

// ---- Lua level: the `ssh` global through the real `baton` binary ----

use crate::common::{Env, Out};

fn lua_env(fleet: &SshFleet, name: &str) -> Env {
    Env::new(name).with_fleet(&fleet.fleet_lua())
}

fn lua(env: &Env, script: &str) -> Out {
    env.run_lua("t.lua", script, &[])
}

#[test]
fn lua_run_results_streams_and_errors() {
    let fleet = SshFleet::start(1);
    let env = lua_env(&fleet, "ssh-run");
    std::fs::create_dir_all(fleet.hosts[0].home.join("work dir")).unwrap();
    let gates = TempDir::new("ssh-run-gates");
    let out = lua(
        &env,
        &r#"
        local r = ssh.run("h0", "echo out; echo err >&2; exit 3", {check = false})
        print(r.ok, r.code, r.stdout, r.stderr, r.host, r.err, type(r.duration))
        local ok, e = pcall(ssh.run, "h0", "echo boom >&2; exit 2")
        print(e)
        local big = ssh.run("h0", "head -c 10485760 /dev/zero | tr '\\0' y")
        print(#big.stdout, big.stdout:sub(1, 3))
        local r = ssh.run("h0", "cat; printf '%s|%s' \"$A\" \"$(pwd)\"", {stdin = "in\n", env = {A = "x y"}, cwd = "~/work dir"})
        print(r.stdout)
        local hostile = {"; touch ~/pwned", "'; touch ~/pwned; '", "$(touch ~/pwned)", "`touch ~/pwned`", "a\ntouch ~/pwned", ""}
        local r = ssh.run("h0", {"printf", "<%s>", table.unpack(hostile)})
        print(r.stdout == "<" .. table.concat(hostile, "><") .. ">")
        local lines = {}
        -- Each line's arrival releases the next: a defined order across the two streams, however loaded.
        ssh.run("h0", "echo a; GATE_a; echo b >&2; GATE_b; echo c", {on_line = function(s, l)
          lines[#lines + 1] = s .. ":" .. l
          io.open(GATES .. l, "w"):close()
        end})
        print(table.concat(lines, ","))
        print(ssh.run("local", {"echo", "here"}).stdout)
        print(select(2, pcall(ssh.run, "h1", "true")))
        print(select(2, pcall(ssh.run, "h0", nil)))
        print(select(2, pcall(ssh.run, "h0", "true", {tmeout = 1})))
        "#
        .replace("GATE_a", &sh_wait_file(&gates.join("a")))
        .replace("GATE_b", &sh_wait_file(&gates.join("b")))
        .replace("GATES", &format!("{:?}", format!("{}/", gates.path().display()))),
    );
    out.ok();
    let home = fleet.hosts[0].home.display().to_string();
    let expected = [
        "false\t3\tout\n\terr\n\th0\texit 3: err\tnumber".to_string(),
        "ssh.run(h0): exit 2: boom".into(),
        "10485760\tyyy".into(),
        format!("in\nx y|{home}/work dir"),
        "true".into(),
        "stdout:a,stderr:b,stdout:c".into(),
        "here\n".into(),
        "ssh.run(h1): unknown fleet host \"h1\", did you mean h0?".into(),
        "ssh.run: argument 2 (cmd) must be a string or a list of strings, got nil".into(),
        "ssh.run: options.tmeout: unknown key, did you mean timeout?".into(),
    ];
    assert_eq!(
        out.stdout,
        expected.join("\n") + "\n",
        "stderr: {}",
        out.stderr
    );
    assert!(
        !fleet.hosts[0].home.join("pwned").exists(),
        "a hostile argument ran shell syntax"
    );
}

/// A streamed line over the default bound (16 MiB) stops the command on the host and here, and is an
/// error naming the line and the bound: no hang, no unbounded buffer. The line is 200 MB (endless as far
/// as the bound goes, yet a regression cannot exhaust the machine), and the command sleeps after it, so
/// only a kill ends it before the timeout.
#[test]
fn an_endless_line_stops_the_command() {
    let fleet = SshFleet::start(1);
    let env = lua_env(&fleet, "ssh-endless");
    let out = lua(
        &env,
        r#"
        for _, host in ipairs({ "h0", "local" }) do
          local seen = {}
          local ok, e = pcall(ssh.run, host, "echo first; yes endless4761 | tr -d '\n' | head -c 200000000; sleep 4761",
            { timeout = "30s", on_line = function(_, l) seen[#seen + 1] = l end })
          print(ok, e, table.concat(seen, ","))
        end
        "#,
    );
    out.ok();
    let bound = "stdout line 2 is longer than 16 MiB, the bound on one line of output: the command was stopped";
    assert_eq!(
        out.stdout,
        format!("false\tssh.run(h0): {bound}\tfirst\nfalse\tssh.run(local): {bound}\tfirst\n"),
        "{}",
        out.stderr
    );
    wait_gone("endless476[1]");
    wait_gone("sleep 476[1]");
}

#[test]
fn lua_timeout_kills_remote_process() {
    let fleet = SshFleet::start(1);
    let env = lua_env(&fleet, "ssh-timeout");
    let out = lua(
        &env,
        r#"
        local r = ssh.run("h0", "echo started; sleep 4731", {timeout = "3s", check = false})
        print(r.code, r.stdout, r.err)
        print(select(2, pcall(ssh.run, "h0", "sleep 4732", {timeout = 0.5})))
        -- A run abandoned from outside (its coroutine cancelled) is killed on the host too.
        print(select(2, pcall(baton.timeout, 0.5, function() ssh.run("h0", "sleep 4733") end)))
        "#,
    );
    out.ok();
    assert_eq!(
        out.stdout,
        "124\tstarted\n\ttimed out after 3s: \nssh.run(h0): timed out after 500ms\ntimed out after 500ms\n"
            .replace(": \n", "\n")
    );
    wait_gone("sleep 473[123]");
}

#[test]
fn lua_fifty_coroutines_over_one_master() {
    let fleet = SshFleet::start(1);
    let env = lua_env(&fleet, "ssh-fifty");
    let out = lua(
        &env,
        r#"
        local fns = {}
        for i = 1, 50 do
          fns[i] = function() return ssh.run("h0", {"sh", "-c", "sleep 0.3; echo $1", "x", tostring(i)}).stdout end
        end
        local t0 = baton.now and baton.now() or os.time()
        local res = baton.gather(fns)
        local ok = 0
        for i = 1, 50 do if res[i] == i .. "\n" then ok = ok + 1 end end
        print(ok)
        "#,
    );
    out.ok();
    assert_eq!(out.stdout, "50\n", "{}", out.stderr);
    let log = std::fs::read_to_string(fleet.hosts[0].dir.join("sshd.log")).unwrap_or_default();
    assert!(!log.contains("refused"), "{log}");
}

/// Reads the first line a running `baton` prints.
fn first_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.as_mut().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

#[test]
fn lua_job_survives_script_kill_and_reattaches() {
    let fleet = SshFleet::start(1);
    let env = lua_env(&fleet, "ssh-job");
    // The job holds between its two lines until the second script has seen it running.
    let go = env.dir.join("go");
    let script = env.dir.write(
        "spawn.lua",
        r#"
        local job = ssh.spawn("h0", "echo one; GATE; echo two >&2; exit 7", {env = {X = "1"}})
        print(job.id)
        io.stdout:flush()
        baton.sleep(60)
        "#
        .replace("GATE", &sh_wait_file(&go)),
    );
    let mut cmd = env.cmd();
    cmd.arg("run")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let id = first_line(&mut child);
    assert!(!id.is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let out = lua(
        &env,
        &format!(
            r#"
            local job = ssh.job("{id}")
            print(job:status().state)
            io.open({go:?}, "w"):close()
            local lines = {{}}
            local st = job:wait{{poll = "200ms", timeout = "20s", on_line = function(_, l) lines[#lines + 1] = l end}}
            print(st.state, st.code, table.concat(lines, ","))
            print(tostring(job):find("job {id} on h0 (exited 7)", 1, true) == 1, job.log:sub(-#"/.baton/jobs/{id}/log") == "/.baton/jobs/{id}/log")
            print(table.concat(job:tail(1), ","))
            "#
        ),
    );
    out.ok();
    assert_eq!(
        out.stdout, "running\nexited\t7\tone,two\ntrue\ttrue\ntwo\n",
        "{}",
        out.stderr
    );
    let listed =
        baton::core::remote::jobs::list(&baton::core::state::State::new(env.state_dir())).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status.code, Some(7));
}

/// `job:wait` reads a job's log a few MiB at a time: a log longer than one read (about 6.9 MB) arrives
/// whole and in order, no line cut at a read's edge; a line over the bound stops the job and raises.
#[test]
fn a_long_job_log_is_read_in_pieces_and_a_long_line_stops_the_job() {
    let fleet = SshFleet::start(1);
    let env = lua_env(&fleet, "ssh-job-log");
    let out = lua(
        &env,
        r#"
        local job = ssh.spawn("h0", "seq 1 1000000")
        local n, bad = 0, 0
        local st = job:wait({ poll = "100ms", timeout = "60s", on_line = function(_, l)
          n = n + 1
          if tonumber(l) ~= n then bad = bad + 1 end
        end })
        print(st.state, st.code, n, bad)
        local long = ssh.spawn("h0", [[head -c 20000000 /dev/zero | tr '\0' x; sleep 4771]])
        print(select(2, pcall(long.wait, long, { poll = "100ms", timeout = "60s", on_line = function() end })))
        print(long:status().state)
        "#,
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(lines[0], "exited\t0\t1000000\t0");
    assert!(
        lines[1].starts_with("job:wait(")
            && lines[1].ends_with(
                " on h0): stdout line 1 is longer than 16 MiB, the bound on one line of output: the \
                 command was stopped"
            ),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "exited");
    wait_gone("sleep 477[1]");
}

#[test]
fn lua_job_lost_and_killed() {
    let fleet = SshFleet::start(1);
    let env = lua_env(&fleet, "ssh-lost");
    let out = lua(
        &env,
        r#"
        local a = ssh.spawn("h0", "sleep 4741")
        local b = ssh.spawn("h0", "sleep 4742")
        print(a.pid, b.id)
        local st = b:kill()
        print(st.state, st.code)
        "#,
    );
    out.ok();
    let (pid, id) = out
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_once('\t')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    assert_eq!(
        out.stdout.lines().nth(1),
        Some("exited\t143"),
        "{}",
        out.stderr
    );
    wait_gone("sleep 4742");
    // Simulate a reboot for job a: its runner and command vanish without an exit record.
    let pgid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgid: i32 = pgid
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let group = rustix::process::Pid::from_raw(pgid).expect("a job runner's process group");
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    // Gone (or a zombie nobody reaped yet): no longer running either way.
    wait_for("job a's runner to die", Duration::from_secs(30), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
            st.rsplit_once(')').unwrap().1.trim_start().starts_with('Z')
        })
    });
    wait_gone("sleep 4741");
    // What `baton jobs` shows: running jobs re-read from their hosts.
    let state = baton::core::state::State::new(env.state_dir());
    let r = remote(&fleet, serde_json::json!({}));
    let jobs = rt()
        .block_on(jobs::refresh(&r, &state, Duration::from_secs(5)))
        .unwrap();
    let a_id = jobs.iter().find(|j| j.id != id).unwrap().id.clone();
    let out = lua(
        &env,
        &format!(
            r#"local j = ssh.job("{a_id}") print(j:status().state, tostring(j):find("(lost)", 1, true) ~= nil)"#
        ),
    );
    out.ok();
    assert_eq!(out.stdout, "lost\ttrue\n", "{}", out.stderr);
    let table = baton::cli::jobs::table(&jobs, chrono::Utc::now().timestamp());
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&a_id) && l.contains(" lost ") && l.ends_with("sleep 4741")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains(" exited 143 ")),
        "{table}"
    );
    assert_eq!(jobs::prune(&state).unwrap(), 2);
    assert!(jobs::list(&state).unwrap().is_empty());
    let out = lua(
        &env,
        &format!(
            r#"print(select(2, pcall(ssh.job, "{a_id}"))) print(select(2, pcall(ssh.job, "nope")))"#
        ),
    );
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "ssh.job: no job with id \"{a_id}\" (see `baton jobs`)\nssh.job: no job with id \"nope\" (see `baton jobs`)\n"
        )
    );
}

#[test]
fn lua_wait_online_each_and_host_key_mismatch() {
    let mut fleet = SshFleet::prepare(3);
    fleet.start_host(0);
    fleet.start_host(1);
    // h2's known_hosts entry gets h0's key.
    fleet.give_host_key_of_h0("h2");
    let env = lua_env(&fleet, "ssh-online");
    // The script marks the moment it has seen h2 down; only then does the test start h2.
    let checked = env.dir.join("checked");
    let script = env.dir.write(
        "t.lua",
        r#"
        print(ssh.online("h0"), ssh.online("h2", {timeout = 1}))
        io.open(CHECKED, "w"):close()
        ssh.wait_online("h2", {timeout = "60s", interval = "250ms"})
        print("h2 up")
        local res = ssh.each({"h1", "h0", "h1"}, function(h) return ssh.run(h, "echo $HOME").stdout end, {limit = 2})
        print(res[1] == res[3], res[1] ~= res[2], #res)
        print(pcall(ssh.wait_online, "h1", {timeout = "5s"}))
        "#
        .replace("CHECKED", &format!("{checked:?}")),
    );
    let wait_checked = || {
        wait_for(
            "the script to find h2 down",
            Duration::from_secs(60),
            || checked.exists(),
        );
        std::fs::remove_file(&checked).unwrap();
    };
    // h2 answers (with the wrong key) only after the script found it down: first refused, then a mismatch.
    let mut cmd = env.cmd();
    cmd.arg("run").arg(&script);
    let child = {
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    wait_checked();
    fleet.start_host(2);
    let out = crate::common::wait_within(child, Duration::from_secs(90));
    out.expect_code(1);
    assert_eq!(out.stdout, "true\tfalse\n", "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ssh.wait_online(h2): host key mismatch"),
        "{}",
        out.stderr
    );
    // With the right key the same wait succeeds as soon as the host is up.
    let known = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    let fixed = format!(
        "h2 {}\n",
        fleet.hosts[2]
            .host_key_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let known: String = known
        .lines()
        .map(|l| {
            if l.starts_with("h2 ") {
                fixed.clone()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&fleet.known_hosts, known).unwrap();
    fleet.stop_host(2);
    let mut cmd = env.cmd();
    cmd.arg("run")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_checked();
    fleet.start_host(2);
    let out = crate::common::wait_within(child, Duration::from_secs(90));
    out.ok();
    assert_eq!(
        out.stdout, "true\tfalse\nh2 up\ntrue\ttrue\t3\ntrue\n",
        "{}",
        out.stderr
    );
}

/// A port that accepts TCP but never sends an SSH banner: connecting counts against the run's timeout.
#[test]
fn connect_counts_against_the_timeout() {
    let mute = crate::hostile::Mute::start();
    let fleet = Fleet::from_deserializer(serde_json::json!({
        "ssh_config": "/dev/null",
        "hosts": {"mute": {"ssh": format!("ssh://nobody@127.0.0.1:{}", mute.addr.port())}}
    }))
    .unwrap();
    let r = Remote::new(Arc::new(fleet));
    rt().block_on(async {
        let spec = Spec {
            timeout: Some(Duration::from_secs(2)),
            ..Spec::default()
        };
        let cmd = sh("true");
        let run = r.run("mute", &cmd, &spec, None);
        let e = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("ssh.run ends")
            .unwrap_err();
        assert!(matches!(e, RemoteError::ConnectTimeout { .. }), "{e}");
        assert!(
            e.to_string().starts_with("connection timed out after 2s"),
            "{e}"
        );
    });
    let env = Env::new("ssh-mute").with_fleet(&format!(
        "return {{ ssh_config = '/dev/null', hosts = {{ mute = {{ ssh = 'ssh://nobody@127.0.0.1:{}' }} }} }}",
        mute.addr.port()
    ));
    let out = lua(
        &env,
        r#"print(pcall(ssh.run, "mute", "true", { timeout = 1.5 }))"#,
    );
    out.ok();
    assert!(
        out.stdout
            .starts_with("false\tssh.run(mute): connection timed out after 1.5s"),
        "{}",
        out.stdout
    );
}

/// A destination that looks like an option never reaches ssh, even from a fleet built without loading.
#[test]
fn option_like_destinations_never_reach_ssh() {
    use baton::core::fleet::SshTarget;
    let mut fleet =
        Fleet::from_deserializer(serde_json::json!({"hosts": {"evil": {"ssh": "x"}}})).unwrap();
    fleet.hosts.get_mut("evil").unwrap().ssh =
        SshTarget::Dest("-oProxyCommand=touch /tmp/pwned".into());
    let r = Remote::new(Arc::new(fleet));
    rt().block_on(async {
        let e = r
            .run("evil", &sh("true"), &Spec::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("cannot contain whitespace"), "{e}");
    });
}

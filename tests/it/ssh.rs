//! Integration tests: ssh against real sshd processes (see `sshd.rs`).
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::core::fleet::Fleet;
use baton::core::process::{Cmd, Spec, Stream};
use baton::core::remote::{Remote, RemoteError};

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
        let hostile = vec![
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
        let r2 = r.clone();
        let run = tokio::spawn(async move {
            r2.run(
                "h0",
                &sh("for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done"),
                &Spec::default(),
                Some(tx),
            )
            .await
        });
        let started = Instant::now();
        let (stream, line) = rx.recv().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "first line was not live"
        );
        let mut seen = vec![(stream, line)];
        while let Some(item) = rx.recv().await {
            seen.push(item);
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

#[test]
fn timeout_kills_the_remote_command() {
    let fleet = SshFleet::start(1);
    rt().block_on(async {
        let r = remote(&fleet, serde_json::json!({}));
        let spec = Spec {
            timeout: Some(Duration::from_millis(800)),
            ..Spec::default()
        };
        let started = Instant::now();
        let out = r
            .run(
                "h0",
                &sh("echo before; sleep 4711 & sleep 4712; echo after"),
                &spec,
                None,
            )
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(out.code, Some(124));
        assert_eq!(out.stdout, b"before\n");
        assert!(out.failure_summary().starts_with("timed out after 800ms"));
        tokio::time::sleep(Duration::from_millis(300)).await;
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
    let known = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    let h0_key: String = known
        .lines()
        .next()
        .unwrap()
        .split_once(' ')
        .unwrap()
        .1
        .to_string();
    let known: String = known
        .lines()
        .map(|l| {
            if l.starts_with("h1 ") {
                format!("h1 {h0_key}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&fleet.known_hosts, known).unwrap();
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
    let started = Instant::now();
    let waiter = runtime.spawn(async move {
        r2.wait_online("h0", Duration::from_secs(20), Duration::from_millis(250))
            .await
    });
    std::thread::sleep(Duration::from_secs(2));
    fleet.start_host(0);
    runtime.block_on(waiter).unwrap().unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    runtime.block_on(async {
        assert!(r.online("h0", Duration::from_secs(3)).await.unwrap());
        fleet.stop_host(0);
        let e = r
            .wait_online("h0", Duration::from_secs(1), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("not online after 1s: "), "{e}");
        r.close().await;
    });
}

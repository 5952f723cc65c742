//! ssh figures against loopback sshd processes, in one run (`cargo bench --bench ssh`):
//! - 100 sequential `ssh.run(host, "true")` vs 100 `ssh -S <socket> host true` over an already open OpenSSH
//!   master (the floor; target ratio ≤ 1.3) and vs the same 100 commands as an Ansible play;
//! - fan-out of one command to 8 hosts with `ssh.each` vs the same command on one host (target ≤ 1.5×).
mod support;

use std::process::Command;
use std::time::Duration;

use support::{cmd_time, lua_time, report, sshd::SshFleet};

const N: usize = 100;

fn main() {
    let fleet = SshFleet::start(8);
    let lua = support::runtime(&fleet);
    baton::lua::runtime::block_on(async {
        // Masters are opened outside the timings (baton opens one per host on first use).
        lua_time(&lua, r#"ssh.each({"h0","h1","h2","h3","h4","h5","h6","h7"}, function(h) return ssh.run(h, "true") end)"#).await;
        let baton_seq = lua_time(
            &lua,
            &format!(r#"for i = 1, {N} do ssh.run("h0", "true") end"#),
        )
        .await;

        let socket = fleet.dir.join("bench-master");
        support::open_master(&fleet, "h0", &socket);
        // The cheapest plain client: no config file to parse (the master already holds the connection).
        let floor: Duration = (0..N)
            .map(|_| {
                cmd_time(
                    Command::new("ssh")
                        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-S"])
                        .arg(&socket)
                        .args(["h0", "true"]),
                )
            })
            .sum();
        support::close_master(&fleet, "h0", &socket);

        let ansible = ansible_play(&fleet);

        // Fan-out: a short real command (a quick check such as GPU memory), 8 hosts vs 1, best of 5 rounds.
        let one = r#"ssh.run("h0", "sleep 0.2")"#;
        let all = r#"ssh.each({"h0","h1","h2","h3","h4","h5","h6","h7"}, function(h) return ssh.run(h, "sleep 0.2") end)"#;
        let (mut single, mut fanout) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            single = single.min(lua_time(&lua, one).await);
            fanout = fanout.min(lua_time(&lua, all).await);
        }
        let one_true = r#"ssh.run("h0", "true")"#;
        let all_true = r#"ssh.each({"h0","h1","h2","h3","h4","h5","h6","h7"}, function(h) return ssh.run(h, "true") end)"#;
        let (mut single_true, mut fanout_true) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            single_true = single_true.min(lua_time(&lua, one_true).await);
            fanout_true = fanout_true.min(lua_time(&lua, all_true).await);
        }

        println!("ssh ({N} sequential commands on one host, masters already open)");
        report(
            &format!("ssh -S <socket> h0 true  x{N} (floor)"),
            floor,
            floor,
            None,
        );
        report(
            &format!("ssh.run(\"h0\", \"true\")  x{N}"),
            baton_seq,
            floor,
            Some(1.3),
        );
        match ansible {
            Some(t) => report(
                &format!("ansible-playbook, command: true  x{N} (vs baton)"),
                t,
                baton_seq,
                None,
            ),
            None => println!("  ansible-playbook not found: apt-get install ansible"),
        }
        println!("fan-out (best of 5)");
        report("ssh.run(\"h0\", \"sleep 0.2\")", single, single, None);
        report(
            "ssh.each(8 hosts, \"sleep 0.2\")",
            fanout,
            single,
            Some(1.5),
        );
        report("ssh.run(\"h0\", \"true\")", single_true, single_true, None);
        report(
            "ssh.each(8 hosts, \"true\") (startup-bound)",
            fanout_true,
            single_true,
            None,
        );
    })
    .expect("tokio runtime");
}

/// The same 100 commands as an Ansible play over the harness's ssh config; `None` without Ansible.
fn ansible_play(fleet: &SshFleet) -> Option<Duration> {
    Command::new("ansible-playbook")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let dir = fleet.dir.join("ansible");
    std::fs::create_dir_all(&dir).unwrap();
    let inventory = dir.join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "h0 ansible_ssh_common_args='-F {}' ansible_python_interpreter=/usr/bin/python3\n",
            fleet.ssh_config.display()
        ),
    )
    .unwrap();
    let play = dir.join("play.yml");
    std::fs::write(
        &play,
        format!(
            "- hosts: h0\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: \"true\"\n      loop: \"{{{{ range({N}) | list }}}}\"\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("ansible-playbook");
    cmd.arg("-i")
        .arg(&inventory)
        .arg(&play)
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &dir)
        .env("ANSIBLE_LOCAL_TEMP", &dir)
        .env("ANSIBLE_NOCOLOR", "1");
    Some(cmd_time(&mut cmd))
}

//! Integration tests: Wake-on-LAN. The magic packet goes to a UDP listener on 127.0.0.1 (the test fleet's
//! broadcast address), sent from this machine or from an sshd test host (`via`); `wait_online{wake}` brings
//! up a "sleeping" sshd when its packet arrives; `baton status` tells asleep from down.
use std::net::UdpSocket;
use std::time::Duration;

use crate::common::{Env, output_within};
use crate::sshd::SshFleet;

const MAC: &str = "02:42:ac:11:00:07";

fn expected_packet() -> Vec<u8> {
    let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x07];
    let mut p = vec![0xFF; 6];
    for _ in 0..16 {
        p.extend_from_slice(&mac);
    }
    p
}

fn listener() -> (UdpSocket, u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    (sock, port)
}

fn receive(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 512];
    // Signals meant for the harness's other children (SIGCHLD) can interrupt the wait: wait again.
    let (n, from) = loop {
        match sock.recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.expect("no magic packet arrived"),
        }
    };
    assert!(from.ip().is_loopback(), "{from}");
    buf[..n].to_vec()
}

#[test]
fn wake_sends_the_magic_packet_from_here() {
    let (sock, port) = listener();
    let env = Env::new("wake-local").with_fleet(&format!(
        r#"return {{ hosts = {{ pc = {{ ssh = "pc.invalid", mac = "{MAC}", wake = {{ broadcast = "127.0.0.1", port = {port} }} }},
  nomac = {{ ssh = "nomac.invalid" }} }} }}"#
    ));
    let out = env.run_lua(
        "w.lua",
        r#"
local r = ssh.wake("pc")
print(r.to, r.via)
print(pcall(ssh.wake, "nomac"))
print(pcall(ssh.wake, "pcc"))
print(pcall(ssh.wait_online, "nomac", { wake = true, timeout = "1s" }))
"#,
        &[],
    );
    out.ok();
    assert_eq!(receive(&sock), expected_packet());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], format!("127.0.0.1:{port}\tnil"));
    assert!(
        lines[1].contains("ssh.wake(nomac): cannot wake \"nomac\": the fleet gives it no `mac`"),
        "{}",
        out.stdout
    );
    assert!(
        lines[2].contains("unknown fleet host \"pcc\", did you mean pc?"),
        "{}",
        out.stdout
    );
    assert!(
        lines[3].contains("ssh.wait_online(nomac): cannot wake"),
        "{}",
        out.stdout
    );
}

#[test]
fn wake_via_a_fleet_host_sends_from_there() {
    let fleet = SshFleet::start(1);
    let (sock, port) = listener();
    let env = Env::new("wake-via").with_fleet(&format!(
        r#"return {{ ssh_config = {:?}, hosts = {{ h0 = {{}},
  gpu = {{ ssh = "gpu.invalid", mac = "{MAC}", wake = {{ broadcast = "127.0.0.1", port = {port}, via = "h0" }} }} }} }}"#,
        fleet.ssh_config.display()
    ));
    let out = env.run_lua(
        "w.lua",
        r#"local r = ssh.wake("gpu"); print(r.to, r.via, r.program)"#,
        &[],
    );
    out.ok();
    assert_eq!(receive(&sock), expected_packet());
    let fields: Vec<&str> = out.stdout.trim().split('\t').collect();
    assert_eq!(&fields[..2], [format!("127.0.0.1:{port}").as_str(), "h0"]);
    assert!(
        ["python3", "socat", "bash"].contains(&fields[2]),
        "{}",
        out.stdout
    );
}

#[test]
fn wait_online_wakes_a_sleeping_host_and_status_tells_asleep_from_down() {
    let mut fleet = SshFleet::prepare(2);
    fleet.start_host(0);
    let (sock, port) = listener();
    let env = Env::new("wake-wait").with_fleet(&format!(
        r#"return {{ ssh_config = {:?}, hosts = {{ h0 = {{}},
  h1 = {{ mac = "{MAC}", wake = {{ broadcast = "127.0.0.1", port = {port}, via = "h0" }} }} }} }}"#,
        fleet.ssh_config.display()
    ));
    // Both down-looking hosts: h1 (asleep, has a mac); a host without mac is down.
    let env2 = Env::new("wake-status").with_fleet(&format!(
        r#"return {{ ssh_config = {:?}, hosts = {{ h1 = {{ mac = "{MAC}" }}, h2 = {{ ssh = "h1" }} }} }}"#,
        fleet.ssh_config.display()
    ));
    let status = env2.baton(&["status"]);
    status.ok();
    let row = |h: &str| {
        status
            .stdout
            .lines()
            .find(|l| l.starts_with(h))
            .unwrap_or_else(|| panic!("{}", status.stdout))
            .to_string()
    };
    assert!(
        row("h1 ").contains("asleep (wakeable)"),
        "{}",
        status.stdout
    );
    assert!(!row("h2 ").contains("asleep"), "{}", status.stdout);
    assert!(row("h2 ").contains(" no "), "{}", status.stdout);

    let path = env.dir.write(
        "w.lua",
        r#"ssh.wait_online("h1", { wake = true, timeout = "30s", interval = "200ms" }); print(ssh.run("h1", "echo awake").stdout)"#,
    );
    let mut cmd = env.cmd();
    cmd.args(["run", path.to_str().unwrap()]);
    let waiter = std::thread::spawn(move || output_within(cmd, Duration::from_secs(60)));
    // The "machine" wakes when its packet arrives.
    assert_eq!(receive(&sock), expected_packet());
    fleet.start_host(1);
    let out = waiter.join().unwrap();
    out.ok();
    assert_eq!(out.stdout, "awake\n\n");
}

//! Integration tests: two real Syncthing instances (Debian's `syncthing`) on loopback sharing one folder,
//! with generated keys and configs (no discovery, relays, NAT or usage reporting). Instance `alpha` lives in
//! the sshd test host's home (reached over ssh: config.xml read remotely, API through a port forward);
//! instance `beta` in baton's own HOME (this machine).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::sshd::SshFleet;

const KEY_A: &str = "alphaKEY0123456789abcdefghijklmn";
const KEY_B: &str = "betaKEY0123456789abcdefghijklmno";
const WRONG_KEY: &str = "wrong-api-key-987654321";

fn require_syncthing() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("syncthing").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`syncthing` is required by the Syncthing tests and was not found: apt-get install syncthing"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A generated identity: its home (config folder) and device ID.
fn generate(home: &Path) -> String {
    std::fs::create_dir_all(home).unwrap();
    let out = Command::new("syncthing")
        .args(["generate", "--no-default-folder", "--skip-port-probing"])
        .arg(format!("--home={}", home.display()))
        .env("HOME", home)
        .output()
        .expect("run syncthing generate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "syncthing generate: {text}");
    text.lines()
        .find_map(|l| l.split("Device ID: ").nth(1))
        .unwrap_or_else(|| panic!("no device ID in: {text}"))
        .trim()
        .to_string()
}

struct Instance {
    child: Child,
}

impl Drop for Instance {
    /// The whole process group, in case Syncthing starts a process of its own (see `STMONITORED` below).
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    home: &Path,
    folder: &Path,
    key: &str,
    gui: u16,
    listen: u16,
    ids: [&str; 2],
    ports: [u16; 2],
) {
    std::fs::create_dir_all(folder.join(".stfolder")).unwrap();
    let devices: String = ["alpha", "beta"]
        .iter()
        .zip(ids)
        .zip(ports)
        .map(|((name, id), port)| {
            format!(
                "  <device id=\"{id}\" name=\"{name}\" compression=\"metadata\"><address>tcp://127.0.0.1:{port}</address></device>\n"
            )
        })
        .collect();
    let xml = format!(
        r#"<configuration version="36">
  <folder id="shared" label="Shared" path="{folder}" type="sendreceive" rescanIntervalS="3600" fsWatcherEnabled="false">
    <device id="{a}"></device>
    <device id="{b}"></device>
  </folder>
{devices}  <gui enabled="true" tls="false"><address>127.0.0.1:{gui}</address><apikey>{key}</apikey></gui>
  <options>
    <listenAddress>tcp://127.0.0.1:{listen}</listenAddress>
    <globalAnnounceEnabled>false</globalAnnounceEnabled>
    <localAnnounceEnabled>false</localAnnounceEnabled>
    <relaysEnabled>false</relaysEnabled>
    <natEnabled>false</natEnabled>
    <urAccepted>-1</urAccepted>
    <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
    <crashReportingEnabled>false</crashReportingEnabled>
    <startBrowser>false</startBrowser>
    <reconnectionIntervalS>1</reconnectionIntervalS>
  </options>
</configuration>
"#,
        folder = folder.display(),
        a = ids[0],
        b = ids[1],
    );
    std::fs::write(home.join("config.xml"), xml).unwrap();
}

fn start(home: &Path, gui: u16, key: &str) -> Instance {
    let log = std::fs::File::create(home.join("syncthing.log")).unwrap();
    let child = Command::new("syncthing")
        .process_group(0)
        .args(["serve", "--no-browser", "--no-restart", "--no-upgrade"])
        .arg(format!("--home={}", home.display()))
        .env("HOME", home)
        .env("STNODEFAULTFOLDER", "1")
        // Run as the one process: without it Syncthing starts its real process in a new process group
        // (a monitor's child), which a kill of the child we started left running.
        .env("STMONITORED", "yes")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start syncthing");
    let inst = Instance { child };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ping(gui, key) {
        assert!(
            Instant::now() < deadline,
            "syncthing in {} did not answer: {}",
            home.display(),
            std::fs::read_to_string(home.join("syncthing.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    inst
}

/// `GET /rest/system/ping` answers 200 with the key.
fn ping(port: u16, key: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /rest/system/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

/// alpha in the sshd host h0's home, beta in baton's HOME; both share `shared`.
struct Pair {
    _fleet: SshFleet,
    env: Env,
    alpha_dir: PathBuf,
    beta_dir: PathBuf,
    _alpha: Instance,
    _beta: Instance,
}

fn pair() -> Pair {
    require_syncthing();
    let fleet = SshFleet::start(1);
    let alpha_home = fleet.hosts[0].home.join(".config/syncthing");
    let alpha_dir = fleet.hosts[0].home.join("shared");
    let env0 = Env::new("syncthing");
    let beta_home = env0.dir.join("home/.config/syncthing");
    let beta_dir = env0.dir.join("home/shared");
    let ids = [generate(&alpha_home), generate(&beta_home)];
    let (gui_a, gui_b, listen_a, listen_b) = (free_port(), free_port(), free_port(), free_port());
    write_config(
        &alpha_home,
        &alpha_dir,
        KEY_A,
        gui_a,
        listen_a,
        [&ids[0], &ids[1]],
        [listen_a, listen_b],
    );
    write_config(
        &beta_home,
        &beta_dir,
        KEY_B,
        gui_b,
        listen_b,
        [&ids[0], &ids[1]],
        [listen_a, listen_b],
    );
    let alpha = start(&alpha_home, gui_a, KEY_A);
    let beta = start(&beta_home, gui_b, KEY_B);
    let env = env0
        .with_fleet(&format!(
            r#"return {{ ssh_config = {:?}, hosts = {{ h0 = {{}},
  badkey = {{ ssh = false, syncthing = {{ url = "http://127.0.0.1:{gui_a}", api_key_env = "BAD_ST_KEY" }} }} }} }}"#,
            fleet.ssh_config.display()
        ))
        .var("BAD_ST_KEY", WRONG_KEY);
    Pair {
        _fleet: fleet,
        env,
        alpha_dir,
        beta_dir,
        _alpha: alpha,
        _beta: beta,
    }
}

#[test]
fn wait_synced_returns_when_the_file_arrived_and_a_paused_folder_times_out() {
    let p = pair();
    std::fs::write(p.alpha_dir.join("result.txt"), "epoch 3: loss 0.12\n").unwrap();
    let out = p.env.run_lua(
        "st.lua",
        r#"
local a = sync.syncthing("h0")
local b = sync.syncthing()
print(tostring(a):match("^syncthing on h0 %(http://127.0.0.1:%d+%)$") ~= nil)
local f = a:folders()
print("folders", #f, f[1].id, f[1].label, f[1].paused, #f[1].devices)
a:scan("shared")
local s = a:wait_synced("shared", { device = "beta", timeout = "60s", interval = "200ms" })
print("synced", s.state, s.completion.beta.completion, s.need_files)
print("arrived", io.open(baton.env("HOME") .. "/shared/result.txt"):read("a"))
-- beta side: its own view says idle and nothing needed.
b:wait_synced("Shared", { timeout = "30s", interval = "200ms" })
-- A paused folder never gets synced: a clear timeout.
b:pause("shared")
print("paused", b:status("shared").paused)
local ok, err = pcall(b.wait_synced, b, "shared", { timeout = "1s", interval = "200ms" })
print("timeout", ok, err)
b:resume("shared")
print("resumed", b:status("shared").paused)
print(pcall(a.status, a, "nope"))
print(pcall(a.wait_synced, a, "shared", { device = "gamma", timeout = "1s" }))
-- System errors (e.g. a connection attempt before the peer was up) come with their message.
local okm = true
for _, e in ipairs(a:errors()) do okm = okm and type(e.message) == "string" and e.message ~= "" end
print("errors", okm)
"#,
        &[],
    );
    out.ok();
    let o = &out.stdout;
    assert!(o.starts_with("true\n"), "{o}");
    assert!(o.contains("folders\t1\tshared\tShared\tfalse\t2\n"), "{o}");
    assert!(o.contains("synced\tidle\t100\t0\n"), "{o}");
    assert!(o.contains("arrived\tepoch 3: loss 0.12\n"), "{o}");
    assert!(std::fs::read_to_string(p.beta_dir.join("result.txt")).is_ok());
    assert!(o.contains("paused\ttrue\n"), "{o}");
    assert!(
        o.contains("timeout\tfalse\tsyncthing:wait_synced(local): folder \"shared\" not synced after 1s: the folder is paused; "),
        "{o}"
    );
    assert!(o.contains("resumed\tfalse\n"), "{o}");
    assert!(
        o.contains("syncthing:status(h0): unknown Syncthing folder \"nope\" (folders: shared)"),
        "{o}"
    );
    assert!(
        o.contains("unknown Syncthing device \"gamma\" (devices: alpha, beta)"),
        "{o}"
    );
    assert!(o.contains("errors\ttrue\n"), "{o}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "{text}");
    }
}

#[test]
fn a_wrong_api_key_is_a_clear_error_without_the_key() {
    let p = pair();
    let out = p.env.run_lua(
        "bad.lua",
        r#"
local s = sync.syncthing("badkey")
print(pcall(s.folders, s))
print(pcall(sync.syncthing, "nohost"))
"#,
        &[],
    );
    out.ok();
    assert!(
        out.stdout
            .contains("syncthing:folders(badkey): Syncthing at http://127.0.0.1:")
            && out.stdout.contains(
                "refused the API key (HTTP 403); check hosts.badkey.syncthing.api_key_env"
            ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("sync.syncthing(nohost): unknown fleet host \"nohost\""),
        "{}",
        out.stdout
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(WRONG_KEY), "{text}");
    }
}

#[test]
fn heavy_ai_task_moves_files_with_syncthing_and_notifies_the_end() {
    let p = pair();
    std::fs::write(p.beta_dir.join("input.txt"), "weights v7\n").unwrap();
    let (notes, cmd) = {
        let file = p.env.dir.join("notes.txt");
        let script = p.env.dir.write(
            "note.sh",
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$BATON_NOTIFY_TITLE\" >>'{}'\n",
                file.display()
            ),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (file, script)
    };
    // The same hosts, plus a command notification channel.
    let fleet = std::fs::read_to_string(p.env.fleet.as_ref().unwrap()).unwrap();
    let fleet = fleet.replacen(
        "return {",
        &format!(
            "return {{ notify = {{ command = {{ \"{}\" }} }},",
            cmd.display()
        ),
        1,
    );
    p.env.dir.write("fleet.lua", fleet);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/heavy_ai_task.lua");
    let out = p.env.baton(&[
        "run",
        script.to_str().unwrap(),
        "h0",
        "--via-syncthing",
        "shared",
        "--wait",
        "--notify",
        "--poll",
        "200ms",
        "--",
        "tr a-z A-Z <input.txt >output.txt; echo converted",
    ]);
    out.ok();
    assert!(out.stdout.contains("converted\n"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(p.alpha_dir.join("input.txt")).unwrap(),
        "weights v7\n",
        "delivered before the job started"
    );
    assert_eq!(
        std::fs::read_to_string(p.beta_dir.join("output.txt")).unwrap(),
        "WEIGHTS V7\n",
        "the results came back by Syncthing"
    );
    let notes = std::fs::read_to_string(notes).unwrap();
    assert!(
        notes.starts_with("baton: job ") && notes.contains(" on h0 succeeded"),
        "{notes}"
    );
}

#[test]
fn wait_synced_ends_at_its_timeout_when_syncthing_accepts_and_never_answers() {
    // A server that accepts connections and never writes a byte (held open until the test ends).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        loop {
            match listener.accept() {
                Ok((conn, _)) => held.push(conn),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stop_rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                        return;
                    }
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    let env = Env::new("st-silent")
        .with_fleet(&format!(
            r#"return {{ hosts = {{ quiet = {{ ssh = false, syncthing = {{ url = "http://127.0.0.1:{port}", api_key_env = "ST_KEY" }} }} }} }}"#
        ))
        .var("ST_KEY", "k");
    let started = Instant::now();
    let out = env.run_lua(
        "w.lua",
        r#"
local s = sync.syncthing("quiet")
print(pcall(s.wait_synced, s, "docs", {timeout = "3s"}))
"#,
        &[],
    );
    let took = started.elapsed();
    stop_tx.send(()).unwrap();
    server.join().unwrap();
    out.ok();
    // Each request alone may take 15 s; the wait as a whole is bounded by its 3 s.
    assert!(took < Duration::from_secs(3 + 5), "took {took:?}");
    assert!(
        out.stdout.contains(
            "false\tsyncthing:wait_synced(quiet): folder \"docs\" not synced after 3s: Syncthing at http://127.0.0.1:"
        ) && out.stdout.contains("did not answer in time"),
        "{}",
        out.stdout
    );
}

/// `baton status --json` (what the dashboard's Fleet shows) carries the Syncthing folders of hosts that
/// configure `syncthing`, and a clear error, without the key, for one whose key is wrong.
#[test]
fn status_shows_each_configured_hosts_syncthing_folders() {
    let p = pair();
    let fleet = p.env.fleet.clone().unwrap();
    let text = std::fs::read_to_string(&fleet).unwrap();
    let gui_a = text
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    std::fs::write(
        &fleet,
        text.replacen(
            "badkey = {",
            &format!(
                "alpha = {{ ssh = false, syncthing = {{ url = \"http://127.0.0.1:{gui_a}\", api_key_env = \"GOOD_ST_KEY\" }} }},\n  badkey = {{"
            ),
            1,
        ),
    )
    .unwrap();
    let env = Env {
        dir: crate::common::TempDir::new("syncthing-status"),
        fleet: Some(fleet),
        vars: p.env.vars.clone(),
    }
    .var("GOOD_ST_KEY", KEY_A);
    for sub in ["home", "config", "state"] {
        std::fs::create_dir_all(env.dir.join(sub)).unwrap();
    }
    let out = env.baton(&["status", "--json"]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let host = |name: &str| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{v}"))
    };
    let folders = &host("alpha")["syncthing"]["folders"];
    assert_eq!(folders[0]["id"], "shared", "{v}");
    assert_eq!(folders[0]["label"], "Shared", "{v}");
    assert!(folders[0]["state"].is_string(), "{v}");
    assert!(folders[0]["need_bytes"].is_number(), "{v}");
    let bad = host("badkey")["syncthing"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(bad.contains("refused the API key"), "{bad}");
    assert!(!out.stdout.contains(WRONG_KEY) && !out.stdout.contains(KEY_A));
    // A host without `syncthing` is not asked.
    assert!(host("h0")["syncthing"].is_null(), "{v}");
}

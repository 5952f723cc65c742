//! A throwaway fleet of real `sshd` processes on 127.0.0.1 high ports, for tests and benches.
//!
//! `SshFleet::start(n)` generates a user key, one host key per host, a `known_hosts` file, an `ssh_config`
//! with one `Host hN` entry per host (handed to baton with the fleet's `ssh_config`, i.e. `ssh -F`) and runs
//! `sshd -D -e -f <config>` for each host as the current user, with OpenSSH's defaults (MaxSessions 10).
//! Each host gets its own `HOME` (sshd's `SetEnv`), so `~/…` on one host never collides with another.
//! Everything is stopped and deleted on drop. Only loopback addresses are used.
#![allow(dead_code)]
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
const INSTALL_HINT: &str = "apt-get install openssh-server openssh-client rsync";

/// Fails the test with an install hint when a required program is missing (tests never skip).
pub fn require(program: &str) {
    let found = if program.contains('/') {
        Path::new(program).exists()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
            .unwrap_or(false)
    };
    assert!(
        found,
        "`{program}` is required by the ssh/sync tests and was not found: {INSTALL_HINT}"
    );
}

pub struct SshHost {
    pub name: String,
    pub port: u16,
    pub dir: PathBuf,
    /// The host's `$HOME` as seen over ssh.
    pub home: PathBuf,
    pub host_key_pub: String,
    child: Option<Child>,
}

impl SshHost {
    pub fn config(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }

    /// Puts `bin` first on the PATH of commands run over ssh on this host (sshd's `SetEnv`, next to its
    /// `HOME`): how a test double of a program is installed there. Before the host starts.
    pub fn path_first(&self, bin: &Path) {
        let config = self.config();
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "SetEnv HOME=",
            &format!(
                "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin HOME=",
                bin.display()
            ),
        );
        std::fs::write(config, text).unwrap();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct SshFleet {
    pub dir: PathBuf,
    pub ssh_config: PathBuf,
    pub known_hosts: PathBuf,
    pub user_key: PathBuf,
    pub hosts: Vec<SshHost>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path, comment: &str) -> String {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    );
    let pub_path = path.with_extension("pub");
    std::fs::read_to_string(pub_path)
        .expect("public key")
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A private temporary directory with a short path (control sockets have a length limit).
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("baton-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl SshFleet {
    /// Generates keys and configs for `n` hosts (`h0`, `h1`, …) and starts all of them.
    pub fn start(n: usize) -> SshFleet {
        let mut fleet = SshFleet::prepare(n);
        for i in 0..n {
            fleet.start_host(i);
        }
        fleet
    }

    /// Generates keys and configs for `n` hosts without starting any sshd.
    pub fn prepare(n: usize) -> SshFleet {
        require(SSHD);
        require("ssh");
        require("ssh-keygen");
        let dir = temp_dir("sshd");
        let user_key = dir.join("id_ed25519");
        let user_pub = keygen(&user_key, "baton-test-user");
        std::fs::write(dir.join("authorized_keys"), format!("{user_pub}\n")).unwrap();
        let known_hosts = dir.join("known_hosts");
        let ssh_config = dir.join("ssh_config");
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(whoami);
        let mut hosts = Vec::new();
        let mut known = String::new();
        let mut config = String::new();
        for i in 0..n {
            let name = format!("h{i}");
            let hdir = dir.join(&name);
            let home = hdir.join("home");
            std::fs::create_dir_all(&home).unwrap();
            let host_key_pub = keygen(&hdir.join("host_key"), &name);
            let port = free_port();
            known.push_str(&format!("{name} {}\n", key_body(&host_key_pub)));
            config.push_str(&format!(
                "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  HostKeyAlias {name}\n  \
                 IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  PasswordAuthentication no\n  ConnectTimeout 5\n  LogLevel ERROR\n\n",
                key = user_key.display(),
                kh = known_hosts.display(),
            ));
            let sshd_config = format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nSetEnv HOME={home}\nLogLevel ERROR\nSubsystem sftp internal-sftp\n",
                hk = hdir.join("host_key").display(),
                pid = hdir.join("sshd.pid").display(),
                ak = dir.join("authorized_keys").display(),
                home = home.display(),
            );
            std::fs::write(hdir.join("sshd_config"), sshd_config).unwrap();
            hosts.push(SshHost {
                name,
                port,
                dir: hdir,
                home,
                host_key_pub,
                child: None,
            });
        }
        std::fs::write(&known_hosts, known).unwrap();
        std::fs::write(&ssh_config, config).unwrap();
        SshFleet {
            dir,
            ssh_config,
            known_hosts,
            user_key,
            hosts,
        }
    }

    /// Starts host `i`'s sshd and waits until it answers with its SSH banner.
    pub fn start_host(&mut self, i: usize) {
        if self.hosts[i].child.is_some() {
            return;
        }
        // sshd run as root needs its privilege-separation directory (normally created by the service unit).
        if rustix::process::geteuid().is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let host = &mut self.hosts[i];
        let log = std::fs::File::create(host.dir.join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(host.config())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e} ({INSTALL_HINT})"));
        host.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if banner(host.port) {
                return;
            }
            if let Some(status) = host
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(host.dir.join("sshd.log")).unwrap_or_default();
                host.child = None;
                panic!("sshd for {} exited ({status}): {log}", host.name);
            }
            assert!(
                Instant::now() < deadline,
                "sshd for {} did not answer on port {}",
                host.name,
                host.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops host `i`'s sshd and cuts its open connections (as if the machine went away).
    pub fn stop_host(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].child.take() {
            use rustix::process::{Pid, Signal, kill_process};
            // Per-connection sshd processes are children of the listener (and they have children of their
            // own: privilege separation, the session), in sessions of their own, and any of them keeps a
            // connection alive. The listener is stopped first so it forks no more, then the whole tree goes:
            // a surviving session child used to keep an ssh master connection answering after the stop.
            if let Some(pid) = Pid::from_raw(child.id() as i32) {
                let _ = kill_process(pid, Signal::STOP);
            }
            let mut tree = Vec::new();
            let mut next = vec![child.id()];
            while let Some(p) = next.pop() {
                let kids = children_of(p);
                next.extend(&kids);
                tree.extend(kids);
            }
            for pid in tree.into_iter().filter_map(|p| Pid::from_raw(p as i32)) {
                let _ = kill_process(pid, Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Rewrites `host`'s known_hosts entry with h0's key, so connecting to `host` is a host key mismatch.
    pub fn give_host_key_of_h0(&self, host: &str) {
        let known = std::fs::read_to_string(&self.known_hosts).unwrap();
        let h0_key = known
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
                if l.starts_with(&format!("{host} ")) {
                    format!("{host} {h0_key}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&self.known_hosts, known).unwrap();
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// A fleet file body (Lua) declaring every host and this fleet's `ssh_config`.
    pub fn fleet_lua(&self) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| format!("    {0} = {{ ssh = \"{0}\", role = \"test\" }},", h.name))
            .collect();
        format!(
            "return {{\n  ssh_config = {:?},\n  hosts = {{\n{}\n  }},\n}}\n",
            self.ssh_config.display(),
            hosts.join("\n")
        )
    }

    /// `ssh -F <config> <args>` for driving hosts directly (baseline measurements, checks).
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(&self.ssh_config)
            .args(["-o", "BatchMode=yes"]);
        cmd
    }
}

/// Pids whose parent is `parent` (from /proc); read before the parent dies (orphans are re-parented).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')').map(|(_, rest)| {
                        rest.split_whitespace().nth(1) == Some(&parent.to_string())
                    })
                })
                .unwrap_or(false)
        })
        .collect()
}

fn key_body(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn banner(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    let ok = stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-";
    let _ = stream.shutdown(Shutdown::Both);
    ok
}

impl Drop for SshFleet {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.stop_host(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

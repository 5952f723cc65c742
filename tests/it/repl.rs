//! The REPL driven in a real terminal (tmux): multi-line input, completion, Ctrl-C during a long call.
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Env, bin};

struct Tmux {
    name: String,
}

/// `tmux -L NAME`: each test has its own tmux server, so parallel tests (and anyone else's tmux on the
/// machine) never race on one server starting or exiting as its last session goes.
fn tmux(name: &str) -> Command {
    let mut cmd = Command::new("tmux");
    cmd.args(["-L", name]);
    cmd
}

impl Tmux {
    fn start(env: &Env, name: &str) -> Tmux {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success()),
            "tmux is required for the REPL tests: apt-get install -y tmux"
        );
        let name = format!("baton-{name}-{}", std::process::id());
        let state = env.state_dir();
        let shell = format!(
            "env -u BATON_FLEET HOME={home} XDG_CONFIG_HOME={cfg} BATON_STATE_DIR={state} {bin} repl",
            home = env.dir.join("home").display(),
            cfg = env.dir.join("config").display(),
            state = state.display(),
            bin = bin().display()
        );
        let out = tmux(&name)
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "120",
                "-y",
                "40",
                &shell,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t = Tmux { name };
        t.wait_for("Ctrl-D exits", Duration::from_secs(10));
        t
    }

    /// Types every line with its Enter in one `send-keys`, as fast as a paste without bracketed paste.
    fn burst(&self, lines: &[&str]) {
        let typed: String = lines.iter().map(|l| format!("{l}\r")).collect();
        self.keys(&["-l", &typed]);
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.name];
        args.extend_from_slice(keys);
        assert!(tmux(&self.name).args(&args).status().unwrap().success());
    }

    /// Types one line and waits until the REPL shows a fresh prompt after it.
    fn line(&self, text: &str) {
        let before = self.screen().matches("\n>").count();
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.screen().matches("\n>").count() <= before {
            assert!(
                Instant::now() < deadline,
                "no prompt after {text:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn screen(&self) -> String {
        let out = tmux(&self.name)
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        format!("\n{}", String::from_utf8_lossy(&out.stdout))
    }

    fn wait_for(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{needle:?} did not appear within {limit:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux(&self.name)
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn multiline_completion_and_ctrl_c() {
    let env = Env::new("repl");
    let t = Tmux::start(&env, "repl");
    // A function defined over three lines; the continuation prompt is `>>`.
    t.line("function double(x)");
    assert!(t.screen().contains("\n>>"), "{}", t.screen());
    t.line("  return x * 2");
    t.line("end");
    t.line("double(21) + 0.5");
    t.wait_for("42.5", Duration::from_secs(10));
    // Tab completes a field of a global table.
    t.keys(&["-l", "baton.sle"]);
    t.keys(&["Tab"]);
    t.wait_for("> baton.sleep", Duration::from_secs(10));
    // Ctrl-C during a long call returns to the prompt quickly, and the REPL still works. The line prints
    // a mark right before its long sleep, so Ctrl-C is sent once the call is under way.
    t.keys(&["-l", "(0) print('slee' .. 'ping') baton.sleep(30)"]);
    t.keys(&["Enter"]);
    t.wait_for("\nsleeping\n", Duration::from_secs(10));
    t.keys(&["C-c"]);
    t.wait_for("interrupted", Duration::from_secs(10));
    t.line("'still ' .. 'alive'");
    t.wait_for("\"still alive\"", Duration::from_secs(10));
    // Tables print nested; history is saved in the state dir.
    t.line("{ a = { b = 1 }, 2 }");
    t.wait_for("{ 2, a = { b = 1 } }", Duration::from_secs(10));
    t.keys(&["C-d"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let history = env.state_dir().join("repl_history");
    loop {
        let text = std::fs::read_to_string(&history).unwrap_or_default();
        if text.contains("double(21)") {
            break;
        }
        assert!(Instant::now() < deadline, "history not saved: {text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lines_typed_ahead_all_run_in_order() {
    let env = Env::new("repl-burst");
    let t = Tmux::start(&env, "burst");
    t.burst(&["x = 1", "y = 2", "print(x+y)"]);
    t.wait_for("\n3\n", Duration::from_secs(10));
    // A function over two lines and its call, in one burst: the continuation line joins the chunk.
    t.burst(&["function f(a,", "b) return a*b end", "f(6,7)"]);
    t.wait_for("\n42\n", Duration::from_secs(10));
}

#[test]
fn second_tab_lists_the_candidates() {
    let env = Env::new("repl-tab");
    let t = Tmux::start(&env, "tab");
    t.keys(&["-l", "ssh."]);
    t.keys(&["Tab", "Tab"]);
    let listed = Instant::now() + Duration::from_secs(10);
    loop {
        let screen = t.screen();
        let lines: Vec<&str> = screen.lines().filter(|l| !l.starts_with('>')).collect();
        let shown = |name: &str| {
            lines
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == name))
        };
        if ["run", "spawn", "job", "each"].iter().all(|n| shown(n)) {
            break;
        }
        assert!(
            Instant::now() < listed,
            "no list of candidates after Tab Tab:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The input is still there below the list, and completes further.
    t.keys(&["-l", "sp"]);
    t.keys(&["Tab"]);
    t.wait_for("> ssh.spawn", Duration::from_secs(10));
}

#[test]
fn ctrl_c_drops_the_lines_typed_after_the_cancelled_chunk() {
    let env = Env::new("repl-cancel");
    let t = Tmux::start(&env, "cancel");
    t.burst(&[
        "print('sleep' .. 'ing') baton.sleep(30)",
        "print('after' .. 'wards')",
    ]);
    t.wait_for("\nsleeping\n", Duration::from_secs(10));
    t.keys(&["C-c"]);
    t.wait_for("interrupted", Duration::from_secs(10));
    // As in a terminal, what was typed ahead goes with the cancelled chunk; new input still runs.
    t.line("'still ' .. 'here'");
    t.wait_for("\"still here\"", Duration::from_secs(10));
    assert!(!t.screen().contains("afterwards"), "{}", t.screen());
}

#[test]
fn ctrl_c_stops_a_loop_that_never_waits() {
    let env = Env::new("repl-spin");
    let t = Tmux::start(&env, "spin");
    for (i, chunk) in [
        "print('spin' .. 'ning') while true do end",
        "print('sort' .. 'ing') table.sort({3, 2, 1, 5, 4}, function() while true do end end)",
    ]
    .into_iter()
    .enumerate()
    {
        t.burst(&[chunk]);
        t.wait_for(
            if i == 0 {
                "\nspinning\n"
            } else {
                "\nsorting\n"
            },
            Duration::from_secs(10),
        );
        // The mark is printed right before the loop; an interrupt from here on stays set until the hook
        // raises inside it.
        t.keys(&["C-c"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.screen().matches("interrupted").count() <= i {
            assert!(
                Instant::now() < deadline,
                "not interrupted:\n{}",
                t.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Back at the prompt, and the next chunk runs normally (the interrupt does not stick).
        t.line(&format!("'alive ' .. {i}"));
        t.wait_for(&format!("\"alive {i}\""), Duration::from_secs(10));
    }
}

//! `cargo bench --bench schedule`: figures of the real `baton daemon` (release build), printed against
//! their targets and the baseline recorded in `benches/README.md`.
//!
//! Two daemons run side by side for 60 s, each with its own state directory:
//! - idle: 50 jobs that do not fire during the window; resident memory (VmRSS) and CPU time
//!   (utime + stime from /proc/<pid>/stat) over the 60 s;
//! - ticking: one `* * * * * *` job; lateness of 60 fires (recorded start minus scheduled time).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton::core::schedule::Store;
use baton::core::state::State;

const WINDOW: Duration = Duration::from_secs(60);
const WARM_UP: Duration = Duration::from_secs(2);

/// Targets from issue 6, and the figures measured when the bench was written (see benches/README.md).
const TARGET_RSS_MB: f64 = 15.0;
const TARGET_CPU_S: f64 = 0.1;
const TARGET_P99_MS: f64 = 50.0;
const BASELINE_RSS_MB: f64 = 9.1;
const BASELINE_CPU_S: f64 = 0.01;
const BASELINE_P99_MS: f64 = 2.0;

fn main() {
    if !Path::new("/proc/self/stat").exists() {
        eprintln!("schedule bench: needs Linux /proc; skipped");
        return;
    }
    let root = std::env::temp_dir().join(format!("baton-bench-schedule-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();

    let mut idle_jobs = String::new();
    for i in 0..50 {
        // Spread over the day of 29 February, so none fires within the window.
        idle_jobs.push_str(&format!(
            "schedule.cron(\"job{i}\", \"{} {} 29 2 *\", function() print(\"run {i}\") end)\n",
            i % 60,
            i % 24
        ));
    }
    let idle_file = write(&root, "idle/schedule.lua", &idle_jobs);
    let tick_file = write(&root, "tick/schedule.lua", r#"schedule.cron("tick", "* * * * * *", function() end)"#);
    let idle = start(&root.join("idle"), &idle_file);
    let tick = start(&root.join("tick"), &tick_file);

    std::thread::sleep(WARM_UP);
    let cpu_start = cpu_seconds(idle.id());
    let started = Instant::now();
    std::thread::sleep(WINDOW);
    let cpu = cpu_seconds(idle.id()) - cpu_start;
    let window = started.elapsed();
    let rss_mb = rss_kb(idle.id()) as f64 / 1024.0;
    std::thread::sleep(Duration::from_millis(500));
    stop(idle);
    stop(tick);

    let store = Store::open(&State::new(root.join("tick/state"))).unwrap();
    let mut late: Vec<f64> = store
        .history(Some("tick"), 1000)
        .unwrap()
        .iter()
        .filter_map(|r| Some((r.started? - r.scheduled).num_microseconds()? as f64 / 1000.0))
        .collect();
    late.sort_by(f64::total_cmp);
    late.truncate(60);
    let _ = std::fs::remove_dir_all(&root);

    println!("schedule bench: real `baton daemon` (release), {:.0} s window", window.as_secs_f64());
    println!("{:<38} {:>10} {:>12} {:>10}  verdict", "figure", "measured", "target", "baseline");
    row("idle daemon, 50 jobs: resident memory", rss_mb, "MB", TARGET_RSS_MB, BASELINE_RSS_MB);
    row("idle daemon, 50 jobs: CPU time in 60 s", cpu, "s", TARGET_CPU_S, BASELINE_CPU_S);
    if late.len() < 60 {
        println!("per-second job: only {} fires recorded (expected 60) — FAIL", late.len());
        std::process::exit(1);
    }
    let pct = |p: f64| late[((late.len() as f64 * p).ceil() as usize).clamp(1, late.len()) - 1];
    println!(
        "per-second job, 60 fires: lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50),
        pct(0.99),
        late[late.len() - 1]
    );
    row("per-second job: lateness p99", pct(0.99), "ms", TARGET_P99_MS, BASELINE_P99_MS);
}

fn row(name: &str, value: f64, unit: &str, target: f64, baseline: f64) {
    let verdict = if value <= target { "ok" } else { "OVER TARGET" };
    println!(
        "{name:<38} {:>10} {:>12} {:>10}  {verdict}",
        format!("{value:.2} {unit}"),
        format!("<= {target} {unit}"),
        format!("{baseline} {unit}")
    );
}

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn start(dir: &Path, file: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["daemon", file.to_str().unwrap()])
        .env("BATON_STATE_DIR", dir.join("state"))
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env_remove("BATON_FLEET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start baton daemon")
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// VmRSS of `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

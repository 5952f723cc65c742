//! `baton web` figures (issue 29), each beside a baseline measured in the same run (`cargo bench --bench web`):
//! - server time of each page and `/api` answer with 1 000 000 ledger rows (92 days up to now: six models
//!   in three tiers, twelve tasks, eight scripts, a third of them booked to a run), 100 000 runs (every
//!   tenth with 10 steps, a few failed, cancelled, interrupted or paused), 50 detached jobs and a schedule of
//!   50 jobs with three months of history — beside the same server on an empty state dir (same schedule
//!   file). Each URL is asked `REQUESTS` times after `WARM` warm-ups over one keep-alive connection per
//!   server (reqwest), the URLs and the two servers taking turns, so a slow spell of the shared machine hits
//!   all alike; the time is from sending the request to the last byte of the answer on loopback (the
//!   server's time plus well under a millisecond of HTTP, which the empty-state column bounds). Goal: p95
//!   ≤ 50 ms (the median is printed too);
//! - live log: a `baton run` on the big state dir prints `LINES` lines, each carrying `baton.now()` (wall
//!   clock, µs) at its print, 10–99 ms apart (so prints fall at every phase of the server's poll), while an
//!   SSE client follows `/runs/{id}/log?from=0`; a line's delay is the bench's wall clock when the event
//!   holding its newline arrived minus the time it carries (one machine, one clock). The run's own stdout,
//!   read by the bench, is the floor. Goal: median ≤ 1 s;
//! - the release binary's size, and `baton run empty.lua` start-up (`STARTS` each, alternating, medians),
//!   now vs the commit before the web work (`git rev-parse 44cb1f1^`). Both are built the same way,
//!   `cargo build --release --locked` in a worktree of their commit under `target/bench-base/`, once per
//!   commit (kept as `target/bench-base/baton-<commit>`; `$BATON_BENCH_BASE` names another base binary).
//!   "Now" is the last commit that changed the binary's inputs (`src`, `stdlib`, `build.rs`, `Cargo.*`),
//!   so commit first. The bench's own `baton` is not used for these: a bench build turns on tokio's
//!   `test-util` (a dev-dependency). Goals: ≤ 2 MB more; no added start-up, counted as met within 5 % of
//!   the base's median (the noise of such medians on the shared VM).
//!
//! Run: `cargo bench --bench web` (needs git; the first run builds the two release binaries).
#[path = "support/figures.rs"]
mod figures;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton::core::llm::ledger::Ledger;
use baton::core::runs::Runs;
use baton::core::schedule::store::Store;
use baton::core::state::State;
use figures::{Table, median, ms, percentile};
use futures_util::StreamExt;
use rusqlite::params;

const LEDGER_ROWS: usize = 1_000_000;
const RUNS: usize = 100_000;
const JOBS: usize = 50;
const SCHEDULED: usize = 50;
/// How far back the seeded history goes.
const DAYS: f64 = 92.0;
/// Steps of the run whose page is timed.
const SHOWN_STEPS: usize = 50;
const REQUESTS: usize = 100;
const WARM: usize = 5;
const LINES: usize = 100;
const STARTS: usize = 100;
/// The commit that added `baton web`; the base is its parent.
const WEB_COMMIT: &str = "44cb1f1";

fn main() {
    // reqwest is built without a default TLS provider; the client needs one installed (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let b = Bench::new();
    let mut table = Table::default();
    let schedule = b.schedule_file();
    let big = b.dir.join("state-big");
    let started = Instant::now();
    let shown = fill(&big);
    eprintln!(
        "seeded {LEDGER_ROWS} ledger rows, {RUNS} runs, {JOBS} jobs, {SCHEDULED} scheduled jobs' history in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let empty = b.dir.join("state-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    {
        let big_web = Web::start(&b, &big, &schedule);
        let empty_web = Web::start(&b, &empty, &schedule);
        rt.block_on(pages(&big_web, &empty_web, &shown, &big, &mut table));
        drop(empty_web);
        rt.block_on(live_log(&b, &big_web, &big, &mut table));
    }
    size_and_startup(&b, &mut table);
    println!(
        "baton web (release build; {} ledger rows, {} runs, {} jobs; {})",
        LEDGER_ROWS,
        RUNS,
        JOBS,
        b.dir.display()
    );
    table.print();
    let _ = std::fs::remove_dir_all(&b.dir);
}

struct Bench {
    baton: PathBuf,
    dir: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let dir = std::env::temp_dir().join(format!("baton-bench-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        Bench {
            baton: PathBuf::from(env!("CARGO_BIN_EXE_baton")),
            dir,
        }
    }

    /// `baton ARGS…` with its state in `state`, no user config, no fleet file (the built-in fleet).
    fn baton(&self, exe: &Path, state: &Path) -> Command {
        let mut cmd = Command::new(exe);
        cmd.env("BATON_STATE_DIR", state)
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env_remove("BATON_FLEET")
            .env_remove("BATON_WEB_TOKEN");
        cmd
    }

    /// A schedule of `SCHEDULED` jobs (the first ten hourly, the others daily, the last yearly and never
    /// run), each running `job.lua` next to it.
    fn schedule_file(&self) -> PathBuf {
        std::fs::write(self.dir.join("job.lua"), "print(\"job\")\n").unwrap();
        let mut text = String::new();
        for k in 0..SCHEDULED {
            text.push_str(&format!(
                "schedule.cron(\"{}\", \"{}\", \"job.lua\", {{ missed = \"skip\" }})\n",
                job_name(k),
                cron_line(k)
            ));
        }
        let path = self.dir.join("schedule.lua");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn job_name(k: usize) -> String {
    format!("job{:02}", k + 1)
}

/// Hourly for the first ten (at minute k), yearly for the last, daily at `k % 24`:`7k % 60` for the rest.
fn cron_line(k: usize) -> String {
    if k < 10 {
        format!("{k} * * * *")
    } else if k == SCHEDULED - 1 {
        "15 3 1 1 *".into()
    } else {
        format!("{} {} * * *", (k * 7) % 60, k % 24)
    }
}

// ------------------------------------------------------------------------------------------------ seed

/// What the timed pages show: a run (the newest, with `SHOWN_STEPS` steps and a log) and a job.
struct Shown {
    run: String,
    job: String,
}

/// A run's id as `runs::new_id` makes it (`YYYYMMDD-HHMMSS-` and 8 hex digits), unique by its index.
fn run_id(started: f64, i: usize) -> String {
    let t = chrono::DateTime::from_timestamp(started as i64, 0).unwrap_or_default();
    format!("{}-{i:08x}", t.format("%Y%m%d-%H%M%S"))
}

fn iso(t: f64) -> String {
    let t = chrono::DateTime::from_timestamp_micros((t * 1e6) as i64).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Fills `dir`'s state db: the schemas are baton's own (each component's migrations, run through its
/// library types), the rows are bulk `INSERT`s in one transaction per table, and the ledger's totals are
/// summed by `Ledger::rebuild_totals` as for an import.
fn fill(dir: &Path) -> Shown {
    let state = State::new(dir);
    let ledger = Ledger::new(state.clone());
    ledger.rebuild_totals().expect("ledger schema");
    Runs::open(&state).expect("runs schema");
    state
        .migrate("jobs", baton::core::remote::jobs::MIGRATIONS)
        .expect("jobs schema");
    Store::open(&state).expect("schedule schema");
    let now = baton::core::runs::now();
    let start = now - DAYS * 86_400.0;
    let span = now - 60.0 - start;
    let machine = baton::core::runs::machine();
    let mut rng = fastrand::Rng::with_seed(29);
    let run_started = |i: usize| start + span * (i as f64 + 1.0) / RUNS as f64;
    let ids: Vec<String> = (0..RUNS).map(|i| run_id(run_started(i), i)).collect();
    let scripts = [
        "end_of_day.lua",
        "nightly_ci.lua",
        "warm_models.lua",
        "inbox.lua",
        "review.lua",
        "backup.lua",
        "notes.lua",
        "research.lua",
    ];
    state
        .with(|c| {
            let tx = c.transaction()?;
            {
                let mut run = tx.prepare(
                    "INSERT INTO runs(id, script, script_hash, args, fleet, trigger, machine, pid, started, ended,
                         status, error, pending)
                     VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?;
                let mut step = tx.prepare(
                    "INSERT INTO steps(run_id, pos, kind, label, call, started, duration, outcome, cost, result)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'ok', ?8, ?9)",
                )?;
                for (i, id) in ids.iter().enumerate() {
                    let started = run_started(i);
                    let script = format!("/home/me/playbooks/{}", scripts[i % scripts.len()]);
                    let took = 5.0 + rng.f64() * 300.0;
                    let (status, error, pending, pid) = match i % 100 {
                        _ if i == RUNS - 1 => ("ok", None, None, 4242),
                        0..=3 => ("failed", Some("ssh.run: gpu: exit 1: nvidia-smi: not found"), None, 4242),
                        4 => ("cancelled", Some("cancelled"), None, 4242),
                        // Recorded running, its process gone: read as interrupted (a pid no process has).
                        5 => ("running", None, None, 999_999_999),
                        6 if i % 1000 == 6 => (
                            "paused",
                            None,
                            Some(r#"{"pos":"3","call":"{\"fn\":\"baton.approve\"}","message":"push to main?"}"#),
                            4242,
                        ),
                        _ => ("ok", None, None, 4242),
                    };
                    let ended = (status != "running" && status != "paused").then_some(started + took);
                    run.execute(params![
                        id,
                        script,
                        "9f2c0a7d5e1b4c3a8d6f0e2b7a9c1d3e5f7a9b0c2d4e6f8a0b1c3d5e7f9a1b2c",
                        r#"["--repo","~/src/baton"]"#,
                        if i % 3 == 0 { "cli" } else { "schedule" },
                        machine,
                        pid,
                        started,
                        ended,
                        status,
                        error,
                        pending,
                    ])?;
                    let steps = if i == RUNS - 1 {
                        SHOWN_STEPS
                    } else if i % 10 == 0 {
                        10
                    } else {
                        0
                    };
                    let kinds = ["llm", "ssh", "exec", "sync", "step"];
                    for s in 0..steps {
                        let kind = kinds[s % kinds.len()];
                        step.execute(params![
                            id,
                            (s + 1).to_string(),
                            kind,
                            format!("{kind} call {}", s + 1),
                            format!(r#"{{"fn":"{kind}","args":["gpu","nvidia-smi --query-gpu=memory.used"]}}"#),
                            started + s as f64 * 0.5,
                            0.2 + rng.f64(),
                            (kind == "llm").then_some(0.0042),
                            r#"{"ok":true,"code":0,"stdout":"12034 MiB\n","stderr":"","duration":0.21}"#,
                        ])?;
                    }
                }
            }
            tx.commit()
        })
        .expect("runs");
    let models = [
        ("local", "ollama", "gpu", "qwen2.5-coder:32b", 0.0),
        ("local", "ollama", "brain", "llama3.1:8b", 0.0),
        (
            "cheap",
            "openrouter",
            "openrouter",
            "deepseek/deepseek-chat",
            0.4,
        ),
        (
            "cheap",
            "openrouter",
            "openrouter",
            "google/gemini-2.5-flash",
            0.6,
        ),
        (
            "premium",
            "openrouter",
            "openrouter",
            "anthropic/claude-sonnet-4.5",
            6.0,
        ),
        (
            "premium",
            "openrouter",
            "openrouter",
            "anthropic/claude-opus-4.6",
            20.0,
        ),
    ];
    let tasks = [
        "commit-msg",
        "review",
        "summarize",
        "triage",
        "diagnose",
        "plan",
        "translate",
        "extract",
        "classify",
        "chat",
        "refactor",
        "docs",
    ];
    state
        .with(|c| {
            let tx = c.transaction()?;
            {
                let mut row = tx.prepare(
                    "INSERT INTO llm_ledger(ts, month, day, script, task, tier, provider, host, model, tokens_in,
                         tokens_out, cost, cost_source, outcome, err, duration, sent, reserved, pid, machine, step,
                         run_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 1, ?17, 4242,
                         ?18, ?19, ?20)",
                )?;
                for i in 0..LEDGER_ROWS {
                    let t = start + span * (i as f64 + 0.5) / LEDGER_ROWS as f64;
                    let ts = iso(t);
                    // Half local, a third cheap, the rest premium.
                    let k = match rng.u32(..100) {
                        0..=24 => 0,
                        25..=49 => 1,
                        50..=66 => 2,
                        67..=84 => 3,
                        85..=96 => 4,
                        _ => 5,
                    };
                    let (tier, provider, host, model, per_mtok) = models[k];
                    let (tokens_in, tokens_out) = (rng.u32(200..4000), rng.u32(20..800));
                    let cost = per_mtok * f64::from(tokens_in + 4 * tokens_out) / 1e6;
                    let (outcome, err, cost) = match rng.u32(..100) {
                        0..=1 => ("error", Some("HTTP 502 from the provider"), 0.0),
                        2 => ("interrupted", None, cost * 2.0),
                        _ => ("ok", None, cost),
                    };
                    row.execute(params![
                        ts,
                        &ts[..7],
                        &ts[..10],
                        scripts[rng.usize(..scripts.len())],
                        tasks[rng.usize(..tasks.len())],
                        tier,
                        provider,
                        host,
                        model,
                        tokens_in,
                        tokens_out,
                        cost,
                        if provider == "ollama" { "free" } else { "provider" },
                        outcome,
                        err,
                        0.3 + rng.f64() * 8.0,
                        cost * 2.0,
                        machine,
                        (i % 4 == 0).then_some(1 + (i as i64 / 4) % 5),
                        (i % 3 == 0).then(|| ids[i * RUNS / LEDGER_ROWS].as_str()),
                    ])?;
                }
            }
            tx.commit()
        })
        .expect("ledger");
    ledger.rebuild_totals().expect("ledger totals");
    let now_s = now as i64;
    state
        .with(|c| {
            let tx = c.transaction()?;
            {
                let mut job = tx.prepare(
                    "INSERT INTO jobs(id, host, command, pid, dir, started_at, state, code, checked_at, notify, tmux,
                         notified, cwd, title)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?13)",
                )?;
                // Ended jobs only: a running one would send the server's background refresh to its host.
                for k in 0..JOBS {
                    let id = format!("j{k:04}");
                    let at = now_s - ((JOBS - k) as i64) * 14_400;
                    let lost = k % 12 == 5;
                    job.execute(params![
                        id,
                        ["gpu", "brain", "nas"][k % 3],
                        format!("python train.py --epochs 10 --seed {k}"),
                        (10_000 + k) as i64,
                        format!("/home/me/.baton/jobs/{id}"),
                        at,
                        if lost { "lost" } else { "exited" },
                        (!lost).then_some(i32::from(k % 7 == 3)),
                        at + 3600,
                        k % 2 == 0,
                        k % 4 == 0,
                        "/home/me/src/model",
                        format!("training run {k}"),
                    ])?;
                }
                let mut fire = tx.prepare(
                    "INSERT INTO schedule_runs(job, scheduled, started, ended, outcome, error, log, catchup, manual)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0)",
                )?;
                let mut last = tx.prepare("INSERT OR REPLACE INTO schedule_last(job, last_fire) VALUES (?1, ?2)")?;
                // Every hour of the history, in time order: the hourly jobs fire, the daily ones at their hour.
                let hours = (DAYS * 24.0) as i64;
                let first = (start as i64) / 3600 * 3600;
                for h in 0..hours {
                    let hour = first + h * 3600;
                    for k in 0..SCHEDULED - 1 {
                        let at = if k < 10 {
                            hour + (k as i64) * 60
                        } else if (hour / 3600) % 24 == (k % 24) as i64 {
                            hour + ((k * 7) % 60) as i64 * 60
                        } else {
                            continue;
                        };
                        if at > now_s - 300 {
                            continue;
                        }
                        let (outcome, error) = match rng.u32(..100) {
                            0..=3 => ("failed", Some("exit 1")),
                            4 => ("skipped", None),
                            _ => ("ok", None),
                        };
                        let ms = at * 1000;
                        fire.execute(params![
                            job_name(k),
                            ms,
                            (outcome != "skipped").then_some(ms + 120),
                            (outcome != "skipped").then_some(ms + 120 + i64::from(rng.u32(500..90_000))),
                            outcome,
                            error,
                            format!("/home/me/.local/state/baton/runs/{}/{ms}.log", job_name(k)),
                        ])?;
                        last.execute(params![job_name(k), ms])?;
                    }
                }
            }
            tx.commit()
        })
        .expect("jobs and schedule");
    let shown = Shown {
        run: ids[RUNS - 1].clone(),
        job: format!("j{:04}", JOBS - 1),
    };
    // The shown run's log: 200 lines.
    let log = state
        .file(format!("runs/{}.log", shown.run))
        .expect("runs dir");
    let text: String = (1..=200)
        .map(|i| {
            format!(
                "[{i:03}] gpu: epoch {i}: loss 0.{:04} (12034 MiB)\n",
                9999 - i * 37
            )
        })
        .collect();
    std::fs::write(log, text).unwrap();
    shown
}

// ----------------------------------------------------------------------------------------------- serve

/// A `baton web --listen 127.0.0.1:0` on a state dir, killed when dropped.
struct Web {
    child: Child,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Web {
    /// Starts it and waits (at most 30 s) for its login link; what it prints after is drained on a thread.
    fn start(b: &Bench, state: &Path, schedule: &Path) -> Web {
        let mut child = b
            .baton(&b.baton, state)
            .args(["web", "--listen", "127.0.0.1:0", "--schedule"])
            .arg(schedule)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start baton web");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("http://")
                    && line.contains("?token=")
                {
                    let url = line[at..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(url.split("/?token=").next().unwrap_or("").to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("baton web on {} printed no login link", state.display()));
        Web { child, base }
    }
}

/// One keep-alive connection per server.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()
        .expect("client")
}

/// GET `url` to the last byte: the time, the status and the body's length.
async fn get(client: &reqwest::Client, url: &str) -> (Duration, u16, usize) {
    let t = Instant::now();
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (t.elapsed(), status, body.len())
}

/// Every page and `/api` answer on the big state and the empty one, the URLs and servers taking turns.
async fn pages(big: &Web, empty: &Web, shown: &Shown, dir: &Path, table: &mut Table) {
    let paths = [
        "/".to_string(),
        "/runs".into(),
        "/runs?status=failed".into(),
        format!("/runs/{}", shown.run),
        format!("/jobs/{}", shown.job),
        "/spend".into(),
        "/spend?period=all&by=model".into(),
        "/api/fleet".into(),
        "/api/schedule".into(),
        "/api/runs".into(),
        format!("/api/runs/{}", shown.run),
        "/api/jobs".into(),
        "/api/spend".into(),
        "/api/spend?period=all&by=script".into(),
    ];
    let (cb, ce) = (client(), client());
    let mut times: Vec<[Vec<Duration>; 2]> =
        paths.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut sizes = vec![0usize; paths.len()];
    let mut empty_status = vec![0u16; paths.len()];
    for round in 0..WARM + REQUESTS {
        for (i, path) in paths.iter().enumerate() {
            let (t, status, len) = get(&cb, &format!("{}{path}", big.base)).await;
            assert_eq!(
                status,
                200,
                "GET {path} on {} answered {status}",
                dir.display()
            );
            let (u, e_status, _) = get(&ce, &format!("{}{path}", empty.base)).await;
            assert!(
                e_status == 200 || e_status == 404,
                "GET {path} on the empty state answered {e_status}"
            );
            if round >= WARM {
                times[i][0].push(t);
                times[i][1].push(u);
            }
            sizes[i] = len;
            empty_status[i] = e_status;
        }
    }
    for (i, path) in paths.iter().enumerate() {
        let [t, u] = std::mem::take(&mut times[i]);
        let (med, p95) = (median(t.clone()), percentile(t, 95.0));
        let note = if empty_status[i] == 404 { ", 404" } else { "" };
        table.row(
            &format!("GET {path} ({:.1} KB)", sizes[i] as f64 / 1000.0),
            format!(
                "median {}, p95 {} (empty state{note}: {}, {})",
                ms(med),
                ms(p95),
                ms(median(u.clone())),
                ms(percentile(u, 95.0))
            ),
            "p95 ≤ 50 ms",
            Some(p95 <= Duration::from_millis(50)),
        );
    }
    let db = std::fs::metadata(dir.join("baton.db")).map_or(0, |m| m.len());
    table.row(
        &format!(
            "  (state db: {:.0} MB; {REQUESTS} requests per URL after {WARM})",
            db as f64 / 1e6
        ),
        String::new(),
        "",
        None,
    );
}

// -------------------------------------------------------------------------------------------- live log

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The delay of each `line N T` in `text` (a whole line), arrived at `at`.
fn delay(line: &str, at: f64) -> Option<(usize, f64)> {
    let mut words = line.split_whitespace();
    (words.next() == Some("line")).then_some(())?;
    let n = words.next()?.parse().ok()?;
    let t: f64 = words.next()?.parse().ok()?;
    Some((n, at - t))
}

/// A run printing `LINES` stamped lines, followed by an SSE client on its log and by its own stdout.
async fn live_log(b: &Bench, web: &Web, state: &Path, table: &mut Table) {
    let script = b.dir.join("live.lua");
    // The first step records the run (running) before the lines; the second's wait lets the bench connect
    // first, so no line is read from the file's start on connecting.
    std::fs::write(
        &script,
        format!(
            "print(baton.run_id)\n\
             baton.step(\"begin\", function() end)\n\
             baton.sleep(1)\n\
             for i = 1, {LINES} do\n\
               print(string.format(\"line %d %.6f\", i, baton.now()))\n\
               baton.sleep((10 + (i * 37) % 90) / 1000)\n\
             end\n"
        ),
    )
    .unwrap();
    let mut child = b
        .baton(&b.baton, state)
        .arg("run")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start baton run");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let id = out
        .next()
        .and_then(Result::ok)
        .expect("the run prints its id first");
    let floor: Arc<Mutex<Vec<f64>>> = Arc::default();
    let reader = {
        let floor = floor.clone();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                if let Some((_, d)) = delay(&line, wall()) {
                    floor.lock().unwrap().push(d);
                }
            }
        })
    };
    let url = format!("{}/runs/{id}/log?from=0", web.base);
    let resp = client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    let mut events = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream());
    let (mut delays, mut carry, mut seen) = (Vec::new(), String::new(), Vec::new());
    let mut last_status = String::new();
    // The stream ends after the finished run's status.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(30), events.next()).await {
        let event = event.unwrap_or_else(|e| panic!("{url}: {e}"));
        let at = wall();
        let data = event.data.unwrap_or_default();
        match event.event.as_deref() {
            Some("log") => {
                // `{"text": …, "to": offset}`.
                let doc: serde_json::Value = serde_json::from_str(&data).unwrap_or_else(|e| {
                    panic!("{url}: a log event's data is not JSON ({e}): {data}")
                });
                let text = doc["text"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{url}: a log event without its text: {data}"));
                carry.push_str(text);
                // Whole lines only: a line cut between two events arrived with its newline.
                while let Some(nl) = carry.find('\n') {
                    let line: String = carry.drain(..=nl).collect();
                    if let Some((n, d)) = delay(&line, at) {
                        seen.push(n);
                        delays.push(d);
                    }
                }
            }
            Some("status") => last_status = data,
            _ => {}
        }
    }
    let status = child.wait().expect("baton run");
    assert!(status.success(), "the live run failed: {status}");
    reader.join().unwrap();
    assert_eq!(
        seen,
        (1..=LINES).collect::<Vec<_>>(),
        "the page got every line once, in order (last status {last_status:?})"
    );
    let floor = std::mem::take(&mut *floor.lock().unwrap());
    assert_eq!(floor.len(), LINES, "the run's stdout had every line");
    let secs = |v: Vec<f64>| {
        let mut d: Vec<Duration> = v
            .iter()
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
            .collect();
        d.sort();
        (median(d.clone()), d[d.len() - 1])
    };
    let (med, max) = secs(delays);
    let (f_med, f_max) = secs(floor);
    table.row(
        &format!("live log: {LINES} printed lines to an SSE client of /runs/ID/log"),
        format!("median {}, max {}", ms(med), ms(max)),
        "median ≤ 1 s",
        Some(med <= Duration::from_secs(1)),
    );
    table.row(
        "  the same lines on the run's stdout (floor)",
        format!("median {}, max {}", ms(f_med), ms(f_max)),
        "",
        None,
    );
    table.row(
        &format!("  (stream ended on status {last_status:?})"),
        String::new(),
        "",
        None,
    );
}

// ------------------------------------------------------------------------------------ size and start-up

fn git(args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `target/bench-base/baton-<commit>`: `cargo build --release --locked` of `commit` in a worktree of its
/// own (`target/bench-base/src-<commit>`, one target dir shared by such builds), made once.
fn release_binary(commit: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let root = target.join("bench-base");
    let bin = root.join(format!("baton-{commit}"));
    if bin.is_file() {
        return bin;
    }
    let src = root.join(format!("src-{commit}"));
    if !src.is_dir() {
        std::fs::create_dir_all(&root).unwrap();
        git(&[
            "worktree",
            "add",
            "--detach",
            &src.to_string_lossy(),
            commit,
        ]);
    }
    eprintln!("building {commit} (release) in {}", src.display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(root.join("target"))
        .current_dir(&src)
        .status()
        .expect("cargo build");
    assert!(status.success(), "cargo build --release of {commit} failed");
    std::fs::copy(root.join("target/release/baton"), &bin).unwrap();
    bin
}

fn time_once(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("start baton");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn size_and_startup(b: &Bench, table: &mut Table) {
    let base_commit = git(&["rev-parse", &format!("{WEB_COMMIT}^")]);
    // The binary's inputs: a commit that only adds a bench or a test builds the same binary as the last one
    // that touched them, so that one is built (once).
    let inputs = ["src", "stdlib", "build.rs", "Cargo.toml", "Cargo.lock"];
    let head = git(&[&["log", "-1", "--format=%H", "--"][..], &inputs[..]].concat());
    let dirty = git(&[&["status", "--porcelain", "--"][..], &inputs[..]].concat());
    if !dirty.is_empty() {
        eprintln!(
            "note: the size and start-up figures are of {head}; the work tree has changes:\n{dirty}"
        );
    }
    let base = std::env::var_os("BATON_BENCH_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| release_binary(&base_commit));
    let now = release_binary(&head);
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    let (s_now, s_base) = (size(&now), size(&base));
    table.row(
        &format!("release binary, now ({})", &head[..7]),
        format!("{s_now:.2} MB ({:+.2} MB)", s_now - s_base),
        "≤ +2 MB",
        Some(s_now - s_base <= 2.0),
    );
    table.row(
        &format!(
            "  base {} ({})",
            &base_commit[..7.min(base_commit.len())],
            base.display()
        ),
        format!("{s_base:.2} MB"),
        "",
        None,
    );
    let empty = b.dir.join("empty.lua");
    std::fs::write(&empty, "").unwrap();
    let (mut n, mut z) = (Vec::new(), Vec::new());
    for round in 0..STARTS {
        let one = |exe: &Path, state: &str| {
            time_once(b.baton(exe, &b.dir.join(state)).arg("run").arg(&empty))
        };
        if round % 2 == 0 {
            n.push(one(&now, "state-start-now"));
            z.push(one(&base, "state-start-base"));
        } else {
            z.push(one(&base, "state-start-base"));
            n.push(one(&now, "state-start-now"));
        }
    }
    let (n, z) = (median(n), median(z));
    table.row(
        &format!("baton run empty.lua, now, median of {STARTS} alternating"),
        format!(
            "{} ({:+.2} ms, {:.2}x)",
            ms(n),
            (n.as_secs_f64() - z.as_secs_f64()) * 1000.0,
            n.as_secs_f64() / z.as_secs_f64()
        ),
        "≤ base + 5 %",
        Some(n.as_secs_f64() <= z.as_secs_f64() * 1.05),
    );
    table.row("  base, same rounds", ms(z), "", None);
}

//! Ledger and budget figures, each with its baseline in the same run (`cargo bench --bench ledger`):
//! - reservation + settle (one call's two transactions) with 1 000 000 ledger rows this month vs 1 000
//!   rows: µs per call and the ratio (goal ≤ 1.1);
//! - `baton spend` (the real binary) on 1 000 000 rows vs an empty ledger: ms per run (goal < 200 ms);
//! - 50 concurrent `route.ask` in 2 processes (25 each) against a budget for 10, on a stub charging $1 per
//!   answer: what was spent and how many succeeded (goal: spend ≤ budget, exactly 10).
#[path = "../tests/it/llm/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton::core::llm::ledger::{Ledger, Opened, Row};
use baton::core::state::State;
use server::{Reply, Stub};

const CALLS: usize = 2_000;
const ROUNDS: usize = 10;
const BIG: u64 = 1_000_000;
const SMALL: u64 = 1_000;
const SPEND_RUNS: usize = 10;

fn main() {
    let root = std::env::temp_dir().join(format!("baton-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (small, big) = (root.join("small"), root.join("big"));
    let seeded = |dir: &Path, n: u64| {
        let ledger = Ledger::new(State::new(dir));
        let t = Instant::now();
        ledger.seed_month(n, 1e-6).expect("seed");
        println!("seeded {n} rows in {:.1} s", t.elapsed().as_secs_f64());
        ledger
    };
    let (l_small, l_big) = (seeded(&small, SMALL), seeded(&big, BIG));

    // 1. Reservation + settle: blocks alternate so a slow spell of the machine hits both.
    let (small_us, big_us) = baton::lua::runtime::block_on(async {
        cycle(&l_small, 50).await;
        cycle(&l_big, 50).await;
        let (mut s, mut b) = (0.0, 0.0);
        for _ in 0..ROUNDS {
            s += cycle(&l_small, CALLS / ROUNDS).await;
            b += cycle(&l_big, CALLS / ROUNDS).await;
        }
        (s / CALLS as f64 * 1e6, b / CALLS as f64 * 1e6)
    })
    .expect("runtime");
    println!(
        "reservation + settle: {small_us:.0} µs with {SMALL} rows, {big_us:.0} µs with {BIG} rows (ratio {:.2}, goal ≤ 1.1)",
        big_us / small_us
    );

    // 2. `baton spend` on the big ledger vs an empty one (process start-up and fleet loading included).
    let empty = root.join("empty");
    let spend = |dir: &Path| {
        let mut best = f64::MAX;
        let mut total = 0.0;
        for _ in 0..SPEND_RUNS {
            let t = Instant::now();
            let out = baton_cmd(&root, dir)
                .arg("spend")
                .stdout(Stdio::piped())
                .output()
                .expect("baton spend");
            let secs = t.elapsed().as_secs_f64();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            best = best.min(secs);
            total += secs;
        }
        (best * 1e3, total / SPEND_RUNS as f64 * 1e3)
    };
    let (e_best, e_mean) = spend(&empty);
    let (b_best, b_mean) = spend(&big);
    println!(
        "baton spend: {b_mean:.1} ms mean ({b_best:.1} best) on {BIG} rows, {e_mean:.1} ms mean ({e_best:.1} best) on an empty ledger (goal < 200 ms)"
    );

    // 3. 50 asks in 2 processes against a budget for 10.
    let (spent, ok, served) = fifty_asks(&root);
    println!(
        "50 concurrent asks in 2 processes, budget $10 at $1 each: spent ${spent:.2}, {ok} succeeded, {served} requests reached the server (goal: ≤ $10, exactly 10)"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// `n` calls' open + settle on `ledger`; seconds.
async fn cycle(ledger: &Ledger, n: usize) -> f64 {
    let row = Row {
        tier: Some("cheap".into()),
        task: Some("bench".into()),
        provider: "openrouter".into(),
        model: "anthropic/claude-sonnet-4.5".into(),
        ..Row::default()
    };
    let t = Instant::now();
    for _ in 0..n {
        let Opened::Open(open) = ledger
            .open(row.clone(), 1e-6, Some((1e12, None)))
            .await
            .expect("open")
        else {
            panic!("refused")
        };
        let done = Row {
            cost: 1e-6,
            cost_source: "provider".into(),
            outcome: baton::core::llm::ledger::Outcome::Ok,
            sent: true,
            tokens_in: 10,
            tokens_out: 5,
            ..row.clone()
        };
        ledger.settle(&open, done, None).await.expect("settle");
    }
    t.elapsed().as_secs_f64()
}

fn baton_cmd(root: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
    for var in [
        "BATON_FLEET",
        "OPENROUTER_API_KEY",
        "OPENROUTER_BASE_URL",
        "OLLAMA_HOST",
        "XDG_STATE_HOME",
    ] {
        c.env_remove(var);
    }
    c.env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("BATON_STATE_DIR", state)
        .stdin(Stdio::null());
    c
}

/// Two `baton run` processes of 25 concurrent asks each, $1 per answer, budget $10: (spent, ok, requests).
fn fifty_asks(root: &Path) -> (f64, u64, usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("stub runtime");
        rt.block_on(async move {
            let stub = Stub::start(|req, _| {
                let model = req.json()["model"].as_str().unwrap_or("?").to_string();
                Reply::sse(server::sse(&model, &["x"], 1, 1, Some(1.0)), 64)
                    .slow(Duration::from_millis(20))
            })
            .await;
            tx.send(stub.url.clone()).expect("send url");
            let _ = stop_rx.await;
            stub.count()
        })
    });
    let url = rx.recv().expect("stub url");
    let dir = root.join("fifty");
    std::fs::create_dir_all(&dir).expect("dir");
    let fleet = dir.join("fleet.lua");
    std::fs::write(
        &fleet,
        format!(
            r#"return {{
  hosts = {{}},
  tiers = {{ {{ name = "cheap", provider = "openrouter", model = "m", price = {{ input = 0, output = 1000000 }} }} }},
  tasks = {{ gap_analysis = {{ tier = "cheap" }} }},
  openrouter = {{ base_url = "{url}/v1" }},
  budget = {{ monthly_usd = 10, alert_at = 0.9 }},
}}"#
        ),
    )
    .expect("fleet");
    let script = dir.join("asks.lua");
    std::fs::write(
        &script,
        r#"local fns = {}
for i = 1, 25 do fns[i] = function() return route.ask("gap_analysis", "q" .. i, { max_tokens = 1 }) end end
baton.gather(fns, { check = false })"#,
    )
    .expect("script");
    let state: PathBuf = dir.join("state");
    let children: Vec<_> = (0..2)
        .map(|_| {
            baton_cmd(root, &state)
                .env("BATON_FLEET", &fleet)
                .env("OPENROUTER_API_KEY", "sk-bench-not-a-real-key")
                .args(["run", script.to_str().expect("path")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("baton run")
        })
        .collect();
    for mut c in children {
        c.wait().expect("wait");
    }
    let _ = stop_tx.send(());
    let served = server.join().expect("stub thread");
    let conn = rusqlite::Connection::open(state.join("baton.db")).expect("db");
    let (spent, ok): (f64, i64) = conn
        .query_row(
            "SELECT COALESCE(SUM(cost), 0), COUNT(*) FILTER (WHERE outcome = 'ok') FROM llm_ledger",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query");
    (spent, ok as u64, served)
}

//! Issue 16, every dollar counted: usage on OpenAI-compatible streams (asked for, else estimated), the
//! provider's `/key` as the fleet-wide month, key limits, direct calls booked, calls of killed processes
//! settled as interrupted, concurrent first use of a fresh state directory, a ledger of a million rows.
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::core::fleet::Fleet;
use baton::core::llm::ledger::{Ledger, Opened, Row};
use baton::core::llm::ollama::Ollama;
use baton::core::llm::openai::CostSource;
use baton::core::llm::route::{AskOptions, Hooks, Outcome, RouteError, Router, TaskSpec};
use baton::core::llm::{ErrorKind, Message};
use baton::core::state::State;
use serde_json::json;

use super::server::{self, Reply, Stub};
use super::{KEY, openai_client, or_req};
use crate::common::{Env, Out, TempDir};

const SONNET: &str = "anthropic/claude-sonnet-4.5";

/// A router whose only tier, `cheap`, is the OpenAI-compatible endpoint at `base` (`…/v1`, or OpenRouter's
/// `…/api/v1`), priced `price` (USD per million tokens, in/out), over the state directory `dir`.
fn router(base: &str, dir: &std::path::Path, price: (f64, f64), budget: Option<f64>) -> Router {
    let mut fleet = json!({
        "tiers": [{"name": "cheap", "provider": "openrouter", "model": SONNET,
                   "price": {"input": price.0, "output": price.1}}],
        "tasks": {"gap_analysis": {"tier": "cheap"}}
    });
    if let Some(b) = budget {
        fleet["budget"] = json!({"monthly_usd": b, "alert_at": 0.9});
    }
    let fleet = Fleet::from_deserializer(fleet).unwrap();
    // `openai_client` appends `/v1`.
    let base = base.strip_suffix("/v1").unwrap();
    Router::new(
        &fleet,
        Ollama::default(),
        openai_client(base),
        Ledger::new(State::new(dir)),
    )
}

async fn ask(r: &Router, max_tokens: u32) -> Result<baton::core::llm::route::Answer, RouteError> {
    r.ask(
        &TaskSpec::kind("gap_analysis"),
        vec![Message::new("user", "hi")],
        &AskOptions {
            max_tokens: Some(max_tokens),
            ..AskOptions::default()
        },
        &mut Hooks::default(),
    )
    .await
}

fn rows(dir: &std::path::Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(dir.join("baton.db")).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Null => "nil".into(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Blob(_) => "blob".into(),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// llama.cpp's server sends usage only when asked: baton asks on every streamed request, so a priced tier
/// records real token counts and their cost.
#[tokio::test]
async fn streams_ask_for_usage_and_a_priced_tier_is_never_free() {
    let llama = Stub::start(|req, _| {
        Reply::sse(server::sse_usage_if_asked(req, &["Hel", "lo"], 12, 3), 16)
    })
    .await;
    let c = openai_client(&llama.url)
        .chat(
            &or_req("local-gguf"),
            Some(baton::core::fleet::Price {
                input: 3.0,
                output: 15.0,
            }),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        llama.requests()[0].json()["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(
        (c.answer.text.as_str(), c.tokens_in, c.tokens_out),
        ("Hello", 12, 3)
    );
    assert_eq!(c.cost_source, CostSource::Pricing);
    assert!(
        (c.cost - (12.0 * 3.0 + 3.0 * 15.0) / 1e6).abs() < 1e-15,
        "{}",
        c.cost
    );
}

/// A server that never sends usage: tokens are estimated from the prompt and the answer and priced by the
/// tier (`cost_source = "estimate"`), in the answer and in the ledger.
#[tokio::test]
async fn a_stream_without_usage_is_estimated_and_booked() {
    let silent_usage = Stub::start(|req, _| {
        let model = req.json()["model"].as_str().unwrap_or("?").to_string();
        let chunk = json!({"id": "x", "model": model, "choices": [{"index": 0, "delta": {"content": "abcdef"}}]});
        Reply::sse(format!("data: {chunk}\n\ndata: [DONE]\n\n"), 64)
    })
    .await;
    let tmp = TempDir::new("budget-estimate");
    let r = router(
        &format!("{}/v1", silent_usage.url),
        tmp.path(),
        (3.0, 15.0),
        None,
    );
    let a = ask(&r, 50).await.unwrap();
    // "hi": 1 + 4 tokens of prompt; "abcdef": 2 tokens of answer.
    assert_eq!((a.tokens_in, a.tokens_out), (5, 2));
    assert!(
        (a.cost - (5.0 * 3.0 + 2.0 * 15.0) / 1e6).abs() < 1e-15,
        "{}",
        a.cost
    );
    let booked = rows(
        tmp.path(),
        "SELECT outcome, cost_source, tokens_in, tokens_out, cost > 0 FROM llm_ledger",
    );
    assert_eq!(booked, [["ok", "estimate", "5", "2", "1"]]);
}

/// Two state directories sharing one key, as two machines do: A spends $3 of a $3 budget; B, whose own
/// ledger is empty, sees it through the provider's `/key` and refuses, naming the provider's figure.
#[tokio::test]
async fn two_machines_share_one_budget_through_the_provider() {
    let charged = Arc::new(Mutex::new(0.0_f64));
    let c = charged.clone();
    let provider = Stub::start(move |req, _| {
        if req.method == "GET" && req.path == "/api/v1/key" {
            assert_eq!(
                req.header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            );
            let spent = *c.lock().unwrap();
            return Reply::json(200, server::key_info(spent, spent, None));
        }
        assert_eq!(req.path, "/api/v1/chat/completions");
        *c.lock().unwrap() += 1.0;
        Reply::sse(server::sse(SONNET, &["ok"], 1, 1, Some(1.0)), 64)
    })
    .await;
    let base = format!("{}/api/v1", provider.url);
    let (a_dir, b_dir) = (
        TempDir::new("budget-machine-a"),
        TempDir::new("budget-machine-b"),
    );
    // $1 per output token, one token: each ask reserves exactly $1.
    let a = router(&base, a_dir.path(), (0.0, 1e6), Some(3.0));
    for _ in 0..3 {
        ask(&a, 1).await.unwrap();
    }
    assert!(ask(&a, 1).await.is_err(), "A's own ledger is full");
    let b = router(&base, b_dir.path(), (0.0, 1e6), Some(3.0));
    let e = ask(&b, 1).await.unwrap_err();
    let RouteError::Exhausted(attempts) = &e else {
        panic!("{e}")
    };
    assert_eq!(attempts[0].outcome, Outcome::Budget);
    let why = attempts[0].err.as_deref().unwrap();
    assert!(
        why.contains("$3.00 per the provider's usage_monthly"),
        "{why}"
    );
    assert_eq!(*charged.lock().unwrap(), 3.0, "B sent nothing");
    // The provider's figure is cached in B's state database.
    let cached = rows(b_dir.path(), "SELECT base, usage_monthly FROM llm_provider");
    assert_eq!(cached, [[base.clone(), "3".to_string()]]);
}

/// A `/key` that cannot be read leaves the ledger in charge: the ask goes on.
#[tokio::test]
async fn an_unreadable_provider_usage_falls_back_to_the_ledger() {
    let provider = Stub::start(|req, _| {
        if req.path.ends_with("/key") {
            return Reply::json(500, json!({"error": {"message": "down"}}));
        }
        Reply::sse(server::sse(SONNET, &["ok"], 1, 1, Some(0.5)), 64)
    })
    .await;
    let tmp = TempDir::new("budget-key-down");
    let r = router(
        &format!("{}/api/v1", provider.url),
        tmp.path(),
        (0.0, 1e6),
        Some(3.0),
    );
    assert_eq!(ask(&r, 1).await.unwrap().cost, 0.5);
    assert_eq!(ask(&r, 1).await.unwrap().cost, 0.5);
    // One failed fetch (no retries) is not tried again within the minute.
    let keys = provider
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/key"))
        .count();
    assert_eq!(keys, 1);
}

/// OpenRouter's two forms of "this key is over its own limit": "key limit reached", not retried, and the
/// attempt's outcome is `budget`.
#[tokio::test]
async fn key_limit_is_reached_not_retried() {
    for (status, body) in [
        (
            402,
            json!({"error": {"code": 402, "message": "Key limit exceeded (monthly limit)",
                   "metadata": {"limit_source": "openrouter_key_limit"}}}),
        ),
        (
            403,
            json!({"error": {"code": 403, "message": "Key limit exceeded"}}),
        ),
    ] {
        let provider = Stub::start(move |_, _| Reply::json(status, body.clone())).await;
        let tmp = TempDir::new("budget-key-limit");
        let r = router(
            &format!("{}/v1", provider.url),
            tmp.path(),
            (3.0, 15.0),
            None,
        );
        let e = ask(&r, 10).await.unwrap_err();
        let RouteError::Exhausted(attempts) = &e else {
            panic!("{e}")
        };
        assert_eq!(attempts[0].outcome, Outcome::Budget, "{status}");
        assert!(
            attempts[0]
                .err
                .as_deref()
                .unwrap()
                .contains("key limit reached"),
            "{e}"
        );
        assert_eq!(provider.count(), 1, "{status} is not retried");
        let booked = rows(tmp.path(), "SELECT outcome, cost FROM llm_ledger");
        assert_eq!(booked, [["budget", "0"]]);
        let kind = openai_client(&provider.url)
            .chat(&or_req("m"), None, None, None)
            .await
            .unwrap_err()
            .kind;
        assert!(matches!(kind, ErrorKind::KeyLimit(_)), "{kind:?}");
    }
}

/// A fleet with one cheap tier at `or_url` ($1 per output token) and a budget of $2.
fn fleet_lua(or_url: &str) -> String {
    format!(
        r#"return {{
  hosts = {{}},
  tiers = {{ {{ name = "cheap", provider = "openrouter", model = "{SONNET}", price = {{ input = 0, output = 1000000 }} }} }},
  openrouter = {{ base_url = "{or_url}/v1" }},
  budget = {{ monthly_usd = 2, alert_at = 0.9 }},
}}"#
    )
}

/// Direct `openrouter.chat` calls reserve and record like `route.ask` (task and tier nil); once the
/// budget is spent the next one is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_calls_are_booked_and_refused_over_budget() {
    let provider =
        Stub::start(|_, _| Reply::sse(server::sse(SONNET, &["ok"], 1, 1, Some(1.0)), 64)).await;
    let env = Env::new("budget-direct")
        .with_fleet(&fleet_lua(&provider.url))
        .var("OPENROUTER_API_KEY", KEY);
    let script = format!(
        r#"
        local req = {{ model = "{SONNET}", messages = {{ {{ role = "user", content = "hi" }} }}, max_tokens = 1 }}
        for i = 1, 2 do print(openrouter.chat(req).cost) end
        req.check = false
        local r = openrouter.chat(req)
        print(r.ok, r.err)
        "#
    );
    let out = tokio::task::spawn_blocking(move || {
        let out = env.run_lua("direct.lua", &script, &[]);
        (env, out)
    })
    .await
    .unwrap();
    let (env, out) = out;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["1", "1"], "{}", out.stdout);
    assert!(
        lines[2].starts_with("false\topenrouter.chat(")
            && lines[2].contains(
                "over budget: worst case $1.00 does not fit what is left of $2.00 this month"
            ),
        "{}",
        out.stdout
    );
    assert_eq!(provider.count(), 2, "the third call was not sent");
    let booked = rows(
        &env.state_dir(),
        "SELECT task, tier, provider, model, outcome, cost, sent, script LIKE '%direct.lua' FROM llm_ledger ORDER BY id",
    );
    let ok = ["nil", "nil", "openrouter", SONNET, "ok", "1", "1", "1"];
    let refused = ["nil", "nil", "openrouter", SONNET, "budget", "0", "0", "1"];
    assert_eq!(booked, [ok, ok, refused]);
}

/// `kill -9` of a process mid-call: its row was written before the request; the next process settles it
/// at once as interrupted at its reserved cost, and `baton spend` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_call_is_settled_as_interrupted_at_once() {
    let provider = Stub::start(|_, _| Reply::Silent).await;
    let env = Env::new("budget-kill")
        .with_fleet(&fleet_lua(&provider.url))
        .var("OPENROUTER_API_KEY", KEY);
    let script = env.dir.write(
        "hang.lua",
        format!(
            r#"openrouter.chat{{ model = "{SONNET}", messages = {{ {{ role = "user", content = "hi" }} }}, max_tokens = 1 }}"#
        ),
    );
    let mut child = env
        .cmd()
        .args(["run", script.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = env.state_dir();
    let sent = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if state.join("baton.db").exists() {
                let conn = rusqlite::Connection::open(state.join("baton.db")).unwrap();
                let n: i64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM llm_ledger WHERE outcome = 'sent'",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap_or(0);
                if n == 1 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    })
    .await
    .unwrap();
    assert!(sent, "the row was not written before the request");
    while provider.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let out = env.baton(&["spend", "--json"]);
        (env, out)
    })
    .await
    .unwrap();
    let (env, out) = out;
    out.ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["ledger"],
        json!({"spent": 1.0, "held": 0.0, "interrupted": 1.0})
    );
    let booked = rows(
        &env.state_dir(),
        "SELECT outcome, cost, cost_source, err LIKE '%ended with the call under way' FROM llm_ledger",
    );
    assert_eq!(booked, [["interrupted", "1", "reserved", "1"]]);
}

/// Five processes using one fresh state directory at the same moment: all succeed.
#[test]
fn concurrent_first_use_of_a_fresh_state_dir_never_fails() {
    for trial in 0..3 {
        let env = Env::new(&format!("budget-fresh-{trial}"));
        let script = env
            .dir
            .write("b.lua", "local b = route.budget(); print(b.ledger.spent)");
        let children: Vec<_> = (0..5)
            .map(|_| {
                let mut c: Command = env.cmd();
                c.args(["run", script.to_str().unwrap()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        for child in children {
            let out: Out = crate::common::wait_within(child, Duration::from_secs(60));
            out.ok();
            assert_eq!(out.stdout, "0\n");
        }
    }
}

/// A ledger of a million rows this month: a reservation sees exactly their sum (the running total) and
/// the spend report adds them up. (How long it takes: benches/ledger.rs.)
#[tokio::test]
async fn a_million_rows_reserve_against_their_sum() {
    let tmp = TempDir::new("budget-million");
    let ledger = Ledger::new(State::new(tmp.path()));
    ledger.month().await.unwrap();
    ledger.seed_month(1_000_000, 0.25e-6).unwrap();
    let row = || Row {
        provider: "openrouter".into(),
        model: SONNET.into(),
        ..Row::default()
    };
    // $0.25 spent: $0.70 more fits a $1 budget, $0.80 does not.
    let t = ledger.month().await.unwrap();
    assert!((t.spent - 0.25).abs() < 1e-9, "{t:?}");
    let refused = ledger.open(row(), 0.8, Some((1.0, None))).await.unwrap();
    assert!(matches!(refused, Opened::Refused(_)), "{refused:?}");
    let Opened::Open(open) = ledger.open(row(), 0.7, Some((1.0, None))).await.unwrap() else {
        panic!("$0.70 fits")
    };
    ledger
        .settle(
            &open,
            Row {
                cost: 0.1,
                outcome: baton::core::llm::ledger::Outcome::Ok,
                sent: true,
                cost_source: "provider".into(),
                ..row()
            },
            None,
        )
        .await
        .unwrap();
    let spend = ledger
        .spend(
            baton::core::llm::ledger::Period::Month,
            baton::core::llm::ledger::GroupBy::Tier,
        )
        .unwrap();
    let calls: u64 = spend.iter().map(|s| s.calls).sum();
    let cost: f64 = spend.iter().map(|s| s.cost).sum();
    assert_eq!(calls, 1_000_001);
    assert!((cost - 0.35).abs() < 1e-9, "{cost}");
}

/// A reported cost of 1e308 is no cost: the reserved worst case is booked (so `spend` never shows `$inf`).
/// A real cost above the reservation is booked as it is, and the next reservation sees the overrun.
#[tokio::test]
async fn implausible_costs_are_replaced_and_overruns_counted() {
    let costs = [1e308, 2.5];
    let provider = Stub::start(move |_, i| {
        Reply::sse(
            server::sse(SONNET, &["ok"], 1, 1, Some(costs[i.min(1)])),
            64,
        )
    })
    .await;
    let tmp = TempDir::new("budget-absurd");
    // Each ask reserves $1 of a $3.2 budget.
    let r = router(
        &format!("{}/v1", provider.url),
        tmp.path(),
        (0.0, 1e6),
        Some(3.2),
    );
    assert_eq!(
        ask(&r, 1).await.unwrap().cost,
        1.0,
        "the reserved worst case"
    );
    assert_eq!(
        ask(&r, 1).await.unwrap().cost,
        2.5,
        "an overrun is booked as it is"
    );
    // $3.50 spent: nothing more fits.
    let e = ask(&r, 1).await.unwrap_err().to_string();
    assert!(e.contains("spent $3.50"), "{e}");
    assert_eq!(provider.count(), 2);
    let booked = rows(
        tmp.path(),
        "SELECT cost, cost_source FROM llm_ledger WHERE sent = 1 ORDER BY id",
    );
    assert_eq!(booked, [["1", "reserved"], ["2.5", "provider"]]);
}

/// `baton budget sync`: the key baton uses is found by its label among the management key's keys and
/// gets the fleet's budget as its own monthly limit; neither key is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_sync_sets_the_keys_monthly_limit() {
    const MANAGEMENT: &str = "sk-or-v1-management-secret-987654321";
    let provider = Stub::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/v1/key") => Reply::json(200, server::key_info(1.0, 0.5, None)),
        ("GET", "/api/v1/keys") if req.header("authorization") == Some(&format!("Bearer {MANAGEMENT}")) => {
            Reply::json(
                200,
                json!({"data": [
                    {"hash": "other-hash", "label": "sk-or-v1-zzz...zzz", "name": "ci", "limit": null},
                    {"hash": "f01d-hash", "label": "sk-or-v1-abc...xyz", "name": "baton", "limit": null}
                ]}),
            )
        }
        ("PATCH", "/api/v1/keys/f01d-hash") => Reply::json(200, json!({"data": {"hash": "f01d-hash"}})),
        _ => Reply::json(401, json!({"error": {"message": "wrong key or path", "code": 401}})),
    })
    .await;
    let env = Env::new("budget-sync")
        .with_fleet(&fleet_lua(&format!("{}/api", provider.url)))
        .var("OPENROUTER_API_KEY", KEY);
    let no_key = env.baton(&["budget", "sync"]);
    no_key.expect_code(1);
    assert!(
        no_key.stderr.contains("OPENROUTER_MANAGEMENT_KEY"),
        "{}",
        no_key.stderr
    );
    let env = env.var("OPENROUTER_MANAGEMENT_KEY", MANAGEMENT);
    let out = tokio::task::spawn_blocking(move || env.baton(&["budget", "sync"]))
        .await
        .unwrap();
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "key sk-or-v1-abc...xyz: limit $2.00 per month (resets monthly, UTC), enforced by {}/api/v1\n",
            provider.url
        )
    );
    assert!(!out.stdout.contains(KEY) && !out.stderr.contains(MANAGEMENT));
    let patch = provider
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("a PATCH");
    assert_eq!(
        patch.json(),
        json!({"limit": 2.0, "limit_reset": "monthly"})
    );
    assert_eq!(
        patch.header("authorization"),
        Some(format!("Bearer {MANAGEMENT}").as_str())
    );
}

//! The router over an Ollama stub and an OpenAI-compatible stub: escalation, cooldown, budget, ledger.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::core::fleet::Fleet;
use baton::core::llm::ledger::Ledger;
use baton::core::llm::ollama::Ollama;
use baton::core::llm::route::{
    Answer, AskOptions, Hooks, Outcome, RouteError, Router, TaskSpec, Verdict,
};
use baton::core::llm::{LocalFuture, Message, Timeouts};
use baton::core::state::State;
use serde_json::json;

use super::server::{Reply, Stub, refused_url};
use super::{openai_client, or_stub_body};

struct Rig {
    router: Router,
    dir: std::path::PathBuf,
}

impl Rig {
    /// One ask without hooks.
    async fn ask(&self, kind: &str, prompt: &str, opts: &AskOptions) -> Result<Answer, RouteError> {
        self.router
            .ask(
                &TaskSpec::kind(kind),
                msgs(prompt),
                opts,
                &mut Hooks::default(),
            )
            .await
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "baton-it-llm-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// A router over `local` (Ollama at `ollama_url`), `cheap` and `premium` (OpenAI-compatible at `or_url`).
fn rig(ollama_url: &str, or_url: &str, budget: Option<f64>, prices: (f64, f64)) -> Rig {
    let mut fleet = json!({
        "hosts": {"engine": {"ollama": ollama_url, "ollama_parallel": 4}},
        "tiers": [
            {"name": "local", "provider": "ollama", "host": "engine", "models": {"code": "qwen2.5-coder:32b", "reason": "deepseek-r1:32b"}},
            {"name": "cheap", "provider": "openrouter", "model": "anthropic/claude-sonnet-4.5", "price": {"input": prices.0, "output": prices.1}},
            {"name": "premium", "provider": "openrouter", "model": "anthropic/claude-opus-4.6", "price": {"input": prices.0 * 5.0, "output": prices.1 * 5.0}}
        ],
        "tasks": {"code_generation": {"tier": "local", "model": "code"}, "gap_analysis": {"tier": "cheap"}}
    });
    if let Some(b) = budget {
        fleet["budget"] = json!({"monthly_usd": b, "alert_at": 0.5});
    }
    let fleet = Fleet::from_deserializer(fleet).unwrap();
    let dir = temp_dir("route");
    let ollama = Ollama::new(Timeouts {
        connect: Duration::from_secs(1),
        response: Duration::from_millis(400),
        idle: Duration::from_millis(400),
        ..Timeouts::default()
    });
    let router = Router::new(
        &fleet,
        ollama,
        openai_client(or_url),
        Ledger::new(State::new(&dir)),
    );
    Rig { router, dir }
}

fn ledger_outcomes(rig: &Rig) -> Vec<(String, String, f64)> {
    let state = State::new(&rig.dir);
    state
        .with(|c| {
            let mut s = c.prepare("SELECT tier, outcome, cost FROM llm_ledger ORDER BY id")?;
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .unwrap()
}

fn msgs(text: &str) -> Vec<Message> {
    vec![Message::new("user", text)]
}

#[tokio::test]
async fn route_escalates_on_offline_and_cools_down() {
    let cloud = Stub::start(or_stub_body("from the cloud", 0.01)).await;
    let r = rig(&refused_url().await, &cloud.url, None, (3.0, 15.0));
    let a = r
        .ask("code_generation", "write", &AskOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (
            a.text.as_str(),
            a.tier.as_str(),
            a.provider,
            a.model.as_str()
        ),
        (
            "from the cloud",
            "cheap",
            "openrouter",
            "anthropic/claude-sonnet-4.5"
        )
    );
    assert_eq!(a.attempts.len(), 2);
    assert_eq!(
        (
            a.attempts[0].tier.as_str(),
            a.attempts[0].model.as_str(),
            a.attempts[0].outcome
        ),
        ("local", "qwen2.5-coder:32b", Outcome::Offline)
    );
    assert!(
        a.attempts[0]
            .err
            .as_deref()
            .unwrap()
            .ends_with("connection refused")
    );
    assert_eq!((a.cost, a.tokens_in, a.tokens_out), (0.01, 10, 5));
    // Now local is cooling down: skipped without a request, and pick says so.
    let p = r.router.pick(&TaskSpec::kind("code_generation")).unwrap();
    assert_eq!(p.tier, "cheap");
    let a = r
        .ask("code_generation", "again", &AskOptions::default())
        .await
        .unwrap();
    assert!(
        a.attempts[0]
            .err
            .as_deref()
            .unwrap()
            .starts_with("skipped for"),
        "{:?}",
        a.attempts[0]
    );
    let rows = ledger_outcomes(&r);
    assert_eq!(
        rows.iter()
            .map(|(t, o, _)| format!("{t}:{o}"))
            .collect::<Vec<_>>(),
        ["local:offline", "cheap:ok", "local:offline", "cheap:ok"]
    );
}

#[tokio::test]
async fn route_timeout_cools_down_without_waiting_again() {
    let silent = Stub::start(|_, _| Reply::Silent).await;
    let cloud = Stub::start(or_stub_body("ok", 0.0)).await;
    let r = rig(&silent.url, &cloud.url, None, (3.0, 15.0));
    let a = r
        .ask("code_generation", "x", &AskOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (a.attempts[0].outcome, a.tier.as_str()),
        (Outcome::Offline, "cheap")
    );
    // The second ask passes the cooling endpoint over without sending to it (so without waiting on it):
    // the stub saw one request, and the attempt says why it was skipped.
    let b = r
        .ask("code_generation", "x", &AskOptions::default())
        .await
        .unwrap();
    assert_eq!(silent.count(), 1, "the cooling endpoint was asked again");
    assert_eq!(
        (b.attempts[0].outcome, b.tier.as_str()),
        (Outcome::Offline, "cheap")
    );
    let why = b.attempts[0].err.as_deref().unwrap_or_default();
    assert!(why.starts_with("skipped for "), "{why}");
}

#[tokio::test]
async fn route_escalates_on_error_and_on_rejection() {
    let local = Stub::start(|_, _| {
        Reply::json(500, json!({"error": "llama runner process has terminated"}))
    })
    .await;
    let cloud = Stub::start(or_stub_body("answer", 0.02)).await;
    let r = rig(&local.url, &cloud.url, None, (3.0, 15.0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut accept = move |a: &baton::core::llm::route::Answer| {
        s.lock()
            .unwrap()
            .push((a.tier.clone(), a.text.clone(), a.attempts.len()));
        let v = if a.tier == "cheap" {
            Verdict::Reject(Some("too vague".into()))
        } else {
            Verdict::Accept
        };
        Box::pin(async move { Ok(v) }) as LocalFuture<'static, _>
    };
    let mut hooks = Hooks {
        accept: Some(&mut accept),
        ..Hooks::default()
    };
    let a = r
        .router
        .ask(
            &TaskSpec::kind("code_generation"),
            msgs("x"),
            &AskOptions::default(),
            &mut hooks,
        )
        .await
        .unwrap();
    assert_eq!(a.tier, "premium");
    let outcomes: Vec<_> = a
        .attempts
        .iter()
        .map(|x| (x.tier.as_str(), x.outcome, x.err.clone()))
        .collect();
    assert_eq!(
        outcomes[1],
        ("cheap", Outcome::Rejected, Some("too vague".to_string()))
    );
    assert_eq!(outcomes[0].1, Outcome::Error);
    assert!(
        outcomes[0]
            .2
            .as_deref()
            .unwrap()
            .contains("llama runner process has terminated")
    );
    assert_eq!(outcomes[2].1, Outcome::Ok);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("cheap".to_string(), "answer".to_string(), 2),
            ("premium".to_string(), "answer".to_string(), 3)
        ]
    );
    assert!(
        (a.cost - 0.04).abs() < 1e-12,
        "both paid attempts count: {}",
        a.cost
    );
}

#[tokio::test]
async fn route_max_tier_exhausts_with_every_attempt_listed() {
    let cloud = Stub::start(|_, _| {
        Reply::json(
            400,
            json!({"error": {"code": 400, "message": "context too long"}}),
        )
    })
    .await;
    let r = rig(&refused_url().await, &cloud.url, None, (3.0, 15.0));
    let opts = AskOptions {
        max_tier: Some("cheap".into()),
        ..AskOptions::default()
    };
    let e = r.ask("lint", "x", &opts).await.unwrap_err();
    let RouteError::Exhausted(attempts) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        attempts.iter().map(|a| a.tier.as_str()).collect::<Vec<_>>(),
        ["local", "cheap"]
    );
    let text = e.to_string();
    assert!(
        text.starts_with("no tier left after 2 attempts: local (qwen2.5-coder:32b): offline: "),
        "{text}"
    );
    assert!(
        text.contains("cheap (anthropic/claude-sonnet-4.5): error: ")
            && text.contains("HTTP 400: context too long"),
        "{text}"
    );
    assert_eq!(cloud.count(), 1);
}

#[tokio::test]
async fn route_skips_tiers_over_budget() {
    let cloud = Stub::start(or_stub_body("never", 0.0)).await;
    // Worst case for cheap: 4096 output tokens at $15/M ≈ $0.06 > $0.05 budget.
    let r = rig(&refused_url().await, &cloud.url, Some(0.05), (3.0, 15.0));
    let e = r
        .ask("gap_analysis", "x", &AskOptions::default())
        .await
        .unwrap_err();
    let RouteError::Exhausted(attempts) = e else {
        panic!()
    };
    assert_eq!(
        attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [Outcome::Budget, Outcome::Budget]
    );
    assert_eq!(cloud.count(), 0);
    // With a small max_tokens it fits.
    let opts = AskOptions {
        max_tokens: Some(100),
        ..AskOptions::default()
    };
    let a = r.ask("gap_analysis", "x", &opts).await.unwrap();
    assert_eq!(a.tier, "cheap");
    assert_eq!(cloud.requests()[0].json()["max_tokens"], json!(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route_50_concurrent_asks_never_overspend() {
    // $1 per output token, max_tokens 1, no input price: each ask reserves exactly $1; the budget fits 10.
    let cloud = Stub::start(or_stub_body("x", 1.0)).await;
    let r = rig(
        &refused_url().await,
        &cloud.url,
        Some(10.0),
        (0.0, 1_000_000.0),
    );
    let opts = AskOptions {
        max_tokens: Some(1),
        ..AskOptions::default()
    };
    let spec = TaskSpec::kind("gap_analysis");
    let asks = (0..50).map(|_| async {
        let mut hooks = Hooks::default();
        r.router
            .ask(&spec, msgs("x"), &opts, &mut hooks)
            .await
            .is_ok()
    });
    let ok = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter(|&x| x)
        .count();
    let rows = ledger_outcomes(&r);
    let spent: f64 = rows.iter().map(|(_, _, c)| c).sum();
    assert!(spent <= 10.0 + 1e-9, "spent {spent} of a $10 budget");
    assert_eq!(ok, 10);
    assert_eq!(cloud.count(), 10);
    assert_eq!(
        rows.iter()
            .filter(|(t, o, _)| t == "cheap" && o == "ok")
            .count(),
        10
    );
    assert_eq!(
        rows.iter().filter(|(_, o, _)| o == "budget").count(),
        80,
        "40 asks × cheap and premium skipped"
    );
}

#[tokio::test]
async fn route_alert_fires_once_when_crossing_alert_at() {
    let cloud = Stub::start(or_stub_body("x", 0.3)).await;
    let r = rig(&refused_url().await, &cloud.url, Some(1.0), (0.0, 1.0));
    let alerts = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let a = alerts.clone();
        let mut on_alert = move |x: baton::core::llm::ledger::Alert| {
            a.lock().unwrap().push((x.spent, x.limit));
            Box::pin(async { Ok(()) }) as LocalFuture<'static, _>
        };
        let mut hooks = Hooks {
            on_alert: Some(&mut on_alert),
            ..Hooks::default()
        };
        r.router
            .ask(
                &TaskSpec::kind("gap_analysis"),
                msgs("x"),
                &AskOptions::default(),
                &mut hooks,
            )
            .await
            .unwrap();
    }
    let alerts = alerts.lock().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        (alerts[0].0 - 0.6).abs() < 1e-9 && alerts[0].1 == 1.0,
        "{alerts:?}"
    );
}

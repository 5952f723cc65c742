//! Integration tests: the LLM clients and router against in-test servers speaking the real protocols.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::core::fleet::{Fleet, Price};
use baton::core::llm::ledger::Ledger;
use baton::core::llm::ollama::{self, ChatRequest, Endpoint, GenerateRequest, Ollama};
use baton::core::llm::openai::{self, CostSource, OpenAi};
use baton::core::llm::route::{AskOptions, Hooks, Outcome, RouteError, Router, TaskSpec, Verdict};
use baton::core::llm::{ErrorKind, LocalFuture, Message, Retry, Secret, Timeouts};
use baton::core::state::State;
use serde_json::json;

use crate::llm_server::{self, Reply, Stub, refused_url};

const KEY: &str = "sk-or-v1-test-secret-0123456789";

fn ep(url: &str, parallel: u32) -> Endpoint {
    Endpoint {
        name: "engine".into(),
        url: url.into(),
        parallel,
    }
}

fn fast() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_secs(5),
        idle: Duration::from_secs(5),
    }
}

fn quick_retry() -> Retry {
    Retry {
        retries: 3,
        base: Duration::from_millis(10),
        max_wait: Duration::from_secs(5),
        on_connect: true,
    }
}

fn chat_req(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::new("user", "hi")],
        ..Default::default()
    }
}

fn or_req(model: &str) -> openai::ChatRequest {
    openai::ChatRequest {
        model: model.into(),
        messages: vec![Message::new("user", "hi")],
        max_tokens: Some(50),
        ..Default::default()
    }
}

fn openai_client(url: &str) -> OpenAi {
    let mut c = OpenAi::new(
        &format!("{url}/v1"),
        "OPENROUTER_API_KEY",
        Some(Secret::new(KEY)),
        fast(),
    );
    c.retry = quick_retry();
    c
}

/// A token collector usable as an `OnToken`.
type Seen = Arc<Mutex<Vec<String>>>;

fn collector() -> (Seen, impl FnMut(String) -> LocalFuture<'static, Result<(), String>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (seen, move |t: String| {
        s.lock().unwrap().push(t);
        Box::pin(async { Ok(()) }) as LocalFuture<'static, _>
    })
}

// ---------------- ollama ----------------

#[tokio::test]
async fn ollama_chat_streams_many_small_chunks() {
    let pieces: Vec<String> = (0..200).map(|i| format!("t{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let lines = llm_server::ollama_chat("qwen2.5-coder:32b", &refs, 12, 200);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 7)).await;
    let client = Ollama::new(fast());
    let (seen, mut cb) = collector();
    let c = client
        .chat(
            &ep(&stub.url, 4),
            &chat_req("qwen2.5-coder:32b"),
            None,
            Some(&mut cb),
        )
        .await
        .unwrap();
    assert_eq!(c.text, pieces.concat());
    assert_eq!(*seen.lock().unwrap(), pieces);
    assert_eq!((c.tokens_in, c.tokens_out), (12, 200));
    assert_eq!(c.duration, 2.5);
    assert_eq!(c.tokens_per_s, 400.0);
    assert_eq!(
        (c.done_reason.as_str(), c.host.as_str(), c.model.as_str()),
        ("stop", "engine", "qwen2.5-coder:32b")
    );
    let req = &stub.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/api/chat")
    );
    assert_eq!(req.json()["stream"], json!(true));
    assert_eq!(req.json()["messages"][0]["content"], json!("hi"));
}

#[tokio::test]
async fn ollama_generate_passes_options_and_reads_response() {
    let stub =
        Stub::start(|_, _| Reply::ndjson(llm_server::ollama_generate("m", &["a", "b"]), 5)).await;
    let req = GenerateRequest {
        model: "m".into(),
        prompt: "p".into(),
        system: Some("s".into()),
        options: Some(json!({"num_ctx": 8192, "temperature": 0})),
        keep_alive: Some(json!("5m")),
    };
    let c = Ollama::new(fast())
        .generate(&ep(&stub.url, 4), &req, None, None)
        .await
        .unwrap();
    assert_eq!(
        (
            c.text.as_str(),
            c.tokens_in,
            c.tokens_out,
            c.tokens_per_s,
            c.done_reason.as_str()
        ),
        ("ab", 3, 4, 2.0, "length")
    );
    let sent = stub.requests()[0].json();
    assert_eq!(sent["options"], json!({"num_ctx": 8192, "temperature": 0}));
    assert_eq!(
        (sent["system"].as_str(), sent["keep_alive"].as_str()),
        (Some("s"), Some("5m"))
    );
}

#[tokio::test]
async fn ollama_error_line_mid_stream_is_an_error() {
    let mut lines = llm_server::ollama_chat("m", &["partial "], 1, 1);
    lines.truncate(1);
    lines
        .push(json!({"error": "an error was encountered while running the model: unexpected EOF"}));
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 1000)).await;
    let e = Ollama::new(fast())
        .chat(&ep(&stub.url, 4), &chat_req("m"), None, None)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "engine, m: an error was encountered while running the model: unexpected EOF"
    );
}

#[tokio::test]
async fn ollama_404_says_pull() {
    let stub = Stub::start(|_, _| {
        Reply::json(
            404,
            json!({"error": "model \"nope:7b\" not found, try pulling it first"}),
        )
    })
    .await;
    let e = Ollama::new(fast())
        .chat(&ep(&stub.url, 4), &chat_req("nope:7b"), None, None)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "engine, nope:7b: model not found: model \"nope:7b\" not found, try pulling it first (try ollama.pull)"
    );
    assert_eq!(stub.count(), 1, "404 is not retried");
}

#[tokio::test]
async fn ollama_refused_timeout_and_truncation() {
    let client = Ollama::new(fast());
    let e = client
        .chat(&ep(&refused_url().await, 4), &chat_req("m"), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert_eq!(e.to_string(), "engine, m: connection refused");

    let silent = Stub::start(|_, _| Reply::Silent).await;
    let t = Instant::now();
    let e = client
        .chat(
            &ep(&silent.url, 4),
            &chat_req("m"),
            Some(Duration::from_millis(300)),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "engine, m: timeout: no answer within 300ms");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Headers come, then the server goes quiet mid-stream: the idle timeout fires.
    let stalls = Stub::start(|_, _| {
        Reply::ndjson(llm_server::ollama_chat("m", &["a", "b"], 1, 2), 10)
            .slow(Duration::from_millis(800))
    })
    .await;
    let e = client
        .chat(
            &ep(&stalls.url, 4),
            &chat_req("m"),
            Some(Duration::from_millis(200)),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");

    let mut lines = llm_server::ollama_chat("m", &["a", "b"], 1, 2);
    lines.pop();
    let cut = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 4).truncated()).await;
    let e = client
        .chat(&ep(&cut.url, 4), &chat_req("m"), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Truncated, "{e}");
}

#[tokio::test]
async fn ollama_busy_503_is_retried() {
    let stub = Stub::start(|_, n| {
        if n == 0 { Reply::json(503, json!({"error": "server busy, please try again.  maximum pending requests exceeded"})) } else { Reply::ndjson(llm_server::ollama_chat("m", &["ok"], 1, 1), 100) }
    })
    .await;
    let mut client = Ollama::new(fast());
    client.retry = quick_retry();
    let c = client
        .chat(&ep(&stub.url, 4), &chat_req("m"), None, None)
        .await
        .unwrap();
    assert_eq!((c.text.as_str(), stub.count()), ("ok", 2));
}

#[tokio::test]
async fn ollama_limiter_keeps_parallel_in_flight_and_shows_the_queue() {
    let stub = Stub::start(|_, _| {
        Reply::ndjson(llm_server::ollama_chat("m", &["a", "b", "c"], 1, 3), 60)
            .slow(Duration::from_millis(40))
    })
    .await;
    let client = Ollama::new(fast());
    let e = ep(&stub.url, 2);
    let calls: Vec<_> = (0..6)
        .map(|_| client.chat(&e, Box::leak(Box::new(chat_req("m"))), None, None))
        .collect();
    let joined = futures_util::future::join_all(calls);
    let probe = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.queue(&e)
    };
    let (results, q) = tokio::join!(joined, probe);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!((q.running, q.waiting), (2, 4));
    assert_eq!(
        stub.peak(),
        2,
        "the server never saw more than ollama_parallel at once"
    );
    assert_eq!(client.queue(&e).running + client.queue(&e).waiting, 0);
}

#[tokio::test]
async fn ollama_embed_models_loaded_show_version_online_pull() {
    let stub = Stub::start(|req, _| match req.path.as_str() {
        "/api/embed" => Reply::json(200, json!({"model": "nomic-embed-text", "embeddings": [[0.1, 0.2], [0.3, 0.4]]})),
        "/api/tags" => Reply::json(200, json!({"models": [{"name": "qwen2.5-coder:32b", "size": 19_000_000_000u64, "details": {"parameter_size": "32.8B"}}]})),
        "/api/ps" => Reply::json(200, json!({"models": [{"name": "qwen2.5-coder:32b", "size_vram": 21_000_000_000u64, "expires_at": "2026-11-21T11:00:00Z"}]})),
        "/api/show" => Reply::json(200, json!({"details": {"family": "qwen2"}, "capabilities": ["completion"]})),
        "/api/version" => Reply::json(200, json!({"version": "0.12.6"})),
        "/api/pull" => Reply::ndjson(
            vec![
                json!({"status": "pulling manifest"}),
                json!({"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 50}),
                json!({"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 100}),
                json!({"status": "success"}),
            ],
            9,
        ),
        _ => Reply::json(404, json!({"error": "404 page not found"})),
    })
    .await;
    let c = Ollama::new(fast());
    let e = ep(&stub.url, 4);
    let emb = c
        .embed(&e, "nomic-embed-text", &json!(["a", "b"]))
        .await
        .unwrap();
    assert_eq!(emb["embeddings"][1], json!([0.3, 0.4]));
    assert_eq!(
        stub.requests()[0].json(),
        json!({"model": "nomic-embed-text", "input": ["a", "b"]})
    );
    assert_eq!(
        c.list(&e, "/api/tags").await.unwrap()[0]["name"],
        "qwen2.5-coder:32b"
    );
    assert_eq!(
        c.list(&e, "/api/ps").await.unwrap()[0]["size_vram"],
        21_000_000_000u64
    );
    assert_eq!(
        c.show(&e, "qwen2.5-coder:32b").await.unwrap()["details"]["family"],
        "qwen2"
    );
    assert_eq!(c.version(&e).await.unwrap(), "0.12.6");
    assert!(c.online(&e).await);
    assert!(!c.online(&ep(&refused_url().await, 4)).await);
    let silent = Stub::start(|_, _| Reply::Silent).await;
    let t = Instant::now();
    assert!(!c.online(&ep(&silent.url, 4)).await);
    assert!(t.elapsed() < Duration::from_secs(3));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut cb = move |p: ollama::Progress| {
        s.lock().unwrap().push((p.status, p.completed));
        Box::pin(async { Ok(()) }) as LocalFuture<'static, _>
    };
    assert_eq!(
        c.pull(&e, "qwen2.5-coder:32b", Some(&mut cb))
            .await
            .unwrap(),
        "success"
    );
    assert_eq!(seen.lock().unwrap().len(), 4);
    assert_eq!(
        seen.lock().unwrap()[2],
        ("pulling abc".to_string(), Some(100))
    );
}

// ---------------- openai / openrouter ----------------

#[tokio::test]
async fn openrouter_sse_with_comments_and_cost_in_the_final_chunk() {
    let pieces: Vec<String> = (0..150).map(|i| format!("w{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let body = llm_server::sse("anthropic/claude-sonnet-4.5", &refs, 20, 150, Some(0.00231));
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 5)).await;
    let (seen, mut cb) = collector();
    let c = openai_client(&stub.url)
        .chat(
            &or_req("anthropic/claude-sonnet-4.5"),
            Some(Price {
                input: 3.0,
                output: 15.0,
            }),
            None,
            Some(&mut cb),
        )
        .await
        .unwrap();
    assert_eq!(c.text, pieces.concat());
    assert_eq!(seen.lock().unwrap().len(), 150);
    assert_eq!(
        (c.tokens_in, c.tokens_out, c.cost, c.cost_source),
        (20, 150, 0.00231, CostSource::Provider)
    );
    assert_eq!(
        (c.id.as_str(), c.finish_reason.as_deref()),
        ("gen-123", Some("stop"))
    );
    let req = &stub.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let sent = req.json();
    assert_eq!(
        (sent["stream"].clone(), sent["max_tokens"].clone()),
        (json!(true), json!(50))
    );
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn openrouter_cost_from_pricing_or_unknown() {
    let body = llm_server::sse("m", &["x"], 1_000_000, 100_000, None);
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 64)).await;
    let c = openai_client(&stub.url);
    let priced = c
        .chat(
            &or_req("m"),
            Some(Price {
                input: 3.0,
                output: 15.0,
            }),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (priced.cost, priced.cost_source),
        (4.5, CostSource::Pricing)
    );
    let unknown = c.chat(&or_req("m"), None, None, None).await.unwrap();
    assert_eq!(
        (unknown.cost, unknown.cost_source),
        (0.0, CostSource::Unknown)
    );
}

#[tokio::test]
async fn openrouter_429_honours_retry_after_then_succeeds() {
    let body = llm_server::sse("m", &["ok"], 1, 1, Some(0.0));
    let stub = Stub::start(move |_, n| {
        if n == 0 {
            Reply::json(
                429,
                json!({"error": {"code": 429, "message": "Rate limit exceeded"}}),
            )
            .with_header("Retry-After", "1")
        } else {
            Reply::sse(body.clone(), 64)
        }
    })
    .await;
    let mut c = openai_client(&stub.url);
    // A backoff this long would show if Retry-After were ignored.
    c.retry.base = Duration::from_secs(10);
    let t = Instant::now();
    let r = c.chat(&or_req("m"), None, None, None).await.unwrap();
    let waited = t.elapsed();
    assert_eq!((r.text.as_str(), stub.count()), ("ok", 2));
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn openrouter_500_and_reset_are_retried() {
    let body = llm_server::sse("m", &["fine"], 1, 1, Some(0.0));
    let stub = Stub::start(move |_, n| match n {
        0 => Reply::json(
            500,
            json!({"error": {"code": 500, "message": "Internal Server Error"}}),
        ),
        1 => Reply::Reset,
        _ => Reply::sse(body.clone(), 64),
    })
    .await;
    let r = openai_client(&stub.url)
        .chat(&or_req("m"), None, None, None)
        .await
        .unwrap();
    assert_eq!((r.text.as_str(), stub.count()), ("fine", 3));
}

#[tokio::test]
async fn openrouter_4xx_are_not_retried_and_402_says_credits() {
    for (status, expect) in [
        (
            402,
            "openrouter-stub, m: insufficient credits (HTTP 402): Insufficient credits. Add more using https://openrouter.ai/credits",
        ),
        (400, "openrouter-stub, m: HTTP 400: bad request"),
        (
            401,
            "openrouter-stub, m: HTTP 401: No auth credentials found",
        ),
        (403, "openrouter-stub, m: HTTP 403: forbidden"),
    ] {
        let msg = match status {
            402 => "Insufficient credits. Add more using https://openrouter.ai/credits",
            400 => "bad request",
            401 => "No auth credentials found",
            _ => "forbidden",
        };
        let stub = Stub::start(move |_, _| {
            Reply::json(status, json!({"error": {"code": status, "message": msg}}))
        })
        .await;
        let e = openai_client(&stub.url)
            .chat(&or_req("m"), None, None, None)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string()
                .replace(&format!("{}/v1", stub.url), "openrouter-stub"),
            expect
        );
        assert_eq!(stub.count(), 1, "HTTP {status} must not be retried");
    }
}

#[tokio::test]
async fn openrouter_truncated_stream_and_error_chunk() {
    let mut body = llm_server::sse("m", &["a", "b"], 1, 2, None);
    body.truncate(body.find("data: [DONE]").unwrap());
    let cut = Stub::start(move |_, _| Reply::sse(body.clone(), 16).truncated()).await;
    let e = openai_client(&cut.url)
        .chat(&or_req("m"), None, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Truncated, "{e}");

    let err_chunk = json!({"id": "gen-1", "object": "chat.completion.chunk", "error": {"code": "server_error", "message": "Provider disconnected"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]});
    let text = format!(
        "data: {}\n\ndata: {err_chunk}\n\ndata: [DONE]\n\n",
        json!({"choices": [{"delta": {"content": "par"}}]})
    );
    let stub = Stub::start(move |_, _| Reply::sse(text.clone(), 1000)).await;
    let e = openai_client(&stub.url)
        .chat(&or_req("m"), None, None, None)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Server("Provider disconnected (server_error)".into())
    );
}

#[tokio::test]
async fn openrouter_never_answering_times_out() {
    let stub = Stub::start(|_, _| Reply::Silent).await;
    let mut c = openai_client(&stub.url);
    c.retry.retries = 0;
    let t = Instant::now();
    let e = c
        .chat(&or_req("m"), None, Some(Duration::from_millis(250)), None)
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_key_never_appears_in_errors() {
    let stub = Stub::start(|req, _| {
        let echoed = req.header("authorization").unwrap_or_default().to_string();
        Reply::json(
            401,
            json!({"error": {"code": 401, "message": format!("invalid key: {echoed}")}}),
        )
    })
    .await;
    let c = openai_client(&stub.url);
    let e = c.chat(&or_req("m"), None, None, None).await.unwrap_err();
    let shown = format!("{e} {e:?} {c:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("invalid key: Bearer ***"), "{shown}");
    let missing = OpenAi::new(&stub.url, "BATON_TEST_NO_SUCH_KEY", None, fast());
    let e = missing
        .chat(&or_req("m"), None, None, None)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::MissingKey("BATON_TEST_NO_SUCH_KEY".into())
    );
    assert_eq!(stub.count(), 1, "no request without a key");
}

#[tokio::test]
async fn openrouter_models_and_credits() {
    let stub = Stub::start(|req, _| match req.path.as_str() {
        "/v1/models" => Reply::json(200, json!({"data": [{"id": "anthropic/claude-sonnet-4.5", "context_length": 200000, "pricing": {"prompt": "0.000003", "completion": "0.000015"}}]})),
        "/v1/key" => Reply::json(200, json!({"data": {"label": "sk-or-v1-abc...", "limit": 20, "usage": 7.5, "limit_remaining": 12.5, "is_free_tier": false}})),
        _ => Reply::json(404, json!({"error": {"message": "no"}})),
    })
    .await;
    let c = openai_client(&stub.url);
    let models = c.models().await.unwrap();
    assert_eq!(models[0]["pricing"]["completion"], "0.000015");
    let credits = c.credits().await.unwrap();
    assert_eq!(
        (credits.limit, credits.usage, credits.remaining),
        (Some(20.0), 7.5, Some(12.5))
    );
}

// ---------------- route ----------------

struct Rig {
    router: Router,
    dir: std::path::PathBuf,
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

fn or_stub_body(text: &'static str, cost: f64) -> impl Fn(&llm_server::Request, usize) -> Reply {
    move |req, _| {
        let model = req.json()["model"].as_str().unwrap_or("?").to_string();
        Reply::sse(llm_server::sse(&model, &[text], 10, 5, Some(cost)), 64)
    }
}

#[tokio::test]
async fn route_escalates_on_offline_and_cools_down() {
    let cloud = Stub::start(or_stub_body("from the cloud", 0.01)).await;
    let r = rig(&refused_url().await, &cloud.url, None, (3.0, 15.0));
    let a = r
        .router
        .ask(
            &TaskSpec::kind("code_generation"),
            msgs("write"),
            &AskOptions::default(),
            &mut Hooks::default(),
        )
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
        .router
        .ask(
            &TaskSpec::kind("code_generation"),
            msgs("again"),
            &AskOptions::default(),
            &mut Hooks::default(),
        )
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
        .router
        .ask(
            &TaskSpec::kind("code_generation"),
            msgs("x"),
            &AskOptions::default(),
            &mut Hooks::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (a.attempts[0].outcome, a.tier.as_str()),
        (Outcome::Offline, "cheap")
    );
    let t = Instant::now();
    r.router
        .ask(
            &TaskSpec::kind("code_generation"),
            msgs("x"),
            &AskOptions::default(),
            &mut Hooks::default(),
        )
        .await
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "the cooling endpoint was waited on: {:?}",
        t.elapsed()
    );
    assert_eq!(silent.count(), 1);
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
    let e = r
        .router
        .ask(
            &TaskSpec::kind("lint"),
            msgs("x"),
            &opts,
            &mut Hooks::default(),
        )
        .await
        .unwrap_err();
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
        .router
        .ask(
            &TaskSpec::kind("gap_analysis"),
            msgs("x"),
            &AskOptions::default(),
            &mut Hooks::default(),
        )
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
    let a = r
        .router
        .ask(
            &TaskSpec::kind("gap_analysis"),
            msgs("x"),
            &opts,
            &mut Hooks::default(),
        )
        .await
        .unwrap();
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

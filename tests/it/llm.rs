//! Integration tests: the LLM clients and router against in-test servers speaking the real protocols.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::core::fleet::{Fleet, Price};
use baton::core::llm::ledger::Ledger;
use baton::core::llm::ollama::{self, ChatRequest, Endpoint, GenerateRequest, Ollama};
use baton::core::llm::openai::{self, CostSource, OpenAi};
use baton::core::llm::route::{
    Answer, AskOptions, Hooks, Outcome, RouteError, Router, TaskSpec, Verdict,
};
use baton::core::llm::{ErrorKind, HookError, LocalFuture, Message, Retry, Secret, Timeouts};
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

fn collector() -> (
    Seen,
    impl FnMut(String) -> LocalFuture<'static, Result<(), HookError>>,
) {
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
async fn finished_streams_leave_the_connection_reusable() {
    let stub = Stub::start(|req, _| match req.path.as_str() {
        // The end of the chunked body comes a little after the final message.
        "/api/chat" => Reply::ndjson(llm_server::ollama_chat("m", &["a"], 1, 1), 1000)
            .slow(Duration::from_millis(5)),
        _ => Reply::sse(llm_server::sse("m", &["b"], 1, 1, None), 1000)
            .slow(Duration::from_millis(5)),
    })
    .await;
    let ollama = Ollama::new(fast());
    let or = openai_client(&stub.url);
    for _ in 0..5 {
        ollama
            .chat(&ep(&stub.url, 4), &chat_req("m"), None, None)
            .await
            .unwrap();
        or.chat(&or_req("m"), None, None, None).await.unwrap();
    }
    assert_eq!(stub.count(), 10);
    assert_eq!(stub.connections(), 2, "one pooled connection per client");
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
    let t = Instant::now();
    r.ask("code_generation", "x", &AskOptions::default())
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

// ---------------- Lua API, through the real binary ----------------

use crate::common::{Env, Out};

/// A fleet file: `engine` at `ollama_url`, local/cheap/premium tiers, cheap and premium at `or_url`.
fn fleet_lua(ollama_url: &str, or_url: &str, budget: Option<f64>, out_price: f64) -> String {
    let budget = budget.map_or(String::new(), |b| {
        format!("budget = {{ monthly_usd = {b}, alert_at = 0.5 }},")
    });
    format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{ollama_url}", ollama_parallel = 2 }} }},
  tiers = {{
    {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen2.5-coder:32b", reason = "deepseek-r1:32b" }} }},
    {{ name = "cheap", provider = "openrouter", model = "anthropic/claude-sonnet-4.5", price = {{ input = 0, output = {out_price} }} }},
    {{ name = "premium", provider = "openrouter", model = "anthropic/claude-opus-4.6", price = {{ input = 0, output = {premium} }} }},
  }},
  tasks = {{ code_generation = {{ tier = "local", model = "code" }}, gap_analysis = {{ tier = "cheap" }} }},
  openrouter = {{ base_url = "{or_url}/v1" }},
  {budget}
}}"#,
        premium = out_price * 5.0
    )
}

/// Runs `script` with `baton run` off the async runtime, so the stubs keep serving meanwhile.
async fn run_lua(env: Env, script: &str) -> (Env, Out) {
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let out = env.run_lua("play.lua", &script, &[]);
        (env, out)
    })
    .await
    .unwrap()
}

fn db_rows(env: &Env, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_ollama_chat_streams_to_a_yielding_on_token() {
    let pieces: Vec<String> = (0..50).map(|i| format!("p{i},")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let lines = llm_server::ollama_chat("qwen2.5-coder:32b", &refs, 9, 50);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 11)).await;
    let env =
        Env::new("lua-ollama").with_fleet(&fleet_lua(&stub.url, &refused_url().await, None, 1.0));
    let (_env, out) = run_lua(env, r#"
        local seen = {}
        local r = ollama.chat{ model = "qwen2.5-coder:32b", messages = { { role = "user", content = "hi" } },
          options = { num_ctx = 4096 }, on_token = function(piece) seen[#seen + 1] = piece; baton.sleep(0) end }
        print(#seen, seen[1], seen[50], r.text == table.concat(seen), r.host, r.model)
        print(r.tokens_in, r.tokens_out, r.duration, r.tokens_per_s, r.done_reason)
        local q = ollama.queue()
        print(q.running, q.waiting)
    "#).await;
    out.ok();
    assert_eq!(
        out.stdout,
        "50\tp0,\tp49,\ttrue\tengine\tqwen2.5-coder:32b\n9\t50\t2.5\t100\tstop\n0\t0\n"
    );
    assert_eq!(
        stub.requests()[0].json()["options"],
        json!({"num_ctx": 4096})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_ollama_errors_and_argument_checks() {
    let stub = Stub::start(|req, _| match req.path.as_str() {
        "/api/version" => Reply::json(200, json!({"version": "0.12.6"})),
        "/api/tags" => Reply::json(200, json!({"models": [{"name": "a:1b"}, {"name": "b:2b"}]})),
        _ => Reply::json(
            404,
            json!({"error": "model \"zzz\" not found, try pulling it first"}),
        ),
    })
    .await;
    let down = refused_url().await;
    let env = Env::new("lua-ollama-err").with_fleet(&fleet_lua(&stub.url, &down, None, 1.0));
    let script = format!(
        r#"
        local function err(f, ...) local ok, e = pcall(f, ...) assert(not ok, "expected an error") print(tostring(e)) end
        err(ollama.chat, nil)
        err(ollama.chat, {{ model = "m", messages = {{}}, hots = "engine" }})
        err(ollama.chat, {{ model = "zzz", messages = {{ {{ role = "user", content = "x" }} }} }})
        err(ollama.chat, {{ model = "m", messages = {{}}, host = "{down}" }})
        err(ollama.chat, {{ model = "m", messages = {{}}, host = "engin" }})
        local r = ollama.chat{{ model = "m", messages = {{}}, host = "{down}", check = false }}
        print(r.ok, r.err)
        print(ollama.version(), ollama.online(), ollama.online{{ host = "{down}" }}, #ollama.models(), ollama.models()[2].name)
        err(ollama.show, 42)
    "#
    );
    let (_env, out) = run_lua(env, &script).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let down_host = down.clone();
    assert_eq!(
        lines[0],
        "ollama.chat: argument 1 (request) must be a table, got nil"
    );
    assert!(
        lines[1].starts_with("ollama.chat: options.hots: unknown key, did you mean host?"),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "ollama.chat(engine, zzz): model not found: model \"zzz\" not found, try pulling it first (try ollama.pull)"
    );
    assert_eq!(
        lines[3],
        format!("ollama.chat({down_host}, m): connection refused")
    );
    assert!(
        lines[4].starts_with("ollama.chat(engin): unknown host \"engin\", did you mean engine?"),
        "{}",
        lines[4]
    );
    assert_eq!(
        lines[5],
        format!("false\tollama.chat({down_host}, m): connection refused")
    );
    assert_eq!(lines[6], "0.12.6\ttrue\tfalse\t2\tb:2b");
    assert_eq!(
        lines[7],
        "ollama.show: argument 1 (model) must be a string, got number 42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_openrouter_chat_and_the_key_never_leaks() {
    let body = llm_server::sse(
        "anthropic/claude-sonnet-4.5",
        &["Hel", "lo"],
        12,
        2,
        Some(0.0042),
    );
    let stub = Stub::start(move |req, _| match req.path.as_str() {
        "/v1/chat/completions" if req.json()["model"] == "bad" => {
            let echoed = req.header("authorization").unwrap_or_default().to_string();
            Reply::json(401, json!({"error": {"code": 401, "message": format!("User not found for {echoed}")}}))
        }
        "/v1/chat/completions" => Reply::sse(body.clone(), 9),
        "/v1/key" => Reply::json(200, json!({"data": {"limit": null, "usage": 1.25, "limit_remaining": null}})),
        _ => Reply::json(200, json!({"data": [{"id": "x/y", "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]})),
    })
    .await;
    let env = Env::new("lua-openrouter")
        .with_fleet(&fleet_lua(&refused_url().await, &stub.url, None, 15.0))
        .var("OPENROUTER_API_KEY", KEY)
        .var("BATON_LOG", "trace");
    let (env, out) = run_lua(env, r#"
        local toks = {}
        local r = openrouter.chat{ model = "anthropic/claude-sonnet-4.5", messages = { { role = "user", content = "hi" } },
          max_tokens = 20, on_token = function(t) toks[#toks + 1] = t end }
        print(r.text, #toks, r.id, r.tokens_in, r.tokens_out, r.cost, r.cost_source, r.finish_reason)
        local bad = openrouter.chat{ model = "bad", messages = {}, check = false }
        print(bad.ok, bad.err)
        local c = openrouter.credits()
        print(c.limit, c.usage, c.remaining, openrouter.models()[1].id)
        route.ask("gap_analysis", "x", { max_tier = "cheap" })
        print(baton.inspect(openrouter), baton.inspect(baton.fleet.openrouter))
    "#).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Hello\t2\tgen-123\t12\t2\t0.0042\tprovider\tnil");
    assert_eq!(
        lines[1],
        "false\topenrouter.chat(".to_string()
            + &stub.url
            + "/v1, bad): HTTP 401: User not found for Bearer ***"
    );
    assert_eq!(lines[2], "nil\t1.25\tnil\tx/y");
    let db = std::fs::read(env.state_dir().join("baton.db")).unwrap();
    let haystacks = [out.stdout.as_bytes(), out.stderr.as_bytes(), &db];
    for h in haystacks {
        assert!(
            !h.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key leaked"
        );
    }
    assert!(
        !out.stderr.is_empty(),
        "trace logging was on, so something was logged"
    );
    // Without a key: an error naming the variable, and no request.
    let before = stub.count();
    let env =
        Env::new("lua-nokey").with_fleet(&fleet_lua(&refused_url().await, &stub.url, None, 15.0));
    let (_env, out) = run_lua(env, r#"openrouter.chat{ model = "m", messages = {} }"#).await;
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("openrouter.chat(")
            && out
                .stderr
                .contains("no API key: set the environment variable OPENROUTER_API_KEY"),
        "{}",
        out.stderr
    );
    assert_eq!(stub.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_route_pick_ask_escalate_accept_and_spend() {
    let cloud = Stub::start(or_stub_body("cloud says hi", 0.25)).await;
    let local = Stub::start(|_, _| {
        Reply::ndjson(
            llm_server::ollama_chat("qwen2.5-coder:32b", &["local ", "draft"], 5, 2),
            8,
        )
    })
    .await;
    let env = Env::new("lua-route")
        .with_fleet(&fleet_lua(&local.url, &cloud.url, Some(10.0), 15.0))
        .var("OPENROUTER_API_KEY", KEY);
    let (env, out) = run_lua(env, r#"
        local p = route.pick("code_generation")
        print(p.task, p.tier, p.provider, p.host, p.model, p.reason)
        p = route.pick{ kind = "code_generation", min_tier = "cheap" }
        print(p.tier, p.model, p.host)
        local seen
        local r = route.ask("code_generation", "write it", { system = "be terse", max_tokens = 64,
          accept = function(res) seen = res.text if res.tier == "local" then return "too drafty" end return true end })
        print(r.text, r.tier, r.provider, r.model, r.cost, r.tokens_in, r.tokens_out, #r.attempts, seen)
        print(r.attempts[1].tier, r.attempts[1].outcome, r.attempts[1].err, r.attempts[2].outcome)
        for _, row in ipairs(route.spend{ by = "tier" }) do print(row.key, row.calls, row.tokens_in, row.tokens_out, row.cost) end
        print(#route.spend{ period = "day", by = "task" }, route.spend{ by = "model" }[1].key)
        local ok, e = pcall(route.spend, { period = "year" })
        print(e)
        ok, e = pcall(route.pick, { kind = "x", max_tier = "platinum" })
        print(e)
    "#).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "code_generation\tlocal\tollama\tengine\tqwen2.5-coder:32b\ttask code_generation → tier local"
    );
    assert_eq!(lines[1], "cheap\tanthropic/claude-sonnet-4.5\tnil");
    assert_eq!(
        lines[2],
        "cloud says hi\tcheap\topenrouter\tanthropic/claude-sonnet-4.5\t0.25\t15\t7\t2\tcloud says hi"
    );
    assert_eq!(lines[3], "local\trejected\ttoo drafty\tok");
    assert_eq!(lines[4], "cheap\t1\t10\t5\t0.25");
    assert_eq!(lines[5], "local\t1\t5\t2\t0");
    assert_eq!(lines[6], "1\tanthropic/claude-sonnet-4.5");
    assert_eq!(
        lines[7],
        "route.spend: options.period must be \"day\", \"month\" or \"all\", got \"year\""
    );
    assert_eq!(
        lines[8],
        "route.pick(x): unknown tier \"platinum\" (tiers: local, cheap, premium)"
    );
    let sent = cloud.requests()[0].json();
    assert_eq!(sent["max_tokens"], json!(64));
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "be terse"})
    );
    assert_eq!(
        local.requests()[0].json()["options"],
        json!({"num_predict": 64})
    );
    let rows = db_rows(
        &env,
        "SELECT script, task, tier, provider, host, model, outcome, cost_source FROM llm_ledger ORDER BY id",
    );
    assert!(rows[0][0].ends_with("/play.lua\")"), "{:?}", rows[0]);
    assert_eq!(
        rows[0][1..],
        [
            "Text(\"code_generation\")",
            "Text(\"local\")",
            "Text(\"ollama\")",
            "Text(\"engine\")",
            "Text(\"qwen2.5-coder:32b\")",
            "Text(\"rejected\")",
            "Text(\"unknown\")"
        ]
    );
    assert_eq!(
        rows[1][2..],
        [
            "Text(\"cheap\")",
            "Text(\"openrouter\")",
            &format!("Text({:?})", format!("{}/v1", cloud.url)),
            "Text(\"anthropic/claude-sonnet-4.5\")",
            "Text(\"ok\")",
            "Text(\"provider\")"
        ]
    );
}

/// 50 asks, each reserving exactly $1 against a $10 budget (price $1 per output token, max_tokens 1).
const FIFTY_ASKS: &str = r#"
    local alerts = 0
    route.on_alert = function(spent, limit) alerts = alerts + 1 end
    local fns = {}
    for i = 1, NUM do
      fns[i] = function() return route.ask("gap_analysis", "q" .. i, { max_tokens = 1 }) end
    end
    local ok = 0
    for _, r in ipairs(baton.gather(fns, { check = false })) do
      if r.ok then ok = ok + 1 end
    end
    print("ok", ok, "alerts", alerts)
"#;

fn spent_and_ok(env: &Env) -> (f64, usize) {
    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    conn.query_row(
        "SELECT COALESCE(SUM(cost), 0), COUNT(*) FILTER (WHERE outcome = 'ok') FROM llm_ledger",
        [],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)),
    )
    .unwrap()
}

/// A cloud stub charging $1 per answer, slow enough that concurrent asks overlap, and an environment whose
/// fleet has a $10 budget at $1 per output token.
async fn ten_dollar_budget(name: &str) -> (Stub, Env) {
    let cloud = Stub::start(|req, _| {
        let model = req.json()["model"].as_str().unwrap_or("?").to_string();
        Reply::sse(llm_server::sse(&model, &["x"], 1, 1, Some(1.0)), 32)
            .slow(Duration::from_millis(20))
    })
    .await;
    let env = Env::new(name)
        .with_fleet(&fleet_lua(
            &refused_url().await,
            &cloud.url,
            Some(10.0),
            1_000_000.0,
        ))
        .var("OPENROUTER_API_KEY", KEY);
    (cloud, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_50_concurrent_asks_never_overspend() {
    let (cloud, env) = ten_dollar_budget("lua-fifty").await;
    let (env, out) = run_lua(env, &FIFTY_ASKS.replace("NUM", "50")).await;
    out.ok();
    assert_eq!(out.stdout, "ok\t10\talerts\t1\n");
    let (spent, ok) = spent_and_ok(&env);
    assert!(spent <= 10.0 + 1e-9, "spent ${spent} of $10");
    assert_eq!((ok, cloud.count()), (10, 10));
    let reservations = db_rows(&env, "SELECT COUNT(*) FROM llm_reservations");
    assert_eq!(
        reservations,
        [["Integer(0)"]],
        "every reservation was settled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_two_processes_share_one_budget() {
    let (cloud, env) = ten_dollar_budget("lua-two").await;
    let script = env.dir.write("play.lua", FIFTY_ASKS.replace("NUM", "25"));
    let (a, b) = (env.cmd(), env.cmd());
    let spawn = |mut c: std::process::Command| {
        c.args(["run", script.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (pa, pb) = (spawn(a), spawn(b));
    let (oa, ob) = tokio::task::spawn_blocking(move || {
        (
            crate::common::wait_within(pa, Duration::from_secs(60)),
            crate::common::wait_within(pb, Duration::from_secs(60)),
        )
    })
    .await
    .unwrap();
    oa.ok();
    ob.ok();
    let count = |o: &Out| {
        o.stdout
            .split('\t')
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(count(&oa) + count(&ob), 10, "{}{}", oa.stdout, ob.stdout);
    let alerts = |o: &Out| {
        o.stdout
            .trim_end()
            .rsplit('\t')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(
        alerts(&oa) + alerts(&ob),
        1,
        "the alert fires once across processes"
    );
    let (spent, ok) = spent_and_ok(&env);
    assert!(spent <= 10.0 + 1e-9, "spent ${spent} of $10");
    assert_eq!((ok, cloud.count()), (10, 10));
}

/// `openrouter.chat` decodes the usual request straight off the Lua stack and leaves anything else to
/// serde: both must send the same JSON, and mistakes must be worded by the serde path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_openrouter_requests_decode_the_same_on_both_paths() {
    let body = llm_server::sse("m", &["ok"], 1, 1, Some(0.0));
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 64)).await;
    let env = Env::new("lua-or-decode")
        .with_fleet(&fleet_lua(&refused_url().await, &stub.url, None, 15.0))
        .var("OPENROUTER_API_KEY", KEY);
    let (_env, out) = run_lua(env, r#"
        local msgs = { { role = "system", content = "be brief" },
                       { role = "user", content = "é \"q\"\n", images = { "aGk=" } } }
        local base = { model = "m", messages = msgs, max_tokens = 16, temperature = 0.5,
                       models = { "a", "b" }, timeout = "30s", check = true }
        local function with(extra)
          local t = {}
          for k, v in pairs(base) do t[k] = v end
          for k, v in pairs(extra) do t[k] = v end
          return t
        end
        -- fast path; serde path through provider; serde path through on_token; a list filled backwards
        print(openrouter.chat(base).text)
        print(openrouter.chat(with{ provider = { order = { "x" } } }).text)
        print(openrouter.chat(with{ on_token = function() end }).text)
        local backwards = {}
        backwards[2] = msgs[2]
        backwards[1] = msgs[1]
        print(openrouter.chat(with{ messages = backwards }).text)
        -- check = false adds ok = true; a second argument is ignored, as on the serde path
        local r = openrouter.chat(with{ check = false }, "extra")
        print(r.ok, r.text, r.tokens_in, r.cost_source)
        print(select('#', openrouter.chat(base)), openrouter.chat(base, 2).text)
        for _, bad in ipairs{
          with{ tempature = 1 },
          with{ max_tokens = "many" },
          with{ max_tokens = 16.0 },
          with{ messages = { { role = "user", content = "x", name = "n" } } },
          with{ messages = { "just text" } },
          with{ check = "yes" },
          { messages = msgs },
          "just text",
        } do
          local ok, err = pcall(openrouter.chat, bad)
          print(ok, err)
        end
        print(pcall(openrouter.chat))
    "#).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..4], ["ok", "ok", "ok", "ok"], "{}", out.stdout);
    assert_eq!(
        &lines[4..6],
        ["true\tok\t1\tprovider", "1\tok"],
        "{}",
        out.stdout
    );
    let sent: Vec<serde_json::Value> = stub.requests().iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 7, "{}", out.stdout);
    for (i, req) in sent.iter().enumerate() {
        assert_eq!(
            req["messages"],
            json!([{"role": "system", "content": "be brief"},
                   {"role": "user", "content": "é \"q\"\n", "images": ["aGk="]}]),
            "request {i}"
        );
        assert_eq!(
            (&req["max_tokens"], &req["temperature"], &req["models"]),
            (&json!(16), &json!(0.5), &json!(["a", "b"])),
            "request {i}"
        );
    }
    assert_eq!(sent[1]["provider"], json!({"order": ["x"]}));
    assert!(sent[0].get("provider").is_none());
    // Every mistake is refused before anything is sent, in the serde path's words.
    let errors = &lines[6..];
    assert_eq!(errors.len(), 9, "{}", out.stdout);
    let expect = [
        "tempature",
        "max_tokens",
        "max_tokens",
        "name",
        "messages",
        "check",
        "model",
        "argument 1 (request) must be a table",
        "argument 1 (request) must be a table",
    ];
    for (line, word) in errors.iter().zip(expect) {
        assert!(
            line.starts_with("false\t") && line.contains("openrouter.chat") && line.contains(word),
            "{line} should name {word}"
        );
    }
}

//! The OpenAI-compatible client (OpenRouter) against a stub speaking SSE.
use std::time::{Duration, Instant};

use baton::core::fleet::Price;
use baton::core::llm::ErrorKind;
use baton::core::llm::openai::{CostSource, OpenAi};
use serde_json::json;

use super::server::{self, Reply, Stub};
use super::{KEY, collector, fast, openai_client, or_req};

#[tokio::test]
async fn openrouter_sse_with_comments_and_cost_in_the_final_chunk() {
    let pieces: Vec<String> = (0..150).map(|i| format!("w{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let body = server::sse("anthropic/claude-sonnet-4.5", &refs, 20, 150, Some(0.00231));
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
    assert_eq!(c.answer.text, pieces.concat());
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
    let body = server::sse("m", &["x"], 1_000_000, 100_000, None);
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
    let body = server::sse("m", &["ok"], 1, 1, Some(0.0));
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
    // Ignoring Retry-After would mean the backoff: a minute. The 1 s asked for is a floor (a sleep never
    // ends early), and 30 s is only there to tell the two apart with room for a loaded machine.
    c.retry.base = Duration::from_secs(60);
    c.retry.max_wait = Duration::from_secs(60);
    let t = Instant::now();
    let r = c.chat(&or_req("m"), None, None, None).await.unwrap();
    let waited = t.elapsed();
    assert_eq!((r.answer.text.as_str(), stub.count()), ("ok", 2));
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(30),
        "{waited:?}"
    );
}

#[tokio::test]
async fn openrouter_500_and_reset_are_retried() {
    let body = server::sse("m", &["fine"], 1, 1, Some(0.0));
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
    assert_eq!((r.answer.text.as_str(), stub.count()), ("fine", 3));
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

/// SSE framing as servers vary it: CRLF line ends, comments and other fields between events, an event
/// whose JSON spans two `data:` lines, no space after `data:`, all sent three bytes at a time.
#[tokio::test]
async fn openrouter_sse_framing_variants() {
    let text = [
        ": OPENROUTER PROCESSING",
        "",
        "event: message",
        r#"data: {"id":"gen-9","choices":[{"delta":{"content":"two "}}]}"#,
        "",
        r#"data: {"choices":[{"delta":"#,
        r#"data: {"content":"lines"}}]}"#,
        "id: 7",
        "",
        ": keep-alive",
        r#"data:{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"cost":0.5}}"#,
        "",
        "data: [DONE]",
        "",
        "",
    ]
    .join("\r\n");
    let stub = Stub::start(move |_, _| Reply::sse(text.clone(), 3)).await;
    let (seen, mut cb) = collector();
    let c = openai_client(&stub.url)
        .chat(&or_req("m"), None, None, Some(&mut cb))
        .await
        .unwrap();
    assert_eq!(c.answer.text, "two lines");
    assert_eq!(*seen.lock().unwrap(), ["two ", "lines"]);
    assert_eq!(
        (c.id.as_str(), c.tokens_in, c.tokens_out, c.cost),
        ("gen-9", 3, 2, 0.5)
    );
    assert_eq!(c.cost_source, CostSource::Provider);
}

#[tokio::test]
async fn openrouter_truncated_stream_and_error_chunk() {
    let mut body = server::sse("m", &["a", "b"], 1, 2, None);
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
    let e = c
        .chat(&or_req("m"), None, Some(Duration::from_millis(250)), None)
        .await
        .unwrap_err();
    // Which timer fired is in the error (not the client's 5 s default): no stopwatch needed.
    assert_eq!(
        e.kind,
        ErrorKind::Timeout(Duration::from_millis(250)),
        "{e}"
    );
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

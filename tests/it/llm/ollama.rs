//! The Ollama client against a stub speaking its NDJSON API.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::core::llm::ollama::{self, GenerateRequest, Ollama};
use baton::core::llm::{ErrorKind, LocalFuture};
use serde_json::json;

use super::server::{self, Reply, Stub, refused_url};
use super::{chat_req, collector, ep, fast, openai_client, or_req, quick_retry};

#[tokio::test]
async fn ollama_chat_streams_many_small_chunks() {
    let pieces: Vec<String> = (0..200).map(|i| format!("t{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let lines = server::ollama_chat("qwen2.5-coder:32b", &refs, 12, 200);
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
    assert_eq!(c.answer.text, pieces.concat());
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
        "/api/chat" => Reply::ndjson(server::ollama_chat("m", &["a"], 1, 1), 1000)
            .slow(Duration::from_millis(5)),
        _ => Reply::sse(server::sse("m", &["b"], 1, 1, None), 1000).slow(Duration::from_millis(5)),
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
        Stub::start(|_, _| Reply::ndjson(server::ollama_generate("m", &["a", "b"]), 5)).await;
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
            c.answer.text.as_str(),
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
    let mut lines = server::ollama_chat("m", &["partial "], 1, 1);
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

    // The message names the timer that fired (300 ms, not the client's 5 s): no stopwatch needed.
    let silent = Stub::start(|_, _| Reply::Silent).await;
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

    // Headers come, then the server goes quiet mid-stream: the idle timeout fires.
    let stalls = Stub::start(|_, _| {
        Reply::ndjson(server::ollama_chat("m", &["a", "b"], 1, 2), 10)
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

    let mut lines = server::ollama_chat("m", &["a", "b"], 1, 2);
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
        if n == 0 { Reply::json(503, json!({"error": "server busy, please try again.  maximum pending requests exceeded"})) } else { Reply::ndjson(server::ollama_chat("m", &["ok"], 1, 1), 100) }
    })
    .await;
    let mut client = Ollama::new(fast());
    client.retry = quick_retry();
    let c = client
        .chat(&ep(&stub.url, 4), &chat_req("m"), None, None)
        .await
        .unwrap();
    assert_eq!((c.answer.text.as_str(), stub.count()), ("ok", 2));
}

#[tokio::test]
async fn ollama_limiter_keeps_parallel_in_flight_and_shows_the_queue() {
    let stub = Stub::start(|_, _| {
        Reply::ndjson(server::ollama_chat("m", &["a", "b", "c"], 1, 3), 60)
            .slow(Duration::from_millis(150))
    })
    .await;
    let client = Ollama::new(fast());
    let e = ep(&stub.url, 2);
    let calls: Vec<_> = (0..6)
        .map(|_| client.chat(&e, Box::leak(Box::new(chat_req("m"))), None, None))
        .collect();
    let joined = futures_util::future::join_all(calls);
    // Watch the queue while the calls run (no guessed moment to look at it): two run, four wait.
    let done = std::sync::atomic::AtomicBool::new(false);
    let probe = async {
        let mut seen = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let q = client.queue(&e);
            if seen.last() != Some(&(q.running, q.waiting)) {
                seen.push((q.running, q.waiting));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    };
    let joined = async {
        let r = joined.await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let (results, seen) = tokio::join!(joined, probe);
    assert!(results.iter().all(Result::is_ok));
    assert!(seen.contains(&(2, 4)), "{seen:?}");
    assert!(seen.iter().all(|&(running, _)| running <= 2), "{seen:?}");
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
    // A silent server never answers (it holds for an hour): `online` gives up at its own 2 s timeout.
    let silent = Stub::start(|_, _| Reply::Silent).await;
    let silent_ep = ep(&silent.url, 4);
    let online = tokio::time::timeout(Duration::from_secs(60), c.online(&silent_ep));
    assert!(!online.await.expect("online gave up at its own timeout"));
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

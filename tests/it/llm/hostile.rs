//! Hostile servers (the fault-injection list): each mode against `ollama.chat` and `openrouter.chat` ends
//! with an error naming the bound or limit that stopped it. Assertions are on the error text; a generous
//! tokio timeout fails a test that hangs.
use std::future::Future;
use std::time::Duration;

use baton::core::llm::ollama::{ChatRequest, Ollama};
use baton::core::llm::{LlmError, Wait};
use serde_json::json;

use super::server::{Reply, Stub, refused_url};
use super::{chat_req, ep, fast, openai_client, or_req};
use crate::common::{Env, Out};

const NDJSON: &str = "application/x-ndjson";
const SSE: &str = "text/event-stream";

/// Fails the test (instead of hanging it) if `call` does not end within 60 s.
async fn ends<T>(call: impl Future<Output = Result<T, LlmError>>) -> String {
    match tokio::time::timeout(Duration::from_secs(60), call).await {
        Err(_) => panic!("the call did not end within 60 s"),
        Ok(Ok(_)) => panic!("the call succeeded against a hostile server"),
        Ok(Err(e)) => e.raised_by("call"),
    }
}

/// `ollama.chat` (optionally with `num_predict`) and `openrouter.chat` against the same stub.
async fn both(stub: &Stub, max_tokens: Option<u32>, wait: Wait) -> (String, String) {
    let ollama = Ollama::new(fast());
    let req = ChatRequest {
        options: max_tokens.map(|n| json!({ "num_predict": n })),
        ..chat_req("m")
    };
    let a = ends(ollama.chat(&ep(&stub.url, 4), &req, wait, None)).await;
    let or = openai_client(&stub.url);
    let req = baton::core::llm::openai::ChatRequest {
        max_tokens,
        ..or_req("m")
    };
    let b = ends(or.chat(&req, None, wait, None)).await;
    (a, b)
}

/// A stub answering `/api/…` with `ollama` and `/v1/…` with `openai`.
async fn stub(ollama: Reply, openai: Reply) -> Stub {
    Stub::start(move |req, _| {
        if req.path.starts_with("/api/") {
            ollama.clone()
        } else {
            openai.clone()
        }
    })
    .await
}

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

#[track_caller]
fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_tokens_stop_at_the_max_tokens_bound() {
    let s = stub(Reply::endless_ndjson("tok "), Reply::endless_sse("tok ")).await;
    let (a, b) = both(&s, Some(50), Wait::default()).await;
    for e in [&a, &b] {
        has(
            e,
            "stopped: the server sent more than 256 pieces for max_tokens = 50",
        );
    }
    has(&a, "call(engine, m): ");
    has(&b, "call(http://127.0.0.1:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_tokens_without_max_tokens_stop_at_the_answer_size() {
    let big = "y".repeat(8 << 10);
    let s = stub(Reply::endless_ndjson(&big), Reply::endless_sse(&big)).await;
    let (a, b) = both(&s, None, Wait::default()).await;
    for e in [&a, &b] {
        has(
            e,
            "stopped: the answer passed 16 MiB (the most baton keeps of one answer)",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_bytes_without_a_newline_stop_at_the_line_bound() {
    let s = stub(
        Reply::endless_bytes(NDJSON, r#"{"message":{"content":""#),
        Reply::endless_bytes(SSE, "data: "),
    )
    .await;
    let (a, b) = both(&s, Some(50), Wait::default()).await;
    for e in [&a, &b] {
        has(
            e,
            "stopped: a line of the stream passed 1 MiB without ending",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_of_endless_data_lines_stop_at_the_line_bound() {
    let line = format!("data: {}\n", "z".repeat(1000));
    let s = stub(
        Reply::endless_bytes(NDJSON, ""),
        Reply::Endless {
            content_type: SSE,
            piece: line.repeat(64).into_bytes(),
            delay: Duration::ZERO,
        },
    )
    .await;
    let or = openai_client(&s.url);
    let e = ends(or.chat(&or_req("m"), None, Wait::default(), None)).await;
    has(
        &e,
        "stopped: a line of the stream passed 1 MiB without ending",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_forever_do_not_reset_the_idle_timeout() {
    let every = Duration::from_millis(100);
    let s = stub(
        Reply::keepalive_forever(NDJSON, every),
        Reply::keepalive_forever(SSE, every),
    )
    .await;
    let (a, b) = both(&s, None, Wait::new(secs(1.0), None)).await;
    for e in [&a, &b] {
        has(e, "timeout: no answer within 1s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_a_call_whatever_the_server_sends() {
    // Real tokens slowly (each restarts the idle clock), so only the deadline can end the call.
    let slow = |content_type, line: String| Reply::Endless {
        content_type,
        piece: line.into_bytes(),
        delay: Duration::from_millis(50),
    };
    let s = stub(
        slow(
            NDJSON,
            format!("{}\n", json!({"message": {"content": "t"}, "done": false})),
        ),
        slow(
            SSE,
            format!(
                "data: {}\n\n",
                json!({"choices": [{"delta": {"content": "t"}}]})
            ),
        ),
    )
    .await;
    let (a, b) = both(&s, None, Wait::new(secs(5.0), secs(1.5))).await;
    for e in [&a, &b] {
        has(e, "deadline: the call did not finish within 1.5s");
    }
    let s = stub(
        Reply::keepalive_forever(NDJSON, Duration::from_millis(100)),
        Reply::keepalive_forever(SSE, Duration::from_millis(100)),
    )
    .await;
    let (a, b) = both(&s, None, Wait::new(None, secs(1.0))).await;
    for e in [&a, &b] {
        has(e, "deadline: the call did not finish within 1s");
    }
    // Tokens as fast as the connection goes: the body is always ready, the deadline still ends it (long
    // before 16 MiB of four-byte tokens).
    let s = stub(Reply::endless_ndjson("tok "), Reply::endless_sse("tok ")).await;
    let (a, b) = both(&s, None, Wait::new(None, secs(1.0))).await;
    for e in [&a, &b] {
        has(e, "deadline: the call did not finish within 1s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_after_headers_ends_at_the_timeout_or_the_deadline() {
    let s = stub(
        Reply::SilentAfterHeaders {
            content_type: NDJSON,
        },
        Reply::SilentAfterHeaders { content_type: SSE },
    )
    .await;
    let (a, b) = both(&s, None, Wait::new(secs(1.0), None)).await;
    for e in [&a, &b] {
        has(e, "timeout: no answer within 1s");
    }
    let (a, b) = both(&s, None, Wait::new(secs(30.0), secs(1.0))).await;
    for e in [&a, &b] {
        has(e, "deadline: the call did not finish within 1s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_before_headers_ends_at_the_deadline() {
    let s = stub(Reply::Silent, Reply::Silent).await;
    let (a, b) = both(&s, None, Wait::new(None, secs(1.0))).await;
    for e in [&a, &b] {
        has(e, "deadline: the call did not finish within 1s");
    }
    // Tokens as fast as the connection goes: the body is always ready, the deadline still ends it (long
    // before 16 MiB of four-byte tokens).
    let s = stub(Reply::endless_ndjson("tok "), Reply::endless_sse("tok ")).await;
    let (a, b) = both(&s, None, Wait::new(None, secs(1.0))).await;
    for e in [&a, &b] {
        has(e, "deadline: the call did not finish within 1s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_past_the_deadline_fails_at_once_with_the_wait() {
    let s = stub(Reply::retry_after(99999), Reply::retry_after(99999)).await;
    let (a, b) = both(&s, None, Wait::new(secs(2.0), secs(20.0))).await;
    for e in [&a, &b] {
        has(
            e,
            "HTTP 429: the server asks to retry after 27h46m39s, past the call's deadline",
        );
    }
    // One request each: nothing was retried.
    assert_eq!(s.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_the_deadline_leaves_no_room() {
    // Each 429 asks for 1 s: after one wait, the next no longer fits a 1.5 s deadline.
    let s = stub(Reply::retry_after(1), Reply::retry_after(1)).await;
    let or = openai_client(&s.url);
    let e = ends(or.chat(&or_req("m"), None, Wait::new(None, secs(1.5)), None)).await;
    has(&e, "past the call's deadline");
    assert!(s.count() <= 2, "{} requests", s.count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_servers_are_escaped_in_errors() {
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J boom";
    let s = stub(
        Reply::json(400, json!({ "error": evil })),
        Reply::json(400, json!({ "error": { "message": evil } })),
    )
    .await;
    let (a, b) = both(&s, None, Wait::default()).await;
    for e in [&a, &b] {
        assert!(!e.contains('\u{1b}') && !e.contains('\u{7}'), "{e:?}");
        has(e, "HTTP 400: \\u{1b}]0;pwned\\u{7}\\u{1b}[2J boom");
    }
}

/// The options through the real binary: `deadline` on both clients and `timeout`/`deadline` on route.ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_calls_take_timeout_and_deadline() {
    let s = stub(Reply::Silent, Reply::Silent).await;
    let fleet = format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{url}" }} }},
  tiers = {{
    {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "m", reason = "m" }} }},
    {{ name = "cheap", provider = "openrouter", model = "c" }},
  }},
  openrouter = {{ base_url = "{url}/v1" }},
}}"#,
        url = s.url
    );
    let env = Env::new("lua-deadline")
        .with_fleet(&fleet)
        .var("OPENROUTER_API_KEY", super::KEY);
    let script = r#"
        local msgs = { { role = "user", content = "hi" } }
        local r = ollama.chat{ model = "m", messages = msgs, deadline = "1s", check = false }
        print(r.ok, r.err)
        r = openrouter.chat{ model = "c", messages = msgs, timeout = 30, deadline = 0.5, check = false }
        print(r.ok, r.err)
        local ok, e = pcall(route.ask, "anything", "hi", { timeout = "700ms", deadline = "1s" })
        print(ok, e)
        print(pcall(route.ask, "anything", "hi", { deadlin = 1 }))
    "#;
    let out: Out = tokio::task::spawn_blocking(move || env.run_lua("play.lua", script, &[]))
        .await
        .unwrap();
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    has(
        lines[0],
        "false\tollama.chat(engine, m): deadline: the call did not finish within 1s",
    );
    has(lines[1], "openrouter.chat(http://127.0.0.1:");
    has(lines[1], "deadline: the call did not finish within 500ms");
    // Both tiers tried, each within its own 700 ms idle limit.
    has(lines[2], "false");
    has(lines[2], "timeout: no answer within 700ms");
    assert_eq!(
        out.stdout.matches("no answer within 700ms").count(),
        2,
        "{}",
        out.stdout
    );
    has(lines[3], "deadline");
}

#[tokio::test]
async fn refused_connections_still_fail_fast_within_a_deadline() {
    let url = refused_url().await;
    let ollama = Ollama::new(fast());
    let e = ends(ollama.chat(
        &ep(&url, 4),
        &chat_req("m"),
        Wait::new(None, secs(2.0)),
        None,
    ))
    .await;
    has(&e, "connection refused");
}

/// The real binary against endless streams: each call ends with the bound that stopped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_endless_streams_end_at_their_bounds() {
    let s = stub(Reply::endless_ndjson("tok "), Reply::endless_sse("tok ")).await;
    let bytes = stub(
        Reply::endless_bytes(NDJSON, "{"),
        Reply::endless_bytes(SSE, "data: "),
    )
    .await;
    let fleet = format!(
        r#"return {{ hosts = {{ engine = {{ ssh = false, ollama = "{url}" }} }}, openrouter = {{ base_url = "{url}/v1" }} }}"#,
        url = s.url
    );
    let env = Env::new("lua-endless")
        .with_fleet(&fleet)
        .var("OPENROUTER_API_KEY", super::KEY)
        .var("BYTES", &bytes.url);
    let script = r#"
        local msgs = { { role = "user", content = "hi" } }
        print(pcall(ollama.chat, { model = "m", messages = msgs, options = { num_predict = 50 } }))
        print(pcall(openrouter.chat, { model = "m", messages = msgs, max_tokens = 50 }))
        print(pcall(ollama.chat, { host = os.getenv("BYTES"), model = "m", messages = msgs }))
    "#;
    let out: Out = tokio::task::spawn_blocking(move || env.run_lua("endless.lua", script, &[]))
        .await
        .unwrap();
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "false\tollama.chat(engine, m): stopped: the server sent more than 256 pieces for max_tokens = 50 (at most 4 per token, 256 at least)"
    );
    has(lines[1], "false\topenrouter.chat(");
    has(
        lines[1],
        "stopped: the server sent more than 256 pieces for max_tokens = 50",
    );
    has(
        lines[2],
        "stopped: a line of the stream passed 1 MiB without ending",
    );
}

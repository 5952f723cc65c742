//! Integration tests: the LLM clients and router against in-test servers speaking the real protocols
//! (`server`), and the Lua API over them through the real binary.
mod ask;
mod budget;
mod hostile;
mod lua;
mod ollama;
mod openrouter;
mod route;
pub mod server;
mod tools;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton::core::llm::ollama::{ChatRequest, Endpoint};
use baton::core::llm::openai::{self, OpenAi};
use baton::core::llm::{HookError, LocalFuture, Message, Retry, Timeouts};
use baton::core::secret::Secret;

use server::Reply;

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
        ..Timeouts::default()
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

/// An OpenAI-compatible stub answering `text` at `cost`, for whichever model was asked.
fn or_stub_body(text: &'static str, cost: f64) -> impl Fn(&server::Request, usize) -> Reply {
    move |req, _| {
        let model = req.json()["model"].as_str().unwrap_or("?").to_string();
        Reply::sse(server::sse(&model, &[text], 10, 5, Some(cost)), 64)
    }
}

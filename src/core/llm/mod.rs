//! LLM clients (Ollama, OpenAI-compatible/OpenRouter), routing, budget and ledger.
//! Plain async Rust: no mlua, no rustyline, no CLI.
//!
//! - [`ollama`]: Ollama's native API (NDJSON streaming), behind a per-endpoint [`limiter`].
//! - [`openai`]: OpenAI-compatible chat completions (SSE streaming), OpenRouter's `/models` and `/key`.
//! - [`shape`]: what every client's chat shares: the streamed answer gathered, the finished answer
//!   settled (tool calls, schema, message), error bodies read; [`shape::Answered`] for booking and routing.
//! - [`http`]: timeouts, retries with backoff, line and SSE framing of streams.
//! - [`cost`]: prices, whether a call is paid (a property of its tier's price), estimates, worst cases.
//! - [`route`]: task → tier → model, escalation, health cooldown, budget reservations.
//! - [`direct`]: the direct calls (`openrouter.chat`, `ollama.chat`, `ollama.generate`), booked through
//!   one generic path.
//! - [`budget`] and [`ledger`]: the budget checks, the SQLite ledger (one row per attempt), spend reports.
//!
//! ## Adding a provider
//! The places a new provider touches:
//! 1. `core::fleet`: its [`Provider`] variant, with its name (for tiers and ledger rows) and its arm in the
//!    tier validation (whether its tiers take a host).
//! 2. `src/core/llm/<provider>.rs`: its client. Only its wire format: it builds the request
//!    (`ChatRequest::routed` from a [`shape::Routed`]), sends it with [`http::send`], decodes its frames
//!    into a [`shape::Gather`], finishes with [`shape::settle`], reads errors with [`shape::error_message`],
//!    and implements [`shape::Answered`] for its completion (tokens, cost, the settled answer).
//! 3. This file: its client in [`Clients`] and its arms there (whether it bills unpriced calls, where a
//!    tier's calls go, the call itself), and its lazily built client in [`Llm`]. Routing, the budget and the ledger need nothing more: whether a call is paid comes from its
//!    tier's price ([`cost::paid`]), and every call is booked the same way.
//! 4. Only for a direct-call Lua global: its binding `src/lua/api/<provider>.rs` (each call booked with
//!    [`Llm::booking`] and [`Llm::booked`]), its line in `LAZY_GLOBALS` and its stub in `stdlib/_meta/`.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::fleet::{Fleet, Price, Provider, Tier};
use crate::core::state::State;

pub mod budget;
pub mod cost;
pub mod direct;
pub mod http;
pub mod ledger;
pub mod limiter;
pub mod ollama;
pub mod openai;
pub mod route;
pub mod schema;
pub mod shape;
pub mod tools;

/// The LLM services of one runtime, each built on first use (building an HTTP client loads TLS roots, which
/// a script that never calls a model should not pay for). The router shares the clients, so `route.ask`
/// and `ollama.chat` wait in the same per-endpoint queue.
#[derive(Debug)]
pub struct Llm {
    fleet: Arc<Fleet>,
    state: State,
    ollama: OnceLock<ollama::Ollama>,
    openai: OnceLock<openai::OpenAi>,
    router: OnceLock<route::Router>,
    prices: OnceLock<std::collections::HashMap<String, crate::core::fleet::Price>>,
    /// The run these calls belong to, stamped on their ledger rows.
    run: Option<String>,
}

impl Llm {
    pub fn new(fleet: Arc<Fleet>, state: State) -> Llm {
        Llm {
            fleet,
            state,
            ollama: OnceLock::new(),
            openai: OnceLock::new(),
            router: OnceLock::new(),
            prices: OnceLock::new(),
            run: None,
        }
    }

    /// These calls belong to run `run` (their ledger rows say so).
    pub fn for_run(mut self, run: Option<String>) -> Llm {
        self.run = run;
        self
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn ollama(&self) -> &ollama::Ollama {
        self.ollama.get_or_init(ollama::Ollama::default)
    }

    pub fn openai(&self) -> &openai::OpenAi {
        self.openai
            .get_or_init(|| openai::OpenAi::from_fleet(&self.fleet))
    }

    /// The price of the fleet tier that serves `model`, so a direct call's cost is known even when the
    /// API reports none.
    pub fn price_of(&self, model: &str) -> Option<crate::core::fleet::Price> {
        let prices = self.prices.get_or_init(|| {
            let tiers = self.fleet.tiers();
            tiers
                .iter()
                .filter_map(|t| Some((t.price?, t)))
                .flat_map(|(p, t)| {
                    t.model
                        .iter()
                        .chain(t.models.values())
                        .map(move |m| (m.clone(), p))
                })
                .collect()
        });
        prices.get(model).copied()
    }

    pub fn router(&self) -> &route::Router {
        self.router.get_or_init(|| {
            let ledger = ledger::Ledger::new(self.state.clone()).for_run(self.run.clone());
            let clients = Clients::new(self.ollama().clone(), self.openai().clone());
            route::Router::with_clients(&self.fleet, clients, ledger)
        })
    }
}

/// Every provider's client, as the router holds them: the one place that maps a provider to its client.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ollama: ollama::Ollama,
    pub openai: openai::OpenAi,
}

/// Where a tier's calls go, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    pub tier: String,
    /// The fleet host serving the tier (Ollama tiers), as `route.pick` reports it.
    pub host: Option<String>,
    /// The endpoint's name in errors and ledger rows: the fleet host, or `openrouter` (or the base URL).
    pub name: String,
    /// Ollama's endpoint; `None` for an Ollama tier whose host has no URL (its calls fail naming that).
    pub endpoint: Option<ollama::Endpoint>,
    /// The key of the endpoint's health (cooldown): its URL.
    pub health_key: String,
}

impl Clients {
    pub fn new(ollama: ollama::Ollama, openai: openai::OpenAi) -> Clients {
        Clients { ollama, openai }
    }

    /// Whether a provider bills its calls when its tier has no price (a cloud API does, a local Ollama
    /// does not); see [`cost::paid`].
    pub fn bills(provider: Provider) -> bool {
        match provider {
            Provider::Ollama => false,
            Provider::Openrouter => true,
        }
    }

    /// Where the tier's calls go.
    pub fn target(&self, fleet: &Fleet, tier: &Tier) -> Target {
        match tier.provider {
            Provider::Ollama => {
                let endpoint = ollama::resolve(fleet, tier.host.as_deref()).ok();
                Target {
                    tier: tier.name.clone(),
                    host: endpoint.as_ref().map(|e| e.name.clone()),
                    name: endpoint
                        .as_ref()
                        .map_or_else(|| self.openai.name().to_string(), |e| e.name.clone()),
                    health_key: endpoint
                        .as_ref()
                        .map_or_else(|| self.openai.base_url().to_string(), |e| e.url.clone()),
                    endpoint,
                }
            }
            Provider::Openrouter => Target {
                tier: tier.name.clone(),
                host: None,
                name: self.openai.name().to_string(),
                endpoint: None,
                health_key: self.openai.base_url().to_string(),
            },
        }
    }

    /// Sends a routed chat to a tier of `provider` at `target`; the reply's cost is at `price`.
    // Each argument is one plain part of the call; a struct for them would only move the list.
    #[allow(clippy::too_many_arguments)]
    pub async fn chat(
        &self,
        provider: Provider,
        target: &Target,
        chat: &shape::Routed<'_>,
        price: Option<Price>,
        wait: Wait,
        on_token: Option<OnToken<'_>>,
        on_thinking: Option<OnToken<'_>>,
    ) -> Result<shape::Reply, LlmError> {
        match (provider, &target.endpoint) {
            (Provider::Ollama, Some(ep)) => {
                let req = ollama::ChatRequest::routed(chat);
                let c = self
                    .ollama
                    .chat_thinking(ep, &req, wait, on_token, on_thinking)
                    .await?;
                Ok(shape::Reply::of(c, price))
            }
            (Provider::Ollama, None) => Err(LlmError::new(
                &target.tier,
                Some(chat.model),
                ErrorKind::UnknownHost("the tier's host has no `ollama` URL".into()),
            )),
            (Provider::Openrouter, _) => {
                let req = openai::ChatRequest::routed(chat);
                let c = self
                    .openai
                    .chat_thinking(&req, price, wait, on_token, on_thinking)
                    .await?;
                Ok(shape::Reply::of(c, price))
            }
        }
    }
}

/// A chat message (`{role, content}`), as scripts give it; each client maps it to its wire format
/// (tool calls, tool results, thinking).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
    /// Ollama: base64 images for multimodal models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// An assistant message's tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool message: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant message's reasoning (sent back to Ollama; OpenRouter takes `reasoning_details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// OpenRouter: the reasoning blocks of an assistant message, passed back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_details: Option<serde_json::Value>,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.to_string(),
            content: content.into(),
            images: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
            thinking: None,
            reasoning_details: None,
        }
    }

    /// A tool's result, answering `call`.
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Message {
        Message {
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            ..Message::new("tool", content)
        }
    }
}

/// A tool offered to a model: its name, what it does and its parameters as a JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "tools::empty_parameters")]
    pub parameters: serde_json::Value,
}

/// A tool call a model asked for. `arguments` is an object once read (a string the model sent that is not
/// JSON stays a string, and running it reports that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default = "tools::empty_object")]
    pub arguments: serde_json::Value,
}

/// A boxed future that need not be `Send` (Lua callbacks run on the interpreter's thread).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A caller's hook: gets a value, may wait (a Lua callback that yields). An `Err` stops the operation and
/// its text is reported. The future owns what it needs, so the hook can be called again while borrowed.
pub type Callback<'a, A, R = ()> =
    &'a mut dyn FnMut(A) -> LocalFuture<'static, Result<R, HookError>>;

/// Why a caller's hook stopped an operation (a Lua callback's error message, say).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// Called with each streamed piece of text as it arrives.
pub type OnToken<'a> = Callback<'a, String>;

/// Lends an optional hook for one call, keeping it for the next.
pub fn lend<'b, A, R>(hook: &'b mut Option<Callback<'_, A, R>>) -> Option<Callback<'b, A, R>> {
    match hook {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// How long to wait. Every network call has all three, so a server that never answers cannot hang a script.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// TCP (and TLS) connection set-up.
    pub connect: Duration,
    /// From sending the request to the response headers (Ollama may load a model meanwhile).
    pub response: Duration,
    /// Longest silence between two pieces of a streamed body. Keep-alives (blank lines, SSE comments) do
    /// not count as speaking: only real data restarts this clock.
    pub idle: Duration,
    /// The whole call, queueing, retries and `Retry-After` waits included.
    pub deadline: Duration,
    /// When the call under way must end (set by [`Timeouts::start`]); `None` before it starts.
    pub ends: Option<tokio::time::Instant>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(120),
            idle: Duration::from_secs(120),
            deadline: DEFAULT_DEADLINE,
            ends: None,
        }
    }
}

/// How long one LLM call may take in all unless the caller says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

/// A caller's limits for one call: `timeout` (the wait for headers and the idle limit) and `deadline`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wait {
    pub idle: Option<Duration>,
    pub deadline: Option<Duration>,
}

/// A plain `timeout` (or `None`) as callers passed it before deadlines existed.
impl From<Option<Duration>> for Wait {
    fn from(idle: Option<Duration>) -> Wait {
        Wait {
            idle,
            deadline: None,
        }
    }
}

impl Wait {
    pub fn new(idle: Option<Duration>, deadline: Option<Duration>) -> Wait {
        Wait { idle, deadline }
    }
}

impl Timeouts {
    /// These limits with the caller's, the deadline clock started now.
    pub fn start(self, wait: Wait) -> Timeouts {
        let t = wait.idle.map_or(self, |w| self.with_wait(w));
        let deadline = wait.deadline.unwrap_or(t.deadline);
        Timeouts {
            deadline,
            ends: Some(tokio::time::Instant::now() + deadline),
            ..t
        }
    }

    /// What is left of the deadline (all of it before [`Timeouts::start`]).
    pub fn left(&self) -> Duration {
        self.ends.map_or(self.deadline, |e| {
            e.saturating_duration_since(tokio::time::Instant::now())
        })
    }

    /// The same limit for waiting on headers and between chunks.
    pub fn with_wait(self, wait: Duration) -> Timeouts {
        Timeouts {
            response: wait,
            idle: wait,
            ..self
        }
    }
}

/// Retries with exponential backoff and jitter; a server's `Retry-After` wins (up to `max_wait`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Retries after the first try (0 = try once).
    pub retries: u32,
    pub base: Duration,
    pub max_wait: Duration,
    /// Also retry when the connection could not be made (refused, reset, DNS).
    pub on_connect: bool,
}

impl Retry {
    pub const NONE: Retry = Retry {
        retries: 0,
        base: Duration::from_millis(250),
        max_wait: Duration::from_secs(30),
        on_connect: false,
    };

    /// The wait before retry number `attempt` (1-based): base × 2^(attempt-1), ±25 % jitter, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let jitter = 0.75 + fastrand::f64() * 0.5;
        exp.mul_f64(jitter).min(self.max_wait)
    }
}

/// What went wrong, without the "where" (see [`LlmError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("connection refused")]
    Refused,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timeout: no answer within {}", crate::core::duration::format(*.0))]
    Timeout(Duration),
    #[error("model not found: {} (try ollama.pull)", crate::core::text::remote(.0, SERVER_TEXT))]
    ModelNotFound(String),
    #[error("insufficient credits (HTTP 402): {}", crate::core::text::remote(.0, SERVER_TEXT))]
    InsufficientCredits(String),
    #[error("HTTP {status}: {}", crate::core::text::remote(.message, SERVER_TEXT))]
    Status { status: u16, message: String },
    /// An error the server reported inside an otherwise successful (200) stream.
    #[error("{}", crate::core::text::remote(.0, SERVER_TEXT))]
    Server(String),
    #[error("the stream ended before the final message (connection closed)")]
    Truncated,
    #[error("bad response: {}", crate::core::text::remote(.0, SERVER_TEXT))]
    Protocol(String),
    #[error("no API key: set the environment variable {0}")]
    MissingKey(String),
    #[error("unknown host {0}")]
    UnknownHost(String),
    #[error("on_token: {0}")]
    Callback(HookError),
    /// The call's overall deadline passed.
    #[error("deadline: the call did not finish within {}", crate::core::duration::format(*.0))]
    Deadline(Duration),
    /// The server asked to retry later than the deadline allows.
    #[error("HTTP {status}: the server asks to retry after {}, past the call's deadline ({} left)",
        crate::core::duration::format(*wait), crate::core::duration::format(*left))]
    RetryBeyondDeadline {
        status: u16,
        wait: Duration,
        left: Duration,
    },
    /// The stream passed one of its bounds (a line, an answer's size, pieces for `max_tokens`).
    #[error("stopped: {0}")]
    Overflow(String),
    /// The provider refused the key: it has reached its own spending limit (not retried).
    #[error("key limit reached: {}", crate::core::text::remote(.0, SERVER_TEXT))]
    KeyLimit(String),
    /// Not sent: the call's worst case does not fit the month's budget.
    #[error("over budget: {0}")]
    OverBudget(String),
    /// The ledger could not book the call (so it was not sent, or its cost not recorded).
    #[error("ledger: {0}")]
    Ledger(String),
    /// A structured answer that is not JSON or does not match its schema.
    #[error("{}", crate::core::text::escape_line(.0))]
    Schema(String),
}

/// How many characters of a server's error text a message keeps. What a server sends (an HTTP body, an
/// error inside a stream) is shown through [`crate::core::text::remote`]: control characters and
/// newlines escaped, so it can neither drive the terminal nor forge a log line.
pub const SERVER_TEXT: usize = 500;

impl ErrorKind {
    /// Whether the endpoint looks down (refused, unreachable, silent) rather than answering with an error.
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            ErrorKind::Refused | ErrorKind::Connect(_) | ErrorKind::Timeout(_)
        )
    }
}

/// An operational failure naming where it happened: `engine, qwen2.5-coder:32b: connection refused`.
/// Bindings put the function in front: `ollama.chat(engine, qwen2.5-coder:32b): connection refused`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {}", self.target(), crate::core::text::escape(&self.kind.to_string()))]
pub struct LlmError {
    /// The fleet host name (or URL) the request went to.
    pub host: String,
    pub model: Option<String>,
    pub kind: ErrorKind,
}

impl LlmError {
    pub fn new(host: impl Into<String>, model: Option<&str>, kind: ErrorKind) -> LlmError {
        LlmError {
            host: host.into(),
            model: model.map(str::to_string),
            kind,
        }
    }
    /// The message a binding raises: `ollama.chat(engine, qwen2.5-coder:32b): connection refused`.
    pub fn raised_by(&self, func: &str) -> String {
        let kind = self.kind.to_string();
        format!(
            "{func}({}): {}",
            self.target(),
            crate::core::text::escape(&kind)
        )
    }

    /// `host, model` or just `host`.
    pub fn target(&self) -> String {
        match &self.model {
            Some(m) => format!("{}, {}", self.host, crate::core::text::shown(m)),
            None => crate::core::text::shown(&self.host),
        }
    }
}

/// Nanoseconds (as Ollama reports durations) to seconds.
pub fn ns_to_secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_host_and_model() {
        let e = LlmError::new("engine", Some("qwen2.5-coder:32b"), ErrorKind::Refused);
        assert_eq!(
            e.to_string(),
            "engine, qwen2.5-coder:32b: connection refused"
        );
        let e = LlmError::new(
            "engine",
            None,
            ErrorKind::Timeout(Duration::from_millis(250)),
        );
        assert_eq!(e.to_string(), "engine: timeout: no answer within 250ms");
        assert!(e.kind.is_offline());
        let e = LlmError::new(
            "h",
            Some("m"),
            ErrorKind::ModelNotFound("model \"m\" not found".into()),
        );
        assert_eq!(
            e.to_string(),
            "h, m: model not found: model \"m\" not found (try ollama.pull)"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        let r = Retry {
            retries: 5,
            base: Duration::from_millis(100),
            max_wait: Duration::from_millis(500),
            on_connect: true,
        };
        for _ in 0..50 {
            let one = r.backoff(1);
            assert!(
                one >= Duration::from_millis(75) && one <= Duration::from_millis(125),
                "{one:?}"
            );
            let three = r.backoff(3);
            assert!(
                three >= Duration::from_millis(300) && three <= Duration::from_millis(500),
                "{three:?}"
            );
            assert!(r.backoff(10) <= Duration::from_millis(500));
        }
    }
}

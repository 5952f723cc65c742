//! OpenAI-compatible chat completions (OpenRouter by default; Ollama's `/v1` and llama.cpp's server work
//! too). Always streamed over SSE: `data: {…}` events, `: comment` keep-alives (`: OPENROUTER PROCESSING`),
//! `data: [DONE]` at the end, usage (and OpenRouter's `cost`) in the final chunk, errors mid-stream as a chunk
//! with an `error` object. Plus OpenRouter's `/models` (with pricing) and `/key` (credits).
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cost::{self, DEFAULT_MAX_TOKENS, estimate_tokens};
pub use super::cost::{CostSource, price_of};
use super::http::{self, Events, Lines, SendError};
use super::ledger::ProviderUsage;
use super::shape::{self, Answered, Gather, Routed, Settled, Shape};
use super::tools::{self, Fragments};
use super::{ErrorKind, LlmError, Message, OnToken, Retry, Timeouts, Wait};
use crate::core::fleet::{DEFAULT_OPENROUTER_BASE, Fleet, Price};
use crate::core::secret::Secret;

/// `openrouter.chat{…}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(serialize_with = "wire_messages")]
    pub messages: Vec<Message>,
    /// Tools offered (sent as `tools`), `content_tool_calls`, the schema (sent as `response_format`, see
    /// [`ChatRequest::require`]).
    #[serde(flatten)]
    pub shape: Shape,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{type = "json_schema", json_schema = {name, strict, schema}}` (see [`ChatRequest::require`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// OpenRouter: `{effort | max_tokens, exclude}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// OpenRouter: fallback models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// OpenRouter: provider routing preferences, passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Value>,
}

fn wire_messages<S: serde::Serializer>(m: &[Message], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(tools::openai_messages(m))
}

impl ChatRequest {
    /// The request the router sends to a cloud tier: always bounded (`max_tokens`, else
    /// [`DEFAULT_MAX_TOKENS`]), the schema as a strict response format (checked by the router).
    pub fn routed(chat: &Routed<'_>) -> ChatRequest {
        let mut req = ChatRequest {
            model: chat.model.to_string(),
            messages: chat.messages.to_vec(),
            max_tokens: Some(chat.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            reasoning: chat.reasoning.cloned(),
            ..Default::default()
        };
        req.shape.content_tool_calls = chat.content_tool_calls;
        req.shape.offer(chat.tools.to_vec());
        if let Some(schema) = chat.schema {
            req.require(schema.clone());
            req.shape.schema = None;
        }
        req
    }
    /// Asks for JSON matching `schema`: a strict `json_schema` response format, and (OpenRouter) only
    /// providers that honour it.
    pub fn require(&mut self, schema: Value) {
        self.response_format = Some(serde_json::json!({"type": "json_schema",
            "json_schema": {"name": "answer", "strict": true, "schema": schema}}));
        let mut provider = match self.provider.take() {
            Some(Value::Object(o)) => o,
            _ => Default::default(),
        };
        provider.insert("require_parameters".into(), Value::Bool(true));
        self.provider = Some(Value::Object(provider));
        self.shape.schema = Some(schema);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    /// Text, tool calls, reasoning (`delta.reasoning`), the schema answer and the message to continue with.
    #[serde(flatten)]
    pub answer: Settled,
    pub model: String,
    pub id: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// USD; 0 when `cost_source` is `unknown`.
    pub cost: f64,
    pub cost_source: CostSource,
    /// Seconds, measured.
    pub duration: f64,
    /// `stop`, `length`, `tool_calls`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

impl Answered for Completion {
    fn tokens(&self) -> (u64, u64) {
        (self.tokens_in, self.tokens_out)
    }
    fn cost(&self, _: Option<Price>) -> (f64, CostSource) {
        (self.cost, self.cost_source)
    }
    fn rebook(&mut self, cost: f64) {
        (self.cost, self.cost_source) = (cost, CostSource::Reserved);
    }
    fn into_settled(self) -> Settled {
        self.answer
    }
}

/// `GET /key`: what the key may still spend (USD). `limit` and `remaining` are `None` for unlimited keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credits {
    pub limit: Option<f64>,
    pub usage: f64,
    pub remaining: Option<f64>,
}

/// One streamed event: a piece of the answer, the final usage, or an error.
#[derive(Debug, Default, Deserialize)]
struct Chunk {
    id: Option<String>,
    model: Option<String>,
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    error: Option<ApiError>,
}

#[derive(Debug, Default, Deserialize)]
struct Choice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    content: Option<String>,
    reasoning: Option<String>,
    reasoning_details: Option<Vec<Value>>,
    tool_calls: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// OpenRouter: what the call cost (USD).
    cost: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    code: Option<Value>,
}

/// An OpenAI-compatible endpoint and its key.
#[derive(Debug, Clone)]
pub struct OpenAi {
    http: reqwest::Client,
    base_url: String,
    /// `Bearer <key>`, marked sensitive (its `Debug` prints `Sensitive`).
    auth: Option<reqwest::header::HeaderValue>,
    name: String,
    key: Option<Secret>,
    key_env: String,
    pub timeouts: Timeouts,
    pub retry: Retry,
}

/// Default retries for cloud calls: 3 more tries, 0.5 s doubling, at most 30 s apart.
pub const RETRY: Retry = Retry {
    retries: 3,
    base: Duration::from_millis(500),
    max_wait: Duration::from_secs(30),
    on_connect: true,
};

impl OpenAi {
    /// `key` is read by the caller (usually from `$key_env`); `None` makes every call fail naming `key_env`.
    pub fn new(base_url: &str, key_env: &str, key: Option<Secret>, timeouts: Timeouts) -> OpenAi {
        let base_url = base_url.trim_end_matches('/').to_string();
        let name = if base_url == DEFAULT_OPENROUTER_BASE {
            "openrouter".to_string()
        } else {
            base_url.clone()
        };
        let auth = key.as_ref().map(bearer);
        OpenAi {
            http: http::client(&timeouts),
            auth,
            base_url,
            name,
            key,
            key_env: key_env.to_string(),
            timeouts,
            retry: RETRY,
        }
    }

    /// From the fleet's `openrouter` settings (or `$OPENROUTER_BASE_URL`) and the key variable.
    pub fn from_fleet(fleet: &Fleet) -> OpenAi {
        let key_env = fleet.openrouter_key_env();
        let key = std::env::var(&key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| Secret::new(k.trim()));
        OpenAi::new(
            &fleet.openrouter_base_url(),
            &key_env,
            key,
            Timeouts::default(),
        )
    }

    /// The name errors use: `openrouter` for OpenRouter, else the base URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn key(&self, model: Option<&str>) -> Result<&Secret, LlmError> {
        self.key.as_ref().ok_or_else(|| {
            LlmError::new(
                &self.name,
                model,
                ErrorKind::MissingKey(self.key_env.clone()),
            )
        })
    }

    /// `POST /chat/completions`, streamed. `price` turns token counts into a cost when the API reports none.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        price: Option<Price>,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
    ) -> Result<Completion, LlmError> {
        self.chat_thinking(req, price, wait, on_token, None).await
    }

    /// [`OpenAi::chat`] with `on_thinking` getting each piece of the reasoning. Streamed tool calls are
    /// joined per index (and told apart by id); a schema answer is decoded.
    pub async fn chat_thinking(
        &self,
        req: &ChatRequest,
        price: Option<Price>,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
        on_thinking: Option<OnToken<'_>>,
    ) -> Result<Completion, LlmError> {
        let model = req.model.as_str();
        let mut fragments = Fragments::default();
        let mut details: Vec<Value> = Vec::new();
        let key = self.key(Some(model))?;
        let err = |kind| LlmError::new(&self.name, Some(model), kind);
        let timeouts = self.timeouts.start(wait.into());
        let mut gather = Gather::new(req.max_tokens.map(u64::from), on_token, on_thinking);
        let body = bytes::Bytes::from(http::streamed(req, true));
        let started = Instant::now();
        let url = format!("{}/chat/completions", self.base_url);
        let build = || http::json_body(self.authorized(self.http.post(&url)), &body);
        let resp = http::send(build, &timeouts, &self.retry)
            .await
            .map_err(|f| err(self.status_error(f)))?;
        let mut events = Events::new(Lines::new(resp, &timeouts));
        let (mut id, mut answered_by, mut finish_reason) = (String::new(), None, None);
        let mut usage: Option<Usage> = None;
        loop {
            let Some(data) = events.next().await.map_err(err)? else {
                return Err(err(ErrorKind::Truncated));
            };
            if data.trim_ascii() == b"[DONE]" {
                events.drain().await;
                break;
            }
            let chunk: Chunk = http::frame(data).map_err(err)?;
            if let Some(e) = chunk.error {
                return Err(err(ErrorKind::Server(key.scrub(&api_error_text(&e)))));
            }
            if let Some(first) = chunk.id.filter(|_| id.is_empty()) {
                id = first;
            }
            if let Some(m) = chunk.model {
                answered_by = Some(m);
            }
            for choice in chunk.choices.into_iter().flatten() {
                let delta = choice.delta.unwrap_or_default();
                for frag in delta.tool_calls.iter().flatten() {
                    if let Some(args) = frag.pointer("/function/arguments").and_then(Value::as_str)
                    {
                        gather.count(args).map_err(err)?;
                    }
                    fragments.push(frag);
                }
                details.extend(delta.reasoning_details.into_iter().flatten());
                gather
                    .piece(
                        delta.content.as_deref().unwrap_or(""),
                        delta.reasoning.as_deref(),
                        false,
                    )
                    .await
                    .map_err(err)?;
                if let Some(reason) = choice.finish_reason {
                    finish_reason = Some(reason);
                }
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
        }
        let duration = started.elapsed().as_secs_f64();
        gather.piece("", None, true).await.map_err(err)?;
        let details = (!details.is_empty()).then_some(Value::Array(details));
        let s = shape::settle(
            req.shape.asked(),
            gather.into_parts(),
            fragments.finish(),
            details,
        )
        .map_err(err)?;
        if s.called() {
            finish_reason = Some("tool_calls".into());
        }
        let (tokens_in, tokens_out, cost, cost_source) =
            reckon(usage.as_ref(), price, &req.messages, &s.text);
        Ok(Completion {
            model: answered_by.unwrap_or_else(|| model.to_string()),
            id,
            tokens_in,
            tokens_out,
            cost,
            cost_source,
            duration,
            finish_reason,
            answer: s,
        })
    }

    /// `GET /models` → the `data` list (ids, context lengths, pricing per token as strings).
    pub async fn models(&self) -> Result<Value, LlmError> {
        let mut doc = self.get("/models", self.key.as_ref()).await?;
        Ok(doc
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Array(Vec::new())))
    }

    /// `GET /key` → limit, usage and what remains.
    pub async fn credits(&self) -> Result<Credits, LlmError> {
        let key = self.key(None)?;
        let doc = self.get("/key", Some(key)).await?;
        let data = doc.get("data").unwrap_or(&doc);
        let num = |k: &str| data.get(k).and_then(Value::as_f64);
        let limit = num("limit");
        let usage = num("usage").unwrap_or(0.0);
        let remaining = num("limit_remaining").or_else(|| limit.map(|l| (l - usage).max(0.0)));
        Ok(Credits {
            limit,
            usage,
            remaining,
        })
    }

    /// Whether the endpoint reports the key's usage at `GET /key` (OpenRouter: its base URL ends in
    /// `/api/v1`, which OpenAI, vLLM, llama.cpp and Ollama's `/v1` do not).
    pub fn reports_usage(&self) -> bool {
        self.key.is_some() && self.base_url.ends_with("/api/v1")
    }

    /// `GET /key` → the key's usage this UTC month and day, its limit and what remains (USD), within
    /// `wait` and without retries (a budget check does not wait long for it).
    pub async fn key_info(&self, wait: Duration) -> Result<ProviderUsage, LlmError> {
        let key = self.key(None)?;
        let timeouts = Timeouts {
            connect: self.timeouts.connect.min(wait),
            ..self.timeouts.with_wait(wait)
        };
        let doc = self
            .get_with("/key", Some(key), &timeouts, &Retry::NONE)
            .await?;
        let data = doc.get("data").unwrap_or(&doc);
        let num = |k: &str| {
            data.get(k)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        let usage = ProviderUsage {
            fetched: 0,
            usage_monthly: num("usage_monthly"),
            usage_daily: num("usage_daily"),
            limit: num("limit"),
            limit_remaining: num("limit_remaining"),
        };
        if usage.usage_monthly.is_none() {
            return Err(LlmError::new(
                &self.name,
                None,
                ErrorKind::Protocol(format!(
                    "no data.usage_monthly in {}",
                    http::snippet(doc.to_string().as_bytes())
                )),
            ));
        }
        Ok(usage)
    }

    async fn get(&self, path: &str, key: Option<&Secret>) -> Result<Value, LlmError> {
        self.get_with(path, key, &self.timeouts, &self.retry).await
    }

    async fn get_with(
        &self,
        path: &str,
        key: Option<&Secret>,
        timeouts: &Timeouts,
        retry: &Retry,
    ) -> Result<Value, LlmError> {
        let err = |kind| LlmError::new(&self.name, None, kind);
        let url = format!("{}{path}", self.base_url);
        let build = || match key {
            Some(_) => self.authorized(self.http.get(&url)),
            None => self.http.get(&url),
        };
        let timeouts = timeouts.start(Wait::default());
        http::fetch_json(build, &timeouts, retry, |f| self.status_error(f))
            .await
            .map_err(err)
    }

    /// The key and the title header (callers have checked that there is a key).
    fn authorized(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let rb = match &self.auth {
            Some(auth) => rb.header(reqwest::header::AUTHORIZATION, auth.clone()),
            None => rb,
        };
        rb.header(
            "X-Title",
            reqwest::header::HeaderValue::from_static("baton"),
        )
    }

    /// `{"error": {"message", "code"}}` → a kind; 402 says "insufficient credits"; the key is scrubbed.
    fn status_error(&self, e: SendError) -> ErrorKind {
        let f = match e {
            SendError::Status(f) => f,
            SendError::Transport(kind) => return kind,
        };
        let (message, doc) = shape::error_message(&f.body);
        let limit_source = doc
            .as_ref()
            .and_then(|v| v.pointer("/error/metadata/limit_source"))
            .and_then(Value::as_str);
        let message = self
            .key
            .as_ref()
            .map_or(message.clone(), |k| k.scrub(&message));
        match f.status.as_u16() {
            // OpenRouter: the key's own spending limit (402 with its source, or 403), never retried.
            402 if limit_source == Some("openrouter_key_limit") => ErrorKind::KeyLimit(message),
            403 if message.to_ascii_lowercase().contains("key limit exceeded") => {
                ErrorKind::KeyLimit(message)
            }
            402 => ErrorKind::InsufficientCredits(message),
            status => ErrorKind::Status { status, message },
        }
    }
}

/// OpenRouter's key management (`baton budget sync`): needs a management key, which never reaches the
/// completion endpoints.
impl OpenAi {
    /// The masked label of this client's key (`sk-or-v1-abc...xyz`), from `GET /key`.
    pub async fn key_label(&self) -> Result<String, LlmError> {
        let key = self.key(None)?;
        let doc = self.get("/key", Some(key)).await?;
        doc.pointer("/data/label")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                LlmError::new(
                    &self.name,
                    None,
                    ErrorKind::Protocol("no data.label in the /key answer".into()),
                )
            })
    }

    /// The hash of the key labelled `label`, from `GET /keys` (management key).
    pub async fn key_hash(&self, management: &Secret, label: &str) -> Result<String, LlmError> {
        let err = |kind| LlmError::new(&self.name, None, kind);
        let url = format!("{}/keys", self.base_url);
        let build = || self.managed(self.http.get(&url), management);
        let doc: Value =
            http::fetch_json(build, &self.timeouts, &self.retry, |f| self.status_error(f))
                .await
                .map_err(err)?;
        doc.get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|k| k.get("label").and_then(Value::as_str) == Some(label))
            .and_then(|k| k.get("hash").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| {
                err(ErrorKind::Protocol(format!(
                    "no key labelled {label} among the management key's keys"
                )))
            })
    }

    /// `PATCH /keys/{hash}`: the key's own spending limit, reset every UTC month (management key).
    pub async fn set_monthly_limit(
        &self,
        management: &Secret,
        hash: &str,
        limit: f64,
    ) -> Result<(), LlmError> {
        let err = |kind| LlmError::new(&self.name, None, kind);
        let url = format!("{}/keys/{hash}", self.base_url);
        let body = bytes::Bytes::from(
            serde_json::json!({"limit": limit, "limit_reset": "monthly"}).to_string(),
        );
        let build = || http::json_body(self.managed(self.http.patch(&url), management), &body);
        http::send(build, &self.timeouts, &self.retry)
            .await
            .map(|_| ())
            .map_err(|f| {
                let kind = self.status_error(f);
                err(match kind {
                    ErrorKind::Status { status, message } => ErrorKind::Status {
                        status,
                        message: management.scrub(&message),
                    },
                    other => other,
                })
            })
    }

    fn managed(&self, rb: reqwest::RequestBuilder, management: &Secret) -> reqwest::RequestBuilder {
        rb.header(reqwest::header::AUTHORIZATION, bearer(management))
    }
}

/// `Bearer <key>`, marked sensitive (its `Debug` prints `Sensitive`).
fn bearer(key: &Secret) -> reqwest::header::HeaderValue {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer invalid-key"));
    v.set_sensitive(true);
    v
}

fn api_error_text(e: &ApiError) -> String {
    match &e.code {
        Some(code) if !code.is_null() => format!(
            "{} ({})",
            e.message,
            code.as_str()
                .map_or_else(|| code.to_string(), str::to_string)
        ),
        _ => e.message.clone(),
    }
}

/// Tokens and cost of a finished stream: the provider's cost as reported (the budget checks it is
/// plausible), else the reported tokens at `price`; without usage at the end of the stream (a server that
/// ignores `stream_options`), tokens estimated from the prompt and the answer.
fn reckon(
    usage: Option<&Usage>,
    price: Option<Price>,
    prompt: &[Message],
    answer: &str,
) -> (u64, u64, f64, CostSource) {
    let counted = usage.filter(|u| u.prompt_tokens.is_some() || u.completion_tokens.is_some());
    let tokens = |u: &Usage| {
        (
            u.prompt_tokens.unwrap_or(0),
            u.completion_tokens.unwrap_or(0),
        )
    };
    match (usage.and_then(|u| u.cost), counted) {
        (Some(c), _) => {
            let (tokens_in, tokens_out) = counted.map_or((0, 0), tokens);
            (tokens_in, tokens_out, c, CostSource::Provider)
        }
        (None, Some(u)) => {
            let (tokens_in, tokens_out) = tokens(u);
            let (cost, source) = cost::priced(price, tokens_in, tokens_out);
            (tokens_in, tokens_out, cost, source)
        }
        (None, None) => {
            let tokens_in = estimate_tokens(prompt);
            let tokens_out = (answer.len() as u64).div_ceil(3);
            let (cost, source) = match price {
                Some(p) => (price_of(p, tokens_in, tokens_out), CostSource::Estimate),
                None => (0.0, CostSource::Unknown),
            };
            (tokens_in, tokens_out, cost, source)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events as OpenRouter, OpenAI, Ollama's `/v1` and llama.cpp send them, and some odd but valid ones.
    const EVENTS: &[&str] = &[
        r#"{"id":"gen-1","provider":"Stub","model":"m/x","object":"chat.completion.chunk","created":1790000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}"#,
        r#"{"id":"gen-1","model":"m/x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop","native_finish_reason":"end_turn","logprobs":null}],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9,"cost":0.00001,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0},"cost_details":{"upstream_inference_cost":null}}}"#,
        r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen2.5-coder:32b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"line\none \"quoted\" \u00e9\ud83d\ude00"},"finish_reason":null}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0,"cost":12}}"#,
        r#"{"choices":[{"delta":null,"finish_reason":"length"},{"delta":{"content":null,"tool_calls":[{"id":"t","function":{"arguments":"{\"a\":[1,2]}"}}]}}],"usage":null,"id":null,"model":null}"#,
        " \n{ \"choices\" : [ { \"delta\" : { \"content\" : \"spaced\" } } ] , \"usage\" : { \"cost\" : -0.5e-3 } }\r\n",
        r#"{"model":"naïve ☃","choices":[{"delta":{"content":"ünïcödé"}}],"extra":{"deep":[[[{"a":true,"b":false,"c":null,"d":-0,"e":1E+2}]]]}}"#,
        "{}",
    ];

    #[test]
    fn events_read_with_serde() {
        let chunks: Vec<Chunk> = EVENTS
            .iter()
            .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
            .collect();
        let content = |c: &Chunk, i: usize| {
            let choice = &c.choices.as_ref().unwrap()[i];
            choice.delta.as_ref().and_then(|d| d.content.clone())
        };
        let usage = |c: &Chunk| {
            let u = c.usage.as_ref().unwrap();
            (u.prompt_tokens, u.completion_tokens, u.cost)
        };
        let c = &chunks[0];
        assert_eq!(
            (c.id.as_deref(), c.model.as_deref()),
            (Some("gen-1"), Some("m/x"))
        );
        assert_eq!(content(c, 0).as_deref(), Some("Hello"));
        assert_eq!(c.choices.as_ref().unwrap()[0].finish_reason, None);
        assert!(c.usage.is_none() && c.error.is_none());
        let c = &chunks[1];
        assert_eq!(
            c.choices.as_ref().unwrap()[0].finish_reason.as_deref(),
            Some("stop")
        );
        assert_eq!(usage(c), (Some(5), Some(4), Some(0.00001)));
        assert_eq!(
            content(&chunks[2], 0).as_deref(),
            Some("line\none \"quoted\" é😀")
        );
        assert_eq!(chunks[2].model.as_deref(), Some("qwen2.5-coder:32b"));
        assert_eq!(usage(&chunks[3]), (Some(0), Some(0), Some(12.0)));
        let c = &chunks[4];
        let choices = c.choices.as_ref().unwrap();
        assert!(choices[0].delta.is_none());
        assert_eq!(choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(content(c, 1), None);
        assert!(c.usage.is_none() && c.id.is_none() && c.model.is_none());
        assert_eq!(content(&chunks[5], 0).as_deref(), Some("spaced"));
        assert_eq!(usage(&chunks[5]), (None, None, Some(-0.5e-3)));
        assert_eq!(chunks[6].model.as_deref(), Some("naïve ☃"));
        assert_eq!(content(&chunks[6], 0).as_deref(), Some("ünïcödé"));
        let c = &chunks[7];
        assert!(c.id.is_none() && c.choices.is_none() && c.usage.is_none());

        let e: Chunk =
            serde_json::from_str(r#"{"error":{"message":"upstream overloaded","code":502}}"#)
                .unwrap();
        let e = e.error.unwrap();
        assert_eq!(api_error_text(&e), "upstream overloaded (502)");
        let dup = serde_json::from_str::<Chunk>(r#"{"id":"a","id":"b","choices":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(dup.contains("duplicate field `id`"), "{dup}");
        assert!(serde_json::from_str::<Chunk>(r#"{"choices":[{"delta":{"content":"cut"#).is_err());
        assert!(serde_json::from_str::<Chunk>(r#"{"choices":[{"delta":{"content":7}}]}"#).is_err());
    }

    #[test]
    fn missing_key_names_the_variable() {
        let c = OpenAi::new(
            "https://openrouter.ai/api/v1/",
            "MY_KEY",
            None,
            Timeouts::default(),
        );
        let e = c.key(Some("m")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "openrouter, m: no API key: set the environment variable MY_KEY"
        );
    }

    #[test]
    fn error_bodies_are_scrubbed_and_402_named() {
        let c = OpenAi::new(
            "http://x/v1",
            "K",
            Some(Secret::new("sk-secret-123")),
            Timeouts::default(),
        );
        let failed = |status: u16, body: &str| {
            SendError::Status(http::Failed {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                retry_after: None,
                body: body.into(),
            })
        };
        assert_eq!(
            c.status_error(failed(
                401,
                r#"{"error":{"message":"bad key sk-secret-123","code":401}}"#
            )),
            ErrorKind::Status {
                status: 401,
                message: "bad key ***".into()
            }
        );
        let e = c.status_error(failed(
            402,
            r#"{"error":{"message":"Insufficient credits","code":402}}"#,
        ));
        assert_eq!(
            e.to_string(),
            "insufficient credits (HTTP 402): Insufficient credits"
        );
        // The key's own limit, as OpenRouter says it (402 with its source, or 403): "key limit reached".
        let e = c.status_error(failed(
            402,
            r#"{"error":{"code":402,"message":"Key limit exceeded (monthly limit)","metadata":{"limit_source":"openrouter_key_limit"}}}"#,
        ));
        assert_eq!(
            e.to_string(),
            "key limit reached: Key limit exceeded (monthly limit)"
        );
        let e = c.status_error(failed(
            403,
            r#"{"error":{"code":403,"message":"Key limit exceeded"}}"#,
        ));
        assert!(matches!(e, ErrorKind::KeyLimit(_)), "{e:?}");
        let e = c.status_error(failed(403, r#"{"error":{"message":"Forbidden"}}"#));
        assert!(matches!(e, ErrorKind::Status { status: 403, .. }), "{e:?}");
        assert_eq!(c.name(), "http://x/v1");
        assert!(!format!("{c:?}").contains("sk-secret-123"));
    }
}

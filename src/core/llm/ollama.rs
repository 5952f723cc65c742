//! Ollama's native API: `/api/chat` and `/api/generate` (NDJSON streaming, a final `done: true` object with
//! counts and nanosecond durations), `/api/embed`, `/api/tags`, `/api/ps`, `/api/show`, `/api/version` and
//! `/api/pull` (progress lines). Errors arrive as `{"error": "…"}`, with a 4xx/5xx status or as a line in a
//! 200 stream. Inference requests pass the per-endpoint [`Limiter`].
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cost::{self, CostSource};
use super::http::{self, Lines, SendError};
use super::limiter::{Limiter, Queue};
use super::shape::{self, Answered, Gather, Routed, Settled, Shape};
use super::tools;
use super::{
    Callback, ErrorKind, LlmError, Message, OnToken, Retry, Timeouts, ToolCall, Wait, ns_to_secs,
};
use crate::core::fleet::{self, Fleet, Price};

/// One Ollama server: the name errors use (fleet host or URL), its base URL and its parallel limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub parallel: u32,
}

/// `host`: a fleet host name that has `ollama`, or a URL. Default: the first fleet host with Ollama, else
/// `$OLLAMA_HOST`, else `http://127.0.0.1:11434`.
pub fn resolve(fleet: &Fleet, host: Option<&str>) -> Result<Endpoint, LlmError> {
    let by_url = |url: String| {
        let found = fleet
            .hosts
            .iter()
            .find(|(_, h)| h.ollama.as_deref() == Some(url.as_str()));
        match found {
            Some((name, h)) => Endpoint {
                name: name.clone(),
                url,
                parallel: h.ollama_parallel,
            },
            None => Endpoint {
                name: url.clone(),
                url,
                parallel: fleet::DEFAULT_OLLAMA_PARALLEL,
            },
        }
    };
    match host {
        Some(h) if h.contains("://") || h.contains(':') => {
            Ok(by_url(fleet::normalize_ollama_url(h)))
        }
        Some(h) => match fleet
            .host(h)
            .map_err(|e| LlmError::new(h, None, ErrorKind::UnknownHost(format!("{h:?}: {e}"))))?
        {
            Some(entry) => match &entry.ollama {
                Some(url) => Ok(Endpoint {
                    name: h.to_string(),
                    url: url.clone(),
                    parallel: entry.ollama_parallel,
                }),
                None => Err(LlmError::new(
                    h,
                    None,
                    ErrorKind::UnknownHost(format!("{h:?} has no `ollama` URL in the fleet")),
                )),
            },
            None => {
                let with = fleet
                    .hosts
                    .iter()
                    .filter(|(_, e)| e.ollama.is_some())
                    .map(|(n, _)| n.as_str());
                let hint = crate::core::wording::suggest(h, with.clone());
                let known: Vec<&str> = with.collect();
                // A huge name is not echoed in full (twice).
                let h = crate::core::text::truncate(h, 100);
                Err(LlmError::new(
                    h.as_ref(),
                    None,
                    ErrorKind::UnknownHost(format!(
                        "{h:?}{hint} (fleet hosts with ollama: {}; or pass a URL)",
                        known.join(", ")
                    )),
                ))
            }
        },
        None => match fleet.first_ollama() {
            Some((name, url)) => Ok(Endpoint {
                name: name.to_string(),
                url: url.to_string(),
                parallel: fleet.hosts[name].ollama_parallel,
            }),
            None => {
                let env = std::env::var("OLLAMA_HOST").ok().filter(|v| !v.is_empty());
                Ok(by_url(
                    env.map(|v| fleet::normalize_ollama_url(&v))
                        .unwrap_or_else(|| fleet::DEFAULT_OLLAMA.to_string()),
                ))
            }
        },
    }
}

/// `ollama.chat{…}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(serialize_with = "wire_messages")]
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Tools offered (sent as `tools`), `content_tool_calls`, the schema (sent as `format`, see
    /// [`ChatRequest::require`]).
    #[serde(flatten)]
    pub shape: Shape,
    /// `true`, `false` or `"low"|"medium"|"high"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

fn wire_messages<S: serde::Serializer>(m: &[Message], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(tools::ollama_messages(m))
}

impl ChatRequest {
    /// The request the router sends to an Ollama tier: `max_tokens` as `num_predict` (when given), the
    /// schema as `format` (checked by the router).
    pub fn routed(chat: &Routed<'_>) -> ChatRequest {
        let mut req = ChatRequest {
            model: chat.model.to_string(),
            messages: chat.messages.to_vec(),
            options: chat
                .max_tokens
                .map(|n| serde_json::json!({ "num_predict": n })),
            think: chat.think.cloned(),
            format: chat.schema.cloned(),
            ..Default::default()
        };
        req.shape.content_tool_calls = chat.content_tool_calls;
        req.shape.offer(chat.tools.to_vec());
        req
    }
    /// Asks for JSON matching `schema` (Ollama's `format`).
    pub fn require(&mut self, schema: Value) {
        self.format = Some(schema.clone());
        self.shape.schema = Some(schema);
    }
}

/// `ollama.generate{…}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

/// The result of a chat or generate call; counts and durations from the final `done: true` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    /// Text, tool calls, reasoning, the schema answer and the message to continue with.
    #[serde(flatten)]
    pub answer: Settled,
    pub model: String,
    pub host: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Seconds (the server's `total_duration`, else measured).
    pub duration: f64,
    pub tokens_per_s: f64,
    pub done_reason: String,
    /// `tool_calls` when the model asked for tools (whatever `done_reason` says), else `done_reason`.
    pub finish_reason: String,
}

impl Answered for Completion {
    fn tokens(&self) -> (u64, u64) {
        (self.tokens_in, self.tokens_out)
    }
    /// Local models are free unless the fleet prices the tier (power, hardware).
    fn cost(&self, price: Option<Price>) -> (f64, CostSource) {
        cost::priced(price, self.tokens_in, self.tokens_out)
    }
    fn rebook(&mut self, _: f64) {}
    fn into_settled(self) -> Settled {
        self.answer
    }
}

/// One line of a chat/generate stream.
#[derive(Debug, Default, Deserialize)]
struct Line {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<Piece>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    total_duration: Option<u64>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct Piece {
    #[serde(default)]
    content: String,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// A progress line of `/api/pull`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
    #[serde(default, skip_serializing)]
    error: Option<String>,
}

/// Called with each pull progress line.
pub type OnProgress<'a> = Callback<'a, Progress>;

/// The Ollama client: one connection pool and one limiter for every endpoint.
#[derive(Debug, Clone)]
pub struct Ollama {
    http: reqwest::Client,
    limiter: Limiter,
    pub timeouts: Timeouts,
    /// Ollama answers 503 when its own queue is full; that is retried. A refused connection is not:
    /// routing wants to know at once that the machine is down.
    pub retry: Retry,
}

impl Default for Ollama {
    fn default() -> Self {
        Ollama::new(Timeouts::default())
    }
}

/// How long `online` waits.
pub const ONLINE_TIMEOUT: Duration = Duration::from_secs(2);

impl Ollama {
    pub fn new(timeouts: Timeouts) -> Ollama {
        Ollama {
            http: http::client(&timeouts),
            limiter: Limiter::default(),
            timeouts,
            retry: Retry {
                retries: 2,
                ..Retry::NONE
            },
        }
    }

    pub fn queue(&self, ep: &Endpoint) -> Queue {
        self.limiter.queue(&ep.url)
    }

    /// `/api/chat`, streamed; `on_token` gets each piece of the answer.
    pub async fn chat(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
    ) -> Result<Completion, LlmError> {
        self.chat_thinking(ep, req, wait, on_token, None).await
    }

    /// `/api/chat` with `on_thinking` getting each piece of the reasoning. Tool calls are read whole from
    /// any chunk (or, when tools were offered, from JSON in the content); a schema answer is decoded.
    pub async fn chat_thinking(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
        on_thinking: Option<OnToken<'_>>,
    ) -> Result<Completion, LlmError> {
        let body = http::streamed(req, false);
        let gather = Gather::new(num_predict(&req.options), on_token, on_thinking);
        let (mut c, answer, calls) = self
            .complete(ep, "/api/chat", &req.model, body, wait.into(), gather)
            .await?;
        let s = shape::settle(req.shape.asked(), answer, calls, None)
            .map_err(|k| LlmError::new(&ep.name, Some(&req.model), k))?;
        if s.called() {
            c.finish_reason = "tool_calls".into();
        }
        c.answer = s;
        Ok(c)
    }

    /// `/api/generate`, streamed.
    pub async fn generate(
        &self,
        ep: &Endpoint,
        req: &GenerateRequest,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
    ) -> Result<Completion, LlmError> {
        let body = http::streamed(req, false);
        let gather = Gather::new(num_predict(&req.options), on_token, None);
        let (mut c, (text, thinking), calls) = self
            .complete(ep, "/api/generate", &req.model, body, wait.into(), gather)
            .await?;
        (c.answer.text, c.answer.thinking, c.answer.tool_calls) = (text, thinking, calls);
        Ok(c)
    }

    /// Streams one chat or generate call: the completion's counts and durations from the final object, the
    /// answer and reasoning gathered, the tool calls as sent.
    async fn complete(
        &self,
        ep: &Endpoint,
        path: &str,
        model: &str,
        body: Vec<u8>,
        wait: Wait,
        mut gather: Gather<'_, '_>,
    ) -> Result<(Completion, (String, Option<String>), Vec<ToolCall>), LlmError> {
        let err = |kind| LlmError::new(&ep.name, Some(model), kind);
        let mut calls = Vec::new();
        let timeouts = self.timeouts.start(wait);
        let slot = self.limiter.acquire(&ep.url, ep.parallel);
        let _slot = http::within(&timeouts, slot).await.map_err(err)?;
        let started = Instant::now();
        let resp = self.post(ep, path, Some(model), body, &timeouts).await?;
        let mut lines = Lines::new(resp, &timeouts);
        loop {
            let raw = match lines.next().await.map_err(err)? {
                None => return Err(err(ErrorKind::Truncated)),
                Some(l) if l.iter().all(u8::is_ascii_whitespace) => continue,
                Some(l) => l,
            };
            let line: Line = http::frame(raw).map_err(err)?;
            if let Some(message) = line.error {
                return Err(err(ErrorKind::Server(message)));
            }
            let (piece, thought, asked) = match line.message {
                Some(m) => (m.content, m.thinking, m.tool_calls),
                None => (line.response.unwrap_or_default(), None, None),
            };
            calls.extend(asked.iter().flat_map(|a| tools::from_ollama(a)));
            gather
                .piece(&piece, thought.as_deref(), line.done)
                .await
                .map_err(err)?;
            if line.done {
                lines.drain().await;
                let tokens_out = line.eval_count.unwrap_or(0);
                let eval_secs = line.eval_duration.map(ns_to_secs).unwrap_or(0.0);
                let c = Completion {
                    answer: Settled {
                        text: String::new(),
                        tool_calls: Vec::new(),
                        thinking: None,
                        data: None,
                        message: Message::new("assistant", ""),
                    },
                    model: line.model.unwrap_or_else(|| model.to_string()),
                    host: ep.name.clone(),
                    tokens_in: line.prompt_eval_count.unwrap_or(0),
                    tokens_out,
                    duration: line
                        .total_duration
                        .map(ns_to_secs)
                        .unwrap_or_else(|| started.elapsed().as_secs_f64()),
                    tokens_per_s: if eval_secs > 0.0 {
                        tokens_out as f64 / eval_secs
                    } else {
                        0.0
                    },
                    finish_reason: line.done_reason.clone().unwrap_or_else(|| "stop".into()),
                    done_reason: line.done_reason.unwrap_or_else(|| "stop".into()),
                };
                return Ok((c, gather.into_parts(), calls));
            }
        }
    }

    /// `/api/embed` → the server's `{model, embeddings, …}`.
    pub async fn embed(
        &self,
        ep: &Endpoint,
        model: &str,
        input: &Value,
    ) -> Result<Value, LlmError> {
        let body = serde_json::json!({ "model": model, "input": input });
        self.document(ep, "/api/embed", model, &body, true).await
    }

    /// `/api/show` for `model`.
    pub async fn show(&self, ep: &Endpoint, model: &str) -> Result<Value, LlmError> {
        let body = serde_json::json!({ "model": model });
        self.document(ep, "/api/show", model, &body, false).await
    }

    /// POSTs `body` about `model` and reads the JSON answer; `queued` waits for a slot of the endpoint's
    /// limiter first (work that runs the model).
    async fn document(
        &self,
        ep: &Endpoint,
        path: &str,
        model: &str,
        body: &Value,
        queued: bool,
    ) -> Result<Value, LlmError> {
        let err = |k| LlmError::new(&ep.name, Some(model), k);
        let body = serde_json::to_vec(body).unwrap_or_default();
        let timeouts = self.timeouts.start(Wait::default());
        let _slot = if queued {
            let slot = self.limiter.acquire(&ep.url, ep.parallel);
            Some(http::within(&timeouts, slot).await.map_err(err)?)
        } else {
            None
        };
        let resp = self.post(ep, path, Some(model), body, &timeouts).await?;
        http::read_json(resp, &timeouts).await.map_err(err)
    }

    /// GET a JSON document (`/api/tags`, `/api/ps`, `/api/version`).
    pub async fn get(&self, ep: &Endpoint, path: &str) -> Result<Value, LlmError> {
        let err = |kind| LlmError::new(&ep.name, None, kind);
        let url = format!("{}{path}", ep.url);
        let timeouts = self.timeouts.start(Wait::default());
        http::fetch_json(
            || self.http.get(&url),
            &timeouts,
            &Retry::NONE,
            status_error,
        )
        .await
        .map_err(err)
    }

    /// The `models` list of `/api/tags` (installed) or `/api/ps` (loaded).
    pub async fn list(&self, ep: &Endpoint, path: &str) -> Result<Value, LlmError> {
        let mut doc = self.get(ep, path).await?;
        Ok(doc
            .get_mut("models")
            .map(Value::take)
            .unwrap_or(Value::Array(Vec::new())))
    }

    /// `/api/version` → the version string.
    pub async fn version(&self, ep: &Endpoint) -> Result<String, LlmError> {
        let doc = self.get(ep, "/api/version").await?;
        match doc.get("version").and_then(Value::as_str) {
            Some(v) => Ok(v.to_string()),
            None => Err(LlmError::new(
                &ep.name,
                None,
                ErrorKind::Protocol(format!("no version in {doc}")),
            )),
        }
    }

    /// Whether the server answers `/api/version` within [`ONLINE_TIMEOUT`].
    pub async fn online(&self, ep: &Endpoint) -> bool {
        let url = format!("{}/api/version", ep.url);
        let probe = async {
            self.http
                .get(&url)
                .timeout(ONLINE_TIMEOUT)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        };
        tokio::time::timeout(ONLINE_TIMEOUT, probe)
            .await
            .unwrap_or(false)
    }

    /// `/api/pull`, reporting each progress line; returns the last status (`"success"`).
    pub async fn pull(
        &self,
        ep: &Endpoint,
        model: &str,
        mut on_progress: Option<OnProgress<'_>>,
    ) -> Result<String, LlmError> {
        let err = |kind| LlmError::new(&ep.name, Some(model), kind);
        let body = serde_json::to_vec(&serde_json::json!({ "model": model, "stream": true }))
            .unwrap_or_default();
        let resp = self
            .post(ep, "/api/pull", Some(model), body, &self.timeouts)
            .await?;
        let mut lines = Lines::new(resp, &self.timeouts);
        let mut last = String::new();
        while let Some(raw) = lines.next().await.map_err(err)? {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let p: Progress = http::frame(raw).map_err(err)?;
            if let Some(message) = p.error {
                return Err(err(ErrorKind::Server(message)));
            }
            last.clone_from(&p.status);
            if let Some(cb) = on_progress.as_mut() {
                cb(p).await.map_err(|e| err(ErrorKind::Callback(e)))?;
            }
        }
        if last == "success" {
            Ok(last)
        } else {
            Err(err(ErrorKind::Truncated))
        }
    }

    async fn post(
        &self,
        ep: &Endpoint,
        path: &str,
        model: Option<&str>,
        body: Vec<u8>,
        timeouts: &Timeouts,
    ) -> Result<reqwest::Response, LlmError> {
        let url = format!("{}{path}", ep.url);
        let body = bytes::Bytes::from(body);
        let build = || http::json_body(self.http.post(&url), &body);
        http::send(build, timeouts, &self.retry)
            .await
            .map_err(|f| LlmError::new(&ep.name, model, status_error(f)))
    }
}

/// `options.num_predict`, Ollama's `max_tokens`, when the request sets one.
pub fn num_predict(options: &Option<Value>) -> Option<u64> {
    options.as_ref()?.get("num_predict")?.as_u64()
}

/// A failed answer → its kind: the server's `{"error": …}` text, 404 "not found" as model-not-found.
fn status_error(e: SendError) -> ErrorKind {
    let f = match e {
        SendError::Status(f) => f,
        SendError::Transport(kind) => return kind,
    };
    let (message, _) = shape::error_message(&f.body);
    if f.status == reqwest::StatusCode::NOT_FOUND && message.contains("not found") {
        return ErrorKind::ModelNotFound(message);
    }
    ErrorKind::Status {
        status: f.status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> Fleet {
        Fleet::from_deserializer(json!({
            "hosts": {"engine": {"ollama": "http://engine:11434", "ollama_parallel": 2}, "brain": {}}
        }))
        .unwrap()
    }

    #[test]
    fn hosts_resolve_by_name_url_or_default() {
        let f = fleet();
        assert_eq!(
            resolve(&f, Some("engine")).unwrap(),
            Endpoint {
                name: "engine".into(),
                url: "http://engine:11434".into(),
                parallel: 2
            }
        );
        assert_eq!(resolve(&f, None).unwrap().name, "engine");
        let by_url = resolve(&f, Some("http://engine:11434/")).unwrap();
        assert_eq!((by_url.name.as_str(), by_url.parallel), ("engine", 2));
        let other = resolve(&f, Some("127.0.0.1:9")).unwrap();
        assert_eq!(
            (other.name.as_str(), other.url.as_str(), other.parallel),
            ("http://127.0.0.1:9", "http://127.0.0.1:9", 4)
        );
        let e = resolve(&f, Some("engin")).unwrap_err().to_string();
        assert!(
            e.contains("unknown host \"engin\", did you mean engine?"),
            "{e}"
        );
        let e = resolve(&f, Some("brain")).unwrap_err().to_string();
        assert!(e.contains("has no `ollama` URL"), "{e}");
    }

    #[test]
    fn error_bodies_become_kinds() {
        let failed = |status: u16, body: &str| {
            SendError::Status(http::Failed {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                retry_after: None,
                body: body.into(),
            })
        };
        assert_eq!(
            status_error(failed(
                404,
                r#"{"error":"model \"x\" not found, try pulling it first"}"#
            )),
            ErrorKind::ModelNotFound("model \"x\" not found, try pulling it first".into())
        );
        assert_eq!(
            status_error(failed(500, r#"{"error":"out of memory"}"#)),
            ErrorKind::Status {
                status: 500,
                message: "out of memory".into()
            }
        );
        assert_eq!(
            status_error(failed(502, "Bad Gateway")),
            ErrorKind::Status {
                status: 502,
                message: "Bad Gateway".into()
            }
        );
    }

    #[test]
    fn requests_ask_for_a_stream() {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("user", "hi")],
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&http::streamed(&req, false)).unwrap();
        assert_eq!(
            v,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true})
        );
    }
}

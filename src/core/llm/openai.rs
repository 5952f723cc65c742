//! OpenAI-compatible chat completions (OpenRouter by default; Ollama's `/v1` and llama.cpp's server work
//! too). Always streamed over SSE: `data: {…}` events, `: comment` keep-alives (`: OPENROUTER PROCESSING`),
//! `data: [DONE]` at the end, usage (and OpenRouter's `cost`) in the final chunk, errors mid-stream as a chunk
//! with an `error` object. Plus OpenRouter's `/models` (with pricing) and `/key` (credits).
use std::borrow::Cow;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{self, Lines};
use super::scan::{self, Scan};
use super::{ErrorKind, LlmError, Message, OnToken, Retry, Secret, Timeouts};
use crate::core::fleet::{DEFAULT_OPENROUTER_BASE, Fleet, Price};

/// `openrouter.chat{…}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
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

/// Where a completion's `cost` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostSource {
    /// The API reported it (OpenRouter's `usage.cost`).
    Provider,
    /// Computed from the tier's price table and the reported token counts.
    Pricing,
    Unknown,
}

impl CostSource {
    pub fn name(self) -> &'static str {
        match self {
            CostSource::Provider => "provider",
            CostSource::Pricing => "pricing",
            CostSource::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    pub text: String,
    pub model: String,
    pub id: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// USD; 0 when `cost_source` is `unknown`.
    pub cost: f64,
    pub cost_source: CostSource,
    /// Seconds, measured.
    pub duration: f64,
    /// `stop`, `length`, … (not part of the Lua result).
    #[serde(skip)]
    pub finish_reason: Option<String>,
}

/// `GET /key`: what the key may still spend (USD). `limit` and `remaining` are `None` for unlimited keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credits {
    pub limit: Option<f64>,
    pub usage: f64,
    pub remaining: Option<f64>,
}

/// One streamed event. Strings borrow from the event's bytes (they are copied only when they hold escapes),
/// so a chunk costs one small allocation (its `choices`) however long its text.
#[derive(Debug, Default, PartialEq, Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
}

impl<'a> Chunk<'a> {
    /// One event's JSON: the fast reader for the usual shape, serde_json for anything else (an `error`
    /// chunk, escapes in keys, malformed input: serde_json then words the error).
    fn parse(data: &'a [u8]) -> Result<Chunk<'a>, String> {
        let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
        if let Some(chunk) = Chunk::scan(text) {
            return Ok(chunk);
        }
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The next event of a stream: a repeat of the last one read in full (see [`Last`]), or read in full.
    fn read(data: &'a [u8], last: &mut Last) -> Result<Chunk<'a>, String> {
        if let Some(chunk) = last.repeat(data) {
            return Ok(chunk);
        }
        let chunk = Chunk::parse(data)?;
        last.keep(data, &chunk);
        Ok(chunk)
    }

    /// The fields baton reads, in one pass over the bytes; `None` hands the event to serde_json.
    fn scan(data: &'a str) -> Option<Chunk<'a>> {
        let mut s = Scan::new(data);
        let mut chunk = Chunk::default();
        let mut seen = [false; 4];
        s.object(|s, key| {
            match key {
                "id" => {
                    scan::first(&mut seen[0])?;
                    chunk.id = s.opt_string()?.map(Text);
                }
                "model" => {
                    scan::first(&mut seen[1])?;
                    chunk.model = s.opt_string()?.map(Text);
                }
                "choices" => {
                    scan::first(&mut seen[2])?;
                    s.array(|s| {
                        chunk.choices.push(Choice::scan(s)?);
                        Some(())
                    })?;
                }
                "usage" => {
                    scan::first(&mut seen[3])?;
                    if !s.null()? {
                        chunk.usage = Some(Usage::scan(s)?);
                    }
                }
                "error" => return None,
                _ => s.skip()?,
            }
            Some(())
        })?;
        s.at_end().then_some(chunk)
    }
}

/// The last event read in full, kept so that the next one can be read cheaply when it repeats it byte for
/// byte except for the content string. That is the usual case in a stream: `id`, `model`, `created`, the
/// choice's index … come again in every event and only the token changes.
#[derive(Default, Clone)]
struct Last {
    bytes: Vec<u8>,
    /// The content string, quotes included, is `bytes[head..bytes.len() - tail]`; `head == 0`: nothing kept.
    head: usize,
    tail: usize,
    /// Where `id` and `model` are in `bytes` (before or after the content string).
    id: Option<Range<usize>>,
    model: Option<Range<usize>>,
}

impl Last {
    /// Keeps `data` when its chunk is one choice whose only news is its content, a string without escapes,
    /// and `id` and `model` (if there) have no escapes either.
    fn keep(&mut self, data: &[u8], chunk: &Chunk) {
        self.head = 0;
        let at = |t: &Option<Text>| match t {
            None => Some(None),
            Some(Text(Cow::Borrowed(s))) => Some(Some(range_in(data, s))),
            Some(Text(Cow::Owned(_))) => None,
        };
        let [choice] = chunk.choices.as_slice() else {
            return;
        };
        let Some(Delta {
            content: Some(Text(Cow::Borrowed(content))),
        }) = &choice.delta
        else {
            return;
        };
        if chunk.usage.is_some() || chunk.error.is_some() || choice.finish_reason.is_some() {
            return;
        }
        let body = range_in(data, content);
        // A borrowed string has no escapes: its quotes sit right around it.
        let (head, end) = (body.start - 1, body.end + 1);
        let (Some(id), Some(model)) = (at(&chunk.id), at(&chunk.model)) else {
            return;
        };
        self.bytes.clear();
        self.bytes.extend_from_slice(data);
        (self.head, self.tail, self.id, self.model) = (head, data.len() - end, id, model);
    }

    /// `data` read as a repeat of the kept event, or `None`. Equal bytes around a JSON string put where a
    /// JSON string was make a document serde_json reads the same way but for that string.
    fn repeat<'a>(&self, data: &'a [u8]) -> Option<Chunk<'a>> {
        let (head, tail) = (self.head, self.tail);
        if head == 0 || data.len() < head + tail {
            return None;
        }
        let end = data.len() - tail;
        if data[..head] != self.bytes[..head]
            || data[end..] != self.bytes[self.bytes.len() - tail..]
        {
            return None;
        }
        let mut s = Scan::new(std::str::from_utf8(&data[head..end]).ok()?);
        let content = s.string()?;
        if !s.at_end() {
            return None;
        }
        let text = |r: &Option<Range<usize>>| {
            let r = r.as_ref()?;
            // A range after the content string moves with the end.
            let moved = |i: usize| i + data.len() - self.bytes.len();
            let r = if r.start < head {
                r.clone()
            } else {
                moved(r.start)..moved(r.end)
            };
            // SAFETY: these bytes equal the kept ones at the same place, which were read as a `&str`.
            let s = unsafe { std::str::from_utf8_unchecked(&data[r]) };
            Some(Text(Cow::Borrowed(s)))
        };
        Some(Chunk {
            id: text(&self.id),
            model: text(&self.model),
            choices: vec![Choice {
                delta: Some(Delta {
                    content: Some(Text(content)),
                }),
                finish_reason: None,
            }],
            usage: None,
            error: None,
        })
    }
}

/// Where `part`, a slice of `whole`, starts and ends in it.
fn range_in(whole: &[u8], part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

impl<'a> Choice<'a> {
    fn scan(s: &mut Scan<'a>) -> Option<Choice<'a>> {
        let mut choice = Choice::default();
        let mut seen = [false; 2];
        s.object(|s, key| {
            match key {
                "delta" => {
                    scan::first(&mut seen[0])?;
                    if !s.null()? {
                        choice.delta = Some(Delta::scan(s)?);
                    }
                }
                "finish_reason" => {
                    scan::first(&mut seen[1])?;
                    choice.finish_reason = s.opt_string()?.map(Text);
                }
                _ => s.skip()?,
            }
            Some(())
        })?;
        Some(choice)
    }
}

impl<'a> Delta<'a> {
    fn scan(s: &mut Scan<'a>) -> Option<Delta<'a>> {
        let mut delta = Delta::default();
        let mut seen = false;
        s.object(|s, key| {
            if key != "content" {
                return s.skip();
            }
            scan::first(&mut seen)?;
            delta.content = s.opt_string()?.map(Text);
            Some(())
        })?;
        Some(delta)
    }
}

impl Usage {
    fn scan(s: &mut Scan) -> Option<Usage> {
        let mut usage = Usage::default();
        let mut seen = [false; 3];
        s.object(|s, key| {
            let i = match key {
                "prompt_tokens" => 0,
                "completion_tokens" => 1,
                "cost" => 2,
                _ => return s.skip(),
            };
            scan::first(&mut seen[i])?;
            match i {
                0 => usage.prompt_tokens = s.u64()?,
                1 => usage.completion_tokens = s.u64()?,
                _ => usage.cost = if s.null()? { None } else { Some(s.f64()?) },
            }
            Some(())
        })?;
        Some(usage)
    }
}

/// A JSON string borrowed from the input when it has no escapes, else owned.
#[derive(Debug, Default, PartialEq)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    cost: Option<f64>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<Value>,
}

/// An OpenAI-compatible endpoint and its key.
#[derive(Debug, Clone)]
pub struct OpenAi {
    http: reqwest::Client,
    base_url: String,
    /// `{base_url}/chat/completions`, parsed once (`None` if the base URL does not parse: each call then
    /// fails with reqwest's own message).
    chat_url: Option<reqwest::Url>,
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
        let auth = key.as_ref().map(|k| {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", k.expose()))
                .unwrap_or_else(|_| {
                    reqwest::header::HeaderValue::from_static("Bearer invalid-key")
                });
            v.set_sensitive(true);
            v
        });
        OpenAi {
            http: http::client(&timeouts),
            chat_url: reqwest::Url::parse(&format!("{base_url}/chat/completions")).ok(),
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
        wait: Option<Duration>,
        mut on_token: Option<OnToken<'_>>,
    ) -> Result<Completion, LlmError> {
        let model = req.model.as_str();
        let key = self.key(Some(model))?;
        let err = |kind| LlmError::new(&self.name, Some(model), kind);
        let timeouts = wait.map_or(self.timeouts, |w| self.timeouts.with_wait(w));
        let body = bytes::Bytes::from(http::streamed(req, true));
        let started = Instant::now();
        let build = || {
            let post = match &self.chat_url {
                Some(url) => self.http.post(url.clone()),
                None => self
                    .http
                    .post(format!("{}/chat/completions", self.base_url)),
            };
            self.authorized(post)
                .header(reqwest::header::CONTENT_TYPE, http::JSON)
                .body(body.clone())
        };
        let resp = http::send(build, &timeouts, &self.retry)
            .await
            .map_err(|f| err(self.status_error(f)))?;
        let mut lines = Lines::new(resp, &timeouts);
        let mut out = Completion {
            text: String::new(),
            model: model.to_string(),
            id: String::new(),
            tokens_in: 0,
            tokens_out: 0,
            cost: 0.0,
            cost_source: CostSource::Unknown,
            duration: 0.0,
            finish_reason: None,
        };
        let mut usage: Option<Usage> = None;
        // The `data:` lines of the current event, joined by newlines.
        let mut data: Vec<u8> = Vec::with_capacity(1024);
        let mut last = Last::default();
        loop {
            // One SSE event: `data:` lines up to a blank line; `:` lines are comments.
            match lines.next().await.map_err(err)? {
                Some([]) => {}
                Some(l) => {
                    if let Some(rest) = l.strip_prefix(b"data:") {
                        if !data.is_empty() {
                            data.push(b'\n');
                        }
                        data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
                    }
                    continue;
                }
                None if data.is_empty() => return Err(err(ErrorKind::Truncated)),
                None => {}
            }
            if data.is_empty() {
                continue;
            }
            if data.trim_ascii() == b"[DONE]" {
                lines.drain().await;
                break;
            }
            let chunk = Chunk::read(&data, &mut last).map_err(|e| {
                err(ErrorKind::Protocol(format!(
                    "{e} in {}",
                    http::snippet(&data)
                )))
            })?;
            if let Some(e) = chunk.error {
                return Err(err(ErrorKind::Server(key.scrub(&api_error_text(&e)))));
            }
            if let Some(id) = chunk.id.filter(|_| out.id.is_empty()) {
                out.id = id.0.into_owned();
            }
            if let Some(m) = chunk.model.filter(|m| m.0 != out.model) {
                out.model = m.0.into_owned();
            }
            for choice in chunk.choices {
                if let Some(piece) = choice
                    .delta
                    .and_then(|d| d.content)
                    .filter(|c| !c.0.is_empty())
                {
                    out.text.push_str(&piece.0);
                    if let Some(cb) = on_token.as_mut() {
                        cb(piece.0.into_owned())
                            .await
                            .map_err(|e| err(ErrorKind::Callback(e)))?;
                    }
                }
                if let Some(reason) = choice.finish_reason {
                    out.finish_reason = Some(reason.0.into_owned());
                }
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
            data.clear();
        }
        out.duration = started.elapsed().as_secs_f64();
        if let Some(u) = usage {
            out.tokens_in = u.prompt_tokens;
            out.tokens_out = u.completion_tokens;
            (out.cost, out.cost_source) = match (u.cost, price) {
                (Some(c), _) if c.is_finite() && c >= 0.0 => (c, CostSource::Provider),
                (_, Some(p)) => (
                    price_of(p, u.prompt_tokens, u.completion_tokens),
                    CostSource::Pricing,
                ),
                _ => (0.0, CostSource::Unknown),
            };
        }
        Ok(out)
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

    async fn get(&self, path: &str, key: Option<&Secret>) -> Result<Value, LlmError> {
        let err = |kind| LlmError::new(&self.name, None, kind);
        let url = format!("{}{path}", self.base_url);
        let build = || match key {
            Some(_) => self.authorized(self.http.get(&url)),
            None => self.http.get(&url),
        };
        let resp = http::send(build, &self.timeouts, &self.retry)
            .await
            .map_err(|f| err(self.status_error(f)))?;
        http::read_json(resp, &self.timeouts).await.map_err(err)
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
    fn status_error(&self, f: Result<http::Failed, ErrorKind>) -> ErrorKind {
        let f = match f {
            Ok(f) => f,
            Err(kind) => return kind,
        };
        let message = serde_json::from_str::<Value>(&f.body)
            .ok()
            .and_then(|v| match v.get("error") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(e) => serde_json::from_value::<ApiError>(e.clone())
                    .ok()
                    .map(|e| e.message),
                None => None,
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| http::snippet(f.body.as_bytes()));
        let message = self
            .key
            .as_ref()
            .map_or(message.clone(), |k| k.scrub(&message));
        match f.status.as_u16() {
            402 => ErrorKind::InsufficientCredits(message),
            status => ErrorKind::Status { status, message },
        }
    }
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

/// USD for the token counts at `price` (USD per million tokens).
pub fn price_of(price: Price, tokens_in: u64, tokens_out: u64) -> f64 {
    (tokens_in as f64 * price.input + tokens_out as f64 * price.output) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_is_per_million() {
        assert!(
            (price_of(
                Price {
                    input: 3.0,
                    output: 15.0
                },
                1_000_000,
                100_000
            ) - 4.5)
                .abs()
                < 1e-12
        );
    }

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
    fn events_read_fast_the_same_as_with_serde() {
        for event in EVENTS {
            let fast =
                Chunk::scan(event).unwrap_or_else(|| panic!("the fast reader gave up on {event}"));
            let serde: Chunk = serde_json::from_str(event).unwrap();
            assert_eq!(fast, serde, "{event}");
        }
        let borrowed = Chunk::scan(EVENTS[0]).unwrap();
        let content = borrowed.choices[0].delta.as_ref().unwrap().content.as_ref();
        assert!(matches!(content, Some(Text(Cow::Borrowed("Hello")))));
    }

    #[test]
    fn events_the_fast_reader_leaves_to_serde() {
        let cases = [
            r#"{"error":{"message":"upstream overloaded","code":502}}"#,
            r#"{"\u0069d":"escaped key","choices":[]}"#,
            r#"{"id":"a","id":"b","choices":[]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5.0}}"#,
            r#"{"choices":[],"usage":{"completion_tokens":-1}}"#,
            r#"{"choices":[{"delta":{"content":7}}]}"#,
            r#"{"choices":[]} {}"#,
            r#"{"choices":[{"delta":{"content":"cut"#,
        ];
        for event in cases {
            assert!(Chunk::scan(event).is_none(), "{event}");
        }
        // What serde_json makes of them is what the caller gets: the same chunk or its error.
        let parsed = Chunk::parse(cases[0].as_bytes()).unwrap();
        assert_eq!(parsed.error.unwrap().message, "upstream overloaded");
        assert_eq!(
            Chunk::parse(cases[1].as_bytes()).unwrap().id.unwrap().0,
            "escaped key"
        );
        let dup = Chunk::parse(cases[2].as_bytes()).unwrap_err();
        assert!(dup.contains("duplicate field `id`"), "{dup}");
        assert!(Chunk::parse(cases[8].as_bytes()).is_err());
    }

    /// Reads `event` as the next of a stream after `last` and checks the outcome against serde_json's:
    /// the same chunk, or an error for both. True when it was read as a repeat.
    fn read_like_serde(event: &[u8], last: &mut Last) -> bool {
        let repeat = last.repeat(event).is_some();
        match (
            Chunk::read(event, last),
            serde_json::from_slice::<Chunk>(event),
        ) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{}", String::from_utf8_lossy(event)),
            (Err(_), Err(_)) => {}
            (got, want) => panic!(
                "{}: read {got:?}, serde_json {want:?}",
                String::from_utf8_lossy(event)
            ),
        }
        repeat
    }

    #[test]
    fn repeated_events_read_the_same_as_with_serde() {
        let base = r#"{"id":"gen-1","provider":"P","model":"m/x","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#;
        let with =
            |content: &str| base.replace(r#""content":"a""#, &format!(r#""content":{content}"#));
        let gen2 = base.replace("gen-1", "gen-2");
        let stream = [
            // (event, read as a repeat of the last one read in full)
            (with(r#""Hello""#), false),
            (with(r#"" world""#), true),
            (with(r#""""#), true),
            (with(r#""line\nnext \"q\" \u00e9""#), true),
            (with(r#" "spaced" "#), true),
            (with(r#""ünï""#), true),
            // Not a string where the string was: read in full, so an error where serde_json errs.
            (with(r#""cut"#), false),
            (with(r#""a","b""#), false),
            (with("7"), false),
            (with("null"), false),
            // After an event without content nothing is kept.
            (with(r#""after null""#), false),
            (with(r#""again""#), true),
            (gen2.clone(), false),
            (gen2.replace(r#""a""#, r#""b""#), true),
            (base.replace("null}]}", r#""stop"}]}"#), false),
            (
                r#"{"choices":[{"delta":{"content":"a"}}]}"#.to_string(),
                false,
            ),
            (
                r#"{"choices":[{"delta":{"content":"b"}}]}"#.to_string(),
                true,
            ),
            // `id` and `model` after the content (serde_json's own key order).
            (
                r#"{"choices":[{"delta":{"content":"a"}}],"id":"x","model":"m"}"#.to_string(),
                false,
            ),
            (
                r#"{"choices":[{"delta":{"content":"bcd"}}],"id":"x","model":"m"}"#.to_string(),
                true,
            ),
            (
                r#"{"choices":[{"delta":{"content":""}}],"id":"x","model":"m"}"#.to_string(),
                true,
            ),
        ];
        let mut last = Last::default();
        for (event, repeat) in &stream {
            assert_eq!(
                read_like_serde(event.as_bytes(), &mut last),
                *repeat,
                "{event}"
            );
        }
    }

    /// Damaged events: whatever the fast reader accepts, serde_json reads the same way; read as the next
    /// event of a stream, they read as serde_json reads them too.
    #[test]
    fn damaged_events_never_read_differently() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let alphabet = br#"{}[]",:\ 0159.-eEnulltruefalsexu"#;
        let (mut fast_taken, mut tried, mut targeted, mut repeats) = (0, 0, 0, 0);
        for event in EVENTS {
            let mut kept = Last::default();
            read_like_serde(event.as_bytes(), &mut kept);
            for round in 0..400 {
                let mut bytes = event.as_bytes().to_vec();
                // Every other round damages the kept content string (or a byte next to it) only.
                let aim = kept.head > 0 && round % 2 == 1;
                targeted += aim as usize;
                for _ in 0..1 + next(3) {
                    let at = if aim {
                        let end = bytes.len().saturating_sub(kept.tail);
                        (kept.head + next(end.saturating_sub(kept.head) + 2)).min(bytes.len())
                    } else {
                        next(bytes.len() + 1)
                    };
                    let c = alphabet[next(alphabet.len())];
                    match next(3) {
                        0 if at < bytes.len() => bytes[at] = c,
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, c),
                    }
                }
                tried += 1;
                if read_like_serde(&bytes, &mut kept.clone()) {
                    repeats += 1;
                }
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    continue;
                };
                if let Some(fast) = Chunk::scan(text) {
                    fast_taken += 1;
                    let serde = serde_json::from_slice::<Chunk>(&bytes).unwrap_or_else(|e| {
                        panic!(
                            "fast reader accepted what serde rejects ({e}): {}",
                            String::from_utf8_lossy(&bytes)
                        )
                    });
                    assert_eq!(fast, serde, "{}", String::from_utf8_lossy(&bytes));
                }
            }
        }
        // The damage must leave a fair share readable, or this test would prove nothing.
        assert!(fast_taken * 10 > tried, "{fast_taken} of {tried}");
        assert!(repeats * 10 > targeted, "{repeats} repeats of {targeted}");
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
            Ok(http::Failed {
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
        assert_eq!(c.name(), "http://x/v1");
        assert!(!format!("{c:?}").contains("sk-secret-123"));
    }
}

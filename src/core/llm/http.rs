//! What the Ollama and OpenAI-compatible clients share: one reqwest client, timeouts on every step,
//! retries with backoff that honour `Retry-After`, and line framing of streamed bodies with an idle timeout.
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::Serialize;

use super::{ErrorKind, Retry, Timeouts};

/// `content-type: application/json`.
pub const JSON: reqwest::header::HeaderValue =
    reqwest::header::HeaderValue::from_static("application/json");

/// A reqwest client with a connect timeout; per-request limits are applied around each step.
pub fn client(timeouts: &Timeouts) -> reqwest::Client {
    // reqwest is built without a default crypto provider; the first client installs ring (a second call,
    // or a provider installed by the embedding program, is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
        // Retries are `send`'s (with backoff and `Retry-After`), so reqwest's own layer is off.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A request with `"stream": true` added (and, for OpenAI-compatible servers, usage in the final chunk).
#[derive(Serialize)]
struct Streamed<'a, T> {
    #[serde(flatten)]
    req: &'a T,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// A request as a JSON body asking for a streamed answer.
pub fn streamed<T: Serialize>(req: &T, include_usage: bool) -> Vec<u8> {
    let body = Streamed {
        req,
        stream: true,
        stream_options: include_usage.then_some(StreamOptions {
            include_usage: true,
        }),
    };
    // Requests are structs of strings, numbers and JSON values: they always serialize.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A non-2xx answer: its status, its `Retry-After` and its body text.
#[derive(Debug)]
pub struct Failed {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// Why [`send`] got no 2xx response.
#[derive(Debug)]
pub enum SendError {
    /// The server answered with an error status.
    Status(Failed),
    /// No answer: refused, unreachable, timed out.
    Transport(ErrorKind),
}

/// Sends the request built by `build` (called again for each retry) and returns a 2xx response, or the
/// failure. Retries 429, 5xx and (if `retry.on_connect`) connection errors; never 4xx otherwise.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    timeouts: &Timeouts,
    retry: &Retry,
) -> Result<Response, SendError> {
    let mut attempt = 0;
    loop {
        let outcome = match tokio::time::timeout(timeouts.response, build().send()).await {
            Err(_) => Err(SendError::Transport(ErrorKind::Timeout(timeouts.response))),
            Ok(Err(e)) => Err(SendError::Transport(classify(&e, timeouts))),
            Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
            Ok(Ok(resp)) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = read_small(resp, timeouts).await;
                Err(SendError::Status(Failed {
                    status,
                    retry_after,
                    body,
                }))
            }
        };
        let wait = match &outcome {
            Err(SendError::Status(f))
                if f.status == StatusCode::TOO_MANY_REQUESTS || f.status.is_server_error() =>
            {
                f.retry_after.map(|d| d.min(retry.max_wait))
            }
            Err(SendError::Transport(ErrorKind::Refused | ErrorKind::Connect(_)))
                if retry.on_connect =>
            {
                None
            }
            _ => return outcome,
        };
        attempt += 1;
        if attempt > retry.retries {
            return outcome;
        }
        let wait = wait.unwrap_or_else(|| retry.backoff(attempt));
        tracing::debug!(
            attempt,
            wait_ms = wait.as_millis() as u64,
            "retrying LLM request"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Reads a whole (small) body within the idle timeout; used for JSON answers and error bodies.
pub async fn read_small(mut resp: Response, timeouts: &Timeouts) -> String {
    let mut buf = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(timeouts.idle, resp.chunk()).await {
        buf.extend_from_slice(&chunk);
        if buf.len() > 64 << 20 {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads a whole JSON body (with the idle timeout between pieces).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    mut resp: Response,
    timeouts: &Timeouts,
) -> Result<T, ErrorKind> {
    let mut buf = Vec::new();
    while let Some(chunk) = next_chunk(&mut resp, timeouts.idle).await? {
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf)
        .map_err(|e| ErrorKind::Protocol(format!("{e} in {}", snippet(&buf))))
}

/// The next piece of a body, waiting at most `idle`; a connection lost mid-body is `Truncated`.
async fn next_chunk(
    resp: &mut Response,
    idle: Duration,
) -> Result<Option<impl std::ops::Deref<Target = [u8]>>, ErrorKind> {
    match tokio::time::timeout(idle, resp.chunk()).await {
        Err(_) => Err(ErrorKind::Timeout(idle)),
        Ok(Err(e)) if e.is_timeout() => Err(ErrorKind::Timeout(idle)),
        Ok(Err(_)) => Err(ErrorKind::Truncated),
        Ok(Ok(c)) => Ok(c),
    }
}

/// Splits a streamed body into lines (without `\r\n`), waiting at most `idle` for each piece.
pub struct Lines {
    resp: Response,
    buf: Vec<u8>,
    start: usize,
    idle: Duration,
    eof: bool,
}

impl Lines {
    pub fn new(resp: Response, timeouts: &Timeouts) -> Lines {
        Lines {
            resp,
            buf: Vec::with_capacity(8192),
            start: 0,
            idle: timeouts.idle,
            eof: false,
        }
    }

    /// Reads what is left of the body (the chunked terminator after a final message), so the connection
    /// goes back to the pool instead of being closed. Bounded in size and time: a body that keeps going is
    /// dropped (and its connection closed) rather than waited on.
    pub async fn drain(mut self) {
        let mut left = 64 * 1024_usize;
        let rest = async {
            while let Ok(Some(chunk)) = self.resp.chunk().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(250), rest).await;
    }

    /// The next line, `Ok(None)` at a clean end of the body. A connection lost mid-body is `Truncated`.
    pub async fn next(&mut self) -> Result<Option<&[u8]>, ErrorKind> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let (s, e) = (self.start, self.start + pos);
                self.start = e + 1;
                let line = &self.buf[s..e];
                return Ok(Some(line.strip_suffix(b"\r").unwrap_or(line)));
            }
            if self.eof {
                if self.start < self.buf.len() {
                    let s = self.start;
                    self.start = self.buf.len();
                    return Ok(Some(&self.buf[s..]));
                }
                return Ok(None);
            }
            self.buf.drain(..self.start);
            self.start = 0;
            match next_chunk(&mut self.resp, self.idle).await? {
                None => self.eof = true,
                Some(chunk) => self.buf.extend_from_slice(&chunk),
            }
        }
    }
}

/// Server-sent events over [`Lines`]: each event's `data:` lines joined by newlines. Comment lines
/// (`: OPENROUTER PROCESSING`) and the other fields (`event:`, `id:`, `retry:`) are skipped. Hand-written
/// because it is these few lines over the line reader Ollama's NDJSON needs anyway.
pub struct Events {
    lines: Lines,
    data: Vec<u8>,
}

impl Events {
    pub fn new(lines: Lines) -> Events {
        Events {
            lines,
            data: Vec::new(),
        }
    }

    /// The next event's data, `Ok(None)` at the end of the body (an event cut off by the end counts).
    pub async fn next(&mut self) -> Result<Option<&[u8]>, ErrorKind> {
        self.data.clear();
        loop {
            match self.lines.next().await? {
                Some([]) if !self.data.is_empty() => return Ok(Some(&self.data)),
                Some(line) => {
                    if let Some(value) = line.strip_prefix(b"data:") {
                        if !self.data.is_empty() {
                            self.data.push(b'\n');
                        }
                        self.data
                            .extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
                    }
                }
                None if self.data.is_empty() => return Ok(None),
                None => return Ok(Some(&self.data)),
            }
        }
    }

    /// See [`Lines::drain`].
    pub async fn drain(self) {
        self.lines.drain().await;
    }
}

/// Maps a reqwest error to refused / unreachable / timeout / truncated.
pub fn classify(e: &reqwest::Error, timeouts: &Timeouts) -> ErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ErrorKind::Refused,
                std::io::ErrorKind::TimedOut => return ErrorKind::Timeout(timeouts.connect),
                _ => {}
            }
        }
        source = err.source();
    }
    if e.is_timeout() {
        return ErrorKind::Timeout(timeouts.connect);
    }
    if e.is_connect() {
        return ErrorKind::Connect(innermost(e));
    }
    if e.is_body() || e.is_decode() {
        return ErrorKind::Truncated;
    }
    ErrorKind::Connect(innermost(e))
}

/// The deepest cause's text (reqwest's outer text repeats the URL; the cause says what happened).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        last = err.to_string();
        source = err.source();
    }
    last
}

/// `Retry-After: 3` or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The first 200 characters of a body, for error messages.
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(60),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn streamed_bodies_add_the_stream_members() {
        #[derive(serde::Serialize)]
        struct Req {
            model: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            n: Option<u8>,
        }
        #[derive(serde::Serialize)]
        struct Empty {}
        let v = |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        assert_eq!(
            v(streamed(
                &Req {
                    model: "m}",
                    n: None
                },
                true
            )),
            serde_json::json!({"model": "m}", "stream": true, "stream_options": {"include_usage": true}})
        );
        assert_eq!(
            v(streamed(
                &Req {
                    model: "m",
                    n: Some(2)
                },
                false
            )),
            serde_json::json!({"model": "m", "n": 2, "stream": true})
        );
        assert_eq!(
            v(streamed(&Empty {}, false)),
            serde_json::json!({"stream": true})
        );
    }

    #[test]
    fn snippets_are_short() {
        assert_eq!(snippet(b"  {\"a\":1}\n"), "{\"a\":1}");
        assert_eq!(snippet("é".repeat(300).as_bytes()).chars().count(), 201);
    }
}

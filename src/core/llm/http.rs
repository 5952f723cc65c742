//! What the Ollama and OpenAI-compatible clients share: one reqwest client, timeouts on every step,
//! retries with backoff that honour `Retry-After`, and line framing of streamed bodies with an idle timeout.
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::Serialize;

use super::{ErrorKind, Retry, Timeouts};

/// `content-type: application/json`.
pub const JSON: reqwest::header::HeaderValue =
    reqwest::header::HeaderValue::from_static("application/json");

/// `rb` with `body` as its JSON body (the bytes are shared, not copied, by each retry).
pub fn json_body(rb: reqwest::RequestBuilder, body: &bytes::Bytes) -> reqwest::RequestBuilder {
    rb.header(reqwest::header::CONTENT_TYPE, JSON)
        .body(body.clone())
}

/// A reqwest client with a connect timeout; per-request limits are applied around each step.
pub fn client(timeouts: &Timeouts) -> reqwest::Client {
    crate::core::http::builder(timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
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

/// The longest line (or SSE event) a stream may send; past it the call stops.
pub const MAX_LINE: usize = 1 << 20;
/// The most text one answer may add up to; past it the call stops.
pub const MAX_ANSWER: usize = 16 << 20;
/// The largest whole body read (JSON documents such as `/models`).
pub const MAX_BODY: usize = 16 << 20;
/// The part of an error body kept (the message is in its first bytes).
const MAX_ERROR_BODY: usize = 64 << 10;

/// Sends the request built by `build` (called again for each retry) and returns a 2xx response, or the
/// failure. Retries 429, 5xx and (if `retry.on_connect`) connection errors; never 4xx otherwise. Every
/// attempt and every wait fits in the deadline: a `Retry-After` past it fails at once, naming the wait.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    timeouts: &Timeouts,
    retry: &Retry,
) -> Result<Response, SendError> {
    let mut attempt = 0;
    loop {
        let left = timeouts.left();
        if left.is_zero() {
            return Err(SendError::Transport(ErrorKind::Deadline(timeouts.deadline)));
        }
        let limit = timeouts.response.min(left);
        let outcome = match tokio::time::timeout(limit, build().send()).await {
            Err(_) if limit < timeouts.response => {
                Err(SendError::Transport(ErrorKind::Deadline(timeouts.deadline)))
            }
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
                f.retry_after
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
        let left = timeouts.left();
        if let (Some(asked), Err(SendError::Status(f))) = (wait, &outcome)
            && asked >= left
        {
            return Err(SendError::Transport(ErrorKind::RetryBeyondDeadline {
                status: f.status.as_u16(),
                wait: asked,
                left,
            }));
        }
        let wait = wait.map_or_else(|| retry.backoff(attempt), |d| d.min(retry.max_wait));
        if wait >= left {
            // Waiting would leave no time for the retry: the last failure is the better message.
            return outcome;
        }
        tracing::debug!(
            attempt,
            wait_ms = wait.as_millis() as u64,
            "retrying LLM request"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Reads the start of a (small) body within the idle timeout and the deadline; used for error bodies.
pub async fn read_small(mut resp: Response, timeouts: &Timeouts) -> String {
    let mut buf = Vec::new();
    let read = async {
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout(timeouts.idle, resp.chunk()).await {
            let room = MAX_ERROR_BODY - buf.len();
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if buf.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeouts.left(), read).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads a whole JSON body (with the idle timeout between pieces, at most [`MAX_BODY`]).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    mut resp: Response,
    timeouts: &Timeouts,
) -> Result<T, ErrorKind> {
    let mut buf = Vec::new();
    let mut clock = Clock::new(timeouts);
    while let Some(chunk) = next_chunk(&mut resp, &clock).await? {
        clock.heard();
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_BODY {
            return Err(ErrorKind::Overflow(format!(
                "the answer passed {} (the most baton reads of one document)",
                crate::core::text::size(MAX_BODY)
            )));
        }
    }
    frame(&buf)
}

/// Decodes one JSON frame (an NDJSON line, an SSE event's data, a whole document); what does not decode is
/// a protocol error showing the frame's start.
pub fn frame<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ErrorKind> {
    serde_json::from_slice(raw).map_err(|e| ErrorKind::Protocol(format!("{e} in {}", snippet(raw))))
}

/// Sends what `build` builds (see [`send`]) and reads the JSON answer (see [`read_json`]); `status` turns
/// a failed answer into the client's kind.
pub async fn fetch_json<T: serde::de::DeserializeOwned>(
    build: impl Fn() -> reqwest::RequestBuilder,
    timeouts: &Timeouts,
    retry: &Retry,
    status: impl FnOnce(SendError) -> ErrorKind,
) -> Result<T, ErrorKind> {
    let resp = send(build, timeouts, retry).await.map_err(status)?;
    read_json(resp, timeouts).await
}

/// The idle limit (restarted when real data arrives) and the deadline of one body being read.
struct Clock {
    idle: Duration,
    deadline: Duration,
    ends: Option<tokio::time::Instant>,
    heard: tokio::time::Instant,
}

impl Clock {
    fn new(timeouts: &Timeouts) -> Clock {
        Clock {
            idle: timeouts.idle,
            deadline: timeouts.deadline,
            ends: timeouts.ends,
            heard: tokio::time::Instant::now(),
        }
    }

    /// Real data arrived: the idle limit starts again.
    fn heard(&mut self) {
        self.heard = tokio::time::Instant::now();
    }

    /// How long the next read may wait, and what it is if that runs out.
    fn limit(&self) -> (Duration, ErrorKind) {
        let idle_left = self.idle.saturating_sub(self.heard.elapsed());
        let deadline_left = self
            .ends
            .map(|e| e.saturating_duration_since(tokio::time::Instant::now()));
        match deadline_left {
            Some(left) if left < idle_left => (left, ErrorKind::Deadline(self.deadline)),
            _ => (idle_left, ErrorKind::Timeout(self.idle)),
        }
    }
}

/// The next piece of a body within the clock's limits; a connection lost mid-body is `Truncated`.
async fn next_chunk(resp: &mut Response, clock: &Clock) -> Result<Option<bytes::Bytes>, ErrorKind> {
    let (limit, expired) = clock.limit();
    // Checked first: a body that is always ready would otherwise never let the timer fire.
    if limit.is_zero() {
        return Err(expired);
    }
    match tokio::time::timeout(limit, resp.chunk()).await {
        Err(_) => Err(expired),
        Ok(Err(e)) if e.is_timeout() => Err(expired),
        Ok(Err(_)) => Err(ErrorKind::Truncated),
        Ok(Ok(c)) => Ok(c),
    }
}

/// Bounds on what one streamed answer adds up to: its size ([`MAX_ANSWER`]) and, when the request set
/// `max_tokens`, the pieces a server may send for it (a generous multiple: a piece is at most a few tokens,
/// usually one), so a server streaming forever is stopped instead of filling memory.
#[derive(Debug, Clone)]
pub struct Tally {
    pieces: u64,
    bytes: usize,
    max_tokens: Option<u64>,
}

/// Pieces allowed per token of `max_tokens`, plus a floor for tiny limits.
const PIECES_PER_TOKEN: u64 = 4;
const PIECES_FLOOR: u64 = 256;

impl Tally {
    pub fn new(max_tokens: Option<u64>) -> Tally {
        Tally {
            pieces: 0,
            bytes: 0,
            max_tokens,
        }
    }

    /// Counts one piece of the answer; an error once a bound is passed.
    pub fn add(&mut self, piece: &str) -> Result<(), ErrorKind> {
        self.pieces += 1;
        self.bytes += piece.len();
        if self.bytes > MAX_ANSWER {
            return Err(ErrorKind::Overflow(format!(
                "the answer passed {} (the most baton keeps of one answer)",
                crate::core::text::size(MAX_ANSWER)
            )));
        }
        if let Some(max) = self.max_tokens {
            let limit = max.saturating_mul(PIECES_PER_TOKEN).max(PIECES_FLOOR);
            if self.pieces > limit {
                return Err(ErrorKind::Overflow(format!(
                    "the server sent more than {limit} pieces for max_tokens = {max} (at most {PIECES_PER_TOKEN} per token, {PIECES_FLOOR} at least)"
                )));
            }
        }
        Ok(())
    }
}

/// Splits a streamed body into lines (without `\r\n`), each at most [`MAX_LINE`]. The idle limit restarts
/// only on real data: blank lines and SSE comments (`:` lines) are keep-alives, so a server sending only
/// those is silent as far as `timeout` goes; the deadline bounds everything.
pub struct Lines {
    resp: Response,
    buf: Vec<u8>,
    start: usize,
    clock: Clock,
    eof: bool,
}

impl Lines {
    pub fn new(resp: Response, timeouts: &Timeouts) -> Lines {
        Lines {
            resp,
            buf: Vec::with_capacity(8192),
            start: 0,
            clock: Clock::new(timeouts),
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
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if !(line.starts_with(b":") || line.iter().all(u8::is_ascii_whitespace)) {
                    self.clock.heard();
                }
                return Ok(Some(line));
            }
            if self.buf.len() - self.start > MAX_LINE {
                return Err(line_too_long());
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
            match next_chunk(&mut self.resp, &self.clock).await? {
                None => self.eof = true,
                Some(chunk) => self.buf.extend_from_slice(&chunk),
            }
        }
    }
}

fn line_too_long() -> ErrorKind {
    ErrorKind::Overflow(format!(
        "a line of the stream passed {} without ending",
        crate::core::text::size(MAX_LINE)
    ))
}

/// Server-sent events over [`Lines`]: each event's `data:` lines joined by newlines (at most [`MAX_LINE`]
/// in all). Comment lines (`: OPENROUTER PROCESSING`) and the other fields (`event:`, `id:`, `retry:`) are
/// skipped. Hand-written because it is these few lines over the line reader Ollama's NDJSON needs anyway.
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
                        if self.data.len() > MAX_LINE {
                            return Err(line_too_long());
                        }
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

/// Runs `work` within what is left of the call's deadline (for waits outside the body reads, such as a
/// queue slot).
pub async fn within<T>(
    timeouts: &Timeouts,
    work: impl std::future::Future<Output = T>,
) -> Result<T, ErrorKind> {
    tokio::time::timeout(timeouts.left(), work)
        .await
        .map_err(|_| ErrorKind::Deadline(timeouts.deadline))
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

/// The first 200 characters of a body, for error messages, on one line with control characters escaped.
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let text = match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    };
    crate::core::text::escape_line(&text).into_owned()
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

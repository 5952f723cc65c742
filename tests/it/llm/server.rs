//! In-test HTTP/1.1 servers speaking Ollama's NDJSON and OpenAI/OpenRouter's SSE, scriptable per request:
//! many small chunks, errors mid-stream, error statuses with `Retry-After`, truncated bodies, silence,
//! resets, slowness. Hand-written on tokio's `TcpListener` (no server dependency), bound to 127.0.0.1:0.
#![allow(dead_code)]
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A whole body with `Content-Length`.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// A chunked body written piece by piece with `delay` between pieces; `truncate` closes the connection
    /// before the final chunk.
    Stream {
        content_type: &'static str,
        pieces: Vec<Vec<u8>>,
        delay: Duration,
        truncate: bool,
    },
    /// Read the request and never answer.
    Silent,
    /// Close the connection right after reading the request.
    Reset,
    /// Hostile: a 200 chunked body repeating `piece` forever (endless tokens, endless bytes without a
    /// newline, keep-alive comments forever), `delay` between pieces.
    Endless {
        content_type: &'static str,
        piece: Vec<u8>,
        delay: Duration,
    },
    /// Hostile: 200 headers of a stream, then nothing ever.
    SilentAfterHeaders { content_type: &'static str },
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
    /// NDJSON lines, each line cut into pieces of at most `piece` bytes.
    pub fn ndjson(lines: Vec<serde_json::Value>, piece: usize) -> Reply {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        Reply::Stream {
            content_type: "application/x-ndjson",
            pieces: cut(text.as_bytes(), piece),
            delay: Duration::ZERO,
            truncate: false,
        }
    }
    /// SSE text cut into pieces of at most `piece` bytes.
    pub fn sse(text: String, piece: usize) -> Reply {
        Reply::Stream {
            content_type: "text/event-stream",
            pieces: cut(text.as_bytes(), piece),
            delay: Duration::ZERO,
            truncate: false,
        }
    }
    pub fn slow(mut self, d: Duration) -> Reply {
        if let Reply::Stream { delay, .. } = &mut self {
            *delay = d;
        }
        self
    }
    pub fn truncated(mut self) -> Reply {
        if let Reply::Stream { truncate, .. } = &mut self {
            *truncate = true;
        }
        self
    }
}

/// The hostile modes of the fault-injection list.
impl Reply {
    /// Ollama NDJSON lines with `content` as each token, forever (never `done`).
    pub fn endless_ndjson(content: &str) -> Reply {
        let line = serde_json::json!({"model": "m", "message": {"role": "assistant", "content": content}, "done": false});
        Reply::Endless {
            content_type: "application/x-ndjson",
            piece: repeat(format!("{line}\n").as_bytes()),
            delay: Duration::ZERO,
        }
    }
    /// OpenAI SSE chunks with `content` as each token, forever (never `[DONE]`).
    pub fn endless_sse(content: &str) -> Reply {
        let chunk = serde_json::json!({"id": "gen-1", "model": "m", "choices": [{"index": 0, "delta": {"content": content}}]});
        Reply::Endless {
            content_type: "text/event-stream",
            piece: repeat(format!("data: {chunk}\n\n").as_bytes()),
            delay: Duration::ZERO,
        }
    }
    /// Bytes that never contain a newline, forever, after `prefix` (`data: ` for SSE, `{"a":"` for NDJSON).
    pub fn endless_bytes(content_type: &'static str, prefix: &str) -> Reply {
        let mut piece = prefix.as_bytes().to_vec();
        piece.extend(std::iter::repeat_n(b'x', 64 << 10));
        Reply::Endless {
            content_type,
            piece,
            delay: Duration::ZERO,
        }
    }
    /// A keep-alive (`: OPENROUTER PROCESSING` for SSE, a blank line for NDJSON) every `every`, forever.
    pub fn keepalive_forever(content_type: &'static str, every: Duration) -> Reply {
        let piece = if content_type == "text/event-stream" {
            b": OPENROUTER PROCESSING\n\n".to_vec()
        } else {
            b"\n".to_vec()
        };
        Reply::Endless {
            content_type,
            piece,
            delay: every,
        }
    }
    /// 429 asking to come back in `secs` seconds.
    pub fn retry_after(secs: u64) -> Reply {
        Reply::json(
            429,
            serde_json::json!({"error": {"message": "rate limited", "code": 429}}),
        )
        .with_header("Retry-After", &secs.to_string())
    }
}

/// `line` repeated to about 64 KiB, so an endless stream is written in large pieces.
fn repeat(line: &[u8]) -> Vec<u8> {
    let n = (64 << 10) / line.len().max(1) + 1;
    line.repeat(n)
}

fn cut(bytes: &[u8], piece: usize) -> Vec<Vec<u8>> {
    bytes.chunks(piece.max(1)).map(<[u8]>::to_vec).collect()
}

type Script = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// A running stub; stops when dropped.
pub struct Stub {
    pub addr: SocketAddr,
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    /// Serves `script(request, index)` for each request (index counts from 0 across connections).
    pub async fn start(script: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let connections = Arc::new(AtomicUsize::new(0));
        let (reqs, inf, pk, conns) = (
            requests.clone(),
            in_flight.clone(),
            peak.clone(),
            connections.clone(),
        );
        let task = tokio::spawn(async move {
            let counter = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (script, reqs, counter, inf, pk) = (
                    script.clone(),
                    reqs.clone(),
                    counter.clone(),
                    inf.clone(),
                    pk.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve(sock, script, reqs, counter, inf, pk).await;
                });
            }
        });
        Stub {
            addr,
            url: format!("http://{addr}"),
            requests,
            in_flight,
            peak,
            connections,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    /// The most requests the server was answering at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// A URL nothing listens on (the port was bound, then released).
pub async fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

struct InFlight(Arc<AtomicUsize>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    sock: TcpStream,
    script: Arc<Script>,
    reqs: Arc<Mutex<Vec<Request>>>,
    counter: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            rd.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        rd.read_exact(&mut body).await?;
        let req = Request {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let n = counter.fetch_add(1, Ordering::SeqCst);
        reqs.lock().unwrap().push(req.clone());
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        let _guard = InFlight(in_flight.clone());
        match script(&req, n) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n",
                    reason(status),
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                wr.write_all(head.as_bytes()).await?;
                wr.write_all(body.as_bytes()).await?;
            }
            Reply::Stream {
                content_type,
                pieces,
                delay,
                truncate,
            } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                wr.write_all(head.as_bytes()).await?;
                for p in pieces {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    wr.write_all(format!("{:x}\r\n", p.len()).as_bytes())
                        .await?;
                    wr.write_all(&p).await?;
                    wr.write_all(b"\r\n").await?;
                    wr.flush().await?;
                }
                if truncate {
                    return Ok(());
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                wr.write_all(b"0\r\n\r\n").await?;
            }
            Reply::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            Reply::Endless {
                content_type,
                piece,
                delay,
            } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                wr.write_all(head.as_bytes()).await?;
                let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                framed.extend_from_slice(&piece);
                framed.extend_from_slice(b"\r\n");
                // Until the client goes away (the write fails).
                loop {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    wr.write_all(&framed).await?;
                    wr.flush().await?;
                }
            }
            Reply::SilentAfterHeaders { content_type } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                wr.write_all(head.as_bytes()).await?;
                wr.flush().await?;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            Reply::Reset => return Ok(()),
        }
        wr.flush().await?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Ollama `/api/chat` lines: one per piece, then the final `done: true` object with counts and nanosecond
/// durations (total 2.5 s, eval 0.5 s).
pub fn ollama_chat(
    model: &str,
    pieces: &[&str],
    tokens_in: u64,
    tokens_out: u64,
) -> Vec<serde_json::Value> {
    let mut lines: Vec<serde_json::Value> = pieces
        .iter()
        .map(|p| serde_json::json!({"model": model, "created_at": "2026-11-21T10:00:00Z", "message": {"role": "assistant", "content": p}, "done": false}))
        .collect();
    lines.push(serde_json::json!({
        "model": model, "created_at": "2026-11-21T10:00:01Z", "message": {"role": "assistant", "content": ""},
        "done": true, "done_reason": "stop", "total_duration": 2_500_000_000u64, "load_duration": 1_000_000u64,
        "prompt_eval_count": tokens_in, "prompt_eval_duration": 100_000_000u64, "eval_count": tokens_out, "eval_duration": 500_000_000u64
    }));
    lines
}

/// Ollama `/api/generate` lines (`response` instead of `message`).
pub fn ollama_generate(model: &str, pieces: &[&str]) -> Vec<serde_json::Value> {
    let mut lines: Vec<serde_json::Value> = pieces
        .iter()
        .map(|p| serde_json::json!({"model": model, "response": p, "done": false}))
        .collect();
    lines.push(serde_json::json!({"model": model, "response": "", "done": true, "done_reason": "length",
        "total_duration": 1_000_000_000u64, "prompt_eval_count": 3, "eval_count": 4, "eval_duration": 2_000_000_000u64}));
    lines
}

/// An OpenAI/OpenRouter SSE stream: a processing comment, one chunk per piece, a final chunk with usage
/// (and `cost` when given), then `data: [DONE]`.
pub fn sse(
    model: &str,
    pieces: &[&str],
    tokens_in: u64,
    tokens_out: u64,
    cost: Option<f64>,
) -> String {
    let mut out = String::from(": OPENROUTER PROCESSING\n\n");
    for (i, p) in pieces.iter().enumerate() {
        let role = if i == 0 {
            serde_json::json!({"role": "assistant", "content": p})
        } else {
            serde_json::json!({"content": p})
        };
        let chunk = serde_json::json!({"id": "gen-123", "provider": "Stub", "model": model, "object": "chat.completion.chunk",
            "created": 1_790_000_000u64, "choices": [{"index": 0, "delta": role, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
        if i == pieces.len() / 2 {
            out.push_str(": OPENROUTER PROCESSING\n\n");
        }
    }
    let mut usage = serde_json::json!({"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out});
    if let Some(c) = cost {
        usage["cost"] = serde_json::json!(c);
    }
    let last = serde_json::json!({"id": "gen-123", "model": model, "object": "chat.completion.chunk",
        "created": 1_790_000_000u64, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}], "usage": usage});
    out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    out
}

/// An OpenAI-compatible SSE stream as llama.cpp, vLLM and OpenAI send it: usage (tokens, no cost) in a final
/// chunk only when the request asked for it with `stream_options.include_usage`.
pub fn sse_usage_if_asked(
    req: &Request,
    pieces: &[&str],
    tokens_in: u64,
    tokens_out: u64,
) -> String {
    let asked = req.json()["stream_options"]["include_usage"] == serde_json::json!(true);
    let model = req.json()["model"].as_str().unwrap_or("?").to_string();
    let mut out = String::new();
    for p in pieces {
        let chunk = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    out.push_str(&format!("data: {last}\n\n"));
    if asked {
        let usage = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, "choices": [],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}});
        out.push_str(&format!("data: {usage}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// OpenRouter's `GET /api/v1/key` answer.
pub fn key_info(usage_monthly: f64, usage_daily: f64, limit: Option<f64>) -> serde_json::Value {
    serde_json::json!({"data": {
        "label": "sk-or-v1-abc...xyz", "limit": limit, "limit_reset": "monthly",
        "limit_remaining": limit.map(|l| (l - usage_monthly).max(0.0)), "include_byok_in_limit": false,
        "usage": usage_monthly + 10.0, "usage_daily": usage_daily, "usage_weekly": usage_monthly,
        "usage_monthly": usage_monthly, "byok_usage": 0, "byok_usage_daily": 0, "byok_usage_weekly": 0,
        "byok_usage_monthly": 0, "is_free_tier": false
    }})
}

/// Ollama `/api/chat` lines asking for tools: the calls whole in one `done: false` chunk (as Ollama sends
/// them), then a final chunk that says `done_reason: "stop"` anyway.
pub fn ollama_tool_calls(model: &str, calls: serde_json::Value) -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"model": model, "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false}),
        serde_json::json!({"model": model, "message": {"role": "assistant", "content": ""}, "done": true,
            "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 3, "eval_duration": 1_000_000u64}),
    ]
}

/// An OpenAI SSE stream whose deltas are `deltas` (each a `delta` object), ending with `finish_reason` and
/// usage.
pub fn sse_deltas(model: &str, deltas: &[serde_json::Value], finish_reason: &str) -> String {
    let mut out = String::new();
    for d in deltas {
        let chunk = serde_json::json!({"id": "gen-7", "model": model, "choices": [{"index": 0, "delta": d, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = serde_json::json!({"id": "gen-7", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "cost": 0.001}});
    out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    out
}

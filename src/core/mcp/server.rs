//! An MCP server over stdio whose tools are run by someone else: each `tools/call` becomes a [`Call`] sent
//! on a channel, answered through its oneshot. The runner (the Lua runtime, single-threaded) runs calls
//! concurrently; a call past its tool's timeout, or cancelled by the client, drops its reply receiver,
//! which the runner sees (`reply.closed()`) and stops the work.
//!
//! A tool's failure is an `isError` result carrying its message, not a protocol error: clients show the
//! former to the model and hide the latter.
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::McpError;

/// A tool's time limit unless it sets its own.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A tool as served: its name, description, JSON Schema of its arguments and time limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub input_schema: JsonObject,
    pub timeout: Duration,
}

/// What a tool gave back: text as is, or a JSON value (sent as text and, for an object, as the structured
/// result too).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Text(String),
    Json(Value),
}

/// One `tools/call` for the runner. `reply` takes the outcome or the tool's error message; when the
/// receiver is gone (timeout, cancellation) the runner should stop.
#[derive(Debug)]
pub struct Call {
    pub tool: String,
    pub args: JsonObject,
    pub reply: oneshot::Sender<Result<Outcome, String>>,
}

/// How long past its timeout a call may take to end before its runner counts as stuck: its work is then in
/// code nothing can interrupt (C code such as a backtracking `string.find`), and the runner is replaced.
pub const STUCK_AFTER: Duration = Duration::from_secs(1);

/// Whoever runs the calls (the Lua side: a worker thread with its own Lua state). The server never waits on
/// it past a call's timeout; a runner that does not end a timed-out call within [`STUCK_AFTER`] is told so,
/// and should hand later calls to a fresh worker.
pub trait Runner: Send + Sync + 'static {
    /// Hands `call` on; `Ok` names the worker that took it, `Err` is why no worker can.
    fn send(&self, call: Call) -> Result<u64, String>;
    /// Worker `worker` did not end a call within [`STUCK_AFTER`] of its timeout.
    fn stuck(&self, worker: u64);
}

/// A shared runner (the caller keeps a handle to shut it down).
impl<R: Runner> Runner for Arc<R> {
    fn send(&self, call: Call) -> Result<u64, String> {
        R::send(self, call)
    }

    fn stuck(&self, worker: u64) {
        R::stuck(self, worker)
    }
}

/// A plain channel is a runner with one worker that is never replaced.
impl Runner for mpsc::UnboundedSender<Call> {
    fn send(&self, call: Call) -> Result<u64, String> {
        mpsc::UnboundedSender::send(self, call)
            .map(|()| 0)
            .map_err(|_| "the tool runner has stopped".to_string())
    }

    fn stuck(&self, _worker: u64) {}
}

/// The server handler: the tool list, and the runner.
#[derive(Clone)]
pub struct Tools {
    defs: Arc<[ToolDef]>,
    runner: Arc<dyn Runner>,
    /// Where each call is recorded as a run (trigger `mcp`), if anywhere.
    state: Option<crate::core::state::State>,
}

impl Tools {
    pub fn new(defs: Vec<ToolDef>, runner: impl Runner) -> Tools {
        Tools {
            defs: defs.into(),
            runner: Arc::new(runner),
            state: None,
        }
    }

    /// Records each call as a run of its own in `state` (`baton runs`, trigger `mcp`).
    pub fn recording(mut self, state: crate::core::state::State) -> Tools {
        self.state = Some(state);
        self
    }

    /// Answers one call (see [`Tools::answer`]) and records it as a run.
    async fn run(&self, name: &str, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let (started, clock) = (crate::core::runs::now(), std::time::Instant::now());
        let call = serde_json::json!(["mcp", [name, args]]).to_string();
        let answered = self.answer(name, args).await;
        if let Some(state) = &self.state {
            let failed = match &answered {
                Ok(r) if r.is_error != Some(true) => None,
                Ok(_) => Some(format!("{name}: the tool answered with an error")),
                Err(e) => Some(format!("{name}: {}", e.message)),
            };
            let step = crate::core::runs::Step {
                pos: "0.1".into(),
                kind: "mcp".into(),
                label: name.to_string(),
                call,
                started,
                duration: clock.elapsed().as_secs_f64(),
                outcome: if failed.is_some() { "error" } else { "ok" }.into(),
                cost: None,
                result: None,
            };
            let state = state.clone();
            let script = format!("baton mcp serve: {name}");
            // The database is written off the protocol's threads.
            tokio::task::spawn_blocking(move || {
                let id = crate::core::runs::new_id();
                crate::core::runs::record_call(
                    &state,
                    &id,
                    "mcp",
                    &script,
                    &[],
                    step,
                    failed.as_deref(),
                )
            });
        }
        answered
    }

    /// Answers one call: the runner's outcome, or an error result on failure or timeout.
    async fn answer(&self, name: &str, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let Some(def) = self.defs.iter().find(|d| d.name == name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            ));
        };
        let missing = missing_required(&def.input_schema, &args);
        if !missing.is_empty() {
            return Err(ErrorData::invalid_params(
                format!(
                    "{name}: missing required argument{} {} (required by the tool's input schema)",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ),
                None,
            ));
        }
        let error = |msg: String| CallToolResult::error(vec![ContentBlock::text(msg)]);
        let (reply, mut outcome) = oneshot::channel();
        let worker = match self.runner.send(Call {
            tool: name.to_string(),
            args,
            reply,
        }) {
            Ok(worker) => worker,
            Err(why) => return Ok(error(format!("{name}: {why}"))),
        };
        Ok(
            match tokio::time::timeout(def.timeout, &mut outcome).await {
                Err(_) => {
                    // The worker stops the call at the same deadline; if it has not a moment later, it is
                    // stuck where nothing reaches it, and later calls go elsewhere. The caller does not wait.
                    let runner = self.runner.clone();
                    tokio::spawn(async move {
                        if tokio::time::timeout(STUCK_AFTER, outcome).await.is_err() {
                            runner.stuck(worker);
                        }
                    });
                    error(format!(
                        "{name}: timed out after {}",
                        crate::core::duration::format(def.timeout)
                    ))
                }
                Ok(Err(_)) => error(format!("{name}: the tool runner has stopped")),
                Ok(Ok(Err(msg))) => error(msg),
                Ok(Ok(Ok(Outcome::Text(text)))) => {
                    CallToolResult::success(vec![ContentBlock::text(text)])
                }
                Ok(Ok(Ok(Outcome::Json(v)))) if v.is_object() => CallToolResult::structured(v),
                Ok(Ok(Ok(Outcome::Json(v)))) => {
                    CallToolResult::success(vec![ContentBlock::text(v.to_string())])
                }
            },
        )
    }
}

/// The names in `schema.required` that `args` lacks (quoted), in the schema's order.
fn missing_required(schema: &JsonObject, args: &JsonObject) -> Vec<String> {
    match schema.get("required") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| !args.contains_key(*n))
            .map(|n| format!("{n:?}"))
            .collect(),
        _ => Vec::new(),
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("baton", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self
            .defs
            .iter()
            .map(|d| {
                Tool::new(
                    d.name.clone(),
                    d.description.clone(),
                    Arc::new(d.input_schema.clone()),
                )
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        // A cancelled request drops `run`, and with it the reply receiver: the runner stops the tool.
        tokio::select! {
            r = self.run(&request.name, args) => r.map(Into::into),
            // The client no longer waits for an answer; an error result (not a protocol error) keeps the
            // log quiet if one is sent at all.
            _ = context.ct.cancelled() => Ok(CallToolResult::error(vec![ContentBlock::text(
                format!("{}: cancelled by the client", request.name),
            )])
            .into()),
        }
    }
}

/// The longest request line read (bytes, newline left out); a longer one is answered with an error.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// How deep arrays and objects may nest in a request (the envelope counts: a call's arguments are at
/// depth 3); a deeper one is answered with an error.
pub const MAX_DEPTH: usize = 64;

/// Serves `tools` on `read`/`write` until the client goes away.
///
/// Every request line gets an answer: the lines the protocol layer would drop without a word (too long,
/// nested too deep, not JSON, a `tools/call` whose params are not a tool name and an object of
/// arguments) are answered here with a JSON-RPC error naming the limit or the mistake; the others go on
/// to the protocol layer. Answers of both reach `write` whole lines at a time.
pub async fn serve<R, W>(tools: Tools, read: R, write: W) -> Result<(), McpError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (from_protocol, to_protocol) = tokio::io::split(ours);
    let (errors, refused) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_requests(read, to_protocol, errors));
    let writer = tokio::spawn(write_answers(from_protocol, refused, write));
    let served = async {
        let running = tools
            .serve(tokio::io::split(theirs))
            .await
            .map_err(|e| McpError::Initialize(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| McpError::Protocol(format!("the server task failed: {e}")))?;
        Ok(())
    }
    .await;
    reader.abort();
    // The protocol layer has closed its side: the last answers are written out.
    let _ = writer.await;
    served
}

/// A JSON-RPC error answer line.
fn error_line(id: Option<Value>, code: i32, message: String) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
}

/// Reads request lines from `read`: refused ones become error answers on `errors`, the others go to the
/// protocol layer through `to`. Never holds more than [`MAX_LINE`] bytes of a line.
async fn read_requests<R: AsyncRead + Unpin>(
    read: R,
    mut to: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    errors: mpsc::UnboundedSender<String>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut read = tokio::io::BufReader::with_capacity(64 * 1024, read);
    let mut line = Vec::new();
    // Bytes of the line under way when it is over the limit (its start is kept, to find its id).
    let mut over: Option<usize> = None;
    loop {
        let (used, ended) = {
            let buf = match read.fill_buf().await {
                Ok(buf) => buf,
                Err(_) => break,
            };
            if buf.is_empty() {
                break;
            }
            let (piece, ended) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..i], true),
                None => (buf, false),
            };
            match over.as_mut() {
                Some(total) => *total += piece.len(),
                None if line.len() + piece.len() > MAX_LINE => {
                    over = Some(line.len() + piece.len());
                    line.truncate(4096);
                }
                None => line.extend_from_slice(piece),
            }
            (piece.len() + usize::from(ended), ended)
        };
        read.consume(used);
        if !ended {
            continue;
        }
        let answer = match over.take() {
            Some(total) => Some(error_line(
                scan(&line).1,
                -32600,
                format!(
                    "request line of {total} bytes is over the limit of {MAX_LINE} bytes (8 MiB)"
                ),
            )),
            None => check_request(&line),
        };
        match answer {
            Some(answer) => {
                if errors.send(answer).is_err() {
                    break;
                }
            }
            None if line.iter().all(u8::is_ascii_whitespace) => {}
            None => {
                line.push(b'\n');
                if to.write_all(&line).await.is_err() {
                    break;
                }
            }
        }
        line.clear();
    }
    // End of input (a last line without its newline is dropped, as the protocol layer would): the
    // protocol layer sees its end and the server stops.
    let _ = to.shutdown().await;
}

/// The error answer a request line gets instead of reaching the protocol layer, if any.
fn check_request(line: &[u8]) -> Option<String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let (depth, id) = scan(line);
    if depth > MAX_DEPTH {
        return Some(error_line(
            id,
            -32600,
            format!("request nests arrays and objects {depth} deep, over the limit of {MAX_DEPTH}"),
        ));
    }
    let msg: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Some(error_line(id, -32700, format!("parse error: {e}"))),
    };
    let is_call = msg.get("method").and_then(Value::as_str) == Some("tools/call");
    let id = msg.get("id").filter(|_| is_call)?;
    let invalid = |why: &str| {
        Some(error_line(
            Some(id.clone()),
            -32602,
            format!("tools/call: {why}"),
        ))
    };
    let params = match msg.get("params") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => {
            return invalid("params must be an object {name, arguments}, got none");
        }
        Some(other) => {
            return invalid(&format!(
                "params must be an object {{name, arguments}}, got {}",
                kind(other)
            ));
        }
    };
    match params.get("name") {
        Some(Value::String(n)) if !n.is_empty() => {}
        Some(Value::String(_)) => {
            return invalid("params.name must name a tool, got an empty string");
        }
        None | Some(Value::Null) => return invalid("params.name must name a tool, got none"),
        Some(other) => {
            return invalid(&format!(
                "params.name must name a tool, got {}",
                kind(other)
            ));
        }
    }
    match params.get("arguments") {
        None | Some(Value::Null) | Some(Value::Object(_)) => None,
        Some(other) => invalid(&format!(
            "params.arguments must be an object of named arguments, got {}",
            kind(other)
        )),
    }
}

/// What a JSON value is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How deep arrays and objects nest in a JSON text, and its top-level `id` member when one can be read
/// (without parsing the whole text, which a deep one would not survive).
fn scan(text: &[u8]) -> (usize, Option<Value>) {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped, mut string_start) = (false, false, 0);
    let mut want_key = false;
    let mut key_is_id = false;
    let mut id_start: Option<usize> = None;
    let mut id = None;
    let mut finish = |end: usize, id_start: &mut Option<usize>| {
        if let Some(start) = id_start.take() {
            id = serde_json::from_slice::<Value>(&text[start..end])
                .ok()
                .filter(|v| v.is_string() || v.is_number());
        }
    };
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if depth == 1 && want_key {
                    key_is_id = &text[string_start..i] == b"id";
                    want_key = false;
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
                want_key = depth == 1 && b == b'{';
            }
            b'}' | b']' => {
                if depth == 1 {
                    finish(i, &mut id_start);
                }
                depth = depth.saturating_sub(1);
            }
            b':' if depth == 1 && key_is_id => {
                id_start = Some(i + 1);
                key_is_id = false;
            }
            b',' if depth == 1 => {
                finish(i, &mut id_start);
                want_key = true;
            }
            _ => {}
        }
    }
    (deepest, id)
}

/// Writes the protocol layer's answers and the refusals to `write`, each a whole line, until both end.
async fn write_answers<W: AsyncWrite + Unpin>(
    from: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    mut refused: mpsc::UnboundedReceiver<String>,
    mut write: W,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(from).lines();
    let (mut protocol_open, mut refusals_open) = (true, true);
    while protocol_open || refusals_open {
        let line = tokio::select! {
            l = lines.next_line(), if protocol_open => match l {
                Ok(Some(l)) => l,
                _ => {
                    protocol_open = false;
                    continue;
                }
            },
            r = refused.recv(), if refusals_open => match r {
                Some(r) => r,
                None => {
                    refusals_open = false;
                    continue;
                }
            },
        };
        if write.write_all(line.as_bytes()).await.is_err()
            || write.write_all(b"\n").await.is_err()
            || write.flush().await.is_err()
        {
            return;
        }
    }
}

/// Serves `tools` on this process's stdin and stdout.
pub async fn serve_stdio(tools: Tools) -> Result<(), McpError> {
    let (read, write) = rmcp::transport::stdio();
    serve(tools, read, write).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ClientCapabilities, ClientConfig};

    fn def(name: &str, timeout: Duration) -> ToolDef {
        ToolDef {
            name: name.into(),
            description: format!("{name} tool"),
            input_schema: serde_json::json!({"type": "object"})
                .as_object()
                .unwrap()
                .clone(),
            timeout,
        }
    }

    /// A runner answering `echo` with its arguments, failing `fail`, and never answering `hang` (it reports
    /// through `stopped` when the server gives up on the call).
    async fn runner(
        mut calls: mpsc::UnboundedReceiver<Call>,
        stopped: mpsc::UnboundedSender<String>,
    ) {
        while let Some(mut call) = calls.recv().await {
            match call.tool.as_str() {
                "echo" => {
                    let _ = call.reply.send(Ok(Outcome::Json(Value::Object(call.args))));
                }
                "fail" => {
                    let _ = call.reply.send(Err("it failed".into()));
                }
                _ => {
                    let stopped = stopped.clone();
                    tokio::spawn(async move {
                        call.reply.closed().await;
                        let _ = stopped.send(call.tool);
                    });
                }
            }
        }
    }

    #[test]
    fn scan_measures_depth_and_finds_the_top_level_id() {
        assert_eq!(
            scan(br#"{"id": 5, "params": {"a": [1]}}"#),
            (3, Some(serde_json::json!(5)))
        );
        assert_eq!(
            scan(br#"{"params": {"id": 1, "s": "{[\"]}"}, "id": "x-1"}"#),
            (2, Some(serde_json::json!("x-1")))
        );
        // Cut short or without an id: the depth so far, no id.
        assert_eq!(scan(br#"{"method": "m", "params": [[["#), (4, None));
        assert_eq!(scan(b"[1, 2]"), (1, None));
        assert!(check_request(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).is_none());
        assert!(check_request(b"  ").is_none());
    }

    #[tokio::test]
    async fn calls_go_to_the_runner_and_a_timeout_stops_them() {
        let (calls, queue) = mpsc::unbounded_channel();
        let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
        tokio::spawn(runner(queue, stopped_tx));
        let tools = Tools::new(
            vec![
                def("echo", TOOL_TIMEOUT),
                def("fail", TOOL_TIMEOUT),
                def("hang", Duration::from_millis(50)),
            ],
            calls,
        );
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (sr, sw) = tokio::io::split(server_io);
        tokio::spawn(serve(tools, sr, sw));
        let (cr, cw) = tokio::io::split(client_io);
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("test", "0"),
        )
        .serve((cr, cw))
        .await
        .unwrap();

        let listed = client.peer().list_all_tools().await.unwrap();
        let names: Vec<_> = listed.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, ["echo", "fail", "hang"]);
        assert_eq!(listed[0].description.as_deref(), Some("echo tool"));

        let mut params = CallToolRequestParams::new("echo");
        params.arguments = serde_json::json!({"x": 1}).as_object().cloned();
        let r = client.peer().call_tool(params).await.unwrap();
        assert_eq!(r.structured_content, Some(serde_json::json!({"x": 1})));
        assert_eq!(r.is_error, Some(false));

        let r = client
            .peer()
            .call_tool(CallToolRequestParams::new("fail"))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert_eq!(r.content[0].as_text().unwrap().text, "it failed");

        let r = client
            .peer()
            .call_tool(CallToolRequestParams::new("hang"))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert_eq!(
            r.content[0].as_text().unwrap().text,
            "hang: timed out after 50ms"
        );
        assert_eq!(stopped.recv().await.as_deref(), Some("hang"));

        let err = client
            .peer()
            .call_tool(CallToolRequestParams::new("nope"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown tool \"nope\""), "{err}");
    }
}

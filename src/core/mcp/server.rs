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
}

impl Tools {
    pub fn new(defs: Vec<ToolDef>, runner: impl Runner) -> Tools {
        Tools {
            defs: defs.into(),
            runner: Arc::new(runner),
        }
    }

    /// Answers one call: the runner's outcome, or an error result on failure or timeout.
    async fn run(&self, name: &str, args: JsonObject) -> Result<CallToolResult, ErrorData> {
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
        Ok(match tokio::time::timeout(def.timeout, &mut outcome).await {
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
        })
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

/// Serves `tools` on `read`/`write` until the client goes away.
pub async fn serve<R, W>(tools: Tools, read: R, write: W) -> Result<(), McpError>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let running = tools
        .serve((read, write))
        .await
        .map_err(|e| McpError::Initialize(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Protocol(format!("the server task failed: {e}")))?;
    Ok(())
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

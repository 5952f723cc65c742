//! An MCP client: one connection to one server, over
//! - stdio with a child process on this machine,
//! - stdio with the same command run on a fleet host through its ssh master (no port opened there),
//! - Streamable HTTP for a URL (with headers, e.g. a bearer token).
//!
//! A stdio server's stderr is kept (its last lines, bounded) so that a server that exits is reported with
//! its exit status and what it said last. Every request has a deadline.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ContentBlock, Implementation,
    JsonObject,
};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::watch;

use super::McpError;
use crate::core::fleet::McpServer;
use crate::core::process::{Cmd, Spec};
use crate::core::remote::{Remote, Target, ssh};

/// Time for a server to start and answer `initialize` (default of `mcp.connect`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for one `tools/call` (default of `handle:call`).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for `tools/list`.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a server's stderr kept for error messages, and the bytes kept of each.
const STDERR_LINES: usize = 20;
const STDERR_LINE_BYTES: usize = 1000;

/// How to reach a server.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Stdio {
        command: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
        /// A fleet host to run the command on (through its ssh master); `None` for this machine.
        host: Option<String>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl Transport {
    /// The transport of a fleet file's `mcp.NAME` (already validated).
    pub fn from_fleet(s: &McpServer) -> Transport {
        match &s.url {
            Some(url) => Transport::Http {
                url: url.clone(),
                headers: s.headers.clone(),
            },
            None => Transport::Stdio {
                command: s.command.clone(),
                env: s.env.clone(),
                cwd: s.cwd.clone(),
                host: s.host.clone(),
            },
        }
    }

    /// `stdio: uvx mcp-server-git`, `stdio on brain: …`, `http: http://host/mcp` (never headers, nor a query
    /// string, which may carry a token).
    pub fn describe(&self) -> String {
        match self {
            Transport::Stdio { command, host, .. } => {
                let where_ = host
                    .as_deref()
                    .map(|h| format!(" on {h}"))
                    .unwrap_or_default();
                format!("stdio{where_}: {}", command.join(" "))
            }
            Transport::Http { url, .. } => {
                format!("http: {}", url.split(['?', '#']).next().unwrap_or(url))
            }
        }
    }
}

/// A tool as a server lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    /// The JSON Schema of its arguments.
    pub input_schema: Value,
}

/// A `tools/call` result: the text parts joined, every content block as JSON, the structured result if the
/// server gave one, and whether the tool reported an error.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallResult {
    pub text: String,
    pub content: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    pub is_error: bool,
}

/// The child process of a stdio server: its status and the tail of its stderr.
struct Proc {
    child: tokio::sync::Mutex<tokio::process::Child>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_done: watch::Receiver<bool>,
}

impl Proc {
    fn new(mut child: tokio::process::Child) -> Proc {
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (done_tx, stderr_done) = watch::channel(false);
        if let Some(err) = child.stderr.take() {
            tokio::spawn(keep_tail(err, stderr.clone(), done_tx));
        } else {
            let _ = done_tx.send(true);
        }
        Proc {
            child: tokio::sync::Mutex::new(child),
            stderr,
            stderr_done,
        }
    }

    /// ` (exit status: 1): <stderr tail>` once the process has ended (waiting a moment for it), or `None`
    /// while it still runs.
    async fn ended(&self) -> Option<String> {
        let status = {
            let mut child = self.child.lock().await;
            tokio::time::timeout(Duration::from_secs(2), child.wait())
                .await
                .ok()?
                .ok()?
        };
        let mut done = self.stderr_done.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), done.wait_for(|d| *d)).await;
        Some(format!(" ({status}){}", self.tail()))
    }

    /// `: stderr: <last lines>`, or nothing when the server wrote nothing.
    fn tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() {
            String::new()
        } else {
            let text: Vec<&str> = lines.iter().map(String::as_str).collect();
            format!(": stderr: {}", text.join("\n"))
        }
    }

    async fn stop(&self) {
        let mut child = self.child.lock().await;
        if tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Reads a server's stderr to its end, keeping the last [`STDERR_LINES`] lines (each cut to
/// [`STDERR_LINE_BYTES`]). The ssh pid prologue is not the server's and is left out.
async fn keep_tail(
    stderr: impl AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
    done: watch::Sender<bool>,
) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line is read in bounded pieces: a server printing without newlines cannot grow memory.
        match (&mut reader)
            .take(STDERR_LINE_BYTES as u64 * 4)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = crate::core::text::escape_line(text.trim_end());
        let text = text.as_ref();
        if text.is_empty() || text.starts_with("__baton_pid=") {
            continue;
        }
        let mut cut = text.to_string();
        if cut.len() > STDERR_LINE_BYTES {
            let mut end = STDERR_LINE_BYTES;
            while !cut.is_char_boundary(end) {
                end -= 1;
            }
            cut.truncate(end);
            cut.push('…');
        }
        let mut lines = tail.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == STDERR_LINES {
            lines.pop_front();
        }
        lines.push_back(cut);
    }
    let _ = done.send(true);
}

/// The innermost cause of an error (`Connection refused (os error 111)`), after the outermost message's
/// first words: transport errors nest five deep and repeat type names on the way.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    let mut hops = 0;
    while let Some(next) = inner.source() {
        inner = next;
        hops += 1;
    }
    if hops == 0 {
        e.to_string()
    } else {
        format!("{e}: {inner}")
    }
}

/// An open connection to one MCP server.
pub struct Client {
    transport: Transport,
    service: tokio::sync::Mutex<Option<RunningService<RoleClient, ClientConfig>>>,
    peer: Peer<RoleClient>,
    proc: Option<Proc>,
    /// Keeps the host's ssh master open while the server runs through it.
    _master: Option<Arc<ssh::Master>>,
    closed: AtomicBool,
}

fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("baton", env!("CARGO_PKG_VERSION")),
    )
}

impl Client {
    /// Starts (or reaches) the server and completes the `initialize` handshake within `timeout`. `remote`
    /// resolves a stdio server's `host`.
    pub async fn connect(
        transport: &Transport,
        remote: &Remote,
        timeout: Duration,
    ) -> Result<Client, McpError> {
        match transport {
            Transport::Stdio {
                command,
                env,
                cwd,
                host,
            } => {
                if command.is_empty() || command[0].is_empty() {
                    return Err(McpError::Invalid(
                        "command must be a non-empty list of strings".into(),
                    ));
                }
                let target = match host {
                    Some(h) => remote.target(h)?,
                    None => Target::Local,
                };
                let (mut cmd, master, program) = match target {
                    Target::Local => {
                        let mut cmd = tokio::process::Command::new(&command[0]);
                        cmd.args(&command[1..]).envs(env);
                        if let Some(dir) = cwd {
                            cmd.current_dir(crate::core::remote::expand_home(dir));
                        }
                        (cmd, None, command[0].clone())
                    }
                    Target::Ssh(dest) => {
                        let master = tokio::time::timeout(
                            timeout,
                            remote.pool().master(&dest, ssh::CONNECT_TIMEOUT),
                        )
                        .await
                        .map_err(|_| McpError::Timeout(timeout))??;
                        let spec = Spec {
                            cwd: cwd.as_ref().map(Into::into),
                            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                            ..Spec::default()
                        };
                        let script = ssh::remote_script(&Cmd::Argv(command.clone()), &spec)?;
                        let mut cmd = tokio::process::Command::new("ssh");
                        cmd.args(master.client_args()).arg("none").arg(script);
                        (cmd, Some(master), "ssh".to_string())
                    }
                };
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let mut child = cmd
                    .spawn()
                    .map_err(|cause| McpError::Spawn { program, cause })?;
                let stdin = child.stdin.take().expect("stdin piped");
                let stdout = child.stdout.take().expect("stdout piped");
                let proc = Proc::new(child);
                let started =
                    tokio::time::timeout(timeout, client_config().serve((stdout, stdin))).await;
                let service = match started {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        return Err(match proc.ended().await {
                            Some(detail) => McpError::Exited(detail),
                            None => McpError::Initialize(format!("{e}{}", proc.tail())),
                        });
                    }
                    Err(_) => {
                        let tail = proc.tail();
                        proc.child.lock().await.start_kill().ok();
                        return Err(McpError::Initialize(format!(
                            "no answer to initialize within {}{tail}",
                            crate::core::duration::format(timeout)
                        )));
                    }
                };
                Ok(Client::new(transport.clone(), service, Some(proc), master))
            }
            Transport::Http { url, headers } => {
                let mut custom = HashMap::new();
                for (k, v) in headers {
                    let name =
                        reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                            McpError::Invalid(format!("headers: {k:?} is not a valid header name"))
                        })?;
                    // The value may be a secret: say which header, never what it held.
                    let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                        McpError::Invalid(format!(
                            "headers.{k}: the value is not a valid header value"
                        ))
                    })?;
                    custom.insert(name, value);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom);
                let http_client = crate::core::http::builder(Duration::from_secs(10))
                    .build()
                    .map_err(|e| McpError::Invalid(format!("cannot build an HTTP client: {e}")))?;
                let http = StreamableHttpClientTransport::with_client(http_client, config);
                let service = tokio::time::timeout(timeout, client_config().serve(http))
                    .await
                    .map_err(|_| McpError::Timeout(timeout))?
                    .map_err(|e| match &e {
                        rmcp::service::ClientInitializeError::TransportError { error, .. } => {
                            use rmcp::transport::streamable_http_client::StreamableHttpError;
                            match error
                                .error
                                .downcast_ref::<StreamableHttpError<reqwest::Error>>()
                            {
                                Some(StreamableHttpError::Client(e)) => {
                                    McpError::Initialize(root_cause(e))
                                }
                                _ => McpError::Initialize(root_cause(error.error.as_ref())),
                            }
                        }
                        other => McpError::Initialize(other.to_string()),
                    })?;
                Ok(Client::new(transport.clone(), service, None, None))
            }
        }
    }

    fn new(
        transport: Transport,
        service: RunningService<RoleClient, ClientConfig>,
        proc: Option<Proc>,
        master: Option<Arc<ssh::Master>>,
    ) -> Client {
        Client {
            transport,
            peer: service.peer().clone(),
            service: tokio::sync::Mutex::new(Some(service)),
            proc,
            _master: master,
            closed: AtomicBool::new(false),
        }
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Open and still connected (a server that exited leaves a connection that is not).
    pub fn is_usable(&self) -> bool {
        !self.is_closed() && !self.peer.is_transport_closed()
    }

    /// The server's name and version as it gave them in `initialize`.
    pub fn server_info(&self) -> Option<(String, String)> {
        let info = self.peer.peer_info()?;
        let s = info.server_info.as_ref()?;
        Some((s.name.clone(), s.version.clone()))
    }

    /// Every tool of the server (all pages).
    pub async fn tools(&self, timeout: Duration) -> Result<Vec<ToolInfo>, McpError> {
        self.check_open()?;
        let tools = match tokio::time::timeout(timeout, self.peer.list_all_tools()).await {
            Err(_) => return Err(McpError::Timeout(timeout)),
            Ok(Err(e)) => return Err(self.failure(e).await),
            Ok(Ok(t)) => t,
        };
        Ok(tools
            .into_iter()
            .map(|t| ToolInfo {
                name: t.name.into_owned(),
                description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                input_schema: Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    /// Calls one tool. A tool that reports an error is a result with `is_error`; a protocol error, a
    /// timeout or a server that exited is an `Err`.
    pub async fn call(
        &self,
        tool: &str,
        args: JsonObject,
        timeout: Duration,
    ) -> Result<CallResult, McpError> {
        self.check_open()?;
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = Some(args);
        // Dropping the request at the deadline sends the server a cancellation.
        let result = match tokio::time::timeout(timeout, self.peer.call_tool(params)).await {
            Err(_) => return Err(McpError::Timeout(timeout)),
            Ok(Err(e)) => return Err(self.failure(e).await),
            Ok(Ok(r)) => r,
        };
        let text: Vec<&str> = result
            .content
            .iter()
            .filter_map(ContentBlock::as_text)
            .map(|t| t.text.as_str())
            .collect();
        Ok(CallResult {
            text: text.join("\n"),
            content: result
                .content
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
            data: result.structured_content.clone(),
            is_error: result.is_error.unwrap_or(false),
        })
    }

    /// Ends the session: closes the server's stdin (it should exit), then kills it after a grace period.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let service = self.service.lock().await.take();
        if let Some(mut service) = service {
            let _ = service.close_with_timeout(Duration::from_secs(3)).await;
        }
        if let Some(proc) = &self.proc {
            proc.stop().await;
        }
    }

    fn check_open(&self) -> Result<(), McpError> {
        if self.is_closed() {
            Err(McpError::Closed)
        } else {
            Ok(())
        }
    }

    /// What a failed request means: the server's own error, a timeout, or (a closed connection) a server
    /// that exited, with its status and stderr tail.
    async fn failure(&self, e: ServiceError) -> McpError {
        match e {
            ServiceError::McpError(data) => McpError::Protocol(format!(
                "{} (error {})",
                crate::core::text::remote(&data.message, 500),
                data.code.0
            )),
            ServiceError::Timeout { timeout } => McpError::Timeout(timeout),
            other => {
                if self.is_closed() {
                    return McpError::Closed;
                }
                match &self.proc {
                    Some(proc) => match proc.ended().await {
                        Some(detail) => McpError::Exited(detail),
                        None => McpError::Protocol(format!("{other}{}", proc.tail())),
                    },
                    None => McpError::Protocol(other.to_string()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_headers_or_query_strings() {
        let t = Transport::Http {
            url: "https://example.invalid/mcp?token=abc".into(),
            headers: [("Authorization".to_string(), "Bearer xyz".to_string())].into(),
        };
        assert_eq!(t.describe(), "http: https://example.invalid/mcp");
        let t = Transport::Stdio {
            command: vec!["uvx".into(), "mcp-server-git".into()],
            env: Default::default(),
            cwd: None,
            host: Some("brain".into()),
        };
        assert_eq!(t.describe(), "stdio on brain: uvx mcp-server-git");
    }

    #[tokio::test]
    async fn the_stderr_tail_is_bounded_and_leaves_out_the_ssh_prologue() {
        let mut text = String::from("__baton_pid=123\n");
        for i in 0..100 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str(&"x".repeat(10_000));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (done, mut finished) = watch::channel(false);
        keep_tail(text.as_bytes(), tail.clone(), done).await;
        assert!(*finished.borrow_and_update());
        let lines = tail.lock().unwrap();
        assert_eq!(lines.len(), STDERR_LINES);
        assert!(lines.iter().all(|l| !l.starts_with("__baton_pid")));
        assert!(
            lines
                .iter()
                .all(|l| l.len() <= STDERR_LINE_BYTES + '…'.len_utf8())
        );
        assert!(lines.iter().any(|l| l == "line 99"), "{lines:?}");
    }
}

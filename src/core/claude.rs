//! Claude Code headless (`claude -p --output-format stream-json --verbose`) as a budgeted worker on any
//! fleet host: the argv built from options, the stream-json decoder, and one run booked in the LLM ledger
//! like a paid call.
//!
//! - The prompt goes on stdin, never on the command line: no shell sees it and a prompt starting with `-`
//!   is not read as an option. Every option with a value is passed as one `--flag=value` word for the same
//!   reason. The CLI reference writes `--flag value`; the CLI's parser (Commander, bundled in the CLI:
//!   checked in 2.1.197) takes `--flag=value` for every option with a value as the same option. Only that
//!   form keeps a value starting with `-` a value for `--resume [value]`, whose value is optional (space
//!   separated, `--resume -x` would be `--resume` and an unknown option `-x`).
//! - `--max-budget-usd` must be above 0 for the CLI and is passed in whole cents (rounded down): a cap
//!   under $0.01 is refused before anything starts.
//! - The run goes through [`Remote::run`], so a fleet host is reached over its multiplexed ssh master and a
//!   timeout kills the command on the host.
//! - Each stdout line is one JSON object; a line that is no JSON object, or longer than [`MAX_LINE`], ends
//!   the run (the process is killed) with an error naming the line. The bound is kept while reading
//!   ([`Spec::max_line`]): a 100 MB line is refused after its first 8 MiB, never held whole.
//! - Booking: a ledger row (provider `claude-code`) is written before start. With a fleet budget, the run's
//!   cap (`--max-budget-usd`) is what is left of the month or `max_usd`, whichever is lower, and the run is
//!   refused when less than `min_usd` is left. The row is settled with Claude Code's own
//!   `total_cost_usd`; a run without a result line is booked at its cap (and its error says so).
//! - Detached ([`detach`], [`finish`]): the same run as a tmux-backed job from [`jobs`]; its row stays open
//!   until the result is read from the job's log.
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::core::llm::budget::{Budget, BudgetError};
use crate::core::llm::ledger::{Open, Outcome, Row};
use crate::core::llm::{HookError, LocalFuture};
use crate::core::process::{Cmd, LineTooLong, ProcessError, Spec, Stream};
use crate::core::remote::jobs::{self, Job, JobOpts};
use crate::core::remote::{Remote, RemoteError, quote, shell_text};
use crate::core::state::State;
use crate::core::text::money;

/// The provider name in the ledger.
pub const PROVIDER: &str = "claude-code";

/// The longest stdout line accepted (bytes).
pub const MAX_LINE: usize = 8 << 20;

/// The run is refused when less than this (USD) is left of the month's budget, unless `min_usd` says otherwise.
pub const DEFAULT_MIN_USD: f64 = 0.05;

/// The ledger row's model when the run names none (Claude Code's own default).
pub const DEFAULT_MODEL: &str = "default";

/// How to install the CLI, said when it is missing.
pub const INSTALL_HINT: &str = "npm install -g @anthropic-ai/claude-code";

/// The options that become CLI flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub model: Option<String>,
    pub max_turns: Option<u32>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub append_system_prompt: Option<String>,
    /// A path on the host, or a JSON text (the CLI takes both).
    pub mcp_config: Option<String>,
    pub permission_mode: Option<String>,
    /// A session id to continue.
    pub resume: Option<String>,
    pub max_budget_usd: Option<f64>,
}

/// Why a run failed. Messages do not repeat the host: callers prefix `claude.run(<host>): `.
#[derive(Debug, thiserror::Error)]
pub enum ClaudeError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "Claude Code is not installed (`claude`: command not found); install it with `{INSTALL_HINT}`"
    )]
    Missing,
    #[error("over budget: {0}")]
    OverBudget(String),
    #[error("ledger: {0}")]
    Ledger(String),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{0}")]
    LineTooLong(LineTooLong),
    #[error("stdout line {line} is not a stream-json object ({why}): {shown}")]
    Malformed {
        line: usize,
        why: String,
        shown: String,
    },
    #[error("on_event: {0}")]
    Hook(String),
    #[error("{what} without a result line{detail}")]
    NoResult { what: String, detail: String },
    /// A run stopped before its result line (a bad line, a hook's error, ssh): booked at its cap.
    #[error("{cause}{booked}")]
    Booked {
        cause: Box<ClaudeError>,
        booked: String,
    },
    #[error("{}", failed(subtype, text))]
    Failed { subtype: String, text: String },
}

fn failed(subtype: &str, text: &str) -> String {
    let hint = if text.contains("/login") || text.contains("Invalid API key") {
        " (not logged in: run `claude` once on the host and log in, or set ANTHROPIC_API_KEY)"
    } else {
        ""
    };
    let why = match subtype {
        "error_max_turns" => "stopped at max_turns".to_string(),
        "error_max_budget_usd" => "stopped at its budget cap (--max-budget-usd)".to_string(),
        "success" => "Claude Code reported an error".to_string(),
        s => format!("Claude Code ended with {s}"),
    };
    let text = crate::core::text::truncate(text.trim(), 2000);
    if text.is_empty() {
        format!("{why}{hint}")
    } else {
        format!("{why}{hint}: {text}")
    }
}

/// A cap as `--max-budget-usd` gets it: whole cents, rounded down, so it never exceeds what was reserved.
fn cents(usd: f64) -> f64 {
    (usd * 100.0).floor() / 100.0
}

/// The `claude` argv for `opts` (the prompt goes on stdin).
pub fn argv(opts: &Options) -> Result<Vec<String>, ClaudeError> {
    let mut v: Vec<String> = [
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
    ]
    .map(String::from)
    .to_vec();
    let mut flag = |name: &str, value: &str| v.push(format!("--{name}={value}"));
    if let Some(m) = &opts.model {
        flag("model", m);
    }
    if let Some(n) = opts.max_turns {
        flag("max-turns", &n.to_string());
    }
    for (name, tools) in [
        ("allowedTools", &opts.allowed_tools),
        ("disallowedTools", &opts.disallowed_tools),
    ] {
        for t in tools {
            if t.trim().is_empty() {
                return Err(ClaudeError::Invalid(format!(
                    "a tool name in {} is empty",
                    if name == "allowedTools" {
                        "allowed_tools"
                    } else {
                        "disallowed_tools"
                    }
                )));
            }
            flag(name, t);
        }
    }
    if let Some(s) = &opts.append_system_prompt {
        flag("append-system-prompt", s);
    }
    if let Some(m) = &opts.mcp_config {
        flag("mcp-config", m);
    }
    if let Some(m) = &opts.permission_mode {
        flag("permission-mode", m);
    }
    if let Some(r) = &opts.resume {
        flag("resume", r);
    }
    if let Some(b) = opts.max_budget_usd {
        flag("max-budget-usd", &format!("{:.2}", cents(b)));
    }
    if let Some(bad) = v.iter().find(|w| w.contains('\0')) {
        return Err(ClaudeError::Invalid(format!(
            "{:?} contains a NUL byte, which no command line can carry",
            crate::core::text::truncate(&bad.replace('\0', "\\0"), 100)
        )));
    }
    Ok(v)
}

/// The token counts Claude Code reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    fn of(v: &Value) -> Usage {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        Usage {
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            cache_creation_input_tokens: n("cache_creation_input_tokens"),
            cache_read_input_tokens: n("cache_read_input_tokens"),
        }
    }

    /// Tokens read, cache reads and writes included.
    pub fn tokens_in(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }
}

/// One decoded piece of the stream, as `on_event` gets it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The `system`/`init` line.
    Init {
        session_id: Option<String>,
        model: Option<String>,
        cwd: Option<String>,
        tools: Vec<String>,
    },
    /// Assistant text.
    Text { text: String },
    /// Assistant reasoning.
    Thinking { text: String },
    /// The assistant asks for a tool.
    ToolUse {
        id: Option<String>,
        name: String,
        input: Value,
    },
    /// A tool's answer (a `user` message).
    ToolResult {
        tool_use_id: Option<String>,
        content: Value,
        is_error: bool,
    },
    /// The final `result` line.
    Result(Box<Finished>),
    /// Any other line (a `system` line other than init, a future type): its `type` and `subtype`.
    Other {
        kind: String,
        subtype: Option<String>,
    },
}

/// The `result` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Finished {
    pub text: String,
    pub session_id: Option<String>,
    /// `total_cost_usd`.
    pub cost: f64,
    pub turns: u64,
    pub is_error: bool,
    pub subtype: String,
    /// Seconds.
    pub duration: f64,
    pub usage: Usage,
}

impl Finished {
    pub fn failed(&self) -> bool {
        self.is_error || self.subtype != "success"
    }
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(String::from)
}

/// Decodes one stdout line (1-based `n`) into its events (an assistant message with several blocks gives
/// several). A blank line gives none.
pub fn decode(n: usize, line: &str) -> Result<Vec<Event>, ClaudeError> {
    if line.len() > MAX_LINE {
        return Err(ClaudeError::LineTooLong(LineTooLong {
            stream: Stream::Stdout,
            line: n,
            max: MAX_LINE,
        }));
    }
    if line.trim().is_empty() {
        return Ok(vec![]);
    }
    let malformed = |why: String| ClaudeError::Malformed {
        line: n,
        why,
        shown: crate::core::text::escape(&crate::core::text::truncate(line, 200)).into_owned(),
    };
    let v: Value = serde_json::from_str(line).map_err(|e| malformed(e.to_string()))?;
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return Err(malformed("no \"type\"".into()));
    };
    let subtype = str_of(&v, "subtype");
    let blocks = || {
        v.get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    Ok(match (kind, subtype.as_deref()) {
        ("system", Some("init")) => vec![Event::Init {
            session_id: str_of(&v, "session_id"),
            model: str_of(&v, "model"),
            cwd: str_of(&v, "cwd"),
            tools: v
                .get("tools")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        }],
        ("assistant", _) => blocks()
            .iter()
            .filter_map(|b| match b.get("type").and_then(Value::as_str)? {
                "text" => Some(Event::Text {
                    text: str_of(b, "text").unwrap_or_default(),
                }),
                "thinking" => Some(Event::Thinking {
                    text: str_of(b, "thinking").unwrap_or_default(),
                }),
                "tool_use" => Some(Event::ToolUse {
                    id: str_of(b, "id"),
                    name: str_of(b, "name").unwrap_or_default(),
                    input: b.get("input").cloned().unwrap_or(Value::Null),
                }),
                _ => None,
            })
            .collect(),
        ("user", _) => blocks()
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| Event::ToolResult {
                tool_use_id: str_of(b, "tool_use_id"),
                content: b.get("content").cloned().unwrap_or(Value::Null),
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect(),
        ("result", _) => vec![Event::Result(Box::new(Finished {
            text: str_of(&v, "result").unwrap_or_default(),
            session_id: str_of(&v, "session_id"),
            cost: v
                .get("total_cost_usd")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            turns: v.get("num_turns").and_then(Value::as_u64).unwrap_or(0),
            is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            subtype: subtype.unwrap_or_default(),
            duration: v.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0,
            usage: v.get("usage").map(Usage::of).unwrap_or_default(),
        }))],
        (kind, _) => vec![Event::Other {
            kind: kind.to_string(),
            subtype,
        }],
    })
}

/// Called with each event as it arrives; may wait.
pub type OnEvent<'a> = &'a mut dyn FnMut(Event) -> LocalFuture<'static, Result<(), HookError>>;

/// A finished run: the result line, the model the init line named, and the cap it ran under.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub result: Finished,
    pub model: Option<String>,
    pub host: String,
    /// `--max-budget-usd` as passed (none: no cap).
    pub max_usd: Option<f64>,
}

/// What a failed run still knows: its result line when there was one, and the failure.
#[derive(Debug)]
pub struct Failure {
    pub partial: Option<Run>,
    pub err: ClaudeError,
}

impl From<ClaudeError> for Failure {
    fn from(err: ClaudeError) -> Failure {
        Failure { partial: None, err }
    }
}

/// What the stream said so far: lines read, the init line's model, the result line.
#[derive(Default)]
struct Decoded {
    n: usize,
    model: Option<String>,
    result: Option<Finished>,
}

/// Runs `work` (given a line sink) and decodes each stdout line it sends as it arrives, handing the events
/// to `on_event`. A bad line or a failing hook stops the work (dropping it stops the process).
async fn streamed<T, F, Fut>(
    work: F,
    mut on_event: Option<OnEvent<'_>>,
) -> Result<(T, Decoded), ClaudeError>
where
    F: FnOnce(crate::core::process::LineSink) -> Fut,
    Fut: Future<Output = T>,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Stream, String)>(1024);
    let work = work(tx);
    tokio::pin!(work);
    let mut d = Decoded::default();
    let mut take = async |line: String, d: &mut Decoded| -> Result<(), ClaudeError> {
        d.n += 1;
        for ev in decode(d.n, &line)? {
            match &ev {
                Event::Init { model: m, .. } => d.model = m.clone(),
                Event::Result(f) => d.result = Some((**f).clone()),
                _ => {}
            }
            if let Some(f) = on_event.as_mut() {
                f(ev).await.map_err(|e| ClaudeError::Hook(e.0))?;
            }
        }
        Ok(())
    };
    let out = loop {
        tokio::select! {
            biased;
            Some((stream, line)) = rx.recv() => {
                if stream == Stream::Stdout {
                    take(line, &mut d).await?;
                }
            }
            out = &mut work => break out,
        }
    };
    while let Ok((stream, line)) = rx.try_recv() {
        if stream == Stream::Stdout {
            take(line, &mut d).await?;
        }
    }
    Ok((out, d))
}

/// Runs Claude Code on `host` with `prompt` on stdin (not booked; see [`booked`]). `spec` gives the
/// working folder, extra environment and timeout. Returns the result line, the model from the init line.
pub async fn run(
    remote: &Remote,
    host: &str,
    prompt: &str,
    opts: &Options,
    spec: &Spec,
    on_event: Option<OnEvent<'_>>,
) -> Result<(Finished, Option<String>), ClaudeError> {
    let cmd = Cmd::Argv(argv(opts)?);
    let spec = Spec {
        stdin: Some(prompt.as_bytes().to_vec()),
        max_line: Some(MAX_LINE),
        ..spec.clone()
    };
    let (out, d) = streamed(|tx| remote.run(host, &cmd, &spec, Some(tx)), on_event).await?;
    let out = match out {
        Ok(out) => out,
        Err(RemoteError::Process(ProcessError::LineTooLong(l))) => {
            return Err(ClaudeError::LineTooLong(l));
        }
        Err(RemoteError::Process(ProcessError::Spawn { cause, .. }))
            if cause.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(ClaudeError::Missing);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(f) = d.result {
        return Ok((f, d.model));
    }
    if out.code == Some(127) {
        return Err(ClaudeError::Missing);
    }
    let what = match out.timed_out {
        Some(after) => format!("timed out after {}", crate::core::duration::format(after)),
        None if out.ok() => "Claude Code exited".to_string(),
        None => format!("Claude Code failed ({})", out.failure_summary()),
    };
    Err(ClaudeError::NoResult {
        what,
        detail: String::new(),
    })
}

/// A run booked in the ledger: where, what caps it, and the script for the row.
#[derive(Debug, Clone)]
pub struct Booking {
    pub host: String,
    pub script: Option<String>,
    pub max_usd: Option<f64>,
    pub min_usd: f64,
}

/// A run's ledger row, written: the reservation, the row to settle, the cap passed to the CLI.
#[derive(Debug, Clone)]
pub struct Reserved {
    open: Open,
    row: Row,
    cap: Option<f64>,
    host: String,
    started: Instant,
}

impl Reserved {
    /// The cap passed as `--max-budget-usd` (none: no cap).
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }
}

fn ledger_error(e: crate::core::state::StateError) -> ClaudeError {
    ClaudeError::Ledger(e.to_string())
}

/// Writes the row of a run about to start: refused (a `budget` row) when the fleet budget has less than
/// `min_usd` left; else its cap is the lower of what is left and `max_usd`, reserved.
pub async fn reserve(budget: &Budget, b: &Booking, opts: &Options) -> Result<Reserved, Failure> {
    if let Some(m) = b.max_usd.filter(|m| !m.is_finite() || *m < 0.0) {
        return Err(ClaudeError::Invalid(format!("max_usd must be a number ≥ 0, got {m}")).into());
    }
    let row = Row {
        script: b.script.clone(),
        provider: PROVIDER.into(),
        host: Some(b.host.clone()),
        // The model asked for until the init line names the one that serves the run (settled with it).
        model: opts.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into()),
        ..Row::default()
    };
    // A refused run is a `budget` row, and nothing starts.
    let refuse = async |why: String| -> Failure {
        let refused = Row {
            outcome: Outcome::Budget,
            err: Some(why.clone()),
            ..row.clone()
        };
        match budget.skip(refused).await {
            Ok(()) => ClaudeError::OverBudget(why).into(),
            Err(e) => ledger_error(e).into(),
        }
    };
    let cap = match budget.limit() {
        Some(limit) => {
            let t = budget.ledger().month().await.map_err(ledger_error)?;
            let spent = budget
                .provider_spent()
                .await
                .map_or(t.spent, |p| p.max(t.spent));
            let left = (limit.monthly_usd - spent - t.held).max(0.0);
            if left < b.min_usd {
                let why = format!(
                    "{} left of {} this month, less than min_usd {}",
                    money(left),
                    money(limit.monthly_usd),
                    money(b.min_usd)
                );
                return Err(refuse(why).await);
            }
            Some(b.max_usd.map_or(left, |m| m.min(left)))
        }
        None => b.max_usd,
    };
    if let Some(c) = cap.filter(|c| cents(*c) <= 0.0) {
        return Err(refuse(format!(
            "a cap of {} is under $0.01, the least `--max-budget-usd` that can be passed (Claude Code \
             refuses 0)",
            money(c)
        ))
        .await);
    }
    let open = match budget
        .open(row.clone(), cap.unwrap_or(0.0), cap.is_some())
        .await
    {
        Ok(open) => open,
        Err(BudgetError::Refused(r)) => return Err(ClaudeError::OverBudget(r.to_string()).into()),
        Err(BudgetError::State(e)) => return Err(ledger_error(e).into()),
    };
    Ok(Reserved {
        open,
        row,
        cap,
        host: b.host.clone(),
        started: Instant::now(),
    })
}

/// Settles a reserved run with how it ended: the reported cost, or its cap when there was no result line.
pub async fn settle(
    budget: &Budget,
    r: Reserved,
    out: Result<(Finished, Option<String>), ClaudeError>,
) -> Result<Run, Failure> {
    let Reserved {
        open,
        row,
        cap,
        host,
        started,
    } = r;
    let mut row = Row {
        duration: started.elapsed().as_secs_f64(),
        sent: true,
        ..row
    };
    match out {
        Ok((f, model)) => {
            if let Some(m) = &model {
                row.model.clone_from(m);
            }
            row.tokens_in = f.usage.tokens_in();
            row.tokens_out = f.usage.output_tokens;
            row.cost = f.cost;
            row.cost_source = "provider".into();
            row.outcome = if f.failed() {
                Outcome::Error
            } else {
                Outcome::Ok
            };
            let err = f.failed().then(|| ClaudeError::Failed {
                subtype: f.subtype.clone(),
                text: f.text.clone(),
            });
            row.err = err.as_ref().map(|e| e.to_string());
            Budget::check_cost(&mut row, open.reserved);
            let closed = budget.close(&open, row).await.map_err(ledger_error)?;
            let run = Run {
                result: Finished {
                    cost: closed.cost,
                    ..f
                },
                model,
                host,
                max_usd: cap,
            };
            match err {
                Some(err) => Err(Failure {
                    partial: Some(run),
                    err,
                }),
                None => Ok(run),
            }
        }
        Err(e) => {
            row.outcome = Outcome::Error;
            let nothing_ran = match &e {
                ClaudeError::Missing | ClaudeError::Invalid(_) => true,
                ClaudeError::Remote(re) => re.is_permanent(),
                _ => false,
            };
            let e = if nothing_ran {
                // Nothing ran: nothing spent.
                row.sent = false;
                row.cost_source = "unknown".into();
                e
            } else {
                // What it spent is unknown: booked at its cap, and the error says so.
                row.cost = open.reserved;
                row.cost_source = "reserved".into();
                let booked = match cap {
                    Some(c) => format!("; booked at its cap {}", money(c)),
                    None => "; its cost is unknown (no cap: no fleet budget, no max_usd)".into(),
                };
                match e {
                    ClaudeError::NoResult { what, detail } => ClaudeError::NoResult {
                        what,
                        detail: detail + &booked,
                    },
                    e => ClaudeError::Booked {
                        cause: Box::new(e),
                        booked,
                    },
                }
            };
            row.err = Some(e.to_string());
            budget.close(&open, row).await.map_err(ledger_error)?;
            Err(e.into())
        }
    }
}

/// [`run`], booked: a ledger row written before start (refused when the budget has less than `min_usd`
/// left), `--max-budget-usd` set to the cap, the row settled with the reported cost (or the cap when
/// there is no result line).
pub async fn booked(
    budget: &Budget,
    remote: &Remote,
    b: &Booking,
    prompt: &str,
    opts: &Options,
    spec: &Spec,
    on_event: Option<OnEvent<'_>>,
) -> Result<Run, Failure> {
    let r = reserve(budget, b, opts).await?;
    let opts = Options {
        max_budget_usd: r.cap,
        ..opts.clone()
    };
    let out = run(remote, &b.host, prompt, &opts, spec, on_event).await;
    settle(budget, r, out).await
}

/// A run started as a detached job (a tmux session on the host): its ledger row stays open until
/// [`finish`] reads its result.
#[derive(Debug, Clone)]
pub struct Detached {
    pub job: Job,
    /// Where the CLI's stderr goes on the host.
    pub stderr: String,
    reserved: Option<Reserved>,
}

/// Starts a booked run as a detached `tmux` job on the host: the prompt is written to a private file
/// there first (the job reads it as stdin and removes it), stdout is the job's log, stderr a file beside
/// the prompt. The ledger row is written first and stays open until [`finish`].
pub async fn detach(
    budget: &Budget,
    remote: &Remote,
    state: &State,
    b: &Booking,
    prompt: &str,
    opts: &Options,
    spec: &Spec,
) -> Result<Detached, Failure> {
    let r = reserve(budget, b, opts).await?;
    let opts = Options {
        max_budget_usd: r.cap,
        ..opts.clone()
    };
    let started = async {
        let argv = shell_text(&Cmd::Argv(argv(&opts)?))?;
        // The prompt to a private file on the host, read back as the job's stdin.
        let write = Cmd::Argv(
            [
                "sh",
                "-c",
                "umask 077 && d=\"$HOME/.baton/claude\" && mkdir -p \"$d\" && p=$(mktemp \"$d/prompt.XXXXXX\") \
                 && cat > \"$p\" && printf '%s' \"$p\"",
            ]
            .map(String::from)
            .to_vec(),
        );
        let put = Spec {
            stdin: Some(prompt.as_bytes().to_vec()),
            timeout: Some(Duration::from_secs(30)),
            ..Spec::default()
        };
        let out = remote.run(&b.host, &write, &put, None).await?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.ok() || path.is_empty() {
            return Err(ClaudeError::Remote(RemoteError::Job(format!(
                "cannot write the prompt on the host: {}",
                out.failure_summary()
            ))));
        }
        let (p, e) = (quote(&path)?.into_owned(), quote(&format!("{path}.err"))?.into_owned());
        // Run by `sh` whatever the user's login shell is (a fish `$SHELL` does not read `{ …; }`).
        let cmd = Cmd::Argv(vec![
            "sh".into(),
            "-c".into(),
            format!("{{ rm -f {p}; {argv}; }} < {p} 2> {e}"),
        ]);
        let job = jobs::spawn_with(
            remote,
            state,
            &b.host,
            &cmd,
            &Spec {
                stdin: None,
                timeout: None,
                ..spec.clone()
            },
            JobOpts {
                notify: false,
                tmux: true,
                title: Some("claude.run".into()),
            },
        )
        .await?;
        Ok((job, format!("{path}.err")))
    }
    .await;
    match started {
        Ok((job, stderr)) => Ok(Detached {
            job,
            stderr,
            reserved: Some(r),
        }),
        Err(e) => match settle(budget, r, Err(e)).await {
            Err(f) => Err(f),
            // `settle` of an error is an error; kept total all the same.
            Ok(run) => Err(Failure {
                partial: Some(run),
                err: ClaudeError::Invalid("the job did not start".into()),
            }),
        },
    }
}

/// Waits for a detached run (polling every `poll`, at most `timeout`), decoding its log as it grows, and
/// settles its ledger row. A wait that times out leaves the job running and the row open (wait again).
pub async fn finish(
    budget: &Budget,
    remote: &Remote,
    state: &State,
    d: &mut Detached,
    poll: Duration,
    timeout: Option<Duration>,
    on_event: Option<OnEvent<'_>>,
) -> Result<Run, Failure> {
    let Some(r) = d.reserved.clone() else {
        return Err(ClaudeError::Invalid(format!(
            "job {} was waited for already: its result was returned then",
            d.job.id
        ))
        .into());
    };
    let job = &mut d.job;
    let waited = streamed(
        |tx| jobs::wait(remote, state, job, poll, timeout, Some(tx), MAX_LINE),
        on_event,
    )
    .await;
    let out = match waited {
        // Still running: the row stays open.
        Ok((Err(e @ RemoteError::Job(_)), _)) => return Err(ClaudeError::Remote(e).into()),
        // The job was stopped by `jobs::wait`.
        Ok((Err(RemoteError::Process(ProcessError::LineTooLong(l))), _)) => {
            Err(ClaudeError::LineTooLong(l))
        }
        Ok((Err(e), _)) => Err(e.into()),
        Ok((Ok(status), d2)) => match d2.result {
            Some(f) => Ok((f, d2.model)),
            None if status.code == Some(127) => Err(ClaudeError::Missing),
            None => Err(ClaudeError::NoResult {
                what: match status.code {
                    Some(0) => "Claude Code exited".to_string(),
                    Some(c) => format!(
                        "Claude Code failed (exit {c}; its stderr is in {})",
                        d.stderr
                    ),
                    None => format!("the job ended ({})", status.state.name()),
                },
                detail: String::new(),
            }),
        },
        Err(e) => {
            // A bad line: the job is stopped.
            let _ = jobs::kill(remote, state, &mut d.job).await;
            Err(e)
        }
    };
    d.reserved = None;
    settle(budget, r, out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_passes_each_option_as_one_word() {
        let opts = Options {
            model: Some("sonnet".into()),
            max_turns: Some(3),
            allowed_tools: vec!["Bash(git diff:*)".into(), "Read".into()],
            disallowed_tools: vec!["-Edit".into()],
            append_system_prompt: Some("--be brief".into()),
            mcp_config: Some("{\"mcpServers\":{}}".into()),
            permission_mode: Some("acceptEdits".into()),
            resume: Some("abc".into()),
            max_budget_usd: Some(1.239),
        };
        assert_eq!(
            argv(&opts).unwrap(),
            [
                "claude",
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--model=sonnet",
                "--max-turns=3",
                "--allowedTools=Bash(git diff:*)",
                "--allowedTools=Read",
                "--disallowedTools=-Edit",
                "--append-system-prompt=--be brief",
                "--mcp-config={\"mcpServers\":{}}",
                "--permission-mode=acceptEdits",
                "--resume=abc",
                "--max-budget-usd=1.23",
            ]
        );
        let empty = Options {
            allowed_tools: vec![" ".into()],
            ..Options::default()
        };
        assert!(
            argv(&empty)
                .unwrap_err()
                .to_string()
                .contains("allowed_tools")
        );
        let nul = Options {
            model: Some("a\0b".into()),
            ..Options::default()
        };
        assert!(argv(&nul).unwrap_err().to_string().contains("NUL byte"));
    }

    #[test]
    fn decodes_the_documented_lines() {
        let init = r#"{"type":"system","subtype":"init","session_id":"s1","model":"claude-x","cwd":"/w","tools":["Bash","Read"]}"#;
        assert_eq!(
            decode(1, init).unwrap(),
            [Event::Init {
                session_id: Some("s1".into()),
                model: Some("claude-x".into()),
                cwd: Some("/w".into()),
                tools: vec!["Bash".into(), "Read".into()],
            }]
        );
        let asst = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}"#;
        let evs = decode(2, asst).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0], Event::Text { text: "hi".into() });
        let user = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"a\nb","is_error":false}]}}"#;
        assert!(
            matches!(&decode(3, user).unwrap()[0], Event::ToolResult { tool_use_id: Some(id), .. } if id == "t1")
        );
        let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s1","num_turns":2,"duration_ms":1500,"total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100}}"#;
        let Event::Result(f) = &decode(4, result).unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            (f.text.as_str(), f.cost, f.turns, f.duration),
            ("done", 0.25, 2, 1.5)
        );
        assert_eq!((f.usage.tokens_in(), f.usage.output_tokens), (110, 5));
        assert!(!f.failed());
        assert!(decode(5, "").unwrap().is_empty());
        let bad = decode(6, "not json").unwrap_err().to_string();
        assert!(
            bad.starts_with("stdout line 6 is not a stream-json object"),
            "{bad}"
        );
        let long = "x".repeat(MAX_LINE + 1);
        let e = decode(7, &long).unwrap_err().to_string();
        assert_eq!(
            e,
            "stdout line 7 is longer than 8 MiB, the bound on one line of output: the command was stopped"
        );
    }

    #[test]
    fn failures_name_their_cause() {
        let e = ClaudeError::Failed {
            subtype: "error_max_turns".into(),
            text: String::new(),
        };
        assert_eq!(e.to_string(), "stopped at max_turns");
        let e = ClaudeError::Failed {
            subtype: "success".into(),
            text: "Invalid API key · Please run /login".into(),
        };
        assert!(e.to_string().contains("not logged in"), "{e}");
        assert!(ClaudeError::Missing.to_string().contains(INSTALL_HINT));
    }
}

//! Routing: task kind → tier → model, escalation one tier up on offline / error / rejection, a health
//! cooldown for endpoints that refused or timed out, and budget reservations for paid tiers.
//!
//! Everything [`Router::pick`] needs is computed once in [`Router::new`] (tier and task tables as hash maps,
//! each tier's endpoint key), so a pick is a few lookups and a cooldown check.
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::budget::{Budget as Books, BudgetError};
use super::cost::{self, DEFAULT_MAX_TOKENS, estimate_tokens};
use super::ledger::{Alert, Ledger, Open, Row};
use super::ollama::Ollama;
use super::openai::OpenAi;
use super::shape::{Reply, Routed};
use super::{
    Callback, Clients, HookError, LocalFuture, Message, OnToken, Target, ToolCall, ToolSpec,
};
use crate::core::fleet::{Fleet, Price, Provider};
use crate::core::state::StateError;
use crate::core::wording::suggest;

/// How long an endpoint that refused or timed out is skipped.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// Model calls one attempt may make when tools are offered.
pub const DEFAULT_MAX_STEPS: u32 = 8;

/// How long one tool may run before its result is `error: timed out after …`.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct TierInfo {
    name: String,
    provider: Provider,
    /// Where its calls go (the fleet host, the endpoint, its health key).
    target: Target,
    /// The model when the task names no role the tier has.
    model: String,
    models: BTreeMap<String, String>,
    price: Option<Price>,
    /// Whether its calls cost money (see [`cost::paid`]): reserved against the budget, refusable.
    paid: bool,
}

impl TierInfo {
    fn model_for(&self, role: Option<&str>) -> &str {
        role.and_then(|r| self.models.get(r))
            .map_or(self.model.as_str(), String::as_str)
    }
}

/// What `route.pick` takes: a kind, optionally bounded to a range of tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSpec {
    pub kind: String,
    pub min_tier: Option<String>,
    pub max_tier: Option<String>,
}

impl TaskSpec {
    pub fn kind(kind: &str) -> TaskSpec {
        TaskSpec {
            kind: kind.to_string(),
            ..TaskSpec::default()
        }
    }
}

/// `route.pick`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pick {
    pub task: String,
    pub tier: String,
    pub provider: &'static str,
    pub host: Option<String>,
    pub model: String,
    pub reason: String,
}

/// How one attempt of `route.ask` ended: the ledger's outcome, one enum for both.
pub use super::ledger::Outcome;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub tier: String,
    pub model: String,
    pub outcome: Outcome,
    pub err: Option<String>,
}

/// `route.ask`'s answer (also what `accept` sees). `cost` and token counts add up every attempt so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub text: String,
    pub tier: String,
    pub provider: &'static str,
    pub model: String,
    pub cost: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub attempts: Vec<Attempt>,
    /// A structured answer (`schema`), decoded and checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// The reasoning of the final answer, apart from `text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Every model call and tool call of every attempt, in order.
    pub steps: Vec<Step>,
    /// The whole conversation of the answering attempt (system, prompt, tool calls and results, answer),
    /// so a script can continue it.
    pub messages: Vec<Message>,
}

/// One model call or tool call of a `route.ask`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// `model` or `tool`.
    pub kind: &'static str,
    /// The model call this belongs to (1-based, per attempt).
    pub step: u32,
    pub tier: String,
    /// The model, or the tool's name.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// Seconds.
    pub duration: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// A model call's tool calls, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<String>,
}

/// `accept`'s say on an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(Option<String>),
}

/// `route.ask`'s options.
#[derive(Debug, Clone, Default)]
pub struct AskOptions {
    pub system: Option<String>,
    pub max_tier: Option<String>,
    pub max_tokens: Option<u32>,
    /// The script, for the ledger.
    pub script: Option<String>,
    /// `timeout` and `deadline` of each attempt (each tier's call).
    pub wait: super::Wait,
    /// Tools offered to the model; their calls go to [`Hooks::run_tool`].
    pub tools: Vec<ToolSpec>,
    /// Model calls per attempt (default [`DEFAULT_MAX_STEPS`]).
    pub max_steps: Option<u32>,
    /// Per tool call (default [`DEFAULT_TOOL_TIMEOUT`]).
    pub tool_timeout: Option<Duration>,
    /// The answer must be JSON matching this schema, else it is rejected and the next tier tried.
    pub schema: Option<serde_json::Value>,
    /// Ollama tiers: `think`.
    pub think: Option<serde_json::Value>,
    /// OpenRouter tiers: `reasoning`.
    pub reasoning: Option<serde_json::Value>,
    /// Read JSON-in-content as a tool call (default on when tools are offered).
    pub content_tool_calls: Option<bool>,
}

/// Judges each answer of `route.ask`; an `Err` (it raised, or returned something that is no verdict) stops
/// the ask and its text is reported as is.
pub type Accept<'a> =
    &'a mut dyn FnMut(&Answer) -> LocalFuture<'static, Result<Verdict, HookError>>;
pub type OnAlert<'a> = Callback<'a, Alert>;
/// Runs one tool call; `Ok` is its result text, `Err` is reported to the model as `error: …`.
pub type RunTool<'a> = Callback<'a, ToolCall, String>;

/// The callbacks of one ask.
#[derive(Default)]
pub struct Hooks<'a> {
    pub on_token: Option<OnToken<'a>>,
    pub accept: Option<Accept<'a>>,
    pub on_alert: Option<OnAlert<'a>>,
    pub run_tool: Option<RunTool<'a>>,
    /// Called after each model call and each tool call.
    pub on_step: Option<Callback<'a, Step>>,
    /// Streamed pieces of the reasoning.
    pub on_thinking: Option<OnToken<'a>>,
    /// Called with an attempt that gave no accepted answer (cooling down, over budget, failed, rejected)
    /// when a higher tier is tried next, after the attempt's ledger row is written: `baton ask` says
    /// "escalating" here, after the text the attempt streamed.
    pub on_escalate: Option<Callback<'a, Attempt>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown tier {name:?}{hint} (tiers: {tiers})")]
    UnknownTier {
        name: String,
        hint: String,
        tiers: String,
    },
    #[error("no tier to try: the fleet defines none{0}")]
    NoTiers(String),
    #[error("no tier left after {} attempt{}: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, describe(.0))]
    Exhausted(Vec<Attempt>),
    #[error("{0}")]
    Callback(String),
    #[error(transparent)]
    State(#[from] StateError),
}

fn describe(attempts: &[Attempt]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .map(|a| match &a.err {
            Some(e) => format!("{} ({}): {}: {e}", a.tier, a.model, a.outcome.name()),
            None => format!("{} ({}): {}", a.tier, a.model, a.outcome.name()),
        })
        .collect();
    parts.join("; ")
}

/// The router over one fleet. Clients are shared with the `ollama`/`openrouter` APIs (same limiter).
#[derive(Debug)]
pub struct Router {
    tiers: Vec<TierInfo>,
    tier_index: HashMap<String, usize>,
    tasks: HashMap<String, (usize, Option<String>)>,
    /// Known task kinds whose tier the fleet lacks: kind → (tier, why).
    unconfigured: BTreeMap<String, (String, String)>,
    /// Endpoint key → (skip until, why).
    health: Mutex<HashMap<String, (Instant, String)>>,
    pub cooldown: Duration,
    clients: Clients,
    /// The ledger and the budget checks, shared with the direct calls.
    books: Books,
}

impl Router {
    pub fn new(fleet: &Fleet, ollama: Ollama, openai: OpenAi, ledger: Ledger) -> Router {
        Router::with_clients(fleet, Clients::new(ollama, openai), ledger)
    }

    /// The router over `clients` (shared with the direct calls).
    pub fn with_clients(fleet: &Fleet, clients: Clients, ledger: Ledger) -> Router {
        let tiers: Vec<TierInfo> = fleet
            .tiers()
            .into_iter()
            .map(|t| {
                let target = clients.target(fleet, &t);
                let model = t
                    .model
                    .clone()
                    .or_else(|| t.models.values().next().cloned())
                    .unwrap_or_default();
                TierInfo {
                    name: t.name,
                    provider: t.provider,
                    target,
                    model,
                    models: t.models,
                    price: t.price,
                    paid: cost::paid(t.price, Clients::bills(t.provider)),
                }
            })
            .collect();
        let tier_index: HashMap<String, usize> = tiers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let tasks = fleet
            .tasks()
            .into_iter()
            .filter_map(|(kind, rule)| tier_index.get(&rule.tier).map(|&i| (kind, (i, rule.model))))
            .collect();
        Router {
            tiers,
            tier_index,
            tasks,
            unconfigured: fleet.tasks_without_tier(),
            health: Mutex::new(HashMap::new()),
            cooldown: DEFAULT_COOLDOWN,
            books: Books::new(ledger, clients.openai.clone(), fleet.budget),
            clients,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        self.books.ledger()
    }

    /// The budget every call books through (also the direct `openrouter`/`ollama` calls).
    pub fn budget(&self) -> &Books {
        &self.books
    }

    fn tier(&self, name: &str) -> Result<usize, RouteError> {
        self.tier_index
            .get(name)
            .copied()
            .ok_or_else(|| RouteError::UnknownTier {
                name: name.to_string(),
                hint: suggest(name, self.tiers.iter().map(|t| t.name.as_str())),
                tiers: self
                    .tiers
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Why the tier's endpoint is being skipped, if it is cooling down.
    fn cooling(&self, tier: &TierInfo) -> Option<String> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let (until, why) = health.get(&tier.target.health_key)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "skipped for {} more after: {why}",
            crate::core::duration::format(left)
        ))
    }

    fn mark_down(&self, tier: &TierInfo, why: &str) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.insert(
            tier.target.health_key.clone(),
            (Instant::now() + self.cooldown, why.to_string()),
        );
    }

    /// Why a task kind without a tier goes to the lowest tier that is up: a known kind whose tier is not
    /// configured says what to set; any other kind is unknown.
    fn unmapped(&self, kind: &str) -> String {
        match self.unconfigured.get(kind) {
            Some((tier, why)) => {
                format!("task {kind} → tier {tier}, not configured ({why}): lowest tier that is up")
            }
            None => format!("unknown task kind {kind:?}: lowest tier that is up"),
        }
    }

    /// The tiers a task goes to, in order, with its model role and why.
    /// With `skip_cooling`, tiers whose endpoint is cooling down are passed over (for `pick`; `ask` lists
    /// them as attempts instead).
    fn plan(&self, spec: &TaskSpec, skip_cooling: bool) -> Result<Plan<'_>, RouteError> {
        if self.tiers.is_empty() {
            return Err(RouteError::NoTiers(String::new()));
        }
        let lo = spec
            .min_tier
            .as_deref()
            .map(|t| self.tier(t))
            .transpose()?
            .unwrap_or(0);
        let hi = spec
            .max_tier
            .as_deref()
            .map(|t| self.tier(t))
            .transpose()?
            .unwrap_or(self.tiers.len() - 1);
        if lo > hi {
            return Err(RouteError::NoTiers(format!(
                " between min_tier {:?} and max_tier {:?}",
                self.tiers[lo].name, self.tiers[hi].name
            )));
        }
        let (want, role, mut reason) = match self.tasks.get(&spec.kind) {
            Some((i, role)) => (
                *i,
                role.as_deref(),
                format!("task {} → tier {}", spec.kind, self.tiers[*i].name),
            ),
            None => (lo, None, self.unmapped(&spec.kind)),
        };
        let mut start = want.clamp(lo, hi);
        if start != want {
            reason.push_str(&format!(", bounded to {}", self.tiers[start].name));
        }
        while skip_cooling
            && start < hi
            && let Some(why) = self.cooling(&self.tiers[start])
        {
            reason.push_str(&format!(", {} {why}", self.tiers[start].name));
            start += 1;
        }
        Ok(Plan {
            tiers: &self.tiers[start..=hi],
            role,
            reason,
        })
    }

    /// `route.pick`: where a task would go now, without calling anything.
    pub fn pick(&self, spec: &TaskSpec) -> Result<Pick, RouteError> {
        let plan = self.plan(spec, true)?;
        let t = &plan.tiers[0];
        Ok(Pick {
            task: spec.kind.clone(),
            tier: t.name.clone(),
            provider: t.provider.name(),
            host: t.target.host.clone(),
            model: t.model_for(plan.role).to_string(),
            reason: plan.reason,
        })
    }

    /// `route.ask`: tries the chosen tier, then each higher one (up to `max_tier`) until an answer is
    /// accepted. Every attempt (skips included) is a ledger row.
    pub async fn ask(
        &self,
        spec: &TaskSpec,
        prompt: Vec<Message>,
        opts: &AskOptions,
        hooks: &mut Hooks<'_>,
    ) -> Result<Answer, RouteError> {
        let mut spec = spec.clone();
        if opts.max_tier.is_some() {
            spec.max_tier.clone_from(&opts.max_tier);
        }
        let plan = self.plan(&spec, false)?;
        let mut ask = Ask::new(self, spec.kind, plan.role, prompt, opts, hooks);
        let mut tiers = plan.tiers.iter().peekable();
        while let Some(tier) = tiers.next() {
            if let Some(answer) = ask.try_tier(tier).await? {
                return Ok(answer);
            }
            if tiers.peek().is_some() {
                ask.escalate().await?;
            }
        }
        Err(RouteError::Exhausted(ask.attempts))
    }
}

/// Where a task goes: the tiers to try in order (never empty; the first is the pick), the model role its
/// rule names, and why.
struct Plan<'r> {
    tiers: &'r [TierInfo],
    role: Option<&'r str>,
    reason: String,
}

/// One `route.ask` under way: what it sends, the attempts so far and what they added up to.
struct Ask<'r, 'h> {
    router: &'r Router,
    task: String,
    /// The task's model role, if its rule names one.
    role: Option<&'r str>,
    opts: &'r AskOptions,
    /// The prompt with the system message first.
    messages: Vec<Message>,
    /// Prompt tokens, estimated high, for budget reservations.
    estimate: u64,
    attempts: Vec<Attempt>,
    cost: f64,
    tokens_in: u64,
    tokens_out: u64,
    steps: Vec<Step>,
    hooks: &'r mut Hooks<'h>,
}

/// One attempt on one tier until it is recorded: what `route.ask` reports, the ledger row it becomes and
/// the budget reservation the row settles.
struct Pending {
    attempt: Attempt,
    row: Row,
    /// The row as written before sending (`None` until then: a skipped tier is written at the end).
    open: Option<Open>,
}

impl<'r, 'h> Ask<'r, 'h> {
    fn new(
        router: &'r Router,
        task: String,
        role: Option<&'r str>,
        prompt: Vec<Message>,
        opts: &'r AskOptions,
        hooks: &'r mut Hooks<'h>,
    ) -> Self {
        let mut messages = Vec::with_capacity(prompt.len() + 1);
        if let Some(system) = &opts.system {
            messages.push(Message::new("system", system.clone()));
        }
        messages.extend(prompt);
        Ask {
            router,
            task,
            role,
            opts,
            estimate: estimate_tokens(&messages),
            messages,
            attempts: Vec::new(),
            cost: 0.0,
            tokens_in: 0,
            tokens_out: 0,
            steps: Vec::new(),
            hooks,
        }
    }

    /// `max_tokens` as sent to paid tiers and reserved against the budget.
    fn max_tokens(&self) -> u32 {
        self.opts.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
    }

    /// One tier: skipped while cooling down or over budget, else asked and its answer judged. `Some` is
    /// the accepted answer; `None` means go on to the next tier.
    ///
    /// With tools, a tier is a loop: each model call is a step (its own reservation and ledger row); the
    /// tools it asks for run concurrently and their results are sent back, until an answer without tool
    /// calls or `max_steps`. Each tier starts the conversation afresh.
    async fn try_tier(&mut self, t: &TierInfo) -> Result<Option<Answer>, RouteError> {
        let mut conv = self.messages.clone();
        let max_steps = self.opts.max_steps.unwrap_or(DEFAULT_MAX_STEPS).max(1);
        let first_step = self.steps.len();
        let mut step = 0;
        loop {
            step += 1;
            let mut p = self.begin(t);
            if !self.opts.tools.is_empty() {
                p.row.step = Some(step);
            }
            if let Some(why) = self.router.cooling(t) {
                self.record(p, Outcome::Offline, Some(why)).await?;
                return Ok(None);
            }
            self.estimate = estimate_tokens(&conv);
            match self.reserve(t, p.row.clone()).await? {
                Ok(open) => p.open = Some(open),
                Err(why) => {
                    // The refusal is already a ledger row (written by the budget check).
                    p.attempt.outcome = Outcome::Budget;
                    p.attempt.err = Some(if step > 1 {
                        format!("step {step}: {why}")
                    } else {
                        why
                    });
                    self.attempts.push(p.attempt);
                    return Ok(None);
                }
            }
            p.row.sent = true;
            let started = Instant::now();
            let reply = self.send(t, &p.attempt.model, &conv).await;
            p.row.duration = started.elapsed().as_secs_f64();
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => return self.failed(t, p, e).await.map(|()| None),
            };
            self.stepped(Step {
                kind: "model",
                step,
                tier: t.name.clone(),
                name: p.attempt.model.clone(),
                arguments: None,
                result: None,
                err: None,
                duration: p.row.duration,
                cost: Some(reply.cost),
                tool_calls: reply
                    .settled
                    .tool_calls
                    .iter()
                    .map(|c| c.name.clone())
                    .collect(),
            })
            .await?;
            if reply.settled.tool_calls.is_empty() || self.opts.tools.is_empty() {
                conv.push(reply.settled.message.clone());
                return self.judge(t, p, reply, conv).await;
            }
            if step >= max_steps {
                self.count(&mut p, &reply);
                let why = format!(
                    "ran out of steps (max_steps = {max_steps}): {}",
                    list_steps(&self.steps[first_step..])
                );
                self.record(p, Outcome::Error, Some(why)).await?;
                return Ok(None);
            }
            self.count(&mut p, &reply);
            p.row.outcome = Outcome::Ok;
            self.book(p.open, p.row).await?;
            conv.push(reply.settled.message);
            let calls = reply.settled.tool_calls;
            let results = self.run_tools(&calls).await;
            for (call, (result, duration)) in calls.iter().zip(results) {
                let content = match &result {
                    Ok(text) => text.clone(),
                    Err(e) => format!("error: {e}"),
                };
                conv.push(Message::tool_result(call, content));
                self.stepped(Step {
                    kind: "tool",
                    step,
                    tier: t.name.clone(),
                    name: call.name.clone(),
                    arguments: Some(call.arguments.clone()),
                    result: result.as_ref().ok().cloned(),
                    err: result.err(),
                    duration,
                    cost: None,
                    tool_calls: Vec::new(),
                })
                .await?;
            }
        }
    }

    /// Adds a step and tells `on_step`.
    async fn stepped(&mut self, step: Step) -> Result<(), RouteError> {
        if let Some(cb) = self.hooks.on_step.as_mut() {
            cb(step.clone())
                .await
                .map_err(|e| RouteError::Callback(format!("on_step: {e}")))?;
        }
        self.steps.push(step);
        Ok(())
    }

    /// A model call's tokens and cost, on its row and in the ask's totals.
    fn count(&mut self, p: &mut Pending, reply: &Reply) {
        p.row.tokens_in = reply.tokens_in;
        p.row.tokens_out = reply.tokens_out;
        p.row.cost = reply.cost;
        p.row.cost_source = reply.cost_source.name().to_string();
        Books::check_cost(&mut p.row, p.open.as_ref().map_or(0.0, |o| o.reserved));
        self.cost += p.row.cost;
        self.tokens_in += reply.tokens_in;
        self.tokens_out += reply.tokens_out;
    }

    /// Runs every call at once through [`Hooks::run_tool`], each bounded by `tool_timeout`: results (or
    /// why not) and seconds, in the calls' order. An unknown tool or arguments that are not an object are
    /// answered without running anything.
    async fn run_tools(&mut self, calls: &[ToolCall]) -> Vec<(Result<String, String>, f64)> {
        let limit = self.opts.tool_timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT);
        let names: Vec<&str> = self.opts.tools.iter().map(|t| t.name.as_str()).collect();
        let mut runs: Vec<LocalFuture<'static, Result<String, String>>> =
            Vec::with_capacity(calls.len());
        for call in calls {
            let refuse = |why: String| -> LocalFuture<'static, Result<String, String>> {
                Box::pin(std::future::ready(Err(why)))
            };
            if call.name.trim().is_empty() {
                runs.push(refuse(format!(
                    "a tool call needs the name of a tool, got {:?} (tools: {})",
                    call.name,
                    names.join(", ")
                )));
                continue;
            }
            if !names.contains(&call.name.as_str()) {
                runs.push(refuse(format!(
                    "unknown tool {:?} (tools: {})",
                    call.name,
                    names.join(", ")
                )));
                continue;
            }
            if !call.arguments.is_object() {
                runs.push(refuse(format!(
                    "arguments must be a JSON object, got {}",
                    crate::core::llm::http::snippet(call.arguments.to_string().as_bytes())
                )));
                continue;
            }
            let Some(run) = self.hooks.run_tool.as_mut() else {
                runs.push(refuse(format!("tool {:?} has no run function", call.name)));
                continue;
            };
            let fut = run(call.clone());
            runs.push(Box::pin(async move {
                match tokio::time::timeout(limit, fut).await {
                    Ok(Ok(text)) => Ok(text),
                    Ok(Err(e)) => Err(e.0),
                    Err(_) => Err(format!(
                        "timed out after {}",
                        crate::core::duration::format(limit)
                    )),
                }
            }));
        }
        let timed = runs.into_iter().map(|run| async move {
            let started = Instant::now();
            let r = run.await;
            (r, started.elapsed().as_secs_f64())
        });
        futures_util::future::join_all(timed).await
    }

    /// The attempt and its ledger row before anything is known about the outcome.
    fn begin(&self, t: &TierInfo) -> Pending {
        let model = t.model_for(self.role).to_string();
        let row = Row {
            script: self.opts.script.clone(),
            task: Some(self.task.clone()),
            tier: Some(t.name.clone()),
            provider: t.provider.name().to_string(),
            // The fleet host for Ollama; the endpoint (`openrouter` or its base URL) for the cloud.
            host: Some(t.target.name.clone()),
            model: model.clone(),
            cost_source: "unknown".into(),
            sent: false,
            ..Row::default()
        };
        Pending {
            attempt: Attempt {
                tier: t.name.clone(),
                model,
                outcome: Outcome::Offline,
                err: None,
            },
            row,
            open: None,
        }
    }

    /// Writes the attempt's row before anything is sent; for a paid tier, reserves the worst case (the
    /// prompt estimate plus `max_tokens` of answer) against the monthly budget first. `Err` is why the
    /// budget refused it.
    async fn reserve(&self, t: &TierInfo, row: Row) -> Result<Result<Open, String>, RouteError> {
        let worst = if t.paid {
            cost::worst_case(t.price, self.estimate, self.max_tokens())
        } else {
            0.0
        };
        match self.router.books.open(row, worst, t.paid).await {
            Ok(open) => Ok(Ok(open)),
            Err(BudgetError::Refused(why)) => Ok(Err(why.to_string())),
            Err(BudgetError::State(e)) => Err(e.into()),
        }
    }

    /// Sends the prompt to the tier, streaming to `on_token`.
    async fn send(
        &mut self,
        t: &TierInfo,
        model: &str,
        conv: &[Message],
    ) -> Result<Reply, super::LlmError> {
        let chat = Routed {
            model,
            messages: conv,
            max_tokens: self.opts.max_tokens,
            tools: &self.opts.tools,
            schema: self.opts.schema.as_ref(),
            think: self.opts.think.as_ref(),
            reasoning: self.opts.reasoning.as_ref(),
            content_tool_calls: self.opts.content_tool_calls,
        };
        let on_token = super::lend(&mut self.hooks.on_token);
        let on_thinking = super::lend(&mut self.hooks.on_thinking);
        self.router
            .clients
            .chat(
                t.provider,
                &t.target,
                &chat,
                t.price,
                self.opts.wait,
                on_token,
                on_thinking,
            )
            .await
    }

    /// A failed call: an offline endpoint cools down and the next tier is tried; a failing `on_token`
    /// stops the ask.
    async fn failed(
        &mut self,
        t: &TierInfo,
        p: Pending,
        e: super::LlmError,
    ) -> Result<(), RouteError> {
        if matches!(e.kind, super::ErrorKind::Callback(_)) {
            self.record(p, Outcome::Error, Some(e.to_string())).await?;
            return Err(RouteError::Callback(e.to_string()));
        }
        let outcome = if matches!(e.kind, super::ErrorKind::KeyLimit(_)) {
            Outcome::Budget
        } else if e.kind.is_offline() {
            self.router.mark_down(t, &e.kind.to_string());
            Outcome::Offline
        } else {
            Outcome::Error
        };
        self.record(p, outcome, Some(e.to_string())).await
    }

    /// An answer: counted, shown to `accept` with every attempt so far, and returned unless rejected. An
    /// `accept` that fails stops the ask.
    async fn judge(
        &mut self,
        t: &TierInfo,
        mut p: Pending,
        reply: Reply,
        messages: Vec<Message>,
    ) -> Result<Option<Answer>, RouteError> {
        self.count(&mut p, &reply);
        let data = match &self.opts.schema {
            Some(schema) => match super::schema::decode(schema, &reply.settled.text) {
                Ok(data) => Some(data),
                Err(why) => {
                    self.record(p, Outcome::Rejected, Some(why)).await?;
                    return Ok(None);
                }
            },
            None => None,
        };
        let mut attempts = self.attempts.clone();
        attempts.push(Attempt {
            outcome: Outcome::Ok,
            ..p.attempt.clone()
        });
        let answer = Answer {
            text: reply.settled.text,
            tier: t.name.clone(),
            provider: t.provider.name(),
            model: p.attempt.model.clone(),
            cost: self.cost,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            attempts,
            data,
            thinking: reply.settled.thinking,
            steps: self.steps.clone(),
            messages,
        };
        let verdict = match self.hooks.accept.as_mut() {
            Some(accept) => accept(&answer).await,
            None => Ok(Verdict::Accept),
        };
        match verdict {
            Ok(Verdict::Accept) => {
                self.record(p, Outcome::Ok, None).await?;
                Ok(Some(answer))
            }
            Ok(Verdict::Reject(why)) => {
                self.record(p, Outcome::Rejected, why).await?;
                Ok(None)
            }
            // The call happened and may have cost money: it is booked before the ask stops.
            Err(e) => {
                self.record(p, Outcome::Error, Some(e.to_string())).await?;
                Err(RouteError::Callback(e.0))
            }
        }
    }

    /// Ends the attempt: lists it, writes its ledger row (settling any reservation) and fires the budget
    /// alert when this row crosses it.
    async fn record(
        &mut self,
        p: Pending,
        outcome: Outcome,
        err: Option<String>,
    ) -> Result<(), RouteError> {
        let Pending {
            mut attempt,
            mut row,
            open,
        } = p;
        (attempt.outcome, attempt.err) = (outcome, err);
        row.outcome = outcome;
        row.err.clone_from(&attempt.err);
        self.attempts.push(attempt);
        self.book(open, row).await
    }

    /// Tells `on_escalate` about the attempt that just gave no accepted answer.
    async fn escalate(&mut self) -> Result<(), RouteError> {
        if let (Some(cb), Some(last)) = (self.hooks.on_escalate.as_mut(), self.attempts.last()) {
            cb(last.clone())
                .await
                .map_err(|e| RouteError::Callback(format!("on_escalate: {e}")))?;
        }
        Ok(())
    }

    /// Writes a model call's ledger row (settling any reservation) and fires the budget alert when this
    /// row crosses it.
    async fn book(&mut self, open: Option<Open>, row: Row) -> Result<(), RouteError> {
        let alert = match open {
            Some(open) => self.router.books.close(&open, row).await?.alert,
            None => {
                self.router.books.skip(row).await?;
                None
            }
        };
        if let Some(alert) = alert
            && let Some(cb) = self.hooks.on_alert.as_mut()
        {
            cb(alert).await.map_err(|e| RouteError::Callback(e.0))?;
        }
        Ok(())
    }
}

/// `step 1 model → read_log, git_log; step 2 model → read_file`.
fn list_steps(steps: &[Step]) -> String {
    let parts: Vec<String> = steps
        .iter()
        .filter(|s| s.kind == "model")
        .map(|s| {
            if s.tool_calls.is_empty() {
                format!("step {} {}", s.step, s.name)
            } else {
                format!("step {} {} → {}", s.step, s.name, s.tool_calls.join(", "))
            }
        })
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::llm::Timeouts;
    use crate::core::state::State;
    use serde_json::json;

    fn router(fleet: serde_json::Value) -> Router {
        let fleet = Fleet::from_deserializer(fleet).unwrap();
        let dir = crate::core::test_tmp().join(format!(
            "baton-route-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Router::new(
            &fleet,
            Ollama::default(),
            OpenAi::new("http://127.0.0.1:9/v1", "K", None, Timeouts::default()),
            Ledger::new(State::new(dir)),
        )
    }

    fn default_fleet() -> serde_json::Value {
        json!({"hosts": {"engine": {"ollama": "http://engine:11434"}}})
    }

    #[test]
    fn picks_follow_the_task_table() {
        let r = router(default_fleet());
        let p = r.pick(&TaskSpec::kind("code_generation")).unwrap();
        assert_eq!(
            (
                p.tier.as_str(),
                p.provider,
                p.host.as_deref(),
                p.model.as_str()
            ),
            ("local", "ollama", Some("engine"), "qwen2.5-coder:32b")
        );
        assert_eq!(p.reason, "task code_generation → tier local");
        assert_eq!(
            r.pick(&TaskSpec::kind("bug_hunting")).unwrap().model,
            "deepseek-r1:32b"
        );
        let p = r.pick(&TaskSpec::kind("architecture")).unwrap();
        assert_eq!(
            (p.tier.as_str(), p.provider, p.host, p.model.as_str()),
            ("premium", "openrouter", None, "anthropic/claude-opus-4.6")
        );
        let p = r.pick(&TaskSpec::kind("haiku")).unwrap();
        assert_eq!(p.tier, "local");
        assert!(p.reason.contains("unknown task kind"), "{}", p.reason);
    }

    #[test]
    fn a_known_kind_without_its_tier_says_what_is_missing() {
        let local_only = |source: Option<&str>| {
            let mut fleet = Fleet::from_deserializer(json!({
                "hosts": {"engine": {"ollama": "http://engine:11434"}},
                "tiers": [{"name": "local", "provider": "ollama", "host": "engine",
                           "models": {"code": "c", "reason": "r"}}]
            }))
            .unwrap();
            fleet.source = source.map(Into::into);
            let dir = crate::core::test_tmp().join(format!("baton-route-{}", fastrand::u64(..)));
            Router::new(
                &fleet,
                Ollama::default(),
                OpenAi::new("http://127.0.0.1:9/v1", "K", None, Timeouts::default()),
                Ledger::new(State::new(dir)),
            )
        };
        let p = local_only(None)
            .pick(&TaskSpec::kind("code_review"))
            .unwrap();
        assert_eq!(p.tier, "local");
        assert_eq!(
            p.reason,
            "task code_review → tier cheap, not configured (no $OPENROUTER_API_KEY): lowest tier that is up"
        );
        let p = local_only(Some("/x/fleet.lua"))
            .pick(&TaskSpec::kind("architecture"))
            .unwrap();
        assert!(
            p.reason.starts_with(
                "task architecture → tier premium, not configured (not among the fleet's tiers)"
            ),
            "{}",
            p.reason
        );
        let p = local_only(None).pick(&TaskSpec::kind("haiku")).unwrap();
        assert!(
            p.reason.starts_with("unknown task kind \"haiku\""),
            "{}",
            p.reason
        );
    }

    #[test]
    fn bounds_and_cooldown_move_the_pick() {
        let r = router(default_fleet());
        let spec = TaskSpec {
            kind: "architecture".into(),
            max_tier: Some("cheap".into()),
            ..Default::default()
        };
        let p = r.pick(&spec).unwrap();
        assert_eq!(
            (p.tier.as_str(), p.model.as_str()),
            ("cheap", "anthropic/claude-sonnet-4.5")
        );
        assert!(p.reason.ends_with("bounded to cheap"), "{}", p.reason);
        let spec = TaskSpec {
            kind: "lint".into(),
            min_tier: Some("cheap".into()),
            ..Default::default()
        };
        assert_eq!(r.pick(&spec).unwrap().tier, "cheap");
        let e = r
            .pick(&TaskSpec {
                kind: "x".into(),
                max_tier: Some("premum".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown tier \"premum\", did you mean premium? (tiers: local, cheap, premium)"
        );
        r.mark_down(&r.tiers[0], "connection refused");
        let p = r.pick(&TaskSpec::kind("lint")).unwrap();
        assert_eq!(p.tier, "cheap");
        assert!(
            p.reason
                .contains("local skipped for 30s more after: connection refused"),
            "{}",
            p.reason
        );
    }

    /// Nothing is sent: `local` is cooling down, and the worst case of either paid tier exceeds the budget.
    #[tokio::test]
    async fn ask_skips_cooling_tiers_and_refuses_over_budget_without_sending() {
        let mut fleet = default_fleet();
        fleet["budget"] = json!({"monthly_usd": 0.05, "alert_at": 0.5});
        let r = router(fleet);
        r.mark_down(&r.tiers[0], "connection refused");
        let e = r
            .ask(
                &TaskSpec::kind("lint"),
                vec![Message::new("user", "x")],
                &AskOptions::default(),
                &mut Hooks::default(),
            )
            .await
            .unwrap_err();
        let RouteError::Exhausted(attempts) = &e else {
            panic!("{e}")
        };
        let seen: Vec<_> = attempts
            .iter()
            .map(|a| (a.tier.as_str(), a.outcome))
            .collect();
        assert_eq!(
            seen,
            [
                ("local", Outcome::Offline),
                ("cheap", Outcome::Budget),
                ("premium", Outcome::Budget)
            ]
        );
        let why = |i: usize| attempts[i].err.as_deref().unwrap_or_default();
        assert!(
            why(0).starts_with("skipped for ") && why(0).ends_with("after: connection refused"),
            "{}",
            why(0)
        );
        assert!(
            why(1).starts_with("worst case $0.06")
                && why(1).contains("does not fit what is left of $0.05 this month"),
            "{}",
            why(1)
        );
        // The three rows are recorded as not sent, so the spend report has no call.
        let spent = spent_by_tier(&r);
        assert!(spent.is_empty(), "{spent:?}");
    }

    /// The ledger's spend, all time, by tier.
    fn spent_by_tier(r: &Router) -> Vec<crate::core::llm::ledger::SpendRow> {
        r.ledger()
            .spend(
                crate::core::llm::ledger::Period::All,
                crate::core::llm::ledger::GroupBy::Tier,
            )
            .unwrap()
    }

    /// A stand-in for Ollama that answers every chat with one NDJSON line: "hi", 3 tokens in, 2 out.
    async fn ollama_stub() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = r#"{"model":"m","message":{"role":"assistant","content":"hi"},"done":true,"prompt_eval_count":3,"eval_count":2}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}\n",
            body.len() + 1
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                // The whole request (headers and body) is read before answering, so closing does not reset it.
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                while !whole_request(&request) {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        url
    }

    fn whole_request(request: &[u8]) -> bool {
        let text = String::from_utf8_lossy(request);
        let Some(end) = text.find("\r\n\r\n") else {
            return false;
        };
        let body_len = text[..end]
            .lines()
            .find_map(|l| {
                let l = l.to_ascii_lowercase();
                l.strip_prefix("content-length:")
                    .map(|n| n.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        request.len() >= end + 4 + body_len
    }

    /// An `accept` that fails stops the ask (no escalation), and the call it judged is still booked.
    #[tokio::test]
    async fn a_failing_accept_stops_the_ask_and_the_call_is_booked() {
        let r = router(json!({
            "hosts": {"engine": {"ollama": ollama_stub().await}},
            "tiers": [
                {"name": "local", "provider": "ollama", "host": "engine", "models": {"code": "m", "reason": "m"},
                 "price": {"input": 1e6, "output": 1e6}},
                {"name": "cheap", "provider": "openrouter", "model": "c"},
                {"name": "premium", "provider": "openrouter", "model": "p"}
            ]
        }));
        let mut seen = Vec::new();
        let mut accept = |a: &Answer| {
            seen.push((a.tier.clone(), a.text.clone(), a.cost));
            Box::pin(async { Err(HookError("accept: boom".into())) }) as LocalFuture<'static, _>
        };
        let mut hooks = Hooks {
            accept: Some(&mut accept),
            ..Hooks::default()
        };
        let e = r
            .ask(
                &TaskSpec::kind("lint"),
                vec![Message::new("user", "x")],
                &AskOptions::default(),
                &mut hooks,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RouteError::Callback(_)), "{e:?}");
        assert_eq!(e.to_string(), "accept: boom");
        assert_eq!(seen, [("local".to_string(), "hi".to_string(), 5.0)]);
        let spent = spent_by_tier(&r);
        let spent: Vec<_> = spent
            .iter()
            .map(|s| (s.key.as_str(), s.calls, s.cost))
            .collect();
        assert_eq!(spent, [("local", 1, 5.0)]);
    }
}

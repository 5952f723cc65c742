//! The `route` global: task → tier → model with escalation, budget and the cost ledger, through
//! `core::llm::route`.

use mlua::{Function, Lua, LuaSerdeExt, Table, Value};
use serde::Deserialize;

use super::{args, llm_args, services};
use crate::core::duration::Dur;
use crate::core::llm::ledger::{Alert, GroupBy, Period};
use crate::core::llm::route::{Answer, AskOptions, Hooks, RouteError, Step, TaskSpec, Verdict};
use crate::core::llm::{HookError, LocalFuture, Message, OnToken, ToolCall, Wait};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("pick", lua.create_function(pick)?)?;
    t.set("ask", lua.create_async_function(ask)?)?;
    t.set("spend", lua.create_async_function(spend)?)?;
    t.set("budget", lua.create_async_function(budget)?)?;
    Ok(t)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskTable {
    kind: String,
    min_tier: Option<String>,
    max_tier: Option<String>,
}

/// `task`: a kind string or `{kind, min_tier?, max_tier?}`.
fn task_spec(lua: &Lua, func: &str, v: Value) -> mlua::Result<TaskSpec> {
    match v {
        Value::String(s) => Ok(TaskSpec::kind(&args::utf8(func, 1, "task", &s)?)),
        Value::Table(_) => {
            let (t, _) = args::opts::<Option<TaskTable>>(lua, func, 1, v, &[])?;
            let t = t.unwrap_or_default();
            Ok(TaskSpec {
                kind: t.kind,
                min_tier: t.min_tier,
                max_tier: t.max_tier,
            })
        }
        other => Err(args::arg_error(
            func,
            1,
            "task",
            "a task kind string or a {kind = …} table",
            &other,
        )),
    }
}

fn route_error(func: &str, spec: &TaskSpec, e: RouteError) -> mlua::Error {
    args::fail(format!("{}: {e}", args::call_name(func, &spec.kind)))
}

/// `route.pick(task)` → `{task, tier, provider, host, model, reason}`, without calling anything.
fn pick(lua: &Lua, task: Value) -> mlua::Result<Table> {
    const F: &str = "route.pick";
    let spec = task_spec(lua, F, task)?;
    let llm = services::llm(lua);
    let p = llm
        .router()
        .pick(&spec)
        .map_err(|e| route_error(F, &spec, e))?;
    let t = lua.create_table_with_capacity(0, 6)?;
    t.raw_set("task", p.task)?;
    t.raw_set("tier", p.tier)?;
    t.raw_set("provider", p.provider)?;
    t.raw_set("host", p.host)?;
    t.raw_set("model", p.model)?;
    t.raw_set("reason", p.reason)?;
    Ok(t)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskOpts {
    system: Option<String>,
    max_tier: Option<String>,
    max_tokens: Option<u32>,
    timeout: Option<Dur>,
    deadline: Option<Dur>,
    max_steps: Option<u32>,
    tool_timeout: Option<Dur>,
    think: Option<serde_json::Value>,
    reasoning: Option<serde_json::Value>,
    content_tool_calls: Option<bool>,
    // Taken apart before decoding (functions, or tables holding functions); named here so that the
    // unknown-key hint lists every key.
    #[allow(dead_code)]
    tools: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    schema: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    accept: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    on_token: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    on_thinking: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    on_step: Option<serde::de::IgnoredAny>,
}

/// `route.ask(task, prompt_or_messages [, {system, accept, max_tier, max_tokens, on_token, tools, max_steps,
/// tool_timeout, on_step, schema, think, reasoning, on_thinking, content_tool_calls, timeout, deadline}])` →
/// `{text, tier, provider, model, cost, tokens_in, tokens_out, attempts, steps, messages, data?, thinking?}`.
async fn ask(lua: Lua, (task, prompt, opts): (Value, Value, Value)) -> mlua::Result<Value> {
    const F: &str = "route.ask";
    let spec = task_spec(&lua, F, task)?;
    let messages = match &prompt {
        Value::String(s) => vec![Message::new("user", args::utf8(F, 2, "prompt", s)?)],
        Value::Table(_) => lua.from_value::<Vec<Message>>(prompt.clone()).map_err(|e| {
            args::fail(format!("{F}: argument 2 (prompt) must be a string or a list of {{role, content}} messages: {e}"))
        })?,
        other => return Err(args::arg_error(F, 2, "prompt", "a string or a list of messages", other)),
    };
    let (opts, tools) = args::split_off(&lua, opts, "tools")?;
    let (opts, schema) = args::split_off(&lua, opts, "schema")?;
    let tools = llm_args::tools(&lua, F, "tools", tools)?;
    if let Some(t) = tools
        .specs
        .iter()
        .find(|t| !tools.run.contains_key(&t.name))
    {
        return Err(args::fail(format!(
            "{F}: options.tools.{}.run must be a function (route.ask runs the tools it offers)",
            t.name
        )));
    }
    let schema = match schema {
        Value::Nil => None,
        v => Some(llm_args::answer_schema(&lua, F, v)?),
    };
    let (o, mut cbs) = args::opts::<AskOpts>(
        &lua,
        F,
        3,
        opts,
        &["accept", "on_token", "on_thinking", "on_step"],
    )?;
    let script = Some(crate::lua::ctx(&lua).script.clone());
    let options = AskOptions {
        system: o.system,
        max_tier: o.max_tier,
        max_tokens: o.max_tokens,
        script,
        wait: Wait::new(o.timeout.map(|d| d.0), o.deadline.map(|d| d.0)),
        tools: tools.specs,
        max_steps: o.max_steps,
        tool_timeout: o.tool_timeout.map(|d| d.0),
        schema,
        think: o.think,
        reasoning: o.reasoning,
        content_tool_calls: o.content_tool_calls,
    };
    let mut on_token = cbs.take("on_token").map(llm_args::hook::<String>);
    let mut on_thinking = cbs.take("on_thinking").map(llm_args::hook::<String>);
    let mut accept = cbs.take("accept").map(|f| accepter(&lua, f));
    let mut on_step = cbs.take("on_step").map(|f| stepper(&lua, f));
    let tool_limit = options
        .tool_timeout
        .unwrap_or(crate::core::llm::route::DEFAULT_TOOL_TIMEOUT);
    let mut run_tool = runner(&lua, tools.run, tool_limit);
    let mut on_alert = alerter(&lua);
    let mut hooks = Hooks {
        on_token: on_token.as_mut().map(|f| f as OnToken<'_>),
        accept: accept.as_mut().map(|f| f as _),
        on_alert: Some(&mut on_alert),
        run_tool: Some(&mut run_tool),
        on_step: on_step.as_mut().map(|f| f as _),
        on_thinking: on_thinking.as_mut().map(|f| f as OnToken<'_>),
        on_escalate: None,
    };
    let llm = services::llm(&lua);
    let answer = llm
        .router()
        .ask(&spec, messages, &options, &mut hooks)
        .await
        .map_err(|e| route_error(F, &spec, e))?;
    args::to_lua(&lua, &answer)
}

/// `accept(result)` → `true` accepts; `false`/`nil` or a reason string rejects.
fn accepter(
    lua: &Lua,
    f: Function,
) -> impl FnMut(&Answer) -> LocalFuture<'static, Result<Verdict, HookError>> {
    let lua = lua.clone();
    move |answer: &Answer| {
        let table = args::to_lua(&lua, answer);
        let f = f.clone();
        Box::pin(async move {
            let table = table.map_err(|e| HookError(e.to_string()))?;
            let verdict = f
                .call_async::<Value>(table)
                .await
                .map_err(|e| HookError(format!("accept: {}", crate::lua::split_error(&e).0)))?;
            match verdict {
                Value::Boolean(true) => Ok(Verdict::Accept),
                Value::Boolean(false) | Value::Nil => Ok(Verdict::Reject(None)),
                Value::String(s) => Ok(Verdict::Reject(Some(s.to_string_lossy()))),
                other => Err(HookError(format!(
                    "accept must return true, false or a reason string, got {}",
                    args::type_name(&other)
                ))),
            }
        })
    }
}

/// Runs a tool's `run(args)` as its own coroutine; a string result is sent as is, a table as JSON, `nil`
/// as an empty string. An error is the tool's result (`error: …`), for the model to recover from.
///
/// The tool's Lua runs under `limit` (`tool_timeout`) in the instruction hook too: a tool that never waits
/// (a loop, a `table.sort` comparator that spins) raises `timed out after …` when the time is up, where the
/// tool loop's own timer never gets a turn.
fn runner(
    lua: &Lua,
    run: std::collections::HashMap<String, Function>,
    limit: std::time::Duration,
) -> impl FnMut(ToolCall) -> LocalFuture<'static, Result<String, HookError>> {
    let lua = lua.clone();
    move |call: ToolCall| {
        let f = run.get(&call.name).cloned();
        let arguments = args::to_lua(&lua, &call.arguments);
        let lua = lua.clone();
        Box::pin(async move {
            let f =
                f.ok_or_else(|| HookError(format!("tool {:?} has no run function", call.name)))?;
            let arguments = arguments.map_err(|e| HookError(e.to_string()))?;
            let work = f.call_async::<Value>(arguments);
            let out = match std::time::Instant::now().checked_add(limit) {
                Some(deadline) => {
                    let msg = format!("timed out after {}", crate::core::duration::format(limit));
                    crate::lua::runtime::with_deadline(&lua, deadline, msg, work).await
                }
                None => work.await,
            }
            .map_err(|e| HookError(crate::lua::split_error(&e).0))?;
            match out {
                Value::Nil => Ok(String::new()),
                Value::String(s) => Ok(s.to_string_lossy()),
                Value::Table(_) => lua
                    .from_value::<serde_json::Value>(out)
                    .map(|j| j.to_string())
                    .map_err(|e| HookError(format!("the result cannot be sent as JSON: {e}"))),
                Value::Integer(i) => Ok(i.to_string()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Boolean(b) => Ok(b.to_string()),
                other => Err(HookError(format!(
                    "run must return a string or a table, got {}",
                    args::type_name(&other)
                ))),
            }
        })
    }
}

/// `on_step(step)` with each model call and tool call as it ends.
fn stepper(
    lua: &Lua,
    f: Function,
) -> impl FnMut(Step) -> LocalFuture<'static, Result<(), HookError>> {
    let lua = lua.clone();
    move |step: Step| {
        let table = args::to_lua(&lua, &step);
        let f = f.clone();
        Box::pin(async move {
            let table = table.map_err(|e| HookError(e.to_string()))?;
            f.call_async::<()>(table)
                .await
                .map_err(|e| HookError(crate::lua::split_error(&e).0))
        })
    }
}

/// Calls `route.on_alert(spent, limit)` if the script set it.
fn alerter(lua: &Lua) -> impl FnMut(Alert) -> LocalFuture<'static, Result<(), HookError>> {
    let lua = lua.clone();
    move |alert: Alert| {
        let f = lua
            .globals()
            .get::<Table>("route")
            .and_then(|t| t.get::<Option<Function>>("on_alert"));
        Box::pin(async move {
            match f {
                Ok(Some(f)) => f
                    .call_async::<()>((alert.spent, alert.limit))
                    .await
                    .map_err(|e| {
                        HookError(format!("route.on_alert: {}", crate::lua::split_error(&e).0))
                    }),
                _ => Ok(()),
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendOpts {
    #[serde(default = "month")]
    period: String,
    #[serde(default = "tier")]
    by: String,
}

fn month() -> String {
    "month".into()
}

fn tier() -> String {
    "tier".into()
}

impl Default for SpendOpts {
    fn default() -> Self {
        SpendOpts {
            period: month(),
            by: tier(),
        }
    }
}

/// `route.spend{period = "day"|"month"|"all", by = "tier"|"model"|"task"}` → rows
/// `{key, calls, tokens_in, tokens_out, cost}`, costliest first.
async fn spend(lua: Lua, opts: Value) -> mlua::Result<Value> {
    const F: &str = "route.spend";
    let (o, _) = args::opts::<SpendOpts>(&lua, F, 1, opts, &[])?;
    let period = Period::parse(&o.period).ok_or_else(|| {
        args::fail(format!(
            "{F}: options.period must be \"day\", \"month\" or \"all\", got {:?}",
            o.period
        ))
    })?;
    let by = GroupBy::parse(&o.by).ok_or_else(|| {
        args::fail(format!(
            "{F}: options.by must be \"tier\", \"model\", \"task\" or \"script\", got {:?}",
            o.by
        ))
    })?;
    let llm = services::llm(&lua);
    let ledger = llm.router().ledger().clone();
    let rows = tokio::task::spawn_blocking(move || ledger.spend(period, by))
        .await
        .map_err(|e| args::fail(format!("{F}: {e}")))?
        .map_err(|e| args::fail(format!("{F}: {e}")))?;
    args::to_lua(&lua, &rows)
}

/// `route.budget()` → `{month, spent, ledger = {spent, held, interrupted}, provider?, budget?, alert_line?}`:
/// this month against the budget, from the ledger and the provider.
async fn budget(lua: Lua, (): ()) -> mlua::Result<Value> {
    let llm = services::llm(&lua);
    let mut r = llm
        .budget()
        .report(Period::Month, GroupBy::Tier)
        .await
        .map_err(|e| args::fail(format!("route.budget: {e}")))?;
    (r.rows, r.days) = (Vec::new(), Vec::new());
    let v = args::to_lua(&lua, &r)?;
    if let Value::Table(t) = &v {
        for k in ["rows", "days", "period", "by"] {
            t.raw_set(k, Value::Nil)?;
        }
    }
    Ok(v)
}

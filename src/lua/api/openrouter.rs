//! The `openrouter` global: OpenAI-compatible chat completions, models and credits through
//! `core::llm::openai`.

use mlua::{Lua, Table, Value};
use serde::Deserialize;

use super::{args, llm_args, services};
use crate::core::duration::Dur;
use crate::core::llm::openai::ChatRequest;
use crate::core::llm::{Message, OnToken, Wait};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("chat", lua.create_async_function(chat)?)?;
    t.set("models", lua.create_async_function(models)?)?;
    t.set("credits", lua.create_async_function(credits)?)?;
    Ok(t)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatArgs {
    model: String,
    messages: Vec<Message>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    models: Option<Vec<String>>,
    provider: Option<serde_json::Value>,
    timeout: Option<Dur>,
    deadline: Option<Dur>,
    #[serde(default = "args::yes")]
    check: bool,
    tool_choice: Option<serde_json::Value>,
    parallel_tool_calls: Option<bool>,
    reasoning: Option<serde_json::Value>,
    content_tool_calls: Option<bool>,
    // Taken apart before decoding; named here so the unknown-key hint lists them.
    #[allow(dead_code)]
    tools: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    schema: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    on_token: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    on_thinking: Option<serde::de::IgnoredAny>,
}

/// `openrouter.chat{model, messages, max_tokens?, temperature?, on_token?, on_thinking?, models?, provider?,
/// tools?, tool_choice?, parallel_tool_calls?, schema?, reasoning?, content_tool_calls?, timeout?, deadline?,
/// check?}`
/// → `{text, model, id, tokens_in, tokens_out, cost, cost_source, duration, finish_reason, tool_calls,
/// message, thinking?, data?}`. Tools are reported, never run.
async fn chat(lua: Lua, req: Value) -> mlua::Result<Value> {
    const F: &str = "openrouter.chat";
    args::table(F, 1, "request", &req)?;
    let (req, tools) = args::split_off(&lua, req, "tools")?;
    let (req, schema) = args::split_off(&lua, req, "schema")?;
    let tools = llm_args::tools(&lua, F, "tools", tools)?;
    let (a, mut cbs) =
        args::opts::<Option<ChatArgs>>(&lua, F, 1, req, &["on_token", "on_thinking"])?;
    let a = a.ok_or_else(|| args::fail(format!("{F}: argument 1 (request) must be a table")))?;
    let llm = services::llm(&lua);
    let mut r = ChatRequest {
        model: a.model,
        messages: a.messages,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        models: a.models,
        provider: a.provider,
        tool_choice: a.tool_choice,
        parallel_tool_calls: a.parallel_tool_calls,
        reasoning: a.reasoning,
        ..Default::default()
    };
    r.shape.content_tool_calls = a.content_tool_calls;
    r.shape.offer(tools.specs);
    if !schema.is_nil() {
        r.require(llm_args::answer_schema(&lua, F, schema)?);
    }
    let mut on_token = cbs.take("on_token").map(llm_args::hook::<String>);
    let mut on_thinking = cbs.take("on_thinking").map(llm_args::hook::<String>);
    // Booked like `route.ask`: a ledger row, the worst case reserved against the budget first.
    let script = Some(crate::lua::ctx(&lua).script.clone());
    let out = llm
        .openrouter_chat(
            &r,
            Wait::new(a.timeout.map(|d| d.0), a.deadline.map(|d| d.0)),
            on_token.as_mut().map(|f| f as OnToken<'_>),
            on_thinking.as_mut().map(|f| f as OnToken<'_>),
            script,
        )
        .await;
    llm_args::checked(&lua, F, a.check, out)
}

/// `openrouter.models()` → the list of models with pricing.
async fn models(lua: Lua, (): ()) -> mlua::Result<Value> {
    let llm = services::llm(&lua);
    let list = llm
        .openai()
        .models()
        .await
        .map_err(|e| args::fail(e.raised_by("openrouter.models")))?;
    args::to_lua(&lua, &list)
}

/// `openrouter.credits()` → `{limit, usage, remaining}` (USD; `limit`/`remaining` nil when unlimited).
async fn credits(lua: Lua, (): ()) -> mlua::Result<Table> {
    let llm = services::llm(&lua);
    let c = llm
        .openai()
        .credits()
        .await
        .map_err(|e| args::fail(e.raised_by("openrouter.credits")))?;
    let t = lua.create_table()?;
    t.set("limit", c.limit)?;
    t.set("usage", c.usage)?;
    t.set("remaining", c.remaining)?;
    Ok(t)
}

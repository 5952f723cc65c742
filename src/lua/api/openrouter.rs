//! The `openrouter` global: OpenAI-compatible chat completions, models and credits through
//! `core::llm::openai`.

use mlua::{Lua, Table, Value};
use serde::Deserialize;

use super::{args, services};
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
}

/// `openrouter.chat{model, messages, max_tokens?, temperature?, on_token?, models?, provider?, timeout?,
/// deadline?, check?}` → `{text, model, id, tokens_in, tokens_out, cost, cost_source, duration}`.
async fn chat(lua: Lua, req: Value) -> mlua::Result<Value> {
    const F: &str = "openrouter.chat";
    args::table(F, 1, "request", &req)?;
    let (a, mut cbs) = args::opts::<Option<ChatArgs>>(&lua, F, 1, req, &["on_token"])?;
    let a = a.ok_or_else(|| args::fail(format!("{F}: argument 1 (request) must be a table")))?;
    let llm = services::llm(&lua);
    let r = ChatRequest {
        model: a.model,
        messages: a.messages,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        models: a.models,
        provider: a.provider,
    };
    let mut on_token = cbs.take("on_token").map(args::hook::<String>);
    let cb = on_token.as_mut().map(|f| f as OnToken<'_>);
    // Booked like `route.ask`: a ledger row, the worst case reserved against the budget first.
    let script = Some(crate::lua::ctx(&lua).script.clone());
    let out = llm
        .openrouter_chat(
            &r,
            Wait::new(a.timeout.map(|d| d.0), a.deadline.map(|d| d.0)),
            cb,
            script,
        )
        .await;
    args::checked(&lua, F, a.check, out)
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

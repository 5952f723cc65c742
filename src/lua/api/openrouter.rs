//! The `openrouter` global: OpenAI-compatible chat completions, models and credits through
//! `core::llm::openai`.

use mlua::{Function, Lua, LuaSerdeExt, Table, Value};
use serde::Deserialize;

use super::conv;
use crate::core::duration::Dur;
use crate::core::llm::openai::{ChatRequest, Completion};
use crate::core::llm::{Message, OnToken};

pub fn register(lua: &Lua) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set("chat", lua.create_async_function(chat)?)?;
    t.set("models", lua.create_async_function(models)?)?;
    t.set("credits", lua.create_async_function(credits)?)?;
    lua.globals().set("openrouter", t)
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
    #[serde(default = "conv::yes")]
    check: bool,
}

/// `openrouter.chat{model, messages, max_tokens?, temperature?, on_token?, models?, provider?, timeout?,
/// check?}` → `{text, model, id, tokens_in, tokens_out, cost, cost_source, duration}`.
async fn chat(lua: Lua, req: Value) -> mlua::Result<Value> {
    const F: &str = "openrouter.chat";
    let t = conv::table(F, 1, "request", &req)?;
    // The common request decodes straight from the table; anything unusual (an unknown key, a wrong type)
    // goes through serde, which words the error.
    let (a, on_token) = match fast_args(&lua, &t) {
        Some(decoded) => decoded,
        None => {
            let (a, mut cbs) = conv::opts::<Option<ChatArgs>>(&lua, F, 1, req, &["on_token"])?;
            let a =
                a.ok_or_else(|| conv::fail(format!("{F}: argument 1 (request) must be a table")))?;
            (a, cbs.take("on_token"))
        }
    };
    let llm = conv::llm(&lua);
    let price = llm.price_of(&a.model);
    let r = ChatRequest {
        model: a.model,
        messages: a.messages,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        models: a.models,
        provider: a.provider,
    };
    let mut on_token = on_token.map(conv::hook::<String>);
    let cb = on_token.as_mut().map(|f| f as OnToken<'_>);
    let out = match llm
        .openai()
        .chat(&r, price, a.timeout.map(|d| d.0), cb)
        .await
    {
        Ok(c) => Ok(Value::Table(completion(&lua, &c)?)),
        Err(e) => Err(e.raised_by(F)),
    };
    conv::checked(&lua, a.check, out)
}

/// The request table decoded without serde, or `None` when it holds anything the serde path should judge.
fn fast_args(lua: &Lua, t: &Table) -> Option<(ChatArgs, Option<Function>)> {
    let mut a = ChatArgs {
        model: String::new(),
        messages: Vec::new(),
        max_tokens: None,
        temperature: None,
        models: None,
        provider: None,
        timeout: None,
        check: true,
    };
    let (mut model, mut messages, mut on_token) = (false, false, None);
    let ok = conv::fields(t, |key, v| {
        match (key, v) {
            (b"model", Value::String(s)) => {
                a.model = s.to_str().ok()?.to_string();
                model = true;
            }
            (b"messages", Value::Table(list)) => {
                a.messages = conv::messages(&list)?;
                messages = true;
            }
            (b"max_tokens", v) => a.max_tokens = Some(u32::try_from(conv::integer(&v)?).ok()?),
            (b"temperature", Value::Integer(i)) => a.temperature = Some(i as f64),
            (b"temperature", Value::Number(n)) => a.temperature = Some(n),
            (b"models", Value::Table(list)) => a.models = Some(conv::strings(&list)?),
            (b"provider", v @ Value::Table(_)) => a.provider = Some(lua.from_value(v).ok()?),
            (b"timeout", v) => a.timeout = Some(Dur(conv::duration_arg("", 0, "", &v).ok()?)),
            (b"check", Value::Boolean(b)) => a.check = b,
            (b"on_token", Value::Function(f)) => on_token = Some(f),
            _ => return None,
        }
        Some(())
    });
    (ok && model && messages).then_some((a, on_token))
}

/// The result table: `{text, model, id, tokens_in, tokens_out, cost, cost_source, duration}`.
fn completion(lua: &Lua, c: &Completion) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 9)?;
    t.raw_set("text", c.text.as_str())?;
    t.raw_set("model", c.model.as_str())?;
    t.raw_set("id", c.id.as_str())?;
    t.raw_set("tokens_in", c.tokens_in)?;
    t.raw_set("tokens_out", c.tokens_out)?;
    t.raw_set("cost", c.cost)?;
    t.raw_set("cost_source", c.cost_source.name())?;
    t.raw_set("duration", c.duration)?;
    Ok(t)
}

/// `openrouter.models()` → the list of models with pricing.
async fn models(lua: Lua, (): ()) -> mlua::Result<Value> {
    let llm = conv::llm(&lua);
    let list = llm
        .openai()
        .models()
        .await
        .map_err(|e| conv::fail(e.raised_by("openrouter.models")))?;
    conv::to_lua(&lua, &list)
}

/// `openrouter.credits()` → `{limit, usage, remaining}` (USD; `limit`/`remaining` nil when unlimited).
async fn credits(lua: Lua, (): ()) -> mlua::Result<Table> {
    let llm = conv::llm(&lua);
    let c = llm
        .openai()
        .credits()
        .await
        .map_err(|e| conv::fail(e.raised_by("openrouter.credits")))?;
    let t = lua.create_table()?;
    t.set("limit", c.limit)?;
    t.set("usage", c.usage)?;
    t.set("remaining", c.remaining)?;
    Ok(t)
}

//! The `openrouter` global: OpenAI-compatible chat completions, models and credits through
//! `core::llm::openai`.

use mlua::{Lua, Table, Value};
use serde::Deserialize;

use super::conv;
use super::fast::{self, Item, Out};
use crate::core::duration::{self, Dur};
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
        Some(decoded) => (decoded, None),
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

/// The request table decoded straight off the Lua stack, or `None` when it holds anything the serde path
/// should judge (`on_token` and `provider` included: they need handles or serde anyway).
fn fast_args(lua: &Lua, t: &Table) -> Option<ChatArgs> {
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
    let (mut model, mut messages) = (false, false);
    let ok = fast::walk(lua, t, |state| {
        // SAFETY: `walk` hands over a state with the request table at the top and room for the walk.
        unsafe {
            fast::fields(state, |key| {
                let v = fast::item(state, -1);
                let got = match key {
                    b"model" => v.string().map(|m| a.model = m),
                    b"messages" if matches!(v, Item::Table) => {
                        fast::messages(state).map(|m| a.messages = m)
                    }
                    b"max_tokens" => v
                        .integer()
                        .and_then(|i| u32::try_from(i).ok())
                        .map(|n| a.max_tokens = Some(n)),
                    b"temperature" => v.number().map(|n| a.temperature = Some(n)),
                    b"models" if matches!(v, Item::Table) => {
                        fast::strings(state).map(|m| a.models = Some(m))
                    }
                    b"timeout" => match v {
                        Item::Str(s) => std::str::from_utf8(s)
                            .ok()
                            .and_then(|s| duration::parse(s).ok()),
                        other => other.number().and_then(|n| duration::from_secs(n).ok()),
                    }
                    .map(|d| a.timeout = Some(Dur(d))),
                    b"check" => match v {
                        Item::Bool(b) => {
                            a.check = b;
                            Some(())
                        }
                        _ => None,
                    },
                    _ => None,
                };
                model |= key == b"model";
                messages |= key == b"messages";
                got.is_some()
            })
        }
    });
    (ok && model && messages).then_some(a)
}

/// The result table: `{text, model, id, tokens_in, tokens_out, cost, cost_source, duration}`.
fn completion(lua: &Lua, c: &Completion) -> mlua::Result<Table> {
    fast::record(
        lua,
        &[
            (c"text", Out::Str(&c.text)),
            (c"model", Out::Str(&c.model)),
            (c"id", Out::Str(&c.id)),
            (c"tokens_in", Out::Int(c.tokens_in as i64)),
            (c"tokens_out", Out::Int(c.tokens_out as i64)),
            (c"cost", Out::Num(c.cost)),
            (c"cost_source", Out::Str(c.cost_source.name())),
            (c"duration", Out::Num(c.duration)),
        ],
    )
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

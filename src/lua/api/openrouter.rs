//! The `openrouter` global: OpenAI-compatible chat completions, models and credits through
//! `core::llm::openai`.

use std::ffi::CStr;

use mlua::{Lua, Table, Value, ffi};
use serde::Deserialize;

use super::conv;
use super::fast::{self, Arg, FromTable, Item, Out, Ret, ToRecord};
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
async fn chat(lua: Lua, req: Arg<ChatArgs>) -> mlua::Result<Ret<Chat>> {
    const F: &str = "openrouter.chat";
    // The common request is read straight off the stack; anything unusual (an unknown key, a wrong type,
    // `on_token` or `provider`) goes through serde, which words the error.
    let (a, on_token) = match req {
        Arg::Read(a) => (a, None),
        Arg::Value(req) => {
            conv::table(F, 1, "request", &req)?;
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
    match llm
        .openai()
        .chat(&r, price, a.timeout.map(|d| d.0), cb)
        .await
    {
        Ok(c) => Ok(Ret::Record(Chat { c, ok: !a.check })),
        Err(e) => conv::checked(&lua, a.check, Err(e.raised_by(F))).map(Ret::Value),
    }
}

impl FromTable for ChatArgs {
    /// The request without `on_token` and `provider` (they need handles or serde anyway).
    unsafe fn read(state: *mut ffi::lua_State) -> Option<ChatArgs> {
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
        // SAFETY: the caller's contract is `fields`'s.
        let ok = unsafe {
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
        };
        (ok && model && messages).then_some(a)
    }
}

/// The result table: `{text, model, id, tokens_in, tokens_out, cost, cost_source, duration}`, and
/// `ok = true` when the call was made with `check = false`.
struct Chat {
    c: Completion,
    ok: bool,
}

impl ToRecord for Chat {
    fn count(&self) -> usize {
        8 + self.ok as usize
    }

    fn fields(&self, put: &mut dyn FnMut(&CStr, Out<'_>)) {
        let c = &self.c;
        put(c"text", Out::Str(&c.text));
        put(c"model", Out::Str(&c.model));
        put(c"id", Out::Str(&c.id));
        put(c"tokens_in", Out::Int(c.tokens_in as i64));
        put(c"tokens_out", Out::Int(c.tokens_out as i64));
        put(c"cost", Out::Num(c.cost));
        put(c"cost_source", Out::Str(c.cost_source.name()));
        put(c"duration", Out::Num(c.duration));
        if self.ok {
            put(c"ok", Out::Bool(true));
        }
    }
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

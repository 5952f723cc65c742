//! The `ollama` global: Ollama's native API through `core::llm::ollama`.

use mlua::{Lua, Table, Value};
use serde::Deserialize;

use super::{args, llm_args, services};
use crate::core::duration::Dur;
use crate::core::llm::ollama::{self, ChatRequest, Endpoint, GenerateRequest, Ollama, Progress};
use crate::core::llm::{Callback, HookError, LlmError, LocalFuture, Message, OnToken, Wait};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("chat", lua.create_async_function(chat)?)?;
    t.set("generate", lua.create_async_function(generate)?)?;
    t.set("embed", lua.create_async_function(embed)?)?;
    t.set(
        "models",
        lua.create_async_function(|lua, o| list(lua, o, "ollama.models", "/api/tags"))?,
    )?;
    t.set(
        "loaded",
        lua.create_async_function(|lua, o| list(lua, o, "ollama.loaded", "/api/ps"))?,
    )?;
    t.set("show", lua.create_async_function(show)?)?;
    t.set("version", lua.create_async_function(version)?)?;
    t.set("online", lua.create_async_function(online)?)?;
    t.set("pull", lua.create_async_function(pull)?)?;
    t.set("queue", lua.create_function(queue)?)?;
    Ok(t)
}

/// The client and the endpoint `host` names (fleet host, URL, or the default).
fn target(lua: &Lua, func: &str, host: Option<&str>) -> mlua::Result<(Ollama, Endpoint)> {
    let llm = services::llm(lua);
    let ep = ollama::resolve(llm.fleet(), host).map_err(|e| fail(func, e))?;
    Ok((llm.ollama().clone(), ep))
}

/// `ollama.chat(engine, qwen2.5-coder:32b): connection refused`.
fn fail(func: &str, e: LlmError) -> mlua::Error {
    args::fail(e.raised_by(func))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatArgs {
    model: String,
    messages: Vec<Message>,
    host: Option<String>,
    format: Option<serde_json::Value>,
    options: Option<serde_json::Value>,
    keep_alive: Option<serde_json::Value>,
    timeout: Option<Dur>,
    deadline: Option<Dur>,
    #[serde(default = "args::yes")]
    check: bool,
    think: Option<serde_json::Value>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateArgs {
    model: String,
    prompt: String,
    system: Option<String>,
    host: Option<String>,
    options: Option<serde_json::Value>,
    keep_alive: Option<serde_json::Value>,
    timeout: Option<Dur>,
    deadline: Option<Dur>,
    #[serde(default = "args::yes")]
    check: bool,
}

/// Decodes a required request table (arg 1) into `T`, taking `fn_keys` out as callbacks.
fn request<T: serde::de::DeserializeOwned>(
    lua: &Lua,
    func: &str,
    v: Value,
    fn_keys: &[&'static str],
) -> mlua::Result<(T, args::Callbacks)> {
    args::table(func, 1, "request", &v)?;
    let (parsed, cbs) = args::opts::<Option<T>>(lua, func, 1, v, fn_keys)?;
    let parsed = parsed
        .ok_or_else(|| args::fail(format!("{func}: argument 1 (request) must be a table")))?;
    Ok((parsed, cbs))
}

/// What chat and generate have in common besides the request itself.
struct Common {
    host: Option<String>,
    timeout: Option<Dur>,
    deadline: Option<Dur>,
    check: bool,
}

impl Common {
    fn wait(&self) -> Wait {
        Wait::new(self.timeout.map(|d| d.0), self.deadline.map(|d| d.0))
    }
}

impl ChatArgs {
    fn into_request(self) -> (Common, ChatRequest) {
        let common = Common {
            host: self.host,
            timeout: self.timeout,
            deadline: self.deadline,
            check: self.check,
        };
        let mut r = ChatRequest {
            model: self.model,
            messages: self.messages,
            format: self.format,
            options: self.options,
            keep_alive: self.keep_alive,
            think: self.think,
            ..Default::default()
        };
        r.shape.content_tool_calls = self.content_tool_calls;
        (common, r)
    }
}

/// `ollama.generate{model, prompt, system?, host?, options?, keep_alive?, on_token?, timeout?, deadline?,
/// check?}`.
async fn generate(lua: Lua, req: Value) -> mlua::Result<Value> {
    const F: &str = "ollama.generate";
    let (a, mut cbs) = request::<GenerateArgs>(&lua, F, req, &["on_token"])?;
    let common = Common {
        host: a.host,
        timeout: a.timeout,
        deadline: a.deadline,
        check: a.check,
    };
    let r = GenerateRequest {
        model: a.model,
        prompt: a.prompt,
        system: a.system,
        options: a.options,
        keep_alive: a.keep_alive,
    };
    let (_, ep) = target(&lua, F, common.host.as_deref())?;
    let mut on_token = cbs.take("on_token").map(llm_args::hook::<String>);
    // Each call is a ledger row (booked through the same budget as `route.ask`).
    let script = Some(crate::lua::ctx(&lua).script.clone());
    let out = services::llm(&lua)
        .ollama_generate(
            &ep,
            &r,
            common.wait(),
            on_token.as_mut().map(|f| f as OnToken<'_>),
            script,
        )
        .await;
    llm_args::checked(&lua, F, common.check, out)
}

/// `ollama.chat{model, messages, host?, tools?, schema?, think?, format?, options?, keep_alive?, on_token?,
/// on_thinking?, content_tool_calls?, timeout?, deadline?, check?}` → `{text, thinking?, tool_calls, message,
/// finish_reason, data?, …}`. Tools are reported, never run.
async fn chat(lua: Lua, req: Value) -> mlua::Result<Value> {
    const F: &str = "ollama.chat";
    let (req, tools) = args::split_off(&lua, req, "tools")?;
    let (req, schema) = args::split_off(&lua, req, "schema")?;
    let tools = llm_args::tools(&lua, F, "tools", tools)?;
    let (a, mut cbs) = request::<ChatArgs>(&lua, F, req, &["on_token", "on_thinking"])?;
    let (common, mut r) = a.into_request();
    r.shape.offer(tools.specs);
    if !schema.is_nil() {
        r.require(llm_args::answer_schema(&lua, F, schema)?);
    }
    let (_, ep) = target(&lua, F, common.host.as_deref())?;
    let mut on_token = cbs.take("on_token").map(llm_args::hook::<String>);
    let mut on_thinking = cbs.take("on_thinking").map(llm_args::hook::<String>);
    // A ledger row like every call (booked through the same budget as `route.ask`).
    let script = Some(crate::lua::ctx(&lua).script.clone());
    let out = services::llm(&lua)
        .ollama_chat(
            &ep,
            &r,
            common.wait(),
            on_token.as_mut().map(|f| f as OnToken<'_>),
            on_thinking.as_mut().map(|f| f as OnToken<'_>),
            script,
        )
        .await;
    llm_args::checked(&lua, F, common.check, out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedArgs {
    model: String,
    input: serde_json::Value,
    host: Option<String>,
}

/// `ollama.embed{model, input, host?}` → `{model, embeddings}`.
async fn embed(lua: Lua, req: Value) -> mlua::Result<Table> {
    const F: &str = "ollama.embed";
    let (a, _) = request::<EmbedArgs>(&lua, F, req, &[])?;
    if !(a.input.is_string()
        || a.input
            .as_array()
            .is_some_and(|v| v.iter().all(serde_json::Value::is_string)))
    {
        return Err(args::fail(format!(
            "{F}: request.input must be a string or a list of strings"
        )));
    }
    let (client, ep) = target(&lua, F, a.host.as_deref())?;
    let doc = client
        .embed(&ep, &a.model, &a.input)
        .await
        .map_err(|e| fail(F, e))?;
    let t = lua.create_table()?;
    t.set(
        "model",
        doc.get("model")
            .and_then(|m| m.as_str())
            .unwrap_or(&a.model),
    )?;
    t.set(
        "embeddings",
        args::to_lua(
            &lua,
            doc.get("embeddings").unwrap_or(&serde_json::Value::Null),
        )?,
    )?;
    Ok(t)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostOpts {
    host: Option<String>,
}

/// `ollama.models{host?}` (/api/tags) and `ollama.loaded{host?}` (/api/ps) → list of model tables.
async fn list(
    lua: Lua,
    opts: Value,
    func: &'static str,
    path: &'static str,
) -> mlua::Result<Value> {
    let (o, _) = args::opts::<HostOpts>(&lua, func, 1, opts, &[])?;
    let (client, ep) = target(&lua, func, o.host.as_deref())?;
    let models = client.list(&ep, path).await.map_err(|e| fail(func, e))?;
    args::to_lua(&lua, &models)
}

/// `ollama.show(model, {host?})` → the server's description of the model.
async fn show(lua: Lua, (model, opts): (Value, Value)) -> mlua::Result<Value> {
    const F: &str = "ollama.show";
    let model = args::string(F, 1, "model", &model)?;
    let (o, _) = args::opts::<HostOpts>(&lua, F, 2, opts, &[])?;
    let (client, ep) = target(&lua, F, o.host.as_deref())?;
    let doc = client.show(&ep, &model).await.map_err(|e| fail(F, e))?;
    args::to_lua(&lua, &doc)
}

/// `ollama.version{host?}` → version string.
async fn version(lua: Lua, opts: Value) -> mlua::Result<String> {
    const F: &str = "ollama.version";
    let (o, _) = args::opts::<HostOpts>(&lua, F, 1, opts, &[])?;
    let (client, ep) = target(&lua, F, o.host.as_deref())?;
    client.version(&ep).await.map_err(|e| fail(F, e))
}

/// `ollama.online{host?}` → whether the server answers within 2 s.
async fn online(lua: Lua, opts: Value) -> mlua::Result<bool> {
    const F: &str = "ollama.online";
    let (o, _) = args::opts::<HostOpts>(&lua, F, 1, opts, &[])?;
    let (client, ep) = target(&lua, F, o.host.as_deref())?;
    Ok(client.online(&ep).await)
}

/// `ollama.pull(model, {host?, on_progress?})` → `"success"`; without a callback, a progress bar on a
/// terminal's stderr.
async fn pull(lua: Lua, (model, opts): (Value, Value)) -> mlua::Result<String> {
    const F: &str = "ollama.pull";
    let model = args::string(F, 1, "model", &model)?;
    let (o, mut cbs) = args::opts::<HostOpts>(&lua, F, 2, opts, &["on_progress"])?;
    let (client, ep) = target(&lua, F, o.host.as_deref())?;
    let callback = cbs.take("on_progress");
    let drawing = callback.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut on_progress: Option<ProgressFn> = match callback {
        Some(f) => {
            let lua = lua.clone();
            let mut call = llm_args::hook::<Value>(f);
            Some(Box::new(move |p: Progress| match args::to_lua(&lua, &p) {
                Ok(t) => call(t),
                Err(e) => Box::pin(async move {
                    Err(HookError(format!("cannot convert a progress line: {e}")))
                }),
            }))
        }
        None if drawing => Some(Box::new(draw_progress)),
        None => None,
    };
    let cb = on_progress
        .as_deref_mut()
        .map(|f| f as Callback<'_, Progress>);
    let out = client.pull(&ep, &model, cb).await;
    if drawing {
        crate::drawn!("\n");
    }
    out.map_err(|e| fail(F, e))
}

type ProgressFn = Box<dyn FnMut(Progress) -> LocalFuture<'static, Result<(), HookError>>>;

/// One line of a terminal progress bar, redrawn in place.
fn draw_progress(p: Progress) -> LocalFuture<'static, Result<(), HookError>> {
    let line = match (p.total, p.completed) {
        (Some(total), Some(done)) if total > 0 => {
            let frac = (done as f64 / total as f64).clamp(0.0, 1.0);
            let filled = (frac * 30.0).round() as usize;
            format!(
                "{} [{}{}] {:>3.0}%",
                p.status,
                "#".repeat(filled),
                " ".repeat(30 - filled),
                frac * 100.0
            )
        }
        _ => p.status,
    };
    // The status is the server's text: its control characters are shown escaped.
    crate::drawn!("\r\x1b[2K{}", crate::core::text::escape_line(&line));
    Box::pin(async { Ok(()) })
}

/// `ollama.queue{host?}` → `{running, waiting}` in baton's queue for that endpoint.
fn queue(lua: &Lua, opts: Value) -> mlua::Result<Table> {
    const F: &str = "ollama.queue";
    let (o, _) = args::opts::<HostOpts>(lua, F, 1, opts, &[])?;
    let (client, ep) = target(lua, F, o.host.as_deref())?;
    let q = client.queue(&ep);
    let t = lua.create_table()?;
    t.set("running", q.running)?;
    t.set("waiting", q.waiting)?;
    Ok(t)
}

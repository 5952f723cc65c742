//! The `mcp` global (issue 18): `mcp.connect` reaches an MCP server (fleet name or spec) and gives a handle
//! whose tools are plain Lua tool tables (`{name, description, parameters, run}`, usable by `route.ask`);
//! `mcp.tool{…}` registers a tool that `baton mcp serve` offers to MCP clients. The protocol lives in
//! `core::mcp`; this file converts arguments and results and runs served calls as Lua coroutines.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use mlua::{
    Function, HookTriggers, Lua, LuaSerdeExt, Table, UserData, UserDataFields, UserDataMethods,
    Value, VmState,
};
use serde::Deserialize;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::{args, services};
use crate::core::duration::Dur;
use crate::core::fleet::McpServer;
use crate::core::mcp::client::{self, Client, Transport};
use crate::core::mcp::server::{Call, Outcome, TOOL_TIMEOUT, ToolDef};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let mcp = lua.create_table()?;
    mcp.set("connect", lua.create_async_function(connect)?)?;
    mcp.set("tool", lua.create_function(tool)?)?;
    Ok(mcp)
}

/// Open connections to fleet servers by name, shared by every coroutine of the runtime (and closed with
/// it: dropping a client stops its server).
#[derive(Clone, Default)]
struct Connections(Rc<RefCell<HashMap<String, Rc<Client>>>>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectOpts {
    #[serde(default = "connect_timeout")]
    timeout: Dur,
}

fn connect_timeout() -> Dur {
    Dur(client::CONNECT_TIMEOUT)
}

impl Default for ConnectOpts {
    fn default() -> Self {
        ConnectOpts {
            timeout: connect_timeout(),
        }
    }
}

/// `mcp.connect(name | spec [, {timeout = "30s"}])` → handle.
async fn connect(lua: Lua, (target, opts): (Value, Value)) -> mlua::Result<mlua::AnyUserData> {
    const F: &str = "mcp.connect";
    let fleet = crate::lua::ctx(&lua).fleet.clone();
    let (name, transport) = match &target {
        Value::String(s) => {
            let name = args::utf8(F, 1, "target", s)?;
            let Some(server) = fleet.mcp.get(&name) else {
                let mut names: Vec<&str> = fleet.mcp.keys().map(String::as_str).collect();
                names.sort_unstable();
                let hint = crate::core::wording::suggest(&name, names.iter().copied());
                let hint = if !hint.is_empty() {
                    hint
                } else if names.is_empty() {
                    " (the fleet file has no `mcp` servers)".into()
                } else {
                    format!(" (fleet mcp servers: {})", names.join(", "))
                };
                return Err(args::fail(format!(
                    "{F}: unknown MCP server {}{hint}",
                    crate::core::text::quoted(&name)
                )));
            };
            (name, Transport::from_fleet(server))
        }
        Value::Table(_) => {
            let (spec, _) =
                args::opts::<McpServer>(&lua, F, 1, target.clone(), &[]).map_err(|e| {
                    args::fail(crate::lua::split_error(&e).0.replace("options", "spec"))
                })?;
            spec.check("spec", &fleet)
                .map_err(|e| args::fail(format!("{F}: {e}")))?;
            // An unnamed server is called by its program (`mcp-server-git`) or its URL's host.
            let name = match (&spec.url, spec.command.first()) {
                (Some(url), _) => url
                    .split("://")
                    .nth(1)
                    .and_then(|rest| rest.split(['/', '?', '#']).next())
                    .and_then(|host| host.rsplit('@').next())
                    .unwrap_or("mcp")
                    .to_string(),
                (None, Some(program)) => program.rsplit('/').next().unwrap_or(program).to_string(),
                (None, None) => "mcp".into(),
            };
            (name, Transport::from_fleet(&spec))
        }
        other => {
            return Err(args::arg_error(
                F,
                1,
                "server",
                "a fleet MCP server name or a table {command = {…}} / {url = \"…\"}",
                other,
            ));
        }
    };
    let (opts, _) = args::opts::<ConnectOpts>(&lua, F, 2, opts, &[])?;
    let shared = target.is_string();
    let conns = services::service(&lua, |_| Connections::default());
    if shared && let Some(c) = conns.0.borrow().get(&name).filter(|c| c.is_usable()) {
        return lua.create_userdata(Handle {
            name,
            client: c.clone(),
        });
    }
    let remote = services::remote(&lua);
    let client = Client::connect(&transport, &remote, opts.timeout.0)
        .await
        .map_err(|e| args::fail(format!("{}: {e}", args::call_name(F, &name))))?;
    let mut client = Rc::new(client);
    if shared {
        let mut open = conns.0.borrow_mut();
        match open.get(&name).filter(|c| c.is_usable()) {
            // Another coroutine connected first while this one waited: share its connection.
            Some(first) => {
                let extra = std::mem::replace(&mut client, first.clone());
                tokio::task::spawn_local(async move { extra.close().await });
            }
            None => {
                open.insert(name.clone(), client.clone());
            }
        }
    }
    lua.create_userdata(Handle { name, client })
}

/// An MCP server connection as Lua sees it.
struct Handle {
    name: String,
    client: Rc<Client>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallOpts {
    #[serde(default = "call_timeout")]
    timeout: Dur,
}

fn call_timeout() -> Dur {
    Dur(client::CALL_TIMEOUT)
}

impl Default for CallOpts {
    fn default() -> Self {
        CallOpts {
            timeout: call_timeout(),
        }
    }
}

/// Tool arguments: `nil` or a table of named arguments, as a JSON object.
fn json_args(
    lua: &Lua,
    func: &str,
    pos: usize,
    v: Value,
) -> mlua::Result<serde_json::Map<String, Json>> {
    match v {
        Value::Nil => Ok(Default::default()),
        Value::Table(_) => match lua.from_value::<Json>(v) {
            Ok(Json::Object(m)) => Ok(m),
            Ok(Json::Array(a)) if a.is_empty() => Ok(Default::default()),
            Ok(_) => Err(args::fail(format!(
                "{func}: argument {pos} (args) must be a table of named arguments, got a list"
            ))),
            Err(e) => Err(args::fail(format!(
                "{func}: argument {pos} (args) cannot be sent as JSON: {e}"
            ))),
        },
        other => Err(args::arg_error(
            func,
            pos,
            "args",
            "a table of named arguments",
            &other,
        )),
    }
}

impl Handle {
    async fn call(
        &self,
        func: &str,
        tool: &str,
        args: serde_json::Map<String, Json>,
        timeout: Duration,
    ) -> mlua::Result<client::CallResult> {
        self.client
            .call(tool, args, timeout)
            .await
            .map_err(|e| args::fail(format!("{func}({}, {tool}): {e}", self.name)))
    }
}

/// The tool tables of `handle:tools()` share this metatable: `tool(args)` is `tool.run(args)`.
const TOOL_META: &str = "baton.mcp.tool_meta";

fn tool_meta(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(t) = lua.named_registry_value::<Table>(TOOL_META) {
        return Ok(t);
    }
    let meta: Table = lua
        .load("return { __call = function(self, args) return self.run(args) end }")
        .set_name("=baton.mcp")
        .eval()?;
    lua.set_named_registry_value(TOOL_META, &meta)?;
    Ok(meta)
}

impl UserData for Handle {
    fn add_fields<M: UserDataFields<Self>>(fields: &mut M) {
        fields.add_field_method_get("name", |_, this| Ok(this.name.clone()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // `handle:tools()` → `{name, description, parameters, run}` for each tool; `run(args)` returns the
        // tool's text (its structured result when it gave no text) and raises when the tool reports an error.
        methods.add_async_method("tools", |lua, this, ()| async move {
            const F: &str = "mcp:tools";
            let tools = this
                .client
                .tools(client::LIST_TIMEOUT)
                .await
                .map_err(|e| args::fail(format!("{F}({}): {e}", this.name)))?;
            let meta = tool_meta(&lua)?;
            let list = lua.create_table_with_capacity(tools.len(), 0)?;
            for t in tools {
                let entry = lua.create_table()?;
                entry.set("name", t.name.as_str())?;
                entry.set("description", t.description.as_str())?;
                entry.set("parameters", args::to_lua(&lua, &t.input_schema)?)?;
                let handle = Handle {
                    name: this.name.clone(),
                    client: this.client.clone(),
                };
                let tool = t.name.clone();
                let run = lua.create_async_function(move |lua, a: Value| {
                    let handle = Handle {
                        name: handle.name.clone(),
                        client: handle.client.clone(),
                    };
                    let tool = tool.clone();
                    async move {
                        let func = format!("mcp tool {tool}");
                        let a = json_args(&lua, &func, 1, a)?;
                        let r = handle
                            .call("mcp.run", &tool, a, client::CALL_TIMEOUT)
                            .await?;
                        if r.is_error {
                            return Err(args::fail(format!(
                                "mcp.run({}, {tool}): {}",
                                handle.name, r.text
                            )));
                        }
                        match (&r.data, r.text.is_empty()) {
                            (Some(data), true) => args::to_lua(&lua, data),
                            _ => Ok(Value::String(lua.create_string(&r.text)?)),
                        }
                    }
                })?;
                entry.set("run", run)?;
                entry.set_metatable(Some(meta.clone()))?;
                list.raw_push(entry)?;
            }
            Ok(list)
        });
        // `handle:call(name, args [, {timeout}])` → `{text, content, data?, is_error}`.
        methods.add_async_method(
            "call",
            |lua, this, (tool, a, opts): (Value, Value, Value)| async move {
                const F: &str = "mcp:call";
                let tool = args::string(F, 1, "name", &tool)?;
                let a = json_args(&lua, F, 2, a)?;
                let (opts, _) = args::opts::<CallOpts>(&lua, F, 3, opts, &[])?;
                let r = this.call(F, &tool, a, opts.timeout.0).await?;
                args::to_lua(&lua, &r)
            },
        );
        methods.add_async_method("close", |_, this, ()| async move {
            this.client.close().await;
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            let state = if this.client.is_closed() {
                ", closed"
            } else {
                ""
            };
            Ok(format!(
                "mcp server {} ({}{state})",
                this.name,
                this.client.transport().describe()
            ))
        });
    }
}

/// The tools registered with `mcp.tool`, in order, with their Lua functions.
#[derive(Clone, Default)]
struct Registry(Rc<RefCell<Vec<(ToolDef, Function)>>>);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ToolSpec {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters: Option<Json>,
    timeout: Option<Dur>,
}

/// `mcp.tool{name, description, parameters, run, timeout}`: registers a tool for `baton mcp serve`.
fn tool(lua: &Lua, spec: Value) -> mlua::Result<()> {
    const F: &str = "mcp.tool";
    if !spec.is_table() {
        return Err(args::arg_error(
            F,
            1,
            "tool",
            "a table {name, description, parameters, run}",
            &spec,
        ));
    }
    let (spec, mut cbs) = args::opts::<ToolSpec>(lua, F, 1, spec, &["run"])
        .map_err(|e| args::fail(crate::lua::split_error(&e).0.replace(": options", ": tool")))?;
    let Some(run) = cbs.take("run") else {
        return Err(args::fail(format!(
            "{F}: tool.run must be a function(args), got nil"
        )));
    };
    let valid_name = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !valid_name {
        return Err(args::fail(format!(
            "{F}: tool.name must be 1 to 64 letters, digits, '_', '-' or '.', got {:?}",
            spec.name
        )));
    }
    let input_schema = schema(spec.parameters)
        .map_err(|why| args::fail(format!("{F}({}): tool.parameters {why}", spec.name)))?;
    let registry = services::service(lua, |_| Registry::default());
    let mut tools = registry.0.borrow_mut();
    if tools.iter().any(|(d, _)| d.name == spec.name) {
        return Err(args::fail(format!(
            "{F}: a tool named {:?} is already registered",
            spec.name
        )));
    }
    tools.push((
        ToolDef {
            name: spec.name,
            description: spec.description,
            input_schema,
            timeout: spec.timeout.map_or(TOOL_TIMEOUT, |d| d.0),
        },
        run,
    ));
    Ok(())
}

/// A JSON Schema object for a tool's arguments: `{type = "object", …}` (the default takes no arguments).
/// Lua cannot tell `{}` from `[]`: an empty `properties` becomes an object.
fn schema(parameters: Option<Json>) -> Result<serde_json::Map<String, Json>, String> {
    let mut schema = match parameters {
        None => serde_json::Map::new(),
        Some(Json::Object(m)) => m,
        Some(Json::Array(a)) if a.is_empty() => serde_json::Map::new(),
        Some(other) => return Err(format!("must be a JSON Schema table, got {other}")),
    };
    match schema.get("type") {
        None => {
            schema.insert("type".into(), Json::String("object".into()));
        }
        Some(Json::String(t)) if t == "object" => {}
        Some(other) => return Err(format!("must have type = \"object\", got {other}")),
    }
    fix_empty_objects(&mut schema);
    Ok(schema)
}

fn fix_empty_objects(schema: &mut serde_json::Map<String, Json>) {
    for (key, value) in schema.iter_mut() {
        match value {
            Json::Array(a) if a.is_empty() && key == "properties" => {
                *value = Json::Object(Default::default())
            }
            Json::Object(m) => fix_empty_objects(m),
            Json::Array(items) => {
                for item in items {
                    if let Json::Object(m) = item {
                        fix_empty_objects(m);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The tools registered so far (by the tools file), for `baton mcp serve`.
pub fn registered(lua: &Lua) -> Vec<ToolDef> {
    lua.app_data_ref::<Registry>()
        .map(|r| r.0.borrow().iter().map(|(d, _)| d.clone()).collect())
        .unwrap_or_default()
}

/// How many Lua instructions a tool runs before other calls get a turn.
const PREEMPT_EVERY: u32 = 10_000;

/// Runs each call as its own coroutine on the current `LocalSet` until the channel closes. A call whose
/// receiver goes away (timeout, client cancellation) is dropped, which stops its coroutine.
pub async fn run_calls(lua: Lua, mut calls: mpsc::UnboundedReceiver<Call>) {
    let tools: HashMap<String, Function> = lua
        .app_data_ref::<Registry>()
        .map(|r| {
            r.0.borrow()
                .iter()
                .map(|(d, f)| (d.name.clone(), f.clone()))
                .collect()
        })
        .unwrap_or_default();
    while let Some(mut call) = calls.recv().await {
        let Some(f) = tools.get(&call.tool).cloned() else {
            let _ = call
                .reply
                .send(Err(format!("unknown tool {:?}", call.tool)));
            continue;
        };
        let lua = lua.clone();
        tokio::task::spawn_local(async move {
            let work = run_one(&lua, f, std::mem::take(&mut call.args));
            let outcome = tokio::select! {
                r = work => r,
                _ = call.reply.closed() => return,
            };
            let _ = call.reply.send(outcome);
        });
    }
}

async fn run_one(
    lua: &Lua,
    f: Function,
    args: serde_json::Map<String, Json>,
) -> Result<Outcome, String> {
    let message = |e: mlua::Error| crate::lua::split_error(&e).0;
    let thread = lua.create_thread(f).map_err(message)?;
    let key = thread.to_pointer() as usize;
    thread
        .set_hook(
            HookTriggers::new().every_nth_instruction(PREEMPT_EVERY),
            move |lua, _| {
                let own = lua.current_thread().to_pointer() as usize == key;
                Ok(if own {
                    VmState::Yield
                } else {
                    VmState::Continue
                })
            },
        )
        .map_err(message)?;
    let a = args::to_lua(lua, &Json::Object(args)).map_err(message)?;
    let value = thread
        .into_async::<Value>(a)
        .map_err(message)?
        .await
        .map_err(message)?;
    match value {
        Value::Nil => Ok(Outcome::Text(String::new())),
        Value::String(s) => Ok(Outcome::Text(s.to_string_lossy())),
        other => lua
            .from_value::<Json>(other)
            .map(Outcome::Json)
            .map_err(|e| format!("the tool's result cannot be sent as JSON: {e}")),
    }
}

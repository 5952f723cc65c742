//! The `mcp` global (issue 18): `mcp.connect` reaches an MCP server (fleet name or spec) and gives a handle
//! whose tools are plain Lua tool tables (`{name, description, parameters, run}`, usable by `route.ask`);
//! `mcp.tool{…}` registers a tool that `baton mcp serve` offers to MCP clients. The protocol lives in
//! `core::mcp`; this file converts arguments and results and runs served calls as Lua coroutines.
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlua::{
    Function, HookTriggers, Lua, LuaSerdeExt, Table, UserData, UserDataFields, UserDataMethods,
    Value, VmState,
};
use serde::Deserialize;
use serde_json::Value as Json;

use super::{args, services};
use crate::core::duration::Dur;
use crate::core::fleet::McpServer;
use crate::core::mcp::client::{self, Client, Transport};
use crate::core::mcp::server::{Call, Outcome, Runner, TOOL_TIMEOUT, ToolDef};
use crate::lua::runtime;

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
                // A run journals the call (the server's name with the tool's), so a resume does not call
                // the tool again.
                let key = mlua::MultiValue::from_iter([
                    Value::String(lua.create_string(&this.name)?),
                    tool.clone(),
                    a.clone(),
                ]);
                let live = || async {
                    let tool = args::string(F, 1, "name", &tool)?;
                    let a = json_args(&lua, F, 2, a)?;
                    let (opts, _) = args::opts::<CallOpts>(&lua, F, 3, opts, &[])?;
                    let r = this.call(F, &tool, a, opts.timeout.0).await?;
                    Ok(mlua::MultiValue::from_iter([args::to_lua(&lua, &r)?]))
                };
                let mut values =
                    crate::lua::journal::journaled_call(&lua, "mcp.call", &key, live).await?;
                Ok(values.pop_front().unwrap_or(Value::Nil))
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

/// The calls waiting for one worker. Its lock is only ever held for a moment (never while Lua runs), so when
/// the worker is stuck, the calls it has not taken yet can be moved to another.
#[derive(Default)]
struct Queue {
    calls: Mutex<VecDeque<Call>>,
    closed: AtomicBool,
    ready: tokio::sync::Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Call>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, call: Call) -> Result<(), Call> {
        let mut calls = self.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Err(call);
        }
        calls.push_back(call);
        drop(calls);
        self.ready.notify_one();
        Ok(())
    }

    /// The next call; `None` once the queue is closed.
    async fn next(&self) -> Option<Call> {
        loop {
            let ready = self.ready.notified();
            {
                let mut calls = self.lock();
                if self.closed.load(Ordering::SeqCst) {
                    return None;
                }
                if let Some(call) = calls.pop_front() {
                    return Some(call);
                }
            }
            ready.await;
        }
    }

    /// Closes the queue and gives back the calls not taken yet.
    fn close(&self) -> Vec<Call> {
        let mut calls = self.lock();
        self.closed.store(true, Ordering::SeqCst);
        let left = calls.drain(..).collect();
        drop(calls);
        self.ready.notify_one();
        left
    }
}

/// Runs each call as its own coroutine on the current `LocalSet` until the queue closes. A call whose
/// receiver goes away (client cancellation) is dropped, which stops its coroutine.
async fn run_calls(lua: Lua, calls: Arc<Queue>) {
    let tools: HashMap<String, (Function, Duration)> = lua
        .app_data_ref::<Registry>()
        .map(|r| {
            r.0.borrow()
                .iter()
                .map(|(d, f)| (d.name.clone(), (f.clone(), d.timeout)))
                .collect()
        })
        .unwrap_or_default();
    while let Some(mut call) = calls.next().await {
        let Some((f, limit)) = tools.get(&call.tool).cloned() else {
            let _ = call
                .reply
                .send(Err(format!("unknown tool {:?}", call.tool)));
            continue;
        };
        let lua = lua.clone();
        tokio::task::spawn_local(async move {
            // The tool's timeout holds here too: its timer for a tool that waits, the instruction hook for
            // one that never does (a loop, a spinning `table.sort` comparator).
            let msg = format!(
                "{}: timed out after {}",
                call.tool,
                crate::core::duration::format(limit)
            );
            let work = run_one(&lua, f, std::mem::take(&mut call.args));
            let work = async {
                match std::time::Instant::now().checked_add(limit) {
                    Some(deadline) => {
                        let scoped = runtime::with_deadline(&lua, deadline, msg.clone(), work);
                        tokio::time::timeout(limit, scoped)
                            .await
                            .unwrap_or_else(|_| Err(msg.clone()))
                    }
                    None => work.await,
                }
            };
            let outcome = tokio::select! {
                r = work => r,
                _ = call.reply.closed() => return,
            };
            let _ = call.reply.send(outcome);
        });
    }
}

/// How many workers stuck in code nothing interrupts may still be running before calls are refused: each
/// holds a thread and a Lua state (at most its memory limit).
pub const MAX_STUCK: usize = 4;

/// The workers of `baton mcp serve`: each is a thread with its own Lua state that ran the tools file and
/// runs calls ([`run_calls`]). The server hands calls to the current one; one that leaves a call running
/// past its timeout (C code no hook reaches, such as a backtracking `string.find`) is abandoned: its
/// interrupt is set (the call ends as soon as Lua runs again), its queue closed (the thread ends with it)
/// and the next call starts a fresh worker. The server itself never waits on a worker. A worker has its own
/// state database connection, idle while its Lua is stuck, so an abandoned one holds no lock.
pub struct Pool {
    make: Box<dyn Fn() -> crate::lua::Ctx + Send + Sync>,
    file: PathBuf,
    inner: Mutex<PoolInner>,
}

struct PoolInner {
    /// The current worker's number (each new one gets the next).
    id: u64,
    current: Option<Worker>,
    stuck: Vec<Worker>,
}

struct Worker {
    calls: Arc<Queue>,
    interrupt: runtime::Interrupt,
    /// Disconnected once the worker's thread has ended.
    ended: std::sync::mpsc::Receiver<()>,
}

impl Worker {
    fn running(&self) -> bool {
        matches!(
            self.ended.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        )
    }
}

type Loaded = std::sync::mpsc::Receiver<Result<Vec<ToolDef>, String>>;

impl Pool {
    /// Starts the first worker with the state `make` gives and waits until it has run `file`: its tools, or
    /// the error of running the file (worded for the user).
    pub fn start(
        make: impl Fn() -> crate::lua::Ctx + Send + Sync + 'static,
        file: &Path,
    ) -> Result<(Pool, Vec<ToolDef>), String> {
        let pool = Pool {
            make: Box::new(make),
            file: file.to_path_buf(),
            inner: Mutex::new(PoolInner {
                id: 0,
                current: None,
                stuck: Vec::new(),
            }),
        };
        let (worker, loaded) = pool.spawn()?;
        let defs = loaded
            .recv()
            .map_err(|_| "mcp serve: the tools worker ended while loading".to_string())??;
        pool.lock().current = Some(worker);
        Ok((pool, defs))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self) -> Result<(Worker, Loaded), String> {
        let calls = Arc::new(Queue::default());
        let queue = calls.clone();
        let (loaded_tx, loaded) = std::sync::mpsc::channel();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let interrupt = runtime::Interrupt::new();
        let ctx = (self.make)();
        let file = self.file.clone();
        let shared = interrupt.clone();
        std::thread::Builder::new()
            .name("baton mcp tools".into())
            .spawn(move || {
                let _ended = ended_tx;
                let _ = runtime::block_on(work(ctx, file, shared, queue, loaded_tx));
            })
            .map_err(|e| format!("mcp serve: cannot start a thread for the tools: {e}"))?;
        Ok((
            Worker {
                calls,
                interrupt,
                ended,
            },
            loaded,
        ))
    }

    /// Ends the current worker: closes its queue and waits up to `wait` for its thread (so the tools' own
    /// connections close properly); a stuck one is left to the end of the process.
    pub fn shutdown(&self, wait: Duration) {
        let current = self.lock().current.take();
        if let Some(w) = current {
            drop(w.calls.close());
            let _ = w.ended.recv_timeout(wait);
        }
    }
}

impl Pool {
    /// Why no call can run while [`MAX_STUCK`] workers are stuck.
    fn too_many_stuck(n: usize) -> String {
        format!(
            "{n} earlier calls are still stuck in code that cannot be interrupted (a C function such as a \
             string.find that backtracks); no call runs until one of them ends"
        )
    }

    /// Makes sure there is a current worker (none while too many are stuck).
    fn ensure_current(&self, inner: &mut PoolInner) -> Result<(), String> {
        inner.stuck.retain(Worker::running);
        if inner.current.is_none() {
            if inner.stuck.len() >= MAX_STUCK {
                return Err(Self::too_many_stuck(inner.stuck.len()));
            }
            // The worker loads the tools file before it takes calls, which wait in its queue.
            let (worker, _loaded) = self.spawn()?;
            inner.id += 1;
            inner.current = Some(worker);
        }
        Ok(())
    }
}

impl Runner for Pool {
    fn send(&self, call: Call) -> Result<u64, String> {
        let mut inner = self.lock();
        self.ensure_current(&mut inner)?;
        let id = inner.id;
        let worker = inner.current.as_ref().expect("ensured");
        worker
            .calls
            .push(call)
            .map(|()| id)
            .map_err(|_| "the tool runner has stopped".to_string())
    }

    fn stuck(&self, worker: u64) {
        let mut inner = self.lock();
        if worker != inner.id {
            return;
        }
        let Some(w) = inner.current.take() else {
            return;
        };
        tracing::warn!(
            "mcp serve: a tool call did not stop at its timeout (stuck in code no hook reaches); later \
             calls run in a fresh Lua state"
        );
        w.interrupt
            .trigger("abandoned: the call did not stop at its timeout");
        // The calls it never took go to the next worker.
        let waiting = w.calls.close();
        inner.stuck.push(w);
        match self.ensure_current(&mut inner) {
            Ok(()) => {
                let next = inner.current.as_ref().expect("ensured");
                for call in waiting {
                    if let Err(call) = next.calls.push(call) {
                        let _ = call.reply.send(Err("the tool runner has stopped".into()));
                    }
                }
            }
            Err(why) => {
                for call in waiting {
                    let _ = call.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// A worker's life: run the tools file in a fresh state, say what it registered, then run calls until the
/// queue closes. When the file fails, every call is answered with its error.
async fn work(
    ctx: crate::lua::Ctx,
    file: PathBuf,
    interrupt: runtime::Interrupt,
    queue: Arc<Queue>,
    loaded: std::sync::mpsc::Sender<Result<Vec<ToolDef>, String>>,
) {
    match load(ctx, &file, interrupt).await {
        Ok(lua) => {
            let _ = loaded.send(Ok(registered(&lua)));
            run_calls(lua, queue).await;
        }
        Err(msg) => {
            let _ = loaded.send(Err(msg.clone()));
            while let Some(call) = queue.next().await {
                let _ = call.reply.send(Err(msg.clone()));
            }
        }
    }
}

/// A state for `baton mcp serve` that has run the tools file: output goes to stderr (stdout is the
/// protocol's), and `interrupt` stops its Lua.
async fn load(
    ctx: crate::lua::Ctx,
    file: &Path,
    interrupt: runtime::Interrupt,
) -> Result<Lua, String> {
    let fail = |e: mlua::Error| crate::lua::format_error(&e);
    let lua = crate::lua::new_runtime(ctx).map_err(fail)?;
    runtime::share_interrupt(&lua, interrupt);
    lua.set_app_data(crate::lua::Printer::to(std::io::stderr()));
    // fd 1 is stderr now; Lua's own io library follows (its buffered stdout would otherwise hold text that
    // ends up on stderr at exit).
    lua.load("io.output(io.stderr); io.stdout = io.stderr")
        .set_name("=mcp serve")
        .exec()
        .map_err(fail)?;
    crate::lua::run_file(&lua, file).await.map_err(fail)?;
    Ok(lua)
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
                // This hook replaces the state's guard on this thread: check it first.
                runtime::check(lua)?;
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

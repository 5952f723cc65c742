//! The Lua runtime: one place wires the fleet and the core services into a Lua state. Shared host state
//! reaches bindings through app data ([`Ctx`]), never through globals.
pub(crate) mod api;
pub mod daemon;
pub mod entry;
pub mod fleet;
pub mod journal;
pub mod pretty;
pub mod repl;
pub mod runtime;
pub mod stdlib;

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use mlua::{Lua, Value};

use crate::core::fleet::Fleet;
use crate::core::state::State;

/// What every binding may read: the fleet, the state directory, which script runs and its arguments.
pub struct Ctx {
    pub fleet: Arc<Fleet>,
    pub state: State,
    /// The playbook's name as recorded in ledgers and run records (`repl` in the REPL).
    pub script: String,
    pub args: Vec<String>,
}

/// Where `print` and script output go: stdout by default (and the log of the run under way, see
/// `core::runs::copy_output`); the scheduler points it at a run's log file.
#[derive(Clone)]
pub struct Printer(pub Rc<RefCell<Box<dyn Write>>>);

impl Printer {
    pub fn stdout() -> Self {
        Printer::to(crate::core::runs::Teed(std::io::stdout()))
    }

    pub fn to(w: impl Write + 'static) -> Self {
        Printer(Rc::new(RefCell::new(Box::new(w))))
    }

    pub fn write_line(&self, line: &str) {
        let mut w = self.0.borrow_mut();
        // Output to a closed pipe must not kill a playbook; there is nobody left to tell.
        let _ = w.write_all(line.as_bytes());
        let _ = w.write_all(b"\n");
        let _ = w.flush();
    }
}

/// Builds a Lua state with every global registered and `require` able to find embedded modules and the
/// user's module folder (`lua/` next to the fleet file).
pub fn new_runtime(ctx: Ctx) -> mlua::Result<Lua> {
    // The safe libraries plus `debug` (playbooks are the user's own code and tracebacks help them); no C
    // modules, which could be built against another Lua and take the process down.
    // SAFETY: only the debug library is added to mlua's safe set; no C module loading is enabled.
    let lua = unsafe {
        Lua::unsafe_new_with(
            mlua::StdLib::ALL_SAFE | mlua::StdLib::DEBUG,
            mlua::LuaOptions::new(),
        )
    };
    let module_dirs = module_dirs(&ctx);
    let memory = ctx
        .fleet
        .limits
        .memory
        .map_or(runtime::DEFAULT_MEMORY, |b| b.0);
    runtime::install_guard(&lua, memory)?;
    lua.set_app_data(ctx);
    lua.set_app_data(Printer::stdout());
    install_require(&lua, &module_dirs)?;
    install_print(&lua)?;
    install_exit(&lua)?;
    install_error_tostring(&lua)?;
    install_coroutines(&lua)?;
    install_globals(&lua)?;
    Ok(lua)
}

/// The module globals, each built the first time a script uses it: a playbook that never touches `ssh`
/// does not pay for building it (most of start-up is creating async functions).
type Register = fn(&Lua) -> mlua::Result<mlua::Table>;

const LAZY_GLOBALS: &[(&str, Register)] = &[
    ("ollama", api::ollama::register),
    ("openrouter", api::openrouter::register),
    ("route", api::route::register),
    ("ssh", api::ssh::register),
    ("sync", api::sync::register),
    ("schedule", api::schedule::register),
    ("mcp", api::mcp::register),
    ("claude", api::claude::register),
];

/// Where the loaders of the module globals are kept (Lua registry): name → function filling the module.
const LOADERS: &str = "baton.global_loaders";

/// `baton` now; every module global as a real global from the start (and `package.loaded[name]`, so
/// `require("ssh")` works) standing in for its module until its first use fills it in place. Nothing hangs on
/// `_G`'s metatable and filling never writes `_G`, so a playbook that sets its own metatable (strict mode) or
/// replaces a global keeps what it did.
fn install_globals(lua: &Lua) -> mlua::Result<()> {
    let registers = lua.create_table()?;
    for (name, register) in LAZY_GLOBALS {
        registers.raw_set(
            *name,
            lua.create_function(move |lua, ()| {
                let module = register(lua)?;
                journal::wrap_module(lua, name, &module)?;
                keep_caller_frames(lua, &module)?;
                Ok(module)
            })?,
        )?;
    }
    let loaded: mlua::Table = lua.globals().get::<mlua::Table>("package")?.get("loaded")?;
    let baton = api::baton::register(lua)?;
    // `baton.notify` is its own binding; wired here so bindings never import each other.
    baton.set("notify", api::notify::register(lua)?)?;
    baton.set("step", lua.create_async_function(journal::baton_step)?)?;
    baton.set(
        "approve",
        lua.create_async_function(journal::baton_approve)?,
    )?;
    journal::wrap_module(lua, "baton", &baton)?;
    keep_caller_frames(lua, &baton)?;
    lua.globals().raw_set("baton", &baton)?;
    loaded.raw_set("baton", &baton)?;
    let loaders: mlua::Table = lua
        .load(
            r#"local registers, loaded, baton, fleet_view = ...
        local loaders = {}
        -- baton.fleet: a stand-in that becomes the read-only view on its first use
        local fleet = {}
        local function fill_fleet()
          if loaders["baton.fleet"] then
            local view = fleet_view()
            loaders["baton.fleet"] = nil
            setmetatable(fleet, getmetatable(view))
          end
          return fleet
        end
        loaders["baton.fleet"] = fill_fleet
        setmetatable(fleet, {
          __index = function(_, k) return getmetatable(fill_fleet()).__index[k] end,
          __newindex = function(_, k) error("baton.fleet is read-only (tried to set " .. tostring(k) .. ")", 2) end,
          __pairs = function() return pairs(fill_fleet()) end,
          __len = function() return #fill_fleet() end,
        })
        rawset(baton, "fleet", fleet)
        for name, register in pairs(registers) do
          local proxy = {}
          local function fill()
            if loaders[name] then
              local module = register()        -- raises before anything changes if it fails
              loaders[name] = nil
              setmetatable(proxy, nil)
              for k, v in next, module do rawset(proxy, k, v) end
              setmetatable(proxy, getmetatable(module))
            end
            return proxy
          end
          loaders[name] = fill
          setmetatable(proxy, {
            __index = function(_, k) return fill()[k] end,
            __newindex = function(_, k, v) fill()[k] = v end,
            __pairs = function() return next, fill(), nil end,
          })
          rawset(_G, name, proxy)
          loaded[name] = proxy
        end
        return loaders"#,
        )
        .set_name("=baton.globals")
        .call((
            registers,
            loaded,
            &baton,
            lua.create_function(|lua, ()| api::baton::fleet_view(lua))?,
        ))?;
    lua.set_named_registry_value(LOADERS, loaders)
}

/// The chunk name of mlua's async functions: each is a Lua function, a loop polling the Rust future.
const ASYNC_WRAPPER: &str = "=__mlua_async_poll";

/// Puts each async function of `module` behind [`tail_safe`].
fn keep_caller_frames(lua: &Lua, module: &mlua::Table) -> mlua::Result<()> {
    let mut found = Vec::new();
    for pair in module.pairs::<Value, Value>() {
        let (key, value) = pair?;
        if let Value::Function(f) = value
            && f.info().source.as_deref() == Some(ASYNC_WRAPPER)
        {
            found.push((key, f));
        }
    }
    for (key, f) in found {
        module.raw_set(key, tail_safe(lua, f)?)?;
    }
    Ok(())
}

/// The metatables whose methods [`keep_method_frames`] already put behind [`tail_safe`] (by address).
#[derive(Default)]
struct MethodsKept(RefCell<std::collections::HashSet<usize>>);

/// `ud` with the async methods of its type behind [`tail_safe`], so `return task:wait()` names its line as
/// `return ssh.each(…)` does. The methods live in the type's one metatable, whose table of methods is
/// changed in place once. A type with fields has an `__index` function instead, which mlua does not let
/// change (it keeps its own copy): its methods stay as they are.
pub(crate) fn keep_method_frames(
    lua: &Lua,
    ud: mlua::AnyUserData,
) -> mlua::Result<mlua::AnyUserData> {
    let Ok(Value::Table(methods)) = ud.metatable().and_then(|mt| mt.get::<Value>("__index")) else {
        return Ok(ud);
    };
    if lua.app_data_ref::<MethodsKept>().is_none() {
        lua.set_app_data(MethodsKept::default());
    }
    let fresh = lua
        .app_data_ref::<MethodsKept>()
        .is_some_and(|kept| kept.0.borrow_mut().insert(methods.to_pointer() as usize));
    if fresh {
        keep_caller_frames(lua, &methods)?;
    }
    Ok(ud)
}

/// `f` called from a C function. An async function is a Lua function, so `return ssh.each(…)` (a tail
/// call) replaced the script's frame with it, and an error it raised named no `file:line`; a C function is
/// never tail-called away, so the script's frame stays below it and the error names the line. The call
/// goes through `lua_callk`, so `f` may still wait (yield) inside it.
fn tail_safe(lua: &Lua, f: mlua::Function) -> mlua::Result<mlua::Function> {
    use mlua::ffi;
    use std::os::raw::c_int;

    /// The results, which are all that is left on the stack once `f` returned.
    unsafe extern "C-unwind" fn done(
        state: *mut ffi::lua_State,
        _status: c_int,
        _ctx: ffi::lua_KContext,
    ) -> c_int {
        // SAFETY: called by Lua with a valid state.
        unsafe { ffi::lua_gettop(state) }
    }
    unsafe extern "C-unwind" fn call(state: *mut ffi::lua_State) -> c_int {
        // SAFETY: a C closure made below with `f` as its one upvalue; the stack holds the arguments and has
        // room for one more value (Lua guarantees LUA_MINSTACK slots to a C function). Nothing here owns
        // memory a Lua error (a longjmp) could skip freeing.
        unsafe {
            let nargs = ffi::lua_gettop(state);
            ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
            ffi::lua_insert(state, 1);
            ffi::lua_callk(state, nargs, ffi::LUA_MULTRET, 0, Some(done));
            done(state, ffi::LUA_OK, 0)
        }
    }
    // SAFETY: `exec_raw` runs the closure protected with `f` pushed; `lua_pushcclosure` pops it as the
    // upvalue and leaves the new function, the one value returned.
    unsafe { lua.exec_raw::<mlua::Function>(f, |state| ffi::lua_pushcclosure(state, call, 1)) }
}

/// Every API global: `baton` and the module globals.
pub fn global_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("baton").chain(LAZY_GLOBALS.iter().map(|(name, _)| *name))
}

/// Fills every module global and `baton.fleet` now (the REPL does, so Tab completion sees them all).
pub fn load_all_globals(lua: &Lua) -> mlua::Result<()> {
    let loaders: mlua::Table = lua.named_registry_value(LOADERS)?;
    let names = LAZY_GLOBALS.iter().map(|(name, _)| *name);
    for name in names.chain(["baton.fleet"]) {
        if let Some(fill) = loaders.get::<Option<mlua::Function>>(name)? {
            fill.call::<()>(())?;
        }
    }
    Ok(())
}

/// The `Ctx` of a runtime built by [`new_runtime`].
pub fn ctx(lua: &Lua) -> mlua::AppDataRef<'_, Ctx> {
    lua.app_data_ref::<Ctx>()
        .expect("baton runtime context is set by new_runtime")
}

fn module_dirs(ctx: &Ctx) -> Vec<PathBuf> {
    let config = match &ctx.fleet.source {
        Some(file) => file.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => crate::core::fleet::config_dir(),
    };
    vec![config.join("lua")]
}

/// `dir/?.lua;dir/?/init.lua`, the `package.path` entries for modules in `dir`; `None` (with a warning
/// naming `what`) when `dir` cannot be written there: `;` separates entries and `?` stands for the module
/// name, with no way to escape either, and the path must be UTF-8 text.
fn path_entries(dir: &Path, what: &str) -> Option<String> {
    match dir.to_str() {
        Some(d) if !d.contains([';', '?']) => Some(format!("{d}/?.lua;{d}/?/init.lua")),
        _ => {
            tracing::warn!(
                "{what} {} holds `;` or `?` (or is not UTF-8), which package.path cannot express: \
                 require() does not look there",
                dir.display()
            );
            None
        }
    }
}

/// Puts the folder of `script` first on `package.path`, so `require("helper")` finds `helper.lua` (or
/// `helper/init.lua`) beside the playbook wherever baton was started from; then come the fleet's `lua/`
/// folder and Lua's defaults (the current folder). A relative `script` is resolved against the current
/// folder now.
pub fn require_beside(lua: &Lua, script: &Path) -> mlua::Result<()> {
    let dir = match script.parent() {
        Some(d) if !d.as_os_str().is_empty() => std::path::absolute(d),
        _ => std::env::current_dir(),
    };
    let Ok(dir) = dir else {
        tracing::warn!(
            "{}: cannot resolve its folder: require() does not look there",
            script.display()
        );
        return Ok(());
    };
    let what = format!("{}: its folder", script.display());
    let Some(entries) = path_entries(&dir, &what) else {
        return Ok(());
    };
    let package: mlua::Table = lua.globals().get("package")?;
    let path: String = package.get("path")?;
    if !path.starts_with(&format!("{entries};")) {
        package.set("path", format!("{entries};{path}"))?;
    }
    Ok(())
}

fn install_require(lua: &Lua, dirs: &[PathBuf]) -> mlua::Result<()> {
    let package: mlua::Table = lua.globals().get("package")?;
    let mut path: String = package.get("path")?;
    for dir in dirs.iter().rev() {
        if let Some(entries) = path_entries(dir, "the fleet's module folder") {
            path = format!("{entries};{path}");
        }
    }
    package.set("path", path)?;
    let searchers: mlua::Table = package.get("searchers")?;
    let embedded = lua.create_function(|lua, name: String| match stdlib::find(&name) {
        Some((chunk, src)) => {
            let f = lua
                .load(src)
                .set_name(format!("@{chunk}"))
                .into_function()?;
            Ok((
                Value::Function(f),
                Value::String(lua.create_string(&chunk)?),
            ))
        }
        None => Ok((
            Value::String(lua.create_string(format!("no embedded module '{name}'"))?),
            Value::Nil,
        )),
    })?;
    // After the preload searcher, before the file system: `baton.*` cannot be shadowed by accident.
    searchers.raw_insert(2, embedded)?;
    Ok(())
}

fn install_print(lua: &Lua) -> mlua::Result<()> {
    let print = lua.create_function(|lua, args: mlua::Variadic<Value>| {
        let mut line = String::new();
        for (i, v) in args.iter().enumerate() {
            if i > 0 {
                line.push('\t');
            }
            match v {
                Value::Error(e) => line.push_str(&split_error(e).0),
                Value::String(s) => line.push_str(&s.to_string_lossy()),
                other => line.push_str(&other.to_string()?),
            }
        }
        if let Some(p) = lua.app_data_ref::<Printer>() {
            p.write_line(&line);
        }
        Ok(())
    })?;
    lua.globals().set("print", print)
}

/// Lua's own writes to stdout and stderr (`io.write`, `io.stdout:write`, `io.stderr:write`) through Rust's
/// streams, so that what a run writes there also reaches its log (`core::runs::copy_output`) in order with
/// `print` and baton's own lines. The file method `write` (shared by every file handle) is wrapped: on
/// `io.stdout` or `io.stderr` it writes what Lua's would (strings, and numbers as `%d` / `%.14g`, checked
/// the same way) and returns the file; on any other file it is Lua's. `flush` on those two flushes Rust's
/// stream. `io.write` writes to `io.output()` the same way. Rust functions rather than a Lua chunk: parsing
/// one cost more start-up than the rest of this. Only durable runs take this (`lua::entry`): elsewhere the
/// C library writes, as in plain Lua.
pub fn copy_lua_io(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    let io: mlua::Table = globals.raw_get("io")?;
    let stdout: Value = io.raw_get("stdout")?;
    let getmetatable: mlua::Function = globals.raw_get("getmetatable")?;
    let methods: mlua::Table = getmetatable
        .call::<mlua::Table>(stdout.clone())?
        .raw_get("__index")?;
    let string: mlua::Table = globals.raw_get("string")?;
    let files = Rc::new(StdFiles {
        stdout: stdout.to_pointer(),
        stderr: io.raw_get::<Value>("stderr")?.to_pointer(),
        format: string.raw_get("format")?,
    });
    let (write, flush): (mlua::Function, mlua::Function) =
        (methods.raw_get("write")?, methods.raw_get("flush")?);
    let output: mlua::Function = io.raw_get("output")?;
    let (f2, write2) = (files.clone(), write.clone());
    methods.raw_set(
        "write",
        lua.create_function(move |_, (f, args): (Value, mlua::MultiValue)| {
            f2.write("write", f, args, &write2)
        })?,
    )?;
    let f2 = files.clone();
    methods.raw_set(
        "flush",
        lua.create_function(
            move |_, (f, args): (Value, mlua::MultiValue)| match f2.which(&f) {
                Some(to_stderr) => {
                    let _ = if to_stderr {
                        std::io::stderr().flush()
                    } else {
                        std::io::stdout().flush()
                    };
                    Ok(mlua::MultiValue::from_iter([f]))
                }
                None => flush.call((f, args)),
            },
        )?,
    )?;
    io.raw_set(
        "write",
        lua.create_function(move |_, args: mlua::MultiValue| {
            files.write("io.write", output.call(())?, args, &write)
        })?,
    )
}

/// `io.stdout` and `io.stderr` (by address), and `string.format` for numbers as Lua writes them.
struct StdFiles {
    stdout: *const std::ffi::c_void,
    stderr: *const std::ffi::c_void,
    format: mlua::Function,
}

impl StdFiles {
    /// Whether `f` is stderr (`true`) or stdout (`false`); `None` for any other file.
    fn which(&self, f: &Value) -> Option<bool> {
        let p = f.to_pointer();
        (p == self.stderr || p == self.stdout).then_some(p == self.stderr)
    }

    /// `f:write(...)` as `name`: through Rust's stream for stdout and stderr, else Lua's `write`.
    fn write(
        &self,
        name: &str,
        f: Value,
        args: mlua::MultiValue,
        lua_write: &mlua::Function,
    ) -> mlua::Result<mlua::MultiValue> {
        let Some(to_stderr) = self.which(&f) else {
            let mut all = args;
            all.push_front(f);
            return lua_write.call(all);
        };
        let mut bytes = Vec::new();
        for (i, v) in args.iter().enumerate() {
            match v {
                Value::String(s) => bytes.extend_from_slice(&s.as_bytes()),
                Value::Integer(n) => bytes.extend_from_slice(n.to_string().as_bytes()),
                Value::Number(n) => {
                    let text: mlua::LuaString = self.format.call(("%.14g", *n))?;
                    bytes.extend_from_slice(&text.as_bytes());
                }
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "bad argument #{} to '{name}' (string expected, got {})",
                        i + 1,
                        api::args::type_name(other)
                    )));
                }
            }
        }
        // Output to a closed pipe must not kill a playbook; there is nobody left to tell.
        let _ = if to_stderr {
            crate::core::runs::Teed(std::io::stderr()).write_all(&bytes)
        } else {
            crate::core::runs::Teed(std::io::stdout()).write_all(&bytes)
        };
        Ok(mlua::MultiValue::from_iter([f]))
    }
}

/// `os.exit(code)` ends the playbook through the normal error path, so processes, connections and the
/// database are closed properly instead of the process vanishing mid-write.
#[derive(Debug)]
struct ExitRequest(i32);

impl std::fmt::Display for ExitRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "os.exit({})", self.0)
    }
}

impl std::error::Error for ExitRequest {}

fn install_exit(lua: &Lua) -> mlua::Result<()> {
    let os: mlua::Table = lua.globals().get("os")?;
    os.set(
        "exit",
        lua.create_function(|_, code: Value| {
            let code = match code {
                Value::Nil | Value::Boolean(true) => 0,
                Value::Boolean(false) => 1,
                Value::Integer(i) => i as i32,
                Value::Number(n) => n as i32,
                other => {
                    return Err(api::args::arg_error(
                        "os.exit",
                        1,
                        "code",
                        "a number or boolean",
                        &other,
                    ));
                }
            };
            Err::<(), _>(mlua::Error::external(ExitRequest(code)))
        })?,
    )
}

/// Errors raised by Rust functions reach Lua as userdata; `tostring(err)` (and so `print(err)` after a
/// `pcall`) gives the plain message, like an `error("…")` string, not a Rust debug dump with a traceback.
fn install_error_tostring(lua: &Lua) -> mlua::Result<()> {
    let clean = lua.create_function(|_, v: Value| match v {
        Value::Error(e) => Ok(split_error(&e).0),
        other => other.to_string(),
    })?;
    let sample = lua.create_function(|_, ()| Err::<(), _>(mlua::Error::runtime("sample")))?;
    lua.load(
        r#"local clean, sample = ...
        local _, e = pcall(sample)
        local mt = debug.getmetatable(e)
        if type(mt) == "table" then mt.__tostring = clean end"#,
    )
    .set_name("=baton.errors")
    .call::<()>((clean, sample))
}

/// `coroutine.resume` and `coroutine.wrap` that let baton's waiting calls work inside a user's coroutine: when
/// the coroutine is suspended by a call that waits (`baton.exec`, `baton.sleep`, `ssh.run`, …), the wait is
/// passed on to whoever runs the resuming code (the playbook's driver), and the coroutine is resumed when the
/// call can go on; other yields reach the resumer as usual. Where the resumer cannot yield (inside a
/// `table.sort` comparator, a metamethod called by C), the call fails naming itself and `baton.spawn`.
fn install_coroutines(lua: &Lua) -> mlua::Result<()> {
    let names = global_names().collect::<Vec<_>>().join(" ");
    lua.load(
        r##"local pending, names = ...
        local create, resume, yield, status, close, isyieldable =
          coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.close,
          coroutine.isyieldable
        local getinfo, rawget, type, pairs, select, error = debug.getinfo, rawget, type, pairs, select, error
        local function call_name(co)
          for level = 1, 3 do
            local info = getinfo(co, level, "f")
            local f = info and info.func
            for name in names:gmatch("%S+") do
              local m = rawget(_G, name)
              if type(m) == "table" then
                for k, v in pairs(m) do
                  if v == f then return name .. "." .. tostring(k) end
                end
              end
            end
          end
          return "a baton call"
        end
        local function pass(co, ok, first, ...)
          if ok and first == pending and select("#", ...) == 0 and status(co) == "suspended" then
            if not isyieldable() then
              error(call_name(co) .. ": cannot wait inside this coroutine: whatever resumes it cannot " ..
                "yield here (a C function such as table.sort or a metamethod is in between); run the " ..
                "work with baton.spawn instead", 0)
            end
            return pass(co, resume(co, yield(pending)))
          end
          return ok, first, ...
        end
        coroutine.resume = function(co, ...)
          return pass(co, resume(co, ...))
        end
        coroutine.wrap = function(f)
          local co = create(f)
          local function finish(ok, ...)
            if ok then return ... end
            local e = ...
            close(co)
            if type(e) == "string" then error(e, 2) end
            error(e, 0)
          end
          return function(...)
            return finish(pass(co, resume(co, ...)))
          end
        end"##,
    )
    .set_name("=baton.coroutine")
    .call::<()>((Value::LightUserData(Lua::poll_pending()), names))
}

/// The code a script asked for with `os.exit`, if that is what ended it.
pub fn exit_code(err: &mlua::Error) -> Option<i32> {
    let mut e = err;
    loop {
        match e {
            mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
                e = cause
            }
            mlua::Error::ExternalError(inner) => {
                return inner.downcast_ref::<ExitRequest>().map(|r| r.0);
            }
            _ => return None,
        }
    }
}

/// Runs a playbook file with its path as the chunk name, so errors read `file:line: message`; `require`
/// looks in its folder first ([`require_beside`]).
pub async fn run_file(lua: &Lua, path: &Path) -> mlua::Result<()> {
    let src = std::fs::read(path)
        .map_err(|e| mlua::Error::runtime(format!("cannot read {}: {e}", path.display())))?;
    require_beside(lua, path)?;
    let chunk = lua
        .load(src)
        .set_name(format!("@{}", path.display()))
        .into_function()?;
    // The playbook's own calls are task `0` of its run's journal.
    let (thread, _task) = journal::root_thread(lua, chunk)?;
    thread.into_async::<()>(())?.await
}

/// An error as a user should read it: `file:line: message`, then the Lua traceback when there is one.
pub fn format_error(err: &mlua::Error) -> String {
    let (message, traceback) = split_error(err);
    let located = if message.contains(".lua:") || message.starts_with('[') || located(&message) {
        message
    } else if let Some(loc) = traceback.as_deref().and_then(first_lua_frame) {
        format!("{loc}: {message}")
    } else {
        message
    };
    match traceback.map(|tb| clean_traceback(&tb)) {
        Some(tb) if tb.lines().count() > 1 => format!("{located}\n{tb}"),
        _ => located,
    }
}

/// The message of an error a script raised on purpose, `error(message, 0)` (no location of its own, raised
/// by Lua's `error` itself rather than by a binding or the runtime): a playbook's own words for an expected
/// failure, shown alone unless the user asks for more (`-v`). `None` for any other error.
pub fn deliberate_error(err: &mlua::Error) -> Option<String> {
    let (message, traceback) = split_error(err);
    let first_frame = traceback
        .as_deref()?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && *l != "stack traceback:")?;
    (first_frame == "[C]: in function 'error'" && !located(&message) && !message.contains(".lua:"))
        .then_some(message)
}

/// Whether `message` starts with a location Lua put there (`stdin:1: …`, `name:12: …`): its first `: `
/// follows a chunk name and a line number. Lua's own runtime errors and `error("…")` carry one; a binding's
/// error (`ssh.run: argument 1 …`) does not.
fn located(message: &str) -> bool {
    let first = message.lines().next().unwrap_or_default();
    let Some((loc, _)) = first.split_once(": ") else {
        return false;
    };
    match loc.rsplit_once(':') {
        Some((name, line)) => {
            !name.is_empty() && !line.is_empty() && line.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// The innermost message and the outermost traceback of an error.
pub fn split_error(err: &mlua::Error) -> (String, Option<String>) {
    let mut traceback = None;
    let mut e = err;
    loop {
        match e {
            mlua::Error::CallbackError {
                traceback: tb,
                cause,
            } => {
                traceback.get_or_insert_with(|| tb.clone());
                e = cause;
            }
            mlua::Error::WithContext { cause, .. } => e = cause,
            mlua::Error::RuntimeError(msg) => {
                let (msg, tb) = match msg.split_once("\nstack traceback:") {
                    Some((m, t)) => (m.to_string(), Some(format!("stack traceback:{t}"))),
                    None => (msg.clone(), None),
                };
                return (msg, traceback.or(tb));
            }
            mlua::Error::SyntaxError { message, .. } => return (message.clone(), traceback),
            mlua::Error::ExternalError(inner) => return (inner.to_string(), traceback),
            other => return (other.to_string(), traceback),
        }
    }
}

/// A traceback without the frames of mlua's async machinery, which mean nothing to a playbook author.
fn clean_traceback(tb: &str) -> String {
    tb.lines()
        .filter(|l| !internal_frame(l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

fn internal_frame(line: &str) -> bool {
    line.contains("__mlua")
        || line == "[C]: in local 'poll'"
        || line == "[C]: in upvalue 'get_future'"
        || line == "[C]: in ?"
}

/// `script.lua:3` from the first frame of a traceback that points into a Lua file.
fn first_lua_frame(traceback: &str) -> Option<String> {
    traceback
        .lines()
        .map(str::trim)
        .filter(|l| !internal_frame(l))
        .find_map(|line| {
            let (loc, _) = line.split_once(": in ")?;
            let (file, num) = loc.rsplit_once(':')?;
            (num.chars().all(|c| c.is_ascii_digit()) && !file.starts_with('['))
                .then(|| loc.to_string())
        })
}

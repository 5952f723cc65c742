//! Argument checks and conversions shared by every binding: messages that name the function, the argument
//! and what was expected; option tables decoded with serde (unknown keys rejected, with a did-you-mean);
//! durations; results to Lua through serde; the one process-result table; live line callbacks. What only
//! the LLM bindings need (tools, JSON Schema, hooks, checked results) is in [`super::llm_args`].
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use mlua::{Function, Lua, LuaSerdeExt, Table, Value};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::core::duration;
use crate::core::process::{Cmd, LineSink, Output, Stream};

/// A Lua type name as `type()` gives it (`nil`, `number`, `string`, `table`, …).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        Value::UserData(_) | Value::LightUserData(_) => "userdata",
        _ => "value",
    }
}

/// `ssh.run: argument 2 (cmd) must be a string or a list of strings, got nil`.
pub fn arg_error(func: &str, pos: usize, name: &str, expected: &str, got: &Value) -> mlua::Error {
    let got = match got {
        Value::String(s) => format!("string {}", crate::core::text::quoted(&s.to_string_lossy())),
        Value::Integer(i) => format!("number {i}"),
        Value::Number(n) => format!("number {n}"),
        Value::Boolean(b) => format!("boolean {b}"),
        other => type_name(other).to_string(),
    };
    mlua::Error::runtime(format!(
        "{func}: argument {pos} ({name}) must be {expected}, got {got}"
    ))
}

/// An operational failure raised into Lua: `ssh.run(brain): exit 1: …`.
pub fn fail(message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(message.to_string())
}

/// `func(target)` for the start of an error, the target cut short and its control characters escaped
/// ([`crate::core::text::shown`]: a host name or task kind comes from the script and may be anything).
pub fn call_name(func: &str, target: &str) -> String {
    format!("{func}({})", crate::core::text::shown(target))
}

/// A required string argument.
pub fn string(func: &str, pos: usize, name: &str, v: &Value) -> mlua::Result<String> {
    match v {
        Value::String(s) => utf8(func, pos, name, s),
        other => Err(arg_error(func, pos, name, "a string", other)),
    }
}

/// A required string argument with something in it (not empty, not only blanks): a name, a message.
/// `baton.step: argument 1 (name) must be a non-empty string, got string ""`.
pub fn non_empty_string(func: &str, pos: usize, name: &str, v: &Value) -> mlua::Result<String> {
    let expected = "a non-empty string";
    match v {
        Value::String(s) => match utf8(func, pos, name, s)? {
            text if text.trim().is_empty() => Err(arg_error(func, pos, name, expected, v)),
            text => Ok(text),
        },
        other => Err(arg_error(func, pos, name, expected, other)),
    }
}

/// A Lua string as Rust text, or `route.pick: argument 1 (task) must be valid UTF-8 text, got invalid
/// byte 0xff at 3`. Every binding reads text from Lua through this (never mlua's `to_str`/`String`
/// conversion, whose message names neither the function nor the argument).
pub fn utf8(func: &str, pos: usize, name: &str, s: &mlua::LuaString) -> mlua::Result<String> {
    text(func, &format!("argument {pos} ({name})"), s)
}

/// [`utf8`] for text that is not a positional argument: `what` names it (`options.tools[2].name`,
/// `argument 1 (hosts) at index 3`).
pub fn text(func: &str, what: &str, s: &mlua::LuaString) -> mlua::Result<String> {
    let bytes = s.as_bytes();
    std::str::from_utf8(&bytes)
        .map(str::to_string)
        .map_err(|e| {
            let at = e.valid_up_to();
            fail(format!(
                "{func}: {what} must be valid UTF-8 text, got invalid byte {:#04x} at {}",
                bytes[at],
                at + 1
            ))
        })
}

/// An optional string argument (`nil` gives `None`).
pub fn opt_string(func: &str, pos: usize, name: &str, v: &Value) -> mlua::Result<Option<String>> {
    match v {
        Value::Nil => Ok(None),
        Value::String(s) => utf8(func, pos, name, s).map(Some),
        other => Err(arg_error(func, pos, name, "a string or nil", other)),
    }
}

/// A required table argument.
pub fn table(func: &str, pos: usize, name: &str, v: &Value) -> mlua::Result<Table> {
    match v {
        Value::Table(t) => Ok(t.clone()),
        other => Err(arg_error(func, pos, name, "a table", other)),
    }
}

/// A required function argument.
pub fn function(func: &str, pos: usize, name: &str, v: &Value) -> mlua::Result<Function> {
    match v {
        Value::Function(f) => Ok(f.clone()),
        other => Err(arg_error(func, pos, name, "a function", other)),
    }
}

/// A duration argument: seconds or `"250ms" | "30s" | "5m" | "6h"`.
pub fn duration_arg(func: &str, pos: usize, name: &str, v: &Value) -> mlua::Result<Duration> {
    let expected = "a duration (seconds, or a string like \"30s\")";
    match v {
        Value::Integer(i) => {
            duration::from_secs(*i as f64).map_err(|_| arg_error(func, pos, name, expected, v))
        }
        Value::Number(n) => {
            duration::from_secs(*n).map_err(|_| arg_error(func, pos, name, expected, v))
        }
        Value::String(s) => duration::parse(&utf8(func, pos, name, s)?)
            .map_err(|_| arg_error(func, pos, name, expected, v)),
        other => Err(arg_error(func, pos, name, expected, other)),
    }
}

/// A command: a string (run by a shell) or a list of strings (argv, no shell).
pub fn cmd(func: &str, pos: usize, v: &Value) -> mlua::Result<Cmd> {
    let expected = "a string or a list of strings";
    match v {
        Value::String(s) => Ok(Cmd::Shell(utf8(func, pos, "cmd", s)?)),
        Value::Table(t) => {
            let mut argv = Vec::with_capacity(t.raw_len());
            for (i, item) in t.clone().sequence_values::<Value>().enumerate() {
                match item? {
                    Value::String(s) => argv.push(text(
                        func,
                        &format!("argument {pos} (cmd) at index {}", i + 1),
                        &s,
                    )?),
                    Value::Integer(n) => argv.push(n.to_string()),
                    Value::Number(n) => argv.push(n.to_string()),
                    other => {
                        return Err(fail(format!(
                            "{func}: argument {pos} (cmd) must be {expected}, got a {} at index {}",
                            type_name(&other),
                            i + 1
                        )));
                    }
                }
            }
            if argv.is_empty() || argv.len() != t.pairs::<Value, Value>().count() {
                return Err(arg_error(
                    func,
                    pos,
                    "cmd",
                    "a non-empty list of strings",
                    v,
                ));
            }
            Ok(Cmd::Argv(argv))
        }
        other => Err(arg_error(func, pos, "cmd", expected, other)),
    }
}

/// Function-valued options (`on_line`, `accept`, …) taken out of an option table, since serde cannot
/// carry functions.
#[derive(Default)]
pub struct Callbacks(HashMap<&'static str, Function>);

impl Callbacks {
    pub fn take(&mut self, name: &str) -> Option<Function> {
        self.0.remove(name)
    }
}

/// Decodes an optional options table into `T` (a `#[serde(deny_unknown_fields)]` struct). `nil` gives
/// `T::default()`. Keys in `fn_keys` must be functions and are returned apart. Errors read
/// `ssh.run: options: unknown key tmeout, did you mean timeout?`.
pub fn opts<T: DeserializeOwned + Default>(
    lua: &Lua,
    func: &str,
    pos: usize,
    v: Value,
    fn_keys: &[&'static str],
) -> mlua::Result<(T, Callbacks)> {
    let t = match v {
        Value::Nil => return Ok((T::default(), Callbacks::default())),
        Value::Table(t) => t,
        other => return Err(arg_error(func, pos, "options", "a table", &other)),
    };
    check_depth(func, pos, "options", &Value::Table(t.clone()))?;
    let mut callbacks = Callbacks::default();
    let plain = lua.create_table()?;
    for pair in t.pairs::<Value, Value>() {
        let (k, val) = pair?;
        let key = match &k {
            Value::String(s) => text(func, "options: a key", s)?,
            other => {
                return Err(fail(format!(
                    "{func}: options: keys must be strings, got a {}",
                    type_name(other)
                )));
            }
        };
        if let Some(name) = fn_keys.iter().find(|n| **n == key) {
            match val {
                Value::Function(f) => {
                    callbacks.0.insert(name, f);
                }
                other => {
                    return Err(fail(format!(
                        "{func}: options.{key} must be a function, got {}",
                        type_name(&other)
                    )));
                }
            }
        } else {
            plain.raw_set(k, val)?;
        }
    }
    let de = mlua::serde::Deserializer::new_with_options(
        Value::Table(plain),
        mlua::serde::de::Options::new().deny_unsupported_types(true),
    );
    let parsed: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let msg = crate::core::wording::describe(&e, "options");
        let msg = if msg.starts_with("options") {
            msg
        } else {
            format!("options.{msg}")
        };
        fail(format!("{func}: {msg}"))
    })?;
    Ok((parsed, callbacks))
}

/// Any serde value to Lua (tables for structs and maps, `nil` for `None`).
pub fn to_lua<T: serde::Serialize + ?Sized>(lua: &Lua, v: &T) -> mlua::Result<Value> {
    lua.to_value_with(
        v,
        mlua::serde::SerializeOptions::new()
            .serialize_none_to_null(false)
            .serialize_unit_to_null(false),
    )
}

/// The options every process runner takes (`baton.exec`, `ssh.run`): `cwd, env, stdin, timeout, check`
/// (`on_line` is a callback, taken apart by [`opts`]).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessOpts {
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    pub stdin: Option<String>,
    pub timeout: Option<crate::core::duration::Dur>,
    #[serde(default = "yes")]
    pub check: bool,
}

/// `#[serde(default = "args::yes")]`: options such as `check` that are on unless turned off.
pub fn yes() -> bool {
    true
}

impl Default for ProcessOpts {
    fn default() -> Self {
        ProcessOpts {
            cwd: None,
            env: Default::default(),
            stdin: None,
            timeout: None,
            check: true,
        }
    }
}

impl ProcessOpts {
    /// The process spec, leaving `check` with the caller.
    pub fn spec(&mut self) -> crate::core::process::Spec {
        crate::core::process::Spec {
            cwd: self.cwd.take().map(Into::into),
            env: std::mem::take(&mut self.env).into_iter().collect(),
            stdin: self.stdin.take().map(String::into_bytes),
            timeout: self.timeout.map(|d| d.0),
            max_line: None,
            max_output: None,
        }
    }
}

/// The one process shape: `{ok, code, signal, stdout, stderr, duration}`.
pub fn process_result(lua: &Lua, out: &Output) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 7)?;
    t.set("ok", out.ok())?;
    t.set("code", out.code)?;
    t.set("signal", out.signal)?;
    t.set("stdout", lua.create_string(&out.stdout)?)?;
    t.set("stderr", lua.create_string(&out.stderr)?)?;
    t.set("duration", out.duration.as_secs_f64())?;
    if !out.ok() {
        t.set("err", out.failure_summary())?;
    }
    Ok(t)
}

/// Runs `work` (given a line sink when `on_line` is set) and calls `on_line(stream, line)` for each line as it
/// arrives, in arrival order; the callback may yield. Lines still queued when the work ends are delivered
/// before this returns.
pub async fn with_lines<F, Fut, T>(on_line: Option<Function>, work: F) -> mlua::Result<T>
where
    F: FnOnce(Option<LineSink>) -> Fut,
    Fut: Future<Output = T>,
{
    let Some(callback) = on_line else {
        return Ok(work(None).await);
    };
    let (tx, mut rx) = mpsc::channel::<(Stream, String)>(1024);
    let fut = work(Some(tx));
    tokio::pin!(fut);
    let result = loop {
        tokio::select! {
            biased;
            Some((stream, line)) = rx.recv() => callback.call_async::<()>((stream.name(), line)).await?,
            out = &mut fut => break out,
        }
    };
    while let Ok((stream, line)) = rx.try_recv() {
        callback.call_async::<()>((stream.name(), line)).await?;
    }
    Ok(result)
}

/// The deepest nesting of tables a walk over Lua values goes: JSON encoding, option tables, log fields and
/// the fleet are refused past it (a clean error, not a stack overflow), `baton.inspect` shows `{…}` there.
pub const MAX_DEPTH: usize = 128;

/// Fails when `v` nests tables more than [`MAX_DEPTH`] deep: `baton.json.encode: argument 1 (value) nests
/// tables more than 128 deep`. Walks without recursion; a table reached twice (shared or a cycle) is walked
/// once.
pub fn check_depth(func: &str, pos: usize, name: &str, v: &Value) -> mlua::Result<()> {
    let Value::Table(root) = v else {
        return Ok(());
    };
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(root.clone(), 1usize)];
    while let Some((t, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(fail(format!(
                "{func}: argument {pos} ({name}) nests tables more than {MAX_DEPTH} deep"
            )));
        }
        if !seen.insert(t.to_pointer() as usize) {
            continue;
        }
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            for x in [k, v] {
                if let Value::Table(child) = x {
                    stack.push((child, depth + 1));
                }
            }
        }
    }
    Ok(())
}

/// An options table without `key`: (the rest, as a new table, and the value taken). Other values are
/// passed through for [`opts`] to judge.
pub fn split_off(lua: &Lua, v: Value, key: &str) -> mlua::Result<(Value, Value)> {
    let Value::Table(t) = v else {
        return Ok((v, Value::Nil));
    };
    let taken = t.raw_get::<Value>(key)?;
    if taken.is_nil() {
        return Ok((Value::Table(t), Value::Nil));
    }
    let rest = lua.create_table()?;
    for pair in t.pairs::<Value, Value>() {
        let (k, val) = pair?;
        if !matches!(&k, Value::String(s) if s.as_bytes().as_ref() == key.as_bytes()) {
            rest.raw_set(k, val)?;
        }
    }
    Ok((Value::Table(rest), taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_string_names_what_it_got() {
        let lua = Lua::new();
        let s = |text: &str| Value::String(lua.create_string(text).unwrap());
        let said = |v: Value| match non_empty_string("baton.step", 1, "name", &v) {
            Err(mlua::Error::RuntimeError(message)) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            non_empty_string("baton.step", 1, "name", &s("deploy")).unwrap(),
            "deploy"
        );
        assert_eq!(
            said(s("")),
            "baton.step: argument 1 (name) must be a non-empty string, got string \"\""
        );
        assert_eq!(
            said(s(" \t")),
            "baton.step: argument 1 (name) must be a non-empty string, got string \" \\t\""
        );
        assert_eq!(
            said(Value::Nil),
            "baton.step: argument 1 (name) must be a non-empty string, got nil"
        );
        assert_eq!(
            said(Value::Boolean(true)),
            "baton.step: argument 1 (name) must be a non-empty string, got boolean true"
        );
        assert_eq!(
            said(Value::String(lua.create_string(b"a\xff").unwrap())),
            "baton.step: argument 1 (name) must be valid UTF-8 text, got invalid byte 0xff at 2"
        );
    }
}

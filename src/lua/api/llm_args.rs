//! Conversions the LLM bindings (`ollama`, `openrouter`, `route`) share: tools and JSON Schemas given as Lua
//! tables, Lua functions as the core's streaming hooks, and a call's result as a table or a raised error.
//! Plain argument checks are in [`super::args`].
use std::collections::HashMap;

use mlua::{Function, Lua, LuaSerdeExt, Value};

use super::args::{fail, to_lua, type_name};
use crate::core::llm::{HookError, LlmError, LocalFuture};

/// A Lua function as a core hook (`on_token`, `on_progress`, …): called with `A` as it happens, may yield;
/// a Lua error stops the operation and its message is kept.
pub fn hook<A: mlua::IntoLuaMulti + 'static>(
    f: Function,
) -> impl FnMut(A) -> LocalFuture<'static, Result<(), HookError>> {
    move |a| {
        let f = f.clone();
        Box::pin(async move {
            f.call_async::<()>(a)
                .await
                .map_err(|e| HookError(crate::lua::split_error(&e).0))
        })
    }
}

/// An LLM call's result as a table, or its failure raised (`ollama.chat(engine, m): connection refused`);
/// with `check = false` the failure comes back as `{ok = false, err}` instead, and a success gets `ok = true`.
pub fn checked<T: serde::Serialize>(
    lua: &Lua,
    func: &str,
    check: bool,
    r: Result<T, LlmError>,
) -> mlua::Result<Value> {
    match r {
        Ok(v) => {
            let v = to_lua(lua, &v)?;
            if let (false, Value::Table(t)) = (check, &v) {
                t.set("ok", true)?;
            }
            Ok(v)
        }
        Err(e) if check => Err(fail(e.raised_by(func))),
        Err(e) => {
            let t = lua.create_table()?;
            t.set("ok", false)?;
            t.set("err", e.raised_by(func))?;
            Ok(Value::Table(t))
        }
    }
}

/// Tools as a script gives them: a list `{tool, …}` or a map `{name = tool}`, each tool
/// `{name, description?, parameters? (a JSON Schema table), run? = fn(args) -> string|table}`.
pub struct Tools {
    pub specs: Vec<crate::core::llm::ToolSpec>,
    /// Each tool's `run`, by name.
    pub run: HashMap<String, Function>,
}

/// Decodes `tools` (option key `key` of argument `pos`), keeping each `run` apart.
pub fn tools(lua: &Lua, func: &str, key: &str, v: Value) -> mlua::Result<Tools> {
    let mut out = Tools {
        specs: Vec::new(),
        run: HashMap::new(),
    };
    let list = match v {
        Value::Nil => return Ok(out),
        Value::Table(t) => t,
        other => {
            return Err(fail(format!(
                "{func}: options.{key} must be a list or a map of tools, got {}",
                type_name(&other)
            )));
        }
    };
    let mut by_name = false;
    for pair in list.pairs::<Value, Value>() {
        let (k, tool) = pair?;
        by_name |= matches!(k, Value::String(_));
        let Value::Table(tool) = tool else {
            return Err(fail(format!(
                "{func}: options.{key}: each tool must be a table {{name, description, parameters, run}}, got {}",
                type_name(&tool)
            )));
        };
        let name = match (tool.get::<Value>("name")?, &k) {
            (Value::String(s), _) => {
                super::args::text(func, &format!("options.{key}: a tool's name"), &s)?
            }
            (Value::Nil, Value::String(s)) => {
                super::args::text(func, &format!("options.{key}: a tool's name"), s)?
            }
            (other, _) => {
                return Err(fail(format!(
                    "{func}: options.{key}: a tool's name must be a string, got {}",
                    type_name(&other)
                )));
            }
        };
        let description = match tool.get::<Value>("description")? {
            Value::Nil => String::new(),
            Value::String(s) => {
                super::args::text(func, &format!("options.{key}.{name}.description"), &s)?
            }
            other => {
                return Err(fail(format!(
                    "{func}: options.{key}.{name}.description must be a string, got {}",
                    type_name(&other)
                )));
            }
        };
        let parameters = match tool.get::<Value>("parameters")? {
            Value::Nil => crate::core::llm::tools::empty_parameters(),
            p @ Value::Table(_) => json_schema(lua, func, &format!("{key}.{name}.parameters"), p)?,
            other => {
                return Err(fail(format!(
                    "{func}: options.{key}.{name}.parameters must be a JSON Schema table, got {}",
                    type_name(&other)
                )));
            }
        };
        match tool.get::<Value>("run")? {
            Value::Function(f) => {
                out.run.insert(name.clone(), f);
            }
            Value::Nil => {}
            other => {
                return Err(fail(format!(
                    "{func}: options.{key}.{name}.run must be a function, got {}",
                    type_name(&other)
                )));
            }
        }
        if out.specs.iter().any(|s| s.name == name) {
            return Err(fail(format!(
                "{func}: options.{key}: tool {name:?} is given twice"
            )));
        }
        out.specs.push(crate::core::llm::ToolSpec {
            name,
            description,
            parameters,
        });
    }
    if by_name {
        // A map has no order of its own: offer its tools by name, the same on every run.
        out.specs.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(out)
}

/// A JSON Schema given as a Lua table → JSON; empty tables under `properties` are objects, not arrays.
pub fn json_schema(lua: &Lua, func: &str, key: &str, v: Value) -> mlua::Result<serde_json::Value> {
    fn fix(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, child) in o.iter_mut() {
                    if matches!(k.as_str(), "properties" | "parameters")
                        && child.as_array().is_some_and(Vec::is_empty)
                    {
                        *child = serde_json::Value::Object(Default::default());
                    }
                    fix(child);
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(fix),
            _ => {}
        }
    }
    let mut schema: serde_json::Value = lua.from_value(v).map_err(|e| {
        fail(format!(
            "{func}: options.{key} must be a JSON Schema table: {e}"
        ))
    })?;
    if schema.as_array().is_some_and(Vec::is_empty) {
        schema = serde_json::json!({});
    }
    fix(&mut schema);
    Ok(schema)
}

/// `options.schema` of a call whose answer baton validates: [`json_schema`], then refused when it uses a
/// keyword the validator does not check (a tool's `parameters` only go to the model and are not checked here).
pub fn answer_schema(lua: &Lua, func: &str, v: Value) -> mlua::Result<serde_json::Value> {
    crate::core::llm::schema::given(func, json_schema(lua, func, "schema", v)?).map_err(fail)
}

//! The `claude` global: Claude Code headless on any fleet host through `core::claude`, each run a ledger
//! row booked through the fleet budget.
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use mlua::{Function, Lua, Table, UserData, UserDataFields, UserDataMethods, Value};
use serde::Deserialize;

use super::{args, services};
use crate::core::claude::{self, Booking, ClaudeError, Event, Options};
use crate::core::duration::Dur;
use crate::core::llm::{HookError, LocalFuture};
use crate::core::process::Spec;
use crate::core::remote::{Target, expand_home};

pub fn register(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("run", lua.create_async_function(run)?)?;
    Ok(t)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunOpts {
    host: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<Dur>,
    check: Option<bool>,
    model: Option<String>,
    max_turns: Option<u32>,
    #[serde(default)]
    allowed_tools: Vec<String>,
    #[serde(default)]
    disallowed_tools: Vec<String>,
    append_system_prompt: Option<String>,
    mcp_config: Option<serde_json::Value>,
    permission_mode: Option<String>,
    resume: Option<String>,
    max_usd: Option<f64>,
    min_usd: Option<f64>,
    #[serde(default)]
    detach: bool,
    // Taken apart before decoding; named here so the unknown-key hint lists it.
    #[allow(dead_code)]
    on_event: Option<serde::de::IgnoredAny>,
}

/// `claude.run(prompt [, opts])` → `{text, session_id, cost, turns, is_error, subtype, duration, usage,
/// model, host, max_usd}`.
async fn run(lua: Lua, (prompt, opts): (Value, Value)) -> mlua::Result<Value> {
    const F: &str = "claude.run";
    let prompt = args::string(F, 1, "prompt", &prompt)?;
    let (o, mut cbs) = args::opts::<RunOpts>(&lua, F, 2, opts, &["on_event"])?;
    let host = o.host.clone().unwrap_or_else(|| "local".into());
    let named = args::call_name(F, &host);
    let mcp_config = match o.mcp_config {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        Some(other) => {
            return Err(args::fail(format!(
                "{F}: options.mcp_config must be a path (string) or a table, got {}",
                match other {
                    serde_json::Value::Array(_) => "a list",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    _ => "nil",
                }
            )));
        }
    };
    for (k, v) in [("max_usd", o.max_usd), ("min_usd", o.min_usd)] {
        if let Some(v) = v.filter(|v| !v.is_finite() || *v < 0.0) {
            return Err(args::fail(format!(
                "{F}: options.{k} must be a number ≥ 0 (USD), got {v}"
            )));
        }
    }
    let copts = Options {
        model: o.model,
        max_turns: o.max_turns,
        allowed_tools: o.allowed_tools,
        disallowed_tools: o.disallowed_tools,
        append_system_prompt: o.append_system_prompt,
        mcp_config,
        permission_mode: o.permission_mode,
        resume: o.resume,
        max_budget_usd: None,
    };
    // Misuse is found before anything is booked.
    claude::argv(&copts).map_err(|e| args::fail(format!("{F}: {e}")))?;
    let remote = services::remote(&lua);
    let target = remote
        .target(&host)
        .map_err(|e| args::fail(format!("{named}: {e}")))?;
    let spec = Spec {
        // `~/…` is the host's home: a remote shell expands it, here it is expanded for this machine.
        cwd: o.cwd.map(|c| match target {
            Target::Local => expand_home(&c),
            Target::Ssh(_) => c.into(),
        }),
        env: o.env.into_iter().collect(),
        stdin: None,
        timeout: o.timeout.map(|d| d.0),
        // Set by `claude::run` (stream-json lines have their own bound).
        max_line: None,
        max_output: None,
    };
    let booking = Booking {
        host: host.clone(),
        script: Some(crate::lua::ctx(&lua).script.clone()),
        max_usd: o.max_usd,
        min_usd: o.min_usd.unwrap_or(claude::DEFAULT_MIN_USD),
    };
    let on_event = cbs.take("on_event");
    let check = o.check.unwrap_or(true);
    let llm = services::llm(&lua);
    if o.detach {
        if spec.timeout.is_some() {
            return Err(args::fail(format!(
                "{F}: options.timeout does not go with detach (give it to job:wait)"
            )));
        }
        let state = crate::lua::ctx(&lua).state.clone();
        let d = claude::detach(
            llm.budget(),
            &remote,
            &state,
            &booking,
            &prompt,
            &copts,
            &spec,
        )
        .await;
        return match d {
            Ok(d) => Ok(Value::UserData(lua.create_userdata(ClaudeJob {
                d: RefCell::new(Some(d)),
                on_event,
                check,
            })?)),
            Err(f) => failed(&lua, &named, &host, check, f),
        };
    }
    let mut hook = on_event.map(|f| hook(&lua, f));
    let out = claude::booked(
        llm.budget(),
        &remote,
        &booking,
        &prompt,
        &copts,
        &spec,
        hook.as_mut().map(|f| f as claude::OnEvent<'_>),
    )
    .await;
    match out {
        Ok(r) => done(&lua, check, &r),
        Err(f) => failed(&lua, &named, &host, check, f),
    }
}

/// A Lua `on_event` as the core's hook.
fn hook(
    lua: &Lua,
    f: Function,
) -> impl FnMut(Event) -> LocalFuture<'static, Result<(), HookError>> {
    let lua = lua.clone();
    move |ev: Event| {
        let (f, lua) = (f.clone(), lua.clone());
        Box::pin(async move {
            let v = args::to_lua(&lua, &ev).map_err(|e| HookError(e.to_string()))?;
            f.call_async::<()>(v)
                .await
                .map_err(|e| HookError(crate::lua::split_error(&e).0))
        })
    }
}

/// A finished run as its result table (`ok = true` with `check = false`).
fn done(lua: &Lua, check: bool, r: &claude::Run) -> mlua::Result<Value> {
    let v = args::to_lua(lua, r)?;
    if let (false, Value::Table(t)) = (check, &v) {
        t.set("ok", true)?;
    }
    Ok(v)
}

/// A failed run raised, or with `check = false` as `{ok = false, err, …}` (the result's fields when there
/// was a result line). Misuse raises even with `check = false`.
fn failed(
    lua: &Lua,
    named: &str,
    host: &str,
    check: bool,
    f: claude::Failure,
) -> mlua::Result<Value> {
    let err = format!("{named}: {}", f.err);
    if check || matches!(f.err, ClaudeError::Invalid(_)) {
        return Err(args::fail(err));
    }
    let t = match f.partial {
        Some(r) => match args::to_lua(lua, &r)? {
            Value::Table(t) => t,
            _ => lua.create_table()?,
        },
        None => {
            let t = lua.create_table()?;
            t.set("host", host)?;
            t
        }
    };
    t.set("ok", false)?;
    t.set("err", err)?;
    Ok(Value::Table(t))
}

/// A detached run (`claude.run(prompt, {detach = true})`): a tmux-backed job whose `wait` gives the result.
struct ClaudeJob {
    /// `None` while a wait is under way.
    d: RefCell<Option<claude::Detached>>,
    on_event: Option<Function>,
    check: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitOpts {
    poll: Option<Dur>,
    timeout: Option<Dur>,
    #[allow(dead_code)]
    on_event: Option<serde::de::IgnoredAny>,
}

impl ClaudeJob {
    fn field<T>(&self, f: impl FnOnce(&claude::Detached) -> T) -> mlua::Result<T> {
        self.d
            .borrow()
            .as_ref()
            .map(f)
            .ok_or_else(|| args::fail("claude job: a wait is under way"))
    }
}

impl UserData for ClaudeJob {
    fn add_fields<M: UserDataFields<Self>>(fields: &mut M) {
        fields.add_field_method_get("id", |_, this| this.field(|d| d.job.id.clone()));
        fields.add_field_method_get("host", |_, this| this.field(|d| d.job.host.clone()));
        fields.add_field_method_get("tmux", |_, this| this.field(|d| d.job.tmux_session()));
        fields.add_field_method_get("stderr", |_, this| this.field(|d| d.stderr.clone()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // `job:wait{poll?, timeout?, on_event?}` → the result, as `claude.run` gives it.
        methods.add_async_method("wait", |lua, this, opts: Value| async move {
            const W: &str = "claude job:wait";
            let (o, mut cbs) = args::opts::<WaitOpts>(&lua, W, 1, opts, &["on_event"])?;
            let on_event = cbs.take("on_event").or_else(|| this.on_event.clone());
            let Some(mut d) = this.d.borrow_mut().take() else {
                return Err(args::fail(format!("{W}: a wait is under way already")));
            };
            let named = format!("claude.run({}, job {})", d.job.host, d.job.id);
            let host = d.job.host.clone();
            let llm = services::llm(&lua);
            let remote = services::remote(&lua);
            let state = crate::lua::ctx(&lua).state.clone();
            let mut hook = on_event.map(|f| hook(&lua, f));
            let out = claude::finish(
                llm.budget(),
                &remote,
                &state,
                &mut d,
                o.poll.map_or(Duration::from_secs(2), |p| {
                    p.0.max(Duration::from_millis(50))
                }),
                o.timeout.map(|t| t.0),
                hook.as_mut().map(|f| f as claude::OnEvent<'_>),
            )
            .await;
            *this.d.borrow_mut() = Some(d);
            match out {
                Ok(r) => done(&lua, this.check, &r),
                Err(f) => failed(&lua, &named, &host, this.check, f),
            }
        });
    }
}

//! `baton.notify(title, body [, opts])`: one message to every channel of the fleet's `notify` table, sent
//! concurrently (core: `core::notify`). Registered into the `baton` table by `baton::register`.
use std::sync::Arc;

use mlua::{Function, Lua, Table, Value};
use serde::Deserialize;

use super::{args, services};
use crate::core::duration::Dur;
use crate::core::notify::{self, Message, Notifier, NotifyError, Priority};

/// The `notify` function for the `baton` table.
pub fn register(lua: &Lua) -> mlua::Result<Function> {
    lua.create_async_function(send)
}

/// A priority as a name or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum PriorityValue {
    Name(String),
    Level(i64),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NotifyOpts {
    priority: Option<PriorityValue>,
    #[serde(default)]
    tags: Vec<String>,
    click: Option<String>,
    to: Option<Vec<String>>,
    #[serde(default)]
    check: bool,
    timeout: Option<Dur>,
}

const F: &str = "baton.notify";

fn notifier(lua: &Lua) -> Arc<Notifier> {
    services::service(lua, |ctx| Arc::new(Notifier::from_fleet(&ctx.fleet)))
}

/// Returns `{ {channel, ok, err}, … }`; a failing channel is logged, and raised only with `check = true`.
async fn send(lua: Lua, (title, body, opts): (Value, Value, Value)) -> mlua::Result<Table> {
    let title = args::string(F, 1, "title", &title)?;
    let body = match &body {
        Value::Nil => String::new(),
        other => args::string(F, 2, "body", other)?,
    };
    let (opts, _) = args::opts::<NotifyOpts>(&lua, F, 3, opts, &[])?;
    let misuse = |e: NotifyError| args::fail(format!("{F}: options.{e}"));
    let priority = match &opts.priority {
        None => None,
        Some(PriorityValue::Name(s)) => Some(Priority::parse(s).map_err(misuse)?),
        Some(PriorityValue::Level(n)) => Some(Priority::parse(&n.to_string()).map_err(misuse)?),
    };
    let msg = Message {
        title,
        body,
        priority,
        tags: opts.tags,
        click: opts.click,
    };
    let n = notifier(&lua);
    if n.channels().is_empty() && opts.to.is_none() {
        if opts.check {
            return Err(args::fail(format!("{F}: {}", NotifyError::NoChannel)));
        }
        tracing::warn!("{F}: {}", NotifyError::NoChannel);
        return lua.create_table();
    }
    let timeout = opts.timeout.map_or(notify::DEFAULT_TIMEOUT, |d| d.0);
    let deliveries = n
        .send(&msg, opts.to.as_deref(), timeout)
        .await
        .map_err(misuse)?;
    if opts.check
        && let Some(failed) = notify::failures(&deliveries)
    {
        return Err(args::fail(format!("{F}: {failed}")));
    }
    let out = lua.create_table_with_capacity(deliveries.len(), 0)?;
    for (i, d) in deliveries.iter().enumerate() {
        let t = lua.create_table_with_capacity(0, 3)?;
        t.set("channel", d.channel.name())?;
        t.set("ok", d.error.is_none())?;
        t.set("err", d.error.as_deref())?;
        out.raw_set(i + 1, t)?;
    }
    Ok(out)
}

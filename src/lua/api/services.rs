//! Services the bindings share, kept in the Lua state's app data and built on first use (HTTP clients,
//! ssh masters, the router and its ledger), so start-up stays cheap and every binding shares one instance.
use std::sync::Arc;

use mlua::Lua;

use crate::core::llm::Llm;
use crate::core::remote::{Remote, Shared};

/// The service of type `T`, built by `init` (which reads the runtime context) the first time it is asked for.
pub fn service<T: Clone + 'static>(lua: &Lua, init: impl FnOnce(&crate::lua::Ctx) -> T) -> T {
    if let Some(s) = lua.app_data_ref::<T>() {
        return s.clone();
    }
    let s = init(&crate::lua::ctx(lua));
    lua.set_app_data(s.clone());
    s
}

/// The remote-host service shared by `ssh` and `sync` (one ssh master per host for the whole runtime).
pub fn remote(lua: &Lua) -> Arc<Remote> {
    service(lua, |_| Shared::default()).get(&crate::lua::ctx(lua).fleet)
}

/// The LLM services shared by `ollama`, `openrouter` and `route` (clients, limiter, router, ledger).
pub fn llm(lua: &Lua) -> Arc<Llm> {
    // The run's id, when there is one, goes on every ledger row of its calls.
    let run = crate::lua::journal::run_id(lua);
    service(lua, move |ctx| {
        Arc::new(Llm::new(ctx.fleet.clone(), ctx.state.clone()).for_run(run))
    })
}

//! The `route` global.
use mlua::Lua;

pub fn register(_lua: &Lua) -> mlua::Result<()> {
    Ok(())
}

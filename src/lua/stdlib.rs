//! Lua modules embedded from `stdlib/` (by build.rs), found by `require("baton.x")` and loaded with chunk
//! names like `@stdlib/baton/x.lua` so tracebacks point at real files. `stdlib/_meta/` holds the LuaLS
//! stubs: embedded too (for `baton stubs`), never loaded as modules.
include!(concat!(env!("OUT_DIR"), "/stdlib_files.rs"));

/// The source of module `name` (`baton.git` → `stdlib/baton/git.lua`, or `…/init.lua`).
pub fn find(name: &str) -> Option<(String, &'static str)> {
    if name.starts_with('_') || name.contains("._") {
        return None;
    }
    let base = name.replace('.', "/");
    [format!("{base}.lua"), format!("{base}/init.lua")]
        .into_iter()
        .find_map(|p| {
            FILES
                .iter()
                .find(|(f, _)| *f == p)
                .map(|(f, src)| (format!("stdlib/{f}"), *src))
        })
}

/// The LuaLS stub files (`_meta/*.lua`).
pub fn stubs() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES
        .iter()
        .filter(|(f, _)| f.starts_with("_meta/"))
        .copied()
}

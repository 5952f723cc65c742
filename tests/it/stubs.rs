//! The LuaLS stubs in `stdlib/_meta/` and the registered API cannot drift: every function reachable from
//! a global API table is declared in a stub, and every declared function exists.
use std::collections::BTreeSet;

use crate::common::Env;

fn globals() -> Vec<&'static str> {
    baton::lua::global_names().collect()
}

fn registered() -> BTreeSet<String> {
    let env = Env::new("stubs");
    let script = format!(
        r#"
        local seen = {{}}
        local function walk(t, path)
          if seen[t] then return end
          seen[t] = true
          for k, v in pairs(t) do
            if type(k) == "string" and k:sub(1, 1) ~= "_" then
              if type(v) == "function" then print(path .. "." .. k)
              elseif type(v) == "table" and k ~= "fleet" then walk(v, path .. "." .. k) end
            end
          end
        end
        for _, g in ipairs({{ {} }}) do
          if type(_G[g]) == "table" then walk(_G[g], g) end
        end"#,
        globals()
            .iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = env.run_lua("walk.lua", &script, &[]);
    out.ok();
    out.stdout.lines().map(str::to_string).collect()
}

fn declared() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/_meta");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            text.starts_with("---@meta"),
            "stub files start with ---@meta"
        );
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("function ") else {
                continue;
            };
            let name = rest.split('(').next().unwrap().trim();
            // `function Task:wait()` documents a handle method, not a table function.
            if !name.contains(':') && globals().iter().any(|g| name.starts_with(&format!("{g}."))) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn stubs_match_the_registered_api() {
    let registered = registered();
    let declared = declared();
    let missing: Vec<_> = registered.difference(&declared).collect();
    let stale: Vec<_> = declared.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "registered but not in stdlib/_meta: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in stdlib/_meta but not registered: {stale:?}"
    );
    assert!(registered.contains("baton.exec") && registered.contains("baton.json.decode"));
}

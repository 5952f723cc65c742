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

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }

    #[test]
    fn every_stdlib_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
        let mut files = Vec::new();
        walk(&root, &root, &mut files);
        assert!(!files.is_empty());
        for f in files {
            let src = std::fs::read_to_string(root.join(&f)).unwrap();
            assert!(
                FILES.iter().any(|(name, body)| *name == f && *body == src),
                "stdlib/{f} is not embedded (or is stale)"
            );
        }
    }

    #[test]
    fn modules_resolve_and_stubs_do_not() {
        assert_eq!(find("baton.test").unwrap().0, "stdlib/baton/test.lua");
        assert!(find("_meta.baton").is_none());
        assert!(find("baton.nope").is_none());
        assert!(FILES.iter().any(|(f, _)| *f == "_meta/baton.lua"));
    }
}

//! Lua spec files under `tests/lua/`, run by the real binary: one Rust test per file.
use crate::common::Env;

macro_rules! specs {
    ($($name:ident),* $(,)?) => {
        const SPECS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run_spec(stringify!($name));
            }
        )*
    };
}

specs!(runtime, stdlib_helpers, llm_api);

fn run_spec(name: &str) {
    let env = Env::new(&format!("spec-{name}"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lua")
        .join(format!("{name}.lua"));
    let out = env.baton(&["run", path.to_str().unwrap()]);
    println!("{}", out.stdout);
    assert!(
        !out.stdout.contains("FAIL "),
        "{name}.lua had failures:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    out.ok();
    assert!(
        out.stdout.contains(" passed, 0 failed"),
        "{name}.lua did not finish:\n{}",
        out.stdout
    );
}

#[test]
fn every_spec_file_has_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lua");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".lua")
            .to_string();
        assert!(
            SPECS.contains(&name.as_str()),
            "tests/lua/{name}.lua is not listed in specs!(…) in tests/it/lua_specs.rs"
        );
    }
}

/// `baton.json.array` marks a table as a list, so an empty one encodes as `[]` (a plain empty table reads as
/// an object); decoded lists keep the mark, so `[]` round-trips; a non-table or a table with another
/// metatable is refused, naming the function and argument.
#[test]
fn json_array_keeps_empty_lists_lists() {
    let env = crate::common::Env::new("json-array");
    let out = env.run_lua(
        "j.lua",
        r#"print(baton.json.encode({ a = baton.json.array(), b = {}, c = baton.json.array({ 1, 2 }) }))
print(baton.json.encode(baton.json.decode('{"x":[],"y":{}}')))
print(select(2, pcall(baton.json.array, 5)))
print(select(2, pcall(baton.json.array, setmetatable({}, {}))))"#,
        &[],
    );
    out.ok();
    assert_eq!(
        out.stdout,
        "{\"a\":[],\"b\":{},\"c\":[1,2]}\n{\"x\":[],\"y\":{}}\n\
         baton.json.array: argument 1 (list) must be a table or nil, got integer\n\
         baton.json.array: argument 1 (list) already has a metatable of its own\n"
    );
}

//! The usage examples in the LuaLS stubs (`stdlib/_meta/*.lua`, fenced ```lua blocks in doc comments)
//! compile, and the functions issue 27 named each have one; the examples that need no server also run.
use crate::common::Env;

/// Each example: the stub file it is in, the line it starts on, and its code.
fn examples() -> Vec<(String, usize, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/_meta");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut open: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let Some(doc) = line.strip_prefix("---") else {
                assert!(open.is_none(), "{file}:{}: example not closed", i + 1);
                continue;
            };
            // `--- text` and `---text` are both doc comments; code keeps its own indentation after that.
            let doc = doc.strip_prefix(' ').unwrap_or(doc);
            match (&mut open, doc.trim_end()) {
                (None, "```lua") => open = Some((i + 1, String::new())),
                (Some(_), "```") => {
                    let (start, code) = open.take().unwrap();
                    found.push((file.clone(), start, code));
                }
                (Some((_, code)), _) => {
                    code.push_str(doc);
                    code.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    found
}

#[test]
fn stub_examples_compile_and_the_named_functions_have_one() {
    let examples = examples();
    for call in [
        "ollama.generate(",
        "ollama.embed(",
        "ollama.pull(",
        "openrouter.models(",
        "openrouter.credits(",
        "ssh.online(",
        "ssh.wake(",
        "sync.git_remote(",
        "schedule.next(",
        "schedule.jobs(",
        ":cancel(",
    ] {
        assert!(
            examples.iter().any(|(_, _, code)| code.contains(call)),
            "no stub example calls {call}"
        );
    }
    let env = Env::new("shell-stub-examples");
    let mut paths = Vec::new();
    for (n, (file, line, code)) in examples.iter().enumerate() {
        let name = format!("{}_{line}_{n}.lua", file.trim_end_matches(".lua"));
        paths.push((env.dir.write(&name, code), format!("{file}:{line}")));
    }
    let mut args = vec!["check"];
    args.extend(paths.iter().map(|(p, _)| p.to_str().unwrap()));
    let out = env.baton(&args);
    assert_eq!(
        out.code,
        Some(0),
        "an example does not compile (files named stub_LINE_N.lua):\n{}\n{}",
        out.stdout,
        out.stderr
    );
    // A broken example is caught: the check is not a no-op.
    let broken = env
        .dir
        .write("broken.lua", "for _, t in ipairs(x) do print(t)\n");
    let out = env.baton(&["check", broken.to_str().unwrap()]);
    assert_ne!(out.code, Some(0), "{out:?}");
}

/// The examples that need no server, model or remote host run as written.
#[test]
fn offline_stub_examples_run() {
    let env = Env::new("shell-stub-run");
    let mut ran = 0;
    for (file, line, code) in examples() {
        let offline = ["schedule.next(", "schedule.jobs(", ":cancel("]
            .iter()
            .any(|c| code.contains(c));
        if !offline {
            continue;
        }
        let out = env.run_lua("example.lua", &code, &[]);
        assert_eq!(out.code, Some(0), "{file}:{line}:\n{code}\n{}", out.stderr);
        ran += 1;
        if code.contains(":cancel(") {
            assert_eq!(out.stdout, "cancelled\n", "{file}:{line}");
        }
        if code.contains("schedule.jobs(") {
            assert!(
                out.stdout.starts_with("backup\t0 3 * * *\t"),
                "{}",
                out.stdout
            );
        }
    }
    assert_eq!(ran, 3);
}

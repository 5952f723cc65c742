//! Playbooks as a new user meets them (issue 27): errors of tail calls keep their `file:line`.
use crate::common::Env;

#[test]
fn a_tail_call_error_names_the_script_line() {
    let env = Env::new("shell-tail");
    for (name, script, line, message) in [
        (
            "tail.lua",
            "local x = 1\nreturn ssh.each(42)\n",
            2,
            "ssh.each: argument 1 (hosts) must be a table, got number 42",
        ),
        (
            "plain.lua",
            "local x = 1\nlocal r = ssh.each(42)\n",
            2,
            "ssh.each: argument 1 (hosts) must be a table, got number 42",
        ),
        // In a function: the line of its `return`, not the line that called the function.
        (
            "inner.lua",
            "local function f()\n  return sync.git_remote(5)\nend\nlocal y = f()\n",
            2,
            "sync.git_remote: argument 1 (host) must be a string, got number 5",
        ),
        (
            "sleep.lua",
            "\n\nreturn baton.sleep('soon')\n",
            3,
            "baton.sleep: argument 1 (dur)",
        ),
    ] {
        let out = env.run_lua(name, script, &[]);
        out.expect_code(1);
        let path = env.dir.join(name);
        let want = format!("{}:{line}: {message}", path.display());
        assert!(
            out.stderr.starts_with(&want),
            "{name}: want {want:?}\n{}",
            out.stderr
        );
    }
}

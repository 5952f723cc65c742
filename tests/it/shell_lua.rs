//! Playbooks and the fleet as a new user meets them (issue 27): errors of tail calls keep their `file:line`,
//! and `baton.fleet.hosts` has `local`.
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

#[test]
fn fleet_hosts_show_the_implicit_local_host() {
    let env =
        Env::new("shell-local").with_fleet("return { hosts = { brain = { ssh = 'me@brain' } } }");
    let out = env.run_lua(
        "hosts.lua",
        r#"local names = {}
        for name in pairs(baton.fleet.hosts) do names[#names + 1] = name end
        table.sort(names)
        print(table.concat(names, ","), baton.fleet.hosts["local"].ssh, baton.fleet.hosts.brain.ssh)
        print(ssh.run("local", "echo here").stdout)"#,
        &[],
    );
    out.ok();
    assert_eq!(out.stdout, "brain,local\tfalse\tme@brain\nhere\n\n");
    // A fleet file's own `local` is kept as written.
    let env = Env::new("shell-local-own")
        .with_fleet("return { hosts = { ['local'] = { ssh = false, role = 'desk' } } }");
    let out = env.run_lua("own.lua", r#"print(baton.fleet.hosts["local"].role)"#, &[]);
    out.ok();
    assert_eq!(out.stdout, "desk\n");
}

//! Playbooks and the fleet as a new user meets them (issue 27): errors of tail calls keep their `file:line`,
//! `baton.fleet.hosts` has `local`, and a value of the wrong type in the fleet file is told in Lua's words.
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
        // A method: the task's error carries no location of its own, so it gets the line of the wait.
        (
            "wait.lua",
            "local t = baton.spawn(function() error('plain', 0) end)\nlocal x = 1\nreturn t:wait()\n",
            3,
            "plain",
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

#[test]
fn fleet_type_errors_read_in_lua_terms() {
    for (body, want) in [
        (
            "budget = { monthly_usd = 'ten' }",
            r#"budget.monthly_usd: wrong type: expected a number, got string "ten""#,
        ),
        (
            "hosts = { pc = { ollama_parallel = 4.5 } }",
            "hosts.pc.ollama_parallel: wrong type: expected an integer from 0 to 4294967295, got number 4.5",
        ),
        (
            "tiers = { { name = 'x', provider = 'ollama', model = 'm', price = { 1, 'a' } } }",
            r#"tiers[1].price[2]: wrong type: expected a number, got string "a""#,
        ),
        (
            "hosts = { pc = { wake = { port = -1 } } }",
            "hosts.pc.wake.port: bad value: expected an integer from 0 to 65535, got integer -1",
        ),
        (
            "hosts = { pc = { role = true } }",
            "hosts.pc.role: wrong type: expected a string, got boolean true",
        ),
    ] {
        let env = Env::new("shell-fleet-type").with_fleet(&format!("return {{ {body} }}"));
        let out = env.baton(&["fleet"]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(want),
            "{body}: want {want:?}\n{}",
            out.stderr
        );
        for serde_word in ["f64", "u32", "u16", "floating point", "`"] {
            assert!(
                !out.stderr.contains(serde_word),
                "{body}: {serde_word:?} in {}",
                out.stderr
            );
        }
    }
}

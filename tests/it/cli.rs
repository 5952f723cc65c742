//! The command line with real processes: exit codes, error text with file:line, `check`, `fleet`.
use crate::common::Env;

#[test]
fn run_passes_args_and_exits_zero() {
    let env = Env::new("cli-args");
    let out = env.run_lua(
        "args.lua",
        "print(#baton.args, baton.args[1], baton.args[2])",
        &["one", "--two"],
    );
    out.ok();
    assert_eq!(out.stdout, "2\tone\t--two\n");
}

//! Shared by the ssh and sync benches: the sshd harness from the tests, an in-process baton Lua runtime over
//! its fleet, and timing helpers.
#![allow(dead_code)]
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../tests/it/sshd.rs"]
pub mod sshd;

use baton::core::state::State;
use baton::lua::Ctx;

/// A baton Lua runtime whose fleet is the harness's hosts (state in `dir/state`).
pub fn runtime(fleet: &sshd::SshFleet) -> mlua::Lua {
    let file = fleet.dir.join("fleet.lua");
    std::fs::write(&file, fleet.fleet_lua()).unwrap();
    let fleet_def = baton::lua::fleet::load_file(&file).expect("fleet file");
    let ctx = Ctx {
        fleet: Arc::new(fleet_def),
        state: State::new(fleet.dir.join("state")),
        script: "bench".into(),
        args: Vec::new(),
    };
    baton::lua::new_runtime(ctx).expect("runtime")
}

/// Runs a Lua chunk to completion and returns how long it took.
pub async fn lua_time(lua: &mlua::Lua, code: &str) -> Duration {
    let started = Instant::now();
    if let Err(e) = lua.load(code).exec_async().await {
        panic!("{}", baton::lua::format_error(&e));
    }
    started.elapsed()
}

/// Runs a command to success and returns how long it took.
pub fn cmd_time(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// An OpenSSH master for `host` on `socket`, opened with the harness's config (the "floor" baseline).
pub fn open_master(fleet: &sshd::SshFleet, host: &str, socket: &Path) {
    cmd_time(
        fleet
            .ssh()
            .args(["-M", "-f", "-N", "-o", "ControlPersist=yes", "-S"])
            .arg(socket)
            .arg(host),
    );
}

pub fn close_master(fleet: &sshd::SshFleet, host: &str, socket: &Path) {
    let _ = fleet
        .ssh()
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", host])
        .output();
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// `  label  value  (ratio x, target ≤ t)`.
pub fn report(label: &str, value: Duration, base: Duration, target: Option<f64>) {
    let r = ratio(value, base);
    let verdict = match target {
        Some(t) if r <= t => format!("target ≤ {t:.2}: ok"),
        Some(t) => format!("target ≤ {t:.2}: MISSED"),
        None => "reported".to_string(),
    };
    println!(
        "  {label:<48} {:>12}   ratio {r:>6.2}x  ({verdict})",
        ms(value)
    );
}

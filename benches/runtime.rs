//! Runtime figures, each against a baseline measured in the same run:
//! - median wall time of `baton run empty.lua` vs `lua5.4 empty.lua` (target ratio ≤ 3);
//! - 10 000 `baton.spawn` tasks gathered (target < 100 ms), next to 10 000 plain coroutines in `lua5.4`;
//! - `baton run empty.lua` with a fleet file of 100 000 hosts (goal <= 0.5 s), next to the same run without a
//!   fleet file and to `lua5.4` evaluating that fleet file alone (what any reader of it pays); and
//!   `baton fleet` on it, which reads every host (a run reads only the hosts it uses).
//!
//! Run: `cargo bench --bench runtime` (needs `lua5.4`: `apt-get install lua5.4`).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_once(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("start process");
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    took
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("start process");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn main() {
    let baton = env!("CARGO_BIN_EXE_baton");
    let dir = std::env::temp_dir().join(format!("baton-bench-runtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.lua");
    std::fs::write(&empty, "").unwrap();
    let lua = which("lua5.4").unwrap_or_else(|| {
        eprintln!("lua5.4 is needed for the baseline: apt-get install lua5.4");
        std::process::exit(1);
    });

    // Interleave the two so machine noise hits both alike.
    let isolated = |cmd: &mut Command| {
        cmd.env("BATON_STATE_DIR", dir.join("state"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env_remove("BATON_FLEET");
    };
    let runs = 200;
    let (mut b, mut l) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut cmd = Command::new(baton);
        cmd.arg("run").arg(&empty);
        isolated(&mut cmd);
        b.push(time_once(&mut cmd));
        l.push(time_once(Command::new(&lua).arg(&empty)));
    }
    let (bm, lm) = (median(b), median(l));
    println!(
        "startup: baton run empty.lua  median {:>7.2} ms  ({runs} runs)",
        ms(bm)
    );
    println!(
        "startup: lua5.4 empty.lua     median {:>7.2} ms  (baseline)",
        ms(lm)
    );
    println!(
        "startup ratio baton/lua5.4: {:.2} (target <= 3)",
        bm.as_secs_f64() / lm.as_secs_f64()
    );

    let spawn = dir.join("spawn.lua");
    std::fs::write(
        &spawn,
        "local N = 10000\nlocal t0 = baton.clock()\nlocal tasks = {}\nfor i = 1, N do tasks[i] = baton.spawn(function() return i end) end\n\
         local r = baton.gather(tasks)\nassert(r[N] == N)\nprint((baton.clock() - t0) * 1000)\n",
    )
    .unwrap();
    let coroutines = dir.join("coroutines.lua");
    std::fs::write(
        &coroutines,
        "local N = 10000\nlocal t0 = os.clock()\nlocal r = {}\nfor i = 1, N do local co = coroutine.create(function() return i end)\n\
         local _, v = coroutine.resume(co) r[i] = v end\nassert(r[N] == N)\nprint((os.clock() - t0) * 1000)\n",
    )
    .unwrap();
    let mut spawn_ms = Vec::new();
    let mut co_ms = Vec::new();
    for _ in 0..5 {
        let mut cmd = Command::new(baton);
        cmd.arg("run").arg(&spawn);
        isolated(&mut cmd);
        spawn_ms.push(output(&mut cmd).parse::<f64>().unwrap());
        co_ms.push(
            output(Command::new(&lua).arg(&coroutines))
                .parse::<f64>()
                .unwrap(),
        );
    }
    spawn_ms.sort_by(f64::total_cmp);
    co_ms.sort_by(f64::total_cmp);
    println!(
        "spawn: 10 000 baton.spawn + gather  median {:>7.2} ms  (target < 100 ms)",
        spawn_ms[2]
    );
    println!(
        "spawn: 10 000 lua5.4 coroutines     median {:>7.2} ms  (baseline: no scheduler, no tasks)",
        co_ms[2]
    );

    let fleet = dir.join("fleet.lua");
    std::fs::write(&fleet, BIG_FLEET).unwrap();
    let (mut with, mut without, mut eval, mut all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut cmd = Command::new(baton);
        cmd.arg("run").arg(&empty);
        isolated(&mut cmd);
        without.push(time_once(&mut cmd));
        cmd.env("BATON_FLEET", &fleet);
        with.push(time_once(&mut cmd));
        eval.push(time_once(Command::new(&lua).arg(&fleet)));
        let mut cmd = Command::new(baton);
        cmd.arg("fleet");
        isolated(&mut cmd);
        cmd.env("BATON_FLEET", &fleet);
        all.push(time_once(&mut cmd));
    }
    println!(
        "fleet: baton run empty.lua, 100 000 hosts  median {:>7.2} ms  (goal <= 500 ms)",
        ms(median(with))
    );
    println!(
        "fleet: baton run empty.lua, no fleet file  median {:>7.2} ms  (baseline)",
        ms(median(without))
    );
    println!(
        "fleet: lua5.4 fleet.lua (evaluation only)  median {:>7.2} ms  (baseline)",
        ms(median(eval))
    );
    println!(
        "fleet: baton fleet, 100 000 hosts (all read) median {:>7.2} ms",
        ms(median(all))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fleet file of 100 000 hosts, each with an ssh destination, tags and a MAC address.
const BIG_FLEET: &str = r#"local hosts = {}
for i = 1, 100000 do
  hosts["h" .. i] = { ssh = "me@10.0." .. (i % 250) .. "." .. (i % 200 + 1), tags = { "a", "b" }, mac = "aa:bb:cc:dd:ee:ff" }
end
hosts.engine = { ssh = false, ollama = "http://127.0.0.1:9" }
return { hosts = hosts, tiers = { { name = "local", provider = "ollama", host = "engine", models = { code = "m", reason = "m" } } } }
"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|p| Path::new(p).join(name))
        .find(|p| p.is_file())
}

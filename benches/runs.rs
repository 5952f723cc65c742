//! Durable-run figures (issue 28), each beside a peer measured in the same run (`cargo bench --bench runs`):
//! - start-up: `baton run empty.lua` vs `lua5.4 empty.lua` (median of interleaved runs, target ratio ≤ 3;
//!   with `$BATON_BENCH_BASE` naming another baton binary, e.g. one built before runs were recorded, that
//!   one too), and a run whose one call is journaled (`ssh.online("local")`, `baton.exec({"true"})`): what
//!   the first journaled call adds (the state db opened, the run row and the step written, the WAL made and
//!   checkpointed at exit), beside four small synced writes on the same file system;
//! - journaling per call: 10 000 `ssh.online("local")` (answers at once: the host is this machine) and
//!   10 000 `ollama.version()` against a loopback stub, in a `baton run` (journaled) vs the same loop in
//!   `baton repl` fed on stdin (the same binary and runtime with no run, so no journal): the difference per
//!   call (target ≤ 100 µs);
//! - `baton.step` with an empty body: 10 000 of them vs 10 000 plain calls of the same function, in the same
//!   run (target ≤ 100 µs);
//! - beside LangGraph: a 10-node chain with langgraph-checkpoint-sqlite's SqliteSaver on a file
//!   (`benches/langgraph_chain.py`, in a venv `target/langgraph-venv` the bench makes with pip when it is
//!   missing; `$BATON_BENCH_LANGGRAPH` names another Python) vs a playbook of 10 `baton.step`s, the same
//!   number of runs: per-step time (target: baton ≤ 1/20 of LangGraph's), all ten steps and steps 2–10
//!   (the first opens the state db and writes the run row);
//! - journal size of 10 000 runs × 10 steps (target ≤ 50 MB), `baton runs` with 100 000 runs (target
//!   ≤ 100 ms), and `baton resume` of a 1 000-step run until its first live call (target ≤ 200 ms).
//!
//! Run: `cargo bench --bench runs` (needs `lua5.4`; LangGraph needs python3 with venv and PyPI once).
#[path = "support/figures.rs"]
mod figures;
#[path = "../tests/it/llm/server.rs"]
mod server;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baton::core::runs::{NewRun, RunStatus, Runs, Step};
use baton::core::state::State;
use figures::{Table, median, ms};

/// Calls per loop of the per-call figures.
const CALLS: usize = 10_000;
/// Rounds of the per-call figures (run and REPL alternate).
const ROUNDS: usize = 5;
/// Interleaved start-ups.
const STARTS: usize = 100;
/// Runs of the 10-step chain, for baton and for LangGraph.
const CHAIN_RUNS: usize = 100;
/// Whole LangGraph processes timed (each imports langgraph: about a second).
const COLD_RUNS: usize = 5;
/// Runs kept for the size figure, and for `baton runs`.
const SIZE_RUNS: usize = 10_000;
const LIST_RUNS: usize = 100_000;
/// Steps before the first live call of the resumed run.
const RESUME_STEPS: usize = 1_000;

fn main() {
    let bench = Bench::new();
    let mut table = Table::default();
    startup(&bench, &mut table);
    let stub = start_stub();
    per_call(&bench, &stub, &mut table);
    let template = langgraph(&bench, &mut table);
    journal_size(&bench, &template, &mut table);
    resume(&bench, &mut table);
    let (collided, started) = (
        COLLIDED.load(Ordering::Relaxed),
        STARTED.load(Ordering::Relaxed),
    );
    table.row(
        "runs failed on a run id already taken (started again)",
        format!("{collided} of {started} processes"),
        "0",
        Some(collided == 0),
    );
    println!("Durable runs (release build, {})", bench.dir.display());
    table.print();
    let _ = std::fs::remove_dir_all(&bench.dir);
}

struct Bench {
    baton: PathBuf,
    lua: PathBuf,
    dir: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let lua = which("lua5.4").unwrap_or_else(|| {
            eprintln!("lua5.4 is needed for the start-up baseline: apt-get install lua5.4");
            std::process::exit(1);
        });
        let dir = std::env::temp_dir().join(format!("baton-bench-runs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Bench {
            baton: PathBuf::from(env!("CARGO_BIN_EXE_baton")),
            lua,
            dir,
        }
    }

    /// A file in the bench's directory with `text`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `baton ARGS…` with its state in `state` (under the bench's directory), no user config, no fleet file.
    fn baton(&self, state: &str, args: &[&std::ffi::OsStr]) -> Command {
        let mut cmd = Command::new(&self.baton);
        cmd.args(args)
            .env("BATON_STATE_DIR", self.dir.join(state))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env_remove("BATON_FLEET")
            .env_remove("BATON_BENCH_CRASH");
        cmd
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Start-up with and without a journaled call, beside `lua5.4` (and beside `$BATON_BENCH_BASE`, another
/// baton binary, e.g. one built before runs were recorded).
fn startup(b: &Bench, table: &mut Table) {
    let empty = b.file("empty.lua", "");
    let online = b.file("online1.lua", "ssh.online(\"local\")\n");
    let exec = b.file("exec1.lua", "baton.exec({ \"true\" })\n");
    let base = std::env::var_os("BATON_BENCH_BASE").map(PathBuf::from);
    let (mut e, mut l, mut o, mut x, mut z, mut f) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    // Each round runs the six in a rotated order, so each follows every other one as often: a run's exit
    // checkpoint (or the fsync probe) leaves write-back behind that slows whatever comes next.
    for round in 0..STARTS {
        for k in 0..6 {
            match (k + round) % 6 {
                0 => e.push(time_once(
                    b.baton("state-start", &[os("run"), empty.as_os_str()])
                        .stdout(Stdio::null()),
                )),
                1 => l.push(time_once(Command::new(&b.lua).arg(&empty))),
                2 => {
                    if let Some(base) = &base {
                        let mut cmd = Command::new(base);
                        cmd.arg("run")
                            .arg(&empty)
                            .env("BATON_STATE_DIR", b.dir.join("state-base"))
                            .env("XDG_CONFIG_HOME", b.dir.join("config"))
                            .env_remove("BATON_FLEET");
                        z.push(time_once(cmd.stdout(Stdio::null())));
                    }
                }
                3 => o.push(time_once(
                    b.baton("state-start", &[os("run"), online.as_os_str()])
                        .stdout(Stdio::null()),
                )),
                4 => x.push(time_once(
                    b.baton("state-start", &[os("run"), exec.as_os_str()])
                        .stdout(Stdio::null()),
                )),
                _ => f.push(four_fsyncs(&b.dir)),
            }
        }
    }
    let (e, l, o, x) = (median(e), median(l), median(o), median(x));
    let ratio = e.as_secs_f64() / l.as_secs_f64();
    table.row(
        &format!("baton run empty.lua, median of {STARTS} interleaved"),
        ms(e),
        "",
        None,
    );
    table.row("lua5.4 empty.lua (baseline)", ms(l), "", None);
    table.row(
        "start-up ratio baton / lua5.4",
        format!("{ratio:.2}x"),
        "≤ 3x",
        Some(ratio <= 3.0),
    );
    if let Some(base) = &base {
        let z = median(z);
        table.row(
            &format!(
                "baton run empty.lua, $BATON_BENCH_BASE ({})",
                base.display()
            ),
            format!(
                "{} ({:.2}x lua5.4; this build {:+.2} ms)",
                ms(z),
                z.as_secs_f64() / l.as_secs_f64(),
                (e.as_secs_f64() - z.as_secs_f64()) * 1000.0
            ),
            "",
            None,
        );
    }
    table.row(
        "baton run of one ssh.online(\"local\") (run row + 1 step)",
        format!("{} ({})", ms(o), ms_diff(o, e)),
        "reported",
        None,
    );
    table.row(
        "  4 × (write 4 KiB + fsync) on the same file system",
        ms(median(f)),
        "",
        None,
    );
    table.row(
        "baton run of one baton.exec({\"true\"}) (run row + 1 step)",
        format!("{} ({})", ms(x), ms_diff(x, e)),
        "reported",
        None,
    );
}

/// A run whose first journaled call creates the database's WAL and whose exit checkpoints it syncs four
/// times (the new WAL, its directory, the WAL and the database at the checkpoint): the same number of small
/// synced writes, as the floor of that cost on this machine.
fn four_fsyncs(dir: &Path) -> Duration {
    use std::io::Write;
    let started = Instant::now();
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    for _ in 0..4 {
        file.write_all(&[0u8; 4096]).unwrap();
        file.sync_all().unwrap();
    }
    started.elapsed()
}

/// The loops of the per-call figures, as one line (the REPL evaluates a line at a time): seconds for
/// `CALLS` `ssh.online("local")`, `ollama.version()`, `baton.step("s", f)` and plain `f()`.
fn loops() -> String {
    format!(
        "local N, clock = {CALLS}, baton.clock \
         local function f() end \
         for _ = 1, 10 do ssh.online('local') ollama.version() baton.step('warm', f) f() end \
         local t0 = clock() for _ = 1, N do ssh.online('local') end \
         local t1 = clock() for _ = 1, N do ollama.version() end \
         local t2 = clock() for _ = 1, N do baton.step('s', f) end \
         local t3 = clock() for _ = 1, N do f() end \
         local t4 = clock() "
    )
}

/// Journaled (`baton run`) vs not (`baton repl` on stdin), alternating.
fn per_call(b: &Bench, stub: &str, table: &mut Table) {
    let fleet = b.file(
        "fleet.lua",
        &format!("return {{ hosts = {{ engine = {{ ssh = false, ollama = \"{stub}\" }} }} }}\n"),
    );
    let script = b.file(
        "calls.lua",
        &format!("{} print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)\n", loops()),
    );
    let repl_input = format!("{} return t1 - t0, t2 - t1, t3 - t2, t4 - t3\n", loops());
    let mut journaled: Vec<Vec<f64>> = Vec::new();
    let mut plain: Vec<Vec<f64>> = Vec::new();
    for _ in 0..ROUNDS {
        let mut cmd = b.baton("state-calls", &[os("run"), script.as_os_str()]);
        cmd.env("BATON_FLEET", &fleet);
        journaled.push(numbers(&output(&mut cmd, None)));
        let mut cmd = b.baton("state-calls", &[os("repl")]);
        cmd.env("BATON_FLEET", &fleet);
        plain.push(numbers(&output(&mut cmd, Some(&repl_input))));
    }
    // µs per call, median over the rounds, of figure `i`.
    let us = |rows: &[Vec<f64>], i: usize| {
        let mut v: Vec<f64> = rows.iter().map(|r| r[i] / CALLS as f64 * 1e6).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, name) in [
        (0, "ssh.online(\"local\")"),
        (1, "ollama.version() (loopback stub)"),
    ] {
        let (j, p) = (us(&journaled, i), us(&plain, i));
        table.row(
            &format!("{name} ×{CALLS} in a run (journaled)"),
            format!("{j:.1} µs/call"),
            "",
            None,
        );
        table.row(
            &format!("{name} ×{CALLS} in the REPL (no journal)"),
            format!("{p:.1} µs/call"),
            "",
            None,
        );
        table.row(
            &format!("journaling cost of {name}"),
            format!("{:.1} µs/call", j - p),
            "≤ 100 µs",
            Some(j - p <= 100.0),
        );
    }
    let (step, f) = (us(&journaled, 2), us(&journaled, 3));
    table.row(
        &format!("baton.step(\"s\", function() end) ×{CALLS} in a run"),
        format!("{step:.1} µs/step"),
        "",
        None,
    );
    table.row(
        "the same function called plainly, same run",
        format!("{f:.2} µs/call"),
        "",
        None,
    );
    table.row(
        "cost of an empty baton.step",
        format!("{:.1} µs/step", step - f),
        "≤ 100 µs",
        Some(step - f <= 100.0),
    );
    table.row(
        "baton.step in the REPL (no journal: fn called)",
        format!("{:.2} µs/step", us(&plain, 2)),
        "",
        None,
    );
}

/// LangGraph's 10-node chain with its SQLite checkpointer vs 10 `baton.step`s, `CHAIN_RUNS` runs each.
/// Returns the steps one baton run journaled (the template for the size figure).
fn langgraph(b: &Bench, table: &mut Table) -> Vec<Step> {
    // The first step opens the state database and writes the run's row; steps 2–10 only journal.
    let chain = b.file(
        "chain.lua",
        "local function add_one(n) return n + 1 end\n\
         local t0 = baton.clock()\nlocal n = baton.step(\"node1\", add_one, 0)\nlocal t1 = baton.clock()\n\
         for i = 2, 10 do n = baton.step(\"node\" .. i, add_one, n) end\n\
         local t2 = baton.clock()\nassert(n == 10)\nprint(t2 - t0, t2 - t1)\n",
    );
    let (mut all, mut rest, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CHAIN_RUNS {
        let started = Instant::now();
        let out = output(
            &mut b.baton("state-chain", &[os("run"), chain.as_os_str()]),
            None,
        );
        whole.push(started.elapsed().as_secs_f64());
        let n = numbers(&out);
        all.push(n[0]);
        rest.push(n[1]);
    }
    let per_step = |v: &[f64], steps: usize| v.iter().sum::<f64>() / (v.len() * steps) as f64 * 1e6;
    let (baton_us, rest_us, whole_us) =
        (per_step(&all, 10), per_step(&rest, 9), per_step(&whole, 10));
    table.row(
        &format!("10 baton.steps, {CHAIN_RUNS} runs: per step, all 10 (in-script)"),
        format!("{baton_us:.1} µs/step"),
        "",
        None,
    );
    table.row(
        "  steps 2–10 only (db open, run row written)",
        format!("{rest_us:.1} µs/step"),
        "",
        None,
    );
    table.row(
        "  whole process (start-up included) / 10",
        format!("{whole_us:.1} µs/step"),
        "",
        None,
    );
    match langgraph_python() {
        Ok(python) => {
            for sync in ["full", "normal"] {
                let db = b.dir.join(format!("langgraph-{sync}.sqlite"));
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/langgraph_chain.py");
                let out = output(
                    Command::new(&python)
                        .arg(&script)
                        .arg(&db)
                        .arg(CHAIN_RUNS.to_string())
                        .arg(sync)
                        .env("LANGSMITH_TRACING", "false")
                        .env("LANGCHAIN_TRACING_V2", "false"),
                    None,
                );
                let doc: serde_json::Value =
                    serde_json::from_str(out.trim().lines().last().unwrap_or(""))
                        .unwrap_or_else(|e| panic!("langgraph_chain.py printed {out:?}: {e}"));
                let lg = doc["per_step_us"].as_f64().unwrap();
                let kb_per_run =
                    doc["db_bytes"].as_f64().unwrap() / doc["runs"].as_f64().unwrap() / 1024.0;
                let what = if sync == "full" {
                    "as shipped (WAL, synchronous=FULL)"
                } else {
                    "synchronous=NORMAL, as baton"
                };
                table.row(
                    &format!("LangGraph 10-node chain, SqliteSaver {what}: per step"),
                    format!("{lg:.0} µs/step ({kb_per_run:.1} KiB/run)"),
                    "",
                    None,
                );
                table.row(
                    &format!("  LangGraph ({sync}) / baton, all 10 steps"),
                    format!(
                        "{:.1}x (whole baton process: {:.1}x)",
                        lg / baton_us,
                        lg / whole_us
                    ),
                    "≥ 20x",
                    Some(lg / baton_us >= 20.0),
                );
                table.row(
                    &format!("  LangGraph ({sync}) / baton, steps 2–10"),
                    format!("{:.1}x", lg / rest_us),
                    "≥ 20x",
                    Some(lg / rest_us >= 20.0),
                );
            }
            // Like for like from outside: one 10-node run as a whole process on each side (Python's
            // start and imports, opening the database; baton's start, opening the state db, the exit).
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/langgraph_chain.py");
            let mut cold = Vec::new();
            for i in 0..COLD_RUNS {
                let db = b.dir.join(format!("langgraph-cold-{i}.sqlite"));
                let started = Instant::now();
                output(
                    Command::new(&python)
                        .arg(&script)
                        .arg(&db)
                        .arg("1")
                        .arg("full")
                        .arg("cold")
                        .env("LANGSMITH_TRACING", "false")
                        .env("LANGCHAIN_TRACING_V2", "false"),
                    None,
                );
                cold.push(started.elapsed().as_secs_f64());
            }
            let lg_whole = cold.iter().sum::<f64>() / (cold.len() * 10) as f64 * 1e6;
            table.row(
                &format!(
                    "LangGraph whole process, one 10-node run (as shipped), {COLD_RUNS} runs: / 10"
                ),
                format!("{lg_whole:.0} µs/step"),
                "",
                None,
            );
            table.row(
                "  LangGraph / baton, whole processes",
                format!("{:.0}x", lg_whole / whole_us),
                "≥ 20x",
                Some(lg_whole / whole_us >= 20.0),
            );
        }
        Err(why) => table.row(
            "LangGraph 10-node chain",
            format!("not installed ({why})"),
            "",
            None,
        ),
    }
    let state = State::new(b.dir.join("state-chain"));
    let runs = Runs::open(&state).expect("runs");
    let last = runs.list(1).expect("runs list");
    runs.steps(&last[0].id).expect("steps")
}

/// The venv's Python with langgraph: `$BATON_BENCH_LANGGRAPH`, else `target/langgraph-venv` (made with pip
/// when missing).
fn langgraph_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("BATON_BENCH_LANGGRAPH") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("langgraph-venv");
    let python = venv.join("bin/python");
    let has = |python: &Path| {
        Command::new(python)
            .args(["-c", "import langgraph.checkpoint.sqlite"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return Ok(python);
    }
    eprintln!(
        "making {} (pip install langgraph langgraph-checkpoint-sqlite)",
        venv.display()
    );
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "langgraph",
                "langgraph-checkpoint-sqlite",
            ])
            .status()
            .is_ok_and(|s| s.success());
    if ok && has(&python) {
        Ok(python)
    } else {
        Err(format!(
            "python3 -m venv {0} && {0}/bin/pip install langgraph langgraph-checkpoint-sqlite failed",
            venv.display()
        ))
    }
}

/// 10 000 runs × the 10 steps of a real chain run, written through `Runs`: the database's size; then
/// 100 000 runs and `baton runs` on them.
fn journal_size(b: &Bench, template: &[Step], table: &mut Table) {
    assert_eq!(template.len(), 10, "the chain run journaled 10 steps");
    let dir = b.dir.join("state-size");
    let mut written = 0;
    let mut write_runs = |upto: usize| {
        let state = State::new(&dir);
        let runs = Runs::open(&state).expect("runs");
        while written < upto {
            // One transaction per 1 000 runs: the rows are the same as one per call, made faster.
            state.with(|c| c.execute_batch("BEGIN")).unwrap();
            for i in written..(written + 1000).min(upto) {
                let id = format!("20261206-{:06}-{:04x}", i / 60_000, i % 60_000);
                runs.start(&NewRun {
                    id: id.clone(),
                    script: b.dir.join("chain.lua"),
                    script_hash: baton::core::runs::hash(b"chain"),
                    args: Vec::new(),
                    fleet: None,
                    trigger: "cli".into(),
                })
                .unwrap();
                for s in template {
                    runs.put_step(&id, s).unwrap();
                }
                runs.finish(&id, RunStatus::Ok, None).unwrap();
            }
            state.with(|c| c.execute_batch("COMMIT")).unwrap();
            written = (written + 1000).min(upto);
        }
        // Dropped here: the last connection closes and checkpoints the WAL into the file.
    };
    write_runs(SIZE_RUNS);
    let size = dir_size(&dir);
    let row_bytes: usize = template
        .iter()
        .map(|s| {
            s.pos.len()
                + s.kind.len()
                + s.label.len()
                + s.call.len()
                + s.result.as_ref().map_or(0, String::len)
        })
        .sum();
    table.row(
        &format!("state dir after {SIZE_RUNS} runs × 10 steps"),
        format!(
            "{:.1} MB ({:.0} B/step, text {:.0} B/step)",
            size as f64 / 1e6,
            size as f64 / (SIZE_RUNS * 10) as f64,
            row_bytes as f64 / 10.0
        ),
        "≤ 50 MB",
        Some(size as f64 <= 50e6),
    );
    write_runs(LIST_RUNS);
    let one = b.dir.join("state-one");
    std::fs::create_dir_all(&one).unwrap();
    // A state dir with one run, for the baseline.
    output(
        &mut b.baton(
            "state-one",
            &[os("run"), b.dir.join("chain.lua").as_os_str()],
        ),
        None,
    );
    let (mut many, mut few) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        many.push(time_once(
            b.baton("state-size", &[os("runs")]).stdout(Stdio::null()),
        ));
        few.push(time_once(
            b.baton("state-one", &[os("runs")]).stdout(Stdio::null()),
        ));
    }
    let (many, few) = (median(many), median(few));
    table.row(
        &format!(
            "baton runs, {LIST_RUNS} runs ({} MB db), median of 20",
            dir_size(&dir) / 1_000_000
        ),
        ms(many),
        "≤ 100 ms",
        Some(many <= Duration::from_millis(100)),
    );
    table.row("baton runs, 1 run (baseline)", ms(few), "", None);
}

/// `baton resume` of a run cut after `RESUME_STEPS` steps, until its first live call.
fn resume(b: &Bench, table: &mut Table) {
    let script = b.file(
        "resume.lua",
        &format!(
            "print(baton.run_id)\n\
             for i = 1, {RESUME_STEPS} do baton.step(\"s\" .. i, function() return i end) end\n\
             if baton.env(\"BATON_BENCH_CRASH\") then os.exit(3) end\n\
             baton.step(\"live\", function() print(\"LIVE\") end)\n"
        ),
    );
    let live_only = b.file(
        "live.lua",
        "baton.step(\"live\", function() print(\"LIVE\") end)\n",
    );
    let (mut resumed, mut first, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        let mut cmd = b.baton("state-resume", &[os("run"), script.as_os_str()]);
        cmd.env("BATON_BENCH_CRASH", "1");
        let (took, out) = loop {
            STARTED.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let out = cmd.output().expect("start baton");
            let took = started.elapsed();
            if out.status.code() == Some(3) || !id_collision(&out.stderr) {
                break (took, out);
            }
        };
        first.push(took);
        assert_eq!(out.status.code(), Some(3), "the crash run exits 3: {out:?}");
        let id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let mut cmd = b.baton("state-resume", &[os("resume"), os(&id)]);
        let (took, lines) = until_live(&mut cmd);
        assert_eq!(
            lines,
            [id.as_str(), "LIVE"],
            "the resume replays and goes on live"
        );
        resumed.push(took);
        floor.push(until_live(&mut b.baton("state-resume", &[os("run"), live_only.as_os_str()])).0);
    }
    let (resumed, first, floor) = (median(resumed), median(first), median(floor));
    table.row(
        &format!("baton resume of a {RESUME_STEPS}-step run: start to first live call"),
        ms(resumed),
        "≤ 200 ms",
        Some(resumed <= Duration::from_millis(200)),
    );
    table.row(
        &format!("the run that journaled those {RESUME_STEPS} steps (whole process)"),
        ms(first),
        "",
        None,
    );
    table.row(
        "baton run of the live step alone: start to the call",
        ms(floor),
        "",
        None,
    );
}

/// Runs `cmd` until it prints `LIVE`: how long that took, and what it printed.
fn until_live(cmd: &mut Command) -> (Duration, Vec<String>) {
    use std::io::Read;
    STARTED.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start baton");
    let mut lines = Vec::new();
    let mut took = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "LIVE" && took.is_none() {
            took = Some(started.elapsed());
        }
        lines.push(line);
    }
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    if !status.success() && id_collision(&stderr) {
        return until_live(cmd);
    }
    assert!(
        status.success(),
        "{cmd:?}: {status}: {}",
        String::from_utf8_lossy(&stderr)
    );
    (
        took.unwrap_or_else(|| panic!("{cmd:?} never printed LIVE: {lines:?}")),
        lines,
    )
}

/// The stub Ollama on its own thread and runtime: `/api/version` answers at once.
fn start_stub() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("stub runtime");
        rt.block_on(async move {
            let stub = server::Stub::start(|_, _| {
                server::Reply::json(200, serde_json::json!({ "version": "0.0.0-bench" }))
            })
            .await;
            tx.send(stub.url.clone()).expect("stub url");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("stub started")
}

/// Processes started, and baton runs that failed because their new run id was taken already (ids are the
/// second and 16 random bits: hundreds of runs a second collide now and then). Such a run is started again.
static STARTED: AtomicUsize = AtomicUsize::new(0);
static COLLIDED: AtomicUsize = AtomicUsize::new(0);

/// Whether a failed run failed on a run id that was taken (then it is counted, and to be run again).
fn id_collision(stderr: &[u8]) -> bool {
    let hit = String::from_utf8_lossy(stderr).contains("UNIQUE constraint failed: runs.id");
    if hit {
        COLLIDED.fetch_add(1, Ordering::Relaxed);
    }
    hit
}

fn time_once(cmd: &mut Command) -> Duration {
    loop {
        STARTED.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("start process");
        let took = start.elapsed();
        if out.status.success() {
            return took;
        }
        if !id_collision(&out.stderr) {
            panic!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Runs `cmd` to success (with `input` on stdin) and returns its stdout.
fn output(cmd: &mut Command, input: Option<&str>) -> String {
    use std::io::Write;
    STARTED.fetch_add(1, Ordering::Relaxed);
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() && id_collision(&out.stderr) {
        return output(cmd, input);
    }
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The numbers on the last line of `out` (tab- or space-separated).
fn numbers(out: &str) -> Vec<f64> {
    let last = out.trim().lines().last().unwrap_or("");
    last.split_whitespace()
        .map(|w| {
            w.parse::<f64>()
                .unwrap_or_else(|_| panic!("not a number in {out:?}"))
        })
        .collect()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn ms_diff(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|p| Path::new(p).join(name))
        .find(|p| p.is_file())
}

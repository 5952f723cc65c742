//! LLM figures against a local stub server, each with its baseline measured in the same run
//! (`cargo bench --bench llm`):
//! - 1 000 sequential `openrouter.chat` calls from Lua vs the same requests from a plain reqwest loop:
//!   the overhead per call in µs;
//! - the same calls through LiteLLM's SDK (`litellm.completion(..., stream=True)`), when a Python with
//!   litellm is found (`$BATON_BENCH_LITELLM`, else `benches/.venv/bin/python`);
//! - streamed tokens delivered to a Lua `on_token` per second;
//! - 256 concurrent `openrouter.chat` calls: peak RSS of the process;
//! - `route.pick` from Lua;
//! - the `route.ask` tool loop: one step's own overhead (the model answers at once with one tool call, the
//!   tool returns at once) against a `route.ask` without tools, and how long after the model's answer a
//!   step with 8 parallel tool calls that each sleep 100 ms ends (`cargo bench --bench llm -- tools` runs
//!   only these).
//!
//! The stub runs on its own thread and runtime; Lua runs the way `baton run` drives it.
#[path = "support/figures.rs"]
mod figures;
#[path = "../tests/it/llm/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::core::fleet::Fleet;
use baton::core::state::State;
use baton::lua::{Ctx, new_runtime};
use figures::Table;
use server::{Reply, Stub};

const KEY_ENV: &str = "BATON_BENCH_OPENROUTER_KEY";
const SEQUENTIAL: usize = 1000;
const ROUNDS: usize = 10;
const LITELLM_CALLS: usize = 200;
const CONCURRENT: usize = 256;
const PICKS: usize = 100_000;
const TOKENS: usize = 200_000;

fn main() {
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var(KEY_ENV, "sk-bench-not-a-real-key") };
    // reqwest is built without a default TLS provider; the plain baseline client needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = start_stub();
    if std::env::args().any(|a| a == "tools") {
        tool_loop(&url);
        return;
    }
    let dir = std::env::temp_dir().join(format!("baton-bench-llm-{}", std::process::id()));
    let fleet = Fleet::from_deserializer(serde_json::json!({
        "hosts": {"engine": {"ssh": false, "ollama": "http://127.0.0.1:9"}},
        "openrouter": {"base_url": format!("{url}/v1"), "key_env": KEY_ENV},
        "budget": {"monthly_usd": 100.0, "alert_at": 0.8}
    }))
    .expect("fleet");
    let ctx = Ctx {
        fleet: Arc::new(fleet),
        state: State::new(&dir),
        script: "bench".into(),
        args: Vec::new(),
    };
    let lua = new_runtime(ctx).expect("runtime");
    let plain = PlainClient::new(&url);

    let figures = baton::lua::runtime::block_on(async {
        let run = |src: String| {
            let chunk = lua.load(src).set_name("=bench");
            async move {
                let values = chunk
                    .eval_async::<mlua::MultiValue>()
                    .await
                    .expect("bench script");
                values.iter().map(number).collect::<Vec<f64>>()
            }
        };
        let block = SEQUENTIAL / ROUNDS;
        run(format!(
            r#"N, C, P = {block}, {CONCURRENT}, {PICKS}
            REQ = {{ model = "bench/model", messages = {{ {{ role = "user", content = "hello" }} }}, max_tokens = 16 }}
            openrouter.chat(REQ)"#
        ))
        .await;
        plain.send().await;

        // Plain and Lua blocks alternate, so a slow spell of the machine hits both.
        let (mut plain_secs, mut lua_secs) = (0.0, 0.0);
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            for _ in 0..block {
                plain.send().await;
            }
            plain_secs += t0.elapsed().as_secs_f64();
            lua_secs += run(r#"
                local t0 = baton.clock()
                for _ = 1, N do
                  assert(openrouter.chat(REQ).text == "Hello from the stub")
                end
                return baton.clock() - t0"#
                .into())
            .await[0];
        }

        let conc = run(r#"
            local slow = { model = "slow", messages = REQ.messages }
            local fns = {}
            for i = 1, C do fns[i] = function() return openrouter.chat(slow) end end
            local all = baton.gather(fns)
            return #all"#
            .into())
        .await[0];
        assert_eq!(conc as usize, CONCURRENT);
        let rss = peak_rss_mb();

        let pick = run(r#"
            route.pick("code_review")
            local t0 = baton.clock()
            for _ = 1, P do route.pick("code_review") end
            return (baton.clock() - t0) / P"#
            .into())
        .await[0];

        let stream = run(r#"
            local n = 0
            local t0 = baton.clock()
            local r = openrouter.chat{ model = "many", messages = REQ.messages, max_tokens = 1000000, on_token = function() n = n + 1 end }
            return n, baton.clock() - t0, #r.text"#
            .into())
        .await;
        (plain_secs, lua_secs, rss, pick, stream)
    });
    let (plain_secs, lua_secs, rss, pick, stream) = figures.expect("tokio runtime");
    let _ = std::fs::remove_dir_all(&dir);
    let (tokens, stream_secs, text_len) = (stream[0] as usize, stream[1], stream[2] as usize);
    assert_eq!(tokens, TOKENS, "every token reached on_token");
    assert_eq!(text_len, TOKENS, "one byte per token");

    let us = |secs: f64| secs / SEQUENTIAL as f64 * 1e6;
    let (plain_us, lua_us) = (us(plain_secs), us(lua_secs));
    let overhead = lua_us - plain_us;
    let rate = tokens as f64 / stream_secs;

    let mut table = Table::default();
    table.row(
        "openrouter.chat from Lua, 1 000 sequential",
        format!("{lua_us:.1} µs/call"),
        "",
        None,
    );
    table.row(
        "plain reqwest loop, same requests",
        format!("{plain_us:.1} µs/call"),
        "",
        None,
    );
    table.row(
        "overhead of openrouter.chat",
        format!("{overhead:.1} µs/call"),
        "<= 50 µs",
        Some(overhead <= 50.0),
    );
    match litellm(&url) {
        Ok(litellm_us) => {
            let ratio = litellm_us / lua_us;
            table.row(
                &format!("LiteLLM completion(stream=True), {LITELLM_CALLS} sequential"),
                format!("{litellm_us:.1} µs/call"),
                "",
                None,
            );
            table.row(
                "LiteLLM / openrouter.chat time per call",
                format!("{ratio:.0}x"),
                ">= 100x",
                Some(ratio >= 100.0),
            );
            // No client can beat the plain loop on this stub: this is the most the ratio above can be.
            table.row(
                "LiteLLM / plain reqwest loop (the ceiling)",
                format!("{:.0}x", litellm_us / plain_us),
                "",
                None,
            );
        }
        Err(why) => println!("LiteLLM: skipped ({why})"),
    }
    table.row(
        "streamed tokens to a Lua on_token",
        format!("{rate:.0} /s"),
        ">= 200 000 /s",
        Some(rate >= 200_000.0),
    );
    table.row(
        &format!("{CONCURRENT} concurrent openrouter.chat, peak RSS"),
        format!("{rss:.1} MB"),
        "<= 60 MB",
        Some(rss <= 60.0),
    );
    table.row(
        "route.pick from Lua",
        format!("{:.2} µs/call", pick * 1e6),
        "< 20 µs",
        Some(pick < 20e-6),
    );
    println!("LLM figures (stub server on 127.0.0.1)");
    table.print();
    tool_loop(&url);
}

const LOOP_STEPS: usize = 8;
const LOOP_ASKS: usize = 50;
const FAN: usize = 8;

/// The `route.ask` tool loop against the stub: `loop` asks for one tool call until the conversation holds
/// `LOOP_STEPS - 1` tool results, `fan` asks for `FAN` calls at once; both then answer.
fn tool_loop(url: &str) {
    let dir = std::env::temp_dir().join(format!("baton-bench-tools-{}", std::process::id()));
    let fleet = Fleet::from_deserializer(serde_json::json!({
        "hosts": {"engine": {"ssh": false, "ollama": "http://127.0.0.1:9"}},
        "openrouter": {"base_url": format!("{url}/v1"), "key_env": KEY_ENV},
        "tiers": [{"name": "cheap", "provider": "openrouter", "model": "loop", "models": {"fan": "fan", "plain": "bench/model"},
                   "price": {"input": 0.0, "output": 0.0}}],
        "tasks": {"fan": {"tier": "cheap", "model": "fan"}, "plain": {"tier": "cheap", "model": "plain"}},
        "budget": {"monthly_usd": 100.0, "alert_at": 0.8}
    }))
    .expect("fleet");
    let ctx = Ctx {
        fleet: Arc::new(fleet),
        state: State::new(&dir),
        script: "bench".into(),
        args: Vec::new(),
    };
    let lua = new_runtime(ctx).expect("runtime");
    let figures = baton::lua::runtime::block_on(async {
        let run = |src: String| {
            let chunk = lua.load(src).set_name("=bench-tools");
            async move {
                let values = chunk
                    .eval_async::<mlua::MultiValue>()
                    .await
                    .expect("bench script");
                values.iter().map(number).collect::<Vec<f64>>()
            }
        };
        run(format!(
            r#"N, STEPS = {LOOP_ASKS}, {LOOP_STEPS}
            TOOLS = {{ noop = {{ run = function(args) return "ok" end }},
                       nap = {{ run = function(args) baton.sleep(0.1) return "rested" end }} }}
            route.ask("plain", "warm up")
            assert(#route.ask("x", "warm up", {{ tools = TOOLS }}).steps == 2 * STEPS - 1)"#
        ))
        .await;
        let (mut plain, mut looped) = (0.0, 0.0);
        for _ in 0..5 {
            let r = run(r#"
                local t0 = baton.clock()
                for _ = 1, N * STEPS do route.ask("plain", "go") end
                local t1 = baton.clock()
                for _ = 1, N do route.ask("x", "go", { tools = TOOLS }) end
                return t1 - t0, baton.clock() - t1"#
                .into())
            .await;
            plain += r[0];
            looped += r[1];
        }
        let fan = run(r#"
            local worst = 0
            for _ = 1, 10 do
              local answered, ended, tools = nil, nil, 0
              route.ask("fan", "go", { tools = TOOLS, on_step = function(s)
                if s.kind == "model" and s.step == 1 then answered = baton.clock() end
                if s.kind == "tool" then tools = tools + 1; if tools == 8 then ended = baton.clock() end end
              end })
              worst = math.max(worst, ended - answered)
            end
            return worst"#
            .into())
        .await[0];
        (plain, looped, fan)
    });
    let (plain, looped, fan) = figures.expect("tokio runtime");
    let _ = std::fs::remove_dir_all(&dir);
    let calls = (5 * LOOP_ASKS * LOOP_STEPS) as f64;
    let (plain_us, step_us) = (plain / calls * 1e6, looped / calls * 1e6);
    let overhead = step_us - plain_us;
    let mut table = Table::default();
    table.row(
        "route.ask without tools (one model call)",
        format!("{plain_us:.0} µs/call"),
        "",
        None,
    );
    table.row(
        &format!("route.ask tool loop, {LOOP_STEPS} steps of one call + one tool"),
        format!("{step_us:.0} µs/step"),
        "",
        None,
    );
    table.row(
        "one loop step's own overhead",
        format!("{overhead:.0} µs/step"),
        "< 200 µs",
        Some(overhead < 200.0),
    );
    table.row(
        &format!("{FAN} parallel tools sleeping 100 ms: step end after the answer (worst of 10)"),
        format!("{:.1} ms", fan * 1e3),
        "< 150 ms",
        Some(fan < 0.150),
    );
    println!("route.ask tool loop (stub server on 127.0.0.1)");
    table.print();
}

/// A Lua number returned by a bench script.
fn number(v: &mlua::Value) -> f64 {
    match v {
        mlua::Value::Integer(i) => *i as f64,
        mlua::Value::Number(n) => *n,
        other => panic!("expected a number, got {other:?}"),
    }
}

/// The same requests as `openrouter.chat` sends (same body, same headers, body read to the end) from a plain
/// reqwest client.
struct PlainClient {
    client: reqwest::Client,
    endpoint: String,
    body: Vec<u8>,
}

impl PlainClient {
    fn new(url: &str) -> PlainClient {
        let body = serde_json::to_vec(&serde_json::json!({
            "model": "bench/model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16,
            "stream": true, "stream_options": {"include_usage": true}
        }))
        .expect("request body");
        PlainClient {
            client: reqwest::Client::new(),
            endpoint: format!("{url}/v1/chat/completions"),
            body,
        }
    }

    async fn send(&self) {
        let body = self
            .client
            .post(&self.endpoint)
            .header("authorization", "Bearer sk-bench-not-a-real-key")
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send()
            .await
            .expect("plain request")
            .bytes()
            .await
            .expect("plain body");
        assert!(!body.is_empty());
    }
}

/// µs per call of LiteLLM's SDK on the stub, from `benches/litellm_bench.py` run by a Python that has
/// litellm; `Err` says why it was skipped.
fn litellm(url: &str) -> Result<f64, String> {
    let python = match std::env::var_os("BATON_BENCH_LITELLM") {
        Some(p) => PathBuf::from(p),
        None => {
            let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/.venv/bin/python");
            if !venv.exists() {
                return Err("make a venv: python3 -m venv benches/.venv && benches/.venv/bin/pip install litellm".into());
            }
            venv
        }
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/litellm_bench.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("{url}/v1"))
        .arg(LITELLM_CALLS.to_string())
        // Offline: anything but the stub goes to a closed port.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.trim().lines().last().map(str::parse::<f64>) {
        Some(Ok(us)) if out.status.success() => Ok(us),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.trim().lines().rev().take(3).collect();
            Err(format!(
                "{} {} failed: {}",
                python.display(),
                script.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ))
        }
    }
}

/// The stub on its own thread and runtime: `bench/model` answers at once, `slow` after 200 ms (so all
/// concurrent calls overlap), `many` streams `TOKENS` one-byte tokens.
fn start_stub() -> String {
    let quick = server::sse(
        "bench/model",
        &["Hello", " from", " the", " stub"],
        5,
        4,
        Some(0.000_01),
    );
    let slow = server::sse("slow", &["ok"], 5, 1, Some(0.0));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("stub runtime");
        rt.block_on(async move {
            let stub = Stub::start(move |req, _| match req.json()["model"].as_str() {
                Some(m @ ("loop" | "fan")) => tool_reply(m, &req.json()),
                Some("slow") => Reply::sse(slow.clone(), 1 << 16).slow(Duration::from_millis(200)),
                // Built on request, so the 200 000-token body does not count towards the RSS figure.
                Some("many") => Reply::sse(
                    server::sse("many", &vec!["x"; TOKENS], 5, TOKENS as u64, Some(0.0)),
                    1 << 16,
                ),
                _ => Reply::sse(quick.clone(), 1 << 16),
            })
            .await;
            tx.send(stub.url.clone()).expect("stub url");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("stub started")
}

/// The tool loop's model: `loop` asks for one `noop` call until `LOOP_STEPS - 1` results are in, `fan`
/// asks for `FAN` `nap` calls once; then each answers.
fn tool_reply(model: &str, body: &serde_json::Value) -> Reply {
    let results = body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
    let calls: Vec<serde_json::Value> = match model {
        "loop" if results < LOOP_STEPS - 1 => {
            vec![
                serde_json::json!({"index": 0, "id": format!("c{results}"), "type": "function",
                "function": {"name": "noop", "arguments": "{}"}}),
            ]
        }
        "fan" if results == 0 => (0..FAN)
            .map(|i| {
                serde_json::json!({"index": i, "id": format!("f{i}"), "type": "function",
                "function": {"name": "nap", "arguments": "{}"}})
            })
            .collect(),
        _ => return Reply::sse(server::sse(model, &["done"], 5, 1, Some(0.0)), 1 << 16),
    };
    let delta = serde_json::json!({"tool_calls": calls});
    Reply::sse(server::sse_deltas(model, &[delta], "tool_calls"), 1 << 16)
}

/// This process's peak resident memory (`VmHWM` in /proc/self/status), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

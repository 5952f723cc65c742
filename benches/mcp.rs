//! MCP figures, every server driven by the same client (baton's own, `core::mcp::client`) in one run
//! (`cargo bench --bench mcp`):
//! - `tools/call` round trip of a trivial tool through `baton mcp serve` (a Lua tool) vs the Python SDK's
//!   FastMCP server with the same tool (`benches/mcp_fastmcp.py`), both over stdio;
//! - `baton mcp serve` start to `initialize` answer (spawn + handshake), with FastMCP's for reference.
//!
//! The Python SDK comes from the venv `.ci/run` makes (`target/mcp-venv`, or `$BATON_MCP_VENV`).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::core::fleet::Fleet;
use baton::core::mcp::client::{Client, Transport};
use baton::core::remote::Remote;

const CALLS: usize = 1000;
const ROUNDS: usize = 10;
const STARTS: usize = 20;

fn here(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn python() -> PathBuf {
    let venv = std::env::var_os("BATON_MCP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(here("target/mcp-venv")));
    let py = venv.join("bin/python");
    assert!(
        venv.join("bin/mcp").is_file(),
        "the PyPI package `mcp` is not installed in {} (bash .ci/run installs it)",
        venv.display()
    );
    py
}

fn stdio(command: Vec<String>) -> Transport {
    Transport::Stdio {
        command,
        env: Default::default(),
        cwd: None,
        host: None,
    }
}

fn args() -> serde_json::Map<String, serde_json::Value> {
    serde_json::json!({"a": 2, "b": 40})
        .as_object()
        .unwrap()
        .clone()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let state = std::env::temp_dir().join(format!("baton-bench-mcp-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    // SAFETY: set before any other thread exists; the server processes inherit them.
    unsafe {
        std::env::set_var("BATON_STATE_DIR", &state);
        std::env::remove_var("BATON_FLEET");
    }
    let baton_cmd = vec![
        env!("CARGO_BIN_EXE_baton").to_string(),
        "mcp".into(),
        "serve".into(),
        here("benches/mcp_tools.lua"),
    ];
    let fastmcp_cmd = vec![
        python().to_string_lossy().into_owned(),
        here("benches/mcp_fastmcp.py"),
    ];
    let remote = Remote::new(Arc::new(Fleet::default()));
    let timeout = Duration::from_secs(30);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let baton = Client::connect(&stdio(baton_cmd.clone()), &remote, timeout)
            .await
            .expect("baton mcp serve");
        let fast = Client::connect(&stdio(fastmcp_cmd.clone()), &remote, timeout)
            .await
            .expect("FastMCP baseline");
        for c in [&baton, &fast] {
            let r = c.call("add", args(), timeout).await.unwrap();
            assert_eq!(r.text, "42");
        }
        // Blocks alternate between the two servers, so a slow spell of the machine hits both.
        let block = CALLS / ROUNDS;
        let (mut baton_secs, mut fast_secs) = (0.0, 0.0);
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            for _ in 0..block {
                baton.call("add", args(), timeout).await.unwrap();
            }
            baton_secs += t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            for _ in 0..block {
                fast.call("add", args(), timeout).await.unwrap();
            }
            fast_secs += t0.elapsed().as_secs_f64();
        }
        baton.close().await;
        fast.close().await;
        let per = |s: f64| s / CALLS as f64 * 1e6;
        println!(
            "tools/call round trip, {CALLS} sequential calls: baton mcp serve {:.0} µs/call, FastMCP {:.0} µs/call: baton takes {:.3}× FastMCP's time (goal ≤ 0.2)",
            per(baton_secs),
            per(fast_secs),
            baton_secs / fast_secs
        );

        let mut starts = Vec::new();
        let mut fast_starts = Vec::new();
        for _ in 0..STARTS {
            for (cmd, out) in [(&baton_cmd, &mut starts), (&fastmcp_cmd, &mut fast_starts)] {
                let t0 = Instant::now();
                let c = Client::connect(&stdio(cmd.clone()), &remote, timeout)
                    .await
                    .unwrap();
                out.push(t0.elapsed().as_secs_f64() * 1e3);
                c.close().await;
            }
        }
        println!(
            "start to initialize answer, median of {STARTS}: baton mcp serve {:.1} ms (goal < 50 ms); FastMCP {:.1} ms",
            median(starts),
            median(fast_starts)
        );
    });
    let _ = std::fs::remove_dir_all(&state);
}

//! Hostile LLM servers (`cargo bench --bench hostile`): each mode of the fault-injection list served by the
//! test stub, called by the real `baton run` binary, one process per call, so each row's peak RSS
//! (`VmHWM`) is that call's alone. Baseline in the same run: the same call against a well-behaved server.
//! - peak RSS under the endless-stream modes with default limits (target ≤ 64 MB);
//! - wall time of a call with `deadline = "2s"` against each mode (target ≤ 2.5 s).
#[path = "../tests/it/llm/server.rs"]
mod server;

use std::process::Command;
use std::time::Duration;

use server::{Reply, Stub};

const SCRIPT: &str = r#"
local mode, url, client = os.getenv("MODE"), os.getenv("URL"), os.getenv("CLIENT")
local deadline = os.getenv("DEADLINE") ~= "" and os.getenv("DEADLINE") or nil
local max_tokens = tonumber(os.getenv("MAX_TOKENS"))
local msgs = { { role = "user", content = "hi" } }
local t0 = baton.clock()
local r
if client == "ollama" then
  r = ollama.chat{ host = url .. "/" .. mode, model = "m", messages = msgs, deadline = deadline, check = false,
    options = max_tokens and { num_predict = max_tokens } or nil }
else
  r = openrouter.chat{ model = "m", messages = msgs, deadline = deadline, check = false, max_tokens = max_tokens }
end
local secs = baton.clock() - t0
local hwm = 0
for line in io.lines("/proc/self/status") do
  local kb = line:match("^VmHWM:%s*(%d+)")
  if kb then hwm = tonumber(kb) end
end
local err = r.ok and "ok" or tostring(r.err):gsub("^[^:]*%): ", ""):sub(1, 70)
print(string.format("%.3f\t%.1f\t%s", secs, hwm / 1024, err))
"#;

fn main() {
    let url = start_stub();
    let dir = std::env::temp_dir().join(format!("baton-bench-hostile-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let script = dir.join("hostile.lua");
    std::fs::write(&script, SCRIPT).unwrap();
    let fleet = dir.join("fleet.lua");
    std::fs::write(&fleet, "return { hosts = { ['local'] = { ssh = false } } }").unwrap();

    let call = |mode: &str, client: &str, deadline: &str, max_tokens: Option<u32>| {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("run")
            .arg(&script)
            .env("BATON_FLEET", &fleet)
            .env("BATON_STATE_DIR", dir.join("state"))
            .env("OPENROUTER_API_KEY", "sk-bench-not-a-real-key")
            .env("OPENROUTER_BASE_URL", format!("{url}/{mode}/v1"))
            .env("MODE", mode)
            .env("URL", &url)
            .env("CLIENT", client)
            .env("DEADLINE", deadline)
            .env(
                "MAX_TOKENS",
                max_tokens.map_or(String::new(), |n| n.to_string()),
            )
            .output()
            .expect("run baton");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut f = text.trim().splitn(3, '\t');
        let secs: f64 = f.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            panic!(
                "{mode}/{client}: no figures: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let mb: f64 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
        (secs, mb, f.next().unwrap_or("").to_string())
    };

    println!("peak RSS of one call (default limits; target <= 64 MB)");
    println!(
        "{:<34} {:<10} {:>9} {:>9}  result",
        "mode", "client", "RSS MB", "secs"
    );
    let rss_modes: [(&str, &str, Option<u32>); 4] = [
        ("good", "well-behaved, 2000 tokens (baseline)", None),
        ("tokens", "endless tokens, max_tokens = 50", Some(50)),
        ("bigtokens", "endless 8 KiB tokens, no max_tokens", None),
        ("bytes", "endless bytes without newline", Some(50)),
    ];
    let mut worst_rss: f64 = 0.0;
    for (mode, label, max) in rss_modes {
        for client in ["ollama", "openrouter"] {
            let (secs, mb, result) = call(mode, client, "", max);
            if mode != "good" {
                worst_rss = worst_rss.max(mb);
            }
            println!("{label:<34} {client:<10} {mb:>9.1} {secs:>9.3}  {result}");
        }
    }

    println!();
    println!("wall time of a call with deadline = \"2s\" (target <= 2.5 s)");
    println!(
        "{:<34} {:<10} {:>9} {:>9}  result",
        "mode", "client", "RSS MB", "secs"
    );
    let deadline_modes: [(&str, &str, Option<u32>); 7] = [
        ("good", "well-behaved (baseline)", None),
        ("keepalive", "keep-alive every 100 ms forever", None),
        ("silent", "silent after headers", None),
        ("mute", "no headers ever", None),
        ("slow", "a real token every 50 ms forever", None),
        ("retry", "429 with Retry-After: 99999", None),
        ("tokens", "endless tokens, no max_tokens", None),
    ];
    let mut worst_secs: f64 = 0.0;
    for (mode, label, max) in deadline_modes {
        for client in ["ollama", "openrouter"] {
            let (secs, mb, result) = call(mode, client, "2s", max);
            if mode != "good" {
                worst_secs = worst_secs.max(secs);
            }
            println!("{label:<34} {client:<10} {mb:>9.1} {secs:>9.3}  {result}");
        }
    }
    println!();
    println!(
        "worst hostile peak RSS {worst_rss:.1} MB (target <= 64: {}); worst deadline wall time {worst_secs:.3} s (target <= 2.5: {})",
        if worst_rss <= 64.0 { "met" } else { "MISSED" },
        if worst_secs <= 2.5 { "met" } else { "MISSED" },
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stub on its own thread and runtime; the first path segment picks the mode.
fn start_stub() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let stub = Stub::start(|req, _| {
                let mut parts = req.path.trim_start_matches('/').splitn(2, '/');
                let mode = parts.next().unwrap_or("");
                let sse = parts.next().unwrap_or("").starts_with("v1");
                let ct = if sse {
                    "text/event-stream"
                } else {
                    "application/x-ndjson"
                };
                let pick = |ndjson: Reply, events: Reply| if sse { events } else { ndjson };
                match mode {
                    "good" => {
                        let pieces: Vec<String> = (0..2000).map(|i| format!("t{i} ")).collect();
                        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
                        pick(
                            Reply::ndjson(server::ollama_chat("m", &refs, 5, 2000), 4096),
                            Reply::sse(server::sse("m", &refs, 5, 2000, None), 4096),
                        )
                    }
                    "tokens" => pick(Reply::endless_ndjson("tok "), Reply::endless_sse("tok ")),
                    "bigtokens" => {
                        let big = "y".repeat(8 << 10);
                        pick(Reply::endless_ndjson(&big), Reply::endless_sse(&big))
                    }
                    "bytes" => Reply::endless_bytes(ct, if sse { "data: " } else { "{\"a\":\"" }),
                    "keepalive" => Reply::keepalive_forever(ct, Duration::from_millis(100)),
                    "silent" => Reply::SilentAfterHeaders { content_type: ct },
                    "mute" => Reply::Silent,
                    "slow" => Reply::Endless {
                        content_type: ct,
                        piece: if sse {
                            b"data: {\"choices\":[{\"delta\":{\"content\":\"t\"}}]}\n\n".to_vec()
                        } else {
                            b"{\"message\":{\"content\":\"t\"},\"done\":false}\n".to_vec()
                        },
                        delay: Duration::from_millis(50),
                    },
                    "retry" => Reply::retry_after(99999),
                    _ => Reply::json(404, serde_json::json!({"error": "no such mode"})),
                }
            })
            .await;
            tx.send(stub.url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("stub url")
}

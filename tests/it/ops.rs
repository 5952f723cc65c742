//! `baton doctor` and `baton status` against real sshd hosts (one stopped) and a stub Ollama/OpenRouter.
use serde_json::json;

use crate::common::Env;
use crate::llm::server::{Reply, Stub};
use crate::sshd::SshFleet;

/// Ollama has qwen2.5-coder (loaded) but not deepseek-r1; OpenRouter's key has $8.50 left.
async fn stub_server() -> Stub {
    Stub::start(|req, _| match req.path.as_str() {
        "/api/tags" => Reply::json(200, json!({ "models": [
            { "name": "qwen2.5-coder:32b", "model": "qwen2.5-coder:32b", "size": 19851336256u64, "digest": "abc", "modified_at": "2026-11-01T10:00:00Z", "details": {} },
            { "name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest", "size": 274302450, "digest": "def", "modified_at": "2026-11-01T10:00:00Z", "details": {} }
        ]})),
        "/api/ps" => Reply::json(200, json!({ "models": [
            { "name": "qwen2.5-coder:32b", "model": "qwen2.5-coder:32b", "size": 21000000000u64, "size_vram": 21000000000u64, "expires_at": "2026-11-21T12:00:00Z", "details": {} }
        ]})),
        "/api/version" => Reply::json(200, json!({ "version": "0.12.0" })),
        "/v1/key" => Reply::json(200, json!({ "data": { "label": "sk-or-v1-abc...", "limit": 10.0, "usage": 1.5, "limit_remaining": 8.5 } })),
        _ => Reply::json(404, json!({ "error": format!("no route {}", req.path) })),
    })
    .await
}

fn fleet_file(sshd: &SshFleet, stub_url: &str) -> String {
    format!(
        r#"return {{
  ssh_config = {cfg:?},
  hosts = {{
    h0 = {{ ssh = "h0", role = "server" }},
    h1 = {{ ssh = "h1", role = "gpu" }},
    engine = {{ ssh = false, role = "inference", ollama = "{stub_url}" }},
  }},
  tiers = {{
    {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen2.5-coder:32b", reason = "deepseek-r1:32b" }} }},
    {{ name = "cheap", provider = "openrouter", model = "anthropic/claude-sonnet-4.5", price = {{ input = 3, output = 15 }} }},
  }},
  openrouter = {{ base_url = "{stub_url}/v1" }},
  budget = {{ monthly_usd = 25 }},
}}"#,
        cfg = sshd.ssh_config.display()
    )
}

#[test]
fn doctor_reports_exactly_the_host_down_and_the_missing_model() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stub = rt.block_on(stub_server());
    let mut sshd = SshFleet::start(2);
    sshd.stop_host(1);
    let env = Env::new("doctor")
        .with_fleet(&fleet_file(&sshd, &stub.url))
        .var("OPENROUTER_API_KEY", "sk-or-v1-doctor-secret");

    let out = env.baton(&["doctor", "--json"]);
    out.expect_code(1);
    assert!(!out.stdout.contains("doctor-secret") && !out.stderr.contains("doctor-secret"));
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAIL")
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        ["ssh h1", "model deepseek-r1:32b on engine"],
        "{}",
        out.stdout
    );
    assert_eq!(report["failed"], 2);
    let find = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("ssh h0")["status"], "ok");
    assert_eq!(
        find("model qwen2.5-coder:32b on engine")["detail"],
        "pulled, loaded"
    );
    assert!(
        find("model deepseek-r1:32b on engine")["fix"]
            .as_str()
            .unwrap()
            .contains("ollama pull deepseek-r1:32b")
    );
    assert_eq!(find("openrouter credits")["detail"], "$8.50 left");
    assert_eq!(find("budget")["status"], "ok");
    assert_eq!(find("daemon")["status"], "skip");

    // The table form says the same, with a fix under each failure.
    let out = env.baton(&["doctor"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("FAIL  ssh h1") && out.stdout.contains("2 check(s) failed"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("fix: ").count(), 2, "{}", out.stdout);

    // Bring the host back and the only failure left is the model.
    sshd.start_host(1);
    let out = env.baton(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["failed"], 1, "{}", out.stdout);
}

#[test]
fn status_shows_hosts_models_schedule_and_spend() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stub = rt.block_on(stub_server());
    let mut sshd = SshFleet::start(2);
    sshd.stop_host(1);
    let env = Env::new("status").with_fleet(&fleet_file(&sshd, &stub.url));
    env.dir.write("schedule.lua", "schedule.cron('nightly', '30 2 * * *', function() end)\nschedule.cron('eod', '0 18 * * 1-5', function() end)\n");

    let out = env.baton(&["status", "--json"]);
    out.ok();
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let host = |name: &str| {
        s["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(host("h0")["online"], true);
    assert!(host("h0")["load"].as_f64().is_some(), "{}", out.stdout);
    assert_eq!(host("h1")["online"], false);
    assert_eq!(host("engine")["ollama"], "qwen2.5-coder:32b");
    let names: Vec<&str> = s["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{}", out.stdout);
    assert_eq!(s["spend"]["budget"].as_f64(), Some(25.0));
    assert_eq!(s["spend"]["month"].as_f64(), Some(0.0));

    let out = env.baton(&["status"]);
    out.ok();
    assert!(out.stdout.starts_with("HOST"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("spend: $0.00 of $25.00 this month (0%)"),
        "{}",
        out.stdout
    );
}

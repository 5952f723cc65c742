//! The Lua API through the real binary: `ollama`, `openrouter` and `route` against stubs.
use std::time::Duration;

use serde_json::json;

use super::server::{self, Reply, Stub, refused_url};
use super::{KEY, or_stub_body};
use crate::common::{Env, Out};

/// A fleet file: `engine` at `ollama_url`, local/cheap/premium tiers, cheap and premium at `or_url`.
fn fleet_lua(ollama_url: &str, or_url: &str, budget: Option<f64>, out_price: f64) -> String {
    let budget = budget.map_or(String::new(), |b| {
        format!("budget = {{ monthly_usd = {b}, alert_at = 0.5 }},")
    });
    format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{ollama_url}", ollama_parallel = 2 }} }},
  tiers = {{
    {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen2.5-coder:32b", reason = "deepseek-r1:32b" }} }},
    {{ name = "cheap", provider = "openrouter", model = "anthropic/claude-sonnet-4.5", price = {{ input = 0, output = {out_price} }} }},
    {{ name = "premium", provider = "openrouter", model = "anthropic/claude-opus-4.6", price = {{ input = 0, output = {premium} }} }},
  }},
  tasks = {{ code_generation = {{ tier = "local", model = "code" }}, gap_analysis = {{ tier = "cheap" }} }},
  openrouter = {{ base_url = "{or_url}/v1" }},
  {budget}
}}"#,
        premium = out_price * 5.0
    )
}

/// Runs `script` with `baton run` off the async runtime, so the stubs keep serving meanwhile.
async fn run_lua(env: Env, script: &str) -> (Env, Out) {
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let out = env.run_lua("play.lua", &script, &[]);
        (env, out)
    })
    .await
    .unwrap()
}

fn db_rows(env: &Env, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_ollama_chat_streams_to_a_yielding_on_token() {
    let pieces: Vec<String> = (0..50).map(|i| format!("p{i},")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let lines = server::ollama_chat("qwen2.5-coder:32b", &refs, 9, 50);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 11)).await;
    let env =
        Env::new("lua-ollama").with_fleet(&fleet_lua(&stub.url, &refused_url().await, None, 1.0));
    let (_env, out) = run_lua(env, r#"
        local seen = {}
        local r = ollama.chat{ model = "qwen2.5-coder:32b", messages = { { role = "user", content = "hi" } },
          options = { num_ctx = 4096 }, on_token = function(piece) seen[#seen + 1] = piece; baton.sleep(0) end }
        print(#seen, seen[1], seen[50], r.text == table.concat(seen), r.host, r.model)
        print(r.tokens_in, r.tokens_out, r.duration, r.tokens_per_s, r.done_reason)
        local q = ollama.queue()
        print(q.running, q.waiting)
    "#).await;
    out.ok();
    assert_eq!(
        out.stdout,
        "50\tp0,\tp49,\ttrue\tengine\tqwen2.5-coder:32b\n9\t50\t2.5\t100\tstop\n0\t0\n"
    );
    assert_eq!(
        stub.requests()[0].json()["options"],
        json!({"num_ctx": 4096})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_ollama_errors_and_argument_checks() {
    let stub = Stub::start(|req, _| match req.path.as_str() {
        "/api/version" => Reply::json(200, json!({"version": "0.12.6"})),
        "/api/tags" => Reply::json(200, json!({"models": [{"name": "a:1b"}, {"name": "b:2b"}]})),
        _ => Reply::json(
            404,
            json!({"error": "model \"zzz\" not found, try pulling it first"}),
        ),
    })
    .await;
    let down = refused_url().await;
    let env = Env::new("lua-ollama-err").with_fleet(&fleet_lua(&stub.url, &down, None, 1.0));
    let script = format!(
        r#"
        local function err(f, ...) local ok, e = pcall(f, ...) assert(not ok, "expected an error") print(tostring(e)) end
        err(ollama.chat, nil)
        err(ollama.chat, {{ model = "m", messages = {{}}, hots = "engine" }})
        err(ollama.chat, {{ model = "zzz", messages = {{ {{ role = "user", content = "x" }} }} }})
        err(ollama.chat, {{ model = "m", messages = {{}}, host = "{down}" }})
        err(ollama.chat, {{ model = "m", messages = {{}}, host = "engin" }})
        local r = ollama.chat{{ model = "m", messages = {{}}, host = "{down}", check = false }}
        print(r.ok, r.err)
        print(ollama.version(), ollama.online(), ollama.online{{ host = "{down}" }}, #ollama.models(), ollama.models()[2].name)
        err(ollama.show, 42)
    "#
    );
    let (_env, out) = run_lua(env, &script).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let down_host = down.clone();
    assert_eq!(
        lines[0],
        "ollama.chat: argument 1 (request) must be a table, got nil"
    );
    assert!(
        lines[1].starts_with("ollama.chat: options.hots: unknown key, did you mean host?"),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        "ollama.chat(engine, zzz): model not found: model \"zzz\" not found, try pulling it first (try ollama.pull)"
    );
    assert_eq!(
        lines[3],
        format!("ollama.chat({down_host}, m): connection refused")
    );
    assert!(
        lines[4].starts_with("ollama.chat(engin): unknown host \"engin\", did you mean engine?"),
        "{}",
        lines[4]
    );
    assert_eq!(
        lines[5],
        format!("false\tollama.chat({down_host}, m): connection refused")
    );
    assert_eq!(lines[6], "0.12.6\ttrue\tfalse\t2\tb:2b");
    assert_eq!(
        lines[7],
        "ollama.show: argument 1 (model) must be a string, got number 42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_openrouter_chat_and_the_key_never_leaks() {
    let body = server::sse(
        "anthropic/claude-sonnet-4.5",
        &["Hel", "lo"],
        12,
        2,
        Some(0.0042),
    );
    let stub = Stub::start(move |req, _| match req.path.as_str() {
        "/v1/chat/completions" if req.json()["model"] == "bad" => {
            let echoed = req.header("authorization").unwrap_or_default().to_string();
            Reply::json(401, json!({"error": {"code": 401, "message": format!("User not found for {echoed}")}}))
        }
        "/v1/chat/completions" => Reply::sse(body.clone(), 9),
        "/v1/key" => Reply::json(200, json!({"data": {"limit": null, "usage": 1.25, "limit_remaining": null}})),
        _ => Reply::json(200, json!({"data": [{"id": "x/y", "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]})),
    })
    .await;
    let env = Env::new("lua-openrouter")
        .with_fleet(&fleet_lua(&refused_url().await, &stub.url, None, 15.0))
        .var("OPENROUTER_API_KEY", KEY)
        .var("BATON_LOG", "trace");
    let (env, out) = run_lua(env, r#"
        local toks = {}
        local r = openrouter.chat{ model = "anthropic/claude-sonnet-4.5", messages = { { role = "user", content = "hi" } },
          max_tokens = 20, on_token = function(t) toks[#toks + 1] = t end }
        print(r.text, #toks, r.id, r.tokens_in, r.tokens_out, r.cost, r.cost_source, r.finish_reason)
        local bad = openrouter.chat{ model = "bad", messages = {}, check = false }
        print(bad.ok, bad.err)
        local c = openrouter.credits()
        print(c.limit, c.usage, c.remaining, openrouter.models()[1].id)
        route.ask("gap_analysis", "x", { max_tier = "cheap" })
        print(baton.inspect(openrouter), baton.inspect(baton.fleet.openrouter))
    "#).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Hello\t2\tgen-123\t12\t2\t0.0042\tprovider\tstop");
    assert_eq!(
        lines[1],
        "false\topenrouter.chat(".to_string()
            + &stub.url
            + "/v1, bad): HTTP 401: User not found for Bearer ***"
    );
    assert_eq!(lines[2], "nil\t1.25\tnil\tx/y");
    let db = std::fs::read(env.state_dir().join("baton.db")).unwrap();
    let haystacks = [out.stdout.as_bytes(), out.stderr.as_bytes(), &db];
    for h in haystacks {
        assert!(
            !h.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key leaked"
        );
    }
    assert!(
        !out.stderr.is_empty(),
        "trace logging was on, so something was logged"
    );
    // Without a key: an error naming the variable, and no request.
    let before = stub.count();
    let env =
        Env::new("lua-nokey").with_fleet(&fleet_lua(&refused_url().await, &stub.url, None, 15.0));
    let (_env, out) = run_lua(env, r#"openrouter.chat{ model = "m", messages = {} }"#).await;
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("openrouter.chat(")
            && out
                .stderr
                .contains("no API key: set the environment variable OPENROUTER_API_KEY"),
        "{}",
        out.stderr
    );
    assert_eq!(stub.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_route_pick_ask_escalate_accept_and_spend() {
    let cloud = Stub::start(or_stub_body("cloud says hi", 0.25)).await;
    let local = Stub::start(|_, _| {
        Reply::ndjson(
            server::ollama_chat("qwen2.5-coder:32b", &["local ", "draft"], 5, 2),
            8,
        )
    })
    .await;
    let env = Env::new("lua-route")
        .with_fleet(&fleet_lua(&local.url, &cloud.url, Some(10.0), 15.0))
        .var("OPENROUTER_API_KEY", KEY);
    let (env, out) = run_lua(env, r#"
        local p = route.pick("code_generation")
        print(p.task, p.tier, p.provider, p.host, p.model, p.reason)
        p = route.pick{ kind = "code_generation", min_tier = "cheap" }
        print(p.tier, p.model, p.host)
        local seen
        local r = route.ask("code_generation", "write it", { system = "be terse", max_tokens = 64,
          accept = function(res) seen = res.text if res.tier == "local" then return "too drafty" end return true end })
        print(r.text, r.tier, r.provider, r.model, r.cost, r.tokens_in, r.tokens_out, #r.attempts, seen)
        print(r.attempts[1].tier, r.attempts[1].outcome, r.attempts[1].err, r.attempts[2].outcome)
        for _, row in ipairs(route.spend{ by = "tier" }) do print(row.key, row.calls, row.tokens_in, row.tokens_out, row.cost) end
        print(#route.spend{ period = "day", by = "task" }, route.spend{ by = "model" }[1].key)
        local ok, e = pcall(route.spend, { period = "year" })
        print(e)
        ok, e = pcall(route.pick, { kind = "x", max_tier = "platinum" })
        print(e)
    "#).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "code_generation\tlocal\tollama\tengine\tqwen2.5-coder:32b\ttask code_generation → tier local"
    );
    assert_eq!(lines[1], "cheap\tanthropic/claude-sonnet-4.5\tnil");
    assert_eq!(
        lines[2],
        "cloud says hi\tcheap\topenrouter\tanthropic/claude-sonnet-4.5\t0.25\t15\t7\t2\tcloud says hi"
    );
    assert_eq!(lines[3], "local\trejected\ttoo drafty\tok");
    assert_eq!(lines[4], "cheap\t1\t10\t5\t0.25");
    assert_eq!(lines[5], "local\t1\t5\t2\t0");
    assert_eq!(lines[6], "1\tanthropic/claude-sonnet-4.5");
    assert_eq!(
        lines[7],
        "route.spend: options.period must be \"day\", \"month\" or \"all\", got \"year\""
    );
    assert_eq!(
        lines[8],
        "route.pick(x): unknown tier \"platinum\" (tiers: local, cheap, premium)"
    );
    let sent = cloud.requests()[0].json();
    assert_eq!(sent["max_tokens"], json!(64));
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "be terse"})
    );
    assert_eq!(
        local.requests()[0].json()["options"],
        json!({"num_predict": 64})
    );
    let rows = db_rows(
        &env,
        "SELECT script, task, tier, provider, host, model, outcome, cost_source FROM llm_ledger ORDER BY id",
    );
    assert!(rows[0][0].ends_with("/play.lua\")"), "{:?}", rows[0]);
    assert_eq!(
        rows[0][1..],
        [
            "Text(\"code_generation\")",
            "Text(\"local\")",
            "Text(\"ollama\")",
            "Text(\"engine\")",
            "Text(\"qwen2.5-coder:32b\")",
            "Text(\"rejected\")",
            "Text(\"unknown\")"
        ]
    );
    assert_eq!(
        rows[1][2..],
        [
            "Text(\"cheap\")",
            "Text(\"openrouter\")",
            &format!("Text({:?})", format!("{}/v1", cloud.url)),
            "Text(\"anthropic/claude-sonnet-4.5\")",
            "Text(\"ok\")",
            "Text(\"provider\")"
        ]
    );
}

/// 50 asks, each reserving exactly $1 against a $10 budget (price $1 per output token, max_tokens 1).
const FIFTY_ASKS: &str = r#"
    local alerts = 0
    route.on_alert = function(spent, limit) alerts = alerts + 1 end
    local fns = {}
    for i = 1, NUM do
      fns[i] = function() return route.ask("gap_analysis", "q" .. i, { max_tokens = 1 }) end
    end
    local ok = 0
    for _, r in ipairs(baton.gather(fns, { check = false })) do
      if r.ok then ok = ok + 1 end
    end
    print("ok", ok, "alerts", alerts)
"#;

fn spent_and_ok(env: &Env) -> (f64, usize) {
    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    conn.query_row(
        "SELECT COALESCE(SUM(cost), 0), COUNT(*) FILTER (WHERE outcome = 'ok') FROM llm_ledger",
        [],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)),
    )
    .unwrap()
}

/// A cloud stub charging $1 per answer, slow enough that concurrent asks overlap, and an environment whose
/// fleet has a $10 budget at $1 per output token.
async fn ten_dollar_budget(name: &str) -> (Stub, Env) {
    let cloud = Stub::start(|req, _| {
        let model = req.json()["model"].as_str().unwrap_or("?").to_string();
        Reply::sse(server::sse(&model, &["x"], 1, 1, Some(1.0)), 32).slow(Duration::from_millis(20))
    })
    .await;
    let env = Env::new(name)
        .with_fleet(&fleet_lua(
            &refused_url().await,
            &cloud.url,
            Some(10.0),
            1_000_000.0,
        ))
        .var("OPENROUTER_API_KEY", KEY);
    (cloud, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_50_concurrent_asks_never_overspend() {
    let (cloud, env) = ten_dollar_budget("lua-fifty").await;
    let (env, out) = run_lua(env, &FIFTY_ASKS.replace("NUM", "50")).await;
    out.ok();
    assert_eq!(out.stdout, "ok\t10\talerts\t1\n");
    let (spent, ok) = spent_and_ok(&env);
    assert!(spent <= 10.0 + 1e-9, "spent ${spent} of $10");
    assert_eq!((ok, cloud.count()), (10, 10));
    let reservations = db_rows(
        &env,
        "SELECT COUNT(*) FROM llm_ledger WHERE outcome = 'sent'",
    );
    assert_eq!(
        reservations,
        [["Integer(0)"]],
        "every reservation was settled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_two_processes_share_one_budget() {
    let (cloud, env) = ten_dollar_budget("lua-two").await;
    let script = env.dir.write("play.lua", FIFTY_ASKS.replace("NUM", "25"));
    let (a, b) = (env.cmd(), env.cmd());
    let spawn = |mut c: std::process::Command| {
        c.args(["run", script.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (pa, pb) = (spawn(a), spawn(b));
    let (oa, ob) = tokio::task::spawn_blocking(move || {
        (
            crate::common::wait_within(pa, Duration::from_secs(60)),
            crate::common::wait_within(pb, Duration::from_secs(60)),
        )
    })
    .await
    .unwrap();
    oa.ok();
    ob.ok();
    let count = |o: &Out| {
        o.stdout
            .split('\t')
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(count(&oa) + count(&ob), 10, "{}{}", oa.stdout, ob.stdout);
    let alerts = |o: &Out| {
        o.stdout
            .trim_end()
            .rsplit('\t')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(
        alerts(&oa) + alerts(&ob),
        1,
        "the alert fires once across processes"
    );
    let (spent, ok) = spent_and_ok(&env);
    assert!(spent <= 10.0 + 1e-9, "spent ${spent} of $10");
    assert_eq!((ok, cloud.count()), (10, 10));
}

/// `openrouter.chat` sends the request as given, returns exactly the documented fields (plus `ok` with
/// `check = false`), and refuses a mistaken request before sending anything, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_openrouter_chat_requests_results_and_argument_errors() {
    let body = server::sse("m", &["ok"], 1, 1, Some(0.0));
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 64)).await;
    let env = Env::new("lua-or-decode")
        .with_fleet(&fleet_lua(&refused_url().await, &stub.url, None, 15.0))
        .var("OPENROUTER_API_KEY", KEY);
    let (_env, out) = run_lua(
        env,
        r#"
        local msgs = { { role = "system", content = "be brief" },
                       { role = "user", content = "é \"q\"\n", images = { "aGk=" } } }
        local base = { model = "m", messages = msgs, max_tokens = 16, temperature = 0.5,
                       models = { "a", "b" }, timeout = "30s", check = true }
        local function with(extra)
          local t = {}
          for k, v in pairs(base) do t[k] = v end
          for k, v in pairs(extra) do t[k] = v end
          return t
        end
        local function keys(t)
          local ks = {}
          for k in pairs(t) do ks[#ks + 1] = k end
          table.sort(ks)
          return table.concat(ks, ",")
        end
        print(keys(openrouter.chat(base)))
        print(openrouter.chat(with{ provider = { order = { "x" } } }).text)
        -- check = false adds ok = true; a second argument is ignored
        local r = openrouter.chat(with{ check = false }, "extra")
        print(r.ok, r.text, r.tokens_in, r.cost_source)
        print(select('#', openrouter.chat(base)), openrouter.chat(base, 2).text)
        for _, bad in ipairs{
          with{ tempature = 1 },
          with{ max_tokens = "many" },
          with{ max_tokens = 16.0 },
          with{ messages = { { role = "user", content = "x", nmae = "n" } } },
          with{ messages = { "just text" } },
          with{ check = "yes" },
          { messages = msgs },
          "just text",
        } do
          local ok, err = pcall(openrouter.chat, bad)
          print(ok, err)
        end
        print(pcall(openrouter.chat))
    "#,
    )
    .await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        &lines[..2],
        [
            "cost,cost_source,duration,finish_reason,id,message,model,text,tokens_in,tokens_out,tool_calls",
            "ok"
        ],
        "{}",
        out.stdout
    );
    assert_eq!(
        &lines[2..4],
        ["true\tok\t1\tprovider", "1\tok"],
        "{}",
        out.stdout
    );
    let sent: Vec<serde_json::Value> = stub.requests().iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 5, "{}", out.stdout);
    for (i, req) in sent.iter().enumerate() {
        assert_eq!(
            req["messages"],
            json!([{"role": "system", "content": "be brief"},
                   {"role": "user", "content": "é \"q\"\n", "images": ["aGk="]}]),
            "request {i}"
        );
        assert_eq!(
            (&req["max_tokens"], &req["temperature"], &req["models"]),
            (&json!(16), &json!(0.5), &json!(["a", "b"])),
            "request {i}"
        );
        assert_eq!(
            (&req["stream"], &req["stream_options"]),
            (&json!(true), &json!({"include_usage": true})),
            "request {i}"
        );
    }
    assert_eq!(sent[1]["provider"], json!({"order": ["x"]}));
    assert!(sent[0].get("provider").is_none());
    // Every mistake is refused before anything is sent, naming what is wrong.
    let errors = &lines[4..];
    assert_eq!(errors.len(), 9, "{}", out.stdout);
    let expect = [
        "tempature",
        "max_tokens",
        "max_tokens",
        "nmae",
        "messages",
        "check",
        "model",
        "argument 1 (request) must be a table",
        "argument 1 (request) must be a table",
    ];
    for (line, word) in errors.iter().zip(expect) {
        assert!(
            line.starts_with("false\t") && line.contains("openrouter.chat") && line.contains(word),
            "{line} should name {word}"
        );
    }
}

//! Tool calls, reasoning and structured answers: both clients against stubs that send them the way real
//! servers do (and get wrong), then the `route.ask` tool loop through the real binary.
use serde_json::{Value, json};

use baton::core::llm::ollama::{self, Ollama};
use baton::core::llm::{ErrorKind, Message, ToolCall, ToolSpec, openai};

use super::server::{self, Reply, Stub, refused_url};
use super::{collector, ep, fast, openai_client};
use crate::common::Env;

fn specs() -> Vec<ToolSpec> {
    ["read_log", "git_log"]
        .iter()
        .map(|n| ToolSpec {
            name: n.to_string(),
            description: format!("{n} tool"),
            parameters: json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        })
        .collect()
}

fn or_req(tools: bool) -> openai::ChatRequest {
    let mut r = openai::ChatRequest {
        model: "m/x".into(),
        messages: vec![Message::new("user", "why did CI fail?")],
        ..Default::default()
    };
    if tools {
        r.shape.offer(specs());
    }
    r
}

fn ol_req(tools: bool) -> ollama::ChatRequest {
    let mut r = ollama::ChatRequest {
        model: "qwen".into(),
        messages: vec![Message::new("user", "why did CI fail?")],
        ..Default::default()
    };
    if tools {
        r.shape.offer(specs());
    }
    r
}

fn calls(c: &[ToolCall]) -> Vec<(String, String, Value)> {
    c.iter()
        .map(|c| (c.id.clone(), c.name.clone(), c.arguments.clone()))
        .collect()
}

/// Two parallel calls streamed in fragments (ids and names first, arguments in pieces, interleaved) and
/// cut into 7-byte TCP pieces; the conversation continues with the wire format OpenAI wants.
#[tokio::test]
async fn openai_streamed_parallel_tool_calls_are_joined_per_index() {
    let deltas = [
        json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "read_log", "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "git_log", "arguments": "{\"n\""}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"n\": "}}]}),
        json!({"tool_calls": [{"index": 1, "function": {"arguments": ": 3}"}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "20}"}}]}),
    ];
    let body = server::sse_deltas("m/x", &deltas, "tool_calls");
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 7)).await;
    let client = openai_client(&stub.url);
    let c = client.chat(&or_req(true), None, None, None).await.unwrap();
    assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        calls(&c.answer.tool_calls),
        [
            ("call_a".into(), "read_log".into(), json!({"n": 20})),
            ("call_b".into(), "git_log".into(), json!({"n": 3}))
        ]
    );
    let sent = stub.requests()[0].json();
    assert_eq!(sent["tools"][1]["function"]["name"], "git_log");
    assert_eq!(sent["tools"][0]["type"], "function");

    // The next turn: the assistant message as returned, then the tool results.
    let mut next = or_req(true);
    next.messages.push(c.answer.message.clone());
    for call in &c.answer.tool_calls {
        next.messages.push(Message::tool_result(call, "ok"));
    }
    let _ = client.chat(&next, None, None, None).await;
    let sent = stub.requests()[1].json();
    let m = &sent["messages"];
    assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"], "{\"n\":20}");
    assert_eq!(m[1]["tool_calls"][0]["type"], "function");
    assert_eq!(
        (m[2]["role"].as_str(), m[2]["tool_call_id"].as_str()),
        (Some("tool"), Some("call_a"))
    );
    assert_eq!(
        sent["tools"].as_array().map(Vec::len),
        Some(2),
        "tools go on every request"
    );
}

/// Servers that number every parallel call 0 (litellm#33678): calls are told apart by id.
#[tokio::test]
async fn openai_all_index_zero_calls_are_told_apart_by_id() {
    let deltas = [
        json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "read_log", "arguments": "{\"n\":"}}]}),
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "git_log", "arguments": ""}}]}),
        json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "read_log", "arguments": {"n": 2}}}]}),
    ];
    let body = server::sse_deltas("m/x", &deltas, "tool_calls");
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 5)).await;
    let c = openai_client(&stub.url)
        .chat(&or_req(true), None, None, None)
        .await
        .unwrap();
    assert_eq!(
        calls(&c.answer.tool_calls),
        [
            ("a".into(), "read_log".into(), json!({"n": 1})),
            ("b".into(), "git_log".into(), json!({})),
            ("c".into(), "read_log".into(), json!({"n": 2}))
        ]
    );
}

/// Ollama: calls whole in a `done: false` chunk, no ids (made up), arguments as an object or a string,
/// `done_reason: "stop"` after tool calls; the next turn maps to `tool_name` and object arguments.
#[tokio::test]
async fn ollama_whole_tool_calls_get_ids_and_the_right_finish_reason() {
    let lines = server::ollama_tool_calls(
        "qwen",
        json!([{"function": {"name": "read_log", "arguments": {"n": 5}}},
               {"function": {"index": 1, "name": "git_log", "arguments": "{\"n\": 2}"}}]),
    );
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 9)).await;
    let client = Ollama::new(fast());
    let e = ep(&stub.url, 2);
    let c = client.chat(&e, &ol_req(true), None, None).await.unwrap();
    assert_eq!(
        (c.finish_reason.as_str(), c.done_reason.as_str()),
        ("tool_calls", "stop")
    );
    assert_eq!(c.answer.tool_calls.len(), 2);
    assert!(c.answer.tool_calls[0].id.starts_with("call_"));
    assert_ne!(c.answer.tool_calls[0].id, c.answer.tool_calls[1].id);
    assert_eq!(c.answer.tool_calls[0].arguments, json!({"n": 5}));
    assert_eq!(c.answer.tool_calls[1].arguments, json!({"n": 2}));
    let mut next = ol_req(true);
    next.messages.push(c.answer.message.clone());
    next.messages
        .push(Message::tool_result(&c.answer.tool_calls[0], "log"));
    let _ = client.chat(&e, &next, None, None).await;
    let sent = stub.requests()[1].json();
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"n": 5})
    );
    assert_eq!(sent["messages"][2]["tool_name"], "read_log");
    assert_eq!(sent["tools"][0]["function"]["name"], "read_log");
}

/// A small model writing the call as JSON in the content (ollama#13519) is read as a call when tools were
/// offered; `content_tool_calls = false` turns that off, and without tools it is just text.
#[tokio::test]
async fn json_in_content_is_a_tool_call_when_tools_were_offered() {
    let text = r#"{"name": "git_log", "arguments": {"n": 4}}"#;
    let lines = server::ollama_chat("qwen", &[&text[..10], &text[10..]], 3, 4);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 64)).await;
    let client = Ollama::new(fast());
    let e = ep(&stub.url, 2);
    let c = client.chat(&e, &ol_req(true), None, None).await.unwrap();
    assert_eq!(c.finish_reason, "tool_calls");
    assert_eq!(
        (
            c.answer.tool_calls[0].name.as_str(),
            &c.answer.tool_calls[0].arguments
        ),
        ("git_log", &json!({"n": 4}))
    );
    assert_eq!(c.answer.text, "");
    let mut off = ol_req(true);
    off.shape.content_tool_calls = Some(false);
    let c = client.chat(&e, &off, None, None).await.unwrap();
    assert!(c.answer.tool_calls.is_empty());
    assert_eq!(c.answer.text, text);
    let c = client.chat(&e, &ol_req(false), None, None).await.unwrap();
    assert!(c.answer.tool_calls.is_empty() && c.finish_reason == "stop");
}

/// Reasoning: Ollama's `message.thinking` and an inline `<think>` block both land in `thinking`, streamed
/// to `on_thinking`, and `text`/`on_token` carry the answer alone.
#[tokio::test]
async fn thinking_fields_and_inline_think_blocks_are_kept_apart_from_the_answer() {
    let mut lines = vec![
        json!({"model": "r1", "message": {"role": "assistant", "content": "", "thinking": "Let me "}, "done": false}),
        json!({"model": "r1", "message": {"role": "assistant", "content": "", "thinking": "think."}, "done": false}),
    ];
    lines.extend(server::ollama_chat("r1", &["Forty", "-two"], 1, 2));
    let inline = server::ollama_chat(
        "r1",
        &[
            "<thi",
            "nk>\nhidden ",
            "steps</thi",
            "nk>\n\n",
            "Answer",
            ".",
        ],
        1,
        2,
    );
    let stub = Stub::start(move |req, _| {
        if req.json()["think"] == json!(true) {
            Reply::ndjson(lines.clone(), 13)
        } else {
            Reply::ndjson(inline.clone(), 13)
        }
    })
    .await;
    let client = Ollama::new(fast());
    let e = ep(&stub.url, 2);
    let mut req = ol_req(false);
    req.think = Some(json!(true));
    let (thoughts, mut on_thinking) = collector();
    let (tokens, mut on_token) = collector();
    let c = client
        .chat_thinking(&e, &req, None, Some(&mut on_token), Some(&mut on_thinking))
        .await
        .unwrap();
    assert_eq!(
        (c.answer.text.as_str(), c.answer.thinking.as_deref()),
        ("Forty-two", Some("Let me think."))
    );
    assert_eq!(thoughts.lock().unwrap().concat(), "Let me think.");
    assert_eq!(tokens.lock().unwrap().concat(), "Forty-two");
    assert_eq!(c.answer.message.thinking.as_deref(), Some("Let me think."));

    let (thoughts, mut on_thinking) = collector();
    let (tokens, mut on_token) = collector();
    let c = client
        .chat_thinking(
            &e,
            &ol_req(false),
            None,
            Some(&mut on_token),
            Some(&mut on_thinking),
        )
        .await
        .unwrap();
    assert_eq!(c.answer.text, "Answer.");
    assert_eq!(
        c.answer.thinking.as_deref().map(str::trim),
        Some("hidden steps")
    );
    assert_eq!(tokens.lock().unwrap().concat(), "Answer.");
    assert_eq!(thoughts.lock().unwrap().concat().trim(), "hidden steps");
}

/// OpenRouter: `delta.reasoning` → `thinking`; `reasoning_details` come back on the message to pass on.
#[tokio::test]
async fn openrouter_reasoning_and_details_are_returned_for_the_next_turn() {
    let deltas = [
        json!({"reasoning": "Check the ", "reasoning_details": [{"type": "reasoning.text", "text": "Check the ", "index": 0}]}),
        json!({"reasoning": "log.", "reasoning_details": [{"type": "reasoning.encrypted", "data": "xyz", "index": 1}]}),
        json!({"content": "It was a flaky test."}),
    ];
    let body = server::sse_deltas("m/x", &deltas, "stop");
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 11)).await;
    let client = openai_client(&stub.url);
    let mut req = or_req(false);
    req.reasoning = Some(json!({"effort": "low"}));
    let c = client.chat(&req, None, None, None).await.unwrap();
    assert_eq!(c.answer.text, "It was a flaky test.");
    assert_eq!(c.answer.thinking.as_deref(), Some("Check the log."));
    let details = c.answer.message.reasoning_details.clone().unwrap();
    assert_eq!(details[1]["data"], "xyz");
    assert_eq!(
        stub.requests()[0].json()["reasoning"],
        json!({"effort": "low"})
    );
    let mut next = or_req(false);
    next.messages.push(c.answer.message);
    let _ = client.chat(&next, None, None, None).await;
    assert_eq!(
        stub.requests()[1].json()["messages"][1]["reasoning_details"],
        details
    );
}

fn verdict_schema() -> Value {
    json!({"type": "object", "properties": {"verdict": {"type": "string", "enum": ["pass", "fail"]}},
           "required": ["verdict"], "additionalProperties": false})
}

/// Structured answers: the schema goes out as Ollama's `format` and OpenRouter's strict `response_format`
/// (with `provider.require_parameters`); a valid answer is decoded, an invalid one raises.
#[tokio::test]
async fn schema_answers_are_decoded_or_refused() {
    let good = server::ollama_chat("qwen", &["{\"verdict\":", " \"pass\"}"], 1, 2);
    let bad = server::ollama_chat("qwen", &["{\"verdict\": \"maybe\"}"], 1, 2);
    let stub =
        Stub::start(move |_, n| Reply::ndjson(if n == 0 { good.clone() } else { bad.clone() }, 8))
            .await;
    let client = Ollama::new(fast());
    let e = ep(&stub.url, 2);
    let mut req = ol_req(false);
    req.require(verdict_schema());
    let c = client.chat(&e, &req, None, None).await.unwrap();
    assert_eq!(c.answer.data, Some(json!({"verdict": "pass"})));
    assert_eq!(stub.requests()[0].json()["format"], verdict_schema());
    let err = client.chat(&e, &req, None, None).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Schema(_)), "{err}");
    assert!(
        err.to_string()
            .contains("$.verdict: expected one of \"pass\", \"fail\", got string \"maybe\""),
        "{err}"
    );

    let body = server::sse("m/x", &["{\"verdict\":\"fail\"}"], 1, 1, Some(0.0));
    let stub = Stub::start(move |_, _| Reply::sse(body.clone(), 6)).await;
    let mut req = or_req(false);
    req.provider = Some(json!({"order": ["a"]}));
    req.require(verdict_schema());
    let c = openai_client(&stub.url)
        .chat(&req, None, None, None)
        .await
        .unwrap();
    assert_eq!(c.answer.data, Some(json!({"verdict": "fail"})));
    let sent = stub.requests()[0].json();
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        verdict_schema()
    );
    assert_eq!(
        sent["provider"],
        json!({"order": ["a"], "require_parameters": true})
    );
}

// ---- the loop, through the real binary ----

/// A fleet with one local tier (Ollama at `url`) and a cheap tier at `or_url`.
fn loop_fleet(url: &str, or_url: &str, budget: Option<f64>) -> String {
    let budget = budget.map_or(String::new(), |b| {
        format!("budget = {{ monthly_usd = {b}, alert_at = 0.9 }},")
    });
    format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{url}" }} }},
  tiers = {{
    {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }} }},
    {{ name = "cheap", provider = "openrouter", model = "c/m", price = {{ input = 1, output = 1 }} }},
  }},
  openrouter = {{ base_url = "{or_url}/v1" }},
  {budget}
}}"#
    )
}

async fn run_lua(env: Env, script: &str) -> (Env, crate::common::Out) {
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let out = env.run_lua("play.lua", &script, &[]);
        (env, out)
    })
    .await
    .unwrap()
}

/// How many tool results the request carries: the model stub's turn number.
fn turn(req: &server::Request) -> usize {
    req.json()["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count())
}

/// A schema with a keyword baton does not check is refused where it is given (every way in), naming the
/// keyword and its place, before anything is sent: it never "validates" an answer it did not check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchecked_schema_keywords_are_refused_where_the_schema_is_given() {
    let stub = Stub::start(|_, _| Reply::json(400, json!({"error": "no model here"}))).await;
    let env = Env::new("schema-intake").with_fleet(&loop_fleet(&stub.url, &stub.url, None));
    let (_env, out) = run_lua(env, r##"
        local msgs = { { role = "user", content = "hi" } }
        local verdict = { oneOf = { { const = "pass" }, { const = "fail" } } }
        print(select(2, pcall(route.ask, "lint", "judge",
          { schema = { type = "object", properties = { verdict = verdict } } })))
        print(select(2, pcall(ollama.chat, { model = "qwen", host = "engine", messages = msgs,
          schema = { type = "array", items = { type = "string", pattern = "^a" } } })))
        print(select(2, pcall(openrouter.chat, { model = "c/m", messages = msgs, schema = { ["$ref"] = "#/$defs/v" } })))
        -- What is checked, with annotations, still goes through intake.
        local ok, e = pcall(route.ask, "lint", "judge", { max_tier = "local",
          schema = { type = "object", title = "Verdict", description = "d", properties = { v = { enum = { 1 } } } } })
        print(ok, tostring(e):find("schema:", 1, true) == nil)
    "##).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let supported =
        "(supported: type, properties, required, additionalProperties, items, enum, const, anyOf,";
    for (line, want) in lines.iter().zip([
        r#"route.ask: schema: unsupported keyword "oneOf" at /properties/verdict "#,
        r#"ollama.chat: schema: unsupported keyword "pattern" at /items "#,
        r#"openrouter.chat: schema: unsupported keyword "$ref" at / "#,
    ]) {
        assert!(
            line.starts_with(&format!("{want}{supported}")),
            "got {line:?}, want {want:?}\n{}",
            out.stderr
        );
    }
    assert_eq!(lines[3], "false\ttrue", "{}", out.stdout);
    let sent = stub.requests();
    assert!(
        !sent.is_empty()
            && sent
                .iter()
                .all(|r| r.json()["format"]["title"] == "Verdict"),
        "only the last, valid schema was sent"
    );
}

/// The loop: two tools of one step run at once (each waits until both have started, so run one after the
/// other their spans could not overlap), a failing tool
/// and an unknown tool are fed back as `error: …` and the model answers; every model call is a ledger row
/// with its step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_loop_runs_tools_concurrently_and_feeds_errors_back() {
    let stub = Stub::start(|req, _| {
        let lines = match turn(req) {
            0 => server::ollama_tool_calls(
                "qwen",
                json!([{"function": {"name": "slow", "arguments": {"tag": "a"}}},
                       {"function": {"name": "slow", "arguments": {"tag": "b"}}}]),
            ),
            2 => server::ollama_tool_calls(
                "qwen",
                json!([{"function": {"name": "broken", "arguments": {}}},
                       {"function": {"name": "nosuch", "arguments": ""}}]),
            ),
            _ => server::ollama_chat("qwen", &["all ", "done"], 5, 2),
        };
        Reply::ndjson(lines, 32)
    })
    .await;
    let env = Env::new("tools-loop").with_fleet(&loop_fleet(&stub.url, &refused_url().await, None));
    let (env, out) = run_lua(env, r#"
        local spans, seen, started = {}, {}, {}
        local tools = {
          slow = { description = "sleeps", parameters = { type = "object", properties = { tag = { type = "string" } } },
                   run = function(args)
                     local t0 = baton.clock(); started[args.tag] = true
                     for _ = 1, 1000 do if started.a and started.b then break end baton.sleep(0.01) end
                     spans[#spans + 1] = { args.tag, t0, baton.clock() }
                     return { tag = args.tag, ok = true }
                   end },
          broken = { description = "fails", run = function() error("disk on fire") end },
        }
        local r = route.ask("lint", "go", { tools = tools, max_tier = "local",
          on_step = function(s) seen[#seen + 1] = s.kind .. ":" .. s.name end })
        print(r.text, r.tier, #r.steps, r.tokens_in, r.tokens_out)
        print(table.concat(seen, " "))
        local a, b = spans[1], spans[2]
        print("overlap", math.max(a[2], b[2]) < math.min(a[3], b[3]))
        for _, s in ipairs(r.steps) do if s.kind == "tool" then print(s.step, s.name, s.result or ("ERR " .. s.err)) end end
        print(#r.messages, r.messages[#r.messages].role, r.messages[#r.messages].content)
    "#).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "all done\tlocal\t7\t19\t8");
    assert_eq!(
        lines[1],
        "model:qwen tool:slow tool:slow model:qwen tool:broken tool:nosuch model:qwen"
    );
    assert_eq!(lines[2], "overlap\ttrue");
    assert!(lines[3].starts_with("1\tslow\t{\""), "{}", lines[3]);
    assert!(
        lines[5].starts_with("2\tbroken\tERR ") && lines[5].contains("disk on fire"),
        "{}",
        lines[5]
    );
    assert_eq!(
        lines[6],
        "2\tnosuch\tERR unknown tool \"nosuch\" (tools: broken, slow)"
    );
    assert_eq!(lines[7], "8\tassistant\tall done");
    // What the model was told in the third turn.
    let third = stub.requests()[2].json();
    let msgs = third["messages"].as_array().unwrap();
    let tool_msgs: Vec<&str> = msgs
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        tool_msgs[2].starts_with("error: ") && tool_msgs[2].contains("disk on fire"),
        "{tool_msgs:?}"
    );
    assert_eq!(
        tool_msgs[3],
        "error: unknown tool \"nosuch\" (tools: broken, slow)"
    );
    assert_eq!(
        msgs.iter().filter(|m| m["role"] == "tool").nth(3).unwrap()["tool_name"],
        "nosuch"
    );
    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT step, outcome FROM llm_ledger ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, [(1, "ok".into()), (2, "ok".into()), (3, "ok".into())]);
}

/// A model that never stops asking for tools ends at `max_steps` with an error listing the steps; a
/// schema-invalid answer is rejected and the next tier tried; a budget that does not fit a later step
/// refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_loop_max_steps_schema_escalation_and_budget() {
    let ollama = Stub::start(|req, _| {
        let body = req.json();
        if body.get("format").is_some() {
            return Reply::ndjson(
                server::ollama_chat("qwen", &["{\"verdict\": \"maybe\"}"], 1, 1),
                64,
            );
        }
        Reply::ndjson(
            server::ollama_tool_calls(
                "qwen",
                json!([{"function": {"name": "t", "arguments": {}}}]),
            ),
            64,
        )
    })
    .await;
    let cloud = Stub::start(|req, _| {
        let body = req.json();
        if body.get("response_format").is_some() {
            Reply::sse(server::sse("c/m", &["{\"verdict\":\"pass\"}"], 10, 5, Some(0.001)), 64)
        } else {
            let deltas = [json!({"tool_calls": [{"index": 0, "id": format!("c{}", turn(req)), "function": {"name": "t", "arguments": "{}"}}]})];
            Reply::sse(server::sse_deltas("c/m", &deltas, "tool_calls"), 64)
        }
    })
    .await;
    let env = Env::new("tools-steps")
        .with_fleet(&loop_fleet(&ollama.url, &cloud.url, Some(0.0045)))
        .var("OPENROUTER_API_KEY", super::KEY);
    let (env, out) = run_lua(env, r#"
        local tools = { { name = "t", run = function() return "again" end } }
        local ok, err = pcall(route.ask, "lint", "go", { tools = tools, max_steps = 2, max_tier = "local" })
        print(ok, err)
        local r = route.ask("lint", "judge", { schema = { type = "object", properties = { verdict = { enum = { "pass", "fail" } } } } })
        print(r.tier, r.data.verdict, r.attempts[1].outcome, r.attempts[1].err)
        local ok, err = pcall(route.ask, "gap_analysis", "go", { tools = tools, max_steps = 5, max_tokens = 1000 })
        print(ok, err)
        local ok, err = pcall(route.ask, "lint", "x", { zzz = 1 })
        print(ok, err)
    "#).await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("false\t")
            && lines[0].ends_with("route.ask(lint): no tier left after 1 attempt: local (qwen): error: ran out of steps (max_steps = 2): step 1 qwen → t; step 2 qwen → t"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "cheap\tpass\trejected\tthe answer does not match the schema: $.verdict: expected one of \"pass\", \"fail\", got string \"maybe\""
    );
    // Each cloud step reserves (prompt estimate + 1000 tokens) × $1/M, a little over $0.001, and costs
    // $0.001: after the schema answer's $0.001 and three steps, step 4 no longer fits in $0.0045.
    assert!(lines[2].starts_with("false\t"), "{}", lines[2]);
    assert!(
        lines[2].contains("cheap (c/m): budget: step 4: worst case $0.001"),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains("does not fit what is left of $0.0045 this month"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("unknown key")
            && [
                "accept",
                "on_token",
                "tools",
                "schema",
                "on_step",
                "max_steps"
            ]
            .iter()
            .all(|k| lines[3].contains(k)),
        "{}",
        lines[3]
    );
    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    let steps: Vec<Option<i64>> = conn
        .prepare("SELECT step FROM llm_ledger WHERE tier = 'cheap' AND task = 'gap_analysis' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(steps, [Some(1), Some(2), Some(3), Some(4)]);
}

/// A streamed tool call with an empty name (issue 26) is no final answer: the model is told, as a tool
/// result, that the call named no tool, and its next answer is the one returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_with_an_empty_name_is_an_error_sent_back_to_the_model() {
    let cloud = Stub::start(|req, _| match turn(req) {
        0 => {
            let deltas = [
                json!({"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                "function": {"name": "", "arguments": "{}"}}]}),
            ];
            Reply::sse(server::sse_deltas("c/m", &deltas, "tool_calls"), 64)
        }
        _ => Reply::sse(
            server::sse("c/m", &["fixed ", "it"], 10, 5, Some(0.001)),
            64,
        ),
    })
    .await;
    let env = Env::new("tools-empty-name")
        .with_fleet(&loop_fleet(&refused_url().await, &cloud.url, None))
        .var("OPENROUTER_API_KEY", super::KEY);
    let (_env, out) = run_lua(
        env,
        r#"
        local tools = { { name = "t", run = function() return "ran" end } }
        local r = route.ask("gap_analysis", "go", { tools = tools })
        print(r.text, r.tier, #r.steps)
        for _, s in ipairs(r.steps) do if s.kind == "tool" then print(s.step, s.name, s.err) end end
    "#,
    )
    .await;
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "fixed it\tcheap\t3", "{}", out.stdout);
    let told = "a tool call needs the name of a tool, got \"\" (tools: t)";
    assert_eq!(lines[1], format!("1\t\t{told}"));
    let sent = cloud.requests();
    assert_eq!(sent.len(), 2, "the model was asked again");
    let second = sent[1].json();
    let tool_msgs: Vec<&serde_json::Value> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_msgs.len(), 1, "{second}");
    assert_eq!(tool_msgs[0]["content"], format!("error: {told}"));
    assert_eq!(tool_msgs[0]["tool_call_id"], "c0");
}

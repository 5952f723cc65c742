//! `baton ask` through the real binary: stdin as prompt and context, streaming, `--json` with `--schema`,
//! and a failing tier.
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use super::server::{self, Reply, Stub, refused_url};
use crate::common::{Env, Out, wait_within};

fn fleet(url: &str, or_url: &str) -> String {
    format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{url}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "r1" }} }},
            {{ name = "cheap", provider = "openrouter", model = "c/m" }} }},
  openrouter = {{ base_url = "{or_url}/v1" }},
}}"#
    )
}

/// Runs `baton ask ARGS` with `stdin` piped in, off the async runtime so the stub keeps serving.
async fn ask(env: &Env, args: &[&str], stdin: &str) -> Out {
    let mut cmd = env.cmd();
    cmd.arg("ask").args(args).stdin(Stdio::piped());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let input = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("start baton");
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
        drop(pipe);
        wait_within(child, Duration::from_secs(60))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_reads_stdin_streams_the_answer_and_books_it() {
    let lines = server::ollama_chat("qwen", &["fix: ", "handle ", "empty input"], 30, 4);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 16)).await;
    let env = Env::new("ask-stdin").with_fleet(&fleet(&stub.url, &refused_url().await));
    let out = ask(
        &env,
        &["commit_message"],
        "diff --git a/x b/x\n+empty check\n",
    )
    .await;
    out.ok();
    assert_eq!(out.stdout, "fix: handle empty input\n");
    assert_eq!(
        out.stderr.lines().last(),
        Some("local · qwen · 30 in / 4 out · $0.00")
    );
    let sent = stub.requests()[0].json();
    let content = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Write a git commit message for the change below")
            && content.ends_with(".\n\ndiff --git a/x b/x\n+empty check\n"),
        "the task's instruction, then the diff: {content:?}"
    );
    assert_eq!(sent["model"], "qwen");

    // A prompt plus stdin as context, and a system prompt.
    let out = ask(
        &env,
        &["lint", "Review this:", "--system", "be terse"],
        "some code",
    )
    .await;
    out.ok();
    let sent = stub.requests()[1].json();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "be terse"})
    );
    let content = sent["messages"][1]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Lint the code below")
            && content.ends_with("\n\nReview this:\n\nsome code"),
        "{content:?}"
    );

    let conn = rusqlite::Connection::open(env.state_dir().join("baton.db")).unwrap();
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT script, task, outcome FROM llm_ledger ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            ("baton ask".into(), "commit_message".into(), "ok".into()),
            ("baton ask".into(), "lint".into(), "ok".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_json_with_a_schema_prints_the_decoded_answer() {
    let lines = server::ollama_chat("qwen", &["{\"verdict\": ", "\"pass\"}"], 5, 6);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 8)).await;
    let env = Env::new("ask-json").with_fleet(&fleet(&stub.url, &refused_url().await));
    let schema = env.dir.write(
        "verdict.json",
        r#"{"type": "object", "properties": {"verdict": {"enum": ["pass", "fail"]}}, "required": ["verdict"]}"#,
    );
    let out = ask(
        &env,
        &[
            "qa_verification",
            "did it pass?",
            "--json",
            "--max-tier",
            "local",
            "--schema",
            schema.to_str().unwrap(),
        ],
        "",
    )
    .await;
    out.ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["data"], json!({"verdict": "pass"}));
    assert_eq!(
        (v["tier"].as_str(), v["tokens_out"].as_u64()),
        (Some("local"), Some(6))
    );
    assert_eq!(
        stub.requests()[0].json()["format"]["required"],
        json!(["verdict"])
    );

    let bad = env.dir.write("bad.json", "[1, 2");
    let out = ask(&env, &["x", "--schema", bad.to_str().unwrap()], "").await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("--schema") && out.stderr.contains("not JSON"),
        "{}",
        out.stderr
    );
    // A keyword baton would not check is refused before anything is asked.
    let unchecked = env.dir.write(
        "when.json",
        r#"{"type": "object", "properties": {"when": {"type": "string", "format": "date"}}}"#,
    );
    let out = ask(&env, &["x", "--schema", unchecked.to_str().unwrap()], "").await;
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "ask: --schema {}: unsupported keyword \"format\" at /properties/when (supported: type,",
            unchecked.display()
        )),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_fails_with_every_attempt_when_no_tier_answers() {
    let env = Env::new("ask-fail").with_fleet(&fleet(&refused_url().await, &refused_url().await));
    let out = ask(&env, &["lint", "hello", "--max-tier", "local"], "").await;
    out.expect_code(1);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .starts_with("baton: ask(lint): no tier left after 1 attempt: local (qwen): offline:")
            && out.stderr.contains("connection refused"),
        "{}",
        out.stderr
    );
    let out = ask(&env, &[], "").await;
    out.expect_code(1);
    assert!(out.stderr.contains("ask: no prompt"), "{}", out.stderr);
}

/// A paid call reserves its prompt plus `max_tokens` of answer (4 096 by default): with $0.10 left at
/// $100 per million output tokens the default ($0.41) is refused, with a hint naming `--max-tokens`, and
/// `--max-tokens 16` ($0.0016) goes through with the cap sent to the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_max_tokens_lowers_the_reservation() {
    let provider = Stub::start(|req, _| {
        if req.path.ends_with("/key") {
            Reply::json(200, server::key_info(0.0, 0.0, None))
        } else {
            Reply::sse(server::sse("c/m", &["short"], 3, 1, Some(0.0001)), 64)
        }
    })
    .await;
    let env = Env::new("ask-max-tokens")
        .with_fleet(&format!(
            r#"return {{
  hosts = {{}},
  tiers = {{ {{ name = "cheap", provider = "openrouter", model = "c/m", price = {{ input = 0, output = 100 }} }} }},
  openrouter = {{ base_url = "{}/v1" }},
  budget = {{ monthly_usd = 0.1, alert_at = 0.9 }},
}}"#,
            provider.url
        ))
        .var("OPENROUTER_API_KEY", super::KEY);
    let out = ask(&env, &["lint", "say yes"], "").await;
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "cheap (c/m): budget: worst case $0.41 does not fit what is left of $0.10 this month (spent $0.00)"
        ) && out.stderr.contains("`--max-tokens N` for `baton ask`"),
        "{}",
        out.stderr
    );
    let chats = || {
        provider
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .collect::<Vec<_>>()
    };
    assert!(chats().is_empty(), "a refused call was sent");

    let out = ask(&env, &["lint", "say yes", "--max-tokens", "16"], "").await;
    out.ok();
    assert_eq!(out.stdout, "short\n");
    let sent = chats();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].json()["max_tokens"], 16);

    let out = ask(&env, &["lint", "x", "--max-tokens", "0"], "").await;
    out.expect_code(2);
}

/// One word that names no task is the prompt (`baton ask hello` used to fail with "no prompt", taking
/// "hello" for a task); a known task alone still waits for its prompt; several unquoted words get a hint
/// to quote them instead of clap's "unexpected argument".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_word_that_is_no_task_is_the_prompt() {
    let lines = server::ollama_chat("qwen", &["hi ", "there"], 3, 2);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 16)).await;
    let env = Env::new("ask-one-word").with_fleet(&fleet(&stub.url, &refused_url().await));
    let out = ask(&env, &["hello"], "").await;
    out.ok();
    assert_eq!(out.stdout, "hi there\n");
    let sent = stub.requests()[0].json();
    assert_eq!(sent["messages"][0]["content"], "hello");

    let out = ask(&env, &["lint"], "").await;
    out.expect_code(1);
    assert!(out.stderr.contains("no prompt"), "{}", out.stderr);

    let out = ask(&env, &["why", "is", "the", "sky", "blue"], "").await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("quote the prompt") && out.stderr.contains("\"why is the sky blue\""),
        "{}",
        out.stderr
    );
    assert_eq!(stub.count(), 1, "nothing more was sent");
}

/// `--think`: the reasoning goes to stderr and ends its line before the stats line (it used to run into
/// it: `ponderinglocal · qwen …`); the answer alone is on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_ends_its_line_before_the_stats() {
    let mut lines = vec![
        json!({"model": "qwen", "message": {"role": "assistant", "content": "", "thinking": "ponder"}, "done": false}),
        json!({"model": "qwen", "message": {"role": "assistant", "content": "", "thinking": "ing"}, "done": false}),
    ];
    lines.extend(server::ollama_chat("qwen", &["The ", "answer"], 3, 2));
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 16)).await;
    let env = Env::new("ask-think").with_fleet(&fleet(&stub.url, &refused_url().await));
    let out = ask(&env, &["lint", "why?", "--think"], "").await;
    out.ok();
    assert_eq!(out.stdout, "The answer\n");
    assert!(
        out.stderr
            .contains("pondering\nlocal · qwen · 3 in / 2 out"),
        "{:?}",
        out.stderr
    );
    assert!(!out.stderr.contains('\x1b'), "no colour into a pipe");
}

/// A fleet whose local tier (`url`, Ollama) is tried first and whose cheap tier (`or_url`) answers next.
fn escalating(env: &str, url: &str, or_url: &str) -> Env {
    Env::new(env)
        .with_fleet(&fleet(url, or_url))
        .var("OPENROUTER_API_KEY", super::KEY)
}

/// An OpenRouter stub answering `pieces`.
async fn cheap(pieces: &'static [&'static str]) -> Stub {
    Stub::start(move |req, _| {
        if req.path.ends_with("/key") {
            Reply::json(200, server::key_info(0.0, 0.0, None))
        } else {
            Reply::sse(server::sse("c/m", pieces, 4, 3, Some(0.0002)), 64)
        }
    })
    .await
}

/// The rejected tier's answer never reaches stdout: with `--schema`, stdout holds exactly the accepted
/// JSON (it used to be `review{"verdict": …}`, the rejected stream and the answer run together), and
/// stderr says which tier was passed over and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_answer_never_reaches_stdout() {
    let lines = server::ollama_chat("qwen", &["review"], 3, 1);
    let local = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 16)).await;
    let or = cheap(&["{\"verdict\": ", "\"pass\", \"score\": 7}"]).await;
    let env = escalating("ask-rejected", &local.url, &or.url);
    let schema = env.dir.write(
        "verdict.json",
        r#"{"type": "object", "properties": {"verdict": {"enum": ["pass", "fail"]}, "score": {"type": "integer"}}, "required": ["verdict"]}"#,
    );
    let out = ask(
        &env,
        &[
            "code_generation",
            "review",
            "--schema",
            schema.to_str().unwrap(),
        ],
        "",
    )
    .await;
    out.ok();
    assert_eq!(out.stdout.lines().count(), 1, "{:?}", out.stdout);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is the JSON alone");
    assert_eq!(v, json!({"verdict": "pass", "score": 7}));
    assert!(
        out.stderr
            .contains("ask: local (qwen) rejected: the answer is not JSON")
            && out.stderr.contains("; escalating\n"),
        "{}",
        out.stderr
    );
    assert_eq!(local.count(), 1);

    // No tier gives valid JSON: nothing on stdout, exit 1.
    let out = ask(
        &env,
        &[
            "code_generation",
            "review",
            "--schema",
            schema.to_str().unwrap(),
            "--max-tier",
            "local",
        ],
        "",
    )
    .await;
    out.expect_code(1);
    assert_eq!(out.stdout, "");
}

/// Ollama chat lines that stop after `pieces`, the connection closed without `done`.
fn cut_short(pieces: &[&str]) -> Reply {
    let mut lines = server::ollama_chat("qwen", pieces, 3, 1);
    lines.pop();
    Reply::ndjson(lines, 16).truncated()
}

/// A tier that fails half-way through its answer: a pipe gets the next tier's answer alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_attempt_is_not_in_a_piped_answer() {
    let local = Stub::start(|_, _| cut_short(&["half ", "an answer"])).await;
    let or = cheap(&["the whole answer"]).await;
    let env = escalating("ask-broken-pipe", &local.url, &or.url);
    let out = ask(&env, &["lint", "check"], "").await;
    out.ok();
    assert_eq!(out.stdout, "the whole answer\n");
    assert!(
        out.stderr.contains("ask: local (qwen) error: ") && out.stderr.contains("; escalating"),
        "{}",
        out.stderr
    );
}

/// On a terminal the answer streams as it comes; an attempt that breaks off stays on screen, ends its
/// line and is followed by the "escalating" line, then the answer that counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_sees_the_attempt_then_escalating_then_the_answer() {
    let local = Stub::start(|_, _| cut_short(&["half ", "an answer"])).await;
    let or = cheap(&["the whole answer"]).await;
    let env = escalating("ask-tty", &local.url, &or.url);
    let out = tokio::task::spawn_blocking(move || {
        env.on_terminal(&["--color", "never", "ask", "lint", "check"])
    })
    .await
    .unwrap();
    out.ok();
    let shown = out.stdout;
    let (half, rest) = shown
        .split_once("half an answer\n")
        .unwrap_or_else(|| panic!("the attempt streamed on its own line: {shown:?}"));
    assert_eq!(half, "");
    let (escalating, rest) = rest.split_once('\n').unwrap();
    assert!(
        escalating.starts_with("ask: local (qwen) error: ") && escalating.ends_with("; escalating"),
        "{shown:?}"
    );
    assert!(
        rest.starts_with("the whole answer\ncheap · c/m · "),
        "{shown:?}"
    );
}

/// A known task carries its instruction (`git diff | baton ask commit_message` used to send the bare diff);
/// the fleet overrides it per task, `prompt = ""` sends the text alone, and `-v` shows the one used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_task_carries_its_instruction() {
    let lines = server::ollama_chat("qwen", &["ok"], 3, 1);
    let stub = Stub::start(move |_, _| Reply::ndjson(lines.clone(), 16)).await;
    let fleet = fleet(&stub.url, &refused_url().await).replace(
        "  openrouter =",
        r#"  tasks = { commit_message = { tier = "local", model = "code", prompt = "One line, imperative." },
            lint = { tier = "local", prompt = "" }, code_review = { tier = "local" } },
  openrouter ="#,
    );
    let env = Env::new("ask-instruction").with_fleet(&fleet);
    let sent = |i: usize| stub.requests()[i].json()["messages"][0]["content"].clone();

    let out = ask(&env, &["-v", "commit_message"], "the diff").await;
    out.ok();
    assert_eq!(sent(0), "One line, imperative.\n\nthe diff");
    assert!(
        out.stderr
            .contains("ask: task commit_message's instruction: One line, imperative."),
        "{}",
        out.stderr
    );
    let out = ask(&env, &["-v", "lint", "as is"], "").await;
    out.ok();
    assert_eq!(sent(1), "as is");
    assert!(
        out.stderr.contains("ask: task lint has no instruction"),
        "{}",
        out.stderr
    );
    // A fleet task without `prompt` keeps the default of its kind; an unknown kind has none.
    ask(&env, &["code_review", "the change"], "").await.ok();
    let review = sent(2);
    assert!(
        review
            .as_str()
            .unwrap()
            .starts_with("Review the change below")
            && review.as_str().unwrap().ends_with("\n\nthe change"),
        "{review}"
    );
    ask(&env, &["hello"], "").await.ok();
    assert_eq!(sent(3), "hello");
}

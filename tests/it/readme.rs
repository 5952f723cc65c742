//! The README's shell lines, run as written: every `baton …` line of a ```sh block (a pipeline or a
//! redirection included) runs against a test fleet whose local model is an in-test Ollama, in a folder
//! with the repository's examples and scripts and a git change to describe. A renamed command or flag, a
//! path that moved or an answer that fails makes this test fail, so the README cannot drift.
//!
//! Left out, by their first words: commands that serve or wait until stopped (`baton daemon`, `baton repl`,
//! `baton mcp serve`) and lines that change the machine (`cargo install`, `cp … ~/.config`).
use std::path::Path;
use std::time::Duration;

use crate::common::{Env, output_within};
use crate::llm::server::{self, Reply, Stub};

const README: &str = include_str!("../../README.md");

/// Commands that do not end by themselves or that change the user's machine.
const NOT_RUN: &[&str] = &["baton daemon", "baton repl", "baton mcp serve", "baton web"];

/// The shell lines of the README's ```sh blocks that run baton (comments cut, `$ ` prompts dropped).
fn baton_lines(readme: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let fence = line.trim_start();
        if let Some(info) = fence.strip_prefix("```") {
            in_sh = !in_sh && matches!(info.trim(), "sh" | "bash" | "shell" | "console");
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.trim().trim_start_matches("$ ");
        let command = match line.find(" #") {
            Some(i) => line[..i].trim_end(),
            None => line,
        };
        let runs_baton = command
            .split('|')
            .any(|part| part.trim_start().starts_with("baton "));
        if runs_baton {
            lines.push(command.to_string());
        }
    }
    lines
}

/// An Ollama that knows one model and answers every chat with a short commit-message-like line.
async fn ollama() -> Stub {
    Stub::start(|req, _| match req.path.as_str() {
        "/api/version" => Reply::json(200, serde_json::json!({"version": "0.12.6"})),
        "/api/tags" => Reply::json(
            200,
            serde_json::json!({"models": [{"name": "qwen", "model": "qwen", "size": 1000, "digest": "d",
                "modified_at": "2026-11-21T10:00:00Z", "details": {"family": "qwen2", "parameter_size": "32B"}}]}),
        ),
        "/api/ps" => Reply::json(200, serde_json::json!({"models": []})),
        "/api/chat" => Reply::ndjson(
            server::ollama_chat("qwen", &["Handle ", "empty input"], 12, 3),
            16,
        ),
        _ => Reply::json(404, serde_json::json!({"error": "not found"})),
    })
    .await
}

fn link(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to).unwrap();
}

#[test]
fn the_readme_lists_shell_lines_that_run_baton() {
    let lines = baton_lines(README);
    for must in [
        "baton run examples/demo.lua",
        "git diff | baton ask commit_message",
        "baton fleet",
    ] {
        assert!(lines.iter().any(|l| l == must), "{must:?} in {lines:#?}");
    }
    assert_eq!(
        baton_lines(
            "```sh\n$ baton x # c\nls | baton y\nls\n```\nbaton z\n```json\nbaton w\n```\n"
        ),
        ["baton x", "ls | baton y"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_baton_line_of_the_readme_runs_as_written() {
    let stub = ollama().await;
    let env = Env::new("readme").with_fleet(&format!(
        r#"return {{
  hosts = {{ engine = {{ ssh = false, ollama = "{}" }} }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }} }} }},
}}"#,
        stub.url
    ));
    // The repository's examples and scripts, and a git change for `git diff` to show.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = env.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    for dir in ["examples", "scripts"] {
        link(&repo.join(dir), &work.join(dir));
    }
    let bin_dir = env.dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    link(&crate::common::bin(), &bin_dir.join("baton"));
    let git = |args: &[&str]| {
        let mut cmd = env.program("git");
        cmd.args(args).current_dir(&work);
        output_within(cmd, Duration::from_secs(30)).ok();
    };
    git(&["init", "-q"]);
    std::fs::write(work.join("notes.txt"), "one\n").unwrap();
    git(&["add", "notes.txt"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "start",
    ]);
    std::fs::write(work.join("notes.txt"), "one\ntwo\n").unwrap();

    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let lines = baton_lines(README);
    let mut ran = 0;
    let mut failures = Vec::new();
    for line in &lines {
        if NOT_RUN.iter().any(|c| line.starts_with(c)) {
            continue;
        }
        let mut cmd = env.program("bash");
        cmd.args(["-o", "pipefail", "-c", line])
            .current_dir(&work)
            .env("PATH", &path);
        let line = line.clone();
        let out = tokio::task::spawn_blocking(move || output_within(cmd, Duration::from_secs(60)))
            .await
            .unwrap();
        ran += 1;
        // `doctor` reports what it found: a check that fails (no OpenRouter key, no daemon here) is its
        // answer, exit 1, not a broken line; a usage error (2) or a panic is.
        let fine = match out.code {
            Some(0) => true,
            Some(1) => line.starts_with("baton doctor"),
            _ => false,
        };
        if !fine || out.stderr.contains("panicked") {
            failures.push(format!(
                "{line}\n  exit {:?}\n  stdout: {}\n  stderr: {}",
                out.code, out.stdout, out.stderr
            ));
        }
        if line == "git diff | baton ask commit_message" {
            assert_eq!(out.stdout, "Handle empty input\n", "{line}");
        }
    }
    assert!(
        failures.is_empty(),
        "README lines failed:\n{}",
        failures.join("\n")
    );
    assert!(ran >= 8, "only {ran} lines ran: {lines:#?}");
    // The commit message was asked with the task's instruction and the diff.
    let asked: Vec<String> = stub
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .map(|r| {
            r.json()["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        asked
            .iter()
            .any(|c| c.starts_with("Write a git commit message") && c.contains("+two")),
        "{asked:#?}"
    );
}

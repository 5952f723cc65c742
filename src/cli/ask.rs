//! `baton ask [TASK] [PROMPT | -]`: the shell's way into `route.ask`. Puts the task's instruction before
//! the prompt and stdin (the prompt or extra context); streams the answer to a terminal as it arrives (an
//! attempt that fails or is rejected is followed by an "escalating" line on stderr) and writes only the
//! accepted answer to a pipe or file; prints tier, model, tokens and cost on stderr at the end. Budgeted and
//! in the ledger like any `route.ask` (script `baton ask`).
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{Cli, Interrupted, Out, default_state, load_fleet};
use crate::core::llm::route::{AskOptions, Attempt, Hooks, TaskSpec};
use crate::core::llm::{HookError, Llm, LocalFuture, Message, OnToken};
use crate::core::runs;

/// The task kind when none is given: not in the task table, so it goes to the lowest tier that is up.
pub const DEFAULT_TASK: &str = "ask";

/// The most stdin may carry (a diff, a log): larger input is refused rather than sent.
pub const MAX_STDIN: u64 = 4 << 20;

/// What `baton ask` was given.
#[derive(Debug, Clone, Default)]
pub struct AskArgs {
    pub words: Vec<String>,
    pub max_tier: Option<String>,
    pub system: Option<String>,
    pub schema: Option<PathBuf>,
    pub json: bool,
    pub think: bool,
    /// `route.ask`'s `max_tokens`: the answer cap, and for paid tiers the reserved worst case.
    pub max_tokens: Option<u32>,
}

/// `[TASK] [PROMPT | -]` → (task, prompt or `None` for "read it from stdin"). A single word is a task
/// when `known` says so (the fleet's tasks and baton's default task kinds), else it is the prompt
/// (`baton ask hello`); of two words the first is the task. More words are a prompt left unquoted.
pub fn split_words(
    words: &[String],
    known: impl Fn(&str) -> bool,
) -> anyhow::Result<(String, Option<String>)> {
    let prompt = |p: &str| (p != "-").then(|| p.to_string());
    Ok(match words {
        [] => (DEFAULT_TASK.into(), None),
        [one] if one == "-" => (DEFAULT_TASK.into(), None),
        [one] if known(one) => (one.clone(), None),
        [one] => (DEFAULT_TASK.into(), Some(one.clone())),
        [task, p] => (task.clone(), prompt(p)),
        _ => bail!(
            "ask: expected [TASK] [PROMPT | -], got {} words: quote the prompt, e.g. baton ask {} \
             (or baton ask TASK \"PROMPT\")",
            words.len(),
            crate::core::text::quoted(&words.join(" "))
        ),
    })
}

/// A task `baton ask` knows by name: one of the fleet's tasks, or one of baton's default task kinds.
fn known_task(fleet: &crate::core::fleet::Fleet, word: &str) -> bool {
    fleet.tasks().contains_key(word)
        || crate::core::fleet::DEFAULT_TASKS
            .iter()
            .any(|k| k.kind == word)
}

/// Reads stdin (at most [`MAX_STDIN`]), unless it is a terminal.
fn read_stdin() -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .context("ask: cannot read stdin")?;
    if buf.len() as u64 > MAX_STDIN {
        bail!("ask: stdin holds more than {} MiB", MAX_STDIN >> 20);
    }
    let text = String::from_utf8(buf).context("ask: stdin is not UTF-8 text")?;
    Ok((!text.trim().is_empty()).then_some(text))
}

fn read_schema(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("ask: --schema {}: cannot read", path.display()))?;
    let schema: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("ask: --schema {}: not JSON", path.display()))?;
    if !schema.is_object() {
        bail!(
            "ask: --schema {}: expected a JSON Schema object",
            path.display()
        );
    }
    crate::core::llm::schema::supported(&schema)
        .map_err(|e| anyhow::anyhow!("ask: --schema {}: {e}", path.display()))?;
    Ok(schema)
}

/// Writes each piece to `w` at once (flushed) in `style`, so the reasoning shows as it arrives.
fn writer(
    mut w: impl Write + 'static,
    style: (&'static str, &'static str),
) -> impl FnMut(String) -> LocalFuture<'static, Result<(), HookError>> {
    move |piece: String| {
        let r = write!(w, "{}{piece}{}", style.0, style.1)
            .and_then(|()| w.flush())
            .map_err(|e| HookError(format!("cannot write the answer: {e}")));
        Box::pin(std::future::ready(r))
    }
}

pub fn ask(cli: &Cli, a: &AskArgs) -> anyhow::Result<ExitCode> {
    let fleet = load_fleet(cli)?;
    let (task, prompt) = split_words(&a.words, |w| known_task(&fleet, w))?;
    let schema = a.schema.as_deref().map(read_schema).transpose()?;
    let input = read_stdin()?;
    if prompt.is_none() && input.is_none() {
        bail!("ask: no prompt: give one after the task, or pipe it in (`-`)");
    }
    let instruction = fleet.task_prompt(&task);
    if cli.verbose > 0 {
        match &instruction {
            Some(i) => crate::errln!("ask: task {task}'s instruction: {i}"),
            None => crate::errln!("ask: task {task} has no instruction: the prompt is sent as is"),
        }
    }
    let prompt = [instruction, prompt, input]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n\n");
    let opts = AskOptions {
        system: a.system.clone(),
        max_tier: a.max_tier.clone(),
        script: Some("baton ask".into()),
        think: a.think.then_some(serde_json::Value::Bool(true)),
        reasoning: a.think.then(|| serde_json::json!({"effort": "medium"})),
        max_tokens: a.max_tokens,
        schema,
        ..AskOptions::default()
    };
    // Nothing is asked (and paid for) when the answer has nowhere to go.
    super::stdout_open().context("ask: the answer would be lost")?;
    // The answer streams only to a terminal, where an attempt that is then rejected stays readable as such
    // (an "escalating" line follows it). A pipe or a file gets the accepted answer alone, once it is
    // accepted; with --schema, exactly its JSON.
    let live = std::io::stdout().is_terminal() && !a.json && opts.schema.is_none();
    let state = default_state();
    let run_id = runs::new_id();
    let llm = Llm::new(fleet, state.clone()).for_run(Some(run_id.clone()));
    let stderr = std::io::stderr();
    let dim = super::colours(&stderr);
    // What the last streamed piece left open: the reasoning's line on stderr, the answer's on stdout. The
    // answer, an "escalating" line and the stats line each start on a line of their own.
    let open = std::rc::Rc::new(std::cell::Cell::new(Open::default()));
    let mut on_token = {
        let open = open.clone();
        let mut stdout = std::io::stdout();
        move |piece: String| {
            let mut o = open.get();
            if std::mem::take(&mut o.reasoning) {
                crate::errln!();
            }
            if !piece.is_empty() {
                o.answer = !piece.ends_with('\n');
            }
            let written = stdout
                .write_all(piece.as_bytes())
                .and_then(|()| stdout.flush());
            if let Err(e) = &written {
                o.gone = e.kind() == std::io::ErrorKind::BrokenPipe;
            }
            open.set(o);
            let r = written.map_err(|e| HookError(format!("cannot write the answer: {e}")));
            Box::pin(std::future::ready(r)) as LocalFuture<'static, Result<(), HookError>>
        }
    };
    let (dim_on, dim_off) = if dim {
        ("\x1b[2m", "\x1b[0m")
    } else {
        ("", "")
    };
    let mut reasoning = writer(stderr, (dim_on, dim_off));
    let mut on_thinking = {
        let open = open.clone();
        move |piece: String| {
            if !piece.is_empty() {
                let mut o = open.get();
                o.reasoning = !piece.ends_with('\n');
                open.set(o);
            }
            reasoning(piece)
        }
    };
    let mut on_escalate = {
        let open = open.clone();
        move |attempt: Attempt| {
            let o = open.replace(Open::default());
            if o.answer {
                let _ = writeln!(std::io::stdout());
            }
            if o.reasoning {
                crate::errln!();
            }
            let why = attempt
                .err
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            crate::errln!(
                "{dim_on}ask: {} ({}) {}{}; escalating{dim_off}",
                attempt.tier,
                attempt.model,
                attempt.outcome.name(),
                crate::core::text::escape_line(&why)
            );
            Box::pin(std::future::ready(Ok(()))) as LocalFuture<'static, Result<(), HookError>>
        }
    };
    let mut hooks = Hooks {
        on_token: live.then_some(&mut on_token as OnToken<'_>),
        on_thinking: a.think.then_some(&mut on_thinking as OnToken<'_>),
        on_escalate: Some(&mut on_escalate),
        ..Hooks::default()
    };
    let spec = TaskSpec::kind(&task);
    let (started, clock) = (runs::now(), std::time::Instant::now());
    let asked = crate::lua::runtime::block_on(async {
        tokio::select! {
            r = llm.router().ask(&spec, vec![Message::new("user", prompt)], &opts, &mut hooks) => Ok(r),
            _ = tokio::signal::ctrl_c() => Err(Interrupted),
        }
    })
    .context("cannot start the async runtime")??;
    // A run of its own in `baton runs` (trigger `ask`), with the one step and its cost.
    let step = runs::Step {
        pos: "0.1".into(),
        kind: "route.ask".into(),
        label: task.clone(),
        call: serde_json::json!(["route.ask", [task]]).to_string(),
        started,
        duration: clock.elapsed().as_secs_f64(),
        outcome: if asked.is_ok() { "ok" } else { "error" }.into(),
        cost: asked.as_ref().ok().map(|a| a.cost),
        result: asked.as_ref().ok().map(|a| {
            serde_json::json!([{"text": a.text, "tier": a.tier, "model": a.model, "cost": a.cost}])
                .to_string()
        }),
    };
    let error = asked.as_ref().err().map(|e| format!("ask({task}): {e}"));
    runs::record_call(
        &state,
        &run_id,
        "ask",
        "baton ask",
        &a.words,
        step,
        error.as_deref(),
    );
    let answer = match asked {
        Ok(answer) => answer,
        // A terminal that went away while the answer streamed: nobody is left to tell.
        Err(_) if open.get().gone => return Err(super::StdoutClosed.into()),
        Err(e) => {
            // The error starts on a line of its own, after what the last attempt streamed.
            if open.get().answer {
                let _ = writeln!(std::io::stdout());
            }
            bail!("ask({task}): {e}")
        }
    };
    let mut out = Out::new();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&answer)?)?;
    } else if let Some(data) = &answer.data {
        writeln!(out, "{}", serde_json::to_string(data)?)?;
    } else if !live {
        out.write_all(answer.text.as_bytes())?;
        if !answer.text.ends_with('\n') {
            writeln!(out)?;
        }
    } else if open.get().answer {
        writeln!(out)?;
    }
    if open.get().reasoning {
        crate::errln!();
    }
    crate::errln!(
        "{} · {} · {} in / {} out · {}",
        answer.tier,
        answer.model,
        answer.tokens_in,
        answer.tokens_out,
        crate::core::text::money(answer.cost)
    );
    Ok(ExitCode::SUCCESS)
}

/// What the streamed output has left open.
#[derive(Debug, Clone, Copy, Default)]
struct Open {
    /// The reasoning's last line on stderr has no newline yet.
    reasoning: bool,
    /// The answer's last line on stdout has no newline yet.
    answer: bool,
    /// stdout's reader went away while the answer streamed.
    gone: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn task_and_prompt_are_told_apart() {
        let known = |w: &str| ["commit_message", "lint"].contains(&w);
        let got = |w: &[&str]| split_words(&words(w), known).unwrap();
        assert_eq!(got(&[]), ("ask".into(), None));
        assert_eq!(got(&["commit_message"]), ("commit_message".into(), None));
        assert_eq!(got(&["-"]), ("ask".into(), None));
        assert_eq!(
            got(&["what is 2+2?"]),
            ("ask".into(), Some("what is 2+2?".into()))
        );
        // One word that is no task is the prompt, not a task without one.
        assert_eq!(got(&["hello"]), ("ask".into(), Some("hello".into())));
        assert_eq!(
            got(&["lint", "check this"]),
            ("lint".into(), Some("check this".into()))
        );
        assert_eq!(got(&["lint", "-"]), ("lint".into(), None));
        let e = split_words(&words(&["why", "is", "the", "sky", "blue"]), known)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("quote the prompt") && e.contains("\"why is the sky blue\""),
            "{e}"
        );
    }
}

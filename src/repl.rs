//! `baton repl`: the whole API at a prompt. rustyline reads lines on its own thread, so coroutines spawned
//! at the prompt keep running while the user types; the Lua state stays on the main thread and answers Tab
//! completion over a channel (a second Tab lists the candidates; where there is no name to complete a Tab stays a
//! tab, so pasted code keeps its indentation). Lines typed or pasted ahead wait their turn, each run on its own
//! newline. Ctrl-C while a chunk runs cancels it (its processes are killed); Ctrl-C at the prompt clears the
//! input; Ctrl-D exits. When the reader of stdout goes away the REPL ends quietly.
//! The Lua side (compiling, running, completing) is [`crate::lua::repl`]; this file is the terminal side.
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Context, Editor};
use tokio::sync::mpsc;

use crate::core::fleet::Fleet;
use crate::core::state::State;
use crate::lua::Ctx;
use crate::lua::repl::{Compiled, Evaluated, Session};

enum Event {
    Line(String),
    Interrupted,
    Eof,
}

/// What the main thread tells the editor thread: the next prompt, an entry to record in history, and whether
/// to drop the lines typed ahead (after Ctrl-C cancelled a chunk, as a terminal does).
struct Next {
    prompt: &'static str,
    history: Option<String>,
    drop_typed_ahead: bool,
}

impl Next {
    fn prompt() -> Next {
        Next {
            prompt: "> ",
            history: None,
            drop_typed_ahead: false,
        }
    }
}

struct CompletionRequest {
    line: String,
    pos: usize,
    reply: std_mpsc::Sender<(usize, Vec<String>)>,
}

/// The REPL's stdout, shared by the values it shows and the chunks' `print`. When its reader went away
/// (`baton repl | head -1`, a broken pipe) the REPL ends quietly, as `cat` would; another write error is
/// told once on stderr, and the REPL goes on.
#[derive(Clone, Default)]
struct Output(Arc<OutputState>);

#[derive(Default)]
struct OutputState {
    /// The reader of stdout went away.
    closed: AtomicBool,
    /// A write failed for another reason, and that was told.
    reported: AtomicBool,
}

impl Output {
    fn closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    /// Writes `text` and a newline.
    fn line(&mut self, text: &str) {
        let _ = writeln!(self, "{text}").and_then(|()| self.flush());
    }

    fn failed(&self, e: std::io::Error) -> std::io::Error {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            self.0.closed.store(true, Ordering::SeqCst);
        } else if !self.0.reported.swap(true, Ordering::SeqCst) {
            crate::errln!("baton repl: cannot write the output: {e}");
        }
        e
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        std::io::stdout().write(buf).map_err(|e| self.failed(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        std::io::stdout().flush().map_err(|e| self.failed(e))
    }
}

/// The terminal settings of stdin when it is a terminal, put back when the REPL ends without waiting for
/// the line editor (which may hold the terminal in raw mode, waiting for a key).
fn saved_terminal() -> Option<rustix::termios::Termios> {
    rustix::termios::tcgetattr(std::io::stdin()).ok()
}

/// Runs the REPL until Ctrl-D. An error is one that stops it from starting (the runtime, the Lua state).
pub fn run(fleet: Arc<Fleet>, state: State) -> anyhow::Result<()> {
    let history = state.file("repl_history").ok();
    if let Some(h) = &history {
        let _ = crate::core::state::create_private_file(h);
    }
    let ctx = Ctx {
        fleet,
        state,
        script: "repl".into(),
        args: Vec::new(),
    };
    crate::lua::runtime::block_on(async move {
        let session = Session::new(ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut out = Output::default();
        session.print_to(out.clone());
        let terminal = saved_terminal();
        let (event_tx, mut events) = mpsc::unbounded_channel();
        let (completion_tx, mut completions) = mpsc::unbounded_channel();
        let (next_tx, next_rx) = std_mpsc::channel::<Next>();
        let editor =
            std::thread::spawn(move || editor_thread(history, next_rx, event_tx, completion_tx));
        out.line(&format!(
            "baton {} — Lua 5.4. Tab completes, Ctrl-C cancels, Ctrl-D exits.",
            env!("CARGO_PKG_VERSION")
        ));
        let mut buffer = String::new();
        let mut next = Next::prompt();
        loop {
            if out.closed() || next_tx.send(next).is_err() {
                break;
            }
            next = Next::prompt();
            let event = loop {
                tokio::select! {
                    Some(req) = completions.recv() => {
                        let _ = req.reply.send(session.complete(&req.line, req.pos));
                    }
                    event = events.recv() => break event.unwrap_or(Event::Eof),
                }
            };
            match event {
                Event::Eof => break,
                Event::Interrupted => buffer.clear(),
                Event::Line(line) => {
                    if !buffer.is_empty() {
                        buffer.push('\n');
                    }
                    buffer.push_str(&line);
                    match session.compile(&buffer) {
                        Compiled::Incomplete => next.prompt = ">> ",
                        Compiled::Error(msg) => {
                            crate::errln!("{msg}");
                            next.history = Some(std::mem::take(&mut buffer));
                        }
                        Compiled::Ready(chunk) => {
                            next.history = Some(std::mem::take(&mut buffer));
                            next.drop_typed_ahead = !show(session.evaluate(chunk).await, &mut out);
                        }
                    }
                }
            }
        }
        drop(next_tx);
        if out.closed() {
            // Nobody reads on: end now instead of waiting for the line editor's next line.
            if let Some(t) = terminal {
                let _ = rustix::termios::tcsetattr(
                    std::io::stdin(),
                    rustix::termios::OptionalActions::Now,
                    &t,
                );
            }
        } else {
            let _ = editor.join();
        }
        Ok(())
    })?
}

/// Prints how a chunk ended; false when Ctrl-C cancelled it.
fn show(evaluated: Evaluated, out: &mut Output) -> bool {
    match evaluated {
        Evaluated::Values(shown) if !shown.is_empty() => out.line(&shown.join("\t")),
        Evaluated::Values(_) => {}
        Evaluated::Error(e) => crate::errln!("{e}"),
        Evaluated::Interrupted => {
            crate::errln!("interrupted");
            return false;
        }
    }
    true
}

struct LuaHelper {
    requests: mpsc::UnboundedSender<CompletionRequest>,
}

impl Completer for LuaHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        // A pasted Tab arrives as a key (bracketed paste is off, see `new_editor`): where there is no name to
        // complete it is kept, so pasted code keeps its indentation and its words stay apart.
        let tab = || {
            Ok((
                pos,
                vec![Pair {
                    display: "\t".into(),
                    replacement: "\t".into(),
                }],
            ))
        };
        let before = &line[..pos.min(line.len())];
        let word = before
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default();
        let after_dot = before[..before.len() - word.len()].ends_with(['.', ':']);
        if before.is_empty()
            || before.ends_with(char::is_whitespace)
            || (!after_dot && LUA_KEYWORDS.contains(&word))
        {
            return tab();
        }
        let (reply, answer) = std_mpsc::channel();
        if self
            .requests
            .send(CompletionRequest {
                line: line.to_string(),
                pos,
                reply,
            })
            .is_err()
        {
            return Ok((pos, Vec::new()));
        }
        let (start, names) = answer
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or((pos, Vec::new()));
        if names.is_empty() {
            return tab();
        }
        Ok((
            start,
            names
                .into_iter()
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: n,
                })
                .collect(),
        ))
    }
}

/// Where Tab inserts a tab instead of completing: after a keyword (`do<Tab>print(i)` in pasted code).
const LUA_KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

impl Hinter for LuaHelper {
    type Hint = String;
}
impl Highlighter for LuaHelper {}
impl Validator for LuaHelper {}
impl rustyline::Helper for LuaHelper {}

fn editor_thread(
    history: Option<PathBuf>,
    next: std_mpsc::Receiver<Next>,
    events: mpsc::UnboundedSender<Event>,
    completions: mpsc::UnboundedSender<CompletionRequest>,
) {
    let mut editor = match new_editor(&completions) {
        Ok(e) => e,
        Err(e) => {
            crate::errln!("baton repl: cannot start the line editor: {e}");
            let _ = events.send(Event::Eof);
            return;
        }
    };
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    while let Ok(Next {
        prompt,
        history: entry,
        drop_typed_ahead,
    }) = next.recv()
    {
        // The kernel drops what was typed ahead when Ctrl-C cancels a chunk; the lines rustyline already
        // holds go too, with the editor that holds them (the history moves to the new one).
        if drop_typed_ahead && let Ok(mut fresh) = new_editor(&completions) {
            std::mem::swap(fresh.history_mut(), editor.history_mut());
            editor = fresh;
        }
        if let Some(entry) = entry.filter(|e| !e.trim().is_empty()) {
            let _ = editor.add_history_entry(entry);
            if let Some(h) = &history {
                let _ = editor.append_history(h);
            }
        }
        let event = match editor.readline(prompt) {
            Ok(line) => Event::Line(line),
            Err(ReadlineError::Interrupted) => Event::Interrupted,
            Err(_) => Event::Eof,
        };
        if events.send(event).is_err() {
            break;
        }
    }
}

fn new_editor(
    completions: &mpsc::UnboundedSender<CompletionRequest>,
) -> rustyline::Result<Editor<LuaHelper, FileHistory>> {
    // rustyline reads the terminal through a buffer that each `readline` call makes anew, so lines typed ahead
    // or pasted in the same read as an Enter were dropped with it; its `buffer-redux` feature (Cargo.toml)
    // hands that buffer on to the next call, so every line is read, in order, when the main thread asks.
    // Bracketed paste is off: with it, rustyline put a whole paste in the edit buffer, newlines and all, and
    // a pasted chunk waited for one more Enter; now each pasted line is a line, run on its own newline like a
    // typed one (an unfinished chunk waits at `>>`), and a pasted Tab stays a tab where there is nothing to
    // complete (`LuaHelper::complete`).
    let config = rustyline::Config::builder()
        .bracketed_paste(false)
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .max_history_size(10_000)?
        .build();
    let mut editor = Editor::with_config(config)?;
    editor.set_helper(Some(LuaHelper {
        requests: completions.clone(),
    }));
    Ok(editor)
}

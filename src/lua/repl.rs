//! The Lua side of `baton repl`: one runtime with every global loaded, fed what the user typed. It compiles
//! input (telling an unfinished chunk from a broken one), runs chunks and completes names, and hands back
//! text for the front end (`crate::repl`) to print.
use mlua::{Lua, MultiValue, Table, Value};

use super::{Ctx, Printer, format_error, load_all_globals, new_runtime, pretty, runtime};

/// The REPL's Lua state and its Ctrl-C switch.
pub struct Session {
    lua: Lua,
    interrupt: runtime::Interrupt,
}

/// What the input typed so far makes.
pub enum Compiled {
    /// A chunk to [`Session::evaluate`].
    Ready(Chunk),
    /// Not finished yet (an open block or string): wait for more lines.
    Incomplete,
    /// A syntax error, worded for the user.
    Error(String),
}

/// A compiled chunk.
pub struct Chunk(mlua::Function);

/// How a chunk ended.
pub enum Evaluated {
    /// What it returned, each value shown as `baton.inspect` does (empty when it returned nothing).
    Values(Vec<String>),
    /// The error it raised, worded for the user.
    Error(String),
    /// Ctrl-C cancelled it.
    Interrupted,
}

impl Session {
    /// A runtime for `ctx` with every global loaded and Ctrl-C wired to its instruction hook. Call it inside
    /// the async runtime; the error is worded for the user.
    pub fn new(ctx: Ctx) -> Result<Session, String> {
        let lua = new_runtime(ctx)
            .and_then(|lua| load_all_globals(&lua).map(|()| lua))
            .map_err(|e| format_error(&e))?;
        let interrupt = runtime::interrupt(&lua);
        runtime::interrupt_on_sigint(interrupt.clone());
        Ok(Session { lua, interrupt })
    }

    /// Where the chunks' `print` writes (stdout until this is called).
    pub fn print_to(&self, w: impl std::io::Write + 'static) {
        self.lua.set_app_data(Printer::to(w));
    }

    /// An expression prints its value: try `return <input>` first, then the input as statements.
    pub fn compile(&self, input: &str) -> Compiled {
        if let Ok(f) = self
            .lua
            .load(format!("return {input}"))
            .set_name("=stdin")
            .into_function()
        {
            return Compiled::Ready(Chunk(f));
        }
        match self.lua.load(input).set_name("=stdin").into_function() {
            Ok(f) => Compiled::Ready(Chunk(f)),
            Err(mlua::Error::SyntaxError {
                incomplete_input: true,
                ..
            }) => Compiled::Incomplete,
            Err(e) => Compiled::Error(format_error(&e)),
        }
    }

    /// Runs a chunk until it ends or Ctrl-C cancels it.
    pub async fn evaluate(&self, chunk: Chunk) -> Evaluated {
        // A Ctrl-C that stopped the previous chunk is handled; this chunk starts clean.
        self.interrupt.clear();
        let result = tokio::select! {
            r = chunk.0.call_async::<MultiValue>(()) => r,
            _ = tokio::signal::ctrl_c() => {
                // Handled: a later Ctrl-C is a first one again, not the one that exits at once.
                self.interrupt.clear();
                return Evaluated::Interrupted;
            }
        };
        // A chunk that never waits is stopped by the instruction hook raising `interrupted`.
        if self.interrupt.is_set() {
            self.interrupt.clear();
            return Evaluated::Interrupted;
        }
        match result {
            Ok(values) => Evaluated::Values(values.iter().map(|v| pretty::inspect(v, 4)).collect()),
            Err(e) => Evaluated::Error(format_error(&e)),
        }
    }

    /// Completes the dotted name before the cursor (`ssh.ru` → `ssh.run`) from globals and table fields:
    /// where the name starts, and the candidates.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos.min(line.len())];
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || matches!(c, '_' | '.' | ':'))
            .last()
            .map(|(i, _)| i)
            .unwrap_or(before.len());
        let word = &before[start..];
        let (base, prefix, word_start) = match word.rfind(['.', ':']) {
            Some(i) => (&word[..i], &word[i + 1..], start + i + 1),
            None => ("", word, start),
        };
        let mut table = self.lua.globals();
        for part in base.split(['.', ':']).filter(|p| !p.is_empty()) {
            match table.get::<Value>(part) {
                Ok(Value::Table(t)) => table = t,
                _ => return (word_start, Vec::new()),
            }
        }
        let mut names = keys(&table);
        if let Some(mt) = table.metatable()
            && let Ok(Value::Table(index)) = mt.get::<Value>("__index")
        {
            names.extend(keys(&index));
        }
        let mut found: Vec<String> = names
            .into_iter()
            .filter(|k| {
                k.starts_with(prefix) && !k.starts_with('_')
                    || (prefix.starts_with('_') && k.starts_with(prefix))
            })
            .collect();
        found.sort();
        found.dedup();
        (word_start, found)
    }
}

fn keys(t: &Table) -> Vec<String> {
    t.pairs::<Value, Value>()
        .filter_map(Result::ok)
        .filter_map(|(k, _)| match k {
            Value::String(s) => Some(s.to_string_lossy()),
            _ => None,
        })
        .collect()
}

//! baton: run a home fleet of machines from Lua playbooks.
//!
//! `core` is plain async Rust (no Lua); `lua` is the only code that touches mlua; `cli` and `repl` are the
//! front ends used by the binary (their Lua side is `lua::entry` and `lua::repl`).
#![cfg_attr(not(test), deny(clippy::print_stderr, clippy::print_stdout))]

/// `eprintln!` without its panic: when the reader of stderr went away (`baton … 2>&1 | head`) there is
/// nobody left to tell, so the line is dropped instead of aborting the work. While a run is under way the
/// line also goes to its log ([`core::runs::copy_output`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($crate::core::runs::Teed(std::io::stderr()), $($arg)*);
    }};
}

/// `eprint!` without its panic (see [`errln!`]).
#[macro_export]
macro_rules! errw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!($crate::core::runs::Teed(std::io::stderr()), $($arg)*);
    }};
}

/// A terminal drawing on stderr (a progress bar redrawn in place): like [`errw!`], but never copied to a
/// run's log, which keeps what was said, not how a terminal line was redrawn.
#[macro_export]
macro_rules! drawn {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod cli;
pub mod core;
pub mod lua;
pub mod repl;
pub mod web;

/// The rooms keep to their walls: a test reads the sources.
#[cfg(test)]
mod layering {
    use std::path::{Path, PathBuf};

    fn rust_files(path: &Path) -> Vec<PathBuf> {
        if path.is_file() {
            return vec![path.to_path_buf()];
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .flat_map(|e| rust_files(&e.unwrap().path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        files.sort();
        files
    }

    /// Lines of code (comments left out) of the files under `src/<dir>` naming any of `words`.
    fn naming(dir: &str, words: &[&str]) -> Vec<String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        rust_files(&src.join(dir))
            .into_iter()
            .flat_map(|file| {
                let text = std::fs::read_to_string(&file).unwrap();
                let shown = file.strip_prefix(&src).unwrap().display().to_string();
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim_start().starts_with("//"))
                    .filter(|(_, l)| words.iter().any(|w| l.contains(w)))
                    .map(|(i, l)| format!("src/{shown}:{}: {}", i + 1, l.trim()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn only_lua_touches_mlua_and_core_imports_no_front_end() {
        for dir in ["core", "cli", "repl.rs", "main.rs"] {
            assert_eq!(naming(dir, &["mlua"]), Vec::<String>::new(), "{dir}");
        }
        let front = [
            "rustyline",
            "crate::lua",
            "crate::cli",
            "crate::repl",
            "clap",
        ];
        assert_eq!(naming("core", &front), Vec::<String>::new());
    }
}

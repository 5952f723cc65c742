//! The command line: clap definitions, logging, and the one place where errors are printed. One module per
//! command group; every command returns `anyhow::Result<ExitCode>` and writes its output through [`Out`].
//! `main.rs` only calls [`main`].
mod ask;
mod budget;
mod fleet;
pub mod jobs;
mod mcp;
mod run;
pub(crate) mod runs;
mod schedule;
mod spend;
mod stubs;
mod table;
mod web;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::core::fleet::{Fleet, FleetError};
use crate::core::state::{self, State};

#[derive(Parser, Debug)]
#[command(
    name = "baton",
    version,
    about = "Run your fleet of machines from Lua playbooks"
)]
pub struct Cli {
    /// Fleet file (default: $BATON_FLEET, else $XDG_CONFIG_HOME/baton/fleet.lua, else the built-in fleet)
    #[arg(long, global = true, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); $BATON_LOG takes a full filter
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Colour on the terminal: auto (only on a terminal, never with $NO_COLOR set), always, never
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

/// When baton colours what it writes (`--color`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// The `--color` of this process, set once at start.
static COLOR: std::sync::OnceLock<ColorChoice> = std::sync::OnceLock::new();

/// Whether to colour a stream: `--color always|never` decides; `auto` colours only a terminal, and never
/// with `NO_COLOR` set to something (<https://no-color.org>).
pub fn colours(stream: &impl std::io::IsTerminal) -> bool {
    match COLOR.get().copied().unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a Lua playbook; ARGS are in `baton.args`
    /// (Everything after FILE goes to the script, flags included: `baton -v run x.lua --dry-run`.)
    Run {
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "FILE [ARGS]")]
        script: Vec<String>,
    },
    /// Interactive Lua prompt with the whole API
    Repl,
    /// Compile playbooks without running them and report every syntax error
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the loaded fleet: hosts, roles, endpoints, tiers, tasks, budget
    Fleet {
        /// The loaded fleet as JSON
        #[arg(long)]
        json: bool,
        /// Write a commented starter fleet file (this machine, local Ollama, a $10 budget) to PATH, default
        /// $XDG_CONFIG_HOME/baton/fleet.lua; never overwrites a file
        #[arg(long, value_name = "PATH", num_args = 0..=1, conflicts_with = "json")]
        init: Option<Option<PathBuf>>,
    },
    /// LLM spend: ledger and provider side by side, held and interrupted amounts, budget, a bar per row, a chart per day
    Spend {
        /// day, month or all
        #[arg(long, default_value = "month", value_parser = ["day", "month", "all"])]
        period: String,
        /// tier, model, task or script
        #[arg(long, default_value = "tier", value_parser = ["tier", "model", "task", "script"])]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Detached remote jobs started with ssh.spawn (state refreshed from their hosts)
    Jobs {
        /// Forget jobs that have ended (exited or lost)
        #[arg(long)]
        prune: bool,
        /// The jobs as a JSON list (id, host, state, code, command, title, cwd, pid, dir, started_at, tmux)
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<jobs::JobsCommand>,
    },
    /// Check the setup for real: hosts, Ollama endpoints and models, OpenRouter key and credits, budget, daemon
    Doctor {
        /// The checks and their results as JSON
        #[arg(long)]
        json: bool,
    },
    /// One table for the fleet: hosts, load, loaded models, jobs, next runs, spend against the budget
    Status {
        /// The same as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
    /// Write the LuaLS stubs and a .luarc.json into DIR, so an editor completes the API in your playbooks
    Stubs { dir: PathBuf },
    /// Fire the jobs of a schedule file until SIGTERM/SIGINT (FILE default: schedule.lua next to the fleet file)
    Daemon {
        file: Option<PathBuf>,
        /// Also serve the dashboard (`baton web`) on ADDR, e.g. 127.0.0.1:8787
        #[arg(long, value_name = "ADDR", conflicts_with = "install")]
        web: Option<std::net::SocketAddr>,
        /// Write a systemd user unit (Linux) or launchd agent (macOS) that starts the daemon at login
        #[arg(long)]
        install: bool,
        /// With --install: print the service definition instead of writing it
        #[arg(long, requires = "install")]
        print: bool,
        /// With --install --print: which system's format (linux or macos; default: this one)
        #[arg(long, requires = "print", value_name = "linux|macos")]
        platform: Option<String>,
    },
    /// Scheduled jobs: list them, show run history, run one now
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Recorded runs, newest first: id, script, trigger, status, started, duration, cost (`runs show RUN`:
    /// its steps)
    Runs {
        /// Only runs with this status: running, ok, failed, interrupted, paused, cancelled
        #[arg(long, value_name = "S")]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The runs as a JSON list
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<runs::RunsCommand>,
    },
    /// Finish an interrupted or failed run: its playbook again, with its args and fleet, under its id; calls
    /// that finished return what they returned then (nothing is run, sent or paid twice)
    Resume {
        run: String,
        /// Resume even if the playbook changed, running live from the first call that differs
        #[arg(long)]
        force: bool,
    },
    /// Ask a model through the router (budgeted, in the ledger); a terminal sees the answer stream, a pipe gets
    /// the accepted answer alone (`git diff | baton ask commit_message`: a known task adds its instruction,
    /// shown with -v; one word that names a task is the task, any other the prompt)
    Ask {
        /// [TASK] [PROMPT | -]: stdin, when not a terminal, is the prompt or is added to it as context
        #[arg(num_args = 0.., value_name = "TASK] [PROMPT")]
        words: Vec<String>,
        /// Highest tier to try
        #[arg(long, value_name = "TIER")]
        max_tier: Option<String>,
        /// System prompt
        #[arg(long)]
        system: Option<String>,
        /// A JSON Schema file the answer must match (an answer that does not is rejected; the next tier tries)
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Print the whole result (text, tier, model, cost, attempts, data…) as JSON instead of streaming
        #[arg(long)]
        json: bool,
        /// Let reasoning models think first; the thinking goes to stderr (dimmed on a terminal)
        #[arg(long)]
        think: bool,
        /// Answer cap in tokens; for paid tiers also what is reserved against the budget (default 4096)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_tokens: Option<u32>,
    },
    /// MCP: offer the fleet to agents (Claude Code …) as tools
    #[command(subcommand)]
    Mcp(McpCommand),
    /// The dashboard: hosts, schedule, runs with live logs, jobs and spend on one page, with its JSON under
    /// /api/ (prints the link that logs a browser in, with its token, once)
    Web {
        /// Address to listen on; beyond loopback needs a configured token
        #[arg(long, value_name = "ADDR", default_value = crate::web::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Open the page in the browser
        #[arg(long)]
        open: bool,
        /// The access token (default: the fleet's web.token_env, else a random one per start); a command
        /// line is visible to other local users (`ps`): the fleet's web.token_env keeps it out of sight
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Schedule file whose jobs the page shows (default: schedule.lua next to the fleet file)
        #[arg(long, value_name = "FILE")]
        schedule: Option<PathBuf>,
    },
    /// The budget on the provider: `sync` sets the OpenRouter key's own monthly limit to the fleet's budget
    Budget {
        #[command(subcommand)]
        action: BudgetCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum McpCommand {
    /// Serve the tools FILE registers with mcp.tool{…} on stdin/stdout (FILE default: tools.lua next to the fleet file)
    Serve { file: Option<PathBuf> },
}

#[derive(Subcommand, Debug)]
pub enum BudgetCommand {
    /// Set the key's limit on OpenRouter to budget.monthly_usd, reset monthly ($OPENROUTER_MANAGEMENT_KEY)
    Sync {
        /// The key's hash (default: the key baton uses, found by its label)
        #[arg(long)]
        hash: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Each job with its expression, next three fire times and last outcome (the daemon need not run)
    List { file: Option<PathBuf> },
    /// Recorded runs, newest first: start, duration, outcome, log file
    History {
        job: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The runs as a JSON list (id, job, scheduled, started, ended, outcome, error whole, log, catchup,
        /// manual)
        #[arg(long)]
        json: bool,
    },
    /// Run one job now, as the daemon would: recorded, logged, and told to the fleet's notify channels
    /// as the job's `notify` says (`--quiet`: not told)
    Run {
        job: String,
        file: Option<PathBuf>,
        /// Send no notification for this run
        #[arg(long)]
        quiet: bool,
    },
}

/// Parses the command line, runs the command and returns the process exit code. Every error ends here:
/// printed once as `baton: …` with its context chain, exit 1 (2 for a fleet file that does not load, 130
/// for Ctrl-C); a playbook's Lua error is printed as `file:line: message` with its traceback; a closed
/// stdout ends quietly with 0.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = COLOR.set(cli.color);
    init_logging(cli.verbose, cli.log_format);
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Run { script } => run::run(cli, &script[0], script[1..].to_vec()),
        Command::Runs {
            status,
            limit,
            json,
            action,
        } => match action {
            None => runs::list(status.as_deref(), *limit, *json),
            Some(runs::RunsCommand::Show { run, json, log }) => runs::show(run, *json, *log),
            Some(runs::RunsCommand::Cancel { run }) => runs::cancel(run),
            Some(runs::RunsCommand::Prune { older_than }) => {
                runs::prune(&*load_fleet(cli)?, older_than.as_deref())
            }
            Some(runs::RunsCommand::Approve {
                run,
                answer,
                no_resume,
            }) => run::answer(cli, run, true, answer.as_deref(), !*no_resume),
            Some(runs::RunsCommand::Deny {
                run,
                reason,
                no_resume,
            }) => run::answer(cli, run, false, reason.as_deref(), !*no_resume),
        },
        Command::Resume { run, force } => run::resume(cli, run, *force),
        Command::Repl => {
            crate::repl::run(load_fleet(cli)?, default_state())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { files } => run::check(files),
        Command::Doctor { json } => run::doctor(cli, *json),
        Command::Status { json } => run::status(cli, *json),
        Command::Fleet {
            init: Some(path), ..
        } => fleet::init(path.clone()),
        Command::Fleet { json, init: None } => fleet::show(&*load_fleet(cli)?, *json),
        Command::Spend { period, by, json } => spend::show(cli, period, by, *json),
        Command::Jobs {
            prune,
            json,
            action,
        } => match action {
            Some(a) => jobs::action(load_fleet(cli)?, a),
            None => jobs::show(load_fleet(cli)?, *prune, *json),
        },
        Command::Completions { shell } => stubs::completions(*shell),
        Command::Stubs { dir } => stubs::write(dir),
        Command::Daemon {
            file,
            web,
            install,
            print,
            platform,
        } => {
            let fleet = load_fleet(cli)?;
            if *install {
                schedule::install(&fleet, file.clone(), *print, platform.as_deref())
            } else {
                schedule::daemon(fleet, file.clone(), *web)
            }
        }
        Command::Web {
            listen,
            open,
            token,
            schedule,
        } => web::serve(
            load_fleet(cli)?,
            *listen,
            *open,
            token.clone(),
            schedule.clone(),
        ),
        Command::Schedule(ScheduleCommand::List { file }) => {
            schedule::list(load_fleet(cli)?, file.clone())
        }
        Command::Schedule(ScheduleCommand::History { job, limit, json }) => {
            schedule::history(job.as_deref(), *limit, *json)
        }
        Command::Schedule(ScheduleCommand::Run { job, file, quiet }) => {
            schedule::run(load_fleet(cli)?, job, file.clone(), *quiet)
        }
        Command::Budget {
            action: BudgetCommand::Sync { hash },
        } => budget::sync(cli, hash.as_deref()),
        Command::Mcp(McpCommand::Serve { file }) => mcp::serve(load_fleet(cli)?, file.clone()),
        Command::Ask {
            words,
            max_tier,
            system,
            schema,
            json,
            think,
            max_tokens,
        } => ask::ask(
            cli,
            &ask::AskArgs {
                words: words.clone(),
                max_tier: max_tier.clone(),
                system: system.clone(),
                schema: schema.clone(),
                json: *json,
                think: *think,
                max_tokens: *max_tokens,
            },
        ),
    }
}

/// The one error path: what the user reads and the exit code, by the kind of error.
fn report(e: &anyhow::Error) -> ExitCode {
    if e.is::<StdoutClosed>() {
        return ExitCode::SUCCESS;
    }
    // Errors carry remote text (a host's stderr, a server's message): control characters are escaped.
    let escape = |text: &str| crate::core::text::escape(text).into_owned();
    if let Some(ScriptFailed(text)) = e.downcast_ref() {
        crate::errln!("{}", escape(text));
        return ExitCode::FAILURE;
    }
    crate::errln!("baton: {}", escape(&format!("{e:#}")));
    if e.is::<FleetError>() {
        ExitCode::from(2)
    } else if e.is::<Interrupted>() {
        ExitCode::from(130)
    } else {
        ExitCode::FAILURE
    }
}

/// A playbook raised a Lua error; the text is `file:line: message` and its traceback, printed as is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ScriptFailed(String);

/// Ctrl-C stopped the running work (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
struct Interrupted;

/// The reader of stdout went away (`baton spend | head -1`): nothing is left to say (exit 0).
#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
pub(crate) struct StdoutClosed;

/// Command output on stdout, written with `write!`/`writeln!` (`writeln!(out, "…")?`). A write error is an
/// `anyhow::Error` (exit 1, named: `cannot write to stdout: No space left on device`); a reader that went
/// away is [`StdoutClosed`], which [`main`] ends with exit 0. A stdout that was never open (`>&-`) is an
/// error too: the standard library would drop every write to it silently.
struct Out(io::Stdout);

impl Out {
    fn new() -> Out {
        Out(io::stdout())
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> anyhow::Result<()> {
        stdout_open()?;
        self.0
            .write_fmt(args)
            .and_then(|()| self.0.flush())
            .map_err(write_error)
    }

    fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        stdout_open()?;
        self.0
            .write_all(bytes)
            .and_then(|()| self.0.flush())
            .map_err(write_error)
    }
}

/// Fails when stdout was closed when baton started (`baton … >&-`). The standard library opens
/// `/dev/null` for read and write on a closed descriptor before `main`, so every write would vanish; a
/// `/dev/null` the shell opened (`>/dev/null`, a choice to discard) is write-only.
fn stdout_open() -> anyhow::Result<()> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let stdout = io::stdout();
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    let is_null = stdout
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .and_then(|m| std::fs::metadata("/dev/null").map(|null| same(&m, &null)))
        .unwrap_or(false);
    if is_null && rustix::io::read(stdout.as_fd(), &mut [0u8; 0]).is_ok() {
        anyhow::bail!("cannot write to stdout: it is closed (file descriptor 1 was not open)");
    }
    Ok(())
}

fn write_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write to stdout")
    }
}

/// `os.exit(n)` and the REPL give an `i32`; the process keeps its low 8 bits, as `exit(3)` does.
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(code as u8)
}

fn init_logging(verbose: u8, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("BATON_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        // rmcp's own log lines repeat what baton's MCP errors already say; they show from -vv on.
        .unwrap_or_else(|| match verbose {
            0 | 1 => EnvFilter::new(format!("{default},rmcp=off")),
            _ => EnvFilter::new(default),
        });
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // A log line that cannot be written (stderr's reader went away) is dropped quietly: the subscriber's
    // own complaint would go to the same stderr, with `eprintln!`'s panic.
    let to_stderr = tracing_subscriber::fmt::layer()
        .with_ansi(colours(&std::io::stderr()))
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    // The same lines, uncoloured, in the log of the run this process runs, if it runs one.
    let to_run_log = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .log_internal_errors(false)
        .with_writer(|| crate::core::runs::CopyOnly);
    let layers = match format {
        LogFormat::Pretty => vec![
            to_stderr.with_target(false).boxed(),
            to_run_log.with_target(false).boxed(),
        ],
        LogFormat::Json => vec![to_stderr.json().boxed(), to_run_log.json().boxed()],
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init();
}

/// The state directory in effect (`$BATON_STATE_DIR`, `$XDG_STATE_HOME/baton`, `~/.local/state/baton`).
fn default_state() -> State {
    State::new(state::default_dir())
}

/// The fleet of `--fleet`, `$BATON_FLEET`, the config folder or the built-in one; an error is a
/// [`FleetError`] (exit 2).
fn load_fleet(cli: &Cli) -> anyhow::Result<Arc<Fleet>> {
    Ok(Arc::new(crate::lua::fleet::load(cli.fleet.as_deref())?))
}

/// Seconds since the Unix epoch, for ages.
fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

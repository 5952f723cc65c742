//! The command line: parsing (clap), logging set-up, and one function per subcommand. `main.rs` only calls
//! [`main`] and exits with its code.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::core::fleet::Fleet;
use crate::core::state::{self, State};
use crate::lua::runtime::block_on;
use crate::lua::{self, Ctx};

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
    #[command(subcommand)]
    pub command: Command,
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
        #[arg(long)]
        json: bool,
    },
    /// LLM spend from the ledger, a bar per row
    Spend {
        /// day, month or all
        #[arg(long, default_value = "month", value_parser = ["day", "month", "all"])]
        period: String,
        /// tier, model or task
        #[arg(long, default_value = "tier", value_parser = ["tier", "model", "task"])]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Detached remote jobs started with ssh.spawn (state refreshed from their hosts)
    Jobs {
        /// Forget jobs that have ended (exited or lost)
        #[arg(long)]
        prune: bool,
    },
    /// Check the setup for real: hosts, Ollama endpoints and models, OpenRouter key and credits, budget, daemon
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// One table for the fleet: hosts, load, loaded models, jobs, next runs, spend against the budget
    Status {
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
    },
    /// Run one job now, as the daemon would
    Run { job: String, file: Option<PathBuf> },
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    match cli.command {
        Command::Run { ref script } => run(&cli, Path::new(&script[0]), script[1..].to_vec()),
        Command::Repl => with_fleet(&cli, |fleet| crate::repl::run(fleet, default_state())),
        Command::Check { ref files } => check(files),
        Command::Fleet { json } => with_fleet(&cli, |fleet| print_fleet(&fleet, json)),
        Command::Spend {
            ref period,
            ref by,
            json,
        } => spend(period, by, json),
        Command::Jobs { prune } => with_fleet(&cli, |fleet| jobs(fleet, prune)),
        Command::Doctor { json } => run_module(&cli, "baton.doctor", json),
        Command::Status { json } => run_module(&cli, "baton.status", json),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "baton", &mut std::io::stdout());
            0
        }
        Command::Stubs { ref dir } => match write_stubs(dir) {
            Ok(n) => {
                println!("wrote {n} stub files and .luarc.json to {}", dir.display());
                0
            }
            Err(e) => {
                eprintln!("baton stubs: {e}");
                1
            }
        },
        Command::Daemon {
            ref file,
            install,
            print,
            ref platform,
        } => with_fleet(&cli, |fleet| {
            let (state, file) = (default_state(), file.clone());
            exit_code(if install {
                lua::daemon::install(fleet, state, file, print, platform.as_deref())
            } else {
                lua::daemon::run(fleet, state, file)
            })
        }),
        Command::Schedule(ref sub) => match sub {
            ScheduleCommand::List { file } => with_fleet(&cli, |fleet| {
                exit_code(lua::daemon::list(fleet, default_state(), file.clone()))
            }),
            ScheduleCommand::History { job, limit } => exit_code(lua::daemon::history(
                default_state(),
                job.as_deref(),
                *limit,
            )),
            ScheduleCommand::Run { job, file } => with_fleet(&cli, |fleet| {
                exit_code(lua::daemon::run_job(
                    fleet,
                    default_state(),
                    job,
                    file.clone(),
                ))
            }),
        },
    }
}

/// The exit code of a command that returns `anyhow::Result<i32>`; errors are printed, exit 1.
fn exit_code(result: anyhow::Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        eprintln!("baton: {e:#}");
        1
    })
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
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The state directory in effect (`$BATON_STATE_DIR`, `$XDG_STATE_HOME/baton`, `~/.local/state/baton`).
pub fn default_state() -> State {
    State::new(state::default_dir())
}

/// Loads the fleet (exit 2 with the error when it does not parse) and runs `f`.
pub fn with_fleet(cli: &Cli, f: impl FnOnce(Arc<Fleet>) -> i32) -> i32 {
    match lua::fleet::load(cli.fleet.as_deref()) {
        Ok(fleet) => f(Arc::new(fleet)),
        Err(e) => {
            eprintln!("baton: {e}");
            2
        }
    }
}

fn run(cli: &Cli, file: &Path, args: Vec<String>) -> i32 {
    run_lua(cli, file.display().to_string(), args, |lua, _| async move {
        lua::run_file(&lua, file).await.map(|()| 0)
    })
}

/// Runs an embedded module's `main(args)` (used by `doctor` and `status`); its return value is the exit code.
fn run_module(cli: &Cli, module: &str, json: bool) -> i32 {
    let args: Vec<String> = if json {
        vec!["--json".into()]
    } else {
        Vec::new()
    };
    run_lua(
        cli,
        format!("baton {module}"),
        args,
        |lua, args| async move {
            let main: mlua::Function = lua
                .load(format!("return require({module:?}).main"))
                .eval()?;
            let code = main
                .call_async::<Option<i32>>(lua.create_sequence_from(args)?)
                .await?;
            Ok(code.unwrap_or(0))
        },
    )
}

/// Loads the fleet, builds a runtime for `script` with `args` and drives `body` to an exit code: Ctrl-C
/// gives 130, `os.exit(n)` gives n, an error is printed as `file:line: message` with its traceback and
/// gives 1.
fn run_lua<F, Fut>(cli: &Cli, script: String, args: Vec<String>, body: F) -> i32
where
    F: FnOnce(mlua::Lua, Vec<String>) -> Fut,
    Fut: std::future::Future<Output = mlua::Result<i32>>,
{
    with_fleet(cli, |fleet| {
        let ctx = Ctx {
            fleet,
            state: default_state(),
            script,
            args: args.clone(),
        };
        block_on(async {
            let work = async {
                let lua = lua::new_runtime(ctx)?;
                body(lua, args).await
            };
            let result = tokio::select! {
                r = work => r,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("baton: interrupted");
                    return 130;
                }
            };
            result.unwrap_or_else(|e| {
                lua::exit_code(&e).unwrap_or_else(|| {
                    eprintln!("{}", lua::format_error(&e));
                    1
                })
            })
        })
        .unwrap_or_else(|e| {
            eprintln!("baton: {e}");
            1
        })
    })
}

fn check(files: &[PathBuf]) -> i32 {
    let lua = mlua::Lua::new();
    let mut failed = 0;
    for file in files {
        let result = std::fs::read(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|src| {
                lua.load(src)
                    .set_name(format!("@{}", file.display()))
                    .into_function()
                    .map(drop)
                    .map_err(|e| lua::format_error(&e))
            });
        if let Err(msg) = result {
            eprintln!("{msg}");
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("baton check: {failed} of {} file(s) failed", files.len());
        1
    } else {
        println!("baton check: {} file(s) ok", files.len());
        0
    }
}

fn print_fleet(fleet: &Fleet, json: bool) -> i32 {
    let view = fleet.view();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("fleet view serializes")
        );
        return 0;
    }
    match &fleet.source {
        Some(path) => println!("fleet: {}", path.display()),
        None => println!(
            "fleet: built-in default (no fleet file; create {} or pass --fleet)",
            crate::core::fleet::config_dir().join("fleet.lua").display()
        ),
    }
    let mut hosts = vec![
        vec!["HOST", "SSH", "ROLE", "TAGS", "OLLAMA", "PARALLEL"]
            .into_iter()
            .map(String::from)
            .collect(),
    ];
    for (name, h) in &view.hosts {
        hosts.push(vec![
            name.clone(),
            fleet.ssh_dest(name).unwrap_or("(this machine)").to_string(),
            h.role.clone().unwrap_or_default(),
            h.tags.join(","),
            h.ollama.clone().unwrap_or_default(),
            if h.ollama.is_some() {
                h.ollama_parallel.to_string()
            } else {
                String::new()
            },
        ]);
    }
    println!("\n{}", table(&hosts));
    let mut tiers = vec![
        vec!["TIER", "PROVIDER", "HOST", "MODELS", "PRICE in/out $/M"]
            .into_iter()
            .map(String::from)
            .collect(),
    ];
    for t in &view.tiers {
        let mut models: Vec<String> = t
            .models
            .iter()
            .map(|(role, m)| format!("{role}={m}"))
            .collect();
        if let Some(m) = &t.model
            && !t.models.values().any(|v| v == m)
        {
            models.insert(0, m.clone());
        }
        tiers.push(vec![
            t.name.clone(),
            t.provider.name().to_string(),
            t.host.clone().unwrap_or_default(),
            models.join(" "),
            t.price
                .map(|p| format!("{} / {}", p.input, p.output))
                .unwrap_or_else(|| "free".into()),
        ]);
    }
    println!("\n{}", table(&tiers));
    let mut by_tier: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (kind, rule) in &view.tasks {
        let label = match &rule.model {
            Some(m) => format!("{kind}({m})"),
            None => kind.clone(),
        };
        by_tier.entry(rule.tier.as_str()).or_default().push(label);
    }
    let mut tasks = vec![vec!["TIER".to_string(), "TASKS".to_string()]];
    for t in &view.tiers {
        if let Some(kinds) = by_tier.get(t.name.as_str()) {
            tasks.push(vec![t.name.clone(), kinds.join(" ")]);
        }
    }
    println!("\n{}", table(&tasks));
    match view.budget {
        Some(b) => println!(
            "\nbudget: ${} a month, alert at {:.0}%",
            b.monthly_usd,
            b.alert_at * 100.0
        ),
        None => println!("\nbudget: none (paid tiers are not capped)"),
    }
    println!(
        "openrouter: {} (key from ${}: {})",
        view.openrouter.base_url,
        view.openrouter.key_env,
        if view.openrouter.key_set {
            "set"
        } else {
            "not set"
        }
    );
    0
}

fn spend(period: &str, by: &str, json: bool) -> i32 {
    use crate::core::llm::ledger::{GroupBy, Ledger, Period, render_spend_table};
    let (Some(period), Some(by)) = (Period::parse(period), GroupBy::parse(by)) else {
        unreachable!("clap restricts --period and --by to known values")
    };
    match Ledger::new(default_state()).spend(period, by) {
        Ok(rows) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).expect("rows serialize")
            );
            0
        }
        Ok(rows) => {
            let width = std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(100);
            print!("{}", render_spend_table(&rows, width));
            0
        }
        Err(e) => {
            eprintln!("baton spend: {e}");
            1
        }
    }
}

/// Lists registered jobs, refreshing the state of running ones from their hosts (5 s each, concurrently);
/// with `prune`, forgets ended ones first.
fn jobs(fleet: Arc<Fleet>, prune: bool) -> i32 {
    use crate::core::remote::{Remote, jobs};
    let state = default_state();
    if prune {
        match jobs::prune(&state) {
            Ok(n) => println!("forgot {n} ended job(s)"),
            Err(e) => {
                eprintln!("baton jobs: {e}");
                return 1;
            }
        }
    }
    let remote = Remote::new(fleet);
    let refreshed = block_on(async {
        let out = jobs::refresh(&remote, &state, std::time::Duration::from_secs(5)).await;
        remote.pool().close_all().await;
        out
    });
    let refreshed = match refreshed {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            eprintln!("baton jobs: {e}");
            return 1;
        }
        Err(e) => {
            eprintln!("baton jobs: {e}");
            return 1;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    print!("{}", jobs::render_table(&refreshed, now));
    0
}

/// Writes `DIR/.baton/meta/` (the embedded LuaLS stubs and stdlib modules) and a `.luarc.json` pointing at it. An
/// existing `.luarc.json` is kept and only gains the library entry.
fn write_stubs(dir: &Path) -> Result<usize, String> {
    // The globals' stubs go to `.baton/meta/`, the stdlib modules (annotated sources) to
    // `.baton/meta/baton/`, where the editor resolves `require("baton.args")`.
    let meta = dir.join(".baton/meta");
    let mut n = 0;
    for (file, body) in crate::lua::stdlib::FILES {
        let target = meta.join(file.trim_start_matches("_meta/"));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&target, body).map_err(|e| format!("{}: {e}", target.display()))?;
        n += 1;
    }
    let rc = dir.join(".luarc.json");
    let mut config: serde_json::Value = match std::fs::read_to_string(&rc) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{}: not valid JSON ({e}); fix or remove it", rc.display()))?,
        Err(_) => serde_json::json!({}),
    };
    let obj = config
        .as_object_mut()
        .ok_or_else(|| format!("{}: expected a JSON object", rc.display()))?;
    obj.entry("runtime.version")
        .or_insert_with(|| "Lua 5.4".into());
    let library = obj
        .entry("workspace.library")
        .or_insert_with(|| serde_json::json!([]));
    let entry = serde_json::Value::from(".baton/meta");
    if let Some(list) = library.as_array_mut()
        && !list.contains(&entry)
    {
        list.push(entry);
    }
    let globals = obj
        .entry("diagnostics.globals")
        .or_insert_with(|| serde_json::json!([]));
    if let Some(list) = globals.as_array_mut() {
        for g in lua::global_names() {
            if !list.iter().any(|v| v == g) {
                list.push(g.into());
            }
        }
    }
    let text = serde_json::to_string_pretty(&config).expect("json");
    std::fs::write(&rc, text + "\n").map_err(|e| format!("{}: {e}", rc.display()))?;
    Ok(n)
}

/// Left-aligned columns separated by two spaces; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
                .collect();
            line.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

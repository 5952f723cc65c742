//! `baton web`: one page to watch and steer the fleet (hosts, schedule, runs with live logs, jobs, spend),
//! served from the binary (axum on the tokio runtime baton already runs; HTML from maud templates; a little
//! script only for live updates), and the same data as JSON under `/api/`.
//!
//! - `guard`: who may do what (token, Host and same-origin checks).
//! - `data`: each page's data (also `/api/…`); `probe`: what needs the network, read in the background.
//! - `pages`: the HTML; `live`: server-sent events (a run's log as it grows, "something changed").
//! - `actions`: the POSTs, each calling the same core function as the matching CLI command.
//!
//! Bounds (a slow or hostile client cannot stall the daemon's schedule or grow its memory): at most
//! [`MAX_CONNECTIONS`] connections are served at once (more wait in the kernel's backlog), a request's
//! headers must arrive within [`HEADER_TIMEOUT`] (an idle keep-alive connection is closed after it too),
//! hyper buffers at most [`MAX_BUF`] per connection, a body is at most [`MAX_BODY`], a request that is not
//! a stream is answered within [`REQUEST_TIMEOUT`], and a connection lives at most [`CONNECTION_LIFE`] (a
//! live page's `EventSource` reconnects by itself).
mod actions;
mod data;
mod guard;
mod live;
mod pages;
mod probe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::{get, post};

use crate::core::fleet::Fleet;
use crate::core::schedule::JobSpec;
use crate::core::secret::Secret;
use crate::core::state::State;

/// Where `baton web` listens unless told.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
pub const MAX_CONNECTIONS: usize = 256;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_BUF: usize = 64 * 1024;
pub const MAX_BODY: usize = 16 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONNECTION_LIFE: Duration = Duration::from_secs(600);

/// How `baton web` (or `baton daemon --web`) serves.
pub struct Options {
    pub listen: SocketAddr,
    /// `--token`; else the fleet's `web.token_env`; else a random one (loopback only).
    pub token: Option<String>,
    pub fleet: Arc<Fleet>,
    pub state: State,
    pub schedule_file: PathBuf,
    /// Served by the daemon, which resumes its own answered scheduled runs.
    pub in_daemon: bool,
}

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "web: --listen {0} is beyond loopback and no token is configured: anyone who can reach it could run \
         jobs and spend money; give one with --token or the fleet's web = {{token_env = \"BATON_WEB_TOKEN\"}}"
    )]
    NoToken(SocketAddr),
    #[error("web: the fleet's web.token_env names {0}, which is not set (or is empty)")]
    TokenEnvUnset(String),
    #[error("web: cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("web: cannot make a token: {0}")]
    Random(std::io::Error),
    #[error("web: {0}")]
    State(#[from] crate::core::state::StateError),
}

/// The server's shared state.
pub struct App {
    pub fleet: Arc<Fleet>,
    pub state: State,
    /// The runs and schedule tables, opened (and migrated) once: a live page polls them.
    pub runs: crate::core::runs::Runs,
    pub store: crate::core::schedule::store::Store,
    pub llm: crate::core::llm::Llm,
    pub remote: crate::core::remote::Remote,
    pub schedule_file: PathBuf,
    pub in_daemon: bool,
    /// The hosts as the last probe saw them.
    probe: RwLock<data::FleetData>,
    /// Bumped by each probe: live pages reload when it moves.
    probe_version: std::sync::atomic::AtomicU64,
    /// The schedule file's jobs, read again when its modification time changes.
    schedule: Mutex<Option<ScheduleCache>>,
    /// At most this many `baton` children started by buttons run at once.
    children: Arc<tokio::sync::Semaphore>,
    /// Wakes the probe before its time (after a Wake).
    poke: tokio::sync::Notify,
}

struct ScheduleCache {
    modified: Option<SystemTime>,
    specs: Result<Arc<Vec<JobSpec>>, String>,
}

impl App {
    /// The schedule's jobs (loading the file again when it changed), or why there are none.
    async fn schedule_specs(&self) -> (PathBuf, Result<Arc<Vec<JobSpec>>, String>) {
        let file = self.schedule_file.clone();
        let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
        if let Some(c) = self
            .schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && c.modified == modified
            && modified.is_some()
        {
            return (file, c.specs.clone());
        }
        let (fleet, state, path) = (self.fleet.clone(), self.state.clone(), file.clone());
        // The schedule file is Lua: evaluated on a thread of its own, within the loader's time limit.
        let specs = tokio::task::spawn_blocking(move || {
            crate::lua::runtime::block_on(async move {
                crate::lua::daemon::load(&fleet, &state, &path)
                    .await
                    .map(|s| Arc::new(s.jobs.into_iter().map(|j| j.spec).collect::<Vec<_>>()))
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        *self.schedule.lock().unwrap_or_else(|p| p.into_inner()) = Some(ScheduleCache {
            modified,
            specs: specs.clone(),
        });
        (file, specs)
    }

    /// Starts `baton ARGS…` (this binary, this fleet) in the background, detached from this process's
    /// group (Ctrl-C on `baton web` does not stop what a button started); its output goes where the
    /// command itself records it (a run's log, a scheduled run's log file).
    fn spawn_baton(self: &Arc<Self>, args: Vec<String>) -> Result<(), String> {
        let permit = self.children.clone().try_acquire_owned().map_err(
            |_| "too many commands started from the page are still running; try again soon",
        )?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find baton itself: {e}"))?;
        let mut cmd = tokio::process::Command::new(exe);
        if let Some(f) = &self.fleet.source {
            cmd.arg("--fleet").arg(f);
        }
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start baton {}: {e}", args.join(" ")))?;
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::info!("web: baton {} ended: {status:?}", args.join(" "));
            drop(permit);
        });
        Ok(())
    }
}

/// Closes a server's ssh connections (masters to the hosts it probed or tailed jobs on).
pub struct Closer(Arc<App>);

impl Closer {
    pub async fn close(self) {
        self.0.remote.close().await;
    }
}

/// A bound server, ready to run.
pub struct Server {
    app: Arc<App>,
    access: Arc<guard::Access>,
    listener: tokio::net::TcpListener,
}

impl Server {
    /// Resolves the token (refusing a public address without a configured one) and binds.
    pub async fn bind(opts: Options) -> Result<Server, StartError> {
        let configured = match (
            &opts.token,
            opts.fleet.web.as_ref().and_then(|w| w.token_env.as_ref()),
        ) {
            (Some(t), _) => Some(Secret::new(t.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(t) if !t.is_empty() => Some(Secret::new(t)),
                _ => return Err(StartError::TokenEnvUnset(var.clone())),
            },
            (None, None) => None,
        };
        let token = match configured {
            Some(t) => t,
            None if opts.listen.ip().is_loopback() => {
                guard::random_token().map_err(StartError::Random)?
            }
            None => return Err(StartError::NoToken(opts.listen)),
        };
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| StartError::Bind(opts.listen, e))?;
        let listen = listener
            .local_addr()
            .map_err(|e| StartError::Bind(opts.listen, e))?;
        let runs = crate::core::runs::Runs::open(&opts.state)?;
        let store = crate::core::schedule::store::Store::open(&opts.state)?;
        let app = Arc::new(App {
            runs,
            store,
            llm: crate::core::llm::Llm::new(opts.fleet.clone(), opts.state.clone()),
            remote: crate::core::remote::Remote::new(opts.fleet.clone()),
            fleet: opts.fleet,
            state: opts.state,
            schedule_file: opts.schedule_file,
            in_daemon: opts.in_daemon,
            probe: RwLock::new(data::FleetData::default()),
            probe_version: std::sync::atomic::AtomicU64::new(0),
            schedule: Mutex::new(None),
            children: Arc::new(tokio::sync::Semaphore::new(8)),
            poke: tokio::sync::Notify::new(),
        });
        Ok(Server {
            access: Arc::new(guard::Access::new(token, listen)),
            app,
            listener,
        })
    }

    /// What closes the server's ssh connections when it stops (its `run` never returns by itself).
    pub fn closer(&self) -> Closer {
        Closer(self.app.clone())
    }

    /// `http://ADDR/?token=…`: the link that logs a browser in.
    pub fn login_url(&self) -> String {
        self.access.login_url()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until the process ends: the background probe, and each connection on a task of its own.
    pub async fn run(self) {
        let router = router(self.app.clone(), self.access.clone());
        tokio::spawn(probe::run(self.app.clone()));
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("web: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_BUF)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_LIFE, conn).await;
                drop(permit);
            });
        }
    }
}

/// Every route, behind the guard and the bounds.
fn router(app: Arc<App>, access: Arc<guard::Access>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::dashboard))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/jobs/{id}", get(pages::job))
        .route("/spend", get(pages::spend))
        .route("/assets/style.css", get(pages::style))
        .route("/assets/live.js", get(pages::script))
        .route("/api/fleet", get(pages::api_fleet))
        .route("/api/schedule", get(pages::api_schedule))
        .route("/api/runs", get(pages::api_runs))
        .route("/api/runs/{id}", get(pages::api_run))
        .route("/api/jobs", get(pages::api_jobs))
        .route("/api/spend", get(pages::api_spend))
        .route("/schedule/{job}/run", post(actions::run_job))
        .route("/runs/{id}/approve", post(actions::approve))
        .route("/runs/{id}/deny", post(actions::deny))
        .route("/runs/{id}/cancel", post(actions::cancel))
        .route("/runs/{id}/resume", post(actions::resume))
        .route("/hosts/{host}/wake", post(actions::wake))
        .layer(axum::middleware::from_fn(bounded));
    // Streams are not cut by the request timeout (they end with the connection's life).
    let streams = Router::new()
        .route("/events", get(live::changes))
        .route("/runs/{id}/log", get(live::run_log))
        .route("/jobs/{id}/log", get(live::job_log));
    pages
        .merge(streams)
        .fallback(pages::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(access, guard::check))
        .with_state(app)
}

/// Answers within [`REQUEST_TIMEOUT`] or says it could not (503).
async fn bounded(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "baton web: the answer took too long\n",
        )
            .into_response(),
    }
}

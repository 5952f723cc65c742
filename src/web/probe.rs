//! What the dashboard cannot read from the state database: whether hosts are up, their load, Ollama's
//! loaded models, Syncthing's folders, and the states of running detached jobs. Probed in the background
//! every [`EVERY`] (sooner after a Wake), so a page never waits on the network.
//!
//! The hosts come from `baton status --json` run as a child process (the same Lua probe the CLI shows,
//! with Syncthing folders for hosts that configure `syncthing`), so a fleet file or a host that misbehaves
//! cannot hold the server up or crash it: the child gets [`TIMEOUT`] and is killed after. Job states are
//! refreshed in-process through the ssh connections the server keeps (each host at most 5 s).
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::App;
use super::data::{FleetData, HostData};

pub const EVERY: Duration = Duration::from_secs(20);
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a child's output read (a report of many hosts is a few KiB).
const MAX_OUTPUT: u64 = 4 << 20;

#[derive(serde::Deserialize)]
struct Report {
    hosts: Vec<HostData>,
}

/// Probes until the process ends.
pub async fn run(app: Arc<App>) {
    loop {
        once(&app).await;
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = app.poke.notified() => {}
        }
    }
}

/// One probe: hosts, then jobs.
pub async fn once(app: &App) {
    let result = hosts(app).await;
    let now = crate::core::runs::now();
    {
        let mut data = app.probe.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(mut hosts) => {
                for h in &mut hosts {
                    let before = data.hosts.iter().find(|b| b.host == h.host);
                    if h.online {
                        h.last_seen = Some(now);
                        h.offline_since = None;
                    } else {
                        h.last_seen = before.and_then(|b| b.last_seen);
                        h.offline_since = before.and_then(|b| b.offline_since).or(Some(now));
                    }
                }
                *data = FleetData {
                    probed_at: Some(now),
                    error: None,
                    hosts,
                };
            }
            Err(e) => {
                data.probed_at = Some(now);
                data.error = Some(e);
            }
        }
    }
    let _ =
        crate::core::remote::jobs::refresh(&app.remote, &app.state, Duration::from_secs(5)).await;
    app.probe_version.fetch_add(1, Ordering::Relaxed);
}

/// `baton status --json`'s hosts.
async fn hosts(app: &App) -> Result<Vec<HostData>, String> {
    use tokio::io::AsyncReadExt;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find baton itself: {e}"))?;
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(f) = &app.fleet.source {
        cmd.arg("--fleet").arg(f);
    }
    cmd.args(["status", "--json"])
        .env("BATON_STATE_DIR", app.state.dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run baton status: {e}"))?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Both pipes at once: a child that fills one while the other is read would wait for ever.
    let read_out = async {
        if let Some(s) = stdout {
            let _ = s.take(MAX_OUTPUT).read_to_end(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(s) = stderr {
            let _ = s.take(64 << 10).read_to_end(&mut err).await;
        }
    };
    let read = async {
        tokio::join!(read_out, read_err);
        child.wait().await
    };
    let status = tokio::time::timeout(TIMEOUT, read)
        .await
        .map_err(|_| format!("baton status took over {}s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("baton status: {e}"))?;
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        return Err(format!(
            "baton status failed: {}",
            crate::core::text::escape_line(text.trim())
        ));
    }
    serde_json::from_slice::<Report>(&out)
        .map(|r| r.hosts)
        .map_err(|e| format!("baton status --json gave no report: {e}"))
}

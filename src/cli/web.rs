//! `baton web [--listen ADDR] [--open] [--token TOKEN] [--schedule FILE]`: serves the dashboard until
//! Ctrl-C (see [`crate::web`]).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::default_state;
use crate::core::fleet::Fleet;

pub fn serve(
    fleet: Arc<Fleet>,
    listen: SocketAddr,
    open: bool,
    token: Option<String>,
    schedule: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let schedule_file = schedule.unwrap_or_else(|| crate::lua::daemon::default_file(&fleet));
    crate::lua::runtime::block_on_leaving(async move {
        let server = crate::web::Server::bind(crate::web::Options {
            listen,
            token,
            fleet,
            state: default_state(),
            schedule_file,
            in_daemon: false,
        })
        .await?;
        let url = server.login_url();
        crate::errln!(
            "baton web: serving the dashboard on http://{}",
            server.local_addr()
        );
        crate::errln!("  open (this link carries the token; it logs a browser in): {url}");
        if open {
            open_browser(&url);
        }
        let closer = server.closer();
        tokio::select! {
            () = server.run() => {}
            _ = tokio::signal::ctrl_c() => crate::errln!("baton web: stopped"),
        }
        closer.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
    .context("cannot start the async runtime")?
}

/// The desktop's browser on `url` (`open` on macOS, `xdg-open` elsewhere); a failure is told, not fatal.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        crate::errln!("baton web: cannot open a browser ({opener}: {e}); open the link above");
    }
}

//! Live updates as server-sent events: a run's log as it grows (`/runs/{id}/log`), a job's log tail
//! (`/jobs/{id}/log`) and a "something changed" tick for the other pages (`/events`). Each stream polls
//! cheap things (a file's length, the state database's WAL file, the probe's counter) a few times a second;
//! a page's script reacts. Nothing is buffered per client beyond one chunk.
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;

use super::App;
use crate::core::runs::RunStatus;

/// How often a run's log is looked at: a printed line reaches an open page within about this.
const LOG_POLL: Duration = Duration::from_millis(200);
/// How often `/events` looks for a change.
const CHANGE_POLL: Duration = Duration::from_millis(500);
/// How often a job's log is fetched from its host.
const JOB_POLL: Duration = Duration::from_secs(2);
/// The most of a log sent in one event.
const CHUNK: u64 = 64 * 1024;

type Events = Sse<
    axum::response::sse::KeepAliveStream<
        std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>,
    >,
>;

fn sse(s: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Events {
    let boxed: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(s);
    Sse::new(boxed).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A file's length and modification time.
type Stamp = Option<(u64, std::time::SystemTime)>;

/// What says "the data changed": the state database's files (a commit appends to the WAL) and the probe.
fn fingerprint(app: &App) -> (Stamp, Stamp, u64) {
    let look = |name: &str| {
        std::fs::metadata(app.state.dir().join(name))
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
    };
    (
        look("baton.db"),
        look("baton.db-wal"),
        app.probe_version.load(Ordering::Relaxed),
    )
}

/// `GET /events`: a `change` event whenever the state or the probe moved (at most every half second).
pub async fn changes(State(app): State<Arc<App>>) -> Events {
    let first = fingerprint(&app);
    sse(stream::unfold((app, first), |(app, last)| async move {
        loop {
            tokio::time::sleep(CHANGE_POLL).await;
            let now = fingerprint(&app);
            if now != last {
                // A browser drops an event without data: it carries one.
                return Some((Ok(Event::default().event("change").data("1")), (app, now)));
            }
        }
    }))
}

#[derive(serde::Deserialize)]
pub struct From {
    /// Bytes of the log the page already shows.
    #[serde(default)]
    from: u64,
}

struct LogCursor {
    app: Arc<App>,
    id: String,
    offset: u64,
    status: Option<&'static str>,
    ended: bool,
}

/// Reads what was added to the log since `offset` (at most [`CHUNK`]); a log that was cut in half
/// (it passed its bound) is read again from its new start.
fn read_more(path: &std::path::Path, offset: &mut u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len < *offset {
        *offset = 0;
    }
    if len == *offset {
        return None;
    }
    f.seek(SeekFrom::Start(*offset)).ok()?;
    let mut buf = Vec::new();
    f.take(CHUNK).read_to_end(&mut buf).ok()?;
    // Whole characters only: a cut inside one waits for the rest.
    let text = match std::str::from_utf8(&buf) {
        Ok(t) => t.to_string(),
        Err(e) if e.error_len().is_none() => {
            buf.truncate(e.valid_up_to());
            String::from_utf8_lossy(&buf).into_owned()
        }
        Err(_) => String::from_utf8_lossy(&buf).into_owned(),
    };
    *offset += buf.len() as u64;
    (!text.is_empty()).then_some(text)
}

/// `GET /runs/{id}/log?from=N`: `log` events (`{"text": what the run printed after byte N, "to": the byte
/// it reached}`), then a `status` event whenever its status changes; the stream ends after the last
/// bytes of a run that is not running (an answered pause, `resuming`, stays open: its resume starts in a
/// moment).
pub async fn run_log(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(From { from }): Query<From>,
) -> Result<Events, (axum::http::StatusCode, String)> {
    // Only a recorded run's log, by the id the table holds: a name from the address never becomes a path.
    let known = {
        let runs = app.runs.clone();
        tokio::task::spawn_blocking(move || runs.get(&id).ok().flatten().map(|r| r.id))
            .await
            .ok()
            .flatten()
    };
    let Some(id) = known else {
        return Err((axum::http::StatusCode::NOT_FOUND, "no such run\n".into()));
    };
    let cursor = LogCursor {
        app,
        id,
        offset: from,
        status: None,
        ended: false,
    };
    Ok(sse(stream::unfold(cursor, |mut c| async move {
        loop {
            if c.ended {
                return None;
            }
            let path = crate::core::runs::log_path(c.app.state.dir(), &c.id);
            let mut offset = c.offset;
            let (more, run) = tokio::task::spawn_blocking({
                let (runs, id) = (c.app.runs.clone(), c.id.clone());
                move || {
                    let more = read_more(&path, &mut offset);
                    let run = runs.get(&id).ok().flatten();
                    (more, run, offset)
                }
            })
            .await
            .map(|(m, r, o)| {
                offset = o;
                (m, r)
            })
            .unwrap_or((None, None));
            c.offset = offset;
            if let Some(text) = more {
                let event = Event::default()
                    .event("log")
                    .json_data(serde_json::json!({ "text": text, "to": c.offset }))
                    .unwrap_or_default();
                return Some((Ok(event), c));
            }
            let status = run.as_ref().map(|r| r.status());
            // Answered but not yet taken over by its resume: it goes on in a moment.
            let answered = run
                .as_ref()
                .is_some_and(|r| status == Some(RunStatus::Paused) && r.pending.is_none());
            let name = if answered {
                Some("resuming")
            } else {
                status.map(RunStatus::name)
            };
            if name != c.status {
                c.status = name;
                // A run that is not running (nor about to be), or is gone (pruned), ends the stream after
                // its last bytes and its status; the page follows it again when it is resumed.
                c.ended = status != Some(RunStatus::Running) && !answered;
                return Some((
                    Ok(Event::default()
                        .event("status")
                        .data(name.unwrap_or("unknown"))),
                    c,
                ));
            }
            tokio::time::sleep(LOG_POLL).await;
        }
    })))
}

/// `GET /jobs/{id}/log`: the job's last 50 log lines, as a `tail` event each time they change (read from
/// its host every 2 s through the server's ssh connection).
pub async fn job_log(State(app): State<Arc<App>>, Path(id): Path<String>) -> Events {
    sse(stream::unfold(
        (app, id, String::new()),
        |(app, id, last)| async move {
            loop {
                let state = app.state.clone();
                let job = {
                    let id = id.clone();
                    tokio::task::spawn_blocking(move || crate::core::remote::jobs::get(&state, &id))
                        .await
                        .ok()?
                        .ok()?
                };
                let text = match tokio::time::timeout(
                    Duration::from_secs(10),
                    crate::core::remote::jobs::tail(&app.remote, &job, 50),
                )
                .await
                {
                    Ok(Ok(lines)) => lines.join("\n"),
                    Ok(Err(e)) => format!("(cannot read the log: {e})"),
                    Err(_) => "(the host did not answer within 10s)".into(),
                };
                if text != last {
                    return Some((
                        Ok(Event::default()
                            .event("tail")
                            .json_data(&text)
                            .unwrap_or_default()),
                        (app, id, text),
                    ));
                }
                tokio::time::sleep(JOB_POLL).await;
            }
        },
    ))
}

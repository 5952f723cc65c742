//! The buttons. Each is a POST that calls the same core function as its CLI command (`runs approve|deny|
//! cancel`, `resume`, `schedule run`, the wake of `ssh.wake`); what runs a playbook (Run now, Resume, the
//! resume after an answer) starts `baton …` in the background, exactly that command, so the page never
//! waits on a playbook and the run is recorded like any other (its output in its log). The answer is a
//! redirect back to the page for a form, JSON for a client that asks for it (`Accept: application/json`).
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::App;
use super::data::{Failure, blocking};
use crate::core::runs::{ActionError, Runs};

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

fn done(headers: &HeaderMap, back: &str, what: serde_json::Value) -> Response {
    if wants_json(headers) {
        Json(what).into_response()
    } else {
        Redirect::to(back).into_response()
    }
}

fn failed(headers: &HeaderMap, Failure(status, message): Failure) -> Response {
    if wants_json(headers) {
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        super::pages::error(status, &message)
    }
}

fn refused(e: ActionError) -> Failure {
    match e {
        ActionError::NoRun(_) => Failure(StatusCode::NOT_FOUND, e.to_string()),
        ActionError::Refused(_) => Failure(StatusCode::CONFLICT, e.to_string()),
        ActionError::State(e) => Failure::from(e),
    }
}

/// Runs `f` (a core action on the runs table) on the blocking pool.
async fn on_runs<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Runs) -> Result<T, ActionError> + Send + 'static,
) -> Result<T, Failure> {
    let runs = app.runs.clone();
    blocking(move || f(&runs).map_err(refused)).await
}

/// `POST /schedule/{job}/run`: `baton schedule run JOB FILE` (recorded, logged, notified as the daemon
/// would).
pub async fn run_job(
    State(app): State<Arc<App>>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (file, specs) = app.schedule_specs().await;
    let known = specs
        .as_ref()
        .is_ok_and(|s| s.iter().any(|j| j.name == job));
    if !known {
        return failed(
            &headers,
            Failure::not_found(format!(
                "no job {} in {}",
                crate::core::text::quoted(&job),
                file.display()
            )),
        );
    }
    // `--`: what follows is never read as an option, whatever a name looks like.
    let args = vec![
        "schedule".into(),
        "run".into(),
        "--".into(),
        job.clone(),
        file.display().to_string(),
    ];
    match app.spawn_baton(args) {
        Ok(()) => done(
            &headers,
            "/#schedule",
            serde_json::json!({ "started": job }),
        ),
        Err(e) => failed(&headers, Failure(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

#[derive(serde::Deserialize)]
pub struct Answer {
    #[serde(default)]
    text: Option<String>,
}

/// `POST /runs/{id}/approve` (`text=…`): `baton runs approve RUN [--answer TEXT]`.
pub async fn approve(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Answer>, FormRejection>,
) -> Response {
    answer(app, id, true, form, headers).await
}

/// `POST /runs/{id}/deny` (`text=…`): `baton runs deny RUN [--reason TEXT]`.
pub async fn deny(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Answer>, FormRejection>,
) -> Response {
    answer(app, id, false, form, headers).await
}

/// Records the answer, then resumes the run in the background — unless the daemon serves this page and
/// the run is one of its scheduled runs: the daemon resumes those itself.
async fn answer(
    app: Arc<App>,
    id: String,
    approved: bool,
    form: Result<Form<Answer>, FormRejection>,
    headers: HeaderMap,
) -> Response {
    // The form's text; a POST without a body (curl -X POST) answers without one.
    let text = match form {
        Ok(Form(a)) => a.text.filter(|t| !t.trim().is_empty()),
        Err(_) if !headers.contains_key(header::CONTENT_TYPE) => None,
        Err(e) => return e.into_response(),
    };
    let run = {
        let id = id.clone();
        on_runs(&app, move |r| {
            r.answer_pending(&id, approved, text.as_deref())
        })
        .await
    };
    let run = match run {
        Ok(run) => run,
        Err(f) => return failed(&headers, f),
    };
    let resumed = !(app.in_daemon && run.trigger == "schedule");
    if resumed && let Err(e) = app.spawn_baton(vec!["resume".into(), "--".into(), id.clone()]) {
        return failed(&headers, Failure(StatusCode::SERVICE_UNAVAILABLE, e));
    }
    done(
        &headers,
        &format!("/runs/{id}"),
        serde_json::json!({ "run": id, "approved": approved, "resumed": resumed }),
    )
}

/// `POST /runs/{id}/cancel`: `baton runs cancel RUN` (a running one is stopped).
pub async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = {
        let id = id.clone();
        on_runs(&app, move |r| r.cancel(&id)).await
    };
    match r {
        Ok(_) => done(
            &headers,
            &format!("/runs/{id}"),
            serde_json::json!({ "cancelled": id }),
        ),
        Err(f) => failed(&headers, f),
    }
}

/// `POST /runs/{id}/resume`: `baton resume RUN`, in the background.
pub async fn resume(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = {
        let id = id.clone();
        on_runs(&app, move |r| r.resumable(&id)).await
    };
    if let Err(f) = r {
        return failed(&headers, f);
    }
    match app.spawn_baton(vec!["resume".into(), "--".into(), id.clone()]) {
        Ok(()) => done(
            &headers,
            &format!("/runs/{id}"),
            serde_json::json!({ "resumed": id }),
        ),
        Err(e) => failed(&headers, Failure(StatusCode::SERVICE_UNAVAILABLE, e)),
    }
}

/// `POST /hosts/{host}/wake`: the magic packet (`ssh.wake`), then a probe soon after.
pub async fn wake(
    State(app): State<Arc<App>>,
    Path(host): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !app.fleet.hosts.contains_key(&host) {
        return failed(
            &headers,
            Failure::not_found(format!(
                "no host {} in the fleet",
                crate::core::text::quoted(&host)
            )),
        );
    }
    match crate::core::remote::wake::wake(&app.remote, &host).await {
        Ok(sent) => {
            app.poke.notify_one();
            done(
                &headers,
                "/#fleet",
                serde_json::json!({ "woken": host, "to": sent.to.to_string(), "via": sent.via }),
            )
        }
        Err(e) => failed(
            &headers,
            Failure(StatusCode::CONFLICT, format!("wake {host}: {e}")),
        ),
    }
}

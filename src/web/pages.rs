//! The HTML (maud templates: every value is escaped by the template) and the `/api/` JSON twins. Each page
//! is made of `data`'s structs; what refreshes by itself carries `data-refresh` (the script swaps those
//! elements when `/events` says something changed), times carry `data-at` (the script shows them as
//! "in 4m 10s" / "3h 2m ago", ticking).
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::App;
use super::data::{self, Failure, FleetData, JobInfo, RunData, RunPage, ScheduleData, StepData};
use crate::core::llm::budget::Report;
use crate::core::llm::ledger::{GroupBy, Period};
use crate::core::runs::RunStatus;
use crate::core::text::money;

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/live.js");
/// The most of a run's log put in its page (the rest: `baton runs show RUN --log`).
const LOG_SHOWN: usize = 256 * 1024;

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "baton · " (title) }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header {
                    a.brand href="/" { "baton" }
                    nav {
                        a href="/#fleet" { "Fleet" }
                        a href="/#schedule" { "Schedule" }
                        a href="/runs" { "Runs" }
                        a href="/#jobs" { "Jobs" }
                        a href="/spend" { "Spend" }
                    }
                }
                main #main { (body) }
                script src="/assets/live.js" {}
            }
        }
    }
}

fn page(title: &str, body: Markup) -> Response {
    Html(layout(title, body).into_string()).into_response()
}

/// An error as a page.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        p.error { (message) }
        p { a href="/" { "Back to the dashboard" } }
    };
    (status, Html(layout("error", body).into_string())).into_response()
}

fn failure(Failure(status, message): Failure) -> Response {
    error(status, &message)
}

fn api_failure(Failure(status, message): Failure) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page")
}

/// A time as the page shows it: local date and time, with `data-at` for the ticking "ago".
fn when(unix: f64) -> Markup {
    let text = chrono::DateTime::from_timestamp(unix as i64, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    html! { time datetime=(unix as i64) title=(text) data-at=(unix as i64) { (text) } }
}

fn took(secs: f64) -> String {
    let d = std::time::Duration::from_secs_f64(secs.max(0.0));
    if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        crate::core::duration::format(std::time::Duration::from_secs(d.as_secs()))
    }
}

fn badge(state: &str) -> Markup {
    html! { span class={ "badge " (state.replace(' ', "-")) } { (state) } }
}

fn post_button(action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            button type="submit" class=(class) { (label) }
        }
    }
}

// ------------------------------------------------------------------------------------------ dashboard

pub async fn dashboard(State(app): State<Arc<App>>) -> Response {
    let fleet = data::fleet(&app);
    let (schedule, runs, jobs, spend) = tokio::join!(
        data::schedule(&app),
        data::runs(&app, None, 10),
        data::jobs(&app),
        data::spend(&app, Period::Month, GroupBy::Tier),
    );
    let body = html! {
        (fleet_section(&fleet))
        @match schedule { Ok(s) => (schedule_section(&s)), Err(Failure(_, e)) => section #schedule { h2 { "Schedule" } p.error { (e) } } }
        section #runs data-refresh {
            h2 { "Runs " a.more href="/runs" { "all runs →" } }
            @match runs { Ok(r) => (runs_table(&r)), Err(Failure(_, e)) => p.error { (e) } }
        }
        @match jobs { Ok(j) => (jobs_section(&j)), Err(Failure(_, e)) => section #jobs { h2 { "Jobs" } p.error { (e) } } }
        section #spend data-refresh {
            h2 { "Spend " a.more href="/spend" { "by tier, model, task, script →" } }
            @match spend { Ok(r) => { (spend_summary(&r)) (chart(&r)) }, Err(Failure(_, e)) => p.error { (e) } }
        }
    };
    page("dashboard", body)
}

fn fleet_section(f: &FleetData) -> Markup {
    html! {
        section #fleet data-refresh {
            h2 { "Fleet" }
            @if let Some(e) = &f.error { p.error { "last probe failed: " (e) } }
            @match f.probed_at {
                None => p.muted { "probing the hosts…" },
                Some(t) => p.muted { "probed " (when(t)) },
            }
            div.scroll {
                table {
                    thead { tr { th { "Host" } th.wide { "Role" } th { "State" } th.wide { "Load" } th { "Ollama" } th.wide { "Syncthing" } th.wide { "Jobs" } th {} } }
                    tbody {
                        @for h in &f.hosts {
                            tr data-host=(h.host) {
                                td { b { (h.host) } }
                                td.wide { (h.role) }
                                td {
                                    @if h.online { (badge("online")) }
                                    @else if h.wakeable { (badge("asleep")) }
                                    @else { (badge("down")) }
                                    @if !h.online { @if let Some(t) = h.offline_since { " since " (when(t)) } }
                                    @if let Some(t) = h.last_seen { @if !h.online { br; span.muted { "last seen " (when(t)) } } }
                                }
                                td.num.wide { @if let Some(l) = h.load { (format!("{l:.2}")) } @else { "–" } }
                                td {
                                    @match h.ollama.as_deref() {
                                        None => "–",
                                        Some("down") => (badge("down")),
                                        Some(_) if h.ollama_models.is_empty() => span.muted { "none loaded" },
                                        Some(_) => @for m in &h.ollama_models { code { (m) } " " },
                                    }
                                }
                                td.wide {
                                    @match &h.syncthing {
                                        None => "–",
                                        Some(s) => {
                                            @if let Some(e) = &s.error { span.error title=(e) { "error" } }
                                            @for folder in &s.folders {
                                                div {
                                                    (if folder.label.is_empty() { &folder.id } else { &folder.label }) ": "
                                                    @if folder.errors > 0 { (badge("error")) " " (folder.errors) " errors" }
                                                    @else if folder.state == "idle" && folder.need_bytes == 0 { (badge("up to date")) }
                                                    @else if folder.need_bytes > 0 { (badge("syncing")) " " (bytes(folder.need_bytes)) " left" }
                                                    @else { (badge(&folder.state)) }
                                                }
                                            }
                                        }
                                    }
                                }
                                td.num.wide { (h.jobs) }
                                td { @if h.wakeable { (post_button(&format!("/hosts/{}/wake", h.host), "Wake", "wake")) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn schedule_section(s: &ScheduleData) -> Markup {
    html! {
        section #schedule data-refresh {
            h2 { "Schedule" }
            @if let Some(e) = &s.error { p.muted { (e) } }
            @else {
                div.scroll {
                    table {
                        thead { tr { th { "Job" } th.wide { "When" } th { "Next" } th { "State" } th.wide { "Last run" } th {} } }
                        tbody {
                            @for j in &s.jobs {
                                tr data-job=(j.name) {
                                    td { b { (j.name) } br.wide; span.muted.wide { (j.target) } }
                                    td.nowrap.wide { code { (j.cron) } " " span.muted { (j.zone) } }
                                    td.nowrap { @match j.next { Some(t) => (when(t as f64)), None => "never" } }
                                    td { (badge(j.state)) }
                                    td.wide {
                                        @if let Some(l) = &j.last {
                                            (badge(&l.outcome)) " "
                                            @if let Some(t) = l.started { (when(t as f64)) }
                                            @if let Some(d) = l.duration { " · " (took(d)) }
                                            @if l.manual { " · by hand" }
                                            @if let Some(e) = &l.error { br; span.error { (crate::core::text::truncate(e.lines().next().unwrap_or(""), 120)) } }
                                        } @else { span.muted { "never ran" } }
                                    }
                                    td { (post_button(&format!("/schedule/{}/run", j.name), "Run now", "run")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn runs_table(runs: &[RunData]) -> Markup {
    html! {
        @if runs.is_empty() { p.muted { "no runs recorded" } }
        @else {
            div.scroll {
                table.runs {
                    thead { tr { th { "Run" } th { "Script" } th.wide { "Trigger" } th { "Status" } th.wide { "Started" } th.wide { "Took" } th.num.wide { "Cost" } } }
                    tbody {
                        @for r in runs {
                            tr data-run=(r.id) {
                                td.nowrap { a href={ "/runs/" (r.id) } { code { (r.id) } } }
                                td { (r.name) }
                                td.wide { (r.trigger) }
                                td { (badge(r.status)) @if r.question.is_some() { " " span.muted.wide { "waits for an answer" } } }
                                td.wide { (when(r.started)) }
                                td.wide { @match r.ended { Some(e) => (took(e - r.started)), None => "–" } }
                                td.num.wide { (money(r.cost)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn jobs_section(jobs: &[JobInfo]) -> Markup {
    let now = chrono::Utc::now().timestamp();
    html! {
        section #jobs data-refresh {
            h2 { "Jobs" }
            @if jobs.is_empty() { p.muted { "no detached jobs" } }
            @else {
                div.scroll {
                    table {
                        thead { tr { th { "Job" } th { "Host" } th { "What" } th { "State" } th { "Elapsed" } th { "Attach" } } }
                        tbody {
                            @for j in jobs {
                                tr data-job-id=(j.id) {
                                    td { a href={ "/jobs/" (j.id) } { code { (j.id) } } }
                                    td { (j.host) }
                                    td { (j.title.as_deref().unwrap_or(&j.command)) }
                                    td { (badge(j.state)) @if let Some(c) = j.code { " (" (c) ")" } }
                                    td { (took((now - j.started_at) as f64)) }
                                    td { @if let Some(a) = &j.attach { code.copy { (a) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn spend_summary(r: &Report) -> Markup {
    let budget = r.budget.map(|b| b.monthly_usd);
    let fraction = budget.filter(|b| *b > 0.0).map(|b| (r.spent / b).min(1.0));
    html! {
        div.spend {
            p.big {
                (money(r.spent))
                @if let Some(b) = budget { " of " (money(b)) } @else { span.muted { " (no budget)" } }
                " · " (r.month)
            }
            @if let Some(f) = fraction {
                div.meter { div class={ "fill" @if r.alert_line.is_some_and(|a| r.spent >= a) { " alert" } } style={ "width:" (format!("{:.1}", f * 100.0)) "%" } {} }
            }
            table.kv {
                tr { th { "ledger" } td { (money(r.ledger.spent)) " in this state directory" } }
                tr { th { "provider" } td { @match r.provider.and_then(|p| p.usage_monthly) { Some(u) => { (money(u)) " this month (OpenRouter)" }, None => span.muted { "not known" } } } }
                @if r.ledger.held > 0.0 { tr { th { "held" } td { (money(r.ledger.held)) " by calls under way" } } }
                @if r.ledger.interrupted > 0.0 { tr { th { "interrupted" } td { (money(r.ledger.interrupted)) " (calls cut short, at their worst case)" } } }
            }
        }
    }
}

/// The month day by day, drawn here as SVG: a bar per day (its title tells the amount), a dashed line at
/// the largest day.
fn chart(r: &Report) -> Markup {
    let mut per_day: std::collections::BTreeMap<u32, f64> = std::collections::BTreeMap::new();
    for d in &r.days {
        if let Some(day) = d.day.rsplit('-').next().and_then(|x| x.parse().ok()) {
            *per_day.entry(day).or_default() += d.cost;
        }
    }
    let max = per_day.values().copied().fold(0.0, f64::max);
    let (w, h, bar) = (31.0 * 12.0, 120.0, 10.0);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (w) " " (h + 16.0) } role="img" aria-label={ "spend per day, " (r.month) } {
                line x1="0" y1=(h) x2=(w) y2=(h) class="axis" {}
                @for day in 1..=31u32 {
                    @let cost = per_day.get(&day).copied().unwrap_or(0.0);
                    @let bh = if max > 0.0 { (cost / max * (h - 10.0)).max(if cost > 0.0 { 1.0 } else { 0.0 }) } else { 0.0 };
                    @let x = (day - 1) as f64 * 12.0 + 1.0;
                    rect class="bar" data-day=(day) x=(x) y=(h - bh) width=(bar) height=(bh) { title { (r.month) "-" (format!("{day:02}")) ": " (money(cost)) } }
                    @if day % 5 == 0 || day == 1 { text x=(x) y=(h + 12.0) { (day) } }
                }
            }
            figcaption { "per day, " (r.month) " (UTC) · largest day " (money(max)) }
        }
    }
}

// ------------------------------------------------------------------------------------------------ runs

#[derive(serde::Deserialize)]
pub struct RunsQuery {
    status: Option<String>,
    limit: Option<usize>,
}

fn runs_filter(q: &RunsQuery) -> Result<(Option<RunStatus>, usize), Failure> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            Failure(
                StatusCode::BAD_REQUEST,
                format!(
                    "status must be running, ok, failed, interrupted, paused or cancelled, got {}",
                    crate::core::text::quoted(s)
                ),
            )
        })?),
    };
    Ok((status, q.limit.unwrap_or(100).clamp(1, 1000)))
}

pub async fn runs(State(app): State<Arc<App>>, Query(q): Query<RunsQuery>) -> Response {
    let (status, limit) = match runs_filter(&q) {
        Ok(f) => f,
        Err(f) => return failure(f),
    };
    match data::runs(&app, status, limit).await {
        Ok(list) => page(
            "runs",
            html! {
                section #runs data-refresh {
                    h2 { "Runs" }
                    p.filters {
                        a href="/runs" class=[status.is_none().then_some("on")] { "all" }
                        @for s in ["running", "paused", "failed", "interrupted", "ok", "cancelled"] {
                            " " a href={ "/runs?status=" (s) } class=[(status.map(RunStatus::name) == Some(s)).then_some("on")] { (s) }
                        }
                    }
                    (runs_table(&list))
                }
            },
        ),
        Err(f) => failure(f),
    }
}

pub async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let page_data = match data::run(&app, id.clone()).await {
        Ok(p) => p,
        Err(f) => return failure(f),
    };
    let log = {
        let dir = app.state.dir().to_path_buf();
        tokio::task::spawn_blocking(move || crate::core::runs::RunLog::read_following(&dir, &id))
            .await
            .unwrap_or_default()
    };
    page(
        &format!("run {}", page_data.run.id),
        run_body(&page_data, &log.0, log.1),
    )
}

/// `from`: the length of the log's current half, where the live stream goes on.
fn run_body(p: &RunPage, log: &str, from: u64) -> Markup {
    let r = &p.run;
    let status = r.status;
    // The page shows the log's end; the stream goes on from its whole length.
    let shown = match log.len().checked_sub(LOG_SHOWN) {
        Some(cut) => {
            &log[(cut..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(log.len())..]
        }
        None => log,
    };
    html! {
        section #head data-refresh {
            h2 { "Run " code { (r.id) } " " (badge(status)) }
            table.kv {
                tr { th { "script" } td { code { (r.script.display()) } @for a in &r.args { " " code { (a) } } } }
                tr { th { "trigger" } td { (r.trigger) " on " (r.machine) } }
                tr { th { "started" } td { (when(r.started)) } }
                @if let Some(e) = r.ended { tr { th { @if status == "paused" { "paused after" } @else { "took" } } td { (took(e - r.started)) } } }
                tr { th { "cost" } td { (money(r.cost)) } }
                @if let Some(e) = &r.error { tr { th { "error" } td.error { pre { (e) } } } }
            }
            @if let Some(q) = &r.question {
                div.question {
                    p { b { "It asks: " } (q) }
                    form.inline method="post" action={ "/runs/" (r.id) "/approve" } {
                        input type="text" name="text" placeholder="answer (optional)" aria-label="answer";
                        button type="submit" class="approve" { "Approve" }
                    }
                    form.inline method="post" action={ "/runs/" (r.id) "/deny" } {
                        input type="text" name="text" placeholder="reason (optional)" aria-label="reason";
                        button type="submit" class="deny" { "Deny" }
                    }
                }
            }
            @if r.answered { p.muted { "answered: it goes on when resumed (the daemon resumes its scheduled runs)" } }
            div.actions {
                @if matches!(status, "interrupted" | "failed") || r.answered { (post_button(&format!("/runs/{}/resume", r.id), "Resume", "resume")) }
                @if matches!(status, "running" | "paused" | "interrupted" | "failed") { (post_button(&format!("/runs/{}/cancel", r.id), "Cancel", "cancel")) }
            }
        }
        section #steps data-refresh {
            h3 { "Steps" }
            (steps_table(&p.steps))
        }
        section #output {
            h3 { "Output" }
            pre #log data-run=(r.id) data-from=(from) data-status=(status) { (shown) }
        }
    }
}

fn steps_table(steps: &[StepData]) -> Markup {
    let longest = steps.iter().map(|s| s.duration).fold(0.0, f64::max);
    html! {
        @if steps.is_empty() { p.muted { "no steps journaled" } }
        @else {
            div.scroll {
                table.steps {
                    thead { tr { th { "Pos" } th { "Kind" } th { "Label" } th { "Took" } th.barcol {} th.num { "Cost" } th { "Outcome" } } }
                    tbody {
                        @for s in steps {
                            tr {
                                td { code { (s.pos) } }
                                td { (s.kind) }
                                td { (s.label) }
                                td.num { (took(s.duration)) }
                                td.barcol { div.bar style={ "width:" (format!("{:.1}", if longest > 0.0 { (s.duration / longest * 100.0).max(1.0) } else { 1.0 })) "%" } {} }
                                td.num { @if let Some(c) = s.cost { (money(c)) } }
                                td { (badge(&s.outcome)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------ jobs

pub async fn job(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let j = match data::job(&app, id).await {
        Ok(j) => j,
        Err(f) => return failure(f),
    };
    page(
        &format!("job {}", j.id),
        html! {
            section #head data-refresh {
                h2 { "Job " code { (j.id) } " " (badge(j.state)) }
                table.kv {
                    tr { th { "host" } td { (j.host) } }
                    @if let Some(t) = &j.title { tr { th { "title" } td { (t) } } }
                    tr { th { "command" } td { code { (j.command) } } }
                    @if let Some(c) = &j.cwd { tr { th { "folder" } td { code { (c) } } } }
                    tr { th { "started" } td { (when(j.started_at as f64)) } }
                    @if let Some(c) = j.code { tr { th { "exit code" } td { (c) } } }
                    @if let Some(a) = &j.attach { tr { th { "attach" } td { code.copy { (a) } } } }
                }
            }
            section #output {
                h3 { "Log (last 50 lines, live)" }
                pre #tail data-job=(j.id) { "…" }
            }
        },
    )
}

// ----------------------------------------------------------------------------------------------- spend

#[derive(serde::Deserialize)]
pub struct SpendQuery {
    period: Option<String>,
    by: Option<String>,
}

fn spend_filter(q: &SpendQuery) -> Result<(Period, GroupBy), Failure> {
    let period = Period::parse(q.period.as_deref().unwrap_or("month"));
    let by = GroupBy::parse(q.by.as_deref().unwrap_or("tier"));
    period.zip(by).ok_or_else(|| {
        Failure(
            StatusCode::BAD_REQUEST,
            "period must be day, month or all and by tier, model, task or script".into(),
        )
    })
}

pub async fn spend(State(app): State<Arc<App>>, Query(q): Query<SpendQuery>) -> Response {
    let (period, by) = match spend_filter(&q) {
        Ok(f) => f,
        Err(f) => return failure(f),
    };
    let r = match data::spend(&app, period, by).await {
        Ok(r) => r,
        Err(f) => return failure(f),
    };
    let most = r.rows.iter().map(|x| x.cost).fold(0.0, f64::max);
    page(
        "spend",
        html! {
            section #spend data-refresh {
                h2 { "Spend" }
                (spend_summary(&r))
                p.filters {
                    @for p in ["day", "month", "all"] {
                        a href={ "/spend?period=" (p) "&by=" (r.by) } class=[(r.period == p).then_some("on")] { (p) } " "
                    }
                    " · by "
                    @for b in ["tier", "model", "task", "script"] {
                        a href={ "/spend?period=" (r.period) "&by=" (b) } class=[(r.by == b).then_some("on")] { (b) } " "
                    }
                }
                @if r.rows.is_empty() { p.muted { "nothing spent in this period" } }
                @else {
                    div.scroll {
                        table.steps {
                            thead { tr { th { (r.by) } th.num { "Calls" } th.num { "Tokens in" } th.num { "Tokens out" } th.num { "Cost" } th.barcol {} } }
                            tbody {
                                @for row in &r.rows {
                                    tr {
                                        td { (row.key) }
                                        td.num { (row.calls) }
                                        td.num { (row.tokens_in) }
                                        td.num { (row.tokens_out) }
                                        td.num { (money(row.cost)) }
                                        td.barcol { div.bar style={ "width:" (format!("{:.1}", if most > 0.0 { row.cost / most * 100.0 } else { 0.0 })) "%" } {} }
                                    }
                                }
                            }
                        }
                    }
                }
                (chart(&r))
            }
        },
    )
}

// ------------------------------------------------------------------------------------------------- api

/// An `/api/` answer: the data as JSON, or `{"error": …}` with its status.
fn api<T: serde::Serialize>(data: Result<T, Failure>) -> Response {
    match data {
        Ok(d) => Json(d).into_response(),
        Err(f) => api_failure(f),
    }
}

pub async fn api_fleet(State(app): State<Arc<App>>) -> Response {
    Json(data::fleet(&app)).into_response()
}

pub async fn api_schedule(State(app): State<Arc<App>>) -> Response {
    api(data::schedule(&app).await)
}

pub async fn api_runs(State(app): State<Arc<App>>, Query(q): Query<RunsQuery>) -> Response {
    match runs_filter(&q) {
        Ok((status, limit)) => api(data::runs(&app, status, limit).await),
        Err(f) => api_failure(f),
    }
}

pub async fn api_run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    api(data::run(&app, id).await)
}

pub async fn api_jobs(State(app): State<Arc<App>>) -> Response {
    api(data::jobs(&app).await)
}

pub async fn api_spend(State(app): State<Arc<App>>, Query(q): Query<SpendQuery>) -> Response {
    match spend_filter(&q) {
        Ok((period, by)) => api(data::spend(&app, period, by).await),
        Err(f) => api_failure(f),
    }
}

//! Notifications: one message sent concurrently to every configured channel (fleet `notify`), each with a
//! timeout. A failing channel is reported in the result (and logged by the callers), it does not stop the
//! others.
//!
//! - `ntfy`: `POST <url>/<topic>`, the body is the message; `Title`, `Priority`, `Tags`, `Click` headers
//!   (non-ASCII text as RFC 2047 encoded words, which ntfy decodes); a bearer token from `token_env`.
//! - `webhook`: `POST <url>` with a JSON body `{title, body, priority, tags, click}` and the fleet's headers.
//! - `desktop`: `notify-send` on Linux, `osascript` on macOS.
//! - `command`: the fleet's argv, then `--`, then the title and the body as its two last arguments (the
//!   `--` ends options, so a title starting with `-` is never read as one), and
//!   `BATON_NOTIFY_TITLE`, `BATON_NOTIFY_BODY`, `BATON_NOTIFY_PRIORITY`, `BATON_NOTIFY_TAGS`,
//!   `BATON_NOTIFY_CLICK` in its environment.
//!
//! Tokens and webhook header values are secrets: they appear in no error, log line or record.
use std::time::Duration;

use futures_util::future::join_all;

use crate::core::fleet::{Fleet, NotifyConf};
use crate::core::process::{self, Cmd, Spec};
use crate::core::secret::Secret;

/// Time each channel gets unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the error text kept from a server's answer.
const ANSWER_MAX: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "no notification channel is configured (add `notify = {{ntfy = …, desktop = true, …}}` to the fleet)"
    )]
    NoChannel,
    /// `check = true` and some channels failed: `ntfy: …; webhook: …`.
    #[error("{0}")]
    Failed(String),
}

/// ntfy's five priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Min = 1,
    Low = 2,
    Default = 3,
    High = 4,
    Urgent = 5,
}

impl Priority {
    /// `"min" | "low" | "default" | "high" | "urgent"` or `1`–`5`.
    pub fn parse(text: &str) -> Result<Priority, NotifyError> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "min" | "1" => Priority::Min,
            "low" | "2" => Priority::Low,
            "default" | "3" => Priority::Default,
            "high" | "4" => Priority::High,
            "urgent" | "max" | "5" => Priority::Urgent,
            _ => {
                return Err(NotifyError::Invalid(format!(
                    "priority: expected min, low, default, high, urgent or 1-5, got {text:?}"
                )));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Priority::Min => "min",
            Priority::Low => "low",
            Priority::Default => "default",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub body: String,
    pub priority: Option<Priority>,
    pub tags: Vec<String>,
    /// A URL opened when the notification is clicked.
    pub click: Option<String>,
}

/// What happened on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: Channel,
    /// `None` when delivered.
    pub error: Option<String>,
}

/// A kind of channel of the fleet's `notify` table. Every `match` on it is exhaustive, so a new channel
/// that one of them forgets does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Ntfy,
    Webhook,
    Desktop,
    Command,
}

impl Channel {
    /// Every channel, in the order they are listed and sent.
    pub const ALL: [Channel; 4] = [
        Channel::Ntfy,
        Channel::Webhook,
        Channel::Desktop,
        Channel::Command,
    ];

    /// The name a script gives in `to` and reads in a delivery's `channel`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Ntfy => "ntfy",
            Channel::Webhook => "webhook",
            Channel::Desktop => "desktop",
            Channel::Command => "command",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The channels of a fleet's `notify` table.
#[derive(Clone)]
pub struct Notifier {
    conf: NotifyConf,
    client: reqwest::Client,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.channels())
            .finish()
    }
}

impl Notifier {
    pub fn new(conf: NotifyConf) -> Notifier {
        let client = crate::core::http::builder(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Notifier { conf, client }
    }

    /// The fleet's notifier (no channels when the fleet has no `notify`).
    pub fn from_fleet(fleet: &Fleet) -> Notifier {
        Notifier::new(fleet.notify.clone().unwrap_or_default())
    }

    /// The configured channels.
    pub fn channels(&self) -> Vec<Channel> {
        let c = &self.conf;
        Channel::ALL
            .into_iter()
            .filter(|channel| match channel {
                Channel::Ntfy => c.ntfy.is_some(),
                Channel::Webhook => c.webhook.is_some(),
                Channel::Desktop => c.desktop,
                Channel::Command => !c.command.is_empty(),
            })
            .collect()
    }

    /// Sends `msg` to every configured channel (or only those in `to`) at once, each within `timeout`.
    /// Fails only on misuse (a channel in `to` that is unknown or not configured).
    pub async fn send(
        &self,
        msg: &Message,
        to: Option<&[String]>,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, NotifyError> {
        let configured = self.channels();
        let chosen: Vec<Channel> = match to {
            None => configured.clone(),
            Some(names) => {
                let mut chosen = Vec::new();
                for n in names {
                    let Some(known) = Channel::ALL.into_iter().find(|c| c.name() == n) else {
                        return Err(NotifyError::Invalid(format!(
                            "to: unknown channel {n:?}{}",
                            crate::core::wording::suggest(n, Channel::ALL.map(Channel::name))
                        )));
                    };
                    if !configured.contains(&known) {
                        return Err(NotifyError::Invalid(format!(
                            "to: channel {n:?} is not configured in the fleet's `notify` (configured: {})",
                            if configured.is_empty() {
                                "none".to_string()
                            } else {
                                configured
                                    .iter()
                                    .map(|c| c.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        )));
                    }
                    if !chosen.contains(&known) {
                        chosen.push(known);
                    }
                }
                chosen
            }
        };
        let sends = chosen.into_iter().map(|channel| async move {
            let work = self.send_one(channel, msg, timeout);
            let error = match tokio::time::timeout(timeout, work).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(format!(
                    "timed out after {}",
                    crate::core::duration::format(timeout)
                )),
            };
            if let Some(e) = &error {
                tracing::warn!("notify: {channel} failed: {e}");
            }
            Delivery { channel, error }
        });
        Ok(join_all(sends).await)
    }

    async fn send_one(
        &self,
        channel: Channel,
        msg: &Message,
        timeout: Duration,
    ) -> Result<(), String> {
        match channel {
            Channel::Ntfy => self.ntfy(msg, timeout).await,
            Channel::Webhook => self.webhook(msg, timeout).await,
            Channel::Desktop => desktop(msg, timeout).await,
            Channel::Command => self.command(msg, timeout).await,
        }
    }

    async fn ntfy(&self, msg: &Message, timeout: Duration) -> Result<(), String> {
        let Some(n) = &self.conf.ntfy else {
            return Err("not configured".into());
        };
        let url = format!("{}/{}", n.url.trim_end_matches('/'), n.topic);
        let token = match &n.token_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => return Err(format!("token_env: ${var} is not set")),
            },
            None => None,
        };
        let mut req = self
            .client
            .post(&url)
            .timeout(timeout)
            .header("Title", header_text(&msg.title)?)
            .body(msg.body.clone());
        if let Some(p) = msg.priority {
            req = req.header("Priority", (p as u8).to_string());
        }
        if !msg.tags.is_empty() {
            req = req.header("Tags", header_text(&msg.tags.join(","))?);
        }
        if let Some(click) = &msg.click {
            req = req.header("Click", header_text(click)?);
        }
        if let Some(t) = &token {
            req = req.bearer_auth(t.expose());
        }
        post(req, &url, token.as_ref()).await
    }

    async fn webhook(&self, msg: &Message, timeout: Duration) -> Result<(), String> {
        let Some(w) = &self.conf.webhook else {
            return Err("not configured".into());
        };
        let body = serde_json::json!({
            "title": msg.title,
            "body": msg.body,
            "priority": msg.priority.map(Priority::name),
            "tags": msg.tags,
            "click": msg.click,
        });
        let mut req = self
            .client
            .post(&w.url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in &w.headers {
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| format!("header {k}: the value is not valid header text"))?;
            req = req.header(k.as_str(), value);
        }
        // Header values may be tokens: scrub each from whatever the server answers.
        let secrets: Vec<Secret> = w.headers.values().map(Secret::new).collect();
        let res = post(req, &w.url, None).await;
        res.map_err(|e| secrets.iter().fold(e, |e, s| s.scrub(&e)))
    }

    async fn command(&self, msg: &Message, timeout: Duration) -> Result<(), String> {
        let mut argv = self.conf.command.clone();
        argv.push("--".into());
        argv.push(msg.title.clone());
        argv.push(msg.body.clone());
        let spec = Spec {
            env: vec![
                ("BATON_NOTIFY_TITLE".into(), msg.title.clone()),
                ("BATON_NOTIFY_BODY".into(), msg.body.clone()),
                (
                    "BATON_NOTIFY_PRIORITY".into(),
                    msg.priority.unwrap_or(Priority::Default).name().into(),
                ),
                ("BATON_NOTIFY_TAGS".into(), msg.tags.join(",")),
                (
                    "BATON_NOTIFY_CLICK".into(),
                    msg.click.clone().unwrap_or_default(),
                ),
            ],
            timeout: Some(timeout),
            ..Spec::default()
        };
        run_program(argv, &spec).await
    }
}

/// A program's run as a channel result: `exit 1: <stderr tail>` on failure.
async fn run_program(argv: Vec<String>, spec: &Spec) -> Result<(), String> {
    let program = argv.first().cloned().unwrap_or_default();
    let out = process::run(&Cmd::Argv(argv), spec, None)
        .await
        .map_err(|e| e.to_string())?;
    if out.ok() {
        Ok(())
    } else {
        Err(format!("{program}: {}", out.failure_summary()))
    }
}

async fn desktop(msg: &Message, timeout: Duration) -> Result<(), String> {
    let spec = Spec {
        timeout: Some(timeout),
        ..Spec::default()
    };
    run_program(desktop_argv(msg, cfg!(target_os = "macos")), &spec).await
}

/// `notify-send -a baton -u <urgency> -- title body`, or on macOS an `osascript` that takes the title and
/// body as arguments (no quoting of user text into AppleScript).
pub fn desktop_argv(msg: &Message, macos: bool) -> Vec<String> {
    if macos {
        return [
            "osascript",
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
            "--",
            &msg.title,
            &msg.body,
        ]
        .map(String::from)
        .to_vec();
    }
    let urgency = match msg.priority {
        Some(Priority::Min | Priority::Low) => "low",
        Some(Priority::Urgent) => "critical",
        _ => "normal",
    };
    [
        "notify-send",
        "-a",
        "baton",
        "-u",
        urgency,
        "--",
        &msg.title,
        &msg.body,
    ]
    .map(String::from)
    .to_vec()
}

/// Sends a prepared POST; a non-2xx answer is an error with its status and the start of its body.
async fn post(
    req: reqwest::RequestBuilder,
    url: &str,
    token: Option<&Secret>,
) -> Result<(), String> {
    let scrub = |t: String| token.map_or(t.clone(), |s| s.scrub(&t));
    let res = req
        .send()
        .await
        .map_err(|e| scrub(format!("POST {url}: {}", error_chain(&e))))?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    // Only the start of an error answer is kept; the rest is not read into memory.
    let mut res = res;
    let mut bytes = Vec::new();
    while bytes.len() < 4 * ANSWER_MAX {
        match res.chunk().await {
            Ok(Some(c)) => bytes.extend_from_slice(&c),
            _ => break,
        }
    }
    bytes.truncate(4 * ANSWER_MAX);
    let mut text = String::from_utf8_lossy(&bytes).trim().to_string();
    if text.len() > ANSWER_MAX {
        let mut cut = ANSWER_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    Err(scrub(format!(
        "POST {url}: HTTP {}: {text}",
        status.as_u16()
    )))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// Header text: printable ASCII as is, anything else as one RFC 2047 `Q` encoded word.
pub fn header_text(text: &str) -> Result<reqwest::header::HeaderValue, String> {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b)) && !text.contains("=?");
    let value = if plain {
        text.to_string()
    } else {
        let mut out = String::from("=?UTF-8?Q?");
        for b in text.bytes() {
            match b {
                b'a'..=b'z'
                | b'A'..=b'Z'
                | b'0'..=b'9'
                | b'.'
                | b'-'
                | b'!'
                | b'*'
                | b'+'
                | b'/' => out.push(b as char),
                b' ' => out.push('_'),
                _ => out.push_str(&format!("={b:02X}")),
            }
        }
        out.push_str("?=");
        out
    };
    reqwest::header::HeaderValue::from_str(&value).map_err(|e| format!("header text: {e}"))
}

/// The failures of `deliveries` as one line (`ntfy: …; webhook: …`), `None` when all were delivered.
pub fn failures(deliveries: &[Delivery]) -> Option<String> {
    let failed: Vec<String> = deliveries
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.channel)))
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// When a scheduled job notifies (`schedule.cron(…, {notify = …})`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    #[default]
    Failure,
    Always,
    Never,
}

impl When {
    pub fn name(self) -> &'static str {
        match self {
            When::Failure => "failure",
            When::Always => "always",
            When::Never => "never",
        }
    }

    pub fn wants(self, ok: bool) -> bool {
        match self {
            When::Always => true,
            When::Failure => !ok,
            When::Never => false,
        }
    }
}

/// Lines of a log tail kept in a notification.
pub const TAIL_LINES: usize = 10;
/// Bound on each tail line in a notification.
const TAIL_LINE_MAX: usize = 200;

/// The message for something that ended: `what` (`job nightly` / `job 2026…-a3f9 on gpu`), its outcome,
/// how long it took and the last lines of its log.
pub fn ended_message(
    what: &str,
    outcome: &str,
    ok: bool,
    took: Duration,
    tail: &[String],
) -> Message {
    // Milliseconds under a second, tenths of a second from there on (every run shorter than 100 ms used
    // to read "after 0ms").
    let ms = took.as_millis() as u64;
    let mut body = match ms {
        0 => format!("{outcome} after less than 1ms"),
        1..1000 => format!("{outcome} after {ms}ms"),
        _ => format!(
            "{outcome} after {}",
            crate::core::duration::format(Duration::from_millis(ms / 100 * 100))
        ),
    };
    let start = tail.len().saturating_sub(TAIL_LINES);
    if start < tail.len() {
        body.push_str("\n\n");
        for line in &tail[start..] {
            let mut l = line.clone();
            if l.len() > TAIL_LINE_MAX {
                let mut cut = TAIL_LINE_MAX;
                while !l.is_char_boundary(cut) {
                    cut -= 1;
                }
                l.truncate(cut);
                l.push('…');
            }
            body.push_str(&l);
            body.push('\n');
        }
    }
    Message {
        title: format!("baton: {what} {}", if ok { "succeeded" } else { "failed" }),
        body: body.trim_end().to_string(),
        priority: Some(if ok {
            Priority::Default
        } else {
            Priority::High
        }),
        tags: vec![if ok { "white_check_mark" } else { "x" }.to_string()],
        click: None,
    }
}

/// The last `n` non-empty lines of a local file (read from its end, at most 64 KiB).
pub fn file_tail(path: &std::path::Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse() {
        assert_eq!(Priority::parse("high").unwrap(), Priority::High);
        assert_eq!(Priority::parse("5").unwrap(), Priority::Urgent);
        assert!(
            Priority::parse("loud")
                .unwrap_err()
                .to_string()
                .contains("expected min, low")
        );
    }

    #[test]
    fn non_ascii_headers_are_encoded_words() {
        assert_eq!(header_text("Build ok").unwrap(), "Build ok");
        assert_eq!(
            header_text("Fertig ✓").unwrap(),
            "=?UTF-8?Q?Fertig_=E2=9C=93?="
        );
        assert_eq!(header_text("a\nb").unwrap(), "=?UTF-8?Q?a=0Ab?=");
    }

    #[test]
    fn desktop_commands() {
        let m = Message {
            title: "T".into(),
            body: "B \"x\"".into(),
            priority: Some(Priority::Urgent),
            ..Message::default()
        };
        assert_eq!(
            desktop_argv(&m, false),
            [
                "notify-send",
                "-a",
                "baton",
                "-u",
                "critical",
                "--",
                "T",
                "B \"x\""
            ]
        );
        let mac = desktop_argv(&m, true);
        assert_eq!(mac[0], "osascript");
        assert_eq!(&mac[7..], ["--", "T", "B \"x\""]);
    }

    #[test]
    fn ended_messages_carry_outcome_duration_and_tail() {
        let tail: Vec<String> = (1..=12).map(|i| format!("line {i}")).collect();
        let m = ended_message(
            "job nightly",
            "exit 3",
            false,
            Duration::from_millis(65_400),
            &tail,
        );
        assert_eq!(m.title, "baton: job nightly failed");
        assert!(
            m.body.starts_with("exit 3 after 1m5s\n\nline 3\n"),
            "{}",
            m.body
        );
        assert!(m.body.ends_with("line 12"), "{}", m.body);
        let quick = |ms| ended_message("job j", "boom", false, Duration::from_millis(ms), &[]).body;
        assert_eq!(quick(0), "boom after less than 1ms");
        assert_eq!(quick(12), "boom after 12ms");
        assert_eq!(quick(1_250), "boom after 1.2s");
        assert_eq!(m.priority, Some(Priority::High));
        assert!(When::Failure.wants(false) && !When::Failure.wants(true));
        assert!(When::Always.wants(true) && !When::Never.wants(false));
    }

    #[test]
    fn unknown_or_unconfigured_channels_are_misuse() {
        let n = Notifier::new(NotifyConf {
            desktop: true,
            ..NotifyConf::default()
        });
        assert_eq!(n.channels(), [Channel::Desktop]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let m = Message::default();
        let e = rt
            .block_on(n.send(&m, Some(&["ntfyy".into()]), DEFAULT_TIMEOUT))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "to: unknown channel \"ntfyy\", did you mean ntfy?"
        );
        let e = rt
            .block_on(n.send(&m, Some(&["webhook".into()]), DEFAULT_TIMEOUT))
            .unwrap_err();
        assert!(e.to_string().contains("(configured: desktop)"), "{e}");
    }
}

//! `notify = {ntfy, desktop, webhook, command}`: where `baton.notify` and finished jobs send their news.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Fleet, FleetError, list_or_empty, map_or_empty};

/// Top-level `notify = {ntfy, desktop, webhook, command}` (any subset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntfy: Option<Ntfy>,
    /// `notify-send` on Linux, `osascript` on macOS.
    #[serde(default)]
    pub desktop: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// A program run with the title and body (argv; see `baton.notify`).
    #[serde(
        default,
        deserialize_with = "list_or_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    /// How often `baton daemon` looks at running `ssh.spawn(…, {notify = true})` jobs (default: 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_poll: Option<crate::core::duration::Dur>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ntfy {
    /// The ntfy server (default: https://ntfy.sh).
    #[serde(default = "default_ntfy_url")]
    pub url: String,
    pub topic: String,
    /// The variable holding an access token (sent as `Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

fn default_ntfy_url() -> String {
    "https://ntfy.sh".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// Sent with every post; values are secrets (shown as `***`).
    #[serde(
        default,
        deserialize_with = "map_or_empty",
        serialize_with = "hidden_values",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, String>,
}

/// Header values may hold tokens: written back as `***`.
fn hidden_values<S: serde::Serializer>(
    m: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for k in m.keys() {
        map.serialize_entry(k, "***")?;
    }
    map.end()
}

impl Fleet {
    /// The top-level `notify` table.
    pub(super) fn validate_notify(&self) -> Result<(), FleetError> {
        let Some(n) = &self.notify else {
            return Ok(());
        };
        let http = |path: &str, url: &str| {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(())
            } else {
                Err(FleetError(format!(
                    "{path}: expected an http:// or https:// URL, got {url:?}"
                )))
            }
        };
        if let Some(ntfy) = &n.ntfy {
            http("notify.ntfy.url", &ntfy.url)?;
            let t = &ntfy.topic;
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(FleetError(format!(
                    "notify.ntfy.topic: expected letters, digits, '-' or '_', got {t:?}"
                )));
            }
        }
        if let Some(w) = &n.webhook {
            http("notify.webhook.url", &w.url)?;
            for k in w.headers.keys() {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    return Err(FleetError(format!(
                        "notify.webhook.headers: {k:?} is not a valid header name"
                    )));
                }
            }
        }
        if n.command.first().is_some_and(|p| p.is_empty()) {
            return Err(FleetError(
                "notify.command: expected a program and its arguments, got an empty program".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::core::fleet::tests::parse;
    use serde_json::json;

    #[test]
    fn notify_settings_parse_and_hide_header_values() {
        let f = parse(json!({
            "notify": {"ntfy": {"topic": "t-1"}, "webhook": {"url": "https://h.example/x", "headers": {"Authorization": "Bearer s3cret"}},
                       "desktop": true, "command": ["notify-me", "--loud"], "job_poll": "5s"}
        }))
        .unwrap();
        let n = f.notify.as_ref().unwrap();
        assert_eq!(n.ntfy.as_ref().unwrap().url, "https://ntfy.sh");
        assert_eq!(n.command, ["notify-me", "--loud"]);
        let raw = serde_json::to_string(&f).unwrap();
        assert!(
            !raw.contains("s3cret") && raw.contains("\"Authorization\":\"***\""),
            "{raw}"
        );
        let e = parse(json!({"notify": {"webhook": {"url": "http://x", "headers": {"a b": "v"}}}}))
            .unwrap_err();
        assert_eq!(
            e.0,
            "notify.webhook.headers: \"a b\" is not a valid header name"
        );
    }
}

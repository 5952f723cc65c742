//! `mcp = {NAME = {…}}`: the MCP servers `mcp.connect(NAME)` reaches.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Fleet, FleetError, list_or_empty, map_or_empty};
use crate::core::wording::suggest;

/// An MCP server of the fleet file: a command (on this machine, or on a fleet `host` through its ssh
/// master) speaking MCP on its stdin/stdout, or a Streamable HTTP `url`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    #[serde(
        default,
        deserialize_with = "list_or_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    #[serde(
        default,
        deserialize_with = "map_or_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sent with every request (`Authorization = "Bearer …"`); never shown by `baton fleet`.
    #[serde(default, deserialize_with = "map_or_empty", skip_serializing)]
    pub headers: BTreeMap<String, String>,
}

pub(super) fn validate_mcp(fleet: &Fleet) -> Result<(), FleetError> {
    for (name, s) in &fleet.mcp {
        s.check(&format!("mcp.{name}"), fleet)?;
    }
    Ok(())
}

impl McpServer {
    /// Either `{command, env?, cwd?, host?}` or `{url, headers?}`; a host must be in the fleet. `path` names
    /// the value in messages (`mcp.git`).
    pub fn check(&self, path: &str, fleet: &Fleet) -> Result<(), FleetError> {
        let err = |path: String, msg: String| Err(FleetError(format!("{path}: {msg}")));
        let s = self;
        let path = path.to_string();
        match (&s.url, s.command.is_empty()) {
            (None, true) => {
                return err(
                    path,
                    "expected `command = {argv…}` (a stdio server) or `url = \"http…\"`".into(),
                );
            }
            (Some(_), false) => {
                return err(path, "has both `command` and `url`; give one".into());
            }
            (Some(url), true) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return err(
                        format!("{path}.url"),
                        format!("expected an http:// or https:// URL, got {url:?}"),
                    );
                }
                for key in [
                    ("env", s.env.is_empty()),
                    ("cwd", s.cwd.is_none()),
                    ("host", s.host.is_none()),
                ] {
                    if !key.1 {
                        return err(
                            format!("{path}.{}", key.0),
                            "only a `command` server takes this (a `url` server takes `headers`)"
                                .into(),
                        );
                    }
                }
            }
            (None, false) => {
                if !s.headers.is_empty() {
                    return err(
                        format!("{path}.headers"),
                        "only a `url` server takes headers".into(),
                    );
                }
                if let Some(host) = &s.host
                    && host != "local"
                    && !fleet.hosts.contains_key(host)
                {
                    return err(
                        format!("{path}.host"),
                        format!(
                            "unknown host {host:?}{}",
                            suggest(host, fleet.hosts.keys().map(String::as_str))
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::core::fleet::tests::parse;
    use serde_json::json;

    #[test]
    fn mcp_servers_are_validated() {
        let ok = parse(json!({"hosts": {"brain": {}}, "mcp": {
            "git": {"command": ["uvx", "mcp-server-git"], "env": {"A": "1"}, "cwd": "/tmp", "host": "brain"},
            "web": {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "Bearer x"}}
        }}))
        .unwrap();
        assert_eq!(ok.mcp["git"].command, ["uvx", "mcp-server-git"]);
        assert_eq!(ok.mcp["web"].headers["Authorization"], "Bearer x");
        let e = parse(json!({"mcp": {"git": {"comand": ["x"]}}})).unwrap_err();
        assert_eq!(e.0, "mcp.git.comand: unknown key, did you mean command?");
        let e = parse(json!({"mcp": {"git": {"command": "x y"}}})).unwrap_err();
        assert!(e.0.starts_with("mcp.git.command:"), "{}", e.0);
        let e = parse(json!({"mcp": {"git": {}}})).unwrap_err();
        assert!(e.0.starts_with("mcp.git: expected `command"), "{}", e.0);
        let e = parse(json!({"mcp": {"git": {"command": ["x"], "url": "http://a"}}})).unwrap_err();
        assert_eq!(e.0, "mcp.git: has both `command` and `url`; give one");
        let e = parse(
            json!({"hosts": {"brain": {}}, "mcp": {"git": {"command": ["x"], "host": "brian"}}}),
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "mcp.git.host: unknown host \"brian\", did you mean brain?"
        );
        let e = parse(json!({"mcp": {"w": {"url": "ftp://x"}}})).unwrap_err();
        assert!(e.0.starts_with("mcp.w.url: expected an http"), "{}", e.0);
        let e = parse(json!({"mcp": {"w": {"url": "http://x", "host": "a"}}})).unwrap_err();
        assert!(
            e.0.starts_with("mcp.w.host: only a `command` server"),
            "{}",
            e.0
        );
        let e =
            parse(json!({"mcp": {"g": {"command": ["x"], "headers": {"A": "b"}}}})).unwrap_err();
        assert_eq!(e.0, "mcp.g.headers: only a `url` server takes headers");
    }
}

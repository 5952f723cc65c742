//! The fleet: hosts, LLM tiers, task→tier rules, OpenRouter settings and the budget.
//!
//! Rust owns the schema (these serde structs); Lua owns the values (the fleet file returns a table). Parsing
//! is generic over any serde `Deserializer`, so the Lua side hands its table in without this module knowing
//! about Lua. Errors name the path of the bad value: `hosts.engine.olama: unknown key, did you mean ollama?`.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schema::{describe, suggest};

pub const DEFAULT_OLLAMA: &str = "http://127.0.0.1:11434";
pub const DEFAULT_OPENROUTER_BASE: &str = "https://openrouter.ai/api/v1";
pub const DEFAULT_KEY_ENV: &str = "OPENROUTER_API_KEY";
pub const DEFAULT_OLLAMA_PARALLEL: u32 = 4;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// OpenSSH config file handed to every ssh connection (`-F`), unless a host overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
    #[serde(default)]
    pub hosts: BTreeMap<String, Host>,
    /// Ordered, lowest (cheapest) first. Absent: the default tiers.
    #[serde(default)]
    pub tiers: Option<Vec<Tier>>,
    /// Task kind → tier. Absent: the default task table.
    #[serde(default)]
    pub tasks: Option<BTreeMap<String, TaskRule>>,
    #[serde(default)]
    pub openrouter: OpenRouter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Notification channels for `baton.notify`, scheduled jobs and detached jobs (issue 19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyConf>,
    /// Limits of every Lua state and scheduled job: `limits = {memory = "1GiB", job_timeout = "1h"}`.
    #[serde(default)]
    pub limits: Limits,
    /// MCP servers by name, for `mcp.connect(NAME)`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp: BTreeMap<String, McpServer>,
    /// Where the fleet came from; `None` for the built-in default.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// OpenSSH destination; `false` runs commands on this machine. Default: the host's name.
    #[serde(default)]
    pub ssh: SshTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
    #[serde(default)]
    pub known_hosts: KnownHosts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(
        default,
        deserialize_with = "list_or_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ollama: Option<String>,
    #[serde(default = "default_parallel")]
    pub ollama_parallel: u32,
    /// Wake-on-LAN: the host's MAC address (`aa:bb:cc:dd:ee:ff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Wake-on-LAN: where the magic packet goes and which host sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<Wake>,
    /// The host's Syncthing REST API (default: read from its config.xml over ssh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syncthing: Option<SyncthingConf>,
}

/// `hosts.X.wake = {broadcast, port, via}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wake {
    /// IPv4 broadcast address (default: 255.255.255.255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<String>,
    /// UDP port (default: 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A fleet host that sends the packet (over ssh) instead of this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// `hosts.X.syncthing = {url, api_key_env}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncthingConf {
    /// The REST API as this machine reaches it (default: the GUI address in the host's config.xml, through
    /// an ssh port forward when it listens on loopback there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The variable holding the API key (default: the key in the host's config.xml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

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

fn default_parallel() -> u32 {
    DEFAULT_OLLAMA_PARALLEL
}

/// `ssh = "dest"`, `ssh = false` (this machine) or absent / `true` (the host's own name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "a destination string, or false for this machine"
)]
pub enum SshTarget {
    #[default]
    #[serde(skip)]
    HostName,
    Flag(bool),
    Dest(String),
}

/// Written back as the file would say it: a destination, `false`, or `true` for "the host's name"
/// ([`Fleet::view`] shows the resolved name instead).
impl Serialize for SshTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SshTarget::HostName => s.serialize_bool(true),
            SshTarget::Flag(b) => s.serialize_bool(*b),
            SshTarget::Dest(d) => s.serialize_str(d),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KnownHosts {
    #[default]
    #[serde(rename = "strict")]
    Strict,
    #[serde(rename = "accept-new")]
    AcceptNew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Ollama,
    Openrouter,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Ollama => "ollama",
            Provider::Openrouter => "openrouter",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    pub provider: Provider,
    /// For `ollama` tiers: the fleet host whose Ollama serves it (default: the first host with `ollama`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The model, or the default when a task names no role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Role → model (e.g. `code`, `reason`), chosen by a task's `model`.
    #[serde(
        default,
        deserialize_with = "map_or_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub models: BTreeMap<String, String>,
    /// USD per million tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRule {
    pub tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRouter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub monthly_usd: f64,
    #[serde(default = "default_alert")]
    pub alert_at: f64,
}

fn default_alert() -> f64 {
    0.8
}

/// Lua has one table type: `{}` may arrive as an empty map where a list is expected, and vice versa.
fn list_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a list of strings")]
    enum ListOrMap {
        List(Vec<String>),
        Map(BTreeMap<String, String>),
    }
    match ListOrMap::deserialize(d)? {
        ListOrMap::List(v) => Ok(v),
        ListOrMap::Map(m) if m.is_empty() => Ok(Vec::new()),
        ListOrMap::Map(_) => Err(serde::de::Error::custom(
            "expected a list of strings, got a table with keys",
        )),
    }
}

fn map_or_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a table of role = model strings")]
    enum MapOrList {
        Map(BTreeMap<String, String>),
        List(Vec<String>),
    }
    match MapOrList::deserialize(d)? {
        MapOrList::Map(m) => Ok(m),
        MapOrList::List(v) if v.is_empty() => Ok(BTreeMap::new()),
        MapOrList::List(_) => Err(serde::de::Error::custom(
            "expected a table of role = model strings, got a list",
        )),
    }
}

/// A fleet that did not parse or validate; the message starts with the path of the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(pub String);

/// The task kinds baton knows, with their default tier and model role (DESIGN.md).
pub const DEFAULT_TASKS: &[(&str, &str, Option<&str>)] = &[
    ("code_generation", "local", Some("code")),
    ("test_generation", "local", Some("code")),
    ("lint", "local", Some("code")),
    ("commit_message", "local", Some("code")),
    ("refactor", "local", Some("code")),
    ("story_drafting", "local", Some("reason")),
    ("backlog_grooming", "local", Some("reason")),
    ("bug_hunting", "local", Some("reason")),
    ("exploration", "local", Some("reason")),
    ("elaboration", "local", Some("reason")),
    ("elaboration_escalated", "cheap", None),
    ("gap_analysis", "cheap", None),
    ("code_review", "cheap", None),
    ("decision_gate", "cheap", None),
    ("qa_verification", "cheap", None),
    ("architecture", "premium", None),
    ("conflict_resolution", "premium", None),
    ("novel", "premium", None),
];

impl Fleet {
    /// Parses and validates a fleet from any serde deserializer (a Lua table, JSON, …).
    pub fn from_deserializer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Fleet, FleetError> {
        let fleet: Fleet =
            serde_path_to_error::deserialize(d).map_err(|e| FleetError(describe(&e, "fleet")))?;
        fleet.validate()?;
        Ok(fleet)
    }

    /// The built-in fleet used when there is no fleet file: this machine as host `local`, Ollama at
    /// `$OLLAMA_HOST` or 127.0.0.1:11434, OpenRouter tiers when `$OPENROUTER_API_KEY` is set, the default
    /// task table, and a conservative budget of $10 a month.
    pub fn builtin() -> Fleet {
        let ollama = std::env::var("OLLAMA_HOST")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| normalize_ollama_url(&v))
            .unwrap_or_else(|| DEFAULT_OLLAMA.to_string());
        let mut hosts = BTreeMap::new();
        hosts.insert(
            "local".to_string(),
            Host {
                ssh: SshTarget::Flag(false),
                ssh_config: None,
                known_hosts: KnownHosts::Strict,
                role: Some("workstation".into()),
                tags: Vec::new(),
                ollama: Some(ollama),
                ollama_parallel: DEFAULT_OLLAMA_PARALLEL,
                mac: None,
                wake: None,
                syncthing: None,
            },
        );
        let mut fleet = Fleet {
            hosts,
            budget: Some(Budget {
                monthly_usd: 10.0,
                alert_at: 0.8,
            }),
            ..Fleet::default()
        };
        let with_cloud = std::env::var_os(DEFAULT_KEY_ENV).is_some_and(|v| !v.is_empty());
        let mut tiers = fleet.default_tiers();
        if !with_cloud {
            tiers.retain(|t| t.provider == Provider::Ollama);
        }
        fleet.tiers = Some(tiers);
        fleet
    }

    /// The default tiers for this fleet's hosts: `local` on the first host with Ollama (if any), then
    /// `cheap` and `premium` on OpenRouter.
    pub fn default_tiers(&self) -> Vec<Tier> {
        let mut tiers = Vec::new();
        if let Some((name, _)) = self.hosts.iter().find(|(_, h)| h.ollama.is_some()) {
            tiers.push(Tier {
                name: "local".into(),
                provider: Provider::Ollama,
                host: Some(name.clone()),
                model: Some("qwen2.5-coder:32b".into()),
                models: [("code", "qwen2.5-coder:32b"), ("reason", "deepseek-r1:32b")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                price: None,
            });
        }
        for (name, model, input, output) in [
            ("cheap", "anthropic/claude-sonnet-4.5", 3.0, 15.0),
            ("premium", "anthropic/claude-opus-4.6", 15.0, 75.0),
        ] {
            tiers.push(Tier {
                name: name.into(),
                provider: Provider::Openrouter,
                host: None,
                model: Some(model.into()),
                models: BTreeMap::new(),
                price: Some(Price { input, output }),
            });
        }
        tiers
    }

    /// The tiers in effect (the file's, else the defaults).
    pub fn tiers(&self) -> Vec<Tier> {
        self.tiers.clone().unwrap_or_else(|| self.default_tiers())
    }

    /// The task rules in effect: the file's, else the default table restricted to tiers that exist.
    pub fn tasks(&self) -> BTreeMap<String, TaskRule> {
        if let Some(tasks) = &self.tasks {
            return tasks.clone();
        }
        let tiers = self.tiers();
        DEFAULT_TASKS
            .iter()
            .filter(|(_, tier, _)| tiers.iter().any(|t| t.name == *tier))
            .map(|(kind, tier, model)| {
                (
                    kind.to_string(),
                    TaskRule {
                        tier: tier.to_string(),
                        model: model.map(str::to_string),
                    },
                )
            })
            .collect()
    }

    /// Task kinds of the default table whose tier this fleet does not define, each with that tier and why
    /// it is missing (`no $OPENROUTER_API_KEY` for the cloud tiers of the built-in fleet).
    pub fn tasks_without_tier(&self) -> BTreeMap<String, (String, String)> {
        if self.tasks.is_some() {
            return BTreeMap::new();
        }
        // The default table's kinds that `tasks` left out for want of their tier.
        let routed = self.tasks();
        let key_env = self.openrouter_key_env();
        let cloud = self
            .default_tiers()
            .into_iter()
            .filter(|t| t.provider == Provider::Openrouter)
            .map(|t| t.name)
            .collect::<Vec<_>>();
        DEFAULT_TASKS
            .iter()
            .filter(|(kind, _, _)| !routed.contains_key(*kind))
            .map(|(kind, tier, _)| {
                let why = if self.is_builtin() && cloud.iter().any(|c| c == tier) {
                    format!("no ${key_env}")
                } else {
                    "not among the fleet's tiers".to_string()
                };
                (kind.to_string(), (tier.to_string(), why))
            })
            .collect()
    }

    /// Whether this came from the built-in default rather than a file.
    pub fn is_builtin(&self) -> bool {
        self.source.is_none()
    }

    pub fn openrouter_base_url(&self) -> String {
        self.openrouter
            .base_url
            .clone()
            .or_else(|| {
                std::env::var("OPENROUTER_BASE_URL")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_OPENROUTER_BASE.to_string())
    }

    pub fn openrouter_key_env(&self) -> String {
        self.openrouter
            .key_env
            .clone()
            .unwrap_or_else(|| DEFAULT_KEY_ENV.to_string())
    }

    /// The Ollama URL of the first host (by name) that has one.
    pub fn first_ollama(&self) -> Option<(&str, &str)> {
        self.hosts
            .iter()
            .find_map(|(n, h)| h.ollama.as_deref().map(|u| (n.as_str(), u)))
    }

    fn validate(&self) -> Result<(), FleetError> {
        let err = |path: String, msg: &str| Err(FleetError(format!("{path}: {msg}")));
        for (name, host) in &self.hosts {
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':' || c == '/')
            {
                return err(
                    format!("hosts.{name}"),
                    "a host name must be non-empty, without spaces, ':' or '/'",
                );
            }
            if let SshTarget::Dest(d) = &host.ssh
                && d.trim().is_empty()
            {
                return err(
                    format!("hosts.{name}.ssh"),
                    "expected a destination string, or false, got \"\"",
                );
            }
            match &host.ssh {
                SshTarget::Dest(d) => {
                    if let Some(why) = destination_problem(d) {
                        return err(format!("hosts.{name}.ssh"), &why);
                    }
                }
                SshTarget::HostName | SshTarget::Flag(true) => {
                    if let Some(why) = destination_problem(name) {
                        return err(
                            format!("hosts.{}", crate::core::text::escape_line(name)),
                            &format!(
                                "the host name is its ssh destination (ssh = true), and {why}"
                            ),
                        );
                    }
                }
                SshTarget::Flag(false) => {}
            }
            if let Some(url) = &host.ollama
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return err(
                    format!("hosts.{name}.ollama"),
                    &format!("expected an http:// or https:// URL, got {url:?}"),
                );
            }
            if host.ollama_parallel == 0 {
                return err(
                    format!("hosts.{name}.ollama_parallel"),
                    "expected a whole number of at least 1, got 0",
                );
            }
            self.validate_wake_sync(name, host)?;
        }
        self.validate_notify()?;
        let tiers = self.tiers();
        let mut seen = Vec::new();
        for (i, tier) in tiers.iter().enumerate() {
            let path = format!("tiers[{}]", i + 1);
            if seen.contains(&tier.name.as_str()) {
                return err(
                    format!("{path}.name"),
                    &format!("tier {:?} is defined twice", tier.name),
                );
            }
            seen.push(&tier.name);
            match tier.provider {
                Provider::Ollama => {
                    let host = match &tier.host {
                        Some(h) => h.clone(),
                        None => match self.first_ollama() {
                            Some((h, _)) => h.to_string(),
                            None => {
                                return err(
                                    format!("{path}.host"),
                                    "an ollama tier needs a host, and no fleet host has `ollama`",
                                );
                            }
                        },
                    };
                    match self.hosts.get(&host) {
                        None => {
                            return err(
                                format!("{path}.host"),
                                &format!(
                                    "unknown host {host:?}{}",
                                    suggest(&host, self.hosts.keys().map(String::as_str))
                                ),
                            );
                        }
                        Some(h) if h.ollama.is_none() => {
                            return err(
                                format!("{path}.host"),
                                &format!("host {host:?} has no `ollama` URL"),
                            );
                        }
                        _ => {}
                    }
                }
                Provider::Openrouter => {
                    if tier.host.is_some() {
                        return err(format!("{path}.host"), "only ollama tiers take a host");
                    }
                }
            }
            if tier.model.is_none() && tier.models.is_empty() {
                return err(path, "a tier needs `model` or `models`");
            }
            if let Some(p) = tier.price
                && !(non_negative(p.input) && non_negative(p.output))
            {
                return err(
                    format!("{path}.price"),
                    "prices must be non-negative numbers (USD per million tokens)",
                );
            }
        }
        for (kind, rule) in self.tasks() {
            let Some(tier) = tiers.iter().find(|t| t.name == rule.tier) else {
                return err(
                    format!("tasks.{kind}.tier"),
                    &format!(
                        "unknown tier {:?}{}",
                        rule.tier,
                        suggest(&rule.tier, tiers.iter().map(|t| t.name.as_str()))
                    ),
                );
            };
            if let Some(role) = &rule.model
                && !tier.models.contains_key(role)
                && tier.model.as_deref() != Some(role.as_str())
            {
                return err(
                    format!("tasks.{kind}.model"),
                    &format!(
                        "tier {:?} has no model role {role:?}{}",
                        tier.name,
                        suggest(role, tier.models.keys().map(String::as_str))
                    ),
                );
            }
        }
        validate_mcp(self)?;
        if let Some(b) = self.budget {
            if !non_negative(b.monthly_usd) {
                return err(
                    "budget.monthly_usd".into(),
                    "expected a non-negative number of USD",
                );
            }
            if !(b.alert_at > 0.0 && b.alert_at <= 1.0) {
                return err(
                    "budget.alert_at".into(),
                    "expected a fraction of the budget in (0, 1], such as 0.8",
                );
            }
        }
        Ok(())
    }
}

impl Fleet {
    /// `hosts.X.mac`, `hosts.X.wake` and `hosts.X.syncthing`.
    fn validate_wake_sync(&self, name: &str, host: &Host) -> Result<(), FleetError> {
        let err = |key: &str, msg: String| Err(FleetError(format!("hosts.{name}.{key}: {msg}")));
        if let Some(mac) = &host.mac
            && let Err(e) = crate::core::remote::wake::parse_mac(mac)
        {
            return err("mac", e);
        }
        if let Some(wake) = &host.wake {
            if host.mac.is_none() {
                return err("wake", "needs `mac` (the address to wake)".into());
            }
            if let Some(b) = &wake.broadcast
                && b.parse::<std::net::Ipv4Addr>().is_err()
            {
                return err(
                    "wake.broadcast",
                    format!("expected an IPv4 address such as \"192.168.1.255\", got {b:?}"),
                );
            }
            if wake.port == Some(0) {
                return err("wake.port", "expected a UDP port (1-65535), got 0".into());
            }
            if let Some(via) = &wake.via {
                if !self.hosts.contains_key(via) {
                    return err(
                        "wake.via",
                        format!(
                            "unknown host {via:?}{}",
                            suggest(via, self.hosts.keys().map(String::as_str))
                        ),
                    );
                }
                if via == name {
                    return err(
                        "wake.via",
                        "a host cannot wake itself (name an always-on host)".into(),
                    );
                }
            }
        }
        if let Some(st) = &host.syncthing {
            if let Some(url) = &st.url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return err(
                    "syncthing.url",
                    format!("expected an http:// or https:// URL, got {url:?}"),
                );
            }
            if st.api_key_env.as_deref().is_some_and(str::is_empty) {
                return err(
                    "syncthing.api_key_env",
                    "expected the name of an environment variable, got \"\"".into(),
                );
            }
        }
        Ok(())
    }

    /// The top-level `notify` table.
    fn validate_notify(&self) -> Result<(), FleetError> {
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

/// `limits = {memory = "1GiB", job_timeout = "1h"}`: the memory limit of every Lua state (a playbook, the
/// REPL, each run of a scheduled job) and the timeout of a scheduled job that sets none. Absent: 1 GiB, 1 h.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_timeout: Option<crate::core::duration::Dur>,
}

/// A size: a number of bytes or a string such as `"512MiB"`, `"1GiB"`, `"64MB"`, `"4096"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Parses `"512MiB"`, `"1 GiB"`, `"64MB"`, `"10KiB"`, `"4096"` (bytes). At least 1 MiB, so a typo cannot
    /// leave a Lua state unable to start.
    pub fn parse(s: &str) -> Result<Bytes, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (t[..split].trim(), t[split..].trim());
        let expected = || format!("expected a size such as \"512MiB\" or \"1GiB\", got {s:?}");
        let n: f64 = num.parse().map_err(|_| expected())?;
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => return Err(expected()),
        };
        Bytes::from_f64(n * mult as f64).map_err(|e| format!("{e}, got {s:?}"))
    }

    fn from_f64(n: f64) -> Result<Bytes, String> {
        if !n.is_finite() || n < (1u64 << 20) as f64 || n > u64::MAX as f64 {
            return Err("expected a size of at least 1MiB".into());
        }
        Ok(Bytes(n as u64))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size (a number of bytes, or a string like \"512MiB\" or \"1GiB\")")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Bytes, E> {
                Bytes::from_f64(v).map_err(|e| E::custom(format!("{e}, got {v}")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bytes, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bytes, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
                Bytes::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A finite number at or above zero (NaN is not).
fn non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

/// `$XDG_CONFIG_HOME/baton`, else `~/.config/baton`: where the fleet file, `schedule.lua` and `lua/` live.
pub fn config_dir() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("baton"),
        None => crate::core::state::home_dir().join(".config/baton"),
    }
}

/// The fleet file to read: `--fleet`, else `$BATON_FLEET` (both must exist), else `fleet.lua` in the config
/// folder when it exists; `None` means the built-in default.
pub fn locate(cli: Option<&std::path::Path>) -> Result<Option<PathBuf>, FleetError> {
    let explicit = cli.map(|p| (p.to_path_buf(), "--fleet")).or_else(|| {
        std::env::var_os("BATON_FLEET")
            .filter(|v| !v.is_empty())
            .map(|p| (PathBuf::from(p), "$BATON_FLEET"))
    });
    if let Some((path, from)) = explicit {
        if !path.is_file() {
            return Err(FleetError(format!(
                "fleet file {} (from {from}) does not exist",
                path.display()
            )));
        }
        return Ok(Some(path));
    }
    let default = config_dir().join("fleet.lua");
    Ok(default.is_file().then_some(default))
}

/// What `baton fleet --json` prints and `baton.fleet` shows: the fleet with defaults applied.
#[derive(Debug, Serialize)]
pub struct View<'a> {
    pub source: Option<&'a std::path::Path>,
    /// With each `ssh` resolved: the destination, or `false` for this machine.
    pub hosts: BTreeMap<String, Host>,
    pub tiers: Vec<Tier>,
    pub tasks: BTreeMap<String, TaskRule>,
    pub budget: Option<Budget>,
    pub openrouter: ViewOpenRouter,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<&'a std::path::Path>,
}

/// OpenRouter settings without the key itself: only whether its variable is set.
#[derive(Debug, Serialize)]
pub struct ViewOpenRouter {
    pub base_url: String,
    pub key_env: String,
    pub key_set: bool,
}

impl Fleet {
    pub fn view(&self) -> View<'_> {
        let key_env = self.openrouter_key_env();
        let hosts = self
            .hosts
            .iter()
            .map(|(name, host)| {
                let mut host = host.clone();
                host.ssh = match self.ssh_dest(name) {
                    Some(dest) => SshTarget::Dest(dest.to_string()),
                    None => SshTarget::Flag(false),
                };
                (name.clone(), host)
            })
            .collect();
        View {
            source: self.source.as_deref(),
            hosts,
            tiers: self.tiers(),
            tasks: self.tasks(),
            budget: self.budget,
            openrouter: ViewOpenRouter {
                base_url: self.openrouter_base_url(),
                key_set: std::env::var_os(&key_env).is_some_and(|v| !v.is_empty()),
                key_env,
            },
            ssh_config: self.ssh_config.as_deref(),
        }
    }

    /// The ssh destination of a host: its `ssh` string, its name, or `None` for this machine.
    pub fn ssh_dest<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        match &self.hosts.get(name)?.ssh {
            SshTarget::Flag(false) => None,
            SshTarget::Dest(d) => Some(d),
            SshTarget::HostName | SshTarget::Flag(true) => Some(name),
        }
    }
}

/// `host:11434` and `http://host:11434/` both become `http://host:11434`.
pub fn normalize_ollama_url(raw: &str) -> String {
    let url = raw.trim().trim_end_matches('/');
    // `OLLAMA_HOST=0.0.0.0` is how servers are told to listen everywhere; clients reach them on loopback.
    let url = url.replace("0.0.0.0", "127.0.0.1");
    if url.contains("://") {
        url
    } else if url.contains(':') {
        format!("http://{url}")
    } else {
        format!("http://{url}:11434")
    }
}

/// Why `dest` cannot be given to ssh as a destination, if it cannot: ssh would read a leading `-` as an
/// option (`-oProxyCommand=…`), and whitespace or control characters make no host name. The openssh crate
/// puts the destination last on ssh's command line without a `--` before it, so this check is the guard.
pub fn destination_problem(dest: &str) -> Option<String> {
    let shown =
        crate::core::text::escape_line(&crate::core::text::truncate(dest, 100)).into_owned();
    if let Some(c) = dest.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "an ssh destination cannot contain whitespace or control characters ({c:?} in {shown:?})"
        ));
    }
    let rest = dest.strip_prefix("ssh://").unwrap_or(dest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if dest.starts_with('-') || rest.starts_with('-') || host.starts_with('-') {
        return Some(format!(
            "an ssh destination cannot start with '-' (ssh would read it as an option), got {shown:?}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Fleet, FleetError> {
        Fleet::from_deserializer(v)
    }

    #[test]
    fn unknown_key_names_path_and_suggests() {
        let e = parse(json!({"hosts": {"engine": {"olama": "http://x:11434"}}})).unwrap_err();
        assert_eq!(e.0, "hosts.engine.olama: unknown key, did you mean ollama?");
        let e = parse(json!({"hostz": {}})).unwrap_err();
        assert_eq!(e.0, "hostz: unknown key, did you mean hosts?");
        let e = parse(json!({"budget": {"monthly_usd": 5, "zzz": 1}})).unwrap_err();
        assert!(
            e.0.starts_with("budget.zzz: unknown key (expected one of: monthly_usd, alert_at)"),
            "{}",
            e.0
        );
    }

    #[test]
    fn wrong_types_name_path() {
        let e = parse(json!({"hosts": {"a": {"ollama_parallel": "four"}}})).unwrap_err();
        assert!(
            e.0.starts_with("hosts.a.ollama_parallel: wrong type"),
            "{}",
            e.0
        );
        let e = parse(json!({"hosts": {"a": {"ssh": 5}}})).unwrap_err();
        assert!(e.0.starts_with("hosts.a.ssh:"), "{}", e.0);
        let e = parse(json!({"hosts": {"a": {"known_hosts": "yes"}}})).unwrap_err();
        assert!(e.0.starts_with("hosts.a.known_hosts:"), "{}", e.0);
    }

    #[test]
    fn cross_references_are_checked() {
        let e = parse(json!({"hosts": {"brain": {}}, "tiers": [{"name": "local", "provider": "ollama", "host": "brain", "model": "m"}]}))
            .unwrap_err();
        assert_eq!(e.0, "tiers[1].host: host \"brain\" has no `ollama` URL");
        let e = parse(json!({
            "hosts": {"engine": {"ollama": "http://engine:11434"}},
            "tiers": [{"name": "local", "provider": "ollama", "model": "m"}],
            "tasks": {"lint": {"tier": "locl"}}
        }))
        .unwrap_err();
        assert_eq!(
            e.0,
            "tasks.lint.tier: unknown tier \"locl\", did you mean local?"
        );
    }

    #[test]
    fn defaults_fill_in() {
        let f = parse(json!({"hosts": {"engine": {"ollama": "http://engine:11434"}, "brain": {"ssh": "me@brain"}, "pc": {"ssh": false}}}))
            .unwrap();
        assert_eq!(f.hosts["engine"].ssh, SshTarget::HostName);
        assert_eq!(f.hosts["engine"].ollama_parallel, 4);
        assert_eq!(f.hosts["engine"].known_hosts, KnownHosts::Strict);
        assert_eq!(f.hosts["pc"].ssh, SshTarget::Flag(false));
        let tiers = f.tiers();
        assert_eq!(
            tiers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["local", "cheap", "premium"]
        );
        assert_eq!(tiers[0].host.as_deref(), Some("engine"));
        assert_eq!(
            f.tasks()["commit_message"],
            TaskRule {
                tier: "local".into(),
                model: Some("code".into())
            }
        );
        assert_eq!(f.tasks()["architecture"].tier, "premium");
        assert!(f.budget.is_none());
    }

    #[test]
    fn view_resolves_ssh_destinations() {
        let f = parse(json!({"hosts": {"brain": {}, "pc": {"ssh": false}, "studio": {"ssh": "me@studio"}, "yes": {"ssh": true}}}))
            .unwrap();
        let v = serde_json::to_value(f.view()).unwrap();
        assert_eq!(v["hosts"]["brain"]["ssh"], "brain");
        assert_eq!(v["hosts"]["pc"]["ssh"], false);
        assert_eq!(v["hosts"]["studio"]["ssh"], "me@studio");
        assert_eq!(v["hosts"]["yes"]["ssh"], "yes");
        // The raw schema serializes too (no variant is unserializable).
        let raw = serde_json::to_value(&f).unwrap();
        assert_eq!(raw["hosts"]["brain"]["ssh"], true);
    }

    #[test]
    fn empty_tables_are_lists_or_maps() {
        let f = parse(json!({"hosts": {"a": {"tags": {}}}, "tiers": [{"name": "c", "provider": "openrouter", "model": "x", "models": []}]}))
            .unwrap();
        assert!(f.hosts["a"].tags.is_empty());
    }

    #[test]
    fn wake_and_notify_settings_parse_and_hide_header_values() {
        let f = parse(json!({
            "hosts": {"brain": {"syncthing": {}},
                      "pc": {"mac": "AA-BB-CC-DD-EE-FF", "wake": {"broadcast": "192.168.1.255", "via": "brain"}}},
            "notify": {"ntfy": {"topic": "t-1"}, "webhook": {"url": "https://h.example/x", "headers": {"Authorization": "Bearer s3cret"}},
                       "desktop": true, "command": ["notify-me", "--loud"], "job_poll": "5s"}
        }))
        .unwrap();
        assert_eq!(
            f.hosts["pc"].wake.as_ref().unwrap().via.as_deref(),
            Some("brain")
        );
        let n = f.notify.as_ref().unwrap();
        assert_eq!(n.ntfy.as_ref().unwrap().url, "https://ntfy.sh");
        assert_eq!(n.command, ["notify-me", "--loud"]);
        let raw = serde_json::to_string(&f).unwrap();
        assert!(
            !raw.contains("s3cret") && raw.contains("\"Authorization\":\"***\""),
            "{raw}"
        );
        let e =
            parse(json!({"hosts": {"pc": {"mac": "aa:bb:cc:dd:ee:ff", "wake": {"via": "pc"}}}}))
                .unwrap_err();
        assert_eq!(
            e.0,
            "hosts.pc.wake.via: a host cannot wake itself (name an always-on host)"
        );
        let e = parse(json!({"notify": {"webhook": {"url": "http://x", "headers": {"a b": "v"}}}}))
            .unwrap_err();
        assert_eq!(
            e.0,
            "notify.webhook.headers: \"a b\" is not a valid header name"
        );
    }

    #[test]
    fn ollama_urls_normalize() {
        assert_eq!(normalize_ollama_url("engine"), "http://engine:11434");
        assert_eq!(
            normalize_ollama_url("0.0.0.0:11434"),
            "http://127.0.0.1:11434"
        );
        assert_eq!(
            normalize_ollama_url("https://x.example/"),
            "https://x.example"
        );
    }

    #[test]
    fn ssh_destinations_that_look_like_options_are_refused() {
        for (dest, why) in [
            ("-V", "cannot start with '-'"),
            ("-oProxyCommand=touch /tmp/x", "cannot contain whitespace"),
            ("-oProxyCommand=id", "cannot start with '-'"),
            ("ssh://-oProxyCommand=id", "cannot start with '-'"),
            ("user@-oProxyCommand=id", "cannot start with '-'"),
            ("ssh://me@-p:22", "cannot start with '-'"),
            ("host; rm -rf ~", "cannot contain whitespace"),
            (
                "host\u{1b}[2J",
                "control characters ('\\u{1b}' in \"host\\\\u{1b}[2J\")",
            ),
        ] {
            let e = parse(json!({"hosts": {"h": {"ssh": dest}}})).unwrap_err();
            assert!(
                e.0.starts_with("hosts.h.ssh: an ssh destination "),
                "{dest}: {e}"
            );
            assert!(e.0.contains(why), "{dest}: {e}");
        }
        let e = parse(json!({"hosts": {"-V": {}}})).unwrap_err();
        assert_eq!(
            e.0,
            "hosts.-V: the host name is its ssh destination (ssh = true), and an ssh destination cannot start with '-' (ssh would read it as an option), got \"-V\""
        );
        assert!(parse(json!({"hosts": {"-V": {"ssh": false}}})).is_ok());
        for ok in [
            "brain",
            "me@10.0.0.5",
            "ssh://me@host-1:2222",
            "a-b.lan",
            "[::1]",
        ] {
            assert!(parse(json!({"hosts": {"h": {"ssh": ok}}})).is_ok(), "{ok}");
        }
    }

    #[test]
    fn paths_in_errors_count_from_one() {
        let e = parse(json!({"tiers": [{"name": "x", "provider": "nope"}]})).unwrap_err();
        assert!(e.0.starts_with("tiers[1].provider: unknown variant"), "{e}");
        let e = parse(json!({"tiers": [{"name": "x", "provider": "ollama"}, {"name": "y", "provider": "ollama", "hots": 1}]}))
            .unwrap_err();
        assert_eq!(e.0, "tiers[2].hots: unknown key, did you mean host?");
    }

    #[test]
    fn limits_take_sizes_and_durations() {
        let f = parse(json!({"limits": {"memory": "512MiB", "job_timeout": "2h"}})).unwrap();
        assert_eq!(f.limits.memory, Some(Bytes(512 << 20)));
        assert_eq!(
            f.limits.job_timeout.map(|d| d.0),
            Some(std::time::Duration::from_secs(7200))
        );
        assert_eq!(Bytes::parse("1GiB"), Ok(Bytes(1 << 30)));
        assert_eq!(Bytes::parse("64 MB"), Ok(Bytes(64_000_000)));
        assert_eq!(Bytes::parse("1.5GiB"), Ok(Bytes(3 << 29)));
        let f = parse(json!({"limits": {"memory": 2097152}})).unwrap();
        assert_eq!(f.limits.memory, Some(Bytes(2 << 20)));
        for bad in ["lots", "12 parsecs", "", "-1GiB"] {
            assert!(Bytes::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Bytes::parse("100KiB")
                .unwrap_err()
                .contains("at least 1MiB")
        );
        let e = parse(json!({"limits": {"memory": "lots"}})).unwrap_err();
        assert!(e.0.starts_with("limits.memory"), "{}", e.0);
        let e = parse(json!({"limits": {"memroy": 1}})).unwrap_err();
        assert!(e.0.contains("did you mean memory"), "{}", e.0);
    }
}

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

fn validate_mcp(fleet: &Fleet) -> Result<(), FleetError> {
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
mod mcp_tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Fleet, FleetError> {
        Fleet::from_deserializer(v)
    }

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

//! The fleet: hosts, LLM tiers, task→tier rules, OpenRouter settings and the budget.
//!
//! Rust owns the schema (these serde structs); Lua owns the values (the fleet file returns a table). Parsing
//! is generic over any serde `Deserializer`, so the Lua side hands its table in without this module knowing
//! about Lua. Errors name the path of the bad value: `hosts.engine.olama: unknown key, did you mean ollama?`.
//!
//! Each section of the file has its own room: `hosts` (ssh, Wake-on-LAN, Syncthing), `llm` (tiers, task
//! rules, OpenRouter, budget), `notify`, `mcp` and `limits`; this file holds the whole, its loading and its
//! cross-checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::wording::describe;

mod hosts;
mod limits;
mod llm;
mod mcp;
mod notify;
pub mod tree;

pub use hosts::{
    Host, HostSource, Hosts, KnownHosts, LOCAL, SshTarget, SyncthingConf, Wake,
    destination_problem, host_from_tree, parse_mac,
};
pub use limits::{Bytes, Limits};
pub use llm::{
    Budget, DEFAULT_KEY_ENV, DEFAULT_OLLAMA, DEFAULT_OLLAMA_PARALLEL, DEFAULT_OPENROUTER_BASE,
    DEFAULT_TASKS, OpenRouter, Price, Provider, TaskKind, TaskRule, Tier, normalize_ollama_url,
};
pub use mcp::McpServer;
use mcp::validate_mcp;
pub use notify::{NotifyConf, Ntfy, Webhook};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// OpenSSH config file handed to every ssh connection (`-F`), unless a host overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
    #[serde(default)]
    pub hosts: Hosts,
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
    /// The dashboard (`baton web`): `web = {token_env = "BATON_WEB_TOKEN"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebConf>,
    /// Where the fleet came from; `None` for the built-in default.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `web = {token_env = …}`: where `baton web` finds its access token (an environment variable's name, so
/// the token itself stays out of the fleet file). Without it each start makes a random one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

/// A fleet that did not parse or validate; the message starts with the path of the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FleetError(pub String);

/// Lua has one table type: `{}` may arrive as an empty map where a list is expected, and vice versa.
/// A visitor rather than an untagged enum, which would copy every value into a buffer first: this runs for
/// every host of the fleet. Anything but a list of strings (or `{}`) is "a list of strings".
fn list_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::{Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// One item of the list: the string, or `None` for anything else (read to its end, so errors inside
    /// it, such as a table with bad keys, still come out as they would).
    struct Item;
    impl<'de> Visitor<'de> for Item {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    impl<'de> serde::de::DeserializeSeed<'de> for Item {
        type Value = Option<String>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::custom("a list of strings"))
        }
        fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(E::custom("a list of strings"))
        }
        fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(E::custom("a list of strings"))
        }
        fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(E::custom("a list of strings"))
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom("a list of strings"))
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Err(E::custom("a list of strings"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut list = Vec::with_capacity(a.size_hint().unwrap_or(0));
            let mut all_strings = true;
            while let Some(item) = a.next_element_seed(Item)? {
                match item {
                    Some(s) => list.push(s),
                    None => all_strings = false,
                }
            }
            if all_strings {
                Ok(list)
            } else {
                Err(A::Error::custom("a list of strings"))
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let (mut any, mut all_strings) = (false, true);
            while let Some((k, v)) = a.next_entry_seed(Item, Item)? {
                any = true;
                all_strings &= k.is_some() && v.is_some();
            }
            match (any, all_strings) {
                (false, _) => Ok(Vec::new()),
                (true, true) => Err(A::Error::custom(
                    "expected a list of strings, got a table with keys",
                )),
                (true, false) => Err(A::Error::custom("a list of strings")),
            }
        }
    }
    d.deserialize_any(List)
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

impl Fleet {
    /// Parses and validates a fleet from any serde deserializer (a Lua table, JSON, …).
    pub fn from_deserializer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Fleet, FleetError> {
        let fleet: Fleet =
            serde_path_to_error::deserialize(d).map_err(|e| FleetError(describe(&e, "fleet")))?;
        fleet.validate()?;
        Ok(fleet)
    }

    /// Parses and validates the fleet file's table ([`tree::Node`], which the Lua side builds). Decoding runs
    /// without tracking where it is, and once more with the path only when it fails, for the message.
    pub fn from_tree(node: &tree::Node) -> Result<Fleet, FleetError> {
        Fleet::from_tree_with(node, None)
    }

    /// [`Fleet::from_tree`] where `hosts`, when given, stands for the file's `hosts` (absent from `node`):
    /// hosts read on first use. Only the hosts the other sections name are read here.
    pub fn from_tree_with(node: &tree::Node, hosts: Option<Hosts>) -> Result<Fleet, FleetError> {
        let mut fleet = match Fleet::deserialize(node) {
            Ok(fleet) => fleet,
            Err(plain) => {
                return Err(match serde_path_to_error::deserialize::<_, Fleet>(node) {
                    Err(e) => FleetError(describe(&e, "fleet")),
                    Ok(_) => FleetError(format!("fleet: {plain}")),
                });
            }
        };
        if let Some(hosts) = hosts {
            fleet.hosts = hosts;
        }
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
        let mut hosts = Hosts::default();
        hosts.insert(
            LOCAL.to_string(),
            Host {
                role: Some("workstation".into()),
                ollama: Some(ollama),
                ..Host::implicit_local()
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

    /// The host `name` ([`Hosts::lookup`]), its error starting with the fleet file's path.
    pub fn host(&self, name: &str) -> Result<Option<&Host>, FleetError> {
        self.hosts.lookup(name).map_err(|e| self.with_file(e))
    }

    /// Reads and checks every host now ([`Hosts::check`]): what `baton fleet` and `baton.fleet` show is
    /// all of it, and every error shows there.
    pub fn check_hosts(&self) -> Result<(), FleetError> {
        self.hosts.check().map_err(|e| self.with_file(e))
    }

    fn with_file(&self, e: FleetError) -> FleetError {
        match &self.source {
            Some(path) => FleetError(format!("{}: {}", path.display(), e.0)),
            None => e,
        }
    }

    /// Whether this came from the built-in default rather than a file.
    pub fn is_builtin(&self) -> bool {
        self.source.is_none()
    }

    /// Each section checks itself in its own file, in this order; the first failure is the error.
    fn validate(&self) -> Result<(), FleetError> {
        self.hosts.check_given()?;
        self.validate_notify()?;
        self.validate_llm()?;
        validate_mcp(self)?;
        self.validate_budget()
    }
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
        let mut hosts: BTreeMap<String, Host> = self
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
        // `local` is this machine whether or not the fleet file names it (`ssh.run("local", …)` works, see
        // `core::remote::target`), so every listing shows it too.
        hosts
            .entry(LOCAL.to_string())
            .or_insert_with(Host::implicit_local);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn parse(v: serde_json::Value) -> Result<Fleet, FleetError> {
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
                model: Some("code".into()),
                prompt: None,
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
    fn paths_in_errors_count_from_one() {
        let e = parse(json!({"tiers": [{"name": "x", "provider": "nope"}]})).unwrap_err();
        assert!(e.0.starts_with("tiers[1].provider: unknown variant"), "{e}");
        let e = parse(json!({"tiers": [{"name": "x", "provider": "ollama"}, {"name": "y", "provider": "ollama", "hots": 1}]}))
            .unwrap_err();
        assert_eq!(e.0, "tiers[2].hots: unknown key, did you mean host?");
    }
}

//! `hosts = {NAME = {…}}`: how baton reaches each machine (ssh, Wake-on-LAN, Syncthing).
//!
//! A fleet file's hosts are read on first use ([`Hosts::lazy`]): a run pays only for the hosts it touches
//! (a fleet of 100 000 hosts costs little more than Lua evaluating its file). `baton fleet` and
//! `baton.fleet` read and check them all ([`Hosts::check`]), so every error shows there.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::llm::DEFAULT_OLLAMA_PARALLEL;
use super::{Fleet, FleetError, list_or_empty};
use crate::core::wording::suggest;

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
    /// Claude Code is installed there for `claude.run` (`baton doctor` checks it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claude: bool,
}

/// The host name that is always this machine, named in the fleet file or not.
pub const LOCAL: &str = "local";

impl Host {
    /// `local` when the fleet file does not name it: this machine, nothing else set.
    pub fn implicit_local() -> Host {
        Host {
            ssh: SshTarget::Flag(false),
            ssh_config: None,
            known_hosts: KnownHosts::Strict,
            role: None,
            tags: Vec::new(),
            ollama: None,
            ollama_parallel: DEFAULT_OLLAMA_PARALLEL,
            mac: None,
            wake: None,
            syncthing: None,
            claude: false,
        }
    }
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

/// Where hosts not read yet come from: the fleet file, kept open by whoever loaded it.
pub trait HostSource: Send + Sync + std::fmt::Debug {
    /// The host `name`'s entry decoded; errors start with its path (`hosts.NAME.key: …`).
    fn host(&self, name: &str) -> Result<Host, FleetError>;

    /// Several hosts at once, in the order asked (one round trip for all of them where that counts).
    fn hosts(&self, names: &[&str]) -> Vec<Result<Host, FleetError>> {
        names.iter().map(|name| self.host(name)).collect()
    }
}

/// How many hosts [`Hosts::iter`] and [`Hosts::check`] ask their source for at once.
const BATCH: usize = 1024;

/// One host: read and checked once, on first use.
type Slot = OnceLock<Result<Box<Host>, FleetError>>;

/// The fleet's hosts by name. Names are known from the start; each host's settings are read (decoded and
/// checked) on first use when they come from a [`HostSource`], else they are given at once.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    slots: BTreeMap<String, Slot>,
    source: Option<Arc<dyn HostSource>>,
}

impl Hosts {
    /// Hosts named `names`, each read from `source` on first use.
    pub fn lazy(names: impl IntoIterator<Item = String>, source: Arc<dyn HostSource>) -> Hosts {
        Hosts {
            slots: names.into_iter().map(|n| (n, Slot::new())).collect(),
            source: Some(source),
        }
    }

    /// The host `name`: `Ok(None)` when the fleet has no such host, an error naming `hosts.NAME.key` when
    /// its settings are wrong.
    pub fn lookup(&self, name: &str) -> Result<Option<&Host>, FleetError> {
        let Some(slot) = self.slots.get(name) else {
            return Ok(None);
        };
        let read = slot.get_or_init(|| {
            let source = self.source.as_ref().ok_or_else(|| {
                FleetError(format!("hosts.{name}: has no settings (an internal error)"))
            })?;
            let host = source.host(name)?;
            self.validate_host(name, &host)?;
            Ok(Box::new(host))
        });
        match read {
            Ok(host) => Ok(Some(host)),
            Err(e) => Err(e.clone()),
        }
    }

    /// The host `name`, `None` when there is none or its settings are wrong ([`Hosts::lookup`] tells which).
    pub fn get(&self, name: &str) -> Option<&Host> {
        self.lookup(name).ok().flatten()
    }

    /// The host `name` to change, read first when it was not yet; `None` as for [`Hosts::get`].
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Host> {
        self.lookup(name).ok()??;
        let read = self.slots.get_mut(name)?.get_mut()?;
        read.as_mut().ok().map(|host| &mut **host)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.slots.contains_key(name)
    }

    /// The names, in order; nothing is read.
    pub fn keys(&self) -> impl Iterator<Item = &String> + Clone {
        self.slots.keys()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The hosts in name order, read as the iteration reaches them; a host whose settings are wrong is left
    /// out (its error comes with its use by name, and from [`Hosts::check`]).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Host)> + Clone {
        self.slots.iter().filter_map(|(name, slot)| {
            if slot.get().is_none() {
                // This one and the next ones, in one batch.
                use std::ops::Bound::{Included, Unbounded};
                let from = (Included(name.as_str()), Unbounded);
                let next = self.slots.range::<str, _>(from).take(BATCH);
                self.read_batch(next.map(|(name, _)| name.as_str()));
            }
            Some((name, self.get(name)?))
        })
    }

    /// Reads and checks those of `names` not read yet, in one batch.
    fn read_batch<'a>(&'a self, names: impl Iterator<Item = &'a str>) {
        let Some(source) = &self.source else {
            return;
        };
        let unread: Vec<&str> = names
            .filter(|name| self.slots.get(*name).is_some_and(|s| s.get().is_none()))
            .collect();
        if unread.is_empty() {
            return;
        }
        for (name, read) in unread.iter().zip(source.hosts(&unread)) {
            let read = read.and_then(|host| {
                self.validate_host(name, &host)?;
                Ok(Box::new(host))
            });
            let _ = self.slots[*name].set(read);
        }
    }

    /// Adds (or replaces) a host given in full.
    pub fn insert(&mut self, name: String, host: Host) {
        self.slots.insert(name, OnceLock::from(Ok(Box::new(host))));
    }

    /// Checks the hosts given in full (hosts read on first use are checked then).
    pub fn check_given(&self) -> Result<(), FleetError> {
        match self.source {
            Some(_) => Ok(()),
            None => self.check(),
        }
    }

    /// Reads and checks every host now, and lets go of their source: a small fleet is read at once, so
    /// its errors stop any command before it starts.
    pub fn read_all(&mut self) -> Result<(), FleetError> {
        self.check()?;
        self.source = None;
        Ok(())
    }

    /// Reads and checks every host, in name order; the first error.
    pub fn check(&self) -> Result<(), FleetError> {
        let names: Vec<&str> = self.slots.keys().map(String::as_str).collect();
        for batch in names.chunks(BATCH) {
            self.read_batch(batch.iter().copied());
        }
        for name in self.slots.keys() {
            if self.source.is_some() {
                self.lookup(name)?;
            } else if let Some(host) = self.get(name) {
                // Given in full: checked here (their names may only now be complete).
                self.validate_host(name, host)?;
            }
        }
        Ok(())
    }
}

impl std::ops::Index<&str> for Hosts {
    type Output = Host;
    /// Panics unless the host exists and reads: for names already checked.
    fn index(&self, name: &str) -> &Host {
        match self.lookup(name) {
            Ok(Some(host)) => host,
            Ok(None) => panic!("no fleet host {name:?}"),
            Err(e) => panic!("{e}"),
        }
    }
}

impl<'a> IntoIterator for &'a Hosts {
    type Item = (&'a String, &'a Host);
    type IntoIter = Box<dyn Iterator<Item = (&'a String, &'a Host)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl FromIterator<(String, Host)> for Hosts {
    fn from_iter<I: IntoIterator<Item = (String, Host)>>(iter: I) -> Hosts {
        let mut hosts = Hosts::default();
        for (name, host) in iter {
            hosts.insert(name, host);
        }
        hosts
    }
}

/// Equal names and equal settings (reading every host of both).
impl PartialEq for Hosts {
    fn eq(&self, other: &Hosts) -> bool {
        self.slots.len() == other.slots.len()
            && self
                .slots
                .keys()
                .zip(other.slots.keys())
                .all(|(a, b)| a == b && self.lookup(a) == other.lookup(b))
    }
}

impl Serialize for Hosts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let mut map = s.serialize_map(Some(self.len()))?;
        for name in self.keys() {
            match self.lookup(name) {
                Ok(Some(host)) => map.serialize_entry(name, host)?,
                Ok(None) => {}
                Err(e) => return Err(S::Error::custom(e)),
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hosts, D::Error> {
        Ok(BTreeMap::<String, Host>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// One host's entry of the fleet file (the [`tree::Node`](super::tree::Node) of `hosts.NAME`) decoded,
/// errors naming `hosts.NAME.key` as if the whole file had been read.
pub fn host_from_tree(name: &str, node: super::tree::Node) -> Result<Host, FleetError> {
    #[derive(Deserialize)]
    struct Only {
        hosts: BTreeMap<String, Host>,
    }
    let root = super::tree::Node::Map(vec![(
        "hosts".into(),
        super::tree::Node::Map(vec![(name.to_string().into(), node)]),
    )]);
    let only = match Only::deserialize(&root) {
        Ok(only) => only,
        Err(plain) => {
            return Err(match serde_path_to_error::deserialize::<_, Only>(&root) {
                Err(e) => FleetError(super::describe(&e, "fleet")),
                Ok(_) => FleetError(format!("hosts.{name}: {plain}")),
            });
        }
    };
    only.hosts
        .into_values()
        .next()
        .ok_or_else(|| FleetError(format!("hosts.{name}: missing")))
}

impl Hosts {
    /// `hosts.NAME`: the name, `ssh`, `ollama`, `ollama_parallel`, then Wake-on-LAN and Syncthing.
    fn validate_host(&self, name: &str, host: &Host) -> Result<(), FleetError> {
        let err = |path: String, msg: &str| Err(FleetError(format!("{path}: {msg}")));
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
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
                        &format!("the host name is its ssh destination (ssh = true), and {why}"),
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
        self.validate_wake_sync(name, host)
    }

    /// `hosts.X.mac`, `hosts.X.wake` and `hosts.X.syncthing`.
    fn validate_wake_sync(&self, name: &str, host: &Host) -> Result<(), FleetError> {
        let err = |key: &str, msg: String| Err(FleetError(format!("hosts.{name}.{key}: {msg}")));
        if let Some(mac) = &host.mac
            && let Err(e) = parse_mac(mac)
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
                if !self.contains_key(via) {
                    return err(
                        "wake.via",
                        format!(
                            "unknown host {via:?}{}",
                            suggest(via, self.keys().map(String::as_str))
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
}

impl Fleet {
    /// The ssh destination of a host: its `ssh` string, its name, or `None` for this machine.
    pub fn ssh_dest<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        match &self.hosts.get(name)?.ssh {
            SshTarget::Flag(false) => None,
            SshTarget::Dest(d) => Some(d),
            SshTarget::HostName | SshTarget::Flag(true) => Some(name),
        }
    }
}

/// Why `dest` cannot be given to ssh as a destination, if it cannot: ssh would read a leading `-` as an
/// option (`-oProxyCommand=…`), and whitespace or control characters make no host name. The openssh crate
/// puts the destination last on ssh's command line without a `--` before it, so this check is the guard.
pub fn destination_problem(dest: &str) -> Option<String> {
    // Built only for a message: this runs for every host of the fleet.
    let shown =
        || crate::core::text::escape_line(&crate::core::text::truncate(dest, 100)).into_owned();
    if let Some(c) = dest.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "an ssh destination cannot contain whitespace or control characters ({c:?} in {:?})",
            shown()
        ));
    }
    let rest = dest.strip_prefix("ssh://").unwrap_or(dest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if dest.starts_with('-') || rest.starts_with('-') || host.starts_with('-') {
        return Some(format!(
            "an ssh destination cannot start with '-' (ssh would read it as an option), got {:?}",
            shown()
        ));
    }
    None
}

/// Parses `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` or `aabbccddeeff` (any case).
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || {
        format!(
            "expected a MAC address such as \"aa:bb:cc:dd:ee:ff\" (six hex byte pairs), got {text:?}"
        )
    };
    let t = text.trim();
    let parts: Vec<&str> = if t.contains(':') {
        t.split(':').collect()
    } else if t.contains('-') {
        t.split('-').collect()
    } else if t.len() == 12 && t.is_ascii() {
        (0..6).map(|i| &t[i * 2..i * 2 + 2]).collect()
    } else {
        return Err(bad());
    };
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(&parts) {
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::{Host, HostSource, Hosts, parse_mac};
    use crate::core::fleet::FleetError;
    use crate::core::fleet::tests::parse;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// Hosts `h0`…`h9` (`h7` with a bad `ssh`), counting what is read.
    #[derive(Debug, Default)]
    struct Counted(Mutex<Vec<String>>);
    impl HostSource for Counted {
        fn host(&self, name: &str) -> Result<Host, FleetError> {
            self.0.lock().unwrap().push(name.to_string());
            let ssh = if name == "h7" { "-oX" } else { "me@x" };
            Ok(serde_json::from_value(json!({ "ssh": ssh })).unwrap())
        }
    }

    #[test]
    fn hosts_are_read_on_first_use_and_checked_all_at_once() {
        let source = Arc::new(Counted::default());
        let hosts = Hosts::lazy((0..10).map(|i| format!("h{i}")), source.clone());
        assert!(hosts.contains_key("h3") && hosts.len() == 10);
        assert!(source.0.lock().unwrap().is_empty(), "names cost no reading");
        assert_eq!(
            hosts.get("h3").unwrap().ssh,
            super::SshTarget::Dest("me@x".into())
        );
        assert_eq!(hosts.lookup("nope"), Ok(None));
        assert_eq!(*source.0.lock().unwrap(), ["h3"]);
        // A host's check comes with its first use, and is kept.
        let e = hosts.lookup("h7").unwrap_err();
        assert!(
            e.0.starts_with("hosts.h7.ssh: an ssh destination cannot start with '-'"),
            "{e}"
        );
        assert!(hosts.get("h7").is_none());
        assert_eq!(source.0.lock().unwrap().len(), 2);
        // `check` reads the rest and gives the first error by name; `iter` leaves the bad one out.
        assert_eq!(hosts.check().unwrap_err(), e);
        assert_eq!(source.0.lock().unwrap().len(), 10);
        assert_eq!(hosts.iter().count(), 9);
    }

    #[test]
    fn macs_parse_in_three_spellings() {
        let want = [0xaa, 0xbb, 0xcc, 0x01, 0x02, 0xff];
        for s in ["aa:bb:cc:01:02:ff", "AA-BB-CC-01-02-FF", "aabbcc0102ff"] {
            assert_eq!(parse_mac(s).unwrap(), want, "{s}");
        }
        for bad in [
            "aa:bb:cc:01:02",
            "aa:bb:cc:01:02:fg",
            "a:bb:cc:01:02:ff0",
            "",
            "zz",
        ] {
            let e = parse_mac(bad).unwrap_err();
            assert!(e.contains("expected a MAC address"), "{e}");
        }
    }

    #[test]
    fn wake_settings_parse_and_a_host_cannot_wake_itself() {
        let f = parse(json!({
            "hosts": {"brain": {"syncthing": {}},
                      "pc": {"mac": "AA-BB-CC-DD-EE-FF", "wake": {"broadcast": "192.168.1.255", "via": "brain"}}}
        }))
        .unwrap();
        assert_eq!(
            f.hosts["pc"].wake.as_ref().unwrap().via.as_deref(),
            Some("brain")
        );
        let e =
            parse(json!({"hosts": {"pc": {"mac": "aa:bb:cc:dd:ee:ff", "wake": {"via": "pc"}}}}))
                .unwrap_err();
        assert_eq!(
            e.0,
            "hosts.pc.wake.via: a host cannot wake itself (name an always-on host)"
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
}

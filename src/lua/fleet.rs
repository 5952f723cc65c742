//! Reads the fleet file: a Lua file returning a table, decoded into the core's serde schema.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use mlua::Value;

use crate::core::fleet::tree::{self, Node};
use crate::core::fleet::{self, Fleet, FleetError};

/// The fleet in effect: the file `locate` finds, else the built-in default.
pub fn load(cli: Option<&Path>) -> Result<Fleet, FleetError> {
    match fleet::locate(cli)? {
        Some(path) => load_file(&path),
        None => Ok(Fleet::builtin()),
    }
}

/// The memory limit of evaluating a fleet file.
const FLEET_MEMORY: u64 = 256 << 20;

/// A fleet file with at most this many hosts is read whole at load, so an error in any host stops every
/// command before it starts; a bigger one reads each host on first use (`baton fleet` reads them all).
pub const READ_AT_ONCE: usize = 1000;

/// What the fleet file's reader sends first: the file's table without `hosts` and the host names, or the
/// whole table when `hosts` is not a table of named hosts (then it is read at once, for its error).
type First = Result<(Node, Option<Vec<String>>), FleetError>;

/// A request to the reader: hosts' entries as plain values (errors name `hosts.NAME…`).
type Request = (Vec<String>, mpsc::Sender<Vec<Result<Node, String>>>);

/// Evaluates a fleet file in a plain Lua state (no baton globals) and validates the table it returns.
///
/// The Lua state lives in a thread of its own (a Lua state stays on one thread, the fleet goes to many),
/// which keeps the file's table and hands out hosts as they are asked for: a run pays only for the hosts it
/// uses.
pub fn load_file(path: &Path) -> Result<Fleet, FleetError> {
    let shown = path.display().to_string();
    let (first_tx, first_rx) = mpsc::channel::<First>();
    let (requests, served) = mpsc::channel::<Request>();
    let file = path.to_path_buf();
    std::thread::Builder::new()
        .name("fleet file".into())
        .spawn(move || serve(&file, &first_tx, served))
        .map_err(|e| FleetError(format!("fleet file {shown}: cannot start its reader: {e}")))?;
    let (tree, names) = first_rx.recv().map_err(|_| stopped(&shown))??;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let at = |e: FleetError| FleetError(format!("{shown}: {}", e.0));
    let hosts = match names {
        Some(names) => {
            let source = FileHosts {
                requests: Mutex::new(requests),
                shown: shown.clone(),
                dir: dir.clone(),
            };
            let mut hosts = fleet::Hosts::lazy(names, Arc::new(source));
            if hosts.len() <= READ_AT_ONCE {
                hosts.read_all().map_err(at)?;
            }
            Some(hosts)
        }
        None => None,
    };
    let mut fleet = Fleet::from_tree_with(&tree, hosts).map_err(at)?;
    fleet.source = Some(path.to_path_buf());
    // Relative ssh_config paths are relative to the fleet file, so a fleet folder can be moved as a whole
    // (a host's own, as it is read: `FileHosts`).
    if let Some(cfg) = fleet.ssh_config.as_mut().filter(|c| c.is_relative()) {
        *cfg = dir.join(&cfg);
    }
    Ok(fleet)
}

fn stopped(shown: &str) -> FleetError {
    FleetError(format!("fleet file {shown}: its reader stopped"))
}

/// The reader's side: evaluates the file, sends its table (without the hosts' entries when it can), then
/// answers requests for hosts until the fleet is dropped.
fn serve(path: &Path, first: &mpsc::Sender<First>, requests: mpsc::Receiver<Request>) {
    let lua = mlua::Lua::new();
    let value = match evaluate(&lua, path) {
        Ok(value) => value,
        Err(e) => {
            let _ = first.send(Err(e));
            return;
        }
    };
    let shown = path.display();
    let hosts = match &value {
        Value::Table(t) => t.raw_get::<Value>("hosts").ok(),
        _ => None,
    };
    let names = match &hosts {
        Some(Value::Table(t)) => host_names(t),
        _ => None,
    };
    let mut walk = Walk {
        path: Vec::new(),
        values: 0,
        skip_hosts: names.is_some(),
    };
    let tree = walk
        .node(&value)
        .map_err(|e| FleetError(format!("{shown}: {e}")));
    let lazy = names.is_some();
    if first.send(tree.map(|tree| (tree, names))).is_err() || !lazy {
        return;
    }
    let Some(Value::Table(hosts)) = hosts else {
        return;
    };
    // What has been read counts toward MAX_VALUES across all hosts, as when the file is read whole.
    let mut values = walk.values;
    for (names, reply) in requests {
        let nodes = names
            .into_iter()
            .map(|name| {
                let mut walk = Walk {
                    path: vec![Seg::Key("hosts".into()), Seg::Key(tree::Key::Owned(name))],
                    values,
                    skip_hosts: false,
                };
                let Some(Seg::Key(name)) = walk.path.last() else {
                    return Err(walk.at());
                };
                let node = match hosts.raw_get::<Value>(name.as_ref()) {
                    Ok(v) => walk.node(&v),
                    Err(e) => Err(format!("{}: {e}", walk.at())),
                };
                values = walk.values;
                node
            })
            .collect();
        let _ = reply.send(nodes);
    }
}

/// The names of `hosts`, when every key is UTF-8 text (else the table is read at once, for its error).
fn host_names(hosts: &mlua::Table) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let all = hosts.for_each::<Value, Value>(|k, _| match &k {
        Value::String(s) => match s.to_str() {
            Ok(name) => {
                names.push(name.to_string());
                Ok(())
            }
            Err(_) => Err(mlua::Error::runtime("")),
        },
        _ => Err(mlua::Error::runtime("")),
    });
    all.ok().map(|()| names)
}

/// Evaluates the fleet file to its table, within the time and memory limits of a fleet file.
fn evaluate(lua: &mlua::Lua, path: &Path) -> Result<Value, FleetError> {
    let shown = path.display();
    let src = std::fs::read(path)
        .map_err(|e| FleetError(format!("cannot read fleet file {shown}: {e}")))?;
    // A fleet file that never finishes or allocates without bound gives an error, not a hang or an abort.
    let limited = super::runtime::install_guard(lua, FLEET_MEMORY).map(|()| {
        super::runtime::set_deadline(
            lua,
            Some(super::daemon::LOAD_TIME_LIMIT),
            &format!(
                "{shown}: did not finish within {}",
                crate::core::duration::format(super::daemon::LOAD_TIME_LIMIT)
            ),
        )
    });
    let value: mlua::Value = limited
        .and_then(|()| lua.load(src).set_name(format!("@{shown}")).eval())
        .map_err(|e| {
            let msg = super::format_error(&e);
            if msg.contains(&*shown.to_string()) {
                FleetError(format!("fleet file {msg}"))
            } else {
                FleetError(format!("fleet file {shown}: {msg}"))
            }
        })?;
    super::runtime::set_deadline(lua, None, "");
    if !value.is_table() {
        return Err(FleetError(format!(
            "fleet file {shown} must return a table, got {}",
            value.type_name()
        )));
    }
    Ok(value)
}

/// The hosts of a fleet file, each read from the file's reader on first use.
#[derive(Debug)]
struct FileHosts {
    requests: Mutex<mpsc::Sender<Request>>,
    shown: String,
    /// The fleet file's folder: a host's relative `ssh_config` is relative to it.
    dir: PathBuf,
}

impl fleet::HostSource for FileHosts {
    fn host(&self, name: &str) -> Result<fleet::Host, FleetError> {
        self.hosts(&[name])
            .pop()
            .unwrap_or_else(|| Err(stopped(&self.shown)))
    }

    fn hosts(&self, names: &[&str]) -> Vec<Result<fleet::Host, FleetError>> {
        let (reply, answer) = mpsc::channel();
        let asked = names.iter().map(|n| n.to_string()).collect();
        let sent = (self.requests.lock().unwrap_or_else(|p| p.into_inner())).send((asked, reply));
        let nodes = match sent.ok().and_then(|()| answer.recv().ok()) {
            Some(nodes) if nodes.len() == names.len() => nodes,
            _ => return names.iter().map(|_| Err(stopped(&self.shown))).collect(),
        };
        names
            .iter()
            .zip(nodes)
            .map(|(name, node)| {
                let mut host = fleet::host_from_tree(name, node.map_err(FleetError)?)?;
                if let Some(cfg) = host.ssh_config.as_mut().filter(|c| c.is_relative()) {
                    *cfg = self.dir.join(&cfg);
                }
                Ok(host)
            })
            .collect()
    }
}

/// The most values a fleet file's table may hold (a table shared many times counts each time).
const MAX_VALUES: usize = 20_000_000;

/// The fleet file's table as plain values: one walk over it, which also refuses what serde could not
/// report well (text that is not UTF-8, tables nested past [`MAX_DEPTH`](super::api::args::MAX_DEPTH),
/// a cycle, a table shared so often that it would blow up) with the path of the value.
struct Walk {
    /// The keys from the root to the value being read, for messages.
    path: Vec<Seg>,
    values: usize,
    /// Leaves the root's `hosts` out (its hosts are read one by one, on first use).
    skip_hosts: bool,
}

/// One step of a path: a string key (`hosts`) or a list index (`[1]`).
enum Seg {
    Key(tree::Key),
    Index(i64),
}

impl Walk {
    fn at(&self) -> String {
        if self.path.is_empty() {
            "fleet".to_string()
        } else {
            let mut path = String::new();
            for seg in &self.path {
                match seg {
                    Seg::Key(k) if path.is_empty() => path.push_str(k),
                    Seg::Key(k) => {
                        path.push('.');
                        path.push_str(k);
                    }
                    Seg::Index(i) => path.push_str(&format!("[{i}]")),
                }
            }
            crate::core::text::escape_line(&crate::core::text::truncate(&path, 100)).into_owned()
        }
    }

    fn node(&mut self, v: &Value) -> Result<Node, String> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(format!(
                "{}: the fleet holds more than {MAX_VALUES} values",
                self.at()
            ));
        }
        Ok(match v {
            Value::Nil => Node::Nil,
            Value::Boolean(b) => Node::Bool(*b),
            Value::Integer(i) => Node::Int(*i),
            Value::Number(n) => Node::Num(*n),
            Value::String(s) => match s.to_str() {
                Ok(text) => Node::Str(text.to_string()),
                Err(_) => {
                    return Err(format!("{}: expected UTF-8 text", self.at()));
                }
            },
            Value::Table(t) => {
                if self.path.len() >= super::api::args::MAX_DEPTH {
                    return Err(format!(
                        "{}: tables nest more than {} deep",
                        self.at(),
                        super::api::args::MAX_DEPTH
                    ));
                }
                self.table(t)?
            }
            other => Node::Unsupported(super::api::args::type_name(other)),
        })
    }

    fn table(&mut self, t: &mlua::Table) -> Result<Node, String> {
        let mut strings: Vec<(tree::Key, Node)> = Vec::new();
        let mut numbered: Vec<(i64, Node)> = Vec::new();
        let mut odd: Option<String> = None;
        // `for_each` walks the table in one protected call (`pairs` makes one for each key); the walk's own
        // error waits in `failed` while a placeholder stops the iteration.
        let mut failed: Option<String> = None;
        let walked = t.for_each::<Value, Value>(|k, v| {
            let step = match &k {
                Value::String(s) => match s.to_str() {
                    Ok(text) if self.skip_hosts && self.path.is_empty() && text == "hosts" => {
                        Ok(())
                    }
                    Ok(text) => {
                        self.path.push(Seg::Key(tree::key(&text)));
                        let node = self.node(&v);
                        match (node, self.path.pop()) {
                            (Ok(node), Some(Seg::Key(key))) => {
                                strings.push((key, node));
                                Ok(())
                            }
                            (Err(e), _) => Err(e),
                            (Ok(_), _) => Ok(()),
                        }
                    }
                    Err(_) => Err(format!("{}: a key is not UTF-8 text", self.at())),
                },
                Value::Integer(i) => {
                    self.path.push(Seg::Index(*i));
                    let node = self.node(&v);
                    self.path.pop();
                    node.map(|node| numbered.push((*i, node)))
                }
                other => {
                    odd.get_or_insert_with(|| match other {
                        Value::Number(n) => n.to_string(),
                        Value::Boolean(b) => b.to_string(),
                        v => format!("of type {}", super::api::args::type_name(v)),
                    });
                    Ok(())
                }
            };
            step.map_err(|e| {
                failed = Some(e);
                mlua::Error::runtime("")
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walked.map_err(|e| format!("{}: {e}", self.at()))?;
        numbered.sort_unstable_by_key(|(i, _)| *i);
        let gap = numbered
            .iter()
            .enumerate()
            .find(|(at, (i, _))| *i != *at as i64 + 1)
            .map(|(_, (i, _))| i.to_string());
        Ok(match (strings.is_empty(), numbered.is_empty()) {
            _ if odd.is_some() => Node::Mixed(odd.unwrap_or_default()),
            (true, true) => Node::Empty,
            (false, true) => Node::Map(strings),
            (true, false) => match gap {
                None => Node::List(numbered.into_iter().map(|(_, n)| n).collect()),
                Some(key) => Node::Mixed(key),
            },
            // `{"a", x = 1}`: in a list the string key does not belong; in a map, the numbers do not.
            (false, false) => Node::Mixed(crate::core::text::shown(&strings[0].0)),
        })
    }
}

//! Reads the fleet file: a Lua file returning a table, decoded into the core's serde schema.
use std::path::Path;

use mlua::Value;

use crate::core::fleet::tree::Node;
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

/// Evaluates a fleet file in a plain Lua state (no baton globals) and validates the table it returns.
pub fn load_file(path: &Path) -> Result<Fleet, FleetError> {
    let shown = path.display();
    let src = std::fs::read(path)
        .map_err(|e| FleetError(format!("cannot read fleet file {shown}: {e}")))?;
    let lua = mlua::Lua::new();
    // A fleet file that never finishes or allocates without bound gives an error, not a hang or an abort.
    let limited = super::runtime::install_guard(&lua, FLEET_MEMORY).map(|()| {
        super::runtime::set_deadline(
            &lua,
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
    super::runtime::set_deadline(&lua, None, "");
    if !value.is_table() {
        return Err(FleetError(format!(
            "fleet file {shown} must return a table, got {}",
            value.type_name()
        )));
    }
    let tree = tree(&value).map_err(|e| FleetError(format!("{shown}: {e}")))?;
    drop(value);
    drop(lua);
    let mut fleet = Fleet::from_tree(&tree).map_err(|e| FleetError(format!("{shown}: {}", e.0)))?;
    fleet.source = Some(path.to_path_buf());
    // Relative ssh_config paths are relative to the fleet file, so a fleet folder can be moved as a whole.
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(cfg) = fleet.ssh_config.as_mut().filter(|c| c.is_relative()) {
        *cfg = dir.join(&cfg);
    }
    for host in fleet.hosts.values_mut() {
        if let Some(cfg) = host.ssh_config.as_mut().filter(|c| c.is_relative()) {
            *cfg = dir.join(&cfg);
        }
    }
    Ok(fleet)
}

/// The most values a fleet file's table may hold (a table shared many times counts each time).
const MAX_VALUES: usize = 20_000_000;

/// The fleet file's table as plain values: one walk over it, which also refuses what serde could not
/// report well (text that is not UTF-8, tables nested past [`MAX_DEPTH`](super::api::args::MAX_DEPTH),
/// a cycle, a table shared so often that it would blow up) with the path of the value.
fn tree(root: &Value) -> Result<Node, String> {
    let mut walk = Walk {
        path: Vec::new(),
        values: 0,
    };
    walk.node(root)
}

struct Walk {
    /// The keys from the root to the value being read, for messages.
    path: Vec<Seg>,
    values: usize,
}

/// One step of a path: a string key (`hosts`) or a list index (`[1]`).
enum Seg {
    Key(String),
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
        let mut strings: Vec<(String, Node)> = Vec::new();
        let mut numbered: Vec<(i64, Node)> = Vec::new();
        let mut odd: Option<String> = None;
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| format!("{}: {e}", self.at()))?;
            match &k {
                Value::String(s) => {
                    let key = s
                        .to_str()
                        .map(|k| k.to_string())
                        .map_err(|_| format!("{}: a key is not UTF-8 text", self.at()))?;
                    self.path.push(Seg::Key(key));
                    let node = self.node(&v)?;
                    if let Some(Seg::Key(key)) = self.path.pop() {
                        strings.push((key, node));
                    }
                }
                Value::Integer(i) => {
                    self.path.push(Seg::Index(*i));
                    let node = self.node(&v)?;
                    self.path.pop();
                    numbered.push((*i, node));
                }
                other => {
                    odd.get_or_insert_with(|| match other {
                        Value::Number(n) => n.to_string(),
                        Value::Boolean(b) => b.to_string(),
                        v => format!("of type {}", super::api::args::type_name(v)),
                    });
                }
            }
        }
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

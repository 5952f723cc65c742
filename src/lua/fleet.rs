//! Reads the fleet file: a Lua file returning a table, decoded into the core's serde schema.
use std::path::Path;

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
    super::api::args::check_depth("fleet file", 1, "table", &value)
        .map_err(|e| FleetError(format!("{shown}: {}", super::split_error(&e).0)))?;
    let de = mlua::serde::Deserializer::new_with_options(
        value,
        mlua::serde::de::Options::new().deny_unsupported_types(true),
    );
    let mut fleet =
        Fleet::from_deserializer(de).map_err(|e| FleetError(format!("{shown}: {}", e.0)))?;
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

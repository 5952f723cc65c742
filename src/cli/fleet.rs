//! `baton fleet [--json]`: the loaded fleet as tables (hosts, tiers, tasks by tier), then budget and
//! OpenRouter settings. The key itself is never shown, only whether it is set.
use std::collections::BTreeMap;
use std::process::ExitCode;

use super::Out;
use super::table::Table;
use crate::core::fleet::Fleet;

pub fn show(fleet: &Fleet, json: bool) -> anyhow::Result<ExitCode> {
    fleet.check_hosts()?;
    let mut out = Out::new();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&fleet.view())?)?;
    } else {
        out.write_all(text(fleet).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn text(fleet: &Fleet) -> String {
    let view = fleet.view();
    let mut text = match &fleet.source {
        Some(path) => format!("fleet: {}\n", path.display()),
        None => format!(
            "fleet: built-in default (no fleet file; create {} or pass --fleet)\n",
            crate::core::fleet::config_dir().join("fleet.lua").display()
        ),
    };
    let mut hosts = Table::new(["HOST", "SSH", "ROLE", "TAGS", "OLLAMA", "PARALLEL"]);
    for (name, h) in &view.hosts {
        hosts.row([
            name.clone(),
            fleet.ssh_dest(name).unwrap_or("(this machine)").to_string(),
            h.role.clone().unwrap_or_default(),
            h.tags.join(","),
            h.ollama.clone().unwrap_or_default(),
            if h.ollama.is_some() {
                h.ollama_parallel.to_string()
            } else {
                String::new()
            },
        ]);
    }
    text.push_str(&format!("\n{hosts}"));

    let mut tiers = Table::new(["TIER", "PROVIDER", "HOST", "MODELS", "PRICE in/out $/M"]);
    for t in &view.tiers {
        let mut models: Vec<String> = t
            .models
            .iter()
            .map(|(role, m)| format!("{role}={m}"))
            .collect();
        if let Some(m) = &t.model
            && !t.models.values().any(|v| v == m)
        {
            models.insert(0, m.clone());
        }
        tiers.row([
            t.name.clone(),
            t.provider.name().to_string(),
            t.host.clone().unwrap_or_default(),
            models.join(" "),
            t.price
                .map(|p| format!("{} / {}", p.input, p.output))
                .unwrap_or_else(|| "free".into()),
        ]);
    }
    text.push_str(&format!("\n{tiers}"));

    let mut by_tier: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (kind, rule) in &view.tasks {
        let label = match &rule.model {
            Some(m) => format!("{kind}({m})"),
            None => kind.clone(),
        };
        by_tier.entry(rule.tier.as_str()).or_default().push(label);
    }
    let mut tasks = Table::new(["TIER", "TASKS"]);
    for t in &view.tiers {
        if let Some(kinds) = by_tier.get(t.name.as_str()) {
            tasks.row([t.name.clone(), kinds.join(" ")]);
        }
    }
    text.push_str(&format!("\n{tasks}\n"));

    match view.budget {
        Some(b) => text.push_str(&format!(
            "budget: ${} a month, alert at {:.0}%\n",
            b.monthly_usd,
            b.alert_at * 100.0
        )),
        None => text.push_str("budget: none (paid tiers are not capped)\n"),
    }
    text.push_str(&format!(
        "openrouter: {} (key from ${}: {})\n",
        view.openrouter.base_url,
        view.openrouter.key_env,
        if view.openrouter.key_set {
            "set"
        } else {
            "not set"
        }
    ));
    text
}

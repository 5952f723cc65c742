//! `baton fleet [--json]`: the loaded fleet as tables (hosts, tiers, tasks by tier), then budget and
//! OpenRouter settings. The key itself is never shown, only whether it is set. `baton fleet --init [PATH]`
//! writes a commented starter fleet file.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

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

/// `baton fleet --init [PATH]`: writes [`starter`] to PATH (default: `fleet.lua` in the config folder, where
/// baton looks without `--fleet` or `$BATON_FLEET`), creating its folder; an existing file is never
/// overwritten. Prints where it wrote and what to do next.
pub fn init(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let default = crate::core::fleet::config_dir().join("fleet.lua");
    let path = path.unwrap_or_else(|| default.clone());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("fleet --init: cannot create the folder {}", dir.display()))?;
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
            "fleet --init: {} already exists and is left as it is; edit it, or give another path \
             (`baton fleet --init other.lua`)",
            path.display()
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("fleet --init: cannot create {}", path.display())));
        }
    };
    file.write_all(starter().as_bytes())
        .with_context(|| format!("fleet --init: cannot write {}", path.display()))?;
    let mut out = Out::new();
    writeln!(out, "wrote {}", path.display())?;
    let is_default = std::path::absolute(&path).ok() == std::path::absolute(&default).ok();
    if is_default {
        writeln!(
            out,
            "baton reads it from now on (unless --fleet or $BATON_FLEET names another); \
             adapt it, then check it with `baton fleet` and `baton doctor`"
        )?;
    } else {
        writeln!(
            out,
            "use it with `--fleet {0}` or `export BATON_FLEET={0}`, or move it to {1}; \
             then check it with `baton fleet` and `baton doctor`",
            path.display(),
            default.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The starter fleet file: the built-in fleet written out (this machine as `local`, its Ollama, the
/// default tiers and tasks, a $10 budget), with the other settings as comments.
fn starter() -> String {
    let builtin = Fleet::builtin();
    let ollama = builtin
        .view()
        .hosts
        .get("local")
        .and_then(|h| h.ollama.clone())
        .unwrap_or_else(|| crate::core::fleet::DEFAULT_OLLAMA.to_string());
    // A Rust debug string is a valid Lua string literal for a URL (quotes and backslashes escaped).
    STARTER.replace("\"{OLLAMA}\"", &format!("{ollama:?}"))
}

/// [`starter`]'s text; `"{OLLAMA}"` becomes the local Ollama URL.
const STARTER: &str = r#"-- The fleet file: the machines baton drives, the model tiers, the budget. Written by
-- `baton fleet --init` with what baton used while there was no fleet file; adapt it. `baton fleet` shows
-- what baton reads from it (defaults filled in), `baton doctor` checks it for real, and a typo is reported
-- with its path (`hosts.local.olama: unknown key, did you mean ollama?`).
return {
  hosts = {
    -- This machine. `ssh = false` runs commands right here. (`local` is a Lua keyword, hence ["local"].)
    ["local"] = { ssh = false, role = "workstation", ollama = "{OLLAMA}" },

    -- Another machine: `ssh` is any OpenSSH destination (default: the host's name, so a `Host` entry in
    -- ~/.ssh/config just works). `ollama` when it serves models; `mac` to wake it with ssh.wake.
    -- server = { ssh = "me@server.local", role = "server", tags = { "ci" } },
    -- gpu = { ssh = "gpu", ollama = "http://gpu.local:11434", ollama_parallel = 4, mac = "a8:a1:59:12:34:56" },
  },

  -- Model tiers, cheapest first; prices in USD per million tokens. Left out, baton uses these defaults:
  -- a local Ollama tier on the first host with `ollama`, then two OpenRouter tiers.
  -- tiers = {
  --   { name = "local", provider = "ollama", host = "local",
  --     models = { code = "qwen2.5-coder:32b", reason = "deepseek-r1:32b" } },
  --   { name = "cheap", provider = "openrouter", model = "anthropic/claude-sonnet-4.5", price = { input = 3, output = 15 } },
  --   { name = "premium", provider = "openrouter", model = "anthropic/claude-opus-4.6", price = { input = 15, output = 75 } },
  -- },

  -- Which tier a kind of task starts at (left out: the default table `baton fleet` prints).
  -- tasks = { code_review = { tier = "cheap" } },

  -- The OpenRouter key stays in the environment; only the variable's name is here.
  -- openrouter = { key_env = "OPENROUTER_API_KEY" },

  -- Where failing scheduled jobs and `baton.notify` report.
  -- notify = { ntfy = { url = "https://ntfy.sh", topic = "baton-me-7f3a" }, desktop = true },

  -- Paid calls reserve their worst case before they are sent, so spend never passes this (UTC month).
  budget = { monthly_usd = 10, alert_at = 0.8 },
}
"#;

fn text(fleet: &Fleet) -> String {
    let view = fleet.view();
    let mut text = match &fleet.source {
        Some(path) => format!("fleet: {}\n", path.display()),
        None => format!(
            "fleet: built-in default (no fleet file; `baton fleet --init` writes a starter to {}, or pass --fleet)\n",
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
            "budget: {} a month, alert at {:.0}%\n",
            crate::core::text::money(b.monthly_usd),
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

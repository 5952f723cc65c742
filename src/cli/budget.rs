//! `baton budget sync [--hash HASH]`: sets the OpenRouter key's own limit to the fleet's monthly budget
//! (`limit_reset = "monthly"`), so the provider enforces the ceiling even for calls that never pass through
//! baton. Needs a management key in `$OPENROUTER_MANAGEMENT_KEY`; the key to limit is the one baton uses
//! (found by its label among the management key's keys), or `--hash`.
use std::process::ExitCode;

use super::{Cli, Out, load_fleet};
use crate::core::llm::openai::OpenAi;
use crate::core::secret::Secret;

/// Where the management key is read from.
pub const MANAGEMENT_KEY_ENV: &str = "OPENROUTER_MANAGEMENT_KEY";

pub fn sync(cli: &Cli, hash: Option<&str>) -> anyhow::Result<ExitCode> {
    let fleet = load_fleet(cli)?;
    let Some(budget) = fleet.budget else {
        anyhow::bail!("budget sync: the fleet has no budget (set budget = {{ monthly_usd = … }})");
    };
    let Some(management) = std::env::var(MANAGEMENT_KEY_ENV)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .map(Secret::new)
    else {
        anyhow::bail!(
            "budget sync: no management key: create one on openrouter.ai and set the environment variable {MANAGEMENT_KEY_ENV}"
        );
    };
    let client = OpenAi::from_fleet(&fleet);
    let limit = budget.monthly_usd;
    let said = crate::lua::runtime::block_on(async {
        let (label, hash) = match hash {
            Some(h) => (h.to_string(), h.to_string()),
            None => {
                let label = client.key_label().await?;
                let hash = client.key_hash(&management, &label).await?;
                (label, hash)
            }
        };
        client.set_monthly_limit(&management, &hash, limit).await?;
        Ok::<_, crate::core::llm::LlmError>(label)
    })?
    .map_err(|e| anyhow::anyhow!("budget sync: {e}"))?;
    writeln!(
        Out::new(),
        "key {said}: limit {} per month (resets monthly, UTC), enforced by {}",
        crate::core::text::money(limit),
        client.name()
    )?;
    Ok(ExitCode::SUCCESS)
}

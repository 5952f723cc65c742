//! `tiers`, `tasks`, `openrouter` and `budget`: which model serves which kind of task, and at what price.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Fleet, FleetError, map_or_empty};
use crate::core::wording::suggest;

pub const DEFAULT_OLLAMA: &str = "http://127.0.0.1:11434";
pub const DEFAULT_OPENROUTER_BASE: &str = "https://openrouter.ai/api/v1";
pub const DEFAULT_KEY_ENV: &str = "OPENROUTER_API_KEY";
pub const DEFAULT_OLLAMA_PARALLEL: u32 = 4;

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
    /// The instruction `baton ask TASK` puts before the user's prompt and input (`""`: none). Unset, a
    /// known kind has its default ([`TaskKind::prompt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
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

/// A task kind baton knows: its default tier and model role, and the instruction `baton ask` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKind {
    pub kind: &'static str,
    pub tier: &'static str,
    pub role: Option<&'static str>,
    /// What the model is asked to do with the user's text (`baton ask commit_message` on a piped diff).
    pub prompt: &'static str,
}

/// The task kinds baton knows, with their default tier and model role (`baton fleet` lists them).
pub const DEFAULT_TASKS: &[TaskKind] = &[
    TaskKind {
        kind: "code_generation",
        tier: "local",
        role: Some("code"),
        prompt: "Write the code asked for below. Answer with the code first, then at most a few lines on anything the reader must know.",
    },
    TaskKind {
        kind: "test_generation",
        tier: "local",
        role: Some("code"),
        prompt: "Write tests for the code below: the normal cases, the edge cases and the errors. Answer with the test code only.",
    },
    TaskKind {
        kind: "lint",
        tier: "local",
        role: Some("code"),
        prompt: "Lint the code below: list each bug, risky construct or style problem with its line and a fix, most serious first. If there is none, answer \"no problems found\".",
    },
    TaskKind {
        kind: "commit_message",
        tier: "local",
        role: Some("code"),
        prompt: "Write a git commit message for the change below: a summary line of at most 72 characters in the imperative mood, a blank line, then a short body that says what changed and why. Answer with the message only, without code fences.",
    },
    TaskKind {
        kind: "refactor",
        tier: "local",
        role: Some("code"),
        prompt: "Refactor the code below for clarity without changing its behaviour. Answer with the new code, then a short list of what changed.",
    },
    TaskKind {
        kind: "story_drafting",
        tier: "local",
        role: Some("reason"),
        prompt: "Draft a user story from the request below: a title, \"As a … I want … so that …\", and acceptance criteria a tester can check.",
    },
    TaskKind {
        kind: "backlog_grooming",
        tier: "local",
        role: Some("reason"),
        prompt: "Groom the backlog items below: merge duplicates, split items that are too large, and order them by value and risk, one line of reasoning each.",
    },
    TaskKind {
        kind: "bug_hunting",
        tier: "local",
        role: Some("reason"),
        prompt: "Find the bugs in the code or log below. For each: where it is, why it is wrong, and how to fix it.",
    },
    TaskKind {
        kind: "exploration",
        tier: "local",
        role: Some("reason"),
        prompt: "Explore the question below: lay out the options, their trade-offs, and what to try first.",
    },
    TaskKind {
        kind: "elaboration",
        tier: "local",
        role: Some("reason"),
        prompt: "Elaborate the idea below into a concrete plan: goals, steps, risks and open questions.",
    },
    TaskKind {
        kind: "elaboration_escalated",
        tier: "cheap",
        role: None,
        prompt: "Elaborate the idea below into a concrete plan: goals, steps, risks and open questions.",
    },
    TaskKind {
        kind: "gap_analysis",
        tier: "cheap",
        role: None,
        prompt: "Compare what is wanted with what exists in the text below and list the gaps, each with why it matters and what would close it.",
    },
    TaskKind {
        kind: "code_review",
        tier: "cheap",
        role: None,
        prompt: "Review the change below as a senior engineer would: correctness, security, tests, readability. Give a verdict (approve or request changes) first, then the findings, most important first.",
    },
    TaskKind {
        kind: "decision_gate",
        tier: "cheap",
        role: None,
        prompt: "Decide on the proposal below: answer go or no-go first, then the reasons and any conditions.",
    },
    TaskKind {
        kind: "qa_verification",
        tier: "cheap",
        role: None,
        prompt: "Check whether the result below meets its requirements: answer pass or fail first, then the evidence for each requirement.",
    },
    TaskKind {
        kind: "architecture",
        tier: "premium",
        role: None,
        prompt: "Propose an architecture for the problem below: the components, their boundaries and data flow, the trade-offs, and the alternatives you rejected and why.",
    },
    TaskKind {
        kind: "conflict_resolution",
        tier: "premium",
        role: None,
        prompt: "Resolve the conflict below (a merge conflict, or proposals that disagree): give the resolved result, then explain the choice.",
    },
    TaskKind {
        kind: "novel",
        tier: "premium",
        role: None,
        prompt: "Think the hard problem below through carefully and give your best solution with its reasoning.",
    },
];

impl Fleet {
    /// `tiers` (names, providers, hosts, models, prices) and `tasks` (each to a tier and model role that
    /// exist).
    pub(super) fn validate_llm(&self) -> Result<(), FleetError> {
        let err = |path: String, msg: &str| Err(FleetError(format!("{path}: {msg}")));
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
                    match self.hosts.lookup(&host)? {
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
        Ok(())
    }

    /// `budget`: a non-negative amount and an alert fraction in (0, 1].
    pub(super) fn validate_budget(&self) -> Result<(), FleetError> {
        let err = |path: String, msg: &str| Err(FleetError(format!("{path}: {msg}")));
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
            .filter(|k| tiers.iter().any(|t| t.name == k.tier))
            .map(|k| {
                (
                    k.kind.to_string(),
                    TaskRule {
                        tier: k.tier.to_string(),
                        model: k.role.map(str::to_string),
                        prompt: None,
                    },
                )
            })
            .collect()
    }

    /// The instruction `baton ask` gives a task: the fleet's `tasks.KIND.prompt`, else the default of a
    /// kind baton knows; `None` for an unknown kind or a prompt set to `""`.
    pub fn task_prompt(&self, kind: &str) -> Option<String> {
        let own = self
            .tasks
            .as_ref()
            .and_then(|t| t.get(kind))
            .and_then(|rule| rule.prompt.clone());
        own.or_else(|| {
            DEFAULT_TASKS
                .iter()
                .find(|k| k.kind == kind)
                .map(|k| k.prompt.to_string())
        })
        .filter(|p| !p.trim().is_empty())
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
            .filter(|k| !routed.contains_key(k.kind))
            .map(|TaskKind { kind, tier, .. }| {
                let why = if self.is_builtin() && cloud.iter().any(|c| c == tier) {
                    format!("no ${key_env}")
                } else {
                    "not among the fleet's tiers".to_string()
                };
                (kind.to_string(), (tier.to_string(), why))
            })
            .collect()
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

/// A finite number at or above zero (NaN is not).
fn non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

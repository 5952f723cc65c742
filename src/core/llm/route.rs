//! Routing: task kind → tier → model, escalation one tier up on offline / error / rejection, a health
//! cooldown for endpoints that refused or timed out, and budget reservations for paid tiers.
//!
//! Everything [`Router::pick`] needs is computed once in [`Router::new`] (tier and task tables as hash maps,
//! each tier's endpoint key), so a pick is a few lookups and a cooldown check.
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ledger::{self, Alert, Ledger, Row};
use super::ollama::{self, Ollama};
use super::openai::{self, OpenAi};
use super::{Callback, LocalFuture, Message, OnToken};
use crate::core::fleet::{Budget, Fleet, Price, Provider};
use crate::core::schema::suggest;
use crate::core::state::StateError;

/// How long an endpoint that refused or timed out is skipped.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// `max_tokens` for paid tiers when the caller gives none. It caps the answer and is the output side of the
/// worst case reserved against the budget (4096 tokens at $15/M is about $0.06).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Debug, Clone)]
struct TierInfo {
    name: String,
    provider: Provider,
    /// Fleet host (ollama tiers).
    host: Option<String>,
    endpoint: Option<ollama::Endpoint>,
    /// The model when the task names no role the tier has.
    model: String,
    models: BTreeMap<String, String>,
    price: Option<Price>,
    /// Key into the health table: the endpoint URL.
    health_key: String,
}

impl TierInfo {
    fn model_for(&self, role: Option<&str>) -> &str {
        role.and_then(|r| self.models.get(r))
            .map_or(self.model.as_str(), String::as_str)
    }
}

/// What `route.pick` takes: a kind, optionally bounded to a range of tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSpec {
    pub kind: String,
    pub min_tier: Option<String>,
    pub max_tier: Option<String>,
}

impl TaskSpec {
    pub fn kind(kind: &str) -> TaskSpec {
        TaskSpec {
            kind: kind.to_string(),
            ..TaskSpec::default()
        }
    }
}

/// `route.pick`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pick {
    pub task: String,
    pub tier: String,
    pub provider: &'static str,
    pub host: Option<String>,
    pub model: String,
    pub reason: String,
}

/// How one attempt of `route.ask` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Offline,
    Error,
    Rejected,
    Budget,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Offline => "offline",
            Outcome::Error => "error",
            Outcome::Rejected => "rejected",
            Outcome::Budget => "budget",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub tier: String,
    pub model: String,
    pub outcome: Outcome,
    pub err: Option<String>,
}

/// `route.ask`'s answer (also what `accept` sees). `cost` and token counts add up every attempt so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub text: String,
    pub tier: String,
    pub provider: &'static str,
    pub model: String,
    pub cost: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub attempts: Vec<Attempt>,
}

/// `accept`'s say on an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(Option<String>),
}

/// `route.ask`'s options.
#[derive(Debug, Clone, Default)]
pub struct AskOptions {
    pub system: Option<String>,
    pub max_tier: Option<String>,
    pub max_tokens: Option<u32>,
    /// The script, for the ledger.
    pub script: Option<String>,
}

pub type Accept<'a> = &'a mut dyn FnMut(&Answer) -> LocalFuture<'static, Result<Verdict, String>>;
pub type OnAlert<'a> = Callback<'a, Alert>;

/// The callbacks of one ask.
#[derive(Default)]
pub struct Hooks<'a> {
    pub on_token: Option<OnToken<'a>>,
    pub accept: Option<Accept<'a>>,
    pub on_alert: Option<OnAlert<'a>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown tier {name:?}{hint} (tiers: {tiers})")]
    UnknownTier {
        name: String,
        hint: String,
        tiers: String,
    },
    #[error("no tier to try: the fleet defines none{0}")]
    NoTiers(String),
    #[error("no tier left after {} attempt{}: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, describe(.0))]
    Exhausted(Vec<Attempt>),
    #[error("{0}")]
    Callback(String),
    #[error(transparent)]
    State(#[from] StateError),
}

fn describe(attempts: &[Attempt]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .map(|a| match &a.err {
            Some(e) => format!("{} ({}): {}: {e}", a.tier, a.model, a.outcome.name()),
            None => format!("{} ({}): {}", a.tier, a.model, a.outcome.name()),
        })
        .collect();
    parts.join("; ")
}

/// The router over one fleet. Clients are shared with the `ollama`/`openrouter` APIs (same limiter).
#[derive(Debug)]
pub struct Router {
    tiers: Vec<TierInfo>,
    tier_index: HashMap<String, usize>,
    tasks: HashMap<String, (usize, Option<String>)>,
    budget: Option<Budget>,
    /// Endpoint key → (skip until, why).
    health: Mutex<HashMap<String, (Instant, String)>>,
    pub cooldown: Duration,
    ollama: Ollama,
    openai: OpenAi,
    ledger: Ledger,
}

impl Router {
    pub fn new(fleet: &Fleet, ollama: Ollama, openai: OpenAi, ledger: Ledger) -> Router {
        let tiers: Vec<TierInfo> = fleet
            .tiers()
            .into_iter()
            .map(|t| {
                let endpoint = (t.provider == Provider::Ollama)
                    .then(|| ollama::resolve(fleet, t.host.as_deref()).ok())
                    .flatten();
                let health_key = endpoint
                    .as_ref()
                    .map_or_else(|| openai.base_url().to_string(), |e| e.url.clone());
                let model = t
                    .model
                    .clone()
                    .or_else(|| t.models.values().next().cloned())
                    .unwrap_or_default();
                TierInfo {
                    host: endpoint.as_ref().map(|e| e.name.clone()),
                    name: t.name,
                    provider: t.provider,
                    endpoint,
                    model,
                    models: t.models,
                    price: t.price,
                    health_key,
                }
            })
            .collect();
        let tier_index: HashMap<String, usize> = tiers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let tasks = fleet
            .tasks()
            .into_iter()
            .filter_map(|(kind, rule)| tier_index.get(&rule.tier).map(|&i| (kind, (i, rule.model))))
            .collect();
        Router {
            tiers,
            tier_index,
            tasks,
            budget: fleet.budget,
            health: Mutex::new(HashMap::new()),
            cooldown: DEFAULT_COOLDOWN,
            ollama,
            openai,
            ledger,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn tier(&self, name: &str) -> Result<usize, RouteError> {
        self.tier_index
            .get(name)
            .copied()
            .ok_or_else(|| RouteError::UnknownTier {
                name: name.to_string(),
                hint: suggest(name, self.tiers.iter().map(|t| t.name.as_str())),
                tiers: self
                    .tiers
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Why the tier's endpoint is being skipped, if it is cooling down.
    fn cooling(&self, tier: &TierInfo) -> Option<String> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let (until, why) = health.get(&tier.health_key)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "skipped for {} more after: {why}",
            crate::core::duration::format(left)
        ))
    }

    fn mark_down(&self, tier: &TierInfo, why: &str) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.insert(
            tier.health_key.clone(),
            (Instant::now() + self.cooldown, why.to_string()),
        );
    }

    /// The first tier to try, the highest allowed, the task's model role and why.
    /// With `skip_cooling`, tiers whose endpoint is cooling down are passed over (for `pick`; `ask` lists
    /// them as attempts instead).
    fn plan(
        &self,
        spec: &TaskSpec,
        skip_cooling: bool,
    ) -> Result<(usize, usize, Option<&str>, String), RouteError> {
        if self.tiers.is_empty() {
            return Err(RouteError::NoTiers(String::new()));
        }
        let lo = spec
            .min_tier
            .as_deref()
            .map(|t| self.tier(t))
            .transpose()?
            .unwrap_or(0);
        let hi = spec
            .max_tier
            .as_deref()
            .map(|t| self.tier(t))
            .transpose()?
            .unwrap_or(self.tiers.len() - 1);
        if lo > hi {
            return Err(RouteError::NoTiers(format!(
                " between min_tier {:?} and max_tier {:?}",
                self.tiers[lo].name, self.tiers[hi].name
            )));
        }
        let (want, role, mut reason) = match self.tasks.get(&spec.kind) {
            Some((i, role)) => (
                *i,
                role.as_deref(),
                format!("task {} → tier {}", spec.kind, self.tiers[*i].name),
            ),
            None => (
                lo,
                None,
                format!("unknown task kind {:?}: lowest tier that is up", spec.kind),
            ),
        };
        let mut start = want.clamp(lo, hi);
        if start != want {
            reason.push_str(&format!(", bounded to {}", self.tiers[start].name));
        }
        while skip_cooling
            && start < hi
            && let Some(why) = self.cooling(&self.tiers[start])
        {
            reason.push_str(&format!(", {} {why}", self.tiers[start].name));
            start += 1;
        }
        Ok((start, hi, role, reason))
    }

    /// `route.pick`: where a task would go now, without calling anything.
    pub fn pick(&self, spec: &TaskSpec) -> Result<Pick, RouteError> {
        let (start, _, role, reason) = self.plan(spec, true)?;
        let t = &self.tiers[start];
        Ok(Pick {
            task: spec.kind.clone(),
            tier: t.name.clone(),
            provider: t.provider.name(),
            host: t.host.clone(),
            model: t.model_for(role).to_string(),
            reason,
        })
    }

    /// `route.ask`: tries the chosen tier, then each higher one (up to `max_tier`) until an answer is
    /// accepted. Every attempt (skips included) is a ledger row.
    pub async fn ask(
        &self,
        spec: &TaskSpec,
        prompt: Vec<Message>,
        opts: &AskOptions,
        hooks: &mut Hooks<'_>,
    ) -> Result<Answer, RouteError> {
        let mut spec = spec.clone();
        if opts.max_tier.is_some() {
            spec.max_tier.clone_from(&opts.max_tier);
        }
        let (start, hi, role, _) = self.plan(&spec, false)?;
        let mut messages = Vec::with_capacity(prompt.len() + 1);
        if let Some(system) = &opts.system {
            messages.push(Message::new("system", system.clone()));
        }
        messages.extend(prompt);
        let estimate = estimate_tokens(&messages);
        let mut attempts: Vec<Attempt> = Vec::new();
        let (mut cost, mut tokens_in, mut tokens_out) = (0.0, 0, 0);
        for t in &self.tiers[start..=hi] {
            let model = t.model_for(role).to_string();
            let mut row = Row {
                script: opts.script.clone(),
                task: Some(spec.kind.clone()),
                tier: Some(t.name.clone()),
                provider: t.provider.name().to_string(),
                // The fleet host for Ollama; the endpoint (`openrouter` or its base URL) for the cloud.
                host: t
                    .host
                    .clone()
                    .or_else(|| Some(self.openai.name().to_string())),
                model: model.clone(),
                cost_source: "unknown".into(),
                sent: false,
                ..Row::default()
            };
            let mut attempt = Attempt {
                tier: t.name.clone(),
                model: model.clone(),
                outcome: Outcome::Offline,
                err: None,
            };
            if let Some(why) = self.cooling(t) {
                attempt.err = Some(why);
                self.finish(&mut attempts, attempt, row, None, hooks)
                    .await?;
                continue;
            }
            // Reserve the worst case before a paid call.
            let max_tokens = opts.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
            let mut reservation = None;
            if let (Provider::Openrouter, Some(b)) = (t.provider, self.budget) {
                let worst = t
                    .price
                    .map_or(0.0, |p| openai::price_of(p, estimate, max_tokens as u64));
                match self
                    .ledger
                    .reserve(&ledger::this_month(), worst, b.monthly_usd)
                    .await?
                {
                    Some(id) => reservation = Some(id),
                    None => {
                        attempt.outcome = Outcome::Budget;
                        attempt.err = Some(format!(
                            "worst case ${worst:.4} does not fit what is left of ${} this month",
                            b.monthly_usd
                        ));
                        self.finish(&mut attempts, attempt, row, None, hooks)
                            .await?;
                        continue;
                    }
                }
            }
            row.sent = true;
            let started = Instant::now();
            let result = match (t.provider, &t.endpoint) {
                (Provider::Ollama, Some(ep)) => {
                    let options = opts
                        .max_tokens
                        .map(|n| serde_json::json!({ "num_predict": n }));
                    let req = ollama::ChatRequest {
                        model: model.clone(),
                        messages: messages.clone(),
                        options,
                        ..Default::default()
                    };
                    self.ollama
                        .chat(ep, &req, None, super::lend(&mut hooks.on_token))
                        .await
                        .map(|c| {
                            // Local models are free unless the fleet prices the tier (power, hardware).
                            let (cost, source) = match t.price {
                                Some(p) => {
                                    (openai::price_of(p, c.tokens_in, c.tokens_out), "pricing")
                                }
                                None => (0.0, "unknown"),
                            };
                            (c.text, c.tokens_in, c.tokens_out, cost, source)
                        })
                }
                (Provider::Ollama, None) => Err(super::LlmError::new(
                    &t.name,
                    Some(&model),
                    super::ErrorKind::UnknownHost("the tier's host has no `ollama` URL".into()),
                )),
                (Provider::Openrouter, _) => {
                    let req = openai::ChatRequest {
                        model: model.clone(),
                        messages: messages.clone(),
                        max_tokens: Some(max_tokens),
                        ..Default::default()
                    };
                    self.openai
                        .chat(&req, t.price, None, super::lend(&mut hooks.on_token))
                        .await
                        .map(|c| {
                            (
                                c.text,
                                c.tokens_in,
                                c.tokens_out,
                                c.cost,
                                c.cost_source.name(),
                            )
                        })
                }
            };
            row.duration = started.elapsed().as_secs_f64();
            match result {
                Err(e) if matches!(e.kind, super::ErrorKind::Callback(_)) => {
                    attempt.outcome = Outcome::Error;
                    attempt.err = Some(e.to_string());
                    self.finish(&mut attempts, attempt, row, reservation, hooks)
                        .await?;
                    return Err(RouteError::Callback(e.to_string()));
                }
                Err(e) => {
                    if e.kind.is_offline() {
                        self.mark_down(t, &e.kind.to_string());
                    } else {
                        attempt.outcome = Outcome::Error;
                    }
                    attempt.err = Some(e.to_string());
                    self.finish(&mut attempts, attempt, row, reservation, hooks)
                        .await?;
                }
                Ok((text, t_in, t_out, c, source)) => {
                    (row.tokens_in, row.tokens_out, row.cost, row.cost_source) =
                        (t_in, t_out, c, source.to_string());
                    cost += c;
                    tokens_in += t_in;
                    tokens_out += t_out;
                    attempt.outcome = Outcome::Ok;
                    let mut answer = Answer {
                        text,
                        tier: t.name.clone(),
                        provider: t.provider.name(),
                        model,
                        cost,
                        tokens_in,
                        tokens_out,
                        attempts: attempts.clone(),
                    };
                    answer.attempts.push(attempt.clone());
                    let verdict = match hooks.accept.as_mut() {
                        Some(accept) => accept(&answer).await.map_err(RouteError::Callback)?,
                        None => Verdict::Accept,
                    };
                    if let Verdict::Reject(why) = verdict {
                        attempt.outcome = Outcome::Rejected;
                        attempt.err = why;
                        self.finish(&mut attempts, attempt, row, reservation, hooks)
                            .await?;
                        continue;
                    }
                    self.finish(&mut attempts, attempt, row, reservation, hooks)
                        .await?;
                    answer.attempts = attempts;
                    return Ok(answer);
                }
            }
        }
        Err(RouteError::Exhausted(attempts))
    }

    /// Records the attempt (settling any reservation) and fires the budget alert when it is crossed.
    async fn finish(
        &self,
        attempts: &mut Vec<Attempt>,
        attempt: Attempt,
        mut row: Row,
        reservation: Option<i64>,
        hooks: &mut Hooks<'_>,
    ) -> Result<(), RouteError> {
        row.outcome = attempt.outcome.name().to_string();
        row.err.clone_from(&attempt.err);
        attempts.push(attempt);
        let budget = self.budget.map(|b| (b.monthly_usd, b.alert_at));
        if let Some(alert) = self.ledger.settle(reservation, row, budget).await? {
            tracing::warn!(
                spent = alert.spent,
                limit = alert.limit,
                "LLM spend this month has reached ${:.2} of ${:.2}",
                alert.spent,
                alert.limit
            );
            if let Some(cb) = hooks.on_alert.as_mut() {
                cb(alert).await.map_err(|e| RouteError::Callback(e.0))?;
            }
        }
        Ok(())
    }
}

/// A deliberately high estimate of prompt tokens (one per 3 bytes, plus framing per message), so the
/// reserved worst case is not below what the provider charges for typical text.
pub fn estimate_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| (m.content.len() as u64).div_ceil(3) + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::llm::Timeouts;
    use crate::core::state::State;
    use serde_json::json;

    fn router(fleet: serde_json::Value) -> Router {
        let fleet = Fleet::from_deserializer(fleet).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "baton-route-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Router::new(
            &fleet,
            Ollama::default(),
            OpenAi::new("http://127.0.0.1:9/v1", "K", None, Timeouts::default()),
            Ledger::new(State::new(dir)),
        )
    }

    fn default_fleet() -> serde_json::Value {
        json!({"hosts": {"engine": {"ollama": "http://engine:11434"}}})
    }

    #[test]
    fn picks_follow_the_task_table() {
        let r = router(default_fleet());
        let p = r.pick(&TaskSpec::kind("code_generation")).unwrap();
        assert_eq!(
            (
                p.tier.as_str(),
                p.provider,
                p.host.as_deref(),
                p.model.as_str()
            ),
            ("local", "ollama", Some("engine"), "qwen2.5-coder:32b")
        );
        assert_eq!(p.reason, "task code_generation → tier local");
        assert_eq!(
            r.pick(&TaskSpec::kind("bug_hunting")).unwrap().model,
            "deepseek-r1:32b"
        );
        let p = r.pick(&TaskSpec::kind("architecture")).unwrap();
        assert_eq!(
            (p.tier.as_str(), p.provider, p.host, p.model.as_str()),
            ("premium", "openrouter", None, "anthropic/claude-opus-4.6")
        );
        let p = r.pick(&TaskSpec::kind("haiku")).unwrap();
        assert_eq!(p.tier, "local");
        assert!(p.reason.contains("unknown task kind"), "{}", p.reason);
    }

    #[test]
    fn bounds_and_cooldown_move_the_pick() {
        let r = router(default_fleet());
        let spec = TaskSpec {
            kind: "architecture".into(),
            max_tier: Some("cheap".into()),
            ..Default::default()
        };
        let p = r.pick(&spec).unwrap();
        assert_eq!(
            (p.tier.as_str(), p.model.as_str()),
            ("cheap", "anthropic/claude-sonnet-4.5")
        );
        assert!(p.reason.ends_with("bounded to cheap"), "{}", p.reason);
        let spec = TaskSpec {
            kind: "lint".into(),
            min_tier: Some("cheap".into()),
            ..Default::default()
        };
        assert_eq!(r.pick(&spec).unwrap().tier, "cheap");
        let e = r
            .pick(&TaskSpec {
                kind: "x".into(),
                max_tier: Some("premum".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown tier \"premum\", did you mean premium? (tiers: local, cheap, premium)"
        );
        r.mark_down(&r.tiers[0], "connection refused");
        let p = r.pick(&TaskSpec::kind("lint")).unwrap();
        assert_eq!(p.tier, "cheap");
        assert!(
            p.reason
                .contains("local skipped for 30s more after: connection refused"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn pick_is_fast() {
        let r = router(default_fleet());
        let spec = TaskSpec::kind("code_review");
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(r.pick(std::hint::black_box(&spec)).unwrap());
        }
        let per = t.elapsed() / n;
        assert!(per < Duration::from_micros(20), "route.pick took {per:?}");
    }

    #[test]
    fn estimates_are_generous() {
        let m = [Message::new("user", "x".repeat(300))];
        assert_eq!(estimate_tokens(&m), 104);
    }
}

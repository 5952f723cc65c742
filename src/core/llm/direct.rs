//! Calls made directly from a playbook (`openrouter.chat`, `ollama.chat`, `ollama.generate`): no task and
//! no tier, but booked like `route.ask` through the one [`Budget`]: a ledger row before and after, a paid
//! call's worst case reserved against the budget first. One generic path ([`Llm::booked`]) books every
//! provider's calls.
use std::time::Instant;

use super::budget::Budget;
use super::cost::{self, CostSource, DEFAULT_MAX_TOKENS, estimate_tokens};
use super::ledger::{Outcome, Row};
use super::ollama::{self, Endpoint};
use super::openai;
use super::shape::Answered;
use super::{Clients, ErrorKind, Llm, LlmError, Message, OnToken, Wait};
use crate::core::fleet::{Price, Provider};

/// One direct call about to be booked: where it goes, what it may cost, whether the budget may refuse it.
#[derive(Debug, Clone)]
pub struct Booking<'a> {
    pub provider: Provider,
    /// The fleet host, or the endpoint's name.
    pub host: &'a str,
    pub model: &'a str,
    pub script: Option<String>,
    /// The fleet's price for the model (from the tier serving it).
    pub price: Option<Price>,
    /// The worst case reserved before sending.
    pub worst: f64,
    /// Whether the call costs money (see [`cost::paid`]): reserved against the budget, refusable.
    pub paid: bool,
}

impl Llm {
    /// The budget shared by `route.ask` and the direct calls.
    pub fn budget(&self) -> &Budget {
        self.router().budget()
    }

    /// How a direct call to `model` is booked: at the price of the fleet tier serving the model, paid as
    /// that price says, its worst case the prompt plus `max_tokens` (else [`DEFAULT_MAX_TOKENS`]) of answer.
    pub fn booking<'a>(
        &self,
        provider: Provider,
        host: &'a str,
        model: &'a str,
        prompt: &[Message],
        max_tokens: Option<u32>,
        script: Option<String>,
    ) -> Booking<'a> {
        let price = self.price_of(model);
        let paid = cost::paid(price, Clients::bills(provider));
        let worst = if paid {
            let max_tokens = max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
            cost::worst_case(price, estimate_tokens(prompt), max_tokens)
        } else {
            0.0
        };
        Booking {
            provider,
            host,
            model,
            script,
            price,
            worst,
            paid,
        }
    }

    /// `openrouter.chat`: reserved (with a budget and no `max_tokens`, [`DEFAULT_MAX_TOKENS`] is sent so
    /// the worst case is bounded), sent, settled.
    pub async fn openrouter_chat(
        &self,
        req: &openai::ChatRequest,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
        on_thinking: Option<OnToken<'_>>,
        script: Option<String>,
    ) -> Result<openai::Completion, LlmError> {
        let openai = self.openai();
        let mut req = req.clone();
        if self.budget().limit().is_some() && req.max_tokens.is_none() {
            req.max_tokens = Some(DEFAULT_MAX_TOKENS);
        }
        let b = self.booking(
            Provider::Openrouter,
            openai.name(),
            &req.model,
            &req.messages,
            req.max_tokens,
            script,
        );
        let call = openai.chat_thinking(&req, b.price, wait, on_token, on_thinking);
        self.booked(b, call).await
    }

    /// `ollama.chat`: a ledger row before and after; free (never refused for budget) unless the fleet
    /// prices a tier serving the model.
    pub async fn ollama_chat(
        &self,
        ep: &Endpoint,
        req: &ollama::ChatRequest,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
        on_thinking: Option<OnToken<'_>>,
        script: Option<String>,
    ) -> Result<ollama::Completion, LlmError> {
        let b = self.ollama_booking(ep, &req.model, &req.messages, &req.options, script);
        let call = self
            .ollama()
            .chat_thinking(ep, req, wait, on_token, on_thinking);
        self.booked(b, call).await
    }

    /// `ollama.generate`, booked like [`Llm::ollama_chat`].
    pub async fn ollama_generate(
        &self,
        ep: &Endpoint,
        req: &ollama::GenerateRequest,
        wait: impl Into<Wait>,
        on_token: Option<OnToken<'_>>,
        script: Option<String>,
    ) -> Result<ollama::Completion, LlmError> {
        let mut prompt = vec![Message::new("user", req.prompt.as_str())];
        prompt.extend(req.system.as_deref().map(|s| Message::new("system", s)));
        let b = self.ollama_booking(ep, &req.model, &prompt, &req.options, script);
        let call = self.ollama().generate(ep, req, wait, on_token);
        self.booked(b, call).await
    }

    /// An Ollama call's booking; its `max_tokens` is `options.num_predict`.
    fn ollama_booking<'a>(
        &self,
        ep: &'a Endpoint,
        model: &'a str,
        prompt: &[Message],
        options: &Option<serde_json::Value>,
        script: Option<String>,
    ) -> Booking<'a> {
        let max_tokens = ollama::num_predict(options).and_then(|n| u32::try_from(n).ok());
        self.booking(
            Provider::Ollama,
            &ep.name,
            model,
            prompt,
            max_tokens,
            script,
        )
    }

    /// Books `call`: its row written (and, when paid, its worst case reserved) before it is sent, and
    /// settled with the real figures after. A ledger that cannot book fails the call.
    pub async fn booked<C: Answered>(
        &self,
        b: Booking<'_>,
        call: impl Future<Output = Result<C, LlmError>>,
    ) -> Result<C, LlmError> {
        let budget = self.budget();
        let err = |kind| LlmError::new(b.host, Some(b.model), kind);
        let row = Row {
            script: b.script,
            provider: b.provider.name().to_string(),
            host: Some(b.host.to_string()),
            model: b.model.to_string(),
            ..Row::default()
        };
        let open = budget
            .open(row.clone(), b.worst, b.paid)
            .await
            .map_err(|e| err(e.into()))?;
        let started = Instant::now();
        let out = call.await;
        let mut row = Row {
            duration: started.elapsed().as_secs_f64(),
            sent: true,
            ..row
        };
        let ledger = |e: crate::core::state::StateError| err(ErrorKind::Ledger(e.to_string()));
        match out {
            Ok(mut c) => {
                (row.tokens_in, row.tokens_out) = c.tokens();
                let (cost, source) = c.cost(b.price);
                (row.cost, row.cost_source) = (cost, source.name().into());
                row.outcome = Outcome::Ok;
                Budget::check_cost(&mut row, open.reserved);
                let closed = budget.close(&open, row).await.map_err(ledger)?;
                if closed.cost_source == CostSource::Reserved.name() {
                    c.rebook(closed.cost);
                }
                Ok(c)
            }
            Err(e) => {
                row.cost_source = CostSource::Unknown.name().into();
                row.outcome = outcome_of(&e.kind);
                row.err = Some(e.to_string());
                // A call without a key never left this machine.
                row.sent = !matches!(e.kind, ErrorKind::MissingKey(_));
                budget.close(&open, row).await.map_err(ledger)?;
                Err(e)
            }
        }
    }
}

/// The ledger outcome of a failed call.
pub fn outcome_of(kind: &ErrorKind) -> Outcome {
    match kind {
        ErrorKind::KeyLimit(_) | ErrorKind::OverBudget(_) => Outcome::Budget,
        k if k.is_offline() => Outcome::Offline,
        _ => Outcome::Error,
    }
}

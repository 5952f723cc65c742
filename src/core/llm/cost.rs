//! What a call costs: a tier's price, whether its calls are paid, the prompt estimate, the worst case
//! reserved before sending, and where a reported cost came from. The clients, the router and the booking
//! all read it here, so none of them imports another for it.
use serde::{Deserialize, Serialize};

use super::Message;
use crate::core::fleet::Price;

/// `max_tokens` for paid calls when the caller gives none. It caps the answer and is the output side of
/// the worst case reserved against the budget (4096 tokens at $15/M is about $0.06).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Where a completion's `cost` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostSource {
    /// The API reported it (OpenRouter's `usage.cost`).
    Provider,
    /// Computed from the tier's price table and the reported token counts.
    Pricing,
    /// The stream reported no usage: tokens estimated from the prompt and the answer, priced by the tier.
    Estimate,
    /// The reported cost was implausible; the call's reserved worst case was booked instead.
    Reserved,
    Unknown,
}

impl CostSource {
    pub fn name(self) -> &'static str {
        match self {
            CostSource::Provider => "provider",
            CostSource::Pricing => "pricing",
            CostSource::Estimate => "estimate",
            CostSource::Reserved => "reserved",
            CostSource::Unknown => "unknown",
        }
    }
}

/// USD for the token counts at `price` (USD per million tokens).
pub fn price_of(price: Price, tokens_in: u64, tokens_out: u64) -> f64 {
    (tokens_in as f64 * price.input + tokens_out as f64 * price.output) / 1e6
}

/// The cost of counted tokens at `price` (`pricing`), or nothing known (`unknown`) without a price.
pub fn priced(price: Option<Price>, tokens_in: u64, tokens_out: u64) -> (f64, CostSource) {
    match price {
        Some(p) => (price_of(p, tokens_in, tokens_out), CostSource::Pricing),
        None => (0.0, CostSource::Unknown),
    }
}

/// Whether calls at `price` cost money, so the budget reserves their worst case and may refuse them: a
/// price above zero; without a price, whether the provider bills its calls (a cloud API does, a local
/// Ollama does not).
pub fn paid(price: Option<Price>, provider_bills: bool) -> bool {
    match price {
        Some(p) => p.input > 0.0 || p.output > 0.0,
        None => provider_bills,
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

/// The worst case of a call: `prompt` tokens (estimated) plus `max_tokens` of answer at `price`.
pub fn worst_case(price: Option<Price>, prompt: u64, max_tokens: u32) -> f64 {
    price.map_or(0.0, |p| price_of(p, prompt, max_tokens as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_is_per_million() {
        assert!(
            (price_of(
                Price {
                    input: 3.0,
                    output: 15.0
                },
                1_000_000,
                100_000
            ) - 4.5)
                .abs()
                < 1e-12
        );
    }

    #[test]
    fn paid_follows_the_price_then_the_provider() {
        let price = |input, output| Some(Price { input, output });
        assert!(paid(price(3.0, 15.0), false) && paid(price(0.0, 1.0), false));
        assert!(!paid(price(0.0, 0.0), true));
        assert!(paid(None, true) && !paid(None, false));
        assert_eq!(priced(None, 10, 10), (0.0, CostSource::Unknown));
        assert_eq!(priced(price(1e6, 0.0), 2, 9), (2.0, CostSource::Pricing));
    }

    #[test]
    fn estimates_are_generous() {
        let m = [Message::new("user", "x".repeat(300))];
        assert_eq!(estimate_tokens(&m), 104);
    }
}

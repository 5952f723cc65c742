//! The one place every LLM call books its money: `route.ask` and the direct `openrouter.chat`,
//! `ollama.chat` and `ollama.generate` all go through [`Budget::open`] before sending and
//! [`Budget::close`] after.
//!
//! - Before a call, its ledger row is written (outcome `sent`, the worst case reserved). A paid call (a
//!   cloud call while the fleet has a budget) is refused instead when the month's spend plus what calls
//!   under way hold plus its worst case would pass the budget. The month's spend is the larger of this
//!   ledger's and the provider's own figure (OpenRouter's `/key` → `usage_monthly`, cached in the state
//!   database and fetched at most once a minute), so several machines with their own state directories
//!   share one budget.
//! - After it, the row takes the real figures. A cost that is no number, negative, or beyond any single
//!   call's reason is replaced by the reserved worst case (with a warning); a real cost above the
//!   reservation is booked as it is (with a warning naming the model and both figures), so the next
//!   reservation sees the overrun.
use crate::core::text::money;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ErrorKind;
use super::ledger::{
    self, Alert, DayCost, GroupBy, Ledger, MonthTotals, Open, Opened, Outcome, Period,
    ProviderUsage, Refusal, Row, SpendRow,
};
use super::openai::OpenAi;
use crate::core::fleet;
use crate::core::state::StateError;

/// The provider's usage is fetched again after this long.
pub const PROVIDER_TTL: Duration = Duration::from_secs(60);

/// No single call costs more than this (USD); a reported cost above it is a provider error.
pub const MAX_CALL_USD: f64 = 1e6;

/// How long fetching the provider's usage may take before a reservation goes on with the ledger alone.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);

/// The budget over one ledger and one cloud endpoint. Shared by the router and the direct calls.
#[derive(Debug)]
pub struct Budget {
    ledger: Ledger,
    openai: OpenAi,
    limit: Option<fleet::Budget>,
    /// One fetch of the provider's usage at a time (the others then read the cache).
    fetching: tokio::sync::Mutex<()>,
    /// When a fetch last failed (not retried for [`PROVIDER_TTL`]).
    failed_at: Mutex<Option<Instant>>,
    /// A failed fetch is said once per process.
    warned: AtomicBool,
    /// The provider's usage as this process last read it (from the state database or the provider), so a
    /// paid call whose figure is still fresh needs no database read and no hop to a blocking thread.
    /// Another process's newer fetch is read from the database once this copy is [`PROVIDER_TTL`] old, the
    /// same age bound the database's copy has.
    /// When it was read, and what (`None`: nothing cached yet); after a failed fetch this copy counts
    /// until the next try, as the database's would.
    last: Mutex<Option<(Instant, Option<ProviderUsage>)>>,
}

/// Why a call was not sent.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a finished call reports to [`Budget::close`].
#[derive(Debug)]
pub struct Closed {
    pub alert: Option<Alert>,
    /// The cost as booked (the reported one, or the reserved worst case when the reported one was absurd).
    pub cost: f64,
    pub cost_source: String,
}

impl Budget {
    pub fn new(ledger: Ledger, openai: OpenAi, limit: Option<fleet::Budget>) -> Budget {
        Budget {
            ledger,
            openai,
            limit,
            fetching: tokio::sync::Mutex::new(()),
            failed_at: Mutex::new(None),
            warned: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn limit(&self) -> Option<fleet::Budget> {
        self.limit
    }

    /// `(limit, alert_at)` for settling.
    fn alert_line(&self) -> Option<(f64, f64)> {
        self.limit.map(|b| (b.monthly_usd, b.alert_at))
    }

    /// Writes the row of a call about to be sent. With `paid` and a budget, refuses it (and records the
    /// refusal as a row with outcome `budget`) when its `worst` case does not fit.
    pub async fn open(&self, row: Row, worst: f64, paid: bool) -> Result<Open, BudgetError> {
        let limit = match self.limit.filter(|_| paid) {
            Some(b) => Some((b.monthly_usd, self.provider_spent().await)),
            None => None,
        };
        match self.ledger.open(row.clone(), worst, limit).await? {
            Opened::Open(open) => Ok(open),
            Opened::Refused(why) => {
                let refused = Row {
                    outcome: Outcome::Budget,
                    err: Some(why.to_string()),
                    sent: false,
                    cost: 0.0,
                    ..row
                };
                self.ledger.record(refused, None).await?;
                Err(BudgetError::Refused(why))
            }
        }
    }

    /// Records a row that was never sent (a tier skipped while cooling down, say).
    pub async fn skip(&self, row: Row) -> Result<(), StateError> {
        self.ledger.record(row, None).await.map(|_| ())
    }

    /// Checks a finished call's reported cost against its reservation: a cost that is no number,
    /// negative or beyond any single call's reason becomes the reserved worst case (`cost_source =
    /// "reserved"`); a cost above the reservation stays (the next reservation sees the overrun). Both warn.
    pub fn check_cost(row: &mut Row, reserved: f64) {
        let reported = row.cost;
        if !reported.is_finite() || !(0.0..=MAX_CALL_USD).contains(&reported) {
            tracing::warn!(
                model = %row.model,
                "{}: the reported cost {reported} is not a plausible cost; booked the reserved worst case {}",
                row.model,
                money(reserved),
            );
            row.cost = reserved;
            row.cost_source = "reserved".into();
        } else if reported > reserved + 1e-12 && reserved > 0.0 {
            tracing::warn!(
                model = %row.model,
                "{}: the call cost {}, more than the {} reserved for it; the month's spend includes the overrun",
                row.model,
                money(reported),
                money(reserved),
            );
        }
    }

    /// Ends a call opened with [`Budget::open`] (its cost checked with [`Budget::check_cost`]).
    pub async fn close(&self, open: &Open, row: Row) -> Result<Closed, StateError> {
        let (cost, cost_source) = (row.cost, row.cost_source.clone());
        let settled = self.ledger.settle(open, row, self.alert_line()).await?;
        if let Some(alert) = settled.alert {
            tracing::warn!(
                spent = alert.spent,
                limit = alert.limit,
                "LLM spend this month has reached {} of {}",
                money(alert.spent),
                money(alert.limit)
            );
        }
        Ok(Closed {
            alert: settled.alert,
            cost,
            cost_source,
        })
    }

    /// The provider's spend this month, when the endpoint reports one (OpenRouter's `/key`): from the
    /// cache when fetched less than a minute ago, else fetched. A failed fetch is said once and the
    /// ledger alone counts (or the month's last known figure).
    pub async fn provider_spent(&self) -> Option<f64> {
        self.provider_usage().await.and_then(|u| u.usage_monthly)
    }

    /// See [`Budget::provider_spent`].
    pub async fn provider_usage(&self) -> Option<ProviderUsage> {
        if !self.openai.reports_usage() {
            return None;
        }
        let base = self.openai.base_url().to_string();
        let fresh = |u: &ProviderUsage| {
            chrono::Utc::now().timestamp() - u.fetched < PROVIDER_TTL.as_secs() as i64
        };
        let failed_at = *self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        let recently_failed = || {
            self.failed_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t.elapsed() < PROVIDER_TTL)
        };
        let remembered = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((read, u)) = remembered {
            if let Some(u) = u.filter(fresh) {
                return Some(u);
            }
            // After a failed fetch, what was cached when it failed counts until the next try.
            if recently_failed() && failed_at.is_some_and(|f| read >= f) {
                return u;
            }
        }
        let cached = self.cached(&base).await;
        if let Some(u) = cached.filter(fresh) {
            return Some(u);
        }
        let _one = self.fetching.lock().await;
        let cached = self.cached(&base).await;
        if let Some(u) = cached.filter(fresh) {
            return Some(u);
        }
        if recently_failed() {
            return cached;
        }
        match self.openai.key_info(PROVIDER_TIMEOUT).await {
            Ok(mut u) => {
                u.fetched = chrono::Utc::now().timestamp();
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), Some(u)));
                let ledger = self.ledger.clone();
                let (b, v) = (base.clone(), u);
                let stored =
                    tokio::task::spawn_blocking(move || ledger.store_provider_usage(&b, &v)).await;
                if let Ok(Err(e)) = stored {
                    tracing::warn!("budget: cannot cache the provider's usage: {e}");
                }
                Some(u)
            }
            Err(e) => {
                let now = Instant::now();
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, cached));
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "budget: cannot read the provider's usage ({e}); counting this machine's ledger only"
                    );
                }
                cached
            }
        }
    }

    /// The provider's usage as cached in the state database (any process's fetch); remembered in `last`.
    async fn cached(&self, base: &str) -> Option<ProviderUsage> {
        let ledger = self.ledger.clone();
        let base = base.to_string();
        let u = tokio::task::spawn_blocking(move || ledger.provider_usage(&base))
            .await
            .ok()?
            .ok()?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), u));
        u
    }
}

impl From<BudgetError> for ErrorKind {
    fn from(e: BudgetError) -> ErrorKind {
        match e {
            BudgetError::Refused(r) => ErrorKind::OverBudget(r.to_string()),
            BudgetError::State(e) => ErrorKind::Ledger(e.to_string()),
        }
    }
}

/// What `baton spend` shows: this month from the ledger and from the provider side by side, what calls
/// under way hold, the budget, the grouped rows of the period and the month's days.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// The budget month (UTC), `YYYY-MM`.
    pub month: String,
    pub period: String,
    pub by: String,
    /// This state directory's ledger: settled spend (interrupted calls included), held, interrupted.
    pub ledger: MonthTotals,
    /// The provider's accounting for the key (`None`: the endpoint has no `/key`, or it could not be read).
    pub provider: Option<ProviderUsage>,
    /// What the budget counts as spent: the larger of the ledger's and the provider's month.
    pub spent: f64,
    pub budget: Option<fleet::Budget>,
    /// `budget × alert_at`, USD.
    pub alert_line: Option<f64>,
    pub rows: Vec<SpendRow>,
    pub days: Vec<DayCost>,
}

impl Budget {
    /// The spend report for `period` grouped `by`.
    pub async fn report(&self, period: Period, by: GroupBy) -> Result<Report, StateError> {
        let provider = self.provider_usage().await;
        let ledger = self.ledger.clone();
        let (totals, rows, days) = tokio::task::spawn_blocking(move || {
            Ok::<_, StateError>((
                ledger.month_now()?,
                ledger.spend(period, by)?,
                ledger.days(by)?,
            ))
        })
        .await
        .map_err(|e| StateError::Join(e.to_string()))??;
        let spent = provider
            .and_then(|p| p.usage_monthly)
            .map_or(totals.spent, |p| p.max(totals.spent));
        Ok(Report {
            month: ledger::this_month(),
            period: period.name().into(),
            by: by.name().into(),
            ledger: totals,
            provider,
            spent,
            budget: self.limit,
            alert_line: self.limit.map(|b| b.monthly_usd * b.alert_at),
            rows,
            days,
        })
    }
}

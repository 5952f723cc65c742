//! The cost ledger and budget reservations, in the state database.
//!
//! Every routing attempt is one row of `llm_ledger`. Before a paid call, [`Ledger::reserve`] books its worst
//! case in `llm_reservations` inside a `BEGIN IMMEDIATE` transaction, so the check "spent + reserved +
//! this ≤ budget" and the booking are one step for every coroutine and every process sharing the database.
//! [`Ledger::settle`] swaps the reservation for the real row in one transaction and reports when the month's
//! spend first crosses the alert threshold (once per month, across processes).
use chrono::{Datelike, Local, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::core::state::{State, StateError};

const V1: &str = "
CREATE TABLE llm_ledger (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    month TEXT NOT NULL,
    day TEXT NOT NULL,
    script TEXT,
    task TEXT,
    tier TEXT,
    provider TEXT NOT NULL,
    host TEXT,
    model TEXT NOT NULL,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    cost_source TEXT NOT NULL,
    outcome TEXT NOT NULL,
    err TEXT,
    duration REAL NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX llm_ledger_month ON llm_ledger(month);
CREATE TABLE llm_reservations (
    id INTEGER PRIMARY KEY,
    month TEXT NOT NULL,
    amount REAL NOT NULL,
    pid INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE llm_alerts (month TEXT PRIMARY KEY, spent REAL NOT NULL, at TEXT NOT NULL);
";

/// The step of a tool loop each model call belongs to.
const V2_STEP: &str = "ALTER TABLE llm_ledger ADD COLUMN step INTEGER;";

/// A reservation older than this is taken to belong to a process that died mid-call, and is dropped.
pub const STALE_RESERVATION_SECS: i64 = 3600;

/// One attempt, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    pub script: Option<String>,
    pub task: Option<String>,
    pub tier: Option<String>,
    pub provider: String,
    pub host: Option<String>,
    pub model: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: f64,
    pub cost_source: String,
    /// `ok`, `offline`, `error`, `rejected` or `budget`.
    pub outcome: String,
    pub err: Option<String>,
    /// Seconds.
    pub duration: f64,
    /// Whether a request went out (false for tiers skipped for budget or cooldown).
    pub sent: bool,
    /// The model call's step in a `route.ask` tool loop (1-based); `None` without tools.
    pub step: Option<u32>,
}

/// One line of a spend report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    pub key: String,
    pub calls: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Tier,
    Model,
    Task,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            "all" => Some(Period::All),
            _ => None,
        }
    }
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "tier" => Some(GroupBy::Tier),
            "model" => Some(GroupBy::Model),
            "task" => Some(GroupBy::Task),
            _ => None,
        }
    }
}

/// The month's spend crossed `alert_at × limit` for the first time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alert {
    pub spent: f64,
    pub limit: f64,
}

/// The calendar month (local time) budgets count against, `YYYY-MM`.
pub fn this_month() -> String {
    let now = Local::now();
    format!("{:04}-{:02}", now.year(), now.month())
}

fn today() -> String {
    Local::now().format("%Y-%m-%d").to_string()
}

/// The ledger over one state database. Clones share it; the schema is applied on first use.
#[derive(Debug, Clone)]
pub struct Ledger {
    state: State,
    ready: std::sync::Arc<std::sync::OnceLock<()>>,
}

impl Ledger {
    pub fn new(state: State) -> Ledger {
        Ledger {
            state,
            ready: Default::default(),
        }
    }

    fn ready(&self) -> Result<(), StateError> {
        if self.ready.get().is_none() {
            self.state.migrate("ledger", &[V1, V2_STEP])?;
            let _ = self.ready.set(());
        }
        Ok(())
    }

    /// Books `amount` USD against `month` if spent + reserved + amount ≤ `limit`; returns the reservation id,
    /// or `None` when it does not fit.
    pub async fn reserve(
        &self,
        month: &str,
        amount: f64,
        limit: f64,
    ) -> Result<Option<i64>, StateError> {
        self.ready()?;
        let month = month.to_string();
        self.state
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = Utc::now().timestamp();
                tx.execute("DELETE FROM llm_reservations WHERE created < ?1", [now - STALE_RESERVATION_SECS])?;
                let spent: f64 = tx.query_row("SELECT COALESCE(SUM(cost), 0) FROM llm_ledger WHERE month = ?1", [&month], |r| r.get(0))?;
                let held: f64 =
                    tx.query_row("SELECT COALESCE(SUM(amount), 0) FROM llm_reservations WHERE month = ?1", [&month], |r| r.get(0))?;
                // A hair of tolerance so that ten reservations of limit/10 fit despite float rounding.
                if spent + held + amount > limit * (1.0 + 1e-9) {
                    return Ok(None);
                }
                tx.execute(
                    "INSERT INTO llm_reservations(month, amount, pid, created) VALUES (?1, ?2, ?3, ?4)",
                    params![month, amount, std::process::id(), now],
                )?;
                let id = tx.last_insert_rowid();
                tx.commit()?;
                Ok(Some(id))
            })
            .await
    }

    /// Records `row` (for `month`), releasing `reservation` in the same transaction. With a `budget`
    /// (limit, alert fraction) it returns the alert the first time this month's spend reaches the threshold.
    pub async fn settle(
        &self,
        reservation: Option<i64>,
        row: Row,
        budget: Option<(f64, f64)>,
    ) -> Result<Option<Alert>, StateError> {
        self.ready()?;
        let (month, day) = (this_month(), today());
        self.state
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(id) = reservation {
                    tx.execute("DELETE FROM llm_reservations WHERE id = ?1", [id])?;
                }
                tx.execute(
                    "INSERT INTO llm_ledger(ts, month, day, script, task, tier, provider, host, model, tokens_in, tokens_out,
                         cost, cost_source, outcome, err, duration, sent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                    params![
                        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        month,
                        day,
                        row.script,
                        row.task,
                        row.tier,
                        row.provider,
                        row.host,
                        row.model,
                        row.tokens_in as i64,
                        row.tokens_out as i64,
                        row.cost,
                        row.cost_source,
                        row.outcome,
                        row.err,
                        row.duration,
                        row.sent,
                    ],
                )?;
                if let Some(step) = row.step {
                    tx.execute("UPDATE llm_ledger SET step = ?1 WHERE id = ?2", params![step, tx.last_insert_rowid()])?;
                }
                let mut alert = None;
                if let Some((limit, alert_at)) = budget
                    && row.cost > 0.0
                {
                    let spent: f64 =
                        tx.query_row("SELECT COALESCE(SUM(cost), 0) FROM llm_ledger WHERE month = ?1", [&month], |r| r.get(0))?;
                    if spent >= limit * alert_at {
                        let fired = tx.execute(
                            "INSERT OR IGNORE INTO llm_alerts(month, spent, at) VALUES (?1, ?2, ?3)",
                            params![month, spent, Utc::now().to_rfc3339()],
                        )?;
                        if fired == 1 {
                            alert = Some(Alert { spent, limit });
                        }
                    }
                }
                tx.commit()?;
                Ok(alert)
            })
            .await
    }

    /// What `month` has cost so far (settled rows only).
    pub async fn spent(&self, month: &str) -> Result<f64, StateError> {
        self.ready()?;
        let month = month.to_string();
        self.state
            .call(move |conn| {
                conn.query_row(
                    "SELECT COALESCE(SUM(cost), 0) FROM llm_ledger WHERE month = ?1",
                    [&month],
                    |r| r.get(0),
                )
            })
            .await
    }

    /// Calls, tokens and cost per tier / model / task over the day, month or all time, costliest first.
    /// Rows for tiers skipped without a request (budget, cooldown) are not calls and cost nothing.
    pub fn spend(&self, period: Period, by: GroupBy) -> Result<Vec<SpendRow>, StateError> {
        self.ready()?;
        let key = match by {
            GroupBy::Tier => "COALESCE(tier, provider)",
            GroupBy::Model => "model",
            GroupBy::Task => "COALESCE(task, '-')",
        };
        let (filter, arg) = match period {
            Period::Day => ("day = ?1", today()),
            Period::Month => ("month = ?1", this_month()),
            Period::All => ("?1 = ?1", String::new()),
        };
        let sql = format!(
            "SELECT {key} AS k, COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0), COALESCE(SUM(cost), 0)
             FROM llm_ledger WHERE sent = 1 AND {filter} GROUP BY k ORDER BY SUM(cost) DESC, COUNT(*) DESC, k"
        );
        self.state.with(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([arg], |r| {
                Ok(SpendRow {
                    key: r.get(0)?,
                    calls: r.get::<_, i64>(1)? as u64,
                    tokens_in: r.get::<_, i64>(2)? as u64,
                    tokens_out: r.get::<_, i64>(3)? as u64,
                    cost: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Whether this month's alert has fired (any process).
    pub fn alerted(&self, month: &str) -> Result<bool, StateError> {
        self.ready()?;
        self.state.with(|c| {
            c.query_row("SELECT 1 FROM llm_alerts WHERE month = ?1", [month], |_| {
                Ok(())
            })
            .optional()
            .map(|r| r.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(name: &str) -> (Ledger, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("baton-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Ledger::new(State::new(&dir)), dir)
    }

    fn row(tier: &str, model: &str, cost: f64, outcome: &str) -> Row {
        Row {
            tier: Some(tier.into()),
            provider: "openrouter".into(),
            model: model.into(),
            tokens_in: 10,
            tokens_out: 5,
            cost,
            cost_source: "provider".into(),
            outcome: outcome.into(),
            sent: outcome != "budget",
            ..Row::default()
        }
    }

    #[tokio::test]
    async fn reservations_never_exceed_the_limit_and_settle_to_real_cost() {
        let (l, dir) = ledger("reserve");
        let m = this_month();
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(l.reserve(&m, 0.1, 1.0).await.unwrap().expect("fits"));
        }
        assert_eq!(
            l.reserve(&m, 0.1, 1.0).await.unwrap(),
            None,
            "the 11th must not fit"
        );
        // Settling at a lower real cost frees room.
        l.settle(Some(ids[0]), row("cheap", "a", 0.04, "ok"), None)
            .await
            .unwrap();
        assert!(l.reserve(&m, 0.06, 1.0).await.unwrap().is_some());
        assert_eq!(l.reserve(&m, 0.01, 1.0).await.unwrap(), None);
        assert!((l.spent(&m).await.unwrap() - 0.04).abs() < 1e-12);
        // Another handle on the same database (as another process would be) sees the reservations.
        let other = Ledger::new(State::new(&dir));
        assert_eq!(other.reserve(&m, 0.01, 1.0).await.unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn alert_fires_once_per_month() {
        let (l, dir) = ledger("alert");
        let b = Some((1.0, 0.5));
        assert_eq!(
            l.settle(None, row("cheap", "a", 0.3, "ok"), b)
                .await
                .unwrap(),
            None
        );
        let a = l
            .settle(None, row("cheap", "a", 0.3, "ok"), b)
            .await
            .unwrap()
            .expect("crossed 50 %");
        assert!((a.spent - 0.6).abs() < 1e-12 && a.limit == 1.0);
        assert_eq!(
            l.settle(None, row("cheap", "a", 0.3, "ok"), b)
                .await
                .unwrap(),
            None
        );
        assert!(l.alerted(&this_month()).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn spend_groups_and_skips_unsent_rows() {
        let (l, dir) = ledger("spend");
        l.settle(None, row("cheap", "sonnet", 0.5, "ok"), None)
            .await
            .unwrap();
        l.settle(None, row("cheap", "sonnet", 0.25, "rejected"), None)
            .await
            .unwrap();
        l.settle(None, row("premium", "opus", 0.0, "budget"), None)
            .await
            .unwrap();
        l.settle(
            None,
            Row {
                provider: "ollama".into(),
                model: "qwen".into(),
                tier: Some("local".into()),
                cost_source: "unknown".into(),
                outcome: "ok".into(),
                sent: true,
                tokens_in: 7,
                ..Row::default()
            },
            None,
        )
        .await
        .unwrap();
        let rows = l.spend(Period::Month, GroupBy::Tier).unwrap();
        assert_eq!(
            rows,
            vec![
                SpendRow {
                    key: "cheap".into(),
                    calls: 2,
                    tokens_in: 20,
                    tokens_out: 10,
                    cost: 0.75
                },
                SpendRow {
                    key: "local".into(),
                    calls: 1,
                    tokens_in: 7,
                    tokens_out: 0,
                    cost: 0.0
                },
            ]
        );
        let rows = l.spend(Period::Day, GroupBy::Model).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["sonnet", "qwen"]
        );
        assert_eq!(l.spend(Period::All, GroupBy::Task).unwrap()[0].key, "-");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

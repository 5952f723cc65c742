//! The cost ledger and budget reservations, in the state database.
//!
//! Every call is one row of `llm_ledger`, written *before* the request goes out ([`Ledger::open`]: outcome
//! `sent`, its worst case as `reserved` and `cost`) and updated when it ends ([`Ledger::settle`]). The
//! check "spent + held + this ≤ budget" and the booking are one `BEGIN IMMEDIATE` transaction, so they are
//! one step for every coroutine and every process sharing the database.
//!
//! Totals are kept as the rows change, in the same transactions: `llm_months` (spent, held and
//! interrupted per UTC month) and `llm_daily` (calls, tokens and cost per day × tier × model × task ×
//! script). A reservation reads one row of `llm_months` and a spend report reads `llm_daily`, so neither
//! grows with the ledger.
//!
//! A row still `sent` whose process is gone (same machine; pid dead, or reused by a process that started
//! later, or the machine rebooted) is settled at once as `interrupted` at its reserved (worst-case) cost by
//! the next reservation of any process. Rows of other machines sharing the file fall back to
//! [`STALE_RESERVATION_SECS`].
use crate::core::text::money;
use chrono::Utc;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, named_params, params};
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

/// Rows written before the request (outcome `sent`) with the process that sent them; running totals per
/// month and per day; the provider's usage as last fetched. Existing rows are summed into the totals once.
/// Nothing reads rows by month any more (the totals do), so that index goes: one B-tree less per call.
const V2_TOTALS: &str = "
DROP INDEX llm_ledger_month;
ALTER TABLE llm_ledger ADD COLUMN reserved REAL NOT NULL DEFAULT 0;
ALTER TABLE llm_ledger ADD COLUMN pid INTEGER;
ALTER TABLE llm_ledger ADD COLUMN proc TEXT;
ALTER TABLE llm_ledger ADD COLUMN machine TEXT;
CREATE INDEX llm_ledger_open ON llm_ledger(outcome) WHERE outcome = 'sent';
CREATE TABLE llm_months (
    month TEXT PRIMARY KEY,
    spent REAL NOT NULL DEFAULT 0,
    held REAL NOT NULL DEFAULT 0,
    interrupted REAL NOT NULL DEFAULT 0
);
CREATE TABLE llm_daily (
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    script TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, tier, model, task, script)
);
CREATE INDEX llm_daily_month ON llm_daily(month);
CREATE TABLE llm_provider (
    base TEXT PRIMARY KEY,
    fetched INTEGER NOT NULL,
    month TEXT NOT NULL,
    usage_monthly REAL,
    usage_daily REAL,
    key_limit REAL,
    limit_remaining REAL
);
DELETE FROM llm_reservations;
";

/// Recomputes `llm_months` and `llm_daily` from the rows (run by the migration and [`Ledger::rebuild_totals`]).
const REBUILD_TOTALS: &str = "
DELETE FROM llm_months;
DELETE FROM llm_daily;
INSERT INTO llm_months(month, spent, held, interrupted)
    SELECT month,
           COALESCE(SUM(CASE WHEN outcome = 'sent' THEN 0 ELSE cost END), 0),
           COALESCE(SUM(CASE WHEN outcome = 'sent' THEN reserved ELSE 0 END), 0),
           COALESCE(SUM(CASE WHEN outcome = 'interrupted' THEN cost ELSE 0 END), 0)
    FROM llm_ledger GROUP BY month;
INSERT INTO llm_daily(day, month, tier, model, task, script, calls, tokens_in, tokens_out, cost)
    SELECT day, month, COALESCE(tier, provider), model, COALESCE(task, '-'), COALESCE(script, '-'),
           COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost)
    FROM llm_ledger WHERE sent = 1 AND outcome <> 'sent'
    GROUP BY day, month, COALESCE(tier, provider), model, COALESCE(task, '-'), COALESCE(script, '-');
";

/// The step of a tool loop each model call belongs to.
const V3_STEP: &str = "ALTER TABLE llm_ledger ADD COLUMN step INTEGER;";

/// Issue 28: the run a call belongs to (`baton runs` sums a run's cost from its rows).
const V4_RUN: &str = "ALTER TABLE llm_ledger ADD COLUMN run_id TEXT;
    CREATE INDEX llm_ledger_run ON llm_ledger(run_id) WHERE run_id IS NOT NULL;";

/// Issue 29: the month's totals per tier × model × task × script, so a spend report over all time reads a
/// row per month and key, not one per day (the dashboard answers `period=all` from it; `llm_daily` has
/// ~30 times the rows). Kept in the same transaction as `llm_daily`.
const V5_MONTHLY: &str = "CREATE TABLE llm_monthly (
    month TEXT NOT NULL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    script TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (month, tier, model, task, script)
);";

/// Recomputes `llm_monthly` from `llm_daily` (the migration, and [`Ledger::rebuild_totals`] after it
/// rebuilt the days).
const REBUILD_MONTHLY: &str = "
DELETE FROM llm_monthly;
INSERT INTO llm_monthly(month, tier, model, task, script, calls, tokens_in, tokens_out, cost)
    SELECT month, tier, model, task, script, SUM(calls), SUM(tokens_in), SUM(tokens_out), SUM(cost)
    FROM llm_daily GROUP BY month, tier, model, task, script;
";

/// The migration steps, in order (append new ones at the end).
const MIGRATIONS: &[&str] = &[
    V1,
    V2_TOTALS,
    REBUILD_TOTALS,
    V3_STEP,
    V4_RUN,
    V5_MONTHLY,
    REBUILD_MONTHLY,
];

/// A row still `sent` from another machine sharing this database (whose processes cannot be checked) is
/// taken to be interrupted after this long.
pub const STALE_RESERVATION_SECS: i64 = 3600;

/// How a ledger row ended, and how one attempt of `route.ask` ended: stored in `llm_ledger.outcome` and
/// serialized (JSON, Lua) as its lowercase name, so the database, `baton spend --json` and a playbook's
/// `attempts[i].outcome` all read the same words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Under way: written before the request, not settled yet (the row holds its reservation).
    #[default]
    Sent,
    /// Answered (and, for `route.ask`, accepted).
    Ok,
    /// The endpoint could not be reached, or its tier is cooling down after it could not.
    Offline,
    /// Any other failure.
    Error,
    /// Answered, but the answer did not match the schema or `accept` turned it down.
    Rejected,
    /// Refused by the budget before sending, or by the provider's key limit.
    Budget,
    /// The process that sent it ended (or the machine restarted) with the call under way; booked at its
    /// reserved worst case.
    Interrupted,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Sent,
        Outcome::Ok,
        Outcome::Offline,
        Outcome::Error,
        Outcome::Rejected,
        Outcome::Budget,
        Outcome::Interrupted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Ok => "ok",
            Outcome::Offline => "offline",
            Outcome::Error => "error",
            Outcome::Rejected => "rejected",
            Outcome::Budget => "budget",
            Outcome::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == s)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ToSql for Outcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(
            self.name().as_bytes(),
        )))
    }
}

impl FromSql for Outcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        Outcome::parse(s)
            .ok_or_else(|| FromSqlError::Other(format!("unknown ledger outcome {s:?}").into()))
    }
}

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
    pub outcome: Outcome,
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

/// One day × key of a month's chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayCost {
    pub day: String,
    pub key: String,
    pub calls: u64,
    pub cost: f64,
}

/// A month's running totals (USD): settled spend (interrupted calls included), what calls under way hold,
/// and how much of the spend is interrupted calls booked at their worst case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MonthTotals {
    pub spent: f64,
    pub held: f64,
    pub interrupted: f64,
}

/// The provider's own accounting for the key (OpenRouter's `/key`), as last fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProviderUsage {
    /// Unix seconds of the fetch.
    pub fetched: i64,
    pub usage_monthly: Option<f64>,
    pub usage_daily: Option<f64>,
    pub limit: Option<f64>,
    pub limit_remaining: Option<f64>,
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
    Script,
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

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
            Period::All => "all",
        }
    }
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "tier" => Some(GroupBy::Tier),
            "model" => Some(GroupBy::Model),
            "task" => Some(GroupBy::Task),
            "script" => Some(GroupBy::Script),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        self.column()
    }

    fn column(self) -> &'static str {
        match self {
            GroupBy::Tier => "tier",
            GroupBy::Model => "model",
            GroupBy::Task => "task",
            GroupBy::Script => "script",
        }
    }
}

/// The month's spend crossed `alert_at × limit` for the first time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alert {
    pub spent: f64,
    pub limit: f64,
}

/// The budget month (UTC, like the provider's), `YYYY-MM`.
pub fn this_month() -> String {
    Utc::now().format("%Y-%m").to_string()
}

/// Today (UTC), `YYYY-MM-DD`.
pub fn today() -> String {
    Utc::now().format("%Y-%m-%d").to_string()
}

/// A call under way: its ledger row, the month it is booked in and the amount it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub id: i64,
    pub month: String,
    pub reserved: f64,
}

/// What the budget check at [`Ledger::open`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    Open(Open),
    /// The worst case does not fit; the figures it was checked against.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub worst: f64,
    pub limit: f64,
    /// This database's settled spend for the month.
    pub ledger: f64,
    /// The provider's `usage_monthly`, when it was known and counted.
    pub provider: Option<f64>,
    pub held: f64,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "worst case {} does not fit what is left of {} this month (spent {}",
            money(self.worst),
            money(self.limit),
            money(self.ledger)
        )?;
        if let Some(p) = self.provider.filter(|p| *p > self.ledger) {
            write!(
                f,
                " per this ledger, {} per the provider's usage_monthly",
                money(p)
            )?;
        }
        if self.held > 0.0 {
            write!(f, ", {} held by calls under way", money(self.held))?;
        }
        f.write_str(")")?;
        // The worst case is mostly the answer cap; when something is left, a smaller cap may fit.
        let spent = self.provider.map_or(self.ledger, |p| p.max(self.ledger));
        if self.limit - spent - self.held > 0.0 {
            f.write_str(
                "; a smaller answer cap reserves less: `max_tokens` in Lua, `--max-tokens N` for `baton ask`",
            )?;
        }
        Ok(())
    }
}

/// What [`Ledger::settle`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settled {
    /// The month's spend crossed the alert line with this row (first time this month, any process).
    pub alert: Option<Alert>,
}

/// This process as the ledger identifies it: machine, pid and `boot:start` (so a reused pid or a reboot
/// is told apart from the process that wrote the row).
#[derive(Debug, Clone)]
struct Me {
    machine: String,
    pid: u32,
    proc: String,
}

fn me() -> &'static Me {
    static ME: std::sync::OnceLock<Me> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        Me {
            machine: machine_name(),
            pid,
            proc: proc_identity(pid).unwrap_or_default(),
        }
    })
}

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// `boot_id:start_ticks` from `/proc` (Linux); `None` where there is no `/proc` or no such process.
fn proc_identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is field 22, so the 20th after the name.
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{}:{start}", boot_id().unwrap_or_default()))
}

/// Whether the process that wrote a `sent` row on this machine is still the one running under `pid`.
fn still_running(pid: u32, proc: &str) -> bool {
    if pid == me().pid {
        return proc == me().proc;
    }
    if proc.is_empty() {
        // No `/proc` when the row was written (not Linux): a signal-0 probe is all there is.
        return rustix::process::Pid::from_raw(pid as i32)
            .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
    }
    proc_identity(pid).as_deref() == Some(proc)
}

/// The ledger over one state database. Clones share it; the schema is applied on first use.
#[derive(Debug, Clone)]
pub struct Ledger {
    state: State,
    ready: std::sync::Arc<std::sync::OnceLock<()>>,
    /// The run whose calls this ledger books (`run_id` of its rows).
    run: Option<String>,
}

const INSERT: &str = "INSERT INTO llm_ledger(ts, month, day, script, task, tier, provider, host, model, tokens_in,
    tokens_out, cost, cost_source, outcome, err, duration, sent, reserved, pid, proc, machine, step, run_id)
    VALUES (:ts, :month, :day, :script, :task, :tier, :provider, :host, :model, :tokens_in,
    :tokens_out, :cost, :cost_source, :outcome, :err, :duration, :sent, :reserved, :pid, :proc, :machine, :step,
    :run_id)";

const ADD_MONTH: &str = "INSERT INTO llm_months(month, spent, held, interrupted) VALUES (:month, :spent, :held, :interrupted)
    ON CONFLICT(month) DO UPDATE SET spent = spent + excluded.spent, held = MAX(0, held + excluded.held),
        interrupted = interrupted + excluded.interrupted";

const ADD_DAILY: &str = "INSERT INTO llm_daily(day, month, tier, model, task, script, calls, tokens_in, tokens_out, cost)
    SELECT day, month, COALESCE(tier, provider), model, COALESCE(task, '-'), COALESCE(script, '-'),
        :calls, :tokens_in, :tokens_out, :cost
    FROM llm_ledger WHERE id = :id
    ON CONFLICT(day, tier, model, task, script) DO UPDATE SET calls = calls + excluded.calls,
        tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out,
        cost = cost + excluded.cost";

const ADD_MONTHLY: &str =
    "INSERT INTO llm_monthly(month, tier, model, task, script, calls, tokens_in, tokens_out, cost)
    SELECT month, COALESCE(tier, provider), model, COALESCE(task, '-'), COALESCE(script, '-'),
        :calls, :tokens_in, :tokens_out, :cost
    FROM llm_ledger WHERE id = :id
    ON CONFLICT(month, tier, model, task, script) DO UPDATE SET calls = calls + excluded.calls,
        tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out,
        cost = cost + excluded.cost";

/// The model too: a call may learn which model served it only from its answer (Claude Code's init line).
const SETTLE: &str =
    "UPDATE llm_ledger SET tokens_in = :tokens_in, tokens_out = :tokens_out, cost = :cost,
    cost_source = :cost_source, outcome = :outcome, err = :err, duration = :duration, sent = :sent,
    model = :model WHERE id = :id";

fn now_ts() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Inserts `row` as it is (with `reserved`, and this process when it is under way).
fn insert(
    tx: &Transaction<'_>,
    row: &Row,
    reserved: f64,
    run: Option<&str>,
) -> rusqlite::Result<i64> {
    let open = row.outcome == Outcome::Sent;
    let me = me();
    tx.prepare_cached(INSERT)?.execute(named_params! {
        ":ts": now_ts(),
        ":month": this_month(),
        ":day": today(),
        ":script": row.script,
        ":run_id": run,
        ":task": row.task,
        ":tier": row.tier,
        ":provider": row.provider,
        ":host": row.host,
        ":model": row.model,
        ":tokens_in": row.tokens_in as i64,
        ":tokens_out": row.tokens_out as i64,
        ":cost": row.cost,
        ":cost_source": row.cost_source,
        ":outcome": row.outcome,
        ":err": row.err,
        ":duration": row.duration,
        ":sent": row.sent,
        ":reserved": reserved,
        ":pid": open.then_some(me.pid),
        ":proc": open.then_some(me.proc.as_str()),
        ":machine": open.then_some(me.machine.as_str()),
        ":step": row.step,
    })?;
    Ok(tx.last_insert_rowid())
}

/// Adds to a month's totals.
fn add_month(
    tx: &Transaction<'_>,
    month: &str,
    spent: f64,
    held: f64,
    interrupted: f64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(ADD_MONTH)?.execute(named_params! {
        ":month": month,
        ":spent": spent,
        ":held": held,
        ":interrupted": interrupted,
    })?;
    Ok(())
}

/// Adds one call (or takes one back, with `calls = -1`) to the day's and the month's totals of row `id`.
fn add_daily(
    tx: &Transaction<'_>,
    id: i64,
    calls: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost: f64,
) -> rusqlite::Result<()> {
    for sql in [ADD_DAILY, ADD_MONTHLY] {
        tx.prepare_cached(sql)?.execute(named_params! {
            ":id": id,
            ":calls": calls,
            ":tokens_in": tokens_in,
            ":tokens_out": tokens_out,
            ":cost": cost,
        })?;
    }
    Ok(())
}

/// Settles every `sent` row whose process is gone as `interrupted` at its reserved cost.
fn sweep(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let me = me();
    let stale = (Utc::now() - chrono::Duration::seconds(STALE_RESERVATION_SECS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let gone: Vec<(i64, String, f64, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, month, reserved, pid, COALESCE(proc, ''), COALESCE(machine, ''), ts
             FROM llm_ledger WHERE outcome = 'sent'",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut gone = Vec::new();
        for row in rows {
            let (id, month, reserved, pid, proc, machine, ts) = row?;
            let why = if machine == me.machine {
                let boot = proc.split(':').next().unwrap_or_default();
                let my_boot = me.proc.split(':').next().unwrap_or_default();
                if !boot.is_empty() && !my_boot.is_empty() && boot != my_boot {
                    Some(format!(
                        "interrupted: the machine restarted while process {pid} had the call under way"
                    ))
                } else if !still_running(pid as u32, &proc) {
                    Some(format!(
                        "interrupted: process {pid} ended with the call under way"
                    ))
                } else {
                    None
                }
            } else if ts < stale {
                Some(format!(
                    "interrupted: process {pid} on {machine} left the call under way for over {}s",
                    STALE_RESERVATION_SECS
                ))
            } else {
                None
            };
            if let Some(why) = why {
                gone.push((id, month, reserved, why));
            }
        }
        gone
    };
    for (id, month, reserved, why) in gone {
        tx.prepare_cached(
            "UPDATE llm_ledger SET outcome = 'interrupted', cost = reserved, cost_source = 'reserved', err = :err
             WHERE id = :id",
        )?
        .execute(named_params! {":id": id, ":err": why})?;
        add_month(tx, &month, reserved, -reserved, reserved)?;
        add_daily(tx, id, 1, 0, 0, reserved)?;
        tracing::warn!(
            id,
            reserved,
            "LLM call {id} was interrupted; booked at its reserved {}",
            money(reserved)
        );
    }
    Ok(())
}

fn month_totals(tx: &rusqlite::Connection, month: &str) -> rusqlite::Result<MonthTotals> {
    Ok(tx
        .prepare_cached("SELECT spent, held, interrupted FROM llm_months WHERE month = ?1")?
        .query_row([month], |r| {
            Ok(MonthTotals {
                spent: r.get(0)?,
                held: r.get(1)?,
                interrupted: r.get(2)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

impl Ledger {
    pub fn new(state: State) -> Ledger {
        Ledger {
            state,
            ready: Default::default(),
            run: None,
        }
    }

    /// The rows this ledger writes belong to run `run` (`baton runs` sums their cost).
    pub fn for_run(mut self, run: Option<String>) -> Ledger {
        self.run = run;
        self
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    fn ready(&self) -> Result<(), StateError> {
        if self.ready.get().is_none() {
            self.state.migrate("ledger", MIGRATIONS)?;
            let _ = self.ready.set(());
        }
        Ok(())
    }

    /// Writes the row of a call about to be sent (outcome `sent`, `worst` as its cost and reservation)
    /// after settling interrupted calls. With a `limit` (and the provider's `usage_monthly`, which counts
    /// when it is above this ledger's spend), the call is refused instead when it does not fit; nothing is
    /// written then (the caller records the refusal with [`Ledger::record`]).
    pub async fn open(
        &self,
        mut row: Row,
        worst: f64,
        limit: Option<(f64, Option<f64>)>,
    ) -> Result<Opened, StateError> {
        self.ready()?;
        let run = self.run.clone();
        self.state
            .write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                sweep(&tx)?;
                let month = this_month();
                if let Some((limit, provider)) = limit {
                    let t = month_totals(&tx, &month)?;
                    let spent = provider.map_or(t.spent, |p| p.max(t.spent));
                    // A hair of tolerance so that ten reservations of limit/10 fit despite float rounding.
                    if spent + t.held + worst > limit * (1.0 + 1e-9) {
                        tx.commit()?;
                        return Ok(Opened::Refused(Refusal {
                            worst,
                            limit,
                            ledger: t.spent,
                            provider,
                            held: t.held,
                        }));
                    }
                }
                row.outcome = Outcome::Sent;
                row.sent = true;
                row.cost = worst;
                row.cost_source = "reserved".into();
                let id = insert(&tx, &row, worst, run.as_deref())?;
                add_month(&tx, &month, 0.0, worst, 0.0)?;
                tx.commit()?;
                Ok(Opened::Open(Open {
                    id,
                    month,
                    reserved: worst,
                }))
            })
            .await
    }

    /// Ends a call opened with [`Ledger::open`]: its row takes `row`'s figures and outcome, the month's
    /// totals swap the reservation for the real cost. With a `budget` (limit, alert fraction) it reports the
    /// alert the first time this month's spend reaches the threshold.
    pub async fn settle(
        &self,
        open: &Open,
        row: Row,
        budget: Option<(f64, f64)>,
    ) -> Result<Settled, StateError> {
        self.ready()?;
        let open = open.clone();
        self.state
            .write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let was: Option<Outcome> = tx
                    .prepare_cached("SELECT outcome FROM llm_ledger WHERE id = ?1")?
                    .query_row([open.id], |r| r.get(0))
                    .optional()?;
                match was {
                    Some(Outcome::Sent) => {
                        add_month(&tx, &open.month, row.cost, -open.reserved, 0.0)?
                    }
                    // Taken for interrupted meanwhile (another machine's rule): take that booking back.
                    Some(Outcome::Interrupted) => {
                        add_month(
                            &tx,
                            &open.month,
                            row.cost - open.reserved,
                            0.0,
                            -open.reserved,
                        )?;
                        add_daily(&tx, open.id, -1, 0, 0, -open.reserved)?;
                    }
                    _ => return Ok(Settled::default()),
                }
                tx.prepare_cached(SETTLE)?.execute(named_params! {
                    ":id": open.id,
                    ":tokens_in": row.tokens_in as i64,
                    ":tokens_out": row.tokens_out as i64,
                    ":cost": row.cost,
                    ":cost_source": row.cost_source,
                    ":outcome": row.outcome,
                    ":err": row.err,
                    ":duration": row.duration,
                    ":sent": row.sent,
                    ":model": row.model,
                })?;
                if row.sent {
                    add_daily(
                        &tx,
                        open.id,
                        1,
                        row.tokens_in as i64,
                        row.tokens_out as i64,
                        row.cost,
                    )?;
                }
                let alert = check_alert(&tx, &open.month, row.cost, budget)?;
                tx.commit()?;
                Ok(Settled { alert })
            })
            .await
    }

    /// Records a row that needs no reservation: an attempt skipped without a request (budget, cooldown),
    /// or a finished call booked in one step.
    pub async fn record(
        &self,
        row: Row,
        budget: Option<(f64, f64)>,
    ) -> Result<Settled, StateError> {
        self.ready()?;
        let run = self.run.clone();
        self.state
            .write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let id = insert(&tx, &row, 0.0, run.as_deref())?;
                let month = this_month();
                if row.cost != 0.0 {
                    add_month(&tx, &month, row.cost, 0.0, 0.0)?;
                }
                if row.sent {
                    add_daily(
                        &tx,
                        id,
                        1,
                        row.tokens_in as i64,
                        row.tokens_out as i64,
                        row.cost,
                    )?;
                }
                let alert = check_alert(&tx, &month, row.cost, budget)?;
                tx.commit()?;
                Ok(Settled { alert })
            })
            .await
    }

    /// This month's totals, after settling interrupted calls.
    pub async fn month(&self) -> Result<MonthTotals, StateError> {
        self.ready()?;
        self.state
            .call(|conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                sweep(&tx)?;
                let t = month_totals(&tx, &this_month())?;
                tx.commit()?;
                Ok(t)
            })
            .await
    }

    /// Same as [`Ledger::month`], blocking (for the CLI).
    pub fn month_now(&self) -> Result<MonthTotals, StateError> {
        self.ready()?;
        self.state.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            sweep(&tx)?;
            let t = month_totals(&tx, &this_month())?;
            tx.commit()?;
            Ok(t)
        })
    }

    /// What `month` has cost so far (settled rows, interrupted calls at their reserved cost).
    pub async fn spent(&self, month: &str) -> Result<f64, StateError> {
        self.ready()?;
        let month = month.to_string();
        self.state
            .call(move |conn| Ok(month_totals(conn, &month)?.spent))
            .await
    }

    /// Calls, tokens and cost per tier / model / task / script over the day, month or all time, costliest
    /// first. Rows for tiers skipped without a request (budget, cooldown) are not calls and cost nothing;
    /// calls under way are not in it yet (see [`MonthTotals::held`]).
    pub fn spend(&self, period: Period, by: GroupBy) -> Result<Vec<SpendRow>, StateError> {
        self.ready()?;
        let key = by.column();
        // A day reads its days; a month and all time read the months (a row per month and key).
        let (table, filter, arg) = match period {
            Period::Day => ("llm_daily", "day = ?1", today()),
            Period::Month => ("llm_monthly", "month = ?1", this_month()),
            Period::All => ("llm_monthly", "?1 = ?1", String::new()),
        };
        let sql = format!(
            "SELECT {key} AS k, SUM(calls), SUM(tokens_in), SUM(tokens_out), SUM(cost)
             FROM {table} WHERE {filter} GROUP BY k HAVING SUM(calls) > 0
             ORDER BY SUM(cost) DESC, SUM(calls) DESC, k"
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

    /// This month's calls and cost per day and key (for the chart), in day order.
    pub fn days(&self, by: GroupBy) -> Result<Vec<DayCost>, StateError> {
        self.ready()?;
        let sql = format!(
            "SELECT day, {key} AS k, SUM(calls), SUM(cost) FROM llm_daily WHERE month = ?1
             GROUP BY day, k HAVING SUM(calls) > 0 ORDER BY day, k",
            key = by.column()
        );
        self.state.with(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([this_month()], |r| {
                Ok(DayCost {
                    day: r.get(0)?,
                    key: r.get(1)?,
                    calls: r.get::<_, i64>(2)? as u64,
                    cost: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Recomputes the running totals from the rows (a repair; also how a bulk import is summed).
    pub fn rebuild_totals(&self) -> Result<(), StateError> {
        self.ready()?;
        self.state.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(REBUILD_TOTALS)?;
            tx.execute_batch(REBUILD_MONTHLY)?;
            tx.commit()
        })
    }

    /// Adds `n` settled calls of `cost` each to this month (spread over its days so far, three tiers and
    /// models, ten tasks, five scripts) in one transaction, then rebuilds the totals. For benches and tests
    /// that need a big ledger.
    pub fn seed_month(&self, n: u64, cost: f64) -> Result<(), StateError> {
        self.ready()?;
        let (month, last_day) = (this_month(), today()[8..10].parse::<u64>().unwrap_or(1));
        self.state.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO llm_ledger(ts, month, day, script, task, tier, provider, host, model, tokens_in,
                         tokens_out, cost, cost_source, outcome, sent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'openrouter', 'openrouter', ?7, 100, 20, ?8, 'provider', 'ok', 1)",
                )?;
                let tiers = ["local", "cheap", "premium"];
                let models = ["qwen2.5-coder:32b", "anthropic/claude-sonnet-4.5", "anthropic/claude-opus-4.6"];
                for i in 0..n {
                    let day = format!("{month}-{:02}", 1 + i % last_day);
                    let k = (i % 3) as usize;
                    stmt.execute(params![
                        format!("{day}T12:00:00.000Z"),
                        month,
                        day,
                        format!("script-{}.lua", i % 5),
                        format!("task-{}", i % 10),
                        tiers[k],
                        models[k],
                        cost
                    ])?;
                }
            }
            tx.execute_batch(REBUILD_TOTALS)?;
            tx.execute_batch(REBUILD_MONTHLY)?;
            tx.commit()
        })
    }

    /// The provider usage cached for `base` (an endpoint's base URL), if any.
    pub fn provider_usage(&self, base: &str) -> Result<Option<ProviderUsage>, StateError> {
        self.ready()?;
        self.state.with(|conn| {
            conn.query_row(
                "SELECT fetched, usage_monthly, usage_daily, key_limit, limit_remaining FROM llm_provider
                 WHERE base = ?1 AND month = ?2",
                params![base, this_month()],
                |r| {
                    Ok(ProviderUsage {
                        fetched: r.get(0)?,
                        usage_monthly: r.get(1)?,
                        usage_daily: r.get(2)?,
                        limit: r.get(3)?,
                        limit_remaining: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Caches the provider usage fetched for `base`.
    pub fn store_provider_usage(&self, base: &str, u: &ProviderUsage) -> Result<(), StateError> {
        self.ready()?;
        self.state.with(|conn| {
            conn.execute(
                "INSERT INTO llm_provider(base, fetched, month, usage_monthly, usage_daily, key_limit, limit_remaining)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(base) DO UPDATE SET fetched = excluded.fetched, month = excluded.month,
                     usage_monthly = excluded.usage_monthly, usage_daily = excluded.usage_daily,
                     key_limit = excluded.key_limit, limit_remaining = excluded.limit_remaining",
                params![
                    base,
                    u.fetched,
                    this_month(),
                    u.usage_monthly,
                    u.usage_daily,
                    u.limit,
                    u.limit_remaining
                ],
            )
            .map(|_| ())
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

/// The alert, the first time `month`'s spend reaches `alert_at × limit` (once per month, any process).
fn check_alert(
    tx: &Transaction<'_>,
    month: &str,
    cost: f64,
    budget: Option<(f64, f64)>,
) -> rusqlite::Result<Option<Alert>> {
    let Some((limit, alert_at)) = budget.filter(|_| cost > 0.0) else {
        return Ok(None);
    };
    let spent = month_totals(tx, month)?.spent;
    if spent < limit * alert_at {
        return Ok(None);
    }
    let fired = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO llm_alerts(month, spent, at) VALUES (:month, :spent, :at)",
        )?
        .execute(
            named_params! {":month": month, ":spent": spent, ":at": Utc::now().to_rfc3339()},
        )?;
    Ok((fired == 1).then_some(Alert { spent, limit }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(name: &str) -> (Ledger, std::path::PathBuf) {
        let dir =
            crate::core::test_tmp().join(format!("baton-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Ledger::new(State::new(&dir)), dir)
    }

    fn row(tier: &str, model: &str, cost: f64, outcome: Outcome) -> Row {
        Row {
            tier: Some(tier.into()),
            provider: "openrouter".into(),
            model: model.into(),
            tokens_in: 10,
            tokens_out: 5,
            cost,
            cost_source: "provider".into(),
            outcome,
            sent: outcome != Outcome::Budget,
            ..Row::default()
        }
    }

    async fn open(l: &Ledger, worst: f64, limit: f64) -> Option<Open> {
        match l
            .open(
                row("cheap", "a", 0.0, Outcome::Sent),
                worst,
                Some((limit, None)),
            )
            .await
            .unwrap()
        {
            Opened::Open(o) => Some(o),
            Opened::Refused(_) => None,
        }
    }

    #[tokio::test]
    async fn reservations_never_exceed_the_limit_and_settle_to_real_cost() {
        let (l, dir) = ledger("reserve");
        let mut opened = Vec::new();
        for _ in 0..10 {
            opened.push(open(&l, 0.1, 1.0).await.expect("fits"));
        }
        assert_eq!(open(&l, 0.1, 1.0).await, None, "the 11th must not fit");
        // Settling at a lower real cost frees room.
        l.settle(&opened[0], row("cheap", "a", 0.04, Outcome::Ok), None)
            .await
            .unwrap();
        assert!(open(&l, 0.06, 1.0).await.is_some());
        assert_eq!(open(&l, 0.01, 1.0).await, None);
        let t = l.month().await.unwrap();
        assert!((t.spent - 0.04).abs() < 1e-12, "{t:?}");
        assert!((t.held - 0.96).abs() < 1e-12, "{t:?}");
        // Another handle on the same database (as another process would be) sees the reservations.
        let other = Ledger::new(State::new(&dir));
        assert_eq!(open(&other, 0.01, 1.0).await, None);
        // The provider's figure counts when it is above the ledger's.
        let r = l
            .open(
                row("cheap", "a", 0.0, Outcome::Sent),
                0.0,
                Some((1.0, Some(1.5))),
            )
            .await
            .unwrap();
        let Opened::Refused(r) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            r.to_string(),
            "worst case $0.00 does not fit what is left of $1.00 this month (spent $0.04 per this ledger, \
             $1.50 per the provider's usage_monthly, $0.96 held by calls under way)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_row_of_a_dead_process_is_settled_as_interrupted() {
        let (l, dir) = ledger("interrupted");
        let o = open(&l, 0.25, 1.0).await.unwrap();
        // Pretend the row was written by a process that is gone (pid 1 with another start time).
        l.state
            .with(|c| {
                c.execute(
                    "UPDATE llm_ledger SET pid = 1, proc = proc || 'x' WHERE id = ?1",
                    [o.id],
                )
            })
            .unwrap();
        let t = l.month().await.unwrap();
        assert_eq!((t.spent, t.held, t.interrupted), (0.25, 0.0, 0.25), "{t:?}");
        let rows = l.spend(Period::Month, GroupBy::Tier).unwrap();
        assert_eq!((rows[0].calls, rows[0].cost), (1, 0.25));
        // A live row (this process) is left alone.
        let mine = open(&l, 0.5, 1.0).await.unwrap();
        let t = l.month().await.unwrap();
        assert_eq!((t.spent, t.held), (0.25, 0.5));
        l.settle(&mine, row("cheap", "a", 0.1, Outcome::Ok), None)
            .await
            .unwrap();
        let t = l.month().await.unwrap();
        assert!((t.spent - 0.35).abs() < 1e-12 && t.held == 0.0, "{t:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_is_identified_by_its_start_time() {
        let me = me();
        assert_eq!(me.pid, std::process::id());
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(me.proc.contains(':') && me.proc.len() > 2, "{}", me.proc);
            assert!(still_running(me.pid, &me.proc));
            assert!(!still_running(me.pid, "other:1"));
            assert!(!still_running(u32::MAX >> 1, "x:1"));
        }
    }

    #[tokio::test]
    async fn alert_fires_once_per_month() {
        let (l, dir) = ledger("alert");
        let b = Some((1.0, 0.5));
        assert_eq!(
            l.record(row("cheap", "a", 0.3, Outcome::Ok), b)
                .await
                .unwrap()
                .alert,
            None
        );
        let a = l
            .record(row("cheap", "a", 0.3, Outcome::Ok), b)
            .await
            .unwrap()
            .alert
            .expect("crossed 50 %");
        assert!((a.spent - 0.6).abs() < 1e-12 && a.limit == 1.0);
        assert_eq!(
            l.record(row("cheap", "a", 0.3, Outcome::Ok), b)
                .await
                .unwrap()
                .alert,
            None
        );
        assert!(l.alerted(&this_month()).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A database from before `llm_monthly` gets it filled from its days; all-time and month reports read
    /// it, and agree with the days (also after a rebuild).
    #[tokio::test]
    async fn monthly_totals_are_filled_by_the_migration_and_kept_with_each_call() {
        let (l, dir) = ledger("monthly");
        l.state.migrate("ledger", &MIGRATIONS[..5]).unwrap();
        l.state
            .with(|c| {
                c.execute_batch(
                    "INSERT INTO llm_daily(day, month, tier, model, task, script, calls, tokens_in, tokens_out, cost)
                     VALUES ('2026-10-01', '2026-10', 'cheap', 'sonnet', '-', '-', 2, 20, 10, 0.5),
                            ('2026-10-02', '2026-10', 'cheap', 'sonnet', '-', '-', 1, 10, 5, 0.25),
                            ('2026-11-03', '2026-11', 'premium', 'opus', '-', '-', 1, 10, 5, 1.0);",
                )
            })
            .unwrap();
        l.record(row("cheap", "sonnet", 0.125, Outcome::Ok), None)
            .await
            .unwrap();
        let all = l.spend(Period::All, GroupBy::Model).unwrap();
        let pick = |rows: &[SpendRow]| -> Vec<(String, u64, f64)> {
            rows.iter()
                .map(|r| (r.key.clone(), r.calls, r.cost))
                .collect()
        };
        assert_eq!(
            pick(&all),
            [
                ("opus".to_string(), 1, 1.0),
                ("sonnet".to_string(), 4, 0.875)
            ]
        );
        let month = l.spend(Period::Month, GroupBy::Tier).unwrap();
        assert_eq!(pick(&month), [("cheap".to_string(), 1, 0.125)]);
        let from_days: f64 = l
            .state
            .with(|c| c.query_row("SELECT SUM(cost) FROM llm_daily", [], |r| r.get(0)))
            .unwrap();
        assert!((all.iter().map(|r| r.cost).sum::<f64>() - from_days).abs() < 1e-12);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn spend_groups_and_skips_unsent_rows() {
        let (l, dir) = ledger("spend");
        l.record(row("cheap", "sonnet", 0.5, Outcome::Ok), None)
            .await
            .unwrap();
        l.record(row("cheap", "sonnet", 0.25, Outcome::Rejected), None)
            .await
            .unwrap();
        l.record(row("premium", "opus", 0.0, Outcome::Budget), None)
            .await
            .unwrap();
        l.record(
            Row {
                provider: "ollama".into(),
                model: "qwen".into(),
                tier: Some("local".into()),
                cost_source: "unknown".into(),
                outcome: Outcome::Ok,
                sent: true,
                tokens_in: 7,
                ..Row::default()
            },
            None,
        )
        .await
        .unwrap();
        // A call under way is held, not spent.
        open(&l, 0.5, 10.0).await.unwrap();
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
        assert_eq!(l.spend(Period::All, GroupBy::Script).unwrap()[0].key, "-");
        let days = l.days(GroupBy::Tier).unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!((days[0].key.as_str(), days[0].cost), ("cheap", 0.75));
        // Rebuilding the totals from the rows gives the same figures.
        let before = (l.month().await.unwrap(), rows);
        l.rebuild_totals().unwrap();
        assert_eq!(
            (
                l.month().await.unwrap(),
                l.spend(Period::Day, GroupBy::Model).unwrap()
            ),
            before
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

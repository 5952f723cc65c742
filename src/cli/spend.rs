//! `baton spend [--period day|month|all] [--by tier|model|task|script] [--json]`: this month's spend from the
//! ledger and from the provider side by side, held and interrupted amounts, the budget and its alert line,
//! the ledger grouped (a bar per row scaled to the costliest) and a per-day chart of the month.
use std::process::ExitCode;

use super::table::Table;
use super::{Cli, Out, default_state, load_fleet};
use crate::core::llm::Llm;
use crate::core::llm::budget::Report;
use crate::core::llm::ledger::{DayCost, GroupBy, Period, SpendRow};

/// Longest bar, in characters.
const BAR_MAX: usize = 40;
/// Keys longer than this (display columns) are cut with `…`.
const KEY_MAX: u16 = 40;
/// Levels of the per-day chart, lowest to highest.
const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub fn show(cli: &Cli, period: &str, by: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (Some(period), Some(group)) = (Period::parse(period), GroupBy::parse(by)) else {
        anyhow::bail!(
            "spend: --period must be day, month or all and --by tier, model, task or script"
        );
    };
    let llm = Llm::new(load_fleet(cli)?, default_state());
    let report = crate::lua::runtime::block_on(llm.budget().report(period, group))??;
    let mut out = Out::new();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        let width = super::table::terminal_width().map_or(100, usize::from);
        out.write_all(summary(&report).as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(text(&report.rows, by, width).as_bytes())?;
        if period == Period::Month && !report.days.is_empty() {
            out.write_all(b"\n")?;
            out.write_all(chart(&report.days, &report.month).as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The month at a glance: ledger and provider side by side, held, interrupted, budget and alert line.
fn summary(r: &Report) -> String {
    let mut s = format!("{} (UTC month)\n", r.month);
    let mut line = |label: &str, value: String| s.push_str(&format!("  {label:<9} {value}\n"));
    let mut ledger = format!("${:.4} this state directory", r.ledger.spent);
    if r.ledger.interrupted > 0.0 {
        ledger.push_str(&format!(
            " (${:.4} of it interrupted calls at their worst case)",
            r.ledger.interrupted
        ));
    }
    line("ledger", ledger);
    match &r.provider {
        Some(p) => {
            let mut v = format!("${:.4} usage_monthly", p.usage_monthly.unwrap_or(0.0));
            if let Some(d) = p.usage_daily {
                v.push_str(&format!(", ${d:.4} today"));
            }
            if let Some(l) = p.limit {
                v.push_str(&format!(", key limit ${l:.2}"));
                if let Some(left) = p.limit_remaining {
                    v.push_str(&format!(" (${left:.2} left)"));
                }
            }
            line("provider", v);
        }
        None => line("provider", "-".into()),
    }
    line("held", format!("${:.4} by calls under way", r.ledger.held));
    match (r.budget, r.alert_line) {
        (Some(b), Some(alert)) => line(
            "budget",
            format!(
                "${:.4} of ${:.2} ({:.0}%), alert at ${alert:.2}",
                r.spent + r.ledger.held,
                b.monthly_usd,
                if b.monthly_usd > 0.0 {
                    (r.spent + r.ledger.held) / b.monthly_usd * 100.0
                } else {
                    100.0
                }
            ),
        ),
        _ => line("budget", "none".into()),
    }
    s
}

/// One line per key: its cost per day of `month` (`YYYY-MM`) as levels, scaled to the costliest day of any
/// key; a day without calls is a space.
fn chart(days: &[DayCost], month: &str) -> String {
    let Some(last) = days.iter().filter_map(|d| day_of(&d.day)).max() else {
        return String::new();
    };
    let max = days.iter().map(|d| d.cost).fold(0.0, f64::max);
    let mut keys: Vec<&str> = days.iter().map(|d| d.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let width = keys
        .iter()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .min(KEY_MAX as usize);
    let mut s = format!(
        "{:<width$}  cost per day, {month}-01 … {month}-{last:02}\n",
        ""
    );
    for key in keys {
        let mut line = vec![' '; last];
        for d in days.iter().filter(|d| d.key == key) {
            if let Some(n) = day_of(&d.day) {
                line[n - 1] = level(d.cost, max);
            }
        }
        let shown: String = key.chars().take(width).collect();
        s.push_str(&format!(
            "{shown:<width$}  {}\n",
            line.into_iter().collect::<String>()
        ));
    }
    s
}

/// `YYYY-MM-DD` → the day of the month.
fn day_of(day: &str) -> Option<usize> {
    day.get(8..10)?
        .parse()
        .ok()
        .filter(|d| (1..=31).contains(d))
}

/// The level for `cost` when `max` is the top one; a day with calls shows at least the lowest.
fn level(cost: f64, max: f64) -> char {
    if max <= 0.0 || cost <= 0.0 {
        return LEVELS[0];
    }
    let i = ((cost / max) * (LEVELS.len() - 1) as f64).round() as usize;
    LEVELS[i.min(LEVELS.len() - 1)]
}

/// The table, with bars as long as fit in `width` columns (at most [`BAR_MAX`]), and a total line.
fn text(rows: &[SpendRow], by: &str, width: usize) -> String {
    if rows.is_empty() {
        return "no LLM calls recorded in this period\n".to_string();
    }
    let mut table = Table::new([
        by.to_uppercase().as_str(),
        "CALLS",
        "TOKENS IN",
        "TOKENS OUT",
        "COST",
    ])
    .align_right(&[1, 2, 3, 4])
    .limit(0, KEY_MAX);
    for r in rows {
        table.row([
            r.key.clone(),
            r.calls.to_string(),
            r.tokens_in.to_string(),
            r.tokens_out.to_string(),
            format!("${:.4}", r.cost),
        ]);
    }
    let total: f64 = rows.iter().map(|r| r.cost).sum();
    let calls: u64 = rows.iter().map(|r| r.calls).sum();
    table.row([
        "total".to_string(),
        calls.to_string(),
        String::new(),
        String::new(),
        format!("${total:.4}"),
    ]);
    // The bar column adds its gap before it and its own padding after it.
    let bar_w = width.saturating_sub(table.width() + 4).min(BAR_MAX);
    if bar_w > 0 {
        let max = rows.iter().map(|r| r.cost).fold(0.0, f64::max);
        table.append_column(rows.iter().map(|r| "█".repeat(bar_len(r.cost, max, bar_w))));
    }
    table.to_string()
}

/// Characters of bar for `cost` when `max` gets `width`; any cost above zero shows at least one.
fn bar_len(cost: f64, max: f64, width: usize) -> usize {
    let n = if max > 0.0 {
        ((cost / max) * width as f64).round() as usize
    } else {
        0
    };
    if cost > 0.0 { n.max(1) } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, calls: u64, cost: f64) -> SpendRow {
        SpendRow {
            key: key.into(),
            calls,
            tokens_in: calls * 10,
            tokens_out: calls * 5,
            cost,
        }
    }

    #[test]
    fn a_bar_per_row_scaled_to_the_costliest_and_a_total() {
        let rows = [
            row("cheap", 2, 0.75),
            row("local", 1, 0.0),
            row("premium", 1, 0.01),
        ];
        let table = text(&rows, "tier", 100);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("TIER     CALLS"), "{table}");
        assert!(
            lines[1].starts_with("cheap")
                && lines[1].contains("$0.7500")
                && lines[1].ends_with(&format!("  {}", "█".repeat(40))),
            "{table}"
        );
        assert!(
            lines[2].starts_with("local") && !lines[2].contains('█'),
            "{table}"
        );
        assert!(lines[3].ends_with("$0.0100  █"), "{table}");
        assert!(
            lines[4].starts_with("total") && lines[4].contains("$0.7600"),
            "{table}"
        );
        // Numbers are right-aligned: the cost column ends at the same place on every line.
        let cost_end = |l: &str| l.find('$').map(|i| i + 7);
        assert_eq!(cost_end(lines[1]), cost_end(lines[4]), "{table}");
    }

    #[test]
    fn bars_shrink_to_the_width_and_long_keys_are_cut() {
        let long = "k".repeat(60);
        let rows = [row(&long, 1, 1.0)];
        let narrow = text(&rows, "model", 60);
        assert!(!narrow.contains('█'), "{narrow}");
        let line = narrow.lines().nth(1).unwrap();
        assert!(
            line.starts_with(&format!("{}…  ", "k".repeat(39))),
            "{narrow}"
        );
        let wide = text(&rows, "model", 110);
        assert_eq!(
            wide.lines().nth(1).unwrap().matches('█').count(),
            // The table with its padding (the bar column's too) fills the width exactly.
            110 - 79 - 4,
            "{wide}"
        );
    }

    #[test]
    fn the_chart_has_a_level_per_day_and_a_line_per_key() {
        let day = |d: &str, key: &str, cost: f64| DayCost {
            day: format!("2026-12-{d}"),
            key: key.into(),
            calls: 1,
            cost,
        };
        let days = [
            day("01", "cheap", 1.0),
            day("03", "cheap", 0.5),
            day("03", "local", 0.0),
        ];
        let c = chart(&days, "2026-12");
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(
            lines[0], "       cost per day, 2026-12-01 … 2026-12-03",
            "{c}"
        );
        assert_eq!(lines[1], "cheap  █ ▅", "{c}");
        assert_eq!(lines[2], "local    ▁", "{c}");
    }

    #[test]
    fn the_summary_puts_ledger_and_provider_side_by_side() {
        use crate::core::llm::ledger::{MonthTotals, ProviderUsage};
        let r = Report {
            month: "2026-12".into(),
            period: "month".into(),
            by: "tier".into(),
            ledger: MonthTotals {
                spent: 1.0,
                held: 0.5,
                interrupted: 0.25,
            },
            provider: Some(ProviderUsage {
                fetched: 0,
                usage_monthly: Some(3.0),
                usage_daily: Some(0.5),
                limit: Some(20.0),
                limit_remaining: Some(17.0),
            }),
            spent: 3.0,
            budget: Some(crate::core::fleet::Budget {
                monthly_usd: 10.0,
                alert_at: 0.8,
            }),
            alert_line: Some(8.0),
            rows: vec![],
            days: vec![],
        };
        assert_eq!(
            summary(&r),
            "2026-12 (UTC month)\n\
             \x20 ledger    $1.0000 this state directory ($0.2500 of it interrupted calls at their worst case)\n\
             \x20 provider  $3.0000 usage_monthly, $0.5000 today, key limit $20.00 ($17.00 left)\n\
             \x20 held      $0.5000 by calls under way\n\
             \x20 budget    $3.5000 of $10.00 (35%), alert at $8.00\n"
        );
    }

    #[test]
    fn nothing_recorded() {
        assert_eq!(
            text(&[], "tier", 80),
            "no LLM calls recorded in this period\n"
        );
    }
}

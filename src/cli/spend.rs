//! `baton spend [--period day|month|all] [--by tier|model|task|script] [--json]`: this month's spend from the
//! ledger and from the provider side by side, held and interrupted amounts, the budget and its alert line,
//! the ledger grouped (a bar per row scaled to the costliest) and the month day by day (cost, a bar on a
//! stated scale, each key's share). Money reads as [`crate::core::text::money`] prints it.
use std::process::ExitCode;

use super::table::Table;
use super::{Cli, Out, default_state, load_fleet};
use crate::core::llm::Llm;
use crate::core::llm::budget::Report;
use crate::core::llm::ledger::{DayCost, GroupBy, Period, SpendRow};
use crate::core::text::money;

/// Longest bar, in characters.
const BAR_MAX: usize = 40;
/// Keys longer than this (display columns) are cut with `…`.
const KEY_MAX: u16 = 40;

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
            out.write_all(chart(&report.days, &report.month, width).as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The month at a glance: ledger and provider side by side, held, interrupted, budget and alert line.
fn summary(r: &Report) -> String {
    let mut s = format!("{} (UTC month)\n", r.month);
    let mut line = |label: &str, value: String| s.push_str(&format!("  {label:<9} {value}\n"));
    let mut ledger = format!("{} this state directory", money(r.ledger.spent));
    if r.ledger.interrupted > 0.0 {
        ledger.push_str(&format!(
            " ({} of it interrupted calls at their worst case)",
            money(r.ledger.interrupted)
        ));
    }
    line("ledger", ledger);
    match &r.provider {
        Some(p) => {
            let mut v = format!("{} usage_monthly", money(p.usage_monthly.unwrap_or(0.0)));
            if let Some(d) = p.usage_daily {
                v.push_str(&format!(", {} today", money(d)));
            }
            if let Some(l) = p.limit {
                v.push_str(&format!(", key limit {}", money(l)));
                if let Some(left) = p.limit_remaining {
                    v.push_str(&format!(" ({} left)", money(left)));
                }
            }
            line("provider", v);
        }
        None => line("provider", "-".into()),
    }
    line(
        "held",
        format!("{} by calls under way", money(r.ledger.held)),
    );
    match (r.budget, r.alert_line) {
        (Some(b), Some(alert)) => line(
            "budget",
            format!(
                "{} of {} ({:.0}%), alert at {}",
                money(r.spent + r.ledger.held),
                money(b.monthly_usd),
                if b.monthly_usd > 0.0 {
                    (r.spent + r.ledger.held) / b.monthly_usd * 100.0
                } else {
                    100.0
                },
                money(alert)
            ),
        ),
        _ => line("budget", "none".into()),
    }
    s
}

/// One line per day of `month` (`YYYY-MM`), from the first day with calls to the last: the day, its cost
/// (all keys together), a bar on the scale the header gives, and, when there is more than one key, what
/// each key spent that day. A day that cost nothing reads `·` (its value `$0.00` with free calls, `-`
/// without calls); any cost above zero gets at least one cell. `width` bounds the line (the bar has at
/// most [`BAR_MAX`] cells).
fn chart(days: &[DayCost], month: &str, width: usize) -> String {
    use std::collections::BTreeMap;
    // Day of the month → its total and each key's cost.
    type Day<'a> = (f64, Vec<(&'a str, f64)>);
    let mut by_day: BTreeMap<usize, Day> = BTreeMap::new();
    for d in days {
        if let Some(n) = day_of(&d.day) {
            let e = by_day.entry(n).or_default();
            e.0 += d.cost;
            e.1.push((d.key.as_str(), d.cost));
        }
    }
    let (Some(&first), Some(&last)) = (by_day.keys().next(), by_day.keys().next_back()) else {
        return String::new();
    };
    let many_keys = days.iter().any(|d| d.key != days[0].key);
    let max = by_day.values().map(|v| v.0).fold(0.0, f64::max);
    let values: Vec<(usize, String)> = (first..=last)
        .map(|n| (n, by_day.get(&n).map_or("-".into(), |v| money(v.0))))
        .collect();
    let value_w = values.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    // `DD  VALUE  BAR`: the bar gets what is left of the width.
    let bar_w = width.saturating_sub(2 + 2 + value_w + 2).clamp(1, BAR_MAX);
    let cell = cell_value(max, bar_w);
    let mut s = format!("cost per day, {month}-{first:02} … {month}-{last:02} (UTC): ");
    match cell {
        Some(cell) => s.push_str(&format!(
            "█ = {}, the costliest day {}; · = nothing spent\n",
            money(cell),
            money(max)
        )),
        None => s.push_str("nothing spent on any day (· = nothing spent)\n"),
    }
    for (n, value) in values {
        let cost = by_day.get(&n).map_or(0.0, |v| v.0);
        let bar = match cell {
            Some(cell) if cost > 0.0 => {
                "█".repeat(((cost / cell).round() as usize).clamp(1, bar_w))
            }
            _ => "·".to_string(),
        };
        let mut line = format!("{n:02}  {value:>value_w$}  {bar}");
        if many_keys && let Some((_, keys)) = by_day.get(&n) {
            let pad = bar_w.saturating_sub(bar.chars().count());
            let each: Vec<String> = keys
                .iter()
                .map(|(k, c)| {
                    let k: String = k.chars().take(KEY_MAX as usize).collect();
                    format!("{k} {}", money(*c))
                })
                .collect();
            line.push_str(&format!("{:pad$}  {}", "", each.join(", ")));
        }
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// The money one bar cell stands for when the costliest day is `max` and gets at most `cells` cells: the
/// smallest 1, 2 or 5 times a power of ten at or above `max / cells`, so the scale reads exactly.
/// `None` when nothing was spent.
fn cell_value(max: f64, cells: usize) -> Option<f64> {
    if max <= 0.0 || !max.is_finite() || cells == 0 {
        return None;
    }
    let raw = max / cells as f64;
    let power = 10f64.powi(raw.log10().floor() as i32);
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        // A hair of tolerance: 0.25 / 5 is 0.05 in decimal but a little above it in binary.
        .find(|v| *v >= raw * (1.0 - 1e-9))
}

/// `YYYY-MM-DD` → the day of the month.
fn day_of(day: &str) -> Option<usize> {
    day.get(8..10)?
        .parse()
        .ok()
        .filter(|d| (1..=31).contains(d))
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
            money(r.cost),
        ]);
    }
    let total: f64 = rows.iter().map(|r| r.cost).sum();
    let calls: u64 = rows.iter().map(|r| r.calls).sum();
    table.row([
        "total".to_string(),
        calls.to_string(),
        String::new(),
        String::new(),
        money(total),
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
                && lines[1].contains("$0.75")
                && lines[1].ends_with(&format!("  {}", "█".repeat(40))),
            "{table}"
        );
        assert!(
            lines[2].starts_with("local") && !lines[2].contains('█'),
            "{table}"
        );
        assert!(lines[3].ends_with("$0.01  █"), "{table}");
        assert!(
            lines[4].starts_with("total") && lines[4].contains("$0.76"),
            "{table}"
        );
        // Numbers are right-aligned: the cost column ends at the same place on every line.
        let cost_end = |l: &str| {
            l.find('$')
                .map(|i| i + l[i..].find(' ').unwrap_or(l.len() - i))
        };
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
            110 - 77 - 4,
            "{wide}"
        );
    }

    fn day(d: &str, key: &str, cost: f64) -> DayCost {
        DayCost {
            day: format!("2026-12-{d}"),
            key: key.into(),
            calls: 1,
            cost,
        }
    }

    #[test]
    fn the_chart_has_a_scale_a_value_per_day_and_marks_free_days() {
        let days = [
            day("02", "cheap", 1.0),
            day("04", "cheap", 0.01),
            day("04", "local", 0.0),
            day("05", "local", 0.0),
        ];
        let c = chart(&days, "2026-12", 100);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(
            lines[0],
            "cost per day, 2026-12-02 … 2026-12-05 (UTC): █ = $0.05, the costliest day $1.00; · = nothing spent",
            "{c}"
        );
        let bar = |n: usize| format!("{}{}", "█".repeat(n), " ".repeat(40 - n));
        assert_eq!(
            lines[1],
            format!("02  $1.00  {}  cheap $1.00", bar(20)),
            "{c}"
        );
        // A day without calls and a day with free calls only: a dot, not a bar.
        assert_eq!(lines[2], "03      -  ·", "{c}");
        // A cent is one cell, however small beside the costliest day.
        assert_eq!(
            lines[3],
            format!("04  $0.01  {}  cheap $0.01, local $0.00", bar(1)),
            "{c}"
        );
        assert_eq!(
            lines[4],
            format!("05  $0.00  ·{}  local $0.00", " ".repeat(39)),
            "{c}"
        );
        assert_eq!(lines.len(), 5, "{c}");
    }

    #[test]
    fn one_key_has_no_breakdown_and_tiny_costs_keep_their_digits() {
        let c = chart(
            &[day("01", "cheap", 0.0042), day("03", "cheap", 0.0021)],
            "2026-12",
            30,
        );
        assert_eq!(
            c,
            "cost per day, 2026-12-01 … 2026-12-03 (UTC): █ = $0.0005, the costliest day $0.0042; · = nothing spent\n\
             01  $0.0042  ████████\n\
             02        -  ·\n\
             03  $0.0021  ████\n"
        );
        let free = chart(&[day("07", "local", 0.0)], "2026-12", 80);
        assert_eq!(
            free,
            "cost per day, 2026-12-07 … 2026-12-07 (UTC): nothing spent on any day (· = nothing spent)\n\
             07  $0.00  ·\n"
        );
    }

    #[test]
    fn the_scale_is_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(cell_value(1.0, 40), Some(0.05));
        assert_eq!(cell_value(0.25, 5), Some(0.05));
        assert_eq!(cell_value(3.0, 40), Some(0.1));
        assert_eq!(cell_value(0.0, 40), None);
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
             \x20 ledger    $1.00 this state directory ($0.25 of it interrupted calls at their worst case)\n\
             \x20 provider  $3.00 usage_monthly, $0.50 today, key limit $20.00 ($17.00 left)\n\
             \x20 held      $0.50 by calls under way\n\
             \x20 budget    $3.50 of $10.00 (35%), alert at $8.00\n"
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

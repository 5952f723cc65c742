//! `baton spend [--period day|month|all] [--by tier|model|task] [--json]`: the LLM ledger grouped, a bar
//! per row scaled to the costliest.
use std::process::ExitCode;

use super::table::Table;
use super::{Out, default_state};
use crate::core::llm::ledger::{GroupBy, Ledger, Period, SpendRow};

/// Longest bar, in characters.
const BAR_MAX: usize = 40;
/// Keys longer than this (display columns) are cut with `…`.
const KEY_MAX: u16 = 40;

pub fn show(period: &str, by: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (Some(period), Some(group)) = (Period::parse(period), GroupBy::parse(by)) else {
        anyhow::bail!("spend: --period must be day, month or all and --by tier, model or task");
    };
    let rows = Ledger::new(default_state()).spend(period, group)?;
    let mut out = Out::new();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        let width = super::table::terminal_width().map_or(100, usize::from);
        out.write_all(text(&rows, by, width).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
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
    fn nothing_recorded() {
        assert_eq!(
            text(&[], "tier", 80),
            "no LLM calls recorded in this period\n"
        );
    }
}

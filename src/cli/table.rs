//! The one table renderer of the CLI (`fleet`, `spend`, `jobs`, `status`, `schedule list|history`), on
//! `comfy-table`: no borders, a header row, two spaces between columns, widths by display width (so `数据`
//! counts two columns), trailing blanks trimmed. Cells wrap only when stdout is a terminal (to `$COLUMNS`,
//! else the terminal's own width); piped output keeps one line per row.
use std::fmt;
use std::io::IsTerminal;

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, ColumnConstraint, ContentArrangement, Width};

/// Blanks between two columns.
const GAP: u16 = 2;

/// The width output should fit: `$COLUMNS` when set, else the width of the terminal on stdout, if it is one.
pub fn terminal_width() -> Option<u16> {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .or_else(|| {
            rustix::termios::tcgetwinsize(std::io::stdout())
                .ok()
                .map(|size| size.ws_col)
        })
        .filter(|&w| w > 0)
}

pub struct Table {
    inner: comfy_table::Table,
    /// Some column has a width limit: rows are kept to one line and cut with `…`.
    limited: bool,
}

impl Table {
    /// A table with this header row.
    pub fn new<I, S>(header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut inner = comfy_table::Table::new();
        inner
            .load_style(NOTHING)
            .set_header(header.into_iter().map(|s| Cell::new(s.into())));
        if std::io::stdout().is_terminal()
            && let Some(width) = terminal_width()
        {
            inner
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(width);
        }
        let mut table = Table {
            inner,
            limited: false,
        };
        table.pad_columns();
        table
    }

    /// Aligns these columns (0-based) to the right, header included: for numbers.
    pub fn align_right(mut self, columns: &[usize]) -> Table {
        for &c in columns {
            if let Some(col) = self.inner.column_mut(c) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        self
    }

    /// Cuts cells of column `c` wider than `width` display columns, ending them with `…`.
    pub fn limit(mut self, c: usize, width: u16) -> Table {
        if let Some(col) = self.inner.column_mut(c) {
            col.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(width + GAP)));
            self.limited = true;
        }
        self
    }

    /// Adds a row; a cell may hold several lines. Control characters (remote text: a host's stderr, a
    /// server's error) are shown escaped, never sent to the terminal.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row = comfy_table::Row::from(cells.into_iter().map(|s| safe_cell(s.into())));
        if self.limited {
            row.max_height(1);
        }
        self.inner.add_row(row);
        self.pad_columns();
    }

    /// Adds a column on the right, one cell per row so far (no header).
    pub fn append_column<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for (row, cell) in self.inner.row_iter_mut().zip(cells) {
            row.add_cell(safe_cell(cell.into()));
        }
        self.inner.discover_columns();
        self.pad_columns();
    }

    /// The width of the widest line (display columns), before any wrapping to the terminal.
    pub fn width(&self) -> usize {
        let widths = self.inner.column_max_content_widths();
        let gaps = widths.len().saturating_sub(1) * usize::from(GAP);
        let columns: usize = self
            .inner
            .column_iter()
            .zip(widths)
            .map(|(col, w)| match col.constraint() {
                Some(ColumnConstraint::UpperBoundary(Width::Fixed(limit))) => w.min(limit - GAP),
                _ => w,
            })
            .map(usize::from)
            .sum();
        columns + gaps
    }

    fn pad_columns(&mut self) {
        for col in self.inner.column_iter_mut() {
            col.set_padding((0, GAP));
        }
    }
}

/// The rendered table, each line ending in a newline.
impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.inner.lines() {
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A cell with control characters escaped (newlines kept: a cell may hold several lines).
fn safe_cell(text: String) -> Cell {
    match crate::core::text::escape(&text) {
        std::borrow::Cow::Borrowed(_) => Cell::new(text),
        std::borrow::Cow::Owned(safe) => Cell::new(safe),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_look_two_spaces_between_columns() {
        let mut t = Table::new(["HOST", "SSH", "ROLE"]);
        t.row(["brain", "me@brain", "inference"]);
        t.row(["pc", "", ""]);
        assert_eq!(
            t.to_string(),
            "HOST   SSH       ROLE\n\
             brain  me@brain  inference\n\
             pc\n"
        );
    }

    #[test]
    fn non_ascii_names_line_up_by_display_width() {
        let mut t = Table::new(["NAME", "N"]);
        t.row(["café-ü", "1"]);
        t.row(["数据", "2"]);
        t.row(["plain", "3"]);
        let text = t.to_string();
        assert_eq!(
            text,
            "NAME    N\n\
             café-ü  1\n\
             数据    2\n\
             plain   3\n"
        );
        // The second column starts at the same display column on every line: "数据" is 2 chars, 4 columns.
        let starts: Vec<usize> = text
            .lines()
            .map(|l| {
                let (name, _) = l.split_at(l.rfind(' ').unwrap() + 1);
                name.chars()
                    .map(|c| if c == '数' || c == '据' { 2 } else { 1 })
                    .sum()
            })
            .collect();
        assert_eq!(starts, [8, 8, 8, 8], "{text}");
    }

    #[test]
    fn right_alignment_limits_and_extra_columns() {
        let mut t = Table::new(["KEY", "CALLS"]).align_right(&[1]).limit(0, 6);
        t.row(["a-long-key-name", "7"]);
        t.row(["ok", "1234"]);
        assert_eq!(t.width(), 6 + 2 + 5);
        t.append_column(["██", ""]);
        assert_eq!(
            t.to_string(),
            "KEY     CALLS\n\
             a-lon…      7  ██\n\
             ok       1234\n"
        );
    }

    #[test]
    fn control_characters_in_cells_are_escaped() {
        let mut t = Table::new(["HOST", "ERROR"]);
        t.row(["h0", "boom\x1b]0;pwned\x07\x1b[2J"]);
        t.append_column(["\u{9b}31m"]);
        let text = t.to_string();
        assert!(
            !text.contains('\x1b') && !text.contains('\u{9b}'),
            "{text:?}"
        );
        assert!(
            text.contains("boom\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
            "{text}"
        );
        assert!(text.contains("\\u{9b}31m"), "{text}");
    }
}

//! Remote text made safe to show: control characters escaped (so a server's error body or a host's stderr
//! cannot move the cursor, clear the screen or retitle the terminal) and long names cut short.
use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal as is: C0 controls other than newline and tab, DEL, C1 controls
/// (`U+009B` is a one-character CSI) and the bidirectional overrides that make text read other than it is.
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each unsafe character written as `\u{1b}` (newlines and tabs kept, for multi-line errors).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape`], with newlines and tabs escaped too (for one table cell or one line).
pub fn escape_line(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| unsafe_char(c) || c == '\n' || c == '\t')
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `text`, with `…` and the number of characters left out when cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((i, _)) => {
            let rest = text[i..].chars().count();
            Cow::Owned(format!("{}… ({rest} more characters)", &text[..i]))
        }
    }
}

/// How many characters of a value an error message echoes ([`shown`], [`quoted`]).
pub const SHOWN: usize = 64;

/// A value as an error or log message echoes it: cut to [`SHOWN`] characters (with how many were left
/// out) and escaped onto one line, so a 1 MB argument or a server's `ESC[2J` cannot flood or forge
/// the message.
pub fn shown(text: &str) -> String {
    escape_line(&truncate(text, SHOWN)).into_owned()
}

/// [`shown`] in double quotes: `"abc"`, `"xxxx… (1048512 more characters)"`.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", shown(text))
}

/// Text from elsewhere (an HTTP body, a server's error, a host's stderr) made safe for one message:
/// control characters escaped (newlines too, so it cannot forge a log line) and at most `max`
/// characters kept.
pub fn remote(text: &str, max: usize) -> String {
    escape_line(&truncate(text.trim(), max)).into_owned()
}

/// A size bound as people read it: `16 MiB`, `64 KiB` (rounded down), `100 bytes`.
pub fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// Money in US dollars, the one way baton prints it: `$10.00`, `$0.75`, `-$1.50`.
///
/// The rule: zero and amounts from half a cent up have two decimals, rounded to the cent. A smaller
/// non-zero amount (one call to a cheap model) keeps two significant digits, trailing zeros dropped:
/// `$0.0042`, `$0.00057`, `$0.001`; below `$0.0000000001` it reads `$0.00`. A value that is
/// not a number is printed as Rust does (`$NaN`, `$inf`).
pub fn money(usd: f64) -> String {
    if !usd.is_finite() {
        return format!("${usd}");
    }
    let sign = if usd < 0.0 { "-" } else { "" };
    let abs = usd.abs();
    // Below half a cent, two decimals would print $0.00 for a real cost.
    let text = if !(1e-10..0.005).contains(&abs) {
        format!("{abs:.2}")
    } else {
        let decimals = (1 - abs.log10().floor() as i32).clamp(3, 10) as usize;
        let digits = format!("{abs:.decimals$}");
        let kept = digits.trim_end_matches('0');
        let decimals_kept = kept.len() - kept.find('.').map_or(kept.len(), |i| i + 1);
        if decimals_kept < 2 {
            format!("{abs:.2}")
        } else {
            kept.to_string()
        }
    };
    if text == "0.00" {
        return "$0.00".into();
    }
    format!("{sign}${text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_but_lines_kept() {
        assert_eq!(escape("plain é ☃"), "plain é ☃");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b]0;owned\x07b\x1b[2J\r\nc\td\u{9b}e\u{202e}f\x7f"),
            "a\\u{1b}]0;owned\\u{7}b\\u{1b}[2J\\u{d}\nc\td\\u{9b}e\\u{202e}f\\u{7f}"
        );
        assert_eq!(escape_line("a\nb\tc\x1b"), "a\\nb\\tc\\u{1b}");
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 2), "éé… (3 more characters)");
        let big = "x".repeat(1 << 20);
        assert!(shown(&big).len() < 100, "{}", shown(&big));
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        assert_eq!(remote(" ok\n\x1b[2J ", 100), "ok\\n\\u{1b}[2J");
    }

    #[test]
    fn money_has_cents_and_keeps_tiny_costs() {
        let cases = [
            (10.0, "$10.00"),
            (10.5, "$10.50"),
            (1234.567, "$1234.57"),
            (0.75, "$0.75"),
            (0.01, "$0.01"),
            (0.005, "$0.01"),
            (0.0042, "$0.0042"),
            (0.00416, "$0.0042"),
            (0.00057, "$0.00057"),
            (0.00999, "$0.01"),
            (0.001, "$0.001"),
            (0.0, "$0.00"),
            (-0.0, "$0.00"),
            (1e-12, "$0.00"),
            (-1.5, "-$1.50"),
            (-0.0042, "-$0.0042"),
        ];
        for (usd, want) in cases {
            assert_eq!(money(usd), want, "money({usd})");
        }
        assert_eq!(money(f64::NAN), "$NaN");
    }
}

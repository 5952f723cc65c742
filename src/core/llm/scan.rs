//! A small JSON reader for the hot path of streamed answers: it walks one event's bytes once, hands out the
//! few values a client needs (strings borrowed from the input when they hold no escapes) and skips the rest
//! without building anything.
//!
//! It is a fast path, not a second parser: every method returns `None` on anything it does not handle
//! exactly (malformed input, a type it was not asked for, nesting deeper than [`MAX_DEPTH`]), and the caller
//! then parses the same bytes with serde_json, which decides (and words the error). It takes `&str`, so the
//! input is valid UTF-8, and it checks what serde_json checks in skipped values too (escapes, control
//! characters, the number grammar): what it accepts, serde_json reads the same way.
use std::borrow::Cow;

/// Deeper nesting than this in a skipped value gives up (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 64;

pub struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    pub fn new(text: &'a str) -> Scan<'a> {
        Scan {
            text,
            b: text.as_bytes(),
            i: 0,
        }
    }

    /// The next byte after whitespace (not consumed).
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        // Servers send compact JSON: one comparison settles the usual case.
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => Some(c),
            _ => self.peek_past_space(),
        }
    }

    #[cold]
    #[inline(never)]
    fn peek_past_space(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    /// Consumes `c` (after whitespace) or gives up.
    pub fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// True at the end of the input (after whitespace).
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Walks the members of an object: `member(scan, key)` reads or skips each value. A key with an escape
    /// gives up (it could be an escaped spelling of a wanted key).
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Scan<'a>, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.each(b'{', b'}', |s| {
            let (key, escaped) = s.raw_string()?;
            if escaped {
                return None;
            }
            s.eat(b':')?;
            member(s, key)
        })
    }

    /// Walks the items of an array.
    pub fn array(&mut self, item: impl FnMut(&mut Scan<'a>) -> Option<()>) -> Option<()> {
        self.each(b'[', b']', item)
    }

    /// `open`, then `one` for each comma-separated element, then `close`.
    fn each(
        &mut self,
        open: u8,
        close: u8,
        mut one: impl FnMut(&mut Scan<'a>) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            one(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `null` (consumed, `true`) or something else (not consumed, `false`).
    pub fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(true);
        }
        Some(false)
    }

    /// A string, borrowed when it has no escapes.
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        self.peek()?;
        let start = self.i;
        let (raw, escaped) = self.raw_string()?;
        if escaped {
            // Model output often holds escapes (newlines, quotes): serde_json decodes this one string.
            return serde_json::from_str::<String>(&self.text[start..self.i])
                .ok()
                .map(Cow::Owned);
        }
        Some(Cow::Borrowed(raw))
    }

    /// A string or `null`.
    pub fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A non-negative integer that fits a `u64` (anything else gives up). `number` has already refused
    /// leading zeros, so digits alone are an integer.
    pub fn u64(&mut self) -> Option<u64> {
        let n = self.number()?;
        if !n.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(n).ok()?.parse().ok()
    }

    /// A number as `f64`, rounded exactly as serde_json rounds it.
    pub fn f64(&mut self) -> Option<f64> {
        let n = self.number()?;
        serde_json::from_slice(n).ok()
    }

    /// Skips one value of any type.
    pub fn skip(&mut self) -> Option<()> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.raw_string().map(drop),
            b'{' => self.object(|s, _| s.skip_at(depth + 1)),
            b'[' => self.array(|s| s.skip_at(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.peek()?;
        let rest = self.b.get(self.i..)?;
        rest.starts_with(word).then(|| self.i += word.len())
    }

    /// The bytes of a number, checked against JSON's grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<&'a [u8]> {
        self.peek()?;
        let start = self.i;
        let digits = |s: &mut Scan| {
            let from = s.i;
            while s.b.get(s.i).is_some_and(u8::is_ascii_digit) {
                s.i += 1;
            }
            s.i > from
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return None;
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(&self.b[start..self.i])
    }

    /// A string's raw text between its quotes (escapes as written), and whether it holds escapes.
    #[inline(always)]
    fn raw_string(&mut self) -> Option<(&'a str, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let end = plain_run(self.b, start);
        if self.b.get(end) == Some(&b'"') {
            self.i = end + 1;
            return Some((self.between_quotes(start, end), false));
        }
        self.i = end;
        self.escaped_rest(start)
    }

    /// The text between an opening quote at `start - 1` and a closing one at `end`.
    #[inline(always)]
    fn between_quotes(&self, start: usize, end: usize) -> &'a str {
        debug_assert!(self.b[start - 1] == b'"' && self.b[end] == b'"');
        // SAFETY: `text` is a `&str` and both ends sit next to an ASCII quote, so they are character
        // boundaries within it.
        unsafe { self.text.get_unchecked(start..end) }
    }

    /// The rest of a string from its first backslash (or control character) on.
    #[cold]
    #[inline(never)]
    fn escaped_rest(&mut self, start: usize) -> Option<(&'a str, bool)> {
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some((self.between_quotes(start, self.i - 1), true));
                }
                b'\\' => {
                    // A backslash and what it escapes: one of `"\/bfnrt` or `u` and four hex digits.
                    self.i += match self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                        b'u' if self
                            .b
                            .get(self.i + 2..self.i + 6)?
                            .iter()
                            .all(u8::is_ascii_hexdigit) =>
                        {
                            6
                        }
                        _ => return None,
                    };
                }
                // A raw control character: not allowed in a JSON string.
                _ => return None,
            }
            self.i = plain_run(self.b, self.i);
        }
    }
}

/// The first sight of a member: `None` when it was seen before, because serde_json refuses a duplicate
/// field and the fast reader must not read one differently.
pub fn first(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// Where the run of plain string text from `i` ends: the first quote, backslash or control character, or
/// the end of `b`. Strings here are short (keys, ids, a token or two), too short for a vectorised search to
/// pay its set-up: this looks at eight bytes per step (with the classic "has a zero byte" trick) and at
/// single bytes only in the last few.
#[inline(always)]
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let quote = w ^ (ONES * b'"' as u64);
        let slash = w ^ (ONES * b'\\' as u64);
        // A byte's high bit is set where it is zero (quote, slash) or below 0x20 (w). Borrows can only
        // mark bytes above a marked one, so the lowest mark is exact.
        let marks = (quote.wrapping_sub(ONES) & !quote
            | slash.wrapping_sub(ONES) & !slash
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGH;
        if marks != 0 {
            return i + (marks.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_skips() {
        let doc = r#" { "a" : "x\"y" , "b":[1,-2.5e+3,true,false,null,{"c":{}}], "n": 42, "f": 0.25, "s": "plain" } "#;
        let mut s = Scan::new(doc);
        let (mut a, mut n, mut f, mut t) = (None, None, None, None);
        s.object(|s, k| {
            match k {
                "a" => a = Some(s.string()?.into_owned()),
                "n" => n = Some(s.u64()?),
                "f" => f = Some(s.f64()?),
                "s" => t = Some(s.string()?),
                _ => s.skip()?,
            }
            Some(())
        })
        .unwrap();
        assert!(s.at_end());
        assert_eq!(a.as_deref(), Some("x\"y"));
        assert_eq!((n, f), (Some(42), Some(0.25)));
        assert!(matches!(t, Some(Cow::Borrowed("plain"))));
    }

    #[test]
    fn gives_up_on_what_it_does_not_handle() {
        // One value that must be the whole input.
        let one = |doc: &str, read: fn(&mut Scan) -> Option<()>| {
            let mut s = Scan::new(doc);
            read(&mut s).filter(|_| s.at_end())
        };
        let u = |s: &mut Scan| s.u64().map(drop);
        let st = |s: &mut Scan| s.string().map(drop);
        let sk = |s: &mut Scan| s.skip();
        assert!(one("01", u).is_none());
        assert!(one("-1", u).is_none());
        assert!(one("1.0", u).is_none());
        assert!(one("99999999999999999999", u).is_none());
        assert!(one("\"a\u{1}b\"", st).is_none());
        assert!(one("\"\\x\"", sk).is_none());
        assert!(one("\"\\uZZZZ\"", st).is_none());
        assert!(one("\"open", st).is_none());
        assert!(one("\"ends in \\", st).is_none());
        assert!(one("[1,]", sk).is_none());
        assert!(one("{\"a\" 1}", sk).is_none());
        assert!(one("nul", sk).is_none());
        assert!(one("1.", sk).is_none());
        assert!(one("-", sk).is_none());
        assert!(one("1e", sk).is_none());
        assert!(one("+1", sk).is_none());
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(one(&deep, sk).is_none());
        let fine = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert!(one(&fine, sk).is_some());
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        let naive = |b: &[u8], i: usize| {
            (i..b.len())
                .find(|&j| b[j] == b'"' || b[j] == b'\\' || b[j] < 0x20)
                .unwrap_or(b.len())
        };
        let mut text: Vec<u8> = Vec::new();
        for (n, special) in [b'"', b'\\', 0x00, 0x1f, b'\n']
            .iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            text.extend(std::iter::repeat_n(b'a', n % 11));
            text.extend_from_slice("é\u{7f}\u{20}!#[\u{ff}".as_bytes());
            text.push(*special);
        }
        for i in 0..=text.len() {
            assert_eq!(plain_run(&text, i), naive(&text, i), "from {i}");
        }
        // 0x21 and 0x5b/0x5d sit next to the stop bytes; 0x80.. are parts of longer characters.
        let clean = "!#[]^~\u{80}\u{7ff}\u{ffff}".repeat(9);
        assert_eq!(plain_run(clean.as_bytes(), 0), clean.len());
    }

    #[test]
    fn escaped_strings_decode_like_serde() {
        let doc = r#""tab\tquote\" snow\u2603 pair\ud83d\ude00 slash\/""#;
        let got = Scan::new(doc).string().unwrap();
        let want: String = serde_json::from_str(doc).unwrap();
        assert_eq!(got, want);
        assert!(matches!(got, Cow::Owned(_)));
    }
}

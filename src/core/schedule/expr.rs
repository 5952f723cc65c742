//! Cron expressions and time zones.
//!
//! Accepted forms: classic 5 fields (`minute hour day-of-month month day-of-week`), 6 fields with seconds
//! first, and `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`). Fields are
//! validated here so an error names the field and the bad value; the normalised expression (explicit
//! value lists) is then handed to the `cron` crate, which finds matching wall-clock times.
//!
//! Classic semantics are kept where the `cron` crate differs: day-of-week is 0-7 with 0 and 7 = Sunday
//! (names SUN-SAT also work), and when both day-of-month and day-of-week are restricted a day matches if
//! *either* matches (Vixie cron), e.g. `0 9 1 * MON` runs on the 1st and on every Monday.
//!
//! Daylight-saving time (see [`Expr::next_after`]): a job whose hour field is restricted ("fixed-time",
//! e.g. `30 2 * * *`) fires once per calendar day — on the spring-forward day a wall time inside the gap is
//! read with the offset in effect before the gap (RFC 5545 rule: 02:30 runs at 03:30 summer time), and on
//! the fall-back day only the first of the two 02:30s fires. A job that runs every hour (hour field `*`,
//! e.g. `*/10 * * * * *`) follows real time: nothing fires in the skipped hour and the repeated hour runs
//! again, so intervals stay even.
use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};

/// A bad cron expression: the expression itself and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad cron expression {}: {reason}", crate::core::text::quoted(expr))]
pub struct ExprError {
    pub expr: String,
    pub reason: String,
}

/// What is wrong with one field of a cron expression ([`ExprError`] adds the field's name and text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum FieldError {
    #[error("empty list item")]
    EmptyItem,
    #[error("step {0:?} is not a number")]
    StepNotANumber(String),
    #[error("step must be at least 1")]
    ZeroStep,
    #[error("range {0} goes backwards")]
    Backwards(String),
    #[error("{value} is out of range (expected {expected})")]
    OutOfRange { value: u32, expected: String },
    #[error("{token:?} is not a value (expected {expected})")]
    NotAValue { token: String, expected: String },
}

/// A time zone name that is neither `local`, `UTC` nor an IANA name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone {0:?} (expected \"local\", \"UTC\" or an IANA name such as \"Europe/Berlin\")"
)]
pub struct UnknownZone(pub String);

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for values `min..`, matched case-insensitively on their first three letters.
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &DAYS,
};

const SHORTHANDS: [(&str, &str); 7] = [
    ("@yearly", "0 0 0 1 1 *"),
    ("@annually", "0 0 0 1 1 *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@weekly", "0 0 0 * * 0"),
    ("@daily", "0 0 0 * * *"),
    ("@midnight", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
];

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    /// One schedule, or two when day-of-month and day-of-week are both restricted (either may match).
    schedules: Vec<cron::Schedule>,
    /// The hour field is `*`: the job follows real time across DST changes.
    every_hour: bool,
    has_seconds: bool,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// How far the UTC offset of a zone can move in one change, with margin (real changes are ≤ 2 h).
const DST_WINDOW: chrono::Duration = chrono::Duration::hours(3);

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let bad = |reason: String| ExprError {
            expr: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad("the expression is empty".into()));
        }
        let expanded = if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            let known = SHORTHANDS
                .iter()
                .find(|(k, _)| *k == lower)
                .map(|(_, v)| *v);
            let names: Vec<&str> = SHORTHANDS.iter().map(|(k, _)| *k).collect();
            known.ok_or_else(|| {
                bad(format!(
                    "unknown shorthand (expected one of {})",
                    names.join(", ")
                ))
            })?
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (has_seconds, fields) = match fields.len() {
            5 => (false, [&["0"][..], &fields[..]].concat()),
            6 => (true, fields),
            n => {
                return Err(bad(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), 6 (seconds first) or \
                     @hourly/@daily/@weekly/@monthly, got {n} field{}",
                    if n == 1 { "" } else { "s" }
                )));
            }
        };
        let has_seconds = has_seconds && !trimmed.starts_with('@');
        let specs = [&SECOND, &MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK];
        let mut sets = Vec::with_capacity(6);
        for (text, spec) in fields.iter().zip(specs) {
            sets.push(
                parse_field(text, spec)
                    .map_err(|reason| bad(format!("{} field {text:?}: {reason}", spec.name)))?,
            );
        }
        let every_hour = sets[2].is_none();
        let render = |sets: &[Option<BTreeSet<u32>>]| -> String {
            let parts: Vec<String> = sets
                .iter()
                .enumerate()
                .map(|(i, set)| match set {
                    None => "*".to_string(),
                    // The cron crate numbers days of the week 1-7 from Sunday; names avoid the confusion.
                    Some(set) if i == 5 => set
                        .iter()
                        .map(|&d| DAYS[d as usize])
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(set) => set.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
                })
                .collect();
            parts.join(" ")
        };
        let variants = if sets[3].is_some() && sets[5].is_some() {
            let mut by_date = sets.clone();
            by_date[5] = None;
            let mut by_weekday = sets;
            by_weekday[3] = None;
            vec![render(&by_date), render(&by_weekday)]
        } else {
            vec![render(&sets)]
        };
        let schedules = variants
            .iter()
            .map(|v| {
                v.parse::<cron::Schedule>().map_err(|e| {
                    let msg = e.to_string();
                    bad(msg
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid")
                        .trim()
                        .to_string())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expr {
            source: text.trim().to_string(),
            schedules,
            every_hour,
            has_seconds,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True for 6-field expressions (second resolution).
    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }

    /// The first matching wall-clock time strictly after `after` (naive times throughout).
    fn next_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let after = Utc.from_utc_datetime(&after);
        self.schedules
            .iter()
            .filter_map(|s| s.after(&after).next())
            .min()
            .map(|t| t.naive_utc())
    }

    /// The instants a matching wall-clock time stands for in `zone` (see the module docs for DST).
    fn instants(&self, naive: NaiveDateTime, zone: &Zone) -> [Option<DateTime<Utc>>; 2] {
        match zone.resolve(naive) {
            LocalResult::Single(t) => [Some(t), None],
            LocalResult::Ambiguous(a, b) if self.every_hour => [Some(a), Some(b)],
            LocalResult::Ambiguous(a, _) => [Some(a), None],
            LocalResult::None if self.every_hour => [None, None],
            LocalResult::None => [Some(zone.before_gap(naive)), None],
        }
    }

    /// The next fire time strictly after `after`, evaluated on the wall clock of `zone`. `None` when the
    /// expression never matches again (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        let local = zone.naive(after);
        let offset = zone.offset(after);
        let stable =
            zone.offset(after - DST_WINDOW) == offset && zone.offset(after + DST_WINDOW) == offset;
        if stable {
            // No offset change near `after`: wall time maps one-to-one onto instants here, and single
            // (unambiguous) wall times map monotonically, so the first matching wall time is the answer.
            let next = self.next_naive(local)?;
            if let LocalResult::Single(t) = zone.resolve(next) {
                return Some(t);
            }
        }
        // Near a DST change: look at the wall times around `after` and keep the earliest instant after it.
        let mut cursor = local - DST_WINDOW;
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        while let Some(naive) = self.next_naive(cursor) {
            if best.is_some_and(|(_, at)| naive >= at + DST_WINDOW) {
                break;
            }
            for t in self.instants(naive, zone).into_iter().flatten() {
                if t > after && best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, naive));
                }
            }
            cursor = naive;
        }
        best.map(|(t, _)| t)
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, zone: &Zone, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(cursor, zone) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }

    /// The latest fire time in `(after, until]`, found without walking every fire of a frequent job.
    pub fn last_in(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        zone: &Zone,
    ) -> Option<DateTime<Utc>> {
        let mut window = chrono::Duration::seconds(60);
        loop {
            let from = (until - window).max(after);
            let mut latest = None;
            let mut cursor = from;
            while let Some(t) = self.next_after(cursor, zone).filter(|t| *t <= until) {
                latest = Some(t);
                cursor = t;
            }
            if latest.is_some() || from == after {
                return latest;
            }
            window = window * 4;
        }
    }
}

/// Parses one field into its set of values, or `None` for "every value".
fn parse_field(text: &str, spec: &Field) -> Result<Option<BTreeSet<u32>>, FieldError> {
    let is_dow = spec.name == DAY_OF_WEEK.name;
    // `*` in day-of-week means Sunday to Saturday once (7 is only an alias for 0).
    let full_max = if is_dow { 6 } else { spec.max };
    let mut set = BTreeSet::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(FieldError::EmptyItem);
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| FieldError::StepNotANumber(step.to_string()))?;
                if step == 0 {
                    return Err(FieldError::ZeroStep);
                }
                (base, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if base == "*" || (base == "?" && (is_dow || spec.name == DAY_OF_MONTH.name))
        {
            (spec.min, full_max)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (value(a, spec)?, value(b, spec)?);
            if a > b {
                return Err(FieldError::Backwards(base.to_string()));
            }
            (a, b)
        } else {
            let a = value(base, spec)?;
            (a, if step.is_some() { full_max } else { a })
        };
        set.extend(
            (lo..=hi)
                .step_by(step.unwrap_or(1) as usize)
                .map(|v| if is_dow && v == 7 { 0 } else { v }),
        );
    }
    let all = (spec.min..=full_max).all(|v| set.contains(&v));
    Ok(if all { None } else { Some(set) })
}

fn value(token: &str, spec: &Field) -> Result<u32, FieldError> {
    let range = || {
        let names = if spec.names.is_empty() {
            String::new()
        } else {
            format!(" or {}-{}", spec.names[0], spec.names[spec.names.len() - 1])
        };
        format!("{}-{}{names}", spec.min, spec.max)
    };
    if let Ok(v) = token.parse::<u32>() {
        return if (spec.min..=spec.max).contains(&v) {
            Ok(v)
        } else {
            Err(FieldError::OutOfRange {
                value: v,
                expected: range(),
            })
        };
    }
    let upper = token.to_ascii_uppercase();
    spec.names
        .iter()
        .position(|n| upper.len() >= 3 && n.starts_with(&upper[..3]) && is_name_of(&upper, n))
        .map(|i| i as u32 + spec.min)
        .ok_or_else(|| FieldError::NotAValue {
            token: token.to_string(),
            expected: range(),
        })
}

/// `MON`, `MONDAY`; `JAN`, `JANUARY` (full names checked loosely: three-letter prefix and letters only).
fn is_name_of(upper: &str, name: &str) -> bool {
    upper.len() == 3 || (upper.starts_with(name) && upper.chars().all(|c| c.is_ascii_alphabetic()))
}

/// Where wall-clock time is read for a job: the machine's local zone, UTC, or a named IANA zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Local,
    Utc,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `"local"`, `"UTC"` or an IANA name such as `"Europe/Berlin"`.
    pub fn parse(text: &str) -> Result<Zone, UnknownZone> {
        match text {
            "local" | "Local" => Ok(Zone::Local),
            "UTC" | "utc" | "Z" => Ok(Zone::Utc),
            name => name
                .parse::<chrono_tz::Tz>()
                .map(Zone::Named)
                .map_err(|_| UnknownZone(name.to_string())),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Zone::Local => "local".into(),
            Zone::Utc => "UTC".into(),
            Zone::Named(tz) => tz.name().into(),
        }
    }

    fn offset(&self, t: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Local => chrono::Local.offset_from_utc_datetime(&t.naive_utc()).fix(),
            Zone::Utc => Utc.fix(),
            Zone::Named(tz) => tz.offset_from_utc_datetime(&t.naive_utc()).fix(),
        }
    }

    fn naive(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.naive_utc() + self.offset(t)
    }

    fn resolve(&self, naive: NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        let utc = |r: LocalResult<DateTime<FixedOffset>>| r.map(|t| t.with_timezone(&Utc));
        match self {
            Zone::Local => utc(chrono::Local
                .from_local_datetime(&naive)
                .map(|t| t.fixed_offset())),
            Zone::Utc => LocalResult::Single(Utc.from_utc_datetime(&naive)),
            Zone::Named(tz) => utc(tz.from_local_datetime(&naive).map(|t| t.fixed_offset())),
        }
    }

    /// A wall time inside a spring-forward gap, read with the offset in effect a day earlier (before the gap).
    fn before_gap(&self, naive: NaiveDateTime) -> DateTime<Utc> {
        let as_utc = Utc.from_utc_datetime(&naive);
        as_utc - self.offset(as_utc - chrono::Duration::days(1))
    }

    /// ISO 8601 in this zone, to the second: `2026-03-29T03:30:00+02:00`.
    pub fn format(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.offset(t))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next_n(expr: &str, zone: &Zone, from: &str, n: usize) -> Vec<String> {
        let e = Expr::parse(expr).unwrap();
        e.upcoming(utc(from), zone, n)
            .into_iter()
            .map(|t| zone.format(t))
            .collect()
    }

    #[test]
    fn five_field_is_minute_resolution() {
        let e = Expr::parse("*/15 9-17 * * MON-FRI").unwrap();
        assert!(!e.has_seconds());
        // 2026-11-20 is a Friday.
        assert_eq!(
            next_n(
                "*/15 9-17 * * MON-FRI",
                &Zone::Utc,
                "2026-11-20T17:50:00Z",
                3
            ),
            [
                "2026-11-23T09:00:00Z",
                "2026-11-23T09:15:00Z",
                "2026-11-23T09:30:00Z"
            ]
        );
        assert_eq!(
            next_n("0 18 * * 1-5", &Zone::Utc, "2026-11-20T18:00:00Z", 1),
            ["2026-11-23T18:00:00Z"]
        );
    }

    #[test]
    fn six_field_has_seconds() {
        assert!(Expr::parse("*/10 * * * * *").unwrap().has_seconds());
        assert_eq!(
            next_n("*/10 * * * * *", &Zone::Utc, "2026-01-01T00:00:05Z", 3),
            [
                "2026-01-01T00:00:10Z",
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:30Z"
            ]
        );
        assert_eq!(
            next_n("30 0 12 * * *", &Zone::Utc, "2026-01-01T12:00:30Z", 1),
            ["2026-01-02T12:00:30Z"]
        );
    }

    #[test]
    fn shorthands_and_sunday_numbers() {
        let from = "2026-11-21T10:00:00Z"; // a Saturday
        assert_eq!(
            next_n("@hourly", &Zone::Utc, from, 1),
            ["2026-11-21T11:00:00Z"]
        );
        assert_eq!(
            next_n("@daily", &Zone::Utc, from, 1),
            ["2026-11-22T00:00:00Z"]
        );
        assert_eq!(
            next_n("@weekly", &Zone::Utc, from, 1),
            ["2026-11-22T00:00:00Z"]
        );
        assert_eq!(
            next_n("@monthly", &Zone::Utc, from, 1),
            ["2026-12-01T00:00:00Z"]
        );
        assert_eq!(
            next_n("@yearly", &Zone::Utc, from, 1),
            ["2027-01-01T00:00:00Z"]
        );
        assert!(!Expr::parse("@hourly").unwrap().has_seconds());
        // 0 and 7 are both Sunday; ranges up to 7 work.
        assert_eq!(
            next_n("0 0 * * 0", &Zone::Utc, from, 1),
            next_n("0 0 * * 7", &Zone::Utc, from, 1)
        );
        assert_eq!(
            next_n("0 0 * * 5-7", &Zone::Utc, from, 2),
            ["2026-11-22T00:00:00Z", "2026-11-27T00:00:00Z"]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 1st of the month or any Monday (Vixie cron semantics).
        assert_eq!(
            next_n("0 9 1 * MON", &Zone::Utc, "2026-11-21T00:00:00Z", 3),
            [
                "2026-11-23T09:00:00Z",
                "2026-11-30T09:00:00Z",
                "2026-12-01T09:00:00Z"
            ]
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("* * * *", "got 4 fields"),
            (
                "61 * * * *",
                "minute field \"61\": 61 is out of range (expected 0-59)",
            ),
            (
                "0 25 * * *",
                "hour field \"25\": 25 is out of range (expected 0-23)",
            ),
            (
                "0 0 * * FUNDAY",
                "day-of-week field \"FUNDAY\": \"FUNDAY\" is not a value (expected 0-7 or SUN-SAT)",
            ),
            ("0 0 * 13 *", "month field \"13\""),
            ("0 5-2 * * *", "range 5-2 goes backwards"),
            ("*/0 * * * *", "step must be at least 1"),
            ("@fortnightly", "unknown shorthand"),
            ("0 0 1,,2 * *", "empty list item"),
        ];
        for (expr, want) in cases {
            let err = Expr::parse(expr).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{expr:?}")), "{text}");
            assert!(text.contains(want), "{expr:?}: {text} (want {want:?})");
        }
    }

    #[test]
    fn never_matching_expression_has_no_next() {
        let e = Expr::parse("0 0 30 2 *").unwrap();
        assert_eq!(e.next_after(utc("2026-01-01T00:00:00Z"), &Zone::Utc), None);
    }

    #[test]
    fn fixed_time_job_fires_once_on_dst_days() {
        let ny = Zone::parse("America/New_York").unwrap();
        // 2026-03-08: clocks jump 02:00 EST -> 03:00 EDT. 02:30 does not exist: it runs at 03:30 EDT.
        assert_eq!(
            next_n("30 2 * * *", &ny, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T03:30:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
        // 2026-11-01: clocks fall back 02:00 EDT -> 01:00 EST. 01:30 happens twice: it runs only the first time.
        assert_eq!(
            next_n("30 1 * * *", &ny, "2026-10-31T12:00:00Z", 3),
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00"
            ]
        );
        // A daily 02:30 job on the fall-back day: 02:30 exists once (EST).
        assert_eq!(
            next_n("30 2 * * *", &ny, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T02:30:00-05:00", "2026-11-02T02:30:00-05:00"]
        );
        // Starting inside the repeated hour (second pass) does not fire the repeat.
        assert_eq!(
            next_n("30 1 * * *", &ny, "2026-11-01T06:10:00Z", 1),
            ["2026-11-02T01:30:00-05:00"]
        );
        // Europe/Berlin spring forward 2026-03-29 02:00 CET -> 03:00 CEST.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(
            next_n("30 2 * * *", &berlin, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
    }

    #[test]
    fn interval_job_follows_real_time_across_dst() {
        let ny = Zone::parse("America/New_York").unwrap();
        let e = Expr::parse("0 */30 * * * *").unwrap();
        // Fall back: 00:30, 01:00, 01:30 EDT, then 01:00, 01:30 EST again, then 02:00 EST: every 30 real minutes.
        let times = e.upcoming(utc("2026-11-01T04:00:00Z"), &ny, 6);
        let gaps: Vec<i64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).num_minutes())
            .collect();
        assert_eq!(gaps, [30, 30, 30, 30, 30]);
        assert_eq!(ny.format(times[2]), "2026-11-01T01:30:00-04:00");
        assert_eq!(ny.format(times[3]), "2026-11-01T01:00:00-05:00");
        // Spring forward: 01:30 EST is followed by 03:00 EDT, 30 real minutes later; nothing in the gap.
        let times = e.upcoming(utc("2026-03-08T06:00:00Z"), &ny, 3);
        let shown: Vec<String> = times.iter().map(|t| ny.format(*t)).collect();
        assert_eq!(
            shown,
            [
                "2026-03-08T01:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00"
            ]
        );
    }

    #[test]
    fn last_in_finds_latest_without_walking_everything() {
        let e = Expr::parse("* * * * * *").unwrap();
        let from = utc("2026-01-01T00:00:00Z");
        let until = utc("2026-01-01T08:00:00.5Z");
        assert_eq!(
            e.last_in(from, until, &Zone::Utc),
            Some(utc("2026-01-01T08:00:00Z"))
        );
        let daily = Expr::parse("0 3 * * *").unwrap();
        assert_eq!(
            daily.last_in(from, utc("2026-01-05T12:00:00Z"), &Zone::Utc),
            Some(utc("2026-01-05T03:00:00Z"))
        );
        assert_eq!(
            daily.last_in(from, utc("2026-01-01T02:00:00Z"), &Zone::Utc),
            None
        );
    }

    #[test]
    fn zones_parse_and_reject() {
        assert_eq!(Zone::parse("UTC").unwrap(), Zone::Utc);
        assert_eq!(Zone::parse("local").unwrap(), Zone::Local);
        assert_eq!(
            Zone::parse("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert!(
            Zone::parse("Mars/Olympus")
                .unwrap_err()
                .to_string()
                .contains("unknown time zone \"Mars/Olympus\"")
        );
        assert_eq!(
            Zone::parse("Mars/Olympus").unwrap_err().to_string(),
            "unknown time zone \"Mars/Olympus\" (expected \"local\", \"UTC\" or an IANA name such as \"Europe/Berlin\")"
        );
    }
}

//! `limits = {memory, job_timeout, keep_runs}`: what every Lua state and scheduled job may use, and how long
//! run records are kept.
use serde::{Deserialize, Serialize};

/// `limits = {memory = "1GiB", job_timeout = "1h"}`: the memory limit of every Lua state (a playbook, the
/// REPL, each run of a scheduled job) and the timeout of a scheduled job that sets none. Absent: 1 GiB, 1 h.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_timeout: Option<crate::core::duration::Dur>,
    /// How long ended runs and their journals are kept (`baton runs prune`, and the daemon once a day).
    /// Absent: 90 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_runs: Option<crate::core::duration::Dur>,
}

/// A size: a number of bytes or a string such as `"512MiB"`, `"1GiB"`, `"64MB"`, `"4096"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Parses `"512MiB"`, `"1 GiB"`, `"64MB"`, `"10KiB"`, `"4096"` (bytes). At least 1 MiB, so a typo cannot
    /// leave a Lua state unable to start.
    pub fn parse(s: &str) -> Result<Bytes, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (t[..split].trim(), t[split..].trim());
        let expected = || format!("expected a size such as \"512MiB\" or \"1GiB\", got {s:?}");
        let n: f64 = num.parse().map_err(|_| expected())?;
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            _ => return Err(expected()),
        };
        Bytes::from_f64(n * mult as f64).map_err(|e| format!("{e}, got {s:?}"))
    }

    fn from_f64(n: f64) -> Result<Bytes, String> {
        if !n.is_finite() || n < (1u64 << 20) as f64 || n > u64::MAX as f64 {
            return Err("expected a size of at least 1MiB".into());
        }
        Ok(Bytes(n as u64))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size (a number of bytes, or a string like \"512MiB\" or \"1GiB\")")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Bytes, E> {
                Bytes::from_f64(v).map_err(|e| E::custom(format!("{e}, got {v}")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bytes, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bytes, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
                Bytes::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fleet::tests::parse;
    use serde_json::json;

    #[test]
    fn limits_take_sizes_and_durations() {
        let f = parse(json!({"limits": {"memory": "512MiB", "job_timeout": "2h"}})).unwrap();
        assert_eq!(f.limits.memory, Some(Bytes(512 << 20)));
        assert_eq!(
            f.limits.job_timeout.map(|d| d.0),
            Some(std::time::Duration::from_secs(7200))
        );
        assert_eq!(Bytes::parse("1GiB"), Ok(Bytes(1 << 30)));
        assert_eq!(Bytes::parse("64 MB"), Ok(Bytes(64_000_000)));
        assert_eq!(Bytes::parse("1.5GiB"), Ok(Bytes(3 << 29)));
        let f = parse(json!({"limits": {"memory": 2097152}})).unwrap();
        assert_eq!(f.limits.memory, Some(Bytes(2 << 20)));
        for bad in ["lots", "12 parsecs", "", "-1GiB"] {
            assert!(Bytes::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Bytes::parse("100KiB")
                .unwrap_err()
                .contains("at least 1MiB")
        );
        let e = parse(json!({"limits": {"memory": "lots"}})).unwrap_err();
        assert!(e.0.starts_with("limits.memory"), "{}", e.0);
        let e = parse(json!({"limits": {"memroy": 1}})).unwrap_err();
        assert!(e.0.contains("did you mean memory"), "{}", e.0);
    }
}

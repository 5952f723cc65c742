//! Wording for values that do not fit a schema: the path of the bad value first, then what was wrong, with a
//! did-you-mean for misspelt keys. Shared by the fleet file and every option table.

/// `hosts.engine.olama: unknown key, did you mean ollama?` from a serde error with its path. `root` names
/// the whole value when the error has no path (`fleet: …`, `options: …`).
pub fn describe<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>, root: &str) -> String {
    let path = lua_path(e.path());
    let path = if path == "." || path.is_empty() {
        None
    } else {
        Some(path)
    };
    let inner = e.inner().to_string();
    // mlua's deserializer prefixes its messages; the rest is serde's wording.
    let inner = inner
        .strip_prefix("deserialize error: ")
        .map(str::to_string)
        .unwrap_or(inner);
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split('`')
            .skip(2)
            .step_by(2)
            .filter(|s| !s.is_empty())
            .collect();
        let full = match path {
            Some(p) if p == key || p.ends_with(&format!(".{key}")) => p,
            Some(p) => format!("{p}.{key}"),
            None => key.to_string(),
        };
        let hint = suggest(key, expected.iter().copied());
        let hint = if hint.is_empty() && !expected.is_empty() {
            format!(" (expected one of: {})", expected.join(", "))
        } else {
            hint
        };
        return format!("{full}: unknown key{hint}");
    }
    let inner = inner
        .replace("invalid type: ", "wrong type: got ")
        .replace("invalid value: ", "bad value: got ");
    match path {
        Some(p) => format!("{p}: {inner}"),
        None => format!("{root}: {inner}"),
    }
}

/// The path as a Lua user counts: `tiers[1].provider` for the first tier (serde counts from 0).
fn lua_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        if !matches!(segment, Segment::Seq { .. }) && !out.is_empty() {
            out.push('.');
        }
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{}]", index + 1)),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// `, did you mean X?` when a candidate is within a small edit distance, else empty.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= c.len().max(word.len()).div_ceil(3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(", did you mean {c}?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            suggest("tmeout", ["timeout", "check"]),
            ", did you mean timeout?"
        );
        assert_eq!(suggest("zzz", ["timeout", "check"]), "");
    }
}

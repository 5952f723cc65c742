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
        let hint = suggest(key, expected.iter().copied());
        let shown = crate::core::text::shown(key);
        let full = match path {
            Some(p) if p == key || p.ends_with(&format!(".{key}")) => {
                format!("{}{shown}", &p[..p.len() - key.len()])
            }
            Some(p) => format!("{p}.{shown}"),
            None => shown,
        };
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
    // serde echoes the bad value whole (`unknown variant `…``, `got "…"`); keep both ends of a long one.
    let inner = cut_middle(&inner, 240);
    let path = path.map(|p| cut_middle(&p, 120));
    match path {
        Some(p) => format!("{p}: {inner}"),
        None => format!("{root}: {inner}"),
    }
}

/// `text` if at most `max` characters, else its first and last `max / 2` characters around how many
/// were left out; control characters escaped.
fn cut_middle(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return crate::core::text::escape_line(text).into_owned();
    }
    let half = max / 2;
    let head: String = text.chars().take(half).collect();
    let tail: String = text.chars().skip(n - half).collect();
    crate::core::text::escape_line(&format!(
        "{head}… ({} characters left out) …{tail}",
        n - 2 * half
    ))
    .into_owned()
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
        .map(|c| (c, c.len().max(word.len()).div_ceil(3)))
        // The distance is at least the difference in length: a 1 MB word is not compared at all.
        .filter(|(c, most)| c.len().abs_diff(word.len()) <= *most)
        .map(|(c, most)| (strsim::levenshtein(word, c), c, most))
        .filter(|(d, _, most)| d <= most)
        .map(|(d, c, _)| (d, c))
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

    #[test]
    fn long_values_are_cut() {
        let long = format!("x{}y", "a".repeat(10_000));
        let cut = cut_middle(&long, 40);
        assert!(cut.starts_with("xaaa") && cut.ends_with("aay"), "{cut}");
        assert!(cut.contains("(9962 characters left out)"), "{cut}");
        assert_eq!(cut_middle("a\nb", 40), "a\\nb");
    }
}

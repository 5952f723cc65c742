//! A secret (an API key, a token, a header value) that cannot leak through an error, a log line or a `{:?}`.

/// A secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that needs it (the `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `text` with every occurrence of the secret replaced by `***` (for server messages that echo it).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() >= 4 && text.contains(&self.0) {
            text.replace(&self.0, "***")
        } else {
            text.to_string()
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("sk-or-v1-abcdef");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.scrub("bad key sk-or-v1-abcdef!"), "bad key ***!");
        assert_eq!(s.expose(), "sk-or-v1-abcdef");
    }
}

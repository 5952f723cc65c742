//! Structured answers: a small, documented subset of JSON Schema, enough for the schemas models are given.
//!
//! Checked keywords: `type` (a name or a list of names: object, array, string, number, integer, boolean,
//! null), `properties`, `required`, `additionalProperties` (`false` or a schema), `items`, `enum`, `const`,
//! `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength` (in characters),
//! `minItems`, `maxItems`, `anyOf`. Other keywords are ignored. Hand-written on purpose: full JSON Schema
//! crates bring large dependency trees (regex engines, URL resolution, HTTP fetching of `$ref`s) for
//! keywords these answers do not use.
use serde_json::Value;

/// Nesting beyond this is refused rather than walked (answers and schemas are both bounded by it).
pub const MAX_DEPTH: usize = 64;

/// Checks `data` against `schema`; the error names the first place that does not fit:
/// `$.items[2].name: expected a string, got number 3`.
pub fn validate(schema: &Value, data: &Value) -> Result<(), String> {
    check(schema, data, "$", 0)
}

/// An answer's text → JSON (a ``` fence around it is allowed), checked against `schema`.
pub fn decode(schema: &Value, text: &str) -> Result<Value, String> {
    let body = text.trim();
    let body = body
        .strip_prefix("```json")
        .or_else(|| body.strip_prefix("```"))
        .and_then(|b| b.trim_end().strip_suffix("```"))
        .unwrap_or(body)
        .trim();
    let data: Value = serde_json::from_str(body).map_err(|e| {
        let shown: String = body.chars().take(80).collect();
        format!("the answer is not JSON ({e}): {shown:?}")
    })?;
    validate(schema, &data).map_err(|e| format!("the answer does not match the schema: {e}"))?;
    Ok(data)
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

fn is_type(v: &Value, name: &str) -> bool {
    match name {
        "number" => v.is_number(),
        // 3.0 is an integer too.
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => type_of(v) == other,
    }
}

fn check(schema: &Value, data: &Value, path: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{path}: nested deeper than {MAX_DEPTH} levels"));
    }
    let Value::Object(s) = schema else {
        // `true` or anything else that is not a schema object accepts everything; `false` nothing.
        return match schema {
            Value::Bool(false) => Err(format!("{path}: not allowed")),
            _ => Ok(()),
        };
    };
    let got = || format!("{} {}", type_of(data), shown(data));
    if let Some(t) = s.get("type") {
        let names: Vec<&str> = match t {
            Value::String(n) => vec![n.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.is_empty() && !names.iter().any(|n| is_type(data, n)) {
            return Err(format!(
                "{path}: expected {}, got {}",
                names.join(" or "),
                got()
            ));
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(data)
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        return Err(format!(
            "{path}: expected one of {}, got {}",
            list.join(", "),
            got()
        ));
    }
    if let Some(c) = s.get("const")
        && c != data
    {
        return Err(format!("{path}: expected {c}, got {}", got()));
    }
    if let Some(Value::Array(any)) = s.get("anyOf")
        && !any
            .iter()
            .any(|sub| check(sub, data, path, depth + 1).is_ok())
    {
        return Err(format!("{path}: matches none of anyOf, got {}", got()));
    }
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    let count = |k: &str| s.get(k).and_then(Value::as_u64);
    match data {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(m) = num("minimum").filter(|m| x < *m) {
                return Err(format!("{path}: {x} is below the minimum {m}"));
            }
            if let Some(m) = num("maximum").filter(|m| x > *m) {
                return Err(format!("{path}: {x} is above the maximum {m}"));
            }
            if let Some(m) = num("exclusiveMinimum").filter(|m| x <= *m) {
                return Err(format!("{path}: {x} must be above {m}"));
            }
            if let Some(m) = num("exclusiveMaximum").filter(|m| x >= *m) {
                return Err(format!("{path}: {x} must be below {m}"));
            }
        }
        Value::String(text) => {
            let len = text.chars().count() as u64;
            if let Some(m) = count("minLength").filter(|m| len < *m) {
                return Err(format!("{path}: {len} characters, at least {m} expected"));
            }
            if let Some(m) = count("maxLength").filter(|m| len > *m) {
                return Err(format!("{path}: {len} characters, at most {m} expected"));
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(m) = count("minItems").filter(|m| len < *m) {
                return Err(format!("{path}: {len} items, at least {m} expected"));
            }
            if let Some(m) = count("maxItems").filter(|m| len > *m) {
                return Err(format!("{path}: {len} items, at most {m} expected"));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), depth + 1)?;
                }
            }
        }
        Value::Object(fields) => {
            if let Some(Value::Array(required)) = s.get("required") {
                for key in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(key) {
                        return Err(format!("{path}: missing required property {key:?}"));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (key, value) in fields {
                let sub = format!("{path}.{key}");
                match (
                    props.and_then(|p| p.get(key)),
                    s.get("additionalProperties"),
                ) {
                    (Some(p), _) => check(p, value, &sub, depth + 1)?,
                    (None, Some(Value::Bool(false))) => {
                        return Err(format!("{path}: unexpected property {key:?}"));
                    }
                    (None, Some(extra @ Value::Object(_))) => check(extra, value, &sub, depth + 1)?,
                    (None, _) => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "verdict": {"type": "string", "enum": ["pass", "fail"]},
                "score": {"type": "integer", "minimum": 0, "maximum": 10},
                "reasons": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 3},
                "note": {"type": ["string", "null"], "maxLength": 5}
            },
            "required": ["verdict", "score"],
            "additionalProperties": false
        })
    }

    #[test]
    fn valid_answers_pass() {
        validate(
            &schema(),
            &json!({"verdict": "pass", "score": 7, "reasons": ["a"], "note": null}),
        )
        .unwrap();
        validate(&schema(), &json!({"verdict": "fail", "score": 0.0})).unwrap();
        assert_eq!(
            decode(
                &schema(),
                "```json\n{\"verdict\":\"pass\",\"score\":1}\n```"
            )
            .unwrap()["score"],
            1
        );
    }

    #[test]
    fn each_keyword_names_the_place() {
        let bad = |v: Value| validate(&schema(), &v).unwrap_err();
        assert_eq!(bad(json!([])), "$: expected object, got array []");
        assert_eq!(
            bad(json!({"verdict": "pass"})),
            "$: missing required property \"score\""
        );
        assert_eq!(
            bad(json!({"verdict": "maybe", "score": 1})),
            "$.verdict: expected one of \"pass\", \"fail\", got string \"maybe\""
        );
        assert_eq!(
            bad(json!({"verdict": "pass", "score": 11})),
            "$.score: 11 is above the maximum 10"
        );
        assert_eq!(
            bad(json!({"verdict": "pass", "score": -1})),
            "$.score: -1 is below the minimum 0"
        );
        assert_eq!(
            bad(json!({"verdict": "pass", "score": 1.5})),
            "$.score: expected integer, got number 1.5"
        );
        assert_eq!(
            bad(json!({"verdict": "pass", "score": 1, "reasons": ["ok", ""]})),
            "$.reasons[1]: 0 characters, at least 1 expected"
        );
        assert_eq!(
            bad(json!({"verdict": "pass", "score": 1, "reasons": ["a", "b", "c", "d"]})),
            "$.reasons: 4 items, at most 3 expected"
        );
        assert_eq!(
            bad(json!({"verdict": "pass", "score": 1, "extra": true})),
            "$: unexpected property \"extra\""
        );
        assert_eq!(
            bad(json!({"verdict": "pass", "score": 1, "note": "toolong"})),
            "$.note: 7 characters, at most 5 expected"
        );
        let e = decode(&schema(), "Sure! Here it is").unwrap_err();
        assert!(e.starts_with("the answer is not JSON"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_not_walked() {
        let mut s = json!({"type": "array"});
        for _ in 0..100 {
            s = json!({"type": "array", "items": s});
        }
        let mut d = json!([]);
        for _ in 0..100 {
            d = json!([d]);
        }
        assert!(
            validate(&s, &d)
                .unwrap_err()
                .contains("nested deeper than 64")
        );
    }
}

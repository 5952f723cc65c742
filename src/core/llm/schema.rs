//! Structured answers: a small, documented subset of JSON Schema, enough for the schemas models are given.
//!
//! Checked keywords ([`CHECKED`]): `type` (a name or a list of names: object, array, string, number,
//! integer, boolean, null), `properties`, `required`, `additionalProperties` (`false` or a schema), `items`
//! (one schema for every item), `enum`, `const`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`
//! (numbers, the 2019+ form), `minLength`, `maxLength` (in characters), `minItems`, `maxItems`, `anyOf`.
//! Annotations that ask for no check ([`ANNOTATIONS`]: `title`, `description`, `$schema`, `$id`,
//! `$comment`, `default`, `examples`) are accepted as they are.
//!
//! Anything else (`$ref`, `oneOf`, `allOf`, `not`, `pattern`, `format`, `if`, tuple `items`, …) is refused
//! when the schema is given ([`supported`], called where a user's schema enters: `route.ask{schema}`,
//! `ollama.chat{schema}`, `openrouter.chat{schema}`, `baton ask --schema`), with the keyword and its place
//! in the schema, so a schema never "validates" an answer it did not check.
//!
//! Hand-written on purpose: the `jsonschema` crate would check every keyword, but brings a large dependency
//! tree (regex engines, URL resolution, HTTP fetching of `$ref`s) and its build time and binary size do not
//! fit a 2-core CI budget, for keywords these answers do not use.
use serde_json::Value;

/// The keywords [`validate`] checks.
pub const CHECKED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "anyOf",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
];

/// Keywords that only annotate a schema: nothing to check, accepted as they are.
pub const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
];

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Refuses a schema that asks for anything [`validate`] would not check: an unsupported keyword, or a
/// supported one in a shape it does not read. The error names the keyword and its place as a JSON pointer:
/// `unsupported keyword "oneOf" at /properties/verdict (supported: type, properties, …)`.
pub fn supported(schema: &Value) -> Result<(), String> {
    if !schema.is_object() {
        return Err(format!(
            "expected a JSON Schema object, got {}",
            type_of(schema)
        ));
    }
    intake(schema, "", 0)
}

/// [`supported`] where a schema is given: the schema back, or the error as `{func}: schema: …`.
pub fn given(func: &str, schema: Value) -> Result<Value, String> {
    supported(&schema).map_err(|e| format!("{func}: schema: {e}"))?;
    Ok(schema)
}

/// `/` for the top, else the pointer.
fn place(at: &str) -> &str {
    if at.is_empty() { "/" } else { at }
}

/// One step of a JSON pointer (`~` and `/` escaped).
fn step(at: &str, key: &str) -> String {
    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn intake(schema: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "nested deeper than {MAX_DEPTH} levels at {}",
            place(at)
        ));
    }
    let s = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(s) => s,
        other => {
            return Err(format!(
                "expected a schema (an object, true or false) at {}, got {}",
                place(at),
                type_of(other)
            ));
        }
    };
    for (key, value) in s {
        let here = step(at, key);
        let bad = |what: &str| {
            Err(format!(
                "{key:?} at {} must be {what}, got {}",
                place(at),
                shown(value)
            ))
        };
        match key.as_str() {
            "type" => {
                let known = |n: &Value| n.as_str().is_some_and(|n| TYPES.contains(&n));
                let ok = match value {
                    Value::Array(list) => !list.is_empty() && list.iter().all(known),
                    one => known(one),
                };
                if !ok {
                    return bad(&format!("one of {} or a list of them", TYPES.join(", ")));
                }
            }
            "properties" => {
                let Value::Object(props) = value else {
                    return bad("an object of schemas");
                };
                for (name, sub) in props {
                    intake(sub, &step(&here, name), depth + 1)?;
                }
            }
            "required" => {
                if !value
                    .as_array()
                    .is_some_and(|l| l.iter().all(Value::is_string))
                {
                    return bad("a list of property names");
                }
            }
            "additionalProperties" | "items" => intake(value, &here, depth + 1)?,
            "anyOf" => {
                let Some(list) = value.as_array().filter(|l| !l.is_empty()) else {
                    return bad("a non-empty list of schemas");
                };
                for (i, sub) in list.iter().enumerate() {
                    intake(sub, &step(&here, &i.to_string()), depth + 1)?;
                }
            }
            "enum" => {
                if !value.is_array() {
                    return bad("a list of values");
                }
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                if !value.is_number() {
                    return bad("a number");
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" => {
                if !value.is_u64() {
                    return bad("a whole number, 0 or more");
                }
            }
            k if k == "const" || ANNOTATIONS.contains(&k) => {}
            _ => {
                return Err(format!(
                    "unsupported keyword {key:?} at {} (supported: {}; annotations: {})",
                    place(at),
                    CHECKED.join(", "),
                    ANNOTATIONS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Nesting beyond this is refused rather than walked (answers and schemas are both bounded by it).
pub const MAX_DEPTH: usize = 64;

/// Checks `data` against `schema`; the error names the first place that does not fit:
/// `$.items[2].name: expected a string, got number 3`.
pub fn validate(schema: &Value, data: &Value) -> Result<(), String> {
    check(schema, data, "$", 0)
}

/// `text` trimmed, without a ``` (or ```json) fence around it: models often fence the JSON they were asked for.
pub fn unfenced(text: &str) -> &str {
    let body = text.trim();
    body.strip_prefix("```json")
        .or_else(|| body.strip_prefix("```"))
        .and_then(|b| b.trim_end().strip_suffix("```"))
        .unwrap_or(body)
        .trim()
}

/// An answer's text → JSON (a ``` fence around it is allowed), checked against `schema`.
pub fn decode(schema: &Value, text: &str) -> Result<Value, String> {
    let body = unfenced(text);
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
    fn intake_accepts_what_is_checked_and_annotations() {
        supported(&schema()).unwrap();
        supported(&json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "title": "T",
            "description": "d", "$comment": "c", "default": {}, "examples": [{}],
            "type": ["object", "null"],
            "properties": {
                "a": {"anyOf": [{"type": "string"}, {"const": 1}], "description": "either"},
                "b": {"type": "array", "items": true, "minItems": 0},
                "c": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5},
                "d": false
            },
            "additionalProperties": {"type": "integer"}
        }))
        .unwrap();
        supported(&json!({})).unwrap();
    }

    #[test]
    fn intake_refuses_unchecked_keywords_naming_the_place() {
        let refused = |v: Value| supported(&v).unwrap_err();
        let e = refused(
            json!({"type": "object", "properties": {"verdict": {"oneOf": [{"const": "a"}]}}}),
        );
        assert!(
            e.starts_with(
                "unsupported keyword \"oneOf\" at /properties/verdict (supported: type, properties, required,"
            ),
            "{e}"
        );
        assert!(e.contains("annotations: title, description"), "{e}");
        for (schema, keyword, at) in [
            (json!({"$ref": "#/$defs/x"}), "$ref", "/"),
            (json!({"$defs": {}}), "$defs", "/"),
            (json!({"type": "string", "pattern": "^a"}), "pattern", "/"),
            (json!({"type": "string", "format": "email"}), "format", "/"),
            (json!({"items": {"not": {}}}), "not", "/items"),
            (json!({"anyOf": [{}, {"allOf": []}]}), "allOf", "/anyOf/1"),
            (
                json!({"additionalProperties": {"if": {}}}),
                "if",
                "/additionalProperties",
            ),
            (
                json!({"properties": {"a/b": {"uniqueItems": true}}}),
                "uniqueItems",
                "/properties/a~1b",
            ),
        ] {
            let e = refused(schema);
            assert!(
                e.starts_with(&format!("unsupported keyword {keyword:?} at {at} ")),
                "{e}"
            );
        }
    }

    #[test]
    fn intake_refuses_shapes_the_validator_would_not_read() {
        let refused = |v: Value| supported(&v).unwrap_err();
        assert_eq!(
            refused(json!({"type": "int"})),
            "\"type\" at / must be one of object, array, string, number, integer, boolean, null or a list of them, got \"int\""
        );
        assert_eq!(
            refused(json!({"type": "array", "items": [{"type": "string"}]})),
            "expected a schema (an object, true or false) at /items, got array"
        );
        assert_eq!(
            refused(json!({"properties": {"n": {"exclusiveMinimum": true}}})),
            "\"exclusiveMinimum\" at /properties/n must be a number, got true"
        );
        assert_eq!(
            refused(json!({"required": "a"})),
            "\"required\" at / must be a list of property names, got \"a\""
        );
        assert_eq!(
            refused(json!({"maxLength": -1})),
            "\"maxLength\" at / must be a whole number, 0 or more, got -1"
        );
        assert_eq!(
            refused(json!({"anyOf": []})),
            "\"anyOf\" at / must be a non-empty list of schemas, got []"
        );
        assert_eq!(
            refused(json!([1])),
            "expected a JSON Schema object, got array"
        );
        let mut deep = json!({});
        for _ in 0..100 {
            deep = json!({"items": deep});
        }
        assert!(refused(deep).contains("nested deeper than 64"));
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

//! The fleet file's table as plain values, read once from Lua and then decoded with serde as often as
//! needed (a fast pass, and a second one tracking the path only when the first fails).
//!
//! Lua has one table type, so the shape is settled here, in one place: a table whose keys are exactly
//! `1..n` is a list, one whose keys are all strings is a map, an empty one is either. Where the schema
//! expects a list, anything else is an error naming a key that does not belong
//! (`tiers: expected a list (keys 1..n), got key 0`) instead of the entries outside `1..n` being dropped.
use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};

/// One value of the fleet file.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Nil,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    /// `{}`: an empty list or an empty map, whichever the schema asks for.
    Empty,
    /// Keys `1..n`.
    List(Vec<Node>),
    /// String keys, in the order the table gave them.
    Map(Vec<(Key, Node)>),
    /// Keys that make neither a list nor a map (`{[0] = …}`, `{"a", x = 1}`): the first key that does not
    /// fit, as Lua would show it.
    Mixed(String),
    /// A function, coroutine or userdata, by its Lua type name.
    Unsupported(&'static str),
}

/// A key of a table: the schema's own keys are shared, not allocated for each of 100 000 hosts.
pub type Key = std::borrow::Cow<'static, str>;

/// The schema's keys that many tables repeat (each host's), shared instead of copied.
const COMMON_KEYS: &[&str] = &[
    "ssh",
    "ssh_config",
    "known_hosts",
    "role",
    "tags",
    "ollama",
    "ollama_parallel",
    "mac",
    "wake",
    "syncthing",
    "url",
    "api_key_env",
    "broadcast",
    "port",
    "via",
    "name",
    "provider",
    "host",
    "model",
    "models",
    "price",
];

/// `text` as a [`Key`]: shared when it is one of the schema's common keys.
pub fn key(text: &str) -> Key {
    match COMMON_KEYS.iter().find(|k| **k == text) {
        Some(k) => Key::Borrowed(k),
        None => Key::Owned(text.to_string()),
    }
}

/// The error of decoding a [`Node`]: serde's message (the path is added by `serde_path_to_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TreeError(pub String);

impl de::Error for TreeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        TreeError(msg.to_string())
    }

    /// `wrong type: expected a number, got string "ten"`, in Lua's words, not serde's (`expected f64`).
    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        TreeError(format!(
            "wrong type: expected {}, got {}",
            expected(exp),
            unexpected(&unexp)
        ))
    }

    /// `bad value: expected an integer from 0 to 65535, got integer -1`.
    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        TreeError(format!(
            "bad value: expected {}, got {}",
            expected(exp),
            unexpected(&unexp)
        ))
    }
}

/// What the schema wanted, in the words of a Lua user: number, integer, string, boolean, list, table.
fn expected(exp: &dyn de::Expected) -> String {
    let said = exp.to_string();
    match said.as_str() {
        "f64" | "f32" => "a number".into(),
        "u8" => "an integer from 0 to 255".into(),
        "u16" => "an integer from 0 to 65535".into(),
        "u32" => "an integer from 0 to 4294967295".into(),
        "u64" | "u128" | "usize" => "an integer, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".into(),
        "a map" | "map" => "a table".into(),
        "a sequence" | "sequence" => "a list".into(),
        "unit" => "nil".into(),
        "a character" | "char" => "a one-character string".into(),
        s if s.starts_with("struct ") => "a table".into(),
        // The schema's enums are written as names (`provider = "ollama"`).
        s if s.starts_with("enum ") => "a string".into(),
        _ => said,
    }
}

/// What the file gave, in the same words: `string "ten"`, `integer 5`, `number 1.5`, `boolean true`.
fn unexpected(unexp: &de::Unexpected) -> String {
    match unexp {
        de::Unexpected::Bool(b) => format!("boolean {b}"),
        de::Unexpected::Signed(i) => format!("integer {i}"),
        de::Unexpected::Unsigned(u) => format!("integer {u}"),
        // `4.0` stays `4.0`: an integer field refuses it, and `4` would not say why.
        de::Unexpected::Float(f) if f.is_finite() && f.fract() == 0.0 => format!("number {f:.1}"),
        de::Unexpected::Float(f) => format!("number {f}"),
        de::Unexpected::Str(s) => format!("string {s:?}"),
        de::Unexpected::Unit => "nil".into(),
        de::Unexpected::Map => "a table".into(),
        de::Unexpected::Seq => "a list".into(),
        other => other.to_string(),
    }
}

impl Node {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Node::Nil => de::Unexpected::Unit,
            Node::Bool(b) => de::Unexpected::Bool(*b),
            Node::Int(i) => de::Unexpected::Signed(*i),
            Node::Num(n) => de::Unexpected::Float(*n),
            Node::Str(s) => de::Unexpected::Str(s),
            Node::Empty | Node::Map(_) | Node::Mixed(_) => de::Unexpected::Map,
            Node::List(_) => de::Unexpected::Seq,
            Node::Unsupported(t) => de::Unexpected::Other(t),
        }
    }

    fn not_a_list(&self) -> TreeError {
        let key = match self {
            Node::Map(entries) => entries.first().map(|(k, _)| crate::core::text::shown(k)),
            Node::Mixed(key) => Some(key.clone()),
            _ => None,
        };
        match key {
            Some(key) => TreeError(format!("expected a list (keys 1..n), got key {key}")),
            None => de::Error::invalid_type(self.unexpected(), &"a list"),
        }
    }

    fn unsupported(t: &str) -> TreeError {
        TreeError(format!("a {t} cannot be part of the fleet"))
    }
}

impl<'de> IntoDeserializer<'de, TreeError> for &'de Node {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn map<'de, V: Visitor<'de>>(
    entries: &'de [(Key, Node)],
    visitor: V,
) -> Result<V::Value, TreeError> {
    let mut access = MapDeserializer::new(entries.iter().map(|(k, v)| (k.as_ref(), v)));
    let value = visitor.visit_map(&mut access)?;
    access.end()?;
    Ok(value)
}

fn seq<'de, V: Visitor<'de>>(items: &'de [Node], visitor: V) -> Result<V::Value, TreeError> {
    let mut access = SeqDeserializer::new(items.iter());
    let value = visitor.visit_seq(&mut access)?;
    access.end()?;
    Ok(value)
}

impl<'de> Deserializer<'de> for &'de Node {
    type Error = TreeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self {
            Node::Nil => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(i) => visitor.visit_i64(*i),
            Node::Num(n) => visitor.visit_f64(*n),
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Empty => map(&[], visitor),
            Node::List(items) => seq(items, visitor),
            Node::Map(entries) => map(entries, visitor),
            Node::Mixed(_) => Err(self.not_a_list()),
            Node::Unsupported(t) => Err(Node::unsupported(t)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self {
            Node::Nil => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self {
            Node::Empty => seq(&[], visitor),
            Node::List(items) => seq(items, visitor),
            Node::Unsupported(t) => Err(Node::unsupported(t)),
            other => Err(other.not_a_list()),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TreeError> {
        match self {
            Node::Empty => map(&[], visitor),
            Node::Map(entries) => map(entries, visitor),
            Node::Mixed(key) => Err(TreeError(format!(
                "expected a table of string keys, got key {key}"
            ))),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        match self {
            Node::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Node::Map(entries) if entries.len() == 1 => {
                visitor.visit_enum(MapAccessDeserializer::new(MapDeserializer::new(
                    entries.iter().map(|(k, v)| (k.as_ref(), v)),
                )))
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TreeError> {
        self.deserialize_seq(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(v: &str) -> Node {
        Node::Str(v.into())
    }

    #[test]
    fn lists_maps_and_empty_tables() {
        let list = Node::List(vec![s("a"), s("b")]);
        assert_eq!(Vec::<String>::deserialize(&list).unwrap(), ["a", "b"]);
        assert!(Vec::<String>::deserialize(&Node::Empty).unwrap().is_empty());
        assert!(
            BTreeMap::<String, String>::deserialize(&Node::Empty)
                .unwrap()
                .is_empty()
        );
        let e = Vec::<String>::deserialize(&Node::Mixed("0".into())).unwrap_err();
        assert_eq!(e.0, "expected a list (keys 1..n), got key 0");
        let e = Vec::<String>::deserialize(&Node::Map(vec![("x".into(), s("a"))])).unwrap_err();
        assert_eq!(e.0, "expected a list (keys 1..n), got key x");
        assert_eq!(Option::<i64>::deserialize(&Node::Nil).unwrap(), None);
        assert_eq!(Option::<i64>::deserialize(&Node::Int(3)).unwrap(), Some(3));
    }

    #[test]
    fn type_mismatches_are_worded_in_lua_terms() {
        let e = f64::deserialize(&s("ten")).unwrap_err();
        assert_eq!(e.0, "wrong type: expected a number, got string \"ten\"");
        let e = u32::deserialize(&Node::Num(4.0)).unwrap_err();
        assert_eq!(
            e.0,
            "wrong type: expected an integer from 0 to 4294967295, got number 4.0"
        );
        let e = u16::deserialize(&Node::Int(-1)).unwrap_err();
        assert_eq!(
            e.0,
            "bad value: expected an integer from 0 to 65535, got integer -1"
        );
        let e = String::deserialize(&Node::Bool(true)).unwrap_err();
        assert_eq!(e.0, "wrong type: expected a string, got boolean true");
        let e = BTreeMap::<String, String>::deserialize(&Node::Int(5)).unwrap_err();
        assert_eq!(e.0, "wrong type: expected a table, got integer 5");
        let e = Vec::<String>::deserialize(&Node::Bool(false)).unwrap_err();
        assert_eq!(e.0, "wrong type: expected a list, got boolean false");
        let e = f64::deserialize(&Node::List(vec![s("a")])).unwrap_err();
        assert_eq!(e.0, "wrong type: expected a number, got a list");
    }

    use serde::Deserialize;
}

//! Tool calls and reasoning as the wire formats carry them, and the quirks real servers have:
//!
//! - OpenAI streams send a call in fragments (`delta.tool_calls[i]`): the first with `id` and name, later
//!   ones only pieces of `arguments`, joined per `index`. Some servers give every parallel call `index = 0`;
//!   a fragment with a new `id` starts a new call ([`Fragments`]).
//! - Ollama sends calls whole, `arguments` an object, `id` on new servers only (one is made up).
//! - `arguments` may come as a string where an object is expected or the reverse; an empty string is `{}`
//!   ([`arguments`]).
//! - Small local models write the call as JSON in the content ([`from_content`]).
//! - Reasoning models on older servers inline `<think>…</think>` before the answer ([`split_think`],
//!   [`ThinkSplitter`] for streams).
use serde_json::{Value, json};

use super::{Message, ToolCall, ToolSpec};

/// `{"type": "object", "properties": {}}`: parameters of a tool that takes none.
pub fn empty_parameters() -> Value {
    json!({"type": "object", "properties": {}})
}

pub fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A call id for servers that send none: `call_` and 12 random letters and digits.
pub fn made_up_id() -> String {
    let mut id = String::from("call_");
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(12));
    id
}

/// The `tools` list both Ollama and OpenAI-compatible servers take.
pub fn wire_tools(tools: &[ToolSpec]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}})
        })
        .collect()
}

/// A call's arguments as an object: a JSON string is decoded (twice if it was encoded twice), an empty or
/// blank string or `null` is `{}`, an empty Lua table (an empty array) is `{}`. Text that is not JSON stays
/// a string, so running the call can report it.
pub fn arguments(v: Value) -> Value {
    match v {
        Value::Null => empty_object(),
        Value::Array(a) if a.is_empty() => empty_object(),
        Value::String(s) if s.trim().is_empty() => empty_object(),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::String(inner)) => match serde_json::from_str::<Value>(&inner) {
                Ok(v @ Value::Object(_)) => v,
                _ => Value::String(s),
            },
            Ok(v @ Value::Object(_)) => v,
            Ok(Value::Null) => empty_object(),
            _ => Value::String(s),
        },
        other => other,
    }
}

/// Ollama's `message.tool_calls` (`[{id?, function: {name, arguments, index?}}]`) → calls.
pub fn from_ollama(calls: &[Value]) -> Vec<ToolCall> {
    calls
        .iter()
        .filter_map(|c| {
            let f = c.get("function").unwrap_or(c);
            let name = f.get("name")?.as_str()?.to_string();
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(made_up_id, str::to_string);
            let args = f.get("arguments").cloned().unwrap_or(Value::Null);
            Some(ToolCall {
                id,
                name,
                arguments: arguments(args),
            })
        })
        .collect()
}

/// One call being assembled from stream fragments.
#[derive(Debug, Default)]
struct Partial {
    index: Option<u64>,
    id: String,
    name: String,
    /// Argument pieces as text.
    text: String,
    /// Arguments a server sent as an object.
    object: Option<Value>,
}

/// OpenAI-style streamed tool calls, joined per `index`; a fragment with an `id` different from the one
/// at its index starts a new call (servers that number every parallel call 0).
#[derive(Debug, Default)]
pub struct Fragments {
    calls: Vec<Partial>,
}

impl Fragments {
    /// Takes one `delta.tool_calls` entry.
    pub fn push(&mut self, frag: &Value) {
        let index = frag.get("index").and_then(Value::as_u64);
        let id = frag
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let f = frag.get("function");
        let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
        let args = f.and_then(|f| f.get("arguments"));
        // The call this fragment continues: the latest one at its index (or the latest one when the server
        // sends no index), unless the fragment names another id.
        let at = self
            .calls
            .iter()
            .rposition(|c| index.is_none() || c.index == index);
        let pos = match (at, id) {
            (Some(i), Some(id)) if self.calls[i].id.is_empty() || self.calls[i].id == id => i,
            (Some(i), None) => i,
            _ => {
                self.calls.push(Partial {
                    index,
                    ..Partial::default()
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[pos];
        if let (true, Some(id)) = (call.id.is_empty(), id) {
            call.id = id.to_string();
        }
        if let Some(n) = name.filter(|n| !n.is_empty())
            && (call.name.is_empty() || call.text.is_empty())
        {
            call.name = n.to_string();
        }
        match args {
            Some(Value::String(piece)) => call.text.push_str(piece),
            Some(v @ Value::Object(_)) => call.object = Some(v.clone()),
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls, in the order they began (missing ids made up). A call that never got a name stays, with
    /// an empty one: the tool loop answers it with an error, as it does an unknown tool, instead of taking
    /// the turn for a final answer.
    pub fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .map(|c| ToolCall {
                id: if c.id.is_empty() { made_up_id() } else { c.id },
                name: c.name,
                arguments: match c.object {
                    Some(v) if c.text.trim().is_empty() => v,
                    _ => arguments(Value::String(c.text)),
                },
            })
            .collect()
    }
}

/// A model that wrote its tool call as JSON in the content (`{"name": …, "arguments": …}`, a list of them,
/// or `{"tool_calls": […]}`, possibly in a ``` fence) → the calls, when every name is an offered tool.
pub fn from_content(text: &str, tools: &[ToolSpec]) -> Option<Vec<ToolCall>> {
    let body = super::schema::unfenced(text);
    if !(body.starts_with('{') || body.starts_with('[')) {
        return None;
    }
    let doc: Value = serde_json::from_str(body).ok()?;
    let items = match doc {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("tool_calls") {
            Some(Value::Array(a)) => a,
            Some(_) => return None,
            None => vec![Value::Object(o)],
        },
        _ => return None,
    };
    if items.is_empty() {
        return None;
    }
    let mut calls = Vec::with_capacity(items.len());
    for item in items {
        let f = item.get("function").unwrap_or(&item);
        let name = f.get("name")?.as_str()?;
        if !tools.iter().any(|t| t.name == name) {
            return None;
        }
        let args = f
            .get("arguments")
            .or_else(|| f.get("parameters"))
            .cloned()
            .unwrap_or(Value::Null);
        calls.push(ToolCall {
            id: made_up_id(),
            name: name.to_string(),
            arguments: arguments(args),
        });
    }
    Some(calls)
}

/// `<think>…</think>answer` → (thinking, answer). Text without a leading `<think>` is all answer; an
/// unclosed block is all thinking.
pub fn split_think(text: &str) -> (Option<String>, String) {
    let trimmed = text.trim_start();
    let Some(rest) = trimmed.strip_prefix("<think>") else {
        return (None, text.to_string());
    };
    match rest.find("</think>") {
        Some(end) => (
            Some(rest[..end].trim().to_string()),
            rest[end + "</think>".len()..].trim_start().to_string(),
        ),
        None => (Some(rest.trim().to_string()), String::new()),
    }
}

/// Splits a stream of content pieces into thinking and answer as they arrive, for models that inline
/// `<think>…</think>`: holds back only what could still be the start of a tag.
#[derive(Debug, Default)]
pub struct ThinkSplitter {
    state: SplitState,
    held: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum SplitState {
    #[default]
    Start,
    Thinking,
    /// Past `</think>`: whitespace before the answer is dropped.
    AfterThink,
    Answer,
}

/// What one piece gave: thinking text and answer text (either may be empty).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub thinking: String,
    pub answer: String,
}

impl ThinkSplitter {
    pub fn push(&mut self, piece: &str) -> Split {
        let mut out = Split::default();
        self.held.push_str(piece);
        loop {
            match self.state {
                SplitState::Answer => {
                    out.answer.push_str(&std::mem::take(&mut self.held));
                    return out;
                }
                SplitState::AfterThink => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = t.to_string();
                    self.state = SplitState::Answer;
                }
                SplitState::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix("<think>") {
                        self.held = rest.to_string();
                        self.state = SplitState::Thinking;
                    } else if t.is_empty() || "<think>".starts_with(t) {
                        return out;
                    } else {
                        self.state = SplitState::Answer;
                    }
                }
                SplitState::Thinking => {
                    const END: &str = "</think>";
                    if let Some(end) = self.held.find(END) {
                        out.thinking.push_str(&self.held[..end]);
                        self.held = self.held[end + END.len()..].to_string();
                        self.state = SplitState::AfterThink;
                    } else {
                        // Keep back a tail that could be the start of `</think>`.
                        let keep = (1..END.len())
                            .rev()
                            .find(|&n| self.held.ends_with(&END[..n]))
                            .unwrap_or(0);
                        let cut = self.held.len() - keep;
                        out.thinking.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        return out;
                    }
                }
            }
        }
    }

    /// What is still held back when the stream ends.
    pub fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        match self.state {
            SplitState::Thinking => Split {
                thinking: held,
                answer: String::new(),
            },
            _ => Split {
                thinking: String::new(),
                answer: held,
            },
        }
    }
}

/// What both wire formats carry of a message alike: its role and content, its images, and the call a tool
/// result answers.
fn wire_message(m: &Message) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if let Some(images) = &m.images {
        v["images"] = json!(images);
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// Messages as Ollama's `/api/chat` takes them: tool calls with object arguments, tool results with
/// `tool_name`.
pub fn ollama_messages(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            let mut v = wire_message(m);
            if let Some(calls) = &m.tool_calls {
                v["tool_calls"] = calls
                    .iter()
                    .map(|c| json!({"id": c.id, "function": {"name": c.name, "arguments": arguments(c.arguments.clone())}}))
                    .collect();
            }
            if let Some(name) = &m.name {
                v["tool_name"] = json!(name);
            }
            if let Some(t) = &m.thinking {
                v["thinking"] = json!(t);
            }
            v
        })
        .collect()
}

/// Messages as OpenAI-compatible servers take them: tool calls with `arguments` as a JSON string, tool
/// results with `tool_call_id`, `reasoning_details` passed back unchanged.
pub fn openai_messages(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            let mut v = wire_message(m);
            if let Some(calls) = &m.tool_calls {
                v["tool_calls"] = calls
                    .iter()
                    .map(|c| {
                        let args = match arguments(c.arguments.clone()) {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args}})
                    })
                    .collect();
                if m.content.is_empty() {
                    v["content"] = Value::Null;
                }
            }
            if let (Some(name), "tool") = (&m.name, m.role.as_str()) {
                v["name"] = json!(name);
            }
            if let Some(r) = &m.reasoning_details {
                v["reasoning_details"] = r.clone();
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            parameters: empty_parameters(),
        }
    }

    #[test]
    fn arguments_string_or_object_or_empty() {
        assert_eq!(arguments(json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(arguments(json!({"a": 1})), json!({"a": 1}));
        assert_eq!(arguments(json!("")), json!({}));
        assert_eq!(arguments(json!("  ")), json!({}));
        assert_eq!(arguments(Value::Null), json!({}));
        assert_eq!(arguments(json!([])), json!({}));
        assert_eq!(arguments(json!("\"{\\\"a\\\":2}\"")), json!({"a": 2}));
        assert_eq!(arguments(json!("{oops")), json!("{oops"));
    }

    #[test]
    fn fragments_join_per_index() {
        let mut f = Fragments::default();
        for frag in [
            json!({"index": 0, "id": "a", "type": "function", "function": {"name": "read_log", "arguments": ""}}),
            json!({"index": 1, "id": "b", "function": {"name": "git_log", "arguments": "{\"n\""}}),
            json!({"index": 0, "function": {"arguments": "{\"lines\":"}}),
            json!({"index": 1, "function": {"arguments": ":3}"}}),
            json!({"index": 0, "function": {"arguments": " 20}"}}),
        ] {
            f.push(&frag);
        }
        let calls = f.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (
                calls[0].id.as_str(),
                calls[0].name.as_str(),
                &calls[0].arguments
            ),
            ("a", "read_log", &json!({"lines": 20}))
        );
        assert_eq!(
            (
                calls[1].id.as_str(),
                calls[1].name.as_str(),
                &calls[1].arguments
            ),
            ("b", "git_log", &json!({"n": 3}))
        );
    }

    #[test]
    fn fragments_all_index_zero_are_told_apart_by_id() {
        let mut f = Fragments::default();
        for frag in [
            json!({"index": 0, "id": "a", "function": {"name": "x", "arguments": "{\"v\":"}}),
            json!({"index": 0, "function": {"arguments": "1}"}}),
            json!({"index": 0, "id": "b", "function": {"name": "y", "arguments": ""}}),
            json!({"index": 0, "id": "b", "function": {"arguments": "{\"v\":2}"}}),
            json!({"index": 0, "id": "c", "function": {"name": "x", "arguments": {"v": 3}}}),
        ] {
            f.push(&frag);
        }
        let got: Vec<_> = f
            .finish()
            .into_iter()
            .map(|c| (c.id, c.name, c.arguments))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), "x".into(), json!({"v": 1})),
                ("b".into(), "y".into(), json!({"v": 2})),
                ("c".into(), "x".into(), json!({"v": 3}))
            ]
        );
    }

    #[test]
    fn ollama_calls_get_ids_and_objects() {
        let calls = from_ollama(&[
            json!({"function": {"name": "a", "arguments": {"x": 1}}}),
            json!({"id": "call_9", "function": {"index": 1, "name": "b", "arguments": "{\"y\":2}"}}),
        ]);
        assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 17);
        assert_eq!(calls[0].arguments, json!({"x": 1}));
        assert_eq!(
            (calls[1].id.as_str(), &calls[1].arguments),
            ("call_9", &json!({"y": 2}))
        );
    }

    #[test]
    fn content_json_is_a_call_only_for_offered_tools() {
        let tools = [spec("get_weather")];
        let c = from_content(
            " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n",
            &tools,
        )
        .unwrap();
        assert_eq!(
            (c[0].name.as_str(), &c[0].arguments),
            ("get_weather", &json!({"city": "Oslo"}))
        );
        let c = from_content(
            "```json\n[{\"name\":\"get_weather\",\"parameters\":\"{\\\"city\\\":\\\"Rome\\\"}\"}]\n```",
            &tools,
        )
        .unwrap();
        assert_eq!(c[0].arguments, json!({"city": "Rome"}));
        assert!(from_content("{\"name\": \"other\", \"arguments\": {}}", &tools).is_none());
        assert!(from_content("The weather is {\"name\": 1}", &tools).is_none());
        assert!(from_content("{\"answer\": 42}", &tools).is_none());
    }

    #[test]
    fn think_blocks_split_off() {
        assert_eq!(
            split_think("<think>\nhmm\n</think>\n\nAnswer"),
            (Some("hmm".into()), "Answer".into())
        );
        assert_eq!(split_think("plain"), (None, "plain".into()));
        assert_eq!(
            split_think("<think>cut"),
            (Some("cut".into()), String::new())
        );
    }

    #[test]
    fn think_splitter_streams_across_tag_boundaries() {
        let pieces = [
            "<th",
            "ink>\nI am ",
            "thinking</th",
            "ink",
            ">\n\nThe ",
            "answer",
            " <think> stays",
        ];
        let mut s = ThinkSplitter::default();
        let (mut thinking, mut answer) = (String::new(), String::new());
        for p in pieces {
            let out = s.push(p);
            thinking.push_str(&out.thinking);
            answer.push_str(&out.answer);
        }
        let out = s.finish();
        thinking.push_str(&out.thinking);
        answer.push_str(&out.answer);
        assert_eq!(thinking.trim(), "I am thinking");
        assert_eq!(answer, "The answer <think> stays");
        let mut s = ThinkSplitter::default();
        assert_eq!(s.push("Hi").answer, "Hi");
    }

    #[test]
    fn wire_messages_per_format() {
        let call = ToolCall {
            id: "c1".into(),
            name: "f".into(),
            arguments: json!({"a": 1}),
        };
        let msgs = [
            Message {
                tool_calls: Some(vec![call.clone()]),
                ..Message::new("assistant", "")
            },
            Message::tool_result(&call, "ok"),
        ];
        let o = ollama_messages(&msgs);
        assert_eq!(
            o[0]["tool_calls"][0]["function"]["arguments"],
            json!({"a": 1})
        );
        assert_eq!(o[1]["tool_name"], "f");
        let w = openai_messages(&msgs);
        assert_eq!(w[0]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(w[0]["content"], Value::Null);
        assert_eq!(w[1]["tool_call_id"], "c1");
    }
}

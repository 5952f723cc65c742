//! The one shape of a provider's chat call, whatever its wire format: the streamed answer gathered the same
//! way ([`Gather`]: inline `<think>` blocks split off, the stream bounded, each piece passed to the
//! caller's hooks), the finished answer settled the same way ([`settle`]: a tool call the model wrote as
//! JSON in the content, a schema answer decoded, the assistant message to continue with), and a server's
//! error body read the same way ([`error_message`]). A client only decodes its own frames.
use serde::Serialize;
use serde_json::Value;

use super::cost::CostSource;
use super::http::{self, Tally};
use super::tools::{self, ThinkSplitter};
use super::{ErrorKind, Message, OnToken, ToolCall, ToolSpec};
use crate::core::fleet::Price;

/// A streamed answer as it arrives: the answer text and the reasoning apart, within the stream's bounds,
/// each piece passed on to `on_token` / `on_thinking`.
pub struct Gather<'t, 'r> {
    splitter: ThinkSplitter,
    tally: Tally,
    pub text: String,
    pub thinking: String,
    on_token: Option<OnToken<'t>>,
    on_thinking: Option<OnToken<'r>>,
}

impl<'t, 'r> Gather<'t, 'r> {
    /// `max_tokens` (when the request sets one) bounds the pieces a server may send.
    pub fn new(
        max_tokens: Option<u64>,
        on_token: Option<OnToken<'t>>,
        on_thinking: Option<OnToken<'r>>,
    ) -> Gather<'t, 'r> {
        Gather {
            splitter: ThinkSplitter::default(),
            tally: Tally::new(max_tokens),
            text: String::new(),
            thinking: String::new(),
            on_token,
            on_thinking,
        }
    }

    /// Counts a piece that is neither answer nor reasoning (a tool call's arguments) against the bounds.
    pub fn count(&mut self, piece: &str) -> Result<(), ErrorKind> {
        self.tally.add(piece)
    }

    /// One piece of content, with the reasoning the server sent apart (if any); `last` also takes what the
    /// `<think>` splitter still holds.
    pub async fn piece(
        &mut self,
        content: &str,
        reasoning: Option<&str>,
        last: bool,
    ) -> Result<(), ErrorKind> {
        let mut split = self.splitter.push(content);
        if last {
            let rest = self.splitter.finish();
            split.thinking.push_str(&rest.thinking);
            split.answer.push_str(&rest.answer);
        }
        split.thinking.insert_str(0, reasoning.unwrap_or(""));
        if !split.thinking.is_empty() {
            self.tally.add(&split.thinking)?;
            self.thinking.push_str(&split.thinking);
            if let Some(cb) = self.on_thinking.as_mut() {
                cb(split.thinking).await.map_err(ErrorKind::Callback)?;
            }
        }
        let piece = split.answer;
        if !piece.is_empty() {
            self.tally.add(&piece)?;
            self.text.push_str(&piece);
            if let Some(cb) = self.on_token.as_mut() {
                cb(piece).await.map_err(ErrorKind::Callback)?;
            }
        }
        Ok(())
    }

    /// The answer and the reasoning (`None` when there was none).
    pub fn into_parts(self) -> (String, Option<String>) {
        let thinking = (!self.thinking.is_empty()).then_some(self.thinking);
        (self.text, thinking)
    }
}

/// What booking and routing read of any provider's finished call.
pub trait Answered {
    /// Prompt and answer tokens.
    fn tokens(&self) -> (u64, u64);
    /// What the call cost and where that figure came from; `price` is the fleet's price for the model (a
    /// provider that reports its cost has already used it).
    fn cost(&self, price: Option<Price>) -> (f64, CostSource);
    /// The booked cost, when the reported one was not plausible and the reserved worst case replaced it.
    fn rebook(&mut self, cost: f64);
    /// The answer as every provider gives it.
    fn into_settled(self) -> Settled;
}

/// What a chat request asked for that shapes its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'r> {
    /// The tools offered, for reading a call the model wrote as JSON in the content.
    pub offered: &'r [ToolSpec],
    /// Read JSON-in-content as a tool call when tools were offered (default on).
    pub content_tool_calls: Option<bool>,
    /// The answer must be JSON matching this schema; decoded into `data`.
    pub schema: Option<&'r Value>,
}

/// A finished answer as every provider returns it (each provider's completion embeds it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settled {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// The model's reasoning (the provider's reasoning field, or an inline `<think>` block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// A structured answer, decoded and checked against the schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The assistant message to append to continue the conversation (tool calls, reasoning and
    /// OpenRouter's `reasoning_details` included).
    pub message: Message,
}

impl Settled {
    /// Whether the model asked for tools (its `finish_reason` is then `tool_calls`).
    pub fn called(&self) -> bool {
        !self.tool_calls.is_empty()
    }
}

/// Settles a finished answer: a tool call written as JSON in the content (when tools were offered) is read
/// as one; without tool calls, a schema answer is decoded (an `Err` when it does not match); the assistant
/// message carries the tool calls, the reasoning and `details` (OpenRouter's `reasoning_details`).
pub fn settle(
    asked: Asked<'_>,
    (mut text, thinking): (String, Option<String>),
    mut tool_calls: Vec<ToolCall>,
    details: Option<Value>,
) -> Result<Settled, ErrorKind> {
    if tool_calls.is_empty()
        && !asked.offered.is_empty()
        && asked.content_tool_calls != Some(false)
        && let Some(calls) = tools::from_content(&text, asked.offered)
    {
        tool_calls = calls;
        text.clear();
    }
    let data = match asked.schema {
        Some(schema) if tool_calls.is_empty() => {
            Some(super::schema::decode(schema, &text).map_err(ErrorKind::Schema)?)
        }
        _ => None,
    };
    let message = Message {
        tool_calls: (!tool_calls.is_empty()).then(|| tool_calls.clone()),
        thinking: thinking.clone(),
        reasoning_details: details,
        ..Message::new("assistant", text.clone())
    };
    Ok(Settled {
        text,
        thinking,
        tool_calls,
        data,
        message,
    })
}

/// The message of a server's error body: `{"error": "…"}` or `{"error": {"message": "…"}}`, else the
/// body's start. Also the parsed body, for what else a provider reads in it.
pub fn error_message(body: &str) -> (String, Option<Value>) {
    let doc = serde_json::from_str::<Value>(body).ok();
    let message = doc
        .as_ref()
        .and_then(|v| match v.get("error") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(e) => e.get("message").and_then(Value::as_str).map(str::to_string),
            None => None,
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| http::snippet(body.as_bytes()));
    (message, doc)
}

/// What a chat request asks for that shapes its answer, the same in every wire format; each provider's
/// request embeds it where its `tools` go on the wire (the other fields are never sent).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Shape {
    /// Tools offered, on the wire (sent on every request of a conversation; see [`Shape::offer`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// The tools offered, for reading a call the model wrote as JSON in the content.
    #[serde(skip)]
    pub offered: Vec<ToolSpec>,
    /// Read JSON-in-content as a tool call when tools were offered (default on).
    #[serde(skip)]
    pub content_tool_calls: Option<bool>,
    /// The answer must be JSON matching this schema; decoded into `data`.
    #[serde(skip)]
    pub schema: Option<Value>,
}

impl Shape {
    /// Offers `specs` as tools: the `tools` list both wire formats take (none when empty), and the specs
    /// kept for reading calls written in the content.
    pub fn offer(&mut self, specs: Vec<ToolSpec>) {
        self.tools = (!specs.is_empty()).then(|| tools::wire_tools(&specs));
        self.offered = specs;
    }
    /// What shapes the answer: the tools offered, `content_tool_calls`, the schema.
    pub fn asked(&self) -> Asked<'_> {
        Asked {
            offered: &self.offered,
            content_tool_calls: self.content_tool_calls,
            schema: self.schema.as_ref(),
        }
    }
}

/// A chat as the router sends it to a tier, whatever the provider; each client builds its request from it.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    /// The caller's `max_tokens` (a client that must bound a paid answer applies its default).
    pub max_tokens: Option<u32>,
    pub tools: &'a [ToolSpec],
    /// Sent as the provider's structured-output option; checked by the router, so a bad answer is a
    /// rejection (next tier), not an error.
    pub schema: Option<&'a Value>,
    /// Ollama's `think`.
    pub think: Option<&'a Value>,
    /// OpenRouter's `reasoning`.
    pub reasoning: Option<&'a Value>,
    pub content_tool_calls: Option<bool>,
}

/// Any provider's answer to a routed chat, with its tokens and cost.
#[derive(Debug)]
pub struct Reply {
    pub settled: Settled,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: f64,
    pub cost_source: CostSource,
}

impl Reply {
    /// `c` with its cost at `price` (the tier's).
    pub fn of(c: impl Answered, price: Option<Price>) -> Reply {
        let (tokens_in, tokens_out) = c.tokens();
        let (cost, cost_source) = c.cost(price);
        Reply {
            settled: c.into_settled(),
            tokens_in,
            tokens_out,
            cost,
            cost_source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_read_both_forms() {
        assert_eq!(
            error_message(r#"{"error":"out of memory"}"#).0,
            "out of memory"
        );
        let (m, doc) = error_message(r#"{"error":{"message":"bad key","code":401}}"#);
        assert_eq!((m.as_str(), doc.is_some()), ("bad key", true));
        assert_eq!(error_message("Bad Gateway").0, "Bad Gateway");
        assert_eq!(
            error_message(r#"{"error":{"code":500}}"#).0,
            r#"{"error":{"code":500}}"#
        );
    }

    #[test]
    fn settling_reads_calls_in_content_and_decodes_schemas() {
        let tools = [ToolSpec {
            name: "git_log".into(),
            description: String::new(),
            parameters: tools::empty_parameters(),
        }];
        let asked = Asked {
            offered: &tools,
            ..Asked::default()
        };
        let text = r#"{"name": "git_log", "arguments": {"n": 2}}"#.to_string();
        let s = settle(asked, (text.clone(), None), Vec::new(), None).unwrap();
        assert!(s.called() && s.text.is_empty());
        assert_eq!(s.message.tool_calls.as_ref().map(Vec::len), Some(1));
        let off = Asked {
            content_tool_calls: Some(false),
            ..asked
        };
        let s = settle(off, (text, None), Vec::new(), None).unwrap();
        assert!(!s.called() && s.message.content.starts_with('{'));
        let schema = json!({"type": "object", "required": ["a"]});
        let typed = Asked {
            schema: Some(&schema),
            ..Asked::default()
        };
        let s = settle(
            typed,
            (r#"{"a": 1}"#.into(), Some("hm".into())),
            Vec::new(),
            None,
        );
        let s = s.unwrap();
        assert_eq!(
            (s.data, s.message.thinking),
            (Some(json!({"a": 1})), Some("hm".into()))
        );
        assert!(matches!(
            settle(typed, ("{}".into(), None), Vec::new(), None),
            Err(ErrorKind::Schema(_))
        ));
    }
}

//! Values as the REPL shows them: strings quoted, tables with nesting (one line when short), keys sorted,
//! cycles marked and a depth limit.
use mlua::{Table, Value};

/// Renders `v`; tables deeper than `max_depth` show as `{…}`.
pub fn inspect(v: &Value, max_depth: usize) -> String {
    let mut seen = Vec::new();
    // The walk recurses: its depth is bounded whatever the caller asks.
    let max_depth = max_depth.min(crate::lua::api::args::MAX_DEPTH);
    render(v, 0, max_depth, &mut seen)
}

fn render(v: &Value, depth: usize, max_depth: usize, seen: &mut Vec<usize>) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Table(t) => render_table(t, depth, max_depth, seen),
        other => other
            .to_string()
            .unwrap_or_else(|_| format!("<{}>", other.type_name())),
    }
}

fn render_key(k: &Value) -> String {
    match k {
        Value::String(s) => {
            let s = s.to_string_lossy();
            let ident = s
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if ident { s } else { format!("[{s:?}]") }
        }
        other => format!("[{}]", other.to_string().unwrap_or_default()),
    }
}

fn render_table(t: &Table, depth: usize, max_depth: usize, seen: &mut Vec<usize>) -> String {
    let id = t.to_pointer() as usize;
    if seen.contains(&id) {
        return "<cycle>".into();
    }
    if let Some(mt) = t.metatable() {
        if mt.contains_key("__tostring").unwrap_or(false) {
            return Value::Table(t.clone()).to_string().unwrap_or_default();
        }
        // A read-only proxy (such as `baton.fleet`) keeps its fields in the `__index` table.
        if let Ok(Value::Table(inner)) = mt.get::<Value>("__index")
            && t.raw_len() == 0
            && t.pairs::<Value, Value>().next().is_none()
        {
            return render_table(&inner, depth, max_depth, seen);
        }
    }
    let len = t.raw_len();
    let mut items: Vec<String> = Vec::new();
    let mut pairs: Vec<(Value, Value)> = t.pairs::<Value, Value>().filter_map(Result::ok).collect();
    if pairs.is_empty() {
        return "{}".into();
    }
    if depth >= max_depth {
        return "{…}".into();
    }
    seen.push(id);
    for i in 1..=len {
        let v: Value = t.raw_get(i).unwrap_or(Value::Nil);
        items.push(render(&v, depth + 1, max_depth, seen));
    }
    pairs.retain(|(k, _)| !matches!(k, Value::Integer(i) if *i >= 1 && (*i as usize) <= len));
    pairs.sort_by_key(|(k, _)| {
        (
            !matches!(k, Value::String(_)),
            k.to_string().unwrap_or_default(),
        )
    });
    for (k, v) in &pairs {
        items.push(format!(
            "{} = {}",
            render_key(k),
            render(v, depth + 1, max_depth, seen)
        ));
    }
    seen.pop();
    let one_line = format!("{{ {} }}", items.join(", "));
    if one_line.len() <= 80 && !one_line.contains('\n') {
        return one_line;
    }
    let pad = "  ".repeat(depth + 1);
    let body: Vec<String> = items.iter().map(|i| format!("{pad}{i}")).collect();
    format!("{{\n{},\n{}}}", body.join(",\n"), "  ".repeat(depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_sorted_and_limited() {
        let lua = mlua::Lua::new();
        let v: Value = lua
            .load(r#"{ 1, "two", b = { c = true }, a = 1.5, ["x y"] = 3 }"#)
            .eval()
            .unwrap();
        assert_eq!(
            inspect(&v, 4),
            r#"{ 1, "two", a = 1.5, b = { c = true }, ["x y"] = 3 }"#
        );
        let v: Value = lua.load("{ a = { b = { c = {} } } }").eval().unwrap();
        assert_eq!(inspect(&v, 2), "{ a = { b = {…} } }");
        let v: Value = lua
            .load("local t = {}; t.self = t; return t")
            .eval()
            .unwrap();
        assert_eq!(inspect(&v, 4), "{ self = <cycle> }");
        let v: Value = lua
            .load("local t = {} for i = 1, 30 do t[i] = 'item' .. i end return t")
            .eval()
            .unwrap();
        assert!(inspect(&v, 4).starts_with("{\n  \"item1\",\n"));
    }
}

//! Stapler's `tree` query parameter: `a,b[c,d[e]],f{0,5}` keeps only the named properties.

use serde_json::Value;

/// One selected property, with its own sub-selection and array range.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    /// Property name.
    pub name: String,
    /// Sub-selection (`name[...]`); `None` selects the whole value.
    pub children: Option<Vec<Selector>>,
    /// Array range (`{M,N}`: from M to before N, either end open; `{N}`: element N only).
    pub range: Option<(Option<usize>, Option<usize>)>,
}

/// Parses a `tree` value; `Err` names the offset of the problem.
pub fn parse(tree: &str) -> Result<Vec<Selector>, String> {
    let chars: Vec<char> = tree.chars().collect();
    let mut pos = 0;
    let list = parse_list(&chars, &mut pos)?;
    if pos != chars.len() {
        return Err(format!(
            "unexpected {:?} at offset {pos} of tree={tree:?}",
            chars[pos]
        ));
    }
    Ok(list)
}

fn parse_list(c: &[char], pos: &mut usize) -> Result<Vec<Selector>, String> {
    let mut out = Vec::new();
    loop {
        let start = *pos;
        while *pos < c.len() && !matches!(c[*pos], ',' | '[' | ']' | '{' | '}') {
            *pos += 1;
        }
        let name: String = c[start..*pos].iter().collect::<String>().trim().to_string();
        if name.is_empty() {
            return Err(format!("empty property name at offset {start}"));
        }
        let mut sel = Selector {
            name,
            children: None,
            range: None,
        };
        if *pos < c.len() && c[*pos] == '[' {
            *pos += 1;
            sel.children = Some(parse_list(c, pos)?);
            if *pos >= c.len() || c[*pos] != ']' {
                return Err(format!("missing ']' at offset {pos}"));
            }
            *pos += 1;
        }
        if *pos < c.len() && c[*pos] == '{' {
            let start = *pos + 1;
            while *pos < c.len() && c[*pos] != '}' {
                *pos += 1;
            }
            if *pos >= c.len() {
                return Err(format!("missing '}}' after offset {start}"));
            }
            let spec: String = c[start..*pos].iter().collect();
            *pos += 1;
            sel.range = Some(parse_range(&spec)?);
        }
        out.push(sel);
        if *pos < c.len() && c[*pos] == ',' {
            *pos += 1;
            continue;
        }
        return Ok(out);
    }
}

fn parse_range(spec: &str) -> Result<(Option<usize>, Option<usize>), String> {
    let num = |s: &str| -> Result<Option<usize>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("bad range number {s:?}"))
        }
    };
    match spec.split_once(',') {
        Some((a, b)) => Ok((num(a)?, num(b)?)),
        // `{N}` is the single element N.
        None => {
            let n = num(spec)?.ok_or("empty range")?;
            Ok((Some(n), Some(n + 1)))
        }
    }
}

/// Whether a selection asks for the property at `path` (`["jobs", "builds"]` for
/// `jobs[builds[...]]`); a property selected without a sub-selection selects all below it. For
/// the handlers that render a costly property only when it is asked for.
pub fn selects(selectors: &[Selector], path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else { return true };
    selectors.iter().any(|s| {
        s.name == *first
            && match &s.children {
                Some(children) => selects(children, rest),
                None => true,
            }
    })
}

/// Applies a selection to a rendered value (objects keep `_class`, as Stapler does).
pub fn apply(value: &Value, selectors: &[Selector]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| apply(v, selectors)).collect()),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            if let Some(c) = map.get("_class") {
                out.insert("_class".into(), c.clone());
            }
            for sel in selectors {
                let Some(v) = map.get(&sel.name) else {
                    continue;
                };
                let v = match (&sel.range, v) {
                    (Some((from, to)), Value::Array(items)) => {
                        let from = from.unwrap_or(0).min(items.len());
                        let to = to.unwrap_or(items.len()).clamp(from, items.len());
                        Value::Array(items[from..to].to_vec())
                    }
                    _ => v.clone(),
                };
                let v = match &sel.children {
                    Some(children) => apply(&v, children),
                    None => v,
                };
                out.insert(sel.name.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_nested_properties_and_ranges() {
        let v = json!({"_class": "X", "a": 1, "b": [{"_class": "Y", "c": 2, "d": 3}, {"c": 4}], "e": [1, 2, 3]});
        let sel = parse("b[c],e{1,}").unwrap();
        assert_eq!(
            apply(&v, &sel),
            json!({"_class": "X", "b": [{"_class": "Y", "c": 2}, {"c": 4}], "e": [2, 3]})
        );
        assert!(parse("a[b").is_err());
        let sel = parse("jobs[name,builds[number]{0,5}],views").unwrap();
        assert!(selects(&sel, &["jobs", "builds"]) && selects(&sel, &["views", "name"]));
        assert!(!selects(&sel, &["jobs", "allBuilds"]) && !selects(&sel, &["builds"]));
        assert!(parse("a,,b").is_err());
    }
}

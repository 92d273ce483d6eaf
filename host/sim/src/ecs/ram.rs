//! RAM policy documents, evaluated as RAM does for the parts the provisioner's documented
//! least-privilege policy uses: `Allow` and `Deny` statements, `Action` and `Resource`
//! patterns with `*`, and `StringEquals` / `StringLike` conditions on `acs:RequestTag/<key>`
//! (the tags a request sets, `Tag.N.Key` / `Tag.N.Value`) and `acs:ResourceTag/<key>` (the tags
//! of each instance a request names, `InstanceId.N` / `InstanceIds`). A document using any other
//! operator or key is refused when loaded, so a test never passes on a condition the emulator
//! ignored. An explicit deny wins; without a matching allow the request is denied.

use std::collections::BTreeMap;

use serde_json::Value;

/// A parsed RAM policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct RamPolicy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    /// (operator, key, accepted values)
    conditions: Vec<(Operator, String, Vec<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operator {
    StringEquals,
    StringLike,
}

/// One resource a request acts on: its ARN and its tags.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    /// e.g. `acs:ecs:cn-hangzhou:123:instance/i-abc`.
    pub arn: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// What RAM decides on: the action, the resources it acts on, the tags it sets.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `ecs:DeleteInstances`, `vpc:DescribeVSwitches`...
    pub action: String,
    /// The resources acted on; a request naming none acts on `*`.
    pub resources: Vec<Resource>,
    /// Tags the request sets (`acs:RequestTag`).
    pub request_tags: BTreeMap<String, String>,
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_owned).ok_or_else(|| format!("{what}: expected strings"))).collect(),
        _ => Err(format!("{what}: expected a string or a list of strings")),
    }
}

impl RamPolicy {
    /// Parses a policy document (`{"Version": "1", "Statement": [...]}`).
    pub fn parse(doc: &Value) -> Result<Self, String> {
        let list = doc.get("Statement").and_then(Value::as_array).ok_or("a policy needs a Statement list")?;
        let mut statements = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let at = |what: &str| format!("Statement[{i}].{what}");
            let allow = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err(format!("{}: Allow or Deny", at("Effect"))),
            };
            let actions = strings(s.get("Action").ok_or_else(|| at("Action"))?, &at("Action"))?;
            let resources = strings(s.get("Resource").ok_or_else(|| at("Resource"))?, &at("Resource"))?;
            let mut conditions = Vec::new();
            if let Some(c) = s.get("Condition") {
                let ops = c.as_object().ok_or_else(|| at("Condition"))?;
                for (op, keys) in ops {
                    let operator = match op.as_str() {
                        "StringEquals" => Operator::StringEquals,
                        "StringLike" => Operator::StringLike,
                        other => return Err(format!("{}: the emulator does not evaluate {other}", at("Condition"))),
                    };
                    for (key, values) in keys.as_object().ok_or_else(|| at("Condition"))? {
                        if !(key.starts_with("acs:RequestTag/") || key.starts_with("acs:ResourceTag/")) {
                            return Err(format!("{}: the emulator does not evaluate the key {key}", at("Condition")));
                        }
                        conditions.push((operator, key.clone(), strings(values, &at("Condition"))?));
                    }
                }
            }
            statements.push(Statement { allow, actions, resources, conditions });
        }
        Ok(RamPolicy { statements })
    }

    /// Whether the policy allows the request.
    pub fn allows(&self, r: &Request) -> bool {
        let matching = |allow: bool| self.statements.iter().filter(move |s| s.allow == allow).any(|s| s.matches(r));
        !matching(false) && matching(true)
    }
}

impl Statement {
    fn matches(&self, r: &Request) -> bool {
        if !self.actions.iter().any(|a| glob(&a.to_ascii_lowercase(), &r.action.to_ascii_lowercase())) {
            return false;
        }
        let star = [Resource { arn: "*".into(), tags: BTreeMap::new() }];
        let resources = if r.resources.is_empty() { &star[..] } else { &r.resources[..] };
        // Every resource the request acts on must be covered, conditions included.
        resources.iter().all(|res| {
            self.resources.iter().any(|p| glob(p, &res.arn))
                && self.conditions.iter().all(|(op, key, values)| {
                    let (tags, tag) = match key.strip_prefix("acs:RequestTag/") {
                        Some(tag) => (&r.request_tags, tag),
                        None => (&res.tags, key.trim_start_matches("acs:ResourceTag/")),
                    };
                    tags.get(tag).is_some_and(|v| {
                        values.iter().any(|want| match op {
                            Operator::StringEquals => want == v,
                            Operator::StringLike => glob(want, v),
                        })
                    })
                })
        })
    }
}

/// `*` matches any run of characters (RAM's wildcard).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| glob(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RamPolicy {
        RamPolicy::parse(&serde_json::json!({
            "Version": "1",
            "Statement": [
                { "Effect": "Allow", "Action": ["ecs:Describe*"], "Resource": "*" },
                { "Effect": "Allow", "Action": "ecs:DeleteInstances", "Resource": "acs:ecs:*:*:instance/*",
                  "Condition": { "StringEquals": { "acs:ResourceTag/owner": "me" } } },
                { "Effect": "Allow", "Action": "ecs:RunInstances", "Resource": "*",
                  "Condition": { "StringEquals": { "acs:RequestTag/owner": "me" } } },
                { "Effect": "Deny", "Action": "ecs:DescribeImages", "Resource": "*" }
            ]
        }))
        .unwrap()
    }

    fn instance(id: &str, owner: Option<&str>) -> Resource {
        Resource { arn: format!("acs:ecs:r:1:instance/{id}"), tags: owner.map(|o| [("owner".to_owned(), o.to_owned())].into()).unwrap_or_default() }
    }

    #[test]
    fn conditions_on_request_and_resource_tags_decide() {
        let p = policy();
        let req = |action: &str, resources: Vec<Resource>, tags: &[(&str, &str)]| Request {
            action: action.into(),
            resources,
            request_tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert!(p.allows(&req("ecs:DescribeInstances", vec![], &[])));
        assert!(!p.allows(&req("ecs:DescribeImages", vec![], &[])), "an explicit deny wins");
        assert!(!p.allows(&req("ecs:StopInstances", vec![], &[])), "nothing allows it");
        assert!(p.allows(&req("ecs:RunInstances", vec![], &[("owner", "me")])));
        assert!(!p.allows(&req("ecs:RunInstances", vec![], &[("owner", "you")])));
        assert!(!p.allows(&req("ecs:RunInstances", vec![], &[])));
        assert!(p.allows(&req("ecs:DeleteInstances", vec![instance("i-1", Some("me"))], &[])));
        assert!(!p.allows(&req("ecs:DeleteInstances", vec![instance("i-1", Some("me")), instance("i-2", None)], &[])), "every instance must qualify");
    }

    #[test]
    fn operators_and_keys_it_cannot_evaluate_are_refused() {
        let doc = |cond: Value| serde_json::json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": cond}]});
        let err = RamPolicy::parse(&doc(serde_json::json!({"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}}))).unwrap_err();
        assert!(err.contains("does not evaluate IpAddress"), "{err}");
        let err = RamPolicy::parse(&doc(serde_json::json!({"StringEquals": {"acs:SourceVpc": "vpc-1"}}))).unwrap_err();
        assert!(err.contains("does not evaluate the key acs:SourceVpc"), "{err}");
    }

    #[test]
    fn wildcards() {
        assert!(glob("ecs:Describe*", "ecs:DescribeZones"));
        assert!(glob("acs:ecs:*:*:instance/*", "acs:ecs:cn-hangzhou:123:instance/i-1"));
        assert!(!glob("acs:ecs:*:*:instance/*", "acs:ecs:cn-hangzhou:123:disk/d-1"));
        assert!(glob("*", ""));
    }
}

//! Parsing the English `why` text of a buildable queue item (reference §5.5).
//!
//! Jenkins exports no label for Pipeline `node('x')` items; the `why` text is the only place
//! it appears, in one of these templates (quotes are U+2018/U+2019):
//!
//! | message | `{0}` is |
//! |---|---|
//! | `There are no nodes with the label ‘{0}’` | the label |
//! | `All nodes of label ‘{0}’ are offline` | the label |
//! | `‘{0}’ is offline` | the one node that has the label |
//! | `Waiting for next available executor on ‘{0}’` | the label, or the one node that has it |
//! | `Waiting for next available executor` | (no label, or no agent nodes at all) |
//! | reasons joined by `; ` | e.g. `‘n’ doesn’t have label ‘{1}’` |

/// What a `why` text says about the label an item needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The text names the label (as Jenkins renders it, e.g. `linux&&docker`).
    Label(String),
    /// `‘X’ is offline`: X is the only node that has the label.
    NodeOffline(String),
    /// `Waiting for next available executor on ‘X’`: X is a label or the only node that has it.
    WaitingOn(String),
    /// `Waiting for next available executor`: no label, or no agent nodes exist at all.
    WaitingForAnyExecutor,
    /// A composite reason where a node "is reserved for jobs with matching label expression":
    /// the item has no label.
    Unlabeled,
    /// Anything else (shutdown, blocked, quiet period, unknown text).
    Other,
}

const OPEN: char = '\u{2018}';
const CLOSE: char = '\u{2019}';

/// Returns the text between the first `‘` and the last `’` if `s` is `prefix‘X’suffix`.
fn quoted<'a>(s: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let inner = s.strip_prefix(prefix)?.strip_suffix(suffix)?;
    inner.strip_prefix(OPEN)?.strip_suffix(CLOSE)
}

/// Parses one message (not a composite).
fn parse_one(s: &str) -> Why {
    let s = s.trim();
    if let Some(l) = quoted(s, "There are no nodes with the label ", "") {
        return Why::Label(l.to_string());
    }
    if let Some(l) = quoted(s, "All nodes of label ", " are offline") {
        return Why::Label(l.to_string());
    }
    if let Some(x) = quoted(s, "Waiting for next available executor on ", "") {
        return Why::WaitingOn(x.to_string());
    }
    if s == "Waiting for next available executor" {
        return Why::WaitingForAnyExecutor;
    }
    // `‘node’ doesn’t have label ‘L’` (Node.LabelMissing). The apostrophe is U+2019 as well.
    if let Some(rest) = s.strip_prefix(OPEN)
        && let Some(pos) = rest.find("\u{2019} doesn\u{2019}t have label \u{2018}")
    {
        let label = &rest[pos + "\u{2019} doesn\u{2019}t have label \u{2018}".len()..];
        if let Some(label) = label.strip_suffix(CLOSE) {
            return Why::Label(label.to_string());
        }
    }
    if s.starts_with(OPEN)
        && s.ends_with("\u{2019} is reserved for jobs with matching label expression")
    {
        return Why::Unlabeled;
    }
    if let Some(n) = quoted(s, "", " is offline") {
        return Why::NodeOffline(n.to_string());
    }
    Why::Other
}

/// Parses a `why` text, including composite ones (`a; b; c`), preferring the most telling part.
pub fn parse_why(why: &str) -> Why {
    // A composite (up to 5 reasons joined by "; ") names the label in a LabelMissing part, or
    // shows the item is unlabelled through a "reserved" part; its other parts say nothing.
    if why.contains("; ") {
        let rank = |w: &Why| match w {
            Why::Label(_) => 0,
            Why::Unlabeled => 1,
            _ => 2,
        };
        if let Some(best) = why
            .split("; ")
            .map(parse_one)
            .filter(|w| rank(w) < 2)
            .min_by_key(rank)
        {
            return best;
        }
    }
    parse_one(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_variant() {
        let table = [
            (
                "There are no nodes with the label ‘linux&&docker’",
                Why::Label("linux&&docker".into()),
            ),
            (
                "All nodes of label ‘linux’ are offline",
                Why::Label("linux".into()),
            ),
            (
                "‘linux-anchor’ is offline",
                Why::NodeOffline("linux-anchor".into()),
            ),
            (
                "Waiting for next available executor on ‘linux’",
                Why::WaitingOn("linux".into()),
            ),
            (
                "Waiting for next available executor on ‘linux-i-1’",
                Why::WaitingOn("linux-i-1".into()),
            ),
            (
                "Waiting for next available executor",
                Why::WaitingForAnyExecutor,
            ),
            (
                "‘n1’ doesn’t have label ‘gpu’; ‘n2’ is not accepting tasks",
                Why::Label("gpu".into()),
            ),
            (
                "‘n1’ is reserved for jobs with matching label expression; ‘n2’ is offline",
                Why::Unlabeled,
            ),
            ("Jenkins is about to shut down", Why::Other),
            ("In the quiet period. Expires in 4.9 sec", Why::Other),
            (
                "Warte auf den nächsten freien Build-Prozessor auf ‘linux’",
                Why::Other,
            ),
            // A label with a quote character in it still parses: the last ’ closes it.
            (
                "All nodes of label ‘\"a’b\"’ are offline",
                Why::Label("\"a’b\"".into()),
            ),
        ];
        for (text, want) in table {
            assert_eq!(parse_why(text), want, "{text:?}");
        }
    }
}

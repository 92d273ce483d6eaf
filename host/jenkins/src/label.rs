//! Jenkins label expressions: parser, evaluator and Jenkins' normal form.
//!
//! Follows core's ANTLR grammar (`LabelExpressionLexer.g4` / `LabelExpressionParser.g4`), from
//! loosest to tightest binding:
//!
//! ```text
//! expr  := term1 EOF
//! term1 := term2 ('<->' term2)*        left-associative
//! term2 := term3 ('->' term3)?         not chainable: `a->b->c` is an error
//! term3 := term4 ('||' term4)*
//! term4 := term5 ('&&' term5)*
//! term5 := '!' term6 | term6           `!` applies to one term6: `!!a` is an error
//! term6 := '(' term1 ')' | ATOM | STRINGLITERAL
//! ```
//!
//! An ATOM is a run of characters other than `& | ! < > ( ) " '`, space and tab, where `-` is
//! allowed unless it starts `->`. A STRINGLITERAL is double-quoted with backslash escapes.
//! [`LabelExpr::name`] renders the expression the way Jenkins names the label (`Label.getName()`),
//! e.g. `linux && docker` becomes `linux&&docker`; that is the text the queue's `why` shows.

use std::collections::BTreeSet;
use std::fmt;

/// A parsed label expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelExpr {
    /// A single label (already unquoted).
    Atom(String),
    /// `!e`
    Not(Box<LabelExpr>),
    /// `a && b`
    And(Box<LabelExpr>, Box<LabelExpr>),
    /// `a || b`
    Or(Box<LabelExpr>, Box<LabelExpr>),
    /// `a -> b`
    Implies(Box<LabelExpr>, Box<LabelExpr>),
    /// `a <-> b`
    Iff(Box<LabelExpr>, Box<LabelExpr>),
    /// `(e)`: kept because Jenkins keeps the user's parentheses in the label name.
    Paren(Box<LabelExpr>),
}

/// Why a label expression could not be parsed; `at` is the byte offset in the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label expression {input:?} at byte {at}: {reason}")]
pub struct LabelParseError {
    /// The whole expression.
    pub input: String,
    /// Byte offset of the offending token.
    pub at: usize,
    /// What was wrong there.
    pub reason: String,
}

/// Precedence of the top-most operator, as Jenkins' `LabelOperatorPrecedence` (tightest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Precedence {
    Atom,
    Not,
    And,
    Or,
    Implies,
    Iff,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    And,
    Or,
    Not,
    Implies,
    Iff,
    LParen,
    RParen,
    Atom(String),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::And => "'&&'".into(),
            Token::Or => "'||'".into(),
            Token::Not => "'!'".into(),
            Token::Implies => "'->'".into(),
            Token::Iff => "'<->'".into(),
            Token::LParen => "'('".into(),
            Token::RParen => "')'".into(),
            Token::Atom(a) => format!("label {a:?}"),
        }
    }
}

/// Characters that end an ATOM (besides `-` before `>`).
fn ends_atom(c: char) -> bool {
    matches!(
        c,
        '&' | '|' | '!' | '<' | '>' | '(' | ')' | ' ' | '\t' | '"' | '\''
    )
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, LabelParseError> {
    let err = |at: usize, reason: String| LabelParseError {
        input: input.to_string(),
        at,
        reason,
    };
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        let rest = &input[at..];
        let fixed = [
            ("<->", Token::Iff),
            ("->", Token::Implies),
            ("&&", Token::And),
            ("||", Token::Or),
        ];
        if let Some((text, tok)) = fixed.iter().find(|(t, _)| rest.starts_with(t)) {
            out.push((at, tok.clone()));
            for _ in 0..text.len() {
                chars.next();
            }
            continue;
        }
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '!' => {
                out.push((at, Token::Not));
                chars.next();
            }
            '(' => {
                out.push((at, Token::LParen));
                chars.next();
            }
            ')' => {
                out.push((at, Token::RParen));
                chars.next();
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                let mut closed = false;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            let (_, e) = chars.next().ok_or_else(|| {
                                err(i, "unfinished escape in quoted label".into())
                            })?;
                            text.push(match e {
                                'b' => '\u{8}',
                                't' => '\t',
                                'n' => '\n',
                                'f' => '\u{c}',
                                'r' => '\r',
                                '"' | '\'' | '\\' => e,
                                other => {
                                    return Err(err(
                                        i,
                                        format!("unknown escape \\{other} in quoted label"),
                                    ));
                                }
                            });
                        }
                        '\r' | '\n' => return Err(err(i, "line break inside quoted label".into())),
                        c => text.push(c),
                    }
                }
                if !closed {
                    return Err(err(at, "quoted label is not closed".into()));
                }
                out.push((at, Token::Atom(text)));
            }
            c if ends_atom(c) => return Err(err(at, format!("unexpected character {c:?}"))),
            _ => {
                let mut text = String::new();
                while let Some(&(i, c)) = chars.peek() {
                    if ends_atom(c) || input[i..].starts_with("->") {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
                out.push((at, Token::Atom(text)));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }
    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.input.len(), |(at, _)| *at)
    }
    fn error(&self, reason: impl Into<String>) -> LabelParseError {
        LabelParseError {
            input: self.input.to_string(),
            at: self.offset(),
            reason: reason.into(),
        }
    }
    fn eat(&mut self, tok: &Token) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn term1(&mut self) -> Result<LabelExpr, LabelParseError> {
        let mut l = self.term2()?;
        while self.eat(&Token::Iff) {
            l = LabelExpr::Iff(Box::new(l), Box::new(self.term2()?));
        }
        Ok(l)
    }
    fn term2(&mut self) -> Result<LabelExpr, LabelParseError> {
        let l = self.term3()?;
        if self.eat(&Token::Implies) {
            return Ok(LabelExpr::Implies(Box::new(l), Box::new(self.term3()?)));
        }
        Ok(l)
    }
    fn term3(&mut self) -> Result<LabelExpr, LabelParseError> {
        let mut l = self.term4()?;
        while self.eat(&Token::Or) {
            l = LabelExpr::Or(Box::new(l), Box::new(self.term4()?));
        }
        Ok(l)
    }
    fn term4(&mut self) -> Result<LabelExpr, LabelParseError> {
        let mut l = self.term5()?;
        while self.eat(&Token::And) {
            l = LabelExpr::And(Box::new(l), Box::new(self.term5()?));
        }
        Ok(l)
    }
    fn term5(&mut self) -> Result<LabelExpr, LabelParseError> {
        if self.eat(&Token::Not) {
            return Ok(LabelExpr::Not(Box::new(self.term6()?)));
        }
        self.term6()
    }
    fn term6(&mut self) -> Result<LabelExpr, LabelParseError> {
        match self.peek().cloned() {
            Some(Token::LParen) => {
                self.pos += 1;
                let inner = self.term1()?;
                if !self.eat(&Token::RParen) {
                    return Err(self.error(match self.peek() {
                        Some(t) => format!("expected ')' but found {}", t.describe()),
                        None => "missing ')'".to_string(),
                    }));
                }
                Ok(LabelExpr::Paren(Box::new(inner)))
            }
            Some(Token::Atom(a)) => {
                self.pos += 1;
                Ok(LabelExpr::Atom(a))
            }
            Some(t) => Err(self.error(format!(
                "expected a label or '(' but found {}",
                t.describe()
            ))),
            None => Err(self.error("expected a label or '(' but the expression ended")),
        }
    }
}

impl LabelExpr {
    /// Parses a label expression with Jenkins' grammar.
    pub fn parse(input: &str) -> Result<Self, LabelParseError> {
        let tokens = tokenize(input)?;
        let mut p = Parser {
            input,
            tokens,
            pos: 0,
        };
        let e = p.term1()?;
        if let Some(t) = p.peek() {
            return Err(p.error(format!(
                "unexpected {} after a complete expression",
                t.describe()
            )));
        }
        Ok(e)
    }

    /// What `Jenkins.getLabel(expr)` does: unquote, parse, and if it does not parse, take the
    /// whole (trimmed) string as one label.
    pub fn parse_lenient(input: &str) -> Self {
        let trimmed = input.trim();
        LabelExpr::parse(trimmed).unwrap_or_else(|_| LabelExpr::Atom(trimmed.to_string()))
    }

    fn precedence(&self) -> Precedence {
        match self {
            LabelExpr::Atom(_) | LabelExpr::Paren(_) => Precedence::Atom,
            LabelExpr::Not(_) => Precedence::Not,
            LabelExpr::And(..) => Precedence::And,
            LabelExpr::Or(..) => Precedence::Or,
            LabelExpr::Implies(..) => Precedence::Implies,
            LabelExpr::Iff(..) => Precedence::Iff,
        }
    }

    /// The label's name as Jenkins renders it (`Label.getName()`/`getExpression()`): no spaces
    /// around operators, the user's parentheses kept, atoms quoted only where needed.
    pub fn name(&self) -> String {
        // Jenkins' `paren(op, l)`: parenthesise a child whose operator binds looser than `op`.
        fn child(op: Precedence, e: &LabelExpr) -> String {
            if op < e.precedence() {
                format!("({})", e.name())
            } else {
                e.name()
            }
        }
        fn binary(op: Precedence, s: &str, l: &LabelExpr, r: &LabelExpr) -> String {
            format!("{}{s}{}", child(op, l), child(op, r))
        }
        match self {
            LabelExpr::Atom(a) => escape_atom(a),
            LabelExpr::Paren(e) => format!("({})", e.name()),
            LabelExpr::Not(e) => format!("!{}", child(Precedence::Not, e)),
            LabelExpr::And(l, r) => binary(Precedence::And, "&&", l, r),
            LabelExpr::Or(l, r) => binary(Precedence::Or, "||", l, r),
            LabelExpr::Implies(l, r) => binary(Precedence::Implies, "->", l, r),
            LabelExpr::Iff(l, r) => binary(Precedence::Iff, "<->", l, r),
        }
    }

    /// Evaluates the expression against a node's labels: an atom is true when `has(atom)`.
    /// Like Jenkins, both sides of every operator are evaluated.
    pub fn matches_with(&self, has: &dyn Fn(&str) -> bool) -> bool {
        match self {
            LabelExpr::Atom(a) => has(a),
            LabelExpr::Paren(e) => e.matches_with(has),
            LabelExpr::Not(e) => !e.matches_with(has),
            LabelExpr::And(l, r) => l.matches_with(has) & r.matches_with(has),
            LabelExpr::Or(l, r) => l.matches_with(has) | r.matches_with(has),
            LabelExpr::Implies(l, r) => !l.matches_with(has) | r.matches_with(has),
            LabelExpr::Iff(l, r) => l.matches_with(has) == r.matches_with(has),
        }
    }

    /// Evaluates the expression against a set of labels.
    pub fn matches<S: AsRef<str>>(&self, labels: &[S]) -> bool {
        self.matches_with(&|a| labels.iter().any(|l| l.as_ref() == a))
    }
}

impl fmt::Display for LabelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Quotes a label the way `LabelAtom.escape` does when the bare text would not read back as
/// the same single atom.
pub fn escape_atom(atom: &str) -> String {
    let bare_ok = !atom.is_empty()
        && !atom
            .chars()
            .any(|c| ends_atom(c) || c.is_whitespace() || "?*/\\%@#$^[]:;".contains(c))
        && !atom.contains("->");
    if bare_ok {
        return atom.to_string();
    }
    let mut out = String::with_capacity(atom.len() + 2);
    out.push('"');
    for c in atom.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes one label for a node's whitespace-separated `labelString` when it needs it.
pub fn quote_label_string(label: &str) -> String {
    if !label.is_empty()
        && !label
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        return label.to_string();
    }
    format!("\"{}\"", label.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Splits a node's `labelString` into labels: whitespace-separated, double quotes group
/// (as `Label.parse` with `QuotedStringTokenizer`). Duplicates are removed; order is sorted.
pub fn split_label_string(s: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_quotes = !in_quotes,
            '\\' if in_quotes => {
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if !cur.is_empty() {
                    out.insert(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.insert(cur);
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, Jenkins name) pairs: the name shows how the expression was grouped.
    #[test]
    fn precedence_and_normal_form() {
        let table = [
            ("linux", "linux"),
            ("linux && docker", "linux&&docker"),
            ("  linux&&docker  ", "linux&&docker"),
            ("a || b && c", "a||b&&c"),
            ("a && b || c", "a&&b||c"),
            ("(a || b) && c", "(a||b)&&c"),
            ("!a && b", "!a&&b"),
            ("!(a && b)", "!(a&&b)"),
            ("a -> b || c", "a->b||c"),
            ("a <-> b -> c", "a<->b->c"),
            ("a <-> b <-> c", "a<->b<->c"),
            ("x-86 && arm-64", "x-86&&arm-64"),
            ("a->b", "a->b"),
            ("\"my label\" && linux", "\"my label\"&&linux"),
            ("\"plain\"", "plain"),
            ("\"a\\\"b\"", "\"a\\\"b\""),
        ];
        for (input, want) in table {
            let e = LabelExpr::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(e.name(), want, "name of {input:?}");
        }
    }

    #[test]
    fn grouping_is_right() {
        use LabelExpr::*;
        let a = || Box::new(Atom("a".into()));
        let b = || Box::new(Atom("b".into()));
        let c = || Box::new(Atom("c".into()));
        assert_eq!(
            LabelExpr::parse("a || b && c").unwrap(),
            Or(a(), Box::new(And(b(), c())))
        );
        assert_eq!(
            LabelExpr::parse("a -> b || c").unwrap(),
            Implies(a(), Box::new(Or(b(), c())))
        );
        assert_eq!(
            LabelExpr::parse("a <-> b <-> c").unwrap(),
            Iff(Box::new(Iff(a(), b())), c())
        );
        assert_eq!(
            LabelExpr::parse("!a && b").unwrap(),
            And(Box::new(Not(a())), b())
        );
    }

    /// (expression, node labels, expected match)
    #[test]
    fn evaluation() {
        let table: &[(&str, &[&str], bool)] = &[
            ("linux", &["linux", "docker"], true),
            ("linux && docker", &["linux"], false),
            ("linux || windows", &["windows"], true),
            ("!windows", &["linux"], true),
            ("!windows && docker", &["linux"], false),
            ("a -> b", &[], true),
            ("a -> b", &["a"], false),
            ("a -> b", &["a", "b"], true),
            ("a <-> b", &[], true),
            ("a <-> b", &["b"], false),
            ("(a || b) && c", &["a"], false),
            ("a || b && c", &["a"], true),
            ("\"my label\"", &["my label"], true),
            ("\"my label\"", &["my", "label"], false),
        ];
        for (expr, labels, want) in table {
            let e = LabelExpr::parse(expr).unwrap();
            assert_eq!(e.matches(labels), *want, "{expr:?} on {labels:?}");
        }
    }

    #[test]
    fn errors_name_the_place() {
        let table = [
            ("", 0, "ended"),
            ("a &&", 4, "ended"),
            ("a -> b -> c", 7, "unexpected '->'"),
            ("!!a", 1, "found '!'"),
            ("(a || b", 7, "missing ')'"),
            ("a b", 2, "unexpected label \"b\""),
            ("\"open", 0, "not closed"),
            ("a & b", 2, "unexpected character '&'"),
            ("a)", 1, "unexpected ')'"),
        ];
        for (input, at, reason) in table {
            let e = LabelExpr::parse(input).expect_err(input);
            assert_eq!(e.at, at, "offset for {input:?}: {e}");
            assert!(e.reason.contains(reason), "{input:?}: {e}");
        }
    }

    #[test]
    fn lenient_parse_takes_garbage_as_one_atom() {
        assert_eq!(
            LabelExpr::parse_lenient("linux docker"),
            LabelExpr::Atom("linux docker".into())
        );
        assert_eq!(
            LabelExpr::parse_lenient(" linux "),
            LabelExpr::Atom("linux".into())
        );
    }

    #[test]
    fn label_strings_split_on_whitespace_with_quotes() {
        assert_eq!(
            split_label_string(" linux  docker\tlinux "),
            vec!["docker", "linux"]
        );
        assert_eq!(split_label_string("\"big box\" x"), vec!["big box", "x"]);
    }
}

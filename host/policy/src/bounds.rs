//! Bounds on text that comes out of a policy.
//!
//! Everything a guest hands the host is untrusted: its size and its bytes. Two caps apply.
//!
//! - **The whole answer**: the store's hostcall fuel ([`Limits::max_answer_bytes`], 1 MiB by
//!   default) bounds what wasmtime copies out of the guest in one lift: one `log` call's
//!   arguments, or one function's result (the plan, the placements, or the `Err` text). A
//!   bigger answer is refused before it is copied and the call fails as
//!   [`Cause::AnswerTooLarge`](super::Cause::AnswerTooLarge).
//! - **Each text**: after the copy, every string the host keeps (reasons, error messages,
//!   names quoted in errors, log lines, the guest's stderr tail) is cut to [`MAX_TEXT_BYTES`]
//!   with a marker, and its control characters are escaped, so no guest text can start a
//!   line of its own in the host's log or bloat `plan`, `/status.json` or the metrics.
//!
//! [`Limits::max_answer_bytes`]: super::Limits::max_answer_bytes

use super::bindings::ScalePlan;

/// Longest text kept from a guest, in bytes (before escaping), about 1 KiB.
pub const MAX_TEXT_BYTES: usize = 1024;

/// The marker put where a text was cut.
pub const TRUNCATED: &str = "…[truncated]";

/// Bounds one guest text: control characters escaped (see [`escape_controls`]), then cut
/// to [`MAX_TEXT_BYTES`] on a char boundary with [`TRUNCATED`] appended. The result is at
/// most `MAX_TEXT_BYTES + TRUNCATED.len()` bytes.
pub fn text(s: &str) -> String {
    text_within(s, MAX_TEXT_BYTES)
}

/// [`text`] with another cap, in bytes.
pub fn text_within(s: &str, max: usize) -> String {
    // Only the first `max` bytes can survive, so only they are escaped.
    let mut out = escape_controls(&s[..floor_char_boundary(s, max)]);
    if s.len() > max || out.len() > max {
        out.truncate(floor_char_boundary(&out, max));
        out.push_str(TRUNCATED);
    }
    out
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Escapes what could forge or garble a log line: every control character (C0 including CR,
/// LF, TAB and ESC; DEL; C1) and the Unicode line and paragraph separators, written as
/// `\n`, `\r`, `\t` or `\u{1b}`. Other text, including non-ASCII letters, is kept as is.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Bounds every text of a `scale` answer: reasons, template names and instance ids. Names
/// are bounded too: validation quotes them in its errors, and a cut name matches nothing,
/// so a giant name fails validation with a bounded message.
pub fn scale_plan(mut plan: ScalePlan) -> ScalePlan {
    for l in &mut plan.launches {
        bound_in_place(&mut l.template);
        bound_in_place(&mut l.reason);
    }
    for r in &mut plan.removals {
        bound_in_place(&mut r.instance_id);
        bound_in_place(&mut r.reason);
    }
    plan
}

fn bound_in_place(s: &mut String) {
    if s.len() > MAX_TEXT_BYTES || s.chars().any(needs_escape) {
        *s = text(s);
    }
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{Launch, Removal};
    use super::*;

    #[test]
    fn short_clean_text_is_kept() {
        assert_eq!(text("5 queued for linux"), "5 queued for linux");
        assert_eq!(text("zone 杭州 h"), "zone 杭州 h");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_marker() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = text(&long);
        assert!(cut.ends_with(TRUNCATED), "{cut}");
        assert_eq!(cut.len(), MAX_TEXT_BYTES + TRUNCATED.len());
        assert_eq!(text_within("héllo", 2), format!("h{TRUNCATED}"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let forged =
            "ok\n2026-01-01T00:00:00Z  INFO ecs_provisioner: fake\r\x1b[31mred\x07\u{2028}";
        let safe = text(forged);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        assert_eq!(
            safe,
            "ok\\n2026-01-01T00:00:00Z  INFO ecs_provisioner: fake\\r\\u{1b}[31mred\\u{7}\\u{2028}"
        );
    }

    #[test]
    fn plans_are_bounded_field_by_field() {
        let huge = "x".repeat(40 << 10);
        let plan = scale_plan(ScalePlan {
            launches: vec![Launch {
                template: huge.clone(),
                count: 1,
                reason: format!("a\nb{huge}"),
            }],
            removals: vec![Removal {
                instance_id: huge.clone(),
                reason: "fine".into(),
            }],
        });
        let l = &plan.launches[0];
        assert!(l.template.len() <= MAX_TEXT_BYTES + TRUNCATED.len());
        assert!(l.reason.starts_with("a\\nb") && l.reason.ends_with(TRUNCATED));
        assert!(plan.removals[0].instance_id.ends_with(TRUNCATED));
        assert_eq!(plan.removals[0].reason, "fine");
    }
}

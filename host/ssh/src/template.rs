//! `{placeholder}` templates of the bootstrap settings, and shell quoting.

/// Renders `template`, replacing each `{name}` with its value from `vars`. `{{` and `}}` stand
/// for literal braces. When `quote` is set the values are shell-quoted, so a value can never
/// break out of its word in a command line. Unknown or unterminated placeholders are errors
/// naming the placeholder and the known ones.
pub fn render(template: &str, vars: &[(&str, &str)], quote: bool) -> Result<String, String> {
    render_with_words(template, vars, &[], quote)
}

/// [`render`] with, in addition, placeholders that stand for several shell words (such as
/// `{jvm_options}`): each word is quoted on its own, and the words are joined by spaces.
pub fn render_with_words(
    template: &str,
    vars: &[(&str, &str)],
    words: &[(&str, &[String])],
    quote: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("unmatched '}' (write '}}' for a literal brace)".into());
        }
        let Some(end) = tail.find('}') else {
            return Err("unterminated '{' (write '{{' for a literal brace)".into());
        };
        let name = &tail[1..end];
        if let Some((_, list)) = words.iter().find(|(n, _)| *n == name) {
            let rendered: Vec<String> = list
                .iter()
                .map(|w| if quote { sh_quote(w) } else { w.clone() })
                .collect();
            out.push_str(&rendered.join(" "));
            rest = &tail[end + 1..];
            continue;
        }
        let Some((_, value)) = vars.iter().find(|(n, _)| *n == name) else {
            let known: Vec<String> = vars
                .iter()
                .map(|(n, _)| *n)
                .chain(words.iter().map(|(n, _)| *n))
                .map(|n| format!("{{{n}}}"))
                .collect();
            return Err(format!(
                "unknown placeholder {{{name}}}; known here: {}",
                known.join(", ")
            ));
        };
        if quote {
            out.push_str(&sh_quote(value));
        } else {
            out.push_str(value);
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Quotes `s` as one POSIX shell word (left bare when it is plainly safe).
pub fn sh_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:@%+=,".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_lists_render_as_separately_quoted_words() {
        let opts = vec!["-Xmx2g".to_string(), "-Da=b c".to_string()];
        let words: [(&str, &[String]); 1] = [("jvm_options", &opts)];
        assert_eq!(
            render_with_words(
                "{java} {jvm_options} -jar x",
                &[("java", "/opt/j dk/java")],
                &words,
                true
            )
            .unwrap(),
            "'/opt/j dk/java' -Xmx2g '-Da=b c' -jar x"
        );
        let none: [(&str, &[String]); 1] = [("jvm_options", &[])];
        assert_eq!(
            render_with_words("java {jvm_options}-jar", &[], &none, true).unwrap(),
            "java -jar"
        );
        assert!(
            render_with_words("{nope}", &[], &words, true)
                .unwrap_err()
                .contains("{jvm_options}")
        );
    }

    #[test]
    fn renders_quotes_and_escapes() {
        let vars = [("work_dir", "/srv/my agent"), ("node_name", "n-1")];
        assert_eq!(
            render("cd {work_dir} && echo {{x}} {node_name}", &vars, true).unwrap(),
            "cd '/srv/my agent' && echo {x} n-1"
        );
        assert_eq!(render("/a/{node_name}", &vars, false).unwrap(), "/a/n-1");
        let err = render("x {nope}", &vars, true).unwrap_err();
        assert!(
            err.contains("{nope}") && err.contains("{work_dir}"),
            "{err}"
        );
        assert!(
            render("x {node_name", &vars, true)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            render("x }", &vars, true)
                .unwrap_err()
                .contains("unmatched")
        );
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        for value in [
            "plain",
            "with space",
            "it's",
            "$(touch /tmp/pwned)",
            "",
            "a\nb",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
        }
    }
}

//! `${VAR}` and `${VAR:-default}` in config files, replaced before the TOML is parsed.
//!
//! Why on the text and not on parsed values: every key can then take a variable (numbers and
//! booleans too), and line numbers stay those of the file. Comments are left alone (a `#`
//! outside a quoted string ends the scanned part of a line), so a commented-out example naming
//! an unset variable is no error. `$$` writes a literal `$`. An unset variable without a
//! default is an error naming it and its line; all of them are reported at once.

/// One unset variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {name} is not set (write ${{{name}:-default}} for a default)")]
    Unset { line: usize, name: String },
    #[error("unterminated ${{…}}")]
    Unterminated { line: usize },
    #[error("{name:?} is not a variable name (letters, digits and _)")]
    BadName { line: usize, name: String },
}

impl EnvError {
    pub fn line(&self) -> usize {
        match self {
            Self::Unset { line, .. } | Self::Unterminated { line } | Self::BadName { line, .. } => {
                *line
            }
        }
    }
}

/// Reads a config file with its variables replaced from the process environment; every unset
/// variable is named with the file and line.
pub fn read_interpolated(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    interpolate(&text, |name| std::env::var(name).ok()).map_err(|errors| {
        let lines: Vec<String> =
            errors.iter().map(|e| format!("{}:{}: {e}", path.display(), e.line())).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
}

/// `text` with every `${…}` replaced through `lookup` (the process environment in production).
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        interpolate_line(line, i + 1, &lookup, &mut out, &mut errors);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn interpolate_line(
    line: &str,
    number: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    errors: &mut Vec<EnvError>,
) {
    let mut quote: Option<char> = None;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        match (c, quote) {
            ('#', None) => {
                out.push_str(rest);
                return;
            }
            ('"' | '\'', None) => quote = Some(c),
            ('"' | '\'', Some(q)) if q == c => quote = None,
            ('\\', Some('"')) if rest.len() > 1 => {
                // An escaped character inside a basic string: copy both, so `\"` does not close it.
                let next = rest[1..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&rest[..1 + next]);
                rest = &rest[1 + next..];
                continue;
            }
            ('$', _) if rest.starts_with("$$") => {
                out.push('$');
                rest = &rest[2..];
                continue;
            }
            ('$', _) if rest.starts_with("${") => {
                let Some(end) = rest.find('}') else {
                    errors.push(EnvError::Unterminated { line: number });
                    out.push_str(rest);
                    return;
                };
                let inner = &rest[2..end];
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner, None),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    errors.push(EnvError::BadName { line: number, name: name.to_owned() });
                } else {
                    match (lookup(name), default) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => {
                            errors.push(EnvError::Unset { line: number, name: name.to_owned() });
                        }
                    }
                }
                rest = &rest[end + 1..];
                continue;
            }
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_defaults_comments_and_escapes() {
        let table = [
            ("a = \"${HOST}:9876\"\n", "a = \"10.0.0.1:9876\"\n"),
            ("a = \"${MISSING:-x}\"", "a = \"x\""),
            ("a = \"${MISSING:-}\"", "a = \"\""),
            ("a = \"${EMPTY:-x}\"", "a = \"\""),
            ("n = ${MISSING:-7}", "n = 7"),
            ("a = 1 # ${MISSING}", "a = 1 # ${MISSING}"),
            ("a = \"# ${HOST}\"", "a = \"# 10.0.0.1\""),
            ("a = 'lit ${HOST}'", "a = 'lit 10.0.0.1'"),
            ("a = \"cost $$5 \\\" ${HOST}\"", "a = \"cost $5 \\\" 10.0.0.1\""),
            ("a = \"$HOST\"", "a = \"$HOST\""),
            ("a = \"é${HOST}é\"", "a = \"é10.0.0.1é\""),
        ];
        for (text, expected) in table {
            assert_eq!(interpolate(text, env).as_deref(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn every_unset_variable_is_reported_with_its_line() {
        let text = "a = \"${HOST}\"\nb = \"${NOPE}\"\n# ${ALSO_NOPE}\nc = \"${X} ${Y:-y} ${Z}\"\nd = \"${bad-name}\"\ne = \"${OPEN\n";
        let errors = interpolate(text, env).unwrap_err();
        assert_eq!(
            errors,
            [
                EnvError::Unset { line: 2, name: "NOPE".into() },
                EnvError::Unset { line: 4, name: "X".into() },
                EnvError::Unset { line: 4, name: "Z".into() },
                EnvError::BadName { line: 5, name: "bad-name".into() },
                EnvError::Unterminated { line: 6 },
            ]
        );
        assert!(errors[0].to_string().starts_with("environment variable NOPE is not set"));
        assert_eq!(errors[4].line(), 6);
    }
}

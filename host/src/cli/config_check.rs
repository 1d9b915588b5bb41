//! `rmq-wasm config check FILE`: every problem of a config file at once, as `file:line: key:
//! message`, instead of the first one serde meets.
//!
//! How: the file is read once with spans (for line numbers) and once as values. Unknown keys
//! are found against [`config_doc`](super::config_doc)'s table. Each known key's value is
//! checked by the parser itself, deserializing its section's struct from a table holding only
//! that key (plus placeholders for the required ones), so the check and `run` cannot disagree
//! about a value. Then each listener that passed is checked as `run` checks it (consumer
//! settings, produce grants), and finally the file as a whole.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::config_doc::{Section, keys};
use super::run::{AclSection, EngineSection, ListenerSection, RunConfig};

/// How an unknown key's problem starts.
const UNKNOWN_KEY: &str = "unknown key";

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    /// The key at fault (`listener[1].fuel`), or empty for the file as a whole.
    pub key: String,
    pub message: String,
}

/// Checks a file; the problems are printed as `file:line: key: message`.
pub fn check_file(path: &Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context as _;
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let problems = check_text(&raw, |n| std::env::var(n).ok());
    Ok(problems
        .iter()
        .map(|p| match p.key.as_str() {
            "" => format!("{}:{}: {}", path.display(), p.line, p.message),
            key => format!("{}:{}: {key}: {}", path.display(), p.line, p.message),
        })
        .collect())
}

/// Every problem of a config text, in file order.
pub fn check_text(raw: &str, env: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    // Unset variables are reported, then read as empty so the rest can still be checked.
    let text = match super::env::interpolate(raw, &env) {
        Ok(t) => t,
        Err(errors) => {
            problems.extend(errors.iter().map(|e| Problem {
                line: e.line(),
                key: String::new(),
                message: e.to_string(),
            }));
            match super::env::interpolate(raw, |n| env(n).or_else(|| Some(String::new()))) {
                Ok(t) => t,
                Err(_) => return problems,
            }
        }
    };
    let (spans, syntax) = DeTable::parse_recoverable(&text);
    if !syntax.is_empty() {
        problems.extend(syntax.iter().map(|e| Problem {
            line: line_of(&text, e.span().map_or(0, |s| s.start)),
            key: String::new(),
            message: e.message().to_owned(),
        }));
        return problems;
    }
    let Ok(values) = text.parse::<toml::Table>() else { return problems };
    let before = problems.len();
    let mut c = Checker { text: &text, problems: &mut problems };
    c.section::<TopProbe>(Section::Top, "", spans.get_ref(), &values, 0);
    if let Some((span, DeValue::Table(t))) = c.child(spans.get_ref(), "engine")
        && let Some(toml::Value::Table(v)) = values.get("engine")
    {
        c.section::<EngineSection>(Section::Engine, "engine.", t, v, span.start);
    }
    if let Some((span, DeValue::Table(t))) = c.child(spans.get_ref(), "acl")
        && let Some(toml::Value::Table(v)) = values.get("acl")
    {
        c.section::<AclSection>(Section::Acl, "acl.", t, v, span.start);
    }
    if let Some((span, DeValue::Table(t))) = c.child(spans.get_ref(), "http")
        && let Some(toml::Value::Table(v)) = values.get("http")
    {
        c.section::<crate::ops::HttpSection>(Section::Http, "http.", t, v, span.start);
    }
    if let Some((_, DeValue::Array(list))) = c.child(spans.get_ref(), "listener")
        && let Some(toml::Value::Array(vals)) = values.get("listener")
    {
        for (i, (item, value)) in list.iter().zip(vals).enumerate() {
            let (DeValue::Table(t), toml::Value::Table(v)) = (item.get_ref(), value) else {
                continue;
            };
            let prefix = format!("listener[{i}].");
            let at = item.span().start;
            let errors = c.problems.len();
            c.section::<ListenerSection>(Section::Listener, &prefix, t, v, at);
            if c.problems.len() == errors {
                c.listener(&prefix, v, at);
            }
        }
    }
    // The whole file as `run` reads it, for what spans listeners (the sandbox pool).
    if problems.len() == before
        && let Err(e) = RunConfig::parse(&text)
    {
        problems.push(Problem { line: 1, key: String::new(), message: format!("{e:#}") });
    }
    // A value emptied by an unset variable fails its own check too: the variable is the news.
    let env_lines: Vec<usize> =
        problems.iter().filter(|p| p.key.is_empty()).map(|p| p.line).collect();
    problems.retain(|p| {
        p.key.is_empty() || p.message.starts_with(UNKNOWN_KEY) || !env_lines.contains(&p.line)
    });
    problems.sort_by_key(|p| p.line);
    problems
}

/// The top level's struct without the `deny_unknown_fields` of nested sections getting in the
/// way: only `namesrv` is checked by value here (the tables have their own sections).
#[derive(Debug, serde::Deserialize)]
struct TopProbe {
    #[serde(rename = "namesrv")]
    _namesrv: super::run::Addrs,
}

struct Checker<'a> {
    text: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn child<'t, 'i>(
        &self,
        table: &'t DeTable<'i>,
        key: &str,
    ) -> Option<(Range<usize>, &'t DeValue<'i>)> {
        table.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| (v.span(), v.get_ref()))
    }

    fn push(&mut self, at: usize, key: String, message: String) {
        self.problems.push(Problem { line: line_of(self.text, at), key, message });
    }

    /// Unknown keys, missing required keys, and each known key's value by itself.
    fn section<T: DeserializeOwned>(
        &mut self,
        section: Section,
        prefix: &str,
        spans: &DeTable<'_>,
        values: &toml::Table,
        at: usize,
    ) {
        let valid: Vec<&str> = keys(section).map(|k| k.key).collect();
        let required: Vec<&str> =
            keys(section).filter(|k| (k.default)() == "required").map(|k| k.key).collect();
        for (key, _) in spans {
            let name = key.get_ref().as_ref();
            if !valid.contains(&name) {
                let message =
                    format!("unknown key in {} (valid: {})", section.header(), valid.join(", "));
                self.push(key.span().start, format!("{prefix}{name}"), message);
            }
        }
        for key in &required {
            // The top level's listener list may be empty in a file being written; `run` says so.
            let optional_here = section == Section::Top && *key == "listener";
            if !optional_here && !values.contains_key(*key) {
                self.push(at, format!("{prefix}{key}"), "missing (required)".to_owned());
            }
        }
        if section == Section::Top {
            if let Some(v) = values.get("namesrv") {
                let mut probe = toml::Table::new();
                probe.insert("namesrv".into(), v.clone());
                if let Err(e) = toml::Value::Table(probe).try_into::<TopProbe>() {
                    let span = self.child(spans, "namesrv").map_or(at, |(s, _)| s.start);
                    self.push(span, "namesrv".into(), e.message().to_owned());
                }
            }
            return;
        }
        for (key, span) in spans.iter().map(|(k, v)| (k.get_ref().as_ref(), v.span())) {
            if !valid.contains(&key) {
                continue;
            }
            let mut probe = placeholders(section);
            probe.insert(key.to_owned(), values[key].clone());
            if let Err(e) = toml::Value::Table(probe).try_into::<T>() {
                self.push(span.start, format!("{prefix}{key}"), e.message().to_owned());
            }
        }
    }

    /// A listener whose keys are all valid, checked as `run` checks it.
    fn listener(&mut self, prefix: &str, values: &toml::Table, at: usize) {
        let l: ListenerSection = match toml::Value::Table(values.clone()).try_into() {
            Ok(l) => l,
            Err(e) => {
                return self.push(at, prefix.trim_end_matches('.').into(), e.message().into());
            }
        };
        let result = super::config_map::check_listener(&l)
            .and_then(|()| l.plugin_spec(&l.consumer_config()).map(drop));
        if let Err(e) = result {
            self.push(at, prefix.trim_end_matches('.').into(), format!("{e:#}"));
        }
    }
}

/// Values for a section's required keys, so one key can be deserialized alone.
fn placeholders(section: Section) -> toml::Table {
    let mut t = toml::Table::new();
    let pairs: &[(&str, &str)] = match section {
        Section::Top => &[("namesrv", "127.0.0.1:9876")],
        Section::Engine => &[],
        Section::Acl => &[("access_key", "k")],
        Section::Http => &[("listen", "127.0.0.1:0")],
        Section::Listener => &[("group", "g"), ("topic", "t"), ("wasm", "p.wasm")],
    };
    for (k, v) in pairs {
        t.insert((*k).to_owned(), toml::Value::String((*v).to_owned()));
    }
    t
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"namesrv = "${NAMESRV:-127.0.0.1:9876}"

[acl]
access_key = "ak"
secret_key_env = "RMQ_SECRET"

[[listener]]
group = "g1"
topic = "t1"
wasm = "a.wasm"
consume_from = "timestamp"
consume_timestamp = "2026-12-05T17:00:00Z"
allocate_strategy = "consistent_hash"
pull_batch_size = 16
shutdown_drain_timeout = "20s"
instance_name = "blue"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_good_file_has_no_problems() {
        assert_eq!(check_text(GOOD, no_env), []);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_line_and_key() {
        let text = r#"namesrv = "127.0.0.1:9876"
colour = "red"

[engine]
max_memory = "lots"

[[listener]]
group = "g1"
topic = "t1"
wasm = "a.wasm"
fuel = "plenty"
batch_sise = 3
timeout = "${TIMEOUT}"

[[listener]]
topic = "t2"
wasm = "b.wasm"

[[listener]]
group = "g3"
topic = "t3"
wasm = "c.wasm"
consume_timestamp = "2026-12-05T17:00:00Z"
pull_batch_size = 0
"#;
        let problems = check_text(text, no_env);
        let found: Vec<(usize, &str)> = problems.iter().map(|p| (p.line, p.key.as_str())).collect();
        assert_eq!(
            found,
            [
                (2, "colour"),
                (5, "engine.max_memory"),
                (11, "listener[0].fuel"),
                (12, "listener[0].batch_sise"),
                (13, ""),
                (15, "listener[1].group"),
                (19, "listener[2]"),
            ],
            "{problems:#?}"
        );
        let message = |i: usize| problems[i].message.as_str();
        assert!(message(0).contains("valid: namesrv"), "{}", message(0));
        assert!(message(1).contains("lots"), "{}", message(1));
        assert!(message(3).contains("valid:") && message(3).contains("batch_size"));
        assert!(message(4).contains("TIMEOUT is not set"), "{}", message(4));
        assert_eq!(message(5), "missing (required)");
        assert!(message(6).contains("consume_timestamp is only used with"), "{}", message(6));
    }

    #[test]
    fn syntax_errors_and_consumer_limits_are_located() {
        let p = check_text("namesrv = \"x\"\n[[listener]\n", no_env);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].line, 2);
        let text = GOOD.replace("pull_batch_size = 16", "pull_batch_size = 5000");
        let p = check_text(&text, no_env);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("pull_batch_size"), "{p:?}");
        assert_eq!((p[0].line, p[0].key.as_str()), (7, "listener[0]"));
        let text = GOOD.replace("secret_key_env = \"RMQ_SECRET\"\n", "");
        let p = check_text(&text, no_env);
        assert!(p.iter().any(|p| p.message.contains("never written in the config file")), "{p:?}");
    }
}

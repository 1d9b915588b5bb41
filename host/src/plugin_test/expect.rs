//! Expectations for `plugin test --expect`: one JSON object per line naming a message (by its
//! index in the fixture or its msg id) and the outcome it must get. Matching is a pure function
//! of the expectations and what was observed, so it is table-tested here.
//!
//! ```text
//! {"index": 0, "outcome": "success"}
//! {"msg_id": "7F00000112AB…", "outcome": "retry", "delay_level": 3}
//! {"index": 2, "outcome": "dead-letter", "reason": "not JSON"}
//! {"index": 3, "outcome": "abort", "abort": "fuel"}
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use super::FixtureError;
use super::fixture::json_lines;

/// What happened to one message in a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Observed {
    Success,
    /// `retry-later`; `None`: the broker's default level.
    Retry {
        delay_level: Option<i32>,
    },
    /// `dead-letter`, by the plugin or, after an abort, by poison isolation (`abort` set).
    DeadLetter {
        reason: String,
        abort: Option<String>,
    },
    /// The call aborted (trap, fuel, timeout, memory, stack) and was not isolated: the whole
    /// batch is retried.
    Abort {
        abort: String,
        detail: String,
    },
    /// The plugin answered `listener-error`: the whole batch is retried.
    Error {
        message: String,
    },
}

impl Observed {
    /// The outcome's name as expectations spell it.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Self::Success => OutcomeKind::Success,
            Self::Retry { .. } => OutcomeKind::Retry,
            Self::DeadLetter { .. } => OutcomeKind::DeadLetter,
            Self::Abort { .. } => OutcomeKind::Abort,
            Self::Error { .. } => OutcomeKind::Error,
        }
    }

    /// The abort kind, if the plugin aborted on this message (isolated or not).
    pub fn abort(&self) -> Option<&str> {
        match self {
            Self::Abort { abort, .. } => Some(abort),
            Self::DeadLetter { abort, .. } => abort.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Success => f.write_str("success"),
            Self::Retry { delay_level: None } => f.write_str("retry (default delay level)"),
            Self::Retry { delay_level: Some(l) } => write!(f, "retry (delay level {l})"),
            Self::DeadLetter { reason, abort: None } => write!(f, "dead-letter ({reason})"),
            Self::DeadLetter { reason, abort: Some(kind) } => {
                write!(f, "dead-letter after abort {kind} ({reason})")
            }
            Self::Abort { abort, detail } => write!(f, "abort {abort} ({detail})"),
            Self::Error { message } => write!(f, "error ({message})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    Success,
    Retry,
    DeadLetter,
    Abort,
    Error,
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::DeadLetter => "dead-letter",
            Self::Abort => "abort",
            Self::Error => "error",
        })
    }
}

/// One line of an expectation file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The message's 0-based index in the fixture…
    pub index: Option<usize>,
    /// …or its msg id (exactly one of the two).
    pub msg_id: Option<String>,
    pub outcome: OutcomeKind,
    /// `retry`: the delay level (omitted: any).
    pub delay_level: Option<i32>,
    /// `dead-letter`/`error`/`abort`: text the reason, message or detail must contain.
    pub reason: Option<String>,
    /// `abort`/`dead-letter`: the abort kind (`trap`, `fuel`, `timeout`, `memory`, `stack`).
    pub abort: Option<String>,
}

/// Parses an expectation file (blank lines skipped); errors name the line.
pub fn parse_expectations(text: &str) -> Result<Vec<(usize, Expectation)>, FixtureError> {
    json_lines::<Expectation>(text)
        .map(|parsed| {
            let (line, e) = parsed?;
            if e.index.is_some() == e.msg_id.is_some() {
                let reason = "name the message by exactly one of index and msg_id".into();
                return Err(FixtureError { line, reason });
            }
            Ok((line, e))
        })
        .collect()
}

/// One observed message, as matching sees it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub msg_id: &'a str,
    pub outcome: &'a Observed,
}

/// An expectation that failed: which line, which message, what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The expectation's line in its file.
    pub line: usize,
    /// The message's index in the fixture, when the expectation found one.
    pub index: Option<usize>,
    pub what: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "expectation line {}: message #{i}: {}", self.line, self.what),
            None => write!(f, "expectation line {}: {}", self.line, self.what),
        }
    }
}

/// Every expectation that `seen` (in fixture order) does not meet.
pub fn check(expectations: &[(usize, Expectation)], seen: &[Seen<'_>]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (line, e) in expectations {
        let found = match (&e.index, &e.msg_id) {
            (Some(i), _) => seen.get(*i).map(|s| (*i, s)).ok_or_else(|| {
                format!("no message #{i}: the fixture has {} message(s)", seen.len())
            }),
            (None, Some(id)) => seen
                .iter()
                .position(|s| s.msg_id == id)
                .map(|i| (i, &seen[i]))
                .ok_or_else(|| format!("no message with msg id {id} in the fixture")),
            (None, None) => Err("names no message".to_owned()),
        };
        let (index, s) = match found {
            Ok(f) => f,
            Err(what) => {
                out.push(Mismatch { line: *line, index: None, what });
                continue;
            }
        };
        if let Some(what) = differs(e, s.outcome) {
            let what = format!("{} ({}): {what}", s.msg_id, s.outcome);
            out.push(Mismatch { line: *line, index: Some(index), what });
        }
    }
    out
}

/// What about `o` does not meet `e`, if anything.
fn differs(e: &Expectation, o: &Observed) -> Option<String> {
    if e.outcome != o.kind() {
        return Some(format!("expected {}, got {}", e.outcome, o.kind()));
    }
    if let (Some(want), Observed::Retry { delay_level }) = (e.delay_level, o)
        && *delay_level != Some(want)
    {
        let got = delay_level.map_or("the default".to_owned(), |l| l.to_string());
        return Some(format!("expected delay level {want}, got {got}"));
    }
    if let Some(want) = &e.abort
        && o.abort() != Some(want.as_str())
    {
        return Some(format!("expected abort {want}, got {}", o.abort().unwrap_or("none")));
    }
    if let Some(want) = &e.reason {
        let text = match o {
            Observed::DeadLetter { reason, .. } => reason,
            Observed::Abort { detail, .. } => detail,
            Observed::Error { message } => message,
            Observed::Success | Observed::Retry { .. } => "",
        };
        if !text.contains(want.as_str()) {
            return Some(format!("expected a reason containing {want:?}, got {text:?}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Vec<Observed> {
        vec![
            Observed::Success,
            Observed::Retry { delay_level: Some(3) },
            Observed::DeadLetter { reason: "not JSON: eof".into(), abort: None },
            Observed::DeadLetter { reason: "poison".into(), abort: Some("fuel".into()) },
            Observed::Abort { abort: "timeout".into(), detail: "5s".into() },
        ]
    }

    fn run(line: &str) -> Vec<String> {
        let observed = seen();
        let ids = ["A", "B", "C", "D", "E"];
        let seen: Vec<Seen<'_>> =
            ids.iter().zip(&observed).map(|(id, o)| Seen { msg_id: id, outcome: o }).collect();
        check(&parse_expectations(line).unwrap(), &seen).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn expectations_match_by_index_or_msg_id_and_name_what_differs() {
        let table: [(&str, &[&str]); 14] = [
            (r#"{"index":0,"outcome":"success"}"#, &[]),
            (r#"{"msg_id":"B","outcome":"retry"}"#, &[]),
            (r#"{"msg_id":"B","outcome":"retry","delay_level":3}"#, &[]),
            (
                r#"{"msg_id":"B","outcome":"retry","delay_level":5}"#,
                &[
                    "expectation line 1: message #1: B (retry (delay level 3)): expected delay level 5, got 3",
                ],
            ),
            (r#"{"index":2,"outcome":"dead-letter","reason":"not JSON"}"#, &[]),
            (
                r#"{"index":2,"outcome":"dead-letter","reason":"too big"}"#,
                &[
                    "expectation line 1: message #2: C (dead-letter (not JSON: eof)): expected a reason containing \"too big\", got \"not JSON: eof\"",
                ],
            ),
            (r#"{"index":3,"outcome":"dead-letter","abort":"fuel"}"#, &[]),
            (
                r#"{"index":2,"outcome":"dead-letter","abort":"fuel"}"#,
                &[
                    "expectation line 1: message #2: C (dead-letter (not JSON: eof)): expected abort fuel, got none",
                ],
            ),
            (r#"{"index":4,"outcome":"abort","abort":"timeout"}"#, &[]),
            (
                r#"{"index":0,"outcome":"dead-letter"}"#,
                &["expectation line 1: message #0: A (success): expected dead-letter, got success"],
            ),
            (
                r#"{"index":9,"outcome":"success"}"#,
                &["expectation line 1: no message #9: the fixture has 5 message(s)"],
            ),
            (
                r#"{"msg_id":"Z","outcome":"success"}"#,
                &["expectation line 1: no message with msg id Z in the fixture"],
            ),
            (
                "\n{\"index\":0,\"outcome\":\"retry\"}\n{\"index\":1,\"outcome\":\"success\"}",
                &[
                    "expectation line 2: message #0: A (success): expected retry, got success",
                    "expectation line 3: message #1: B (retry (delay level 3)): expected success, got retry",
                ],
            ),
            (r#"{"msg_id":"E","outcome":"abort","reason":"5s"}"#, &[]),
        ];
        for (lines, expected) in table {
            assert_eq!(run(lines), expected, "{lines}");
        }
    }

    #[test]
    fn bad_expectation_lines_are_refused_naming_the_line() {
        let table = [
            (
                r#"{"outcome":"success"}"#,
                "line 1: name the message by exactly one of index and msg_id",
            ),
            (
                r#"{"index":0,"msg_id":"A","outcome":"success"}"#,
                "line 1: name the message by exactly one",
            ),
            (r#"{"index":0,"outcome":"fine"}"#, "line 1: unknown variant `fine`"),
            (
                "\n{\"index\":0,\"outcome\":\"success\",\"level\":1}",
                "line 2: unknown field `level`",
            ),
        ];
        for (text, expected) in table {
            let e = parse_expectations(text).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{text}: {e}");
        }
    }
}

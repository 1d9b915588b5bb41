//! Every key of the `run` config file with its default and meaning: the source of
//! `rmq-wasm config defaults`, of the README's config reference and of `config check`'s list
//! of valid keys.
//!
//! Why a table and not doc comments: the table is data the binary prints. Defaults are
//! computed from the same values the parser falls back to (`ConsumerConfig::new`,
//! `ListenerLimits::default()`, `EngineConfig::default()`), and a test compares the table's
//! keys with the fields serde reads from each section's struct, so the documentation cannot
//! drift from the parser: a key added to a struct without a row here fails the build's tests.

use std::fmt::Write as _;

use crate::consumer::config::ConsumerConfig;
use crate::wasm::{EngineConfig, ListenerLimits};

/// The tables of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Top,
    Engine,
    Acl,
    Http,
    Listener,
}

impl Section {
    pub const ALL: [Self; 5] = [Self::Top, Self::Engine, Self::Acl, Self::Http, Self::Listener];

    /// The table's header as written in the file.
    pub fn header(self) -> &'static str {
        match self {
            Self::Top => "top level",
            Self::Engine => "[engine]",
            Self::Acl => "[acl]",
            Self::Http => "[http]",
            Self::Listener => "[[listener]]",
        }
    }
}

/// One key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    pub section: Section,
    pub key: &'static str,
    /// The value used when the key is unset.
    pub default: fn() -> String,
    pub meaning: &'static str,
}

fn required() -> String {
    "required".to_owned()
}
fn none() -> String {
    "unset".to_owned()
}
fn consumer() -> ConsumerConfig {
    ConsumerConfig::new("g")
}
fn limits() -> ListenerLimits {
    ListenerLimits::default()
}
fn engine() -> EngineConfig {
    EngineConfig::default()
}
fn secs(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}
fn mib(bytes: usize) -> String {
    format!("{}MiB", bytes >> 20)
}

macro_rules! key {
    ($section:ident, $key:literal, $default:expr, $meaning:literal) => {
        KeyDoc { section: Section::$section, key: $key, default: $default, meaning: $meaning }
    };
}

/// Every key, in the order the reference lists them.
pub const KEYS: &[KeyDoc] = &[
    key!(Top, "namesrv", required, "name servers: a list, or one `host:port[;host:port…]` string"),
    key!(Top, "engine", none, "the `[engine]` table: the sandbox pool shared by all listeners"),
    key!(Top, "acl", none, "the `[acl]` table: credentials for brokers with authentication on"),
    key!(Top, "http", none, "the `[http]` table: the operators' endpoint (off unless set)"),
    key!(
        Http,
        "listen",
        required,
        "address:port of `/metrics`, `/livez`, `/readyz`, `/status`; port 0 picks a free one"
    ),
    key!(Top, "listener", required, "one `[[listener]]` table per consumer group and plugin"),
    key!(
        Engine,
        "max_instances",
        || format!("the listeners' slots together, at least {}", engine().max_instances),
        "sandboxes at once; at least the listeners' slots together"
    ),
    key!(
        Engine,
        "max_memory",
        || mib(engine().max_memory_size),
        "upper bound of any listener's memory cap"
    ),
    key!(
        Engine,
        "max_wasm_stack",
        || format!("{}KiB", engine().max_wasm_stack >> 10),
        "wasm stack per call"
    ),
    key!(
        Engine,
        "max_module_size",
        || mib(engine().max_module_size),
        "the largest `.wasm` file loaded"
    ),
    key!(
        Engine,
        "epoch_tick",
        || secs(engine().epoch_tick),
        "how often call deadlines are checked"
    ),
    key!(
        Engine,
        "cache_dir",
        || "~/.cache/rmq-wasm".to_owned(),
        "compiled artifacts (private, HMAC-verified)"
    ),
    key!(Engine, "no_cache", || "false".to_owned(), "compile every load, keep nothing on disk"),
    key!(Acl, "access_key", required, "the access key every request is signed with"),
    key!(Acl, "secret_key_env", none, "name of the environment variable holding the secret key"),
    key!(
        Acl,
        "secret_key_file",
        none,
        "file holding the secret key (one of the two is required; never inline)"
    ),
    key!(
        Listener,
        "name",
        || "the group".to_owned(),
        "names the plugin in logs, stats and DLQ properties"
    ),
    key!(Listener, "group", required, "the consumer group"),
    key!(Listener, "topic", required, "the topic consumed"),
    key!(
        Listener,
        "expression",
        || "*".to_owned(),
        "tag expression (`TagA || TagB`) or SQL92 filter"
    ),
    key!(Listener, "expression_type", || "tag".to_owned(), "`tag` or `sql92`"),
    key!(
        Listener,
        "message_model",
        || "clustering".to_owned(),
        "`clustering` (queues shared) or `broadcasting` (every member gets all)"
    ),
    key!(
        Listener,
        "consume_mode",
        || "concurrently".to_owned(),
        "`concurrently` or `orderly` (one call at a time per queue: queue locks in PULL, the broker's orderly POP with `pop`)"
    ),
    key!(
        Listener,
        "request_mode",
        || "pull".to_owned(),
        "`pull`, `pop` (5.x: the broker hands out messages) or `broker` (QUERY_ASSIGNMENT decides)"
    ),
    key!(
        Listener,
        "pop_invisible_time",
        || secs(consumer().pop_invisible_time),
        "POP: how long a popped message stays hidden before it comes back (5s..=300s)"
    ),
    key!(
        Listener,
        "pop_batch_size",
        || consumer().pop_batch_size.to_string(),
        "POP: messages per pop (1..=32)"
    ),
    key!(
        Listener,
        "pop_threshold_for_queue",
        || consumer().pop_threshold_for_queue.to_string(),
        "POP flow control: stop popping a queue past this many messages awaiting their ack"
    ),
    key!(
        Listener,
        "broker_suspend_max",
        || secs(consumer().broker_suspend_max),
        "how long the broker may hold a pull or pop that finds nothing (long poll)"
    ),
    key!(
        Listener,
        "consume_from",
        || "last".to_owned(),
        "where a new group starts: `last`, `first` or `timestamp`"
    ),
    key!(
        Listener,
        "consume_timestamp",
        || "30 minutes before the start".to_owned(),
        "with `consume_from = \"timestamp\"`: RFC 3339 instant or epoch ms"
    ),
    key!(
        Listener,
        "shutdown_drain_timeout",
        || secs(consumer().shutdown_drain_timeout),
        "how long in-flight calls may finish at shutdown"
    ),
    key!(
        Listener,
        "allocate_strategy",
        || "avg".to_owned(),
        "`avg`, `avg_by_circle` or `consistent_hash`; the same in every member"
    ),
    key!(
        Listener,
        "pull_batch_size",
        || consumer().pull_batch_size.to_string(),
        "messages per pull"
    ),
    key!(
        Listener,
        "pull_threshold_for_queue",
        || consumer().pull_threshold_for_queue.to_string(),
        "pause a queue's pulls past this many buffered messages"
    ),
    key!(
        Listener,
        "pull_threshold_size_for_queue_mib",
        || consumer().pull_threshold_size_for_queue_mib.to_string(),
        "pause a queue's pulls past this many MiB buffered"
    ),
    key!(
        Listener,
        "pull_threshold_for_topic",
        none,
        "message budget for all queues, split over them (replaces the per-queue one)"
    ),
    key!(
        Listener,
        "pull_threshold_size_for_topic_mib",
        none,
        "MiB budget for all queues, split over them"
    ),
    key!(Listener, "instance_name", || "<pid>#<nanos>".to_owned(), "part of the client id"),
    key!(Listener, "unit_name", none, "appended to the client id"),
    key!(Listener, "wasm", required, "the component; relative to the config file"),
    key!(Listener, "fuel", || limits().fuel.to_string(), "fuel per call (12 M ≈ 1 ms of busy CPU)"),
    key!(
        Listener,
        "timeout",
        || secs(limits().timeout),
        "wall clock per call, host calls included"
    ),
    key!(Listener, "memory", || mib(limits().memory), "linear memory cap per instance"),
    key!(
        Listener,
        "batch_size",
        || consumer().consume_message_batch_max_size.to_string(),
        "messages per listener call"
    ),
    key!(
        Listener,
        "max_reconsume_times",
        || "16 (orderly: unlimited)".to_owned(),
        "retries before the DLQ"
    ),
    key!(
        Listener,
        "slots",
        || consumer().consume_thread_max.to_string(),
        "listener calls (and sandboxes) at once"
    ),
    key!(
        Listener,
        "clocks",
        || limits().clocks.to_string(),
        "grant the real clocks (frozen otherwise)"
    ),
    key!(
        Listener,
        "instance_reuse",
        || limits().instance_reuse.to_string(),
        "warm mode: calls one instance may serve"
    ),
    key!(
        Listener,
        "produce_topics",
        || "[]".to_owned(),
        "topics the plugin may send to: names or `prefix*`"
    ),
    key!(
        Listener,
        "produce_to_input",
        || "false".to_owned(),
        "allow a grant to cover the input topic"
    ),
    key!(
        Listener,
        "max_sends_per_second",
        || limits().max_sends_per_second.to_string(),
        "sends per second across all calls"
    ),
    key!(
        Listener,
        "log_level",
        || limits().log_level.to_string().to_lowercase(),
        "most verbose level of the plugin's own lines kept (`trace` … `error`, `off`)"
    ),
    key!(
        Listener,
        "hot_reload",
        || "true".to_owned(),
        "watch the `.wasm` and swap in new versions"
    ),
    key!(
        Listener,
        "poison_isolation",
        || limits().poison_isolation.to_string(),
        "re-run an aborted batch message by message; a message aborting alone goes to the DLQ"
    ),
    key!(
        Listener,
        "config",
        || "{}".to_owned(),
        "the plugin's own table (strings, numbers, booleans)"
    ),
];

/// The keys of one section.
pub fn keys(section: Section) -> impl Iterator<Item = &'static KeyDoc> {
    KEYS.iter().filter(move |k| k.section == section)
}

/// `rmq-wasm config defaults`: a Markdown table per section (also the README's reference).
pub fn render() -> String {
    let mut out = String::new();
    for section in Section::ALL {
        let _ =
            writeln!(out, "`{}`\n\n| key | default | meaning |\n|---|---|---|", section.header());
        for k in keys(section) {
            let _ = writeln!(out, "| `{}` | {} | {} |", k.key, (k.default)(), k.meaning);
        }
        out.push('\n');
    }
    out.push_str(
        "Any value may be `${VAR}` or `${VAR:-default}` from the environment (`$$` is a `$`).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::Deserialize;

    use super::*;
    use crate::cli::run::{AclSection, EngineSection, ListenerSection, RunConfig};

    /// The field names serde reads for `T`: a deserializer that only records what
    /// `deserialize_struct` is asked for.
    fn fields<T: for<'de> Deserialize<'de>>() -> BTreeSet<&'static str> {
        struct Probe(std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>);
        #[derive(Debug)]
        struct Stop;
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("stop")
            }
        }
        impl std::error::Error for Stop {}
        impl serde::de::Error for Stop {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Stop
            }
        }
        impl<'de> serde::Deserializer<'de> for Probe {
            type Error = Stop;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop)
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Stop> {
                self.0.borrow_mut().extend(fields);
                Err(Stop)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let seen = std::rc::Rc::default();
        let _ = T::deserialize(Probe(std::rc::Rc::clone(&seen)));
        seen.borrow().iter().copied().collect()
    }

    #[test]
    fn the_table_has_exactly_the_keys_the_parser_reads() {
        let table = [
            (Section::Top, fields::<RunConfig>()),
            (Section::Engine, fields::<EngineSection>()),
            (Section::Acl, fields::<AclSection>()),
            (Section::Http, fields::<crate::ops::HttpSection>()),
            (Section::Listener, fields::<ListenerSection>()),
        ];
        for (section, parsed) in table {
            assert!(!parsed.is_empty(), "{section:?}");
            let documented: BTreeSet<&str> = keys(section).map(|k| k.key).collect();
            assert_eq!(documented, parsed, "{section:?}: documented keys vs the struct's fields");
        }
    }

    #[test]
    fn defaults_come_from_the_parsers_fallbacks() {
        let text = render();
        let line = |key: &str| {
            text.lines().find(|l| l.starts_with(&format!("| `{key}` |"))).unwrap().to_owned()
        };
        assert!(line("pull_batch_size").contains("| 32 |"), "{}", line("pull_batch_size"));
        assert!(line("timeout").contains("| 5s |"));
        assert!(line("memory").contains("| 64MiB |"));
        assert!(line("shutdown_drain_timeout").contains("| 10s |"));
        assert!(line("group").contains("| required |"));
        assert_eq!(text.matches("| key | default | meaning |").count(), Section::ALL.len());
    }

    /// The README's config reference is this table, verbatim: regenerate it with
    /// `rmq-wasm config defaults` when a key changes.
    #[test]
    fn the_readme_reference_is_the_commands_output() {
        let readme = include_str!("../../../README.md");
        let begin = "<!-- config-defaults:begin -->\n";
        let start =
            readme.find(begin).expect("README has the config-defaults markers") + begin.len();
        let end = readme.find("<!-- config-defaults:end -->").expect("end marker");
        assert!(
            readme[start..end] == render(),
            "README.md's config reference differs from `rmq-wasm config defaults`; paste its output \
             between the config-defaults markers"
        );
    }
}

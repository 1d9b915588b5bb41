//! `plugin test FILE --messages F.jsonl`: replays a fixture through the production listener
//! path ([`crate::plugin_test::replay`]) with no cluster, prints per message what happened,
//! and checks expectations. Argument parsing, the listener's spec and printing live here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::consumer::listener::ConsumeMode;
use crate::plugin_test::expect::{self, Observed, Seen};
use crate::plugin_test::logs::LogCapture;
use crate::plugin_test::parse_fixture;
use crate::plugin_test::replay::{CallReport, Replay};
use crate::plugin_test::sends::RecordingProducer;
use crate::wasm::{
    Budget, EngineConfig, ListenerLimits, PLUGIN_LOG_TARGET, PluginProducer, PluginSpec,
    SandboxEngine, TopicGrant, WasmListener,
};

pub(super) const EXAMPLES: &str = "\
Examples:
  rmq-wasm plugin test target/plugins/filter.wasm --messages orders.jsonl
  rmq-wasm plugin test router.wasm --messages orders.jsonl --batch 16 \\
      --config route_field=region --produce-topics 'orders-*' --expect orders.expect.jsonl
  rmq-wasm plugin test my.wasm --messages f.jsonl --fuel 50000000 --timeout 200ms --memory 32MiB
  rmq-wasm plugin test my.wasm --messages f.jsonl --json | jq 'select(.outcome != \"success\")'

Fixtures come from `rmq-wasm capture` (or are written by hand: one JSON object a line, only
`topic` required). An expectation file names a message by index or msg id and its outcome:
  {\"index\": 0, \"outcome\": \"success\"}
  {\"msg_id\": \"7F0000011F2B…\", \"outcome\": \"retry\", \"delay_level\": 3}
  {\"index\": 2, \"outcome\": \"dead-letter\", \"reason\": \"not JSON\"}
  {\"index\": 3, \"outcome\": \"abort\", \"abort\": \"fuel\"}

Messages the plugin sends are recorded and printed, never sent: no cluster is needed or
touched. Exit status 1 when an expectation fails or the plugin aborts on a message no
expectation says it aborts on.";

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,
    /// The fixture: JSONL messages (`rmq-wasm capture` writes them).
    #[arg(long, value_name = "F.jsonl")]
    pub messages: PathBuf,
    /// Expected outcomes: JSONL, one per message to check (by `index` or `msg_id`).
    #[arg(long, value_name = "E.jsonl")]
    pub expect: Option<PathBuf>,
    /// A `[listener.config]` entry the plugin reads; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    pub config: Vec<(String, String)>,
    /// Messages per call (`batch_size`): consecutive messages of one queue.
    #[arg(long, default_value_t = NonZeroUsize::MIN)]
    pub batch: NonZeroUsize,
    /// Fuel per call (default: the listener default).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Wall-clock limit per call, e.g. `200ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Memory cap per instance, e.g. `32MiB`.
    #[arg(long, value_parser = super::super::run::parse_bytes)]
    pub memory: Option<usize>,
    /// Grant: topics the plugin may send to (`produce_topics`), names or `prefix*`; repeat or
    /// separate with commas. Sends are recorded, not sent.
    #[arg(long = "produce-topics", value_name = "TOPIC", value_delimiter = ',')]
    pub produce_topics: Vec<String>,
    /// Grant: the real clocks (`clocks = true`).
    #[arg(long)]
    pub clocks: bool,
    /// The most verbose plugin log level kept (`log_level`).
    #[arg(long)]
    pub log_level: Option<tracing::level_filters::LevelFilter>,
    /// Consume mode the plugin is told (`consume_mode`).
    #[arg(long, value_enum, default_value = "concurrently")]
    pub mode: Mode,
    /// The consumer group the plugin is told.
    #[arg(long, default_value = "plugin-test")]
    pub group: String,
    /// Poison isolation after a deterministic abort (`poison_isolation`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub poison_isolation: bool,
    /// One JSON object per message instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    Concurrently,
    Orderly,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

impl TestArgs {
    /// The listener's spec, as a `[[listener]]` with these keys would have it.
    fn spec(&self, producer: Arc<dyn PluginProducer>) -> anyhow::Result<PluginSpec> {
        let mut spec = PluginSpec::new(plugin_name(&self.file), &self.group);
        spec.config = self.config.iter().cloned().collect::<BTreeMap<_, _>>();
        spec.producer = Some(producer);
        let l = &mut spec.limits;
        *l = ListenerLimits::default();
        Budget { fuel: self.fuel, timeout: self.timeout, memory: self.memory }.apply(l);
        l.slots = 1;
        l.clocks = self.clocks;
        l.produce_topics = self
            .produce_topics
            .iter()
            .map(|t| TopicGrant::parse(t))
            .collect::<Result<_, _>>()
            .context("--produce-topics")?;
        if let Some(level) = self.log_level {
            l.log_level = level;
        }
        l.poison_isolation = self.poison_isolation;
        Ok(spec)
    }
}

fn plugin_name(file: &std::path::Path) -> String {
    file.file_stem().map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned())
}

pub(super) async fn test(args: TestArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.messages)
        .with_context(|| format!("reading {}", args.messages.display()))?;
    let messages = parse_fixture(&text).with_context(|| args.messages.display().to_string())?;
    let expectations = match &args.expect {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            expect::parse_expectations(&text).with_context(|| path.display().to_string())?
        }
        None => Vec::new(),
    };
    let engine = SandboxEngine::new(EngineConfig { max_instances: 2, ..EngineConfig::default() })
        .context("starting the wasm engine")?;
    let sends = Arc::new(RecordingProducer::default());
    let spec = args.spec(Arc::clone(&sends) as Arc<dyn PluginProducer>)?;
    let listener = WasmListener::load(&engine, &args.file, spec)
        .await
        .with_context(|| format!("loading {}", args.file.display()))?;

    // The plugin's lines are kept per call (and printed with it); other lines at WARN and up
    // (or as RUST_LOG says) still reach stderr. The replay runs on this thread, so a
    // thread-scoped subscriber sees every line of its calls.
    let logs = LogCapture::default();
    let host_filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        .add_directive(format!("{PLUGIN_LOG_TARGET}=off").parse().expect("a valid directive"));
    let subscriber = tracing_subscriber::registry()
        .with(
            logs.clone().with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(PLUGIN_LOG_TARGET, tracing::Level::TRACE),
            ),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(super::super::use_colour(
                    std::io::IsTerminal::is_terminal(&std::io::stderr()),
                    std::env::var_os("NO_COLOR").as_deref(),
                ))
                .with_filter(host_filter),
        );
    let _scope = tracing::subscriber::set_default(subscriber);

    let replay = Replay {
        listener: &listener,
        group: args.group.as_str().into(),
        mode: match args.mode {
            Mode::Concurrently => ConsumeMode::Concurrently,
            Mode::Orderly => ConsumeMode::Orderly,
        },
        batch: args.batch,
        logs: &logs,
        sends: &sends,
    };
    let ids: Vec<String> = messages.iter().map(|(m, _)| m.msg_id()).collect();
    let reports = replay
        .run(&messages, |call| {
            let out = if args.json { call_json(call, &ids) } else { call_text(call, &ids) };
            print!("{out}");
        })
        .await;

    let observed: Vec<&Observed> = reports.iter().flat_map(|r| &r.outcomes).collect();
    let seen: Vec<Seen<'_>> =
        ids.iter().zip(&observed).map(|(id, o)| Seen { msg_id: id, outcome: o }).collect();
    let mismatches = expect::check(&expectations, &seen);
    let unexpected_aborts: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            s.outcome.abort().is_some()
                && !expectations
                    .iter()
                    .any(|(_, e)| e.index == Some(*i) || e.msg_id.as_deref() == Some(s.msg_id))
        })
        .map(|(i, s)| {
            format!("message #{i} {}: {} (no expectation covers it)", s.msg_id, s.outcome)
        })
        .collect();
    let summary = summary(&reports, expectations.len(), mismatches.len());
    eprintln!("{summary}");
    for m in &mismatches {
        eprintln!("FAILED {m}");
    }
    for a in &unexpected_aborts {
        eprintln!("ABORTED {a}");
    }
    if !mismatches.is_empty() || !unexpected_aborts.is_empty() {
        anyhow::bail!(
            "{} expectation(s) failed, {} unexpected abort(s)",
            mismatches.len(),
            unexpected_aborts.len()
        );
    }
    Ok(())
}

/// One call for a person: per message its outcome, then the call's cost, log lines and sends.
fn call_text(call: &CallReport, ids: &[String]) -> String {
    let mut out = String::new();
    for (k, o) in call.outcomes.iter().enumerate() {
        let i = call.first + k;
        let _ = writeln!(out, "#{i:<4} {}  {o}", ids[i]);
    }
    let last = call.first + call.len - 1;
    let span = if call.len == 1 {
        format!("#{}", call.first)
    } else {
        format!("#{}..#{last}", call.first)
    };
    let _ = writeln!(
        out,
        "      {span}: fuel {}, {:.3} ms",
        call.fuel_used,
        call.elapsed.as_secs_f64() * 1e3
    );
    for l in &call.logs {
        let _ = writeln!(out, "      log {:<5} {}", l.level, l.message);
    }
    for s in &call.sends {
        let tags = s.tags.as_deref().map(|t| format!(" tags={t}")).unwrap_or_default();
        let keys =
            if s.keys.is_empty() { String::new() } else { format!(" keys={}", s.keys.join(",")) };
        let _ = writeln!(
            out,
            "      send (recorded, not sent) → {}{tags}{keys}: {}",
            s.topic,
            s.body_text()
        );
    }
    out
}

/// One JSON object per message of the call; the call's cost, log lines and sends on each.
fn call_json(call: &CallReport, ids: &[String]) -> String {
    let mut out = String::new();
    for (k, o) in call.outcomes.iter().enumerate() {
        let i = call.first + k;
        let mut j = serde_json::to_value(o).expect("an outcome serializes");
        j["index"] = i.into();
        j["msg_id"] = ids[i].clone().into();
        j["call"] = serde_json::json!({
            "first": call.first,
            "len": call.len,
            "fuel_used": call.fuel_used,
            "elapsed_ms": call.elapsed.as_secs_f64() * 1e3,
            "logs": call.logs,
            "sends": call.sends,
        });
        let _ = writeln!(out, "{j}");
    }
    out
}

fn summary(reports: &[CallReport], expectations: usize, failed: usize) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in reports.iter().flat_map(|r| &r.outcomes) {
        *counts.entry(o.kind().to_string()).or_default() += 1;
    }
    let messages: usize = reports.iter().map(|r| r.len).sum();
    let fuel: u64 = reports.iter().map(|r| r.fuel_used).sum();
    let sends: usize = reports.iter().map(|r| r.sends.len()).sum();
    let outcomes: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut s = format!(
        "{messages} message(s) in {} call(s): {}; fuel {fuel}; {sends} send(s) recorded",
        reports.len(),
        outcomes.join(", ")
    );
    if expectations > 0 {
        let _ = write!(s, "; expectations: {} met, {failed} failed", expectations - failed);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::key_value;

    #[test]
    fn config_entries_parse() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(key_value("=b").unwrap_err().contains("KEY=VALUE"));
        assert!(key_value("ab").is_err());
    }
}

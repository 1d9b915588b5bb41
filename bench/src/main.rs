//! `consume-bench`: consume throughput from a local RocketMQ cluster — Apache RocketMQ's own Java
//! name server and broker, 5.3, unless `RMQ_CLUSTER_FLAVOUR` says `java4` (4.9) or `rust`
//! (rocketmq-rust 1.0.0) — in one run, against one topic, of
//!
//! * (a) our `PushConsumer` with a no-op native listener, `consume_message_batch_max_size` 1 (the
//!   default), and (a') 32;
//! * (b) a `rocketmq-client-rust` 1.0.0 `DefaultMQPushConsumer` with a no-op listener, in this
//!   process, with its defaults;
//! * (c) a raw pull loop over our `BrokerClient` (no consume service, no long poll): the ceiling
//!   our transport and the broker allow;
//! * (d) Apache RocketMQ's own Java `DefaultMQPushConsumer` (the client of the cluster's Java
//!   version; 5.3 for a rust cluster) with a no-op listener and its defaults, in a JVM of its own:
//!   `tests/java`'s `PeerConsumer --quiet` through `rmq_wasm_tests::java_peer`;
//! * (e) our `PushConsumer`, batch 32, calling the `filter` Wasm plugin with a fresh instance per
//!   call under the default fuel and timeout limits, and (e') the same in warm mode. The plugin is
//!   configured with a tag and a body text no message has, so it checks every message's tag and
//!   scans its body, then accepts it; (e0) the same with the tag check only: (a')'s listener does
//!   nothing, so e0/a' is what the sandbox costs and e/a' adds scanning 1 KiB a message under
//!   fuel. The body is all `x` and the text contains one `x`, so memchr's `memmem` in the guest
//!   cannot skip ahead on a rare byte: (e) burns ~3.6 fuel a byte of body (#15).
//!
//! The topic (8 queues) is filled once with N messages (batch sends); every run then reads all of
//! it with a fresh consumer group from the first offset. A run counts unique messages by their
//! client-side id (`UNIQ_KEY`, which a message keeps when a consumer hands it back through
//! `%RETRY%<group>`) — (e) only those the plugin accepted — and is timed from the consumer's start
//! to the N-th unique message. The Java peer reports no ids in quiet mode, only `COUNT n` (the
//! messages its listener was called with) every 200 ms: (d) is timed to the first `COUNT` ≥ N seen,
//! so it is late by up to 200 ms; the window is printed, and e/d at its fast end too. Whatever
//! precedes consuming is done before a clock starts: compiling the plugin (or loading it from the
//! artifact cache) and, for (d), booting the JVM up to `consumer.start()` having returned: (d) is
//! not charged for its route lookup and first heartbeat (ours are charged for
//! `PushConsumer::start`), but is for its first rebalance, which the Java client holds back until
//! `rocketmq.client.rebalance.minInterval` (1 s) after it was created. Log events at WARN and above
//! are counted per side (ours: `rmq_wasm*`, peer: `rocketmq*`) while each run lasts.
//!
//! CPU (user + system, `/proc`) is read before and after each run: this process (the consumer of
//! every row but (d), its start-up and shutdown included), every broker process and, for (d), the
//! peer's JVM (read when it reached N: its shutdown is not counted). Per message, consumer and
//! broker side by side, it says what each row costs regardless of the wall clock.
//!
//! What bounds the figures: everything shares one machine (the reference machine has 2 cores).
//! The broker — a JVM with its GC and JIT threads for the Java flavours — serves every pull and
//! competes with the consumer for those cores, so a consumer that burns less CPU leaves the broker
//! more and pulls faster; (c) does no per-message work on the consumer side and shows where the
//! broker caps us. The Java peer brings 20 consume threads plus pull, rebalance and GC threads of
//! its own; our side runs `--workers` tokio workers, and the Wasm rows up to 20 sandboxes at once.
//! A Java broker also gets faster as its JIT compiles the pull path: `--warmup` untimed raw pull
//! passes (1 by default) come first, and the rows run in the order of `--runs`, so a later row may
//! still meet a warmer broker. At small N, start-up weighs: each row also prints its rate from
//! its first message on, and the ratios are printed for those rates too.
//!
//! The cluster is started here (127.0.0.1 only, removed at exit) unless `RMQ_TEST_CLUSTER_ENV`
//! names the `cluster.env` of one started by `scripts/cluster.sh start`. Build in release mode for
//! figures that mean anything: `scripts/bench.sh` (= `cargo run --release -p rmq-wasm-bench`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

mod rust_peer;

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use rmq_wasm::client::{BrokerClient, PullStatus};
use rmq_wasm::consumer::config::RequestMode;
use rmq_wasm::consumer::listener::{ListenerFuture, MessageListener};
use rmq_wasm::consumer::{
    ConsumeContext, ConsumerConfig, MessageOutcome, PushConsumer, Subscription,
};
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::header::{
    GetMaxOffsetRequestHeader, PullMessageRequestHeader, pull_sys_flag,
};
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm::protocol::{EpochMillis, MessageQueue, QueueOffset};
use rmq_wasm::remoting::ConnectionPool;
use rmq_wasm::wasm::{EngineConfig, PluginSpec, SandboxEngine, WasmListener};
use rmq_wasm_bench::fill::send_batch_when_not_busy;
use rmq_wasm_bench::procfs::process_cpu;
use rmq_wasm_tests::cluster::{Cluster, pid_alive};
use rmq_wasm_tests::java_peer::{JavaPeer, PeerOptions};
use rmq_wasm_tests::support::{Clients, unique};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Parser)]
#[command(about = "Consume throughput: our push consumer (native and Wasm listeners) vs \
             rocketmq-client-rust vs Apache RocketMQ's Java push consumer vs a raw pull loop")]
struct Args {
    /// Messages in the topic; every run consumes all of them.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: u64,
    /// Body size of each message in bytes.
    #[arg(long, default_value_t = 1024)]
    body_size: usize,
    /// Queues of the topic.
    #[arg(long, default_value_t = 8)]
    queues: i32,
    /// Messages per batch send while filling the topic.
    #[arg(long, default_value_t = 64)]
    send_batch: usize,
    /// Which runs, in this order: ours (a, batch 1), ours32 (a', batch 32), peer (b,
    /// rocketmq-client-rust), raw (c), java (d, Java DefaultMQPushConsumer), wasm (e, Wasm filter,
    /// fresh instances), wasm-warm (e', Wasm filter, warm instances), pop (f, ours in POP mode,
    /// batch 32) and pop-wasm (f', the Wasm filter in POP mode, fresh instances); pop and pop-wasm
    /// need a 5.x broker and are not in the default list.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_RUNS)]
    runs: Vec<RunKind>,
    /// Untimed passes over the whole topic before the rows, each a raw pull loop and then our
    /// push consumer at batch 32: a Java broker runs its pull path interpreted until the JIT has
    /// compiled it, and a push consumer's pulls (long-poll suspend, commit offset, a registered
    /// group) take paths the raw loop's do not, so a raw pass alone left the first push row
    /// meeting a broker that spent 2× the CPU per message of a warm one (#15).
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Times the whole `--runs` list is measured, interleaved (round 1: every row, round 2: every
    /// row, …); each row's summary and the ratios take its median round. The broker keeps
    /// warming and the machine drifts: one round puts that drift into the ratios.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Bound on each run, in seconds.
    #[arg(long, default_value_t = 300)]
    run_timeout_secs: u64,
    /// Tokio worker threads for our side (the peer gets its own runtime with as many).
    #[arg(long, default_value_t = default_workers())]
    workers: usize,
    /// The filter plugin of (e) and (e'); default `<workspace>/target/plugins/filter.wasm`
    /// (`scripts/build-plugins.sh`).
    #[arg(long)]
    filter_wasm: Option<PathBuf>,
    /// Calls one warm instance serves before it is recycled, in (e').
    #[arg(long, default_value_t = 1000)]
    warm_reuse: u32,
    /// The engine's pool size (`EngineConfig::max_instances`), which also caps the Wasm calls in
    /// flight: small under valgrind (which cannot reserve a pool of 64 4-GiB slots), and to
    /// measure what touching many pool slots costs against few.
    #[arg(long, default_value_t = EngineConfig::default().max_instances)]
    max_instances: u32,
    /// `consumeMessageBatchMaxSize` of the Java peer (d); 1 is Java's default.
    #[arg(long, default_value_t = 1)]
    java_batch: u32,
    /// Log filter of the broker and name server when the bench starts its own cluster
    /// (rocketmq-rust only; the Java servers log to their own files).
    #[arg(long, default_value = "warn")]
    cluster_log: String,
    /// Give the bench's own cluster the stock delay levels (1s 5s 10s 30s …) instead of the test
    /// cluster's 1 s per level; slows down anything a consumer hands back for retry.
    #[arg(long)]
    stock_delay_levels: bool,
}

/// The rows run by default: (b) only where it is built in (feature `rust-peer`, see
/// `rust_peer.rs`).
#[cfg(feature = "rust-peer")]
const DEFAULT_RUNS: &str = "ours,ours32,peer,raw,java,wasm,wasm-tag,wasm-warm";
#[cfg(not(feature = "rust-peer"))]
const DEFAULT_RUNS: &str = "ours,ours32,raw,java,wasm,wasm-tag,wasm-warm";

fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum RunKind {
    /// (a) our PushConsumer, consume_message_batch_max_size = 1 (the default).
    Ours,
    /// (a') our PushConsumer, consume_message_batch_max_size = 32.
    Ours32,
    /// (b) rocketmq-client-rust DefaultMQPushConsumer (its defaults).
    Peer,
    /// (c) raw BrokerClient::pull loop over all queues, no long poll, no consume service.
    Raw,
    /// (d) Apache RocketMQ's Java DefaultMQPushConsumer (its defaults), in its own JVM.
    Java,
    /// (e) our PushConsumer, batch 32, Wasm filter plugin, a fresh instance per call.
    Wasm,
    /// (e0) as (e) with the filter checking tags only: no body scan, the sandbox's own cost.
    WasmTag,
    /// (e') as (e) with warm instances (`--warm-reuse` calls each).
    WasmWarm,
    /// (f) as (a') in POP mode (5.x brokers only; opt-in: `--runs ours32,pop`).
    Pop,
    /// (f') as (e) in POP mode (5.x brokers only; opt-in: `--runs wasm,pop-wasm`).
    PopWasm,
}

impl RunKind {
    fn label(self) -> &'static str {
        match self {
            Self::Ours => "(a)  ours, batch 1",
            Self::Ours32 => "(a') ours, batch 32",
            Self::Peer => "(b)  rocketmq-client-rust",
            Self::Raw => "(c)  raw pull loop",
            Self::Java => "(d)  Java DefaultMQPushConsumer",
            Self::Wasm => "(e)  ours + Wasm filter, b. 32",
            Self::WasmTag => "(e0) ours + Wasm tag check, b.32",
            Self::WasmWarm => "(e') ours + Wasm filter, warm",
            Self::Pop => "(f)  ours, POP, batch 32",
            Self::PopWasm => "(f') ours + Wasm filter, POP",
        }
    }

    /// The row's letter, for the ratios.
    fn letter(self) -> &'static str {
        match self {
            Self::Ours => "a",
            Self::Ours32 => "a'",
            Self::Peer => "b",
            Self::Raw => "c",
            Self::Java => "d",
            Self::Wasm => "e",
            Self::WasmTag => "e0",
            Self::WasmWarm => "e'",
            Self::Pop => "f",
            Self::PopWasm => "f'",
        }
    }
}

/// Width of the label column.
const LABEL: usize = 32;
/// Consume batch size of the Wasm rows: a sandboxed call has a fixed cost (a store and an instance
/// per call) that batching spreads.
const WASM_BATCH: u32 = 32;
/// The filter's config: a tag and a body text no message of the topic has (bodies are all `x`),
/// so the plugin reads every message's tag and scans its whole body, then accepts it.
const FILTER_CONFIG: &[(&str, &str)] =
    &[("tag", "bench-no-such-tag"), ("body-contains", "bench-no-such-text")];
/// (e0)'s: the tag check alone.
const TAG_ONLY_CONFIG: &[(&str, &str)] = &[("tag", "bench-no-such-tag")];
/// How often (d) looks at the Java peer's latest `COUNT` (which the peer prints every 200 ms).
const JAVA_POLL: Duration = Duration::from_millis(5);

#[global_allocator]
static ALLOC: rmq_wasm::Allocator = rmq_wasm::Allocator;

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.messages > 0 && args.queues > 0 && args.send_batch > 0, "sizes must be positive");
    let logs = Arc::new(LogCounts::default());
    tracing_subscriber::registry()
        .with(CountLayer(Arc::clone(&logs)).with_filter(tracing::level_filters::LevelFilter::WARN))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off")),
        ))
        .init();

    let mut cluster =
        rmq_wasm_bench::cluster::start_or_attach(&args.cluster_log, args.stock_delay_levels)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    // The peer client only runs on a runtime its application owns (it never uses the ambient
    // one); give it as many workers as ours.
    let peer_runtime = if args.runs.contains(&RunKind::Peer) {
        Some(rust_peer::PeerRuntime::new(args.workers)?)
    } else {
        None
    };
    let result = runtime.block_on(bench(&args, &cluster, peer_runtime.as_ref(), &logs));
    if let Some(owner) = peer_runtime {
        owner.shutdown();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    cluster.stop()?;
    result
}

async fn bench(
    args: &Args,
    cluster: &Cluster,
    peer_runtime: Option<&rust_peer::PeerRuntime>,
    logs: &Arc<LogCounts>,
) -> Result<()> {
    let clients = Arc::new(Clients::new(cluster));
    let topic = unique("bench");
    let route = clients.create_topic(cluster, &topic, args.queues).await?;
    let queues = route.subscribe_queues(&topic);
    ensure!(queues.len() == args.queues as usize, "route has {} queues", queues.len());
    println!(
        "consume-bench: {} messages × {} B in {} queues, topic {topic}, cluster {} (name server {})",
        args.messages, args.body_size, args.queues, cluster.flavour, cluster.namesrv_addr
    );

    let fill_started = Instant::now();
    let (per_queue, ids) = fill(&clients, &queues, args).await?;
    let ids: Arc<HashMap<String, usize>> =
        Arc::new(ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect());
    ensure!(ids.len() as u64 == args.messages, "duplicate message ids");
    let fill_time = fill_started.elapsed();
    println!(
        "fill: {} messages in {:.2} s ({:.0} msgs/s, batches of {})",
        args.messages,
        fill_time.as_secs_f64(),
        args.messages as f64 / fill_time.as_secs_f64(),
        args.send_batch
    );
    check_filled(&clients, cluster, &queues, &per_queue).await?;

    // One engine for both Wasm rows, as a host process has one.
    let engine = if args.runs.iter().any(|k| {
        matches!(k, RunKind::Wasm | RunKind::WasmTag | RunKind::WasmWarm | RunKind::PopWasm)
    }) {
        Some(SandboxEngine::new(EngineConfig {
            max_instances: args.max_instances,
            ..EngineConfig::default()
        })?)
    } else {
        None
    };
    let bench = Bench {
        args,
        cluster,
        topic: &topic,
        queues: &queues,
        per_queue: &per_queue,
        peer_runtime,
        engine: engine.as_ref(),
        logs,
        timeout: Duration::from_secs(args.run_timeout_secs),
    };
    for pass in 1..=args.warmup {
        let tally = Arc::new(Tally::new(Arc::clone(&ids)));
        let started = Instant::now();
        run_raw(cluster, &queues, &per_queue, &tally, bench.timeout)
            .await
            .with_context(|| format!("warm-up pass {pass}"))?;
        let raw = started.elapsed();
        let push = bench.measure(RunKind::Ours32, &Arc::new(Tally::new(Arc::clone(&ids)))).await;
        ensure!(push.rate.is_some(), "warm-up pass {pass}: our push consumer did not finish");
        println!(
            "warm-up pass {pass} (untimed): raw pull loop {:.2} s, our push consumer {:.2} s",
            raw.as_secs_f64(),
            push.total.as_secs_f64(),
        );
    }
    let mut rounds: BTreeMap<RunKind, Vec<Outcome>> = BTreeMap::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("\n# round {round} of {}", args.rounds);
        }
        for &kind in &args.runs {
            let outcome = bench.measure(kind, &Arc::new(Tally::new(Arc::clone(&ids)))).await;
            outcome.print(kind, bench.broker_label());
            rounds.entry(kind).or_default().push(outcome);
        }
    }
    let results: BTreeMap<RunKind, Outcome> =
        rounds.into_iter().map(|(kind, outcomes)| (kind, median_round(outcomes))).collect();

    println!(
        "\n{:<LABEL$} {:>9}  {:<27}  broker CPU per message{}",
        "",
        "msgs/s",
        "consumer CPU per message",
        if args.rounds > 1 { "   (each row: its median round)" } else { "" },
    );
    for (kind, outcome) in &results {
        outcome.print_summary(*kind);
    }
    println!();
    let rate = |k| results.get(&k).and_then(|o: &Outcome| o.rate);
    let steady = |k| results.get(&k).and_then(Outcome::steady_rate);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_owned(),
    };
    use RunKind::{Java, Ours, Ours32, Peer, Pop, PopWasm, Raw, Wasm, WasmTag, WasmWarm};
    // Wasm/native, Wasm/raw and ours/Java are #15's targets; f/a' and f'/e compare POP with PULL
    // for the same listener (#14).
    for (num, alt, den, target) in [
        (Ours, Ours32, Peer, "≥ 5"),
        (Ours, Ours32, Raw, "≥ 0.9"),
        (Ours, Ours32, Java, "≥ 1.5"),
        (Wasm, WasmWarm, Ours32, "≥ 0.9"),
        (Wasm, WasmWarm, Raw, "≥ 0.9"),
        (Wasm, WasmWarm, Java, "≥ 1.5"),
        (WasmTag, Wasm, Ours32, "≥ 0.9"),
        (Pop, PopWasm, Ours32, "POP/PULL"),
        (PopWasm, Pop, Wasm, "POP/PULL"),
    ] {
        if !results.contains_key(&num) && !results.contains_key(&alt) {
            continue;
        }
        let name = |n: RunKind| format!("{}/{}", n.letter(), den.letter());
        let mut line = format!(
            "{:<5}= {:>5}  {:<15} [{} = {:>5}]   from the first message on: {} / {}",
            name(num),
            ratio(rate(num), rate(den)),
            format!("(target {target})"),
            name(alt),
            ratio(rate(alt), rate(den)),
            ratio(steady(num), steady(den)),
            ratio(steady(alt), steady(den)),
        );
        if let Some(fastest) = results.get(&den).and_then(Outcome::fastest_rate) {
            let _ = write!(
                line,
                "; with {} at the fast end of its COUNT window: {} / {}",
                den.letter(),
                ratio(rate(num), Some(fastest)),
                ratio(rate(alt), Some(fastest)),
            );
        }
        println!("{line}");
    }
    let samples = logs.samples.lock().unwrap_or_else(PoisonError::into_inner);
    if !samples.is_empty() {
        println!("\nfirst distinct WARN/ERROR log lines:");
        for s in samples.iter() {
            println!("  {s}");
        }
    }
    if results.values().any(|o| o.rate.is_none()) {
        bail!("at least one run did not finish");
    }
    Ok(())
}

/// What every run shares: the filled topic, the cluster, the peers' runtimes.
struct Bench<'a> {
    args: &'a Args,
    cluster: &'a Cluster,
    topic: &'a str,
    queues: &'a [MessageQueue],
    per_queue: &'a [u64],
    peer_runtime: Option<&'a rust_peer::PeerRuntime>,
    engine: Option<&'a SandboxEngine>,
    logs: &'a LogCounts,
    timeout: Duration,
}

/// What a run consumes with, set up before its clock starts: compiling a plugin or booting a JVM
/// is not consuming.
#[derive(Debug)]
enum Subject {
    /// Our `PushConsumer`: (a), (a'), (e), (e').
    Ours(Ours),
    /// rocketmq-client-rust (b).
    RustPeer,
    /// The raw pull loop (c).
    Raw,
    /// The Java peer (d), running: it has reported `STARTED`.
    Java(JavaPeer),
}

/// One of our rows: the consumer group, the consume batch size and, for (e)/(e'), the plugin.
#[derive(Debug)]
struct Ours {
    group: String,
    batch: u32,
    plugin: Option<Arc<WasmListener>>,
    request_mode: RequestMode,
}

impl Subject {
    /// The JVM whose CPU the row reports as the consumer's, if the consumer is not this process.
    fn peer_pid(&self) -> Option<u32> {
        match self {
            Self::Java(peer) => Some(peer.pid()),
            _ => None,
        }
    }

    /// Ends what outlives the run (after its CPU was read): the Java peer's graceful shutdown.
    async fn finish(self) -> Result<String> {
        match self {
            Self::Java(mut peer) => {
                let state = tokio::task::spawn_blocking(move || peer.stop()).await??;
                Ok(format!("peer stopped gracefully, final COUNT {}", state.count))
            }
            Self::Ours(_) | Self::RustPeer | Self::Raw => Ok(String::new()),
        }
    }
}

impl Bench<'_> {
    fn broker_label(&self) -> &'static str {
        if self.cluster.flavour.is_java() { "broker JVM" } else { "broker" }
    }

    /// Sets up, runs and times one row, and reads the CPU it used.
    async fn measure(&self, kind: RunKind, tally: &Arc<Tally>) -> Outcome {
        let (subject, setup) = match self.prepare(kind).await {
            Ok(prepared) => prepared,
            Err(e) => {
                let error = format!("FAILED in set-up: {e:#}");
                return Outcome::new(tally, Instant::now(), false, error, LogSnapshot::default());
            }
        };
        let peer_pid = subject.peer_pid();
        let logs_before = self.logs.snapshot();
        let cpu_before = CpuTimes::read(self.cluster, peer_pid);
        let started = Instant::now();
        let run = match &subject {
            Subject::Ours(ours) => self.run_ours(ours, tally).await,
            Subject::RustPeer => match self.peer_runtime {
                Some(owner) => owner.run(self.cluster, self.topic, tally, self.timeout).await,
                None => Err(anyhow::anyhow!("no peer runtime")),
            },
            Subject::Raw => {
                run_raw(self.cluster, self.queues, self.per_queue, tally, self.timeout).await
            }
            Subject::Java(peer) => run_java(peer, tally, self.timeout).await,
        };
        let logs_during = self.logs.snapshot().since(&logs_before);
        let cpu = CpuTimes::read(self.cluster, peer_pid).since(&cpu_before);
        let finished = subject.finish().await.unwrap_or_else(|e| format!("FAILED to stop: {e:#}"));
        let (done, notes) = match run {
            Ok(notes) => (true, notes),
            Err(e) => (false, format!("FAILED: {e:#}")),
        };
        let notes = join_notes(&[&setup, &notes, &finished]);
        let mut outcome = Outcome::new(tally, started, done, notes, logs_during);
        outcome.cpu = cpu;
        outcome
    }

    /// Builds a row's subject; returns it with a note on what the set-up took.
    async fn prepare(&self, kind: RunKind) -> Result<(Subject, String)> {
        let ours = |batch, request_mode| {
            Subject::Ours(Ours { group: unique("bench_ours"), batch, plugin: None, request_mode })
        };
        Ok(match kind {
            RunKind::Ours => (ours(1, RequestMode::Pull), String::new()),
            RunKind::Ours32 => (ours(32, RequestMode::Pull), String::new()),
            RunKind::Pop => (ours(32, RequestMode::Pop), String::new()),
            RunKind::Peer => (Subject::RustPeer, String::new()),
            RunKind::Raw => (Subject::Raw, String::new()),
            RunKind::Wasm | RunKind::WasmWarm => {
                let reuse = if kind == RunKind::WasmWarm { self.args.warm_reuse } else { 1 };
                self.prepare_wasm(reuse, RequestMode::Pull, FILTER_CONFIG).await?
            }
            RunKind::WasmTag => self.prepare_wasm(1, RequestMode::Pull, TAG_ONLY_CONFIG).await?,
            RunKind::PopWasm => self.prepare_wasm(1, RequestMode::Pop, FILTER_CONFIG).await?,
            RunKind::Java => {
                let group = unique("bench_java");
                let opts = PeerOptions {
                    quiet: true,
                    batch: self.args.java_batch,
                    flavour: self.cluster.flavour,
                    ..PeerOptions::new(&self.cluster.namesrv_addr, &group, self.topic, &group)
                };
                let booting = Instant::now();
                let peer = tokio::task::spawn_blocking(move || JavaPeer::start(&opts)).await??;
                let note = format!(
                    "JVM boot + consumer.start() {} ms (before the clock), consumeMessageBatchMaxSize \
                     {}",
                    booting.elapsed().as_millis(),
                    self.args.java_batch
                );
                (Subject::Java(peer), note)
            }
        })
    }

    /// Loads the filter plugin for (e) (`reuse` 1: a fresh instance per call), (e0) (tag check
    /// only), (e') (warm) or (f') (POP).
    async fn prepare_wasm(
        &self,
        reuse: u32,
        request_mode: RequestMode,
        config: &[(&str, &str)],
    ) -> Result<(Subject, String)> {
        let engine = self.engine.context("no wasm engine")?;
        let path = match &self.args.filter_wasm {
            Some(path) => path.clone(),
            None => rmq_wasm_tests::wasm::workspace_root().join("target/plugins/filter.wasm"),
        };
        ensure!(path.is_file(), "{} is missing: run scripts/build-plugins.sh", path.display());
        let group = unique("bench_wasm");
        let mut spec = PluginSpec::new("filter", &group);
        spec.config = config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        // As `rmq-wasm run` sets it: as many sandboxes as the consumer runs listener calls.
        spec.limits.slots = ConsumerConfig::DEFAULT_CONSUME_THREAD_MAX;
        spec.limits.instance_reuse = reuse;
        let (fuel, timeout) = (spec.limits.fuel, spec.limits.timeout);
        let loading = Instant::now();
        let listener = WasmListener::load(engine, &path, spec).await?;
        let note = format!(
            "plugin load {} ms (before the clock); fuel {fuel} and timeout {timeout:?} per call, \
             an instance serves {reuse} call(s)",
            loading.elapsed().as_millis(),
        );
        Ok((
            Subject::Ours(Ours {
                group,
                batch: WASM_BATCH,
                plugin: Some(Arc::new(listener)),
                request_mode,
            }),
            note,
        ))
    }

    /// (a), (a'), (e), (e'): our `PushConsumer` with the counting listener over `ours.plugin`.
    async fn run_ours(&self, ours: &Ours, tally: &Arc<Tally>) -> Result<String> {
        let topic = self.topic;
        let mut config = ConsumerConfig::new(&ours.group).subscribe(Subscription::all(topic));
        config.instance_name = ours.group.clone();
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        config.consume_message_batch_max_size = ours.batch;
        config.request_mode = ours.request_mode;
        let listener = Arc::new(CountingListener {
            tally: Arc::clone(tally),
            plugin: ours.plugin.clone(),
            refused: AtomicU64::new(0),
        });
        let consumer = PushConsumer::start(
            config,
            vec![self.cluster.namesrv_addr.clone()],
            Arc::clone(&listener) as Arc<dyn MessageListener>,
        )
        .await?;
        let waited = tally.wait(self.timeout).await;
        let stats = consumer.stats();
        let owned: Vec<_> = stats.queues.iter().filter(|(q, _)| q.topic == topic).collect();
        let pulls: u64 = owned.iter().map(|(_, s)| s.pulls).sum();
        let pulled: u64 = owned.iter().map(|(_, s)| s.pulled_messages).sum();
        let pull_rt: Duration = owned.iter().map(|(_, s)| s.pull_rt_total).sum();
        let consume_rt: Duration = owned.iter().map(|(_, s)| s.consume_rt_total).sum();
        let pauses: u64 = owned.iter().map(|(_, s)| s.flow_control_pauses).sum();
        let errors: u64 = owned.iter().map(|(_, s)| s.pull_errors).sum();
        let high: u64 = owned.iter().map(|(_, s)| s.cached_count_high_water).max().unwrap_or(0);
        tokio::time::timeout(Duration::from_secs(30), consumer.shutdown())
            .await
            .context("our consumer's shutdown took over 30 s")?;
        waited?;
        let mut notes = format!(
            "pulls {pulls} ({:.1} msgs/pull, avg RT {:.2} ms), pull errors {errors}, flow-control \
             pauses {pauses}, max cached/queue {high}, listener time {:.0} ms",
            pulled as f64 / pulls.max(1) as f64,
            pull_rt.as_secs_f64() * 1e3 / pulls.max(1) as f64,
            consume_rt.as_secs_f64() * 1e3,
        );
        if let Some(plugin) = &ours.plugin {
            let s = plugin.stats().counters;
            let aborts: u64 = s.aborts.iter().map(|(_, n)| n).sum();
            let _ = write!(
                notes,
                "; sandbox: {} calls ({} warm), {:.0} fuel/msg, {aborts} aborts, {} listener \
                 errors, {} messages not accepted (retried: counted when redelivered and accepted)",
                s.calls,
                s.warm_calls,
                s.fuel_used as f64 / tally.target as f64,
                s.listener_errors,
                listener.refused.load(Ordering::Relaxed),
            );
        }
        Ok(notes)
    }
}

fn join_notes(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("; ")
}

/// Fills every queue with its share of N messages, the queues concurrently, each with batch
/// sends. Returns the message count per queue id and every message's unique id.
async fn fill(
    clients: &Arc<Clients>,
    queues: &[MessageQueue],
    args: &Args,
) -> Result<(Vec<u64>, Vec<String>)> {
    let n_queues = queues.len() as u64;
    let body = Bytes::from(vec![b'x'; args.body_size]);
    let mut per_queue =
        vec![0u64; queues.iter().map(|q| q.queue_id.0 as usize + 1).max().unwrap_or(0)];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, q) in queues.iter().enumerate() {
        let count = args.messages / n_queues + u64::from((i as u64) < args.messages % n_queues);
        per_queue[q.queue_id.0 as usize] = count;
        let (clients, q, body, batch) =
            (Arc::clone(clients), q.clone(), body.clone(), args.send_batch as u64);
        tasks.spawn(async move {
            let mut sent = 0;
            let mut ids = Vec::new();
            while sent < count {
                let size = batch.min(count - sent);
                let make = || (0..size).map(|_| Message::new(&q.topic, body.clone())).collect();
                let result = send_batch_when_not_busy(&clients.producer, &q, make)
                    .await
                    .with_context(|| format!("batch send to {q}"))?;
                ids.extend(result.msg_id.split(',').map(str::to_owned));
                sent += size;
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        ids.extend(done??);
    }
    ensure!(ids.len() as u64 == args.messages, "{} ids for {} messages", ids.len(), args.messages);
    Ok((per_queue, ids))
}

/// Every queue holds exactly its share (the counting below relies on offsets 0..count). A Java
/// broker acknowledges a send once the commit log has it and builds the consume queues behind
/// that (`ReputMessageService`), so a queue may show fewer for a moment: wait for it (bounded).
async fn check_filled(
    clients: &Clients,
    cluster: &Cluster,
    queues: &[MessageQueue],
    per_queue: &[u64],
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for q in queues {
        let header = GetMaxOffsetRequestHeader {
            topic: q.topic.clone(),
            queue_id: q.queue_id,
            committed: Some(true),
            bname: Some(q.broker_name.clone()),
        };
        let want = per_queue[q.queue_id.0 as usize];
        loop {
            let max = clients
                .broker
                .max_offset(&cluster.broker_addr, &header, Duration::from_secs(5))
                .await?;
            let held = max.0 as u64;
            if held == want {
                break;
            }
            ensure!(
                held < want && Instant::now() < deadline,
                "{q} holds {held} messages, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Unique-message counter shared by every run: a read-only id → index map and one bit per
/// message, lock-free. Ids that are not ours (none expected) are ignored.
pub(crate) struct Tally {
    ids: Arc<HashMap<String, usize>>,
    target: u64,
    bits: Vec<AtomicU64>,
    unique: AtomicU64,
    deliveries: AtomicU64,
    first_at: OnceLock<Instant>,
    done_at: OnceLock<Instant>,
    /// Count-based runs only ((d)): when the last count below the target was first seen. The
    /// target was reached after it, so the run was done somewhere in `(short_at, done_at]`.
    short_at: Mutex<Option<Instant>>,
    done: tokio::sync::Notify,
}

impl Tally {
    fn new(ids: Arc<HashMap<String, usize>>) -> Self {
        let target = ids.len() as u64;
        Self {
            bits: (0..ids.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            ids,
            target,
            unique: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            first_at: OnceLock::new(),
            done_at: OnceLock::new(),
            short_at: Mutex::new(None),
            done: tokio::sync::Notify::new(),
        }
    }

    fn record(&self, id: Option<&str>) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.first_at.get_or_init(Instant::now);
        let Some(&index) = id.and_then(|id| self.ids.get(id)) else {
            return;
        };
        let bit = 1u64 << (index % 64);
        if self.bits[index / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0
            && self.unique.fetch_add(1, Ordering::AcqRel) + 1 == self.target
        {
            self.finish();
        }
    }

    /// A new running count from a consumer that reports no ids (the Java peer in quiet mode counts
    /// the messages its listener was called with). It stands in for the unique count: with one
    /// consumer whose listener always succeeds, no message is expected twice. Call it when the
    /// count changes, so that `short_at` is when the last short count appeared.
    fn record_count(&self, count: u64) {
        let now = Instant::now();
        if count == 0 {
            return;
        }
        self.first_at.get_or_init(|| now);
        self.deliveries.store(count, Ordering::Relaxed);
        self.unique.store(count.min(self.target), Ordering::Release);
        if count >= self.target {
            self.finish();
        } else {
            *self.short_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
    }

    fn finish(&self) {
        if self.done_at.set(Instant::now()).is_ok() {
            self.done.notify_one();
        }
    }

    async fn wait(&self, timeout: Duration) -> Result<()> {
        if tokio::time::timeout(timeout, self.done.notified()).await.is_err() {
            bail!(
                "timed out after {timeout:?} with {} of {} messages",
                self.unique.load(Ordering::Relaxed),
                self.target
            );
        }
        Ok(())
    }
}

/// The listener of our rows. Without a plugin it is a no-op that accepts the batch at once (what
/// is measured is the consumer); with one, the Wasm listener decides, and only the messages it
/// accepts count (one it hands back for retry counts when it is redelivered and accepted).
struct CountingListener {
    tally: Arc<Tally>,
    plugin: Option<Arc<WasmListener>>,
    /// Messages the plugin did not accept.
    refused: AtomicU64,
}

impl MessageListener for CountingListener {
    fn consume<'a>(
        &'a self,
        ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a> {
        let Some(plugin) = &self.plugin else {
            for m in messages {
                self.tally.record(m.uniq_key());
            }
            return Box::pin(std::future::ready(Ok(vec![MessageOutcome::Success; messages.len()])));
        };
        Box::pin(async move {
            let outcomes = plugin.consume(ctx, messages).await?;
            for (i, m) in messages.iter().enumerate() {
                if outcomes.get(i).is_some_and(MessageOutcome::is_success) {
                    self.tally.record(m.uniq_key());
                } else {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(outcomes)
        })
    }
}

/// (c): one task per queue pulling batches of 32 from offset 0 until the queue is read, with no
/// long poll, no commit, no process queue, no listener.
async fn run_raw(
    cluster: &Cluster,
    queues: &[MessageQueue],
    per_queue: &[u64],
    tally: &Arc<Tally>,
    timeout: Duration,
) -> Result<String> {
    let broker = BrokerClient::new(ConnectionPool::default());
    let group = unique("bench_raw");
    let pulls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for q in queues {
        let (broker, q, group, tally, pulls, errors) = (
            broker.clone(),
            q.clone(),
            group.clone(),
            Arc::clone(tally),
            Arc::clone(&pulls),
            Arc::clone(&errors),
        );
        let addr = cluster.broker_addr.clone();
        let end = i64::try_from(per_queue[q.queue_id.0 as usize]).unwrap_or(i64::MAX);
        tasks.spawn(async move {
            let mut offset = 0;
            while offset < end {
                let header = PullMessageRequestHeader {
                    consumer_group: group.clone(),
                    topic: q.topic.clone(),
                    queue_id: q.queue_id,
                    queue_offset: QueueOffset(offset),
                    max_msg_nums: 32,
                    sys_flag: pull_sys_flag::SUBSCRIPTION,
                    commit_offset: QueueOffset(0),
                    suspend_timeout_millis: 0,
                    subscription: Some("*".into()),
                    sub_version: EpochMillis(0),
                    expression_type: Some("TAG".into()),
                    max_msg_bytes: None,
                    bname: Some(q.broker_name.clone()),
                };
                pulls.fetch_add(1, Ordering::Relaxed);
                match broker.pull(&addr, &header, Duration::from_secs(10)).await {
                    Ok(r) => {
                        if r.status == PullStatus::Found {
                            for m in &r.messages {
                                tally.record(m.uniq_key());
                            }
                        }
                        offset = r.next_begin_offset.0.max(offset);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) > 100 {
                            return Err(anyhow::anyhow!("{q}: too many pull errors, last: {e}"));
                        }
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    let waited = tally.wait(timeout).await;
    tasks.abort_all();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(e);
        }
    }
    waited?;
    let pulls = pulls.load(Ordering::Relaxed);
    Ok(format!(
        "pulls {pulls} ({:.1} msgs/pull), pull errors {}",
        tally.target as f64 / pulls.max(1) as f64,
        errors.load(Ordering::Relaxed)
    ))
}

/// (d): follows the started Java peer's `COUNT` until it reaches N. The peer prints it every
/// 200 ms while it changes; looking every few ms puts the first sighting of each line within a
/// few ms of when it was printed, so the 200 ms interval is the only coarse part of the timing.
async fn run_java(peer: &JavaPeer, tally: &Tally, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(JAVA_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Normally 0; more if the peer consumed between printing `STARTED` and the clock's start.
    let head_start = peer.state().count;
    let mut last = 0;
    loop {
        tick.tick().await;
        let count = peer.state().count;
        if count != last {
            tally.record_count(count);
            last = count;
        }
        if count >= tally.target {
            return Ok(format!("COUNT {head_start} when the clock started"));
        }
        ensure!(pid_alive(peer.pid()), "the Java peer exited at COUNT {count}");
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} at COUNT {count} of {}",
            tally.target
        );
    }
}

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    /// Unique messages per second, start to last message; `None` if the run failed.
    rate: Option<f64>,
    total: Duration,
    first_message: Option<Duration>,
    /// Count-based runs ((d)): the start of the window the run ended in (`Tally::short_at`).
    done_after: Option<Duration>,
    unique: u64,
    deliveries: u64,
    notes: String,
    logs: LogSnapshot,
    /// CPU used during the run (see [`CpuTimes`]).
    cpu: CpuTimes,
    /// With `--rounds` > 1: the spread of this row's rounds (this outcome is their median).
    rounds: Option<String>,
}

impl Outcome {
    /// A run that reached N (`done`) or did not, as the tally saw it.
    fn new(tally: &Tally, started: Instant, done: bool, notes: String, logs: LogSnapshot) -> Self {
        let since_start = |t: &Instant| t.saturating_duration_since(started);
        let total = match tally.done_at.get() {
            Some(t) if done => since_start(t),
            _ => started.elapsed(),
        };
        let short_at = *tally.short_at.lock().unwrap_or_else(PoisonError::into_inner);
        Self {
            rate: done.then(|| tally.target as f64 / total.as_secs_f64()),
            total,
            first_message: tally.first_at.get().map(since_start),
            done_after: short_at.as_ref().map(since_start),
            unique: tally.unique.load(Ordering::Relaxed),
            deliveries: tally.deliveries.load(Ordering::Relaxed),
            notes,
            logs,
            cpu: CpuTimes::default(),
            rounds: None,
        }
    }

    /// The rate had a count-based run ended at the start of its window: its upper bound.
    fn fastest_rate(&self) -> Option<f64> {
        let after = self.done_after.filter(|d| !d.is_zero())?;
        Some(self.rate? * self.total.as_secs_f64() / after.as_secs_f64())
    }

    /// From the first message on: the pipeline's rate without the start-up (which, for the Java
    /// peer, includes its first rebalance: not before `rocketmq.client.rebalance.minInterval`,
    /// 1 s, after the client was created).
    fn steady_rate(&self) -> Option<f64> {
        let first = self.first_message?;
        self.rate?;
        (self.total > first).then(|| self.unique as f64 / (self.total - first).as_secs_f64())
    }

    fn per_message_us(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.unique.max(1) as f64
    }

    fn print(&self, kind: RunKind, broker: &str) {
        let mut line = format!("{:<LABEL$}", kind.label());
        match self.rate {
            Some(rate) => {
                let _ = write!(line, "{rate:>9.0} msgs/s");
            }
            None => line.push_str("   failed     "),
        }
        let steady = self.steady_rate().map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"));
        let counted = if kind == RunKind::Java {
            format!("COUNT {} (the peer's count of messages consumed; no ids)", self.deliveries)
        } else {
            format!("{} unique / {} deliveries", self.unique, self.deliveries)
        };
        let _ = write!(
            line,
            "  {:>6.2} s total, first message after {:>5} ms (then {steady} msgs/s), {counted}, \
             WARN+ logs ours {} / peer {} / other {} (ERROR ours {} / peer {})",
            self.total.as_secs_f64(),
            self.first_message.map_or_else(|| "-".to_owned(), |d| d.as_millis().to_string()),
            self.logs.ours_warn + self.logs.ours_error,
            self.logs.peer_warn + self.logs.peer_error,
            self.logs.other,
            self.logs.ours_error,
            self.logs.peer_error,
        );
        println!("{line}");
        if let (Some(after), Some(fastest)) = (self.done_after, self.fastest_rate()) {
            println!(
                "{:<LABEL$}  done between {:.2} s and {:.2} s (the peer prints COUNT every 200 ms): \
                 at most {fastest:.0} msgs/s",
                "",
                after.as_secs_f64(),
                self.total.as_secs_f64(),
            );
        }
        let (consumer, side) = self.cpu.consumer(kind);
        if let (Some(consumer), Some(broker_cpu)) = (consumer, self.cpu.broker) {
            let mut cpu = format!(
                "CPU during the run: {side} {:.0} ms ({:.1} µs/msg)",
                consumer.as_secs_f64() * 1e3,
                self.per_message_us(consumer),
            );
            if let (RunKind::Java, Some(ours)) = (kind, self.cpu.ours) {
                let _ = write!(cpu, " + this process {:.0} ms", ours.as_secs_f64() * 1e3);
            }
            let _ = write!(
                cpu,
                ", {broker} {:.0} ms ({:.1} µs/msg)",
                broker_cpu.as_secs_f64() * 1e3,
                self.per_message_us(broker_cpu),
            );
            println!("{:<LABEL$}  {cpu}", "");
        }
        if !self.notes.is_empty() {
            println!("{:<LABEL$}  {}", "", self.notes);
        }
    }

    /// One line of the summary table: rate and CPU per message of either side.
    fn print_summary(&self, kind: RunKind) {
        let rate = self.rate.map_or_else(|| "failed".to_owned(), |r| format!("{r:.0}"));
        let us = |cpu: Option<Duration>| {
            cpu.map_or_else(|| "-".to_owned(), |d| format!("{:.1} µs", self.per_message_us(d)))
        };
        let (consumer, side) = self.cpu.consumer(kind);
        println!(
            "{:<LABEL$} {rate:>9}  {:>9} {:<17}  {:>9}",
            kind.label(),
            us(consumer),
            format!("({side})"),
            us(self.cpu.broker),
        );
        if let Some(rounds) = &self.rounds {
            println!("{:<LABEL$}   ({rounds})", "");
        }
    }
}

/// The round whose rate is the median of a row's rounds (a failed round counts as the slowest),
/// with the spread of all rounds added to its notes; the lower middle for an even count.
fn median_round(mut outcomes: Vec<Outcome>) -> Outcome {
    outcomes.sort_by(|a, b| a.rate.unwrap_or(0.0).total_cmp(&b.rate.unwrap_or(0.0)));
    let n = outcomes.len();
    let spread = (n > 1).then(|| {
        let rate = |o: &Outcome| o.rate.map_or_else(|| "failed".to_owned(), |r| format!("{r:.0}"));
        format!("median of {n} rounds: {} … {} msgs/s", rate(&outcomes[0]), rate(&outcomes[n - 1]))
    });
    let mut median = outcomes.swap_remove((n - 1) / 2);
    median.rounds = spread;
    median
}

/// Counts of WARN/ERROR events by origin.
#[derive(Debug, Default)]
struct LogCounts {
    ours_warn: AtomicU64,
    ours_error: AtomicU64,
    peer_warn: AtomicU64,
    peer_error: AtomicU64,
    other: AtomicU64,
    samples: Mutex<Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct LogSnapshot {
    ours_warn: u64,
    ours_error: u64,
    peer_warn: u64,
    peer_error: u64,
    other: u64,
}

impl LogCounts {
    fn snapshot(&self) -> LogSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LogSnapshot {
            ours_warn: get(&self.ours_warn),
            ours_error: get(&self.ours_error),
            peer_warn: get(&self.peer_warn),
            peer_error: get(&self.peer_error),
            other: get(&self.other),
        }
    }
}

impl LogSnapshot {
    fn since(&self, before: &Self) -> Self {
        Self {
            ours_warn: self.ours_warn - before.ours_warn,
            ours_error: self.ours_error - before.ours_error,
            peer_warn: self.peer_warn - before.peer_warn,
            peer_error: self.peer_error - before.peer_error,
            other: self.other - before.other,
        }
    }
}

/// A tracing layer that counts events (and keeps the first few distinct ones).
struct CountLayer(Arc<LogCounts>);

const MAX_SAMPLES: usize = 12;

impl<S: tracing::Subscriber> Layer<S> for CountLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let error = *meta.level() == tracing::Level::ERROR;
        let target = meta.target();
        let counter = if target.starts_with("rmq_wasm") {
            if error { &self.0.ours_error } else { &self.0.ours_warn }
        } else if target.starts_with("rocketmq") {
            if error { &self.0.peer_error } else { &self.0.peer_warn }
        } else {
            &self.0.other
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.0.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES {
            let mut message = EventText(String::new());
            event.record(&mut message);
            let mut line = format!("{} {target}: {}", meta.level(), message.0);
            if let Some((cut, _)) = line.char_indices().nth(300) {
                line.truncate(cut);
                line.push('…');
            }
            if !samples.iter().any(|s| s == &line) {
                samples.push(line);
            }
        }
    }
}

/// Collects an event's `message` field (and the others, `k=v`).
struct EventText(String);

impl Visit for EventText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

/// User + system CPU time (Linux `/proc`; `None` elsewhere) of this process, of the cluster's
/// brokers and, for (d), of the Java peer's JVM.
#[derive(Debug, Default, Clone, Copy)]
struct CpuTimes {
    ours: Option<Duration>,
    /// Every broker node (the bench's own cluster has one; an attached one may have more). A Java
    /// broker's pid is its JVM's (`java` is spawned directly), so GC and JIT threads count.
    broker: Option<Duration>,
    peer_jvm: Option<Duration>,
}

impl CpuTimes {
    fn read(cluster: &Cluster, peer_jvm: Option<u32>) -> Self {
        Self {
            ours: process_cpu(std::process::id()),
            broker: cluster.brokers().iter().map(|b| process_cpu(b.pid())).sum(),
            peer_jvm: peer_jvm.and_then(process_cpu),
        }
    }

    fn since(&self, before: &Self) -> Self {
        let diff = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        Self {
            ours: diff(self.ours, before.ours),
            broker: diff(self.broker, before.broker),
            peer_jvm: diff(self.peer_jvm, before.peer_jvm),
        }
    }

    /// The consuming side's CPU and its name: the Java peer's JVM for (d), this process (our
    /// consumer, the rocketmq-client-rust peer or the raw loop) otherwise.
    fn consumer(&self, kind: RunKind) -> (Option<Duration>, &'static str) {
        match kind {
            RunKind::Java => (self.peer_jvm, "Java peer JVM"),
            _ => (self.ours, "this process"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(rate: Option<f64>) -> Outcome {
        Outcome {
            rate,
            total: Duration::from_secs(1),
            first_message: None,
            done_after: None,
            unique: 0,
            deliveries: 0,
            notes: String::new(),
            logs: LogSnapshot::default(),
            cpu: CpuTimes::default(),
            rounds: None,
        }
    }

    #[test]
    fn a_row_is_judged_by_its_median_round_and_a_failed_round_counts_as_the_slowest() {
        // (each round's rate, the median's rate, the spread it notes)
        type Case = (&'static [Option<f64>], Option<f64>, Option<&'static str>);
        let cases: [Case; 5] = [
            (&[Some(5.0)], Some(5.0), None),
            (
                &[Some(9.0), Some(1.0), Some(5.0)],
                Some(5.0),
                Some("median of 3 rounds: 1 … 9 msgs/s"),
            ),
            (
                &[None, Some(7.0), Some(3.0)],
                Some(3.0),
                Some("median of 3 rounds: failed … 7 msgs/s"),
            ),
            // Even count: the lower middle, so one lucky round cannot carry a row.
            (&[Some(4.0), Some(2.0)], Some(2.0), Some("median of 2 rounds: 2 … 4 msgs/s")),
            (&[None, None], None, Some("median of 2 rounds: failed … failed msgs/s")),
        ];
        for (rates, want, spread) in cases {
            let median = median_round(rates.iter().map(|&r| outcome(r)).collect());
            assert_eq!(median.rate, want, "{rates:?}");
            assert_eq!(median.rounds.as_deref(), spread, "{rates:?}");
        }
    }
}

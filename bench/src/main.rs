//! `consume-bench`: consume throughput from a local rocketmq-rust cluster, in one run, of
//!
//! * (a) our `PushConsumer` with a no-op native listener (`consume_message_batch_max_size` 1, the
//!   default, and 32),
//! * (b) a `rocketmq-client-rust` 1.0.0 `DefaultMQPushConsumer` with a no-op listener,
//! * (c) a raw pull loop over our `BrokerClient` (no consume service, no long poll): the ceiling
//!   our transport and the broker allow.
//!
//! The topic (8 queues) is filled once with N messages (batch sends); every run then reads all of
//! it with a fresh consumer group from the first offset. A run counts unique messages by their
//! client-side id (`UNIQ_KEY`, which a message keeps when a consumer hands it back through
//! `%RETRY%<group>`) and is timed from the consumer's start to the N-th unique message. Log events
//! at WARN and above are counted per side (ours: `rmq_wasm*`, peer: `rocketmq*`) while each run
//! lasts.
//!
//! The cluster is started here (127.0.0.1 only, removed at exit) unless `RMQ_TEST_CLUSTER_ENV`
//! names the `cluster.env` of one started by `scripts/cluster.sh start`. Build in release mode for
//! figures that mean anything: `scripts/bench.sh` (= `cargo run --release -p rmq-wasm-bench`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use rmq_wasm::client::{BrokerClient, PullStatus, QueueSelector};
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
use rmq_wasm_tests::cluster::{ATTACH_ENV, Cluster, ClusterOptions, DEFAULT_DELAY_LEVELS};
use rmq_wasm_tests::support::{Clients, unique};
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
    TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere as PeerFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt as PeerMessageExt;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Parser)]
#[command(
    about = "Consume throughput: our push consumer vs rocketmq-client-rust vs a raw pull loop"
)]
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
    /// Which runs, in this order: ours (batch 1), ours32 (batch 32), peer, raw.
    #[arg(long, value_delimiter = ',', default_value = "ours,ours32,peer,raw")]
    runs: Vec<RunKind>,
    /// Bound on each run, in seconds.
    #[arg(long, default_value_t = 300)]
    run_timeout_secs: u64,
    /// Tokio worker threads for our side (the peer gets its own runtime with as many).
    #[arg(long, default_value_t = default_workers())]
    workers: usize,
    /// Log filter of the broker and name server when the bench starts its own cluster.
    #[arg(long, default_value = "warn")]
    cluster_log: String,
    /// Give the bench's own cluster the stock delay levels (1s 5s 10s 30s …) instead of the test
    /// cluster's 1 s per level; slows down anything a consumer hands back for retry.
    #[arg(long)]
    stock_delay_levels: bool,
}

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
}

impl RunKind {
    fn label(self) -> &'static str {
        match self {
            Self::Ours => "(a)  ours, batch 1",
            Self::Ours32 => "(a') ours, batch 32",
            Self::Peer => "(b)  rocketmq-client-rust",
            Self::Raw => "(c)  raw pull loop",
        }
    }
}

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

    let mut cluster = match std::env::var_os(ATTACH_ENV) {
        Some(path) if !path.is_empty() => {
            eprintln!("attaching to the cluster of {}", Path::new(&path).display());
            Cluster::attach(Path::new(&path))?
        }
        _ => {
            eprintln!("starting a local cluster (set {ATTACH_ENV} to reuse a running one)…");
            let mut opts = ClusterOptions {
                log_filter: args.cluster_log.clone(),
                ..ClusterOptions::default()
            };
            if args.stock_delay_levels {
                opts.message_delay_level = DEFAULT_DELAY_LEVELS.to_owned();
            }
            eprintln!("broker delay levels: {}", opts.message_delay_level);
            Cluster::start(opts)?
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    // The peer client only runs on a runtime its application owns (it never uses the ambient
    // one); give it as many workers as ours.
    let peer_runtime = if args.runs.contains(&RunKind::Peer) {
        Some(
            RuntimeOwner::plan(RuntimeConfig::for_parallelism("rmq-bench-peer", args.workers))
                .map_err(|e| anyhow::anyhow!("peer runtime config: {e:?}"))?
                .build()
                .map_err(|e| anyhow::anyhow!("peer runtime: {e}"))?,
        )
    } else {
        None
    };
    let result = runtime.block_on(bench(&args, &cluster, peer_runtime.as_ref(), &logs));
    if let Some(owner) = peer_runtime {
        owner.shutdown_background();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    cluster.stop()?;
    result
}

async fn bench(
    args: &Args,
    cluster: &Cluster,
    peer_runtime: Option<&RuntimeOwner>,
    logs: &Arc<LogCounts>,
) -> Result<()> {
    let clients = Arc::new(Clients::new(cluster));
    let topic = unique("bench");
    let route = clients.create_topic(cluster, &topic, args.queues).await?;
    let queues = route.subscribe_queues(&topic);
    ensure!(queues.len() == args.queues as usize, "route has {} queues", queues.len());
    println!(
        "consume-bench: {} messages × {} B in {} queues, topic {topic}, name server {}",
        args.messages, args.body_size, args.queues, cluster.namesrv_addr
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

    let timeout = Duration::from_secs(args.run_timeout_secs);
    let mut results: BTreeMap<RunKind, Outcome> = BTreeMap::new();
    for &kind in &args.runs {
        let tally = Arc::new(Tally::new(Arc::clone(&ids)));
        let logs_before = logs.snapshot();
        let cpu_before = CpuTimes::read(cluster);
        let started = Instant::now();
        let run = match kind {
            RunKind::Ours => run_ours(cluster, &topic, &tally, 1, timeout).await,
            RunKind::Ours32 => run_ours(cluster, &topic, &tally, 32, timeout).await,
            RunKind::Peer => {
                let owner = peer_runtime.context("no peer runtime")?;
                run_peer(owner, cluster, &topic, &tally, timeout).await
            }
            RunKind::Raw => run_raw(cluster, &queues, &per_queue, &tally, timeout).await,
        };
        let logs_during = logs.snapshot().since(&logs_before);
        let cpu = CpuTimes::read(cluster).since(&cpu_before);
        let mut outcome = match run {
            Ok(notes) => Outcome::done(&tally, started, notes, logs_during),
            Err(e) => Outcome::failed(&tally, started, format!("{e:#}"), logs_during),
        };
        outcome.cpu = cpu;
        outcome.print(kind);
        results.insert(kind, outcome);
    }

    println!();
    let rate = |k| results.get(&k).and_then(|o: &Outcome| o.rate);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_owned(),
    };
    println!(
        "a/b  = {}  (target ≥ 5)   [a' /b = {}]",
        ratio(rate(RunKind::Ours), rate(RunKind::Peer)),
        ratio(rate(RunKind::Ours32), rate(RunKind::Peer))
    );
    println!(
        "a/c  = {}  (target ≥ 0.9) [a' /c = {}]",
        ratio(rate(RunKind::Ours), rate(RunKind::Raw)),
        ratio(rate(RunKind::Ours32), rate(RunKind::Raw))
    );
    let samples = logs.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
                let msgs = (0..size).map(|_| Message::new(&q.topic, body.clone())).collect();
                let result = clients
                    .producer
                    .send_batch(msgs, QueueSelector::Queue(&q))
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

/// Every queue holds exactly its share (the counting below relies on offsets 0..count).
async fn check_filled(
    clients: &Clients,
    cluster: &Cluster,
    queues: &[MessageQueue],
    per_queue: &[u64],
) -> Result<()> {
    for q in queues {
        let header = GetMaxOffsetRequestHeader {
            topic: q.topic.clone(),
            queue_id: q.queue_id,
            committed: Some(true),
            bname: Some(q.broker_name.clone()),
        };
        let max = clients
            .broker
            .max_offset(&cluster.broker_addr, &header, Duration::from_secs(5))
            .await?;
        let want = per_queue[q.queue_id.0 as usize];
        ensure!(max.0 as u64 == want, "{q} holds {} messages, expected {want}", max.0);
    }
    Ok(())
}

/// Unique-message counter shared by every run: a read-only id → index map and one bit per
/// message, lock-free. Ids that are not ours (none expected) are ignored.
struct Tally {
    ids: Arc<HashMap<String, usize>>,
    target: u64,
    bits: Vec<AtomicU64>,
    unique: AtomicU64,
    deliveries: AtomicU64,
    first_at: OnceLock<Instant>,
    done_at: OnceLock<Instant>,
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
            let _ = self.done_at.set(Instant::now());
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

/// A no-op native listener: records each message, accepts the batch.
struct NoopListener(Arc<Tally>);

impl MessageListener for NoopListener {
    fn consume<'a>(
        &'a self,
        _ctx: &'a ConsumeContext,
        messages: &'a [MessageExt],
    ) -> ListenerFuture<'a> {
        for m in messages {
            self.0.record(m.uniq_key());
        }
        Box::pin(std::future::ready(Ok(vec![MessageOutcome::Success; messages.len()])))
    }
}

async fn run_ours(
    cluster: &Cluster,
    topic: &str,
    tally: &Arc<Tally>,
    batch: u32,
    timeout: Duration,
) -> Result<String> {
    let mut config = ConsumerConfig::new(unique("bench_ours")).subscribe(Subscription::all(topic));
    config.instance_name = unique("bench_ours");
    config.consume_from_where = ConsumeFromWhere::FirstOffset;
    config.consume_message_batch_max_size = batch;
    let consumer = PushConsumer::start(
        config,
        vec![cluster.namesrv_addr.clone()],
        Arc::new(NoopListener(Arc::clone(tally))),
    )
    .await?;
    let waited = tally.wait(timeout).await;
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
    Ok(format!(
        "pulls {pulls} ({:.1} msgs/pull, avg RT {:.2} ms), pull errors {errors}, flow-control pauses \
         {pauses}, max cached/queue {high}, listener time {:.0} ms",
        pulled as f64 / pulls.max(1) as f64,
        pull_rt.as_secs_f64() * 1e3 / pulls.max(1) as f64,
        consume_rt.as_secs_f64() * 1e3,
    ))
}

/// The peer's no-op listener.
struct PeerListener(Arc<Tally>);

impl MessageListenerConcurrently for PeerListener {
    fn consume_message(
        &self,
        msgs: &[&PeerMessageExt],
        _ctx: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            self.0.record(m.properties().get("UNIQ_KEY").map(|v| v.as_str()));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

async fn run_peer(
    owner: &RuntimeOwner,
    cluster: &Cluster,
    topic: &str,
    tally: &Arc<Tally>,
    timeout: Duration,
) -> Result<String> {
    let client_runtime = ClientRuntime::try_new(
        owner.root_context().component("bench-peer"),
        ClientRuntimeConfig { shutdown_timeout: Duration::from_secs(10), ..Default::default() },
        TelemetryHandle::noop(),
    )
    .map_err(|e| anyhow::anyhow!("peer client runtime: {e}"))?;
    // Loopback client IP (its default is the first non-loopback interface address) and an
    // instance name of its own: a distinct client id, nothing but 127.0.0.1 in it.
    let mut client_config = ClientConfig::new();
    client_config.namesrv_addr = Some(cluster.namesrv_addr.clone().into());
    client_config.client_ip = Some("127.0.0.1".into());
    client_config.instance_name = unique("bench_peer").into();
    let mut consumer = DefaultMQPushConsumer::builder(Arc::clone(&client_runtime))
        .client_config(client_config)
        .consumer_group(unique("bench_peer"))
        .consume_from_where(PeerFromWhere::ConsumeFromFirstOffset)
        .build();
    consumer.subscribe(topic, "*").await.map_err(|e| anyhow::anyhow!("peer subscribe: {e}"))?;
    consumer.register_message_listener_concurrently(PeerListener(Arc::clone(tally)));
    tokio::time::timeout(Duration::from_secs(30), consumer.start())
        .await
        .context("peer start took over 30 s")?
        .map_err(|e| anyhow::anyhow!("peer start: {e}"))?;
    let waited = tally.wait(timeout).await;
    tokio::time::timeout(Duration::from_secs(30), consumer.shutdown())
        .await
        .context("peer shutdown took over 30 s")?;
    let report = client_runtime.shutdown().await;
    waited?;
    Ok(if report.is_healthy() {
        String::new()
    } else {
        format!("client runtime shutdown unhealthy: {}", report.to_json())
    })
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

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    /// Unique messages per second, start to last message; `None` if the run failed.
    rate: Option<f64>,
    total: Duration,
    first_message: Option<Duration>,
    unique: u64,
    deliveries: u64,
    notes: String,
    logs: LogSnapshot,
    /// CPU used during the run (including start-up and shutdown) by this process and the broker.
    cpu: CpuTimes,
}

impl Outcome {
    fn done(tally: &Tally, started: Instant, notes: String, logs: LogSnapshot) -> Self {
        let total = tally.done_at.get().map_or_else(|| started.elapsed(), |t| *t - started);
        Self {
            rate: Some(tally.target as f64 / total.as_secs_f64()),
            total,
            first_message: tally.first_at.get().map(|t| *t - started),
            unique: tally.unique.load(Ordering::Relaxed),
            deliveries: tally.deliveries.load(Ordering::Relaxed),
            notes,
            logs,
            cpu: CpuTimes::default(),
        }
    }

    fn failed(tally: &Tally, started: Instant, error: String, logs: LogSnapshot) -> Self {
        Self {
            rate: None,
            total: started.elapsed(),
            first_message: tally.first_at.get().map(|t| *t - started),
            unique: tally.unique.load(Ordering::Relaxed),
            deliveries: tally.deliveries.load(Ordering::Relaxed),
            notes: format!("FAILED: {error}"),
            logs,
            cpu: CpuTimes::default(),
        }
    }

    fn print(&self, kind: RunKind) {
        let mut line = format!("{:<27}", kind.label());
        match self.rate {
            Some(rate) => {
                let _ = write!(line, "{rate:>9.0} msgs/s");
            }
            None => line.push_str("   failed     "),
        }
        // From the first message on: the pipeline's rate without the start-up.
        let steady = match (self.rate, self.first_message) {
            (Some(_), Some(first)) if self.total > first => {
                format!("{:.0}", self.unique as f64 / (self.total - first).as_secs_f64())
            }
            _ => "-".to_owned(),
        };
        let _ = write!(
            line,
            "  {:>6.2} s total, first message after {:>5} ms (then {steady} msgs/s), {} unique / \
             {} deliveries, WARN+ logs ours {} / peer {} / other {} (ERROR ours {} / peer {})",
            self.total.as_secs_f64(),
            self.first_message.map_or_else(|| "-".to_owned(), |d| d.as_millis().to_string()),
            self.unique,
            self.deliveries,
            self.logs.ours_warn + self.logs.ours_error,
            self.logs.peer_warn + self.logs.peer_error,
            self.logs.other,
            self.logs.ours_error,
            self.logs.peer_error,
        );
        println!("{line}");
        if let (Some(ours), Some(broker)) = (self.cpu.ours, self.cpu.broker) {
            println!(
                "{:<27}  CPU during the run: this process {:.0} ms ({:.1} µs/msg), broker {:.0} ms \
                 ({:.1} µs/msg)",
                "",
                ours.as_secs_f64() * 1e3,
                ours.as_secs_f64() * 1e6 / self.unique.max(1) as f64,
                broker.as_secs_f64() * 1e3,
                broker.as_secs_f64() * 1e6 / self.unique.max(1) as f64,
            );
        }
        if !self.notes.is_empty() {
            println!("{:<27}  {}", "", self.notes);
        }
    }
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
        let mut samples = self.0.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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

/// User + system CPU time of this process and of the broker (Linux `/proc`; `None` elsewhere).
#[derive(Debug, Default, Clone, Copy)]
struct CpuTimes {
    ours: Option<Duration>,
    broker: Option<Duration>,
}

impl CpuTimes {
    fn read(cluster: &Cluster) -> Self {
        Self { ours: process_cpu(std::process::id()), broker: process_cpu(cluster.broker_pid()) }
    }

    fn since(&self, before: &Self) -> Self {
        let diff = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        Self { ours: diff(self.ours, before.ours), broker: diff(self.broker, before.broker) }
    }
}

/// utime + stime of `pid` from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64))
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

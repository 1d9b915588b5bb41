//! `host-bench`: what a consuming host costs besides throughput (`consume-bench` has that), on a
//! local RocketMQ cluster (Apache RocketMQ 5.3 unless `RMQ_CLUSTER_FLAVOUR` says otherwise; or
//! the one `RMQ_TEST_CLUSTER_ENV` names), each figure beside the native no-op listener's:
//!
//! * `latency`: produce → listener time at a steady rate, our push consumer with the Wasm
//!   filter (fresh instance per call) and with the native no-op listener, in one process with
//!   one clock; percentiles and a histogram.
//! * `memory`: resident memory of a host process with one listener owning 16 queues, idle and
//!   at full load, per listener (native, Rust, Python, JavaScript plugins).
//! * `scale-out`: three host processes in one group on a 12-queue topic: messages per host, and
//!   from the CPU per message of host and broker, how many hosts a broker of N cores feeds.
//! * `all`: the three against one cluster.
//!
//! Hosts of `memory` and `scale-out` are child processes of this program (`child.rs`) running
//! the library `rmq-wasm run` is built on, so that /proc's figures are theirs alone. Build in
//! release mode: `scripts/bench.sh` does.

mod child;
mod latency;
mod memory;
mod scale;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use rmq_wasm::protocol::MessageQueue;
use rmq_wasm::protocol::message::Message;
use rmq_wasm_bench::fill::send_batch_when_not_busy;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::support::Clients;

#[derive(Debug, Parser)]
#[command(about = "Latency, memory and scale-out of our consuming host, beside a native no-op \
             listener, on a local RocketMQ cluster")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// Plugins directory (`scripts/build-plugins.sh`); default `<workspace>/target/plugins`.
    #[arg(long, global = true)]
    plugins: Option<PathBuf>,
    /// Log filter of a rocketmq-rust cluster's servers when this program starts its own.
    #[arg(long, global = true, default_value = "warn")]
    cluster_log: String,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Latency, memory and scale-out, in that order, on one cluster.
    All {
        #[command(flatten)]
        latency: latency::LatencyArgs,
        #[command(flatten)]
        memory: memory::MemoryArgs,
        #[command(flatten)]
        scale: scale::ScaleArgs,
    },
    /// Produce → listener latency at a steady rate.
    Latency(latency::LatencyArgs),
    /// Host RSS idle and at full load, per listener.
    Memory(memory::MemoryArgs),
    /// Three hosts in one group: the split, and hosts per broker.
    ScaleOut(scale::ScaleArgs),
    /// (internal) One consuming host; see `child.rs`.
    #[command(hide = true)]
    Child(child::ChildArgs),
}

#[global_allocator]
static ALLOC: rmq_wasm::Allocator = rmq_wasm::Allocator;

fn main() -> Result<()> {
    let args = Args::parse();
    if let Mode::Child(child) = &args.mode {
        return child::run_child(child);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .init();
    let plugins = args
        .plugins
        .clone()
        .unwrap_or_else(|| rmq_wasm_tests::wasm::workspace_root().join("target/plugins"));
    let mut cluster = rmq_wasm_bench::cluster::start_or_attach(&args.cluster_log, false)?;
    println!(
        "host-bench: cluster {} (name server {}), {} cores",
        cluster.flavour,
        cluster.namesrv_addr,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        let env = Env { clients: Arc::new(Clients::new(&cluster)), cluster: &cluster, plugins };
        match &args.mode {
            Mode::All { latency, memory, scale } => {
                latency::run(&env, latency).await?;
                memory::run(&env, memory).await?;
                scale::run(&env, scale).await
            }
            Mode::Latency(a) => latency::run(&env, a).await,
            Mode::Memory(a) => memory::run(&env, a).await,
            Mode::ScaleOut(a) => scale::run(&env, a).await,
            Mode::Child(_) => unreachable!("handled above"),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    cluster.stop()?;
    result
}

/// What every mode works with.
struct Env<'a> {
    cluster: &'a Cluster,
    clients: Arc<Clients>,
    plugins: PathBuf,
}

impl Env<'_> {
    /// A new topic of `queues` queues, its route awaited.
    async fn topic(&self, prefix: &str, queues: i32) -> Result<(String, Vec<MessageQueue>)> {
        let topic = rmq_wasm_tests::support::unique(prefix);
        let route = self.clients.create_topic(self.cluster, &topic, queues).await?;
        let mqs = route.subscribe_queues(&topic);
        ensure!(mqs.len() == queues as usize, "{topic}: route has {} queues", mqs.len());
        Ok((topic, mqs))
    }

    /// Sends `n` messages with `body` evenly over `queues`, in batches of 64, the queues
    /// concurrently; returns how long it took.
    async fn fill(&self, queues: &[MessageQueue], n: u64, body: &[u8]) -> Result<Duration> {
        let started = Instant::now();
        let body = Bytes::copy_from_slice(body);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, q) in queues.iter().enumerate() {
            let count = n / queues.len() as u64 + u64::from((i as u64) < n % queues.len() as u64);
            let (clients, q, body) = (Arc::clone(&self.clients), q.clone(), body.clone());
            tasks.spawn(async move {
                let mut sent = 0;
                while sent < count {
                    let size = 64.min(count - sent);
                    let make = || (0..size).map(|_| Message::new(&q.topic, body.clone())).collect();
                    send_batch_when_not_busy(&clients.producer, &q, make)
                        .await
                        .with_context(|| format!("batch send to {q}"))?;
                    sent += size;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(started.elapsed())
    }

    /// CPU time of every broker process.
    fn broker_cpu(&self) -> Option<Duration> {
        self.cluster.brokers().iter().map(|b| rmq_wasm_bench::procfs::process_cpu(b.pid())).sum()
    }
}

//! Resident memory of a host process (`VmRSS`, `VmHWM` from /proc) with one listener owning 16
//! queues: idle (every queue owned, its long polls held, nothing to consume) and at full load
//! (N messages consumed as fast as the host can), per listener: the native no-op beside the
//! Rust, Python and JavaScript plugins, a fresh instance per call each.

use std::time::{Duration, Instant};

use anyhow::Result;
use rmq_wasm_bench::listeners::{self, Kind};
use rmq_wasm_bench::procfs::{Rss, mib};
use rmq_wasm_tests::support::unique;

use crate::Env;
use crate::child::{ChildArgs, Host};

/// #15's targets for the Rust plugin.
const IDLE_TARGET: u64 = 64 << 20;
const LOAD_TARGET: u64 = 256 << 20;

#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// Messages consumed at full load, per listener.
    #[arg(long, default_value_t = 50_000)]
    memory_messages: u64,
    /// Queues the listener owns.
    #[arg(long, default_value_t = 16)]
    memory_queues: i32,
    /// Seconds idle before the idle figure is read.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Which listeners, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "native,filter,python,javascript"
    )]
    memory_listeners: Vec<Kind>,
}

/// One listener's figures.
struct Row {
    kind: Kind,
    idle: Rss,
    /// The highest `VmRSS` sampled while consuming (every 20 ms).
    load: u64,
    /// `VmHWM` at the end: the peak over the process's life, start-up (plugin compile or artifact
    /// load) included.
    peak: u64,
    rate: f64,
}

pub async fn run(env: &Env<'_>, args: &MemoryArgs) -> Result<()> {
    println!(
        "\n== memory: one host process, one listener owning {} queues; idle {} s, then {} × 1 KiB \
         messages",
        args.memory_queues, args.idle_seconds, args.memory_messages
    );
    let mut rows = Vec::new();
    for &kind in &args.memory_listeners {
        let row = measure(env, args, kind).await?;
        println!(
            "{:<22} idle {:>10}  full load {:>10}  VmHWM {:>10}  ({:.0} msgs/s)",
            kind.label(),
            mib(row.idle.now),
            mib(row.load),
            mib(row.peak),
            row.rate
        );
        rows.push(row);
    }
    if let Some(native) = rows.iter().find(|r| r.kind == Kind::Native) {
        for r in rows.iter().filter(|r| r.kind != Kind::Native) {
            println!(
                "{:<22} over native: idle +{}, full load +{}",
                r.kind.label(),
                mib(r.idle.now.saturating_sub(native.idle.now)),
                mib(r.load.saturating_sub(native.load)),
            );
        }
    }
    if let Some(rust) = rows.iter().find(|r| r.kind == Kind::Filter) {
        let verdict = |v: u64, t: u64| if v <= t { "met" } else { "NOT met" };
        println!(
            "Rust plugin: idle {} (target ≤ {}: {}), full load {} (target ≤ {}: {})",
            mib(rust.idle.now),
            mib(IDLE_TARGET),
            verdict(rust.idle.now, IDLE_TARGET),
            mib(rust.load),
            mib(LOAD_TARGET),
            verdict(rust.load, LOAD_TARGET),
        );
    }
    Ok(())
}

async fn measure(env: &Env<'_>, args: &MemoryArgs, kind: Kind) -> Result<Row> {
    let (topic, queues) = env.topic("bench_memory", args.memory_queues).await?;
    let group = unique("bench_memory");
    let mut child_args =
        ChildArgs::new(&env.cluster.namesrv_addr, &topic, &group, kind, env.plugins.clone());
    if kind.routes() {
        let (out, _) = env.topic("bench_memory_out", 4).await?;
        child_args = child_args.with_out(&out);
    }
    let mut host = Host::start(kind.label(), &child_args)?;
    let owned = queues.len();
    host.wait_until("every queue owned", Duration::from_secs(120), |r| r.owned >= owned).await?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle = host.rss().ok_or_else(|| anyhow::anyhow!("no /proc status for the host"))?;

    // Fill while sampling; the host consumes as the messages arrive.
    let sampling = tokio::sync::watch::channel(false);
    let pid = host.pid();
    let sampler = tokio::spawn({
        let mut stop = sampling.1.clone();
        async move {
            let mut max = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = tick.tick() => max = max.max(Rss::read(pid).map_or(0, |r| r.now)),
                    _ = stop.changed() => return max,
                }
            }
        }
    });
    let started = Instant::now();
    env.fill(&queues, args.memory_messages, &listeners::body(1024)).await?;
    let n = args.memory_messages;
    host.wait_until("every message consumed", Duration::from_secs(600), |r| r.accepted >= n)
        .await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = sampling.0.send(true);
    let load = sampler.await?;
    let peak = host.rss().map_or(0, |r| r.peak);
    host.stop().await?;
    Ok(Row { kind, idle, load, peak, rate })
}

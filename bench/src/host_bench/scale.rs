//! Scale-out: three host processes in one group (PULL, the Wasm filter, a fresh instance per
//! call) on a 12-queue topic. Once the rebalance gave each its 4 queues, N messages are sent;
//! the hosts consume them as they arrive. Printed: messages per host and their spread, then the
//! CPU per message of the hosts and of the broker (which also stored the messages: a broker
//! serves the producers of what it delivers), and from those, on paper, how many hosts a broker
//! of N cores feeds.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use rmq_wasm_bench::listeners::{self, Kind};
use rmq_wasm_tests::support::unique;

use crate::Env;
use crate::child::{ChildArgs, Host};

/// #15's bound on the spread of messages per host, relative to the mean.
const SPREAD_TARGET: f64 = 0.10;

#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    /// Messages sent while the hosts consume.
    #[arg(long, default_value_t = 300_000)]
    scale_messages: u64,
    /// Host processes in the group.
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// Queues of the topic.
    #[arg(long, default_value_t = 12)]
    scale_queues: i32,
    /// The hosts' listener.
    #[arg(long, value_enum, default_value = "filter")]
    scale_listener: Kind,
}

pub async fn run(env: &Env<'_>, args: &ScaleArgs) -> Result<()> {
    ensure!(args.hosts > 0, "--hosts must be positive");
    let (topic, queues) = env.topic("bench_scale", args.scale_queues).await?;
    let group = unique("bench_scale");
    println!(
        "\n== scale-out: {} host processes in one group (PULL, {}, batch 32), {} queues, {} × 1 KiB \
         messages sent while they consume",
        args.hosts,
        args.scale_listener.label(),
        queues.len(),
        args.scale_messages
    );
    let child_args = ChildArgs::new(
        &env.cluster.namesrv_addr,
        &topic,
        &group,
        args.scale_listener,
        env.plugins.clone(),
    );
    let hosts = (0..args.hosts)
        .map(|i| Host::start(&format!("host {}", i + 1), &child_args))
        .collect::<Result<Vec<_>>>()?;
    // The split settles when every host owns its share and together they own every queue.
    let share = queues.len() / args.hosts;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let owned: Vec<usize> = hosts.iter().map(|h| h.report().owned).collect();
        if owned.iter().sum::<usize>() == queues.len() && owned.iter().all(|o| *o >= share) {
            println!("rebalanced: queues per host {owned:?}");
            break;
        }
        ensure!(Instant::now() < deadline, "no even split of the queues within 120 s: {owned:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cpu_before: Vec<_> = hosts.iter().map(Host::cpu).collect();
    let broker_before = env.broker_cpu();
    let started = Instant::now();
    let fill_time = env.fill(&queues, args.scale_messages, &listeners::body(1024)).await?;
    let n = args.scale_messages;
    let deadline = Instant::now() + Duration::from_secs(600);
    while hosts.iter().map(|h| h.report().accepted).sum::<u64>() < n {
        ensure!(Instant::now() < deadline, "the hosts did not consume {n} messages in 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let host_cpu: Option<Duration> =
        hosts.iter().zip(&cpu_before).map(|(h, before)| Some(h.cpu()? - (*before)?)).sum();
    let broker_cpu = env.broker_cpu().zip(broker_before).map(|(a, b)| a - b);
    let counts: Vec<u64> = hosts.iter().map(|h| h.report().accepted).collect();
    for h in hosts {
        h.stop().await?;
    }

    let total: u64 = counts.iter().sum();
    let mean = total as f64 / counts.len() as f64;
    let (min, max) =
        (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    let spread = (max - min) as f64 / mean;
    println!(
        "messages per host {counts:?} ({total} accepted, {} duplicates); spread (max − min) / mean \
         {:.1} % (target ≤ {:.0} %: {})",
        total.saturating_sub(n),
        spread * 100.0,
        SPREAD_TARGET * 100.0,
        if spread <= SPREAD_TARGET { "met" } else { "NOT met" }
    );
    println!(
        "sent in {:.2} s, all consumed after {:.2} s ({:.0} msgs/s)",
        fill_time.as_secs_f64(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    let per_msg = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    if let (Some(host_cpu), Some(broker_cpu)) = (host_cpu, broker_cpu) {
        let (h, b) = (per_msg(host_cpu), per_msg(broker_cpu));
        println!(
            "CPU per message: hosts {h:.1} µs (together), broker {b:.1} µs (store + deliver); one \
             broker core feeds {:.2} host cores",
            h / b
        );
        println!("on paper (CPU-bound, every core busy, no other load):");
        for cores in [4u32, 8, 16, 32] {
            let rate = f64::from(cores) * 1e6 / b;
            println!(
                "  broker of {cores:>2} cores: {rate:>9.0} msgs/s, feeds {:>5.1} hosts of 2 cores \
                 ({:.1} of 4)",
                rate * h / 1e6 / 2.0,
                rate * h / 1e6 / 4.0,
            );
        }
    }
    Ok(())
}

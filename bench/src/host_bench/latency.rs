//! Produce → listener latency at a steady rate: one topic, two groups consuming it in this
//! process — our push consumer with the Wasm filter (a fresh instance per call) and with the
//! native no-op listener — so both see the same messages, the same broker and the same clock.
//! Each message carries its send time (`BENCH_SENT_US`, this process's wall clock, taken just
//! before the send); a listener records now − that when it accepted the message. What it
//! includes: the send's round trip, the broker's store and consume-queue dispatch, the wake-up
//! of the consumer's held long poll, the pull's answer, the hand-over to the consume service and
//! the listener call.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};
use rmq_wasm::consumer::config::RequestMode;
use rmq_wasm::consumer::listener::MessageListener;
use rmq_wasm::consumer::{ConsumerConfig, PushConsumer, Subscription};
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm::wasm::{EngineConfig, SandboxEngine};
use rmq_wasm_bench::latencies::Latencies;
use rmq_wasm_bench::listeners::{self, Counting, Kind};
use rmq_wasm_tests::support::unique;

use crate::Env;

/// The send time a message carries, µs since the Unix epoch.
const SENT_PROPERTY: &str = "BENCH_SENT_US";
/// The p99 target (#15).
const P99_TARGET: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Messages per second, sent one by one at even intervals.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of measured sending.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds of unmeasured sending first (the broker's JIT, the first pool slots).
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Queues of the latency topic.
    #[arg(long, default_value_t = 8)]
    latency_queues: i32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    latency_body: usize,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Latencies of the messages sent after the warm-up.
#[derive(Default)]
struct Recorder {
    measured_from_us: std::sync::atomic::AtomicU64,
    samples: Mutex<Latencies>,
}

impl Recorder {
    fn record(&self, m: &MessageExt) {
        let now = now_us();
        let Some(sent) = m.property(SENT_PROPERTY).and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        let from = self.measured_from_us.load(std::sync::atomic::Ordering::Relaxed);
        if from != 0 && sent >= from {
            let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
            samples.push(Duration::from_micros(now.saturating_sub(sent)));
        }
    }
}

pub async fn run(env: &Env<'_>, args: &LatencyArgs) -> Result<()> {
    ensure!(args.rate > 0, "--rate must be positive");
    let (topic, queues) = env.topic("bench_latency", args.latency_queues).await?;
    println!(
        "\n== latency: {} msgs/s for {} s (after {} s unmeasured) × {} B, topic {topic} ({} queues)",
        args.rate,
        args.seconds,
        args.warmup_seconds,
        args.latency_body,
        queues.len()
    );
    let engine = SandboxEngine::new(EngineConfig::default())?;
    let mut consumers = Vec::new();
    let mut recorders = Vec::new();
    for kind in [Kind::Filter, Kind::Native] {
        let recorder = Arc::new(Recorder::default());
        let group = unique("bench_latency");
        let on = Arc::clone(&recorder);
        let listener = Counting::load(
            kind,
            Some(&engine),
            &env.plugins,
            &group,
            None,
            Box::new(move |m| on.record(m)),
        )
        .await?;
        let mut config = ConsumerConfig::new(&group).subscribe(Subscription::all(&topic));
        config.instance_name = group.clone();
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        config.consume_message_batch_max_size = 32;
        config.request_mode = RequestMode::Pull;
        let consumer = PushConsumer::start(
            config,
            vec![env.cluster.namesrv_addr.clone()],
            listener as Arc<dyn MessageListener>,
        )
        .await?;
        consumers.push((kind, consumer));
        recorders.push(recorder);
    }
    // Both own every queue (each is its group's only member) before the first send.
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumers
        .iter()
        .any(|(_, c)| c.stats().queues.keys().filter(|q| q.topic == topic).count() < queues.len())
    {
        ensure!(Instant::now() < deadline, "the consumers did not own every queue in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = bytes::Bytes::from(listeners::body(args.latency_body));
    let interval = Duration::from_secs(1) / args.rate;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let warmup = u64::from(args.rate) * args.warmup_seconds;
    let total = warmup + u64::from(args.rate) * args.seconds;
    let mut sends = Latencies::default();
    let mut send_errors = 0u64;
    // Each send is a task of its own, so that a slow round trip does not lower the rate.
    let mut in_flight = tokio::task::JoinSet::new();
    let mut settle = |done: Result<(bool, Result<Duration, _>), tokio::task::JoinError>| match done
    {
        Ok((measured, Ok(rtt))) => {
            if measured {
                sends.push(rtt);
            }
        }
        _ => send_errors += 1,
    };
    let started = Instant::now();
    let mut measured_started = started;
    for i in 0..total {
        tick.tick().await;
        while let Some(done) = in_flight.try_join_next() {
            settle(done);
        }
        let sent = now_us();
        if i == warmup {
            for r in &recorders {
                r.measured_from_us.store(sent, std::sync::atomic::Ordering::Relaxed);
            }
            measured_started = Instant::now();
        }
        let msg = Message::new(&topic, body.clone()).with_property(SENT_PROPERTY, sent.to_string());
        let clients = Arc::clone(&env.clients);
        in_flight.spawn(async move {
            let t = Instant::now();
            let result = clients.producer.send(msg).await.map(|_| t.elapsed());
            (i >= warmup, result)
        });
    }
    while let Some(done) = in_flight.join_next().await {
        settle(done);
    }
    let sending = measured_started.elapsed();
    let measured = total - warmup;
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorders.iter().any(|r| {
        (r.samples.lock().unwrap_or_else(PoisonError::into_inner).len() as u64)
            < measured - send_errors
    }) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, c) in consumers.drain(..) {
        c.shutdown().await;
    }

    println!(
        "sent {measured} measured messages in {:.2} s ({:.0} msgs/s), {send_errors} send errors",
        sending.as_secs_f64(),
        measured as f64 / sending.as_secs_f64()
    );
    println!("{:<24} {}", "send round trip", sends.summary());
    let mut results: Vec<Latencies> = recorders
        .iter()
        .map(|r| r.samples.lock().unwrap_or_else(PoisonError::into_inner).clone())
        .collect();
    for (kind, samples) in [Kind::Filter, Kind::Native].iter().zip(&mut results) {
        println!(
            "{:<24} {}   ({} of {measured} received)",
            format!("{} →", kind.label()),
            samples.summary(),
            samples.len()
        );
    }
    let (wasm, native) = (&results[0], &results[1]);
    wasm.print_histogram(Kind::Filter.label(), Some((Kind::Native.label(), native)));
    let p99 = results[0].quantile(0.99);
    let native_p99 = results[1].quantile(0.99);
    println!(
        "latency p99: Wasm {} (target ≤ {} ms: {}), native {}",
        fmt_ms(p99),
        P99_TARGET.as_millis(),
        if p99.is_some_and(|p| p <= P99_TARGET) { "met" } else { "NOT met" },
        fmt_ms(native_p99),
    );
    ensure!(
        results.iter().all(|r| r.len() as u64 + send_errors >= measured),
        "a consumer did not receive every measured message within 30 s of the last send"
    );
    Ok(())
}

fn fmt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
}

//! A consuming host as a process of its own, so that its memory and CPU are its own: the same
//! library `rmq-wasm run` is built on (`PushConsumer` + `WasmListener`, the engine sized as
//! `run` sizes it), one listener, one group. Both sides of the protocol are here: the child
//! (`host-bench child …`) prints `STAT <owned queues> <accepted messages>` every 100 ms and shuts
//! down gracefully when its stdin closes; [`Host`] is the parent's handle.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rmq_wasm::client::{BrokerClient, NameServerClient, Producer, ProducerConfig};
use rmq_wasm::consumer::config::RequestMode;
use rmq_wasm::consumer::listener::MessageListener;
use rmq_wasm::consumer::{ConsumerConfig, PushConsumer, Subscription};
use rmq_wasm::protocol::body::ConsumeFromWhere;
use rmq_wasm::remoting::ConnectionPool;
use rmq_wasm::wasm::{EngineConfig, SandboxEngine};
use rmq_wasm_bench::listeners::{Counting, Kind};
use rmq_wasm_bench::procfs::{Rss, process_cpu};

/// How often the child reports.
const REPORT_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    #[arg(long)]
    namesrv: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long, value_enum)]
    listener: Kind,
    #[arg(long)]
    plugins: PathBuf,
    /// Where the routers send their copies.
    #[arg(long)]
    out: Option<String>,
    #[arg(long, default_value_t = 32)]
    batch: u32,
}

/// The child's body: consume until stdin closes.
pub fn run_child(args: &ChildArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // As `rmq-wasm run` sizes the engine for one listener: the default pool (64 slots, at
        // least the listener's 20).
        let engine = match args.listener {
            Kind::Native => None,
            _ => Some(SandboxEngine::new(EngineConfig::default())?),
        };
        let pool = ConnectionPool::default();
        let routing = match (&args.out, args.listener.routes()) {
            (Some(out), true) => {
                let namesrv = NameServerClient::new(pool.clone(), vec![args.namesrv.clone()])?;
                let producer = Producer::new(
                    namesrv,
                    BrokerClient::new(pool.clone()),
                    ProducerConfig { group: format!("{}_out", args.group), ..Default::default() },
                );
                Some((out.as_str(), producer))
            }
            _ => None,
        };
        let listener = Counting::load(
            args.listener,
            engine.as_ref(),
            &args.plugins,
            &args.group,
            routing,
            Box::new(|_| ()),
        )
        .await?;
        let mut config = ConsumerConfig::new(&args.group).subscribe(Subscription::all(&args.topic));
        config.instance_name = format!("{}_{}", args.group, std::process::id());
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        config.consume_message_batch_max_size = args.batch;
        config.request_mode = RequestMode::Pull;
        let consumer = PushConsumer::start(
            config,
            vec![args.namesrv.clone()],
            Arc::clone(&listener) as Arc<dyn MessageListener>,
        )
        .await?;
        let (closed_tx, mut closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = closed_tx.send(());
        });
        let mut tick = tokio::time::interval(REPORT_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let owned =
                        consumer.stats().queues.keys().filter(|q| q.topic == args.topic).count();
                    let accepted = listener.accepted.load(std::sync::atomic::Ordering::Relaxed);
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "STAT {owned} {accepted}")?;
                    out.flush()?;
                }
                _ = &mut closed => break,
            }
        }
        tokio::time::timeout(Duration::from_secs(30), consumer.shutdown())
            .await
            .context("the consumer's shutdown took over 30 s")?;
        anyhow::Ok(())
    })
}

/// What the child reported last.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub owned: usize,
    pub accepted: u64,
}

/// The parent's handle on a child host; killed on drop unless it ended.
pub struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    report: Arc<Mutex<Option<Report>>>,
    pub name: String,
}

impl Host {
    /// Starts `host-bench child` with `args`.
    pub fn start(name: &str, args: &ChildArgs) -> Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("child")
            .args(["--namesrv", &args.namesrv, "--topic", &args.topic, "--group", &args.group])
            .arg("--listener")
            .arg(clap::ValueEnum::to_possible_value(&args.listener).context("kind")?.get_name())
            .arg("--plugins")
            .arg(&args.plugins)
            .args(["--batch", &args.batch.to_string()]);
        if let Some(out) = &args.out {
            cmd.args(["--out", out]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a child host")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let report = Arc::new(Mutex::new(None));
        let shared = Arc::clone(&report);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(r) = parse_stat(&line) {
                    *shared.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
                }
            }
        });
        Ok(Self { stdin: child.stdin.take(), child, report, name: name.to_owned() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn report(&self) -> Report {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or_default()
    }

    pub fn rss(&self) -> Option<Rss> {
        Rss::read(self.pid())
    }

    pub fn cpu(&self) -> Option<Duration> {
        process_cpu(self.pid())
    }

    /// Waits (bounded) until `done` holds for the latest report.
    pub async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(Report) -> bool,
    ) -> Result<Report> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.report();
            if done(r) {
                return Ok(r);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) waiting for {what}", self.name);
            }
            if Instant::now() > deadline {
                bail!("{}: no {what} within {timeout:?} (last report {r:?})", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes stdin (the child shuts its consumer down gracefully), then waits for it (bounded).
    pub async fn stop(mut self) -> Result<()> {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(40);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not shut down within 40 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `STAT <owned> <accepted>`.
fn parse_stat(line: &str) -> Option<Report> {
    let mut words = line.strip_prefix("STAT ")?.split(' ');
    let owned = words.next()?.parse().ok()?;
    let accepted = words.next()?.parse().ok()?;
    words.next().is_none().then_some(Report { owned, accepted })
}

impl ChildArgs {
    pub fn new(namesrv: &str, topic: &str, group: &str, listener: Kind, plugins: PathBuf) -> Self {
        Self {
            namesrv: namesrv.to_owned(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            listener,
            plugins,
            out: None,
            batch: 32,
        }
    }

    pub fn with_out(mut self, out: &str) -> Self {
        self.out = Some(out.to_owned());
        self
    }
}

//! Apache RocketMQ's own `DefaultMQPushConsumer` as a peer, in a subprocess: the program
//! `dev.rmqwasm.PeerConsumer` of `tests/java` (built into the Java lib directory by
//! `scripts/install-java-cluster.sh`), started with the client jars of the cluster's Java
//! version (5.3 by default).
//!
//! The peer reports on stdout, one line each: `STARTED <clientId>`, `ASSIGNED <broker>:<queue>
//! ...` whenever the queues it holds change, `MSG <broker> <queue> <offset> <reconsumeTimes>
//! <startMillis> <endMillis> <keys>` per message (unless quiet), `COUNT <n>`, `STOPPED <n>`. A
//! reader thread folds them into [`PeerState`]. The peer shuts down gracefully on
//! [`JavaPeer::stop`] and exits by itself when its stdin closes, so it never outlives the test
//! process; `Drop` kills it.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;

use crate::cluster::Flavour;
use crate::cluster::flavour::java_binary;
use crate::cluster::flavour::java_lib_dir;

/// Main class of the peer.
pub const PEER_MAIN: &str = "dev.rmqwasm.PeerConsumer";

/// How to start a peer.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Name server address.
    pub namesrv: String,
    /// Consumer group.
    pub group: String,
    /// Topic subscribed to.
    pub topic: String,
    /// Tag expression (`*` by default).
    pub expression: String,
    /// Orderly instead of concurrent consumption.
    pub orderly: bool,
    /// `consumeMessageBatchMaxSize`.
    pub batch: u32,
    /// `instanceName` (part of the client id).
    pub instance: String,
    /// Count only: no `MSG` line per message (for the benchmark).
    pub quiet: bool,
    /// Consume threads (`consumeThreadMin`/`Max`); `None`: Java's default 20.
    pub threads: Option<u32>,
    /// Which client version: the Java version of this flavour (`Java5` unless the cluster is 4.9).
    pub flavour: Flavour,
    /// 5.x only: follow the broker's QUERY_ASSIGNMENT (`clientRebalance = false`), i.e. POP for
    /// a topic and group the admin set to POP.
    pub pop: bool,
}

impl PeerOptions {
    /// A concurrent, recording peer reading `topic` from the first offset.
    pub fn new(namesrv: &str, group: &str, topic: &str, instance: &str) -> Self {
        Self {
            namesrv: namesrv.to_owned(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            expression: "*".to_owned(),
            orderly: false,
            batch: 1,
            instance: instance.to_owned(),
            quiet: false,
            threads: None,
            flavour: Flavour::Java5,
            pop: false,
        }
    }
}

/// One message as the peer consumed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerMessage {
    /// Broker name of the queue.
    pub broker: String,
    /// Queue id.
    pub queue: i32,
    /// Queue offset.
    pub offset: i64,
    /// Reconsume times.
    pub reconsume_times: i32,
    /// Wall-clock millis when the listener call started and ended.
    pub start_ms: i64,
    /// See `start_ms`.
    pub end_ms: i64,
    /// The `KEYS` property (`-` when absent).
    pub keys: String,
}

/// What the peer has reported so far.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    /// The client id, once started.
    pub client_id: Option<String>,
    /// Queues held now, as `(broker, queue id)`.
    pub assigned: BTreeSet<(String, i32)>,
    /// Every message consumed (not in quiet mode).
    pub messages: Vec<PeerMessage>,
    /// Messages consumed (also in quiet mode; updated every 200 ms).
    pub count: u64,
    /// Set after a graceful shutdown.
    pub stopped: bool,
    /// Lines that did not parse, and everything after the process ended.
    pub other: Vec<String>,
}

/// A running Java push consumer.
#[derive(Debug)]
pub struct JavaPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    state: Arc<Mutex<PeerState>>,
    stderr_log: PathBuf,
}

impl JavaPeer {
    /// Starts the peer and waits (bounded) until it reports `STARTED`.
    pub fn start(opts: &PeerOptions) -> Result<JavaPeer> {
        let flavour = if opts.flavour == Flavour::Java4 { Flavour::Java4 } else { Flavour::Java5 };
        let lib = java_lib_dir(flavour.version())?;
        if !lib.join("rmq-wasm-java-peer.jar").is_file() {
            bail!(
                "{} lacks rmq-wasm-java-peer.jar: run scripts/install-java-cluster.sh",
                lib.display()
            );
        }
        let stderr_log = std::env::temp_dir().join(format!(
            "rmq-java-peer-{}-{}.log",
            std::process::id(),
            opts.instance
        ));
        let stderr = std::fs::File::create(&stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let mut command = Command::new(java_binary()?);
        command
            .args(["-Xms128m", "-Xmx256m", "-XX:+UseG1GC", "-Djava.net.preferIPv4Stack=true"])
            // The client logs under user.home/logs: keep it out of the real home.
            .arg(format!("-Duser.home={}", std::env::temp_dir().display()))
            .arg("-Drocketmq.client.logLevel=WARN")
            .arg("-cp")
            .arg(format!("{}/*", lib.display()))
            .arg(PEER_MAIN)
            .args(["--namesrv", &opts.namesrv, "--group", &opts.group, "--topic", &opts.topic])
            .args(["--expression", &opts.expression, "--instance", &opts.instance])
            .args(["--mode", if opts.orderly { "orderly" } else { "concurrently" }])
            .args(["--batch", &opts.batch.to_string(), "--from", "first"])
            .env_remove("NAMESRV_ADDR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(threads) = opts.threads {
            command.args(["--threads", &threads.to_string()]);
        }
        if opts.quiet {
            command.arg("--quiet");
        }
        if opts.pop {
            command.arg("--pop");
        }
        let mut child = command.spawn().context("spawning the Java peer consumer")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("peer stdout")?;
        let state = Arc::new(Mutex::new(PeerState::default()));
        let sink = Arc::clone(&state);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut state = sink.lock().unwrap_or_else(PoisonError::into_inner);
                apply(&mut state, &line);
            }
        });
        let mut peer = JavaPeer { child, stdin, state, stderr_log };
        peer.wait("STARTED", Duration::from_secs(60), |s| s.client_id.is_some())?;
        Ok(peer)
    }

    /// A copy of what the peer reported so far.
    pub fn state(&self) -> PeerState {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The peer process id (for CPU accounting).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `check` holds on the state, the process exits, or `timeout` passes.
    pub fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&PeerState) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.state()) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the Java peer exited ({status}) before {what}: {}", self.stderr_tail());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the Java peer did not report {what} within {timeout:?}: {}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Graceful shutdown (`DefaultMQPushConsumer.shutdown()`: offsets persisted, locks released,
    /// unregistered), bounded; the process is killed if it does not finish in time.
    pub fn stop(&mut self) -> Result<PeerState> {
        if let Some(mut stdin) = self.stdin.take() {
            writeln!(stdin, "STOP").ok();
        }
        let stopped = self.wait("STOPPED", Duration::from_secs(30), |s| s.stopped);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        self.child.wait().ok();
        stopped?;
        Ok(self.state())
    }

    fn stderr_tail(&self) -> String {
        crate::cluster::tail(&self.stderr_log, 30)
    }
}

impl Drop for JavaPeer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_file(&self.stderr_log).ok();
    }
}

/// Folds one stdout line into the state.
fn apply(state: &mut PeerState, line: &str) {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    let parsed = match kind {
        "STARTED" => {
            state.client_id = Some(rest.to_owned());
            true
        }
        "ASSIGNED" => {
            let queues: Option<BTreeSet<(String, i32)>> = rest
                .split_whitespace()
                .map(|q| {
                    let (broker, id) = q.rsplit_once(':')?;
                    Some((broker.to_owned(), id.parse().ok()?))
                })
                .collect();
            queues.map(|q| state.assigned = q).is_some()
        }
        "MSG" => parse_message(rest).map(|m| state.messages.push(m)).is_some(),
        "COUNT" => rest.parse().map(|n| state.count = n).is_ok(),
        "STOPPED" => {
            state.stopped = true;
            rest.parse().map(|n| state.count = n).is_ok()
        }
        _ => false,
    };
    if !parsed {
        state.other.push(line.to_owned());
    }
}

fn parse_message(rest: &str) -> Option<PeerMessage> {
    let mut f = rest.splitn(7, ' ');
    Some(PeerMessage {
        broker: f.next()?.to_owned(),
        queue: f.next()?.parse().ok()?,
        offset: f.next()?.parse().ok()?,
        reconsume_times: f.next()?.parse().ok()?,
        start_ms: f.next()?.parse().ok()?,
        end_ms: f.next()?.parse().ok()?,
        keys: f.next()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_lines_fold_into_the_state() {
        let mut s = PeerState::default();
        for line in [
            "STARTED 127.0.0.1@peer",
            "ASSIGNED broker-a:0 broker-b:3",
            "MSG broker-a 0 17 1 100 101 k1 k2",
            "COUNT 5",
            "garbage",
            "ASSIGNED ",
        ] {
            apply(&mut s, line);
        }
        assert_eq!(s.client_id.as_deref(), Some("127.0.0.1@peer"));
        assert!(s.assigned.is_empty(), "the last ASSIGNED wins");
        assert_eq!(s.messages.len(), 1);
        assert_eq!(s.messages[0].keys, "k1 k2");
        assert_eq!((s.messages[0].offset, s.messages[0].reconsume_times), (17, 1));
        assert_eq!(s.count, 5);
        assert_eq!(s.other, ["garbage"]);
        apply(&mut s, "STOPPED 9");
        assert!(s.stopped && s.count == 9);
    }
}

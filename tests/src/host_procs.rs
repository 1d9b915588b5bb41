//! `rmq-wasm run` as separate OS processes against the real cluster, observed from outside: each
//! process runs the `router` Wasm listener with its own `tags` (`h1`, `h2`, …), copying every
//! message it consumes to an output topic (keys kept) and reporting success only after the
//! copy's send succeeded. So "key present in the output" means "consumed and acknowledged by the
//! listener", and every copy names the host that made it; the copy's born timestamp is the
//! host's clock at the send. Used by the process fault suite (`tests/tests/faults_host.rs`) and
//! the POP process group (`tests/tests/pop.rs`).
//!
//! Processes are children of the test, killed on drop ([`HostProc`]), so a failing assertion
//! leaves none behind; each also runs with `--duration 180s`, so not even a killed test process
//! leaves one running for long.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rmq_wasm::client::QueueSelector;
use rmq_wasm::protocol::QueueOffset;
use rmq_wasm::protocol::message::{Message, MessageExt};

use crate::cluster::Cluster;
use crate::support::{Clients, read_back_header};
use crate::wasm::{cache_dir, plugin};

/// One `rmq-wasm run` process; SIGKILLed (and reaped) on drop unless it already ended.
#[derive(Debug)]
pub struct HostProc {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl HostProc {
    /// Starts `bin` (`env!("CARGO_BIN_EXE_rmq-wasm-proc")`, which only an integration test can
    /// name) as `rmq-wasm run` on `config`, stdout and stderr into `<dir>/<name>.log`, with the
    /// per-call DEBUG line on.
    pub fn start(bin: &str, dir: &Path, name: &str, config: &str) -> Self {
        Self::start_verb(bin, "run", dir, name, config)
    }

    /// As [`HostProc::start`], with `verb` (`run`, `dev`) instead of `run`.
    pub fn start_verb(bin: &str, verb: &str, dir: &Path, name: &str, config: &str) -> Self {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(bin)
            .arg(verb)
            .arg("--config")
            .arg(&config_path)
            // The second watchdog: should the test process itself be killed (no drop runs), the
            // host still ends by itself, well after any test here would have.
            .args(["--duration", "180s"])
            .env("RUST_LOG", "info,rmq_wasm::calls=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting rmq-wasm");
        Self { name: name.to_owned(), child: Some(child), log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits (bounded) for "listener running": the consumer is started and registered.
    pub async fn wait_running(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.log_text().contains("listener running") {
                return;
            }
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{} exited during startup ({status}):\n{}", self.name, self.tail());
            }
            assert!(Instant::now() < deadline, "{} did not start:\n{}", self.name, self.tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown path runs (no offset persist, no unregister, no unlock).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Sends `signal` (`TERM`, `STOP`: frozen with its sockets open, …) through kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(&pid).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
    }

    /// SIGTERM, then waits (bounded) for the graceful shutdown to finish.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not shut down within 40 s:\n{}",
                self.name,
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for HostProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The listeners.toml of host `name`: the router, copying to `out` with tag `name`; `extra`
/// holds more `[[listener]]` keys (`consume_mode = "orderly"`, `request_mode = "pop"`, …).
pub fn router_config(
    cluster: &Cluster,
    name: &str,
    group: &str,
    topic: &str,
    out: &str,
    extra: &str,
) -> String {
    format!(
        r#"
namesrv = "{namesrv}"
[engine]
cache_dir = "{cache}"

[[listener]]
name = "{name}"
group = "{group}"
topic = "{topic}"
consume_from = "first"
{extra}
wasm = "{wasm}"
batch_size = 8
timeout = "10s"
hot_reload = false
produce_topics = ["{out}"]
# The default (1000/s across the listener) would refuse sends in a catch-up burst, and the
# router dead-letters a refused send: a loss of the test's making.
max_sends_per_second = 1000000
[listener.config]
target-topic = "{out}"
tags = "{name}"
"#,
        namesrv = cluster.namesrv_addr,
        cache = cache_dir().display(),
        wasm = plugin("router").display(),
    )
}

/// Reads a topic's every queue incrementally from offset 0.
#[derive(Debug)]
pub struct Reader {
    topic: String,
    next: BTreeMap<i32, i64>,
    pub msgs: Vec<MessageExt>,
}

impl Reader {
    pub fn new(topic: &str) -> Self {
        Self { topic: topic.to_owned(), next: BTreeMap::new(), msgs: Vec::new() }
    }

    /// Appends whatever is new in every queue (queue by queue, each in offset order).
    pub async fn poll(&mut self, c: &Clients, cluster: &Cluster) {
        let Ok(Some(route)) = c.namesrv.route(&self.topic).await else { return };
        for q in route.subscribe_queues(&self.topic) {
            let offset = self.next.entry(q.queue_id.0).or_insert(0);
            loop {
                let header = read_back_header(&self.topic, q.queue_id, QueueOffset(*offset));
                let Ok(r) =
                    c.broker.pull(&cluster.broker_addr, &header, Duration::from_secs(5)).await
                else {
                    break;
                };
                if r.messages.is_empty() || r.next_begin_offset.0 <= *offset {
                    break;
                }
                *offset = r.next_begin_offset.0;
                self.msgs.extend(r.messages);
            }
        }
    }

    /// Polls until at least `n` copies are in (bounded).
    pub async fn wait_copies(
        &mut self,
        c: &Clients,
        cluster: &Cluster,
        n: usize,
        hosts: &[&HostProc],
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.poll(c, cluster).await;
            if self.msgs.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} copies after 60 s, waiting for {n}\n{}",
                self.topic,
                self.msgs.len(),
                tails(hosts)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls until a copy of every key in `sent` is in (bounded).
    pub async fn wait_keys(
        &mut self,
        c: &Clients,
        cluster: &Cluster,
        sent: &[String],
        hosts: &[&HostProc],
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.poll(c, cluster).await;
            let seen: BTreeSet<&str> = self.msgs.iter().flat_map(|m| m.keys()).collect();
            let missing = sent.iter().filter(|k| !seen.contains(k.as_str())).count();
            if missing == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {missing} of {} keys still missing after 60 s\n{}",
                self.topic,
                sent.len(),
                tails(hosts)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn tails(hosts: &[&HostProc]) -> String {
    hosts.iter().map(|h| format!("--- {} ---\n{}\n", h.name, h.tail())).collect()
}

/// Sends `keys` to `topic` in the background (by sharding key when given): the first `burst` as
/// fast as they go (a backlog), the rest at `rate` a second; yields the keys the broker
/// acknowledged, in send order.
pub fn spawn_stream(
    cluster: &'static Cluster,
    topic: String,
    keys: Vec<(String, Option<String>)>,
    burst: usize,
    rate: f64,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let c = Clients::new(cluster);
        let mut start = tokio::time::Instant::now();
        let mut sent = Vec::with_capacity(keys.len());
        for (i, (key, shard)) in keys.into_iter().enumerate() {
            if i >= burst && i % 20 == 0 {
                // Pacing, not synchronisation: a stream that runs while hosts come and go.
                let due = Duration::from_secs_f64((i - burst) as f64 / rate);
                tokio::time::sleep_until(start + due).await;
            } else if i == burst {
                start = tokio::time::Instant::now();
            }
            let msg = Message::new(&topic, Bytes::from(format!("body of {key}"))).with_keys([&key]);
            let selector = match &shard {
                Some(s) => QueueSelector::ShardingKey(s),
                None => QueueSelector::RoundRobin,
            };
            match c.producer.send_with(msg, selector).await {
                Ok(_) => sent.push(key),
                Err(e) => eprintln!("send of {key} failed (not counted as sent): {e}"),
            }
        }
        sent
    })
}

/// Copies per key, and the figures every test prints.
#[derive(Debug)]
pub struct Tally {
    pub sent: usize,
    pub unique: usize,
    pub lost: Vec<String>,
    pub duplicated: usize,
}

impl Tally {
    /// Every one of `n` sends was acknowledged and came out at least once.
    pub fn assert_nothing_lost(&self, n: usize) {
        assert_eq!(self.sent, n, "every send was acknowledged");
        let lost = &self.lost;
        assert!(
            lost.is_empty(),
            "lost {} keys, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
    }
}

pub fn tally(sent: &[String], copies: &[MessageExt]) -> Tally {
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for k in copies.iter().flat_map(|m| m.keys()) {
        *per_key.entry(k).or_default() += 1;
    }
    let lost: Vec<String> =
        sent.iter().filter(|k| !per_key.contains_key(k.as_str())).cloned().collect();
    let duplicated = per_key.values().map(|n| n - 1).sum();
    Tally { sent: sent.len(), unique: per_key.len(), lost, duplicated }
}

pub fn report(test: &str, t: &Tally, started: Instant, extra: &str) {
    eprintln!(
        "[{test}] sent {} | received unique {} | lost {} | duplicated {} | run time {:.1} s | {extra}",
        t.sent,
        t.unique,
        t.lost.len(),
        t.duplicated,
        started.elapsed().as_secs_f64()
    );
}

pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

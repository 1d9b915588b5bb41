//! A real local RocketMQ cluster for tests, the demo, the benchmark and CI: one name server and one
//! or more brokers of one [`Flavour`] (Apache RocketMQ 5.3 or 4.9 as JVM processes, or
//! rocketmq-rust 1.0.0), in one of three [`Topology`]s.
//!
//! * [`Cluster::start`] starts a fresh cluster on free loopback ports with fresh store directories
//!   and waits (bounded) until every broker is registered with the name server; [`Cluster::stop`]
//!   (or `Drop`) stops it by pid.
//! * [`Cluster::shared`] is a process-wide cluster for one test binary, started on first use with
//!   the flavour named by `RMQ_CLUSTER_FLAVOUR` (default `java5`). It is never dropped; a watchdog
//!   process kills the servers (and removes the store) when the test process exits, however it
//!   exits.
//! * [`Cluster::kill_broker`] / [`Cluster::restart_broker`] crash and bring back one broker node
//!   (same ports, same store) for fault tests.
//! * [`rpc`] is a tiny self-contained synchronous remoting client for the readiness probe and
//!   smoke tests. The real client is the host crate's.
//!
//! Everything the servers write goes below the cluster directory: `HOME`, `user.home` and
//! `ROCKETMQ_HOME` point into it (both implementations refuse to start without `ROCKETMQ_HOME`),
//! every broker advertises 127.0.0.1 and binds its listeners there where the implementation can
//! (Java 4.9 and every broker's HA listener bind all interfaces).
//!
//! rocketmq-rust 1.0.0 specifics handled here:
//! * The default store, kv config and `configStorePath` live under `$HOME`. A `NAMESRV_ADDR` or
//!   `RUST_LOG` in the environment overrides the config file, so neither is inherited.
//! * The broker's canonical config is TOML with unknown keys rejected; its Java properties form
//!   cannot set the bind address. `haListenPort` defaults to a fixed 10912 (Java derives
//!   `listenPort + 1`). A failed bind is logged without its cause, so a server that exits during
//!   startup is retried with fresh ports.
//! * The broker's SIGTERM shutdown unregisters from the name server: stop brokers first.
//!
//! Java specifics: see [`flavour`] (JVM options, versions) and [`config`] (the properties).

pub mod config;
pub mod flavour;
pub mod process;
pub mod rpc;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use anyhow::Result;
use anyhow::anyhow;
use anyhow::bail;

pub use config::NodeSpec;
pub use config::Role;
pub use config::Topology;
pub use flavour::BROKER_BIN;
pub use flavour::FLAVOUR_ENV;
pub use flavour::Flavour;
pub use flavour::NAMESRV_BIN;
pub use flavour::find_binary;
pub use process::is_rocketmq_process;
pub use process::pid_alive;
pub use process::stop_pid;
pub use rpc::RpcResponse;
pub use rpc::broker_listed;
pub use rpc::broker_listed_as;
pub use rpc::cluster_info;
pub use rpc::code;
pub use rpc::rpc;
pub use rpc::topic_route;

use config::BrokerConf;
use config::BrokerPorts;
use process::Server;

/// The delay levels of a stock broker (18 levels; level 3 = 10 s is the first consumer retry).
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";
/// The default for test clusters: the same 18 levels, each one second long, so that delayed
/// messages and consumer retries (`SCHEDULE_TOPIC_XXXX`) come back quickly.
pub const TEST_DELAY_LEVELS: &str = "1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s";

/// Name of the env file [`Cluster::write_env_file`] writes into the cluster directory.
pub const ENV_FILE: &str = "cluster.env";

/// When set to the path of a `cluster.env` written by `scripts/cluster.sh start`,
/// [`Cluster::shared`] attaches to that running cluster instead of starting one.
pub const ATTACH_ENV: &str = "RMQ_TEST_CLUSTER_ENV";
/// When set (to anything but `0`), the store directories of clusters started by this process are
/// kept after they stop (for post-mortem reading of the logs).
pub const KEEP_DIR_ENV: &str = "RMQ_TEST_CLUSTER_KEEP";

const POLL_INTERVAL: Duration = Duration::from_millis(100);
const START_ATTEMPTS: u32 = 3;

/// How to start a cluster. `ClusterOptions::default()` is what tests want.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The implementation; `None`: the one `RMQ_CLUSTER_FLAVOUR` names (default `java5`).
    pub flavour: Option<Flavour>,
    /// Which brokers to run.
    pub topology: Topology,
    /// Directory for configs, logs and the store. `None`: a fresh directory under the system
    /// temp dir, removed when the cluster stops (unless `RMQ_TEST_CLUSTER_KEEP` is set). A given
    /// directory is emptied of a previous cluster's files first and is never removed.
    pub dir: Option<PathBuf>,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerName` of the first master (a second master is named after it: `broker-b`).
    pub broker_name: String,
    /// `messageDelayLevel`. Default [`TEST_DELAY_LEVELS`].
    pub message_delay_level: String,
    /// `enablePropertyFilter` (SQL92 filtering). Default true.
    pub enable_property_filter: bool,
    /// Extra broker keys (camelCase, as the broker spells them), e.g.
    /// `("defaultTopicQueueNums".into(), "4".into())`: rocketmq-rust's `[broker]` TOML section
    /// (bools and integers written bare, anything else quoted), the Java broker's properties.
    pub broker_props: Vec<(String, String)>,
    /// Extra message-store keys: rocketmq-rust's `[store]` section, the Java broker's properties.
    pub store_props: Vec<(String, String)>,
    /// Files written into each broker's `ROCKETMQ_HOME` before it starts (relative path,
    /// content), e.g. `conf/plain_acl.yml`.
    pub home_files: Vec<(String, String)>,
    /// Log filter passed to rocketmq-rust's servers (`--log-filter`; `RUST_LOG` is not inherited).
    pub log_filter: String,
    /// Bound on each readiness wait (name server up, brokers registered).
    pub startup_timeout: Duration,
    /// Run a watchdog that kills every server when this process exits. On for tests; the
    /// `cluster` CLI turns it off to leave the cluster running detached.
    pub watchdog: bool,
    /// The IP every broker advertises to clients (`brokerIP1`): what routes from the name server
    /// say. Default 127.0.0.1, where brokers listen. Another loopback address (127.0.0.2) lets a
    /// test put a proxy at `advertised_ip:listenPort` in front of the broker on
    /// `127.0.0.1:listenPort`, so that every client that follows routes (our consumer, unchanged)
    /// talks to the broker through it. Needs a broker that binds 127.0.0.1 only (Java 5.x,
    /// rocketmq-rust); Java 4.9 binds every interface, so the proxy's port would be taken.
    pub advertised_ip: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            flavour: None,
            topology: Topology::Single,
            dir: None,
            cluster_name: "RmqWasmTestCluster".to_owned(),
            broker_name: "broker-a".to_owned(),
            message_delay_level: TEST_DELAY_LEVELS.to_owned(),
            enable_property_filter: true,
            broker_props: Vec::new(),
            store_props: Vec::new(),
            home_files: Vec::new(),
            log_filter: "info".to_owned(),
            startup_timeout: Duration::from_secs(90),
            watchdog: true,
            advertised_ip: "127.0.0.1".to_owned(),
        }
    }
}

/// One broker process of a running cluster.
#[derive(Debug)]
pub struct BrokerNode {
    /// Name, id and role.
    pub spec: NodeSpec,
    /// `<advertised ip>:port` as registered with the name server (what routes say).
    pub addr: String,
    /// `127.0.0.1:port`, where the broker listens (the same as `addr` unless
    /// [`ClusterOptions::advertised_ip`] says otherwise).
    pub listen_addr: String,
    server: Server,
    /// Config file and home directory, kept for a restart.
    conf: PathBuf,
    home: PathBuf,
}

impl BrokerNode {
    /// Pid of the broker process (of its latest start).
    pub fn pid(&self) -> u32 {
        self.server.pid
    }

    /// The log the broker writes itself (Java: `logs/rocketmqlogs/broker.log` under its home),
    /// else its stdout/stderr.
    pub fn log(&self) -> PathBuf {
        let java_log = self.home.join("logs").join("rocketmqlogs").join("broker.log");
        if java_log.is_file() { java_log } else { self.server.log.clone() }
    }
}

/// A running name server + brokers.
#[derive(Debug)]
pub struct Cluster {
    /// The implementation running.
    pub flavour: Flavour,
    /// `127.0.0.1:port` of the name server.
    pub namesrv_addr: String,
    /// `127.0.0.1:port` of the first master (as registered with the name server).
    pub broker_addr: String,
    /// `brokerName` of the first master.
    pub broker_name: String,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// Directory holding configs, logs and the stores.
    pub dir: PathBuf,
    namesrv: Server,
    /// The name server's config file and home, kept for a restart.
    namesrv_conf: PathBuf,
    namesrv_home: PathBuf,
    brokers: Vec<BrokerNode>,
    startup_timeout: Duration,
    log_filter: String,
    /// The watchdog's stdin: it kills the servers when this end is closed (process exit).
    watchdog: Option<(Child, ChildStdin)>,
    remove_dir: bool,
    stopped: bool,
}

impl Cluster {
    /// Starts a fresh cluster and waits until every broker is registered with the name server.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        let flavour = match opts.flavour {
            Some(flavour) => flavour,
            None => Flavour::from_env()?,
        };
        flavour.check_installed()?;
        if flavour == Flavour::Rust && opts.topology == Topology::MasterSlave {
            bail!(
                "the master + slave topology needs a Java flavour (rocketmq-rust 1.0.0 is not set up for classic HA here)"
            );
        }
        let (dir, remove_dir) = match &opts.dir {
            Some(dir) => {
                clean_cluster_dir(dir)?;
                (absolute(dir)?, false)
            }
            None => (fresh_temp_dir()?, !keep_dirs()),
        };
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            match start_once(&opts, flavour, &dir, remove_dir) {
                Ok(cluster) => return Ok(cluster),
                Err(StartError::Exited(error)) if attempt < START_ATTEMPTS => {
                    // Most likely another process bound one of the ports between probing and the
                    // server binding it (rocketmq-rust logs no cause for a failed bind): retry
                    // with fresh ports and a fresh store.
                    tracing::warn!(
                        "local RocketMQ cluster start attempt {attempt} failed: {error:#}"
                    );
                    last_error = Some(error);
                    clean_cluster_dir(&dir)?;
                }
                Err(StartError::Exited(error) | StartError::Other(error)) => {
                    if remove_dir {
                        fs::remove_dir_all(&dir).ok();
                    }
                    return Err(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("cluster start failed")))
    }

    /// The process-wide cluster of this test binary, started on first use with the default
    /// options (or attached to the cluster named by `RMQ_TEST_CLUSTER_ENV`). Panics when it cannot
    /// be started; every later call panics with the same message.
    pub fn shared() -> &'static Cluster {
        match Self::try_shared() {
            Ok(cluster) => cluster,
            Err(error) => panic!("shared RocketMQ cluster unavailable: {error:#}"),
        }
    }

    /// [`Cluster::shared`] without the panic.
    pub fn try_shared() -> Result<&'static Cluster> {
        static SHARED: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let started = match std::env::var_os(ATTACH_ENV) {
                    Some(path) if !path.is_empty() => Cluster::attach(Path::new(&path)),
                    _ => Cluster::start(ClusterOptions::default()),
                };
                started.map_err(|error| format!("{error:#}"))
            })
            .as_ref()
            .map_err(|error| anyhow!("{error}"))
    }

    /// Attaches to a cluster started by `scripts/cluster.sh start` (reads its `cluster.env`). The
    /// attached cluster is not stopped by `stop`/`Drop`.
    pub fn attach(env_file: &Path) -> Result<Cluster> {
        let env = read_env_file(env_file)?;
        let get = |key: &str| {
            env.get(key).cloned().with_context(|| format!("{} lacks {key}", env_file.display()))
        };
        let pid = |value: &str, key: &str| -> Result<u32> {
            value.parse().with_context(|| format!("{key} in {}", env_file.display()))
        };
        let dir = PathBuf::from(get("CLUSTER_DIR")?);
        let flavour = match env.get("FLAVOUR") {
            Some(name) => name.parse()?,
            None => Flavour::Rust,
        };
        let mut brokers = Vec::new();
        for entry in get("BROKERS")?.split_whitespace() {
            let fields: Vec<&str> = entry.split('/').collect();
            let [name, id, addr, broker_pid] = fields[..] else {
                bail!("malformed BROKERS entry `{entry}` in {}", env_file.display());
            };
            let broker_id: u64 =
                id.parse().with_context(|| format!("broker id in {}", env_file.display()))?;
            let spec = NodeSpec {
                broker_name: name.to_owned(),
                broker_id,
                role: if broker_id == 0 { Role::Master } else { Role::Slave },
            };
            let node_dir = dir.join(spec.key());
            brokers.push(BrokerNode {
                addr: addr.to_owned(),
                listen_addr: addr.to_owned(),
                server: Server::attached(
                    format!("broker {}", spec.key()),
                    pid(broker_pid, "BROKERS")?,
                    node_dir.join("broker.log"),
                ),
                conf: node_dir.join("broker.conf"),
                home: node_dir.join("home"),
                spec,
            });
        }
        let cluster = Cluster {
            flavour,
            namesrv_addr: get("NAMESRV_ADDR")?,
            broker_addr: get("BROKER_ADDR")?,
            broker_name: get("BROKER_NAME")?,
            cluster_name: get("CLUSTER_NAME")?,
            namesrv: Server::attached(
                "name server".to_owned(),
                pid(&get("NAMESRV_PID")?, "NAMESRV_PID")?,
                dir.join("namesrv").join("namesrv.log"),
            ),
            namesrv_conf: dir.join("namesrv").join(match flavour {
                Flavour::Rust => "namesrv.toml",
                Flavour::Java5 | Flavour::Java4 => "namesrv.properties",
            }),
            namesrv_home: dir.join("namesrv").join("home"),
            brokers,
            dir,
            startup_timeout: ClusterOptions::default().startup_timeout,
            log_filter: ClusterOptions::default().log_filter,
            watchdog: None,
            remove_dir: false,
            stopped: true,
        };
        cluster.check_registered().with_context(|| {
            format!("the cluster of {} is not serving; start it again", env_file.display())
        })?;
        Ok(cluster)
    }

    /// Pid of the name server process.
    pub fn namesrv_pid(&self) -> u32 {
        self.namesrv.pid
    }

    /// Pid of the first master's process.
    pub fn broker_pid(&self) -> u32 {
        self.brokers[0].pid()
    }

    /// Path of the name server's stdout + stderr.
    pub fn namesrv_log(&self) -> &Path {
        &self.namesrv.log
    }

    /// Path of the first master's log.
    pub fn broker_log(&self) -> PathBuf {
        self.brokers[0].log()
    }

    /// Every broker node, masters first.
    pub fn brokers(&self) -> &[BrokerNode] {
        &self.brokers
    }

    /// The node `broker_name`/`broker_id`.
    pub fn broker(&self, broker_name: &str, broker_id: u64) -> Option<&BrokerNode> {
        self.brokers
            .iter()
            .find(|b| b.spec.broker_name == broker_name && b.spec.broker_id == broker_id)
    }

    /// `KEY=value` lines describing the cluster (the content of `cluster.env`).
    pub fn env(&self) -> String {
        let brokers: Vec<String> = self
            .brokers
            .iter()
            .map(|b| format!("{}/{}/{}/{}", b.spec.broker_name, b.spec.broker_id, b.addr, b.pid()))
            .collect();
        let mut out = String::new();
        for (key, value) in [
            ("FLAVOUR", self.flavour.name().to_owned()),
            ("NAMESRV_ADDR", self.namesrv_addr.clone()),
            ("BROKER_ADDR", self.broker_addr.clone()),
            ("BROKER_NAME", self.broker_name.clone()),
            ("CLUSTER_NAME", self.cluster_name.clone()),
            ("NAMESRV_PID", self.namesrv.pid.to_string()),
            ("BROKER_PID", self.broker_pid().to_string()),
            ("BROKERS", brokers.join(" ")),
            ("CLUSTER_DIR", self.dir.display().to_string()),
        ] {
            let _ = writeln!(out, "{key}={value}");
        }
        out
    }

    /// Writes [`Cluster::env`] to `<dir>/cluster.env` and returns its path.
    pub fn write_env_file(&self) -> Result<PathBuf> {
        let path = self.dir.join(ENV_FILE);
        fs::write(&path, self.env()).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Errors unless the name server lists every broker node at its address and each answers.
    pub fn check_registered(&self) -> Result<()> {
        for node in &self.brokers {
            self.check_node_registered(node)?;
        }
        Ok(())
    }

    fn check_node_registered(&self, node: &BrokerNode) -> Result<()> {
        let info = cluster_info(&self.namesrv_addr)?;
        if !broker_listed_as(&info, &node.spec.broker_name, node.spec.broker_id, &node.addr) {
            bail!(
                "name server {} does not list broker {} at {}: {info}",
                self.namesrv_addr,
                node.spec.key(),
                node.addr
            );
        }
        // Where it listens: the advertised address may be a proxy that is not up yet.
        rpc(&node.listen_addr, code::GET_BROKER_RUNTIME_INFO, &[], &[], rpc::REQUEST_TIMEOUT)
            .with_context(|| format!("broker {} does not answer", node.listen_addr))?;
        Ok(())
    }

    /// The last `lines` lines of every server's log (ANSI colours stripped), for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out =
            format!("--- {} ---\n{}", self.namesrv.log.display(), tail(&self.namesrv.log, lines));
        for node in &self.brokers {
            let log = node.log();
            let _ = write!(out, "\n--- {} ---\n{}", log.display(), tail(&log, lines));
        }
        out
    }

    /// Crashes broker node `index` (SIGKILL): no unregistration, no flush, as a power loss of
    /// that process would. The name server drops its routes when the connection closes.
    pub fn kill_broker(&mut self, index: usize) -> Result<()> {
        let node = self.brokers.get_mut(index).context("no such broker node")?;
        node.server.kill()
    }

    /// Starts broker node `index` again on its ports and store, and waits until it is registered.
    pub fn restart_broker(&mut self, index: usize) -> Result<()> {
        let flavour = self.flavour;
        let watchdog = self.watchdog.is_some();
        let node = self.brokers.get_mut(index).context("no such broker node")?;
        if node.server.exited().is_none() {
            bail!("broker {} is still running", node.spec.key());
        }
        let log = node.server.log.clone();
        let mut command = flavour.broker_command(&node.conf, &node.home, &self.namesrv_addr)?;
        if flavour == Flavour::Rust {
            command.args(["--log-filter", &self.log_filter]);
        }
        node.server = process::spawn_server(
            format!("broker {}", node.spec.key()),
            &mut command,
            &node.home,
            &log.with_extension("restarted.log"),
            watchdog,
        )?;
        let pid = node.server.pid;
        self.watch(pid)?;
        let deadline = Instant::now() + self.startup_timeout;
        loop {
            let node = &self.brokers[index];
            match self.check_node_registered(node) {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!(
                        "broker {} did not come back within {:?}\n{}",
                        node.spec.key(),
                        self.startup_timeout,
                        tail(&node.log(), 40)
                    )));
                }
                Err(_) => std::thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// Crashes the name server (SIGKILL). Clients keep their cached routes; brokers keep
    /// trying to register.
    pub fn kill_namesrv(&mut self) -> Result<()> {
        self.namesrv.kill()
    }

    /// Starts the name server again on its port and waits until every running broker has
    /// registered with it again (brokers re-register every `registerNameServerPeriod`, 30 s by
    /// default: a test that restarts the name server may set it lower, 10 s at least).
    pub fn restart_namesrv(&mut self) -> Result<()> {
        if self.namesrv.exited().is_none() {
            bail!("the name server is still running");
        }
        let port: u16 = self
            .namesrv_addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("name server address without a port")?;
        let mut command =
            self.flavour.namesrv_command(&self.namesrv_conf, &self.namesrv_home, port)?;
        if self.flavour == Flavour::Rust {
            command.args(["--log-filter", &self.log_filter]);
        }
        let log = self.namesrv.log.with_extension("restarted.log");
        self.namesrv = process::spawn_server(
            "name server".to_owned(),
            &mut command,
            &self.namesrv_home.clone(),
            &log,
            self.watchdog.is_some(),
        )?;
        self.watch(self.namesrv.pid)?;
        let deadline = Instant::now() + self.startup_timeout;
        let running: Vec<usize> = (0..self.brokers.len())
            .filter(|&i| self.brokers[i].server.exited().is_none())
            .collect();
        loop {
            let missing =
                running.iter().find_map(|&i| self.check_node_registered(&self.brokers[i]).err());
            match missing {
                None => return Ok(()),
                Some(error) if Instant::now() >= deadline => {
                    return Err(error.context(format!(
                        "the brokers did not register with the restarted name server within {:?}",
                        self.startup_timeout
                    )));
                }
                Some(_) => std::thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// Leaves the servers running (for the `cluster` CLI): neither `Drop` nor a watchdog stops
    /// them any more.
    pub fn detach(mut self) {
        self.stopped = true;
        self.remove_dir = false;
        if let Some((mut watchdog, _stdin)) = self.watchdog.take() {
            watchdog.kill().ok();
            watchdog.wait().ok();
        }
    }

    /// Hands `pid` to the watchdog, if there is one.
    fn watch(&mut self, pid: u32) -> Result<()> {
        if let Some((_, stdin)) = &mut self.watchdog {
            writeln!(stdin, "{pid}")
                .and_then(|()| stdin.flush())
                .context("feeding the watchdog")?;
        }
        Ok(())
    }

    /// Stops every server (SIGTERM, bounded wait, SIGKILL; brokers first, slaves before masters)
    /// and removes a temporary directory. Idempotent. Does nothing for an attached cluster.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        // Retire the watchdog first so it cannot signal pids we are about to reap.
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            watchdog.kill().ok();
            watchdog.wait().ok();
            drop(stdin);
        }
        let mut result = Ok(());
        for node in self.brokers.iter_mut().rev() {
            result = result.and(node.server.stop());
        }
        result = result.and(self.namesrv.stop());
        if self.remove_dir {
            fs::remove_dir_all(&self.dir).ok();
        }
        result
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("stopping the RocketMQ cluster in {}: {error:#}", self.dir.display());
        }
    }
}

enum StartError {
    /// A server exited during startup: worth retrying with other ports.
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(error: anyhow::Error) -> Self {
        StartError::Other(error)
    }
}

fn start_once(
    opts: &ClusterOptions,
    flavour: Flavour,
    dir: &Path,
    remove_dir: bool,
) -> std::result::Result<Cluster, StartError> {
    let nodes = opts.topology.nodes(&opts.broker_name);
    let ports = config::pick_ports(nodes.len())?;
    let namesrv_addr = format!("127.0.0.1:{}", ports.namesrv);

    let namesrv_dir = dir.join("namesrv");
    let namesrv_home = namesrv_dir.join("home");
    create_dir(&namesrv_home)?;
    let (namesrv_conf, conf_text) = match flavour {
        Flavour::Rust => {
            (namesrv_dir.join("namesrv.toml"), config::namesrv_toml(&namesrv_home, ports.namesrv))
        }
        Flavour::Java5 | Flavour::Java4 => (
            namesrv_dir.join("namesrv.properties"),
            config::namesrv_properties(&namesrv_home, ports.namesrv),
        ),
    };
    write_file(&namesrv_conf, &conf_text)?;
    write_java_logback(flavour, &namesrv_home, "namesrv")?;

    let started = Instant::now();
    let mut command = flavour.namesrv_command(&namesrv_conf, &namesrv_home, ports.namesrv)?;
    if flavour == Flavour::Rust {
        command.args(["--log-filter", &opts.log_filter]);
    }
    let namesrv = process::spawn_server(
        "name server".to_owned(),
        &mut command,
        &namesrv_home,
        &namesrv_dir.join("namesrv.log"),
        opts.watchdog,
    )?;
    let mut cluster = Cluster {
        flavour,
        namesrv_addr,
        broker_addr: String::new(),
        broker_name: opts.broker_name.clone(),
        cluster_name: opts.cluster_name.clone(),
        dir: dir.to_path_buf(),
        namesrv,
        namesrv_conf,
        namesrv_home,
        brokers: Vec::new(),
        startup_timeout: opts.startup_timeout,
        log_filter: opts.log_filter.clone(),
        watchdog: None,
        remove_dir,
        stopped: false,
    };
    // From here on, dropping `cluster` on an error path stops what was started; the temporary
    // directory is removed by `Cluster::start` once no retry is due.
    cluster.remove_dir = false;
    if opts.watchdog {
        cluster.watchdog = Some(process::spawn_watchdog(remove_dir.then_some(dir))?);
        cluster.watch(cluster.namesrv.pid)?;
    }

    // A broker registers at start and then only every 30 s: start brokers once the name server
    // answers, or their first registration would be lost.
    wait_until(&mut cluster, opts.startup_timeout, "the name server to answer", |c| {
        cluster_info(&c.namesrv_addr).map(|_| ())
    })?;

    for (spec, broker_ports) in nodes.into_iter().zip(ports.brokers.iter().copied()) {
        let node = spawn_broker(opts, flavour, &cluster.namesrv_addr, dir, spec, broker_ports)?;
        let pid = node.pid();
        cluster.brokers.push(node);
        cluster.watch(pid)?;
    }
    cluster.broker_addr = cluster.brokers[0].addr.clone();

    wait_until(
        &mut cluster,
        opts.startup_timeout,
        "every broker to register with the name server",
        |c| c.check_registered(),
    )?;
    cluster.remove_dir = remove_dir;
    tracing::info!(
        flavour = %cluster.flavour,
        namesrv = %cluster.namesrv_addr,
        brokers = cluster.brokers.len(),
        broker = %cluster.broker_addr,
        dir = %cluster.dir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "local RocketMQ cluster ready"
    );
    Ok(cluster)
}

/// Writes one broker node's files under `<dir>/<broker-name>-<id>/` and starts it.
fn spawn_broker(
    opts: &ClusterOptions,
    flavour: Flavour,
    namesrv_addr: &str,
    dir: &Path,
    spec: NodeSpec,
    ports: BrokerPorts,
) -> Result<BrokerNode> {
    let node_dir = dir.join(spec.key());
    let home = node_dir.join("home");
    let store = node_dir.join("store");
    create_dir(&home)?;
    create_dir(&store)?;
    for (relative, content) in &opts.home_files {
        let path = home.join(relative);
        if let Some(parent) = path.parent() {
            create_dir(parent)?;
        }
        write_file(&path, content)?;
    }
    write_java_logback(flavour, &home, "broker")?;
    let conf = BrokerConf { opts, node: &spec, namesrv_addr, store: &store, ports };
    let (conf_path, text) = match flavour {
        Flavour::Rust => (node_dir.join("broker.toml"), config::broker_toml(&conf)),
        Flavour::Java5 | Flavour::Java4 => {
            (node_dir.join("broker.conf"), config::broker_properties(&conf))
        }
    };
    write_file(&conf_path, &text)?;
    let mut command = flavour.broker_command(&conf_path, &home, namesrv_addr)?;
    if flavour == Flavour::Rust {
        command.args(["--log-filter", &opts.log_filter]);
    }
    let server = process::spawn_server(
        format!("broker {}", spec.key()),
        &mut command,
        &home,
        &node_dir.join("broker.log"),
        opts.watchdog,
    )?;
    Ok(BrokerNode {
        addr: format!("{}:{}", opts.advertised_ip, ports.listen),
        listen_addr: format!("127.0.0.1:{}", ports.listen),
        spec,
        server,
        conf: conf_path,
        home,
    })
}

/// Apache RocketMQ 4.9's startup classes configure logback from
/// `$ROCKETMQ_HOME/conf/logback_<role>.xml` and exit when it is missing (the distribution ships
/// it; the jars do not). 5.x carries its configuration inside the jars.
fn write_java_logback(flavour: Flavour, home: &Path, role: &str) -> Result<()> {
    if flavour != Flavour::Java4 {
        return Ok(());
    }
    let log = home.join("logs").join("rocketmqlogs").join(format!("{role}.log"));
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by rmq-wasm-tests (cluster/mod.rs): everything into one file. -->
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{}</file>
    <append>true</append>
    <encoder><pattern>%d{{yyy-MM-dd HH:mm:ss,SSS}} %p %t - %m%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"#,
        log.display()
    );
    let conf = home.join("conf");
    create_dir(&conf)?;
    write_file(&conf.join(format!("logback_{role}.xml")), &xml)
}

/// Polls `probe` until it succeeds, a server exits, or `timeout` passes.
fn wait_until(
    cluster: &mut Cluster,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut(&Cluster) -> Result<()>,
) -> std::result::Result<(), StartError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe(cluster) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let logs: Vec<PathBuf> = std::iter::once(cluster.namesrv.log.clone())
            .chain(cluster.brokers.iter().map(BrokerNode::log))
            .collect();
        let servers = std::iter::once(&mut cluster.namesrv)
            .chain(cluster.brokers.iter_mut().map(|b| &mut b.server));
        for (server, log) in servers.zip(logs) {
            if let Some(status) = server.exited() {
                let error = anyhow!(
                    "the {} exited ({status}) while waiting for {what}{}; last lines of {} and {}:\n{}\n{}",
                    server.name,
                    disk_note(&cluster.dir),
                    server.log.display(),
                    log.display(),
                    tail(&server.log, 20),
                    tail(&log, 40)
                );
                return Err(StartError::Exited(error));
            }
        }
        if Instant::now() >= deadline {
            return Err(StartError::Other(anyhow!(
                "timed out after {timeout:?} waiting for {what} (last probe: {last:#})\n{}",
                cluster.log_tails(40)
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The disk usage of `dir` as the brokers compute it (`1 - available/total`, from `df`), worded
/// for an error message: a broker refuses to start on a disk that is too full, and rocketmq-rust
/// says so only as "Service lifecycle operation failed".
fn disk_note(dir: &Path) -> String {
    let Ok(out) = std::process::Command::new("df").arg("-Pk").arg(dir).output() else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    match (
        fields.get(1).and_then(|t| t.parse::<f64>().ok()),
        fields.get(3).and_then(|a| a.parse::<f64>().ok()),
    ) {
        (Some(total), Some(avail)) if total > 0.0 => format!(
            " (the disk of {} is {:.1} % used by the broker's measure, {:.1} GiB available; \
             brokers refuse to start above 90 %: free disk space)",
            dir.display(),
            100.0 * (1.0 - avail / total),
            avail / (1024.0 * 1024.0)
        ),
        _ => String::new(),
    }
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    create_dir(dir)?;
    dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn fresh_temp_dir() -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "rmq-wasm-cluster-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    create_dir(&dir)?;
    Ok(dir)
}

fn keep_dirs() -> bool {
    std::env::var_os(KEEP_DIR_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Removes what a previous cluster left in `dir` (only what this module creates: the name
/// server's and each broker node's directory, and the env file).
pub fn clean_cluster_dir(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let ours = name == "namesrv" || name.starts_with("broker-") || name == ENV_FILE;
        if !ours {
            continue;
        }
        if path.is_dir() {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        } else {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, content: &str) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// Reads `KEY=value` lines.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// The last `lines` lines of a log file with ANSI escape sequences removed.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return format!("(cannot read {})", path.display());
    };
    let text = strip_ansi(&String::from_utf8_lossy(&bytes));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ansi() {
        assert_eq!(strip_ansi("\u{1b}[2mtime\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"), "time  INFO x");
    }
}

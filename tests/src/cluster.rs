//! A real local RocketMQ cluster (one rocketmq-rust name server + one broker) for tests, the demo
//! and CI.
//!
//! * [`Cluster::start`] starts a fresh cluster on free loopback ports with a fresh store directory
//!   and waits (bounded) until the broker is registered with the name server; [`Cluster::stop`]
//!   (or `Drop`) stops it by pid.
//! * [`Cluster::shared`] is a process-wide cluster for one test binary, started on first use. It is
//!   never dropped; a watchdog process kills the servers (and removes the store) when the test
//!   process exits, however it exits.
//! * [`rpc`] is a tiny self-contained synchronous remoting client (sends JSON headers, reads JSON
//!   or binary ones) for the readiness probe and smoke tests. The real client is the host crate's.
//!
//! The binaries are `rocketmq-namesrv-rust` and `rocketmq-broker-rust` from rocketmq-rust 1.0.0
//! (`scripts/install-cluster.sh`). Everything they write goes below the cluster directory: `HOME`
//! and `ROCKETMQ_HOME` point into it, every listener binds 127.0.0.1, and the broker advertises
//! 127.0.0.1.
//!
//! rocketmq-rust 1.0.0 specifics handled here:
//! * Both servers refuse to start without `ROCKETMQ_HOME`; the default store, kv config and
//!   `configStorePath` live under `$HOME`. A `NAMESRV_ADDR` or `RUST_LOG` in the environment
//!   overrides the config file, so neither is inherited.
//! * The broker's canonical config is TOML (`[broker]`, `[broker.brokerIdentity]`,
//!   `[broker.brokerServerConfig]`, `[store]`) with unknown keys rejected. Its Java properties form
//!   cannot set the bind address, and every broker listener (remoting `listenPort`, "fast"
//!   `listenPort - 2`, HA `haListenPort`) binds 0.0.0.0 by default. `haListenPort` defaults to a
//!   fixed 10912 (Java derives `listenPort + 1`).
//! * `messageDelayLevel` is a `[store]` key, parsed by the broker's schedule service at start (an
//!   invalid value makes the broker exit).
//! * A failed bind is logged without its cause, so a server that exits during startup is retried
//!   with fresh ports.
//! * The broker's SIGTERM shutdown unregisters from the name server: stop the broker first.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::fs::File;
use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::net::TcpStream;
use std::net::ToSocketAddrs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::process::Command;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::PoisonError;
use std::sync::atomic::AtomicI32;
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

/// File name of the name server binary installed by `scripts/install-cluster.sh`.
pub const NAMESRV_BIN: &str = "rocketmq-namesrv-rust";
/// File name of the broker binary installed by `scripts/install-cluster.sh`.
pub const BROKER_BIN: &str = "rocketmq-broker-rust";

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

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const MAX_FRAME: usize = 16 * 1024 * 1024;
const START_ATTEMPTS: u32 = 3;

/// Remoting request codes used here.
pub mod code {
    /// SEND_MESSAGE (v1 header).
    pub const SEND_MESSAGE: i32 = 10;
    /// GET_MAX_OFFSET.
    pub const GET_MAX_OFFSET: i32 = 30;
    /// GET_BROKER_RUNTIME_INFO.
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    /// CHECK_CLIENT_CONFIG.
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    /// GET_ROUTEINFO_BY_TOPIC.
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// GET_BROKER_CLUSTER_INFO.
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// Response SUCCESS.
    pub const SUCCESS: i32 = 0;
    /// Response TOPIC_NOT_EXIST.
    pub const TOPIC_NOT_EXIST: i32 = 17;
}

/// How to start a cluster. `ClusterOptions::default()` is what tests want.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Directory for configs, logs and the store. `None`: a fresh directory under the system
    /// temp dir, removed when the cluster stops (unless `RMQ_TEST_CLUSTER_KEEP` is set). A given
    /// directory is emptied of a previous cluster's files first and is never removed.
    pub dir: Option<PathBuf>,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// `brokerName`.
    pub broker_name: String,
    /// `messageDelayLevel` (store section). Default [`TEST_DELAY_LEVELS`].
    pub message_delay_level: String,
    /// `enablePropertyFilter` (SQL92 filtering). Default true.
    pub enable_property_filter: bool,
    /// Extra keys of the broker's `[broker]` TOML section (camelCase, as in
    /// `rocketmq-broker-rust -p`), e.g. `("defaultTopicQueueNums".into(), "4".into())`. Values
    /// that parse as bool or integer are written bare, anything else quoted.
    pub broker_props: Vec<(String, String)>,
    /// Extra keys of the broker's `[store]` TOML section (message store config).
    pub store_props: Vec<(String, String)>,
    /// Log filter passed to both servers (`--log-filter`; `RUST_LOG` is not inherited).
    pub log_filter: String,
    /// Bound on each readiness wait (name server up, broker registered).
    pub startup_timeout: Duration,
    /// Run a watchdog that kills both servers when this process exits. On for tests; the
    /// `cluster` CLI turns it off to leave the cluster running detached.
    pub watchdog: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            dir: None,
            cluster_name: "RmqWasmTestCluster".to_owned(),
            broker_name: "broker-a".to_owned(),
            message_delay_level: TEST_DELAY_LEVELS.to_owned(),
            enable_property_filter: true,
            broker_props: Vec::new(),
            store_props: Vec::new(),
            log_filter: "info".to_owned(),
            startup_timeout: Duration::from_secs(60),
            watchdog: true,
        }
    }
}

/// One server process.
#[derive(Debug)]
struct Server {
    name: &'static str,
    pid: u32,
    /// `None` when attached to a cluster this process did not start.
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// `Some(description)` when the process has exited.
    fn exited(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(error) => Some(format!("unknown state ({error})")),
            },
            None => (!pid_alive(self.pid)).then(|| "exited".to_owned()),
        }
    }

    fn stop(&mut self) -> Result<()> {
        match &mut self.child {
            Some(child) => {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                signal(self.pid, "TERM");
                let deadline = Instant::now() + STOP_GRACE;
                while Instant::now() < deadline {
                    if child.try_wait()?.is_some() {
                        return Ok(());
                    }
                    std::thread::sleep(POLL_INTERVAL);
                }
                child.kill().ok();
                child
                    .wait()
                    .with_context(|| format!("waiting for {} ({})", self.name, self.pid))?;
                Ok(())
            }
            None => stop_pid(self.pid),
        }
    }
}

/// A running name server + broker.
#[derive(Debug)]
pub struct Cluster {
    /// `127.0.0.1:port` of the name server.
    pub namesrv_addr: String,
    /// `127.0.0.1:port` of the broker (as registered with the name server).
    pub broker_addr: String,
    /// `brokerName`.
    pub broker_name: String,
    /// `brokerClusterName`.
    pub cluster_name: String,
    /// Directory holding configs, logs (`namesrv.log`, `broker.log`) and the store.
    pub dir: PathBuf,
    namesrv: Server,
    broker: Server,
    /// The watchdog's stdin: it kills the servers when this end is closed (process exit).
    watchdog: Option<(Child, ChildStdin)>,
    remove_dir: bool,
    stopped: bool,
}

impl Cluster {
    /// Starts a fresh cluster and waits until the broker is registered with the name server.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        let namesrv_bin = find_binary(NAMESRV_BIN)?;
        let broker_bin = find_binary(BROKER_BIN)?;
        let (dir, remove_dir) = match &opts.dir {
            Some(dir) => {
                clean_cluster_dir(dir)?;
                (absolute(dir)?, false)
            }
            None => (fresh_temp_dir()?, !keep_dirs()),
        };
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            match start_once(&opts, &namesrv_bin, &broker_bin, &dir, remove_dir) {
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
        let pid = |key: &str| -> Result<u32> {
            get(key)?.parse().with_context(|| format!("{key} in {}", env_file.display()))
        };
        let dir = PathBuf::from(get("CLUSTER_DIR")?);
        let cluster = Cluster {
            namesrv_addr: get("NAMESRV_ADDR")?,
            broker_addr: get("BROKER_ADDR")?,
            broker_name: get("BROKER_NAME")?,
            cluster_name: get("CLUSTER_NAME")?,
            namesrv: Server {
                name: "name server",
                pid: pid("NAMESRV_PID")?,
                child: None,
                log: dir.join("namesrv.log"),
            },
            broker: Server {
                name: "broker",
                pid: pid("BROKER_PID")?,
                child: None,
                log: dir.join("broker.log"),
            },
            dir,
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

    /// Pid of the broker process.
    pub fn broker_pid(&self) -> u32 {
        self.broker.pid
    }

    /// Path of the name server's log (stdout + stderr).
    pub fn namesrv_log(&self) -> &Path {
        &self.namesrv.log
    }

    /// Path of the broker's log (stdout + stderr).
    pub fn broker_log(&self) -> &Path {
        &self.broker.log
    }

    /// `KEY=value` lines describing the cluster (the content of `cluster.env`).
    pub fn env(&self) -> String {
        let mut out = String::new();
        for (key, value) in [
            ("NAMESRV_ADDR", self.namesrv_addr.clone()),
            ("BROKER_ADDR", self.broker_addr.clone()),
            ("BROKER_NAME", self.broker_name.clone()),
            ("CLUSTER_NAME", self.cluster_name.clone()),
            ("NAMESRV_PID", self.namesrv.pid.to_string()),
            ("BROKER_PID", self.broker.pid.to_string()),
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

    /// Errors unless the name server lists this broker at `broker_addr` and the broker answers.
    pub fn check_registered(&self) -> Result<()> {
        let info = cluster_info(&self.namesrv_addr)?;
        if !broker_listed(&info, &self.broker_name, &self.broker_addr) {
            bail!(
                "name server {} does not list broker {} at {}: {info}",
                self.namesrv_addr,
                self.broker_name,
                self.broker_addr
            );
        }
        rpc(&self.broker_addr, code::GET_BROKER_RUNTIME_INFO, &[], &[], REQUEST_TIMEOUT)
            .with_context(|| format!("broker {} does not answer", self.broker_addr))?;
        Ok(())
    }

    /// The last `lines` lines of both logs (ANSI colours stripped), for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        format!(
            "--- {} ---\n{}\n--- {} ---\n{}",
            self.namesrv.log.display(),
            tail(&self.namesrv.log, lines),
            self.broker.log.display(),
            tail(&self.broker.log, lines)
        )
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

    /// Stops both servers (SIGTERM, bounded wait, SIGKILL) and removes a temporary directory.
    /// Idempotent. Does nothing for an attached cluster.
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
        let broker = self.broker.stop();
        let namesrv = self.namesrv.stop();
        if self.remove_dir {
            fs::remove_dir_all(&self.dir).ok();
        }
        broker.and(namesrv)
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
    namesrv_bin: &Path,
    broker_bin: &Path,
    dir: &Path,
    remove_dir: bool,
) -> std::result::Result<Cluster, StartError> {
    let ports = pick_ports()?;
    let home = dir.join("home");
    let store = dir.join("store");
    fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
    let namesrv_addr = format!("127.0.0.1:{}", ports.namesrv);
    let broker_addr = format!("127.0.0.1:{}", ports.broker);

    let namesrv_conf = dir.join("namesrv.toml");
    write_file(&namesrv_conf, &namesrv_toml(&home, ports.namesrv))?;
    let broker_conf = dir.join("broker.toml");
    write_file(&broker_conf, &broker_toml(opts, &namesrv_addr, &store, &ports))?;

    let started = Instant::now();
    let namesrv_log = dir.join("namesrv.log");
    let namesrv = spawn_server(
        "name server",
        Command::new(namesrv_bin).arg("-c").arg(&namesrv_conf).args([
            "--listenPort",
            &ports.namesrv.to_string(),
            "--bindAddress",
            "127.0.0.1",
            "--log-filter",
            &opts.log_filter,
        ]),
        &home,
        &namesrv_log,
        opts.watchdog,
    )?;
    let broker_log = dir.join("broker.log");
    let mut cluster = Cluster {
        namesrv_addr,
        broker_addr,
        broker_name: opts.broker_name.clone(),
        cluster_name: opts.cluster_name.clone(),
        dir: dir.to_path_buf(),
        namesrv,
        broker: Server { name: "broker", pid: 0, child: None, log: broker_log.clone() },
        watchdog: None,
        remove_dir,
        stopped: false,
    };
    // From here on, dropping `cluster` on an error path stops what was started; the temporary
    // directory is removed by `Cluster::start` once no retry is due.
    cluster.remove_dir = false;
    if opts.watchdog {
        cluster.watchdog = Some(spawn_watchdog(remove_dir.then_some(dir))?);
        cluster.watch(cluster.namesrv.pid)?;
    }

    // The broker registers at start and then only every 30 s: start it once the name server
    // answers, or its first registration would be lost.
    wait_until(&mut cluster, opts.startup_timeout, "the name server to answer", |c| {
        cluster_info(&c.namesrv_addr).map(|_| ())
    })?;

    cluster.broker = spawn_server(
        "broker",
        Command::new(broker_bin).arg("-c").arg(&broker_conf).args([
            "-n",
            &cluster.namesrv_addr,
            "--log-filter",
            &opts.log_filter,
        ]),
        &home,
        &broker_log,
        opts.watchdog,
    )?;
    cluster.watch(cluster.broker.pid)?;

    wait_until(
        &mut cluster,
        opts.startup_timeout,
        "the broker to register with the name server",
        |c| c.check_registered(),
    )?;
    cluster.remove_dir = remove_dir;
    tracing::info!(
        namesrv = %cluster.namesrv_addr,
        broker = %cluster.broker_addr,
        dir = %cluster.dir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "local RocketMQ cluster ready"
    );
    Ok(cluster)
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
        for server in [&mut cluster.namesrv, &mut cluster.broker] {
            if server.pid == 0 {
                continue;
            }
            if let Some(status) = server.exited() {
                let log = tail(&server.log, 40);
                let error = anyhow!(
                    "the {} exited ({status}) while waiting for {what}{}; last lines of {}:\n{log}",
                    server.name,
                    disk_note(&cluster.dir),
                    server.log.display()
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

/// The disk usage of `dir` as the broker computes it (`1 - available/total`, from `df`), worded
/// for an error message: a broker refuses to start on a disk more than 90 % used, and says so
/// only as "Service lifecycle operation failed".
fn disk_note(dir: &Path) -> String {
    let Ok(out) = Command::new("df").arg("-Pk").arg(dir).output() else {
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
             rocketmq-rust refuses to start above 90 %: free disk space)",
            dir.display(),
            100.0 * (1.0 - avail / total),
            avail / (1024.0 * 1024.0)
        ),
        _ => String::new(),
    }
}

fn spawn_server(
    name: &'static str,
    command: &mut Command,
    home: &Path,
    log: &Path,
    watchdog: bool,
) -> Result<Server> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    // Nothing the test environment configures for RocketMQ (NAMESRV_ADDR, ROCKETMQ_*, RUST_LOG)
    // may leak into the servers; HOME is redirected so that no default path lands in the real
    // home directory.
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("ROCKETMQ") || key_str == "NAMESRV_ADDR" || key_str == "RUST_LOG" {
            command.env_remove(&key);
        }
    }
    command
        .env("HOME", home)
        .env("ROCKETMQ_HOME", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if !watchdog {
        // Detached: keep terminal signals (Ctrl-C in the shell that started it) away.
        command.process_group(0);
    }
    let child = command.spawn().with_context(|| format!("spawning the {name}: {command:?}"))?;
    Ok(Server { name, pid: child.id(), child: Some(child), log: log.to_path_buf() })
}

/// A `sh` process that reads pids (one a line) from its stdin until EOF — until every copy of the
/// write end is closed, i.e. until this process has exited, however it exited — then stops them
/// (TERM, bounded wait, KILL) and removes `remove_dir`. The write end is created close-on-exec, so
/// no other child inherits it. The watchdog runs in its own process group so that Ctrl-C does not
/// kill it before it has done its job. `Cluster::stop` kills it (SIGKILL) before stopping the
/// servers itself.
fn spawn_watchdog(remove_dir: Option<&Path>) -> Result<(Child, ChildStdin)> {
    // Pids arrive in start order (name server, broker); they are stopped in reverse order, as
    // the broker shuts down slowly once its name server is gone.
    const SCRIPT: &str = r#"
dir=$1; shift
pids=
while read -r p; do pids="$p $pids"; done
alive() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
for p in $pids; do
  # A server that died earlier may have had its pid reused: only signal our binaries.
  grep -qa 'rocketmq-[a-z]*-rust' "/proc/$p/cmdline" 2>/dev/null || continue
  kill -TERM "$p" 2>/dev/null || :
  i=0
  while alive "$p" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  if alive "$p"; then kill -KILL "$p" 2>/dev/null || :; fi
done
if [ -n "$dir" ]; then rm -rf "$dir"; fi
"#;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg("rmq-cluster-watchdog")
        .arg(remove_dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = command.spawn().context("spawning the cluster watchdog (sh)")?;
    let stdin = child.stdin.take().context("watchdog stdin")?;
    Ok((child, stdin))
}

/// Ports for one cluster: the broker also binds `broker - 2` (its "fast" remoting listener) and
/// `ha` (`haListenPort`: rocketmq-rust does not derive it from `listenPort`; its default is a fixed
/// 10912 on 0.0.0.0, so two default brokers on one machine collide).
#[derive(Debug, Clone, Copy)]
struct Ports {
    namesrv: u16,
    broker: u16,
    ha: u16,
}

fn pick_ports() -> Result<Ports> {
    // Ports handed to any cluster of this process are never handed out again, so concurrent starts
    // in one test binary cannot collide (another process still can: see `Cluster::start`).
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    // Hold every probe listener until all ports are chosen so that they are distinct.
    let mut held = Vec::new();
    let mut free_port = |wanted: u16| -> Option<u16> {
        let listener = TcpListener::bind(("127.0.0.1", wanted)).ok()?;
        let port = listener.local_addr().ok()?.port();
        if port <= 1024 + 2 || handed_out.contains(&port) {
            return None;
        }
        held.push(listener);
        Some(port)
    };
    let mut any_port = || (0..100).find_map(|_| free_port(0));
    let (Some(namesrv), Some(ha)) = (any_port(), any_port()) else {
        bail!("found no free loopback port");
    };
    for _ in 0..100 {
        let Some(broker) = free_port(0) else { continue };
        if free_port(broker - 2).is_some() {
            let ports = Ports { namesrv, broker, ha };
            handed_out.extend([namesrv, broker, broker - 2, ha]);
            return Ok(ports);
        }
    }
    bail!("found no free loopback port pair (p, p-2) for the broker")
}

fn namesrv_toml(home: &Path, port: u16) -> String {
    format!(
        "# Written by rmq-wasm-tests (cluster.rs).\n\
         rocketmqHome = {home}\n\
         kvConfigPath = {kv}\n\
         configStorePath = {store}\n\
         listenPort = {port}\n\
         bindAddress = \"127.0.0.1\"\n",
        home = toml_str(&home.display().to_string()),
        kv = toml_str(&home.join("kvConfig.json").display().to_string()),
        store = toml_str(&home.join("namesrv.properties").display().to_string()),
    )
}

/// The broker config in rocketmq-rust's canonical TOML form: unlike the Java properties form it
/// can set the listener bind address (`[broker.brokerServerConfig] bindAddress`), which otherwise
/// defaults to 0.0.0.0.
fn broker_toml(opts: &ClusterOptions, namesrv_addr: &str, store: &Path, ports: &Ports) -> String {
    let store_root = store.display().to_string();
    let commit_log = store.join("commitlog").display().to_string();
    let mut broker = vec![
        ("brokerIp1".to_owned(), toml_str("127.0.0.1")),
        ("listenPort".to_owned(), ports.broker.to_string()),
        ("namesrvAddr".to_owned(), toml_str(namesrv_addr)),
        ("storePathRootDir".to_owned(), toml_str(&store_root)),
        ("autoCreateTopicEnable".to_owned(), "true".to_owned()),
        ("autoCreateSubscriptionGroup".to_owned(), "true".to_owned()),
        ("enablePropertyFilter".to_owned(), opts.enable_property_filter.to_string()),
    ];
    let mut store_section = vec![
        ("storePathRootDir".to_owned(), toml_str(&store_root)),
        ("storePathCommitLog".to_owned(), toml_str(&commit_log)),
        ("haListenAddress".to_owned(), toml_str("127.0.0.1")),
        ("haListenPort".to_owned(), ports.ha.to_string()),
        ("messageDelayLevel".to_owned(), toml_str(&opts.message_delay_level)),
        // The store preallocates its files in full: 1 GiB of commit log, 400 MiB of index and
        // 6 MiB per consume queue by default, i.e. ~1.5 GB of disk per test cluster. Tests need
        // far less; rolling to a further file is ordinary broker behaviour.
        ("mappedFileSizeCommitLog".to_owned(), (64 * 1024 * 1024).to_string()),
        ("mappedFileSizeConsumeQueue".to_owned(), (6_000 * 20).to_string()),
        ("maxHashSlotNum".to_owned(), "50000".to_owned()),
        ("maxIndexNum".to_owned(), "200000".to_owned()),
        // A test store holds megabytes, but the broker judges the whole disk it lives on
        // (1 - available/total): past `diskMaxUsedSpaceRatio` (75 %) it wants to reclaim and,
        // past the warning level, marks itself "disk full" and rolls its startup back (exit
        // status 70) — routine on a build machine whose disk is mostly target directories.
        // The broker requires max < forcibly < warning and clamps them to 95/85/90 %: these
        // values make it healthy up to 85 % and refuse writes only above 90 %, and it never
        // deletes a test's files early.
        ("diskSpaceWarningLevelRatio".to_owned(), "99".to_owned()),
        ("diskSpaceCleanForciblyRatio".to_owned(), "98".to_owned()),
        ("diskMaxUsedSpaceRatio".to_owned(), "97".to_owned()),
        ("cleanFileForciblyEnable".to_owned(), "false".to_owned()),
    ];
    merge_props(&mut broker, &opts.broker_props);
    merge_props(&mut store_section, &opts.store_props);

    let mut out = String::from("# Written by rmq-wasm-tests (cluster.rs).\n[broker]\n");
    for (key, value) in &broker {
        let _ = writeln!(out, "{key} = {value}");
    }
    let _ = writeln!(
        out,
        "\n[broker.brokerIdentity]\nbrokerClusterName = {}\nbrokerName = {}\nbrokerId = 0",
        toml_str(&opts.cluster_name),
        toml_str(&opts.broker_name)
    );
    out.push_str("\n[broker.brokerServerConfig]\nbindAddress = \"127.0.0.1\"\n\n[store]\n");
    for (key, value) in &store_section {
        let _ = writeln!(out, "{key} = {value}");
    }
    out
}

/// Replaces or appends `extra` (raw values, formatted here) in `props` (already-formatted values).
fn merge_props(props: &mut Vec<(String, String)>, extra: &[(String, String)]) {
    for (key, value) in extra {
        let formatted = if value == "true"
            || value == "false"
            || value.parse::<i64>().is_ok()
            || value.parse::<u64>().is_ok()
        {
            value.clone()
        } else {
            toml_str(value)
        };
        match props.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = formatted,
            None => props.push((key.clone(), formatted)),
        }
    }
}

fn toml_str(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Finds `name` on `PATH`, then in `$CARGO_HOME/bin` (default `~/.cargo/bin`).
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
    }
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin").join(name));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo").join("bin").join(name));
    }
    candidates.into_iter().find(|path| path.is_file()).ok_or_else(|| {
        anyhow!(
            "`{name}` was not found on PATH or in ~/.cargo/bin; install rocketmq-rust 1.0.0 with \
             scripts/install-cluster.sh"
        )
    })
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))
}

fn fresh_temp_dir() -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "rmq-wasm-cluster-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn keep_dirs() -> bool {
    std::env::var_os(KEEP_DIR_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Removes what a previous cluster left in `dir` (only the files this module creates).
pub fn clean_cluster_dir(dir: &Path) -> Result<()> {
    for sub in ["store", "home"] {
        let path = dir.join(sub);
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for file in ["namesrv.toml", "broker.toml", "namesrv.log", "broker.log", ENV_FILE] {
        let path = dir.join(file);
        if path.exists() {
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

// ---------------------------------------------------------------------------------------------
// Processes that are not our children (the `cluster` CLI's stop/status).

/// True when `pid` exists and is not a zombie. (Orphaned servers are reparented to PID 1, which
/// on some CI machines never reaps them.)
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

/// True when `pid` is alive and runs one of the two server binaries (guards against pid reuse).
pub fn is_rocketmq_process(pid: u32) -> bool {
    pid_alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains(NAMESRV_BIN) || cmd.contains(BROKER_BIN)
        })
}

/// `kill -SIG pid` through `sh` (its builtin `kill`; a `kill` binary is not always installed).
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("sh")
        .args(["-c", "kill -\"$1\" \"$2\" 2>/dev/null", "sh", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, bounded wait, SIGKILL — for a rocketmq process that is not our child.
pub fn stop_pid(pid: u32) -> Result<()> {
    if !is_rocketmq_process(pid) {
        return Ok(());
    }
    signal(pid, "TERM");
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    signal(pid, "KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return Ok(());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    bail!("process {pid} survived SIGKILL")
}

// ---------------------------------------------------------------------------------------------
// A tiny synchronous remoting client (JSON header, serializeTypeCurrentRPC=JSON).

/// A decoded response.
#[derive(Debug, Clone)]
pub struct RpcResponse {
    /// Response code (0 = SUCCESS).
    pub code: i32,
    /// `remark`, if any.
    pub remark: Option<String>,
    /// `extFields` (string values; non-string JSON values are rendered as JSON).
    pub ext_fields: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl RpcResponse {
    /// Errors unless the code is SUCCESS.
    pub fn success(self) -> Result<RpcResponse> {
        if self.code != code::SUCCESS {
            bail!("response code {} ({})", self.code, self.remark.as_deref().unwrap_or(""));
        }
        Ok(self)
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!("response body is not JSON: {}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// Sends one request (fresh connection) and returns the response. Ext-field values are sent as
/// JSON strings, as the Java client does.
pub fn rpc(
    addr: &str,
    request_code: i32,
    ext_fields: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<RpcResponse> {
    static OPAQUE: AtomicI32 = AtomicI32::new(1);
    let opaque = OPAQUE.fetch_add(1, Ordering::Relaxed);
    let mut header = serde_json::json!({
        "code": request_code,
        "flag": 0,
        "language": "RUST",
        "opaque": opaque,
        "serializeTypeCurrentRPC": "JSON",
        "version": 401,
    });
    if !ext_fields.is_empty() {
        let ext: serde_json::Map<String, serde_json::Value> = ext_fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
            .collect();
        header["extFields"] = serde_json::Value::Object(ext);
    }
    let header = serde_json::to_vec(&header)?;
    let total = 4 + header.len() + body.len();
    let mut frame = Vec::with_capacity(4 + total);
    frame.extend_from_slice(&(total as i32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as i32).to_be_bytes()); // serialize type 0 = JSON
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);

    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    if !sock.ip().is_loopback() {
        bail!("refusing to connect to non-loopback address {sock}");
    }
    let mut stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true).ok();
    stream.write_all(&frame).with_context(|| format!("writing to {addr}"))?;

    let deadline = Instant::now() + timeout;
    loop {
        let response = read_frame(&mut stream).with_context(|| {
            format!("reading the response to request code {request_code} from {addr}")
        })?;
        if response.0 == opaque {
            return Ok(response.1);
        }
        // Not ours (e.g. a server-initiated request): skip it.
        if Instant::now() >= deadline {
            bail!("no response with opaque {opaque} from {addr}");
        }
    }
}

fn read_frame(stream: &mut TcpStream) -> Result<(i32, RpcResponse)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).context("connection closed before a response")?;
    let len = i32::from_be_bytes(len);
    if len < 4 || len as usize > MAX_FRAME {
        bail!("invalid frame length {len}");
    }
    let mut frame = vec![0u8; len as usize];
    stream.read_exact(&mut frame).context("truncated frame")?;
    let word = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
    let serialize_type = (word >> 24) as u8;
    let header_len = (word & 0x00FF_FFFF) as usize;
    if 4 + header_len > frame.len() {
        bail!("header length {header_len} exceeds frame length {len}");
    }
    let header = &frame[4..4 + header_len];
    let body = frame[4 + header_len..].to_vec();
    let (opaque, code, remark, ext_fields) = match serialize_type {
        0 => decode_json_header(header)?,
        1 => decode_binary_header(header)?,
        other => bail!("unknown serialize type {other}"),
    };
    Ok((opaque, RpcResponse { code, remark, ext_fields, body }))
}

type Header = (i32, i32, Option<String>, BTreeMap<String, String>);

fn decode_json_header(header: &[u8]) -> Result<Header> {
    let value: serde_json::Value = serde_json::from_slice(header).with_context(|| {
        format!("response header is not JSON: {}", String::from_utf8_lossy(header))
    })?;
    let int = |key: &str| value.get(key).and_then(serde_json::Value::as_i64).unwrap_or(0) as i32;
    let remark = value.get("remark").and_then(serde_json::Value::as_str).map(str::to_owned);
    let ext = value
        .get("extFields")
        .and_then(serde_json::Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((int("opaque"), int("code"), remark, ext))
}

/// The ROCKETMQ binary header: code i16, language u8, version i16, opaque i32, flag i32,
/// remark (i32 len + bytes), ext fields (i32 len + repeated [i16 klen, key, i32 vlen, value]).
fn decode_binary_header(header: &[u8]) -> Result<Header> {
    struct Cursor<'a>(&'a [u8]);
    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> Result<&[u8]> {
            if self.0.len() < n {
                bail!("truncated binary header");
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn i16(&mut self) -> Result<i16> {
            Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
        }
        fn i32(&mut self) -> Result<i32> {
            Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
        }
        fn string(&mut self, len: usize) -> Result<String> {
            Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
        }
    }
    let mut c = Cursor(header);
    let code = i32::from(c.i16()?);
    c.take(1)?; // language
    c.i16()?; // version
    let opaque = c.i32()?;
    c.i32()?; // flag
    let remark_len = c.i32()?;
    let remark = if remark_len > 0 { Some(c.string(remark_len as usize)?) } else { None };
    let ext_len = c.i32()?;
    let mut ext = BTreeMap::new();
    if ext_len > 0 {
        let mut fields = Cursor(c.take(ext_len as usize)?);
        while !fields.0.is_empty() {
            let klen = fields.i16()?;
            let key = fields.string(klen.max(0) as usize)?;
            let vlen = fields.i32()?;
            let value = fields.string(vlen.max(0) as usize)?;
            ext.insert(key, value);
        }
    }
    Ok((opaque, code, remark, ext))
}

/// GET_BROKER_CLUSTER_INFO from a name server: `{"brokerAddrTable": {...}, "clusterAddrTable":
/// {...}}`.
pub fn cluster_info(namesrv_addr: &str) -> Result<serde_json::Value> {
    rpc(namesrv_addr, code::GET_BROKER_CLUSTER_INFO, &[], &[], REQUEST_TIMEOUT)?.success()?.json()
}

/// GET_ROUTEINFO_BY_TOPIC from a name server; `None` when the topic does not exist.
pub fn topic_route(namesrv_addr: &str, topic: &str) -> Result<Option<serde_json::Value>> {
    let response =
        rpc(namesrv_addr, code::GET_ROUTEINFO_BY_TOPIC, &[("topic", topic)], &[], REQUEST_TIMEOUT)?;
    match response.code {
        code::TOPIC_NOT_EXIST => Ok(None),
        _ => Ok(Some(response.success()?.json()?)),
    }
}

/// True when `info` (a cluster info body) lists `broker_name` with master address `broker_addr`.
pub fn broker_listed(info: &serde_json::Value, broker_name: &str, broker_addr: &str) -> bool {
    info.get("brokerAddrTable")
        .and_then(|table| table.get(broker_name))
        .and_then(|broker| broker.get("brokerAddrs"))
        .and_then(|addrs| addrs.get("0"))
        .and_then(serde_json::Value::as_str)
        == Some(broker_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ansi() {
        assert_eq!(strip_ansi("\u{1b}[2mtime\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"), "time  INFO x");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn broker_toml_has_loopback_and_overrides() {
        let opts = ClusterOptions {
            store_props: vec![("messageDelayLevel".into(), "2s".into())],
            broker_props: vec![("defaultTopicQueueNums".into(), "4".into())],
            ..ClusterOptions::default()
        };
        let ports = Ports { namesrv: 1, broker: 5000, ha: 6000 };
        let toml = broker_toml(&opts, "127.0.0.1:1", Path::new("/s"), &ports);
        assert!(toml.contains("brokerIp1 = \"127.0.0.1\""), "{toml}");
        assert!(toml.contains("bindAddress = \"127.0.0.1\""), "{toml}");
        assert!(toml.contains("messageDelayLevel = \"2s\""), "{toml}");
        assert!(!toml.contains(TEST_DELAY_LEVELS), "{toml}");
        assert!(toml.contains("defaultTopicQueueNums = 4"), "{toml}");
        assert!(toml.contains("haListenPort = 6000"), "{toml}");
    }

    #[test]
    fn binary_header_decodes() {
        let mut h = Vec::new();
        h.extend_from_slice(&17i16.to_be_bytes());
        h.push(0);
        h.extend_from_slice(&401i16.to_be_bytes());
        h.extend_from_slice(&7i32.to_be_bytes());
        h.extend_from_slice(&1i32.to_be_bytes());
        h.extend_from_slice(&2i32.to_be_bytes());
        h.extend_from_slice(b"no");
        let mut ext = Vec::new();
        ext.extend_from_slice(&1i16.to_be_bytes());
        ext.extend_from_slice(b"k");
        ext.extend_from_slice(&1i32.to_be_bytes());
        ext.extend_from_slice(b"v");
        h.extend_from_slice(&(ext.len() as i32).to_be_bytes());
        h.extend_from_slice(&ext);
        let (opaque, code, remark, ext) = decode_binary_header(&h).unwrap();
        assert_eq!((opaque, code, remark.as_deref()), (7, 17, Some("no")));
        assert_eq!(ext.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn picked_ports_are_distinct_and_fresh() {
        let a = pick_ports().unwrap();
        let b = pick_ports().unwrap();
        let all =
            [a.namesrv, a.broker, a.broker - 2, a.ha, b.namesrv, b.broker, b.broker - 2, b.ha];
        let set: BTreeSet<u16> = all.iter().copied().collect();
        assert_eq!(set.len(), all.len(), "{all:?}");
    }

    #[test]
    fn pid_alive_sees_self_and_not_nonsense() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}

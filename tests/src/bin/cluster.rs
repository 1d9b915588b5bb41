//! `cluster start|stop|status [--dir D]`: a local RocketMQ cluster (name server + brokers on
//! 127.0.0.1; Apache RocketMQ 5.3 by default, `--flavour java4|rust` or `RMQ_CLUSTER_FLAVOUR` for
//! the others) for the demo and manual runs, left running detached. `start` writes `cluster.env`
//! (FLAVOUR, NAMESRV_ADDR, BROKER_ADDR, BROKERS, pids, ...) into the directory and prints it;
//! `stop` and `status` read it. Tests can reuse such a cluster with
//! `RMQ_TEST_CLUSTER_ENV=<dir>/cluster.env`.
//!
//! `cluster run [--flavour F] -- COMMAND...` is that reuse for a whole test run (scripts/test.sh):
//! one fresh cluster, shared by every test binary COMMAND starts, instead of one JVM name server
//! and broker started (~10 s) and warmed up per binary; stopped when COMMAND ends, and by the
//! watchdog if this process dies first.

use std::ffi::OsString;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::ExitCode;

use anyhow::Context;
use anyhow::Result;
use clap::Parser;
use clap::Subcommand;
use rmq_wasm_tests::cluster;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::cluster::ClusterOptions;

#[derive(Debug, Parser)]
#[command(about = "Start, stop or inspect a local RocketMQ cluster on 127.0.0.1")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a fresh cluster (fresh store, free ports) and leave it running; print its env.
    Start {
        #[command(flatten)]
        dir: DirArg,
        /// messageDelayLevel for the broker: `test` (default; 18 levels of 1 s each, as the tests
        /// use, so consumer retries come back quickly), `stock` (1s 5s 10s 30s 1m ... 2h), or an
        /// explicit list such as "1s 5s 10s".
        #[arg(long, default_value = "test")]
        delay_levels: String,
        /// Bound on the wait for the brokers to register, in seconds.
        #[arg(long, default_value_t = 90)]
        timeout_secs: u64,
        /// The implementation: java5 (Apache RocketMQ 5.3), java4 (4.9) or rust (rocketmq-rust
        /// 1.0.0). Default: `RMQ_CLUSTER_FLAVOUR`, else java5.
        #[arg(long)]
        flavour: Option<cluster::Flavour>,
        /// Brokers: `single` (broker-a), `two-masters` (broker-a, broker-b) or `master-slave`
        /// (broker-a with a slave; Java only).
        #[arg(long, default_value = "single", value_parser = parse_topology)]
        topology: cluster::Topology,
    },
    /// Start a fresh cluster (temporary directory, test delay levels, watchdog), run COMMAND with
    /// `RMQ_TEST_CLUSTER_ENV` naming it, stop the cluster and exit with COMMAND's status.
    ///
    /// Example: `cluster run --flavour java5 -- cargo test --workspace`
    Run {
        /// The implementation, as for `start`.
        #[arg(long)]
        flavour: Option<cluster::Flavour>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Stop the cluster recorded in the directory.
    Stop {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Print the env of the cluster in the directory and whether it is serving (exit 1 if not).
    Status {
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(Debug, clap::Args)]
struct DirArg {
    /// Cluster directory (default: `target/local-cluster` in the workspace).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl DirArg {
    fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| {
            cluster::flavour::workspace_root().join("target").join("local-cluster")
        })
    }
}

fn parse_topology(value: &str) -> Result<cluster::Topology, String> {
    match value {
        "single" => Ok(cluster::Topology::Single),
        "two-masters" => Ok(cluster::Topology::TwoMasters),
        "master-slave" => Ok(cluster::Topology::MasterSlave),
        other => Err(format!("unknown topology `{other}`: single, two-masters or master-slave")),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Cmd::Start { dir, delay_levels, timeout_secs, flavour, topology } => {
            let dir = dir.path();
            let env_file = dir.join(cluster::ENV_FILE);
            if env_file.exists() {
                if let Ok(running) = Cluster::attach(&env_file) {
                    eprintln!("already running (stop it first for a fresh store)");
                    print!("{}", running.env());
                    return Ok(ExitCode::SUCCESS);
                }
                stop_recorded(&env_file)?;
            }
            let opts = ClusterOptions {
                dir: Some(dir.clone()),
                message_delay_level: match delay_levels.as_str() {
                    "test" => cluster::TEST_DELAY_LEVELS.to_owned(),
                    "stock" => cluster::DEFAULT_DELAY_LEVELS.to_owned(),
                    levels => levels.to_owned(),
                },
                startup_timeout: std::time::Duration::from_secs(timeout_secs),
                watchdog: false,
                flavour,
                topology,
                ..ClusterOptions::default()
            };
            let started = std::time::Instant::now();
            let cluster = Cluster::start(opts)?;
            let env_file = cluster.write_env_file()?;
            eprintln!(
                "{} cluster ready in {:.1}s; env in {}, logs in {}",
                cluster.flavour,
                started.elapsed().as_secs_f64(),
                env_file.display(),
                cluster.dir.display()
            );
            print!("{}", cluster.env());
            cluster.detach();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { flavour, command } => run_with_cluster(flavour, &command),
        Cmd::Stop { dir } => {
            let env_file = dir.path().join(cluster::ENV_FILE);
            if !env_file.exists() {
                eprintln!("no cluster recorded in {}", env_file.display());
                return Ok(ExitCode::SUCCESS);
            }
            stop_recorded(&env_file)?;
            eprintln!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { dir } => {
            let env_file = dir.path().join(cluster::ENV_FILE);
            if !env_file.exists() {
                eprintln!("no cluster recorded in {}", env_file.display());
                return Ok(ExitCode::FAILURE);
            }
            match Cluster::attach(&env_file) {
                Ok(running) => {
                    print!("{}", running.env());
                    eprintln!("serving");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("not serving: {error:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// `cluster run`: the cluster lives exactly as long as the command.
fn run_with_cluster(flavour: Option<cluster::Flavour>, command: &[OsString]) -> Result<ExitCode> {
    let (program, args) = command.split_first().context("no command to run")?;
    let started = std::time::Instant::now();
    let mut cluster = Cluster::start(ClusterOptions { flavour, ..ClusterOptions::default() })?;
    let env_file = cluster.write_env_file()?;
    eprintln!(
        "{} cluster ready in {:.1}s for `{}` (logs in {})",
        cluster.flavour,
        started.elapsed().as_secs_f64(),
        program.to_string_lossy(),
        cluster.dir.display()
    );
    let status = Command::new(program)
        .args(args)
        .env(cluster::ATTACH_ENV, &env_file)
        .status()
        .with_context(|| format!("running `{}`", program.to_string_lossy()));
    cluster.stop()?;
    let status = status?;
    // A command killed by a signal has no code: a failure all the same.
    Ok(status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .map_or(ExitCode::FAILURE, ExitCode::from))
}

/// Stops the pids recorded in `env_file` (brokers first, in reverse order) and removes the file.
fn stop_recorded(env_file: &Path) -> Result<()> {
    let env = cluster::read_env_file(env_file)?;
    let mut pids: Vec<String> = env
        .get("BROKERS")
        .map(|brokers| {
            brokers
                .split_whitespace()
                .filter_map(|b| b.rsplit('/').next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    pids.reverse();
    pids.extend(env.get("BROKER_PID").cloned());
    pids.extend(env.get("NAMESRV_PID").cloned());
    for pid in pids {
        if let Ok(pid) = pid.parse::<u32>() {
            cluster::stop_pid(pid).with_context(|| format!("stopping pid {pid}"))?;
        }
    }
    std::fs::remove_file(env_file).with_context(|| format!("removing {}", env_file.display()))?;
    Ok(())
}

//! Command-line entry points. `anyhow` lives here and in `main.rs` only: this is the edge where
//! typed errors become messages for a person.

pub mod config_check;
pub mod config_doc;
mod config_map;
pub mod env;
pub mod ops;
mod reload;
pub mod run;
pub mod show;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, Subcommand};

use crate::client::admin::TopicSpec;
use crate::client::{Admin, BrokerClient, NameServerClient, Producer, ProducerConfig};
use crate::protocol::message::Message;
use crate::remoting::ConnectionPool;

/// A RocketMQ push-consumer host for WebAssembly listeners.
#[derive(Debug, Parser)]
#[command(name = "rmq-wasm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run push consumers whose listeners are Wasm components, as a TOML file describes them
    /// (see `rmq_wasm::cli::run`); Ctrl-C or SIGTERM shuts them down gracefully.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Shut down after this long (e.g. `30s`) instead of waiting for Ctrl-C: for demos.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Print a topic's route as the name server reports it.
    Route {
        /// Name servers, `host:port[;host:port…]`.
        #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        topic: String,
    },
    /// Create (or update) a topic on every master of a cluster and wait for its route.
    CreateTopic {
        #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(long, default_value = "DefaultCluster")]
        cluster: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 8)]
        queues: i32,
    },
    /// Send sample messages (for demos and load).
    Produce {
        #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Tags to rotate through, comma-separated.
        #[arg(long, default_value = "TagA,TagB")]
        tags: String,
        /// Body size in bytes; bodies are JSON with padding up to this size.
        #[arg(long, default_value_t = 128)]
        body_size: usize,
        /// Messages per SEND_BATCH_MESSAGE (1 = single sends).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Print a topic's messages (every field) without touching any group's offsets.
    #[command(alias = "tail")]
    Peek(ops::PeekArgs),
    /// A consumer group's dead letters: list them, re-deliver chosen ones.
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// Move a group's offsets of a topic through the broker, so running consumers follow.
    ResetOffset(ops::ResetOffsetArgs),
    /// The `run` config file: check one, or list every key with its default.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Report every problem of a config file (file:line: key: message); exit status 1 if any.
    Check { file: PathBuf },
    /// Every key with its default and meaning (Markdown), as the parser reads them.
    Defaults,
}

/// Runs the binary.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let colour = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(colour)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(run(cli))
}

/// Colour in log lines only for a person at a terminal: a file or a pipe gets plain text (escape
/// codes there only get in the way of grep), and a non-empty `NO_COLOR` turns it off
/// (no-color.org).
fn use_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

fn clients(namesrv: &str) -> anyhow::Result<(NameServerClient, BrokerClient)> {
    let pool = ConnectionPool::default();
    let namesrv = NameServerClient::new(pool.clone(), NameServerClient::parse_addrs(namesrv))
        .context("--namesrv")?;
    Ok((namesrv, BrokerClient::new(pool)))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, duration } => run::run(&config, duration).await?,
        Command::Route { namesrv, topic } => {
            let (namesrv, _) = clients(&namesrv)?;
            match namesrv.route(&topic).await? {
                Some(route) => println!("{}", serde_json::to_string_pretty(&route)?),
                None => anyhow::bail!("topic {topic} has no route"),
            }
        }
        Command::CreateTopic { namesrv, cluster, topic, queues } => {
            let (namesrv, broker) = clients(&namesrv)?;
            let admin = Admin::new(namesrv, broker);
            let route = admin
                .create_topic(&cluster, &TopicSpec::new(&topic, queues), Duration::from_secs(30))
                .await
                .with_context(|| format!("creating topic {topic}"))?;
            println!("topic {topic}: {} queues", route.subscribe_queues(&topic).len());
        }
        Command::Produce { namesrv, topic, count, tags, body_size, batch } => {
            let (namesrv, broker) = clients(&namesrv)?;
            let producer = Producer::new(namesrv, broker, ProducerConfig::default());
            let tags: Vec<&str> =
                tags.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
            let make = |i: usize| {
                let mut body = format!("{{\"seq\":{i},\"pad\":\"");
                while body.len() + 2 < body_size {
                    body.push('x');
                }
                body.push_str("\"}");
                let mut msg =
                    Message::new(&topic, Bytes::from(body)).with_keys([format!("seq-{i}")]);
                if let Some(tag) = tags.get(i % tags.len().max(1)) {
                    msg = msg.with_tags(*tag);
                }
                msg
            };
            let started = std::time::Instant::now();
            let batch = batch.max(1);
            let mut sent = 0;
            while sent < count {
                let n = batch.min(count - sent);
                if n == 1 {
                    producer.send(make(sent)).await?;
                } else {
                    let msgs = (sent..sent + n).map(make).collect();
                    producer.send_batch(msgs, crate::client::QueueSelector::RoundRobin).await?;
                }
                sent += n;
            }
            let secs = started.elapsed().as_secs_f64();
            println!("sent {count} messages to {topic} in {secs:.2} s");
        }
        Command::Peek(args) => ops::peek(args).await?,
        Command::Dlq(command) => ops::dlq(command).await?,
        Command::ResetOffset(args) => ops::reset(args).await?,
        Command::Config(ConfigCommand::Defaults) => print!("{}", config_doc::render()),
        Command::Config(ConfigCommand::Check { file }) => {
            let problems = config_check::check_file(&file)?;
            for p in &problems {
                println!("{p}");
            }
            if !problems.is_empty() {
                anyhow::bail!("{}: {} problem(s)", file.display(), problems.len());
            }
            println!("{}: ok", file.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let table = [
            (true, None, true),
            (false, None, false),
            (true, Some("1"), false),
            (true, Some(""), true),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, expected) in table {
            assert_eq!(use_colour(terminal, no_color.map(OsStr::new)), expected, "{no_color:?}");
        }
    }
}

//! Command-line entry points. `anyhow` lives here and in `main.rs` only: this is the edge where
//! typed errors become messages for a person.

mod capture;
mod cluster_choice;
pub mod config_check;
pub mod config_doc;
mod config_map;
pub mod env;
pub mod ops;
mod plugin;
mod produce;
mod reload;
pub mod run;
pub mod show;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::client::admin::TopicSpec;
use crate::client::{Admin, BrokerClient, NameServerClient, Producer, ProducerConfig};
use crate::remoting::ConnectionPool;

/// A RocketMQ push-consumer host for WebAssembly listeners.
#[derive(Debug, Parser)]
#[command(name = "rmq-wasm", version, about)]
pub(crate) struct Cli {
    /// Log lines as text (default) or as JSON objects, one a line, each with the listener,
    /// group, topic and queue it concerns (its spans).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run push consumers whose listeners are Wasm components, as a TOML file describes them
    /// (see `rmq_wasm::cli::run`); Ctrl-C or SIGTERM shuts them down gracefully.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Shut down after this long (e.g. `30s`) instead of waiting for Ctrl-C: for demos.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Show a running `rmq-wasm run` (its `[http]` endpoint): listeners, owned queues with
    /// offsets and lag, plugin versions, limits, aborts.
    Status {
        /// The endpoint's `host:port` (`http.listen` in the run config).
        #[arg(long, default_value = "127.0.0.1:9100")]
        addr: String,
        /// Print the endpoint's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print one line per listener every interval (e.g. `1s`) until Ctrl-C: messages per
        /// second, outcomes, aborts, lag, plugin version and reloads.
        #[arg(long, value_name = "INTERVAL", value_parser = humantime::parse_duration, conflicts_with = "json")]
        watch: Option<Duration>,
    },
    /// Print a topic's route as the name server reports it.
    Route {
        /// Name servers, `host:port[;host:port…]`.
        #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[command(flatten)]
        topic: TopicArg,
    },
    /// Create (or update) a topic on every master of a cluster and wait for its route.
    CreateTopic {
        #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        /// Default: the only cluster the name server knows.
        #[arg(long, env = "CLUSTER_NAME")]
        cluster: Option<String>,
        #[command(flatten)]
        topic: TopicArg,
        #[arg(long, default_value_t = 8)]
        queues: i32,
    },
    /// Send messages: sample JSON bodies (for demos and load), or your own (`--body`,
    /// `--body-file`, stdin) with keys, a tag and properties.
    Produce(produce::ProduceArgs),
    /// Print a topic's messages (every field) without touching any group's offsets.
    #[command(alias = "tail")]
    Peek(ops::PeekArgs),
    /// Write a topic's messages to a JSONL fixture for `plugin test` (no offsets touched).
    ///
    /// Every field, the body base64; read like `peek`, so no group's offsets move.
    #[command(after_help = capture::EXAMPLES)]
    Capture(capture::CaptureArgs),
    /// A consumer group's dead letters: list them, re-deliver chosen ones.
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// Move a group's offsets of a topic through the broker, so running consumers follow.
    ResetOffset(ops::ResetOffsetArgs),
    /// The `run` config file: check one, or list every key with its default.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// `run`, plus: every listener built from a `plugin new` project is rebuilt when its sources
    /// change and hot-reloaded; a failed build keeps the running version serving.
    #[command(
        after_help = "Examples:\n  rmq-wasm plugin new --lang go orders && rmq-wasm dev --config dev.toml\n  \
        # dev.toml: [[listener]] wasm = \"orders/orders.wasm\" (built first if missing)"
    )]
    Dev(plugin::dev::DevArgs),
    /// Plugin authors' tools: `new`, `build`, `componentize`, `check` a component, `test` it on
    /// a message fixture.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Report every problem of a config file (file:line: key: message); exit status 1 if any.
    Check { file: PathBuf },
    /// Every key with its default and meaning (Markdown), as the parser reads them.
    Defaults,
}

/// A topic, as the positional `TOPIC` or `--topic TOPIC` (every verb accepts both).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct TopicArg {
    /// The topic.
    #[arg(value_name = "TOPIC")]
    topic: Option<String>,
    /// The topic (the same as the positional TOPIC).
    #[arg(long = "topic", value_name = "TOPIC")]
    topic_flag: Option<String>,
}

impl TopicArg {
    pub(crate) fn get(&self) -> &str {
        // clap's group makes exactly one of them present.
        self.topic.as_deref().or(self.topic_flag.as_deref()).unwrap_or_default()
    }
}

/// Runs the binary.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let colour = use_colour(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cli.log_format {
        // Text lines keep their shape (tools grep their fields): the context spans are off.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter.add_directive(context_spans_off()))
            .with_ansi(colour)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_env_filter(filter)
            .init(),
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(run(cli))
}

/// Disables the spans that carry a line's context (listener, group, topic, queue; target
/// [`crate::SPAN_TARGET`]).
fn context_spans_off() -> tracing_subscriber::filter::Directive {
    format!("{}=off", crate::SPAN_TARGET).parse().expect("a valid directive")
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
        Command::Dev(args) => plugin::dev::dev(args).await?,
        Command::Status { addr, json: _, watch: Some(every) } => {
            ops::watch_status(&addr, every).await?
        }
        Command::Status { addr, json, watch: None } => {
            let (body, status) = ops::fetch_status(&addr).await?;
            if json {
                println!("{body}");
            } else {
                print!("{}", status.table());
            }
        }
        Command::Route { namesrv, topic } => {
            let (namesrv, _) = clients(&namesrv)?;
            let topic = topic.get();
            match namesrv.route(topic).await? {
                Some(route) => println!("{}", serde_json::to_string_pretty(&route)?),
                None => anyhow::bail!("topic {topic} has no route"),
            }
        }
        Command::CreateTopic { namesrv: addrs, cluster, topic, queues } => {
            let (namesrv, broker) = clients(&addrs)?;
            let topic = topic.get();
            let info =
                namesrv.cluster_info().await.context("reading the name server's clusters")?;
            let cluster = cluster_choice::choose_cluster(cluster.as_deref(), &info, &addrs)?;
            let admin = Admin::new(namesrv, broker);
            let route = admin
                .create_topic(&cluster, &TopicSpec::new(topic, queues), Duration::from_secs(30))
                .await
                .with_context(|| format!("creating topic {topic} in cluster {cluster}"))?;
            println!(
                "topic {topic}: {} queues in cluster {cluster}",
                route.subscribe_queues(topic).len()
            );
        }
        Command::Produce(args) => {
            let (namesrv, broker) = clients(&args.namesrv)?;
            let producer = Producer::new(namesrv, broker, ProducerConfig::default());
            produce::produce(args, producer).await?;
        }
        Command::Peek(args) => ops::peek(args).await?,
        Command::Dlq(command) => ops::dlq(command).await?,
        Command::ResetOffset(args) => ops::reset(args).await?,
        Command::Capture(args) => capture::capture(args).await?,
        Command::Plugin(command) => plugin::run(command).await?,
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

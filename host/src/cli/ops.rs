//! The operators' verbs: `status`, `peek` (alias `tail`), `dlq list|resend`, `reset-offset`. Argument
//! parsing and printing only; the work is in [`crate::ops`].

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::show::{self, Format};
use crate::client::{ClientError, Producer, ProducerConfig};
use crate::ops::dlq::{DeadLetter, DeadLetters, Filter};
use crate::ops::reader::{ReadQueue, StartAt, TopicReader, select_queues};
use crate::ops::reset::{ResetTo, reset_offset};
use crate::protocol::QueueOffset;
use crate::protocol::message::MessageExt;

/// How long a followed queue's pull may wait at the broker for new messages.
const FOLLOW_SUSPEND: Duration = Duration::from_secs(15);

/// Pause after a failed pull while following, so a broker restart is not hammered.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// A running host's `/status`: the body as it came and parsed.
pub async fn fetch_status(addr: &str) -> anyhow::Result<(String, crate::ops::Status)> {
    let (code, body) = crate::ops::http::get(addr, "/status", Duration::from_secs(10))
        .await
        .with_context(|| format!("rmq-wasm status: {addr}"))?;
    if !code.is_success() {
        anyhow::bail!("{addr}/status answered {code}: {body}");
    }
    let status = serde_json::from_str(&body)
        .with_context(|| format!("{addr}/status is not an rmq-wasm status"))?;
    Ok((body, status))
}

/// `status --watch`: a line per listener every `every`, until Ctrl-C. An endpoint that does not
/// answer (not started yet, restarting, gone) is reported on its line and asked again at the
/// next tick: a watch outlives the process it watches.
pub async fn watch_status(addr: &str, every: Duration) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<(std::time::Instant, crate::ops::Status)> = None;
    let mut out = std::io::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => return Ok(()),
        }
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        match fetch_status(addr).await {
            Ok((_, status)) => {
                let taken = std::time::Instant::now();
                let elapsed = previous.as_ref().map_or(Duration::ZERO, |(at, _)| taken - *at);
                let lines = status.watch_lines(previous.as_ref().map(|(_, s)| s), elapsed);
                for line in lines.lines() {
                    writeln!(out, "{now} {line}")?;
                }
                previous = Some((taken, status));
            }
            Err(e) => writeln!(out, "{now} {e:#}")?,
        }
        out.flush()?;
    }
}

/// The queues a reading verb (`peek`, `capture`) reads: a topic's, or one queue id of it.
#[derive(Debug, Args)]
pub struct TopicQueues {
    #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[arg(long)]
    pub topic: String,
    /// Only this queue id (on every broker serving the topic).
    #[arg(long)]
    pub queue: Option<i32>,
}

impl TopicQueues {
    /// A reader and the readable queues chosen; an error names the topic and queue when there
    /// is none.
    pub async fn open(&self) -> anyhow::Result<(TopicReader, Vec<ReadQueue>)> {
        let (namesrv, broker) = super::clients(&self.namesrv)?;
        let reader = TopicReader::new(namesrv, broker);
        let all =
            reader.queues(&self.topic).await.with_context(|| format!("topic {}", self.topic))?;
        let queues = select_queues(all, self.queue);
        if queues.is_empty() {
            anyhow::bail!("topic {} has no readable queue {:?}", self.topic, self.queue);
        }
        Ok((reader, queues))
    }
}

/// `peek`: print a topic's messages without touching any group's offsets.
#[derive(Debug, Args)]
pub struct PeekArgs {
    #[command(flatten)]
    pub source: TopicQueues,
    /// Where to start in each queue: `first`, `last` (only what arrives next), `last-N`, or a
    /// queue offset.
    #[arg(long, default_value = "last-10")]
    pub from: StartAt,
    /// At most this many messages (before following).
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Keep printing new messages until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Body bytes printed in text form (JSON always carries the whole body).
    #[arg(long, default_value_t = 1024)]
    pub max_body: usize,
}

/// `dlq`: a group's dead letters.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with why they died (reason, plugin, version, abort kind, fuel used)
    /// and where they came from.
    List {
        #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Re-deliver chosen dead letters to the group's retry topic, once each.
    Resend {
        #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
        namesrv: String,
        #[arg(long)]
        group: String,
        /// `key=K`, `tag=T`, `reason~TEXT`, `abort=KIND` or `id=ID`; repeat to require all.
        #[arg(long = "filter")]
        filters: Vec<Filter>,
        /// Resend every letter not resent before (required when no filter is given).
        #[arg(long)]
        all: bool,
        /// Report what would be sent, send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `reset-offset`: move a group's offsets through the broker's reset.
#[derive(Debug, Args)]
pub struct ResetOffsetArgs {
    #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[arg(long)]
    pub group: String,
    #[arg(long)]
    pub topic: String,
    /// `first`, `last`, an instant (`2026-12-05T17:00:00Z`), epoch ms, or `10m ago`.
    #[arg(long)]
    pub to: ResetTo,
}

pub async fn peek(args: PeekArgs) -> anyhow::Result<()> {
    let (reader, queues) = args.source.open().await?;
    let print = |m: &MessageExt, broker: &str| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match args.format {
            Format::Text => write!(out, "{}", show::message_text(m, broker, args.max_body))?,
            Format::Json => writeln!(out, "{}", show::message_json(m, broker))?,
        }
        Ok(())
    };
    let mut left = args.count;
    let mut positions = Vec::with_capacity(queues.len());
    for q in queues {
        let (min, max) = reader.bounds(&q).await?;
        let start = args.from.resolve(min, max);
        let msgs = if left > 0 { reader.read(&q, start, left).await? } else { Vec::new() };
        left -= msgs.len();
        for m in &msgs {
            print(m, &q.queue.broker_name)?;
        }
        let next = msgs
            .last()
            .map_or(if args.follow { max.max(start) } else { start }, |m| m.queue_offset.next());
        positions.push((q, next));
    }
    if args.follow {
        follow(&reader, positions, print).await?;
    }
    Ok(())
}

/// Long-polls every queue from its position, printing what arrives, until Ctrl-C.
async fn follow(
    reader: &TopicReader,
    positions: Vec<(ReadQueue, QueueOffset)>,
    print: impl Fn(&MessageExt, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, MessageExt)>(256);
    let mut tasks = tokio::task::JoinSet::new();
    for (q, mut offset) in positions {
        let (reader, tx) = (reader.clone(), tx.clone());
        tasks.spawn(async move {
            loop {
                match reader.pull(&q, offset, Some(FOLLOW_SUSPEND)).await {
                    Ok(r) => {
                        for m in r.messages {
                            if tx.send((q.queue.broker_name.clone(), m)).await.is_err() {
                                return;
                            }
                        }
                        offset = r.next_begin_offset.max(offset);
                    }
                    Err(e) => {
                        tracing::warn!(queue = %q.queue, error = %e, "pull failed; retrying");
                        tokio::time::sleep(FOLLOW_RETRY).await;
                    }
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            got = rx.recv() => match got {
                Some((broker, m)) => print(&m, &broker)?,
                None => break,
            },
        }
    }
    tasks.abort_all();
    Ok(())
}

pub async fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { namesrv, group, count, format } => {
            let (namesrv, broker) = super::clients(&namesrv)?;
            let letters = DeadLetters::new(TopicReader::new(namesrv, broker), &group);
            let list =
                letters.list(count).await.with_context(|| format!("reading %DLQ%{group}"))?;
            let mut out = std::io::stdout().lock();
            for l in &list {
                match format {
                    Format::Text => write!(out, "{}", letter_text(l))?,
                    Format::Json => writeln!(out, "{}", letter_json(l))?,
                }
            }
            if format == Format::Text {
                writeln!(out, "{} dead letter(s) of group {group}", list.len())?;
            }
        }
        DlqCommand::Resend { namesrv, group, filters, all, dry_run } => {
            if filters.is_empty() && !all {
                anyhow::bail!(
                    "dlq resend needs --filter (key=, tag=, reason~, abort=, id=) or --all"
                );
            }
            let (namesrv, broker) = super::clients(&namesrv)?;
            let reader = TopicReader::new(namesrv.clone(), broker.clone());
            let producer = Producer::new(
                namesrv,
                broker,
                ProducerConfig { group: "RMQ_WASM_DLQ_RESEND".into(), ..Default::default() },
            );
            let report = DeadLetters::new(reader, &group)
                .resend(&producer, &filters, dry_run)
                .await
                .map_err(|e: ClientError| anyhow::anyhow!(e))
                .with_context(|| format!("resending dead letters of {group}"))?;
            let verb = if dry_run { "would resend" } else { "resent" };
            for (id, msg_id) in &report.sent {
                println!("{verb} {id} to %RETRY%{group} {msg_id}");
            }
            for id in &report.already_resent {
                println!("skipped {id}: resent before");
            }
            for id in &report.no_origin {
                println!("skipped {id}: names no origin topic");
            }
            println!(
                "{verb} {}, skipped {} resent before and {} without origin, {} not chosen",
                report.sent.len(),
                report.already_resent.len(),
                report.no_origin.len(),
                report.not_chosen
            );
        }
    }
    Ok(())
}

/// One dead letter for a person: where it is, why it died, where it came from.
pub fn letter_text(l: &DeadLetter) -> String {
    let mut out = format!("── {} stored {}\n", l.id(), show::instant(l.stored()));
    let mut line = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            out.push_str(&format!("  {label:<11} {v}\n"));
        }
    };
    line("reason", Some(l.reason().unwrap_or("(none: retries used up)").to_owned()));
    line("plugin", l.plugin().map(|p| format!("{p} version {}", l.version().unwrap_or("?"))));
    line("abort", l.abort().map(str::to_owned));
    line("fuel used", l.fuel_used().map(|f| f.to_string()));
    line(
        "origin",
        l.origin_topic().map(|t| format!("{t} msg id {}", l.origin_msg_id().unwrap_or("?"))),
    );
    line("consumed at", l.consumed_at().map(str::to_owned));
    line("resent from", l.resent_from().map(str::to_owned));
    let keys: Vec<&str> = l.msg.keys().collect();
    line("keys", (!keys.is_empty()).then(|| keys.join(" ")));
    line("tags", l.msg.tags().map(str::to_owned));
    line("reconsume", Some(l.msg.reconsume_times.to_string()));
    line("body", Some(format!("{} B {}", l.msg.body.len(), show::body_text(&l.msg.body, 256))));
    out
}

/// One dead letter as JSON: the message's fields plus the death's.
pub fn letter_json(l: &DeadLetter) -> serde_json::Value {
    let mut j = show::message_json(&l.msg, &l.broker_name);
    j["dlq_id"] = l.id().into();
    j["reason"] = l.reason().into();
    j["plugin"] = l.plugin().into();
    j["version"] = l.version().into();
    j["abort"] = l.abort().into();
    j["fuel_used"] = l.fuel_used().into();
    j["origin_topic"] = l.origin_topic().into();
    j["origin_msg_id"] = l.origin_msg_id().into();
    j["consumed_at"] = l.consumed_at().into();
    j["resent_from"] = l.resent_from().into();
    j
}

pub async fn reset(args: ResetOffsetArgs) -> anyhow::Result<()> {
    let (namesrv, broker) = super::clients(&args.namesrv)?;
    let table = reset_offset(&namesrv, &broker, &args.group, &args.topic, args.to)
        .await
        .with_context(|| format!("resetting {} on {}", args.group, args.topic))?;
    for (q, offset) in &table {
        println!("{}/{} {} -> {offset}", q.broker_name, q.queue_id, q.topic);
    }
    println!("reset {} queue(s) of {} for group {}", table.len(), args.topic, args.group);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{FromArgMatches as _, Subcommand as _};

    use super::*;

    fn parse<A: clap::Args + clap::FromArgMatches>(args: &[&str]) -> Result<A, clap::Error> {
        let cmd = A::augment_args(clap::Command::new("t").no_binary_name(true));
        A::from_arg_matches(&cmd.try_get_matches_from(args)?)
    }

    #[test]
    fn the_verbs_parse_their_positions_filters_and_targets() {
        let p: PeekArgs = parse(&["--topic", "T", "--from", "last-3", "--queue", "2"]).unwrap();
        assert_eq!((p.from, p.source.queue, p.follow), (StartAt::Last(3), Some(2), false));
        let p: PeekArgs = parse(&["--topic", "T"]).unwrap();
        assert_eq!((p.from, p.count, p.format), (StartAt::Last(10), 100, Format::Text));
        let e = parse::<PeekArgs>(&["--topic", "T", "--from", "soon"]).unwrap_err().to_string();
        assert!(e.contains("soon"), "{e}");
        let r: ResetOffsetArgs = parse(&["--group", "G", "--topic", "T", "--to", "first"]).unwrap();
        assert_eq!(r.to, ResetTo::First);
        let e = parse::<ResetOffsetArgs>(&["--group", "G", "--topic", "T", "--to", "x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"x\""), "{e}");
        let cmd = DlqCommand::augment_subcommands(clap::Command::new("t").no_binary_name(true));
        let m = cmd
            .try_get_matches_from([
                "resend", "--group", "G", "--filter", "key=k", "--filter", "reason~x",
            ])
            .unwrap();
        match DlqCommand::from_arg_matches(&m).unwrap() {
            DlqCommand::Resend { filters, all, dry_run, .. } => {
                assert_eq!(filters, [Filter::Key("k".into()), Filter::ReasonContains("x".into())]);
                assert!(!all && !dry_run);
            }
            other => panic!("{other:?}"),
        }
    }
}

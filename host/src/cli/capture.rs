//! `capture`: real messages into a fixture file for `plugin test`, read like `peek` reads them
//! (under the tools group, committing nothing, joining no rebalance), so no group's offsets move.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::ops::TopicQueues;
use crate::ops::reset::ResetTo;
use crate::plugin_test::FixtureMessage;
use crate::protocol::QueueOffset;

pub(crate) const EXAMPLES: &str = "\
Examples:
  rmq-wasm capture --topic orders --count 20 --out orders.jsonl
  rmq-wasm capture --topic orders --queue 3 --from-offset 1200 --count 5 --out q3.jsonl
  rmq-wasm capture --topic orders --since '10m ago' --count 100 --out recent.jsonl
  rmq-wasm capture --topic orders --since 2026-12-05T17:00:00Z --count 50 --out f.jsonl
then: rmq-wasm plugin test my-listener.wasm --messages orders.jsonl

One JSON object per line: topic, broker, queue_id, queue_offset, commit_log_offset, msg_id,
offset_msg_id, keys, tags, properties, born/store timestamps (epoch ms) and hosts,
reconsume_times, flag, sys_flag, body_base64 (see the README).";

#[derive(Debug, Args)]
pub(crate) struct CaptureArgs {
    #[command(flatten)]
    pub source: TopicQueues,
    /// Start each queue at this offset (clamped into what is stored); default: the oldest.
    #[arg(long, conflicts_with = "since")]
    pub from_offset: Option<i64>,
    /// Start each queue at the first message stored at or after this: an instant
    /// (`2026-12-05T17:00:00Z`), epoch ms, or `10m ago`.
    #[arg(long)]
    pub since: Option<ResetTo>,
    /// At most this many messages, taken queue after queue.
    #[arg(long)]
    pub count: usize,
    /// The fixture file to write (replaced).
    #[arg(long)]
    pub out: PathBuf,
}

pub(crate) async fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    let (reader, queues) = args.source.open().await?;
    let mut lines = String::new();
    let mut left = args.count;
    let mut taken = 0;
    for q in &queues {
        if left == 0 {
            break;
        }
        let (min, max) = reader.bounds(q).await?;
        let start = match (args.from_offset, args.since) {
            (Some(offset), _) => QueueOffset(offset),
            (None, None | Some(ResetTo::First)) => min,
            (None, Some(ResetTo::Last)) => max,
            (None, Some(since)) => reader.offset_at(q, since.timestamp()).await?,
        };
        let start = QueueOffset(start.0.clamp(min.0, max.0.max(min.0)));
        let msgs = reader.read(q, start, left).await?;
        for m in &msgs {
            lines.push_str(&FixtureMessage::from_message(m, &q.queue.broker_name).to_line());
            lines.push('\n');
        }
        left -= msgs.len();
        taken += usize::from(!msgs.is_empty());
        eprintln!("{}: {} message(s) from offset {start}", q.queue, msgs.len());
    }
    write_replacing(&args.out, lines.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "captured {} message(s) of {} from {taken} queue(s) into {}",
        args.count - left,
        args.source.topic,
        args.out.display()
    );
    Ok(())
}

/// Writes `path` through a temporary file beside it and a rename: a reader never sees half a
/// fixture, and a failed capture leaves the old file as it was.
fn write_replacing(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir =
        path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

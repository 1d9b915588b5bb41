//! `rmq-wasm produce`: test data for a topic. Sample JSON bodies (`{"seq":N,"pad":…}`) for load
//! and demos, or the user's own messages: a body given inline, from a file, or one message per
//! line of stdin, with keys, a tag and user properties, so a plugin can be tried on the inputs
//! it is written for without a helper program.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::AsyncBufReadExt as _;

use super::TopicArg;
use crate::client::{Producer, QueueSelector};
use crate::protocol::message::Message;

/// `rmq-wasm produce`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[command(flatten)]
    pub topic: TopicArg,
    /// Messages to send: default 100 sample bodies, or 1 with `--body`/`--body-file`.
    #[arg(long)]
    pub count: Option<usize>,
    /// The body of every message; `-` reads stdin, one message per line (as `--stdin`).
    #[arg(long, value_name = "TEXT", group = "source")]
    pub body: Option<String>,
    /// The body of every message: this file's bytes, as they are.
    #[arg(long, value_name = "FILE", group = "source")]
    pub body_file: Option<PathBuf>,
    /// One message per line of stdin (a trailing `\r` is dropped, empty lines are skipped).
    #[arg(long, group = "source")]
    pub stdin: bool,
    /// A key of every message (repeatable); sample bodies default to `seq-N`.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// The tag of every message.
    #[arg(long, value_name = "TAG", conflicts_with = "tags")]
    pub tag: Option<String>,
    /// Tags to rotate through, comma-separated (default `TagA,TagB` for sample bodies).
    #[arg(long)]
    pub tags: Option<String>,
    /// A user property of every message, `KEY=VALUE` (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Sample body size in bytes: JSON padded up to this size.
    #[arg(long, default_value_t = 128, conflicts_with = "source")]
    pub body_size: usize,
    /// Messages per SEND_BATCH_MESSAGE (1 = single sends).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

/// Parses one `--property KEY=VALUE`. The value may contain `=`; the key may not be empty, nor
/// contain the two separators RocketMQ encodes properties with (they would split it).
fn parse_property(arg: &str) -> Result<(String, String), String> {
    let (key, value) =
        arg.split_once('=').ok_or_else(|| format!("`{arg}` is not KEY=VALUE (no `=`)"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{arg}` has an empty key"));
    }
    if let Some(c) = arg.chars().find(|c| matches!(c, '\u{1}' | '\u{2}')) {
        return Err(format!("`{arg}` contains the property separator {c:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Where the bodies come from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// `{"seq":N,"pad":…}` padded to a size.
    Samples { size: usize },
    /// The same body `count` times.
    Fixed(Bytes),
    /// One message per stdin line.
    Lines,
}

impl ProduceArgs {
    fn source(&self) -> anyhow::Result<Source> {
        Ok(match (&self.body, &self.body_file, self.stdin) {
            (Some(b), _, _) if b == "-" => Source::Lines,
            (Some(b), _, _) => Source::Fixed(Bytes::from(b.clone())),
            (_, Some(f), _) => Source::Fixed(Bytes::from(
                std::fs::read(f).with_context(|| format!("--body-file {}", f.display()))?,
            )),
            (_, _, true) => Source::Lines,
            _ => Source::Samples { size: self.body_size },
        })
    }

    /// The message with body `body`, the `i`-th sent: keys, tag and properties applied.
    fn message(&self, topic: &str, i: usize, body: Bytes, samples: bool) -> Message {
        let mut msg = Message::new(topic, body);
        if !self.keys.is_empty() {
            msg = msg.with_keys(&self.keys);
        } else if samples {
            msg = msg.with_keys([format!("seq-{i}")]);
        }
        let rotation = match (&self.tags, samples) {
            (Some(tags), _) => tags.as_str(),
            (None, true) => "TagA,TagB",
            (None, false) => "",
        };
        let tags: Vec<&str> =
            rotation.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        if let Some(tag) = self.tag.as_deref().or_else(|| tags.get(i % tags.len().max(1)).copied())
        {
            msg = msg.with_tags(tag);
        }
        for (k, v) in &self.properties {
            msg = msg.with_property(k, v);
        }
        msg
    }
}

fn sample_body(i: usize, size: usize) -> Bytes {
    let mut body = format!("{{\"seq\":{i},\"pad\":\"");
    while body.len() + 2 < size {
        body.push('x');
    }
    body.push_str("\"}");
    Bytes::from(body)
}

/// Sends what `args` describe and prints how many went where.
pub(crate) async fn produce(args: ProduceArgs, producer: Producer) -> anyhow::Result<()> {
    let topic = args.topic.get().to_owned();
    let source = args.source()?;
    let started = Instant::now();
    let mut sent = 0;
    match &source {
        Source::Lines => {
            if let Some(n) = args.count {
                anyhow::bail!("--count {n}: stdin sends one message per line, whatever the count");
            }
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            let mut skipped = 0;
            while let Some(line) = lines.next_line().await.context("reading stdin")? {
                let line = line.strip_suffix('\r').unwrap_or(&line);
                if line.is_empty() {
                    skipped += 1;
                    continue;
                }
                let msg = args.message(&topic, sent, Bytes::from(line.to_owned()), false);
                producer.send(msg).await.with_context(|| format!("sending line {}", sent + 1))?;
                sent += 1;
            }
            if skipped > 0 {
                eprintln!("skipped {skipped} empty line(s) (RocketMQ refuses an empty body)");
            }
        }
        Source::Samples { .. } | Source::Fixed(_) => {
            let count = args.count.unwrap_or(if matches!(source, Source::Samples { .. }) {
                100
            } else {
                1
            });
            let make = |i: usize| match &source {
                Source::Samples { size } => args.message(&topic, i, sample_body(i, *size), true),
                Source::Fixed(body) => args.message(&topic, i, body.clone(), false),
                Source::Lines => unreachable!("handled above"),
            };
            let batch = args.batch.max(1);
            while sent < count {
                let n = batch.min(count - sent);
                if n == 1 {
                    producer.send(make(sent)).await?;
                } else {
                    let msgs = (sent..sent + n).map(make).collect();
                    producer.send_batch(msgs, QueueSelector::RoundRobin).await?;
                }
                sent += n;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("sent {sent} messages to {topic} in {secs:.2} s");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ProduceArgs, String> {
        let argv = ["rmq-wasm", "produce"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli { command: Command::Produce(p) }) => Ok(p),
            Ok(other) => panic!("not produce: {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    use clap::Parser as _;

    #[test]
    fn properties_are_key_value_and_a_bad_one_is_named() {
        let p = parse(&["T", "--property", "a=1", "--property", "b=x=y"]).unwrap();
        assert_eq!(p.properties, [("a".into(), "1".into()), ("b".into(), "x=y".into())]);
        for bad in ["novalue", "=1"] {
            let e = parse(&["T", "--property", "a=1", "--property", bad]).unwrap_err();
            assert!(e.contains("--property") && e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn the_topic_is_positional_or_a_flag_but_not_both() {
        assert_eq!(parse(&["T"]).unwrap().topic.get(), "T");
        assert_eq!(parse(&["--topic", "T"]).unwrap().topic.get(), "T");
        let e = parse(&["T", "--topic", "U"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        let e = parse(&[]).unwrap_err();
        assert!(e.contains("required"), "{e}");
    }

    #[test]
    fn body_sources_exclude_each_other() {
        assert_eq!(parse(&["T"]).unwrap().source().unwrap(), Source::Samples { size: 128 });
        assert_eq!(
            parse(&["T", "--body", "hi"]).unwrap().source().unwrap(),
            Source::Fixed("hi".into())
        );
        assert_eq!(parse(&["T", "--body", "-"]).unwrap().source().unwrap(), Source::Lines);
        assert_eq!(parse(&["T", "--stdin"]).unwrap().source().unwrap(), Source::Lines);
        for clash in [
            &["T", "--body", "x", "--stdin"][..],
            &["T", "--body", "x", "--body-file", "f"],
            &["T", "--body", "x", "--body-size", "10"],
            &["T", "--tag", "a", "--tags", "a,b"],
        ] {
            let e = parse(clash).unwrap_err();
            assert!(e.contains("cannot be used with"), "{clash:?}: {e}");
        }
        let e = parse(&["T", "--body-file", "/nonexistent/body"]).unwrap().source().unwrap_err();
        assert!(format!("{e:#}").contains("--body-file /nonexistent/body"), "{e:#}");
    }

    #[test]
    fn messages_carry_keys_tag_and_properties() {
        let p = parse(&[
            "T",
            "--body",
            "b",
            "--key",
            "k1",
            "--key",
            "k2",
            "--tag",
            "later",
            "--property",
            "a=1",
        ])
        .unwrap();
        let m = p.message("T", 0, Bytes::from_static(b"b"), false);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(m.tags(), Some("later"));
        assert_eq!(m.property("a"), Some("1"));
        // Own bodies get no invented key or tag; samples rotate TagA/TagB with seq keys.
        let plain = parse(&["T", "--body", "b"]).unwrap().message("T", 0, Bytes::new(), false);
        assert_eq!((plain.keys().count(), plain.tags()), (0, None));
        let samples = parse(&["T"]).unwrap();
        let m1 = samples.message("T", 1, sample_body(1, 128), true);
        assert_eq!((m1.keys().collect::<Vec<_>>(), m1.tags()), (vec!["seq-1"], Some("TagB")));
        assert_eq!(sample_body(1, 128).len(), 128);
    }
}

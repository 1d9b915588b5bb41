//! The consumer keys of `[[listener]]` beyond the basics (start instant, drain timeout,
//! allocation, pull and pop batch, flow control and invisible time, long poll, client id parts)
//! and `[acl]`: how they map onto [`ConsumerConfig`] and what is checked before anything starts.

use std::time::Duration;

use anyhow::Context as _;

use super::run::{Allocate, ConsumeFrom, ListenerSection, RunConfig};
use crate::consumer::config::{AllocateStrategy, ConsumerConfig};
use crate::protocol::acl::AclCredentials;

/// Sets the consumer fields these keys control; unset keys keep the consumer's defaults.
pub(crate) fn apply(l: &ListenerSection, c: &mut ConsumerConfig) {
    if let Some(t) = l.consume_timestamp {
        c.consume_timestamp = Some(t.0);
    }
    if let Some(d) = l.shutdown_drain_timeout {
        c.shutdown_drain_timeout = d;
    }
    if let Some(t) = l.pop_invisible_time {
        c.pop_invisible_time = t;
    }
    if let Some(a) = l.allocate_strategy {
        c.allocate_strategy = match a {
            Allocate::Avg => AllocateStrategy::Avg,
            Allocate::AvgByCircle => AllocateStrategy::AvgByCircle,
            Allocate::ConsistentHash => AllocateStrategy::consistent_hash(),
        };
    }
    let set = |field: &mut u32, v: Option<u32>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(&mut c.pull_batch_size, l.pull_batch_size);
    set(&mut c.pull_threshold_for_queue, l.pull_threshold_for_queue);
    set(&mut c.pull_threshold_size_for_queue_mib, l.pull_threshold_size_for_queue_mib);
    set(&mut c.pop_batch_size, l.pop_batch_size);
    set(&mut c.pop_threshold_for_queue, l.pop_threshold_for_queue);
    if let Some(d) = l.broker_suspend_max {
        c.broker_suspend_max = d;
        // A pull's client timeout must outlast the broker's hold (Java: hold + 10 s at least).
        c.pull_timeout = c.pull_timeout.max(d + Duration::from_secs(10));
    }
    if l.pull_threshold_for_topic.is_some() {
        c.pull_threshold_for_topic = l.pull_threshold_for_topic;
    }
    if l.pull_threshold_size_for_topic_mib.is_some() {
        c.pull_threshold_size_for_topic_mib = l.pull_threshold_size_for_topic_mib;
    }
    if let Some(name) = &l.instance_name {
        c.instance_name.clone_from(name);
    }
    if l.unit_name.is_some() {
        c.unit_name.clone_from(&l.unit_name);
    }
}

/// What serde cannot see: keys that only make sense together, and every listener's consumer
/// settings as the consumer itself validates them.
pub(crate) fn check(config: &RunConfig) -> anyhow::Result<()> {
    if let Some(acl) = &config.acl {
        match (&acl.secret_key_env, &acl.secret_key_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("acl: set secret_key_env or secret_key_file, not both")
            }
            (None, None) => anyhow::bail!(
                "acl: the secret key is read from secret_key_env (a variable name) or \
                 secret_key_file; it is never written in the config file"
            ),
            _ => {}
        }
    }
    for l in &config.listeners {
        let name = l.name.as_deref().unwrap_or(&l.group);
        check_listener(l).with_context(|| format!("listener {name}"))?;
    }
    Ok(())
}

/// One listener's combination rules and its consumer settings.
pub(crate) fn check_listener(l: &ListenerSection) -> anyhow::Result<()> {
    if l.consume_timestamp.is_some() && l.consume_from != Some(ConsumeFrom::Timestamp) {
        anyhow::bail!("consume_timestamp is only used with consume_from = \"timestamp\"");
    }
    l.consumer_config().validate()?;
    Ok(())
}

/// The credentials `[acl]` describes, with the secret read from its variable or file.
pub(crate) fn credentials(config: &RunConfig) -> anyhow::Result<Option<AclCredentials>> {
    let Some(acl) = &config.acl else { return Ok(None) };
    let secret = match (&acl.secret_key_env, &acl.secret_key_file) {
        (Some(var), _) => std::env::var(var).with_context(|| {
            format!("acl.secret_key_env: environment variable {var} is not set")
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("acl.secret_key_file: reading {}", file.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!("acl: no secret key source"),
    };
    if secret.is_empty() {
        anyhow::bail!("acl: the secret key is empty");
    }
    Ok(Some(AclCredentials::new(&acl.access_key, secret)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::EpochMillis;

    const BASE: &str = "namesrv = \"127.0.0.1:9876\"\n[[listener]]\ngroup = \"g\"\ntopic = \"t\"\nwasm = \"a.wasm\"\n";

    #[test]
    fn the_consumer_keys_map_onto_the_consumer() {
        let text = format!(
            "{BASE}consume_from = \"timestamp\"\nconsume_timestamp = \"2023-11-14T22:13:20Z\"\n\
             shutdown_drain_timeout = \"25s\"\nallocate_strategy = \"avg_by_circle\"\n\
             pull_batch_size = 8\npull_threshold_for_queue = 500\n\
             pull_threshold_size_for_queue_mib = 50\npull_threshold_for_topic = 4000\n\
             pull_threshold_size_for_topic_mib = 400\ninstance_name = \"blue\"\nunit_name = \"u1\"\n"
        );
        let c = RunConfig::parse(&text).unwrap().listeners[0].consumer_config();
        assert_eq!(c.consume_timestamp, Some(EpochMillis(1_700_000_000_000)));
        assert_eq!(c.shutdown_drain_timeout, Duration::from_secs(25));
        assert_eq!(c.allocate_strategy, AllocateStrategy::AvgByCircle);
        assert_eq!((c.pull_batch_size, c.pull_threshold_for_queue), (8, 500));
        assert_eq!(c.pull_threshold_size_for_queue_mib, 50);
        assert_eq!(c.pull_threshold_for_topic, Some(4000));
        assert_eq!(c.pull_threshold_size_for_topic_mib, Some(400));
        assert_eq!((c.instance_name.as_str(), c.unit_name.as_deref()), ("blue", Some("u1")));
        let ms = format!("{BASE}consume_from = \"timestamp\"\nconsume_timestamp = 1700000000000\n");
        let c = RunConfig::parse(&ms).unwrap().listeners[0].consumer_config();
        assert_eq!(c.consume_timestamp, Some(EpochMillis(1_700_000_000_000)));
        let plain = RunConfig::parse(BASE).unwrap().listeners[0].consumer_config();
        assert_eq!(plain, ConsumerConfig::new("g").subscribe(plain.subscriptions[0].clone()));
    }

    #[test]
    fn combinations_and_consumer_limits_are_refused_naming_the_listener() {
        let e =
            |extra: &str| format!("{:#}", RunConfig::parse(&format!("{BASE}{extra}")).unwrap_err());
        let t = e("consume_timestamp = \"2023-11-14T22:13:20Z\"\n");
        assert!(t.contains("listener g") && t.contains("consume_from = \"timestamp\""), "{t}");
        let t = e("pull_batch_size = 0\n");
        assert!(t.contains("pull_batch_size"), "{t}");
        let t = e("consume_timestamp = \"yesterday\"\n");
        assert!(t.contains("yesterday"), "{t}");
        let t = e("allocate_strategy = \"random\"\n");
        assert!(t.contains("random"), "{t}");
    }

    #[test]
    fn the_secret_comes_from_a_file_or_a_variable_never_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cr3t\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!("{BASE}[acl]\naccess_key = \"ak\"\nsecret_key_file = \"secret\"\n"),
        )
        .unwrap();
        let config = RunConfig::load(&path).unwrap();
        let creds = credentials(&config).unwrap().unwrap();
        assert_eq!((creds.access_key.as_str(), creds.secret_key.as_str()), ("ak", "s3cr3t"));
        let var = "RMQ_WASM_TEST_SECRET_THAT_IS_NOT_SET";
        let text = format!("{BASE}[acl]\naccess_key = \"ak\"\nsecret_key_env = \"{var}\"\n");
        let e = format!("{:#}", credentials(&RunConfig::parse(&text).unwrap()).unwrap_err());
        assert!(e.contains(var), "{e}");
        let inline = format!("{BASE}[acl]\naccess_key = \"ak\"\nsecret_key = \"plain\"\n");
        let e = format!("{:#}", RunConfig::parse(&inline).unwrap_err());
        assert!(e.contains("secret_key"), "{e}");
    }

    #[test]
    fn variables_are_replaced_on_load_and_unset_ones_named_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = BASE.replace("\"t\"", "\"${RMQ_WASM_TEST_UNSET_TOPIC:-orders}\"");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(RunConfig::load(&path).unwrap().listeners[0].topic, "orders");
        std::fs::write(&path, BASE.replace("\"g\"", "\"${RMQ_WASM_TEST_UNSET_GROUP}\"")).unwrap();
        let e = format!("{:#}", RunConfig::load(&path).unwrap_err());
        assert!(e.contains(&format!("{}:3:", path.display())), "{e}");
        assert!(e.contains("RMQ_WASM_TEST_UNSET_GROUP is not set"), "{e}");
    }
}

//! Authentication on the real Apache RocketMQ broker: every request our clients send is signed
//! (the ACL 1.0 signature: HMAC-SHA1 over the sorted ext-field values and the body), which
//!
//! * Apache RocketMQ 5.3 checks through its authentication 2.0 pipeline
//!   (`authenticationEnabled=true`, a SUPER user created by `initAuthenticationUser`; 5.3 removed
//!   ACL 1.0 and its `plain_acl.yml`), answering NO_PERMISSION (16) on a bad signature;
//! * Apache RocketMQ 4.9 checks with ACL 1.0 (`aclEnable=true`, an admin account in
//!   `$ROCKETMQ_HOME/conf/plain_acl.yml`), answering SYSTEM_ERROR (1) with an `AclException`.
//!
//! Signed pulls, heartbeats, offset commits, send-backs and sends are accepted; a wrong secret is
//! refused at once with an error that names the access key. rocketmq-rust is skipped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rmq_wasm::consumer::PushConsumer;
use rmq_wasm::consumer::config::{ConsumerConfig, Subscription};
use rmq_wasm::consumer::listener::{FnListener, MessageOutcome};
use rmq_wasm::protocol::acl::AclCredentials;
use rmq_wasm::protocol::message::{Message, MessageExt};
use rmq_wasm_tests::cluster::{Cluster, ClusterOptions, Flavour};
use rmq_wasm_tests::support::{Clients, consumer_config, init_tracing, unique, wait_for};

const ACCESS_KEY: &str = "rmqwasm";
const SECRET: &str = "rmqwasm-secret-0123";

/// A cluster of the current Java flavour with authentication on.
fn acl_cluster() -> Option<Cluster> {
    let flavour = Flavour::from_env().expect("RMQ_CLUSTER_FLAVOUR");
    let mut opts = ClusterOptions::default();
    match flavour {
        Flavour::Java5 => {
            opts.broker_props = vec![
                ("authenticationEnabled".into(), "true".into()),
                (
                    "authenticationMetadataProvider".into(),
                    "org.apache.rocketmq.auth.authentication.provider.LocalAuthenticationMetadataProvider"
                        .into(),
                ),
                (
                    "initAuthenticationUser".into(),
                    format!(r#"{{"username":"{ACCESS_KEY}","password":"{SECRET}"}}"#),
                ),
            ];
        }
        Flavour::Java4 => {
            opts.broker_props = vec![("aclEnable".into(), "true".into())];
            // No white-listed addresses: a white-list match skips the signature check.
            opts.home_files = vec![(
                "conf/plain_acl.yml".into(),
                format!(
                    "accounts:\n  - accessKey: {ACCESS_KEY}\n    secretKey: {SECRET}\n    admin: true\n"
                ),
            )];
        }
        Flavour::Rust => {
            eprintln!("skipped: authentication is proven against Apache RocketMQ");
            return None;
        }
    }
    Some(Cluster::start(opts).unwrap())
}

fn config(group: &str, topic: &str, credentials: AclCredentials) -> ConsumerConfig {
    let mut c = consumer_config(group, Subscription::all(topic), "acl");
    c.credentials = Some(credentials);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_are_accepted_and_a_wrong_secret_is_refused_naming_the_access_key() {
    init_tracing();
    let Some(cluster) = acl_cluster() else { return };
    let good = AclCredentials::new(ACCESS_KEY, SECRET);
    let c = Clients::with_credentials(&cluster, Some(good.clone()));
    let topic = unique("acl");
    c.create_topic(&cluster, &topic, 2).await.unwrap();
    for i in 0..20 {
        let msg = Message::new(&topic, Bytes::from(format!("m{i}"))).with_keys([format!("a{i}")]);
        c.producer.send(msg).await.unwrap();
    }

    // A signed consumer: pulls, heartbeats, offset commits and (for the first delivery of every
    // fifth message) a send-back, all accepted.
    let deliveries: Arc<Mutex<BTreeMap<String, Vec<i32>>>> = Arc::default();
    let seen = Arc::clone(&deliveries);
    let listener = Arc::new(FnListener(move |_ctx, msgs: Vec<MessageExt>| {
        let seen = Arc::clone(&seen);
        async move {
            let mut seen = seen.lock().unwrap();
            let outcomes = msgs
                .iter()
                .map(|m| {
                    let key = m.keys().next().unwrap_or_default().to_owned();
                    seen.entry(key.clone()).or_default().push(m.reconsume_times);
                    let retry = key.trim_start_matches('a').parse::<u32>().unwrap_or(1) % 5 == 0
                        && m.reconsume_times == 0;
                    if retry {
                        MessageOutcome::RetryLater { delay_level: None }
                    } else {
                        MessageOutcome::Success
                    }
                })
                .collect();
            Ok(outcomes)
        }
    }));
    let group = unique("acl_group");
    let consumer = PushConsumer::start(
        config(&group, &topic, good.clone()),
        vec![cluster.namesrv_addr.clone()],
        listener,
    )
    .await
    .unwrap();
    wait_for("20 messages, 4 of them retried once", Duration::from_secs(90), || {
        let seen = deliveries.lock().unwrap();
        let retried = seen.values().filter(|d| d.as_slice() == [0, 1]).count();
        (seen.len() == 20 && retried == 4).then_some(())
    })
    .await;
    consumer.shutdown().await;
    // The offsets the consumer committed (signed UPDATE_CONSUMER_OFFSET) are on the broker.
    let committed = wait_for("committed offsets", Duration::from_secs(30), || {
        let total: i64 = (0..2).map(|q| committed_offset(&c, &cluster, &group, &topic, q)).sum();
        (total == 20).then_some(total)
    })
    .await;
    assert_eq!(committed, 20);

    // A wrong secret: refused at once, and the error names the access key.
    let bad = AclCredentials::new(ACCESS_KEY, "not-the-secret");
    let wrong = Clients::with_credentials(&cluster, Some(bad.clone()));
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        wrong.producer.send(Message::new(&topic, Bytes::from_static(b"x"))),
    )
    .await
    .expect("refused at once, not a hang")
    .expect_err("a wrong secret is refused")
    .to_string();
    eprintln!("wrong secret: {error}");
    assert!(error.contains(&format!("`{ACCESS_KEY}`")), "names the access key: {error}");
    assert!(!error.contains("not-the-secret"), "never the secret: {error}");

    let started = tokio::time::timeout(
        Duration::from_secs(30),
        PushConsumer::start(
            config(&unique("acl_bad"), &topic, bad),
            vec![cluster.namesrv_addr.clone()],
            Arc::new(FnListener(|_ctx, msgs: Vec<MessageExt>| async move {
                Ok(vec![MessageOutcome::Success; msgs.len()])
            })),
        ),
    )
    .await
    .expect("consumer start with a wrong secret ends, not hangs");
    match started {
        Err(error) => {
            let error = error.to_string();
            eprintln!("consumer with a wrong secret: {error}");
            assert!(error.contains(&format!("`{ACCESS_KEY}`")), "{error}");
        }
        Ok(consumer) => {
            // Started (its heartbeat failing is logged): it must not consume anything.
            let nothing = consumer.stats().queues.values().map(|q| q.consumed_ok).sum::<u64>();
            consumer.shutdown().await;
            assert_eq!(nothing, 0);
        }
    }
}

fn committed_offset(c: &Clients, cluster: &Cluster, group: &str, topic: &str, queue: i32) -> i64 {
    let header = rmq_wasm::protocol::header::QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id: rmq_wasm::protocol::QueueId(queue),
        set_zero_if_not_found: Some(false),
        bname: None,
    };
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(c.broker.query_offset(
            &cluster.broker_addr,
            &header,
            Duration::from_secs(3),
        ))
    })
    .ok()
    .flatten()
    .map_or(0, |o| o.0)
}

//! Row (b): Apache RocketMQ's Rust client, `rocketmq-client-rust` 1.0.0, as a peer in this
//! process. Behind the feature `rust-peer` (`cargo build --release --workspace --bins --features
//! rmq-wasm-bench/rust-peer`): the client and its dependencies are some 200 crates more than the
//! rest of the benchmark (500 against 300), which doubles a release build of it.

#[cfg(feature = "rust-peer")]
pub use built::PeerRuntime;
#[cfg(not(feature = "rust-peer"))]
pub use missing::PeerRuntime;

#[cfg(feature = "rust-peer")]
mod built {
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::{Context as _, Result};
    use rmq_wasm_tests::cluster::Cluster;
    use rmq_wasm_tests::support::unique;
    use rocketmq_client_rust::{
        ClientConfig, ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
        ConsumeConcurrentlyStatus, DefaultMQPushConsumer, MQPushConsumer,
        MessageListenerConcurrently, TelemetryHandle,
    };
    use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere as PeerFromWhere;
    use rocketmq_model::common::message::message_ext::MessageExt as PeerMessageExt;
    use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

    use crate::Tally;

    /// The runtime the peer client runs on: one its application owns (it never uses the ambient
    /// one), with as many workers as ours.
    pub struct PeerRuntime(RuntimeOwner);

    impl PeerRuntime {
        pub fn new(workers: usize) -> Result<Self> {
            Ok(Self(
                RuntimeOwner::plan(RuntimeConfig::for_parallelism("rmq-bench-peer", workers))
                    .map_err(|e| anyhow::anyhow!("peer runtime config: {e:?}"))?
                    .build()
                    .map_err(|e| anyhow::anyhow!("peer runtime: {e}"))?,
            ))
        }

        pub fn shutdown(self) {
            self.0.shutdown_background();
        }

        /// Consumes the topic with the peer until `tally` has every message.
        pub async fn run(
            &self,
            cluster: &Cluster,
            topic: &str,
            tally: &Arc<Tally>,
            timeout: Duration,
        ) -> Result<String> {
            run(&self.0, cluster, topic, tally, timeout).await
        }
    }

    /// The peer's no-op listener.
    struct PeerListener(Arc<Tally>);

    impl MessageListenerConcurrently for PeerListener {
        fn consume_message(
            &self,
            msgs: &[&PeerMessageExt],
            _ctx: &ConsumeConcurrentlyContext,
        ) -> ClientResult<ConsumeConcurrentlyStatus> {
            for m in msgs {
                self.0.record(m.properties().get("UNIQ_KEY").map(|v| v.as_str()));
            }
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        }
    }

    async fn run(
        owner: &RuntimeOwner,
        cluster: &Cluster,
        topic: &str,
        tally: &Arc<Tally>,
        timeout: Duration,
    ) -> Result<String> {
        let client_runtime = ClientRuntime::try_new(
            owner.root_context().component("bench-peer"),
            ClientRuntimeConfig { shutdown_timeout: Duration::from_secs(10), ..Default::default() },
            TelemetryHandle::noop(),
        )
        .map_err(|e| anyhow::anyhow!("peer client runtime: {e}"))?;
        // Loopback client IP (its default is the first non-loopback interface address) and an
        // instance name of its own: a distinct client id, nothing but 127.0.0.1 in it.
        let mut client_config = ClientConfig::new();
        client_config.namesrv_addr = Some(cluster.namesrv_addr.clone().into());
        client_config.client_ip = Some("127.0.0.1".into());
        client_config.instance_name = unique("bench_peer").into();
        let mut consumer = DefaultMQPushConsumer::builder(Arc::clone(&client_runtime))
            .client_config(client_config)
            .consumer_group(unique("bench_peer"))
            .consume_from_where(PeerFromWhere::ConsumeFromFirstOffset)
            .build();
        consumer.subscribe(topic, "*").await.map_err(|e| anyhow::anyhow!("peer subscribe: {e}"))?;
        consumer.register_message_listener_concurrently(PeerListener(Arc::clone(tally)));
        tokio::time::timeout(Duration::from_secs(30), consumer.start())
            .await
            .context("peer start took over 30 s")?
            .map_err(|e| anyhow::anyhow!("peer start: {e}"))?;
        let waited = tally.wait(timeout).await;
        tokio::time::timeout(Duration::from_secs(30), consumer.shutdown())
            .await
            .context("peer shutdown took over 30 s")?;
        let report = client_runtime.shutdown().await;
        waited?;
        Ok(if report.is_healthy() {
            String::new()
        } else {
            format!("client runtime shutdown unhealthy: {}", report.to_json())
        })
    }
}

#[cfg(not(feature = "rust-peer"))]
mod missing {
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::{Result, bail};
    use rmq_wasm_tests::cluster::Cluster;

    use crate::Tally;

    /// Stands in for the peer's runtime in a build without it: asking for row (b) fails at
    /// once, saying how to build it in.
    pub enum PeerRuntime {}

    impl PeerRuntime {
        pub fn new(_workers: usize) -> Result<Self> {
            bail!(
                "row (b) needs consume-bench built with the feature rust-peer: cargo build \
                 --release --workspace --bins --features rmq-wasm-bench/rust-peer"
            )
        }

        pub fn shutdown(self) {
            match self {}
        }

        pub async fn run(
            &self,
            _cluster: &Cluster,
            _topic: &str,
            _tally: &Arc<Tally>,
            _timeout: Duration,
        ) -> Result<String> {
            match *self {}
        }
    }
}

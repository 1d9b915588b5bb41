//! The CLUSTERING store: offsets live on the broker that hosts each queue (reference 2.6, 4.9).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::table::SharedTable;
use super::{Delivery, OffsetStoreError, PersistTally};
use crate::client::ClientError;
use crate::consumer::broker_api::BrokerApi;
use crate::protocol::header::{
    QueryConsumerOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::{MessageQueue, QueueOffset};

/// Java's timeout for both the offset query and the oneway update.
pub const DEFAULT_OFFSET_RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves a broker name to the address offsets go to. Injected so the store does not depend on
/// how the route cache is kept; the consumer implements it on its route table.
pub trait BrokerAddrs: Send + Sync {
    /// The master (broker id 0) of `broker_name`, or any replica of it when the route has no
    /// master (reference 4.2); `None` when the name is unknown.
    fn master_or_any(&self, broker_name: &str) -> Option<String>;
}

/// Offsets in memory, queried from and persisted to the queue's broker. Cheap to clone.
#[derive(Clone)]
pub struct RemoteOffsetStore {
    inner: Arc<Inner>,
}

struct Inner {
    group: String,
    client: Arc<dyn BrokerApi>,
    addrs: Arc<dyn BrokerAddrs>,
    timeout: Duration,
    set_zero_if_not_found: Option<bool>,
    table: SharedTable,
}

impl std::fmt::Debug for RemoteOffsetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOffsetStore")
            .field("group", &self.inner.group)
            .field("timeout", &self.inner.timeout)
            .field("set_zero_if_not_found", &self.inner.set_zero_if_not_found)
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

impl RemoteOffsetStore {
    /// A store for `group` with Java's defaults: 5 s timeouts, and queries that leave
    /// `setZeroIfNotFound` unset. (Production passes its options explicitly.)
    #[cfg(test)]
    pub fn new(
        group: impl Into<String>,
        client: Arc<dyn BrokerApi>,
        addrs: Arc<dyn BrokerAddrs>,
    ) -> Self {
        Self::with_options(group, client, addrs, DEFAULT_OFFSET_RPC_TIMEOUT, None)
    }

    /// A store with an explicit RPC timeout and `setZeroIfNotFound` for queries. `Some(false)`
    /// makes a 5.x broker answer QUERY_NOT_FOUND for a brand-new group instead of offset 0, so
    /// CONSUME_FROM_LAST_OFFSET really skips history (reference 2.6, 4.10); 4.x ignores it.
    pub fn with_options(
        group: impl Into<String>,
        client: Arc<dyn BrokerApi>,
        addrs: Arc<dyn BrokerAddrs>,
        timeout: Duration,
        set_zero_if_not_found: Option<bool>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                group: group.into(),
                client,
                addrs,
                timeout,
                set_zero_if_not_found,
                table: SharedTable::default(),
            }),
        }
    }

    pub(super) fn table(&self) -> &SharedTable {
        &self.inner.table
    }

    fn addr_of(&self, mq: &MessageQueue) -> Result<String, OffsetStoreError> {
        self.inner
            .addrs
            .master_or_any(&mq.broker_name)
            .ok_or_else(|| OffsetStoreError::NoBrokerAddr { mq: mq.clone() })
    }

    /// QUERY_CONSUMER_OFFSET, synchronous like Java; a found value also lands in memory.
    pub(super) async fn read_store(
        &self,
        mq: &MessageQueue,
    ) -> Result<Option<QueueOffset>, OffsetStoreError> {
        let addr = self.addr_of(mq)?;
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: self.inner.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            set_zero_if_not_found: self.inner.set_zero_if_not_found,
            bname: Some(mq.broker_name.clone()),
        };
        let found =
            self.inner.client.query_offset(&addr, &header, self.inner.timeout).await.map_err(
                |source| OffsetStoreError::Broker {
                    mq: mq.clone(),
                    addr,
                    action: "querying",
                    source: Box::new(source),
                },
            )?;
        if let Some(offset) = found {
            self.inner.table.with(|t| t.update(mq, offset, false));
        }
        Ok(found)
    }

    pub(super) async fn persist(&self, mq: &MessageQueue) -> Result<(), OffsetStoreError> {
        let Some(offset) = self.inner.table.with(|t| t.get(mq)) else {
            return Ok(());
        };
        let addr = self.addr_of(mq)?;
        self.send(&addr, mq, offset, Delivery::Oneway).await
    }

    /// Sends every owned offset. Queues are sent one after another (oneway sends only wait for
    /// the socket write), but once an address fails at the transport level the rest of its
    /// queues are counted as failed without another attempt, so a dead broker costs one
    /// connect timeout per round rather than one per queue.
    pub(super) async fn persist_all(
        &self,
        owned: &BTreeSet<MessageQueue>,
        delivery: Delivery,
    ) -> Result<(), OffsetStoreError> {
        let offsets = self.inner.table.with(|t| t.keep_owned(owned));
        let mut tally = PersistTally::new(offsets.len());
        let mut unreachable = HashSet::new();
        for (mq, offset) in &offsets {
            let addr = match self.addr_of(mq) {
                Ok(addr) => addr,
                Err(e) => {
                    tally.fail(e);
                    continue;
                }
            };
            if unreachable.contains(&addr) {
                tally.skip();
                continue;
            }
            if let Err(e) = self.send(&addr, mq, *offset, delivery).await {
                if is_transport(&e) {
                    unreachable.insert(addr);
                }
                tally.fail(e);
            }
        }
        tally.finish()
    }

    /// UPDATE_CONSUMER_OFFSET, oneway as Java's persist sends it, or confirmed.
    async fn send(
        &self,
        addr: &str,
        mq: &MessageQueue,
        offset: QueueOffset,
        delivery: Delivery,
    ) -> Result<(), OffsetStoreError> {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: self.inner.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
            bname: Some(mq.broker_name.clone()),
        };
        let (client, timeout) = (&self.inner.client, self.inner.timeout);
        let sent = match delivery {
            Delivery::Oneway => client.update_offset_oneway(addr, &header, timeout).await,
            Delivery::Confirmed => client.update_offset(addr, &header, timeout).await,
        };
        sent.map_err(|source| OffsetStoreError::Broker {
            mq: mq.clone(),
            addr: addr.to_owned(),
            action: "updating",
            source: Box::new(source),
        })?;
        tracing::debug!(group = %self.inner.group, %mq, %offset, addr, ?delivery, "offset persisted");
        Ok(())
    }
}

fn is_transport(e: &OffsetStoreError) -> bool {
    matches!(e, OffsetStoreError::Broker { source, .. }
        if matches!(**source, ClientError::Remoting(ref r) if r.is_transport()))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::consumer::offset_store::{OffsetStore, ReadFrom};
    use crate::protocol::header::OffsetResponseHeader;
    use crate::protocol::{QueueId, RemotingCommand, RequestCode, ResponseCode};
    use crate::remoting::ConnectionPool;
    use crate::remoting::fake::FakePeer;

    const WAIT: Duration = Duration::from_secs(5);

    struct Addrs(HashMap<String, String>);

    impl BrokerAddrs for Addrs {
        fn master_or_any(&self, broker_name: &str) -> Option<String> {
            self.0.get(broker_name).cloned()
        }
    }

    /// A broker on loopback TCP (the pool dials TCP) that reports every command it receives and
    /// answers the non-oneway ones with `answer`.
    struct FakeBroker {
        addr: String,
        received: mpsc::UnboundedReceiver<RemotingCommand>,
        task: JoinHandle<()>,
    }

    impl FakeBroker {
        async fn start(answer: fn(&RemotingCommand) -> RemotingCommand) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let (tx, received) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    let mut peer = FakePeer::new(sock);
                    while let Some(cmd) = peer.recv().await {
                        if !cmd.is_oneway() {
                            peer.send(&answer(&cmd)).await;
                        }
                        let _ = tx.send(cmd);
                    }
                }
            });
            Self { addr, received, task }
        }

        async fn next(&mut self) -> RemotingCommand {
            tokio::time::timeout(WAIT, self.received.recv()).await.unwrap().unwrap()
        }
    }

    impl Drop for FakeBroker {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Queries: queue 0 has offset 42, queue 1 has none, anything else is a broker error.
    /// Confirmed updates: accepted, except on queue 2.
    fn query_answer(q: &RemotingCommand) -> RemotingCommand {
        let update = q.request_code() == RequestCode::UpdateConsumerOffset;
        match q.ext_fields.get("queueId") {
            Some("0" | "1") if update => {
                RemotingCommand::response_to(q, ResponseCode::Success, None)
            }
            Some("0") => RemotingCommand::response_to(q, ResponseCode::Success, None)
                .with_header(&OffsetResponseHeader { offset: QueueOffset(42) }),
            Some("1") => RemotingCommand::response_to(q, ResponseCode::QueryNotFound, None),
            _ => RemotingCommand::response_to(
                q,
                ResponseCode::SystemError,
                Some("disk on fire".into()),
            ),
        }
    }

    fn mq(broker: &str, id: i32) -> MessageQueue {
        MessageQueue::new("T", broker, QueueId(id))
    }

    fn store(routes: &[(&str, &str)]) -> OffsetStore {
        let addrs = routes.iter().map(|(b, a)| ((*b).to_owned(), (*a).to_owned())).collect();
        let client = Arc::new(crate::client::BrokerClient::new(ConnectionPool::default()));
        RemoteOffsetStore::new("G", client, Arc::new(Addrs(addrs))).into()
    }

    fn ext(cmd: &RemotingCommand) -> BTreeMap<&str, &str> {
        cmd.ext_fields.iter().collect()
    }

    #[tokio::test]
    async fn persist_sends_a_oneway_update_with_the_queue_and_offset() {
        let mut broker = FakeBroker::start(query_answer).await;
        let store = store(&[("broker-a", &broker.addr)]);
        store.update(&mq("broker-a", 3), QueueOffset(1234), false);
        store.persist(&mq("broker-a", 3)).await.unwrap();
        let got = broker.next().await;
        assert_eq!(got.request_code(), RequestCode::UpdateConsumerOffset);
        assert!(got.is_oneway(), "Java sends persisted offsets oneway");
        assert_eq!(
            ext(&got),
            BTreeMap::from([
                ("bname", "broker-a"),
                ("commitOffset", "1234"),
                ("consumerGroup", "G"),
                ("queueId", "3"),
                ("topic", "T"),
            ])
        );
        // A queue without an in-memory offset sends nothing.
        store.persist(&mq("broker-a", 9)).await.unwrap();
        assert!(broker.received.try_recv().is_err());
    }

    #[tokio::test]
    async fn persist_all_sends_owned_offsets_and_forgets_the_rest() {
        let mut broker = FakeBroker::start(query_answer).await;
        let store = store(&[("broker-a", &broker.addr)]);
        for i in 0..4 {
            store.update(&mq("broker-a", i), QueueOffset(i64::from(i) + 100), false);
        }
        let owned = BTreeSet::from([mq("broker-a", 1), mq("broker-a", 3), mq("broker-a", 5)]);
        store.persist_all(&owned).await.unwrap();
        let mut sent = BTreeMap::new();
        for _ in 0..2 {
            let got = broker.next().await;
            assert!(got.is_oneway());
            let h: UpdateConsumerOffsetRequestHeader = got.header().unwrap();
            sent.insert(h.queue_id.0, h.commit_offset.0);
        }
        assert_eq!(sent, BTreeMap::from([(1, 101), (3, 103)]));
        assert_eq!(
            store.snapshot(),
            BTreeMap::from([
                (mq("broker-a", 1), QueueOffset(101)),
                (mq("broker-a", 3), QueueOffset(103)),
            ])
        );
        // Nothing else was sent: the next thing on the (ordered) connection is this query.
        store.read(&mq("broker-a", 1), ReadFrom::Store).await.unwrap();
        assert_eq!(broker.next().await.request_code(), RequestCode::QueryConsumerOffset);
    }

    #[tokio::test]
    async fn persist_all_with_nothing_owned_forgets_nothing() {
        let store = store(&[]);
        store.update(&mq("broker-a", 0), QueueOffset(5), false);
        store.persist_all(&BTreeSet::new()).await.unwrap();
        assert_eq!(store.snapshot().len(), 1);
    }

    #[tokio::test]
    async fn persist_all_reports_failures_and_keeps_going() {
        let mut broker = FakeBroker::start(query_answer).await;
        // A port nobody listens on.
        let dead =
            TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let store = store(&[("broker-a", &broker.addr), ("broker-b", &dead)]);
        let queues = [mq("broker-a", 0), mq("broker-b", 0), mq("broker-b", 1), mq("broker-c", 0)];
        for q in &queues {
            store.update(q, QueueOffset(7), false);
        }
        let err = store.persist_all(&queues.iter().cloned().collect()).await.unwrap_err();
        let OffsetStoreError::PersistAll { failed, total, first } = &err else {
            panic!("unexpected {err}");
        };
        // broker-b's two queues (one attempt) and broker-c, which has no address.
        assert_eq!((*failed, *total), (3, 4), "{err}");
        assert!(matches!(**first, OffsetStoreError::Broker { action: "updating", .. }), "{err}");
        assert!(err.to_string().contains(&dead), "{err}");
        // The reachable broker still got its update.
        let h: UpdateConsumerOffsetRequestHeader = broker.next().await.header().unwrap();
        assert_eq!((h.queue_id, h.commit_offset), (QueueId(0), QueueOffset(7)));
    }

    #[tokio::test]
    async fn confirmed_persist_waits_for_the_broker_and_reports_refusals() {
        let mut broker = FakeBroker::start(query_answer).await;
        let store = store(&[("broker-a", &broker.addr)]);
        for i in 0..3 {
            store.update(&mq("broker-a", i), QueueOffset(i64::from(i) + 1), false);
        }
        let owned = BTreeSet::from([mq("broker-a", 0), mq("broker-a", 1)]);
        store.persist_all_confirmed(&owned).await.unwrap();
        for i in 0..2 {
            let got = broker.next().await;
            assert!(!got.is_oneway(), "a confirmed update expects an answer");
            let h: UpdateConsumerOffsetRequestHeader = got.header().unwrap();
            assert_eq!((h.queue_id, h.commit_offset), (QueueId(i), QueueOffset(i64::from(i) + 1)));
        }
        assert_eq!(store.snapshot().len(), 2, "queue 2 was forgotten");

        store.update(&mq("broker-a", 2), QueueOffset(3), false);
        let err = store.persist_all_confirmed(&BTreeSet::from([mq("broker-a", 2)])).await;
        let text = err.unwrap_err().to_string();
        assert!(text.contains("SystemError") && text.contains("disk on fire"), "{text}");
    }

    #[tokio::test]
    async fn reading_the_store_maps_query_answers() {
        let mut broker = FakeBroker::start(query_answer).await;
        let store = store(&[("broker-a", &broker.addr)]);

        // SUCCESS: returned, and kept in memory.
        let found = store.read(&mq("broker-a", 0), ReadFrom::Store).await.unwrap();
        assert_eq!(found, Some(QueueOffset(42)));
        assert_eq!(store.read(&mq("broker-a", 0), ReadFrom::Memory).await.unwrap(), found);
        let q = broker.next().await;
        assert_eq!(q.request_code(), RequestCode::QueryConsumerOffset);
        assert!(!q.is_oneway());
        assert_eq!(
            ext(&q),
            BTreeMap::from([
                ("bname", "broker-a"),
                ("consumerGroup", "G"),
                ("queueId", "0"),
                ("topic", "T"),
            ]),
            "setZeroIfNotFound stays unset, as the Java client leaves it"
        );

        // QUERY_NOT_FOUND: no offset (Java −1), memory untouched.
        assert_eq!(store.read(&mq("broker-a", 1), ReadFrom::Store).await.unwrap(), None);
        assert_eq!(store.read(&mq("broker-a", 1), ReadFrom::Memory).await.unwrap(), None);

        // Another code: an error naming the queue and the broker (Java −2).
        let err = store.read(&mq("broker-a", 2), ReadFrom::Store).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, OffsetStoreError::Broker { action: "querying", .. }), "{text}");
        assert!(text.contains("queueId=2") && text.contains("disk on fire"), "{text}");

        // No address for the broker: an error too, without any request.
        let err = store.read(&mq("broker-z", 0), ReadFrom::Store).await.unwrap_err();
        assert!(matches!(err, OffsetStoreError::NoBrokerAddr { .. }), "{err}");
        assert!(err.to_string().contains("broker-z"), "{err}");
    }
}

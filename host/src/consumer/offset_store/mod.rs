//! Where a consumer group's progress lives (reference 4.9): a broker-side offset per queue for
//! CLUSTERING ([`RemoteOffsetStore`]), a file per client for BROADCASTING ([`LocalOffsetStore`]).
//!
//! Both keep the working copy in memory, because the per-queue tasks update it after every
//! consumed batch and the periodic persist task (every 5 s, and at shutdown) only then ships it to
//! the broker or the disk. The memory semantics are Java's `ControllableOffset`, written once for
//! both stores (the private `table` module): `update` may be increase-only or exact. (Java also
//! freezes an offset on OFFSET_ILLEGAL, so that an in-flight batch of the dropped process queue
//! cannot commit over the broker's offset; here the queue's one owner task aborts those batches
//! instead, so no freeze is needed: see `queue_task::QueueTask::restart_at`.)
//!
//! # Why an enum, not a trait
//! There are exactly two stores and the message model picks one at start-up, so [`OffsetStore`]
//! is an enum over two concrete types. A trait with `async fn` cannot be used as `dyn` without
//! boxing every future, and a generic `S: OffsetStore` parameter would spread through every
//! queue task, the rebalancer and the consumer handle for no gain. The enum gives static
//! dispatch, futures the compiler can prove `Send` (they run in spawned per-queue tasks), and a
//! cheap `Clone` handle: each variant is an `Arc` inside.
//!
//! # Why a std `Mutex`
//! The table is shared by the per-queue tasks and the persist task. Every critical section is one
//! map operation inside a synchronous closure (`SharedTable::with`), so it can never span an
//! `.await` and is held for microseconds at most; an async mutex would only add cost. (A std
//! `MutexGuard` is also `!Send`, so a guard held across an `.await` in a spawned task would not
//! even compile.)

mod local;
mod remote;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::client::ClientError;
use crate::protocol::body::BodyError;
use crate::protocol::{MessageQueue, QueueOffset};

pub use local::{DEFAULT_DIR_NAME, LocalOffsetStore};
pub use remote::{BrokerAddrs, DEFAULT_OFFSET_RPC_TIMEOUT, RemoteOffsetStore};

/// Where [`OffsetStore::read`] looks (Java `ReadOffsetType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The in-memory value only; never does I/O.
    Memory,
    /// The durable value: the broker (QUERY_CONSUMER_OFFSET) or the offsets file. A value found
    /// there also updates memory.
    Store,
}

/// The consumer's offset store: remote for CLUSTERING, a local file for BROADCASTING.
///
/// Cheap to clone; clones share one table. Call [`load`](Self::load) once before anything else.
#[derive(Debug, Clone)]
pub enum OffsetStore {
    Remote(RemoteOffsetStore),
    Local(LocalOffsetStore),
}

impl From<RemoteOffsetStore> for OffsetStore {
    fn from(store: RemoteOffsetStore) -> Self {
        Self::Remote(store)
    }
}

impl From<LocalOffsetStore> for OffsetStore {
    fn from(store: LocalOffsetStore) -> Self {
        Self::Local(store)
    }
}

impl OffsetStore {
    fn table(&self) -> &table::SharedTable {
        match self {
            Self::Remote(s) => s.table(),
            Self::Local(s) => s.table(),
        }
    }

    /// Reads what survived the last run: nothing for the remote store (the broker has it), the
    /// offsets file (or its `.bak`) for the local one.
    pub async fn load(&self) -> Result<(), OffsetStoreError> {
        match self {
            Self::Remote(_) => Ok(()),
            Self::Local(s) => s.load().await,
        }
    }

    /// Records consumption progress in memory. With `increase_only` the value never moves back
    /// (used where a stale writer may race a newer one, e.g. `correctTagsOffset`).
    pub fn update(&self, mq: &MessageQueue, offset: QueueOffset, increase_only: bool) {
        self.table().with(|t| t.update(mq, offset, increase_only));
    }

    /// The in-memory offset, without the `async` of [`read`](Self::read): for the pull path,
    /// which piggy-backs it on every request as the commit offset.
    pub fn read_memory(&self, mq: &MessageQueue) -> Option<QueueOffset> {
        self.table().with(|t| t.get(mq))
    }

    /// The queue's offset. `Ok(None)` means there is none (Java −1); an error means the store
    /// could not be asked (Java −2), and the caller should retry later rather than pick a start
    /// position (reference 4.10).
    pub async fn read(
        &self,
        mq: &MessageQueue,
        from: ReadFrom,
    ) -> Result<Option<QueueOffset>, OffsetStoreError> {
        if from == ReadFrom::Memory {
            return Ok(self.read_memory(mq));
        }
        match self {
            Self::Remote(s) => s.read_store(mq).await,
            Self::Local(s) => s.read_store(mq),
        }
    }

    /// Makes one queue's in-memory offset durable (an admin offset reset).
    /// Nothing happens if memory has no offset for it.
    pub async fn persist(&self, mq: &MessageQueue) -> Result<(), OffsetStoreError> {
        match self {
            Self::Remote(s) => s.persist(mq).await,
            Self::Local(s) => s.persist(mq).await,
        }
    }

    /// Makes the offsets of the `owned` queues durable and forgets every other queue's, so the
    /// table does not keep queues this client lost in a rebalance.
    ///
    /// An empty `owned` does nothing, as in Java: it means "not rebalanced yet" far more often
    /// than "owns nothing", and acting on it would wipe a broadcasting consumer's offsets file.
    /// Every queue is attempted even if some fail; the error counts the failures.
    pub async fn persist_all(
        &self,
        owned: &BTreeSet<MessageQueue>,
    ) -> Result<(), OffsetStoreError> {
        if owned.is_empty() {
            return Ok(());
        }
        match self {
            Self::Remote(s) => s.persist_all(owned, Delivery::Oneway).await,
            Self::Local(s) => s.persist_all(owned).await,
        }
    }

    /// [`persist_all`](Self::persist_all) for shutdown: the remote store waits for each
    /// UPDATE_CONSUMER_OFFSET answer (Java sends oneway even then), so the offsets have landed
    /// before UNREGISTER_CLIENT and the connections close, and a refusal (5.x:
    /// SUBSCRIPTION_GROUP_NOT_EXIST, TOPIC_NOT_EXIST…) is reported. The local store's writes are
    /// always complete when they return, so it behaves as `persist_all`.
    pub async fn persist_all_confirmed(
        &self,
        owned: &BTreeSet<MessageQueue>,
    ) -> Result<(), OffsetStoreError> {
        if owned.is_empty() {
            return Ok(());
        }
        match self {
            Self::Remote(s) => s.persist_all(owned, Delivery::Confirmed).await,
            Self::Local(s) => s.persist_all(owned).await,
        }
    }

    /// Forgets the queue's in-memory offset. The durable copy stays.
    pub fn remove(&self, mq: &MessageQueue) {
        self.table().with(|t| t.remove(mq));
    }

    /// Every in-memory offset, for stats and GET_CONSUMER_RUNNING_INFO.
    pub fn snapshot(&self) -> BTreeMap<MessageQueue, QueueOffset> {
        self.table().with(|t| t.snapshot())
    }
}

/// Why an offset could not be read or made durable. Each variant names the queue or the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetStoreError {
    /// The route knows no address for the queue's broker (Java: "The broker[…] not exist").
    #[error("no address is known for broker {broker} of {mq}", broker = mq.broker_name)]
    NoBrokerAddr { mq: MessageQueue },
    /// QUERY_CONSUMER_OFFSET or UPDATE_CONSUMER_OFFSET failed.
    #[error("{action} the offset of {mq} at {addr} failed: {source}")]
    Broker {
        mq: MessageQueue,
        addr: String,
        action: &'static str,
        #[source]
        source: Box<ClientError>,
    },
    /// Some of a [`persist_all`](OffsetStore::persist_all) round failed; `first` says why.
    #[error("persisting {failed} of {total} queue offsets failed; first: {first}")]
    PersistAll { failed: usize, total: usize, first: Box<OffsetStoreError> },
    #[error("{action} {path} failed: {source}", path = path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("offsets file {path} is corrupt: {source}", path = path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: BodyError,
    },
    /// Neither the offsets file nor its backup could be read. Refused rather than treated as
    /// "no offsets", which would restart every queue from ConsumeFromWhere.
    #[error("no usable offsets file: {main}; and its backup: {bak}")]
    NoUsableFile { main: Box<OffsetStoreError>, bak: Box<OffsetStoreError> },
    /// A local store was used before [`OffsetStore::load`]: writing then would drop every offset
    /// the file holds for queues not yet in memory.
    #[error("offsets file {path} used before it was loaded", path = path.display())]
    NotLoaded { path: PathBuf },
    /// A client id or group that cannot be one directory name.
    #[error("{what} {value:?} cannot be used as a directory name for the offsets file")]
    InvalidPathComponent { what: &'static str, value: String },
    /// The blocking file task panicked or was cancelled by runtime shutdown.
    #[error("the file task for {path} did not finish: {source}", path = path.display())]
    Task {
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// How a remote persist sends UPDATE_CONSUMER_OFFSET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Fire and forget, as Java's periodic persist: a lost update is resent 5 s later.
    Oneway,
    /// Wait for the broker's SUCCESS.
    Confirmed,
}

/// Locks a std mutex, ignoring poisoning: every critical section in this module is a single map
/// or value operation that leaves the data consistent even if a panic unwinds through it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tallies a persist round that keeps going past failures.
#[derive(Debug)]
struct PersistTally {
    total: usize,
    failed: usize,
    first: Option<OffsetStoreError>,
}

impl PersistTally {
    fn new(total: usize) -> Self {
        Self { total, failed: 0, first: None }
    }

    fn fail(&mut self, e: OffsetStoreError) {
        tracing::debug!(error = %e, "persisting an offset failed");
        self.failed += 1;
        self.first.get_or_insert(e);
    }

    /// A queue not attempted because its address already failed in this round.
    fn skip(&mut self) {
        self.failed += 1;
    }

    fn finish(self) -> Result<(), OffsetStoreError> {
        match self.first {
            None => Ok(()),
            Some(first) => Err(OffsetStoreError::PersistAll {
                failed: self.failed,
                total: self.total,
                first: Box::new(first),
            }),
        }
    }
}

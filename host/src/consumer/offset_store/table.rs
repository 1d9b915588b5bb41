//! The in-memory offset table both stores share: Java's `Map<MessageQueue, ControllableOffset>`,
//! as plain data so its rules are tested without I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::lock;
use crate::protocol::{MessageQueue, QueueOffset};

/// Offsets by queue, with the update rules of reference 4.9.
#[derive(Debug, Default)]
pub(super) struct OffsetTable {
    entries: BTreeMap<MessageQueue, QueueOffset>,
}

impl OffsetTable {
    /// Java `updateOffset`: a new queue takes `offset`; a known one keeps the larger value when
    /// `increase_only`, else takes `offset`.
    pub(super) fn update(&mut self, mq: &MessageQueue, offset: QueueOffset, increase_only: bool) {
        match self.entries.get_mut(mq) {
            None => {
                self.entries.insert(mq.clone(), offset);
            }
            Some(e) if increase_only => *e = (*e).max(offset),
            Some(e) => *e = offset,
        }
    }

    pub(super) fn get(&self, mq: &MessageQueue) -> Option<QueueOffset> {
        self.entries.get(mq).copied()
    }

    pub(super) fn remove(&mut self, mq: &MessageQueue) {
        self.entries.remove(mq);
    }

    /// The persist-all step: forgets every queue not in `owned` and returns the rest.
    pub(super) fn keep_owned(
        &mut self,
        owned: &BTreeSet<MessageQueue>,
    ) -> BTreeMap<MessageQueue, QueueOffset> {
        self.entries.retain(|mq, _| owned.contains(mq));
        self.snapshot()
    }

    pub(super) fn snapshot(&self) -> BTreeMap<MessageQueue, QueueOffset> {
        self.entries.clone()
    }
}

/// The table behind a std mutex, reachable only through a synchronous closure so that no
/// critical section can contain an `.await` (see the module docs).
#[derive(Debug, Default)]
pub(super) struct SharedTable(Mutex<OffsetTable>);

impl SharedTable {
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut OffsetTable) -> R) -> R {
        f(&mut lock(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QueueId;

    fn mq(id: i32) -> MessageQueue {
        MessageQueue::new("T", "broker-a", QueueId(id))
    }

    #[test]
    fn increase_only_never_moves_back_but_overwrite_does() {
        let mut t = OffsetTable::default();
        t.update(&mq(0), QueueOffset(10), true);
        assert_eq!(t.get(&mq(0)), Some(QueueOffset(10)), "a new queue takes the value");
        t.update(&mq(0), QueueOffset(7), true);
        assert_eq!(t.get(&mq(0)), Some(QueueOffset(10)));
        t.update(&mq(0), QueueOffset(12), true);
        assert_eq!(t.get(&mq(0)), Some(QueueOffset(12)));
        t.update(&mq(0), QueueOffset(3), false);
        assert_eq!(t.get(&mq(0)), Some(QueueOffset(3)));
        assert_eq!(t.get(&mq(1)), None);
    }

    #[test]
    fn keep_owned_forgets_the_rest() {
        let mut t = OffsetTable::default();
        for i in 0..4 {
            t.update(&mq(i), QueueOffset(i64::from(i) * 10), false);
        }
        let owned = BTreeSet::from([mq(1), mq(3), mq(7)]);
        let kept = t.keep_owned(&owned);
        let expected = BTreeMap::from([(mq(1), QueueOffset(10)), (mq(3), QueueOffset(30))]);
        assert_eq!(kept, expected, "owned queues with no offset are not invented");
        assert_eq!(t.snapshot(), expected, "the others are forgotten");
    }
}

//! Queue allocation: which of a topic's queues this consumer owns (reference 4.3).
//!
//! Every member of a group computes the allocation on its own, from the same inputs (the
//! topic's queues and the group's client ids), and no one checks the result. The split is only
//! correct — no queue owned twice, none left out — if every member runs the same algorithm on
//! identically ordered inputs. That is why these functions reproduce Java's
//! `AllocateMessageQueueAveragely`, `…AveragelyByCircle` and `…ConsistentHash` to the index,
//! and why [`allocate`] sorts its inputs itself in Java's order rather than trusting the caller.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use md5::{Digest, Md5};

use super::config::AllocateStrategy;
use crate::protocol::types::MessageQueue;

/// The queues of `mq_all` that `current_cid` owns under `strategy`.
///
/// - Inputs are sorted (and deduplicated) here, queues by (topic, broker name, queue id) and
///   client ids lexicographically, both compared by UTF-16 code units as Java's `compareTo`
///   does. Callers need not sort; the order of the inputs never changes the answer.
/// - If `current_cid` is not in `cid_all` (the broker has not seen our heartbeat yet, or has
///   already dropped us), the result is empty: Java drops all its queues of the topic then.
/// - Empty `mq_all`, `cid_all` or `current_cid` give an empty result, where Java throws; the
///   caller skips the topic in those cases anyway.
/// - The result is in sorted queue order.
///
/// `consumer_group` only labels the log line; Java passes it for the same reason.
pub fn allocate(
    strategy: AllocateStrategy,
    consumer_group: &str,
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Vec<MessageQueue> {
    let mut mqs: Vec<&MessageQueue> = mq_all.iter().collect();
    mqs.sort_by(|a, b| java_mq_cmp(a, b));
    mqs.dedup();
    let mut cids: Vec<&str> = cid_all.iter().map(String::as_str).collect();
    cids.sort_by(|a, b| java_str_cmp(a, b));
    cids.dedup();

    if current_cid.is_empty() || mqs.is_empty() {
        return Vec::new();
    }
    let Some(index) = cids.iter().position(|cid| *cid == current_cid) else {
        tracing::info!(
            group = consumer_group,
            cid = current_cid,
            cids = ?cids,
            "our client id is not in the group's consumer list; owning no queue"
        );
        return Vec::new();
    };
    let owned: Vec<&MessageQueue> = match strategy {
        AllocateStrategy::Avg => averagely(index, cids.len(), &mqs).to_vec(),
        AllocateStrategy::AvgByCircle => by_circle(index, cids.len(), &mqs),
        AllocateStrategy::ConsistentHash { virtual_nodes } => {
            consistent_hash(current_cid, &cids, virtual_nodes, &mqs)
        }
    };
    owned.into_iter().cloned().collect()
}

/// `AllocateMessageQueueAveragely`: consumer `index` of `m` gets a contiguous slice; the first
/// `n % m` consumers get one queue more. With fewer queues than consumers, consumers from
/// index `n` on get nothing.
fn averagely<T>(index: usize, m: usize, mqs: &[T]) -> &[T] {
    let n = mqs.len();
    let rem = n % m;
    let extra = rem > 0 && index < rem;
    let size = if n <= m {
        1
    } else if extra {
        n / m + 1
    } else {
        n / m
    };
    let start = if extra { index * size } else { index * size + rem };
    let len = size.min(n.saturating_sub(start));
    mqs.get(start..start + len).unwrap_or_default()
}

/// `AllocateMessageQueueAveragelyByCircle`: every `m`-th queue, starting at `index`.
fn by_circle<'a, T>(index: usize, m: usize, mqs: &[&'a T]) -> Vec<&'a T> {
    mqs.iter().skip(index).step_by(m).copied().collect()
}

/// `AllocateMessageQueueConsistentHash` over `ConsistentHashRouter`: each client id puts
/// `virtual_nodes` points `<cid>-<k>` on an MD5 ring; a queue belongs to the first point at or
/// after the hash of its `toString()`, wrapping around.
///
/// Points are inserted in sorted client id order, so on a hash collision the later client id
/// wins, as with Java's `TreeMap.put`.
fn consistent_hash<'a>(
    current_cid: &str,
    cids: &[&str],
    virtual_nodes: u32,
    mqs: &[&'a MessageQueue],
) -> Vec<&'a MessageQueue> {
    let mut ring: BTreeMap<u32, &str> = BTreeMap::new();
    for cid in cids {
        for k in 0..virtual_nodes {
            ring.insert(ring_hash(&format!("{cid}-{k}")), cid);
        }
    }
    let owner = |mq: &MessageQueue| {
        let h = ring_hash(&mq.to_string());
        ring.range(h..).next().or_else(|| ring.iter().next()).map(|(_, cid)| *cid)
    };
    mqs.iter().copied().filter(|mq| owner(mq) == Some(current_cid)).collect()
}

/// Java's `MD5Hash.hash`: the first four bytes of MD5 over the UTF-8 key, big-endian, unsigned.
pub fn ring_hash(key: &str) -> u32 {
    let digest = Md5::digest(key.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Java's `String.compareTo`: by UTF-16 code units. Differs from Rust's byte order only when
/// characters above U+FFFF meet characters in U+E000..=U+FFFF, but then it matters.
fn java_str_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `MessageQueue.compareTo`: topic, then broker name, then queue id.
fn java_mq_cmp(a: &MessageQueue, b: &MessageQueue) -> Ordering {
    java_str_cmp(&a.topic, &b.topic)
        .then_with(|| java_str_cmp(&a.broker_name, &b.broker_name))
        .then_with(|| a.queue_id.cmp(&b.queue_id))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::protocol::types::QueueId;

    const AVG: AllocateStrategy = AllocateStrategy::Avg;
    const CIRCLE: AllocateStrategy = AllocateStrategy::AvgByCircle;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|i| MessageQueue::new("T", "broker-a", QueueId(i))).collect()
    }

    fn cids(m: usize) -> Vec<String> {
        (0..m).map(|i| format!("10.0.0.{i}@{i}")).collect()
    }

    /// Queue ids owned by each consumer, in cid order.
    fn split(strategy: AllocateStrategy, n: i32, m: usize) -> Vec<Vec<i32>> {
        let mqs = queues(n);
        let all = cids(m);
        all.iter()
            .map(|cid| {
                allocate(strategy, "G", cid, &mqs, &all).iter().map(|mq| mq.queue_id.0).collect()
            })
            .collect()
    }

    #[test]
    fn averagely_matches_java() {
        let table: &[(i32, usize, &[&[i32]])] = &[
            (8, 3, &[&[0, 1, 2], &[3, 4, 5], &[6, 7]]),
            (8, 2, &[&[0, 1, 2, 3], &[4, 5, 6, 7]]),
            (8, 8, &[&[0], &[1], &[2], &[3], &[4], &[5], &[6], &[7]]),
            (10, 4, &[&[0, 1, 2], &[3, 4, 5], &[6, 7], &[8, 9]]),
            (9, 4, &[&[0, 1, 2], &[3, 4], &[5, 6], &[7, 8]]),
            (4, 3, &[&[0, 1], &[2], &[3]]),
            // Fewer queues than consumers: the last ones get nothing.
            (2, 3, &[&[0], &[1], &[]]),
            (1, 2, &[&[0], &[]]),
            (3, 5, &[&[0], &[1], &[2], &[], &[]]),
            (5, 1, &[&[0, 1, 2, 3, 4]]),
        ];
        for &(n, m, expected) in table {
            assert_eq!(split(AVG, n, m), expected, "{n} queues × {m} consumers");
        }
    }

    #[test]
    fn by_circle_matches_java() {
        let table: &[(i32, usize, &[&[i32]])] = &[
            (8, 3, &[&[0, 3, 6], &[1, 4, 7], &[2, 5]]),
            (10, 4, &[&[0, 4, 8], &[1, 5, 9], &[2, 6], &[3, 7]]),
            (2, 3, &[&[0], &[1], &[]]),
            (1, 2, &[&[0], &[]]),
            (4, 1, &[&[0, 1, 2, 3]]),
        ];
        for &(n, m, expected) in table {
            assert_eq!(split(CIRCLE, n, m), expected, "{n} queues × {m} consumers");
        }
    }

    #[test]
    fn unknown_cid_and_empty_inputs_own_nothing() {
        let mqs = queues(4);
        let all = cids(2);
        for strategy in [AVG, CIRCLE, AllocateStrategy::consistent_hash()] {
            assert!(allocate(strategy, "G", "10.9.9.9@x", &mqs, &all).is_empty());
            assert!(allocate(strategy, "G", "", &mqs, &all).is_empty());
            assert!(allocate(strategy, "G", &all[0], &[], &all).is_empty());
            assert!(allocate(strategy, "G", &all[0], &mqs, &[]).is_empty());
        }
    }

    #[test]
    fn inputs_are_sorted_the_java_way() {
        // Unsorted, duplicated input: same answer as the sorted one.
        let mut mqs = vec![
            MessageQueue::new("T", "broker-b", QueueId(0)),
            MessageQueue::new("T", "broker-a", QueueId(10)),
            MessageQueue::new("T", "broker-a", QueueId(2)),
            MessageQueue::new("S", "broker-b", QueueId(1)),
            MessageQueue::new("T", "broker-a", QueueId(2)),
        ];
        let all = vec!["c@2".to_owned(), "a@1".to_owned(), "b@3".to_owned(), "a@1".to_owned()];
        let got = allocate(AVG, "G", "a@1", &mqs, &all);
        // Sorted: S/b/1, T/a/2, T/a/10, T/b/0; three consumers → a@1 takes the first two.
        assert_eq!(
            got,
            vec![
                MessageQueue::new("S", "broker-b", QueueId(1)),
                MessageQueue::new("T", "broker-a", QueueId(2)),
            ]
        );
        mqs.reverse();
        assert_eq!(allocate(AVG, "G", "a@1", &mqs, &all), got);

        // UTF-16 order: U+FF5E sorts after U+1F600 in bytes, before it in UTF-16.
        let high = "\u{1F600}".to_owned();
        let bmp = "\u{FF5E}".to_owned();
        assert_eq!(java_str_cmp(&high, &bmp), Ordering::Less);
        assert!(high.as_str() > bmp.as_str());
        let two = queues(2);
        let got = allocate(AVG, "G", &high, &two, &[bmp.clone(), high.clone()]);
        assert_eq!(got, vec![two[0].clone()], "Java puts the surrogate pair first");
    }

    // --- consistent hash: MD5 values computed with Python's hashlib ----------------------------

    const CIDS: [&str; 3] = ["10.0.0.1@a", "10.0.0.2@b", "10.0.0.3@c"];

    /// `int.from_bytes(hashlib.md5(f"{cid}-{k}".encode()).digest()[:4], "big")`, k = 0..10.
    const NODE_HASHES: [[u32; 10]; 3] = [
        [
            0x1790ece2, 0x8ebe391a, 0xab75bbd1, 0x3c98d8fd, 0x5dd770da, 0xd48b2806, 0xaee57f44,
            0x346fc214, 0x91b34fd0, 0xda2f1108,
        ],
        [
            0xa893c993, 0x65b1b925, 0x6d91a761, 0x5784a900, 0xb475b5b0, 0x073fe01b, 0xb32b3ce8,
            0x4ed5beff, 0x28dcc016, 0x8b02b99c,
        ],
        [
            0x6b684877, 0xe5f61d90, 0xda17f749, 0x4c9d33cf, 0xa58f59ed, 0xca12e404, 0x88192214,
            0x6ac54708, 0x16e34c1b, 0xed0016d3,
        ],
    ];

    /// Hash of `MessageQueue [topic=T, brokerName=<b>, queueId=<q>]`, same recipe.
    const QUEUE_HASHES: [(&str, i32, u32); 20] = [
        ("broker-a", 0, 0x612f4674),
        ("broker-a", 1, 0x8b35eabf),
        ("broker-a", 2, 0x004e3e1b),
        ("broker-a", 3, 0xdb778d95),
        ("broker-a", 4, 0xbd78ce79),
        ("broker-a", 5, 0x12d49d7d),
        ("broker-a", 6, 0x87472082),
        ("broker-a", 7, 0x43e0f785),
        ("broker-a", 8, 0xfb77769c), // above every ring point: wraps to the first
        ("broker-a", 9, 0xac6eb449),
        ("broker-b", 0, 0x764d2cd7),
        ("broker-b", 1, 0xae6a4453),
        ("broker-b", 2, 0x4c1d437c),
        ("broker-b", 3, 0x7b7ce042),
        ("broker-b", 4, 0x69bede8a),
        ("broker-b", 5, 0x56ce0a82),
        ("broker-b", 6, 0x34c7ba07),
        ("broker-b", 7, 0xe3cd2931),
        ("broker-b", 8, 0x1fda1e03),
        ("broker-b", 9, 0xee9c5871), // wraps too
    ];

    fn hash_case_queues() -> Vec<MessageQueue> {
        QUEUE_HASHES.iter().map(|&(b, q, _)| MessageQueue::new("T", b, QueueId(q))).collect()
    }

    #[test]
    fn ring_hash_is_javas_md5_prefix() {
        assert_eq!(ring_hash(""), 0xd41d8cd9);
        assert_eq!(ring_hash("abc"), 0x90015098);
        for (cid, hashes) in CIDS.iter().zip(NODE_HASHES) {
            for (k, expected) in hashes.into_iter().enumerate() {
                assert_eq!(ring_hash(&format!("{cid}-{k}")), expected, "{cid}-{k}");
            }
        }
        for (mq, &(_, _, expected)) in hash_case_queues().iter().zip(&QUEUE_HASHES) {
            assert_eq!(ring_hash(&mq.to_string()), expected, "{mq}");
        }
    }

    #[test]
    fn consistent_hash_matches_an_independent_ring_walk() {
        // Independent owner computation from the Python hashes: the smallest ring point ≥ the
        // queue hash, else the smallest point overall — by linear scan, no BTreeMap.
        let points: Vec<(u32, &str)> = CIDS
            .iter()
            .zip(NODE_HASHES)
            .flat_map(|(cid, hs)| hs.into_iter().map(move |h| (h, *cid)))
            .collect();
        let owner_of = |h: u32| {
            let at_or_after = points.iter().filter(|(p, _)| *p >= h).min_by_key(|(p, _)| *p);
            let first = points.iter().min_by_key(|(p, _)| *p);
            at_or_after.or(first).map(|(_, cid)| *cid)
        };
        let mqs = hash_case_queues();
        let all: Vec<String> = CIDS.iter().map(|c| (*c).to_owned()).collect();
        for cid in CIDS {
            let expected: Vec<MessageQueue> = QUEUE_HASHES
                .iter()
                .zip(&mqs)
                .filter(|((_, _, h), _)| owner_of(*h) == Some(cid))
                .map(|(_, mq)| mq.clone())
                .collect();
            let got = allocate(AllocateStrategy::consistent_hash(), "G", cid, &mqs, &all);
            assert_eq!(got, expected, "{cid}");
        }
    }

    #[test]
    fn consistent_hash_table() {
        // The same case written out (Python: owner per queue from the sorted ring).
        let mqs = hash_case_queues();
        let all: Vec<String> = CIDS.iter().map(|c| (*c).to_owned()).collect();
        let expected: [&[(&str, i32)]; 3] = [
            &[("broker-a", 1), ("broker-a", 9), ("broker-b", 1), ("broker-b", 6)],
            &[
                ("broker-a", 0),
                ("broker-a", 2),
                ("broker-a", 8),
                ("broker-b", 5),
                ("broker-b", 8),
                ("broker-b", 9),
            ],
            &[
                ("broker-a", 3),
                ("broker-a", 4),
                ("broker-a", 5),
                ("broker-a", 6),
                ("broker-a", 7),
                ("broker-b", 0),
                ("broker-b", 2),
                ("broker-b", 3),
                ("broker-b", 4),
                ("broker-b", 7),
            ],
        ];
        for (cid, want) in CIDS.iter().zip(expected) {
            let got: Vec<(String, i32)> =
                allocate(AllocateStrategy::consistent_hash(), "G", cid, &mqs, &all)
                    .into_iter()
                    .map(|mq| (mq.broker_name, mq.queue_id.0))
                    .collect();
            let want: Vec<(String, i32)> =
                want.iter().map(|(b, q)| ((*b).to_owned(), *q)).collect();
            assert_eq!(got, want, "{cid}");
        }
    }

    #[test]
    fn consistent_hash_with_one_consumer_takes_everything() {
        let mqs = hash_case_queues();
        let all = vec![CIDS[0].to_owned()];
        let strategy = AllocateStrategy::ConsistentHash { virtual_nodes: 1 };
        assert_eq!(allocate(strategy, "G", CIDS[0], &mqs, &all).len(), mqs.len());
    }

    // --- properties ------------------------------------------------------------------------------

    fn arb_queues() -> impl Strategy<Value = Vec<MessageQueue>> {
        prop::collection::vec(
            (
                prop::sample::select(vec!["T", "TopicB", "%RETRY%G"]),
                prop::sample::select(vec!["broker-a", "broker-b", "b"]),
                0..16i32,
            ),
            0..48,
        )
        .prop_map(|v| v.into_iter().map(|(t, b, q)| MessageQueue::new(t, b, QueueId(q))).collect())
    }

    fn arb_cids() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[0-9.]{1,9}@[a-zA-Z0-9#]{1,6}", 1..9)
            .prop_map(|set| set.into_iter().collect())
    }

    fn arb_strategy() -> impl Strategy<Value = AllocateStrategy> {
        prop_oneof![
            Just(AVG),
            Just(CIRCLE),
            (1..20u32).prop_map(|virtual_nodes| AllocateStrategy::ConsistentHash { virtual_nodes }),
        ]
    }

    proptest! {
        #[test]
        fn every_queue_has_exactly_one_owner(
            mqs in arb_queues(),
            cids in arb_cids(),
            strategy in arb_strategy(),
            reverse in any::<bool>(),
        ) {
            let unique: BTreeSet<MessageQueue> = mqs.iter().cloned().collect();
            let mut union = BTreeSet::new();
            let mut total = 0;
            for cid in &cids {
                // Each member may see the lists in another order.
                let (mut mine, mut members) = (mqs.clone(), cids.clone());
                if reverse {
                    mine.reverse();
                    members.reverse();
                }
                let owned = allocate(strategy, "G", cid, &mine, &members);
                total += owned.len();
                union.extend(owned);
            }
            prop_assert_eq!(total, unique.len(), "a queue was allocated twice");
            prop_assert_eq!(union, unique);
        }

        #[test]
        fn averagely_is_balanced_and_contiguous(mqs in arb_queues(), cids in arb_cids()) {
            let mut sorted: Vec<MessageQueue> = mqs.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
            sorted.sort_by(java_mq_cmp);
            let sizes: Vec<usize> = cids
                .iter()
                .map(|cid| {
                    let owned = allocate(AVG, "G", cid, &mqs, &cids);
                    if let Some(first) = owned.first() {
                        let start = sorted.iter().position(|mq| mq == first).unwrap();
                        prop_assert_eq!(&sorted[start..start + owned.len()], owned.as_slice());
                    }
                    Ok(owned.len())
                })
                .collect::<Result<_, TestCaseError>>()?;
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{:?}", sizes);
        }
    }
}

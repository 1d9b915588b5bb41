//! The consumer's view of routes: topic → route, broker name → replicas (reference 4.2).
//!
//! Written by the route-refresh tick, read by every queue task on every pull, so it sits behind
//! a std `RwLock` held only for map look-ups (never across an `.await`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock};

use crate::client::{ClientError, NameServerClient};
use crate::protocol::MessageQueue;
use crate::protocol::body::TopicRouteData;
use crate::protocol::body::route::MASTER_ID;

#[derive(Debug, Default)]
struct Tables {
    routes: HashMap<String, TopicRouteData>,
    /// Broker name → broker id → address, merged over every route we hold.
    brokers: BTreeMap<String, BTreeMap<i64, String>>,
}

/// Routes of the subscribed topics.
#[derive(Debug, Default)]
pub struct RouteTable {
    tables: RwLock<Tables>,
}

/// Whether a refresh changed anything (Java compares sorted route data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteChange {
    Unchanged,
    Changed,
    /// The name server no longer knows the topic.
    Gone,
}

impl RouteTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches the route of `topic` and records it.
    pub async fn refresh(
        &self,
        namesrv: &NameServerClient,
        topic: &str,
    ) -> Result<RouteChange, ClientError> {
        let fetched = namesrv.route(topic).await?;
        Ok(self.apply(topic, fetched))
    }

    /// Records a route (or its absence); pure bookkeeping, separated from I/O for tests.
    pub fn apply(&self, topic: &str, route: Option<TopicRouteData>) -> RouteChange {
        let mut t = self.write();
        let change = match route {
            None => {
                if t.routes.remove(topic).is_some() {
                    RouteChange::Gone
                } else {
                    RouteChange::Unchanged
                }
            }
            Some(mut route) => {
                route.normalize();
                let change = if t.routes.get(topic) == Some(&route) {
                    RouteChange::Unchanged
                } else {
                    RouteChange::Changed
                };
                t.routes.insert(topic.to_owned(), route);
                change
            }
        };
        if change != RouteChange::Unchanged {
            t.brokers = merge_brokers(t.routes.values());
        }
        change
    }

    /// The readable queues of `topic` (Java's subscribe info), sorted; `None` if no route.
    pub fn subscribe_queues(&self, topic: &str) -> Option<Vec<MessageQueue>> {
        self.read().routes.get(topic).map(|r| r.subscribe_queues(topic))
    }

    /// Whether a route for `topic` is known (without building its queue list).
    pub fn has_route(&self, topic: &str) -> bool {
        self.read().routes.contains_key(topic)
    }

    /// Where to pull `broker_name` from, honouring the broker's last suggestion
    /// (`findBrokerAddressInSubscribe`): the suggested id, else id + 1 for a missing slave, else
    /// any replica. Returns the address and whether it is the master.
    pub fn pull_addr(&self, broker_name: &str, suggested_id: i64) -> Option<(String, bool)> {
        let t = self.read();
        let replicas = t.brokers.get(broker_name)?;
        let pick = replicas
            .get(&suggested_id)
            .map(|a| (suggested_id, a))
            .or_else(|| {
                (suggested_id != MASTER_ID)
                    .then(|| replicas.get(&(suggested_id + 1)).map(|a| (suggested_id + 1, a)))
                    .flatten()
            })
            .or_else(|| replicas.iter().next().map(|(id, a)| (*id, a)))?;
        Some((pick.1.clone(), pick.0 == MASTER_ID))
    }

    /// The master of `broker_name` (lock, send-back, offsets by timestamp/max/min).
    pub fn master_addr(&self, broker_name: &str) -> Option<String> {
        self.read().brokers.get(broker_name)?.get(&MASTER_ID).cloned()
    }

    /// The master, else any replica (offset queries and updates, reference 4.2).
    pub fn master_or_any_addr(&self, broker_name: &str) -> Option<String> {
        let t = self.read();
        let replicas = t.brokers.get(broker_name)?;
        replicas.get(&MASTER_ID).or_else(|| replicas.values().next()).cloned()
    }

    /// Every broker address (masters and slaves): heartbeat and unregister targets.
    pub fn all_broker_addrs(&self) -> BTreeSet<String> {
        self.read().brokers.values().flat_map(|r| r.values().cloned()).collect()
    }

    /// One address to ask for the group's member list: a master of a broker serving `topic`,
    /// else any replica (Java picks one broker of the topic).
    pub fn any_broker_of(&self, topic: &str) -> Option<String> {
        let t = self.read();
        let route = t.routes.get(topic)?;
        route.broker_datas.iter().find_map(|b| b.master_or_any_addr().map(str::to_owned))
    }
}

impl super::offset_store::BrokerAddrs for RouteTable {
    fn master_or_any(&self, broker_name: &str) -> Option<String> {
        self.master_or_any_addr(broker_name)
    }
}

fn merge_brokers<'a>(
    routes: impl Iterator<Item = &'a TopicRouteData>,
) -> BTreeMap<String, BTreeMap<i64, String>> {
    let mut out: BTreeMap<String, BTreeMap<i64, String>> = BTreeMap::new();
    for route in routes {
        for b in &route.broker_datas {
            out.entry(b.broker_name.clone())
                .or_default()
                .extend(b.broker_addrs.iter().map(|(id, a)| (*id, a.clone())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::{BrokerData, QueueData};

    fn route(brokers: &[(&str, &[(i64, &str)])], queues: i32) -> TopicRouteData {
        TopicRouteData {
            queue_datas: brokers
                .iter()
                .map(|(name, _)| QueueData {
                    broker_name: (*name).to_owned(),
                    read_queue_nums: queues,
                    write_queue_nums: queues,
                    perm: 6,
                    topic_sys_flag: 0,
                })
                .collect(),
            broker_datas: brokers
                .iter()
                .map(|(name, addrs)| BrokerData {
                    cluster: "c".into(),
                    broker_name: (*name).to_owned(),
                    broker_addrs: addrs.iter().map(|(id, a)| (*id, (*a).to_owned())).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pull_address_follows_the_suggestion_with_javas_fallbacks() {
        let table = RouteTable::default();
        table.apply(
            "T",
            Some(route(&[("a", &[(0, "m:1"), (1, "s1:1")]), ("b", &[(2, "s2:1")])], 4)),
        );
        type Case<'a> = (&'a str, i64, Option<(&'a str, bool)>);
        let cases: &[Case<'_>] = &[
            ("a", 0, Some(("m:1", true))),
            ("a", 1, Some(("s1:1", false))),
            // Suggested slave 3 is missing; 4 is missing too; fall back to any (the master).
            ("a", 3, Some(("m:1", true))),
            // Slave 1 missing on b, id + 1 = 2 exists.
            ("b", 1, Some(("s2:1", false))),
            // Master missing on b: any replica.
            ("b", 0, Some(("s2:1", false))),
            ("zzz", 0, None),
        ];
        for (broker, id, want) in cases {
            let got = table.pull_addr(broker, *id);
            assert_eq!(got.as_ref().map(|(a, m)| (a.as_str(), *m)), *want, "{broker}/{id}");
        }
        assert_eq!(table.master_addr("b"), None);
        assert_eq!(table.master_or_any_addr("b").as_deref(), Some("s2:1"));
        assert_eq!(table.all_broker_addrs().len(), 3);
    }

    #[test]
    fn changes_are_detected_and_gone_topics_pruned() {
        let table = RouteTable::default();
        let r = route(&[("a", &[(0, "m:1")])], 4);
        assert_eq!(table.apply("T", Some(r.clone())), RouteChange::Changed);
        assert_eq!(table.apply("T", Some(r)), RouteChange::Unchanged);
        assert_eq!(table.subscribe_queues("T").map(|q| q.len()), Some(4));
        assert_eq!(table.apply("U", Some(route(&[("b", &[(0, "n:1")])], 2))), RouteChange::Changed);
        assert_eq!(table.apply("U", None), RouteChange::Gone);
        assert_eq!(table.subscribe_queues("U"), None);
        assert_eq!(table.all_broker_addrs(), BTreeSet::from(["m:1".to_owned()]));
        assert_eq!(table.apply("T", None), RouteChange::Gone);
    }
}

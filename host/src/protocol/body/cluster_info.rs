//! GET_BROKER_CLUSTER_INFO (106) response: every broker set the name server knows, by cluster.
//! Used by tests and admin tooling to find the masters to create topics on.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::route::BrokerData;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker name → broker set.
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → broker names.
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

impl ClusterInfo {
    /// The broker sets of a cluster, in broker-name order. Names listed for the cluster but
    /// missing from the broker table are skipped.
    pub fn brokers_in_cluster<'a>(
        &'a self,
        cluster: &str,
    ) -> impl Iterator<Item = &'a BrokerData> + 'a {
        self.cluster_addr_table
            .get(cluster)
            .into_iter()
            .flatten()
            .filter_map(|name| self.broker_addr_table.get(name))
    }

    /// The master addresses of a cluster, in broker-name order.
    pub fn master_addrs(&self, cluster: &str) -> Vec<&str> {
        self.brokers_in_cluster(cluster).filter_map(BrokerData::master_addr).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bare_broker_ids_and_finds_masters() {
        let body = br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"},"broker-b":{"brokerAddrs":{1:"10.0.0.3:10911"},"brokerName":"broker-b","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-b","broker-a","broker-gone"]}}"#;
        let info = ClusterInfo::decode(body).unwrap();
        assert_eq!(info.broker_addr_table.len(), 2);
        assert_eq!(info.master_addrs("DefaultCluster"), ["10.0.0.1:10911"]);
        assert_eq!(info.brokers_in_cluster("DefaultCluster").count(), 2);
        assert_eq!(info.brokers_in_cluster("Other").count(), 0);
        assert_eq!(ClusterInfo::decode(&info.encode()).unwrap(), info);
    }
}

//! The cluster a benchmark runs against: its own (127.0.0.1 only, removed at exit) unless
//! `RMQ_TEST_CLUSTER_ENV` names the `cluster.env` of one started by `scripts/cluster.sh start`.

use std::path::Path;

use anyhow::Result;
use rmq_wasm_tests::cluster::{ATTACH_ENV, Cluster, ClusterOptions, DEFAULT_DELAY_LEVELS};

/// Attaches to the cluster `RMQ_TEST_CLUSTER_ENV` names or starts one (flavour by
/// `RMQ_CLUSTER_FLAVOUR`), with `log_filter` for a rocketmq-rust cluster's logs and, if
/// `stock_delay_levels`, the stock retry delays instead of the test cluster's 1 s per level.
pub fn start_or_attach(log_filter: &str, stock_delay_levels: bool) -> Result<Cluster> {
    match std::env::var_os(ATTACH_ENV) {
        Some(path) if !path.is_empty() => {
            eprintln!("attaching to the cluster of {}", Path::new(&path).display());
            Cluster::attach(Path::new(&path))
        }
        _ => {
            eprintln!("starting a local cluster (set {ATTACH_ENV} to reuse a running one)…");
            let mut opts =
                ClusterOptions { log_filter: log_filter.to_owned(), ..ClusterOptions::default() };
            if stock_delay_levels {
                opts.message_delay_level = DEFAULT_DELAY_LEVELS.to_owned();
            }
            eprintln!("broker delay levels: {}", opts.message_delay_level);
            Cluster::start(opts)
        }
    }
}

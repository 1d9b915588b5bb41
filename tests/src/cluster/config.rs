//! What a local cluster is made of (topology → broker nodes), the ports each server gets, and
//! the config files of both implementations: rocketmq-rust's TOML and Apache RocketMQ's Java
//! properties.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;
use std::sync::PoisonError;

use anyhow::Result;
use anyhow::bail;

use super::ClusterOptions;

/// Which brokers a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// One master, `broker-a` (the default).
    #[default]
    Single,
    /// Two masters, `broker-a` and `broker-b`, in one cluster: a topic's queues span both.
    TwoMasters,
    /// `broker-a` as an ASYNC_MASTER (`brokerId=0`) and its SLAVE (`brokerId=1`), replicating
    /// through classic HA; the slave serves reads (`slaveReadEnable`).
    MasterSlave,
}

/// A broker's role in classic (non-controller) replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `ASYNC_MASTER`.
    Master,
    /// `SLAVE`.
    Slave,
}

/// One broker process of a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// `brokerName` (a master and its slave share it).
    pub broker_name: String,
    /// `brokerId`: 0 for a master.
    pub broker_id: u64,
    /// Master or slave.
    pub role: Role,
}

impl NodeSpec {
    /// `broker-a-0`: the node's directory and log names.
    pub fn key(&self) -> String {
        format!("{}-{}", self.broker_name, self.broker_id)
    }
}

impl Topology {
    /// The broker nodes, masters first; `first_name` names the first master (`broker-a`).
    pub fn nodes(self, first_name: &str) -> Vec<NodeSpec> {
        let node = |name: &str, broker_id: u64, role: Role| NodeSpec {
            broker_name: name.to_owned(),
            broker_id,
            role,
        };
        match self {
            Topology::Single => vec![node(first_name, 0, Role::Master)],
            Topology::TwoMasters => {
                vec![
                    node(first_name, 0, Role::Master),
                    node(&second_name(first_name), 0, Role::Master),
                ]
            }
            Topology::MasterSlave => {
                vec![node(first_name, 0, Role::Master), node(first_name, 1, Role::Slave)]
            }
        }
    }
}

/// `broker-a` → `broker-b`; anything else gets `-2`.
fn second_name(first: &str) -> String {
    match first.strip_suffix('a') {
        Some(stem) => format!("{stem}b"),
        None => format!("{first}-2"),
    }
}

/// Ports of one broker: it also binds `listen - 2` (the "fast"/VIP remoting listener) and `ha`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerPorts {
    /// `listenPort`.
    pub listen: u16,
    /// `haListenPort`.
    pub ha: u16,
}

/// Ports for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// The name server's `listenPort`.
    pub namesrv: u16,
    /// One entry per broker node, in node order.
    pub brokers: Vec<BrokerPorts>,
}

/// Free loopback ports for a name server and `brokers` brokers, distinct from every port handed
/// out before in this process.
pub(crate) fn pick_ports(brokers: usize) -> Result<Ports> {
    // Ports handed to any cluster of this process are never handed out again, so concurrent starts
    // in one test binary cannot collide (another process still can: see `Cluster::start`).
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    // Hold every probe listener until all ports are chosen so that they are distinct.
    let mut held = Vec::new();
    let mut taken = Vec::new();
    let mut free_port = |wanted: u16, taken: &[u16]| -> Option<u16> {
        let listener = TcpListener::bind(("127.0.0.1", wanted)).ok()?;
        let port = listener.local_addr().ok()?.port();
        if port <= 1024 + 2 || handed_out.contains(&port) || taken.contains(&port) {
            return None;
        }
        held.push(listener);
        Some(port)
    };
    let Some(namesrv) = (0..100).find_map(|_| free_port(0, &taken)) else {
        bail!("found no free loopback port");
    };
    taken.push(namesrv);
    let mut ports = Ports { namesrv, brokers: Vec::new() };
    for _ in 0..brokers {
        let Some(ha) = (0..100).find_map(|_| free_port(0, &taken)) else {
            bail!("found no free loopback port");
        };
        taken.push(ha);
        let listen = (0..100).find_map(|_| {
            let listen = free_port(0, &taken)?;
            free_port(listen - 2, &taken).map(|_| listen)
        });
        let Some(listen) = listen else {
            bail!("found no free loopback port pair (p, p-2) for a broker");
        };
        taken.extend([listen, listen - 2]);
        ports.brokers.push(BrokerPorts { listen, ha });
    }
    handed_out.extend(taken);
    Ok(ports)
}

/// What a broker's config is written from.
#[derive(Debug)]
pub(crate) struct BrokerConf<'a> {
    pub(crate) opts: &'a ClusterOptions,
    pub(crate) node: &'a NodeSpec,
    pub(crate) namesrv_addr: &'a str,
    pub(crate) store: &'a Path,
    pub(crate) ports: BrokerPorts,
}

/// The store preallocates its files in full: 1 GiB of commit log, 400 MiB of index and 6 MiB per
/// consume queue by default, i.e. ~1.5 GB of disk per test broker. Tests need far less; rolling to
/// a further file is ordinary broker behaviour.
const COMMIT_LOG_FILE: u64 = 64 * 1024 * 1024;
const CONSUME_QUEUE_FILE: u64 = 6_000 * 20;
const MAX_HASH_SLOTS: u64 = 50_000;
const MAX_INDEX: u64 = 200_000;

/// rocketmq-rust's name server config.
pub(crate) fn namesrv_toml(home: &Path, port: u16) -> String {
    format!(
        "# Written by rmq-wasm-tests (cluster/config.rs).\n\
         rocketmqHome = {home}\n\
         kvConfigPath = {kv}\n\
         configStorePath = {store}\n\
         listenPort = {port}\n\
         bindAddress = \"127.0.0.1\"\n",
        home = toml_str(&home.display().to_string()),
        kv = toml_str(&home.join("kvConfig.json").display().to_string()),
        store = toml_str(&home.join("namesrv.properties").display().to_string()),
    )
}

/// The Java name server's properties (`-c`): `bindAddress` exists from 5.x on; 4.9 ignores it.
pub(crate) fn namesrv_properties(home: &Path, port: u16) -> String {
    let mut out = String::from("# Written by rmq-wasm-tests (cluster/config.rs).\n");
    for (key, value) in [
        ("listenPort", port.to_string()),
        ("bindAddress", "127.0.0.1".to_owned()),
        ("rocketmqHome", home.display().to_string()),
        ("kvConfigPath", home.join("namesrv").join("kvConfig.json").display().to_string()),
        ("configStorePath", home.join("namesrv").join("namesrv.properties").display().to_string()),
    ] {
        let _ = writeln!(out, "{key}={}", properties_value(&value));
    }
    out
}

/// The broker config in rocketmq-rust's canonical TOML form: unlike the Java properties form it
/// can set the listener bind address (`[broker.brokerServerConfig] bindAddress`), which otherwise
/// defaults to 0.0.0.0.
pub(crate) fn broker_toml(conf: &BrokerConf<'_>) -> String {
    let BrokerConf { opts, node, namesrv_addr, store, ports } = conf;
    let store_root = store.display().to_string();
    let commit_log = store.join("commitlog").display().to_string();
    let mut broker = vec![
        ("brokerIp1".to_owned(), toml_str(&opts.advertised_ip)),
        ("listenPort".to_owned(), ports.listen.to_string()),
        ("namesrvAddr".to_owned(), toml_str(namesrv_addr)),
        ("storePathRootDir".to_owned(), toml_str(&store_root)),
        ("autoCreateTopicEnable".to_owned(), "true".to_owned()),
        ("autoCreateSubscriptionGroup".to_owned(), "true".to_owned()),
        ("enablePropertyFilter".to_owned(), opts.enable_property_filter.to_string()),
    ];
    let mut store_section = vec![
        ("storePathRootDir".to_owned(), toml_str(&store_root)),
        ("storePathCommitLog".to_owned(), toml_str(&commit_log)),
        ("haListenAddress".to_owned(), toml_str("127.0.0.1")),
        ("haListenPort".to_owned(), ports.ha.to_string()),
        ("messageDelayLevel".to_owned(), toml_str(&opts.message_delay_level)),
        ("mappedFileSizeCommitLog".to_owned(), COMMIT_LOG_FILE.to_string()),
        ("mappedFileSizeConsumeQueue".to_owned(), CONSUME_QUEUE_FILE.to_string()),
        ("maxHashSlotNum".to_owned(), MAX_HASH_SLOTS.to_string()),
        ("maxIndexNum".to_owned(), MAX_INDEX.to_string()),
        // A test store holds megabytes, but the broker judges the whole disk it lives on
        // (1 - available/total): past `diskMaxUsedSpaceRatio` (75 %) it wants to reclaim and,
        // past the warning level, marks itself "disk full" and rolls its startup back (exit
        // status 70) — routine on a build machine whose disk is mostly target directories.
        // The broker requires max < forcibly < warning and clamps them to 95/85/90 %: these
        // values make it healthy up to 85 % and refuse writes only above 90 %, and it never
        // deletes a test's files early.
        ("diskSpaceWarningLevelRatio".to_owned(), "99".to_owned()),
        ("diskSpaceCleanForciblyRatio".to_owned(), "98".to_owned()),
        ("diskMaxUsedSpaceRatio".to_owned(), "97".to_owned()),
        ("cleanFileForciblyEnable".to_owned(), "false".to_owned()),
    ];
    merge_props(&mut broker, &opts.broker_props, toml_value);
    merge_props(&mut store_section, &opts.store_props, toml_value);

    let mut out = String::from("# Written by rmq-wasm-tests (cluster/config.rs).\n[broker]\n");
    for (key, value) in &broker {
        let _ = writeln!(out, "{key} = {value}");
    }
    let _ = writeln!(
        out,
        "\n[broker.brokerIdentity]\nbrokerClusterName = {}\nbrokerName = {}\nbrokerId = {}",
        toml_str(&opts.cluster_name),
        toml_str(&node.broker_name),
        node.broker_id
    );
    out.push_str("\n[broker.brokerServerConfig]\nbindAddress = \"127.0.0.1\"\n\n[store]\n");
    for (key, value) in &store_section {
        let _ = writeln!(out, "{key} = {value}");
    }
    out
}

/// The Java broker's properties (`-c broker.conf`). `ClusterOptions::broker_props` and
/// `store_props` both land here: the Java broker reads one flat file into all its config objects.
pub(crate) fn broker_properties(conf: &BrokerConf<'_>) -> String {
    let BrokerConf { opts, node, namesrv_addr, store, ports } = conf;
    let path = |sub: &str| store.join(sub).display().to_string();
    let role = match node.role {
        Role::Master => "ASYNC_MASTER",
        Role::Slave => "SLAVE",
    };
    let mut props: Vec<(String, String)> = [
        ("brokerClusterName", opts.cluster_name.clone()),
        ("brokerName", node.broker_name.clone()),
        ("brokerId", node.broker_id.to_string()),
        ("brokerRole", role.to_owned()),
        ("namesrvAddr", (*namesrv_addr).to_owned()),
        // Advertised addresses: clients (IP1) and the slave's HA connection (IP2). Left unset,
        // both default to the first non-loopback interface address.
        ("brokerIP1", opts.advertised_ip.clone()),
        ("brokerIP2", "127.0.0.1".to_owned()),
        ("listenPort", ports.listen.to_string()),
        // 5.x binds its remoting listeners here; 4.9 has no such key (binds every interface).
        ("bindAddress", "127.0.0.1".to_owned()),
        ("haListenPort", ports.ha.to_string()),
        ("storePathRootDir", store.display().to_string()),
        ("storePathCommitLog", path("commitlog")),
        ("storePathConsumeQueue", path("consumequeue")),
        ("storePathIndex", path("index")),
        ("storeCheckpoint", path("checkpoint")),
        ("abortFile", path("abort")),
        ("mappedFileSizeCommitLog", COMMIT_LOG_FILE.to_string()),
        ("mappedFileSizeConsumeQueue", CONSUME_QUEUE_FILE.to_string()),
        ("maxHashSlotNum", MAX_HASH_SLOTS.to_string()),
        ("maxIndexNum", MAX_INDEX.to_string()),
        ("messageDelayLevel", opts.message_delay_level.clone()),
        ("autoCreateTopicEnable", "true".to_owned()),
        ("autoCreateSubscriptionGroup", "true".to_owned()),
        ("enablePropertyFilter", opts.enable_property_filter.to_string()),
        ("slaveReadEnable", "true".to_owned()),
        ("flushDiskType", "ASYNC_FLUSH".to_owned()),
        // The Java broker judges the disk of its store path (used / total): the defaults refuse
        // writes at 90 % and reclaim from 75 %. A build machine's disk is mostly target
        // directories; these keep a test broker writing up to 95 % and never deleting early.
        ("diskMaxUsedSpaceRatio", "95".to_owned()),
        ("diskSpaceWarningLevelRatio", "98".to_owned()),
        ("diskSpaceCleanForciblyRatio", "97".to_owned()),
        ("cleanFileForciblyEnable", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    merge_props(&mut props, &opts.broker_props, str::to_owned);
    merge_props(&mut props, &opts.store_props, str::to_owned);
    let mut out = String::from("# Written by rmq-wasm-tests (cluster/config.rs).\n");
    for (key, value) in &props {
        let _ = writeln!(out, "{key}={}", properties_value(value));
    }
    out
}

/// Replaces or appends `extra` (raw values, formatted by `format`) in `props`.
fn merge_props(
    props: &mut Vec<(String, String)>,
    extra: &[(String, String)],
    format: impl Fn(&str) -> String,
) {
    for (key, value) in extra {
        let formatted = format(value);
        match props.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = formatted,
            None => props.push((key.clone(), formatted)),
        }
    }
}

/// A TOML value: bools and integers bare, anything else a string.
fn toml_value(value: &str) -> String {
    if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
        value.to_owned()
    } else {
        toml_str(value)
    }
}

pub(crate) fn toml_str(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `.properties` value: backslashes and line breaks escaped (paths and delay levels need no
/// more).
fn properties_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::TEST_DELAY_LEVELS;

    fn conf<'a>(opts: &'a ClusterOptions, node: &'a NodeSpec) -> BrokerConf<'a> {
        BrokerConf {
            opts,
            node,
            namesrv_addr: "127.0.0.1:1",
            store: Path::new("/s"),
            ports: BrokerPorts { listen: 5000, ha: 6000 },
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn broker_toml_has_loopback_and_overrides() {
        let opts = ClusterOptions {
            store_props: vec![("messageDelayLevel".into(), "2s".into())],
            broker_props: vec![("defaultTopicQueueNums".into(), "4".into())],
            ..ClusterOptions::default()
        };
        let node = &Topology::Single.nodes("broker-a")[0];
        let toml = broker_toml(&conf(&opts, node));
        assert!(toml.contains("brokerIp1 = \"127.0.0.1\""), "{toml}");
        assert!(toml.contains("bindAddress = \"127.0.0.1\""), "{toml}");
        assert!(toml.contains("messageDelayLevel = \"2s\""), "{toml}");
        assert!(!toml.contains(TEST_DELAY_LEVELS), "{toml}");
        assert!(toml.contains("defaultTopicQueueNums = 4"), "{toml}");
        assert!(toml.contains("haListenPort = 6000"), "{toml}");
    }

    #[test]
    fn java_broker_properties_have_loopback_role_and_overrides() {
        let opts = ClusterOptions {
            broker_props: vec![("aclEnable".into(), "true".into())],
            ..ClusterOptions::default()
        };
        let nodes = Topology::MasterSlave.nodes("broker-a");
        let master = broker_properties(&conf(&opts, &nodes[0]));
        let slave = broker_properties(&conf(&opts, &nodes[1]));
        for line in ["brokerIP1=127.0.0.1", "bindAddress=127.0.0.1", "haListenPort=6000"] {
            assert!(master.lines().any(|l| l == line), "{line} in {master}");
        }
        assert!(master.contains("brokerRole=ASYNC_MASTER") && master.contains("brokerId=0"));
        assert!(slave.contains("brokerRole=SLAVE") && slave.contains("brokerId=1"), "{slave}");
        assert!(master.contains("aclEnable=true"), "{master}");
        assert!(master.contains(&format!("messageDelayLevel={TEST_DELAY_LEVELS}")), "{master}");
    }

    #[test]
    fn topologies_name_their_nodes() {
        let names = |t: Topology| {
            t.nodes("broker-a").iter().map(NodeSpec::key).collect::<Vec<_>>().join(",")
        };
        assert_eq!(names(Topology::Single), "broker-a-0");
        assert_eq!(names(Topology::TwoMasters), "broker-a-0,broker-b-0");
        assert_eq!(names(Topology::MasterSlave), "broker-a-0,broker-a-1");
    }

    #[test]
    fn picked_ports_are_distinct_and_fresh() {
        let a = pick_ports(2).unwrap();
        let b = pick_ports(1).unwrap();
        let mut all = vec![a.namesrv, b.namesrv];
        for p in a.brokers.iter().chain(&b.brokers) {
            all.extend([p.listen, p.listen - 2, p.ha]);
        }
        let set: BTreeSet<u16> = all.iter().copied().collect();
        assert_eq!(set.len(), all.len(), "{all:?}");
    }
}

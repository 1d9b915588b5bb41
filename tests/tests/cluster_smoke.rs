//! The local cluster helper against the real rocketmq-rust servers: registration, the default
//! topic's route, the shortened delay levels, SQL92 support, stop, and the watchdog.

use std::process::Command;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use rmq_wasm_tests::cluster;
use rmq_wasm_tests::cluster::Cluster;
use rmq_wasm_tests::cluster::ClusterOptions;
use rmq_wasm_tests::cluster::code;
use rmq_wasm_tests::cluster::rpc;

const TIMEOUT: Duration = Duration::from_secs(5);

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Polls `probe` every 50 ms until it returns `Some` or `timeout` passes.
fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn broker_is_registered_with_the_name_server() {
    let c = Cluster::shared();
    assert!(c.namesrv_addr.starts_with("127.0.0.1:"), "{}", c.namesrv_addr);
    assert!(c.broker_addr.starts_with("127.0.0.1:"), "{}", c.broker_addr);
    let info = cluster::cluster_info(&c.namesrv_addr).unwrap();
    assert!(cluster::broker_listed(&info, &c.broker_name, &c.broker_addr), "{info}");
    let members = &info["clusterAddrTable"][c.cluster_name.as_str()];
    assert!(
        members.as_array().is_some_and(|m| m.iter().any(|b| b == c.broker_name.as_str())),
        "{info}"
    );
}

#[test]
fn default_topic_route_is_served() {
    let c = Cluster::shared();
    let route = cluster::topic_route(&c.namesrv_addr, "TBW102").unwrap().expect("TBW102 exists");
    let queue = &route["queueDatas"][0];
    assert_eq!(queue["brokerName"], c.broker_name.as_str(), "{route}");
    assert!(queue["readQueueNums"].as_i64().unwrap_or(0) > 0, "{route}");
    let broker = &route["brokerDatas"][0];
    assert_eq!(broker["brokerAddrs"]["0"], c.broker_addr.as_str(), "{route}");
    assert_eq!(cluster::topic_route(&c.namesrv_addr, &unique("NoSuchTopic")).unwrap(), None);
}

fn max_offset(broker: &str, topic: &str) -> Option<i64> {
    let response =
        rpc(broker, code::GET_MAX_OFFSET, &[("topic", topic), ("queueId", "0")], &[], TIMEOUT)
            .ok()?;
    if response.code != code::SUCCESS {
        return None;
    }
    response.ext_fields.get("offset")?.parse().ok()
}

#[test]
fn shortened_delay_levels_take_effect() {
    let c = Cluster::shared();
    let topic = unique("DelayTopic");
    // Level 18 is 2 h on a stock broker and 1 s here.
    let properties = "DELAY\u{1}18\u{2}WAIT\u{1}true\u{2}";
    let born = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis().to_string();
    let sent = Instant::now();
    let response = rpc(
        &c.broker_addr,
        code::SEND_MESSAGE,
        &[
            ("producerGroup", "cluster_smoke_producer"),
            ("topic", &topic),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", "0"),
            ("sysFlag", "0"),
            ("bornTimestamp", &born),
            ("flag", "0"),
            ("properties", properties),
            ("reconsumeTimes", "0"),
            ("unitMode", "false"),
            ("batch", "false"),
        ],
        b"delayed",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(response.code, code::SUCCESS, "{response:?}");
    let delivered = poll(Duration::from_secs(30), || {
        (max_offset(&c.broker_addr, &topic)? >= 1).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("delayed message not delivered within 30 s\n{}", c.log_tails(30)));
    let delay = delivered - sent;
    eprintln!("level-18 delayed message delivered after {delay:?}");
    assert!(delay >= Duration::from_millis(900), "delivered after {delay:?}: not delayed");
}

#[test]
fn sql92_filtering_is_enabled() {
    let c = Cluster::shared();
    let body = |expression: &str| {
        serde_json::json!({
            "clientId": "127.0.0.1@cluster_smoke",
            "group": "cluster_smoke_group",
            "subscriptionData": {
                "classFilterMode": false,
                "topic": "TBW102",
                "subString": expression,
                "tagsSet": [],
                "codeSet": [],
                "subVersion": 0,
                "expressionType": "SQL92",
            },
        })
        .to_string()
    };
    let ok = rpc(&c.broker_addr, code::CHECK_CLIENT_CONFIG, &[], body("a > 1").as_bytes(), TIMEOUT)
        .unwrap();
    assert_eq!(ok.code, code::SUCCESS, "{ok:?}");
    let bad = rpc(&c.broker_addr, code::CHECK_CLIENT_CONFIG, &[], body("a >").as_bytes(), TIMEOUT)
        .unwrap();
    assert_ne!(bad.code, code::SUCCESS, "{bad:?}");
}

#[test]
fn an_own_cluster_starts_and_stops() {
    let started = Instant::now();
    let mut c = Cluster::start(ClusterOptions::default()).unwrap();
    eprintln!("own cluster started in {:?}", started.elapsed());
    let shared = Cluster::shared();
    assert_ne!(c.namesrv_addr, shared.namesrv_addr);
    c.check_registered().unwrap();
    let (namesrv, broker, dir) = (c.namesrv_pid(), c.broker_pid(), c.dir.clone());
    assert!(cluster::is_rocketmq_process(namesrv) && cluster::is_rocketmq_process(broker));
    let stopping = Instant::now();
    c.stop().unwrap();
    eprintln!("own cluster stopped in {:?}", stopping.elapsed());
    assert!(!cluster::pid_alive(namesrv) && !cluster::pid_alive(broker));
    assert!(!dir.exists(), "{} left behind", dir.display());
    c.stop().unwrap();
}

const CHILD_ENV: &str = "RMQ_CLUSTER_SMOKE_WATCHDOG_CHILD";

/// Child half of `servers_die_with_their_test_process`: starts the shared cluster, reports it and
/// lets the process exit without dropping it.
#[test]
fn watchdog_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let c = Cluster::shared();
    println!("\nCLUSTER {} {} {}", c.namesrv_pid(), c.broker_pid(), c.dir.display());
}

#[test]
fn servers_die_with_their_test_process() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["watchdog_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, "1")
        .env_remove(cluster::ATTACH_ENV)
        .env_remove(cluster::KEEP_DIR_ENV)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // The harness prints `test watchdog_child ... ` on the same line.
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CLUSTER ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no report from the child: {stdout}"));
    let mut parts = line.splitn(3, ' ');
    let namesrv: u32 = parts.next().unwrap().parse().unwrap();
    let broker: u32 = parts.next().unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(parts.next().unwrap());
    let gone = poll(Duration::from_secs(30), || {
        (!cluster::pid_alive(namesrv) && !cluster::pid_alive(broker) && !dir.exists()).then_some(())
    });
    assert!(gone.is_some(), "servers {namesrv}/{broker} or {} outlived their owner", dir.display());
}

//! GET_ROUTEINFO_BY_TOPIC answers come from a name server we do not control. Decoding must never
//! panic; what decodes must encode and decode to the same route; and the queue lists the consumer
//! (rebalance) and producer derive from it must be computable without panicking or exhausting
//! memory: decoding refuses routes listing more than `MAX_ROUTE_QUEUES` queues.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::body::{MAX_ROUTE_QUEUES, TopicRouteData};

fuzz_target!(|data: &[u8]| {
    let Ok(route) = TopicRouteData::decode(data) else { return };
    let again = TopicRouteData::decode(&route.encode()).expect("an encoded route decodes");
    assert_eq!(again, route);
    let limit = usize::try_from(MAX_ROUTE_QUEUES).expect("fits");
    assert!(route.subscribe_queues("T").len() <= limit);
    assert!(route.publish_queues("T").len() <= limit);
    for broker in &route.broker_datas {
        let _ = broker.master_or_any_addr();
    }
    let mut normalized = route;
    normalized.normalize();
});

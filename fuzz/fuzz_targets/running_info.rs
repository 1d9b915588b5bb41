//! GET_CONSUMER_RUNNING_INFO bodies (ours, or a Java peer's read by tooling): decoding must never
//! panic, and what decodes must encode (fastjson form, bare `MessageQueue` keys) and decode to
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::body::ConsumerRunningInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = ConsumerRunningInfo::decode(data) else { return };
    let again = ConsumerRunningInfo::decode(&info.encode()).expect("encoded running info decodes");
    assert_eq!(again, info);
});

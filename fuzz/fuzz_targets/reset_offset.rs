//! RESET_CONSUMER_CLIENT_OFFSET bodies arrive from a broker, and the same shape is the
//! broadcasting consumer's offsets file on disk: decoding must never panic, and what decodes must
//! encode (bare `MessageQueue` keys, as Java writes them) and decode to the same offsets, in the
//! strict-JSON form too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::body::{ResetOffsetBody, to_json};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = ResetOffsetBody::decode(data) else { return };
    let again = ResetOffsetBody::decode(&body.encode()).expect("fastjson form decodes");
    assert_eq!(again, body);
    let strict = ResetOffsetBody::decode(&to_json(&body)).expect("strict form decodes");
    assert_eq!(strict, body);
});

//! The fastjson-dialect reader takes every JSON body a broker or name server sends, so it must
//! never panic or recurse without bound, whatever the bytes. Beyond that:
//! - differential: on anything serde_json accepts, it gives exactly serde_json's value;
//! - round trip: whatever it accepts, the fastjson writer writes back into text it reads as the
//!   same value (compared after serde_json's own write-then-read, which rounds floats the same
//!   way), and the canonical text of a value is standard JSON for that value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::body::json::{canonical_text, parse_lenient, value_to_fastjson};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let lenient = parse_lenient(data);
    if let Ok(strict) = serde_json::from_slice::<Value>(data) {
        match &lenient {
            Ok(value) => assert_eq!(value, &strict, "lenient and serde_json disagree"),
            Err(e) => panic!("serde_json accepts what the lenient reader refuses: {e}"),
        }
    }
    let Ok(value) = lenient else { return };
    let want: Value = serde_json::from_str(&serde_json::to_string(&value).expect("writes"))
        .expect("serde_json reads its own output");
    let fastjson = value_to_fastjson(&value);
    let back = parse_lenient(&fastjson).expect("the fastjson writer's output reads back");
    assert_eq!(back, want, "fastjson round trip changed the value");
    let canonical = canonical_text(&value);
    let strict: Value = serde_json::from_str(&canonical).expect("canonical text is strict JSON");
    assert_eq!(strict, want, "canonical text changed the value");
});

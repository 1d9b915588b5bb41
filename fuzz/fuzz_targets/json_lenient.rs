//! The fastjson-dialect reader takes every JSON body a broker or name server sends, so it must
//! never panic or recurse without bound, whatever the bytes. Beyond that:
//! - differential: on anything serde_json accepts, it gives serde_json's value, floats aside:
//!   ours are correctly rounded, serde_json's (without `float_roundtrip`) may be one unit in the
//!   last place off;
//! - round trip: whatever it accepts, the fastjson writer and the canonical text write back into
//!   text it reads as exactly the same value, and the canonical text is standard JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::body::json::{canonical_text, parse_lenient, value_to_fastjson};
use serde_json::Value;

/// Equal, except that two floats may differ in their last bits (a few units in the last place,
/// relative for normal numbers, absolute for subnormals, where serde_json strays further). That
/// ours are the correctly rounded ones is checked by the exact round trips below and by the
/// unit tests.
fn same_but_rounding(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            let diff = (x - y).abs();
            x == y
                || diff <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                || diff <= 4.0 * f64::from_bits(1)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_but_rounding(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_but_rounding(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let lenient = parse_lenient(data);
    if let Ok(strict) = serde_json::from_slice::<Value>(data) {
        match &lenient {
            Ok(value) => assert!(
                same_but_rounding(value, &strict),
                "lenient and serde_json disagree: {value:?} / {strict:?}"
            ),
            Err(e) => panic!("serde_json accepts what the lenient reader refuses: {e}"),
        }
    }
    let Ok(value) = lenient else { return };
    let fastjson = value_to_fastjson(&value);
    let back = parse_lenient(&fastjson).expect("the fastjson writer's output reads back");
    assert_eq!(back, value, "fastjson round trip changed the value");
    let canonical = canonical_text(&value);
    assert!(serde_json::from_str::<Value>(&canonical).is_ok(), "canonical text is not JSON");
    let back = parse_lenient(canonical.as_bytes()).expect("canonical text reads back");
    assert_eq!(back, value, "canonical text changed the value");
});

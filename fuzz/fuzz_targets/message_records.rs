//! Stored-record decoding must never panic, whatever a broker (or a corrupt disk) sends; and every
//! message that decodes must re-encode and decode to the same message, apart from the stored CRC
//! and size, which the encoder recomputes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::message::{
    decode_batch, decode_message, decode_messages, decode_messages_prefix, encode_stored_message,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_message(data);
    let _ = decode_batch(Bytes::copy_from_slice(data));
    let all = decode_messages(Bytes::copy_from_slice(data));
    let (prefix, error) = decode_messages_prefix(Bytes::copy_from_slice(data));
    match &all {
        Ok(messages) => assert!(error.is_none() && &prefix == messages),
        Err(e) => assert_eq!(error.as_ref(), Some(e)),
    }
    for message in &prefix {
        let encoded = encode_stored_message(message).expect("a decoded message re-encodes");
        let mut back = decode_message(&encoded).expect("a re-encoded message decodes");
        back.body_crc = message.body_crc;
        back.store_size = message.store_size;
        assert_eq!(&back, message);
    }
});

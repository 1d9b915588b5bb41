//! Frame + header decoding must never panic, whatever arrives on a socket; and whatever decodes
//! must re-encode and decode to the same command.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::frame::{MAX_FRAME_LEN, decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(cmd)) = decode_frame(&mut buf, MAX_FRAME_LEN) {
        let mut again = BytesMut::new();
        if encode_frame(&cmd, &mut again).is_ok() {
            let back = decode_frame(&mut again, MAX_FRAME_LEN).expect("re-encoded frame decodes");
            assert_eq!(back.as_ref(), Some(&cmd));
        }
    }
});

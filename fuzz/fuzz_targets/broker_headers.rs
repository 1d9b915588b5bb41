//! The typed headers read from broker-initiated requests (NOTIFY_CONSUMER_IDS_CHANGED,
//! GET_CONSUMER_RUNNING_INFO, CONSUME_MESSAGE_DIRECTLY, RESET_CONSUMER_CLIENT_OFFSET,
//! GET_CONSUMER_STATUS_FROM_CLIENT) and from the responses we act on (pull, offsets, send).
//!
//! The frame target already fuzzes the header encodings; this one builds the ext-field map
//! directly (`key 0x01 value 0x02 …`, the message-properties layout) so every execution reaches
//! the typed readers. Reading must never panic, and a header that reads must write and read
//! back to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_wasm::protocol::ExtFields;
use rmq_wasm::protocol::header::*;

fn round_trip<H: CommandHeader + PartialEq + std::fmt::Debug>(ext: &ExtFields) {
    let Ok(header) = H::read(ext) else { return };
    let mut written = ExtFields::new();
    header.write(&mut written);
    assert_eq!(H::read(&written).as_ref(), Ok(&header));
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ext: ExtFields = text
        .split('\u{2}')
        .filter_map(|pair| pair.split_once('\u{1}'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    round_trip::<NotifyConsumerIdsChangedRequestHeader>(&ext);
    round_trip::<GetConsumerRunningInfoRequestHeader>(&ext);
    round_trip::<ConsumeMessageDirectlyResultRequestHeader>(&ext);
    round_trip::<ResetOffsetRequestHeader>(&ext);
    round_trip::<GetConsumerStatusRequestHeader>(&ext);
    round_trip::<PullMessageResponseHeader>(&ext);
    round_trip::<OffsetResponseHeader>(&ext);
    round_trip::<SendMessageResponseHeader>(&ext);
});

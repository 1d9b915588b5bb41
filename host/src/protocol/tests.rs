//! Cross-module protocol tests: golden frames, decoder robustness and round trips through both
//! header encodings for every typed header.

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

use super::code::{LanguageCode, RequestCode, ResponseCode};
use super::command::{ExtFields, RemotingCommand, SerializeType};
use super::frame::{FrameError, MAX_FRAME_LEN, decode_frame, encode_frame};
use super::header::*;
use super::serialize::HeaderCodecError;
use super::types::{Opaque, QueueId};

/// Builds a frame by hand: length, header-length word, header, body.
fn hand_frame(kind: u8, header: &[u8], body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i32(i32::try_from(4 + header.len() + body.len()).unwrap());
    b.put_u32((u32::from(kind) << 24) | u32::try_from(header.len()).unwrap());
    b.put_slice(header);
    b.put_slice(body);
    b
}

fn encode(cmd: &RemotingCommand) -> BytesMut {
    let mut b = BytesMut::new();
    encode_frame(cmd, &mut b).unwrap();
    b
}

#[test]
fn golden_json_request_from_reference_decodes() {
    // Reference 1.3's example header, as a Java 4.9.4 client would send it.
    let header = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":401}"#;
    let mut buf = hand_frame(0, header, b"");
    let cmd = decode_frame(&mut buf, MAX_FRAME_LEN).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(cmd.request_code(), RequestCode::GetRouteInfoByTopic);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.opaque, Opaque(7));
    assert_eq!(cmd.version, 401);
    assert!(!cmd.is_response());
    let h: GetRouteInfoRequestHeader = cmd.header().unwrap();
    assert_eq!(h.topic, "T");
    assert_eq!(h.accept_standard_json_only, None);
}

#[test]
fn we_encode_the_reference_json_layout_byte_for_byte() {
    let mut cmd = RemotingCommand::request(
        RequestCode::GetRouteInfoByTopic,
        &GetRouteInfoRequestHeader { topic: "T".into(), accept_standard_json_only: None },
    );
    cmd.opaque = Opaque(7);
    let expected = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"RUST","opaque":7,"serializeTypeCurrentRPC":"JSON","version":401}"#;
    assert_eq!(encode(&cmd), hand_frame(0, expected, b""));
}

#[test]
fn golden_binary_response_decodes() {
    // A ROCKETMQ-encoded SUCCESS response to opaque 42 with remark "FOUND", one ext field and a
    // 3-byte body, laid out field by field as reference 1.4 gives it.
    let mut h = BytesMut::new();
    h.put_i16(0); // code SUCCESS
    h.put_u8(0); // language JAVA
    h.put_i16(475); // version V5_3_1
    h.put_i32(42); // opaque
    h.put_i32(1); // flag: response
    h.put_i32(5);
    h.put_slice(b"FOUND");
    let mut ext = BytesMut::new();
    ext.put_i16(6);
    ext.put_slice(b"offset");
    ext.put_i32(2);
    ext.put_slice(b"17");
    h.put_i32(i32::try_from(ext.len()).unwrap());
    h.put_slice(&ext);
    let mut buf = hand_frame(1, &h, b"abc");
    let cmd = decode_frame(&mut buf, MAX_FRAME_LEN).unwrap().unwrap();
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
    assert!(cmd.is_response());
    assert_eq!(cmd.response_code(), ResponseCode::Success);
    assert_eq!(cmd.opaque, Opaque(42));
    assert_eq!(cmd.remark.as_deref(), Some("FOUND"));
    assert_eq!(&cmd.body[..], b"abc");
    let off: OffsetResponseHeader = cmd.header().unwrap();
    assert_eq!(off.offset.0, 17);
    // And we write exactly those bytes back.
    assert_eq!(encode(&cmd), hand_frame(1, &h, b"abc"));
}

#[test]
fn json_header_quirks_are_tolerated() {
    // Numbers and booleans as ext values, a null remark, no extFields at all, language by ordinal,
    // and unknown keys.
    for header in [
        &br#"{"code":0,"extFields":{"offset":17,"ok":true},"flag":1,"language":"JAVA","opaque":3,"remark":null,"version":475,"x":[1]}"#[..],
        br#"{"code":0,"flag":1,"language":12,"opaque":3}"#,
    ] {
        let mut buf = hand_frame(0, header, b"");
        let cmd = decode_frame(&mut buf, MAX_FRAME_LEN).unwrap().unwrap();
        assert!(cmd.is_response());
        assert_eq!(cmd.opaque, Opaque(3));
        assert_eq!(cmd.remark, None);
    }
}

#[test]
fn incomplete_input_asks_for_more_without_consuming() {
    let frame = encode(
        &RemotingCommand::request_without_header(RequestCode::HeartBeat).with_body(&b"{}"[..]),
    );
    for cut in 0..frame.len() {
        let mut part = BytesMut::from(&frame[..cut]);
        assert_eq!(decode_frame(&mut part, MAX_FRAME_LEN), Ok(None), "cut at {cut}");
        assert_eq!(part.len(), cut, "nothing consumed at cut {cut}");
    }
    // Two frames back to back decode one at a time.
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    assert!(decode_frame(&mut two, MAX_FRAME_LEN).unwrap().is_some());
    assert_eq!(two.len(), frame.len());
    assert!(decode_frame(&mut two, MAX_FRAME_LEN).unwrap().is_some());
    assert!(two.is_empty());
}

#[test]
fn invalid_frames_are_errors_not_panics() {
    type Check = fn(&FrameError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (vec![0xFF, 0xFF, 0xFF, 0xFF], |e| matches!(e, FrameError::NegativeLength(-1))),
        (0x0100_0000i32.to_be_bytes().to_vec(), |e| matches!(e, FrameError::TooLarge { .. })),
        (vec![0, 0, 0, 2, 0, 0], |e| matches!(e, FrameError::TooSmall(2))),
        // Header length 100 in a 10-byte frame.
        (vec![0, 0, 0, 10, 0, 0, 0, 100], |e| matches!(e, FrameError::HeaderOverrun { .. })),
        (hand_frame(7, b"{}", b"").to_vec(), |e| {
            matches!(e, FrameError::Header(HeaderCodecError::UnknownSerializeType(7)))
        }),
        (hand_frame(0, b"{\"code\":", b"").to_vec(), |e| {
            matches!(e, FrameError::Header(HeaderCodecError::Json(_)))
        }),
        (hand_frame(0, b"[1,2]", b"").to_vec(), |e| {
            matches!(e, FrameError::Header(HeaderCodecError::JsonField { .. }))
        }),
        (
            hand_frame(0, b"{\"code\":1,\"opaque\":1,\"extFields\":{\"a\":[1]}}", b"").to_vec(),
            |e| {
                matches!(
                    e,
                    FrameError::Header(HeaderCodecError::JsonField { field: "extFields", .. })
                )
            },
        ),
        (hand_frame(0, &[0xC3, 0x28], b"").to_vec(), |e| {
            matches!(e, FrameError::Header(HeaderCodecError::Json(_)))
        }),
        (hand_frame(1, &[0, 0], b"").to_vec(), |e| {
            matches!(e, FrameError::Header(HeaderCodecError::Truncated { field: "language" }))
        }),
    ];
    for (bytes, check) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        match decode_frame(&mut buf, MAX_FRAME_LEN) {
            Err(e) => assert!(check(&e), "unexpected error {e:?} for {bytes:?}"),
            other => panic!("expected an error for {bytes:?}, got {other:?}"),
        }
    }
}

#[test]
fn binary_header_rejects_non_utf8_and_negative_lengths() {
    let mut h = BytesMut::new();
    h.put_i16(0);
    h.put_u8(12);
    h.put_i16(401);
    h.put_i32(1);
    h.put_i32(0);
    h.put_i32(2);
    h.put_slice(&[0xFF, 0xFE]);
    h.put_i32(0);
    let mut buf = hand_frame(1, &h, b"");
    assert_eq!(
        decode_frame(&mut buf, MAX_FRAME_LEN),
        Err(FrameError::Header(HeaderCodecError::NotUtf8 { field: "remark" }))
    );
    let mut h2 = BytesMut::from(&h[..13]);
    h2.put_i32(-3);
    let mut buf = hand_frame(1, &h2, b"");
    assert_eq!(
        decode_frame(&mut buf, MAX_FRAME_LEN),
        Err(FrameError::Header(HeaderCodecError::NegativeLength {
            field: "remark length",
            len: -3
        }))
    );
}

#[test]
fn oversized_frames_are_refused_on_encode() {
    let cmd = RemotingCommand::request_without_header(RequestCode::SendMessageV2)
        .with_body(vec![0u8; MAX_FRAME_LEN]);
    assert!(matches!(encode_frame(&cmd, &mut BytesMut::new()), Err(FrameError::TooLarge { .. })));
}

#[test]
fn missing_and_malformed_header_fields_name_the_field() {
    let mut ext = ExtFields::new();
    ext.insert("topic", "T");
    ext.insert("queueId", "x");
    let err = GetMinOffsetRequestHeader::read(&ext).unwrap_err();
    assert_eq!(
        err.to_string(),
        "GetMinOffsetRequestHeader: field `queueId` = \"x\" is not a valid 32-bit integer"
    );
    let err = PullMessageRequestHeader::read(&ExtFields::new()).unwrap_err();
    assert!(matches!(err, HeaderError::Missing { field: "consumerGroup", .. }), "{err}");
}

#[test]
fn flags_distinguish_requests_responses_and_oneway() {
    let mut req = RemotingCommand::request(
        RequestCode::UpdateConsumerOffset,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: "G".into(),
            topic: "T".into(),
            queue_id: QueueId(1),
            ..Default::default()
        },
    );
    assert!(!req.is_response() && !req.is_oneway());
    req.set_oneway();
    assert!(req.is_oneway() && !req.is_response());
    let resp = RemotingCommand::response_to(&req, ResponseCode::Success, None);
    assert!(resp.is_response());
    assert_eq!(resp.opaque, req.opaque);
}

fn arb_serialize_type() -> impl Strategy<Value = SerializeType> {
    prop_oneof![Just(SerializeType::Json), Just(SerializeType::RocketMq)]
}

/// For each header: arbitrary wire fields → typed → wire again is the identity, and the typed
/// header survives a full frame round trip in both encodings.
macro_rules! header_round_trips {
    ($($name:ident: $header:ty,)*) => {$(
        proptest! {
            #[test]
            fn $name(ext in <$header>::arb_ext(), kind in arb_serialize_type(), opaque in any::<i32>()) {
                let typed = <$header>::read(&ext).unwrap();
                let mut again = ExtFields::new();
                typed.write(&mut again);
                prop_assert_eq!(&again, &ext);
                let mut cmd = RemotingCommand::request(RequestCode::Other(77), &typed);
                cmd.serialize_type = kind;
                cmd.opaque = Opaque(opaque);
                let mut buf = encode(&cmd);
                let back = decode_frame(&mut buf, MAX_FRAME_LEN).unwrap().unwrap();
                prop_assert_eq!(&back, &cmd);
                prop_assert_eq!(back.header::<$header>().unwrap(), typed);
            }
        }
    )*};
}

header_round_trips! {
    rt_get_route_info: GetRouteInfoRequestHeader,
    rt_unregister_client: UnregisterClientRequestHeader,
    rt_consumer_list: GetConsumerListByGroupRequestHeader,
    rt_query_offset: QueryConsumerOffsetRequestHeader,
    rt_offset_response: OffsetResponseHeader,
    rt_update_offset: UpdateConsumerOffsetRequestHeader,
    rt_pull: PullMessageRequestHeader,
    rt_pull_response: PullMessageResponseHeader,
    rt_search_offset: SearchOffsetRequestHeader,
    rt_max_offset: GetMaxOffsetRequestHeader,
    rt_min_offset: GetMinOffsetRequestHeader,
    rt_send_back: ConsumerSendMsgBackRequestHeader,
    rt_notify_ids_changed: NotifyConsumerIdsChangedRequestHeader,
    rt_running_info: GetConsumerRunningInfoRequestHeader,
    rt_consume_directly: ConsumeMessageDirectlyResultRequestHeader,
    rt_reset_offset: ResetOffsetRequestHeader,
    rt_consumer_status: GetConsumerStatusRequestHeader,
    rt_send_v2: SendMessageRequestHeaderV2,
    rt_send_v1: SendMessageRequestHeader,
    rt_send_response: SendMessageResponseHeader,
    rt_create_topic: CreateTopicRequestHeader,
    rt_pop: PopMessageRequestHeader,
    rt_pop_response: PopMessageResponseHeader,
    rt_ack: AckMessageRequestHeader,
    rt_change_invisible: ChangeInvisibleTimeRequestHeader,
    rt_change_invisible_response: ChangeInvisibleTimeResponseHeader,
}

proptest! {
    /// Arbitrary commands (any code, flag, remark, ext map, body) survive both encodings.
    #[test]
    fn commands_round_trip_in_both_encodings(
        code in -32768i32..32768,
        flag in any::<i32>(),
        opaque in any::<i32>(),
        version in 0i32..32768,
        remark in proptest::option::of("\\PC{1,20}"),
        ext in proptest::collection::btree_map("[a-zA-Z]{1,8}", "\\PC{1,12}", 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        kind in arb_serialize_type(),
    ) {
        let cmd = RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version,
            opaque: Opaque(opaque),
            flag,
            remark,
            ext_fields: ext.into_iter().collect(),
            body: body.into(),
            serialize_type: kind,
        };
        let mut buf = encode(&cmd);
        prop_assert_eq!(decode_frame(&mut buf, MAX_FRAME_LEN).unwrap().unwrap(), cmd);
    }

    /// Random bytes never panic the decoder.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode_frame(&mut buf, MAX_FRAME_LEN);
    }
}

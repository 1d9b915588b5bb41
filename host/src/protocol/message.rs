//! Stored message records: the pull body, the CONSUME_MESSAGE_DIRECTLY body, the
//! SEND_BATCH_MESSAGE body, and the ids and properties inside them.
//!
//! Everything here is pure (no I/O, no async) so the decoder can be unit tested and fuzzed on its
//! own, and so the fake broker in the tests can produce byte-exact broker records.
//!
//! # Error policy
//!
//! The Java client (`MessageDecoder.decodesBatch`) stops at the first record it cannot decode and
//! silently hands the good prefix to the listener; the pull's `nextBeginOffset` then skips the
//! rest, so those messages are lost without a trace. We do not copy that silence:
//!
//! - [`decode_messages`] is all-or-nothing: the first bad record fails the whole body with a
//!   [`MessageDecodeError`] that names the record index, where the record starts, the byte
//!   position of the offending field and what is wrong with it.
//! - [`decode_messages_prefix`] returns the good prefix *and* that error: the pull path uses it
//!   to deliver what decoded, then isolates the one broken record and skips it with an ERROR
//!   that names its queue and offset (see the consumer's queue task).
//!
//! The decoder is stricter than Java's wherever Java would produce garbage rather than fail:
//! TOTALSIZE must match the fields exactly, and negative lengths are errors (Java skips a
//! negative body length and reads on from the wrong place). Text is as lenient as Java's: invalid
//! UTF-8 in the topic or properties becomes U+FFFD, because one producer's bad byte must not make
//! a message undeliverable (nor, all-or-nothing, its whole pull). The decoder
//! never panics, whatever the input.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use super::properties::{InvalidProperty, Properties};
use super::types::{CommitLogOffset, EpochMillis, MessageQueue, QueueId, QueueOffset};

/// Magic code of a V1 record (topic length is one signed byte).
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic code of a V2 record (topic length is an i16), used by the store for topics over 127 bytes.
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// Marks the blank end of a commit-log file. It never appears in a pull; we only name it so the
/// error for it is recognisable.
pub const BLANK_MAGIC: i32 = 0xCBD4_3194_u32 as i32;

/// Separates a property's key from its value (`MessageDecoder.NAME_VALUE_SEPARATOR`).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each property (`MessageDecoder.PROPERTY_SEPARATOR`).
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Longest topic or properties string the i16 length fields can carry; the broker also rejects
/// longer properties with MESSAGE_ILLEGAL.
pub const MAX_SHORT_FIELD_LEN: usize = i16::MAX as usize;

/// Longest topic a V1 record can carry (its topic length is a *signed* byte).
pub const MAX_V1_TOPIC_LEN: usize = i8::MAX as usize;

/// Upper bound on an inflated body. Java has none; we need one because a few KiB of zstd or
/// zlib can claim gigabytes, and one hostile or corrupt record must not exhaust the host. The
/// broker caps the *stored* (compressed) body at 4 MiB by default, and real payloads rarely
/// compress better than 30:1, so 128 MiB leaves plenty of room for genuine messages.
pub const MAX_INFLATED_BODY_LEN: usize = 128 * 1024 * 1024;

/// Size of a V1 record with IPv4 hosts and an empty body, topic and properties: the smallest
/// TOTALSIZE that can be genuine.
const MIN_RECORD_LEN: usize = 84 + 4 + 1 + 2;

/// Size of a packed (batch) message with an empty body and no properties.
const MIN_PACKED_LEN: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Message sysflag bits (`MessageSysFlag`).
///
/// Kept as raw `i32` constants rather than a bitflags type because the wire value must survive
/// untouched: brokers set bits we do not know about, and re-encoding must preserve them.
pub mod sysflag {
    /// The stored body is compressed; bits 8-10 say with what.
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    /// Mask of the two transaction-type bits.
    pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
    /// BORNHOST is 16 address bytes instead of 4.
    pub const BORNHOST_V6: i32 = 0x10;
    /// STOREHOST is 16 address bytes instead of 4.
    pub const STOREHOST_V6: i32 = 0x20;
    /// 5.x: with [`INNER_BATCH`], the body holds packed messages the client must unwrap.
    pub const NEED_UNWRAP: i32 = 0x40;
    /// 5.x: the record is a whole batch stored as one (batch consume queue topics).
    pub const INNER_BATCH: i32 = 0x80;
    /// Mask of the compression type (bits 8-10).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x7 << 8;
    pub const COMPRESSION_LZ4: i32 = 0x1 << 8;
    pub const COMPRESSION_ZSTD: i32 = 0x2 << 8;
    pub const COMPRESSION_ZLIB: i32 = 0x3 << 8;

    /// Both inner-batch bits set: the body must be unwrapped into several messages.
    pub fn needs_unwrap(sys_flag: i32) -> bool {
        sys_flag & (INNER_BATCH | NEED_UNWRAP) == INNER_BATCH | NEED_UNWRAP
    }
}

/// Property keys (`MessageConst`). Only the ones a push consumer, its retry path or its test
/// producer touch are listed; any other key still round-trips through [`Properties`].
pub mod property {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    /// "false" makes the broker answer a send before the message is flushed.
    pub const WAIT: &str = "WAIT";
    /// The delay level (1..=18) of a scheduled message.
    pub const DELAY: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const PGROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const BUYER_ID: &str = "BUYER_ID";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_ON: &str = "TRACE_ON";
    /// The producer-assigned id users see as the msgId.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    pub const INNER_NUM: &str = "INNER_NUM";
    pub const INNER_BASE: &str = "INNER_BASE";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MSG_TYPE: &str = "MSG_TYPE";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const BORN_HOST: &str = "__BORNHOST";
    pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
    /// 5.x brokers with `enabledAppendPropCRC` append this to the stored properties.
    pub const CRC32: &str = "__CRC32#";
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
    /// POP: the message's check point handle, set by the client (see `protocol::pop`).
    pub const POP_CK: &str = "POP_CK";
    /// POP: when the message was first popped (ms), set by the client unless the broker did.
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    /// Separator inside the KEYS value (`MessageConst.KEY_SEPARATOR`).
    pub const KEY_SEPARATOR: char = ' ';
}

// ------------------------------------------------------------------------------------------------
// Messages
// ------------------------------------------------------------------------------------------------

/// A message as stored by the broker and delivered by a pull (Java `MessageExt`).
///
/// Fields are plain values, not a Java-style bag of setters, because the decoder builds each one
/// exactly once and the rest of the host only reads them. Not on the wire and therefore absent:
/// the broker name, which the pull path knows from the `MessageQueue` it pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    pub topic: String,
    /// The user flag, opaque to RocketMQ.
    pub flag: i32,
    /// The payload, always inflated.
    pub body: Bytes,
    pub properties: Properties,
    pub queue_id: QueueId,
    pub queue_offset: QueueOffset,
    /// Where the record sits in the broker's commit log; send-back and the offset msg id use it.
    pub commit_log_offset: CommitLogOffset,
    /// The wire sysflag, except that [`sysflag::COMPRESSED`] is cleared once the body is inflated
    /// (as Java does), so the flag keeps describing `body`.
    pub sys_flag: i32,
    pub born_timestamp: EpochMillis,
    pub born_host: SocketAddr,
    pub store_timestamp: EpochMillis,
    pub store_host: SocketAddr,
    /// How many times the message has been sent back for retry.
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// BODYCRC as stored: CRC32 of the stored (possibly compressed) body `& 0x7FFFFFFF`.
    /// Informational; the encoder recomputes it.
    pub body_crc: i32,
    /// TOTALSIZE as stored. Informational; the encoder recomputes it.
    pub store_size: i32,
}

impl Default for MessageExt {
    fn default() -> Self {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        Self {
            topic: String::new(),
            flag: 0,
            body: Bytes::new(),
            properties: Properties::new(),
            queue_id: QueueId::default(),
            queue_offset: QueueOffset::default(),
            commit_log_offset: CommitLogOffset::default(),
            sys_flag: 0,
            born_timestamp: EpochMillis::default(),
            born_host: unspecified,
            store_timestamp: EpochMillis::default(),
            store_host: unspecified,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body_crc: 0,
            store_size: 0,
        }
    }
}

impl MessageExt {
    /// The broker-assigned id (3.1). Computed, not stored, because it is a pure function of the
    /// store host and commit-log offset.
    pub fn offset_msg_id(&self) -> String {
        offset_msg_id(self.store_host, self.commit_log_offset)
    }

    /// The id users see and send-back reports as `originMsgId`: UNIQ_KEY, else the offset msg id.
    pub fn msg_id(&self) -> String {
        match self.properties.uniq_key() {
            Some(key) => key.to_owned(),
            None => self.offset_msg_id(),
        }
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key)
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.tags()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties.keys()
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.properties.uniq_key()
    }

    pub fn delay_level(&self) -> i32 {
        self.properties.delay_level()
    }

    /// RETRY_TOPIC: the real topic of a message pulled from `%RETRY%<group>`.
    pub fn retry_topic(&self) -> Option<&str> {
        self.property(property::RETRY_TOPIC)
    }

    /// MAX_RECONSUME_TIMES, when the sender recorded it.
    pub fn max_reconsume_times(&self) -> Option<i32> {
        self.property(property::MAX_RECONSUME_TIMES).and_then(|v| v.trim().parse().ok())
    }

    /// The transaction id the Java client derives in `processPullResult`: UNIQ_KEY when TRAN_MSG
    /// is "true".
    pub fn transaction_id(&self) -> Option<&str> {
        let prepared = self.property(property::TRAN_MSG)?;
        if prepared.eq_ignore_ascii_case("true") { self.uniq_key() } else { None }
    }

    /// The queue this message was stored in, given the broker it was pulled from.
    pub fn message_queue(&self, broker_name: impl Into<String>) -> MessageQueue {
        MessageQueue::new(self.topic.clone(), broker_name, self.queue_id)
    }

    /// The sendable part, for re-sending (the send-back fallback resends body, flag and
    /// properties to the retry topic).
    pub fn to_message(&self) -> Message {
        Message {
            topic: self.topic.clone(),
            flag: self.flag,
            body: self.body.clone(),
            properties: self.properties.clone(),
        }
    }
}

impl From<Message> for MessageExt {
    /// A stored message with every broker-assigned field at its default, for fake brokers that
    /// fill in offsets and hosts afterwards.
    fn from(message: Message) -> Self {
        Self {
            topic: message.topic,
            flag: message.flag,
            body: message.body,
            properties: message.properties,
            ..Self::default()
        }
    }
}

/// A message to send (Java `Message`): what a producer controls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub flag: i32,
    pub body: Bytes,
    pub properties: Properties,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self { topic: topic.into(), body: body.into(), ..Self::default() }
    }

    pub fn with_flag(mut self, flag: i32) -> Self {
        self.flag = flag;
        self
    }

    pub fn with_tags(self, tags: impl AsRef<str>) -> Self {
        self.with_property(property::TAGS, tags)
    }

    /// Joins the keys with a space, the separator the broker's key index splits on.
    pub fn with_keys<I, S>(self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined = keys.into_iter().fold(String::new(), |mut acc, key| {
            if !acc.is_empty() {
                acc.push(property::KEY_SEPARATOR);
            }
            acc.push_str(key.as_ref());
            acc
        });
        self.with_property(property::KEYS, joined)
    }

    pub fn with_property(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.properties.insert(key, value);
        self
    }

    /// Level 1..=18 of the broker's `messageDelayLevel` table; 0 removes the delay.
    pub fn with_delay_level(mut self, level: i32) -> Self {
        if level == 0 {
            self.properties.remove(property::DELAY);
            self
        } else {
            self.with_property(property::DELAY, level.to_string())
        }
    }

    pub fn with_wait_store_msg_ok(self, wait: bool) -> Self {
        self.with_property(property::WAIT, if wait { "true" } else { "false" })
    }

    /// Sets UNIQ_KEY to a fresh [`new_uniq_key`], as every Java producer does before sending.
    pub fn with_new_uniq_key(self) -> Self {
        self.with_property(property::UNIQ_KEY, new_uniq_key())
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key)
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.tags()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties.keys()
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.properties.uniq_key()
    }

    pub fn delay_level(&self) -> i32 {
        self.properties.delay_level()
    }
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

/// Why one record (or one packed inner message) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    #[error("truncated {field}: needs {needed} bytes, {available} left")]
    Truncated { field: &'static str, needed: usize, available: usize },
    #[error("bad magic code {magic:#010x}{}", blank_note(*.magic))]
    BadMagic { magic: i32 },
    #[error("TOTALSIZE {total_size} is below the {minimum}-byte minimum")]
    BadTotalSize { total_size: i32, minimum: usize },
    #[error("{field} length {length} is negative")]
    NegativeLength { field: &'static str, length: i32 },
    #[error("fields end {consumed} bytes into the record but TOTALSIZE is {total_size}")]
    LengthMismatch { total_size: usize, consumed: usize },
    #[error("{field} port {port} is outside 0..=65535")]
    BadPort { field: &'static str, port: i32 },
    #[error("sysflag {sys_flag:#x} names unknown compression type {code}")]
    UnknownCompression { sys_flag: i32, code: u8 },
    #[error("body: {0}")]
    Decompress(#[source] CompressionError),
    /// An inner message of an INNER_BATCH record; `position` is relative to the inflated body.
    #[error("inner message {index}: {error} (at byte {position} of the inflated body)")]
    InnerBatch { index: usize, position: usize, error: Box<DecodeErrorKind> },
    #[error("{extra} bytes follow the record")]
    TrailingBytes { extra: usize },
}

fn blank_note(magic: i32) -> &'static str {
    if magic == BLANK_MAGIC { " (the commit-log blank-end marker)" } else { "" }
}

/// The first record of a body that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("message record {index} (at byte {record_start}): {kind} (at byte {position})")]
pub struct MessageDecodeError {
    /// Index of the failing record among the body's records (inner batch messages not counted).
    pub index: usize,
    /// Byte offset of the record's TOTALSIZE within the decoded buffer.
    pub record_start: usize,
    /// Byte offset of the offending field within the decoded buffer.
    pub position: usize,
    pub kind: DecodeErrorKind,
}

/// A body that could not be compressed or inflated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CompressionError {
    #[error("{codec} stream is corrupt: {reason}")]
    Corrupt { codec: CompressionType, reason: String },
    #[error("{codec} stream inflates past the {limit}-byte limit")]
    TooLarge { codec: CompressionType, limit: usize },
    #[error("{codec} compression failed: {reason}")]
    Compress { codec: CompressionType, reason: String },
}

/// A message that cannot be put on the wire as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("topic is {len} bytes; a record holds at most {MAX_SHORT_FIELD_LEN}")]
    TopicTooLong { len: usize },
    #[error("properties encode to {len} bytes; the wire allows at most {MAX_SHORT_FIELD_LEN}")]
    PropertiesTooLong { len: usize },
    #[error(transparent)]
    InvalidProperty(#[from] InvalidProperty),
    #[error("record would be {len} bytes, more than an i32 TOTALSIZE can say")]
    TooLarge { len: usize },
    #[error("sysflag {sys_flag:#x} asks for unknown compression type {code}")]
    UnknownCompression { sys_flag: i32, code: u8 },
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// The packed batch form has no topic field, so a batch must share the header's one topic.
    #[error("a batch must have one topic, found {first:?} and {other:?}")]
    MixedBatchTopics { first: String, other: String },
}

/// An offset msg id that is not 32 or 56 hex digits naming a valid address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MsgIdError {
    #[error("msg id has {len} bytes; an offset msg id has 32 (IPv4) or 56 (IPv6) hex digits")]
    BadLength { len: usize },
    #[error("msg id has a non-hex byte at position {position}")]
    BadHex { position: usize },
    #[error("msg id names port {port}, outside 0..=65535")]
    BadPort { port: i32 },
}

// ------------------------------------------------------------------------------------------------
// Compression
// ------------------------------------------------------------------------------------------------

/// A body codec, as named by sysflag bits 8-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompressionType {
    /// LZ4 *frame* format (lz4-java `LZ4FrameOutputStream`).
    Lz4,
    /// A standard zstd frame.
    Zstd,
    /// A zlib stream with its RFC 1950 header (Java `Deflater`); also what code 0 means.
    Zlib,
}

impl CompressionType {
    /// The codec for a sysflag's bits 8-10. Code 0 is zlib because 4.x producers compress with
    /// zlib without setting any type bits. `Err` carries an unknown code (4-7).
    pub fn from_sys_flag(sys_flag: i32) -> Result<Self, u8> {
        let code = ((sys_flag >> 8) & 0x7) as u8;
        match code {
            0 | 3 => Ok(Self::Zlib),
            1 => Ok(Self::Lz4),
            2 => Ok(Self::Zstd),
            other => Err(other),
        }
    }

    /// The sysflag bits 8-10 a 5.x producer sets for this codec (zlib as 3, not 0).
    pub fn sys_flag_bits(self) -> i32 {
        match self {
            Self::Lz4 => sysflag::COMPRESSION_LZ4,
            Self::Zstd => sysflag::COMPRESSION_ZSTD,
            Self::Zlib => sysflag::COMPRESSION_ZLIB,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Lz4 => "LZ4",
            Self::Zstd => "ZSTD",
            Self::Zlib => "ZLIB",
        }
    }
}

impl fmt::Display for CompressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Level 5 is the Java producer's default (`rocketmq.message.compressLevel`); LZ4 frames have no
/// level.
const COMPRESS_LEVEL: u32 = 5;

/// Compresses a body the way a Java producer does, so records built by tests look like real ones.
pub fn compress_body(codec: CompressionType, data: &[u8]) -> Result<Bytes, CompressionError> {
    let fail = |e: &dyn fmt::Display| CompressionError::Compress { codec, reason: e.to_string() };
    let out = match codec {
        CompressionType::Zlib => {
            let level = flate2::Compression::new(COMPRESS_LEVEL);
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), level);
            encoder.write_all(data).map_err(|e| fail(&e))?;
            encoder.finish().map_err(|e| fail(&e))?
        }
        CompressionType::Lz4 => {
            // Independent blocks: lz4-java's frame reader refuses linked ones.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(data).map_err(|e| fail(&e))?;
            encoder.finish().map_err(|e| fail(&e))?
        }
        CompressionType::Zstd => {
            zstd::stream::encode_all(data, COMPRESS_LEVEL as i32).map_err(|e| fail(&e))?
        }
    };
    Ok(Bytes::from(out))
}

/// Inflates a body, refusing anything that is not one or more *complete* streams (a truncated
/// stream is an error, not a shorter body) or that inflates past [`MAX_INFLATED_BODY_LEN`].
pub fn decompress_body(codec: CompressionType, data: &[u8]) -> Result<Bytes, CompressionError> {
    decompress_limited(codec, data, MAX_INFLATED_BODY_LEN)
}

fn decompress_limited(
    codec: CompressionType,
    data: &[u8],
    limit: usize,
) -> Result<Bytes, CompressionError> {
    let corrupt = |reason: String| CompressionError::Corrupt { codec, reason };
    if data.is_empty() {
        return Err(corrupt("empty stream".to_owned()));
    }
    let out = match codec {
        CompressionType::Zlib => inflate_zlib(data, limit)?,
        CompressionType::Lz4 => {
            // lz4_flex treats a frame cut at a block boundary as a clean end; check the framing
            // first so truncation is caught.
            check_lz4_frames(data).map_err(|reason| corrupt(reason.to_owned()))?;
            // The frame decoder reports the end of each frame as end of file; keep reading while
            // input is left so concatenated frames inflate whole, as lz4-java does.
            let mut decoder = lz4_flex::frame::FrameDecoder::new(data);
            let mut out = Vec::new();
            loop {
                let before = decoder.get_ref().len();
                read_limited(codec, &mut decoder, &mut out, limit)?;
                let after = decoder.get_ref().len();
                if after == 0 {
                    break out;
                }
                if after == before {
                    return Err(corrupt("frame decoder made no progress".to_owned()));
                }
            }
        }
        CompressionType::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| corrupt(e.to_string()))?;
            let mut out = Vec::new();
            read_limited(codec, decoder, &mut out, limit)?;
            out
        }
    };
    Ok(Bytes::from(out))
}

/// Appends what `reader` yields to `out`, failing once `out` would exceed `limit`.
fn read_limited(
    codec: CompressionType,
    reader: impl Read,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), CompressionError> {
    let room = limit.saturating_sub(out.len());
    let cap = u64::try_from(room).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(out)
        .map_err(|e| CompressionError::Corrupt { codec, reason: e.to_string() })?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    Ok(())
}

/// zlib through the raw inflater, because `flate2::read::ZlibDecoder` reports a stream cut short
/// as a clean end of file and we must not hand a truncated body to the listener.
fn inflate_zlib(data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = CompressionType::Zlib;
    let mut inflater = flate2::Decompress::new(true);
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(CompressionError::TooLarge { codec, limit });
            }
            // Grow geometrically, but never past limit + 1 so a bomb is caught early.
            let room = (limit - out.len()).saturating_add(1);
            out.reserve(out.len().max(data.len().saturating_mul(2)).max(1).min(room));
        }
        let consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
        let input = data.get(consumed..).unwrap_or_default();
        let produced_before = out.len();
        let status = inflater
            .decompress_vec(input, &mut out, flate2::FlushDecompress::None)
            .map_err(|e| CompressionError::Corrupt { codec, reason: e.to_string() })?;
        if out.len() > limit {
            return Err(CompressionError::TooLarge { codec, limit });
        }
        match status {
            // Like Java's InflaterInputStream, ignore anything after the end of the stream.
            flate2::Status::StreamEnd => return Ok(out),
            flate2::Status::Ok | flate2::Status::BufError => {
                let now_consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
                let progressed = now_consumed != consumed || out.len() != produced_before;
                if !progressed && out.len() < out.capacity() {
                    return Err(CompressionError::Corrupt {
                        codec,
                        reason: "stream ends before its end marker".to_owned(),
                    });
                }
            }
        }
    }
}

/// Walks LZ4 frame headers and block sizes (without inflating) to prove every frame is complete.
fn check_lz4_frames(data: &[u8]) -> Result<(), &'static str> {
    const FRAME_MAGIC: u32 = 0x184D_2204;
    const TRUNCATED: &str = "frame is truncated";

    let u32_at = |pos: usize| -> Result<u32, &'static str> {
        let end = pos.checked_add(4).ok_or(TRUNCATED)?;
        let bytes = data.get(pos..end).ok_or(TRUNCATED)?;
        Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| TRUNCATED)?))
    };
    let skip = |pos: usize, n: usize| -> Result<usize, &'static str> {
        let end = pos.checked_add(n).ok_or(TRUNCATED)?;
        if end > data.len() { Err(TRUNCATED) } else { Ok(end) }
    };

    let mut pos = 0;
    while pos < data.len() {
        let magic = u32_at(pos)?;
        pos += 4;
        // Skippable and legacy frames are refused: the decoder cannot read them, and no
        // RocketMQ producer writes them.
        if magic != FRAME_MAGIC {
            return Err("not an LZ4 frame (bad magic)");
        }
        let flg = *data.get(pos).ok_or(TRUNCATED)?;
        let block_checksum = flg & 0x10 != 0;
        let content_size = flg & 0x08 != 0;
        let content_checksum = flg & 0x04 != 0;
        let dict_id = flg & 0x01 != 0;
        // FLG, BD, optional content size and dictionary id, header checksum.
        let header = 2 + if content_size { 8 } else { 0 } + if dict_id { 4 } else { 0 } + 1;
        pos = skip(pos, header)?;
        loop {
            let word = u32_at(pos)?;
            pos += 4;
            if word == 0 {
                break;
            }
            let size = usize::try_from(word & 0x7FFF_FFFF).map_err(|_| TRUNCATED)?;
            pos = skip(pos, size + if block_checksum { 4 } else { 0 })?;
        }
        if content_checksum {
            pos = skip(pos, 4)?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Decoding
// ------------------------------------------------------------------------------------------------

/// A decode failure before it is placed among the records.
#[derive(Debug)]
struct Fail {
    position: usize,
    kind: DecodeErrorKind,
}

impl Fail {
    fn new(position: usize, kind: DecodeErrorKind) -> Self {
        Self { position, kind }
    }

    fn into_error(self, index: usize, record_start: usize) -> MessageDecodeError {
        MessageDecodeError { index, record_start, position: self.position, kind: self.kind }
    }
}

/// A bounds-checked big-endian reader over `src[pos..end]`; every read reports the field it was
/// reading so a short input names what was missing.
struct Reader<'a> {
    src: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(src: &'a Bytes, pos: usize) -> Self {
        Self { src, pos, end: src.len() }
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<std::ops::Range<usize>, Fail> {
        let available = self.remaining();
        if n > available || self.end > self.src.len() {
            return Err(Fail::new(
                self.pos,
                DecodeErrorKind::Truncated { field, needed: n, available },
            ));
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    fn slice(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Fail> {
        let at = self.pos;
        let range = self.take(n, field)?;
        self.src.get(range).ok_or_else(|| {
            Fail::new(at, DecodeErrorKind::Truncated { field, needed: n, available: 0 })
        })
    }

    /// A zero-copy slice of the input, so uncompressed bodies share the pull buffer.
    fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, Fail> {
        let at = self.pos;
        let range = self.take(n, field)?;
        if range.end <= self.src.len() {
            Ok(self.src.slice(range))
        } else {
            Err(Fail::new(at, DecodeErrorKind::Truncated { field, needed: n, available: 0 }))
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Fail> {
        let at = self.pos;
        let slice = self.slice(N, field)?;
        <[u8; N]>::try_from(slice).map_err(|_| {
            Fail::new(at, DecodeErrorKind::Truncated { field, needed: N, available: 0 })
        })
    }

    fn i8(&mut self, field: &'static str) -> Result<i8, Fail> {
        self.array(field).map(i8::from_be_bytes)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, Fail> {
        self.array(field).map(i16::from_be_bytes)
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, Fail> {
        self.array(field).map(i32::from_be_bytes)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, Fail> {
        self.array(field).map(i64::from_be_bytes)
    }

    /// An i32 length field, which must not be negative.
    fn length_i32(&mut self, field: &'static str) -> Result<usize, Fail> {
        let at = self.pos;
        let length = self.i32(field)?;
        usize::try_from(length)
            .map_err(|_| Fail::new(at, DecodeErrorKind::NegativeLength { field, length }))
    }

    fn host(
        &mut self,
        v6: bool,
        ip_field: &'static str,
        port_field: &'static str,
    ) -> Result<SocketAddr, Fail> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>(ip_field)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>(ip_field)?))
        };
        let at = self.pos;
        let port = self.i32(port_field)?;
        let port = u16::try_from(port)
            .map_err(|_| Fail::new(at, DecodeErrorKind::BadPort { field: port_field, port }))?;
        Ok(SocketAddr::new(ip, port))
    }

    /// Text as Java reads it (`new String(bytes, UTF_8)`): invalid sequences become U+FFFD. A
    /// producer that wrote a bad byte into a topic or property must not stall the queue.
    fn utf8(&mut self, n: usize, field: &'static str) -> Result<String, Fail> {
        Ok(lossy_utf8(self.slice(n, field)?).into_owned())
    }

    fn properties(&mut self) -> Result<Properties, Fail> {
        let at = self.pos;
        let len = self.i16("PROPERTIES length")?;
        let len = usize::try_from(len).map_err(|_| {
            Fail::new(
                at,
                DecodeErrorKind::NegativeLength { field: "PROPERTIES", length: i32::from(len) },
            )
        })?;
        // Decoded from the frame's bytes (borrowed unless they need U+FFFD repairs), not from an
        // owned copy of them.
        Ok(Properties::decode(&lossy_utf8(self.slice(len, "PROPERTIES")?)))
    }

    /// Checks a record's TOTALSIZE against `minimum` and what is left from `start`, and narrows
    /// the reader to the record. Returns the record length.
    fn enter_record(
        &mut self,
        start: usize,
        total_size: i32,
        minimum: usize,
    ) -> Result<usize, Fail> {
        let available = self.end.saturating_sub(start);
        let total =
            usize::try_from(total_size).ok().filter(|&t| t >= minimum).ok_or_else(|| {
                Fail::new(start, DecodeErrorKind::BadTotalSize { total_size, minimum })
            })?;
        if total > available {
            return Err(Fail::new(
                start,
                DecodeErrorKind::Truncated { field: "record", needed: total, available },
            ));
        }
        self.end = start + total;
        Ok(total)
    }

    /// Every byte TOTALSIZE promised must have been a field, or the next record would start in
    /// the wrong place.
    fn leave_record(&self, start: usize, total: usize) -> Result<(), Fail> {
        let consumed = self.pos - start;
        if consumed == total {
            Ok(())
        } else {
            Err(Fail::new(
                self.pos,
                DecodeErrorKind::LengthMismatch { total_size: total, consumed },
            ))
        }
    }
}

/// One decoded stored record, before any inner-batch unwrapping.
struct Record {
    message: MessageExt,
    /// Where BODY's bytes start, for placing inner-batch errors.
    body_position: usize,
    end: usize,
}

fn decode_record(src: &Bytes, start: usize) -> Result<Record, Fail> {
    let mut r = Reader::new(src, start);
    let total_size = r.i32("TOTALSIZE")?;
    // The magic is checked before TOTALSIZE is trusted: on garbage it is the clearer error.
    let magic_position = r.pos;
    let magic = r.i32("MAGICCODE")?;
    let topic_len_size = match magic {
        MAGIC_V1 => 1,
        MAGIC_V2 => 2,
        magic => return Err(Fail::new(magic_position, DecodeErrorKind::BadMagic { magic })),
    };
    let total = r.enter_record(start, total_size, MIN_RECORD_LEN)?;

    let body_crc = r.i32("BODYCRC")?;
    let queue_id = QueueId(r.i32("QUEUEID")?);
    let flag = r.i32("FLAG")?;
    let queue_offset = QueueOffset(r.i64("QUEUEOFFSET")?);
    let commit_log_offset = CommitLogOffset(r.i64("PHYSICALOFFSET")?);
    let mut sys_flag = r.i32("SYSFLAG")?;
    let born_timestamp = EpochMillis(r.i64("BORNTIMESTAMP")?);
    let born_host =
        r.host(sys_flag & sysflag::BORNHOST_V6 != 0, "BORNHOST address", "BORNHOST port")?;
    let store_timestamp = EpochMillis(r.i64("STORETIMESTAMP")?);
    let store_host =
        r.host(sys_flag & sysflag::STOREHOST_V6 != 0, "STOREHOST address", "STOREHOST port")?;
    let reconsume_times = r.i32("RECONSUMETIMES")?;
    let prepared_transaction_offset = r.i64("PREPARED_TX_OFFSET")?;

    let body_len = r.length_i32("BODY length")?;
    let body_position = r.pos;
    let stored_body = r.bytes(body_len, "BODY")?;

    let topic_at = r.pos;
    let topic_len = if topic_len_size == 1 {
        i32::from(r.i8("TOPIC length")?)
    } else {
        i32::from(r.i16("TOPIC length")?)
    };
    let topic_len = usize::try_from(topic_len).map_err(|_| {
        Fail::new(topic_at, DecodeErrorKind::NegativeLength { field: "TOPIC", length: topic_len })
    })?;
    let topic = r.utf8(topic_len, "TOPIC")?;
    let properties = r.properties()?;
    r.leave_record(start, total)?;

    // Java only inflates a non-empty body. An empty one is trivially "inflated" too, so the bit
    // is cleared either way: a decoded sysflag never claims a compressed body.
    let body = if sys_flag & sysflag::COMPRESSED != 0 && !stored_body.is_empty() {
        let codec = CompressionType::from_sys_flag(sys_flag).map_err(|code| {
            Fail::new(body_position, DecodeErrorKind::UnknownCompression { sys_flag, code })
        })?;
        decompress_body(codec, &stored_body)
            .map_err(|e| Fail::new(body_position, DecodeErrorKind::Decompress(e)))?
    } else {
        stored_body
    };
    sys_flag &= !sysflag::COMPRESSED;

    let message = MessageExt {
        topic,
        flag,
        body,
        properties,
        queue_id,
        queue_offset,
        commit_log_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body_crc,
        store_size: total_size,
    };
    Ok(Record { message, body_position, end: start + total })
}

/// Decodes a PULL_MESSAGE body: every record, in order, with inner batches unwrapped.
///
/// All-or-nothing (see the module docs); use [`decode_messages_prefix`] to keep the good prefix.
/// Bodies that were not compressed share `body`'s allocation.
pub fn decode_messages(body: Bytes) -> Result<Vec<MessageExt>, MessageDecodeError> {
    match decode_messages_prefix(body) {
        (messages, None) => Ok(messages),
        (_, Some(error)) => Err(error),
    }
}

/// Like [`decode_messages`], but returns the messages decoded before the first bad record
/// alongside its error: Java's behaviour, minus the silence.
pub fn decode_messages_prefix(body: Bytes) -> (Vec<MessageExt>, Option<MessageDecodeError>) {
    let mut messages = Vec::new();
    let mut pos = 0;
    let mut index = 0;
    while pos < body.len() {
        let record = match decode_record(&body, pos) {
            Ok(record) => record,
            Err(fail) => return (messages, Some(fail.into_error(index, pos))),
        };
        if sysflag::needs_unwrap(record.message.sys_flag) {
            match unwrap_inner_batch(&record.message) {
                Ok(inner) => messages.extend(inner),
                Err(e) => {
                    let kind = DecodeErrorKind::InnerBatch {
                        index: e.index,
                        position: e.position,
                        error: Box::new(e.kind),
                    };
                    let fail = Fail::new(record.body_position, kind);
                    return (messages, Some(fail.into_error(index, pos)));
                }
            }
        } else {
            messages.push(record.message);
        }
        pos = record.end;
        index += 1;
    }
    (messages, None)
}

/// Decodes exactly one record (the CONSUME_MESSAGE_DIRECTLY body).
///
/// Like Java's `clientDecode`, this does not unwrap an inner batch (see [`unwrap_inner_batch`]).
/// Bytes after the record are an error: the broker sends exactly one record's bytes, so extra
/// bytes mean the framing is not what we think it is.
pub fn decode_message(record: &[u8]) -> Result<MessageExt, MessageDecodeError> {
    let src = Bytes::copy_from_slice(record);
    let decoded = decode_record(&src, 0).map_err(|fail| fail.into_error(0, 0))?;
    let extra = src.len() - decoded.end;
    if extra != 0 {
        let kind = DecodeErrorKind::TrailingBytes { extra };
        return Err(Fail::new(decoded.end, kind).into_error(0, 0));
    }
    Ok(decoded.message)
}

/// Expands an INNER_BATCH + NEED_UNWRAP message into its packed messages, as the Java client's
/// `MessageDecoder.decodeMessage(MessageExt, List)`; any other message comes back alone.
///
/// Inner message `i` gets queue offset `outer + i`, its own flag, body and properties, and the
/// outer message's other fields (including reconsume times and the prepared-transaction offset,
/// which Java leaves at 0 and we see no reason to lose). Its `store_size` and `body_crc` are the
/// inner record's own. NEED_UNWRAP is cleared on the results (Java keeps it) so that re-encoding
/// an inner message and decoding it again cannot try to unwrap a body that is not a batch.
///
/// Errors index the inner messages and give positions within the outer (inflated) body.
pub fn unwrap_inner_batch(outer: &MessageExt) -> Result<Vec<MessageExt>, MessageDecodeError> {
    if !sysflag::needs_unwrap(outer.sys_flag) {
        return Ok(vec![outer.clone()]);
    }
    let packed = decode_packed(&outer.body)?;
    Ok(packed
        .into_iter()
        .zip(0_i64..)
        .map(|(inner, i)| MessageExt {
            topic: outer.topic.clone(),
            flag: inner.flag,
            body: inner.body,
            properties: inner.properties,
            queue_id: outer.queue_id,
            queue_offset: QueueOffset(outer.queue_offset.0.wrapping_add(i)),
            commit_log_offset: outer.commit_log_offset,
            sys_flag: outer.sys_flag & !sysflag::NEED_UNWRAP,
            born_timestamp: outer.born_timestamp,
            born_host: outer.born_host,
            store_timestamp: outer.store_timestamp,
            store_host: outer.store_host,
            reconsume_times: outer.reconsume_times,
            prepared_transaction_offset: outer.prepared_transaction_offset,
            body_crc: inner.body_crc,
            store_size: inner.total_size,
        })
        .collect())
}

/// One message of the packed batch form, with the two fields [`Message`] has no room for.
struct Packed {
    flag: i32,
    body: Bytes,
    properties: Properties,
    body_crc: i32,
    total_size: i32,
}

fn decode_packed(src: &Bytes) -> Result<Vec<Packed>, MessageDecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut index = 0;
    while pos < src.len() {
        let (packed, end) = decode_packed_one(src, pos).map_err(|f| f.into_error(index, pos))?;
        out.push(packed);
        pos = end;
        index += 1;
    }
    Ok(out)
}

fn decode_packed_one(src: &Bytes, start: usize) -> Result<(Packed, usize), Fail> {
    let mut r = Reader::new(src, start);
    let total_size = r.i32("TOTALSIZE")?;
    let total = r.enter_record(start, total_size, MIN_PACKED_LEN)?;
    // Java ignores the inner magic (producers write 0), so we do too.
    let _magic = r.i32("MAGICCODE")?;
    let body_crc = r.i32("BODYCRC")?;
    let flag = r.i32("FLAG")?;
    let body_len = r.length_i32("BODY length")?;
    let body = r.bytes(body_len, "BODY")?;
    let properties = r.properties()?;
    r.leave_record(start, total)?;
    Ok((Packed { flag, body, properties, body_crc, total_size }, start + total))
}

/// Decodes a SEND_BATCH_MESSAGE body (also the inner-batch body) into messages.
///
/// The packed form carries no topic: the results have an empty one, to be set from the request
/// header.
pub fn decode_batch(body: Bytes) -> Result<Vec<Message>, MessageDecodeError> {
    Ok(decode_packed(&body)?
        .into_iter()
        .map(|p| Message {
            topic: String::new(),
            flag: p.flag,
            body: p.body,
            properties: p.properties,
        })
        .collect())
}

// ------------------------------------------------------------------------------------------------
// Encoding
// ------------------------------------------------------------------------------------------------

/// BODYCRC as the store computes it. Masked to 31 bits because Java keeps it in an `int` and the
/// broker compares it as a non-negative number.
pub fn body_crc(stored_body: &[u8]) -> i32 {
    (crc32fast::hash(stored_body) & 0x7FFF_FFFF) as i32
}

fn put_host(buf: &mut BytesMut, host: SocketAddr) {
    match host.ip() {
        IpAddr::V4(ip) => buf.put_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.put_slice(&ip.octets()),
    }
    buf.put_i32(i32::from(host.port()));
}

fn host_len(host: SocketAddr) -> usize {
    if host.is_ipv4() { 4 + 4 } else { 16 + 4 }
}

fn encoded_properties(properties: &Properties) -> Result<String, EncodeError> {
    properties.validate()?;
    let encoded = properties.encode();
    if encoded.len() > MAX_SHORT_FIELD_LEN {
        return Err(EncodeError::PropertiesTooLong { len: encoded.len() });
    }
    Ok(encoded)
}

/// Encodes a message as the broker stores it (and so as a pull returns it), for fake brokers and
/// round-trip tests.
///
/// The record is derived from the message, never copied from it, so it is always self-consistent:
/// - V1 when the topic is at most 127 bytes, else V2, as the store chooses;
/// - the host bits of `sys_flag` follow the address families of `born_host`/`store_host`;
/// - with [`sysflag::COMPRESSED`] set, `body` is compressed with the codec in bits 8-10;
/// - BODYCRC and TOTALSIZE are computed (`body_crc` and `store_size` are ignored).
///
/// So `decode_message(&encode_stored_message(m)?)` equals `m` for every message the decoder
/// could have produced: COMPRESSED clear, not both inner-batch bits unless the body is a packed
/// batch, host bits matching the addresses, IPv6 hosts without flow info or scope id, valid
/// properties, and `body_crc`/`store_size` as computed here.
pub fn encode_stored_message(message: &MessageExt) -> Result<Bytes, EncodeError> {
    let properties = encoded_properties(&message.properties)?;
    let topic = message.topic.as_bytes();
    let (magic, topic_len_size) = if topic.len() <= MAX_V1_TOPIC_LEN {
        (MAGIC_V1, 1)
    } else if topic.len() <= MAX_SHORT_FIELD_LEN {
        (MAGIC_V2, 2)
    } else {
        return Err(EncodeError::TopicTooLong { len: topic.len() });
    };

    let mut sys_flag = message.sys_flag & !(sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6);
    if message.born_host.is_ipv6() {
        sys_flag |= sysflag::BORNHOST_V6;
    }
    if message.store_host.is_ipv6() {
        sys_flag |= sysflag::STOREHOST_V6;
    }

    let stored_body = if sys_flag & sysflag::COMPRESSED != 0 {
        let codec = CompressionType::from_sys_flag(sys_flag)
            .map_err(|code| EncodeError::UnknownCompression { sys_flag, code })?;
        compress_body(codec, &message.body)?
    } else {
        message.body.clone()
    };

    let total = [
        4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8,
        host_len(message.born_host),
        8,
        host_len(message.store_host),
        4 + 8 + 4,
        stored_body.len(),
        topic_len_size,
        topic.len(),
        2,
        properties.len(),
    ]
    .into_iter()
    .try_fold(0_usize, usize::checked_add)
    .ok_or(EncodeError::TooLarge { len: usize::MAX })?;
    let total_size = i32::try_from(total).map_err(|_| EncodeError::TooLarge { len: total })?;
    // Both fit: each is no longer than the whole record, whose length fits an i32.
    let body_len = i32::try_from(stored_body.len()).unwrap_or(i32::MAX);
    let properties_len = i16::try_from(properties.len()).unwrap_or(i16::MAX);

    let mut buf = BytesMut::with_capacity(total);
    buf.put_i32(total_size);
    buf.put_i32(magic);
    buf.put_i32(body_crc(&stored_body));
    buf.put_i32(message.queue_id.0);
    buf.put_i32(message.flag);
    buf.put_i64(message.queue_offset.0);
    buf.put_i64(message.commit_log_offset.0);
    buf.put_i32(sys_flag);
    buf.put_i64(message.born_timestamp.0);
    put_host(&mut buf, message.born_host);
    buf.put_i64(message.store_timestamp.0);
    put_host(&mut buf, message.store_host);
    buf.put_i32(message.reconsume_times);
    buf.put_i64(message.prepared_transaction_offset);
    buf.put_i32(body_len);
    buf.put_slice(&stored_body);
    if topic_len_size == 1 {
        buf.put_u8(topic.len() as u8);
    } else {
        buf.put_u16(topic.len() as u16);
    }
    buf.put_slice(topic);
    buf.put_i16(properties_len);
    buf.put_slice(properties.as_bytes());
    debug_assert_eq!(buf.len(), total);
    Ok(buf.freeze())
}

/// Encodes a SEND_BATCH_MESSAGE body (Java `MessageDecoder.encodeMessages`): per message
/// `i32 totalSize, i32 magic 0, i32 bodyCRC 0, i32 flag, i32 bodyLen, body, i16 propLen, props`.
///
/// The topic travels in the request header, so all messages must share one.
pub fn encode_batch(messages: &[Message]) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::new();
    let first_topic = messages.first().map(|m| m.topic.as_str());
    for message in messages {
        if let Some(first) = first_topic
            && message.topic != first
        {
            return Err(EncodeError::MixedBatchTopics {
                first: first.to_owned(),
                other: message.topic.clone(),
            });
        }
        let properties = encoded_properties(&message.properties)?;
        let total = (4 + 4 + 4 + 4 + 4 + 2 + properties.len())
            .checked_add(message.body.len())
            .ok_or(EncodeError::TooLarge { len: usize::MAX })?;
        let total_size = i32::try_from(total).map_err(|_| EncodeError::TooLarge { len: total })?;
        buf.reserve(total);
        buf.put_i32(total_size);
        buf.put_i32(0);
        buf.put_i32(0);
        buf.put_i32(message.flag);
        buf.put_i32(i32::try_from(message.body.len()).unwrap_or(i32::MAX));
        buf.put_slice(&message.body);
        buf.put_i16(i16::try_from(properties.len()).unwrap_or(i16::MAX));
        buf.put_slice(properties.as_bytes());
    }
    Ok(buf.freeze())
}

// ------------------------------------------------------------------------------------------------
// Message ids
// ------------------------------------------------------------------------------------------------

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    out.extend(bytes.iter().flat_map(|&b| hex_digits(b)).map(char::from));
}

/// The two uppercase hex digits of `b`.
fn hex_digits(b: u8) -> [u8; 2] {
    [HEX_UPPER[usize::from(b >> 4)], HEX_UPPER[usize::from(b & 0xF)]]
}

/// The broker's msg id for a stored message (3.1): uppercase hex of the store host's address
/// bytes, its port as an i32 and the commit-log offset as an i64. Tools look messages up by it,
/// so the layout must be Java's exactly.
pub fn offset_msg_id(store_host: SocketAddr, offset: CommitLogOffset) -> String {
    let mut out = Vec::with_capacity(2 * (16 + 4 + 8));
    push_offset_msg_id(&mut out, store_host, offset);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// [`offset_msg_id`] appended to `out`, for encoders that write many ids into one buffer.
pub fn push_offset_msg_id(out: &mut Vec<u8>, store_host: SocketAddr, offset: CommitLogOffset) {
    let mut raw = [0u8; 16 + 4 + 8];
    let ip_len = match store_host.ip() {
        IpAddr::V4(ip) => {
            raw[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            raw[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    raw[ip_len..ip_len + 4].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw[ip_len + 4..ip_len + 12].copy_from_slice(&offset.0.to_be_bytes());
    out.extend(raw[..ip_len + 12].iter().flat_map(|&b| hex_digits(b)));
}

/// Parses an offset msg id back into the store host and commit-log offset (Java
/// `decodeMessageId`), accepting either case as Java's `string2bytes` does.
pub fn parse_offset_msg_id(id: &str) -> Result<(SocketAddr, CommitLogOffset), MsgIdError> {
    let hex = id.as_bytes();
    let ip_len = match hex.len() {
        32 => 4,
        56 => 16,
        len => return Err(MsgIdError::BadLength { len }),
    };
    let nibble = |position: usize| -> Result<u8, MsgIdError> {
        let c = hex.get(position).copied().ok_or(MsgIdError::BadHex { position })?;
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(MsgIdError::BadHex { position })
    };
    let mut raw = Vec::with_capacity(hex.len() / 2);
    for i in 0..hex.len() / 2 {
        raw.push((nibble(2 * i)? << 4) | nibble(2 * i + 1)?);
    }
    let (ip_bytes, rest) =
        raw.split_at_checked(ip_len).ok_or(MsgIdError::BadLength { len: hex.len() })?;
    let ip = match ip_len {
        4 => IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(ip_bytes).map_err(|_| MsgIdError::BadLength { len: hex.len() })?,
        )),
        _ => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(ip_bytes).map_err(|_| MsgIdError::BadLength { len: hex.len() })?,
        )),
    };
    let bad_len = || MsgIdError::BadLength { len: hex.len() };
    let port_bytes = rest.get(..4).ok_or_else(bad_len)?;
    let offset_bytes = rest.get(4..12).ok_or_else(bad_len)?;
    let port = i32::from_be_bytes(port_bytes.try_into().map_err(|_| bad_len())?);
    let offset = i64::from_be_bytes(offset_bytes.try_into().map_err(|_| bad_len())?);
    let port = u16::try_from(port).map_err(|_| MsgIdError::BadPort { port })?;
    Ok((SocketAddr::new(ip, port), CommitLogOffset(offset)))
}

/// A fresh UNIQ_KEY: 32 uppercase hex chars in the Java producer's layout (`MessageClientIDSetter`):
/// address(4) + pid(2) + per-process random(4) + ms since the start of the month(4) + counter(2).
///
/// Java's layout matters beyond uniqueness: `mqadmin queryMsgById` reads the time field back to
/// narrow its index search. Two deliberate differences:
/// - the address slot holds 4 random bytes chosen once per process, because finding the host's
///   IPv4 address is I/O this pure module must not do, and nothing relies on it but a log line;
/// - the month starts at 00:00 UTC rather than local midnight (no time-zone database here), so a
///   reader in another zone sees a time off by its UTC offset, well within mqadmin's window.
///
/// Unique per process while fewer than 65536 keys are made in one millisecond, as in Java.
pub fn new_uniq_key() -> String {
    static PREFIX: OnceLock<[u8; 10]> = OnceLock::new();
    static COUNTER: AtomicU16 = AtomicU16::new(0);

    let prefix = PREFIX.get_or_init(|| {
        let [a0, a1, a2, a3]: [u8; 4] = rand::random();
        // Java writes `(short) pid`: the low 16 bits.
        let [p0, p1] = ((std::process::id() & 0xFFFF) as u16).to_be_bytes();
        let [s0, s1, s2, s3]: [u8; 4] = rand::random();
        [a0, a1, a2, a3, p0, p1, s0, s1, s2, s3]
    });
    let since_month = millis_since_month_start(EpochMillis::now().0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);

    let mut out = String::with_capacity(32);
    push_hex(&mut out, prefix);
    push_hex(&mut out, &since_month.to_be_bytes());
    push_hex(&mut out, &counter.to_be_bytes());
    out
}

/// Milliseconds since 00:00 UTC on the first of `now`'s month, truncated to 32 bits as Java's
/// `(int)` cast does (a month is longer than `i32::MAX` ms, and readers expect the wrap).
fn millis_since_month_start(now: i64) -> u32 {
    const DAY_MS: i64 = 86_400_000;
    let days = now.div_euclid(DAY_MS);
    let day_of_month = day_of_month(days);
    let since = (day_of_month - 1) * DAY_MS + now.rem_euclid(DAY_MS);
    since as u32
}

/// Day of the month (1-based) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), to avoid a date-library dependency for one number.
fn day_of_month(days_since_epoch: i64) -> i64 {
    let z = days_since_epoch.saturating_add(719_468);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    day_of_year - (153 * month_index + 2) / 5 + 1
}

/// `raw` as text, invalid sequences replaced by U+FFFD as Java's `new String(bytes, UTF_8)`
/// does. Valid text (nearly all of it) takes `from_utf8`'s fast path: `from_utf8_lossy`
/// checks chunk by chunk, ~1,000 instructions a message for the topic and properties.
fn lossy_utf8(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddrV6;

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
    }

    fn v6(ip: [u8; 16], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
    }

    const GOLDEN_UNIQ_KEY: &str = "7F0000010F3A18B4AAC27D1F36E40000";
    const GOLDEN_PROPERTIES: &[u8] = b"KEYS\x01k1 k2\x02TAGS\x01TagA\x02\
        UNIQ_KEY\x017F0000010F3A18B4AAC27D1F36E40000\x02WAIT\x01true\x02";

    /// A V1 record with IPv4 hosts, written out field by field from the reference table (section
    /// 3), independently of the encoder. CRC and lengths were computed outside Rust.
    fn golden_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&[0x00, 0x00, 0x00, 0xBB]); // 1 TOTALSIZE = 187
        b.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]); // 2 MAGICCODE = V1
        b.extend_from_slice(&[0x69, 0xC8, 0x65, 0xED]); // 3 BODYCRC = crc32("Hello RocketMQ") & 0x7FFFFFFF
        b.extend_from_slice(&[0x00, 0x00, 0x00, 0x03]); // 4 QUEUEID = 3
        b.extend_from_slice(&[0x00, 0x00, 0x00, 0x10]); // 5 FLAG = 16
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x2A]); // 6 QUEUEOFFSET = 42
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x12, 0x34]); // 7 PHYSICALOFFSET = 0x1234
        b.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]); // 8 SYSFLAG = 0 (IPv4 hosts, plain body)
        b.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00]); // 9 BORNTIMESTAMP = 1700000000000
        b.extend_from_slice(&[192, 168, 1, 20]); // 10 BORNHOST address
        b.extend_from_slice(&[0x00, 0x00, 0xD4, 0x31]); //    BORNHOST port = 54321
        b.extend_from_slice(&[0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B]); // 11 STORETIMESTAMP = 1700000000123
        b.extend_from_slice(&[10, 0, 0, 7]); // 12 STOREHOST address
        b.extend_from_slice(&[0x00, 0x00, 0x2A, 0x9F]); //    STOREHOST port = 10911
        b.extend_from_slice(&[0x00, 0x00, 0x00, 0x02]); // 13 RECONSUMETIMES = 2
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // 14 PREPARED_TX_OFFSET = 0
        b.extend_from_slice(&[0x00, 0x00, 0x00, 0x0E]); // 15 BODY length = 14
        b.extend_from_slice(b"Hello RocketMQ"); //          BODY
        b.push(0x09); //                                   16 TOPIC length (V1: i8) = 9
        b.extend_from_slice(b"TopicTest"); //               TOPIC
        b.extend_from_slice(&[0x00, 0x49]); //             17 PROPERTIES length = 73
        b.extend_from_slice(GOLDEN_PROPERTIES); //          PROPERTIES
        b
    }

    fn golden_message() -> MessageExt {
        MessageExt {
            topic: "TopicTest".to_owned(),
            flag: 16,
            body: Bytes::from_static(b"Hello RocketMQ"),
            properties: [
                (property::KEYS, "k1 k2"),
                (property::TAGS, "TagA"),
                (property::UNIQ_KEY, GOLDEN_UNIQ_KEY),
                (property::WAIT, "true"),
            ]
            .into_iter()
            .collect(),
            queue_id: QueueId(3),
            queue_offset: QueueOffset(42),
            commit_log_offset: CommitLogOffset(0x1234),
            sys_flag: 0,
            born_timestamp: EpochMillis(1_700_000_000_000),
            born_host: v4([192, 168, 1, 20], 54321),
            store_timestamp: EpochMillis(1_700_000_000_123),
            store_host: v4([10, 0, 0, 7], 10911),
            reconsume_times: 2,
            prepared_transaction_offset: 0,
            body_crc: 0x69C8_65ED,
            store_size: 187,
        }
    }

    /// What decoding `encoded` must give back for `m`: the decoder clears COMPRESSED and reports
    /// the stored CRC and size.
    fn expected_after_round_trip(m: &MessageExt, encoded: &[u8]) -> MessageExt {
        let mut expected = m.clone();
        expected.sys_flag &= !sysflag::COMPRESSED;
        expected.body_crc = i32::from_be_bytes(encoded[8..12].try_into().unwrap());
        expected.store_size = i32::try_from(encoded.len()).unwrap();
        expected
    }

    fn round_trip(m: &MessageExt) -> (Bytes, MessageExt) {
        let encoded = encode_stored_message(m).unwrap();
        (encoded.clone(), decode_message(&encoded).unwrap())
    }

    fn set_i32(bytes: &mut [u8], at: usize, value: i32) {
        bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }

    // Offsets of fields in the golden record.
    const SYSFLAG_AT: usize = 36;
    const BORN_PORT_AT: usize = 52;
    const BODY_LEN_AT: usize = 84;
    const TOPIC_LEN_AT: usize = 102;
    const TOPIC_AT: usize = 103;
    const PROPERTIES_AT: usize = 114;

    // --- golden record ---------------------------------------------------------------------

    #[test]
    fn golden_record_decodes_field_by_field() {
        let m = decode_message(&golden_bytes()).unwrap();
        assert_eq!(m.store_size, 187);
        assert_eq!(m.body_crc, 0x69C8_65ED);
        assert_eq!(m.queue_id, QueueId(3));
        assert_eq!(m.flag, 16);
        assert_eq!(m.queue_offset, QueueOffset(42));
        assert_eq!(m.commit_log_offset, CommitLogOffset(0x1234));
        assert_eq!(m.sys_flag, 0);
        assert_eq!(m.born_timestamp, EpochMillis(1_700_000_000_000));
        assert_eq!(m.born_host, "192.168.1.20:54321".parse().unwrap());
        assert_eq!(m.store_timestamp, EpochMillis(1_700_000_000_123));
        assert_eq!(m.store_host, "10.0.0.7:10911".parse().unwrap());
        assert_eq!(m.reconsume_times, 2);
        assert_eq!(m.prepared_transaction_offset, 0);
        assert_eq!(&m.body[..], b"Hello RocketMQ");
        assert_eq!(m.topic, "TopicTest");
        assert_eq!(m.properties.len(), 4);
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(m.uniq_key(), Some(GOLDEN_UNIQ_KEY));
        assert_eq!(m.property(property::WAIT), Some("true"));
        assert_eq!(m.offset_msg_id(), "0A00000700002A9F0000000000001234");
        assert_eq!(m.msg_id(), GOLDEN_UNIQ_KEY);
        assert_eq!(m, golden_message());
    }

    #[test]
    fn golden_record_encodes_byte_for_byte() {
        let encoded = encode_stored_message(&golden_message()).unwrap();
        assert_eq!(&encoded[..], &golden_bytes()[..]);
        assert_eq!(body_crc(b"Hello RocketMQ"), 0x69C8_65ED);
    }

    #[test]
    fn pull_body_of_several_records_decodes_in_order() {
        let mut second = golden_message();
        second.queue_offset = QueueOffset(43);
        second.body = Bytes::from_static(b"second");
        let mut body = golden_bytes();
        body.extend_from_slice(&encode_stored_message(&second).unwrap());
        let got = decode_messages(Bytes::from(body)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], golden_message());
        assert_eq!(got[1].queue_offset, QueueOffset(43));
        assert_eq!(&got[1].body[..], b"second");
    }

    #[test]
    fn empty_pull_body_is_no_messages() {
        assert_eq!(decode_messages(Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn uncompressed_bodies_share_the_pull_buffer() {
        let body = Bytes::from(golden_bytes());
        let got = decode_messages(body.clone()).unwrap();
        let inside = body.as_ptr_range();
        assert!(inside.contains(&got[0].body.as_ptr()));
    }

    // --- hosts and versions ----------------------------------------------------------------

    #[test]
    fn ipv6_hosts_follow_the_sysflag_bits() {
        let born = v6([0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 1234);
        let store = v6([0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 10911);
        let m = MessageExt { born_host: born, store_host: store, ..golden_message() };
        let (encoded, decoded) = round_trip(&m);
        assert_eq!(encoded.len(), 187 + 24, "each IPv6 host adds 12 bytes");
        let sys_flag = i32::from_be_bytes(encoded[SYSFLAG_AT..SYSFLAG_AT + 4].try_into().unwrap());
        assert_eq!(sys_flag, sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6);
        assert_eq!(&encoded[48..64], &[0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&encoded[64..68], &1234_i32.to_be_bytes());
        assert_eq!(decoded.born_host, born);
        assert_eq!(decoded.store_host, store);
        assert_eq!(decoded.sys_flag, sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6);
        let id = decoded.offset_msg_id();
        assert_eq!(id.len(), 56);
        assert_eq!(parse_offset_msg_id(&id).unwrap(), (store, CommitLogOffset(0x1234)));
    }

    #[test]
    fn mixed_host_families_decode() {
        let store = v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 10911);
        let m = MessageExt { store_host: store, ..golden_message() };
        let (encoded, decoded) = round_trip(&m);
        assert_eq!(encoded.len(), 187 + 12);
        assert_eq!(decoded.sys_flag, sysflag::STOREHOST_V6);
        assert_eq!(decoded.born_host, golden_message().born_host);
        assert_eq!(decoded.store_host, store);
    }

    #[test]
    fn encoder_derives_host_bits_from_the_addresses() {
        // The sysflag claims IPv6 hosts, the addresses are IPv4: the addresses win.
        let m = MessageExt {
            sys_flag: sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6,
            ..golden_message()
        };
        let encoded = encode_stored_message(&m).unwrap();
        assert_eq!(&encoded[..], &golden_bytes()[..]);
    }

    #[test]
    fn long_topic_is_written_as_v2() {
        let topic = format!("%RETRY%{}", "g".repeat(200));
        let m = MessageExt { topic: topic.clone(), ..golden_message() };
        let (encoded, decoded) = round_trip(&m);
        assert_eq!(&encoded[4..8], &MAGIC_V2.to_be_bytes());
        assert_eq!(&encoded[TOPIC_LEN_AT..TOPIC_LEN_AT + 2], &207_u16.to_be_bytes());
        assert_eq!(decoded, expected_after_round_trip(&m, &encoded));
        assert_eq!(decoded.topic, topic);
    }

    #[test]
    fn v1_topic_limit_is_127_bytes() {
        for (len, magic) in [(127, MAGIC_V1), (128, MAGIC_V2)] {
            let m = MessageExt { topic: "t".repeat(len), ..golden_message() };
            let (encoded, decoded) = round_trip(&m);
            assert_eq!(&encoded[4..8], &magic.to_be_bytes(), "topic of {len} bytes");
            assert_eq!(decoded.topic.len(), len);
        }
    }

    #[test]
    fn hand_built_v2_record_with_a_short_topic_decodes() {
        let golden = golden_bytes();
        let mut b = golden[..TOPIC_LEN_AT].to_vec();
        b.extend_from_slice(&[0x00, 0x09]); // TOPIC length as i16
        b.extend_from_slice(&golden[TOPIC_AT..]);
        set_i32(&mut b, 0, 188);
        set_i32(&mut b, 4, MAGIC_V2);
        let m = decode_message(&b).unwrap();
        assert_eq!(m, MessageExt { store_size: 188, ..golden_message() });
    }

    // --- compression -----------------------------------------------------------------------

    fn compressible_body() -> Bytes {
        Bytes::from("RocketMQ compresses bodies of 4 KiB and more. ".repeat(200))
    }

    #[test]
    fn each_codec_inflates_a_record_body() {
        for (code, codec) in [
            (sysflag::COMPRESSION_ZLIB, CompressionType::Zlib),
            (sysflag::COMPRESSION_LZ4, CompressionType::Lz4),
            (sysflag::COMPRESSION_ZSTD, CompressionType::Zstd),
            (0, CompressionType::Zlib), // 4.x producers set no type bits
        ] {
            let body = compressible_body();
            let m = MessageExt {
                body: body.clone(),
                sys_flag: sysflag::COMPRESSED | code | sysflag::MULTI_TAGS,
                ..golden_message()
            };
            let (encoded, decoded) = round_trip(&m);
            let stored = compress_body(codec, &body).unwrap();
            assert!(stored.len() < body.len() / 4, "{codec} did not compress");
            assert_eq!(encoded.len(), 187 - 14 + stored.len(), "{codec} stored body length");
            assert_eq!(&encoded[88..88 + stored.len()], &stored[..], "{codec} stored bytes");
            assert_eq!(decoded.body, body, "{codec}");
            assert_eq!(decoded.sys_flag, code | sysflag::MULTI_TAGS, "{codec}: only bit 0 cleared");
            assert_eq!(decoded.body_crc, body_crc(&stored), "{codec}: CRC of the stored form");
            assert_eq!(decoded, expected_after_round_trip(&m, &encoded));
        }
    }

    #[test]
    fn codec_output_has_the_expected_framing() {
        let data = compressible_body();
        let zlib = compress_body(CompressionType::Zlib, &data).unwrap();
        assert_eq!(zlib[0], 0x78, "zlib header");
        let lz4 = compress_body(CompressionType::Lz4, &data).unwrap();
        assert_eq!(&lz4[..4], &[0x04, 0x22, 0x4D, 0x18], "LZ4 frame magic");
        assert_eq!(lz4[4] & 0x20, 0x20, "independent blocks");
        let zstd = compress_body(CompressionType::Zstd, &data).unwrap();
        assert_eq!(&zstd[..4], &[0x28, 0xB5, 0x2F, 0xFD], "zstd frame magic");
    }

    #[test]
    fn truncated_compressed_streams_are_errors() {
        let data = compressible_body();
        for codec in [CompressionType::Zlib, CompressionType::Lz4, CompressionType::Zstd] {
            let full = compress_body(codec, &data).unwrap();
            assert_eq!(decompress_body(codec, &full).unwrap(), data);
            for cut in 0..full.len() {
                let err = decompress_body(codec, &full[..cut]);
                assert!(
                    matches!(err, Err(CompressionError::Corrupt { codec: c, .. }) if c == codec),
                    "{codec} cut at {cut}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_not_a_compressed_stream() {
        for codec in [CompressionType::Zlib, CompressionType::Lz4, CompressionType::Zstd] {
            let err = decompress_body(codec, b"definitely not compressed").unwrap_err();
            assert!(err.to_string().contains(codec.name()), "{err}");
        }
    }

    #[test]
    fn concatenated_frames_inflate_whole() {
        for codec in [CompressionType::Lz4, CompressionType::Zstd] {
            let mut two = compress_body(codec, b"first ").unwrap().to_vec();
            two.extend_from_slice(&compress_body(codec, b"second").unwrap());
            assert_eq!(&decompress_body(codec, &two).unwrap()[..], b"first second", "{codec}");
        }
    }

    #[test]
    fn inflating_past_the_limit_is_refused() {
        let zeros = vec![0_u8; 10_000];
        for codec in [CompressionType::Zlib, CompressionType::Lz4, CompressionType::Zstd] {
            let stored = compress_body(codec, &zeros).unwrap();
            assert_eq!(decompress_limited(codec, &stored, 10_000).unwrap().len(), 10_000);
            assert_eq!(
                decompress_limited(codec, &stored, 9_999),
                Err(CompressionError::TooLarge { codec, limit: 9_999 }),
            );
        }
    }

    #[test]
    fn corrupt_compressed_body_names_the_codec_and_record() {
        let mut b = golden_bytes();
        set_i32(&mut b, SYSFLAG_AT, sysflag::COMPRESSED | sysflag::COMPRESSION_ZSTD);
        let err = decode_messages(Bytes::from(b)).unwrap_err();
        assert_eq!((err.index, err.record_start, err.position), (0, 0, 88));
        assert!(matches!(
            err.kind,
            DecodeErrorKind::Decompress(CompressionError::Corrupt {
                codec: CompressionType::Zstd,
                ..
            })
        ));
        assert!(err.to_string().contains("ZSTD"), "{err}");
    }

    #[test]
    fn unknown_compression_type_is_an_error() {
        let mut b = golden_bytes();
        let sys_flag = sysflag::COMPRESSED | (5 << 8);
        set_i32(&mut b, SYSFLAG_AT, sys_flag);
        let err = decode_message(&b).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownCompression { sys_flag, code: 5 });
        let m = MessageExt { sys_flag, ..golden_message() };
        assert_eq!(
            encode_stored_message(&m),
            Err(EncodeError::UnknownCompression { sys_flag, code: 5 })
        );
    }

    #[test]
    fn compressed_flag_on_an_empty_body_is_just_cleared() {
        let mut b = golden_bytes();
        // Body length 0: drop the 14 body bytes and fix TOTALSIZE.
        b.drain(88..102);
        set_i32(&mut b, 0, 187 - 14);
        set_i32(&mut b, BODY_LEN_AT, 0);
        // Type 7 is unknown, but with nothing to inflate Java never looks it up.
        set_i32(&mut b, SYSFLAG_AT, sysflag::COMPRESSED | (7 << 8));
        let m = decode_message(&b).unwrap();
        assert!(m.body.is_empty());
        assert_eq!(m.sys_flag, 7 << 8);
    }

    #[test]
    fn compression_type_codes() {
        let cases = [
            (0, Ok(CompressionType::Zlib)),
            (1, Ok(CompressionType::Lz4)),
            (2, Ok(CompressionType::Zstd)),
            (3, Ok(CompressionType::Zlib)),
            (4, Err(4)),
            (7, Err(7)),
        ];
        for (code, expected) in cases {
            let flag = (code << 8) | sysflag::COMPRESSED | sysflag::INNER_BATCH;
            assert_eq!(CompressionType::from_sys_flag(flag), expected, "code {code}");
        }
        for codec in [CompressionType::Zlib, CompressionType::Lz4, CompressionType::Zstd] {
            assert_eq!(CompressionType::from_sys_flag(codec.sys_flag_bits()), Ok(codec));
            assert_eq!(codec.to_string(), codec.name());
        }
    }

    // --- inner batches ---------------------------------------------------------------------

    fn inner_messages() -> Vec<Message> {
        vec![
            Message::new("BatchTopic", "first").with_tags("a").with_keys(["k1"]),
            Message::new("BatchTopic", "second").with_flag(7).with_property("color", "blue"),
            Message::new("BatchTopic", Bytes::new()),
        ]
    }

    fn batch_outer(sys_flag: i32) -> MessageExt {
        MessageExt {
            topic: "BatchTopic".to_owned(),
            body: encode_batch(&inner_messages()).unwrap(),
            properties: [(property::INNER_NUM, "3")].into_iter().collect(),
            queue_offset: QueueOffset(100),
            sys_flag,
            reconsume_times: 1,
            ..golden_message()
        }
    }

    #[test]
    fn inner_batch_is_unwrapped_with_consecutive_offsets() {
        let both = sysflag::INNER_BATCH | sysflag::NEED_UNWRAP;
        let outer = batch_outer(both);
        let got = decode_messages(encode_stored_message(&outer).unwrap()).unwrap();
        assert_eq!(got.len(), 3);
        for (i, (m, original)) in got.iter().zip(inner_messages()).enumerate() {
            assert_eq!(m.queue_offset, QueueOffset(100 + i as i64));
            assert_eq!(m.topic, "BatchTopic");
            assert_eq!(m.flag, original.flag);
            assert_eq!(m.body, original.body);
            assert_eq!(m.properties, original.properties, "inner properties only");
            assert_eq!(m.sys_flag, sysflag::INNER_BATCH, "NEED_UNWRAP cleared");
            assert_eq!(m.queue_id, outer.queue_id);
            assert_eq!(m.commit_log_offset, outer.commit_log_offset);
            assert_eq!(m.born_host, outer.born_host);
            assert_eq!(m.store_host, outer.store_host);
            assert_eq!(m.born_timestamp, outer.born_timestamp);
            assert_eq!(m.store_timestamp, outer.store_timestamp);
            assert_eq!(m.reconsume_times, 1);
            assert_eq!(m.body_crc, 0);
        }
        assert_eq!(got[0].tags(), Some("a"));
        assert_eq!(
            got[0].store_size,
            4 * 5 + 5 + 2 + "KEYS\u{1}k1\u{2}TAGS\u{1}a\u{2}".len() as i32
        );
    }

    #[test]
    fn compressed_inner_batch_is_inflated_then_unwrapped() {
        let flags = sysflag::INNER_BATCH
            | sysflag::NEED_UNWRAP
            | sysflag::COMPRESSED
            | sysflag::COMPRESSION_LZ4;
        let got = decode_messages(encode_stored_message(&batch_outer(flags)).unwrap()).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(&got[1].body[..], b"second");
        assert_eq!(got[1].sys_flag, sysflag::INNER_BATCH | sysflag::COMPRESSION_LZ4);
    }

    #[test]
    fn one_batch_bit_alone_does_not_unwrap() {
        for flag in [sysflag::INNER_BATCH, sysflag::NEED_UNWRAP] {
            let outer = batch_outer(flag);
            let got = decode_messages(encode_stored_message(&outer).unwrap()).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].body, outer.body);
        }
    }

    #[test]
    fn single_record_decode_leaves_the_batch_wrapped() {
        let outer = batch_outer(sysflag::INNER_BATCH | sysflag::NEED_UNWRAP);
        let decoded = decode_message(&encode_stored_message(&outer).unwrap()).unwrap();
        assert_eq!(decoded.body, outer.body);
        let inner = unwrap_inner_batch(&decoded).unwrap();
        assert_eq!(inner.len(), 3);
        assert_eq!(inner[2].queue_offset, QueueOffset(102));
        assert_eq!(unwrap_inner_batch(&golden_message()).unwrap(), vec![golden_message()]);
    }

    #[test]
    fn bad_inner_batch_reports_the_inner_message() {
        let mut outer = batch_outer(sysflag::INNER_BATCH | sysflag::NEED_UNWRAP);
        let good_len = encode_batch(&inner_messages()[..2]).unwrap().len();
        let mut body = outer.body.to_vec();
        body.truncate(good_len + 3);
        outer.body = Bytes::from(body);
        let err = decode_messages(encode_stored_message(&outer).unwrap()).unwrap_err();
        assert_eq!((err.index, err.position), (0, 88));
        assert_eq!(
            err.kind,
            DecodeErrorKind::InnerBatch {
                index: 2,
                position: good_len,
                error: Box::new(DecodeErrorKind::Truncated {
                    field: "TOTALSIZE",
                    needed: 4,
                    available: 3
                }),
            }
        );
    }

    #[test]
    fn batch_body_matches_javas_packed_layout() {
        let m = Message::new("T", "hi").with_tags("A").with_flag(5);
        let mut expected = Vec::new();
        expected.extend_from_slice(&31_i32.to_be_bytes()); // totalSize
        expected.extend_from_slice(&0_i32.to_be_bytes()); // magic
        expected.extend_from_slice(&0_i32.to_be_bytes()); // bodyCRC
        expected.extend_from_slice(&5_i32.to_be_bytes()); // flag
        expected.extend_from_slice(&2_i32.to_be_bytes()); // bodyLen
        expected.extend_from_slice(b"hi"); // body
        expected.extend_from_slice(&7_i16.to_be_bytes()); // propLen
        expected.extend_from_slice(b"TAGS\x01A\x02"); // props
        assert_eq!(&encode_batch(std::slice::from_ref(&m)).unwrap()[..], &expected[..]);
        let decoded = decode_batch(Bytes::from(expected)).unwrap();
        assert_eq!(decoded, vec![Message { topic: String::new(), ..m }]);
    }

    #[test]
    fn batch_requires_one_topic() {
        let batch = [Message::new("A", "1"), Message::new("B", "2")];
        assert_eq!(
            encode_batch(&batch),
            Err(EncodeError::MixedBatchTopics { first: "A".to_owned(), other: "B".to_owned() })
        );
        assert_eq!(encode_batch(&[]).unwrap(), Bytes::new());
    }

    #[test]
    fn batch_decode_rejects_bad_lengths() {
        let good = encode_batch(&[Message::new("T", "body")]).unwrap().to_vec();
        let mut negative = good.clone();
        set_i32(&mut negative, 16, -1);
        let err = decode_batch(Bytes::from(negative)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NegativeLength { field: "BODY length", length: -1 });
        let mut short = good.clone();
        set_i32(&mut short, 0, 10);
        let err = decode_batch(Bytes::from(short)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadTotalSize { total_size: 10, minimum: 22 });
        for cut in 1..good.len() {
            assert!(decode_batch(Bytes::copy_from_slice(&good[..cut])).is_err(), "cut {cut}");
        }
    }

    // --- malformed records -----------------------------------------------------------------

    #[test]
    fn every_truncation_of_a_record_is_an_error() {
        let ipv6 = MessageExt {
            born_host: v6([1; 16], 1),
            store_host: v6([2; 16], 2),
            body: compressible_body(),
            sys_flag: sysflag::COMPRESSED | sysflag::COMPRESSION_ZSTD,
            ..golden_message()
        };
        let records = [
            Bytes::from(golden_bytes()),
            encode_stored_message(&ipv6).unwrap(),
            encode_stored_message(&batch_outer(sysflag::INNER_BATCH | sysflag::NEED_UNWRAP))
                .unwrap(),
        ];
        for record in records {
            for cut in 1..record.len() {
                let err = decode_messages(record.slice(..cut)).unwrap_err();
                assert_eq!((err.index, err.record_start), (0, 0), "cut {cut}");
                assert!(matches!(err.kind, DecodeErrorKind::Truncated { .. }), "cut {cut}: {err}");
                assert!(decode_message(&record[..cut]).is_err(), "cut {cut}");
            }
            assert_eq!(decode_message(&record[..0]).unwrap_err().position, 0);
        }
    }

    #[test]
    fn truncated_second_record_names_it() {
        let mut body = golden_bytes();
        body.extend_from_slice(&golden_bytes()[..100]);
        let err = decode_messages(Bytes::from(body.clone())).unwrap_err();
        assert_eq!((err.index, err.record_start, err.position), (1, 187, 187));
        assert_eq!(
            err.kind,
            DecodeErrorKind::Truncated { field: "record", needed: 187, available: 100 }
        );
        let (prefix, err) = decode_messages_prefix(Bytes::from(body));
        assert_eq!(prefix, vec![golden_message()]);
        assert_eq!(err.unwrap().index, 1);
    }

    #[test]
    fn truncation_names_the_missing_field() {
        let b = golden_bytes();
        let err = decode_messages(Bytes::copy_from_slice(&b[..6])).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::Truncated { field: "MAGICCODE", needed: 4, available: 2 }
        );
        assert_eq!(err.position, 4);
        // TOTALSIZE one short of the fields: the properties overrun the record.
        let mut short = b.clone();
        set_i32(&mut short, 0, 186);
        let err = decode_message(&short[..186]).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::Truncated { field: "PROPERTIES", needed: 73, available: 72 }
        );
        assert_eq!(err.position, PROPERTIES_AT);
        assert!(err.to_string().contains("PROPERTIES"), "{err}");
    }

    #[test]
    fn bad_magic_is_reported_with_its_value() {
        let mut b = golden_bytes();
        set_i32(&mut b, 4, 0x1234_5678);
        let err = decode_messages(Bytes::from(b)).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadMagic { magic: 0x1234_5678 });
        assert_eq!((err.index, err.record_start, err.position), (0, 0, 4));
        assert!(err.to_string().contains("0x12345678"), "{err}");
    }

    #[test]
    fn bad_magic_in_a_later_record_keeps_the_prefix() {
        let mut body = golden_bytes();
        let mut blank = golden_bytes();
        set_i32(&mut blank, 4, BLANK_MAGIC);
        body.extend_from_slice(&blank);
        let (prefix, err) = decode_messages_prefix(Bytes::from(body.clone()));
        let err = err.unwrap();
        assert_eq!(prefix, vec![golden_message()]);
        assert_eq!((err.index, err.record_start, err.position), (1, 187, 191));
        assert_eq!(err.kind, DecodeErrorKind::BadMagic { magic: BLANK_MAGIC });
        assert!(err.to_string().contains("blank"), "{err}");
        assert_eq!(decode_messages(Bytes::from(body)).unwrap_err(), err);
    }

    #[test]
    fn total_size_must_match_the_fields() {
        let mut padded = golden_bytes();
        padded.extend_from_slice(&[0, 0]);
        set_i32(&mut padded, 0, 189);
        let err = decode_message(&padded).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::LengthMismatch { total_size: 189, consumed: 187 });
        assert_eq!(err.position, 187);

        for total_size in [-1, 0, 90] {
            let mut b = golden_bytes();
            set_i32(&mut b, 0, total_size);
            let err = decode_message(&b).unwrap_err();
            assert_eq!(err.kind, DecodeErrorKind::BadTotalSize { total_size, minimum: 91 });
        }
    }

    #[test]
    fn negative_lengths_are_errors() {
        let mut b = golden_bytes();
        set_i32(&mut b, BODY_LEN_AT, -1);
        let err = decode_message(&b).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NegativeLength { field: "BODY length", length: -1 });
        assert_eq!(err.position, BODY_LEN_AT);

        let mut b = golden_bytes();
        b[TOPIC_LEN_AT] = 0x80; // a V1 topic length is a signed byte
        let err = decode_message(&b).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NegativeLength { field: "TOPIC", length: -128 });

        let mut b = golden_bytes();
        b[PROPERTIES_AT - 2] = 0xFF;
        let err = decode_message(&b).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::NegativeLength { field: "PROPERTIES", .. }));
    }

    #[test]
    fn invalid_utf8_decodes_with_replacement_characters_like_java() {
        // Java reads both with `new String(bytes, UTF_8)`: a bad byte becomes U+FFFD and the
        // message is still delivered; failing the record would stall its queue.
        let mut b = golden_bytes();
        b[TOPIC_AT + 2] = 0xFF;
        let m = decode_message(&b).expect("a bad topic byte is not fatal");
        assert_eq!(m.topic.chars().nth(2), Some('\u{FFFD}'), "{:?}", m.topic);

        let mut b = golden_bytes();
        b[PROPERTIES_AT] = 0xC3; // a lead byte followed by ASCII
        let m = decode_message(&b).expect("a bad property byte is not fatal");
        let golden = decode_message(&golden_bytes()).unwrap();
        assert_eq!(m.properties.len(), golden.properties.len(), "{:?}", m.properties);
    }

    #[test]
    fn out_of_range_port_is_an_error() {
        let mut b = golden_bytes();
        set_i32(&mut b, BORN_PORT_AT, 70_000);
        let err = decode_message(&b).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadPort { field: "BORNHOST port", port: 70_000 });
        assert_eq!(err.position, BORN_PORT_AT);
    }

    #[test]
    fn single_record_decode_rejects_trailing_bytes() {
        let mut b = golden_bytes();
        b.push(0);
        let err = decode_message(&b).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes { extra: 1 });
        assert_eq!(err.position, 187);
    }

    // --- encoder limits --------------------------------------------------------------------

    #[test]
    fn encoder_rejects_what_the_wire_cannot_carry() {
        let m = MessageExt { topic: "t".repeat(40_000), ..golden_message() };
        assert_eq!(encode_stored_message(&m), Err(EncodeError::TopicTooLong { len: 40_000 }));

        let mut m = golden_message();
        m.properties.insert("big", "v".repeat(40_000));
        assert!(matches!(encode_stored_message(&m), Err(EncodeError::PropertiesTooLong { .. })));

        let mut m = golden_message();
        m.properties.insert("empty", "");
        assert_eq!(
            encode_stored_message(&m),
            Err(EncodeError::InvalidProperty(InvalidProperty {
                key: "empty".to_owned(),
                reason: "empty value"
            }))
        );
        let batch = [Message::new("T", "x").with_property("a\u{2}b", "v")];
        assert!(matches!(encode_batch(&batch), Err(EncodeError::InvalidProperty(_))));
    }

    // --- properties ------------------------------------------------------------------------

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs.iter().copied().collect()
    }

    #[test]
    fn properties_encode_with_trailing_separator() {
        let p = props(&[("B", "2"), ("A", "1")]);
        assert_eq!(p.encode(), "A\u{1}1\u{2}B\u{1}2\u{2}");
        assert_eq!(Properties::new().encode(), "");
    }

    #[test]
    fn properties_decode_follows_javas_rules() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("A\u{1}1\u{2}B\u{1}2\u{2}", &[("A", "1"), ("B", "2")]),
            // no trailing separator
            ("A\u{1}1\u{2}B\u{1}2", &[("A", "1"), ("B", "2")]),
            // segments shorter than 3 chars
            ("A\u{1}\u{2}\u{1}B\u{2}AB\u{2}K\u{1}V", &[("K", "V")]),
            // no name/value separator
            ("ABC\u{2}K\u{1}V\u{2}", &[("K", "V")]),
            // empty key, empty value
            ("\u{1}VAL\u{2}KEY\u{1}\u{2}K\u{1}V", &[("K", "V")]),
            // only the first \u1 splits
            ("K\u{1}V\u{1}W\u{2}", &[("K", "V\u{1}W")]),
            // empty segments
            ("\u{2}\u{2}K\u{1}V\u{2}\u{2}", &[("K", "V")]),
            // the last duplicate wins
            ("K\u{1}1\u{2}K\u{1}2\u{2}", &[("K", "2")]),
            // multi-byte text
            ("键\u{1}值\u{2}é\u{1}😀\u{2}", &[("键", "值"), ("é", "😀")]),
        ];
        for (wire, expected) in cases {
            assert_eq!(Properties::decode(wire), props(expected), "{wire:?}");
        }
    }

    #[test]
    fn properties_validate_against_the_wire_rules() {
        assert!(props(&[("K", "V\u{1}W"), ("键", "值")]).validate().is_ok());
        for (key, value, reason) in [
            ("", "v", "empty key"),
            ("a\u{1}b", "v", "key contains a separator (\\u1 or \\u2)"),
            ("a\u{2}b", "v", "key contains a separator (\\u1 or \\u2)"),
            ("k", "", "empty value"),
            ("k", "a\u{2}b", "value contains the property separator \\u2"),
        ] {
            let err = props(&[(key, value)]).validate().unwrap_err();
            assert_eq!(err, InvalidProperty { key: key.to_owned(), reason });
        }
    }

    #[test]
    fn typed_property_accessors() {
        let m = MessageExt {
            properties: props(&[
                (property::KEYS, " a  b c "),
                (property::DELAY, "3"),
                (property::MAX_RECONSUME_TIMES, "16"),
                (property::RETRY_TOPIC, "Orig"),
                (property::TRAN_MSG, "TRUE"),
                (property::UNIQ_KEY, "U"),
                (property::WAIT, "False"),
            ]),
            ..MessageExt::default()
        };
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.delay_level(), 3);
        assert_eq!(m.max_reconsume_times(), Some(16));
        assert_eq!(m.retry_topic(), Some("Orig"));
        assert_eq!(m.transaction_id(), Some("U"));
        assert!(!m.properties.wait_store_msg_ok());
        assert_eq!(m.msg_id(), "U");

        let bare = MessageExt::default();
        assert_eq!(bare.keys().count(), 0);
        assert_eq!(bare.delay_level(), 0);
        assert_eq!(bare.transaction_id(), None);
        assert!(bare.properties.wait_store_msg_ok());
        assert_eq!(bare.msg_id(), bare.offset_msg_id());
        assert_eq!(props(&[(property::DELAY, "x")]).delay_level(), 0);
    }

    #[test]
    fn message_builders() {
        let m = Message::new("T", "body")
            .with_tags("TagA")
            .with_keys(["k1", "k2"])
            .with_delay_level(3)
            .with_wait_store_msg_ok(false)
            .with_new_uniq_key();
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.property(property::KEYS), Some("k1 k2"));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(m.delay_level(), 3);
        assert_eq!(m.property(property::WAIT), Some("false"));
        assert_eq!(m.uniq_key().map(str::len), Some(32));
        assert_eq!(m.clone().with_delay_level(0).delay_level(), 0);
        assert!(!m.clone().with_delay_level(0).properties.contains_key(property::DELAY));

        let ext = MessageExt::from(m.clone());
        assert_eq!(ext.to_message(), m);
        assert_eq!(
            ext.message_queue("b").to_string(),
            "MessageQueue [topic=T, brokerName=b, queueId=0]"
        );
    }

    // --- message ids -----------------------------------------------------------------------

    #[test]
    fn offset_msg_id_layout() {
        let host = v4([10, 0, 0, 7], 10911);
        let id = offset_msg_id(host, CommitLogOffset(0x1234));
        assert_eq!(id, "0A00000700002A9F0000000000001234");
        assert_eq!(parse_offset_msg_id(&id), Ok((host, CommitLogOffset(0x1234))));
        assert_eq!(parse_offset_msg_id(&id.to_lowercase()), Ok((host, CommitLogOffset(0x1234))));

        let host6: SocketAddr = "[2001:db8::1]:10911".parse().unwrap();
        let id6 = offset_msg_id(host6, CommitLogOffset(-1));
        assert_eq!(id6, "20010DB800000000000000000000000100002A9FFFFFFFFFFFFFFFFF");
        assert_eq!(parse_offset_msg_id(&id6), Ok((host6, CommitLogOffset(-1))));
    }

    #[test]
    fn bad_offset_msg_ids_are_errors() {
        assert_eq!(parse_offset_msg_id(""), Err(MsgIdError::BadLength { len: 0 }));
        assert_eq!(parse_offset_msg_id(&"0".repeat(31)), Err(MsgIdError::BadLength { len: 31 }));
        assert_eq!(
            parse_offset_msg_id(GOLDEN_UNIQ_KEY.get(..30).unwrap()),
            Err(MsgIdError::BadLength { len: 30 })
        );
        let mut id = "0A00000700002A9F0000000000001234".to_owned();
        id.replace_range(5..6, "G");
        assert_eq!(parse_offset_msg_id(&id), Err(MsgIdError::BadHex { position: 5 }));
        // Multi-byte characters: 16 of them are 32 bytes. Must not panic on char boundaries.
        assert_eq!(parse_offset_msg_id(&"é".repeat(16)), Err(MsgIdError::BadHex { position: 0 }));
        assert_eq!(
            parse_offset_msg_id("0A000007000100000000000000001234"),
            Err(MsgIdError::BadPort { port: 65536 })
        );
    }

    #[test]
    fn uniq_keys_are_32_hex_chars_and_unique() {
        let keys: HashSet<String> = (0..10_000).map(|_| new_uniq_key()).collect();
        assert_eq!(keys.len(), 10_000);
        for key in keys.iter().take(100) {
            assert_eq!(key.len(), 32);
            assert!(key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')), "{key}");
        }
        // Same process prefix, and a time field close to now.
        let a = new_uniq_key();
        let b = new_uniq_key();
        assert_eq!(a[..20], b[..20]);
        let time = u32::from_str_radix(&a[20..28], 16).unwrap();
        let now = millis_since_month_start(EpochMillis::now().0);
        assert!(now.wrapping_sub(time) < 60_000, "time field {time}, now {now}");
    }

    #[test]
    fn month_start_arithmetic() {
        assert_eq!(day_of_month(0), 1); // 1970-01-01
        assert_eq!(day_of_month(-1), 31); // 1969-12-31
        assert_eq!(day_of_month(11_017), 1); // 2000-03-01
        assert_eq!(day_of_month(19_782), 29); // 2024-02-29
        assert_eq!(day_of_month(19_722), 31); // 2023-12-31
        assert_eq!(day_of_month(47_541), 1); // 2100-03-01
        // 2023-11-14T22:13:20Z: 13 days and 22:13:20 into the month.
        assert_eq!(millis_since_month_start(1_700_000_000_000), 13 * 86_400_000 + 80_000_000);
        assert_eq!(millis_since_month_start(0), 0);
        let _ = millis_since_month_start(i64::MIN);
        let _ = millis_since_month_start(i64::MAX);
    }

    // --- property tests --------------------------------------------------------------------

    prop_compose! {
        fn arb_key()(key in "[^\\x01\\x02]{1,12}") -> String {
            key
        }
    }

    prop_compose! {
        fn arb_value()(value in "[^\\x02]{1,24}") -> String {
            value
        }
    }

    prop_compose! {
        fn arb_properties()(
            map in prop::collection::btree_map(arb_key(), arb_value(), 0..6)
        ) -> Properties {
            Properties::from(map)
        }
    }

    fn arb_host() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            any::<([u8; 4], u16)>().prop_map(|(ip, port)| v4(ip, port)),
            any::<([u8; 16], u16)>().prop_map(|(ip, port)| v6(ip, port)),
        ]
    }

    fn arb_topic() -> impl Strategy<Value = String> {
        prop_oneof!["[A-Za-z0-9_%|-]{0,127}", "\\PC{0,40}", "[a-z]{120,300}",]
    }

    prop_compose! {
        /// Any message the decoder could have produced (see `encode_stored_message`).
        fn arb_message_ext()(
            topic in arb_topic(),
            flag in any::<i32>(),
            body in prop::collection::vec(any::<u8>(), 0..300),
            properties in arb_properties(),
            (queue_id, queue_offset, commit_log_offset) in any::<(i32, i64, i64)>(),
            sys_flag in any::<i32>(),
            (born_timestamp, store_timestamp) in any::<(i64, i64)>(),
            (born_host, store_host) in (arb_host(), arb_host()),
            (reconsume_times, prepared_transaction_offset) in any::<(i32, i64)>(),
        ) -> MessageExt {
            let mut sys_flag =
                sys_flag & !(sysflag::COMPRESSED | sysflag::BORNHOST_V6 | sysflag::STOREHOST_V6);
            if sysflag::needs_unwrap(sys_flag) {
                sys_flag &= !sysflag::NEED_UNWRAP;
            }
            if born_host.is_ipv6() {
                sys_flag |= sysflag::BORNHOST_V6;
            }
            if store_host.is_ipv6() {
                sys_flag |= sysflag::STOREHOST_V6;
            }
            MessageExt {
                topic,
                flag,
                body: Bytes::from(body),
                properties,
                queue_id: QueueId(queue_id),
                queue_offset: QueueOffset(queue_offset),
                commit_log_offset: CommitLogOffset(commit_log_offset),
                sys_flag,
                born_timestamp: EpochMillis(born_timestamp),
                born_host,
                store_timestamp: EpochMillis(store_timestamp),
                store_host,
                reconsume_times,
                prepared_transaction_offset,
                body_crc: 0,
                store_size: 0,
            }
        }
    }

    prop_compose! {
        fn arb_message()(
            flag in any::<i32>(),
            body in prop::collection::vec(any::<u8>(), 0..200),
            properties in arb_properties(),
        ) -> Message {
            Message { topic: "T".to_owned(), flag, body: Bytes::from(body), properties }
        }
    }

    fn arb_codec() -> impl Strategy<Value = CompressionType> {
        prop_oneof![
            Just(CompressionType::Zlib),
            Just(CompressionType::Lz4),
            Just(CompressionType::Zstd),
        ]
    }

    /// The oracle for anything the decoder accepts: re-encoding it and decoding again gives the
    /// same message, apart from the stored CRC and size the encoder recomputes.
    fn assert_reencodes(m: &MessageExt) -> Result<(), TestCaseError> {
        let encoded = encode_stored_message(m)
            .map_err(|e| TestCaseError::fail(format!("decoded message did not re-encode: {e}")))?;
        let again = decode_message(&encoded)
            .map_err(|e| TestCaseError::fail(format!("re-encoded message did not decode: {e}")))?;
        prop_assert_eq!(again, expected_after_round_trip(m, &encoded));
        Ok(())
    }

    proptest! {
        #[test]
        fn properties_round_trip(p in arb_properties()) {
            prop_assert!(p.validate().is_ok());
            prop_assert_eq!(Properties::decode(&p.encode()), p);
        }

        #[test]
        fn decoded_properties_are_canonical(wire in "[\\x01\\x02a-cé]{0,40}") {
            let p = Properties::decode(&wire);
            prop_assert!(p.validate().is_ok());
            prop_assert_eq!(Properties::decode(&p.encode()), p.clone());
            prop_assert!(p.encode().len() <= wire.len() + 1);
        }

        #[test]
        fn message_ext_round_trips(m in arb_message_ext()) {
            let (encoded, decoded) = round_trip(&m);
            let expected = MessageExt {
                body_crc: body_crc(&m.body),
                store_size: i32::try_from(encoded.len()).unwrap(),
                ..m.clone()
            };
            prop_assert_eq!(&decoded, &expected);
            prop_assert_eq!(decode_messages(encoded.clone()).unwrap(), vec![expected]);
            prop_assert_eq!(encode_stored_message(&decoded).unwrap(), encoded);
        }

        #[test]
        fn compressed_message_ext_round_trips(
            m in arb_message_ext(),
            code in 0..4_i32,
            repeat in 1..20_usize,
        ) {
            let m = MessageExt {
                body: Bytes::from(m.body.repeat(repeat)),
                sys_flag: (m.sys_flag & !sysflag::COMPRESSION_TYPE_MASK)
                    | sysflag::COMPRESSED
                    | (code << 8),
                ..m
            };
            let (encoded, decoded) = round_trip(&m);
            prop_assert_eq!(decoded, expected_after_round_trip(&m, &encoded));
        }

        #[test]
        fn pull_bodies_round_trip(ms in prop::collection::vec(arb_message_ext(), 0..5)) {
            let mut body = BytesMut::new();
            let mut expected = Vec::new();
            for m in &ms {
                let encoded = encode_stored_message(m).unwrap();
                expected.push(expected_after_round_trip(m, &encoded));
                body.extend_from_slice(&encoded);
            }
            prop_assert_eq!(decode_messages(body.freeze()).unwrap(), expected);
        }

        #[test]
        fn batches_round_trip(ms in prop::collection::vec(arb_message(), 0..6)) {
            let decoded = decode_batch(encode_batch(&ms).unwrap()).unwrap();
            let decoded: Vec<Message> =
                decoded.into_iter().map(|m| Message { topic: "T".to_owned(), ..m }).collect();
            prop_assert_eq!(decoded, ms);
        }

        #[test]
        fn inner_batches_unwrap(ms in prop::collection::vec(arb_message(), 0..6), base in any::<i64>()) {
            let outer = MessageExt {
                topic: "T".to_owned(),
                body: encode_batch(&ms).unwrap(),
                queue_offset: QueueOffset(base),
                sys_flag: sysflag::INNER_BATCH | sysflag::NEED_UNWRAP,
                ..golden_message()
            };
            let got = decode_messages(encode_stored_message(&outer).unwrap()).unwrap();
            prop_assert_eq!(got.len(), ms.len());
            for ((m, original), i) in got.iter().zip(&ms).zip(0_i64..) {
                prop_assert_eq!(m.queue_offset, QueueOffset(base.wrapping_add(i)));
                prop_assert_eq!(&m.body, &original.body);
                prop_assert_eq!(&m.properties, &original.properties);
                assert_reencodes(m)?;
            }
        }

        #[test]
        fn mutated_records_never_panic(
            ms in prop::collection::vec(arb_message_ext(), 1..3),
            compress in any::<bool>(),
            edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<Index>()),
        ) {
            let mut bytes = Vec::new();
            for m in &ms {
                let mut m = m.clone();
                if compress {
                    m.sys_flag = (m.sys_flag & !sysflag::COMPRESSION_TYPE_MASK)
                        | sysflag::COMPRESSED
                        | sysflag::COMPRESSION_ZLIB;
                }
                bytes.extend_from_slice(&encode_stored_message(&m).unwrap());
            }
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            let _ = decode_message(&bytes);
            let _ = decode_batch(Bytes::copy_from_slice(&bytes));
            let (prefix, _) = decode_messages_prefix(Bytes::from(bytes));
            for m in &prefix {
                assert_reencodes(m)?;
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_message(&data);
            let _ = decode_batch(Bytes::copy_from_slice(&data));
            for codec in [CompressionType::Zlib, CompressionType::Lz4, CompressionType::Zstd] {
                let _ = decompress_limited(codec, &data, 1 << 20);
            }
            if let Ok(ms) = decode_messages(Bytes::from(data)) {
                for m in &ms {
                    assert_reencodes(m)?;
                }
            }
        }

        #[test]
        fn records_with_a_valid_header_and_random_tail_never_panic(
            tail in prop::collection::vec(any::<u8>(), 0..200),
            v2 in any::<bool>(),
            sys_flag in any::<i32>(),
        ) {
            // Random bytes rarely get past the magic; this starts them with a plausible header.
            let total = 8 + tail.len() + 4;
            let mut b = Vec::new();
            b.extend_from_slice(&i32::try_from(total).unwrap().to_be_bytes());
            b.extend_from_slice(&if v2 { MAGIC_V2 } else { MAGIC_V1 }.to_be_bytes());
            b.extend_from_slice(&sys_flag.to_be_bytes());
            b.extend_from_slice(&tail);
            if let Ok(ms) = decode_messages(Bytes::from(b)) {
                for m in &ms {
                    assert_reencodes(m)?;
                }
            }
        }

        #[test]
        fn offset_msg_ids_round_trip(host in arb_host(), offset in any::<i64>()) {
            let id = offset_msg_id(host, CommitLogOffset(offset));
            prop_assert_eq!(id.len(), if host.is_ipv4() { 32 } else { 56 });
            prop_assert_eq!(parse_offset_msg_id(&id), Ok((host, CommitLogOffset(offset))));
        }

        #[test]
        fn parse_offset_msg_id_never_panics(id in "\\PC{0,60}") {
            let _ = parse_offset_msg_id(&id);
        }

        #[test]
        fn codecs_round_trip(
            codec in arb_codec(),
            data in prop::collection::vec(any::<u8>(), 1..2000),
        ) {
            let stored = compress_body(codec, &data).unwrap();
            prop_assert_eq!(&decompress_body(codec, &stored).unwrap()[..], &data[..]);
        }
    }

    #[test]
    fn ipv6_scope_and_flow_info_are_not_on_the_wire() {
        let scoped = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1, 7, 3));
        let m = MessageExt { store_host: scoped, ..golden_message() };
        let (_, decoded) = round_trip(&m);
        assert_eq!(decoded.store_host, SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1));
    }
}

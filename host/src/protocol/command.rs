//! The `RemotingCommand`: one request or response on the wire (reference 1.2).
//!
//! Business code never builds one from strings: typed headers ([`super::header`]) fill
//! [`ExtFields`], and typed responses read it back. The command itself is only the envelope.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::code::{LanguageCode, RequestCode, ResponseCode};
use super::header::{CommandHeader, HeaderError};
use super::types::Opaque;

/// Flag bit 0: this command is a response.
const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: this request expects no response.
const FLAG_ONEWAY: i32 = 1 << 1;

/// The version we announce: V4_9_4 (401). At or above it name servers answer with standard JSON
/// route data; below 441 no 5.x server sends us GO_AWAY during a graceful shutdown
/// (reference 1.6 recommends 401..=441).
pub const CLIENT_VERSION: i32 = 401;

/// How the header of a frame is encoded (the top byte of the header-length word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// fastjson text; what Java sends by default and what we send.
    #[default]
    Json,
    /// The compact `ROCKETMQ` binary layout (reference 1.4).
    RocketMq,
}

impl SerializeType {
    /// The wire byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }
}

/// The "custom header": every header field as a string, exactly as on the wire.
///
/// Ordered so encodings are deterministic (fastjson writes keys sorted, and ACL signing sorts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtFields(BTreeMap<String, String>);

impl ExtFields {
    /// An empty set of fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of a field, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets a field.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Removes a field.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fields in key order (Java's String order for ASCII keys).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The underlying map, for signing.
    pub fn as_map_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.0
    }
}

impl FromIterator<(String, String)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// One command: request or response, with its header fields and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code for requests, response code for responses.
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: Opaque,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Bytes,
    /// The encoding this command arrived in, or will be sent in.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request with a typed header. The opaque is assigned by the connection that sends it.
    pub fn request<H: CommandHeader>(code: RequestCode, header: &H) -> Self {
        let mut ext_fields = ExtFields::new();
        header.write(&mut ext_fields);
        Self::bare(code.code(), ext_fields, 0)
    }

    /// A request with no header fields (heartbeat, lock, cluster info…).
    pub fn request_without_header(code: RequestCode) -> Self {
        Self::bare(code.code(), ExtFields::new(), 0)
    }

    /// A response to `request`, carrying its opaque.
    pub fn response_to(request: &Self, code: ResponseCode, remark: Option<String>) -> Self {
        let mut cmd = Self::bare(code.code(), ExtFields::new(), FLAG_RESPONSE);
        cmd.opaque = request.opaque;
        cmd.remark = remark;
        cmd
    }

    fn bare(code: i32, ext_fields: ExtFields, flag: i32) -> Self {
        Self {
            code,
            language: LanguageCode::Rust,
            version: CLIENT_VERSION,
            opaque: Opaque(0),
            flag,
            remark: None,
            ext_fields,
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }

    /// Attaches a body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Attaches a typed header (for responses that carry fields).
    #[must_use]
    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> Self {
        header.write(&mut self.ext_fields);
        self
    }

    /// True for responses (flag bit 0). Requests and responses share one connection, and
    /// broker-initiated requests use the broker's own opaque counter, so this bit — never the
    /// opaque — tells them apart.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// True for oneway requests (flag bit 1): the peer sends no response.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Marks this request oneway.
    pub fn set_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// The request code of a request.
    pub fn request_code(&self) -> RequestCode {
        RequestCode::from_code(self.code)
    }

    /// The response code of a response.
    pub fn response_code(&self) -> ResponseCode {
        ResponseCode::from_code(self.code)
    }

    /// Decodes the typed header carried in the ext fields.
    pub fn header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::read(&self.ext_fields)
    }
}

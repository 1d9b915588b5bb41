//! The two header encodings: fastjson JSON (type 0) and the `ROCKETMQ` binary layout (type 1).
//!
//! Servers answer in their own configured encoding, not the request's, so a client must read both
//! (reference 1.4). We send JSON by default because every server reads it.

use bytes::{Buf, BufMut, BytesMut};
use serde_json::{Map, Value};

use super::code::LanguageCode;
use super::command::{ExtFields, RemotingCommand, SerializeType};
use super::types::Opaque;

/// Why a header could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderCodecError {
    #[error("JSON header is not valid JSON: {0}")]
    Json(String),
    #[error("JSON header field `{field}` {problem}")]
    JsonField { field: &'static str, problem: &'static str },
    #[error("binary header truncated while reading {field}")]
    Truncated { field: &'static str },
    #[error("binary header {field} has a negative length {len}")]
    NegativeLength { field: &'static str, len: i32 },
    #[error("binary header {field} is not valid UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("binary header has {0} trailing bytes after the ext fields")]
    TrailingBytes(usize),
    #[error("{field} does not fit the binary header ({value})")]
    TooLarge { field: &'static str, value: usize },
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
}

/// Encodes the header of `cmd` in its `serialize_type`.
pub fn encode_header(cmd: &RemotingCommand) -> Result<Vec<u8>, HeaderCodecError> {
    match cmd.serialize_type {
        SerializeType::Json => Ok(encode_json(cmd)),
        SerializeType::RocketMq => encode_binary(cmd),
    }
}

/// Decodes a header of the given type. The body is filled in by the frame decoder.
pub fn decode_header(kind: u8, bytes: &[u8]) -> Result<RemotingCommand, HeaderCodecError> {
    match kind {
        0 => decode_json(bytes),
        1 => decode_binary(bytes),
        other => Err(HeaderCodecError::UnknownSerializeType(other)),
    }
}

/// fastjson's layout: keys alphabetical, nulls left out, ext values as JSON strings, plus the
/// `serializeTypeCurrentRPC` marker without which the rocketmq-rust name server drops the
/// connection.
fn encode_json(cmd: &RemotingCommand) -> Vec<u8> {
    // serde_json's Map is ordered by key, which gives fastjson's alphabetical order.
    let mut obj = Map::new();
    obj.insert("code".into(), Value::from(cmd.code));
    let ext: Map<String, Value> =
        cmd.ext_fields.iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
    obj.insert("extFields".into(), Value::Object(ext));
    obj.insert("flag".into(), Value::from(cmd.flag));
    obj.insert("language".into(), Value::from(cmd.language.name()));
    obj.insert("opaque".into(), Value::from(cmd.opaque.0));
    if let Some(remark) = &cmd.remark {
        obj.insert("remark".into(), Value::from(remark.as_str()));
    }
    obj.insert("serializeTypeCurrentRPC".into(), Value::from("JSON"));
    obj.insert("version".into(), Value::from(cmd.version));
    // Serializing a Value into a Vec cannot fail.
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

fn decode_json(bytes: &[u8]) -> Result<RemotingCommand, HeaderCodecError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| HeaderCodecError::Json(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(HeaderCodecError::JsonField { field: "header", problem: "is not an object" });
    };
    let int = |field: &'static str, required: bool| -> Result<i32, HeaderCodecError> {
        match obj.get(field) {
            None | Some(Value::Null) if !required => Ok(0),
            None | Some(Value::Null) => {
                Err(HeaderCodecError::JsonField { field, problem: "is missing" })
            }
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or(HeaderCodecError::JsonField { field, problem: "is not a 32-bit integer" }),
        }
    };
    let language = match obj.get("language") {
        Some(Value::String(name)) => LanguageCode::from_name(name),
        // fastjson also reads an ordinal; one we do not know reads as OTHER, like an unknown name.
        Some(Value::Number(n)) => {
            match LanguageCode::from_byte(
                n.as_u64().and_then(|n| u8::try_from(n).ok()).unwrap_or(7),
            ) {
                LanguageCode::Unknown(_) => LanguageCode::Other,
                known => known,
            }
        }
        _ => LanguageCode::Other,
    };
    let remark = match obj.get("remark") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(HeaderCodecError::JsonField {
                field: "remark",
                problem: "is not a string",
            });
        }
    };
    let ext_fields = match obj.get("extFields") {
        None | Some(Value::Null) => ExtFields::new(),
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| match v {
                // Java never sends null values, but a lenient peer might: drop them as the
                // binary decoder drops empty strings.
                Value::Null => None,
                Value::String(s) => Some(Ok((k.clone(), s.clone()))),
                Value::Number(n) => Some(Ok((k.clone(), n.to_string()))),
                Value::Bool(b) => Some(Ok((k.clone(), b.to_string()))),
                _ => Some(Err(HeaderCodecError::JsonField {
                    field: "extFields",
                    problem: "has a value that is not a string, number or boolean",
                })),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(HeaderCodecError::JsonField {
                field: "extFields",
                problem: "is not an object",
            });
        }
    };
    Ok(RemotingCommand {
        code: int("code", true)?,
        language,
        version: int("version", false)?,
        opaque: Opaque(int("opaque", true)?),
        flag: int("flag", false)?,
        remark,
        ext_fields,
        body: bytes::Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

fn encode_binary(cmd: &RemotingCommand) -> Result<Vec<u8>, HeaderCodecError> {
    let mut out = BytesMut::new();
    // Java writes the code and version as shorts; every code we use fits.
    out.put_i16(i16::try_from(cmd.code).map_err(|_| HeaderCodecError::TooLarge {
        field: "code",
        value: usize::try_from(cmd.code.unsigned_abs()).unwrap_or(usize::MAX),
    })?);
    out.put_u8(cmd.language.byte());
    out.put_i16(i16::try_from(cmd.version).map_err(|_| HeaderCodecError::TooLarge {
        field: "version",
        value: usize::try_from(cmd.version.unsigned_abs()).unwrap_or(usize::MAX),
    })?);
    out.put_i32(cmd.opaque.0);
    out.put_i32(cmd.flag);
    let remark = cmd.remark.as_deref().unwrap_or("");
    out.put_i32(len_i32("remark", remark.len())?);
    out.put_slice(remark.as_bytes());
    let mut ext = BytesMut::new();
    for (k, v) in cmd.ext_fields.iter() {
        // Java skips null keys/values; an empty string would read back as null anyway.
        if k.is_empty() || v.is_empty() {
            continue;
        }
        ext.put_i16(
            i16::try_from(k.len())
                .map_err(|_| HeaderCodecError::TooLarge { field: "ext key", value: k.len() })?,
        );
        ext.put_slice(k.as_bytes());
        ext.put_i32(len_i32("ext value", v.len())?);
        ext.put_slice(v.as_bytes());
    }
    out.put_i32(len_i32("ext fields", ext.len())?);
    out.put_slice(&ext);
    Ok(out.to_vec())
}

fn len_i32(field: &'static str, len: usize) -> Result<i32, HeaderCodecError> {
    i32::try_from(len).map_err(|_| HeaderCodecError::TooLarge { field, value: len })
}

fn decode_binary(mut buf: &[u8]) -> Result<RemotingCommand, HeaderCodecError> {
    let code = i32::from(take_i16(&mut buf, "code")?);
    let language = LanguageCode::from_byte(take_u8(&mut buf, "language")?);
    let version = i32::from(take_i16(&mut buf, "version")?);
    let opaque = Opaque(take_i32(&mut buf, "opaque")?);
    let flag = take_i32(&mut buf, "flag")?;
    let remark_len = take_len(&mut buf, "remark length")?;
    let remark = take_str(&mut buf, remark_len, "remark")?;
    let ext_len = take_len(&mut buf, "ext fields length")?;
    if buf.len() < ext_len {
        return Err(HeaderCodecError::Truncated { field: "ext fields" });
    }
    let (mut ext_buf, rest) = buf.split_at(ext_len);
    if !rest.is_empty() {
        return Err(HeaderCodecError::TrailingBytes(rest.len()));
    }
    let mut ext_fields = ExtFields::new();
    while !ext_buf.is_empty() {
        let key_len = take_i16(&mut ext_buf, "ext key length")?;
        let key_len = usize::try_from(key_len).map_err(|_| HeaderCodecError::NegativeLength {
            field: "ext key",
            len: i32::from(key_len),
        })?;
        let key = take_str(&mut ext_buf, key_len, "ext key")?;
        let val_len = take_len(&mut ext_buf, "ext value length")?;
        let value = take_str(&mut ext_buf, val_len, "ext value")?;
        if let (Some(k), Some(v)) = (key, value) {
            ext_fields.insert(k, v);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: bytes::Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

fn take_u8(buf: &mut &[u8], field: &'static str) -> Result<u8, HeaderCodecError> {
    if buf.remaining() < 1 {
        return Err(HeaderCodecError::Truncated { field });
    }
    Ok(buf.get_u8())
}

fn take_i16(buf: &mut &[u8], field: &'static str) -> Result<i16, HeaderCodecError> {
    if buf.remaining() < 2 {
        return Err(HeaderCodecError::Truncated { field });
    }
    Ok(buf.get_i16())
}

fn take_i32(buf: &mut &[u8], field: &'static str) -> Result<i32, HeaderCodecError> {
    if buf.remaining() < 4 {
        return Err(HeaderCodecError::Truncated { field });
    }
    Ok(buf.get_i32())
}

fn take_len(buf: &mut &[u8], field: &'static str) -> Result<usize, HeaderCodecError> {
    let len = take_i32(buf, field)?;
    usize::try_from(len).map_err(|_| HeaderCodecError::NegativeLength { field, len })
}

/// Reads `len` bytes of UTF-8; a zero length reads back as null, as in Java.
fn take_str(
    buf: &mut &[u8],
    len: usize,
    field: &'static str,
) -> Result<Option<String>, HeaderCodecError> {
    if buf.len() < len {
        return Err(HeaderCodecError::Truncated { field });
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    if len == 0 {
        return Ok(None);
    }
    std::str::from_utf8(s)
        .map(|s| Some(s.to_owned()))
        .map_err(|_| HeaderCodecError::NotUtf8 { field })
}

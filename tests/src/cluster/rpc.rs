//! A tiny self-contained synchronous remoting client (JSON header with
//! `serializeTypeCurrentRPC=JSON`; reads JSON or ROCKETMQ binary headers) for the readiness probe
//! and smoke tests. The real client is the host crate's: this one exists so that the harness does
//! not depend on the code it tests.

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::net::ToSocketAddrs;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::Result;
use anyhow::bail;

const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Bound on each probe request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Remoting request codes used here.
pub mod code {
    /// SEND_MESSAGE (v1 header).
    pub const SEND_MESSAGE: i32 = 10;
    /// GET_MAX_OFFSET.
    pub const GET_MAX_OFFSET: i32 = 30;
    /// GET_BROKER_RUNTIME_INFO.
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    /// CHECK_CLIENT_CONFIG.
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    /// GET_ROUTEINFO_BY_TOPIC.
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// GET_BROKER_CLUSTER_INFO.
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// Response SUCCESS.
    pub const SUCCESS: i32 = 0;
    /// Response TOPIC_NOT_EXIST.
    pub const TOPIC_NOT_EXIST: i32 = 17;
}

/// A decoded response.
#[derive(Debug, Clone)]
pub struct RpcResponse {
    /// Response code (0 = SUCCESS).
    pub code: i32,
    /// `remark`, if any.
    pub remark: Option<String>,
    /// `extFields` (string values; non-string JSON values are rendered as JSON).
    pub ext_fields: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl RpcResponse {
    /// Errors unless the code is SUCCESS.
    pub fn success(self) -> Result<RpcResponse> {
        if self.code != code::SUCCESS {
            bail!("response code {} ({})", self.code, self.remark.as_deref().unwrap_or(""));
        }
        Ok(self)
    }

    /// The body parsed as JSON. Java's name server writes fastjson, whose map keys may be bare
    /// integers (`"brokerAddrs":{0:"127.0.0.1:10911"}`); those are quoted first.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&quote_bare_integer_keys(&self.body)).with_context(|| {
            format!("response body is not JSON: {}", String::from_utf8_lossy(&self.body))
        })
    }
}

/// Quotes object keys that fastjson writes as bare integers (`{0:"a",-1:"b"}` becomes
/// `{"0":"a","-1":"b"}`); everything else, strings included, is copied unchanged.
fn quote_bare_integer_keys(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < json.len() {
        let byte = json[i];
        out.push(byte);
        i += 1;
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b',' => {
                let start = i + json[i..].iter().take_while(|b| b.is_ascii_whitespace()).count();
                let digits_end = start
                    + json[start..]
                        .iter()
                        .enumerate()
                        .take_while(|(k, b)| b.is_ascii_digit() || (*k == 0 && **b == b'-'))
                        .count();
                let colon = digits_end
                    + json[digits_end..].iter().take_while(|b| b.is_ascii_whitespace()).count();
                if digits_end > start && json.get(colon) == Some(&b':') {
                    out.extend_from_slice(&json[i..start]);
                    out.push(b'"');
                    out.extend_from_slice(&json[start..digits_end]);
                    out.push(b'"');
                    i = digits_end;
                }
            }
            _ => {}
        }
    }
    out
}

/// Sends one request (fresh connection) and returns the response. Ext-field values are sent as
/// JSON strings, as the Java client does.
pub fn rpc(
    addr: &str,
    request_code: i32,
    ext_fields: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<RpcResponse> {
    static OPAQUE: AtomicI32 = AtomicI32::new(1);
    let opaque = OPAQUE.fetch_add(1, Ordering::Relaxed);
    let mut header = serde_json::json!({
        "code": request_code,
        "flag": 0,
        "language": "RUST",
        "opaque": opaque,
        "serializeTypeCurrentRPC": "JSON",
        "version": 401,
    });
    if !ext_fields.is_empty() {
        let ext: serde_json::Map<String, serde_json::Value> = ext_fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
            .collect();
        header["extFields"] = serde_json::Value::Object(ext);
    }
    let header = serde_json::to_vec(&header)?;
    let total = 4 + header.len() + body.len();
    let mut frame = Vec::with_capacity(4 + total);
    frame.extend_from_slice(&(total as i32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as i32).to_be_bytes()); // serialize type 0 = JSON
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);

    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    if !sock.ip().is_loopback() {
        bail!("refusing to connect to non-loopback address {sock}");
    }
    let mut stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true).ok();
    stream.write_all(&frame).with_context(|| format!("writing to {addr}"))?;

    let deadline = Instant::now() + timeout;
    loop {
        let response = read_frame(&mut stream).with_context(|| {
            format!("reading the response to request code {request_code} from {addr}")
        })?;
        if response.0 == opaque {
            return Ok(response.1);
        }
        // Not ours (e.g. a server-initiated request): skip it.
        if Instant::now() >= deadline {
            bail!("no response with opaque {opaque} from {addr}");
        }
    }
}

fn read_frame(stream: &mut TcpStream) -> Result<(i32, RpcResponse)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).context("connection closed before a response")?;
    let len = i32::from_be_bytes(len);
    if len < 4 || len as usize > MAX_FRAME {
        bail!("invalid frame length {len}");
    }
    let mut frame = vec![0u8; len as usize];
    stream.read_exact(&mut frame).context("truncated frame")?;
    let word = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
    let serialize_type = (word >> 24) as u8;
    let header_len = (word & 0x00FF_FFFF) as usize;
    if 4 + header_len > frame.len() {
        bail!("header length {header_len} exceeds frame length {len}");
    }
    let header = &frame[4..4 + header_len];
    let body = frame[4 + header_len..].to_vec();
    let (opaque, code, remark, ext_fields) = match serialize_type {
        0 => decode_json_header(header)?,
        1 => decode_binary_header(header)?,
        other => bail!("unknown serialize type {other}"),
    };
    Ok((opaque, RpcResponse { code, remark, ext_fields, body }))
}

type Header = (i32, i32, Option<String>, BTreeMap<String, String>);

fn decode_json_header(header: &[u8]) -> Result<Header> {
    let value: serde_json::Value = serde_json::from_slice(header).with_context(|| {
        format!("response header is not JSON: {}", String::from_utf8_lossy(header))
    })?;
    let int = |key: &str| value.get(key).and_then(serde_json::Value::as_i64).unwrap_or(0) as i32;
    let remark = value.get("remark").and_then(serde_json::Value::as_str).map(str::to_owned);
    let ext = value
        .get("extFields")
        .and_then(serde_json::Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((int("opaque"), int("code"), remark, ext))
}

/// The ROCKETMQ binary header: code i16, language u8, version i16, opaque i32, flag i32,
/// remark (i32 len + bytes), ext fields (i32 len + repeated [i16 klen, key, i32 vlen, value]).
fn decode_binary_header(header: &[u8]) -> Result<Header> {
    struct Cursor<'a>(&'a [u8]);
    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> Result<&[u8]> {
            if self.0.len() < n {
                bail!("truncated binary header");
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn i16(&mut self) -> Result<i16> {
            Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
        }
        fn i32(&mut self) -> Result<i32> {
            Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
        }
        fn string(&mut self, len: usize) -> Result<String> {
            Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
        }
    }
    let mut c = Cursor(header);
    let code = i32::from(c.i16()?);
    c.take(1)?; // language
    c.i16()?; // version
    let opaque = c.i32()?;
    c.i32()?; // flag
    let remark_len = c.i32()?;
    let remark = if remark_len > 0 { Some(c.string(remark_len as usize)?) } else { None };
    let ext_len = c.i32()?;
    let mut ext = BTreeMap::new();
    if ext_len > 0 {
        let mut fields = Cursor(c.take(ext_len as usize)?);
        while !fields.0.is_empty() {
            let klen = fields.i16()?;
            let key = fields.string(klen.max(0) as usize)?;
            let vlen = fields.i32()?;
            let value = fields.string(vlen.max(0) as usize)?;
            ext.insert(key, value);
        }
    }
    Ok((opaque, code, remark, ext))
}

/// GET_BROKER_CLUSTER_INFO from a name server: `{"brokerAddrTable": {...}, "clusterAddrTable":
/// {...}}`.
pub fn cluster_info(namesrv_addr: &str) -> Result<serde_json::Value> {
    rpc(namesrv_addr, code::GET_BROKER_CLUSTER_INFO, &[], &[], REQUEST_TIMEOUT)?.success()?.json()
}

/// GET_ROUTEINFO_BY_TOPIC from a name server; `None` when the topic does not exist.
pub fn topic_route(namesrv_addr: &str, topic: &str) -> Result<Option<serde_json::Value>> {
    let response =
        rpc(namesrv_addr, code::GET_ROUTEINFO_BY_TOPIC, &[("topic", topic)], &[], REQUEST_TIMEOUT)?;
    match response.code {
        code::TOPIC_NOT_EXIST => Ok(None),
        _ => Ok(Some(response.success()?.json()?)),
    }
}

/// True when `info` (a cluster info body) lists `broker_name` with master address `broker_addr`.
pub fn broker_listed(info: &serde_json::Value, broker_name: &str, broker_addr: &str) -> bool {
    broker_listed_as(info, broker_name, 0, broker_addr)
}

/// True when `info` (a cluster info body) lists `broker_name`'s broker `broker_id` (0 = master)
/// at `broker_addr`.
pub fn broker_listed_as(
    info: &serde_json::Value,
    broker_name: &str,
    broker_id: u64,
    broker_addr: &str,
) -> bool {
    info.get("brokerAddrTable")
        .and_then(|table| table.get(broker_name))
        .and_then(|broker| broker.get("brokerAddrs"))
        .and_then(|addrs| addrs.get(broker_id.to_string()))
        .and_then(serde_json::Value::as_str)
        == Some(broker_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_integer_keys_are_quoted() {
        let cases: &[(&str, &str)] = &[
            (r#"{"brokerAddrs":{0:"a:1",1:"b:2"}}"#, r#"{"brokerAddrs":{"0":"a:1","1":"b:2"}}"#),
            (r#"{ -1 : "x"}"#, r#"{ "-1" : "x"}"#),
            (r#"{"list":[1,2],"s":"{0:1}"}"#, r#"{"list":[1,2],"s":"{0:1}"}"#),
            (r#"{"q\"{0:":1}"#, r#"{"q\"{0:":1}"#),
        ];
        for (input, expected) in cases {
            let got = quote_bare_integer_keys(input.as_bytes());
            assert_eq!(String::from_utf8(got).unwrap(), *expected, "input {input}");
        }
    }

    #[test]
    fn binary_header_decodes() {
        let mut h = Vec::new();
        h.extend_from_slice(&17i16.to_be_bytes());
        h.push(0);
        h.extend_from_slice(&401i16.to_be_bytes());
        h.extend_from_slice(&7i32.to_be_bytes());
        h.extend_from_slice(&1i32.to_be_bytes());
        h.extend_from_slice(&2i32.to_be_bytes());
        h.extend_from_slice(b"no");
        let mut ext = Vec::new();
        ext.extend_from_slice(&1i16.to_be_bytes());
        ext.extend_from_slice(b"k");
        ext.extend_from_slice(&1i32.to_be_bytes());
        ext.extend_from_slice(b"v");
        h.extend_from_slice(&(ext.len() as i32).to_be_bytes());
        h.extend_from_slice(&ext);
        let (opaque, code, remark, ext) = decode_binary_header(&h).unwrap();
        assert_eq!((opaque, code, remark.as_deref()), (7, 17, Some("no")));
        assert_eq!(ext.get("k").map(String::as_str), Some("v"));
    }
}

//! fastjson's dialect of JSON: a lenient reader and a writer that speaks it back.
//!
//! # Reading
//! [`parse_lenient`] is a small recursive-descent parser producing a [`serde_json::Value`]. On
//! standard JSON it gives what `serde_json::from_slice::<Value>` gives (numbers are converted by
//! serde_json itself, so integers stay `u64`/`i64` — never `f64`, even above 2^53), except that
//! floats are correctly rounded: serde_json without its `float_roundtrip` feature may land one
//! unit in the last place off, so a float we wrote would not read back as itself. On top of that it accepts what fastjson writes (reference
//! 1.8), turning each non-string object key into a string:
//!
//! | key as written                     | key in the `Value`                                |
//! |------------------------------------|---------------------------------------------------|
//! | `"abc"`                            | `abc`                                             |
//! | `0`, `-1`, `1.5` (bare number)     | the literal text: `0`, `-1`, `1.5`                |
//! | `{"topic":"t",…}` (bare object)    | its [canonical text](canonical_text), e.g.         |
//! |                                    | `{"brokerName":"b","queueId":0,"topic":"t"}`      |
//! | `[1, 2]` (bare array)              | its canonical text: `[1,2]`                       |
//! | `abc`, `true` (bare identifier)    | the identifier: `abc`, `true`                     |
//!
//! so a caller re-parses an object key (see [`super::mq_map`]). It is also lenient where
//! Java strings can be ill-formed: a lone UTF-16 surrogate escape becomes U+FFFD, and raw control
//! characters inside strings are kept. It refuses to nest deeper than [`MAX_DEPTH`], reports the
//! byte position of every error, and never panics.
//!
//! # Writing
//! [`to_fastjson`] writes compact JSON with object keys in byte order (fastjson writes bean fields
//! alphabetically), and writes a key that is the canonical text of an object as a bare object —
//! the exact inverse of the reader's key mapping. That is how `Map<MessageQueue, _>` must look for
//! Java's fastjson to read it back (`ConsumerRunningInfo.mqTable`, the local offsets file).
//! [`to_json`] is plain serde_json, strict JSON, which fastjson also reads.

use std::any::type_name;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use super::BodyError;

/// The deepest nesting of arrays and objects [`parse_lenient`] accepts (serde_json's own limit).
/// RocketMQ bodies nest four or five levels; the cap only stops a hostile body from exhausting
/// the stack.
pub const MAX_DEPTH: usize = 128;

/// Reads standard JSON or fastjson's dialect of it (see the module docs) into a `Value`.
pub fn parse_lenient(input: &[u8]) -> Result<Value, BodyError> {
    let mut parser = Parser { input, pos: 0, depth: 0 };
    // A UTF-8 byte-order mark is never sent by Java, but costs nothing to tolerate in a file.
    if input.starts_with(b"\xEF\xBB\xBF") {
        parser.pos = 3;
    }
    parser.skip_ws();
    let value = parser.value()?;
    parser.skip_ws();
    if parser.pos != input.len() {
        return Err(parser.expected("end of input after the JSON value"));
    }
    Ok(value)
}

/// Reads a body into `T`: [`parse_lenient`], then serde. Unknown fields are ignored by the body
/// types, as fastjson does.
pub fn from_fastjson<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let value = parse_lenient(body)?;
    serde_json::from_value(value)
        .map_err(|source| BodyError::Shape { target: type_name::<T>(), source })
}

/// Writes `value` as strict, compact JSON (serde_json, fields in declaration order).
///
/// A `Map<MessageQueue, _>` comes out with its keys as JSON strings holding the object text,
/// which our reader accepts; prefer [`to_fastjson`] for anything a Java tool reads.
///
/// # Panics
/// Only if `T`'s `Serialize` fails (a map with keys that are not strings or numbers, or a
/// custom error). None of the body types in this module can.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => panic!("{} cannot be written as JSON: {e}", type_name::<T>()),
    }
}

/// Writes `value` the way fastjson would: compact, keys in byte order, and object-text keys
/// (a `Map<MessageQueue, _>`) as bare objects. See the module docs.
///
/// # Panics
/// Only if `T`'s `Serialize` fails; see [`to_json`].
pub fn to_fastjson<T: Serialize + ?Sized>(value: &T) -> Bytes {
    match serde_json::to_value(value) {
        Ok(value) => Bytes::from(value_to_fastjson(&value)),
        Err(e) => panic!("{} cannot be written as JSON: {e}", type_name::<T>()),
    }
}

/// Writes a `Value` the way [`to_fastjson`] does.
pub fn value_to_fastjson(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value, KeyStyle::BareObjects);
    out
}

/// The canonical text of a value: compact, every key quoted, object keys in byte order.
///
/// This is the string [`parse_lenient`] uses for a bare object or array key, and the only form
/// [`to_fastjson`] writes back as a bare key, so the two are exact inverses.
pub fn canonical_text(value: &Value) -> String {
    let mut out = Vec::new();
    write_value(&mut out, value, KeyStyle::Quoted);
    // Only `str`s and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------
// Reader

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn rest(&self) -> &[u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn syntax(pos: usize, problem: impl Into<String>) -> BodyError {
        BodyError::Syntax { pos, problem: problem.into() }
    }

    fn expected(&self, what: &str) -> BodyError {
        Self::syntax(self.pos, format!("expected {what}, found {}", describe(self.peek())))
    }

    fn value(&mut self) -> Result<Value, BodyError> {
        match self.peek() {
            Some(b'{') => self.object().map(Value::Object),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                let text = self.number_text()?;
                let number = serde_json::from_str::<Number>(text).map_err(|e| {
                    Self::syntax(start, format!("number `{text}` cannot be represented: {e}"))
                })?;
                Ok(Value::Number(correctly_rounded(number, text)))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            _ => Err(self.expected("a JSON value")),
        }
    }

    fn enter(&mut self) -> Result<(), BodyError> {
        if self.depth >= MAX_DEPTH {
            return Err(BodyError::TooDeep { pos: self.pos, max: MAX_DEPTH });
        }
        self.depth += 1;
        Ok(())
    }

    fn literal(&mut self, word: &'static str, value: Value) -> Result<Value, BodyError> {
        if self.rest().starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.expected("a JSON value"))
        }
    }

    /// Called on `{`.
    fn object(&mut self) -> Result<Map<String, Value>, BodyError> {
        self.enter()?;
        self.pos += 1;
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(map);
        }
        loop {
            self.skip_ws();
            let key = self.key()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.expected("`:` after an object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value()?;
            map.insert(key, value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.expected("`,` or `}` in an object")),
            }
        }
        self.depth -= 1;
        Ok(map)
    }

    /// An object key in any form fastjson writes, as a string (see the module docs).
    fn key(&mut self) -> Result<String, BodyError> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{') => {
                let object = Value::Object(self.object()?);
                Ok(canonical_text(&object))
            }
            Some(b'[') => {
                let array = self.array()?;
                Ok(canonical_text(&array))
            }
            Some(b'-' | b'0'..=b'9') => self.number_text().map(str::to_owned),
            Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'$' => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$') {
                        break;
                    }
                    self.pos += 1;
                }
                Ok(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
            }
            _ => Err(self.expected("an object key")),
        }
    }

    /// Called on `[`.
    fn array(&mut self) -> Result<Value, BodyError> {
        self.enter()?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.expected("`,` or `]` in an array")),
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    /// Checks JSON's number grammar and returns the token's text:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number_text(&mut self) -> Result<&str, BodyError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.expected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit after the decimal point"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit in the exponent"));
            }
            self.digits();
        }
        // The grammar above only admits ASCII.
        std::str::from_utf8(&self.input[start..self.pos])
            .map_err(|_| Self::syntax(start, "number is not ASCII"))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// Called on `"`.
    fn string(&mut self) -> Result<String, BodyError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            match self.peek() {
                None => {
                    return Err(Self::syntax(
                        self.pos,
                        format!("unterminated string (opened at byte {open})"),
                    ));
                }
                Some(b'"') => {
                    self.push_run(&mut out, run)?;
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.push_run(&mut out, run)?;
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Appends the raw bytes `run..pos` of a string, which must be UTF-8.
    fn push_run(&self, out: &mut String, run: usize) -> Result<(), BodyError> {
        match std::str::from_utf8(&self.input[run..self.pos]) {
            Ok(text) => {
                out.push_str(text);
                Ok(())
            }
            Err(e) => Err(Self::syntax(run + e.valid_up_to(), "invalid UTF-8 in a string")),
        }
    }

    /// Called on `\`.
    fn escape(&mut self, out: &mut String) -> Result<(), BodyError> {
        let at = self.pos;
        self.pos += 1;
        let Some(letter) = self.peek() else {
            return Err(self.expected("an escape character"));
        };
        self.pos += 1;
        let ch = match letter {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape()?,
            other => {
                return Err(Self::syntax(
                    at,
                    format!("invalid escape `\\{}` in a string", describe(Some(other))),
                ));
            }
        };
        out.push(ch);
        Ok(())
    }

    /// After `\u`: one code point, pairing surrogates. A lone surrogate (legal in a Java
    /// string, not in Rust) becomes U+FFFD instead of failing the whole body.
    fn unicode_escape(&mut self) -> Result<char, BodyError> {
        let unit = self.hex4()?;
        match unit {
            0xD800..=0xDBFF => {
                if self.rest().starts_with(b"\\u") {
                    let save = self.pos;
                    self.pos += 2;
                    let low = self.hex4()?;
                    if (0xDC00..=0xDFFF).contains(&low) {
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        return Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    // Not a low surrogate: leave it to be read as its own escape.
                    self.pos = save;
                }
                Ok(char::REPLACEMENT_CHARACTER)
            }
            _ => Ok(char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER)),
        }
    }

    fn hex4(&mut self) -> Result<u32, BodyError> {
        let mut unit = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.expected("a hex digit in a \\u escape")),
            };
            unit = unit * 16 + u32::from(digit);
            self.pos += 1;
        }
        Ok(unit)
    }
}

/// `number` as serde_json read it from `text`, with a float re-read by the standard library,
/// which rounds correctly (serde_json's default parser may be one unit in the last place off;
/// its `float_roundtrip` feature would fix that for the whole build, at the cost of rebuilding
/// everything that depends on serde_json). Integers are left as serde_json made them.
fn correctly_rounded(number: Number, text: &str) -> Number {
    if !number.is_f64() {
        return number;
    }
    text.parse::<f64>().ok().and_then(Number::from_f64).unwrap_or(number)
}

/// How a byte looks in an error message.
fn describe(byte: Option<u8>) -> String {
    match byte {
        None => "end of input".to_owned(),
        Some(b) if b.is_ascii_graphic() => format!("`{}`", char::from(b)),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Writer

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyStyle {
    /// Every key a JSON string (standard JSON).
    Quoted,
    /// Keys that are canonical object texts written as bare objects (fastjson).
    BareObjects,
}

fn write_value(out: &mut Vec<u8>, value: &Value, style: KeyStyle) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // serde_json's own number formatting, so integers stay integers.
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, style);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the Map type: serde_json's `preserve_order`
            // feature, if anything in the build enables it, keeps insertion order instead.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match bare_object_key(key, style) {
                    Some(object) => write_value(out, &object, style),
                    None => write_string(out, key),
                }
                out.push(b':');
                write_value(out, item, style);
            }
            out.push(b'}');
        }
    }
}

/// The object a key stands for, when it is to be written bare: only a key that is exactly the
/// canonical text of an object, so that reading it back yields the same key string.
fn bare_object_key(key: &str, style: KeyStyle) -> Option<Value> {
    if style != KeyStyle::BareObjects || !key.starts_with('{') {
        return None;
    }
    let value = parse_lenient(key.as_bytes()).ok()?;
    (value.is_object() && canonical_text(&value) == key).then_some(value)
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escaped.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escaped);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        parse_lenient(text.as_bytes()).unwrap()
    }

    fn parse_err(text: &[u8]) -> BodyError {
        parse_lenient(text).unwrap_err()
    }

    #[test]
    fn standard_json_matches_serde_json() {
        let text = r#" {"a": [1, -2, 3.5, 1e3, -0, 0.0, true, false, null], "b": {"c": "d\u00e9\n\"\\\/"},
            "e": "\ud83d\ude00", "f": 18446744073709551615, "g": -9223372036854775808, "h": ""} "#;
        assert_eq!(parse(text), serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn bare_numeric_keys_become_their_text() {
        let v = parse(r#"{0:"10.0.0.1:10911",1:"10.0.0.2:10911",-1:"x",1.50:"y"}"#);
        assert_eq!(
            v,
            json!({"0": "10.0.0.1:10911", "1": "10.0.0.2:10911", "-1": "x", "1.50": "y"})
        );
    }

    #[test]
    fn bare_object_keys_become_canonical_text() {
        // Field order and whitespace in the key do not matter: the text is canonical.
        let v = parse(r#"{ { "topic":"t", "queueId":0, "brokerName":"b" } : 42 }"#);
        assert_eq!(v, json!({r#"{"brokerName":"b","queueId":0,"topic":"t"}"#: 42}));
        // Nested: a key object that itself has a bare key.
        let v = parse(r#"{{0:{"a":1}}:true}"#);
        assert_eq!(v, json!({r#"{"0":{"a":1}}"#: true}));
    }

    #[test]
    fn bare_identifier_and_array_keys() {
        assert_eq!(
            parse(r#"{abc_1$:1,true:2,[1, 2]:3}"#),
            json!({"abc_1$": 1, "true": 2, "[1,2]": 3})
        );
    }

    #[test]
    fn integers_above_2_pow_53_stay_integers() {
        let v = parse(r#"{"a":9007199254740993,"b":-9007199254740993,"c":9223372036854775807}"#);
        assert_eq!(v["a"].as_u64(), Some(9_007_199_254_740_993));
        assert_eq!(v["b"].as_i64(), Some(-9_007_199_254_740_993));
        assert_eq!(v["c"].as_i64(), Some(i64::MAX));
        assert!(!v["a"].is_f64());
        // And they are written back unchanged.
        assert_eq!(
            &value_to_fastjson(&v)[..],
            br#"{"a":9007199254740993,"b":-9007199254740993,"c":9223372036854775807}"#
        );
    }

    #[test]
    fn lone_surrogates_are_replaced_not_fatal() {
        assert_eq!(parse(r#""a\ud800b""#), json!("a\u{FFFD}b"));
        assert_eq!(parse(r#""\udc00""#), json!("\u{FFFD}"));
        assert_eq!(parse(r#""\ud800\u0041""#), json!("\u{FFFD}A"));
    }

    #[test]
    fn raw_control_characters_in_strings_are_kept() {
        assert_eq!(parse_lenient(b"\"a\tb\nc\x01\"").unwrap(), json!("a\tb\nc\u{1}"));
    }

    /// Found by the `route_data` fuzz target (an opaque `topicQueueMappingByBroker` holding
    /// `2184467440737099551615`): serde_json reads that as 2.1844674407370992e21, writes it so,
    /// and reads the text back as 2.1844674407370994e21, so decode(encode(route)) was not the
    /// route. The `running_info` target found the same in a `pullRT`. Every float must read back
    /// as exactly the float we wrote.
    #[test]
    fn floats_are_correctly_rounded_and_read_back_as_written() {
        let cases: &[(&str, f64)] = &[
            ("2184467440737099551615", 2_184_467_440_737_099_551_615_f64),
            ("2.1844674407370992e21", 2.184_467_440_737_099_2e21),
            ("218446744073709551615", 218_446_744_073_709_551_615_f64),
            ("0.1", 0.1),
            ("-0", -0.0),
            ("1e308", 1e308),
            // The `json_lenient` target's: a subnormal, where serde_json gives 6.1844644770371e-309.
            ("6184464477037095516157e-330", 6.184_464_477_037_093e-309),
        ];
        for &(text, want) in cases {
            let got = parse(text);
            assert_eq!(got.as_f64(), Some(want), "{text}");
            assert!(got.is_f64(), "{text}");
            let written = value_to_fastjson(&got);
            assert_eq!(parse_lenient(&written).unwrap(), got, "{text} via {written:?}");
        }
        // The fuzzer's input, through the body that found it.
        let body = br#"{"topicQueueMappingByBroker":[{"brokecrms":2184467440737099551615}]}"#;
        let route = crate::protocol::body::TopicRouteData::decode(body).unwrap();
        assert_eq!(crate::protocol::body::TopicRouteData::decode(&route.encode()).unwrap(), route);
        // And the `running_info` target's, a rate in the status table.
        let body = br#"{"statusTable":{"T":{"pullRT":2184467440737095551.165}}}"#;
        let info = crate::protocol::body::ConsumerRunningInfo::decode(body).unwrap();
        assert_eq!(info.status_table["T"].pull_rt, 2_184_467_440_737_095_551.165);
        let back = crate::protocol::body::ConsumerRunningInfo::decode(&info.encode()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(parse_lenient(b"\xEF\xBB\xBF{\"a\":1}").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn errors_name_the_byte_position() {
        let err = parse_err(br#"{"a" 1}"#);
        assert!(matches!(err, BodyError::Syntax { pos: 5, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "malformed JSON body at byte 5: expected `:` after an object key, found `1`"
        );
        let err = parse_err(br#"[1,2"#);
        assert_eq!(
            err.to_string(),
            "malformed JSON body at byte 4: expected `,` or `]` in an array, found end of input"
        );
        let err = parse_err(br#"{"a":1}x"#);
        assert!(matches!(err, BodyError::Syntax { pos: 7, .. }), "{err}");
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"{",
            b"[",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12g4\"",
            b"tru",
            b"nul",
            b"+1",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"1e+",
            b"-",
            b"--1",
            b"1e400",
            b"{,}",
            b"{:1}",
            b"{\"a\":1 \"b\":2}",
            b"\"\xff\"",
            b"\"\xe2\x82\"",
            b"{{\"a\":1}}",
            b"{{\"a\":1}:}",
            b"[1]]",
            b"}",
            b"\"\\",
            b"\"\\u",
            b"\"\\ud800\\u",
        ];
        for case in cases {
            assert!(parse_lenient(case).is_err(), "accepted {:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn nesting_is_capped() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_lenient(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            parse_err(deep.as_bytes()),
            BodyError::TooDeep { pos: 128, max: MAX_DEPTH }
        ));
        // Far too deep, and unterminated: an error, not a stack overflow.
        assert!(matches!(parse_err("[".repeat(100_000).as_bytes()), BodyError::TooDeep { .. }));
        assert!(matches!(
            parse_err("{\"a\":".repeat(100_000).as_bytes()),
            BodyError::TooDeep { .. }
        ));
        // Object keys count too.
        assert!(matches!(parse_err("{".repeat(100_000).as_bytes()), BodyError::TooDeep { .. }));
    }

    #[test]
    fn fastjson_writer_sorts_keys_and_bares_object_keys() {
        let v = json!({
            "z": 1,
            "a": {r#"{"brokerName":"b","queueId":0,"topic":"t"}"#: 42, "0": "x"},
            // Not canonical (space, order): stays a quoted string.
            "m": {r#"{"topic":"t"}"#: 1, r#"{ "a":1}"#: 2, "{not json": 3},
        });
        let text = String::from_utf8(value_to_fastjson(&v)).unwrap();
        assert_eq!(
            text,
            r#"{"a":{"0":"x",{"brokerName":"b","queueId":0,"topic":"t"}:42},"m":{"{ \"a\":1}":2,{"topic":"t"}:1,"{not json":3},"z":1}"#
        );
        assert_eq!(parse(&text), v);
    }

    #[test]
    fn strings_are_escaped() {
        let v = json!("q\"b\\n\n\r\t\u{8}\u{c}\u{1}\u{1f}é😀");
        let text = value_to_fastjson(&v);
        assert_eq!(std::str::from_utf8(&text).unwrap(), r#""q\"b\\n\n\r\t\b\f\u0001\u001fé😀""#);
        assert_eq!(serde_json::from_slice::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn typed_decode_reports_the_target() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            x: u8,
        }
        let err = from_fastjson::<Needs>(br#"{"y":1}"#).unwrap_err();
        assert!(matches!(err, BodyError::Shape { .. }));
        assert!(
            err.to_string().contains("Needs") && err.to_string().contains("missing field `x`"),
            "{err}"
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[{}\"\\\\a-z0-9:, ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner.clone(), 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                prop::collection::btree_map("[{}\"a-z0-9:,]{0,10}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parses_standard_json_like_serde_json(v in arb_value()) {
            // serde_json writes the shortest text that rounds back to each float, so a correct
            // reader gets exactly `v` back.
            let compact = serde_json::to_string(&v).unwrap();
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            prop_assert_eq!(&parse_lenient(compact.as_bytes()).unwrap(), &v);
            prop_assert_eq!(&parse_lenient(pretty.as_bytes()).unwrap(), &v);
        }

        #[test]
        fn fastjson_output_reads_back_unchanged(v in arb_value()) {
            let text = value_to_fastjson(&v);
            prop_assert_eq!(parse_lenient(&text).unwrap(), v);
        }

        #[test]
        fn canonical_text_is_standard_json(v in arb_value()) {
            let text = canonical_text(&v);
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "not standard JSON: {}", text);
            prop_assert_eq!(parse_lenient(text.as_bytes()).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_lenient(&bytes);
        }

        #[test]
        fn json_like_noise_never_panics(text in "[{}\\[\\]\":,0-9a-z\\\\ .eE+-]{0,64}") {
            if let Ok(v) = parse_lenient(text.as_bytes()) {
                // Whatever was accepted can be written and read back unchanged.
                prop_assert_eq!(parse_lenient(&value_to_fastjson(&v)).unwrap(), v);
            }
        }
    }
}

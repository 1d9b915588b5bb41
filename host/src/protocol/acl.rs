//! ACL 1.0 request signing (reference 5.2), which 5.x's ACL 2.0 also accepts.
//!
//! The broker recomputes the signature over every ext field it receives except `Signature`, so
//! [`sign`] must be the last thing done to a request's ext fields before it is sent. Responses
//! we send to broker-initiated requests are not signed.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::ResponseCode;

/// Ext field carrying the access key.
pub const ACCESS_KEY: &str = "AccessKey";
/// Ext field carrying the signature; the only field left out of the signed content.
pub const SIGNATURE: &str = "Signature";
/// Ext field carrying the optional session token.
pub const SECURITY_TOKEN: &str = "SecurityToken";

/// An access key pair, plus the token of a temporary credential if there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct AclCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub security_token: Option<String>,
}

impl AclCredentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self { access_key: access_key.into(), secret_key: secret_key.into(), security_token: None }
    }
}

impl fmt::Debug for AclCredentials {
    /// Never prints the secret key or the token: credentials end up in logged configs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Signs a request in place: adds `AccessKey` (and `SecurityToken` when configured), then
/// `Signature` = Base64(HMAC-SHA1(secret key, [`content_to_sign`])). Any `Signature` already
/// present is replaced, so re-signing a retried request is safe.
pub fn sign(ext: &mut BTreeMap<String, String>, body: &[u8], creds: &AclCredentials) {
    ext.remove(SIGNATURE);
    ext.insert(ACCESS_KEY.to_owned(), creds.access_key.clone());
    if let Some(token) = &creds.security_token {
        ext.insert(SECURITY_TOKEN.to_owned(), token.clone());
    }
    let content = content_to_sign(ext, body);
    ext.insert(SIGNATURE.to_owned(), signature(creds.secret_key.as_bytes(), &content));
}

/// The bytes that get signed: the values (UTF-8, no keys, no separators) of every field except
/// `Signature`, in Java `String` key order, then the body.
///
/// Java orders keys by UTF-16 code units. That equals the `BTreeMap`'s byte order for every
/// key RocketMQ uses (ASCII), but is applied explicitly so the two cannot drift.
pub fn content_to_sign(ext: &BTreeMap<String, String>, body: &[u8]) -> Vec<u8> {
    let mut fields: Vec<(&String, &String)> =
        ext.iter().filter(|(key, _)| key.as_str() != SIGNATURE).collect();
    fields.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let len = fields.iter().map(|(_, v)| v.len()).sum::<usize>() + body.len();
    let mut content = Vec::with_capacity(len);
    for (_, value) in fields {
        content.extend_from_slice(value.as_bytes());
    }
    content.extend_from_slice(body);
    content
}

/// Base64 (standard alphabet, padded) of HMAC-SHA1(`secret_key`, `content`).
pub fn signature(secret_key: &[u8], content: &[u8]) -> String {
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret_key) {
        Ok(mac) => mac,
        // HMAC hashes or pads a key of any length; `new_from_slice` cannot fail for it.
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(content);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Rewrites the remark of a response that refuses a request for authentication reasons so that
/// it names what is at fault: the access key the request was signed with (a broker's own remark
/// does not always: 5.3 answers a wrong secret with NO_PERMISSION "check signature failed."), or
/// the missing credentials when the request was not signed at all. `None` when the response is
/// not an authentication refusal.
///
/// Recognised: NO_PERMISSION (16) from a 5.x broker's authentication pipeline ("check signature
/// failed.", "User:x is not found.", "username cannot be null.", "User:x is disabled."), and
/// SYSTEM_ERROR (1) carrying a 4.9 broker's `AclException` ("Check signature failed for
/// accessKey=x", "No acl config for x", "No accessKey is configured").
pub fn refusal_remark(
    code: ResponseCode,
    remark: Option<&str>,
    credentials: Option<&AclCredentials>,
) -> Option<String> {
    let remark = remark.unwrap_or_default();
    let lower = remark.to_ascii_lowercase();
    let auth = match code {
        ResponseCode::NoPermission => {
            lower.contains("signature")
                || lower.contains("is not found")
                || lower.contains("username cannot be null")
                || lower.contains("is disabled")
                || lower.contains("accesskey")
        }
        ResponseCode::SystemError => lower.contains("aclexception"),
        _ => false,
    };
    if !auth {
        return None;
    }
    Some(match credentials {
        Some(creds) => format!(
            "authentication failed for access key `{}` (check the access key and its secret): {remark}",
            creds.access_key
        ),
        None => format!(
            "the broker requires authentication and the request carried no credentials \
             (configure an access key and secret): {remark}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unbase64(text: &str) -> Vec<u8> {
        STANDARD.decode(text).unwrap()
    }

    #[test]
    fn rfc_2202_hmac_sha1_vectors() {
        // Test case 1.
        let sig = signature(&[0x0b; 20], b"Hi There");
        assert_eq!(hex(&unbase64(&sig)), "b617318655057264e28bc0b6fb378c8ef146be00");
        assert_eq!(sig, "thcxhlUFcmTii8C2+zeMjvFGvgA=");
        // Test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&unbase64(&sig)), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        assert_eq!(sig, "7/zfauXrL6LSdBbV8YTfnCWafHk=");
        // Test case 6: a key longer than the block size is hashed first.
        let sig = signature(&[0xaa; 80], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&unbase64(&sig)), "aa4ae5e15272d00e95705637ce8a3b55ed402112");
    }

    /// A PULL_MESSAGE header as the host sends it.
    fn pull_ext() -> BTreeMap<String, String> {
        [
            ("consumerGroup", "G"),
            ("topic", "T"),
            ("queueId", "0"),
            ("queueOffset", "128"),
            ("maxMsgNums", "32"),
            ("sysFlag", "3"),
            ("commitOffset", "100"),
            ("suspendTimeoutMillis", "15000"),
            ("subscription", "TagA || TagB"),
            ("subVersion", "1700000000000"),
            ("expressionType", "TAG"),
            ("bname", "broker-a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn creds() -> AclCredentials {
        AclCredentials {
            access_key: "rocketmq2".into(),
            secret_key: "12345678".into(),
            security_token: Some("tok-1".into()),
        }
    }

    #[test]
    fn signs_a_pull_request_by_hand_assembled_content() {
        let mut ext = pull_ext();
        sign(&mut ext, b"", &creds());
        // Key order: AccessKey, SecurityToken, bname, commitOffset, consumerGroup,
        // expressionType, maxMsgNums, queueId, queueOffset, subVersion, subscription
        // ("V" < "s"), suspendTimeoutMillis, sysFlag, topic. Values only, no separators.
        let by_hand = [
            "rocketmq2",
            "tok-1",
            "broker-a",
            "100",
            "G",
            "TAG",
            "32",
            "0",
            "128",
            "1700000000000",
            "TagA || TagB",
            "15000",
            "3",
            "T",
        ]
        .concat();
        assert_eq!(content_to_sign(&ext, b""), by_hand.as_bytes());
        assert_eq!(ext[ACCESS_KEY], "rocketmq2");
        assert_eq!(ext[SECURITY_TOKEN], "tok-1");
        // Expected value computed outside this code (Python hmac + base64 over `by_hand`).
        assert_eq!(ext[SIGNATURE], "zSW+DWsLkYoMPqY8PwJumQQi0EI=");
        assert_eq!(ext[SIGNATURE], signature(b"12345678", by_hand.as_bytes()));
    }

    #[test]
    fn body_is_appended_after_the_values() {
        let mut ext = pull_ext();
        sign(&mut ext, br#"{"x":1}"#, &creds());
        assert!(content_to_sign(&ext, br#"{"x":1}"#).ends_with(br#"T{"x":1}"#));
        // Computed outside this code over the hand-assembled content plus the body.
        assert_eq!(ext[SIGNATURE], "cQtLdKq6i8myzZTY0LL1mFVFNn8=");
    }

    #[test]
    fn signature_field_is_excluded_and_replaced() {
        let mut ext = pull_ext();
        sign(&mut ext, b"", &creds());
        let first = ext[SIGNATURE].clone();
        // Content never contains the signature itself ...
        let content = content_to_sign(&ext, b"");
        assert!(!content.windows(first.len()).any(|w| w == first.as_bytes()));
        // ... so signing again (e.g. a retry) yields the same signature.
        sign(&mut ext, b"", &creds());
        assert_eq!(ext[SIGNATURE], first);
        // A field added after signing would change it: sign last.
        ext.insert("zz".into(), "late".into());
        sign(&mut ext, b"", &creds());
        assert_ne!(ext[SIGNATURE], first);
    }

    #[test]
    fn without_a_token_no_token_field() {
        let mut ext = BTreeMap::from([("topic".to_owned(), "T".to_owned())]);
        let creds = AclCredentials::new("ak", "sk");
        sign(&mut ext, b"", &creds);
        assert!(!ext.contains_key(SECURITY_TOKEN));
        assert_eq!(content_to_sign(&ext, b""), b"akT");
        assert_eq!(ext[SIGNATURE], signature(b"sk", b"akT"));
        assert_eq!(ext.len(), 3);
    }

    #[test]
    fn keys_sort_in_java_string_order() {
        // Upper case before lower case (byte/UTF-16 order, not case-insensitive).
        let ext = BTreeMap::from([
            ("b".to_owned(), "2".to_owned()),
            ("B".to_owned(), "1".to_owned()),
            ("a".to_owned(), "3".to_owned()),
            ("Signature".to_owned(), "ignored".to_owned()),
        ]);
        assert_eq!(content_to_sign(&ext, b"!"), b"132!");
        // Outside the BMP, UTF-16 order differs from UTF-8 byte order: U+10000 (surrogates
        // 0xD800..) sorts before U+FFFF in Java.
        let ext = BTreeMap::from([
            ("\u{FFFF}".to_owned(), "bmp".to_owned()),
            ("\u{10000}".to_owned(), "astral".to_owned()),
        ]);
        assert_eq!(content_to_sign(&ext, b""), b"astralbmp");
    }

    #[test]
    fn debug_redacts_secrets() {
        let text = format!("{:?}", creds());
        assert!(text.contains("rocketmq2"));
        assert!(!text.contains("12345678") && !text.contains("tok-1"), "{text}");
    }

    #[test]
    fn authentication_refusals_name_the_access_key() {
        let creds = AclCredentials::new("rmqwasm", "wrong");
        let cases: &[(i32, &str, bool)] = &[
            (16, "check signature failed.", true),
            (16, "User:nobody is not found.", true),
            (16, "username cannot be null.", true),
            (
                1,
                "org.apache.rocketmq.acl.common.AclException: Check signature failed for accessKey=rmqwasm",
                true,
            ),
            (1, "org.apache.rocketmq.acl.common.AclException: No acl config for nobody", true),
            (16, "the topic[T] sending is forbidden", false),
            (1, "store full", false),
            (17, "check signature failed.", false),
        ];
        for &(code, remark, refused) in cases {
            let named = refusal_remark(ResponseCode::from_code(code), Some(remark), Some(&creds));
            assert_eq!(named.is_some(), refused, "{code} {remark}");
            if let Some(named) = named {
                assert!(named.contains("`rmqwasm`") && named.contains(remark), "{named}");
                assert!(!named.contains("wrong"), "never the secret: {named}");
            }
        }
        let unsigned =
            refusal_remark(ResponseCode::NoPermission, Some("username cannot be null."), None)
                .unwrap();
        assert!(unsigned.contains("no credentials"), "{unsigned}");
    }
}

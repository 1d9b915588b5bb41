//! Request and response codes (reference 1.7 and 2.1).
//!
//! Both are open sets on the wire: a newer broker can send a request code we do not know, and
//! must get `REQUEST_CODE_NOT_SUPPORTED` back rather than a dropped connection; response codes we
//! do not model are still carried through as `Other` so an error can name them.

/// Declares a code enum with a catch-all `Other(i32)` and lossless conversions.
macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A code this crate does not model; kept so errors can report it.
            Other(i32),
        }

        impl $name {
            /// The numeric wire value.
            pub const fn code(self) -> i32 {
                match self {
                    $(Self::$variant => $value,)*
                    Self::Other(code) => code,
                }
            }

            /// Reads a wire value; unknown values become `Other`.
            pub const fn from_code(code: i32) -> Self {
                match code {
                    $($value => Self::$variant,)*
                    other => Self::Other(other),
                }
            }
        }

        impl From<i32> for $name {
            fn from(code: i32) -> Self {
                Self::from_code(code)
            }
        }

        impl From<$name> for i32 {
            fn from(code: $name) -> Self {
                code.code()
            }
        }
    };
}

code_enum! {
    /// Request codes a push consumer, its tests and its admin helpers use (reference 2.1).
    RequestCode {
        SendMessage = 10,
        PullMessage = 11,
        QueryConsumerOffset = 14,
        UpdateConsumerOffset = 15,
        UpdateAndCreateTopic = 17,
        SearchOffsetByTimestamp = 29,
        GetMaxOffset = 30,
        GetMinOffset = 31,
        HeartBeat = 34,
        UnregisterClient = 35,
        ConsumerSendMsgBack = 36,
        GetConsumerListByGroup = 38,
        NotifyConsumerIdsChanged = 40,
        LockBatchMq = 41,
        UnlockBatchMq = 42,
        CheckClientConfig = 46,
        GetRouteInfoByTopic = 105,
        GetBrokerClusterInfo = 106,
        ResetConsumerClientOffset = 220,
        GetConsumerStatusFromClient = 221,
        /// Admin → broker: reset a group's offsets of a topic and tell its running consumers.
        InvokeBrokerToResetOffset = 222,
        GetConsumerRunningInfo = 307,
        ConsumeMessageDirectly = 309,
        SendMessageV2 = 310,
        SendBatchMessage = 320,
        /// 5.x: the broker's assignment of a topic's queues (and its request mode) to a client.
        QueryAssignment = 400,
        /// 5.x admin: sets a (topic, group)'s request mode (PULL or POP).
        SetMessageRequestMode = 401,
        /// 5.x POP consumption (see `docs/pop.md`).
        PopMessage = 200050,
        AckMessage = 200051,
        ChangeMessageInvisibleTime = 200053,
        BatchAckMessage = 200151,
    }
}

code_enum! {
    /// Response codes (`ResponseCode` extends `RemotingSysResponseCode`, reference 1.7).
    ResponseCode {
        Success = 0,
        SystemError = 1,
        SystemBusy = 2,
        RequestCodeNotSupported = 3,
        TransactionFailed = 4,
        FlushDiskTimeout = 10,
        SlaveNotAvailable = 11,
        FlushSlaveTimeout = 12,
        MessageIllegal = 13,
        ServiceNotAvailable = 14,
        VersionNotSupported = 15,
        NoPermission = 16,
        TopicNotExist = 17,
        TopicExistAlready = 18,
        PullNotFound = 19,
        PullRetryImmediately = 20,
        PullOffsetMoved = 21,
        QueryNotFound = 22,
        SubscriptionParseFailed = 23,
        SubscriptionNotExist = 24,
        SubscriptionNotLatest = 25,
        SubscriptionGroupNotExist = 26,
        FilterDataNotExist = 27,
        FilterDataNotLatest = 28,
        InvalidParameter = 29,
        ConsumerNotOnline = 206,
        /// POP: too many long-polling requests suspended on the broker; retry later.
        PollingFull = 209,
        /// POP: the long poll ended with nothing to deliver.
        PollingTimeout = 210,
        FlowControl = 215,
        NotLeaderForQueue = 501,
        GoAway = 1500,
    }
}

/// Client language, as the `language` header field (reference 1.6).
///
/// JSON carries the name, the binary header carries the byte; an unknown name or byte is kept as
/// `Other` (a Java server would read it as null and carry on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LanguageCode {
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
    /// A byte this crate does not know.
    Unknown(u8),
}

const LANGUAGES: [(LanguageCode, &str); 14] = [
    (LanguageCode::Java, "JAVA"),
    (LanguageCode::Cpp, "CPP"),
    (LanguageCode::Dotnet, "DOTNET"),
    (LanguageCode::Python, "PYTHON"),
    (LanguageCode::Delphi, "DELPHI"),
    (LanguageCode::Erlang, "ERLANG"),
    (LanguageCode::Ruby, "RUBY"),
    (LanguageCode::Other, "OTHER"),
    (LanguageCode::Http, "HTTP"),
    (LanguageCode::Go, "GO"),
    (LanguageCode::Php, "PHP"),
    (LanguageCode::Oms, "OMS"),
    (LanguageCode::Rust, "RUST"),
    (LanguageCode::NodeJs, "NODE_JS"),
];

impl LanguageCode {
    /// The byte used by the binary header.
    pub fn byte(self) -> u8 {
        match self {
            Self::Unknown(b) => b,
            known => LANGUAGES
                .iter()
                .position(|(l, _)| *l == known)
                .and_then(|p| u8::try_from(p).ok())
                .unwrap_or(7),
        }
    }

    /// Reads the binary header's byte.
    pub fn from_byte(b: u8) -> Self {
        LANGUAGES.get(usize::from(b)).map_or(Self::Unknown(b), |(l, _)| *l)
    }

    /// The name used by the JSON header.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown(_) => "OTHER",
            known => LANGUAGES.iter().find(|(l, _)| *l == known).map_or("OTHER", |(_, n)| n),
        }
    }

    /// Reads the JSON header's name; unknown names map to `Other`, as fastjson maps them to null.
    pub fn from_name(name: &str) -> Self {
        LANGUAGES.iter().find(|(_, n)| *n == name).map_or(Self::Other, |(l, _)| *l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknowns_are_kept() {
        for (code, value) in [
            (RequestCode::PullMessage, 11),
            (RequestCode::GetRouteInfoByTopic, 105),
            (RequestCode::SendBatchMessage, 320),
            (RequestCode::Other(9999), 9999),
        ] {
            assert_eq!(code.code(), value);
            assert_eq!(RequestCode::from_code(value), code);
        }
        assert_eq!(ResponseCode::from_code(21), ResponseCode::PullOffsetMoved);
        assert_eq!(ResponseCode::from_code(1500), ResponseCode::GoAway);
        assert_eq!(ResponseCode::from_code(-5), ResponseCode::Other(-5));
    }

    #[test]
    fn language_table_matches_reference() {
        assert_eq!(LanguageCode::Java.byte(), 0);
        assert_eq!(LanguageCode::Rust.byte(), 12);
        assert_eq!(LanguageCode::NodeJs.byte(), 13);
        assert_eq!(LanguageCode::from_byte(12), LanguageCode::Rust);
        assert_eq!(LanguageCode::from_byte(200), LanguageCode::Unknown(200));
        assert_eq!(LanguageCode::Rust.name(), "RUST");
        assert_eq!(LanguageCode::from_name("GO"), LanguageCode::Go);
        assert_eq!(LanguageCode::from_name("COBOL"), LanguageCode::Other);
    }
}

//! `[http]` in the run config: where the operators' endpoint listens. Absent: no endpoint (no
//! port is opened unless asked for).
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:9100"   # /metrics, /livez, /readyz, /status
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

/// `[http]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Address and port to bind; port 0 picks a free one (logged at start).
    pub listen: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_an_address_and_nothing_else_is_accepted() {
        let ok: HttpSection = toml::from_str("listen = \"127.0.0.1:9100\"").unwrap();
        assert_eq!(ok.listen, "127.0.0.1:9100".parse().unwrap());
        let e = toml::from_str::<HttpSection>("listen = \"localhost\"").unwrap_err().to_string();
        assert!(e.contains("listen") || e.contains("address"), "{e}");
        let e = toml::from_str::<HttpSection>("listen = \"127.0.0.1:1\"\nport = 1").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }
}

//! A configuration that cannot run: [`ConfigError`], and the refusal of one value of a flag,
//! which every parser makes the same way.

use std::fmt;
use std::net::SocketAddr;

/// A configuration that cannot run, with the flag it concerns.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    UnknownFlag(String),
    MissingValue(&'static str),
    BadValue {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    InsecureBind(SocketAddr),
    Components(crate::components::ComponentError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag:?} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ConfigError::BadValue { flag, value, why } => {
                write!(f, "invalid value {value:?} for {flag}: {why}")
            }
            ConfigError::Components(e) => write!(f, "component file {e}"),
            ConfigError::InsecureBind(addr) => write!(
                f,
                "refusing to listen on non-loopback address {addr} without DAPR_API_TOKEN; \
                 set a token or pass --insecure-bind"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The refusal of `value` for `flag`, saying why.
pub(super) fn bad(flag: &'static str, value: &str, why: &'static str) -> ConfigError {
    ConfigError::BadValue {
        flag,
        value: value.to_string(),
        why,
    }
}

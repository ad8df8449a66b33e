//! What a request line says besides its target: the method, as far as the routes tell methods
//! apart, and the protocol version.

/// The request methods the routes distinguish; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// The protocol version of a request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

//! How the connections answer what they frame: the lock API, or the benchmarks' fixed answer.

/// How the connections answer what they frame, chosen once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answering {
    /// The Dapr lock API.
    Locks,
    /// Every request `{"success":true}`, without routing, decoding or locking: the runtime and
    /// HTTP layer alone, for the benchmarks' ceiling (`dlockd-ceiling`).
    FixedAnswer,
}

//! What travels between the workers and the etcd thread: an operation ([`Job`]) or the first
//! contact ([`Work::Probe`]) one way, an outcome ([`Done`]) the other.

use tokio::sync::{mpsc, oneshot};

use crate::api::OpKind;
use crate::shard::SlotId;
use crate::store::StoreOutcome;

/// What the etcd thread is asked.
pub(super) enum Work {
    Op(Job),
    /// The first contact: `LeaseGrant` of 1 s (and its revoke); answered with the note on the
    /// minimum TTL etcd imposes, or why etcd could not be reached.
    Probe(oneshot::Sender<Result<Option<String>, String>>),
}

/// One operation on one key, and where its outcome goes (`None`: nobody waits for it, as for
/// the release of a grant nobody heard of).
pub(super) struct Job {
    pub(super) slot: SlotId,
    pub(super) kind: OpKind,
    pub(super) key: Vec<u8>,
    pub(super) owner: Vec<u8>,
    pub(super) reply: Option<mpsc::UnboundedSender<Done>>,
    /// For an acquire that waits: ends the wait when its sender is dropped.
    pub(super) cancel: Option<oneshot::Receiver<()>>,
}

/// An operation's outcome, back to the worker that asked; an acquire's key and owner come
/// back too, to release a grant whose client went.
pub(super) struct Done {
    pub(super) slot: SlotId,
    pub(super) outcome: StoreOutcome,
    pub(super) acquired: Option<(Vec<u8>, Vec<u8>)>,
}

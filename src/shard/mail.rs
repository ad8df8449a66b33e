//! What travels between threads through the workers' inboxes: requests forwarded to the shard
//! that owns their key, their answers, acquires that wait and the ends of their waits,
//! connections handed to a less busy worker, and the questions of the admin and gRPC threads.

use crate::api::{Answer, OpKind};
use crate::dispatch::{ReplyTo, WaitOver};
use crate::lease::{Key, StoreId};
use crate::store::StoreOutcome;

use super::ids::{ShardId, SlotId};

/// A request forwarded to the shard that owns its key.
pub struct Forward {
    pub from: ShardId,
    pub slot: SlotId,
    pub kind: OpKind,
    pub store: StoreId,
    /// Inside the message when short: a forward allocates nothing for a UUID.
    pub key: Key,
}

/// What one worker sends another: a request to decide, or an admin question.
pub enum Mail {
    Lock(Forward),
    /// An acquire that may wait, for the shard that owns its key to grant or park.
    Acquire(Forward),
    /// The end of a wait, for the worker whose connection waits. It travels as a request, not
    /// a reply: waits are outside the in-flight bound that sizes the reply queue.
    WaitOver(WaitOver),
    /// A waiter's connection went: it leaves its queue.
    CancelWait(ReplyTo),
    /// A grant that reached a wait nobody waits for any more: the lease is released.
    Release {
        store: StoreId,
        key: Key,
    },
    /// From the admin thread: who holds a lock in the receiver's shard.
    Holder(HolderQuery),
    /// From the gRPC thread: a lock request to decide, answered on its own channel.
    Remote(RemoteLock),
    /// A connection another worker accepted, for this one to serve: see
    /// `server::accept`.
    Conn(Accepted),
}

/// A connection just accepted, on either kind of listening socket.
#[derive(Debug)]
pub enum Accepted {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// A lock request from the gRPC thread, for the shard that owns its key.
pub struct RemoteLock {
    pub kind: OpKind,
    pub store: StoreId,
    pub key: Key,
    /// The decision, or a remote store's failure.
    pub answer: tokio::sync::oneshot::Sender<StoreOutcome>,
}

/// `/debug/lease`: answered by the shard that owns the key, on its own thread.
pub struct HolderQuery {
    pub store: StoreId,
    pub resource: Box<[u8]>,
    /// Capacity 1, one answer: the worker never blocks on it.
    pub answer: std::sync::mpsc::SyncSender<Option<Holder>>,
}

/// A live lease's owner and the milliseconds it stays live.
pub struct Holder {
    pub owner: Vec<u8>,
    pub remaining_ms: u64,
    /// Its fencing token, with `--data-dir`.
    pub fence: Option<u64>,
}

/// The owner's answer to a [`Forward`].
pub struct Answered {
    pub slot: SlotId,
    pub answer: Answer,
}

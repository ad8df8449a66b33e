//! The seam between a worker and a remote store: [`RemoteStore`], which takes an operation, and
//! [`Deliver`], through which its outcome comes back, a decision or a [`StoreFailure`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::api::{Answer, OpKind, Operation, Response};
use crate::metrics::RequestOutcome;
use crate::shard::SlotId;

/// Why a remote store could not decide an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// It is not connected: where it is (`redis at HOST`), and why.
    Unavailable { at: String, why: String },
    /// Its connection broke with the operation in flight.
    ConnectionLost { at: String, why: String },
    /// It answered the operation with an error of its own.
    Refused(String),
    /// It answered something its protocol does not allow for the operation.
    Unexpected(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable { at, why } => write!(f, "{at} is unavailable: {why}"),
            StoreError::ConnectionLost { at, why } => write!(f, "{at}: {why}"),
            StoreError::Refused(text) | StoreError::Unexpected(text) => f.write_str(text),
        }
    }
}

/// A remote store's failure to decide one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreFailure {
    pub op: Operation,
    pub error: StoreError,
}

impl StoreFailure {
    /// How it is counted.
    pub(crate) fn outcome(&self) -> RequestOutcome {
        match self.op {
            Operation::TryLock | Operation::Acquire => RequestOutcome::LockError,
            Operation::Unlock => RequestOutcome::UnlockError,
            Operation::Renew => RequestOutcome::RenewError,
            Operation::Holder => RequestOutcome::HolderError,
        }
    }

    /// daprd's HTTP answer to it: `500 ERR_TRY_LOCK` / `ERR_UNLOCK` with the cause.
    pub(crate) fn response(&self) -> Response {
        crate::api::store_failure_response(self.op, &self.error.to_string())
    }
}

/// What a remote store answers to one operation.
pub type StoreOutcome = Result<Answer, StoreFailure>;

/// Where a store's outcomes go: the worker's pending slots.
pub trait Deliver {
    /// Delivers `outcome` to `slot`; gives it back when nobody waits for it any more (the
    /// client went), so that a store can undo a grant nobody will hear of.
    fn deliver(&self, slot: SlotId, outcome: StoreOutcome) -> Option<StoreOutcome>;
}

/// A future run on the worker's own (single-threaded) runtime.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One worker's connection to a store that lives elsewhere.
pub trait RemoteStore {
    /// Queues `kind` on (`resource`, `owner`); its outcome is delivered to `slot`, at once if
    /// the store cannot take it.
    fn submit(
        &self,
        deliver: &dyn Deliver,
        slot: SlotId,
        kind: OpKind,
        resource: &[u8],
        owner: &[u8],
    );

    /// Connects once before the worker serves, so that its first requests find the store
    /// ready; `Ok` may carry a note for the start-up line (such as a limit the store
    /// imposes), `Err` says why it could not ([`run`](Self::run) keeps trying).
    fn connect_first(&self) -> LocalFuture<'_, Result<Option<String>, String>>;

    /// Serves the connection, and reconnects after every failure, for the worker's life.
    fn run(self: Rc<Self>, deliver: Rc<dyn Deliver>) -> LocalFuture<'static, ()>;

    /// Where the store is, for the operator's log (`10.0.0.5:6379`).
    fn location(&self) -> &str;

    /// Whether the store waits for a lock itself: an acquire with a wait is then submitted
    /// whole (`OpKind::Acquire`) under a wait slot, and [`cancel`](Self::cancel) ends it
    /// early. Otherwise (the default) the worker polls with try-locks.
    fn waits(&self) -> bool {
        false
    }

    /// The client of the acquire waiting in `slot` went: stop waiting. Its outcome is still
    /// delivered (a grant that crossed the cancel comes back from [`Deliver::deliver`]).
    fn cancel(&self, _slot: SlotId) {}

    /// The shutdown began: every wait of this worker's ends (answered `{"success":false}`).
    fn end_waits(&self) {}
}

//! A `lock.etcd` store: locks on etcd's v3 API, shared by every dlockd on one etcd cluster,
//! and never granted twice across a leader failover (every write is one linearizable `Txn`).
//!
//! Keys are built as `lock.redis` builds them (the contract's `keyPrefix` table); a key's
//! value is its owner, and it is attached to a lease of `expiryInSeconds`, so that etcd
//! deletes it when the lease ends. The fencing token of a grant is the key's create
//! revision, which grows across resources, dlockd restarts and etcd leader changes.
//!
//! - try-lock: `LeaseGrant`, then one `Txn`: if the key's create revision is 0 and nobody
//!   queues for it, put the owner under the lease; else read the key. The lease of a refused (or failed) try-lock is
//!   revoked, so that none is left behind, and a put whose answer was lost goes with it.
//! - unlock: one `Txn`: if the value is the owner, read and delete the key (then revoke its
//!   lease), else read it: 0 deleted, 2 another owner, 1 absent.
//! - renew: a new lease, then one `Txn`: if the value is the owner, put it again under the new
//!   lease (the create revision, so the fence, stays), else read it; the old lease is revoked
//!   on success, the new one on refusal. An ended lease took its key along: 1.
//! - holder: one `Txn` reading the key and counting its waiter keys, then `LeaseTimeToLive`
//!   of the key's lease.
//! - acquire: a try-lock; if refused, a waiter key `<key>||waiter||<lease>` on a lease that
//!   outlives the wait, then a `Txn` that takes the lock if it is free and no waiter key is
//!   older, tried whenever a `Watch` sees the lock key or a waiter key deleted. Waiters are
//!   served in the order their keys reached etcd, across every dlockd (etcd's lock recipe);
//!   a try-lock never takes a lock while waiter keys exist.
//!
//! The client runs on one thread of its own per process (`dlockd-etcd`, a tokio
//! current-thread runtime, like the gRPC face), shared by every worker and every etcd store:
//! a worker's [`EtcdStore`] sends each operation over an unbounded channel (never blocking the
//! worker; the worker's pending slots bound what is in flight) and drains the outcomes of a
//! channel of its own into its pending slots. The thread ends when the last store using it is
//! dropped. gRPC is tonic's client with hand-written prost messages ([`proto`]): no protoc.

mod client;
mod proto;
mod work;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot};

use super::seam::{Deliver, LocalFuture, RemoteStore, StoreError, StoreFailure};
use crate::api::{Answer, OpKind};
use crate::components::EtcdSettings;
use crate::shard::SlotId;
use work::{Done, Job, Work};

/// Whether a store of `settings` can be served: its TLS files can be read and hold PEM.
pub fn check(settings: &EtcdSettings) -> Result<(), String> {
    client::tls_config(settings).map(drop)
}

/// The etcd thread: its runtime's handle, and its end when dropped.
struct Hub {
    handle: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

/// The process's etcd thread while some store uses it.
static HUB: Mutex<Weak<Hub>> = Mutex::new(Weak::new());

/// The etcd thread, started if none runs.
fn hub() -> Result<Arc<Hub>, String> {
    let mut running = HUB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(hub) = running.upgrade() {
        return Ok(hub);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot build the etcd client's runtime: {e}"))?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("dlockd-etcd".into())
        .spawn(move || {
            // Runs the clients' tasks until the last store is dropped; dropping the runtime
            // then ends them.
            runtime.block_on(async move {
                let _ = stopped.await;
            });
        })
        .map_err(|e| format!("cannot start the etcd client's thread: {e}"))?;
    let hub = Arc::new(Hub {
        handle,
        _stop: stop,
    });
    *running = Arc::downgrade(&hub);
    Ok(hub)
}

/// One etcd store's client, shared by every worker: where operations go, and the first
/// contact's outcome once known.
struct Cluster {
    settings: EtcdSettings,
    jobs: mpsc::UnboundedSender<Work>,
    first: Mutex<Option<Result<Option<String>, String>>>,
    /// Keeps the thread running; its tasks hold no `Cluster`, so the last store's drop ends it.
    _hub: Arc<Hub>,
}

/// The clients of the etcd stores open in this process.
static CLUSTERS: Mutex<Vec<Weak<Cluster>>> = Mutex::new(Vec::new());

/// The client of `settings`, made if no worker has made it yet.
fn cluster(settings: &EtcdSettings) -> Result<Arc<Cluster>, String> {
    let mut open = CLUSTERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    open.retain(|c| c.strong_count() > 0);
    if let Some(found) = open
        .iter()
        .filter_map(Weak::upgrade)
        .find(|c| c.settings == *settings)
    {
        return Ok(found);
    }
    let hub = hub()?;
    let (jobs, work) = mpsc::unbounded_channel();
    hub.handle.spawn(client::serve(settings.clone(), work));
    let cluster = Arc::new(Cluster {
        settings: settings.clone(),
        jobs,
        first: Mutex::new(None),
        _hub: hub,
    });
    open.push(Arc::downgrade(&cluster));
    Ok(cluster)
}

/// One worker's side of a `lock.etcd` store.
pub struct EtcdStore {
    /// The shared client, or why it could not be made (every operation then fails with it).
    cluster: Result<Arc<Cluster>, String>,
    key_head: Vec<u8>,
    /// `etcd at HOST:PORT,...`.
    at: String,
    location: String,
    done: mpsc::UnboundedSender<Done>,
    outcomes: RefCell<Option<mpsc::UnboundedReceiver<Done>>>,
    /// The acquires waiting in etcd, by slot: dropping one's sender ends its wait.
    waiting: RefCell<HashMap<SlotId, oneshot::Sender<()>>>,
}

impl EtcdStore {
    pub fn new(settings: &EtcdSettings, key_head: Vec<u8>) -> Rc<Self> {
        let (done, outcomes) = mpsc::unbounded_channel();
        let location = settings.endpoints.join(",");
        Rc::new(EtcdStore {
            cluster: cluster(settings),
            key_head,
            at: format!("etcd at {location}"),
            location,
            done,
            outcomes: RefCell::new(Some(outcomes)),
            waiting: RefCell::new(HashMap::new()),
        })
    }

    /// Sends `work` to the etcd thread, or says why it cannot go.
    fn send(&self, work: Work) -> Result<(), StoreError> {
        let cluster = self
            .cluster
            .as_ref()
            .map_err(|why| StoreError::Unavailable {
                at: self.at.clone(),
                why: why.clone(),
            })?;
        cluster
            .jobs
            .send(work)
            .map_err(|_| StoreError::Unavailable {
                at: self.at.clone(),
                why: "the etcd client's thread stopped".into(),
            })
    }

    /// The first contact, once per store for the whole process: later workers are told the
    /// first one's outcome.
    async fn first_contact(&self) -> Result<Option<String>, String> {
        let cluster = self.cluster.as_ref().map_err(Clone::clone)?;
        let known = cluster
            .first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(known) = known {
            return known;
        }
        let (tx, rx) = oneshot::channel();
        self.send(Work::Probe(tx)).map_err(|e| e.to_string())?;
        let outcome = rx
            .await
            .unwrap_or_else(|_| Err("the etcd client's thread stopped".into()));
        *cluster
            .first
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(outcome.clone());
        outcome
    }

    /// Delivers outcomes as they come, for the worker's life. A grant that reaches a slot
    /// nobody waits on any more (its acquire's client went) is released at once.
    async fn deliver_forever(self: Rc<Self>, deliver: Rc<dyn Deliver>) {
        let Some(mut outcomes) = self.outcomes.borrow_mut().take() else {
            return;
        };
        while let Some(done) = outcomes.recv().await {
            if done.acquired.is_some() {
                self.waiting.borrow_mut().remove(&done.slot);
            }
            let unwanted = deliver.deliver(done.slot, done.outcome);
            if let (Some(Ok(Answer::StoreGranted { .. })), Some((key, owner))) =
                (unwanted, done.acquired)
            {
                let release = Job {
                    slot: done.slot,
                    kind: OpKind::Unlock,
                    key,
                    owner,
                    reply: None,
                    cancel: None,
                };
                if let Err(e) = self.send(Work::Op(release)) {
                    crate::log::write(
                        crate::log::Level::Warn,
                        format_args!("a grant nobody waits for could not be released: {e}"),
                    );
                }
            }
        }
    }
}

impl RemoteStore for EtcdStore {
    fn submit(
        &self,
        deliver: &dyn Deliver,
        slot: SlotId,
        kind: OpKind,
        resource: &[u8],
        owner: &[u8],
    ) {
        let cancel = match kind {
            OpKind::Acquire { wait_ms, .. } if wait_ms > 0 => {
                let (tx, rx) = oneshot::channel();
                self.waiting.borrow_mut().insert(slot, tx);
                Some(rx)
            }
            _ => None,
        };
        let job = Job {
            slot,
            kind,
            key: [self.key_head.as_slice(), resource].concat(),
            owner: owner.to_vec(),
            reply: Some(self.done.clone()),
            cancel,
        };
        if let Err(error) = self.send(Work::Op(job)) {
            self.waiting.borrow_mut().remove(&slot);
            let failure = StoreFailure {
                op: kind.operation(),
                error,
            };
            // Nothing was granted: nothing to undo.
            let _ = deliver.deliver(slot, Err(failure));
        }
    }

    fn connect_first(&self) -> LocalFuture<'_, Result<Option<String>, String>> {
        Box::pin(self.first_contact())
    }

    fn run(self: Rc<Self>, deliver: Rc<dyn Deliver>) -> LocalFuture<'static, ()> {
        Box::pin(self.deliver_forever(deliver))
    }

    fn location(&self) -> &str {
        &self.location
    }

    fn waits(&self) -> bool {
        true
    }

    fn cancel(&self, slot: SlotId) {
        // Dropping the sender ends the wait on the etcd thread.
        self.waiting.borrow_mut().remove(&slot);
    }

    fn end_waits(&self) {
        self.waiting.borrow_mut().clear();
    }
}

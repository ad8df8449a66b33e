//! A worker's thread: a single-threaded monoio runtime pinned to its core, the [`Worker`]
//! built on it, and the worker's tasks: the yielder, the outbox's sender, each remote store's
//! connection, one accept task per listening socket, housekeeping, and the inbound mail loop,
//! whose end is the worker's.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{mpsc, Arc};

use super::answering::Answering;
use super::driver::{uring_runtime, Driver};
use super::error::StartError;
use super::pending::Pending;
use super::reaper::Reaper;
use super::shared::{Shared, MAX_IN_FLIGHT_PER_WORKER};
use super::signal::Signal;
use super::socket::{Listener, Ready};
use super::worker::Worker;
use super::{accept, housekeeping, inbound, waits};
use crate::api::{Api, ApiConfig};
use crate::dispatch::Shard;
use crate::lease::LeaseTable;
use crate::persist::Restored;
use crate::shard::{Outbox, ShardId};
use crate::store::{Deliver, RemoteStore};
use crate::task::{Notify, Yields};

/// A worker's first connection to one remote store: made (with the store's note), or why not.
pub(super) type Reached = Result<Option<String>, String>;

pub(super) struct Spec {
    pub id: usize,
    pub core: usize,
    /// This worker's duplicates of the HTTP listening sockets, shared with every worker.
    pub listeners: Vec<Listener>,
    pub driver: Driver,
    pub answering: Answering,
    pub shared: Arc<Shared>,
    /// Once the worker serves: whether its first connection to each remote store (in store
    /// order) was made, with the store's note, or why not.
    pub ready: mpsc::Sender<Result<Vec<Reached>, StartError>>,
    pub exited: mpsc::Sender<usize>,
}

pub(super) fn spawn(spec: Spec) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("dlockd-worker-{}", spec.id))
        .spawn(move || {
            let id = spec.id;
            let exited = spec.exited.clone();
            run(spec);
            let _ = exited.send(id);
        })
        .map(drop)
}

fn run(spec: Spec) {
    // Pinning is best effort: a cpuset that excludes the core still serves, unpinned.
    let _ = monoio::utils::bind_to_cpu_set([spec.core]);
    match spec.driver {
        Driver::IoUring => match uring_runtime() {
            Ok(mut rt) => rt.block_on(main(spec)),
            Err(e) => {
                let _ = spec
                    .ready
                    .send(Err(StartError::Runtime(Driver::IoUring, e)));
            }
        },
        Driver::Legacy => {
            match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
            {
                Ok(mut rt) => rt.block_on(main(spec)),
                Err(e) => {
                    let _ = spec.ready.send(Err(StartError::Runtime(Driver::Legacy, e)));
                }
            }
        }
    }
}

async fn main(spec: Spec) {
    let Spec {
        id,
        listeners,
        driver,
        answering,
        shared,
        ready,
        ..
    } = spec;
    // Each socket twice: the runtime's handle says when a connection waits, and the plain
    // one accepts it (see `accept.rs`).
    let listeners = match listeners
        .into_iter()
        .map(Listener::into_ready)
        .collect::<std::io::Result<Vec<_>>>()
    {
        Ok(listeners) => listeners,
        Err(e) => {
            let _ = ready.send(Err(StartError::Listener(e)));
            return;
        }
    };
    let worker = Rc::new(build(ShardId(id), driver, answering, shared));
    // Each remote store is tried once before this worker serves, so that its first requests
    // find it connected (or the operator is told it is not).
    let mut reached = Vec::new();
    for remote in worker.remotes.iter().flatten() {
        reached.push(remote.connect_first().await);
    }
    if ready.send(Ok(reached)).is_err() {
        return;
    }
    drop(ready);
    spawn_tasks(&worker, listeners);
    inbound::mail_loop(worker.clone()).await;
    leave_leases(&worker);
}

/// The worker of shard `id`, its table holding the leases of a clean stop that are its own.
fn build(id: ShardId, driver: Driver, answering: Answering, shared: Arc<Shared>) -> Worker {
    let config = &shared.config;
    let remotes: Vec<Option<Rc<dyn RemoteStore>>> = config
        .backends
        .iter()
        .zip(&config.stores)
        .map(|(backend, name)| crate::store::open(backend, &config.app_id, name))
        .collect();
    let shard = Shard::new(
        id,
        config.workers,
        table_of(id, &shared),
        remotes.iter().map(Option::is_some).collect(),
        shared.persist.as_ref().map(|p| p.refuse_until_ms),
    );
    Worker {
        id,
        driver,
        answering,
        shard: RefCell::new(shard),
        api: RefCell::new(Api::new(ApiConfig {
            stores: config.stores.clone(),
            app_id: config.app_id.clone(),
            api_token: config.api_token.clone(),
            max_id_bytes: config.max_id_bytes,
            max_expiry_s: config.max_expiry_s,
            max_wait_ms: config.max_wait_ms(),
            store_types: config.backends.iter().map(|b| b.type_name()).collect(),
        })),
        pending: Pending::new(MAX_IN_FLIGHT_PER_WORKER, shared.waits.clone()),
        shutdown: Signal::default(),
        reaper: Reaper::default(),
        yields: Yields::default(),
        outbox: Outbox::new(config.workers),
        remotes,
        shared: shared.clone(),
        wait_timer: Notify::default(),
        wait_timer_at: Cell::new(u64::MAX),
        waits_closed: Cell::new(false),
    }
}

/// Shard `id`'s lease table: with a data dir, fencing on and the leases of a clean stop that
/// live in this shard put back.
fn table_of(id: ShardId, shared: &Shared) -> LeaseTable {
    let mut table = LeaseTable::new(shared.config.max_leases_per_shard());
    let Some(persist) = &shared.persist else {
        return table;
    };
    table.enable_fencing(persist.first_token);
    let mine = std::mem::take(
        &mut shared
            .restore
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())[id.0],
    );
    let now_ms = shared.clock.now_ms();
    for (store, lease) in mine {
        // Only a smaller --max-leases than the last run's can refuse one.
        if let Err(e) = table.restore(
            store,
            &lease.resource,
            &lease.owner,
            lease.last_live_ms,
            lease.token,
            now_ms,
        ) {
            crate::log::write(
                crate::log::Level::Error,
                format_args!(
                    "a saved lease could not be put back on worker {}: {e}",
                    id.0
                ),
            );
        }
    }
    table
}

/// Every task of the worker but the mail loop, which the thread runs itself.
fn spawn_tasks(worker: &Rc<Worker>, listeners: Vec<Ready>) {
    let yielder = worker.clone();
    monoio::spawn(async move { yielder.yields.run().await });
    let sender = worker.clone();
    monoio::spawn(async move {
        let w = &*sender;
        w.outbox.run(&w.shared.inboxes, &w.yields).await
    });
    for remote in worker.remotes.iter().flatten() {
        let deliver: Rc<dyn Deliver> = worker.clone();
        monoio::spawn(remote.clone().run(deliver));
    }
    for listener in listeners {
        monoio::spawn(accept::accept_loop(worker.clone(), listener));
    }
    monoio::spawn(housekeeping::housekeeping(worker.clone()));
    monoio::spawn(waits::wait_timer(worker.clone()));
}

/// At a clean stop, once nothing more is granted here: hands this shard's live leases over
/// for the snapshot.
fn leave_leases(worker: &Worker) {
    let shared = &worker.shared;
    if shared.persist.is_none() {
        return;
    }
    let now_ms = shared.clock.now_ms();
    let shard = worker.shard.borrow();
    let mut left = shared
        .left
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    left.extend(shard.table().live(now_ms).map(|lease| Restored {
        store: shared.config.stores[usize::from(lease.store.0)].clone(),
        resource: lease.resource.to_vec(),
        owner: lease.owner.to_vec(),
        last_live_ms: lease.last_live_ms,
        token: lease.token,
    }));
}

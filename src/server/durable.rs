//! Waiting for the data dir (`--data-dir`) to durably cover what an answer promises: a grant
//! is acknowledged only once the horizon covers its end and its token.

use std::time::{Duration, Instant};

use crate::persist::{Durable, Need};

/// How long an answer waits for the data dir to promise its grants before its connection is
/// closed unanswered (the grants then simply expire): the disk has failed for that long.
const DURABLE_WAIT_LIMIT: Duration = Duration::from_secs(10);
/// How often a waiting answer looks again.
const DURABLE_POLL: Duration = Duration::from_millis(1);

/// Whether `need` may be answered now: nothing is needed, there is no data dir, or `durable`
/// already covers it.
#[inline]
pub(super) fn covered(durable: Option<&Durable>, need: Need) -> bool {
    need.is_empty() || durable.is_none_or(|d| d.covers(need))
}

/// True once `durable` covers `need` (at once when [`covered`]); false if it did not within
/// [`DURABLE_WAIT_LIMIT`].
#[inline]
pub(super) async fn once_durable(durable: Option<&Durable>, need: Need) -> bool {
    match durable {
        Some(durable) if !covered(Some(durable), need) => wait(durable, need).await,
        _ => true,
    }
}

/// Rare: the persister keeps the promise ahead of a steady load.
#[cold]
async fn wait(durable: &Durable, need: Need) -> bool {
    let deadline = Instant::now() + DURABLE_WAIT_LIMIT;
    while Instant::now() < deadline {
        monoio::time::sleep(DURABLE_POLL).await;
        if durable.covers(need) {
            return true;
        }
    }
    false
}

//! `--protocol etcd`: etcd's v3 API, called exactly as dlockd's `lock.etcd` store calls it
//! for one lock and one unlock (dlockd's `src/store/etcd/client.rs`), so that etcd driven
//! directly by this client and etcd behind dlockd meet the same transactions:
//!
//! - a lock (try-lock): `LeaseGrant(expiry)`, then one `Txn`: if the key's create revision
//!   is 0 and no key exists under its waiter prefix `<key>||waiter||`, `Put(key, owner,
//!   lease)`, else `Range(key)`. Granted when the `Txn` succeeded; refused, its lease is
//!   revoked (`LeaseRevoke`), after the answer, as dlockd does in the background.
//! - an unlock: one `Txn`: if the key's value is the owner, `Range(key)` and
//!   `DeleteRange(key)`, else `Range(key)`. Released (0) when it succeeded, then the
//!   deleted key's lease is revoked after the answer; else 2 if the key exists (another
//!   owner), 1 if not.
//!
//! Keys are `lock||<resourceId>`: what dlockd builds with `keyPrefix` at its default and no
//! app id, and what the RESP client writes to Redis. One lock or one unlock counts as one
//! request, whatever number of calls it takes, so req/s compare with the other protocols'.
//!
//! This module is the pure part: the messages (written out with prost's derive, field
//! numbers and types as in etcd's `etcdserverpb/rpc.proto` and `mvccpb/kv.proto`, only the
//! fields used: prost skips the others when it decodes; no protoc), the method paths, the
//! requests and the reading of the answers. `client::etcd` makes the calls.

use crate::wire::{Outcome, UNLOCK_NOT_FOUND, UNLOCK_OTHERS, UNLOCK_SUCCESS};

pub const TXN_PATH: &str = "/etcdserverpb.KV/Txn";
pub const LEASE_GRANT_PATH: &str = "/etcdserverpb.Lease/LeaseGrant";
pub const LEASE_REVOKE_PATH: &str = "/etcdserverpb.Lease/LeaseRevoke";

/// What precedes the resource id in a lock's key.
pub const KEY_PREFIX: &[u8] = b"lock||";
/// What follows a lock's key in its waiters' keys (dlockd's acquire queue).
pub const QUEUE_SUFFIX: &[u8] = b"||waiter||";

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// The key-value store's revision when the request was applied.
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    /// The lease the key is attached to; 0 for none.
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// `etcdserverpb.RangeRequest`: one key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub lease: i64,
}

/// `etcdserverpb.PutResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// `etcdserverpb.DeleteRangeRequest`: one key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// `etcdserverpb.DeleteRangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub deleted: i64,
}

/// `etcdserverpb.RequestOp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "Request", tags = "1, 2, 3")]
    pub request: Option<Request>,
}

/// `etcdserverpb.RequestOp.request`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    #[prost(message, tag = "1")]
    Range(RangeRequest),
    #[prost(message, tag = "2")]
    Put(PutRequest),
    #[prost(message, tag = "3")]
    DeleteRange(DeleteRangeRequest),
}

/// `etcdserverpb.ResponseOp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseOp {
    #[prost(oneof = "Response", tags = "1, 2, 3")]
    pub response: Option<Response>,
}

/// `etcdserverpb.ResponseOp.response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Response {
    #[prost(message, tag = "1")]
    Range(RangeResponse),
    #[prost(message, tag = "2")]
    Put(PutResponse),
    #[prost(message, tag = "3")]
    DeleteRange(DeleteRangeResponse),
}

/// `etcdserverpb.Compare`; `result` is `CompareResult`, `target` is `CompareTarget`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    #[prost(int32, tag = "1")]
    pub result: i32,
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "TargetUnion", tags = "5, 7")]
    pub target_union: Option<TargetUnion>,
    /// With it, the comparison holds for every key of `[key, range_end)` (and for none).
    #[prost(bytes = "vec", tag = "64")]
    pub range_end: Vec<u8>,
}

/// `etcdserverpb.Compare.target_union`: the two members a lock compares.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TargetUnion {
    #[prost(int64, tag = "5")]
    CreateRevision(i64),
    #[prost(bytes = "vec", tag = "7")]
    Value(Vec<u8>),
}

/// `Compare.CompareResult.EQUAL`.
pub const COMPARE_EQUAL: i32 = 0;
/// `Compare.CompareTarget.CREATE` (the key's create revision).
pub const TARGET_CREATE: i32 = 1;
/// `Compare.CompareTarget.VALUE`.
pub const TARGET_VALUE: i32 = 3;

/// `etcdserverpb.TxnRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

/// `etcdserverpb.TxnResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
    #[prost(message, repeated, tag = "3")]
    pub responses: Vec<ResponseOp>,
}

/// `etcdserverpb.LeaseGrantRequest`; `id` 0 lets etcd choose.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
    #[prost(int64, tag = "2")]
    pub id: i64,
}

/// `etcdserverpb.LeaseGrantResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseGrantResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(int64, tag = "3")]
    pub ttl: i64,
    #[prost(string, tag = "4")]
    pub error: String,
}

/// `etcdserverpb.LeaseRevokeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRevokeRequest {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// `etcdserverpb.LeaseRevokeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRevokeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// The key of the lock on `resource_id`: `lock||<resourceId>`.
pub fn key(resource_id: &[u8]) -> Vec<u8> {
    [KEY_PREFIX, resource_id].concat()
}

/// A lease for a lock of `expiry_s` seconds (etcd raises it to its minimum TTL, as it does
/// dlockd's).
pub fn lease_grant(expiry_s: u32) -> LeaseGrantRequest {
    LeaseGrantRequest {
        ttl: i64::from(expiry_s),
        id: 0,
    }
}

/// The granted lease's id, or `None` when etcd refused it in the answer (an `error`, or
/// lease 0), which dlockd answers as a failed lock.
pub fn granted_lease(answer: &LeaseGrantResponse) -> Option<i64> {
    (answer.error.is_empty() && answer.id != 0).then_some(answer.id)
}

/// A try-lock's `Txn`: if `key` is absent and nobody queues for it, put `owner` under
/// `lease`; else read `key`.
pub fn try_lock_txn(key: &[u8], owner: &[u8], lease: i64) -> TxnRequest {
    let queue = [key, QUEUE_SUFFIX].concat();
    TxnRequest {
        compare: vec![
            compare(key, TargetUnion::CreateRevision(0)),
            Compare {
                range_end: prefix_end(&queue),
                ..compare(&queue, TargetUnion::CreateRevision(0))
            },
        ],
        success: vec![RequestOp {
            request: Some(Request::Put(PutRequest {
                key: key.to_vec(),
                value: owner.to_vec(),
                lease,
            })),
        }],
        failure: vec![range(key)],
    }
}

/// An unlock's `Txn`: if `key`'s value is `owner`, read and delete it; else read it.
pub fn unlock_txn(key: &[u8], owner: &[u8]) -> TxnRequest {
    TxnRequest {
        compare: vec![compare(key, TargetUnion::Value(owner.to_vec()))],
        success: vec![
            range(key),
            RequestOp {
                request: Some(Request::DeleteRange(DeleteRangeRequest {
                    key: key.to_vec(),
                })),
            },
        ],
        failure: vec![range(key)],
    }
}

/// A try-lock's answer: granted when its `Txn` put the key (at a revision above 0, as
/// dlockd requires of a grant's fencing token), else denied, and then its lease is to be
/// revoked.
pub fn try_lock_outcome(answer: &TxnResponse) -> Outcome {
    let revision = answer.header.as_ref().map_or(0, |h| h.revision);
    match (answer.succeeded, revision > 0) {
        (true, true) => Outcome::Granted,
        // A grant without a revision is no grant dlockd would give: not an answer we know.
        (true, false) => Outcome::Unrecognized,
        (false, _) => Outcome::Denied,
    }
}

/// An unlock's answer, in Dapr's numbering, and the lease to revoke after it (the deleted
/// key's, when it had one).
pub fn unlock_outcome(answer: &TxnResponse) -> (Outcome, Option<i64>) {
    let found = answer.responses.iter().find_map(|r| match &r.response {
        Some(Response::Range(read)) => Some(read.kvs.first()),
        _ => None,
    });
    let holder = found.flatten();
    if answer.succeeded {
        let lease = holder.map(|kv| kv.lease).filter(|&l| l != 0);
        return (Outcome::Unlocked(UNLOCK_SUCCESS), lease);
    }
    let status = if holder.is_some() {
        UNLOCK_OTHERS
    } else {
        UNLOCK_NOT_FOUND
    };
    (Outcome::Unlocked(status), None)
}

/// `key`'s `target` is equal to its value.
fn compare(key: &[u8], target: TargetUnion) -> Compare {
    let kind = match target {
        TargetUnion::Value(_) => TARGET_VALUE,
        TargetUnion::CreateRevision(_) => TARGET_CREATE,
    };
    Compare {
        result: COMPARE_EQUAL,
        target: kind,
        key: key.to_vec(),
        target_union: Some(target),
        range_end: Vec::new(),
    }
}

fn range(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Request::Range(RangeRequest { key: key.to_vec() })),
    }
}

/// The end of the range of keys that start with `prefix` (its last byte that is not 0xff,
/// plus one; every byte 0xff: to the end of the key space).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    // The try-lock Txn, byte for byte as etcd's generated code encodes it (and as dlockd's
    // store sends it): compare the key's create revision with 0 and, over the range of its
    // waiter keys, theirs; put the owner under the lease; else read the key.
    #[test]
    fn a_try_lock_txn_is_etcds_wire_form() {
        let txn = try_lock_txn(b"k", b"o", 7);
        let mut want = vec![
            0x0a, 0x07, // compare[0], 7 bytes
            0x10, 0x01, // target CREATE (result EQUAL is 0: left out)
            0x1a, 0x01, b'k', // key
            0x28, 0x00, // create_revision 0: a oneof member is sent even when zero
            0x0a, 0x1f, // compare[1], 31 bytes
            0x10, 0x01, 0x1a, 0x0b,
        ];
        want.extend_from_slice(b"k||waiter||");
        want.extend_from_slice(&[0x28, 0x00, 0x82, 0x04, 0x0b]); // range_end: field 64
        want.extend_from_slice(b"k||waiter|}");
        want.extend_from_slice(&[
            0x12, 0x0a, // success[0], 10 bytes
            0x12, 0x08, // request_put, 8 bytes
            0x0a, 0x01, b'k', 0x12, 0x01, b'o', 0x18, 0x07, // key, value, lease
            0x1a, 0x05, // failure[0], 5 bytes
            0x0a, 0x03, 0x0a, 0x01, b'k', // request_range { key }
        ]);
        assert_eq!(txn.encode_to_vec(), want);
    }

    // The unlock Txn: compare the value with the owner; read and delete the key; else read.
    #[test]
    fn an_unlock_txn_is_etcds_wire_form() {
        assert_eq!(
            unlock_txn(b"k", b"o").encode_to_vec(),
            [
                0x0a, 0x08, // compare[0], 8 bytes
                0x10, 0x03, // target VALUE
                0x1a, 0x01, b'k', // key
                0x3a, 0x01, b'o', // value "o"
                0x12, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'k', // success: range
                0x12, 0x05, 0x1a, 0x03, 0x0a, 0x01, b'k', // success: delete_range
                0x1a, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'k', // failure: range
            ]
        );
    }

    // Leases: the grant asks for the expiry and lets etcd choose the id; the revoke names it.
    #[test]
    fn lease_calls() {
        assert_eq!(lease_grant(10).encode_to_vec(), [0x08, 10]);
        assert_eq!(
            LeaseRevokeRequest { id: 0x1234 }.encode_to_vec(),
            [0x08, 0xb4, 0x24]
        );
        // id 9, TTL raised to 2 s: the lease is 9.
        let granted = LeaseGrantResponse::decode(&[0x10, 0x09, 0x18, 0x02][..]).unwrap();
        assert_eq!((granted.id, granted.ttl), (9, 2));
        assert_eq!(granted_lease(&granted), Some(9));
        let refused = LeaseGrantResponse {
            error: "etcdserver: too many requests".into(),
            ..granted.clone()
        };
        assert_eq!(granted_lease(&refused), None);
        assert_eq!(granted_lease(&LeaseGrantResponse::default()), None);
    }

    // Keys are lock||<resourceId>, with the id as the other protocols send it.
    #[test]
    fn keys_and_prefix_ends() {
        let id = crate::wire::resource_id(0x12ab);
        assert_eq!(
            key(&id),
            b"lock||00000000-0000-0000-0000-0000000012ab".to_vec()
        );
        assert_eq!(prefix_end(b"a||"), b"a|}".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    // Answers decode from the bytes etcd sends and read as dlockd reads them.
    #[test]
    fn answers_map_to_outcomes() {
        // header { revision 42 }, succeeded: a grant.
        let granted = TxnResponse::decode(&[0x0a, 0x02, 0x18, 0x2a, 0x10, 0x01][..]).unwrap();
        assert_eq!(try_lock_outcome(&granted), Outcome::Granted);
        let held = TxnResponse::decode(&[0x0a, 0x02, 0x18, 0x2a][..]).unwrap();
        assert_eq!(try_lock_outcome(&held), Outcome::Denied);
        let no_revision = TxnResponse {
            succeeded: true,
            ..TxnResponse::default()
        };
        assert_eq!(try_lock_outcome(&no_revision), Outcome::Unrecognized);

        // succeeded, responses[0] = range { kvs[0] = { key "k", value "o", lease 7 } },
        // responses[1] = delete_range { deleted 1 }.
        let released = TxnResponse::decode(
            &[
                0x10, 0x01, 0x1a, 0x0c, 0x0a, 0x0a, 0x12, 0x08, 0x0a, 0x01, b'k', 0x2a, 0x01, b'o',
                0x30, 0x07, 0x1a, 0x04, 0x1a, 0x02, 0x10, 0x01,
            ][..],
        )
        .unwrap();
        assert_eq!(
            unlock_outcome(&released),
            (Outcome::Unlocked(UNLOCK_SUCCESS), Some(7))
        );
        // Released, the key without a lease: nothing to revoke.
        let mut no_lease = released.clone();
        if let Some(Response::Range(r)) = &mut no_lease.responses[0].response {
            r.kvs[0].lease = 0;
        }
        assert_eq!(
            unlock_outcome(&no_lease),
            (Outcome::Unlocked(UNLOCK_SUCCESS), None)
        );
        // Not released: another owner's key is there (2), or no key at all (1).
        let others = TxnResponse {
            succeeded: false,
            responses: released.responses[..1].to_vec(),
            ..TxnResponse::default()
        };
        assert_eq!(
            unlock_outcome(&others),
            (Outcome::Unlocked(UNLOCK_OTHERS), None)
        );
        let absent = TxnResponse {
            responses: vec![ResponseOp {
                response: Some(Response::Range(RangeResponse::default())),
            }],
            ..TxnResponse::default()
        };
        assert_eq!(
            unlock_outcome(&absent),
            (Outcome::Unlocked(UNLOCK_NOT_FOUND), None)
        );
    }

    #[test]
    fn method_paths() {
        assert_eq!(TXN_PATH, "/etcdserverpb.KV/Txn");
        assert_eq!(LEASE_GRANT_PATH, "/etcdserverpb.Lease/LeaseGrant");
        assert_eq!(LEASE_REVOKE_PATH, "/etcdserverpb.Lease/LeaseRevoke");
    }
}

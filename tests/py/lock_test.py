"""The official Dapr Python SDK (dapr, pinned in requirements.txt) against a real dlockd.

tests/sdk_python.rs starts dlockd on free loopback ports and runs this file with
DAPR_HTTP_PORT and DAPR_GRPC_PORT pointing at it, as a Dapr application finds its sidecar.
DLOCKD_SUITE says which cases run: "lock" (no token) or "token" (DAPR_API_TOKEN set on both
sides, and a data dir, so grants carry a fencing token). "unix" runs the lock cases against a
dlockd serving its APIs on Unix sockets (--unix-domain-socket): the SDK reaches gRPC through
DAPR_GRPC_ENDPOINT=unix:///path and waits for the sidecar on the admin listener's health
probe (DAPR_HTTP_ENDPOINT), and the HTTP requests here go to DLOCKD_HTTP_SOCKET.
"""

import http.client
import json
import os
import socket
import threading
import time
import unittest
import warnings

import grpc
from dapr.clients import DaprClient
from dapr.clients.grpc._response import UnlockResponseStatus
from google.rpc import error_details_pb2
from grpc_status import rpc_status

warnings.filterwarnings("ignore", message="The Distributed Lock API is an Alpha version")

SUITE = os.environ.get("DLOCKD_SUITE", "lock")
STORE = "lockstore"
HTTP_PORT = int(os.environ.get("DAPR_HTTP_PORT", "0"))
HTTP_SOCKET = os.environ.get("DLOCKD_HTTP_SOCKET")


def unique(name):
    return f"{name}-{time.monotonic_ns()}"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix domain socket."""

    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def http_lock(resource, owner, expiry):
    """A try-lock over dlockd's HTTP API, for the mixed race."""
    if HTTP_SOCKET:
        c = UnixHTTPConnection(HTTP_SOCKET, 10)
    else:
        c = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=10)
    headers = {}
    if os.environ.get("DAPR_API_TOKEN"):
        headers["dapr-api-token"] = os.environ["DAPR_API_TOKEN"]
    body = json.dumps({"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry})
    c.request("POST", f"/v1.0-alpha1/lock/{STORE}", body, headers)
    r = c.getresponse()
    answer = json.loads(r.read())
    c.close()
    assert r.status == 200, answer
    return answer["success"]


class LockSuite(unittest.TestCase):
    """Start-up, every outcome, the context manager, errors, expiry, races."""

    @classmethod
    def setUpClass(cls):
        # DaprClient() waits on GET /v1.0/healthz/outbound over HTTP before it returns.
        started = time.monotonic()
        cls.client = DaprClient()
        cls.startup_s = time.monotonic() - started

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_startup_is_immediate(self):
        self.assertLess(self.startup_s, 5, "the SDK's sidecar wait passed at once")

    def test_every_outcome(self):
        r = unique("res")
        self.assertTrue(self.client.try_lock(STORE, r, "alice", 60).success)
        self.assertFalse(self.client.try_lock(STORE, r, "alice", 60).success, "not re-entrant")
        self.assertFalse(self.client.try_lock(STORE, r, "bob", 60).success)
        self.assertEqual(
            self.client.unlock(STORE, r, "bob").status, UnlockResponseStatus.lock_belongs_to_others
        )
        self.assertEqual(self.client.unlock(STORE, r, "alice").status, UnlockResponseStatus.success)
        self.assertEqual(
            self.client.unlock(STORE, r, "alice").status, UnlockResponseStatus.lock_does_not_exist
        )
        self.assertTrue(self.client.try_lock(STORE, r, "bob", 60).success)

    def test_context_manager_unlocks(self):
        r = unique("cm")
        with self.client.try_lock(STORE, r, "alice", 60) as lock:
            self.assertTrue(lock)
            self.assertFalse(self.client.try_lock(STORE, r, "bob", 60))
        # Unlocked when the block ended.
        self.assertTrue(self.client.try_lock(STORE, r, "bob", 60))

    def assert_rpc_error(self, call, code, message):
        with self.assertRaises(grpc.RpcError) as caught:
            call()
        self.assertEqual(caught.exception.code(), code)
        self.assertEqual(caught.exception.details(), message)

    def test_errors_surface_with_daprd_codes_and_messages(self):
        self.assert_rpc_error(
            lambda: self.client.try_lock("nope", "r", "o", 10),
            grpc.StatusCode.INVALID_ARGUMENT,
            "lock store nope not found",
        )
        self.assert_rpc_error(
            lambda: self.client.unlock("nope", "r", "o"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "lock store nope not found",
        )
        self.assert_rpc_error(
            lambda: self.client.try_lock(STORE, "a||b", "o", 10),
            grpc.StatusCode.INTERNAL,
            "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'",
        )
        # Other methods of the Dapr service are not served.
        with self.assertRaises(grpc.RpcError) as caught:
            self.client.get_state("statestore", "key")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_expiry(self):
        r = unique("exp")
        granted = time.monotonic()
        self.assertTrue(self.client.try_lock(STORE, r, "alice", 1))
        while True:
            asked = time.monotonic()
            if self.client.try_lock(STORE, r, "bob", 1):
                break
            self.assertLess(time.monotonic() - granted, 5, "the lease never expired")
            time.sleep(0.05)
        # Never earlier than its expiry (the server counts from when it received the call).
        self.assertGreaterEqual(time.monotonic() - granted, 1.0)
        self.assertGreaterEqual(asked - granted, 0.9)

    def test_race_has_one_winner(self):
        for round_ in range(5):
            r = unique(f"race{round_}")
            results = []
            start = threading.Barrier(20)

            def contend(owner):
                client = DaprClient()
                start.wait()
                results.append(bool(client.try_lock(STORE, r, owner, 60)))
                client.close()

            threads = [threading.Thread(target=contend, args=(f"o{i}",)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(results.count(True), 1, results)

    def test_http_and_grpc_contend_for_one_lock(self):
        # The same shards serve both faces: one winner across them, and a lock taken over one
        # face is held for the other.
        for round_ in range(5):
            r = unique(f"mixed{round_}")
            results = []
            start = threading.Barrier(16)

            def over_grpc(owner):
                client = DaprClient()
                start.wait()
                results.append(("grpc", bool(client.try_lock(STORE, r, owner, 60))))
                client.close()

            def over_http(owner):
                start.wait()
                results.append(("http", http_lock(r, owner, 60)))

            threads = [threading.Thread(target=over_grpc, args=(f"g{i}",)) for i in range(8)]
            threads += [threading.Thread(target=over_http, args=(f"h{i}",)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [face for face, won in results if won]
            self.assertEqual(len(winners), 1, results)
        r = unique("cross")
        self.assertTrue(http_lock(r, "web", 60))
        self.assertFalse(self.client.try_lock(STORE, r, "grpc", 60))
        self.assertEqual(self.client.unlock(STORE, r, "web").status, UnlockResponseStatus.success)
        self.assertTrue(self.client.try_lock(STORE, r, "grpc", 60))
        self.assertFalse(http_lock(r, "web", 60))


class TokenSuite(unittest.TestCase):
    """DAPR_API_TOKEN on both sides; a client without it or with another is refused. The
    server runs with a data dir, so grants carry a fencing token in the response metadata."""

    def test_token_is_sent_and_checked(self):
        with DaprClient() as client:
            r = unique("tok")
            lock = client.try_lock(STORE, r, "alice", 60)
            self.assertTrue(lock)
            fences = lock.headers.get("dapr-lock-fence", [])
            self.assertEqual(len(fences), 1, lock.headers)
            first = int(fences[0])
            self.assertEqual(client.unlock(STORE, r, "alice").status, UnlockResponseStatus.success)
            again = client.try_lock(STORE, r, "bob", 60)
            later = int(again.headers["dapr-lock-fence"][0])
            self.assertGreater(later, first, "fences grow")
        # Without the token, and with a wrong one: refused before any lock is taken.
        port = os.environ["DAPR_GRPC_PORT"]
        for metadata, message in [
            ((), "missing api token in request metadata"),
            ((("dapr-api-token", "wrong"),), "authentication error: api token mismatch"),
        ]:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(
                    "/dapr.proto.runtime.v1.Dapr/TryLockAlpha1",
                    request_serializer=lambda b: b,
                    response_deserializer=lambda b: b,
                )
                with self.assertRaises(grpc.RpcError) as caught:
                    # store_name "lockstore", resource_id "x", lock_owner "o", expiry 10
                    call(
                        b"\n\tlockstore\x12\x01x\x1a\x01o \n",
                        metadata=metadata,
                        timeout=10,
                    )
                # daprd's answer: `Unauthorized`, the text in a google.rpc.ErrorInfo detail.
                self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
                self.assertEqual(caught.exception.details(), "Unauthorized")
                status = rpc_status.from_call(caught.exception)
                self.assertEqual(status.code, grpc.StatusCode.UNAUTHENTICATED.value[0])
                self.assertEqual(status.message, "Unauthorized")
                self.assertEqual(len(status.details), 1)
                info = error_details_pb2.ErrorInfo()
                self.assertTrue(status.details[0].Unpack(info))
                self.assertEqual(info.reason, "Unauthorized")
                self.assertEqual(info.domain, "dapr.io")
                self.assertEqual(
                    dict(info.metadata), {"http.code": "401", "http.error_message": message}
                )


if __name__ == "__main__":
    suite = TokenSuite if SUITE == "token" else LockSuite
    result = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(suite)
    )
    raise SystemExit(0 if result.wasSuccessful() else 1)

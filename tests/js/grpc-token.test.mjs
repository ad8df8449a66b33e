// The API token through the official Dapr JavaScript SDK over gRPC, against dlockd started with
// DAPR_API_TOKEN=secret. This process gets DAPR_API_TOKEN=secret too, as a Dapr application
// does: the SDK reads it when a DaprClient is built (Settings.getDefaultApiToken) and its gRPC
// transport sends it as the `dapr-api-token` metadata of every call, the start-up GetMetadata
// included. Without it, or with another token, daprd refuses every call as UNAUTHENTICATED
// with a google.rpc.ErrorInfo saying why; the SDK's start-up then never sees the sidecar.
//
// Run by tests/sdk_js.rs; by hand: DAPR_API_TOKEN=secret DAPR_HTTP_PORT=3500
// DAPR_GRPC_PORT=50001 node --test grpc-token.test.mjs with `DAPR_API_TOKEN=secret dlockd`
// listening on 127.0.0.1:3500 and 127.0.0.1:50001.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LockStatus } from "@dapr/dapr/types/lock/UnlockResponse.js";
import {
  GET_METADATA,
  TRY_LOCK,
  UNLOCK,
  assertUnauthorized,
  connectError,
  grpcStatus,
  newGrpcClient,
  rejection,
  sdkGrpcError,
  startGrpcTee,
  withFastStartupPoll,
  withoutTokenInEnv,
} from "./support.mjs";

const STORE = "lockstore";
const TOKEN = "secret";
const MISSING = "missing api token in request metadata";
const MISMATCH = "authentication error: api token mismatch";
assert.equal(process.env.DAPR_API_TOKEN, TOKEN, "run with DAPR_API_TOKEN=secret");

/** A gRPC client built as in an application whose environment has no DAPR_API_TOKEN. */
function grpcClientWithoutToken(options = {}) {
  return withoutTokenInEnv(() => newGrpcClient(options));
}

/** `calls` of a gRPC tee as `path status` lines. */
const summary = (calls) => calls.map((c) => `${c.path} ${c.status}`);

describe("with DAPR_API_TOKEN=secret in the client's environment", () => {
  // The SDK's transport puts the token on every call, the start-up GetMetadata included,
  // and dlockd serves them all.
  it("start(), lock and unlock work, every call carrying dapr-api-token", async () => {
    const tee = await startGrpcTee();
    try {
      const c = newGrpcClient({ daprHost: "127.0.0.1", daprPort: tee.port });
      await c.start();
      assert.deepEqual(await c.lock.lock(STORE, "token-1", "owner-a", 30), { success: true });
      assert.deepEqual(await c.lock.lock(STORE, "token-1", "owner-b", 30), { success: false });
      assert.deepEqual(await c.lock.unlock(STORE, "token-1", "owner-b"), {
        status: LockStatus.LockBelongsToOthers,
      });
      assert.deepEqual(await c.lock.unlock(STORE, "token-1", "owner-a"), {
        status: LockStatus.Success,
      });
      assert.deepEqual(summary(tee.calls), [
        `${GET_METADATA} 0`,
        `${TRY_LOCK} 0`,
        `${TRY_LOCK} 0`,
        `${UNLOCK} 0`,
        `${UNLOCK} 0`,
      ]);
      for (const call of tee.calls) assert.equal(call.header("dapr-api-token"), TOKEN);
    } finally {
      await tee.close();
    }
  });

  // No options but the protocol: the port and the token both come from the environment.
  it("a client built from the environment alone: lock, health and metadata", async () => {
    const c = newGrpcClient();
    assert.deepEqual(await c.lock.lock(STORE, "token-env", "owner-a", 30), { success: true });
    assert.deepEqual(await c.lock.unlock(STORE, "token-env", "owner-a"), {
      status: LockStatus.Success,
    });
    assert.equal(await c.health.isHealthy(), true);
    assert.deepEqual((await c.metadata.get()).components, [
      { name: STORE, type: "lock.in-memory", version: "v1", capabilities: [] },
    ]);
  });

  // The token given as `daprApiToken`, with none in the environment, works the same.
  it("the token given as daprApiToken works", async () => {
    const c = grpcClientWithoutToken({ daprApiToken: TOKEN });
    assert.deepEqual(await c.lock.lock(STORE, "token-option", "owner-a", 30), { success: true });
    assert.deepEqual(await c.lock.unlock(STORE, "token-option", "owner-a"), {
      status: LockStatus.Success,
    });
  });

  // With the right token, dlockd's own error answers come through as they do without one.
  it("error answers still reach a client with the token", async () => {
    assert.deepEqual(
      await sdkGrpcError(newGrpcClient().lock.lock("nope", "r", "o", 30)),
      grpcStatus(3, "lock store nope not found"),
    );
  });
});

describe("without the token, or with another", () => {
  // The SDK's start-up calls GetMetadata, swallows its failure (isStarted answers false) and
  // retries 500 ms apart until its retry count passes 60, then throws. That, after about
  // 30.5 s, is what an application without the token sees, from daprd as from dlockd,
  // because GetMetadata needs the token. The poll is shortened here; the number of probes is
  // the SDK's: one, then 61 retries, each refused.
  it("start() never sees the sidecar: DAPR_SIDECAR_COULD_NOT_BE_STARTED", async () => {
    const tee = await startGrpcTee();
    try {
      const c = grpcClientWithoutToken({ daprHost: "127.0.0.1", daprPort: tee.port });
      const err = await withFastStartupPoll(() => rejection(c.start()));
      assert.equal(err.message, "DAPR_SIDECAR_COULD_NOT_BE_STARTED");
      assert.ok(!c.daprClient.getIsInitialized());
      assert.equal(tee.calls.length, 62, "one probe, then 61 retries");
      for (const call of tee.calls) {
        assert.equal(call.path, GET_METADATA);
        assert.equal(call.header("dapr-api-token"), undefined);
        assert.equal(call.status, 16);
        assert.equal(call.message, "Unauthorized");
      }
    } finally {
      await tee.close();
    }
  });

  // A lock call on a client not yet started starts it first: the same error, and no lock
  // call ever reaches the server. A wrong token fails the same way.
  it("a first lock() fails the same way, before any lock call is sent", async () => {
    const clients = [
      grpcClientWithoutToken,
      (options) => newGrpcClient({ ...options, daprApiToken: "not-the-secret" }),
    ];
    for (const build of clients) {
      const tee = await startGrpcTee();
      try {
        const c = build({ daprHost: "127.0.0.1", daprPort: tee.port });
        const err = await withFastStartupPoll(() => rejection(c.lock.lock(STORE, "r", "o", 30)));
        assert.equal(err.message, "DAPR_SIDECAR_COULD_NOT_BE_STARTED");
        assert.equal(tee.calls.length, 62);
        assert.ok(tee.calls.every((call) => call.path === GET_METADATA && call.status === 16));
      } finally {
        await tee.close();
      }
    }
  });

  // The refusal itself, seen through the SDK's own ConnectRPC client stub (what start(), the
  // health check and the lock calls use), without starting: every method is refused as
  // daprd refuses it, with the reason in the ErrorInfo detail.
  it("GetMetadata, TryLockAlpha1 and UnlockAlpha1: UNAUTHENTICATED with daprd's ErrorInfo", async () => {
    const callers = [
      [grpcClientWithoutToken(), MISSING],
      [newGrpcClient({ daprApiToken: "not-the-secret" }), MISMATCH],
      [newGrpcClient({ daprApiToken: TOKEN.slice(0, -1) }), MISMATCH],
    ];
    for (const [c, text] of callers) {
      const stub = await c.daprClient.getClient(false);
      assertUnauthorized(await connectError(stub.getMetadata({})), text);
      for (const expiryInSeconds of [30, 0]) {
        const request = { storeName: STORE, resourceId: "token-2", lockOwner: "o", expiryInSeconds };
        assertUnauthorized(await connectError(stub.tryLockAlpha1(request)), text);
      }
      const unlock = { storeName: "nope", resourceId: "", lockOwner: "" };
      assertUnauthorized(await connectError(stub.unlockAlpha1(unlock)), text);
    }
  });

  // Past start-up, the SDK's own lock, unlock and metadata calls surface the refusal as the
  // ConnectError; its health check answers false. To get there without the token the client
  // is marked started with the SDK's own (internal) setIsInitialized, which is what a
  // successful start() does; the calls that follow are the SDK's own, unchanged.
  it("lock, unlock, metadata refused; isHealthy() false; nothing is taken", async () => {
    const c = grpcClientWithoutToken();
    c.daprClient.setIsInitialized(true);
    assertUnauthorized(await connectError(c.lock.lock(STORE, "token-3", "o", 30)), MISSING);
    assertUnauthorized(await connectError(c.lock.unlock(STORE, "token-3", "o")), MISSING);
    assertUnauthorized(await connectError(c.metadata.get()), MISSING);
    assert.equal(await c.health.isHealthy(), false);

    const wrong = newGrpcClient({ daprApiToken: "not-the-secret" });
    wrong.daprClient.setIsInitialized(true);
    assertUnauthorized(await connectError(wrong.lock.lock(STORE, "token-3", "o", 30)), MISMATCH);
    assert.equal(await wrong.health.isHealthy(), false);

    // The refused lock took nothing: a client with the token gets it.
    const withToken = newGrpcClient();
    assert.deepEqual(await withToken.lock.lock(STORE, "token-3", "owner-b", 30), {
      success: true,
    });
    // And a refused unlock released nothing.
    assertUnauthorized(await connectError(c.lock.unlock(STORE, "token-3", "owner-b")), MISSING);
    assert.deepEqual(await withToken.lock.lock(STORE, "token-3", "owner-c", 30), {
      success: false,
    });
    assert.deepEqual(await withToken.lock.unlock(STORE, "token-3", "owner-b"), {
      status: LockStatus.Success,
    });
  });
});

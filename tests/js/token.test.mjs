// The API token through the official Dapr JavaScript SDK, against dlockd started with
// DAPR_API_TOKEN=secret. This process gets DAPR_API_TOKEN=secret too, as a Dapr application
// does: the SDK reads it when a DaprClient is built (Settings.getDefaultApiToken) and sends it
// as `dapr-api-token` on every request, the start-up probe included.
//
// Run by tests/sdk_js.rs; by hand: DAPR_API_TOKEN=secret DAPR_HTTP_PORT=3500 node --test
// token.test.mjs with `DAPR_API_TOKEN=secret dlockd` listening on 127.0.0.1:3500.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LockStatus } from "@dapr/dapr/types/lock/UnlockResponse.js";
import {
  daprError,
  newClient,
  rejection,
  sdkHttpError,
  startTee,
  withFastStartupPoll,
  withoutTokenInEnv,
} from "./support.mjs";

const STORE = "lockstore";
const TOKEN = "secret";
assert.equal(process.env.DAPR_API_TOKEN, TOKEN, "run with DAPR_API_TOKEN=secret");

/** Builds a client as an application whose environment has no DAPR_API_TOKEN would. */
function clientWithoutTokenInEnv(options = {}) {
  return withoutTokenInEnv(() => newClient(options));
}

/** dlockd's 401, as daprd's middleware writes it with Go's http.Error. */
function assertUnauthorized(exchange) {
  assert.equal(exchange.response.status, 401);
  assert.equal(exchange.response.header("content-type"), "text/plain; charset=utf-8");
  assert.equal(exchange.response.body, "invalid api token\n");
}

describe("with DAPR_API_TOKEN=secret in the client's environment", () => {
  it("start(), lock and unlock work, every request carrying dapr-api-token", async () => {
    const tee = await startTee();
    try {
      const c = newClient({ daprHost: "127.0.0.1", daprPort: tee.port });
      await c.start();
      assert.deepEqual(await c.lock.lock(STORE, "token-1", "owner-a", 30), { success: true });
      assert.deepEqual(await c.lock.lock(STORE, "token-1", "owner-b", 30), { success: false });
      assert.deepEqual(await c.lock.unlock(STORE, "token-1", "owner-a"), {
        status: LockStatus.Success,
      });
      assert.deepEqual(
        tee.exchanges.map((e) => `${e.method} ${e.path} ${e.response.status}`),
        [
          "GET /v1.0/metadata 200",
          "POST /v1.0-alpha1/lock/lockstore 200",
          "POST /v1.0-alpha1/lock/lockstore 200",
          "POST /v1.0-alpha1/unlock/lockstore 200",
        ],
      );
      for (const e of tee.exchanges) assert.equal(e.header("dapr-api-token"), TOKEN);
    } finally {
      await tee.close();
    }
  });

  // No options at all: the port and the token both come from the environment.
  it("a client built from the environment alone works", async () => {
    const c = newClient();
    await c.start();
    assert.deepEqual(await c.lock.lock(STORE, "token-env", "owner-a", 30), { success: true });
    assert.deepEqual(await c.lock.unlock(STORE, "token-env", "owner-a"), {
      status: LockStatus.Success,
    });
  });
});

describe("without the token in the client's environment", () => {
  // The SDK's start-up probe swallows the 401 (isStarted catches every error and answers
  // false) and retries 500 ms apart until its retry count passes 60 (61 retries), then gives
  // up. That, after about 30.5 s, is what an application without the token sees, from daprd
  // as from dlockd, because /v1.0/metadata needs the token and only the two health checks do
  // not. The poll is shortened here; the number of probes is the SDK's.
  it("start() never sees the sidecar: DAPR_SIDECAR_COULD_NOT_BE_STARTED", async () => {
    const tee = await startTee();
    try {
      const c = clientWithoutTokenInEnv({ daprHost: "127.0.0.1", daprPort: tee.port });
      const err = await withFastStartupPoll(() => rejection(c.start()));
      assert.equal(err.message, "DAPR_SIDECAR_COULD_NOT_BE_STARTED");
      assert.ok(!c.getIsInitialized());
      assert.equal(tee.exchanges.length, 62, "one probe, then 61 retries");
      for (const e of tee.exchanges) {
        assert.equal(`${e.method} ${e.path}`, "GET /v1.0/metadata");
        assert.equal(e.header("dapr-api-token"), undefined);
        assertUnauthorized(e);
      }
    } finally {
      await tee.close();
    }
  });

  // A lock call on a client not yet started starts it first: the same error, and no lock
  // request ever reaches the server.
  it("a first lock() fails the same way, before any lock request is sent", async () => {
    const tee = await startTee();
    try {
      const c = clientWithoutTokenInEnv({ daprHost: "127.0.0.1", daprPort: tee.port });
      const err = await withFastStartupPoll(() => rejection(c.lock.lock(STORE, "r", "o", 30)));
      assert.equal(err.message, "DAPR_SIDECAR_COULD_NOT_BE_STARTED");
      assert.ok(tee.exchanges.every((e) => e.path === "/v1.0/metadata"));
    } finally {
      await tee.close();
    }
  });

  // Past start-up, a 401 on a lock route surfaces as the SDK's HTTP error. To get there
  // without the token the client is marked started with the SDK's own (internal)
  // setIsInitialized, which is what a successful start() does; the request that follows is
  // the SDK's own, unchanged.
  it("lock and unlock answered 401 surface as the SDK's HTTP error; nothing is taken", async () => {
    const tee = await startTee();
    try {
      const c = clientWithoutTokenInEnv({ daprHost: "127.0.0.1", daprPort: tee.port });
      c.daprClient.setIsInitialized(true);
      const unauthorized = { error: "Unauthorized", error_msg: "invalid api token\n", status: 401 };
      assert.deepEqual(await sdkHttpError(c.lock.lock(STORE, "token-2", "o", 30)), unauthorized);
      assert.deepEqual(await sdkHttpError(c.lock.unlock(STORE, "token-2", "o")), unauthorized);
      assert.deepEqual(
        tee.exchanges.map((e) => `${e.method} ${e.path}`),
        ["POST /v1.0-alpha1/lock/lockstore", "POST /v1.0-alpha1/unlock/lockstore"],
      );
      tee.exchanges.forEach(assertUnauthorized);
    } finally {
      await tee.close();
    }
    // The refused lock took nothing: a client with the token gets it.
    const withToken = newClient();
    assert.deepEqual(await withToken.lock.lock(STORE, "token-2", "owner-b", 30), {
      success: true,
    });
    assert.deepEqual(await withToken.lock.unlock(STORE, "token-2", "owner-b"), {
      status: LockStatus.Success,
    });
  });

  it("a wrong token is refused the same way", async () => {
    const c = newClient({ daprApiToken: "not-the-secret" });
    c.daprClient.setIsInitialized(true);
    assert.deepEqual(await sdkHttpError(c.lock.lock(STORE, "token-3", "o", 30)), {
      error: "Unauthorized",
      error_msg: "invalid api token\n",
      status: 401,
    });
    // And a dlockd error answer still reaches a client with the right token as JSON.
    assert.deepEqual(
      await sdkHttpError(newClient().lock.lock("nope", "r", "o", 30)),
      daprError(400, "ERR_LOCK_STORE_NOT_FOUND", "lock store nope not found"),
    );
  });
});

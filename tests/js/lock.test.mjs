// dlockd through the official Dapr JavaScript SDK (@dapr/dapr, HTTP protocol), against a
// server without an API token whose stores are `lockstore` and `orders store`. An application
// that works against daprd must work here unchanged: the SDK's start-up wait, every lock and
// unlock outcome, the error answers as the SDK surfaces them, expiry, and a race of owners.
//
// Run by tests/sdk_js.rs; by hand: DAPR_HTTP_PORT=3500 node --test lock.test.mjs with
// `dlockd --store lockstore --store "orders store"` listening on 127.0.0.1:3500.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LockStatus } from "@dapr/dapr/types/lock/UnlockResponse.js";
import {
  SDK_VERSION,
  daprError,
  newClient,
  pollUntil,
  sdkHttpError,
  startTee,
} from "./support.mjs";

const STORE = "lockstore";
const SPACED_STORE = "orders store";

// One started client for the cases that do not look at the wire.
let client;
before(async () => {
  client = newClient();
  await client.start();
});
// stop() destroys the SDK's shared keep-alive agents, so that the process can exit.
after(() => client.stop());

describe("start-up and the wire", () => {
  // start() waits on the sidecar by polling GET /v1.0/metadata (HTTPClientSidecar.isStarted)
  // until it answers 2xx with a body; dlockd's first answer must satisfy it, so exactly one
  // probe is sent and no 500 ms retry delay is paid.
  it("start() sends one GET /v1.0/metadata and accepts dlockd's answer", async () => {
    const tee = await startTee();
    try {
      const c = newClient({ daprHost: "127.0.0.1", daprPort: tee.port });
      await c.start();
      assert.ok(c.getIsInitialized());

      assert.equal(tee.exchanges.length, 1);
      const [probe] = tee.exchanges;
      assert.equal(probe.method, "GET");
      assert.equal(probe.path, "/v1.0/metadata");
      assert.equal(probe.version, "HTTP/1.1");
      assert.equal(probe.header("user-agent"), `dapr-sdk-js/v${SDK_VERSION} http/1`);
      assert.equal(probe.header("connection"), "keep-alive");
      assert.equal(probe.header("dapr-api-token"), undefined);
      assert.equal(probe.body, "");

      const answer = probe.response;
      assert.equal(answer.status, 200);
      assert.equal(answer.header("content-type"), "application/json");
      const metadata = JSON.parse(answer.body);
      assert.deepEqual(Object.keys(metadata), ["id", "runtimeVersion", "extended", "components"]);
      assert.deepEqual(metadata.components, [
        { name: STORE, type: "lock.in-memory", version: "v1" },
        { name: SPACED_STORE, type: "lock.in-memory", version: "v1" },
      ]);
    } finally {
      await tee.close();
    }
  });

  // The SDK's first call starts the client itself; then lock and unlock are one POST each,
  // a JSON body with the fields in the SDK's order, on one kept-alive connection. The store
  // name goes into the path unencoded by the SDK; node-fetch percent-encodes the space.
  it("lock and unlock as the SDK sends them, and dlockd's exact answers", async () => {
    const tee = await startTee();
    try {
      const c = newClient({ daprHost: "127.0.0.1", daprPort: tee.port });
      assert.deepEqual(await c.lock.lock(SPACED_STORE, "wire-1", "owner-a", 30), {
        success: true,
      });
      assert.deepEqual(await c.lock.unlock(SPACED_STORE, "wire-1", "owner-a"), {
        status: LockStatus.Success,
      });

      const [probe, lock, unlock] = tee.exchanges;
      assert.equal(tee.exchanges.length, 3);
      assert.equal(`${probe.method} ${probe.path}`, "GET /v1.0/metadata");

      assert.equal(`${lock.method} ${lock.path}`, "POST /v1.0-alpha1/lock/orders%20store");
      assert.equal(lock.header("content-type"), "application/json");
      assert.equal(lock.header("user-agent"), `dapr-sdk-js/v${SDK_VERSION} http/1`);
      assert.equal(lock.body, '{"resourceId":"wire-1","lockOwner":"owner-a","expiryInSeconds":30}');
      assert.equal(lock.response.status, 200);
      assert.equal(lock.response.header("content-type"), "application/json");
      assert.equal(lock.response.body, '{"success":true}');

      assert.equal(`${unlock.method} ${unlock.path}`, "POST /v1.0-alpha1/unlock/orders%20store");
      assert.equal(unlock.body, '{"resourceId":"wire-1","lockOwner":"owner-a"}');
      assert.equal(unlock.response.status, 200);
      assert.equal(unlock.response.body, '{"status":0}');

      assert.equal(tee.connections, 1, "the SDK's keep-alive connection was not reused");
    } finally {
      await tee.close();
    }
  });
});

describe("lock and unlock outcomes", () => {
  it("granted; refused while held, also to the holder; unlock by others, by the holder, twice", async () => {
    const r = "outcomes-1";
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 30), { success: true });
    // Held by another owner: refused, and `false` is a real value, not a missing field.
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-b", 30), { success: false });
    // Not re-entrant: the holder asking again is refused too.
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 30), { success: false });
    // Another owner's unlock changes nothing.
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-b"), {
      status: LockStatus.LockBelongsToOthers,
    });
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-c", 30), { success: false });
    // The holder's unlock releases it; a second unlock finds nothing.
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-a"), {
      status: LockStatus.Success,
    });
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-a"), {
      status: LockStatus.LockDoesNotExist,
    });
    // Free again: anyone may take it.
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-b", 30), { success: true });
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-b"), {
      status: LockStatus.Success,
    });
  });

  it("unlock of a resource never locked: LockDoesNotExist", async () => {
    assert.deepEqual(await client.lock.unlock(STORE, "never-locked", "owner-a"), {
      status: LockStatus.LockDoesNotExist,
    });
  });

  // Stores are separate namespaces; the second one's name has a space, which only works if
  // the percent-encoded path is decoded as daprd's router does.
  it("the same resource in two stores is two locks", async () => {
    const r = "two-stores";
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 30), { success: true });
    assert.deepEqual(await client.lock.lock(SPACED_STORE, r, "owner-b", 30), { success: true });
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-b"), {
      status: LockStatus.LockBelongsToOthers,
    });
    assert.deepEqual(await client.lock.unlock(SPACED_STORE, r, "owner-b"), {
      status: LockStatus.Success,
    });
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-a"), {
      status: LockStatus.Success,
    });
  });

  it("non-ASCII resource ids and owners round-trip", async () => {
    const r = "订单-42 ✓";
    assert.deepEqual(await client.lock.lock(STORE, r, "wörker-ä", 30), { success: true });
    assert.deepEqual(await client.lock.lock(STORE, r, "wörker-b", 30), { success: false });
    assert.deepEqual(await client.lock.unlock(STORE, r, "wörker-ä"), {
      status: LockStatus.Success,
    });
  });
});

describe("errors surface as the SDK's HTTP errors", () => {
  // HTTPClient.execute throws for any status outside 200..399; the body arrives as raw text
  // in `error_msg`, so these compare dlockd's bytes exactly.
  it("unknown store: 400 ERR_LOCK_STORE_NOT_FOUND, on lock and unlock", async () => {
    const expected = daprError(400, "ERR_LOCK_STORE_NOT_FOUND", "lock store nope not found");
    assert.deepEqual(await sdkHttpError(client.lock.lock("nope", "r", "o", 30)), expected);
    assert.deepEqual(await sdkHttpError(client.lock.unlock("nope", "r", "o")), expected);
  });

  it("store names are case-sensitive", async () => {
    assert.deepEqual(
      await sdkHttpError(client.lock.lock("LockStore", "r", "o", 30)),
      daprError(400, "ERR_LOCK_STORE_NOT_FOUND", "lock store LockStore not found"),
    );
  });

  it("empty resourceId: 400 ERR_MALFORMED_REQUEST, on lock and unlock", async () => {
    const expected = daprError(
      400,
      "ERR_MALFORMED_REQUEST",
      "ResourceId is empty in lock store lockstore",
    );
    assert.deepEqual(await sdkHttpError(client.lock.lock(STORE, "", "o", 30)), expected);
    assert.deepEqual(await sdkHttpError(client.lock.unlock(STORE, "", "o")), expected);
  });

  it("empty lockOwner: 400 ERR_MALFORMED_REQUEST, on lock and unlock", async () => {
    const expected = daprError(
      400,
      "ERR_MALFORMED_REQUEST",
      "LockOwner is empty in lock store lockstore",
    );
    assert.deepEqual(await sdkHttpError(client.lock.lock(STORE, "r", "", 30)), expected);
    assert.deepEqual(await sdkHttpError(client.lock.unlock(STORE, "r", "")), expected);
  });

  it("expiry zero or negative: 400 not positive", async () => {
    const expected = daprError(
      400,
      "ERR_MALFORMED_REQUEST",
      "ExpiryInSeconds is not positive in lock store lockstore",
    );
    for (const expiry of [0, -1]) {
      assert.deepEqual(await sdkHttpError(client.lock.lock(STORE, "r", "o", expiry)), expected);
    }
    // `undefined` drops the field from the SDK's JSON: missing is not positive either.
    assert.deepEqual(await sdkHttpError(client.lock.lock(STORE, "r", "o", undefined)), expected);
  });

  // The SDK passes a JS number through JSON.stringify; one that is not an int32 is a
  // malformed body. The detail after the prefix is free text, as daprd's is.
  it("expiry not an int32 (1.5, 2^31): 400 failed deserializing", async () => {
    for (const expiry of [1.5, 2 ** 31]) {
      const err = await sdkHttpError(client.lock.lock(STORE, "r", "o", expiry));
      assert.equal(err.status, 400);
      assert.equal(err.error, "Bad Request");
      const body = JSON.parse(err.error_msg);
      assert.equal(body.errorCode, "ERR_MALFORMED_REQUEST");
      assert.match(body.message, /^failed deserializing HTTP body: /);
    }
  });

  // daprd's order: expiry first, then empty fields, then the store lookup.
  it("validation order: expiry, then resourceId, then the store", async () => {
    assert.deepEqual(
      await sdkHttpError(client.lock.lock("nope", "", "", 0)),
      daprError(400, "ERR_MALFORMED_REQUEST", "ExpiryInSeconds is not positive in lock store nope"),
    );
    assert.deepEqual(
      await sdkHttpError(client.lock.lock("nope", "", "", 30)),
      daprError(400, "ERR_MALFORMED_REQUEST", "ResourceId is empty in lock store nope"),
    );
    assert.deepEqual(
      await sdkHttpError(client.lock.unlock("nope", "r", "")),
      daprError(400, "ERR_MALFORMED_REQUEST", "LockOwner is empty in lock store nope"),
    );
  });

  // lock.redis refuses `||` in a key; daprd answers 500 with the store's error.
  it("resourceId with '||': 500 ERR_TRY_LOCK / ERR_UNLOCK", async () => {
    const cause = "input key/keyPrefix 'a||b' can't contain '||'";
    assert.deepEqual(
      await sdkHttpError(client.lock.lock(STORE, "a||b", "o", 30)),
      daprError(500, "ERR_TRY_LOCK", `failed to try acquiring lock: ${cause}`),
    );
    assert.deepEqual(
      await sdkHttpError(client.lock.unlock(STORE, "a||b", "o")),
      daprError(500, "ERR_UNLOCK", `failed to release lock: ${cause}`),
    );
  });

  it("the client keeps working after error answers", async () => {
    assert.deepEqual(await client.lock.lock(STORE, "after-errors", "o", 30), { success: true });
    assert.deepEqual(await client.lock.unlock(STORE, "after-errors", "o"), {
      status: LockStatus.Success,
    });
  });
});

describe("expiry", () => {
  // A 1-second lease is refused to others while it lives, never frees early, and frees
  // without an unlock; the old owner's unlock then says whose it is.
  it("a 1 s lease is free again after it lapses, not before", async () => {
    const r = "expiry-1";
    const sentMs = performance.now();
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 1), { success: true });
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-b", 1), { success: false });
    const waitedMs = await pollUntil(
      async () => (await client.lock.lock(STORE, r, "owner-b", 30)).success,
      { what: "owner-b taking the lapsed lease", limitMs: 5000 },
    );
    const freeAfterMs = performance.now() - sentMs;
    assert.ok(freeAfterMs >= 1000, `free ${freeAfterMs.toFixed(0)} ms after the grant was sent`);
    assert.ok(waitedMs < 5000);
    // owner-b took it since: owner-a's unlock leaves it alone.
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-a"), {
      status: LockStatus.LockBelongsToOthers,
    });
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-b"), {
      status: LockStatus.Success,
    });
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-a"), {
      status: LockStatus.LockDoesNotExist,
    });
  });

  // The holder asking again is refused and does not extend the lease: had the re-lock sent
  // at about 500 ms extended it, it could not free before that send + 1000 ms. The margin
  // for the polling is the 500 ms between the grant's answer and the re-lock.
  it("a refused re-lock by the holder does not extend the lease", async () => {
    const r = "expiry-2";
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 1), { success: true });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const relockSentMs = performance.now();
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 1), { success: false });
    await pollUntil(async () => (await client.lock.lock(STORE, r, "owner-b", 30)).success, {
      what: "owner-b taking the lapsed lease",
      limitMs: 5000,
    });
    const sinceRelockMs = performance.now() - relockSentMs;
    assert.ok(sinceRelockMs < 1000, `freed ${sinceRelockMs.toFixed(0)} ms after the re-lock`);
    assert.deepEqual(await client.lock.unlock(STORE, r, "owner-b"), {
      status: LockStatus.Success,
    });
  });
});

describe("race", () => {
  // 50 owners ask for one resource at once, over the SDK's pool (one connection each, spread
  // over dlockd's workers): exactly one wins, every other is refused, and only the winner's
  // unlock releases it. Five rounds, each on a fresh resource.
  it("50 concurrent owners on one resource: exactly one success, five rounds", async () => {
    const owners = Array.from({ length: 50 }, (_, i) => `racer-${i}`);
    for (let round = 0; round < 5; round += 1) {
      const r = `race-${round}`;
      const answers = await Promise.all(owners.map((o) => client.lock.lock(STORE, r, o, 30)));
      const winners = owners.filter((_, i) => answers[i].success === true);
      assert.equal(winners.length, 1, `round ${round}: winners ${winners}`);
      assert.equal(answers.filter((a) => a.success === false).length, owners.length - 1);
      const loser = owners.find((o) => o !== winners[0]);
      assert.deepEqual(await client.lock.unlock(STORE, r, loser), {
        status: LockStatus.LockBelongsToOthers,
      });
      assert.deepEqual(await client.lock.unlock(STORE, r, winners[0]), {
        status: LockStatus.Success,
      });
    }
  });
});

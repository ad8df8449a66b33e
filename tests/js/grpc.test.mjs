// dlockd through the official Dapr JavaScript SDK (@dapr/dapr) over gRPC: the SDK created with
// communicationProtocol GRPC speaks ConnectRPC's gRPC transport to dapr.proto.runtime.v1.Dapr,
// against a server without an API token whose stores are `lockstore` and `orders store` and
// whose app id is `checkout`. An application that works against daprd over gRPC must work here
// unchanged: the SDK's start-up wait (GetMetadata), its health check and metadata, every lock
// and unlock outcome, the errors as the SDK surfaces them (ConnectError), expiry, races of
// owners, and the same locks as an HTTP client sees.
//
// Run by tests/sdk_js.rs; by hand: DAPR_HTTP_PORT=3500 DAPR_GRPC_PORT=50001 node --test
// grpc.test.mjs with `dlockd --store lockstore --store "orders store" --app-id checkout`
// listening on 127.0.0.1:3500 and 127.0.0.1:50001.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CommunicationProtocolEnum, DaprClient } from "@dapr/dapr";
import { LockStatus } from "@dapr/dapr/types/lock/UnlockResponse.js";
import {
  GET_METADATA,
  TRY_LOCK,
  UNLOCK,
  connectError,
  grpcPort,
  grpcStatus,
  newClient,
  newGrpcClient,
  pollUntil,
  sdkGrpcError,
  sdkHttpError,
  startGrpcTee,
} from "./support.mjs";

const STORE = "lockstore";
const SPACED_STORE = "orders store";
const APP_ID = "checkout";
const INVALID_ARGUMENT = 3;
const INTERNAL = 13;

// One started gRPC client, and one HTTP client for the cases across protocols.
let client;
let httpClient;
before(async () => {
  client = newGrpcClient();
  await client.start();
  httpClient = newClient();
  await httpClient.start();
});
// The HTTP client's stop() destroys the SDK's shared keep-alive agents, so that the process can
// exit; the gRPC client's is the SDK's no-op.
after(async () => {
  await client.stop();
  await httpClient.stop();
});

/** `calls` of a gRPC tee as `path status` lines. */
const summary = (calls) => calls.map((c) => `${c.path} ${c.status}`);

describe("start-up, health and metadata", () => {
  // start() waits on the sidecar by calling GetMetadata (GRPCClientSidecar.isStarted), and
  // retries 500 ms apart, for about 30 s, while it fails. dlockd's first answer must satisfy
  // it: exactly one GetMetadata, answered OK, so no retry delay is paid.
  it("start() sends one GetMetadata and accepts dlockd's answer", async () => {
    const tee = await startGrpcTee();
    try {
      const c = newGrpcClient({ daprHost: "127.0.0.1", daprPort: tee.port });
      const startMs = performance.now();
      await c.start();
      const tookMs = performance.now() - startMs;
      assert.ok(c.daprClient.getIsInitialized());
      assert.deepEqual(summary(tee.calls), [`${GET_METADATA} 0`]);
      assert.ok(tookMs < 5000, `start() took ${tookMs.toFixed(0)} ms`);
      const [probe] = tee.calls;
      assert.equal(probe.header(":method"), "POST");
      assert.equal(probe.header("content-type"), "application/grpc+proto");
      assert.equal(probe.header("te"), "trailers");
      assert.equal(probe.header("dapr-api-token"), undefined);
    } finally {
      await tee.close();
    }
  });

  // The first call on a client never started starts it: one GetMetadata, then the lock call,
  // both OK, promptly, and every later call, errors included, on the same HTTP/2 connection.
  it("the first lock() starts the client; then one connection carries every call", async () => {
    const tee = await startGrpcTee();
    try {
      const c = newGrpcClient({ daprHost: "127.0.0.1", daprPort: tee.port });
      const sentMs = performance.now();
      assert.deepEqual(await c.lock.lock(SPACED_STORE, "wire-1", "owner-a", 30), {
        success: true,
      });
      const firstMs = performance.now() - sentMs;
      assert.ok(firstMs < 5000, `the first lock() took ${firstMs.toFixed(0)} ms`);
      assert.deepEqual(summary(tee.calls), [`${GET_METADATA} 0`, `${TRY_LOCK} 0`]);

      await connectError(c.lock.lock("nope", "wire-1", "owner-a", 30));
      assert.deepEqual(await c.lock.unlock(SPACED_STORE, "wire-1", "owner-a"), {
        status: LockStatus.Success,
      });
      assert.deepEqual(summary(tee.calls), [
        `${GET_METADATA} 0`,
        `${TRY_LOCK} 0`,
        `${TRY_LOCK} ${INVALID_ARGUMENT}`,
        `${UNLOCK} 0`,
      ]);
      assert.equal(decodeURIComponent(tee.calls[2].message), "lock store nope not found");
      assert.equal(tee.sessions, 1, "the SDK's HTTP/2 connection was not reused");
    } finally {
      await tee.close();
    }
  });

  // Over gRPC the SDK's health check is a GetMetadata call that must succeed.
  it("health.isHealthy() is true, by one GetMetadata", async () => {
    const tee = await startGrpcTee();
    try {
      const c = newGrpcClient({ daprHost: "127.0.0.1", daprPort: tee.port });
      await c.start();
      assert.equal(await c.health.isHealthy(), true);
      assert.deepEqual(summary(tee.calls), [`${GET_METADATA} 0`, `${GET_METADATA} 0`]);
    } finally {
      await tee.close();
    }
  });

  // metadata.get() maps GetMetadata's answer: the app id (--app-id), no actors, daprd's
  // runtime version key, and each store as a registered component in configuration order,
  // with daprd's type and version and no capabilities (daprd lists none for lock stores).
  it("metadata.get(): the app id and the stores as components", async () => {
    const metadata = await client.metadata.get();
    assert.deepEqual(Object.keys(metadata), ["id", "actors", "extended", "components"]);
    assert.equal(metadata.id, APP_ID);
    assert.deepEqual(metadata.actors, []);
    assert.deepEqual(Object.keys(metadata.extended), ["daprRuntimeVersion"]);
    assert.match(metadata.extended.daprRuntimeVersion, /^\d+\.\d+\.\d+/);
    assert.deepEqual(metadata.components, [
      { name: STORE, type: "lock.in-memory", version: "v1", capabilities: [] },
      { name: SPACED_STORE, type: "lock.in-memory", version: "v1", capabilities: [] },
    ]);
  });

  // The HTTP face's /v1.0/metadata names the same app, version and stores.
  it("metadata.get() says the same over HTTP and gRPC", async () => {
    const overGrpc = await client.metadata.get();
    const overHttp = await httpClient.metadata.get();
    assert.equal(overHttp.id, overGrpc.id);
    assert.equal(overHttp.runtimeVersion, overGrpc.extended.daprRuntimeVersion);
    assert.deepEqual(
      overHttp.components,
      overGrpc.components.map(({ name, type, version }) => ({ name, type, version })),
    );
  });

  // daprd's GetMetadata puts daprRuntimeVersion in the extended metadata, and its HTTP
  // /v1.0/metadata is built from the same answer, so an application reads the same
  // `extended` in either mode.
  it(
    "metadata.get().extended is the same over HTTP and gRPC",
    async () => {
      const overGrpc = await client.metadata.get();
      const overHttp = await httpClient.metadata.get();
      assert.deepEqual(overHttp.extended, overGrpc.extended);
    },
  );
});

describe("lock and unlock outcomes", () => {
  // The lock's whole life over gRPC, with the SDK's values: `{success}` from TryLockAlpha1,
  // and UnlockAlpha1's status enum mapped to LockStatus (0 Success, 1 LockDoesNotExist,
  // 2 LockBelongsToOthers).
  it("granted; refused while held, also to the holder; unlock by others, by the holder, twice", async () => {
    const r = "outcomes-1";
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 30), { success: true });
    // Held by another owner: refused, `false` read from the answer's default field.
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

  // An unlock that finds no lock is a status, not an error.
  it("unlock of a resource never locked: LockDoesNotExist", async () => {
    assert.deepEqual(await client.lock.unlock(STORE, "never-locked", "owner-a"), {
      status: LockStatus.LockDoesNotExist,
    });
  });

  // Stores are separate namespaces; over gRPC the store name with its space goes as it is.
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

  // Ids are UTF-8 strings on the wire; a lock on one is held and released by that exact id.
  it("non-ASCII resource ids and owners round-trip", async () => {
    const r = "订单-42 ✓";
    assert.deepEqual(await client.lock.lock(STORE, r, "wörker-ä", 30), { success: true });
    assert.deepEqual(await client.lock.lock(STORE, r, "wörker-b", 30), { success: false });
    assert.deepEqual(await client.lock.unlock(STORE, r, "wörker-ä"), {
      status: LockStatus.Success,
    });
  });
});

describe("the SDK's distributed-lock example", () => {
  // The client as the SDK's examples/distributedLock applications build it (host, the gRPC
  // port, the protocol; nothing else), and their sequence: lock, unlock, unlock again, lock;
  // and from a second application, the lock held by the first refused and not released.
  it("runs as its applications do", async () => {
    const example = () =>
      new DaprClient({
        daprHost: "127.0.0.1",
        daprPort: grpcPort(),
        communicationProtocol: CommunicationProtocolEnum.GRPC,
      });
    const first = example();
    const r = "resourceId";
    assert.deepEqual(await first.lock.lock(STORE, r, "owner1", 1000), { success: true });
    assert.deepEqual(await first.lock.unlock(STORE, r, "owner1"), {
      status: LockStatus.Success,
    });
    assert.deepEqual(await first.lock.unlock(STORE, r, "owner1"), {
      status: LockStatus.LockDoesNotExist,
    });
    assert.deepEqual(await first.lock.lock(STORE, r, "owner1", 25), { success: true });

    const second = example();
    assert.deepEqual(await second.lock.lock(STORE, r, "owner2", 25), { success: false });
    assert.deepEqual(await second.lock.unlock(STORE, r, "owner2"), {
      status: LockStatus.LockBelongsToOthers,
    });
    assert.deepEqual(await first.lock.unlock(STORE, r, "owner1"), {
      status: LockStatus.Success,
    });
  });
});

describe("errors surface as the SDK's ConnectError", () => {
  // A gRPC status reaches the application as a ConnectError: `code`, `rawMessage` (the
  // status message, decoded), `message` (`[code_name] rawMessage`); daprd attaches no details
  // to lock errors. These compare dlockd's codes and texts exactly.
  it("unknown store: INVALID_ARGUMENT `lock store nope not found`, on lock and unlock", async () => {
    const expected = grpcStatus(INVALID_ARGUMENT, "lock store nope not found");
    assert.deepEqual(await sdkGrpcError(client.lock.lock("nope", "r", "o", 30)), expected);
    assert.deepEqual(await sdkGrpcError(client.lock.unlock("nope", "r", "o")), expected);
  });

  // The store in the message is the name as sent: no case folding, no decoding.
  it("store names are taken as given: case-sensitive, any characters, empty", async () => {
    assert.deepEqual(
      await sdkGrpcError(client.lock.lock("LockStore", "r", "o", 30)),
      grpcStatus(INVALID_ARGUMENT, "lock store LockStore not found"),
    );
    assert.deepEqual(
      await sdkGrpcError(client.lock.lock("a b<c>", "r", "o", 30)),
      grpcStatus(INVALID_ARGUMENT, "lock store a b<c> not found"),
    );
    // Over gRPC an empty store name is just an unknown store, as in daprd.
    assert.deepEqual(
      await sdkGrpcError(client.lock.lock("", "r", "o", 30)),
      grpcStatus(INVALID_ARGUMENT, "lock store  not found"),
    );
    assert.deepEqual(
      await sdkGrpcError(client.lock.unlock("", "r", "o")),
      grpcStatus(INVALID_ARGUMENT, "lock store  not found"),
    );
  });

  // An empty id is refused before the store is looked up, by both methods.
  it("empty resourceId: INVALID_ARGUMENT, on lock and unlock", async () => {
    const expected = grpcStatus(INVALID_ARGUMENT, "ResourceId is empty in lock store lockstore");
    assert.deepEqual(await sdkGrpcError(client.lock.lock(STORE, "", "o", 30)), expected);
    assert.deepEqual(await sdkGrpcError(client.lock.unlock(STORE, "", "o")), expected);
  });

  // The same for an empty owner.
  it("empty lockOwner: INVALID_ARGUMENT, on lock and unlock", async () => {
    const expected = grpcStatus(INVALID_ARGUMENT, "LockOwner is empty in lock store lockstore");
    assert.deepEqual(await sdkGrpcError(client.lock.lock(STORE, "r", "", 30)), expected);
    assert.deepEqual(await sdkGrpcError(client.lock.unlock(STORE, "r", "")), expected);
  });

  // A lease must have a positive length: 0, negatives down to int32's minimum, and a field
  // the SDK leaves out are all refused.
  it("expiry zero, negative or left out: INVALID_ARGUMENT not positive", async () => {
    const expected = grpcStatus(
      INVALID_ARGUMENT,
      "ExpiryInSeconds is not positive in lock store lockstore",
    );
    for (const expiry of [0, -1, -(2 ** 31)]) {
      assert.deepEqual(await sdkGrpcError(client.lock.lock(STORE, "r", "o", expiry)), expected);
    }
    // `undefined` leaves the field out of the message: proto3's default, 0.
    assert.deepEqual(await sdkGrpcError(client.lock.lock(STORE, "r", "o", undefined)), expected);
  });

  // daprd's order: expiry first, then the ids, then the store lookup.
  it("validation order: expiry, then resourceId, then lockOwner, then the store", async () => {
    assert.deepEqual(
      await sdkGrpcError(client.lock.lock("nope", "", "", 0)),
      grpcStatus(INVALID_ARGUMENT, "ExpiryInSeconds is not positive in lock store nope"),
    );
    assert.deepEqual(
      await sdkGrpcError(client.lock.lock("nope", "", "", 30)),
      grpcStatus(INVALID_ARGUMENT, "ResourceId is empty in lock store nope"),
    );
    assert.deepEqual(
      await sdkGrpcError(client.lock.unlock("nope", "r", "")),
      grpcStatus(INVALID_ARGUMENT, "LockOwner is empty in lock store nope"),
    );
    assert.deepEqual(
      await sdkGrpcError(client.lock.lock("nope", "a||b", "o", 30)),
      grpcStatus(INVALID_ARGUMENT, "lock store nope not found"),
    );
  });

  // lock.redis refuses `||` in a key; daprd answers INTERNAL with the store's error.
  it("resourceId with '||': INTERNAL, on lock and unlock", async () => {
    const cause = "input key/keyPrefix 'a||b' can't contain '||'";
    assert.deepEqual(
      await sdkGrpcError(client.lock.lock(STORE, "a||b", "o", 30)),
      grpcStatus(INTERNAL, `failed to try acquiring lock: ${cause}`),
    );
    assert.deepEqual(
      await sdkGrpcError(client.lock.unlock(STORE, "a||b", "o")),
      grpcStatus(INTERNAL, `failed to release lock: ${cause}`),
    );
  });

  // Every refused request above named the resource `r`: none of them took it, and the
  // connection that carried them goes on serving.
  it("nothing refused was taken, and the client keeps working", async () => {
    assert.deepEqual(await client.lock.lock(STORE, "r", "someone-else", 30), { success: true });
    assert.deepEqual(await client.lock.unlock(STORE, "r", "someone-else"), {
      status: LockStatus.Success,
    });
  });

  // The same refusal over both faces: a 400 over HTTP is INVALID_ARGUMENT over gRPC, a 500
  // is INTERNAL, and the message is the same text.
  it("each error's text is the HTTP answer's message", async () => {
    const cases = [
      ["nope", "r", "o", 30],
      [STORE, "", "o", 30],
      [STORE, "r", "", 30],
      [STORE, "r", "o", 0],
      [STORE, "a||b", "o", 30],
    ];
    for (const args of cases) {
      const overHttp = await sdkHttpError(httpClient.lock.lock(...args));
      const overGrpc = await sdkGrpcError(client.lock.lock(...args));
      const code = { 400: INVALID_ARGUMENT, 500: INTERNAL }[overHttp.status];
      assert.deepEqual(overGrpc, grpcStatus(code, JSON.parse(overHttp.error_msg).message));
    }
  });

  // grpc-go, daprd's gRPC stack, writes grpc-message with only bytes outside 0x20-0x7E and
  // `%` escaped, so the space stays a space; ConnectError keeps the raw trailer in
  // `metadata`, where an application can read it.
  it(
    "the raw grpc-message trailer is written as grpc-go writes it",
    async () => {
      const err = await connectError(client.lock.lock("nope", "r", "o", 30));
      assert.equal(err.metadata.get("grpc-message"), "lock store nope not found");
    },
  );
});

describe("expiry", () => {
  // A 1-second lease is refused to others while it lives, never frees early, and frees
  // without an unlock; the old owner's unlock then says whose it is.
  it("a 1 s lease is free again after it lapses, not before", async () => {
    const r = "expiry-1";
    const sentMs = performance.now();
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-a", 1), { success: true });
    assert.deepEqual(await client.lock.lock(STORE, r, "owner-b", 1), { success: false });
    await pollUntil(async () => (await client.lock.lock(STORE, r, "owner-b", 30)).success, {
      what: "owner-b taking the lapsed lease",
      limitMs: 5000,
    });
    const freeAfterMs = performance.now() - sentMs;
    assert.ok(freeAfterMs >= 1000, `free ${freeAfterMs.toFixed(0)} ms after the grant was sent`);
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
  // at about 500 ms extended it, it could not free before that send + 1000 ms.
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
  /**
   * Sends every owner's lock of `r` at once, `lockOf(owner)` for each, and asserts exactly
   * one winner; then that only the winner's unlock releases it.
   */
  async function oneWinner(owners, r, lockOf, unlockOf) {
    const answers = await Promise.all(owners.map((o) => lockOf(o)(STORE, r, o, 30)));
    const winners = owners.filter((_, i) => answers[i].success === true);
    assert.equal(winners.length, 1, `${r}: winners ${winners}`);
    assert.equal(answers.filter((a) => a.success === false).length, owners.length - 1);
    const loser = owners.find((o) => o !== winners[0]);
    assert.deepEqual(await unlockOf(loser)(STORE, r, loser), {
      status: LockStatus.LockBelongsToOthers,
    });
    assert.deepEqual(await unlockOf(winners[0])(STORE, r, winners[0]), {
      status: LockStatus.Success,
    });
  }

  const owners = Array.from({ length: 50 }, (_, i) => `racer-${i}`);

  // 50 owners on one client: 50 concurrent streams of its one HTTP/2 connection, decided on
  // dlockd's workers. Five rounds, each on a fresh resource.
  it("50 owners on one connection: exactly one success, five rounds", async () => {
    const lock = () => client.lock.lock.bind(client.lock);
    const unlock = () => client.lock.unlock.bind(client.lock);
    for (let round = 0; round < 5; round += 1) {
      await oneWinner(owners, `race-stream-${round}`, lock, unlock);
    }
  });

  // 50 owners, each an application of its own: its own client and HTTP/2 connection.
  it("50 owners on connections of their own: exactly one success, three rounds", async () => {
    const clients = new Map(owners.map((o) => [o, newGrpcClient()]));
    await Promise.all([...clients.values()].map((c) => c.start()));
    const lock = (o) => clients.get(o).lock.lock.bind(clients.get(o).lock);
    const unlock = (o) => clients.get(o).lock.unlock.bind(clients.get(o).lock);
    for (let round = 0; round < 3; round += 1) {
      await oneWinner(owners, `race-conn-${round}`, lock, unlock);
    }
  });

  // Half the owners over HTTP, half over gRPC: one lock table, one winner.
  it("50 owners over HTTP and gRPC at once: exactly one success, five rounds", async () => {
    const on = (o) => (owners.indexOf(o) % 2 === 0 ? client : httpClient);
    const lock = (o) => on(o).lock.lock.bind(on(o).lock);
    const unlock = (o) => on(o).lock.unlock.bind(on(o).lock);
    for (let round = 0; round < 5; round += 1) {
      await oneWinner(owners, `race-mixed-${round}`, lock, unlock);
    }
  });
});

describe("the same locks across protocols", () => {
  // A lock taken by an HTTP-mode client is held for a gRPC-mode client, released only by its
  // owner, and then free for gRPC.
  it("taken over HTTP: refused over gRPC until the HTTP owner unlocks", async () => {
    const r = "across-1";
    assert.deepEqual(await httpClient.lock.lock(STORE, r, "http-owner", 30), { success: true });
    assert.deepEqual(await client.lock.lock(STORE, r, "grpc-owner", 30), { success: false });
    assert.deepEqual(await client.lock.unlock(STORE, r, "grpc-owner"), {
      status: LockStatus.LockBelongsToOthers,
    });
    // Not re-entrant across protocols either.
    assert.deepEqual(await client.lock.lock(STORE, r, "http-owner", 30), { success: false });
    assert.deepEqual(await httpClient.lock.unlock(STORE, r, "http-owner"), {
      status: LockStatus.Success,
    });
    assert.deepEqual(await client.lock.lock(STORE, r, "grpc-owner", 30), { success: true });
    assert.deepEqual(await client.lock.unlock(STORE, r, "grpc-owner"), {
      status: LockStatus.Success,
    });
  });

  // And the reverse; the owner may release over the other protocol.
  it("taken over gRPC: refused over HTTP; released over either", async () => {
    const r = "across-2";
    assert.deepEqual(await client.lock.lock(SPACED_STORE, r, "grpc-owner", 30), {
      success: true,
    });
    assert.deepEqual(await httpClient.lock.lock(SPACED_STORE, r, "http-owner", 30), {
      success: false,
    });
    assert.deepEqual(await httpClient.lock.unlock(SPACED_STORE, r, "http-owner"), {
      status: LockStatus.LockBelongsToOthers,
    });
    assert.deepEqual(await httpClient.lock.unlock(SPACED_STORE, r, "grpc-owner"), {
      status: LockStatus.Success,
    });
    assert.deepEqual(await client.lock.unlock(SPACED_STORE, r, "grpc-owner"), {
      status: LockStatus.LockDoesNotExist,
    });
  });
});

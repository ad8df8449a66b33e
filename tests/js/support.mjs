// Helpers shared by the SDK suites: a client as an application builds one, a raw TCP tee that
// records what the SDK really sends and what dlockd really answers, the SDK's HTTP error
// shape, and a bounded deadline loop.
//
// The suites run from tests/sdk_js.rs, which starts dlockd and passes its port in
// DAPR_HTTP_PORT, the variable the SDK itself reads (Settings.getDefaultHttpPort).

import assert from "node:assert/strict";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { CommunicationProtocolEnum, DaprClient, LogLevel } from "@dapr/dapr";

assert.ok(
  process.env.DAPR_HTTP_PORT,
  "DAPR_HTTP_PORT is not set: run this suite with `cargo test --test sdk_js`, which starts dlockd",
);

/** The SDK version pinned in package.json; it appears in the SDK's user-agent. */
export const SDK_VERSION = "3.18.0";

/**
 * A DaprClient over HTTP, as an application builds it. Without `options` the SDK finds the
 * sidecar and the token itself, from DAPR_HTTP_PORT and DAPR_API_TOKEN. Only errors are
 * logged, so that the suite's output stays readable.
 */
export function newClient(options = {}) {
  return new DaprClient({
    communicationProtocol: CommunicationProtocolEnum.HTTP,
    logger: { level: LogLevel.Error },
    ...options,
  });
}

/**
 * A raw TCP pass-through in front of dlockd: bytes are forwarded unchanged in both directions,
 * and each HTTP/1.1 message is parsed from the copy as it passes. `exchanges` lists every
 * request in arrival order, with its `response` once the answer has passed. Both sides frame
 * with Content-Length (the SDK's node-fetch does for string bodies, dlockd always does), and
 * anything else fails loudly rather than being misread.
 */
export async function startTee() {
  const upstreamPort = Number(process.env.DAPR_HTTP_PORT);
  const tee = { exchanges: [], connections: 0, sockets: new Set() };
  const server = net.createServer((client) => {
    tee.connections += 1;
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    tee.sockets.add(client).add(upstream);
    const pending = [];
    const requests = { buf: Buffer.alloc(0) };
    const responses = { buf: Buffer.alloc(0) };
    client.on("data", (chunk) => {
      requests.buf = Buffer.concat([requests.buf, chunk]);
      for (let msg; (msg = takeMessage(requests)); ) {
        const exchange = { ...parseRequestLine(msg), response: null };
        tee.exchanges.push(exchange);
        pending.push(exchange);
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      responses.buf = Buffer.concat([responses.buf, chunk]);
      for (let msg; (msg = takeMessage(responses)); ) {
        const exchange = pending.shift();
        assert.ok(exchange, "an answer to no request");
        exchange.response = parseStatusLine(msg);
      }
      client.write(chunk);
    });
    client.on("end", () => upstream.end());
    upstream.on("end", () => client.end());
    for (const s of [client, upstream]) {
      s.on("error", () => s.destroy());
      s.on("close", () => tee.sockets.delete(s));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  tee.port = String(server.address().port);
  tee.close = () => {
    for (const s of tee.sockets) s.destroy();
    return new Promise((resolve) => server.close(resolve));
  };
  return tee;
}

/** Takes one complete message off `state.buf`, or returns null if it has not all arrived. */
function takeMessage(state) {
  const end = state.buf.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const [startLine, ...lines] = state.buf.subarray(0, end).toString("latin1").split("\r\n");
  const headers = lines.map((line) => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  const find = (name) => headers.find(([k]) => k.toLowerCase() === name)?.[1];
  assert.equal(find("transfer-encoding"), undefined, "the tee only frames Content-Length");
  const length = Number(find("content-length") ?? 0);
  if (state.buf.length < end + 4 + length) return null;
  const body = state.buf.subarray(end + 4, end + 4 + length).toString("utf8");
  state.buf = state.buf.subarray(end + 4 + length);
  return { startLine, headers, header: find, body };
}

function parseRequestLine(msg) {
  const [method, path, version] = msg.startLine.split(" ");
  return { method, path, version, headers: msg.headers, header: msg.header, body: msg.body };
}

function parseStatusLine(msg) {
  const [version, status, ...reason] = msg.startLine.split(" ");
  return {
    version,
    status: Number(status),
    reason: reason.join(" "),
    headers: msg.headers,
    header: msg.header,
    body: msg.body,
  };
}

/**
 * Awaits `promise`, which must reject with the SDK's HTTP error: HTTPClient.execute throws
 * `new Error(JSON.stringify({ error: statusText, error_msg: body, status }))` for any status
 * outside 200..399. Returns that object, so a case can compare it whole.
 */
export async function sdkHttpError(promise) {
  const err = await rejection(promise);
  let parsed;
  try {
    parsed = JSON.parse(err.message);
  } catch {
    assert.fail(`expected the SDK's HTTP error (JSON in the message), got: ${err.message}`);
  }
  assert.deepEqual(Object.keys(parsed).sort(), ["error", "error_msg", "status"]);
  return parsed;
}

/** Awaits `promise`, which must reject; returns the error. */
export async function rejection(promise) {
  try {
    const value = await promise;
    assert.fail(`expected the SDK to throw, it returned ${JSON.stringify(value)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.ok(err instanceof Error, `expected an Error, got ${err}`);
    return err;
  }
}

/** The SDK error object for a dlockd error answer: status, Go's status text, exact body. */
export function daprError(status, errorCode, message) {
  const statusText = { 400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error" };
  return {
    error: statusText[status],
    error_msg: JSON.stringify({ errorCode, message }),
    status,
  };
}

/**
 * Calls `attempt` every `everyMs` until it returns true, and returns the milliseconds waited;
 * fails once `limitMs` have passed, so that a lease that never frees fails the case, not the
 * whole run.
 */
export async function pollUntil(attempt, { everyMs = 20, limitMs = 5000, what = "condition" }) {
  const start = performance.now();
  for (;;) {
    if (await attempt()) return performance.now() - start;
    assert.ok(performance.now() - start < limitMs, `${what}: not true after ${limitMs} ms`);
    await sleep(everyMs);
  }
}

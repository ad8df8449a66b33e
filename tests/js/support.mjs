// Helpers shared by the SDK suites: a client as an application builds one (HTTP or gRPC), raw
// tees that record what the SDK really sends and what dlockd really answers (HTTP/1.1 over
// TCP, and gRPC over HTTP/2), the SDK's HTTP and gRPC error shapes, daprd's ErrorInfo detail,
// the SDK's start-up poll, and a bounded deadline loop.
//
// The suites run from tests/sdk_js.rs, which starts dlockd and passes its ports in
// DAPR_HTTP_PORT and DAPR_GRPC_PORT, the variables the SDK itself reads
// (Settings.getDefaultHttpPort, Settings.getDefaultGrpcPort).

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import net from "node:net";
import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { create, createFileRegistry } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
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

// ---- gRPC ----------------------------------------------------------------------------------

/** The gRPC method paths of the Dapr service that the lock suites meet. */
export const GET_METADATA = "/dapr.proto.runtime.v1.Dapr/GetMetadata";
export const TRY_LOCK = "/dapr.proto.runtime.v1.Dapr/TryLockAlpha1";
export const UNLOCK = "/dapr.proto.runtime.v1.Dapr/UnlockAlpha1";

/** dlockd's gRPC port, from DAPR_GRPC_PORT as the SDK reads it. */
export function grpcPort() {
  const port = process.env.DAPR_GRPC_PORT;
  assert.ok(
    port,
    "DAPR_GRPC_PORT is not set: run this suite with `cargo test --test sdk_js`, which starts dlockd",
  );
  return port;
}

/**
 * A DaprClient over gRPC (ConnectRPC's gRPC transport), as an application builds it. Without
 * `options` the SDK finds the sidecar and the token itself, from DAPR_GRPC_PORT and
 * DAPR_API_TOKEN. Only errors are logged.
 */
export function newGrpcClient(options = {}) {
  grpcPort();
  return new DaprClient({
    communicationProtocol: CommunicationProtocolEnum.GRPC,
    logger: { level: LogLevel.Error },
    ...options,
  });
}

/**
 * A gRPC pass-through in front of dlockd: an HTTP/2 (h2c) server whose every stream is
 * forwarded, headers, messages and trailers unchanged, on one HTTP/2 connection to dlockd's
 * gRPC port. `calls` lists every call in arrival order: its `path`, its request headers
 * (`header(name)`), and once answered dlockd's `status` (grpc-status as a number) and
 * `message` (grpc-message as sent, still percent-encoded), from the trailers or from a
 * trailers-only answer. `sessions` counts the HTTP/2 connections the SDK opened to the tee.
 */
export async function startGrpcTee() {
  const upstream = http2.connect(`http://127.0.0.1:${grpcPort()}`);
  upstream.on("error", () => {});
  const tee = { calls: [], sessions: 0 };
  const sessions = new Set();
  const server = http2.createServer();
  server.on("session", (session) => {
    tee.sessions += 1;
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  server.on("stream", (stream, headers) => {
    const call = {
      path: headers[":path"],
      header: (name) => headers[name],
      status: undefined,
      message: undefined,
    };
    tee.calls.push(call);
    const answered = (fields) => {
      call.status = Number(fields["grpc-status"]);
      call.message = fields["grpc-message"];
    };
    const out = upstream.request(headers);
    stream.pipe(out);
    let trailers = {};
    out.on("response", (responseHeaders, flags) => {
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) {
        // A trailers-only answer: the status is in the headers.
        answered(responseHeaders);
        stream.respond(responseHeaders, { endStream: true });
        return;
      }
      stream.respond(responseHeaders, { waitForTrailers: true });
      out.pipe(stream);
    });
    out.on("trailers", (fields) => {
      trailers = fields;
      answered(fields);
    });
    stream.on("wantTrailers", () => stream.sendTrailers(trailers));
    out.on("error", () => stream.destroy());
    stream.on("error", () => out.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  tee.port = String(server.address().port);
  tee.close = () => {
    for (const session of sessions) session.destroy();
    upstream.destroy();
    return new Promise((resolve) => server.close(resolve));
  };
  return tee;
}

/** The names ConnectError puts in its message, for the codes dlockd answers. */
const CODE_NAMES = { 3: "invalid_argument", 9: "failed_precondition", 13: "internal", 16: "unauthenticated" };

/**
 * Awaits `promise`, which must reject with the ConnectError a gRPC status becomes in the SDK;
 * returns the error.
 */
export async function connectError(promise) {
  const err = await rejection(promise);
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got: ${err.stack}`);
  return err;
}

/**
 * Awaits `promise`, which must reject with a ConnectError; returns what an application reads
 * of it: `code`, `rawMessage` (the server's grpc-message), `message` (the code's name and the
 * raw message), the number of `details`, and the grpc-status the server sent. A case compares
 * it whole with `grpcStatus(...)`.
 */
export async function sdkGrpcError(promise) {
  const err = await connectError(promise);
  return {
    code: err.code,
    rawMessage: err.rawMessage,
    message: err.message,
    details: err.details.length,
    grpcStatus: err.metadata.get("grpc-status"),
  };
}

/** The `sdkGrpcError` of a status `code` with `rawMessage` and no details, as daprd sends. */
export function grpcStatus(code, rawMessage) {
  return {
    code,
    rawMessage,
    message: `[${CODE_NAMES[code]}] ${rawMessage}`,
    details: 0,
    grpcStatus: String(code),
  };
}

/**
 * `google.rpc.ErrorInfo` (google/rpc/error_details.proto), which neither the SDK nor
 * @bufbuild/protobuf bundles: `string reason = 1; string domain = 2;
 * map<string, string> metadata = 3;`, described here for ConnectError.findDetails.
 */
export const ErrorInfoSchema = (() => {
  const TYPE_STRING = FieldDescriptorProto_Type.STRING;
  const TYPE_MESSAGE = FieldDescriptorProto_Type.MESSAGE;
  const field = (name, number, type, label, typeName) => ({
    name,
    number,
    type,
    label,
    typeName,
    jsonName: name,
  });
  const optional = FieldDescriptorProto_Label.OPTIONAL;
  const file = create(FileDescriptorProtoSchema, {
    name: "google/rpc/error_details.proto",
    package: "google.rpc",
    syntax: "proto3",
    messageType: [
      {
        name: "ErrorInfo",
        field: [
          field("reason", 1, TYPE_STRING, optional),
          field("domain", 2, TYPE_STRING, optional),
          field(
            "metadata",
            3,
            TYPE_MESSAGE,
            FieldDescriptorProto_Label.REPEATED,
            ".google.rpc.ErrorInfo.MetadataEntry",
          ),
        ],
        nestedType: [
          {
            name: "MetadataEntry",
            field: [field("key", 1, TYPE_STRING, optional), field("value", 2, TYPE_STRING, optional)],
            options: { mapEntry: true },
          },
        ],
      },
    ],
  });
  return createFileRegistry(file, () => undefined).getMessage("google.rpc.ErrorInfo");
})();

/**
 * Asserts daprd's refusal of a call without the right token, as the SDK surfaces it: code
 * Unauthenticated, message `Unauthorized`, and exactly one detail, a `google.rpc.ErrorInfo`
 * with reason `Unauthorized`, domain `dapr.io`, metadata `http.code` = `401` and
 * `http.error_message` = `text`.
 */
export function assertUnauthorized(err, text) {
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got: ${err.stack}`);
  assert.equal(err.code, 16);
  assert.equal(err.rawMessage, "Unauthorized");
  assert.equal(err.message, "[unauthenticated] Unauthorized");
  assert.equal(err.metadata.get("grpc-status"), "16");
  assert.equal(err.metadata.get("grpc-message"), "Unauthorized");
  assert.deepEqual(
    err.details.map((d) => d.type),
    ["google.rpc.ErrorInfo"],
  );
  const infos = err.findDetails(ErrorInfoSchema);
  assert.equal(infos.length, 1, "the ErrorInfo decodes");
  const { reason, domain, metadata } = infos[0];
  assert.deepEqual(
    { reason, domain, metadata },
    {
      reason: "Unauthorized",
      domain: "dapr.io",
      metadata: { "http.code": "401", "http.error_message": text },
    },
  );
}

// ---- the SDK's start-up ----------------------------------------------------------------------

// The SDK's own settings module: the same instance the DaprClient reads (one module cache).
const { Settings } = createRequire(import.meta.url)("@dapr/dapr/utils/Settings.util.js");

/**
 * Runs `body` with the SDK's 500 ms start-up poll shortened to 5 ms, restoring it after. The
 * number of probes before the SDK gives up (one, then 61 retries) is the SDK's own.
 */
export async function withFastStartupPoll(body) {
  const savedMs = Settings.daprSidecarPollingDelayMs;
  Settings.daprSidecarPollingDelayMs = 5;
  try {
    return await body();
  } finally {
    Settings.daprSidecarPollingDelayMs = savedMs;
  }
}

/** Runs `build` as in an application whose environment has no DAPR_API_TOKEN. */
export function withoutTokenInEnv(build) {
  const saved = process.env.DAPR_API_TOKEN;
  delete process.env.DAPR_API_TOKEN;
  try {
    return build();
  } finally {
    if (saved !== undefined) process.env.DAPR_API_TOKEN = saved;
  }
}

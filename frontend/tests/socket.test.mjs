// The socket's pure parts: its URL, the backoff, reading envelopes.
import { test } from "node:test";
import assert from "node:assert/strict";

import { BACKOFF_FIRST_MS, BACKOFF_MAX_MS, backoffDelay, parseEnvelope, socketUrl } from "../src/socket.js";

test("it speaks wss to an https page and ws to an http one", () => {
  assert.equal(socketUrl({ protocol: "https:", host: "chat.example:8443" }), "wss://chat.example:8443/ws/chat/");
  assert.equal(socketUrl({ protocol: "http:", host: "127.0.0.1:8000" }), "ws://127.0.0.1:8000/ws/chat/");
});

test("it doubles the wait after each failed attempt, up to the cap", () => {
  const middle = () => 0.5; // no jitter
  assert.deepEqual([0, 1, 2, 3].map((n) => backoffDelay(n, middle)), [500, 1000, 2000, 4000]);
  assert.equal(backoffDelay(10, middle), BACKOFF_MAX_MS);
  assert.equal(BACKOFF_FIRST_MS, 500);
});

test("it jitters the wait by a quarter either way", () => {
  assert.equal(backoffDelay(1, () => 0), 750);
  assert.equal(backoffDelay(1, () => 0.999999) < 1250, true);
});

test("it reads JSON objects and nothing else", () => {
  assert.deepEqual(parseEnvelope('{"type": "inference.token", "payload": {}}'), { type: "inference.token", payload: {} });
  assert.equal(parseEnvelope("not json"), null);
  assert.equal(parseEnvelope("null"), null);
  assert.equal(parseEnvelope("[1, 2]"), null);
  assert.equal(parseEnvelope('"text"'), null);
});

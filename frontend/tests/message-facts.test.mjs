// What the page says about a message: its note, its meta line, the actions it offers.
import { test } from "node:test";
import assert from "node:assert/strict";

import { actionsOf, canContinue, metaFor, noteFor, tokensPerSecond } from "../src/message-facts.js";

const answer = (fields) => ({ id: 2, role: "assistant", content: "Some text", ...fields });
const names = (actions) => actions.map((item) => item.testid);

test("it notes a partial, an interrupted, a waiting and a failed answer", () => {
  assert.equal(noteFor(answer({ status: "stopped" })), "Stopped: this is a partial answer.");
  assert.match(noteFor(answer({ status: "interrupted" })), /^Interrupted/);
  assert.equal(noteFor(answer({ status: "pending" })), "Waiting for the model…");
  assert.equal(noteFor(answer({ status: "error" })), "This answer failed.");
  assert.equal(noteFor(answer({ status: "complete", finish_reason: "stop" })), "");
  assert.equal(noteFor(answer({ status: "complete", finish_reason: "length" })), "Cut at the length limit.");
  assert.equal(noteFor({ role: "user", status: "error" }), "");
});

test("it offers Continue for partial answers and answers cut at the length limit, with text", () => {
  assert.equal(canContinue(answer({ status: "stopped" })), true);
  assert.equal(canContinue(answer({ status: "interrupted" })), true);
  assert.equal(canContinue(answer({ status: "complete", finish_reason: "length" })), true);
  assert.equal(canContinue(answer({ status: "complete", finish_reason: "stop" })), false);
  assert.equal(canContinue(answer({ status: "error" })), false);
  assert.equal(canContinue(answer({ status: "stopped", content: "" })), false);
});

test("it offers copy and edit on a user message, and retry on a failed answer", () => {
  assert.deepEqual(names(actionsOf({ role: "user", status: "complete" }, false)), ["copy", "edit"]);
  assert.deepEqual(names(actionsOf(answer({ status: "complete" }), false)), ["copy", "regenerate"]);
  assert.deepEqual(names(actionsOf(answer({ status: "error" }), false)), ["copy", "retry"]);
  assert.deepEqual(names(actionsOf(answer({ status: "stopped" }), false)), ["copy", "regenerate", "continue"]);
});

test("it offers nothing while a message is written or edited", () => {
  assert.deepEqual(actionsOf(answer({ status: "streaming" }), false), []);
  assert.deepEqual(actionsOf(answer({ status: "pending" }), false), []);
  assert.deepEqual(actionsOf({ role: "user", status: "complete" }, true), []);
});

test("it measures decoding speed after the first token", () => {
  assert.equal(tokensPerSecond({ completion_tokens: 11 }, { ttft_ms: 100, total_ms: 600 }), 20);
  assert.equal(tokensPerSecond({ completion_tokens: 1 }, { ttft_ms: 100, total_ms: 100 }), 10);
  assert.equal(tokensPerSecond({ completion_tokens: 0 }, { total_ms: 100 }), null);
  assert.equal(tokensPerSecond({}, {}), null);
});

test("it writes the meta line from what the end reported", () => {
  const done = answer({ usage: { completion_tokens: 11 }, timings: { ttft_ms: 99.6, total_ms: 600 } });
  assert.equal(metaFor(done, "Demo Poet"), "Demo Poet · 11 tokens · first token 100 ms · 20.0 tokens/s");
  assert.equal(metaFor(answer({ usage: null, timings: null }), "Base model"), "Base model");
});

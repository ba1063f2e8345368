// The stream reducer: (state, envelope) -> state, and the effects each step asks of the page.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  abandonPending, dropPending, expect, expectContinue, follow, initialStreams, liveAmong, reduce,
} from "../src/streams.js";

const start = (payload) => ({ type: "inference.start", payload });
const token = (message, text, index) => ({ type: "inference.token", payload: { message, text, index } });
const error = (id, sentence, code = "internal") => ({
  type: "inference.error", payload: { code, message: sentence, message_id: id },
});
const end = (message, reason, status) => ({
  type: "inference.end",
  payload: { message, reason, status, usage: { prompt_tokens: 5, completion_tokens: 2 }, timings: { ttft_ms: 10, total_ms: 40 } },
});

const SEND = { kind: "send", content: "Hello", parent: null, conversation: null };

function run(state, ...envelopes) {
  return envelopes.reduce(reduce, state);
}

const types = (state) => state.effects.map((effect) => effect.type);

test("it places a sent message's answer and streams its text", () => {
  const sent = expect(initialStreams(), SEND);
  const started = reduce(sent, start({ message: 11, conversation: 3, adapter: "demo-poet", parent: 10 }));
  assert.equal(started.pending, null);
  assert.deepEqual(types(started), ["placed", "changed"]);
  const [placed] = started.effects;
  assert.equal(placed.pending, SEND);
  assert.equal(placed.conversation, 3);
  assert.equal(placed.parent, 10);
  assert.equal(placed.answer.status, "streaming");

  const streamed = run(started, token(11, "Ahoy", 0), token(11, ", friend", 1));
  const stream = streamed.followed.get(11);
  assert.equal(stream.seq, 2);
  assert.equal(stream.message.content, "Ahoy, friend");
  assert.equal(stream.message.adapter, "demo-poet");
  assert.deepEqual(streamed.effects.map((effect) => effect.message.content), ["Ahoy, friend"]);
});

function ended(reason, status) {
  const followed = follow(initialStreams(), { id: 4, role: "assistant", content: "" }, null);
  return run(followed, start({ message: 4, conversation: 1, adapter: null, parent: 3 }), end(4, reason, status));
}

test("it ends an answer with the status the server saved", () => {
  // docs/PROTOCOL.md: a cut by a cap (length, timeout) is complete; a stop is stopped.
  const cases = [
    ["stop", "complete"], ["length", "complete"], ["timeout", "complete"], ["cancelled", "stopped"],
    ["interrupted", "interrupted"], ["error", "error"],
  ];
  for (const [reason, status] of cases) {
    const state = ended(reason, status);
    const [changed, finished] = state.effects;
    assert.equal(changed.message.status, status, reason);
    assert.equal(changed.message.finish_reason, reason);
    assert.deepEqual(changed.message.usage, { prompt_tokens: 5, completion_tokens: 2 });
    assert.deepEqual(changed.message.timings, { ttft_ms: 10, total_ms: 40 });
    assert.deepEqual(finished, { type: "ended", message: changed.message });
    assert.equal(state.followed.has(4), false, "an ended answer is no longer followed");
  }
});

test("it never derives the status from the reason", () => {
  assert.equal(ended("stop", "interrupted").effects[0].message.status, "interrupted");
  assert.equal(ended("error", "complete").effects[0].message.status, "complete");
});

test("it never changes the state it is given", () => {
  const before = follow(initialStreams(), { id: 4, role: "assistant", content: "old" }, 0);
  const message = before.followed.get(4).message;
  const after = reduce(before, token(4, " and new", 1));
  assert.equal(before.followed.get(4).message, message);
  assert.equal(message.content, "old");
  assert.equal(before.followed.get(4).seq, 0);
  assert.equal(after.followed.get(4).message.content, "old and new");
  assert.deepEqual(before.effects, []);
});

test("it rebuilds a replayed answer from its start, and drops tokens before the start", () => {
  const saved = { id: 8, role: "assistant", content: "partial", status: "streaming" };
  const followed = follow(initialStreams(), saved, null);
  const early = reduce(followed, token(8, "stray", 0));
  assert.equal(early.followed.get(8).message.content, "partial");
  assert.deepEqual(early.effects, []);
  const replayed = run(followed, start({ message: 8, conversation: 2, adapter: null, parent: 7 }), token(8, "partial", 0));
  assert.equal(replayed.followed.get(8).message.content, "partial");
  assert.equal(replayed.followed.get(8).seq, 1);
});

test("it ignores starts and events of answers it does not follow", () => {
  const state = initialStreams();
  const after = run(state, start({ message: 5, conversation: 1, adapter: null, parent: 4 }), token(5, "x", 0), end(5, "stop", "complete"));
  assert.equal(after.followed.size, 0);
  assert.deepEqual(after.effects, []);
});

test("it passes over envelope types it does not know", () => {
  const state = follow(initialStreams(), { id: 4, role: "assistant", content: "" }, 0);
  const after = reduce(state, { type: "inference.notice", payload: { code: "worker_lost", message_id: 4, resumed: true } });
  assert.equal(after.followed, state.followed);
  assert.deepEqual(after.effects, []);
});

test("it counts an error as an event of its answer and keeps its sentence", () => {
  const state = follow(initialStreams(), { id: 4, role: "assistant", content: "" }, 3);
  const after = reduce(state, error(4, "The model failed."));
  assert.equal(after.followed.get(4).seq, 4);
  assert.deepEqual(after.followed.get(4).message.error, { message: "The model failed." });
  assert.deepEqual(types(after), ["changed"]);
});

test("it keeps a refused send's text with the reason", () => {
  const sent = expect(initialStreams(), { ...SEND, parent: 6 });
  const refused = reduce(sent, error(null, "Too many answers at once.", "too_many_streams"));
  assert.equal(refused.pending, null);
  assert.deepEqual(refused.effects, [{ type: "failed", content: "Hello", parent: 6, sentence: "Too many answers at once." }]);
});

test("it says why a regenerate did not start", () => {
  const asked = expect(initialStreams(), { kind: "regenerate", conversation: 1 });
  const refused = reduce(asked, error(null, "That adapter is not available."));
  assert.deepEqual(refused.effects, [{ type: "notice", sentence: "That adapter is not available." }]);
});

test("it shows an error of nothing followed or awaited as a notice", () => {
  const after = reduce(initialStreams(), error(null, "Bad frame."));
  assert.deepEqual(after.effects, [{ type: "notice", sentence: "Bad frame." }]);
});

test("it continues an answer in place, from a replay of nothing", () => {
  const answer = { id: 9, parent: 8, role: "assistant", content: "Once upon", status: "stopped" };
  const asked = expectContinue(initialStreams(), answer, 2);
  assert.equal(asked.followed.get(9).seq, null);
  assert.equal(asked.effects[0].message.status, "pending");
  assert.equal(answer.status, "stopped", "the message given is left alone");

  const someoneElse = reduce(asked, start({ message: 12, conversation: 2, adapter: null, parent: 8 }));
  assert.notEqual(someoneElse.pending, null, "another answer's start does not answer a continue");
  assert.equal(someoneElse.followed.has(12), false);

  const started = run(asked, start({ message: 9, conversation: 2, adapter: null, parent: 8 }), token(9, "Once upon", 0), token(9, " a time", 1));
  assert.equal(started.pending, null);
  assert.equal(started.followed.get(9).message.content, "Once upon a time");
});

test("it stops following a continue that never started, and asks for the saved answer", () => {
  const answer = { id: 9, parent: 8, role: "assistant", content: "Once", status: "stopped" };
  const dropped = dropPending(expectContinue(initialStreams(), answer, 2), "The connection dropped.");
  assert.equal(dropped.followed.has(9), false);
  assert.deepEqual(types(dropped), ["notice", "reload"]);
});

test("it places nothing for a send whose reader left, yet follows its answer", () => {
  const left = abandonPending(expect(initialStreams(), SEND));
  const started = reduce(left, start({ message: 11, conversation: 3, adapter: null, parent: 10 }));
  assert.equal(started.pending, null);
  assert.deepEqual(types(started), ["changed"]);
  assert.equal(started.followed.has(11), true);
  assert.deepEqual(dropPending(abandonPending(expect(initialStreams(), SEND)), "gone").effects, []);
});

test("it counts as live only the followed answers on show that are still written", () => {
  let state = follow(initialStreams(), { id: 1, role: "assistant", status: "streaming" }, 0);
  state = follow(state, { id: 2, role: "assistant", status: "streaming" }, 0);
  state = follow(state, { id: 3, role: "assistant", status: "complete" }, 0);
  const shown = new Map([[1, {}], [3, {}]]);
  assert.deepEqual(liveAmong(state, shown).map((message) => message.id), [1]);
});

test("it places a regenerated answer beside its siblings", () => {
  const asked = expect(initialStreams(), { kind: "regenerate", conversation: 2 });
  const started = reduce(asked, start({ message: 15, conversation: 2, adapter: "demo-chef", parent: 8 }));
  const [placed] = started.effects;
  assert.equal(placed.type, "placed");
  assert.equal(placed.pending.kind, "regenerate");
  assert.equal(placed.parent, 8);
  assert.deepEqual(placed.answer, {
    id: 15, parent: 8, role: "assistant", content: "", status: "streaming", adapter: "demo-chef",
    error: null, usage: null, timings: null, finish_reason: "",
  });
});

test("it resumes a followed answer after the last event seen", () => {
  const state = follow(initialStreams(), { id: 4, role: "assistant", content: "abc" }, 3);
  const after = reduce(state, token(4, "d", 3));
  assert.equal(after.followed.get(4).seq, 4);
  assert.equal(after.followed.get(4).message.content, "abcd");
});

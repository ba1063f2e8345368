// The conversation tree: which branch is on show, where a message stands among its siblings.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ROOT, activeBranch, branchTip, childrenOf, keyOf, siblingAt, siblingsOf } from "../src/tree.js";

/** A tree from [id, parent] pairs. */
function tree(...pairs) {
  return new Map(pairs.map(([id, parent]) => [id, { id, parent }]));
}

// 1 -> 2 -> 3 (answer), edited: 1 -> 2 -> 4 (a second answer), and 1 -> 5 (the user's message edited).
const forked = () => tree([1, null], [2, 1], [3, 2], [4, 2], [5, 1]);

test("it keys a first message under ROOT", () => {
  assert.equal(keyOf(null), ROOT);
  assert.equal(keyOf(undefined), ROOT);
  assert.equal(keyOf(7), 7);
});

test("it lists children oldest first, whatever the order of the map", () => {
  const messages = tree([5, 1], [2, 1], [1, null]);
  assert.deepEqual(childrenOf(messages).get(1), [2, 5]);
  assert.deepEqual(childrenOf(messages).get(ROOT), [1]);
});

test("it shows, at each fork, the line where the newest message is", () => {
  assert.deepEqual(activeBranch(forked(), new Map()), [1, 5]);
  const messages = tree([1, null], [2, 1], [3, 2], [5, 1], [6, 2]);
  assert.deepEqual(activeBranch(messages, new Map()), [1, 2, 6]); // 6 is below 2, newer than 5
});

test("it shows the reader's choice at a fork over the newest line", () => {
  const chosen = new Map([[1, 2], [2, 3]]);
  assert.deepEqual(activeBranch(forked(), chosen), [1, 2, 3]);
});

test("it ignores a choice that is no child of its fork", () => {
  const chosen = new Map([[1, 99], [ROOT, 2]]);
  assert.deepEqual(activeBranch(forked(), chosen), [1, 5]);
});

test("it shows nothing for an empty conversation", () => {
  assert.deepEqual(activeBranch(new Map(), new Map()), []);
  assert.equal(branchTip(new Map(), new Map()), null);
});

test("it answers from the last message on show", () => {
  assert.equal(branchTip(forked(), new Map([[1, 2]])), 4);
});

test("it tells where a message stands among its siblings", () => {
  assert.deepEqual(siblingsOf(forked(), 4), { index: 1, count: 2, siblings: [3, 4] });
  assert.deepEqual(siblingsOf(forked(), 1), { index: 0, count: 1, siblings: [1] });
});

test("it steps to the previous and next sibling, and to nothing past either end", () => {
  assert.equal(siblingAt(forked(), 3, 1), 4);
  assert.equal(siblingAt(forked(), 4, -1), 3);
  assert.equal(siblingAt(forked(), 4, 1), null);
  assert.equal(siblingAt(forked(), 2, -1), null);
});

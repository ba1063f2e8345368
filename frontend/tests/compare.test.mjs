// Which adapters a compare sends to.
import { test } from "node:test";
import assert from "node:assert/strict";

import { MAX_COMPARED, chosenToCompare } from "../src/compare.js";

test("it leaves out the picked adapter and repeats", () => {
  assert.deepEqual(chosenToCompare(["demo-poet", "", "demo-poet", "demo-chef"], "demo-chef"), ["demo-poet", ""]);
});

test("it sends to at most three more than the picked one", () => {
  assert.equal(MAX_COMPARED, 4);
  assert.deepEqual(chosenToCompare(["a", "b", "c", "d", "e"], ""), ["a", "b", "c"]);
});

test("it compares nothing when nothing else is ticked", () => {
  assert.deepEqual(chosenToCompare([], "a"), []);
  assert.deepEqual(chosenToCompare(["a"], "a"), []);
});

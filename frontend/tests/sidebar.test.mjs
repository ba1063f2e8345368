// The sidebar's pure helpers: groups, dates and source labels.
import { test } from "node:test";
import assert from "node:assert/strict";

import { longDate, shortDate, sidebarGroups, sourceLabel } from "../src/sidebar.js";

test("it keeps API conversations apart from chats, each in its order", () => {
  const list = [
    { id: 1, source: "chat" }, { id: 2, source: "openai" }, { id: 3 }, { id: 4, source: "lorax" },
  ];
  const { chats, api } = sidebarGroups(list);
  assert.deepEqual(chats.map((c) => c.id), [1, 3]);
  assert.deepEqual(api.map((c) => c.id), [2, 4]);
});

test("it dates today by the time, this year by day and month, and earlier with the year", () => {
  const now = new Date(2026, 5, 15, 18, 0);
  assert.equal(shortDate(new Date(2026, 5, 15, 14, 5).toISOString(), now, "en-GB"), "14:05");
  assert.equal(shortDate(new Date(2026, 10, 3, 9, 0).toISOString(), now, "en-GB"), "3 Nov");
  assert.equal(shortDate(new Date(2025, 10, 3, 9, 0).toISOString(), now, "en-GB"), "3 Nov 2025");
});

test("it dates nothing it cannot read", () => {
  assert.equal(shortDate("not a date"), "");
  assert.equal(longDate("not a date"), "");
  assert.notEqual(longDate("2026-01-02T03:04:05Z"), "");
});

test("it labels the API a conversation came from", () => {
  assert.equal(sourceLabel("openai"), "OpenAI API");
  assert.equal(sourceLabel("lorax"), "LoRAX API");
  assert.equal(sourceLabel("chat"), "");
});

// The page's URLs and error sentences.
import { test } from "node:test";
import assert from "node:assert/strict";

import { conversationInPath, errorSentence, pageUrls } from "../src/api.js";

const urls = pageUrls({ homeUrl: "/", conversationsUrl: "/api/v1/conversations/" });

test("it builds the page's URLs from its data attributes", () => {
  assert.equal(urls.page(7), "/c/7/");
  assert.equal(urls.messages(7), "/api/v1/conversations/7/messages/");
  assert.equal(urls.action(7, "rename"), "/c/7/rename");
  assert.equal(urls.export(7, "jsonl"), "/c/7/export.jsonl");
  assert.equal(urls.create(), "/c/new");
});

test("it escapes a search", () => {
  assert.equal(urls.search("a&b c"), "/c/search?q=a%26b%20c");
  assert.equal(urls.search(""), "/c/search?q=");
});

test("it reads the conversation a path names", () => {
  assert.equal(conversationInPath("/c/42/"), 42);
  assert.equal(conversationInPath("/"), null);
  assert.equal(conversationInPath("/c/42/export.md"), null);
});

test("it takes the sentence from either error shape", () => {
  assert.equal(errorSentence({ error: { code: "bad", message: "A page action's." } }), "A page action's.");
  assert.equal(errorSentence({ code: "bad", message: "The native API's." }), "The native API's.");
  assert.equal(errorSentence({}), "");
  assert.equal(errorSentence(null), "");
});

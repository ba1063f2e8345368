// The chat page (docs/ARCHITECTURE.md, "The chat page"). One socket to /ws/chat/ carries every
// generation this page follows; the read API and the page's JSON actions do the rest.
//
// Model and user text are untrusted: user text is only ever set with textContent, answers go
// through renderMarkdown (markdown-it, then DOMPurify). Nothing here builds HTML from strings.
import { renderMarkdown } from "./markdown.js";
import { ROOT, activeBranch, keyOf, siblingsOf } from "./tree.js";
import { longDate, shortDate, sidebarGroups, sourceLabel } from "./sidebar.js";
import { chosenToCompare } from "./compare.js";

const SOCKET_PATH = "/ws/chat/";
const NOT_SIGNED_IN = 4401;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const SEARCH_DELAY_MS = 200;
const LIVE = new Set(["pending", "streaming"]);
const CONTINUABLE = new Set(["stopped", "interrupted"]);
const STATUS_FOR_REASON = {
  stop: "complete",
  length: "complete",
  timeout: "complete",
  cancelled: "stopped",
  interrupted: "interrupted",
  error: "error",
};
const NOTES = {
  pending: "Waiting for the model…",
  stopped: "Stopped: this is a partial answer.",
  interrupted: "Interrupted: the connection or the server went away. The text so far is kept.",
  error: "This answer failed.",
};

const ui = findElements();
const state = {
  conversationId: Number(ui.root.dataset.conversationId) || null,
  conversations: [], // the sidebar's list, with each one's adapter and system prompt
  messages: new Map(), // id -> message of the conversation on show
  chosen: new Map(), // fork (parent id or ROOT) -> the child on show
  streams: new Map(), // assistant id -> {seq, message}: generations this page follows
  pending: null, // a frame sent and not yet answered by inference.start
  failed: null, // {content, parent, error}: a send the server refused; shown with a retry
  editing: null, // id of the user message being edited
  elements: new Map(), // id -> rendered element
  shown: [], // ids on show, in order
  dirty: new Set(),
  structureChanged: false,
  frame: 0,
  socket: null,
  attempts: 0,
  reconnectTimer: null,
  signedOut: false,
  loading: false,
  searchTimer: null,
  apiGroupOpen: false, // the sidebar's "From the API" group, as the user left it
  comparing: null, // {fork: user message id, ids: [answer ids]}: answers shown side by side
};

function init() {
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitPrompt();
  });
  ui.composer.addEventListener("keydown", onComposerKeydown);
  ui.stop.addEventListener("click", stopGenerations);
  ui.picker.addEventListener("change", onAdapterChange);
  ui.settingsSave.addEventListener("click", saveSettings);
  ui.importFile.addEventListener("change", importConversations);
  ui.messages.addEventListener("click", onMessageAction);
  ui.conversations.addEventListener("click", onSidebarClick);
  ui.newChat.addEventListener("click", onNavigate);
  ui.search.addEventListener("input", () => {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(refreshConversations, SEARCH_DELAY_MS);
  });
  document.addEventListener("keydown", onDocumentKeydown);
  window.addEventListener("online", reconnectNow);
  window.addEventListener("popstate", () => openConversation(conversationFromUrl(), { push: false }));
  showAdapterDescription();
  showSettingsSummary();
  connect();
  refreshConversations();
  if (state.conversationId) loadMessages();
}

function findElements() {
  const byId = (id) => document.getElementById(id);
  return {
    root: byId("main"),
    title: byId("conversation-title"),
    messages: byId("messages"),
    empty: byId("empty-state"),
    notice: byId("connection-notice"),
    form: byId("composer-form"),
    composer: byId("composer"),
    send: byId("send-button"),
    stop: byId("stop-button"),
    picker: byId("adapter-picker"),
    description: byId("adapter-description"),
    systemPrompt: byId("system-prompt"),
    settingsSave: byId("settings-save"),
    settingsStatus: byId("settings-status"),
    settingsSummary: byId("settings-summary"),
    settings: byId("settings"),
    settingsExport: byId("settings-export"),
    importFile: byId("import-file"),
    compareBoxes: [...document.querySelectorAll('input[name="compare"]')],
    conversations: byId("conversation-list"),
    newChat: document.querySelector('[data-testid="new-conversation"]'),
    search: byId("conversation-search"),
  };
}

// --- URLs and HTTP ------------------------------------------------------------------------------

const homeUrl = () => ui.root.dataset.homeUrl;
const pageUrl = (id) => `${homeUrl()}c/${id}/`;
const messagesUrl = (id) => `${ui.root.dataset.conversationsUrl}${id}/messages/`;

function conversationFromUrl() {
  const match = location.pathname.match(/\/c\/(\d+)\/$/);
  return match ? Number(match[1]) : null;
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${SOCKET_PATH}`;
}

async function getJSON(url) {
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    redirect: "error", // a login redirect means the session is gone
  }).catch(() => null);
  if (!response) throw new Error("The server could not be reached.");
  if (response.status === 401 || response.status === 403) {
    markSignedOut();
    throw new Error("You’re signed out.");
  }
  if (!response.ok) throw new Error(`The server answered ${response.status}.`);
  return response.json();
}

/** POST a JSON action; resolves to its answer, rejects with the server's sentence. */
async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {
      Accept: "application/json",
      "Content-Type": "application/json",
      "X-CSRFToken": ui.root.dataset.csrfToken,
    },
    body: JSON.stringify(body),
  }).catch(() => null);
  if (!response) throw new Error("The server could not be reached. Try again.");
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const sentence = (data.error && data.error.message) || data.message; // page actions, API
    throw new Error(sentence || `The server answered ${response.status}.`);
  }
  return data;
}

// --- Conversations: sidebar and navigation --------------------------------------------------------

async function refreshConversations() {
  const query = encodeURIComponent(ui.search.value.trim());
  try {
    const data = await getJSON(`${homeUrl()}c/search?q=${query}`);
    if (!query) state.conversations = data.results;
    renderConversations(data.results, Boolean(query));
    const current = currentConversation();
    if (current) showTitle(current.title);
  } catch (err) {
    // The sidebar is a convenience; the page still works with a stale one.
  }
}

function renderConversations(conversations, searching) {
  if (!conversations.length) {
    const empty = document.createElement("li");
    empty.className = "conversation-list-empty";
    empty.textContent = searching ? "No conversation matches." : "No conversations yet.";
    ui.conversations.replaceChildren(empty);
    return;
  }
  const { chats, api } = sidebarGroups(conversations);
  const items = chats.map(conversationItem);
  if (api.length) items.push(apiGroup(api, searching));
  ui.conversations.replaceChildren(...items);
}

/** API calls, one conversation each, folded under one entry (open while searching). */
function apiGroup(conversations, searching) {
  const group = document.createElement("li");
  group.className = "conversation-group";
  const details = document.createElement("details");
  details.dataset.testid = "api-conversations";
  details.open = searching || state.apiGroupOpen || conversations.some((c) => c.id === state.conversationId);
  details.addEventListener("toggle", () => {
    if (!searching) state.apiGroupOpen = details.open;
  });
  const summary = document.createElement("summary");
  summary.textContent = `From the API (${conversations.length})`;
  const list = document.createElement("ul");
  list.className = "conversation-sublist";
  list.append(...conversations.map(conversationItem));
  details.append(summary, list);
  group.append(details);
  return group;
}

function conversationItem(conversation) {
  const item = document.createElement("li");
  item.className = "conversation-item";
  item.dataset.conversationId = conversation.id;
  const title = conversation.title || "Untitled";
  const link = document.createElement("a");
  link.href = pageUrl(conversation.id);
  link.title = `${title}\n${longDate(conversation.updated_at)}`;
  const name = document.createElement("span");
  name.className = "conversation-title";
  name.dataset.testid = "conversation-title";
  name.textContent = title;
  const when = document.createElement("time");
  when.className = "conversation-date";
  when.dataset.testid = "conversation-date";
  when.dateTime = conversation.updated_at;
  const label = sourceLabel(conversation.source);
  when.textContent = label ? `${label} · ${shortDate(conversation.updated_at)}` : shortDate(conversation.updated_at);
  link.append(name, when);
  if (conversation.id === state.conversationId) link.setAttribute("aria-current", "page");
  item.append(
    link,
    smallButton("✎", `Rename “${title}”`, "rename"),
    smallButton("✕", `Delete “${title}”`, "delete"),
  );
  return item;
}

function smallButton(symbol, label, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "icon-button";
  button.dataset.action = action;
  button.dataset.testid = `conversation-${action}`;
  button.setAttribute("aria-label", label);
  button.title = label;
  button.textContent = symbol;
  return button;
}

function onSidebarClick(event) {
  const button = event.target.closest("button[data-action]");
  const item = event.target.closest(".conversation-item");
  if (!item) return;
  const id = Number(item.dataset.conversationId);
  if (button && button.dataset.action === "rename") startRename(item, id);
  else if (button && button.dataset.action === "delete") deleteConversation(id);
  else if (event.target.closest("a")) onNavigate(event);
}

function startRename(item, id) {
  const name = item.querySelector(".conversation-title");
  const input = document.createElement("input");
  input.type = "text";
  input.className = "rename-input";
  input.value = name.textContent;
  input.maxLength = 200;
  input.dataset.testid = "rename-input";
  input.setAttribute("aria-label", "New name");
  item.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    if (save && input.value.trim() && input.value !== name.textContent) {
      try {
        const conversation = await postJSON(`${homeUrl()}c/${id}/rename`, { title: input.value });
        if (id === state.conversationId) showTitle(conversation.title);
      } catch (err) {
        showNotice(err.message);
      }
    }
    refreshConversations();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") {
      event.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
}

async function deleteConversation(id) {
  const entry = state.conversations.find((item) => item.id === id);
  const title = entry ? entry.title || "Untitled" : "this conversation";
  if (!window.confirm(`Delete “${title}” and all its messages?`)) return;
  try {
    await postJSON(`${homeUrl()}c/${id}/delete`, {});
  } catch (err) {
    showNotice(err.message);
    return;
  }
  if (id === state.conversationId) openConversation(null, { push: true });
  refreshConversations();
}

function onNavigate(event) {
  const link = event.target.closest("a");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  const match = new URL(link.href).pathname.match(/\/c\/(\d+)\/$/);
  openConversation(match ? Number(match[1]) : null, { push: true });
}

/** Show another conversation without leaving the page: answers streaming elsewhere go on. */
function openConversation(id, { push }) {
  if (push) history.pushState(null, "", id ? pageUrl(id) : homeUrl());
  state.conversationId = id;
  ui.root.dataset.conversationId = id || "";
  state.messages = new Map();
  state.chosen = new Map();
  state.elements = new Map();
  state.failed = null;
  state.editing = null;
  state.comparing = null;
  if (state.pending) state.pending.abandoned = true;
  state.structureChanged = true;
  ui.messages.replaceChildren();
  state.shown = [];
  hideNotice();
  applyConversationSettings();
  markCurrent();
  updateEmptyState();
  updateControls();
  if (id) loadMessages();
  else ui.composer.focus();
}

function markCurrent() {
  for (const link of ui.conversations.querySelectorAll("a")) {
    const item = link.closest(".conversation-item");
    if (Number(item.dataset.conversationId) === state.conversationId) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
}

function currentConversation() {
  return state.conversations.find((item) => item.id === state.conversationId) || null;
}

function applyConversationSettings() {
  const conversation = currentConversation();
  if (!state.conversationId) {
    ui.systemPrompt.value = ""; // the adapter choice carries over to a new chat; the prompt does not
    showTitle("");
  } else if (conversation) {
    ui.picker.value = conversation.adapter || "";
    ui.systemPrompt.value = conversation.system_prompt;
    showTitle(conversation.title);
  }
  showAdapterDescription();
  showSettingsSummary();
  showExportLinks();
}

/** The settings panel's export links point at the conversation on show (none: hidden). */
function showExportLinks() {
  ui.settingsExport.hidden = !state.conversationId;
  for (const link of ui.settingsExport.querySelectorAll("a")) {
    link.href = state.conversationId ? `${homeUrl()}c/${state.conversationId}/export.${link.dataset.format}` : "";
  }
}

/** Upload an export (JSONL or JSON); the new conversations join the sidebar. */
async function importConversations() {
  const file = ui.importFile.files[0];
  if (!file) return;
  const body = new FormData();
  body.append("file", file);
  const response = await fetch(ui.importFile.dataset.importUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": ui.root.dataset.csrfToken },
    body,
  }).catch(() => null);
  ui.importFile.value = "";
  const data = response ? await response.json().catch(() => ({})) : {};
  if (!response || !response.ok) {
    showNotice((data.error && data.error.message) || "The import failed. Try again.");
    return;
  }
  showNotice(importedSentence(data.imported));
  refreshConversations();
}

function importedSentence(count) {
  return count === 1 ? "Imported 1 conversation." : `Imported ${count} conversations.`;
}

function showTitle(title) {
  const text = state.conversationId ? title || "Untitled" : "New chat";
  ui.title.textContent = text;
  document.title = state.conversationId ? `${text} · Patchbay` : "Patchbay";
}

function adoptConversation(id) {
  if (id === state.conversationId) return;
  state.conversationId = id;
  ui.root.dataset.conversationId = id;
  history.replaceState(null, "", pageUrl(id));
  showExportLinks();
  refreshConversations();
}

// --- Adapter and system prompt ------------------------------------------------------------------

function showAdapterDescription() {
  const option = ui.picker.selectedOptions[0];
  ui.description.textContent = option ? option.dataset.description || "" : "";
}

function showSettingsSummary() {
  const option = ui.picker.selectedOptions[0];
  const parts = [option ? option.textContent.trim() : "Base model"];
  if (ui.systemPrompt.value.trim()) parts.push("system prompt set");
  ui.settingsSummary.textContent = parts.join(" · ");
}

function onAdapterChange() {
  showAdapterDescription();
  showSettingsSummary();
  if (state.conversationId) saveSettings();
}

async function saveSettings() {
  showSettingsSummary();
  if (!state.conversationId) {
    ui.settingsStatus.textContent = "Applies from your first message.";
    return;
  }
  const conversation = currentConversation();
  const systemPrompt = ui.systemPrompt.value;
  try {
    const saved = await postJSON(`${homeUrl()}c/${state.conversationId}/settings`, {
      adapter: ui.picker.value,
      system_prompt: systemPrompt,
    });
    if (conversation) Object.assign(conversation, saved);
    ui.settingsStatus.textContent = "Saved.";
  } catch (err) {
    ui.settingsStatus.textContent = err.message;
  }
}

// --- Messages: loading ----------------------------------------------------------------------------

async function loadMessages() {
  const id = state.conversationId;
  state.loading = true;
  updateControls();
  try {
    const data = await getJSON(messagesUrl(id));
    if (id !== state.conversationId) return; // the reader moved on meanwhile
    mergeSaved(Array.isArray(data) ? data : data.results || []);
  } catch (err) {
    if (!state.signedOut) showNotice(`Couldn’t load this conversation: ${err.message}`);
  } finally {
    state.loading = false;
    updateControls();
  }
}

function mergeSaved(messages) {
  for (const message of messages) {
    const stream = state.streams.get(message.id);
    // A generation this page follows knows more than the saved row does.
    state.messages.set(message.id, stream ? stream.message : message);
    if (!stream && message.role === "assistant" && LIVE.has(message.status)) follow(message, null);
  }
  state.structureChanged = true;
  schedule();
}

/** Follow a generation from the event after `resume` (null: replay it all). */
function follow(message, resume) {
  state.streams.set(message.id, { seq: resume, message });
  sendFrame({ type: "chat.follow", message: message.id, resume });
}

// --- Rendering ----------------------------------------------------------------------------------

function markDirty(id) {
  state.dirty.add(id);
  schedule();
}

// DOM work happens at most once per frame, however fast tokens arrive; a hidden tab gets no
// frames, so a timer stands in.
function schedule() {
  if (state.frame) return;
  const run = () => {
    cancelAnimationFrame(state.frame);
    clearTimeout(state.frameTimer);
    state.frame = 0;
    flush();
  };
  state.frame = requestAnimationFrame(run);
  state.frameTimer = setTimeout(run, 250);
}

function flush() {
  const stick = isNearBottom();
  if (state.structureChanged) {
    state.structureChanged = false;
    renderBranch();
  } else {
    for (const id of state.dirty) {
      if (state.elements.has(id) && state.messages.has(id)) updateElement(state.messages.get(id));
    }
  }
  state.dirty.clear();
  updateEmptyState();
  updateControls();
  if (stick) scrollToEnd();
}

function renderBranch() {
  let branch = activeBranch(state.messages, state.chosen);
  const cut = state.comparing ? branch.indexOf(state.comparing.fork) : -1;
  if (cut >= 0) branch = branch.slice(0, cut + 1);
  const elements = branch.map(shownElement);
  if (cut >= 0) elements.push(compareGrid(state.comparing.ids.filter((id) => state.messages.has(id))));
  if (state.failed) elements.push(failedElement(state.failed));
  if (state.pending && !state.pending.abandoned && state.pending.el) elements.push(state.pending.el);
  ui.messages.replaceChildren(...elements);
  state.shown = branch;
}

function shownElement(id) {
  const message = state.messages.get(id);
  if (!state.elements.has(id)) state.elements.set(id, createElement(message));
  updateElement(message);
  return state.elements.get(id);
}

/** The answers of a comparison, side by side (stacked on a phone), each with a Keep button. */
function compareGrid(ids) {
  const grid = document.createElement("div");
  grid.className = "compare-grid";
  grid.dataset.testid = "compare";
  for (const id of ids) {
    const cell = document.createElement("div");
    cell.className = "compare-cell";
    const keep = document.createElement("button");
    keep.type = "button";
    keep.className = "button";
    keep.dataset.keep = String(id);
    keep.dataset.testid = "compare-keep";
    keep.textContent = "Keep this answer";
    cell.append(shownElement(id), keep);
    grid.append(cell);
  }
  grid.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-keep]");
    if (button) keepCompared(Number(button.dataset.keep));
  });
  return grid;
}

/** The kept answer becomes the one on show; the others stay as its siblings (‹ n/m ›). */
function keepCompared(id) {
  state.chosen.set(state.comparing.fork, id);
  state.comparing = null;
  state.structureChanged = true;
  schedule();
}

/** The adapters ticked under "Compare with", less the one picked above (it answers anyway). */
function compareChoices() {
  return chosenToCompare(ui.compareBoxes.filter((box) => box.checked).map((box) => box.value), ui.picker.value);
}

function createElement(message) {
  const el = document.createElement("article");
  el.className = "message";
  el.dataset.testid = "message";
  el.dataset.role = message.role;
  if (message.id != null) el.dataset.messageId = message.id;
  const head = document.createElement("header");
  head.className = "message-head";
  const author = document.createElement("h2");
  author.className = "message-author";
  const body = document.createElement("div");
  body.className = message.role === "assistant" ? "message-body markdown" : "message-body";
  body.dataset.testid = "message-body";
  head.append(author);
  el.append(head, body);
  el._parts = { author, head, body, rendered: null };
  return el;
}

function updateElement(message) {
  const el = state.elements.get(message.id);
  const parts = el._parts;
  el.dataset.status = message.status;
  parts.author.textContent = message.role === "user" ? "You" : adapterName(message.adapter);
  if (state.editing === message.id) {
    if (!parts.body.querySelector("form")) parts.body.replaceChildren(editForm(message));
  } else if (parts.rendered !== message.content || parts.body.querySelector("form")) {
    parts.rendered = message.content;
    renderBody(parts.body, message);
  }
  renderSwitcher(parts.head, message);
  renderFooter(el, message);
}

function renderBody(body, message) {
  if (message.role === "user") {
    body.textContent = message.content;
    return;
  }
  const fragment = renderMarkdown(message.content);
  for (const pre of fragment.querySelectorAll("pre")) {
    pre.prepend(actionButton("Copy", "copy-code", "Copy this code"));
  }
  body.replaceChildren(fragment);
}

function renderSwitcher(head, message) {
  let switcher = head.querySelector(".switcher");
  const { index, count } = siblingsOf(state.messages, message.id);
  if (count < 2) {
    if (switcher) switcher.remove();
    return;
  }
  if (!switcher) {
    switcher = document.createElement("div");
    switcher.className = "switcher";
    switcher.setAttribute("role", "group");
    const noun = message.role === "user" ? "version" : "answer";
    switcher.setAttribute("aria-label", `Other ${noun}s`);
    const position = document.createElement("span");
    position.dataset.testid = "sibling-position";
    switcher.append(
      actionButton("‹", "previous", `Previous ${noun}`, "sibling-previous"),
      position,
      actionButton("›", "next", `Next ${noun}`, "sibling-next"),
    );
    head.append(switcher);
  }
  switcher.querySelector("span").textContent = `${index + 1}/${count}`;
  switcher.querySelector('[data-action="previous"]').disabled = index === 0;
  switcher.querySelector('[data-action="next"]').disabled = index === count - 1;
}

function renderFooter(el, message) {
  let footer = el.querySelector(":scope > .message-footer");
  if (!footer) {
    footer = document.createElement("footer");
    footer.className = "message-footer";
    el.append(footer);
  }
  const children = [];
  const note = noteFor(message);
  if (note) children.push(textPart("p", "message-note", note, "message-note"));
  if (message.error) {
    const error = textPart("p", "message-error", message.error.message, "message-error");
    error.setAttribute("role", "alert");
    children.push(error);
  }
  if (message.role === "assistant" && !LIVE.has(message.status)) {
    children.push(textPart("p", "message-meta", metaFor(message), "message-meta"));
  }
  children.push(actionsFor(message));
  footer.replaceChildren(...children);
}

function noteFor(message) {
  if (message.role !== "assistant") return "";
  if (message.status === "complete" && message.finish_reason === "length") {
    return "Cut at the length limit.";
  }
  return NOTES[message.status] || "";
}

function actionsFor(message) {
  const actions = document.createElement("div");
  actions.className = "message-actions";
  if (LIVE.has(message.status) || state.editing === message.id) return actions;
  actions.append(actionButton("Copy", "copy", "Copy this message"));
  if (message.role === "user") {
    actions.append(actionButton("Edit", "edit", "Edit and send again"));
    return actions;
  }
  if (message.status === "error") actions.append(actionButton("Retry", "regenerate", "Try this answer again", "retry"));
  else actions.append(actionButton("Regenerate", "regenerate", "Write another answer"));
  if (canContinue(message)) actions.append(actionButton("Continue", "continue", "Continue this answer"));
  return actions;
}

function canContinue(message) {
  if (!message.content) return false;
  return CONTINUABLE.has(message.status) || (message.status === "complete" && message.finish_reason === "length");
}

function actionButton(label, action, description, testid = action) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "message-action";
  button.dataset.action = action;
  button.dataset.testid = testid;
  button.textContent = label;
  if (description !== label) button.setAttribute("aria-label", description);
  button.title = description;
  return button;
}

function textPart(tag, className, text, testid) {
  const part = document.createElement(tag);
  part.className = className;
  part.dataset.testid = testid;
  part.textContent = text;
  return part;
}

function metaFor(message) {
  const parts = [adapterName(message.adapter)];
  const usage = message.usage || {};
  const timings = message.timings || {};
  if (usage.completion_tokens != null) parts.push(`${usage.completion_tokens} tokens`);
  if (timings.ttft_ms != null) parts.push(`first token ${Math.round(timings.ttft_ms)} ms`);
  const rate = tokensPerSecond(usage, timings);
  if (rate) parts.push(`${rate.toFixed(1)} tokens/s`);
  return parts.join(" · ");
}

function adapterName(slug) {
  if (!slug) return "Base model";
  const option = [...ui.picker.options].find((item) => item.value === slug);
  return option ? option.textContent.trim() : slug;
}

// Decoding speed: tokens after the first, over the time after the first.
function tokensPerSecond(usage, timings) {
  const tokens = usage.completion_tokens;
  const total = timings.total_ms;
  if (!tokens || !total) return null;
  const ttft = timings.ttft_ms || 0;
  if (tokens > 1 && total > ttft) return ((tokens - 1) * 1000) / (total - ttft);
  return (tokens * 1000) / total;
}

/** A send the server refused: the text, the reason, and a retry. */
function failedElement(failed) {
  const el = createElement({ role: "user" });
  el.dataset.status = "error";
  el._parts.body.textContent = failed.content;
  const error = textPart("p", "message-error", failed.error, "message-error");
  error.setAttribute("role", "alert");
  const actions = document.createElement("div");
  actions.className = "message-actions";
  actions.append(actionButton("Retry", "retry-send", "Send this message again", "retry"));
  el.append(error, actions);
  return el;
}

function pendingElement(content) {
  const el = createElement({ role: "user" });
  el.dataset.status = "pending";
  el._parts.author.textContent = "You";
  el._parts.body.textContent = content;
  return el;
}

function editForm(message) {
  const form = document.createElement("form");
  form.className = "edit-form";
  const label = document.createElement("label");
  label.className = "visually-hidden";
  label.textContent = "Edit your message";
  const area = document.createElement("textarea");
  area.id = `edit-${message.id}`;
  label.htmlFor = area.id;
  area.value = message.content;
  area.rows = 3;
  area.dataset.testid = "edit-box";
  const send = document.createElement("button");
  send.type = "submit";
  send.className = "button button-primary";
  send.textContent = "Send";
  send.dataset.testid = "edit-send";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "button";
  cancel.textContent = "Cancel";
  cancel.dataset.action = "edit-cancel";
  const buttons = document.createElement("div");
  buttons.className = "edit-actions";
  buttons.append(cancel, send);
  form.append(label, area, buttons);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    resendEdited(message, area.value);
  });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      endEdit();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      resendEdited(message, area.value);
    }
  });
  requestAnimationFrame(() => area.focus());
  return form;
}

function updateEmptyState() {
  ui.empty.hidden = ui.messages.childElementCount > 0 || Boolean(state.conversationId);
}

function isNearBottom() {
  const list = ui.messages;
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

function scrollToEnd() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.notice.textContent = "";
}

// --- Message actions ----------------------------------------------------------------------------

function onMessageAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const el = button.closest(".message");
  const id = el && Number(el.dataset.messageId);
  const message = state.messages.get(id);
  const action = button.dataset.action;
  if (action === "copy-code") copyText(button, button.parentElement.querySelector("code").textContent);
  else if (action === "retry-send") retrySend();
  else if (!message) return;
  else if (action === "copy") copyText(button, message.content);
  else if (action === "previous" || action === "next") switchSibling(message, action === "next" ? 1 : -1);
  else if (action === "regenerate") regenerate(message);
  else if (action === "continue") continueAnswer(message);
  else if (action === "edit") startEdit(message);
  else if (action === "edit-cancel") endEdit();
}

async function copyText(button, text) {
  let copied = true;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    copied = legacyCopy(text);
  }
  const label = button.textContent;
  button.textContent = copied ? "Copied" : "Copy failed";
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

// Where the Clipboard API is refused (an insecure origin), a selected textarea still works.
function legacyCopy(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (err) {
    ok = false;
  }
  area.remove();
  return ok;
}

function switchSibling(message, step) {
  const { index, siblings } = siblingsOf(state.messages, message.id);
  const next = siblings[index + step];
  if (next == null) return;
  state.chosen.set(keyOf(message.parent), next);
  state.structureChanged = true;
  schedule();
}

function startEdit(message) {
  if (isBusy()) return;
  state.editing = message.id;
  markDirty(message.id);
}

function endEdit() {
  const id = state.editing;
  state.editing = null;
  if (id != null) markDirty(id);
}

function resendEdited(message, content) {
  if (!content.trim() || isBusy()) return;
  state.editing = null;
  // The new message is a sibling of the edited one: it follows the same parent.
  if (sendMessage(content, message.parent)) markDirty(message.id);
}

function regenerate(message) {
  if (isBusy()) return;
  const sent = sendFrame({
    type: "chat.regenerate",
    message: message.id,
    adapter: ui.picker.value,
    params: {},
  });
  if (!sent) return showNotice("Not connected right now; try again in a moment.");
  state.pending = { kind: "regenerate", conversation: state.conversationId };
  updateControls();
}

function continueAnswer(message) {
  if (isBusy()) return;
  if (!sendFrame({ type: "chat.continue", message: message.id, params: {} })) {
    return showNotice("Not connected right now; try again in a moment.");
  }
  state.pending = { kind: "continue", message: message.id, conversation: state.conversationId };
  state.streams.set(message.id, { seq: null, message });
  message.status = "pending";
  markDirty(message.id);
}

// --- Sending and stopping -----------------------------------------------------------------------

function onComposerKeydown(event) {
  if (event.key !== "Enter" || event.isComposing) return;
  if (event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  submitPrompt();
}

function onDocumentKeydown(event) {
  if (event.key === "Escape" && liveHere().length) {
    event.preventDefault();
    stopGenerations();
  }
}

function liveHere() {
  return [...state.streams.values()]
    .map((stream) => stream.message)
    .filter((message) => state.messages.get(message.id) === message && LIVE.has(message.status));
}

function isBusy() {
  return Boolean(state.pending || state.loading || liveHere().length);
}

function socketOpen() {
  return Boolean(state.socket && state.socket.readyState === WebSocket.OPEN);
}

function updateControls() {
  const live = liveHere();
  const generating = Boolean(state.pending || live.length);
  ui.send.disabled = isBusy() || !socketOpen();
  ui.stop.hidden = !generating;
  ui.stop.disabled = !live.length;
  ui.messages.setAttribute("aria-busy", String(generating));
}

async function submitPrompt() {
  const content = ui.composer.value;
  if (!content.trim() || isBusy() || !socketOpen()) return;
  const branch = activeBranch(state.messages, state.chosen);
  const parent = branch.length ? branch[branch.length - 1] : null;
  if (!state.conversationId && ui.systemPrompt.value.trim()) {
    // A system prompt needs its conversation before the first message.
    if (!(await createConversation())) return;
  }
  if (compareChoices().length) {
    await sendCompare(content);
    return;
  }
  if (sendMessage(content, parent)) ui.composer.value = "";
}

/** One message to the picked adapter and each ticked one, through the native API (the page's
 * session); the answers then stream over the socket like any other. */
async function sendCompare(content) {
  if (!state.conversationId && !(await createConversation())) return;
  const adapters = [ui.picker.value, ...compareChoices()];
  let sent;
  try {
    sent = await postJSON(messagesUrl(state.conversationId), { content, adapters });
  } catch (err) {
    showNotice(err.message);
    return;
  }
  ui.composer.value = "";
  ui.settings.open = false;
  for (const box of ui.compareBoxes) box.checked = false;
  state.comparing = { fork: sent.user_message, ids: sent.messages };
  await loadMessages();
}

async function createConversation() {
  try {
    const conversation = await postJSON(`${homeUrl()}c/new`, {
      adapter: ui.picker.value,
      system_prompt: ui.systemPrompt.value,
    });
    state.conversations.unshift(conversation);
    adoptConversation(conversation.id);
    return true;
  } catch (err) {
    showNotice(err.message);
    return false;
  }
}

function sendMessage(content, parent) {
  const sent = sendFrame({
    type: "chat.send",
    conversation: state.conversationId,
    content,
    adapter: ui.picker.value, // "" is the base model
    params: {},
    parent,
  });
  if (!sent) {
    showNotice("Not connected right now. Your message is still in the box; send it again once reconnected.");
    return false;
  }
  state.failed = null;
  // The panel would keep hiding the conversation (on a phone, most of it) while the answer comes.
  ui.settings.open = false;
  state.pending = { kind: "send", content, parent, conversation: state.conversationId, el: pendingElement(content) };
  state.structureChanged = true;
  schedule();
  return true;
}

function retrySend() {
  const failed = state.failed;
  if (!failed || isBusy()) return;
  sendMessage(failed.content, failed.parent);
}

function stopGenerations() {
  for (const message of liveHere()) sendFrame({ type: "chat.stop", message: message.id });
  ui.stop.disabled = true;
}

// A send that never started: keep its text on show with the reason and a retry.
function failPending(sentence) {
  const pending = state.pending;
  state.pending = null;
  if (!pending || pending.abandoned) return;
  if (pending.kind === "send") {
    state.failed = { content: pending.content, parent: pending.parent, error: sentence };
  } else {
    showNotice(sentence);
    if (pending.kind === "continue") {
      state.streams.delete(pending.message);
      loadMessages();
    }
  }
  state.structureChanged = true;
  schedule();
}

// --- Socket -------------------------------------------------------------------------------------

function connect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  const socket = new WebSocket(socketUrl());
  socket.addEventListener("open", onSocketOpen);
  socket.addEventListener("message", onSocketMessage);
  socket.addEventListener("close", onSocketClose);
  state.socket = socket;
}

function sendFrame(frame) {
  if (!socketOpen()) return false;
  try {
    state.socket.send(JSON.stringify(frame));
  } catch (err) {
    return false;
  }
  return true;
}

function onSocketOpen(event) {
  if (event.target !== state.socket) return;
  const recovering = state.attempts > 0;
  state.attempts = 0;
  hideNotice();
  // Pick every followed generation up after the last event seen: no gap, no repeat.
  for (const [id, stream] of state.streams) {
    sendFrame({ type: "chat.follow", message: id, resume: stream.seq });
  }
  if (recovering && state.conversationId && !state.streams.size) loadMessages();
  updateControls();
}

function onSocketClose(event) {
  if (event.target !== state.socket) return;
  state.socket = null;
  if (state.pending) {
    failPending("The connection dropped before the answer started. Send it again once reconnected.");
  }
  updateControls();
  if (event.code === NOT_SIGNED_IN) {
    markSignedOut();
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (state.signedOut) return;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** state.attempts);
  const delay = base * (0.75 + Math.random() * 0.5);
  state.attempts += 1;
  showNotice("Connection lost. Reconnecting…");
  state.reconnectTimer = setTimeout(reconnect, delay);
}

// A refused handshake looks like any other failure, so after a few, check the session.
async function reconnect() {
  if (state.attempts > 2) {
    await getJSON(ui.root.dataset.conversationsUrl).catch(() => null);
  }
  if (!state.signedOut) connect();
}

function reconnectNow() {
  if (state.reconnectTimer) connect();
}

function markSignedOut() {
  state.signedOut = true;
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  showNotice("You’re signed out. Reload the page to sign in again.");
  updateControls();
}

// --- Stream events ------------------------------------------------------------------------------

const HANDLERS = {
  "inference.start": onStart,
  "inference.token": onToken,
  "inference.end": onEnd,
  "inference.error": onError,
};

function onSocketMessage(event) {
  let envelope;
  try {
    envelope = JSON.parse(event.data);
  } catch (err) {
    return;
  }
  const handler = envelope && HANDLERS[envelope.type];
  if (handler) handler(envelope.payload || {});
}

// A start opens (or, on a replay, reopens) a generation: its text is rebuilt from the events.
function onStart({ message: id, conversation, adapter, parent }) {
  let stream = state.streams.get(id);
  if (!stream) {
    if (!state.pending || state.pending.kind === "continue") return;
    stream = { seq: 0, message: { id, parent, role: "assistant" } };
    state.streams.set(id, stream);
  }
  const pending = state.pending;
  if (pending && (pending.kind !== "continue" || pending.message === id)) {
    state.pending = null;
    if (!pending.abandoned) placeAnswer(pending, stream.message, conversation, parent);
  }
  Object.assign(stream.message, {
    content: "", status: "streaming", adapter, error: null, usage: null, timings: null, finish_reason: "",
  });
  stream.seq = 0;
  markDirty(id);
}

function placeAnswer(pending, answer, conversation, parent) {
  if (pending.kind === "send") {
    adoptConversation(conversation);
    const user = { id: parent, parent: pending.parent, role: "user", content: pending.content, status: "complete" };
    state.messages.set(parent, user);
    state.chosen.set(keyOf(pending.parent), parent);
  }
  if (conversation === state.conversationId) {
    state.messages.set(answer.id, answer);
    state.chosen.set(keyOf(parent), answer.id);
  }
  state.structureChanged = true;
}

function onToken({ message: id, text }) {
  const stream = state.streams.get(id);
  if (!stream || stream.seq == null) return;
  stream.seq += 1;
  stream.message.content += text;
  markDirty(id);
}

function onError({ message: sentence, message_id: id }) {
  const stream = id == null ? null : state.streams.get(id);
  if (stream) {
    if (stream.seq != null) stream.seq += 1;
    stream.message.error = { message: sentence };
    markDirty(id);
  } else if (state.pending) {
    failPending(sentence);
  } else {
    showNotice(sentence);
  }
}

function onEnd({ message: id, reason, usage, timings }) {
  const stream = id == null ? null : state.streams.get(id);
  if (!stream) return;
  state.streams.delete(id);
  Object.assign(stream.message, {
    status: STATUS_FOR_REASON[reason] || "error",
    finish_reason: reason,
    usage,
    timings,
  });
  markDirty(id);
  refreshConversations(); // recency order
}

// Last, so that every declaration above is initialised before anything runs.
init();

// The chat page (docs/ARCHITECTURE.md, "The chat page"): this module wires the others. One
// socket to /ws/chat/ (socket.js) carries every generation this page follows; their envelopes
// go through the pure reducer in streams.js, whose effects land here; render.js draws the
// conversation on show, sidebar.js the list, composer.js the box and the settings panel.
//
// State, each piece named for what it holds: `thread` (the conversation on show), `streams`
// (the generations followed, reduced), and what each module keeps of its own (the socket's
// backoff, the view's elements and frame, the sidebar's list).
//
// Model and user text are untrusted: see render.js and markdown.js.
import { conversationInPath, createApi, pageUrls } from "./api.js";
import { copyText } from "./clipboard.js";
import { Composer } from "./composer.js";
import { MessageView } from "./render.js";
import { Sidebar } from "./sidebar.js";
import { ChatSocket, socketUrl } from "./socket.js";
import {
  abandonPending, dropPending, expect, expectContinue, follow, initialStreams, isLive, liveAmong, reduce,
} from "./streams.js";
import { branchTip, keyOf, siblingAt } from "./tree.js";

const NOT_CONNECTED = "Not connected right now; try again in a moment.";

const ui = findElements();
const urls = pageUrls(ui.root.dataset);
const api = createApi({ csrfToken: ui.root.dataset.csrfToken, onSignedOut: markSignedOut });
/** The conversation on show. */
const thread = {
  conversationId: Number(ui.root.dataset.conversationId) || null,
  messages: new Map(), // id -> message
  chosen: new Map(), // fork (parent id or ROOT) -> the child on show
  comparing: null, // {fork: user message id, ids: [answer ids]}: answers shown side by side
  editing: null, // id of the user message being edited
  failed: null, // {content, parent, error}: a send the server refused; shown with a retry
  loading: false,
};
let streams = initialStreams();

const page = {
  currentId: () => thread.conversationId,
  current: () => sidebar.current(),
  isBusy,
  connected: () => socket.open,
  branchTip: () => branchTip(thread.messages, thread.chosen),
  sendMessage,
  onCreated: (conversation) => {
    sidebar.add(conversation);
    adoptConversation(conversation.id);
  },
  onCompared: async (sent) => {
    thread.comparing = { fork: sent.user_message, ids: sent.messages };
    await loadMessages();
  },
  onTitle: showTitle,
  onNotice: showNotice,
  onDeletedCurrent: () => openConversation(null, { push: true }),
  onNavigate,
};
const socket = new ChatSocket(socketUrl(location), {
  onOpen: onSocketOpen,
  onEnvelope: (envelope) => update(reduce(streams, envelope)),
  onClose: onSocketClose,
  onLost: () => showNotice("Connection lost. Reconnecting…"),
  onSignedOut: markSignedOut,
  checkSession: () => api.getJSON(urls.conversations).catch(() => null),
});
const sidebar = new Sidebar({ list: ui.conversations, search: ui.search }, { api, urls, page });
const composer = new Composer(ui, { api, urls, page });
const view = new MessageView(ui.messages, {
  read: () => ({ thread, pending: streams.pending }),
  adapterName: (slug) => composer.adapterName(slug),
  onKeep: keepCompared,
  onResend: resendEdited,
  onEndEdit: endEdit,
  afterFlush: () => {
    updateEmptyState();
    updateControls();
  },
});

function init() {
  ui.stop.addEventListener("click", stopGenerations);
  ui.importFile.addEventListener("change", importConversations);
  ui.messages.addEventListener("click", onMessageAction);
  ui.newChat.addEventListener("click", onNavigate);
  document.addEventListener("keydown", onDocumentKeydown);
  window.addEventListener("online", () => socket.reconnectNow());
  window.addEventListener("popstate", () => openConversation(conversationInPath(location.pathname), { push: false }));
  socket.connect();
  sidebar.refresh();
  if (thread.conversationId) loadMessages();
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

// --- Stream effects -----------------------------------------------------------------------------

/** Take the reducer's next state and carry out what it asks. */
function update(next) {
  streams = next;
  for (const effect of next.effects) EFFECTS[effect.type](effect);
}

const EFFECTS = {
  changed: ({ message }) => {
    if (!thread.messages.has(message.id)) return; // an answer in a conversation not on show
    thread.messages.set(message.id, message);
    view.markDirty(message.id);
  },
  placed: placeAnswer,
  ended: () => sidebar.refresh(), // recency order
  failed: ({ content, parent, sentence }) => {
    thread.failed = { content, parent, error: sentence };
    view.restructure();
  },
  notice: ({ sentence }) => showNotice(sentence),
  reload: () => loadMessages(),
};

/** A started answer joins the tree (a send's user message too), chosen at its fork. */
function placeAnswer({ pending, answer, conversation, parent }) {
  if (pending.kind === "send") {
    adoptConversation(conversation);
    const user = { id: parent, parent: pending.parent, role: "user", content: pending.content, status: "complete" };
    thread.messages.set(parent, user);
    thread.chosen.set(keyOf(pending.parent), parent);
  }
  if (conversation === thread.conversationId) {
    thread.messages.set(answer.id, answer);
    thread.chosen.set(keyOf(parent), answer.id);
  }
  view.restructure();
}

// --- Socket -------------------------------------------------------------------------------------

function onSocketOpen(recovering) {
  hideNotice();
  // Pick every followed generation up after the last event seen: no gap, no repeat.
  for (const [id, stream] of streams.followed) {
    socket.send({ type: "chat.follow", message: id, resume: stream.seq });
  }
  if (recovering && thread.conversationId && !streams.followed.size) loadMessages();
  updateControls();
}

function onSocketClose() {
  if (streams.pending) {
    update(dropPending(streams, "The connection dropped before the answer started. Send it again once reconnected."));
  }
  updateControls();
}

function markSignedOut() {
  socket.signOut();
  showNotice("You’re signed out. Reload the page to sign in again.");
  updateControls();
}

// --- Conversations: navigation ------------------------------------------------------------------

function onNavigate(event) {
  const link = event.target.closest("a");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  openConversation(conversationInPath(new URL(link.href).pathname), { push: true });
}

/** Show another conversation without leaving the page: answers streaming elsewhere go on. */
function openConversation(id, { push }) {
  if (push) history.pushState(null, "", id ? urls.page(id) : urls.home);
  thread.conversationId = id;
  ui.root.dataset.conversationId = id || "";
  thread.messages = new Map();
  thread.chosen = new Map();
  thread.failed = null;
  thread.editing = null;
  thread.comparing = null;
  streams = abandonPending(streams);
  view.clear();
  hideNotice();
  const conversation = sidebar.current();
  composer.showConversation(conversation);
  if (!id) showTitle("");
  else if (conversation) showTitle(conversation.title);
  showExportLinks();
  sidebar.markCurrent();
  updateEmptyState();
  updateControls();
  if (id) loadMessages();
  else composer.focus();
}

/** The page's new conversation (made by its first message) becomes the one on show. */
function adoptConversation(id) {
  if (id === thread.conversationId) return;
  thread.conversationId = id;
  ui.root.dataset.conversationId = id;
  history.replaceState(null, "", urls.page(id));
  showExportLinks();
  sidebar.refresh();
}

function showTitle(title) {
  const text = thread.conversationId ? title || "Untitled" : "New chat";
  ui.title.textContent = text;
  document.title = thread.conversationId ? `${text} · Patchbay` : "Patchbay";
}

/** The settings panel's export links point at the conversation on show (none: hidden). */
function showExportLinks() {
  const id = thread.conversationId;
  ui.settingsExport.hidden = !id;
  for (const link of ui.settingsExport.querySelectorAll("a")) {
    link.href = id ? urls.export(id, link.dataset.format) : "";
  }
}

/** Upload an export (JSONL or JSON); the new conversations join the sidebar. */
async function importConversations() {
  const file = ui.importFile.files[0];
  if (!file) return;
  const body = new FormData();
  body.append("file", file);
  const { ok, data } = await api.postForm(ui.importFile.dataset.importUrl, body);
  ui.importFile.value = "";
  if (!ok) {
    showNotice((data.error && data.error.message) || "The import failed. Try again.");
    return;
  }
  showNotice(data.imported === 1 ? "Imported 1 conversation." : `Imported ${data.imported} conversations.`);
  sidebar.refresh();
}

// --- Messages: loading --------------------------------------------------------------------------

async function loadMessages() {
  const id = thread.conversationId;
  thread.loading = true;
  updateControls();
  try {
    const data = await api.getJSON(urls.messages(id));
    if (id !== thread.conversationId) return; // the reader moved on meanwhile
    mergeSaved(Array.isArray(data) ? data : data.results || []);
  } catch (err) {
    if (!socket.signedOut) showNotice(`Couldn’t load this conversation: ${err.message}`);
  } finally {
    thread.loading = false;
    updateControls();
  }
}

function mergeSaved(messages) {
  for (const message of messages) {
    const stream = streams.followed.get(message.id);
    // A generation this page follows knows more than the saved row does.
    thread.messages.set(message.id, stream ? stream.message : message);
    if (!stream && message.role === "assistant" && isLive(message)) followFrom(message, null);
  }
  view.restructure();
}

/** Follow a generation from the event after `resume` (null: replay it all). */
function followFrom(message, resume) {
  streams = follow(streams, message, resume);
  socket.send({ type: "chat.follow", message: message.id, resume });
}

// --- Message actions ----------------------------------------------------------------------------

function onMessageAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const el = button.closest(".message");
  const id = el && Number(el.dataset.messageId);
  const message = thread.messages.get(id);
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

function switchSibling(message, step) {
  const next = siblingAt(thread.messages, message.id, step);
  if (next == null) return;
  thread.chosen.set(keyOf(message.parent), next);
  view.restructure();
}

/** The kept answer becomes the one on show; the others stay as its siblings (‹ n/m ›). */
function keepCompared(id) {
  thread.chosen.set(thread.comparing.fork, id);
  thread.comparing = null;
  view.restructure();
}

function startEdit(message) {
  if (isBusy()) return;
  thread.editing = message.id;
  view.markDirty(message.id);
}

function endEdit() {
  const id = thread.editing;
  thread.editing = null;
  if (id != null) view.markDirty(id);
}

function resendEdited(message, content) {
  if (!content.trim() || isBusy()) return;
  thread.editing = null;
  // The new message is a sibling of the edited one: it follows the same parent.
  if (sendMessage(content, message.parent)) view.markDirty(message.id);
}

function regenerate(message) {
  if (isBusy()) return;
  const sent = socket.send({ type: "chat.regenerate", message: message.id, adapter: composer.adapter, params: {} });
  if (!sent) return showNotice(NOT_CONNECTED);
  streams = expect(streams, { kind: "regenerate", conversation: thread.conversationId });
  updateControls();
}

function continueAnswer(message) {
  if (isBusy()) return;
  if (!socket.send({ type: "chat.continue", message: message.id, params: {} })) return showNotice(NOT_CONNECTED);
  update(expectContinue(streams, message, thread.conversationId));
}

// --- Sending and stopping -----------------------------------------------------------------------

function sendMessage(content, parent) {
  const sent = socket.send({
    type: "chat.send",
    conversation: thread.conversationId,
    content,
    adapter: composer.adapter, // "" is the base model
    params: {},
    parent,
  });
  if (!sent) {
    showNotice("Not connected right now. Your message is still in the box; send it again once reconnected.");
    return false;
  }
  thread.failed = null;
  composer.foldSettings();
  streams = expect(streams, { kind: "send", content, parent, conversation: thread.conversationId });
  view.restructure();
  return true;
}

function retrySend() {
  const failed = thread.failed;
  if (!failed || isBusy()) return;
  sendMessage(failed.content, failed.parent);
}

function liveHere() {
  return liveAmong(streams, thread.messages);
}

function isBusy() {
  return Boolean(streams.pending || thread.loading || liveHere().length);
}

function stopGenerations() {
  for (const message of liveHere()) socket.send({ type: "chat.stop", message: message.id });
  ui.stop.disabled = true;
}

function onDocumentKeydown(event) {
  if (event.key === "Escape" && liveHere().length) {
    event.preventDefault();
    stopGenerations();
  }
}

function updateControls() {
  const live = liveHere();
  const generating = Boolean(streams.pending || live.length);
  ui.send.disabled = isBusy() || !socket.open;
  ui.stop.hidden = !generating;
  ui.stop.disabled = !live.length;
  ui.messages.setAttribute("aria-busy", String(generating));
}

function updateEmptyState() {
  ui.empty.hidden = ui.messages.childElementCount > 0 || Boolean(thread.conversationId);
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.notice.textContent = "";
}

// Last, so that every declaration above is initialised before anything runs.
init();

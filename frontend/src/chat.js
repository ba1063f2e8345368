// The chat page (chatsite/templates/chat/chat.html). Saved messages come from the read API;
// new replies stream over /ws/chat/ (docs/ARCHITECTURE.md, "Wire protocol").
// Model output and user text are untrusted: they only ever reach the page as text nodes.

const SOCKET_PATH = "/ws/chat/";
const NOT_SIGNED_IN = 4401;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const SIDEBAR_LIMIT = 200;
const FOLLOW_FIRST_MS = 2000;
const FOLLOW_MAX_MS = 15000;
const LIVE_STATUSES = new Set(["pending", "streaming"]);

const STATUS_FOR_REASON = {
  stop: "complete",
  length: "complete",
  cancelled: "stopped",
  interrupted: "interrupted",
  timeout: "error",
  error: "error",
};

const STATUS_NOTE = {
  stopped: "Stopped",
  interrupted: "Interrupted",
};

const ui = findElements();
const state = {
  conversationId: Number(ui.root.dataset.conversationId) || null,
  socket: null,
  attempts: 0,
  reconnectTimer: null,
  followTimer: null,
  followDelay: FOLLOW_FIRST_MS,
  signedOut: false,
  loading: false,
  pending: null, // {content, userEl}: sent, waiting for inference.start
  live: null, // {id, el, text, lastIndex, adapter}: the reply now streaming
};

init();

function init() {
  ui.form.addEventListener("submit", onSubmit);
  ui.composer.addEventListener("keydown", onComposerKeydown);
  ui.stop.addEventListener("click", stopGeneration);
  ui.picker.addEventListener("change", showAdapterDescription);
  document.addEventListener("keydown", onDocumentKeydown);
  window.addEventListener("online", reconnectNow);
  showAdapterDescription();
  connect();
  loadMessages();
}

function findElements() {
  const byId = (id) => document.getElementById(id);
  return {
    root: byId("main"),
    messages: byId("messages"),
    empty: byId("empty-state"),
    notice: byId("connection-notice"),
    form: byId("composer-form"),
    composer: byId("composer"),
    send: byId("send-button"),
    stop: byId("stop-button"),
    picker: byId("adapter-picker"),
    description: byId("adapter-description"),
    conversations: byId("conversation-list"),
  };
}

// --- URLs ---------------------------------------------------------------------------------------

function conversationsUrl() {
  return ui.root.dataset.conversationsUrl;
}

function messagesUrl(conversationId) {
  return `${conversationsUrl()}${conversationId}/messages/`;
}

function pageUrl(conversationId) {
  return `${ui.root.dataset.homeUrl}c/${conversationId}/`;
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${SOCKET_PATH}`;
}

// --- Read API -----------------------------------------------------------------------------------

async function fetchJSON(url) {
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (response.status === 401 || response.status === 403) {
    markSignedOut();
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  const data = await response.json();
  // Tolerate a paginated answer ({results: [...]}) as well as a bare list.
  return Array.isArray(data) ? data : data.results || [];
}

async function loadMessages() {
  // Never replace the list under a reply this page is streaming.
  if (!state.conversationId || state.pending || state.live) return;
  setLoading(true);
  try {
    renderMessages(await fetchJSON(messagesUrl(state.conversationId)));
  } catch (err) {
    if (!state.signedOut) showNotice("Couldn’t load this conversation. Reload the page to try again.");
  } finally {
    setLoading(false);
  }
}

async function refreshConversations() {
  try {
    renderConversations(await fetchJSON(conversationsUrl()));
  } catch (err) {
    // The sidebar is a convenience; the page still works with a stale one.
  }
}

async function stillSignedIn() {
  try {
    await fetchJSON(conversationsUrl());
  } catch (err) {
    return !state.signedOut;
  }
  return true;
}

// --- Rendering ----------------------------------------------------------------------------------

function messageElement({ id = null, role, status, content = "" }) {
  const el = document.createElement("article");
  el.className = "message";
  el.dataset.testid = "message";
  el.dataset.role = role;
  el.dataset.status = status;
  if (id != null) el.dataset.messageId = id;
  const author = document.createElement("h2");
  author.className = "message-author";
  author.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "message-body";
  body.textContent = content;
  el.append(author, body);
  return el;
}

function savedMessageElement(message) {
  const el = messageElement(message);
  if (message.role === "assistant" && !LIVE_STATUSES.has(message.status)) {
    showMeta(el, message);
  }
  if (message.error) showError(el, message.error.message);
  return el;
}

function renderMessages(messages) {
  ui.messages.replaceChildren(...messages.map(savedMessageElement));
  updateEmptyState();
  scrollToEnd();
  followSavedReplies(messages);
}

// A reply still being written that this socket does not follow (after a reconnect, or from
// another tab) is re-read from the API until it settles.
function followSavedReplies(messages) {
  clearTimeout(state.followTimer);
  if (!messages.some((message) => LIVE_STATUSES.has(message.status))) {
    state.followDelay = FOLLOW_FIRST_MS;
    return;
  }
  state.followTimer = setTimeout(loadMessages, state.followDelay);
  state.followDelay = Math.min(FOLLOW_MAX_MS, state.followDelay * 2);
}

function appendMessage(el) {
  ui.messages.append(el);
  updateEmptyState();
  scrollToEnd();
}

function setStatus(el, status) {
  el.dataset.status = status;
}

function partOf(el, className, tag = "p") {
  let part = el.querySelector(`:scope > .${className}`);
  if (!part) {
    part = document.createElement(tag);
    part.className = className;
    el.append(part);
  }
  return part;
}

function showMeta(el, { adapter, usage, timings, status, finish_reason: reason }) {
  const parts = [adapterName(adapter)];
  if (usage && usage.completion_tokens != null) {
    parts.push(`${usage.prompt_tokens ?? "?"} in / ${usage.completion_tokens} out tokens`);
  }
  if (timings && timings.ttft_ms != null) parts.push(`TTFT ${Math.round(timings.ttft_ms)} ms`);
  const rate = tokensPerSecond(usage, timings);
  if (rate) parts.push(`${rate.toFixed(1)} tok/s`);
  if (reason === "length") parts.push("Hit the length limit");
  if (STATUS_NOTE[status]) parts.push(STATUS_NOTE[status]);
  partOf(el, "message-meta").textContent = parts.join(" · ");
}

function showError(el, sentence) {
  const error = partOf(el, "message-error");
  error.setAttribute("role", "alert");
  error.textContent = sentence;
}

function adapterName(slug) {
  if (!slug) return "Base model";
  const option = [...ui.picker.options].find((item) => item.value === slug);
  return option ? option.textContent.trim() : slug;
}

// Decoding speed: tokens after the first, over the time after the first.
function tokensPerSecond(usage, timings) {
  const tokens = usage && usage.completion_tokens;
  const total = timings && timings.total_ms;
  if (!tokens || !total) return null;
  const ttft = timings.ttft_ms || 0;
  if (tokens > 1 && total > ttft) return ((tokens - 1) * 1000) / (total - ttft);
  return (tokens * 1000) / total;
}

function renderConversations(conversations) {
  const items = conversations.slice(0, SIDEBAR_LIMIT).map(conversationItem);
  ui.conversations.replaceChildren(...items);
}

function conversationItem(conversation) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = pageUrl(conversation.id);
  link.textContent = conversation.title || "Untitled";
  if (conversation.id === state.conversationId) link.setAttribute("aria-current", "page");
  item.append(link);
  return item;
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

function showAdapterDescription() {
  const option = ui.picker.selectedOptions[0];
  ui.description.textContent = option ? option.dataset.description || "" : "";
}

// --- Composer state -----------------------------------------------------------------------------

function isBusy() {
  return Boolean(state.pending || state.live || state.loading);
}

function setLoading(loading) {
  state.loading = loading;
  updateControls();
}

function socketOpen() {
  return Boolean(state.socket && state.socket.readyState === WebSocket.OPEN);
}

function updateControls() {
  const generating = Boolean(state.pending || state.live);
  ui.send.disabled = isBusy() || !socketOpen();
  ui.stop.hidden = !generating;
  ui.stop.disabled = !state.live;
  ui.messages.setAttribute("aria-busy", String(generating));
}

// --- Sending and stopping -----------------------------------------------------------------------

function onSubmit(event) {
  event.preventDefault();
  submitPrompt();
}

function onComposerKeydown(event) {
  if (event.key !== "Enter" || event.isComposing) return;
  if (event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  submitPrompt();
}

function onDocumentKeydown(event) {
  if (event.key === "Escape" && state.live) {
    event.preventDefault();
    stopGeneration();
  }
}

function submitPrompt() {
  const content = ui.composer.value;
  if (!content.trim() || isBusy()) return;
  if (state.socket && state.socket.readyState === WebSocket.CONNECTING) {
    state.socket.addEventListener("open", submitPrompt, { once: true });
    return;
  }
  const sent = sendFrame({
    type: "chat.send",
    conversation: state.conversationId,
    content,
    adapter: ui.picker.value, // "" is the base model
    params: {},
  });
  if (!sent) {
    showNotice("Not connected right now. Your message is still in the box; send it again once reconnected.");
    return;
  }
  const userEl = messageElement({ role: "user", status: "pending", content });
  appendMessage(userEl);
  state.pending = { content, userEl };
  ui.composer.value = "";
  updateControls();
}

function stopGeneration() {
  if (!state.live) return;
  sendFrame({ type: "chat.stop", message: state.live.id });
  ui.stop.disabled = true;
}

// A send that never started: mark it, and give the text back unless something new was typed.
function failPending(sentence) {
  const { content, userEl } = state.pending;
  state.pending = null;
  setStatus(userEl, "error");
  if (sentence) showError(userEl, sentence);
  if (!ui.composer.value) ui.composer.value = content;
  updateControls();
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
  updateControls();
  // The server marked anything in flight as interrupted; show what it saved.
  if (recovering) loadMessages();
}

function onSocketClose(event) {
  if (event.target !== state.socket) return;
  state.socket = null;
  abandonInFlight();
  if (event.code === NOT_SIGNED_IN) {
    markSignedOut();
    return;
  }
  scheduleReconnect();
}

function abandonInFlight() {
  if (state.live) {
    setStatus(state.live.el, "interrupted");
    state.live = null;
  }
  if (state.pending) failPending("The connection dropped before a reply started. Your message is back in the box.");
  updateControls();
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
  if (state.attempts > 2 && !(await stillSignedIn())) return;
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

function onStart({ message, conversation, adapter }) {
  if (!state.pending) return;
  setStatus(state.pending.userEl, "complete");
  state.pending = null;
  const el = messageElement({ id: message, role: "assistant", status: "streaming" });
  const text = document.createTextNode("");
  el.querySelector(".message-body").append(text);
  appendMessage(el);
  state.live = { id: message, el, text, lastIndex: -1, adapter };
  if (conversation !== state.conversationId) adoptConversation(conversation);
  updateControls();
}

function adoptConversation(conversationId) {
  state.conversationId = conversationId;
  ui.root.dataset.conversationId = conversationId;
  history.replaceState(null, "", pageUrl(conversationId));
  refreshConversations();
}

function onToken({ message, text, index }) {
  const live = liveReply(message);
  if (!live || index <= live.lastIndex) return;
  live.lastIndex = index;
  const follow = isNearBottom();
  live.text.appendData(text);
  if (follow) scrollToEnd();
}

function onError({ message, message_id: messageId }) {
  const live = liveReply(messageId);
  if (live) {
    showError(live.el, message);
  } else if (state.pending) {
    failPending(message);
  } else {
    showStrayError(message);
  }
}

function onEnd({ message, reason, usage, timings }) {
  const live = liveReply(message);
  if (!live) {
    if (message == null && state.pending) failPending("The message was not sent.");
    return;
  }
  const status = STATUS_FOR_REASON[reason] || "error";
  setStatus(live.el, status);
  showMeta(live.el, { adapter: live.adapter, usage, timings, status, finish_reason: reason });
  state.live = null;
  updateControls();
}

function liveReply(messageId) {
  return state.live && messageId != null && state.live.id === messageId ? state.live : null;
}

function showStrayError(sentence) {
  const error = document.createElement("p");
  error.className = "chat-error";
  error.setAttribute("role", "alert");
  error.textContent = sentence;
  appendMessage(error);
}

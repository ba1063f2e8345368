// Drawing the conversation on show (docs/ARCHITECTURE.md, "The chat page"): one element per
// message, kept between frames and brought up to date in place. Tokens only mark a message
// dirty; DOM work happens at most once per frame, however fast they arrive, and a hidden tab
// (which gets no frames) has a timer stand in.
//
// User text is only ever set with textContent; answers go through renderMarkdown (markdown-it,
// then DOMPurify). Nothing here builds HTML from strings.
import { renderMarkdown } from "./markdown.js";
import { activeBranch, siblingsOf } from "./tree.js";
import { actionsOf, metaFor, noteFor } from "./message-facts.js";
import { isLive } from "./streams.js";

const HIDDEN_TAB_FRAME_MS = 250;
const NEAR_BOTTOM_PX = 80;

/** The message list. `read()` answers {thread, pending}: the conversation on show
 * ({messages, chosen, comparing, editing, failed}) and the frame awaiting its start. */
export class MessageView {
  constructor(list, { read, adapterName, onKeep, onResend, onEndEdit, afterFlush }) {
    this.list = list;
    this.read = read;
    this.adapterName = adapterName;
    this.onKeep = onKeep;
    this.onResend = onResend;
    this.onEndEdit = onEndEdit;
    this.afterFlush = afterFlush;
    this.elements = new Map(); // message id -> its element
    this.dirty = new Set();
    this.structureChanged = false;
    this.frame = 0;
    this.frameTimer = null;
    this.pendingShown = null; // {pending, el}: the sent message awaiting its answer
  }

  /** One message's text or status changed. */
  markDirty(id) {
    this.dirty.add(id);
    this.schedule();
  }

  /** The branch on show may have changed: draw it again. */
  restructure() {
    this.structureChanged = true;
    this.schedule();
  }

  /** Another conversation: nothing drawn is kept. */
  clear() {
    this.elements = new Map();
    this.structureChanged = true;
    this.list.replaceChildren();
  }

  schedule() {
    if (this.frame) return;
    const run = () => {
      cancelAnimationFrame(this.frame);
      clearTimeout(this.frameTimer);
      this.frame = 0;
      this.flush();
    };
    this.frame = requestAnimationFrame(run);
    this.frameTimer = setTimeout(run, HIDDEN_TAB_FRAME_MS);
  }

  flush() {
    const stick = this.isNearBottom();
    const { thread, pending } = this.read();
    if (this.structureChanged) {
      this.structureChanged = false;
      this.renderBranch(thread, pending);
    } else {
      for (const id of this.dirty) {
        if (this.elements.has(id) && thread.messages.has(id)) this.update(thread, thread.messages.get(id));
      }
    }
    this.dirty.clear();
    this.afterFlush();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  renderBranch(thread, pending) {
    let branch = activeBranch(thread.messages, thread.chosen);
    const cut = thread.comparing ? branch.indexOf(thread.comparing.fork) : -1;
    if (cut >= 0) branch = branch.slice(0, cut + 1);
    const elements = branch.map((id) => this.shown(thread, id));
    if (cut >= 0) elements.push(this.compareGrid(thread, thread.comparing.ids.filter((id) => thread.messages.has(id))));
    if (thread.failed) elements.push(failedElement(thread.failed));
    const waiting = this.pendingElement(pending);
    if (waiting) elements.push(waiting);
    this.list.replaceChildren(...elements);
  }

  shown(thread, id) {
    const message = thread.messages.get(id);
    if (!this.elements.has(id)) this.elements.set(id, messageElement(message));
    this.update(thread, message);
    return this.elements.get(id);
  }

  /** A sent message shows, greyed, until its answer starts. */
  pendingElement(pending) {
    if (!pending || pending.kind !== "send" || pending.abandoned) return null;
    if (!this.pendingShown || this.pendingShown.pending !== pending) {
      this.pendingShown = { pending, el: pendingElement(pending.content) };
    }
    return this.pendingShown.el;
  }

  /** The answers of a comparison, side by side (stacked on a phone), each with a Keep button. */
  compareGrid(thread, ids) {
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
      cell.append(this.shown(thread, id), keep);
      grid.append(cell);
    }
    grid.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-keep]");
      if (button) this.onKeep(Number(button.dataset.keep));
    });
    return grid;
  }

  update(thread, message) {
    const el = this.elements.get(message.id);
    const parts = el._parts;
    const editing = thread.editing === message.id;
    el.dataset.status = message.status;
    parts.author.textContent = message.role === "user" ? "You" : this.adapterName(message.adapter);
    if (editing) {
      if (!parts.body.querySelector("form")) parts.body.replaceChildren(this.editForm(message));
    } else if (parts.rendered !== message.content || parts.body.querySelector("form")) {
      parts.rendered = message.content;
      renderBody(parts.body, message);
    }
    renderSwitcher(parts.head, message, siblingsOf(thread.messages, message.id));
    this.renderFooter(el, message, editing);
  }

  renderFooter(el, message, editing) {
    let footer = el.querySelector(":scope > .message-footer");
    if (!footer) {
      footer = document.createElement("footer");
      footer.className = "message-footer";
      el.append(footer);
    }
    const children = [];
    const note = noteFor(message);
    if (note) children.push(textPart("p", "message-note", note, "message-note"));
    if (message.error) children.push(errorPart(message.error.message));
    if (message.role === "assistant" && !isLive(message)) {
      children.push(textPart("p", "message-meta", metaFor(message, this.adapterName(message.adapter)), "message-meta"));
    }
    const actions = document.createElement("div");
    actions.className = "message-actions";
    for (const item of actionsOf(message, editing)) {
      actions.append(actionButton(item.label, item.action, item.description, item.testid));
    }
    children.push(actions);
    footer.replaceChildren(...children);
  }

  editForm(message) {
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
      this.onResend(message, area.value);
    });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.onEndEdit();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.onResend(message, area.value);
      }
    });
    requestAnimationFrame(() => area.focus());
    return form;
  }

  isNearBottom() {
    const list = this.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight < NEAR_BOTTOM_PX;
  }
}

function messageElement(message) {
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

function renderSwitcher(head, message, { index, count }) {
  let switcher = head.querySelector(".switcher");
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

/** A send the server refused: the text, the reason, and a retry. */
function failedElement(failed) {
  const el = messageElement({ role: "user" });
  el.dataset.status = "error";
  el._parts.body.textContent = failed.content;
  const actions = document.createElement("div");
  actions.className = "message-actions";
  actions.append(actionButton("Retry", "retry-send", "Send this message again", "retry"));
  el.append(errorPart(failed.error), actions);
  return el;
}

function pendingElement(content) {
  const el = messageElement({ role: "user" });
  el.dataset.status = "pending";
  el._parts.author.textContent = "You";
  el._parts.body.textContent = content;
  return el;
}

function errorPart(sentence) {
  const error = textPart("p", "message-error", sentence, "message-error");
  error.setAttribute("role", "alert");
  return error;
}

export function actionButton(label, action, description, testid = action) {
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

// The conversation sidebar: pure helpers first (which group a conversation goes in, the short
// date under its title), then the list itself (Sidebar), which only they and the DOM feed.

const SEARCH_DELAY_MS = 200;

/** Conversations the chat page made, and those made by OpenAI or LoRAX API calls (one per
 * call): the second group is shown apart, so it never buries the first. Order is kept. */
export function sidebarGroups(conversations) {
  const chats = [];
  const api = [];
  for (const conversation of conversations) {
    (conversation.source && conversation.source !== "chat" ? api : chats).push(conversation);
  }
  return { chats, api };
}

/** "14:05" today, "3 Nov" this year, "3 Nov 2025" before: short enough for the sidebar. */
export function shortDate(iso, now = new Date(), locale = undefined) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === now.toDateString();
  if (sameDay) return date.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  const options = { day: "numeric", month: "short" };
  if (date.getFullYear() !== now.getFullYear()) options.year = "numeric";
  return date.toLocaleDateString(locale, options);
}

/** The full date and time, for the tooltip. */
export function longDate(iso, locale = undefined) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(locale);
}

/** The label of an API conversation's source, as shown beside its title. */
export function sourceLabel(source) {
  return { openai: "OpenAI API", lorax: "LoRAX API" }[source] || "";
}

/** The sidebar's list of conversations, its search, rename and delete. `page` answers
 * currentId() and takes onTitle(title) (the one on show was renamed or reloaded),
 * onNotice(sentence), onDeletedCurrent() and onNavigate(event) (a click on a link). */
export class Sidebar {
  constructor(ui, { api, urls, page }) {
    this.ui = ui; // {list, search}
    this.api = api;
    this.urls = urls;
    this.page = page;
    this.conversations = []; // the whole list (not a search's), with adapter and system prompt
    this.apiGroupOpen = false; // "From the API", as the user left it
    this.searchTimer = null;
    ui.list.addEventListener("click", (event) => this.onClick(event));
    ui.search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.refresh(), SEARCH_DELAY_MS);
    });
  }

  /** The conversation on show, from the list (null: a new chat, or not listed yet). */
  current() {
    return this.find(this.page.currentId());
  }

  find(id) {
    return this.conversations.find((item) => item.id === id) || null;
  }

  /** A conversation this page just made, listed before the next refresh. */
  add(conversation) {
    this.conversations.unshift(conversation);
  }

  async refresh() {
    const query = this.ui.search.value.trim();
    try {
      const data = await this.api.getJSON(this.urls.search(query));
      if (!query) this.conversations = data.results;
      this.render(data.results, Boolean(query));
      const current = this.current();
      if (current) this.page.onTitle(current.title);
    } catch (err) {
      // The sidebar is a convenience; the page still works with a stale one.
    }
  }

  render(conversations, searching) {
    if (!conversations.length) {
      const empty = document.createElement("li");
      empty.className = "conversation-list-empty";
      empty.textContent = searching ? "No conversation matches." : "No conversations yet.";
      this.ui.list.replaceChildren(empty);
      return;
    }
    const { chats, api } = sidebarGroups(conversations);
    const items = chats.map((conversation) => this.item(conversation));
    if (api.length) items.push(this.apiGroup(api, searching));
    this.ui.list.replaceChildren(...items);
  }

  /** API calls, one conversation each, folded under one entry (open while searching). */
  apiGroup(conversations, searching) {
    const group = document.createElement("li");
    group.className = "conversation-group";
    const details = document.createElement("details");
    details.dataset.testid = "api-conversations";
    const currentId = this.page.currentId();
    details.open = searching || this.apiGroupOpen || conversations.some((c) => c.id === currentId);
    details.addEventListener("toggle", () => {
      if (!searching) this.apiGroupOpen = details.open;
    });
    const summary = document.createElement("summary");
    summary.textContent = `From the API (${conversations.length})`;
    const list = document.createElement("ul");
    list.className = "conversation-sublist";
    list.append(...conversations.map((conversation) => this.item(conversation)));
    details.append(summary, list);
    group.append(details);
    return group;
  }

  item(conversation) {
    const item = document.createElement("li");
    item.className = "conversation-item";
    item.dataset.conversationId = conversation.id;
    const title = conversation.title || "Untitled";
    const link = document.createElement("a");
    link.href = this.urls.page(conversation.id);
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
    if (conversation.id === this.page.currentId()) link.setAttribute("aria-current", "page");
    item.append(
      link,
      smallButton("✎", `Rename “${title}”`, "rename"),
      smallButton("✕", `Delete “${title}”`, "delete"),
    );
    return item;
  }

  /** The conversation on show is marked in the list. */
  markCurrent() {
    const currentId = this.page.currentId();
    for (const link of this.ui.list.querySelectorAll("a")) {
      const item = link.closest(".conversation-item");
      if (Number(item.dataset.conversationId) === currentId) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  onClick(event) {
    const button = event.target.closest("button[data-action]");
    const item = event.target.closest(".conversation-item");
    if (!item) return;
    const id = Number(item.dataset.conversationId);
    if (button && button.dataset.action === "rename") this.startRename(item, id);
    else if (button && button.dataset.action === "delete") this.delete(id);
    else if (event.target.closest("a")) this.page.onNavigate(event);
  }

  startRename(item, id) {
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
          const conversation = await this.api.postJSON(this.urls.action(id, "rename"), { title: input.value });
          if (id === this.page.currentId()) this.page.onTitle(conversation.title);
        } catch (err) {
          this.page.onNotice(err.message);
        }
      }
      this.refresh();
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

  async delete(id) {
    const entry = this.find(id);
    const title = entry ? entry.title || "Untitled" : "this conversation";
    if (!window.confirm(`Delete “${title}” and all its messages?`)) return;
    try {
      await this.api.postJSON(this.urls.action(id, "delete"), {});
    } catch (err) {
      this.page.onNotice(err.message);
      return;
    }
    if (id === this.page.currentId()) this.page.onDeletedCurrent();
    this.refresh();
  }
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

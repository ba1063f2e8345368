// Pure helpers for the conversation sidebar: which group a conversation goes in, and the short
// date shown under its title. No DOM here.

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

// What the page says about one message, as pure functions: the note under an answer, its meta
// line, the actions it offers. No DOM here (render.js draws them).
import { isLive } from "./streams.js";

const CONTINUABLE = new Set(["stopped", "interrupted"]);
const NOTES = {
  pending: "Waiting for the model…",
  stopped: "Stopped: this is a partial answer.",
  interrupted: "Interrupted: the connection or the server went away. The text so far is kept.",
  error: "This answer failed.",
};

/** The sentence under an answer ("" for none). */
export function noteFor(message) {
  if (message.role !== "assistant") return "";
  if (message.status === "complete" && message.finish_reason === "length") {
    return "Cut at the length limit.";
  }
  return NOTES[message.status] || "";
}

/** Whether "Continue" may extend this answer: a partial one, or one cut at the length limit. */
export function canContinue(message) {
  if (!message.content) return false;
  return CONTINUABLE.has(message.status) || (message.status === "complete" && message.finish_reason === "length");
}

/** The buttons under a message, as {label, action, description, testid}; none while it is
 * written or edited. */
export function actionsOf(message, editing) {
  if (isLive(message) || editing) return [];
  const actions = [action("Copy", "copy", "Copy this message")];
  if (message.role === "user") return [...actions, action("Edit", "edit", "Edit and send again")];
  if (message.status === "error") actions.push(action("Retry", "regenerate", "Try this answer again", "retry"));
  else actions.push(action("Regenerate", "regenerate", "Write another answer"));
  if (canContinue(message)) actions.push(action("Continue", "continue", "Continue this answer"));
  return actions;
}

function action(label, name, description, testid = name) {
  return { label, action: name, description, testid };
}

/** "Demo Poet · 12 tokens · first token 40 ms · 31.4 tokens/s": `adapter` is the shown name. */
export function metaFor(message, adapter) {
  const parts = [adapter];
  const usage = message.usage || {};
  const timings = message.timings || {};
  if (usage.completion_tokens != null) parts.push(`${usage.completion_tokens} tokens`);
  if (timings.ttft_ms != null) parts.push(`first token ${Math.round(timings.ttft_ms)} ms`);
  const rate = tokensPerSecond(usage, timings);
  if (rate) parts.push(`${rate.toFixed(1)} tokens/s`);
  return parts.join(" · ");
}

/** Decoding speed: tokens after the first, over the time after the first (null: unknown). */
export function tokensPerSecond(usage, timings) {
  const tokens = usage.completion_tokens;
  const total = timings.total_ms;
  if (!tokens || !total) return null;
  const ttft = timings.ttft_ms || 0;
  if (tokens > 1 && total > ttft) return ((tokens - 1) * 1000) / (total - ttft);
  return (tokens * 1000) / total;
}

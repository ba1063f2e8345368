// The generations a chat page follows, as a pure reducer: (state, envelope) -> state, no DOM
// (docs/ARCHITECTURE.md, "The chat page"). The page keeps one such state, feeds it every
// envelope its socket receives, and carries out the state's `effects`: the list of what this
// one step asks of the page (a message to redraw, an answer to place, a sentence to show).
// Effects never carry over: every step starts a fresh list. Inputs are never changed.
//
// State: {followed, pending, effects}
//   followed: Map assistant id -> {seq, message}: `seq` is the last event seen (start is 0;
//     null: nothing seen yet, the follow replays from the start), `message` the answer so far.
//   pending: the frame sent and not yet answered by inference.start, or null:
//     {kind: "send", content, parent, conversation} | {kind: "regenerate", conversation}
//     | {kind: "continue", message, conversation}; `abandoned` once the reader left.
//
// Effects: {type: "changed", message}, {type: "placed", pending, answer, conversation, parent},
// {type: "ended", message}, {type: "failed", content, parent, sentence} (a send refused),
// {type: "notice", sentence}, {type: "reload"} (read the conversation again).

/** Statuses of an answer still being written. */
export const LIVE = new Set(["pending", "streaming"]);

export function isLive(message) {
  return LIVE.has(message.status);
}

export function initialStreams() {
  return { followed: new Map(), pending: null, effects: [] };
}

const REDUCERS = {
  "inference.start": onStart,
  "inference.token": onToken,
  "inference.error": onError,
  "inference.end": onEnd,
};

/** The state after `envelope`; types it does not know (inference.notice) change nothing. */
export function reduce(state, envelope) {
  const next = step(state);
  const reducer = envelope && REDUCERS[envelope.type];
  return reducer ? reducer(next, envelope.payload || {}) : next;
}

/** Follow a generation from the event after `resume` (null: replay it all). */
export function follow(state, message, resume) {
  return { ...step(state), followed: withStream(state.followed, message.id, { seq: resume, message }) };
}

/** A frame was sent; its inference.start (or a refusal) answers it. */
export function expect(state, pending) {
  return { ...step(state), pending };
}

/** Continuing an answer: it waits again, and its replay starts from nothing. */
export function expectContinue(state, message, conversation) {
  const waiting = { ...message, status: "pending" };
  const next = {
    ...step(state),
    pending: { kind: "continue", message: message.id, conversation },
    followed: withStream(state.followed, message.id, { seq: null, message: waiting }),
  };
  next.effects.push({ type: "changed", message: waiting });
  return next;
}

/** The reader went to another conversation: a start still places its answer's stream, not
 * the answer in the page. */
export function abandonPending(state) {
  return state.pending ? { ...step(state), pending: { ...state.pending, abandoned: true } } : state;
}

/** A send that never started (refused, or the socket dropped first): a refused send keeps its
 * text on show with the reason; a regenerate or continue says why instead. */
export function dropPending(state, sentence) {
  const pending = state.pending;
  const next = { ...step(state), pending: null };
  if (!pending || pending.abandoned) return next;
  if (pending.kind === "send") {
    next.effects.push({ type: "failed", content: pending.content, parent: pending.parent, sentence });
    return next;
  }
  next.effects.push({ type: "notice", sentence });
  if (pending.kind === "continue") {
    next.followed = without(state.followed, pending.message);
    next.effects.push({ type: "reload" });
  }
  return next;
}

/** The followed answers among `shown` (the conversation on show) that are still being written. */
export function liveAmong(state, shown) {
  return [...state.followed.values()]
    .map((stream) => stream.message)
    .filter((message) => shown.has(message.id) && isLive(message));
}

// A start opens (or, on a replay, reopens) a generation: its text is rebuilt from the events.
function onStart(state, { message: id, conversation, adapter, parent }) {
  let stream = state.followed.get(id);
  const pending = state.pending;
  if (!stream) {
    if (!pending || pending.kind === "continue") return state; // someone else's answer
    stream = { seq: 0, message: { id, parent, role: "assistant" } };
  }
  const message = {
    ...stream.message,
    content: "", status: "streaming", adapter, error: null, usage: null, timings: null, finish_reason: "",
  };
  const next = { ...state, followed: withStream(state.followed, id, { seq: 0, message }) };
  if (pending && (pending.kind !== "continue" || pending.message === id)) {
    next.pending = null;
    if (!pending.abandoned) next.effects.push({ type: "placed", pending, answer: message, conversation, parent });
  }
  next.effects.push({ type: "changed", message });
  return next;
}

function onToken(state, { message: id, text }) {
  const stream = state.followed.get(id);
  if (!stream || stream.seq == null) return state; // a replay's tokens wait for its start
  const message = { ...stream.message, content: stream.message.content + text };
  return changed(state, id, { seq: stream.seq + 1, message });
}

function onError(state, { message: sentence, message_id: id }) {
  const stream = id == null ? null : state.followed.get(id);
  if (stream) {
    const message = { ...stream.message, error: { message: sentence } };
    return changed(state, id, { seq: stream.seq == null ? null : stream.seq + 1, message });
  }
  if (state.pending) return dropPending(state, sentence);
  state.effects.push({ type: "notice", sentence });
  return state;
}

// The server sends the saved status (the one lifecycle rule decides it); nothing here
// re-derives it from the reason.
function onEnd(state, { message: id, reason, status, usage, timings }) {
  const stream = id == null ? null : state.followed.get(id);
  if (!stream) return state;
  const message = { ...stream.message, status, finish_reason: reason, usage, timings };
  const next = { ...state, followed: without(state.followed, id) };
  next.effects.push({ type: "changed", message }, { type: "ended", message });
  return next;
}

function changed(state, id, stream) {
  const next = { ...state, followed: withStream(state.followed, id, stream) };
  next.effects.push({ type: "changed", message: stream.message });
  return next;
}

function step(state) {
  return { ...state, effects: [] };
}

function withStream(followed, id, stream) {
  return new Map(followed).set(id, stream);
}

function without(followed, id) {
  const copy = new Map(followed);
  copy.delete(id);
  return copy;
}

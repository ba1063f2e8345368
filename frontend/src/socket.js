// The page's one socket to /ws/chat/: connect, reconnect with backoff, frames out, envelopes
// in (docs/ARCHITECTURE.md, "The chat page"). It knows nothing of what the envelopes mean.

export const SOCKET_PATH = "/ws/chat/";
export const NOT_SIGNED_IN = 4401; // the server closes with it when the session ends
export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_MAX_MS = 10000;
const CHECK_SESSION_AFTER = 2; // failed attempts: a refused handshake looks like any failure

export function socketUrl({ protocol, host }) {
  const scheme = protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${host}${SOCKET_PATH}`;
}

/** The wait before reconnect attempt `attempts` (0 first): doubling up to the cap, with a
 * quarter either way of jitter so that a server's many pages do not all come back at once. */
export function backoffDelay(attempts, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempts);
  return base * (0.75 + random() * 0.5);
}

/** An envelope from a socket message, or null for anything that is not a JSON object. */
export function parseEnvelope(data) {
  try {
    const envelope = JSON.parse(data);
    return envelope && typeof envelope === "object" && !Array.isArray(envelope) ? envelope : null;
  } catch (err) {
    return null;
  }
}

/** `events`: onOpen(recovering), onEnvelope(envelope), onClose(), onLost() (a reconnect is
 * scheduled), onSignedOut() (closed with 4401), checkSession() (a read that may find the
 * session gone and call signOut). */
export class ChatSocket {
  constructor(url, events) {
    this.url = url;
    this.events = events;
    this.socket = null;
    this.attempts = 0;
    this.timer = null;
    this.signedOut = false;
  }

  get open() {
    return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN);
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    const socket = new WebSocket(this.url);
    socket.addEventListener("open", (event) => this.onOpen(event));
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", (event) => this.onClose(event));
    this.socket = socket;
  }

  /** Send one frame; false when the socket is not open (the caller says so). */
  send(frame) {
    if (!this.open) return false;
    try {
      this.socket.send(JSON.stringify(frame));
    } catch (err) {
      return false;
    }
    return true;
  }

  /** The network is back: do not wait out the backoff. */
  reconnectNow() {
    if (this.timer) this.connect();
  }

  /** The session is gone: no more reconnects. */
  signOut() {
    this.signedOut = true;
    clearTimeout(this.timer);
    this.timer = null;
  }

  onOpen(event) {
    if (event.target !== this.socket) return;
    const recovering = this.attempts > 0;
    this.attempts = 0;
    this.events.onOpen(recovering);
  }

  onMessage(event) {
    const envelope = parseEnvelope(event.data);
    if (envelope) this.events.onEnvelope(envelope);
  }

  onClose(event) {
    if (event.target !== this.socket) return;
    this.socket = null;
    this.events.onClose();
    if (event.code === NOT_SIGNED_IN) {
      this.events.onSignedOut();
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.signedOut) return;
    const delay = backoffDelay(this.attempts);
    this.attempts += 1;
    this.events.onLost();
    this.timer = setTimeout(() => this.reconnect(), delay);
  }

  async reconnect() {
    if (this.attempts > CHECK_SESSION_AFTER) await this.events.checkSession();
    if (!this.signedOut) this.connect();
  }
}

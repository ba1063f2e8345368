// The page's HTTP side: its URLs (read from the page's data attributes) and JSON requests with
// the session cookie. The page actions answer errors as {"error": {code, message}}; the
// native API as {code, message}: either way the sentence is what a rejection carries.

/** The page's URLs, from <main>'s data attributes (homeUrl, conversationsUrl). */
export function pageUrls({ homeUrl, conversationsUrl }) {
  return {
    home: homeUrl,
    conversations: conversationsUrl,
    page: (id) => `${homeUrl}c/${id}/`,
    messages: (id) => `${conversationsUrl}${id}/messages/`,
    search: (query) => `${homeUrl}c/search?q=${encodeURIComponent(query)}`,
    create: () => `${homeUrl}c/new`,
    action: (id, name) => `${homeUrl}c/${id}/${name}`, // rename, delete, settings
    export: (id, format) => `${homeUrl}c/${id}/export.${format}`,
  };
}

/** The conversation a page URL names (/c/<id>/), or null for a new chat. */
export function conversationInPath(pathname) {
  const match = pathname.match(/\/c\/(\d+)\/$/);
  return match ? Number(match[1]) : null;
}

/** The sentence of an error body, whichever family answered. */
export function errorSentence(data) {
  return (data && data.error && data.error.message) || (data && data.message) || "";
}

/** A 401 or 403: the session is gone. */
export class SignedOut extends Error {}

/** JSON requests with the page's session; `onSignedOut` runs when a read finds it gone. */
export function createApi({ csrfToken, onSignedOut }) {
  async function getJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      redirect: "error", // a login redirect means the session is gone
    }).catch(() => null);
    if (!response) throw new Error("The server could not be reached.");
    if (response.status === 401 || response.status === 403) {
      onSignedOut();
      throw new SignedOut("You’re signed out.");
    }
    if (!response.ok) throw new Error(`The server answered ${response.status}.`);
    return response.json();
  }

  /** POST a JSON action; resolves to its answer, rejects with the server's sentence. */
  async function postJSON(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(body),
    }).catch(() => null);
    if (!response) throw new Error("The server could not be reached. Try again.");
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(errorSentence(data) || `The server answered ${response.status}.`);
    return data;
  }

  /** POST a form (a file upload); resolves to {ok, data}, never rejects. */
  async function postForm(url, form) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
      body: form,
    }).catch(() => null);
    const data = response ? await response.json().catch(() => ({})) : {};
    return { ok: Boolean(response && response.ok), data };
  }

  return { getJSON, postJSON, postForm };
}

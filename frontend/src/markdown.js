// Markdown for untrusted text (model answers): markdown-it with raw HTML off, highlight.js for
// code, then DOMPurify over the result. Nothing rendered here may run script or make the
// browser fetch anything: images become text, links open only on a click, in a new tab,
// without referrer. The CSP (img-src 'self') is the second wall behind this one.
import MarkdownIt from "markdown-it";
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/common";

const md = new MarkdownIt({
  html: false, // raw HTML in the text shows as text
  linkify: true,
  breaks: true,
  highlight: highlightCode,
});

// An image would load from wherever its URL points: show its description instead.
md.renderer.rules.image = (tokens, index) => {
  const alt = tokens[index].content || "image";
  return `<span class="md-image">[image: ${md.utils.escapeHtml(alt)}]</span>`;
};

const ALLOWED_TAGS = [
  "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
  "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr",
  "ul",
];
const PURIFY = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ["href", "title", "class", "start"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
    node.setAttribute("referrerpolicy", "no-referrer");
  }
});

function highlightCode(code, language) {
  const known = language && hljs.getLanguage(language);
  const html = known
    ? hljs.highlight(code, { language, ignoreIllegals: true }).value
    : md.utils.escapeHtml(code);
  return `<pre class="code-block"><code class="hljs">${html}</code></pre>`;
}

/** A sanitised DOM fragment for `text`. */
export function renderMarkdown(text) {
  return DOMPurify.sanitize(md.render(text), PURIFY);
}

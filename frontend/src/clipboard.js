// Copy buttons: the Clipboard API, else (an insecure origin refuses it) a selected textarea.

/** Copy `text`, and say on `button` for a moment whether it worked. */
export async function copyText(button, text) {
  let copied = true;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    copied = legacyCopy(text);
  }
  const label = button.textContent;
  button.textContent = copied ? "Copied" : "Copy failed";
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

function legacyCopy(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (err) {
    ok = false;
  }
  area.remove();
  return ok;
}

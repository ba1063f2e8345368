// Light, dark, or the system's choice, remembered per browser. Served as is (no bundle), so
// that every page, sign-in included, gets the toggle.
const KEY = "patchbay-theme";
const ORDER = ["system", "light", "dark"];

function apply(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const button = document.getElementById("theme-toggle");
  if (button) button.textContent = `Theme: ${theme}`;
}

function saved() {
  try {
    return ORDER.includes(localStorage.getItem(KEY)) ? localStorage.getItem(KEY) : "system";
  } catch (err) {
    return "system";
  }
}

apply(saved());
const button = document.getElementById("theme-toggle");
if (button) {
  button.hidden = false;
  button.addEventListener("click", () => {
    const next = ORDER[(ORDER.indexOf(saved()) + 1) % ORDER.length];
    try {
      localStorage.setItem(KEY, next);
    } catch (err) {
      // Private windows may refuse storage; the choice then lasts for this page only.
    }
    apply(next);
  });
}

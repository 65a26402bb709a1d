// Keyboard shortcuts: one table of keys, ignored while typing, in a dialog or with a modifier.

const LIST_KEYS = new Set(["ArrowDown", "ArrowUp", "Home", "End"]);

function typing(target) {
  return target.closest("input, textarea, select, [contenteditable=true]");
}

/**
 * @param {Record<string, () => void>} shortcuts key (KeyboardEvent.key) -> action
 * @param {{searchBox: HTMLInputElement, list: HTMLElement, onSearchCleared: () => void}} options
 *   the arrow, Home and End keys act on the list only when the focus is not in a
 *   scrollable part of a message; Escape in the search box clears it, ArrowDown leaves it.
 */
export function installShortcuts(shortcuts, { searchBox, list, onSearchCleared }) {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    const key = event.key;
    const target = event.target;
    if (typing(target)) {
      if (target === searchBox && key === "Escape") {
        searchBox.blur();
        if (searchBox.value) {
          searchBox.value = "";
          onSearchCleared();
        }
        list.focus();
      } else if (target === searchBox && key === "ArrowDown") {
        event.preventDefault();
        list.focus();
      }
      return;
    }
    if (LIST_KEYS.has(key) && target !== document.body && !list.contains(target)) return;
    if (key === "Enter" && target.closest("button, a")) return;
    const action = shortcuts[key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
}

// The message list: one row per summary, newest first; keyboard selection.

import { addressList, addressName, h, icon, shortTime } from "./dom.js";

export class MessageList {
  /**
   * @param {HTMLElement} element the list (role=listbox)
   * @param {(id: string) => void} onOpen
   */
  constructor(element, onOpen) {
    this.element = element;
    this.onOpen = onOpen;
    this.rows = new Map();
    this.selectedId = null;
    element.addEventListener("click", (event) => {
      const row = event.target.closest("[data-id]");
      if (row) onOpen(row.dataset.id);
    });
  }

  get ids() {
    return [...this.element.children].map((row) => row.dataset.id).filter(Boolean);
  }

  /** Replace the rows with these summaries. */
  render(messages) {
    this.rows.clear();
    this.element.replaceChildren(...messages.map((message) => this.row(message)));
    this.select(this.selectedId, false);
  }

  /** Put a new summary on top (no-op if it is already listed); keep at most `limit` rows. */
  prepend(message, limit) {
    if (this.rows.has(message.ID)) return false;
    const row = this.row(message);
    row.classList.add("arrived");
    this.element.prepend(row);
    while (this.element.children.length > limit) this.removeRow(this.element.lastElementChild);
    return true;
  }

  remove(id) {
    const row = this.rows.get(id);
    if (!row) return false;
    this.removeRow(row);
    return true;
  }

  removeRow(row) {
    this.rows.delete(row.dataset.id);
    row.remove();
  }

  /** Change what a row shows: {Read, Tags}. */
  update(id, patch) {
    const row = this.rows.get(id);
    if (!row) return;
    const message = { ...row.message, ...patch };
    const fresh = this.row(message);
    if (row.classList.contains("selected")) this.markSelected(fresh, true);
    row.replaceWith(fresh);
  }

  summary(id) {
    return this.rows.get(id)?.message;
  }

  row(message) {
    const unread = !message.Read;
    const to = addressList(message.To);
    const row = h(
      "li",
      {
        role: "option",
        id: `message-${message.ID}`,
        class: `row${unread ? " unread" : ""}`,
        "aria-selected": "false",
        dataset: { id: message.ID },
      },
      h("span", { class: "dot", title: unread ? "Unread" : "" }),
      h(
        "div",
        { class: "row-main" },
        h(
          "div",
          { class: "row-top" },
          h("span", { class: "from", title: message.From?.Address || "" }, addressName(message.From) || "(no sender)"),
          h("time", { datetime: message.Created, title: new Date(message.Created).toLocaleString() }, shortTime(message.Created)),
        ),
        h(
          "div",
          { class: "subject" },
          h("span", {}, message.Subject || "(no subject)"),
          message.Attachments ? icon("paperclip", `${message.Attachments} attachments`) : null,
        ),
        message.Snippet ? h("div", { class: "snippet" }, message.Snippet) : null,
        h(
          "div",
          { class: "row-meta" },
          to ? h("span", { class: "to" }, "to ", to) : null,
          (message.Tags || []).map((tag) => h("span", { class: "tag" }, tag)),
        ),
      ),
    );
    if (unread) row.setAttribute("aria-label", `Unread: ${message.Subject || "(no subject)"}`);
    row.message = message;
    this.rows.set(message.ID, row);
    return row;
  }

  /** Highlight the row of `id` (and scroll it into view). */
  select(id, scroll = true) {
    for (const row of this.element.querySelectorAll(".selected")) this.markSelected(row, false);
    this.selectedId = id;
    const row = id ? this.rows.get(id) : null;
    if (!row) {
      this.element.removeAttribute("aria-activedescendant");
      return;
    }
    this.markSelected(row, true);
    this.element.setAttribute("aria-activedescendant", row.id);
    if (scroll) row.scrollIntoView({ block: "nearest" });
  }

  markSelected(row, selected) {
    row.classList.toggle("selected", selected);
    row.setAttribute("aria-selected", String(selected));
  }

  /** The ID `delta` rows away from the selection (the first row if nothing is selected). */
  neighbour(delta) {
    const ids = this.ids;
    if (!ids.length) return null;
    const index = ids.indexOf(this.selectedId);
    if (index < 0) return ids[delta > 0 ? 0 : ids.length - 1];
    return ids[Math.max(0, Math.min(ids.length - 1, index + delta))];
  }

  /** Refresh the relative times ("5 min ago"). */
  tick() {
    const now = new Date();
    for (const time of this.element.querySelectorAll("time")) {
      time.textContent = shortTime(time.getAttribute("datetime"), now);
    }
  }
}

// One message: its header, authentication verdicts, attachments and the HTML/Text/Headers/Raw tabs.

import * as api from "./api.js";
import { addressFull, fullTime, h, icon, linkify, size } from "./dom.js";

const RAW_LIMIT = 1024 * 1024;
const ATTACHMENTS_SHOWN = 100;
const AUTH_HEADERS = new Set(["authentication-results", "arc-authentication-results", "received-spf"]);
export const TABS = ["html", "text", "headers", "raw"];
const TAB_LABELS = { html: "HTML", text: "Text", headers: "Headers", raw: "Raw" };

/** The values of header `name` (any case) from the /headers map, top first. */
function headerValues(headers, name) {
  const key = Object.keys(headers).find((candidate) => candidate.toLowerCase() === name.toLowerCase());
  return key ? headers[key] : [];
}

/**
 * The verdicts of the topmost Authentication-Results header: {server, list: [{method, result}]}.
 * Only the topmost one counts: it is the receiving server's (smtpgate --verify adds it
 * there); ones further down came with the message and anyone could have written them.
 */
export function verdicts(headers) {
  const found = new Map();
  const [value] = headerValues(headers, "Authentication-Results");
  let server = "";
  if (value) {
    server = value.split(";")[0].replace(/\([^)]*\)/g, "").trim().split(/\s+/)[0] || "";
    const body = value.includes(";") ? value.slice(value.indexOf(";") + 1) : "";
    for (const match of body.matchAll(/(?:^|;)\s*([a-z][a-z0-9-]*)\s*=\s*([a-z]+)/gi)) {
      const method = match[1].toLowerCase();
      if (!found.has(method)) found.set(method, match[2].toLowerCase());
    }
  } else {
    const [spf] = headerValues(headers, "Received-SPF");
    const match = spf && /^\s*([a-z]+)/i.exec(spf);
    if (match) found.set("spf", match[1].toLowerCase());
  }
  return { server, list: [...found].map(([method, result]) => ({ method, result })) };
}

function verdictClass(result) {
  if (result === "pass") return "good";
  if (["fail", "permerror", "hardfail"].includes(result)) return "bad";
  if (["softfail", "temperror", "policy"].includes(result)) return "warn";
  return "neutral";
}

export class MessageView {
  /**
   * @param {HTMLElement} pane
   * @param {{onDelete: (id) => void, onToggleRead: (id, read) => void, onClose: () => void, onTab: (tab) => void}} actions
   */
  constructor(pane, actions) {
    this.pane = pane;
    this.actions = actions;
    this.message = null;
    this.tab = "html";
    this.panels = {};
    this.tabs = {};
  }

  clear(text = "Select a message to read it.") {
    this.message = null;
    this.pane.classList.remove("open");
    this.pane.replaceChildren(
      h("div", { class: "placeholder" }, icon("mailOpen"), h("p", {}, text), h("p", { class: "hint" }, "Press ? for keyboard shortcuts.")),
    );
  }

  loading() {
    this.pane.classList.add("open");
    this.pane.replaceChildren(h("div", { class: "placeholder" }, h("div", { class: "spinner", role: "status" }, "Loading…")));
  }

  error(text) {
    this.pane.replaceChildren(h("div", { class: "placeholder error" }, h("p", {}, text)));
  }

  /** Show `message` (Mailpit's message JSON); `read` is its current read state. */
  show(message, read, preferredTab) {
    this.message = message;
    this.read = read;
    this.pane.classList.add("open");
    const hasHTML = Boolean(message.HTML);
    const tab = preferredTab && (preferredTab !== "html" || hasHTML) ? preferredTab : hasHTML ? "html" : "text";
    this.verdictsSlot = h("div", { class: "verdicts", "aria-label": "Authentication results" });
    this.readButton = h("button", { type: "button", class: "ghost", onclick: () => this.actions.onToggleRead(message.ID, !this.read) });
    this.updateReadButton();
    const header = h(
      "header",
      { class: "message-header" },
      h(
        "div",
        { class: "message-actions" },
        h("button", { type: "button", class: "ghost back", onclick: () => this.actions.onClose(), title: "Back to the list (Esc)" }, icon("back"), "Back"),
        h("span", { class: "spacer" }),
        this.readButton,
        h("a", { class: "button ghost", href: api.download(api.rawURL(message.ID)), download: `${message.ID}.eml`, title: "Download the message (.eml)" }, icon("download"), "Download"),
        h("button", { type: "button", class: "ghost danger", onclick: () => this.actions.onDelete(message.ID), title: "Delete (Del)" }, icon("trash"), "Delete"),
      ),
      h("h1", { class: "message-subject" }, message.Subject || "(no subject)"),
      h(
        "dl",
        { class: "message-meta" },
        this.metaRow("From", addressFull(message.From)),
        this.metaRow("To", (message.To || []).map(addressFull).join(", ")),
        this.metaRow("Cc", (message.Cc || []).map(addressFull).join(", ")),
        this.metaRow("Bcc", (message.Bcc || []).map(addressFull).join(", ")),
        this.metaRow("Reply-To", (message.ReplyTo || []).map(addressFull).join(", ")),
        this.metaRow("Date", fullTime(message.Date)),
        this.metaRow("Size", size(message.Size)),
      ),
      message.Tags?.length ? h("div", { class: "tags" }, message.Tags.map((tag) => h("span", { class: "tag" }, tag))) : null,
      this.verdictsSlot,
      this.attachments(message, hasHTML),
    );
    const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Message parts", onkeydown: (event) => this.tabKeys(event) });
    const body = h("div", { class: "message-body" });
    this.tabs = {};
    this.panels = {};
    this.loaded = {};
    for (const name of TABS) {
      const disabled = name === "html" && !hasHTML;
      this.tabs[name] = h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${name}`,
          "aria-controls": `panel-${name}`,
          "aria-selected": "false",
          tabindex: "-1",
          disabled,
          onclick: () => this.showTab(name),
        },
        TAB_LABELS[name],
      );
      tablist.append(this.tabs[name]);
      this.panels[name] = h("section", { role: "tabpanel", id: `panel-${name}`, "aria-labelledby": `tab-${name}`, class: `panel panel-${name}`, hidden: true });
      body.append(this.panels[name]);
    }
    this.pane.replaceChildren(header, tablist, body);
    this.showTab(tab);
    api.getHeaders(message.ID).then(
      (headers) => {
        if (this.message === message) {
          this.headers = headers;
          this.showVerdicts(verdicts(headers));
        }
      },
      () => {},
    );
  }

  metaRow(label, value) {
    if (!value) return null;
    return [h("dt", {}, label), h("dd", {}, value)];
  }

  updateReadButton() {
    this.readButton.replaceChildren(icon(this.read ? "mail" : "mailOpen"), this.read ? "Mark unread" : "Mark read");
    this.readButton.title = `${this.read ? "Mark unread" : "Mark read"} (u)`;
  }

  setRead(read) {
    this.read = read;
    if (this.readButton) this.updateReadButton();
  }

  showVerdicts({ server, list }) {
    if (!list.length) return;
    this.verdictsSlot.replaceChildren(
      ...list.map(({ method, result }) =>
        h("span", { class: `verdict ${verdictClass(result)}`, title: `${method}=${result}` }, icon("shield"), h("b", {}, method.toUpperCase()), " ", result),
      ),
      server ? h("span", { class: "verdict-server", title: "The server that checked (the topmost Authentication-Results header)" }, `checked by ${server}`) : null,
    );
  }


  attachments(message, hasHTML) {
    const all = [...(message.Attachments || []), ...(hasHTML ? [] : message.Inline || [])];
    if (!all.length) return null;
    const parts = all.slice(0, ATTACHMENTS_SHOWN);
    const more = all.length - parts.length;
    return h(
      "ul",
      { class: "attachments", "aria-label": "Attachments" },
      parts.map((part) => {
        const url = api.partURL(message.ID, part.PartID);
        const name = part.FileName || `part-${part.PartID}`;
        const image = /^image\/(png|jpe?g|gif|webp|bmp|avif|svg\+xml)$/i.test(part.ContentType || "");
        return h(
          "li",
          { class: "attachment" },
          h(
            "a",
            { href: api.download(url), download: name, title: `Download ${name}` },
            image ? h("img", { src: url, alt: name, loading: "lazy", class: "thumb" }) : h("span", { class: "file-icon" }, icon("paperclip")),
            h("span", { class: "attachment-text" }, h("span", { class: "file-name" }, name), h("span", { class: "file-meta" }, `${part.ContentType || "application/octet-stream"} · ${size(part.Size)}`)),
            icon("download"),
          ),
        );
      }),
      more > 0 ? h("li", { class: "attachment-more" }, `and ${more.toLocaleString()} more (see Raw)`) : null,
    );
  }

  tabKeys(event) {
    const enabled = TABS.filter((name) => !this.tabs[name].disabled);
    const index = enabled.indexOf(this.tab);
    let next = null;
    if (event.key === "ArrowRight") next = enabled[(index + 1) % enabled.length];
    if (event.key === "ArrowLeft") next = enabled[(index - 1 + enabled.length) % enabled.length];
    if (event.key === "Home") next = enabled[0];
    if (event.key === "End") next = enabled[enabled.length - 1];
    if (next) {
      event.preventDefault();
      this.showTab(next);
      this.tabs[next].focus();
    }
  }

  showTab(name) {
    if (!this.message || !this.tabs[name] || this.tabs[name].disabled) return false;
    this.tab = name;
    for (const other of TABS) {
      const selected = other === name;
      this.tabs[other].setAttribute("aria-selected", String(selected));
      this.tabs[other].tabIndex = selected ? 0 : -1;
      this.panels[other].hidden = !selected;
    }
    if (!this.loaded[name]) {
      this.loaded[name] = true;
      this.fill(name, this.panels[name]);
    }
    this.actions.onTab(name);
    return true;
  }

  fill(name, panel) {
    const message = this.message;
    if (name === "html") this.fillHTML(panel, message);
    if (name === "text") {
      panel.append(message.Text ? h("pre", { class: "text-body" }, linkify(message.Text)) : h("p", { class: "muted" }, "This message has no text part."));
    }
    if (name === "headers") this.fillHeaders(panel, message);
    if (name === "raw") this.fillRaw(panel, message);
  }

  fillHTML(panel, message) {
    const frame = h("iframe", {
      class: "html-frame",
      title: "Message HTML",
      sandbox: "allow-popups allow-popups-to-escape-sandbox",
      referrerpolicy: "no-referrer",
      src: api.viewURL(message.ID, false),
    });
    const banner = h("div", { class: "remote-banner", hidden: true, role: "status" });
    panel.append(banner, frame);
    api.getRemote(message.ID).then(
      (remote) => {
        if (this.message !== message || !remote.Remote) return;
        const hosts = remote.Hosts || [];
        const shown = hosts.slice(0, 3).join(", ") + (hosts.length > 3 ? ` and ${hosts.length - 3} more` : "");
        const button = h(
          "button",
          {
            type: "button",
            class: "small",
            id: "load-remote",
            onclick: () => {
              frame.src = api.viewURL(message.ID, true);
              banner.replaceChildren(icon("image"), h("span", {}, `Remote content loaded from ${shown}.`));
              banner.classList.add("loaded");
            },
          },
          "Load remote content",
        );
        banner.replaceChildren(icon("shield"), h("span", {}, `Remote content from ${shown} was blocked.`), button);
        banner.hidden = false;
      },
      () => {},
    );
  }

  async fillHeaders(panel, message) {
    let headers = this.headers;
    try {
      headers = headers || (await api.getHeaders(message.ID));
    } catch (error) {
      panel.append(h("p", { class: "error" }, `Could not load the headers: ${error.message}`));
      return;
    }
    const names = Object.keys(headers);
    const first = names.filter((name) => AUTH_HEADERS.has(name.toLowerCase()));
    const rest = names.filter((name) => !AUTH_HEADERS.has(name.toLowerCase()));
    const rows = [];
    for (const name of [...first, ...rest]) {
      for (const value of headers[name]) {
        rows.push(h("tr", { class: AUTH_HEADERS.has(name.toLowerCase()) ? "auth" : "" }, h("th", { scope: "row" }, name), h("td", {}, value)));
      }
    }
    panel.append(h("table", { class: "headers" }, h("tbody", {}, rows)));
  }

  async fillRaw(panel, message) {
    panel.append(h("p", { class: "muted" }, "Loading…"));
    let raw;
    try {
      raw = await api.getRawStart(message.ID, RAW_LIMIT);
    } catch (error) {
      panel.replaceChildren(h("p", { class: "error" }, `Could not load the source: ${error.message}`));
      return;
    }
    const whole = h("a", { href: api.download(api.rawURL(message.ID)), download: `${message.ID}.eml` }, "Download the whole message");
    panel.replaceChildren(
      raw.complete ? null : h("p", { class: "notice" }, `Showing the first ${size(RAW_LIMIT)} of ${size(message.Size)}. `, whole),
      h("pre", { class: "raw-body" }, raw.text),
    );
  }

}

// The inbox page: list + message view, search, mailboxes, live updates and keyboard shortcuts.

import * as api from "./api.js";
import { h, icon, plural } from "./dom.js";
import { LiveEvents } from "./events.js";
import { installShortcuts } from "./keys.js";
import { MessageList } from "./list.js";
import { MessageView, TABS } from "./message.js";

const LIMIT = 50;
const $ = (selector) => document.querySelector(selector);

const state = {
  query: "",
  mailbox: "",
  start: 0,
  count: 0, // messages matching the current list
  total: 0, // in the current mailbox
  unread: 0,
  allTotal: 0, // in the whole inbox
  allUnread: 0,
  openId: null,
  tab: null,
  loadSeq: 0,
};

const list = new MessageList($("#messages"), (id) => openMessage(id));
const view = new MessageView($("#message-pane"), {
  onDelete: (id) => deleteMessage(id),
  onToggleRead: (id, read) => setRead(id, read),
  onClose: () => closeMessage(),
  onTab: (tab) => {
    state.tab = tab;
    saveHash();
  },
});

// ---- URL (hash) <-> state -------------------------------------------------------------

function saveHash() {
  const params = new URLSearchParams();
  if (state.query) params.set("q", state.query);
  if (state.mailbox) params.set("mailbox", state.mailbox);
  if (state.start) params.set("start", String(state.start));
  if (state.openId) params.set("id", state.openId);
  if (state.openId && state.tab) params.set("tab", state.tab);
  const hash = params.toString() ? `#${params}` : "";
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.query = params.get("q") || "";
  state.mailbox = params.get("mailbox") || "";
  state.start = Math.max(0, parseInt(params.get("start") || "0", 10) || 0);
  state.openId = params.get("id") || null;
  state.tab = TABS.includes(params.get("tab")) ? params.get("tab") : null;
  $("#search").value = state.query;
}

// ---- The list ---------------------------------------------------------------------------

async function loadList({ keepError = false } = {}) {
  const seq = ++state.loadSeq;
  let page;
  try {
    page = await api.listMessages({ query: state.query, mailbox: state.mailbox, start: state.start, limit: LIMIT });
  } catch (error) {
    if (seq !== state.loadSeq) return;
    showError(error.status === 400 ? `Search: ${error.message}` : `Could not load messages: ${error.message}`);
    list.render([]);
    state.count = 0;
    updateCounts();
    return;
  }
  if (seq !== state.loadSeq) return;
  if (!keepError) showError("");
  if (!page.messages.length && state.start > 0 && page.messages_count > 0) {
    state.start = Math.max(0, Math.floor((page.messages_count - 1) / LIMIT) * LIMIT);
    saveHash();
    return loadList();
  }
  state.count = page.messages_count ?? page.count ?? page.messages.length;
  state.total = page.total ?? state.total;
  state.unread = page.unread ?? state.unread;
  list.render(page.messages);
  if (state.openId) list.select(state.openId);
  updateCounts();
}

let reloadTimer = null;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadList({ keepError: true }), 250);
}

function filtered() {
  return Boolean(state.query.trim() || state.mailbox);
}

function updateCounts() {
  const shown = list.ids.length;
  const range = shown ? `${(state.start + 1).toLocaleString()}–${(state.start + shown).toLocaleString()} of ${state.count.toLocaleString()}` : "";
  $("#count").textContent = shown ? range : filtered() ? "No matches" : "";
  $("#prev-page").disabled = state.start === 0;
  $("#next-page").disabled = state.start + LIMIT >= state.count;
  $("#empty").hidden = shown > 0;
  $("#empty-text").textContent = filtered()
    ? "No messages match."
    : "No messages yet. Send one over SMTP and it appears here at once.";
  if (!filtered()) {
    state.allTotal = state.total;
    state.allUnread = state.unread;
  }
  $("#unread-count").textContent = state.allUnread ? `${state.allUnread.toLocaleString()} unread` : "";
  $("#total-count").textContent = plural(state.allTotal, "message");
  $("#delete-all").textContent = filtered() ? "Delete matching" : "Delete all";
  $("#delete-all").disabled = filtered() ? shown === 0 : state.total === 0;
  const allBadge = document.querySelector('.mailbox[data-mailbox=""] .badge');
  if (allBadge) {
    allBadge.textContent = state.allUnread.toLocaleString();
    allBadge.hidden = !state.allUnread;
  }
  document.title = `${state.allUnread ? `(${state.allUnread}) ` : ""}Inbox · smtpgate`;
}

function showError(text) {
  const element = $("#error");
  element.textContent = text;
  element.hidden = !text;
}

function setPage(start) {
  state.start = Math.max(0, start);
  saveHash();
  loadList();
  $("#messages").scrollTop = 0;
}

// ---- Mailboxes ------------------------------------------------------------------------------

async function loadMailboxes() {
  let boxes;
  let info = null;
  try {
    [boxes, info] = await Promise.all([api.getMailboxes(), api.getInfo().catch(() => null)]);
  } catch {
    return;
  }
  if (info && typeof info.Messages === "number") {
    state.allTotal = info.Messages;
    state.allUnread = info.Unread ?? 0;
  } else if (!filtered()) {
    state.allTotal = state.total;
    state.allUnread = state.unread;
  }
  updateCounts();
  const nav = $("#mailbox-nav");
  if (boxes === null) {
    nav.hidden = true;
    return;
  }
  nav.hidden = false;
  const item = (name, label, count) =>
    h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: `mailbox${state.mailbox === name ? " current" : ""}`,
          "aria-current": state.mailbox === name ? "true" : false,
          dataset: { mailbox: name },
          title: name || "Every message",
          onclick: () => chooseMailbox(name),
        },
        icon(name ? "at" : "inbox"),
        h("span", { class: "mailbox-name" }, label),
        count ? h("span", { class: "badge" }, count.toLocaleString()) : null,
      ),
    );
  const select = $("#mailbox-select");
  select.hidden = false;
  select.replaceChildren(
    h("option", { value: "" }, "All mail"),
    ...boxes.map((box) => h("option", { value: box.name, selected: box.name === state.mailbox }, box.name)),
  );
  select.value = state.mailbox;
  $("#mailboxes").replaceChildren(
    item("", "All mail", state.allUnread),
    ...boxes.map((box) => item(box.name, box.name, box.unread)),
  );
}

let mailboxTimer = null;
function reloadMailboxesSoon() {
  clearTimeout(mailboxTimer);
  mailboxTimer = setTimeout(loadMailboxes, 500);
}

function chooseMailbox(name) {
  state.mailbox = name;
  state.start = 0;
  saveHash();
  loadList();
  loadMailboxes();
}

// ---- One message ------------------------------------------------------------------------------

async function openMessage(id, { focusList = false } = {}) {
  if (!id) return;
  state.openId = id;
  list.select(id);
  saveHash();
  document.body.classList.add("reading");
  view.loading();
  let message;
  try {
    message = await api.getMessage(id);
  } catch (error) {
    if (state.openId !== id) return;
    view.error(error.status === 404 ? "This message no longer exists." : `Could not load the message: ${error.message}`);
    return;
  }
  if (state.openId !== id) return;
  const summary = list.summary(id);
  view.show(message, true, state.tab);
  if (focusList) $("#messages").focus();
  if (summary && !summary.Read) {
    // GET /api/v1/message/{ID} marked it read (as Mailpit does); the "update" event may
    // come later than this answer.
    list.update(id, { Read: true });
    state.unread = Math.max(0, state.unread - 1);
    updateCounts();
  }
}

function closeMessage() {
  state.openId = null;
  state.tab = null;
  document.body.classList.remove("reading");
  list.select(null);
  view.clear();
  saveHash();
  $("#messages").focus();
}

async function setRead(id, read) {
  try {
    await api.setRead([id], read);
  } catch (error) {
    showError(`Could not mark the message: ${error.message}`);
    return;
  }
  const summary = list.summary(id);
  if (summary && summary.Read !== read) {
    state.unread += read ? -1 : 1;
    list.update(id, { Read: read });
    updateCounts();
  }
  if (state.openId === id) view.setRead(read);
}

async function deleteMessage(id) {
  const next = list.neighbour(1) === id ? list.neighbour(-1) : list.neighbour(1);
  try {
    await api.deleteMessages([id]);
  } catch (error) {
    showError(`Could not delete the message: ${error.message}`);
    return;
  }
  removeFromList(id);
  if (next && next !== id && list.summary(next)) openMessage(next, { focusList: true });
  else closeMessage();
}

function removeFromList(id) {
  const summary = list.summary(id);
  if (list.remove(id)) {
    state.count = Math.max(0, state.count - 1);
    if (!filtered()) state.total = Math.max(0, state.total - 1);
    if (summary && !summary.Read) state.unread = Math.max(0, state.unread - 1);
    updateCounts();
    if (!list.ids.length && state.count > 0) reloadSoon();
  }
}

async function confirmDeleteAll() {
  const dialog = $("#confirm");
  const what = filtered()
    ? `Delete all ${plural(state.count, "message")} matching ${[state.mailbox && `mailbox ${state.mailbox}`, state.query && `“${state.query}”`].filter(Boolean).join(" and ")}?`
    : `Delete all ${plural(state.total, "message")}?`;
  $("#confirm-text").textContent = `${what} This cannot be undone.`;
  dialog.returnValue = "";
  dialog.showModal();
  $("#confirm-cancel").focus();
  const answer = await new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  if (answer !== "delete") return;
  try {
    await api.deleteAll({ query: state.query, mailbox: state.mailbox });
  } catch (error) {
    showError(`Could not delete: ${error.message}`);
    return;
  }
  closeMessage();
  state.start = 0;
  saveHash();
  await loadList();
  loadMailboxes();
}

// ---- Live updates ---------------------------------------------------------------------------------

function onEvent(event) {
  const data = event.Data || {};
  switch (event.Type) {
    case "new":
      state.allTotal += 1;
      if (!data.Read) state.allUnread += 1;
      if (!filtered()) {
        state.total += 1;
        if (!data.Read) state.unread += 1;
      }
      if (state.start === 0 && !filtered() && data.ID) {
        list.prepend(data, LIMIT);
        state.count += 1;
        updateCounts();
      } else {
        reloadSoon();
      }
      reloadMailboxesSoon();
      break;
    case "delete":
      if (data.ID) {
        removeFromList(data.ID);
        if (state.openId === data.ID) view.clear("This message was deleted.");
      }
      reloadMailboxesSoon();
      break;
    case "update":
      if (data.ID) {
        const summary = list.summary(data.ID);
        const patch = {};
        if (typeof data.Read === "boolean") patch.Read = data.Read;
        if (Array.isArray(data.Tags)) patch.Tags = data.Tags;
        if (summary && patch.Read !== undefined && summary.Read !== patch.Read && !filtered()) {
          state.unread = Math.max(0, state.unread + (patch.Read ? -1 : 1));
        }
        list.update(data.ID, patch);
        if (state.openId === data.ID && patch.Read !== undefined) view.setRead(patch.Read);
        updateCounts();
        reloadMailboxesSoon();
      }
      break;
    case "stats":
      if (typeof data.Total === "number") state.allTotal = data.Total;
      if (typeof data.Unread === "number") state.allUnread = data.Unread;
      if (!filtered()) {
        state.total = state.allTotal;
        state.unread = state.allUnread;
      }
      updateCounts();
      break;
    case "truncate":
      if (state.openId) view.clear("The inbox was emptied.");
      state.openId = null;
      saveHash();
      loadList();
      reloadMailboxesSoon();
      break;
    case "prune":
      reloadSoon();
      reloadMailboxesSoon();
      break;
    default:
      break;
  }
}

function onLiveState(status, reconnected) {
  const live = $("#live");
  live.dataset.state = status;
  live.title = { live: "Live: new mail appears at once", connecting: "Connecting…", offline: "Offline: reconnecting…" }[status];
  $("#live-label").textContent = { live: "Live", connecting: "Connecting", offline: "Offline" }[status];
  if (reconnected) {
    loadList();
    loadMailboxes();
  }
}

// ---- Keyboard ----------------------------------------------------------------------------------------

const shortcuts = {
  "/": () => $("#search").focus(),
  j: () => openMessage(list.neighbour(1), { focusList: true }),
  k: () => openMessage(list.neighbour(-1), { focusList: true }),
  ArrowDown: () => openMessage(list.neighbour(1), { focusList: true }),
  ArrowUp: () => openMessage(list.neighbour(-1), { focusList: true }),
  Home: () => openMessage(list.ids[0], { focusList: true }),
  End: () => openMessage(list.ids[list.ids.length - 1], { focusList: true }),
  Enter: () => openMessage(list.selectedId || list.neighbour(1)),
  o: () => openMessage(list.selectedId || list.neighbour(1)),
  Escape: () => closeMessage(),
  u: () => state.openId && setRead(state.openId, !view.read),
  Delete: () => state.openId && deleteMessage(state.openId),
  "#": () => state.openId && deleteMessage(state.openId),
  "[": () => !$("#prev-page").disabled && setPage(state.start - LIMIT),
  "]": () => !$("#next-page").disabled && setPage(state.start + LIMIT),
  1: () => view.showTab("html"),
  2: () => view.showTab("text"),
  3: () => view.showTab("headers"),
  4: () => view.showTab("raw"),
  R: () => $("#load-remote")?.click(),
  "?": () => $("#help").showModal(),
};

// ---- Search -----------------------------------------------------------------------------------------------

function search(query) {
  state.query = query;
  state.start = 0;
  saveHash();
  loadList();
}

let searchTimer = null;

// ---- Start ------------------------------------------------------------------------------------------------------

function start() {
  readHash();
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    search($("#search").value);
  });
  $("#search").addEventListener("input", (event) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search(event.target.value), 400);
  });
  $("#mailbox-select").addEventListener("change", (event) => chooseMailbox(event.target.value));
  $("#prev-page").addEventListener("click", () => setPage(state.start - LIMIT));
  $("#next-page").addEventListener("click", () => setPage(state.start + LIMIT));
  $("#delete-all").addEventListener("click", confirmDeleteAll);
  $("#mark-all-read").addEventListener("click", async () => {
    const ids = list.ids.filter((id) => !list.summary(id).Read);
    if (!ids.length) return;
    try {
      await api.setRead(ids, true);
    } catch (error) {
      showError(`Could not mark messages read: ${error.message}`);
      return;
    }
    for (const id of ids) list.update(id, { Read: true });
    state.unread = Math.max(0, state.unread - ids.length);
    updateCounts();
  });
  $("#help-button").addEventListener("click", () => $("#help").showModal());
  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
  }
  installShortcuts(shortcuts, { searchBox: $("#search"), list: $("#messages"), onSearchCleared: () => search("") });
  window.addEventListener("hashchange", () => {
    const before = [state.query, state.mailbox, state.start].join("\n");
    readHash();
    if ([state.query, state.mailbox, state.start].join("\n") !== before) loadList();
    if (state.openId && state.openId !== view.message?.ID) openMessage(state.openId);
  });
  setInterval(() => list.tick(), 30000);
  view.clear();
  loadList().then(() => {
    if (state.openId) openMessage(state.openId);
  });
  loadMailboxes();
  new LiveEvents(onEvent, onLiveState).start();
}

start();

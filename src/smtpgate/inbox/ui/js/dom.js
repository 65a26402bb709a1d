// Building DOM nodes and formatting values. Text always goes in as text, never as markup.

/** Create an element: h("a", {href: "#", class: "x"}, "text", childNode, [more]). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An inline SVG icon from the sprite-free set below (paths only, stroke-drawn). */
const ICONS = {
  inbox: "M3 13h5l2 3h4l2-3h5M5 5h14l2 8v6H3v-6z",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
  paperclip: "M16 7l-7.5 7.5a2 2 0 0 0 3 3L19 10a4 4 0 0 0-6-6l-7.5 7.5a6 6 0 0 0 8.5 8.5L20 14",
  download: "M12 4v11M7 10l5 5 5-5M5 20h14",
  back: "M15 5l-7 7 7 7",
  mail: "M3 6h18v12H3zM3 7l9 6 9-6",
  mailOpen: "M3 10l9-6 9 6v9H3zM3 10l9 6 9-6",
  search: "M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14zM20 20l-4-4",
  check: "M5 12l5 5 9-10",
  shield: "M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z",
  image: "M4 5h16v14H4zM4 16l5-5 4 4 3-3 4 4M15 9h.01",
  left: "M15 5l-7 7 7 7",
  right: "M9 5l7 7-7 7",
  keyboard: "M3 7h18v10H3zM7 11h.01M11 11h.01M15 11h.01M8 14h8",
  at: "M16 12a4 4 0 1 1-8 0 4 4 0 0 1 8 0zM16 12v1.5a2.5 2.5 0 0 0 5 0V12a9 9 0 1 0-3.5 7.1",
};

export function icon(name, label = "") {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  if (label) {
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
  } else {
    svg.setAttribute("aria-hidden", "true");
  }
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name] || ICONS.mail);
  svg.append(path);
  return svg;
}

/** "Ada Lovelace" for a named address, else the address itself. */
export function addressName(address) {
  if (!address) return "";
  return address.Name || address.Address || "";
}

/** "Ada Lovelace <ada@example.com>" (or just the address). */
export function addressFull(address) {
  if (!address) return "";
  if (address.Name && address.Address) return `${address.Name} <${address.Address}>`;
  return address.Address || address.Name || "";
}

export function addressList(addresses) {
  return (addresses || []).map(addressFull).filter(Boolean).join(", ");
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const yearFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

/** A short time for the list: "just now", "5 min ago", "14:02", "Mar 3", "Mar 3, 2024". */
export function shortTime(value, now = new Date()) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const seconds = (now - date) / 1000;
  if (seconds < 45 && seconds > -60) return "just now";
  if (seconds < 3600 && seconds > 0) return `${Math.round(seconds / 60)} min ago`;
  if (date.toDateString() === now.toDateString()) return timeFormat.format(date);
  if (date.getFullYear() === now.getFullYear()) return dayFormat.format(date);
  return yearFormat.format(date);
}

export function fullTime(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value || "") : fullFormat.format(date);
}

/** 1536 -> "1.5 KB". */
export function size(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function plural(count, word) {
  return `${count.toLocaleString()} ${word}${count === 1 ? "" : "s"}`;
}

/** Text with http(s) URLs turned into links that open in a new tab. */
export function linkify(text) {
  const fragment = document.createDocumentFragment();
  const pattern = /\bhttps?:\/\/[^\s<>"')\]]+/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    fragment.append(text.slice(last, match.index));
    fragment.append(h("a", { href: match[0], target: "_blank", rel: "noopener noreferrer" }, match[0]));
    last = match.index + match[0].length;
  }
  fragment.append(text.slice(last));
  return fragment;
}

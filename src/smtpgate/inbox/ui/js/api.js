// The Mailpit-compatible API (relative URLs, so the UI also works behind a path prefix).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path, { query, body, as = "json" } = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const options = { method, headers: { Accept: as === "json" ? "application/json" : "*/*" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    const text = await response.text();
    try {
      const error = JSON.parse(text);
      message = error.Error || error.error || error.message || message;
    } catch {
      if (text.trim()) message = text.trim().slice(0, 300);
    }
    throw new ApiError(response.status, message);
  }
  if (as === "text") return response.text();
  if (as === "none") return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const messageURL = (id) => `api/v1/message/${encodeURIComponent(id)}`;
export const partURL = (id, part) => `${messageURL(id)}/part/${encodeURIComponent(part)}`;
export const rawURL = (id) => `${messageURL(id)}/raw`;
/** Links that download (the server answers with Content-Disposition: attachment). */
export const download = (url) => `${url}?dl=1`;
export const viewURL = (id, remote) => `view/${encodeURIComponent(id)}.html?embed=1${remote ? "&remote=1" : ""}`;

/** A page of summaries: the search endpoint when there is a query, the listing otherwise. */
export function listMessages({ query = "", mailbox = "", start = 0, limit = 50 }) {
  const params = { start, limit, mailbox };
  if (query.trim()) return request("GET", "api/v1/search", { query: { ...params, query: query.trim() } });
  return request("GET", "api/v1/messages", { query: params });
}

export const getInfo = () => request("GET", "api/v1/info");
export const getMessage = (id) => request("GET", messageURL(id));
export const getHeaders = (id) => request("GET", `${messageURL(id)}/headers`);
/** The first `limit` bytes of the source as text, and whether that is all of it. */
export async function getRawStart(id, limit) {
  const response = await fetch(new URL(rawURL(id), document.baseURI));
  if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`);
  const reader = response.body.getReader();
  const chunks = [];
  let total = 0;
  let complete = false;
  while (total <= limit) {
    const { done, value } = await reader.read();
    if (done) {
      complete = true;
      break;
    }
    chunks.push(value);
    total += value.length;
  }
  if (!complete) reader.cancel().catch(() => {});
  const bytes = new Uint8Array(Math.min(total, limit));
  let offset = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, bytes.length - offset);
    bytes.set(part, offset);
    offset += part.length;
    if (offset >= bytes.length) break;
  }
  return { text: new TextDecoder().decode(bytes), complete: complete && total <= limit };
}
export const getRemote = (id) => request("GET", `view/${encodeURIComponent(id)}/remote`);
export const setRead = (ids, read) => request("PUT", "api/v1/messages", { body: { IDs: ids, Read: read }, as: "none" });
export const deleteMessages = (ids) => request("DELETE", "api/v1/messages", { body: { IDs: ids }, as: "none" });

/** Delete everything (in `mailbox`, if given), or everything a search matches. */
export function deleteAll({ query = "", mailbox = "" } = {}) {
  if (query.trim()) {
    return request("DELETE", "api/v1/search", { query: { query: query.trim(), mailbox }, as: "none" });
  }
  return request("DELETE", "api/v1/messages", { query: { mailbox }, body: {}, as: "none" });
}

/** The mailboxes as [{name, total, unread}], or null when the server has none to offer. */
export async function getMailboxes() {
  let data;
  try {
    data = await request("GET", "api/v1/mailboxes");
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
  const items = Array.isArray(data) ? data : data.mailboxes || data.Mailboxes || [];
  return items.map((item) =>
    typeof item === "string"
      ? { name: item, total: null, unread: null }
      : {
          name: item.Mailbox || item.Name || item.Address || item.name || "",
          total: item.Total ?? item.total ?? item.Messages ?? null,
          unread: item.Unread ?? item.unread ?? null,
        },
  ).filter((item) => item.name);
}

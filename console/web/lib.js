// Shared helpers of the console. Everything that comes from the API (and so from records) is
// put into the page with textContent or attributes, never parsed as HTML: `el` is the only way
// pages build elements.

/** Builds an element: `attrs` are attributes (or `on*` listeners), children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const TOKEN_KEY = "braid.adminToken";

/** The admin token entered on this tab (session storage: gone when the tab closes). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  document.dispatchEvent(new CustomEvent("braid-token"));
}

/** An error answer of the API, with its message and the parameter it names. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.parameter = error.parameter;
  }
}

/** GET or POST `path` on the public API; `admin` adds the token. */
export async function api(path, { admin = false, method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (admin && token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

/** Runs `load` now and every `ms` until the page changes; `load` gets a `live` flag. */
export function poll(page, ms, load) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await load();
    } catch (error) {
      console.error(error);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  page.onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });
  tick();
}

const numberFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

export function num(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return numberFormat.format(value);
  return String(value);
}

/** "3.2 s ago" for an RFC 3339 time or a number of seconds. */
export function ago(value) {
  if (value === null || value === undefined) return "—";
  const seconds = typeof value === "number" ? value : (Date.now() - Date.parse(value)) / 1000;
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 90) return `${seconds.toFixed(1)} s ago`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

export function time(value) {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** A table of `rows` with `columns`: [{ title, value: row => text|node, num?: bool }]. */
export function table(columns, rows, attrs = {}) {
  return el(
    "table",
    attrs,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.title)))),
    el(
      "tbody",
      {},
      rows.length === 0
        ? el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, "nothing yet"))
        : rows.map((row) =>
            el(
              "tr",
              {},
              columns.map((c) => el("td", { class: c.num ? "num" : null, "data-col": c.key || null }, c.value(row))),
            ),
          ),
    ),
  );
}

export function badge(status) {
  return el("span", { class: `badge badge-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

/** A titled section whose body is replaced on each refresh. */
export function section(title, id) {
  const body = el("div", { class: "section-body" });
  const node = el("section", { id }, el("h2", {}, title), body);
  return { node, set: (...children) => body.replaceChildren(...children.flat()) };
}

export function errorText(error) {
  return el("p", { class: "error" }, error instanceof ApiError && error.parameter ? `${error.parameter}: ${error.message}` : String(error.message || error));
}

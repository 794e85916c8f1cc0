// notifyd-elements.js: a drop-in notification center for notifyd, as custom elements (an ES module, no
// dependencies). One script and one tag give a bell with a dropdown, toasts and the unread count in the title:
//
//   <script type="module" src="https://notifyd.example.com/static/notifyd-elements.js"></script>
//   <notifyd-bell token="…end-user JWT…" inbox-href="/notifications"></notifyd-bell>
//
// Elements: <notifyd-bell>, <notifyd-toasts>, <notifyd-inbox>, <notifyd-preferences>, <notifyd-push-toggle>.
//
// Configuration, per element, first match wins:
//   • the `client` property: a NotifydClient of your own;
//   • the `token` attribute (and `server`, notifyd's origin, default the origin this module came from):
//     elements with the same server and token share one client;
//   • configure(optionsOrClient), exported: the default client of every element without the two above,
//     e.g. configure({ token: () => fetch("/my-notifyd-token").then((r) => r.text()) }) for fresh tokens.
//     Elements created before configure() wait for it.
// Bell attributes: inbox-href (a "See all" link), toasts="off" (no toasts), title-count="off" (leave the
// page title alone; by default it reads "(3) Title" while 3 are unread). Inbox attribute: page-size (20).
//
// Theming: CSS custom properties, set on the elements or any ancestor (they inherit into the shadow roots):
//   --notifyd-font     font family                 (default: system-ui, sans-serif)
//   --notifyd-fg       text colour                 (#1f2328)
//   --notifyd-bg       surface colour              (#ffffff)
//   --notifyd-muted    secondary text and borders  (#656d76)
//   --notifyd-accent   buttons, links, focus ring  (#2f5fd0)
//   --notifyd-danger   badge, critical, delete     (#cf222e)
//   --notifyd-unread   unread marker               (#2f5fd0)
//   --notifyd-radius   corner radius               (10px)
//   --notifyd-shadow   dropdown and toast shadow   (0 10px 30px rgb(0 0 0 / .16))
//   --notifyd-z        z-index of dropdown, toasts (1000)
// Finer control with ::part(...): bell: button, badge, panel, list, mark-all, see-all, empty; items (bell and
// inbox): item (plus "unread", "action-required"), meta, priority, title, body, action-required-label,
// actions, action, action-taken, mark-read, delete; toasts: toast, title, body, close; inbox: toolbar,
// control, status, list, load-more, empty; preferences: form, section, grid, save, status; push toggle:
// push-state, push-button.
//
// Safety: every string from the server is set as text (textContent), never parsed as HTML, and a
// notification's URL is used only when it is http(s) (relative URLs resolve against the page).

import { NotifydClient } from "./notifyd-client.js";

const MODULE_ORIGIN = new URL(import.meta.url).origin;
const PRIORITIES = ["critical", "high", "normal", "low"];
const PRIORITY_LABEL = { critical: "Critical", high: "High", normal: "Normal", low: "Low" };
const TOAST_MS = { low: 4000, normal: 6000, high: 10000, critical: null };
const MAX_TOASTS = 3;
const BELL_ITEMS = 10;
const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const FREQUENCIES = { instant: "Instantly", daily: "Daily digest", weekly: "Weekly digest", never: "Never" };

// --- clients ---------------------------------------------------------------------------------------------

/** One client per server + token, whatever the number of elements using it. */
const sharedClients = new Map();
/** @type {NotifydClient | null} */
let defaultClient = null;
const configured = new EventTarget();

function sharedClient(server, token) {
  const key = `${new URL(server, location.href).origin}\n${token}`;
  let client = sharedClients.get(key);
  if (!client) {
    client = new NotifydClient({ baseUrl: new URL(server, location.href).origin, token });
    sharedClients.set(key, client);
  }
  return client;
}

/** How many elements use each client: a shared client no element uses any more is closed. */
const holders = new Map();

function hold(client) {
  holders.set(client, (holders.get(client) ?? 0) + 1);
}

function release(client) {
  holders.set(client, holders.get(client) - 1);
  // A task later: an element moved in the document (disconnected, then connected again) keeps it.
  setTimeout(() => {
    if (holders.get(client) !== 0) return;
    holders.delete(client);
    for (const [key, shared] of sharedClients) {
      if (shared === client) {
        sharedClients.delete(key);
        client.close();
      }
    }
  });
}

/**
 * Sets the client of every element that has neither a `client` property nor a `token` attribute.
 * @param {NotifydClient | import("./notifyd-client.js").NotifydClientOptions} optionsOrClient
 * @returns {NotifydClient}
 */
export function configure(optionsOrClient) {
  defaultClient = optionsOrClient instanceof NotifydClient ? optionsOrClient : new NotifydClient(optionsOrClient);
  configured.dispatchEvent(new Event("change"));
  return defaultClient;
}

// --- small helpers ---------------------------------------------------------------------------------------

/**
 * An element with attributes, listeners (on…) and children; strings become text nodes, never HTML.
 * `text`, `value` and `checked` are set as properties.
 */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  const later = {};
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text" || key === "value" || key === "checked") later[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat(Infinity).filter((child) => child != null && child !== false));
  if ("text" in later) el.textContent = later.text;
  if ("value" in later) el.value = later.value;
  if ("checked" in later) el.checked = later.checked;
  return el;
}

/** A select with its options: [[value, label], ...]. */
function select(props, options) {
  return h("select", props, options.map(([value, label]) => h("option", { value, text: label })));
}

let fieldCount = 0;

/** A control with its visible label (by id: a label around a select would name it with its options too). */
function field(label, control) {
  control.id ||= `field-${++fieldCount}`;
  return h("div", { class: "field" }, h("label", { class: "label", for: control.id, text: label }), control);
}

/** The URL to open for a notification, only when it is http(s); null otherwise. */
function safeUrl(value) {
  if (typeof value !== "string" || value === "") return null;
  try {
    const url = new URL(value, document.baseURI);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function notificationUrl(n) {
  return safeUrl(n.data?.url) ?? safeUrl(n.data?.action_url);
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];

function timeAgo(iso) {
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
  }
  return relative.format(0, "second");
}

function timeView(iso) {
  return h("time", { datetime: iso, title: absolute.format(new Date(iso)), text: timeAgo(iso) });
}

function titleCase(word) {
  return word.charAt(0).toUpperCase() + word.slice(1).replaceAll("_", " ");
}

function hasPendingActions(n) {
  return Array.isArray(n.data?.actions) && n.data.actions.length > 0 && !n.action_taken;
}

/** The page title as "(N) Title" while N > 0; the plain title at 0. */
function showCountInTitle(count) {
  const plain = document.title.replace(/^\(\d+\) /, "");
  document.title = count > 0 ? `(${count}) ${plain}` : plain;
}

/** Keeps the newer of two versions of a notification (by seq). */
function newer(known, incoming) {
  return !known || (incoming.seq ?? 0) >= (known.seq ?? 0);
}

// --- styles ----------------------------------------------------------------------------------------------

const BASE_CSS = `
:host {
  --_font: var(--notifyd-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  --_fg: var(--notifyd-fg, #1f2328);
  --_bg: var(--notifyd-bg, #ffffff);
  --_muted: var(--notifyd-muted, #656d76);
  --_accent: var(--notifyd-accent, #2f5fd0);
  --_danger: var(--notifyd-danger, #cf222e);
  --_unread: var(--notifyd-unread, #2f5fd0);
  --_radius: var(--notifyd-radius, 10px);
  --_shadow: var(--notifyd-shadow, 0 10px 30px rgb(0 0 0 / .16), 0 2px 6px rgb(0 0 0 / .08));
  --_z: var(--notifyd-z, 1000);
  --_line: color-mix(in srgb, var(--_muted) 28%, transparent);
  --_soft: color-mix(in srgb, var(--_accent) 7%, var(--_bg));
  font: 14px/1.45 var(--_font);
  color: var(--_fg);
}
[hidden] { display: none !important; }
*, *::before, *::after { box-sizing: border-box; }
button, select, input { font: inherit; color: inherit; }
button {
  cursor: pointer; border: 1px solid var(--_line); background: var(--_bg); border-radius: calc(var(--_radius) * .6);
  padding: .3em .75em; line-height: 1.3;
}
button:hover:not(:disabled) { background: var(--_soft); }
button:disabled { cursor: default; opacity: .55; }
button.primary { background: var(--_accent); border-color: var(--_accent); color: #fff; }
button.primary:hover:not(:disabled) { background: color-mix(in srgb, var(--_accent) 85%, #000); }
button.danger { color: var(--_danger); }
button.link { border: 0; background: none; color: var(--_accent); padding: .2em .3em; }
button.link:hover:not(:disabled) { background: none; text-decoration: underline; }
select, input[type=time], input[type=text] {
  border: 1px solid var(--_line); border-radius: calc(var(--_radius) * .5); padding: .3em .5em; background: var(--_bg);
}
input[type=checkbox] { width: 1.05em; height: 1.05em; accent-color: var(--_accent); }
:focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }
a { color: var(--_accent); }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
.item { display: flex; gap: .75em; padding: .8em 1em; border-bottom: 1px solid var(--_line); position: relative; }
.item:last-child { border-bottom: 0; }
.item.unread { background: var(--_soft); }
.item.unread::before {
  content: ""; position: absolute; left: 0; top: 0; bottom: 0; width: 3px; background: var(--_unread);
}
.item .main { flex: 1; min-width: 0; }
.item .title { font-weight: 600; margin: 0; overflow-wrap: anywhere; }
.item .title a { color: inherit; text-decoration: none; }
.item .title a:hover { text-decoration: underline; }
.item .body { margin: .15em 0 0; color: color-mix(in srgb, var(--_fg) 85%, var(--_muted)); overflow-wrap: anywhere; }
.item .meta { display: flex; flex-wrap: wrap; align-items: center; gap: .35em .5em; font-size: .82em; color: var(--_muted); margin-bottom: .2em; }
.item .tools { display: flex; flex-direction: column; align-items: flex-end; gap: .3em; }
.item .tools button { font-size: .82em; white-space: nowrap; }
.priority {
  font-size: .75em; font-weight: 600; letter-spacing: .02em; text-transform: uppercase;
  padding: .05em .5em; border-radius: 999px; border: 1px solid currentColor;
}
.priority.critical { color: #fff; background: var(--_danger); border-color: var(--_danger); }
.priority.high { color: #9a4d00; background: #fff4e0; border-color: #f0c27a; }
.priority.low { color: var(--_muted); border-color: transparent; background: color-mix(in srgb, var(--_muted) 10%, transparent); }
.required {
  display: inline-block; margin: .35em 0 0; font-size: .8em; font-weight: 600; color: #8250df;
  background: #f3eefe; border-radius: 999px; padding: .05em .6em;
}
.item.action-required { box-shadow: inset 3px 0 0 #8250df; }
.actions { display: flex; flex-wrap: wrap; gap: .4em; margin-top: .5em; }
.taken { margin: .4em 0 0; font-size: .85em; color: var(--_muted); }
.empty { padding: 2em 1em; text-align: center; color: var(--_muted); }
.status { min-height: 1.4em; font-size: .9em; color: var(--_muted); }
.status.error { color: var(--_danger); }
.field { display: flex; flex-direction: column; gap: .2em; font-size: .9em; }
.field .label { color: var(--_muted); font-weight: 500; }
`;

/**
 * One notification as an item of the bell's list or the inbox's feed.
 * @param {object} n a Notification
 * @param {{ tag: string, compact?: boolean, onRead?: Function, onDelete?: Function, onAct?: Function, onOpen?: Function }} options
 */
function notificationView(n, options) {
  const unread = !n.read_at;
  const pending = hasPendingActions(n);
  const titleId = `title-${n.id}`;
  const url = notificationUrl(n);
  const parts = ["item", unread && "unread", pending && "action-required"].filter(Boolean).join(" ");
  const title = url
    ? h("a", { href: url, text: n.title, onclick: () => options.onOpen?.(n) })
    : n.title;
  const actions = Array.isArray(n.data?.actions) ? n.data.actions : [];
  return h(options.tag, {
    class: `item${unread ? " unread" : ""}${pending ? " action-required" : ""}`,
    part: parts, "data-id": n.id, "data-priority": n.priority, "data-type": n.type,
    "data-read": unread ? "false" : "true", "aria-labelledby": titleId, tabindex: options.compact ? "-1" : "0",
  },
  h("div", { class: "main" },
    h("div", { class: "meta", part: "meta" },
      // Normal is the default: only the others get a badge (data-priority tells them all apart).
      n.priority === "normal" ? null
        : h("span", { class: `priority ${n.priority}`, part: `priority priority-${n.priority}`, text: PRIORITY_LABEL[n.priority] ?? n.priority }),
      h("span", { text: titleCase(n.type) }),
      h("span", { "aria-hidden": "true", text: "·" }),
      timeView(n.created_at),
      n.group_count > 1 ? h("span", { text: `${n.group_count} grouped` }) : null,
      unread ? h("span", { class: "sr", text: "Unread" }) : null),
    h("p", { class: "title", part: "title", id: titleId }, title),
    n.body ? h("p", { class: "body", part: "body", text: n.body }) : null,
    pending ? h("span", { class: "required", part: "action-required-label", text: "Action required" }) : null,
    !options.compact && actions.length > 0
      ? h("div", { class: "actions", part: "actions", role: "group", "aria-label": `Actions for ${n.title}` },
        actions.map((a) => h("button", {
          type: "button", part: "action", "data-action": a.action,
          class: a.style === "danger" ? "danger" : a.style === "primary" || a === actions[0] ? "primary" : "",
          disabled: Boolean(n.action_taken), text: a.label || titleCase(a.action),
          onclick: (event) => options.onAct?.(n, a.action, event.currentTarget),
        })))
      : null,
    n.action_taken
      ? h("p", { class: "taken", part: "action-taken",
        text: `Done: ${actions.find((a) => a.action === n.action_taken)?.label || n.action_taken}` })
      : null),
  h("div", { class: "tools" },
    unread && options.onRead
      ? h("button", { type: "button", class: "link", part: "mark-read", "aria-label": `Mark read: ${n.title}`,
        text: "Mark read", onclick: () => options.onRead(n) })
      : null,
    options.onDelete
      ? h("button", { type: "button", class: "link danger", part: "delete", "aria-label": `Delete: ${n.title}`,
        text: "Delete", onclick: () => options.onDelete(n) })
      : null));
}

// --- the base element ------------------------------------------------------------------------------------

/** Shadow DOM, client resolution (property > attributes > configure()) and listeners removed on detach. */
class NotifydElement extends HTMLElement {
  static observedAttributes = ["token", "server"];
  static css = "";
  /** @type {NotifydClient | null} */
  #explicit = null;
  /** @type {NotifydClient | null} */
  #attached = null;
  #removers = [];
  #onConfigured = () => this.#refresh();

  /** @returns {NotifydClient | null} */
  get client() {
    return this.#attached ?? this.#explicit;
  }

  set client(value) {
    this.#explicit = value;
    this.#refresh();
  }

  connectedCallback() {
    if (!this.shadowRoot) {
      const root = this.attachShadow({ mode: "open" });
      root.append(h("style", { text: BASE_CSS + /** @type {any} */ (this.constructor).css }));
      this.render(root);
    }
    configured.addEventListener("change", this.#onConfigured);
    this.#refresh();
  }

  disconnectedCallback() {
    configured.removeEventListener("change", this.#onConfigured);
    this.#detach();
  }

  attributeChangedCallback() {
    this.#refresh();
  }

  #wanted() {
    if (this.#explicit) return this.#explicit;
    const token = this.getAttribute("token");
    if (token) return sharedClient(this.getAttribute("server") || MODULE_ORIGIN, token);
    return defaultClient;
  }

  #refresh() {
    if (!this.isConnected || !this.shadowRoot) return;
    const client = this.#wanted();
    if (client === this.#attached) return;
    this.#detach();
    if (!client) return; // waits for configure()
    this.#attached = client;
    hold(client);
    this.attach(client);
    client.connect();
  }

  #detach() {
    for (const remove of this.#removers.splice(0)) remove();
    const client = this.#attached;
    if (client) {
      this.#attached = null;
      this.detach();
      release(client);
    }
  }

  /** Listens to the attached client until it is detached. */
  listen(type, listener) {
    this.#removers.push(this.#attached.on(type, listener));
  }

  /** Also runs on detach. */
  whileAttached(remove) {
    this.#removers.push(remove);
  }

  /** @param {ShadowRoot} _root */
  render(_root) {}
  /** @param {NotifydClient} _client */
  attach(_client) {}
  detach() {}
}

// --- <notifyd-toasts> ------------------------------------------------------------------------------------

/** New notifications as toasts: at most three at once, the rest queued; critical ones stay until closed. */
export class NotifydToasts extends NotifydElement {
  static css = `
:host { position: fixed; right: 16px; bottom: 16px; z-index: var(--_z); display: flex; flex-direction: column; gap: 10px;
  width: min(360px, calc(100vw - 32px)); pointer-events: none; }
.region { display: flex; flex-direction: column; gap: 10px; }
.toast {
  pointer-events: auto; display: flex; gap: .6em; align-items: flex-start; background: var(--_bg); color: var(--_fg);
  border-radius: var(--_radius); box-shadow: var(--_shadow); padding: .8em .8em .8em 1em; cursor: default;
  border-left: 4px solid var(--_accent); animation: in .18s ease-out;
}
.toast.link { cursor: pointer; }
.toast.high { border-left-color: #d97706; }
.toast.critical { border-left-color: var(--_danger); }
.toast.low { border-left-color: var(--_muted); }
.toast .main { flex: 1; min-width: 0; }
.toast .title { font-weight: 600; margin: 0; overflow-wrap: anywhere; }
.toast .title a { color: inherit; text-decoration: none; }
.toast .body { margin: .15em 0 0; color: var(--_muted); overflow-wrap: anywhere;
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
.toast .close { border: 0; background: none; font-size: 1.2em; line-height: 1; padding: .1em .35em; color: var(--_muted); }
@keyframes in { from { transform: translateY(8px); opacity: 0; } }
@media (prefers-reduced-motion: reduce) { .toast { animation: none; } }
`;

  /** @type {Map<string, {el: HTMLElement, n: object, timer: number | undefined, left: number | null, since: number, hold: Set<string>}>} */
  #shown = new Map();
  /** @type {object[]} */
  #queue = [];
  #polite;
  #alert;

  render(root) {
    this.#polite = h("div", { class: "region", role: "status", "aria-live": "polite", "aria-label": "Notifications" });
    this.#alert = h("div", { class: "region", role: "alert", "aria-label": "Urgent notifications" });
    root.append(this.#alert, this.#polite);
  }

  attach() {
    this.listen("notification", (event) => {
      const { notification: n, isNew } = event.detail;
      if (n.read_at || n.deleted_at) this.#withdraw(n.id);
      else if (isNew) this.#offer(n);
    });
    this.listen("read_status", (event) => this.#withdraw(event.detail.notification_id));
  }

  detach() {
    for (const id of [...this.#shown.keys()]) this.#withdraw(id);
    this.#queue = [];
  }

  #offer(n) {
    if (this.#shown.has(n.id) || this.#queue.some((q) => q.id === n.id)) return;
    if (this.#shown.size < MAX_TOASTS) this.#show(n);
    else this.#queue.push(n);
  }

  /** Removes a toast (or its queued place), e.g. once read in another tab. */
  #withdraw(id) {
    this.#queue = this.#queue.filter((q) => q.id !== id);
    const toast = this.#shown.get(id);
    if (!toast) return;
    clearTimeout(toast.timer);
    toast.el.remove();
    this.#shown.delete(id);
    const next = this.#queue.shift();
    if (next) this.#show(next);
  }

  #show(n) {
    const url = notificationUrl(n);
    const el = h("div", {
      class: `toast ${n.priority}${url ? " link" : ""}`, part: `toast toast-${n.priority}`, "data-id": n.id,
      onclick: (event) => {
        if (event.target.closest(".close")) return;
        event.preventDefault(); // the title's link too: marked read first, then opened
        this.#open(n, url);
      },
    },
    h("div", { class: "main" },
      // A link for keyboard users when there is somewhere to go.
      h("p", { class: "title", part: "title" }, url ? h("a", { href: url, text: n.title }) : n.title),
      n.body ? h("p", { class: "body", part: "body", text: n.body }) : null),
    h("button", { type: "button", class: "close", part: "close", "aria-label": `Dismiss: ${n.title}`, text: "×",
      onclick: () => this.#withdraw(n.id) }));
    const left = n.priority in TOAST_MS ? TOAST_MS[n.priority] : TOAST_MS.normal;
    const toast = { el, n, timer: undefined, left, since: 0, hold: new Set() };
    // Pause while the user reads (hovers) or is on it with the keyboard.
    const pause = (why) => { toast.hold.add(why); this.#pause(toast); };
    const resume = (why) => { toast.hold.delete(why); if (toast.hold.size === 0) this.#run(toast); };
    el.addEventListener("mouseenter", () => pause("hover"));
    el.addEventListener("mouseleave", () => resume("hover"));
    el.addEventListener("focusin", () => pause("focus"));
    el.addEventListener("focusout", () => resume("focus"));
    this.#shown.set(n.id, toast);
    (n.priority === "critical" ? this.#alert : this.#polite).append(el);
    this.#run(toast);
  }

  #run(toast) {
    if (toast.left === null) return;
    toast.since = Date.now();
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => this.#withdraw(toast.n.id), toast.left);
  }

  #pause(toast) {
    if (toast.left === null || toast.timer === undefined) return;
    clearTimeout(toast.timer);
    toast.timer = undefined;
    toast.left = Math.max(1000, toast.left - (Date.now() - toast.since));
  }

  async #open(n, url) {
    this.#withdraw(n.id);
    await this.client?.markRead(n.id).catch(() => {}); // opening it matters more than the read mark
    if (url) location.assign(url);
  }
}

// --- <notifyd-bell> --------------------------------------------------------------------------------------

/** A bell button with the unread count and a dropdown of the latest notifications. */
export class NotifydBell extends NotifydElement {
  static observedAttributes = [...NotifydElement.observedAttributes, "inbox-href"];
  static css = `
:host { position: relative; display: inline-block; }
.bell {
  position: relative; display: inline-grid; place-items: center; width: 40px; height: 40px; padding: 0;
  border-radius: 999px; border: 1px solid transparent; background: transparent; color: inherit;
}
.bell:hover:not(:disabled), .bell[aria-expanded=true] { background: color-mix(in srgb, var(--_muted) 14%, transparent); }
.bell svg { width: 22px; height: 22px; }
.badge {
  position: absolute; top: 2px; right: 0; min-width: 18px; height: 18px; padding: 0 5px; border-radius: 999px;
  background: var(--_danger); color: #fff; font-size: 11px; font-weight: 700; line-height: 18px; text-align: center;
  box-shadow: 0 0 0 2px var(--_bg);
}
.panel {
  position: absolute; right: 0; top: calc(100% + 8px); z-index: var(--_z); width: min(400px, calc(100vw - 24px));
  background: var(--_bg); color: var(--_fg); border: 1px solid var(--_line); border-radius: var(--_radius);
  box-shadow: var(--_shadow); overflow: hidden; text-align: left;
}
.head { display: flex; align-items: center; justify-content: space-between; padding: .7em 1em; border-bottom: 1px solid var(--_line); }
.head h2 { font-size: 1em; margin: 0; }
.list { list-style: none; margin: 0; padding: 0; max-height: min(460px, 65vh); overflow: auto; }
.item:focus-visible { outline-offset: -2px; }
.item .body { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
.foot { border-top: 1px solid var(--_line); padding: .6em 1em; text-align: center; }
.foot a { text-decoration: none; font-weight: 500; }
`;

  /** @type {Map<string, object>} */
  #items = new Map();
  #count = 0;
  /** @type {NotifydToasts | null} the toasts this bell added to the page */
  #toasts = null;
  #button;
  #badge;
  #panel;
  #list;
  #markAll;
  #seeAll;
  #outside = (event) => {
    if (event.composedPath().includes(this)) return;
    this.close(false);
    // Back to the bell, unless the click put the focus somewhere (it moves after pointerdown).
    setTimeout(() => {
      if (document.activeElement === document.body || document.activeElement === null) this.#button.focus();
    });
  };

  render(root) {
    this.#badge = h("span", { class: "badge", part: "badge", "aria-hidden": "true", hidden: true });
    this.#button = h("button", {
      type: "button", class: "bell", part: "button", "aria-haspopup": "dialog", "aria-expanded": "false",
      "aria-controls": "panel", "aria-label": "Notifications", onclick: () => (this.isOpen ? this.close() : this.open()),
    });
    this.#button.append(bellIcon(), this.#badge);
    this.#list = h("ul", { class: "list", part: "list", "aria-label": "Latest notifications" });
    this.#markAll = h("button", { type: "button", class: "link", part: "mark-all", text: "Mark all read",
      onclick: () => this.#markAllRead() });
    this.#seeAll = h("a", { part: "see-all", text: "See all notifications" });
    this.#panel = h("div", { id: "panel", class: "panel", part: "panel", role: "dialog", "aria-label": "Notifications",
      hidden: true },
    h("div", { class: "head" }, h("h2", { text: "Notifications" }), this.#markAll),
    this.#list,
    h("div", { class: "foot" }, this.#seeAll));
    this.#panel.addEventListener("keydown", (event) => this.#onKey(event));
    this.#button.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) this.close();
    });
    root.append(this.#button, this.#panel);
    this.#renderLink();
  }

  attributeChangedCallback(name) {
    if (name === "inbox-href") this.#renderLink();
    else super.attributeChangedCallback();
  }

  get isOpen() {
    return Boolean(this.#panel && !this.#panel.hidden);
  }

  open() {
    this.#panel.hidden = false;
    this.#button.setAttribute("aria-expanded", "true");
    document.addEventListener("pointerdown", this.#outside, true);
    const first = this.#list.querySelector(".item") ?? this.#markAll;
    first.focus();
  }

  /** Closes the dropdown and (by default) gives the focus back to the bell. */
  close(focusBell = true) {
    if (!this.isOpen) return;
    this.#panel.hidden = true;
    this.#button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", this.#outside, true);
    if (focusBell) this.#button.focus();
  }

  attach(client) {
    this.#items.clear();
    this.#setCount(client.unreadCount);
    if (this.#toasts?.isConnected) {
      this.#toasts.client = client;
    } else if (this.getAttribute("toasts") !== "off" && !document.querySelector("notifyd-toasts")) {
      this.#toasts = /** @type {NotifydToasts} */ (document.createElement("notifyd-toasts"));
      this.#toasts.client = client;
      document.body.append(this.#toasts);
    }
    this.listen("notification", (event) => this.#merge(event.detail.notification));
    this.listen("unread_count", (event) => this.#setCount(event.detail.count));
    this.listen("read_status", (event) => {
      const { notification_id: id, read_at: readAt, unread_count: count } = event.detail;
      const known = this.#items.get(id);
      if (known) this.#items.set(id, { ...known, read_at: readAt });
      this.#setCount(count);
      this.#renderList();
    });
    this.#renderList();
    client.list({ limit: BELL_ITEMS }).then((page) => {
      if (this.client !== client) return;
      for (const n of page.items) this.#merge(n, false);
      this.#setCount(page.unread_count);
      this.#renderList();
    }, () => {}); // the live connection reports errors; the list stays empty until events come
  }

  detach() {
    this.close();
    if (this.getAttribute("title-count") !== "off") showCountInTitle(0);
  }

  #merge(n, render = true) {
    const known = this.#items.get(n.id);
    if (!newer(known, n)) return;
    if (n.deleted_at) this.#items.delete(n.id);
    else this.#items.set(n.id, n);
    if (render) this.#renderList();
  }

  #setCount(count) {
    if (typeof count !== "number") return;
    this.#count = count;
    this.#badge.hidden = count === 0;
    this.#badge.textContent = count > 99 ? "99+" : String(count);
    this.#button.setAttribute("aria-label", `Notifications, ${count} unread`);
    if (this.getAttribute("title-count") !== "off") showCountInTitle(count);
  }

  #renderList() {
    const latest = [...this.#items.values()]
      .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
      .slice(0, BELL_ITEMS);
    const focused = this.shadowRoot.activeElement?.closest?.(".item")?.dataset.id;
    this.#list.replaceChildren(...latest.map((n) => notificationView(n, {
      tag: "li", compact: true, onRead: (x) => this.#markRead(x), onOpen: (x) => this.#markRead(x),
    })));
    if (latest.length === 0) {
      this.#list.append(h("li", { class: "empty", part: "empty", text: "You're all caught up." }));
    }
    this.#markAll.disabled = this.#count === 0 && latest.every((n) => n.read_at);
    // Keep the keyboard user where they were when an item re-renders.
    if (focused) this.#list.querySelector(`[data-id="${CSS.escape(focused)}"]`)?.focus();
  }

  #renderLink() {
    const href = safeUrl(this.getAttribute("inbox-href"));
    if (!this.#seeAll) return;
    this.#seeAll.parentElement.hidden = !href;
    if (href) this.#seeAll.setAttribute("href", href);
  }

  async #markRead(n) {
    if (n.read_at) return;
    this.#items.set(n.id, { ...n, read_at: new Date().toISOString() });
    this.#renderList();
    try {
      await this.client?.markRead(n.id);
    } catch {
      this.#items.set(n.id, n); // still unread: shown so again
      this.#renderList();
    }
  }

  async #markAllRead() {
    const client = this.client;
    if (!client) return;
    try {
      await client.markAllRead();
    } catch {
      return; // nothing changed: the items stay unread
    }
    for (const [id, n] of this.#items) if (!n.read_at) this.#items.set(id, { ...n, read_at: new Date().toISOString() });
    this.#setCount(0);
    this.#renderList();
  }

  /** Arrow keys move between the items; Escape closes. */
  #onKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      this.close();
      return;
    }
    const items = [...this.#list.querySelectorAll(".item")];
    if (items.length === 0) return;
    const at = items.indexOf(this.shadowRoot.activeElement?.closest(".item"));
    const target = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[event.key];
    if (target === undefined) return;
    event.preventDefault();
    items[(target + items.length) % items.length].focus();
  }
}

function bellIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "1.8");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  for (const d of ["M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9", "M10.3 21a1.94 1.94 0 0 0 3.4 0"]) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

// --- <notifyd-inbox> -------------------------------------------------------------------------------------

/** The full list: filters, sort, infinite scroll, actions, live updates. */
export class NotifydInbox extends NotifydElement {
  static css = `
:host { display: block; background: var(--_bg); border: 1px solid var(--_line); border-radius: var(--_radius); overflow: hidden; }
.bar { display: flex; flex-wrap: wrap; gap: .75em 1em; align-items: flex-end; padding: .9em 1em; border-bottom: 1px solid var(--_line); }
.bar .spacer { flex: 1; }
.feed { display: block; }
.item:focus-visible { outline-offset: -2px; }
.more { display: flex; justify-content: center; padding: .8em; }
.bar .status { align-self: center; }
`;

  /** @type {Map<string, object>} */
  #items = new Map();
  #types = new Set();
  #cursor = null;
  #hasMore = false;
  #loading = false;
  /** Live changes that came while a page was loading: applied once it is in. */
  #pending = [];
  /** Bumped on every reset: answers to older requests are dropped. */
  #generation = 0;
  #controls = {};
  #feed;
  #more;
  #sentinel;
  #status;
  #observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) this.#loadMore();
  }, { rootMargin: "300px" });

  get pageSize() {
    const size = Number.parseInt(this.getAttribute("page-size") ?? "", 10);
    return Number.isFinite(size) ? Math.min(100, Math.max(1, size)) : 20;
  }

  render(root) {
    const changed = () => this.#reset();
    this.#controls = {
      type: select({ part: "control", name: "type", onchange: changed }, [["", "All types"]]),
      priority: select({ part: "control", name: "priority", onchange: changed },
        [["", "Any priority"], ...PRIORITIES.map((p) => [p, PRIORITY_LABEL[p]])]),
      read: select({ part: "control", name: "read", onchange: changed },
        [["", "All"], ["unread", "Unread"], ["read", "Read"]]),
      sort: select({ part: "control", name: "sort", onchange: changed },
        [["newest", "Newest first"], ["oldest", "Oldest first"], ["priority", "Priority"]]),
    };
    this.#status = h("div", { class: "status", part: "status", role: "status" });
    this.#feed = h("div", { class: "feed", part: "list", role: "feed", "aria-label": "Notifications", "aria-busy": "false" });
    this.#more = h("button", { type: "button", part: "load-more", text: "Load more",
      onclick: () => this.#loadMore() });
    this.#sentinel = h("div", { "aria-hidden": "true" });
    root.append(
      h("div", { class: "bar", part: "toolbar", role: "group", "aria-label": "Filter notifications" },
        field("Type", this.#controls.type), field("Priority", this.#controls.priority),
        field("Show", this.#controls.read), field("Sort", this.#controls.sort),
        h("span", { class: "spacer" }), this.#status),
      this.#feed, h("div", { class: "more", hidden: true }, this.#more), this.#sentinel);
  }

  attach(client) {
    this.listen("notification", (event) => this.#live(event.detail.notification));
    this.listen("read_status", (event) => {
      const known = this.#items.get(event.detail.notification_id);
      if (known) this.#live({ ...known, read_at: event.detail.read_at });
    });
    this.listen("unread_count", (event) => this.#addTypes(Object.keys(event.detail.by_type ?? {})));
    client.fetchUnreadCount().then((count) => this.#addTypes(Object.keys(count.by_type)), () => {});
    this.#observer.observe(this.#sentinel);
    this.whileAttached(() => this.#observer.disconnect());
    this.#reset();
  }

  #query() {
    const { type, priority, read, sort } = this.#controls;
    return {
      type: type.value || undefined, priority: priority.value || undefined,
      is_read: read.value === "" ? undefined : read.value === "read", sort: sort.value,
    };
  }

  #matches(n) {
    const q = this.#query();
    return (!q.type || n.type === q.type) && (!q.priority || n.priority === q.priority)
      && (q.is_read === undefined || q.is_read === Boolean(n.read_at));
  }

  #reset() {
    this.#generation += 1;
    this.#items.clear();
    this.#cursor = null;
    this.#hasMore = true;
    this.#loading = false;
    this.#pending = [];
    this.#feed.replaceChildren();
    this.#loadMore();
  }

  async #loadMore() {
    const client = this.client;
    if (!client || this.#loading || !this.#hasMore) return;
    const generation = this.#generation;
    this.#loading = true;
    this.#feed.setAttribute("aria-busy", "true");
    this.#more.disabled = true;
    try {
      const page = await client.list({ ...this.#query(), limit: this.pageSize, cursor: this.#cursor });
      if (generation !== this.#generation) return;
      this.#cursor = page.next_cursor;
      this.#hasMore = page.has_more && Boolean(page.next_cursor);
      this.#status.textContent = "";
      this.#status.classList.remove("error");
      for (const n of page.items) {
        if (this.#items.has(n.id)) continue; // moved by a live change meanwhile: the live copy is newer
        this.#items.set(n.id, n);
        this.#feed.append(this.#view(n));
      }
      this.#addTypes(page.items.map((n) => n.type));
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#status.textContent = `Could not load notifications: ${error.message}`;
      this.#status.classList.add("error");
    } finally {
      if (generation === this.#generation) {
        this.#loading = false;
        this.#feed.setAttribute("aria-busy", "false");
        this.#more.disabled = false;
        for (const n of this.#pending.splice(0)) this.#live(n);
        this.#afterChange();
        // Still at the bottom (a short page): observing again reports the sentinel's visibility anew.
        if (this.#hasMore && this.client === client) {
          this.#observer.unobserve(this.#sentinel);
          this.#observer.observe(this.#sentinel);
        }
      }
    }
  }

  #view(n) {
    return notificationView(n, {
      tag: "article",
      onRead: (x) => this.#run(() => this.client.markRead(x.id), () => this.#live({ ...x, read_at: new Date().toISOString() })),
      onDelete: (x) => this.#run(() => this.client.delete(x.id), () => this.#live({ ...x, deleted_at: new Date().toISOString() })),
      onOpen: (x) => { if (!x.read_at) this.client.markRead(x.id).catch(() => {}); },
      onAct: (x, action, button) => {
        for (const b of button.parentElement.querySelectorAll("button")) b.disabled = true;
        this.#run(() => this.client.act(x.id, action),
          () => this.#live({ ...x, action_taken: action, action_taken_at: new Date().toISOString() }),
          () => { for (const b of button.parentElement.querySelectorAll("button")) b.disabled = false; });
      },
    });
  }

  /** Runs a REST call; on success applies its effect locally (the live event confirms it later). */
  async #run(call, done, failed) {
    try {
      await call();
      done();
    } catch (error) {
      failed?.();
      this.#status.textContent = error.message;
      this.#status.classList.add("error");
    }
  }

  /** A live event or a local change: update in place, remove, or add on top. */
  #live(n) {
    if (this.#loading) {
      this.#pending.push(n);
      return;
    }
    this.#addTypes([n.type]);
    const known = this.#items.get(n.id);
    if (known && !newer(known, n)) return;
    const el = known ? this.#feed.querySelector(`[data-id="${CSS.escape(n.id)}"]`) : null;
    if (n.deleted_at || (known && !this.#matches(n))) {
      this.#items.delete(n.id);
      el?.remove();
    } else if (known) {
      this.#items.set(n.id, { ...known, ...n });
      const focused = el?.contains(this.shadowRoot.activeElement);
      const view = this.#view(this.#items.get(n.id));
      el?.replaceWith(view);
      if (focused) view.focus();
    } else if (this.#matches(n) && this.#place(n)) {
      this.#items.set(n.id, n);
    } else {
      return;
    }
    this.#afterChange();
  }

  /**
   * Puts a notification new to the list where its time sorts it (a new one: on top), if that is within
   * the pages loaded so far; false when a later page will bring it.
   */
  #place(n) {
    const sort = this.#controls.sort.value;
    if (sort === "priority") return false;
    const order = sort === "newest" ? -1 : 1;
    const at = Date.parse(n.created_at);
    const articles = [...this.#feed.querySelectorAll("article")];
    const created = (article) => Date.parse(this.#items.get(article.dataset.id).created_at);
    const after = articles.find((article) => order * (created(article) - at) > 0);
    const last = articles.at(-1);
    if (after) after.before(this.#view(n));
    // A tie with the last item loaded may come in the next page as well: that copy is skipped then.
    else if (!this.#hasMore || (last && created(last) === at)) this.#feed.append(this.#view(n));
    else return false;
    return true;
  }

  #afterChange() {
    const articles = [...this.#feed.querySelectorAll("article")];
    articles.forEach((article, i) => {
      article.setAttribute("aria-posinset", String(i + 1));
      article.setAttribute("aria-setsize", this.#hasMore ? "-1" : String(articles.length));
    });
    this.#more.parentElement.hidden = !this.#hasMore; // the row, not just the button: no gap below the end
    const empty = this.#feed.querySelector(".empty");
    if (articles.length === 0 && !this.#loading) {
      const filtered = Object.values(this.#query()).filter(Boolean).length > 1;
      if (!empty) this.#feed.append(h("p", { class: "empty", part: "empty" }));
      this.#feed.querySelector(".empty").textContent = filtered ? "No notifications match these filters." : "No notifications yet.";
    } else {
      empty?.remove();
    }
  }

  #addTypes(types) {
    const before = this.#types.size;
    for (const t of types) if (t) this.#types.add(t);
    if (this.#types.size === before) return;
    const control = this.#controls.type;
    const value = control.value;
    control.replaceChildren(h("option", { value: "", text: "All types" }),
      ...[...this.#types].sort().map((t) => h("option", { value: t, text: titleCase(t) })));
    control.value = value;
  }
}

// --- <notifyd-push-toggle> -------------------------------------------------------------------------------

const PUSH_TEXT = {
  unsupported: "This browser cannot receive notifications from this site (it needs a secure connection and service workers).",
  "not-configured": "Browser notifications are not set up on this server yet.",
  denied: "Notifications are blocked for this site. To unblock them, click the icon left of the address bar, "
    + "allow Notifications, then reload this page.",
  prompt: "Get notified on this device even when this page is closed. Your browser will ask for permission.",
  subscribed: "Browser notifications are on for this browser.",
  unsubscribed: "Browser notifications are off for this browser.",
};

/** The browser-notification permission flow: explains where things stand, turns Web Push on or off. */
export class NotifydPushToggle extends NotifydElement {
  static css = `
:host { display: block; }
.row { display: flex; flex-wrap: wrap; align-items: center; gap: .6em 1em; }
.text { margin: 0; flex: 1; min-width: 16em; color: var(--_muted); }
`;

  #text;
  #button;
  #state = null;

  render(root) {
    this.#text = h("p", { class: "text", part: "push-state", role: "status", text: "Checking browser notifications…" });
    this.#button = h("button", { type: "button", part: "push-button", hidden: true, onclick: () => this.#toggle() });
    root.append(h("div", { class: "row" }, this.#text, this.#button));
  }

  attach(client) {
    this.listen("push", (event) => this.#show(event.detail.state));
    client.pushState().then((state) => this.#show(state), (error) => this.#fail(error));
  }

  #show(state) {
    this.#state = state;
    this.dataset.state = state;
    this.#text.textContent = PUSH_TEXT[state] ?? state;
    const on = state === "subscribed";
    this.#button.hidden = !["prompt", "subscribed", "unsubscribed"].includes(state);
    this.#button.className = on ? "" : "primary";
    this.#button.textContent = on ? "Turn off" : "Enable browser notifications";
    this.#button.disabled = false;
  }

  #fail(error) {
    this.#text.textContent = error.message;
    this.#button.disabled = false;
  }

  async #toggle() {
    const client = this.client;
    if (!client) return;
    this.#button.disabled = true;
    try {
      this.#show(this.#state === "subscribed" ? await client.unsubscribePush() : await client.subscribePush());
    } catch (error) {
      this.#fail(error);
    }
  }
}

// --- <notifyd-preferences> -------------------------------------------------------------------------------

/** Per-day quiet hours from the stored windows: {1: {start, end}, ...} (ISO weekdays). */
function quietDays(prefs) {
  const days = {};
  const windows = [...prefs.quiet_hours_windows];
  if (prefs.quiet_hours_start && prefs.quiet_hours_end) {
    windows.unshift({ start: prefs.quiet_hours_start, end: prefs.quiet_hours_end, days: prefs.quiet_hours_days });
  }
  for (const w of windows) for (const d of w.days) days[d] = { start: w.start.slice(0, 5), end: w.end.slice(0, 5) };
  return days;
}

/** Days with equal times grouped into windows; the first is stored as quiet_hours_start/end/days. */
function quietChanges(days) {
  const groups = new Map();
  for (let d = 1; d <= 7; d++) {
    const day = days[d];
    if (!day) continue;
    const key = `${day.start}-${day.end}`;
    if (!groups.has(key)) groups.set(key, { start: day.start, end: day.end, days: [] });
    groups.get(key).days.push(d);
  }
  const [first, ...rest] = groups.values();
  return first
    ? { quiet_hours_start: first.start, quiet_hours_end: first.end, quiet_hours_days: first.days, quiet_hours_windows: rest }
    : { quiet_hours_start: null, quiet_hours_end: null, quiet_hours_windows: [] };
}

/** The keys of `wanted` whose values differ from `current` (compared as JSON). */
function diff(current, wanted) {
  return Object.fromEntries(Object.entries(wanted).filter(([key, value]) => JSON.stringify(current[key]) !== JSON.stringify(value)));
}

/** Channel switches per type, digests, quiet hours per weekday, time zone, and browser notifications. */
export class NotifydPreferences extends NotifydElement {
  static css = `
:host { display: block; }
form { display: flex; flex-direction: column; gap: 1.2em; }
section { background: var(--_bg); border: 1px solid var(--_line); border-radius: var(--_radius); padding: 1em 1.2em; }
h2 { font-size: 1.05em; margin: 0 0 .2em; }
.intro { margin: 0 0 .9em; color: var(--_muted); font-size: .92em; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .5em .6em; text-align: center; border-bottom: 1px solid var(--_line); }
tbody tr:last-child > * { border-bottom: 0; }
th[scope=row], thead th:first-child { text-align: left; }
thead th { font-size: .82em; color: var(--_muted); font-weight: 600; text-transform: uppercase; letter-spacing: .03em; }
.note { display: block; font-size: .8em; font-weight: normal; color: var(--_muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: .9em 1.2em; align-items: end; }
.switches { display: flex; flex-wrap: wrap; gap: .6em 2em; margin-bottom: 1em; }
th[scope=row] { width: 30%; }
td select { min-width: 10em; }
.switch { display: flex; align-items: center; gap: .5em; font-size: .95em; }
.days { display: grid; grid-template-columns: 8em auto auto; gap: .45em 1em; align-items: center; justify-content: start; }
.days .time { display: flex; align-items: center; gap: .4em; font-size: .9em; color: var(--_muted); }
.foot { display: flex; align-items: center; gap: 1em; }
.foot .status { font-size: .95em; }
.foot .status.ok { color: #1a7f37; }
`;

  /** @type {import("./notifyd-client.js").Preferences | null} */
  #loaded = null;
  #form;
  #status;
  #save;
  #fields = { types: new Map(), global: {}, days: [] };

  render(root) {
    this.#status = h("span", { class: "status", part: "status", role: "status" });
    this.#save = h("button", { type: "submit", class: "primary", part: "save", text: "Save preferences", disabled: true });
    this.#form = h("form", { part: "form", "aria-label": "Notification preferences", onsubmit: (event) => {
      event.preventDefault();
      this.#submit();
    } }, h("p", { class: "status", text: "Loading preferences…" }));
    root.append(this.#form);
  }

  attach(client) {
    client.preferences().then((prefs) => {
      if (this.client === client) this.#build(prefs);
    }, (error) => {
      this.#form.replaceChildren(h("p", { class: "status error", role: "alert", text: `Could not load preferences: ${error.message}` }));
    });
  }

  #build(prefs) {
    this.#loaded = prefs;
    const g = prefs.global;
    const fields = { types: new Map(), global: {}, days: [] };
    const rows = prefs.items.map((item) => {
      const name = titleCase(item.notification_type);
      const channel = (key, channelName, label) => {
        const locked = item.locked.includes(channelName);
        const box = h("input", { type: "checkbox", checked: item[key], disabled: locked,
          "aria-label": `${name}: ${label}${locked ? " (locked by your organization)" : ""}` });
        return { box, cell: h("td", {}, box, locked ? h("span", { class: "note", text: "Locked by your organization" }) : null) };
      };
      const push = channel("push_enabled", "push", "push");
      const email = channel("email_enabled", "email", "e-mail");
      const digest = select({ "aria-label": `${name}: e-mail frequency` }, Object.entries(FREQUENCIES));
      digest.value = item.digest_frequency;
      fields.types.set(item.notification_type, { push: push.box, email: email.box, digest });
      return h("tr", { "data-type": item.notification_type },
        h("th", { scope: "row", text: name }),
        h("td", {}, h("input", { type: "checkbox", checked: true, disabled: true, "aria-label": `${name}: in-app (always on)` })),
        push.cell, email.cell, h("td", {}, digest));
    });

    const lockedNote = (channelName) => (g.locked.includes(channelName) ? " (locked by your organization)" : "");
    const G = fields.global;
    G.all_push_enabled = h("input", { type: "checkbox", checked: g.all_push_enabled, disabled: g.locked.includes("push") });
    G.all_email_enabled = h("input", { type: "checkbox", checked: g.all_email_enabled, disabled: g.locked.includes("email") });
    G.default_digest_frequency = select({}, Object.entries(FREQUENCIES));
    G.default_digest_frequency.value = g.default_digest_frequency;
    G.default_digest_time = h("input", { type: "time", value: g.default_digest_time.slice(0, 5), required: true });
    G.default_digest_day = select({}, WEEKDAYS.map((d, i) => [String(i + 1), d]));
    G.default_digest_day.value = String(g.default_digest_day);
    if ("timezone" in g) {
      const zones = new Set(Intl.supportedValuesOf?.("timeZone") ?? []);
      zones.add(g.timezone);
      G.timezone = select({}, [...zones].sort().map((z) => [z, z.replaceAll("_", " ")]));
      G.timezone.value = g.timezone;
    }

    const quiet = quietDays(g);
    const dayRows = WEEKDAYS.map((day, i) => {
      const set = quiet[i + 1];
      const on = h("input", { type: "checkbox", checked: Boolean(set) });
      const start = h("input", { type: "time", value: set?.start ?? "22:00", disabled: !set, "aria-label": `${day} quiet hours from` });
      const end = h("input", { type: "time", value: set?.end ?? "07:00", disabled: !set, "aria-label": `${day} quiet hours until` });
      on.addEventListener("change", () => { start.disabled = end.disabled = !on.checked; });
      fields.days.push({ on, start, end });
      return [h("label", { class: "switch" }, on, day),
        h("span", { class: "time" }, "from", start), h("span", { class: "time" }, "until", end)];
    });
    this.#fields = fields;

    this.#form.replaceChildren(
      h("section", { part: "section" },
        h("h2", { text: "What reaches you where" }),
        h("p", { class: "intro", text: "In-app notifications are always on. Choose push and e-mail per kind of notification." }),
        h("table", { part: "grid" },
          h("thead", {}, h("tr", {}, ["Type", "In-app", "Push", "E-mail", "E-mail frequency"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, rows))),
      h("section", { part: "section" },
        h("h2", { text: "Everywhere" }),
        h("p", { class: "intro", text: "Switches that apply to every kind of notification, and when digests go out." }),
        h("div", { class: "switches" },
          h("label", { class: "switch" }, G.all_push_enabled, `Push notifications${lockedNote("push")}`),
          h("label", { class: "switch" }, G.all_email_enabled, `E-mail notifications${lockedNote("email")}`)),
        h("div", { class: "grid" },
          field("Default e-mail frequency", G.default_digest_frequency),
          field("Digest time", G.default_digest_time),
          field("Weekly digest day", G.default_digest_day),
          G.timezone ? field("Time zone", G.timezone) : null)),
      h("section", { part: "section" },
        h("h2", { text: "Quiet hours" }),
        h("p", { class: "intro", text: "No push or e-mail during these hours (critical notifications excepted). "
          + "A window ending before it starts runs into the next day." }),
        h("div", { class: "days", role: "group", "aria-label": "Quiet hours per weekday" }, dayRows)),
      h("section", { part: "section" },
        h("h2", { text: "Browser notifications" }),
        this.#pushToggle()),
      h("div", { class: "foot" }, this.#save, this.#status));
    this.#save.disabled = false;
  }

  #pushToggle() {
    const toggle = /** @type {NotifydPushToggle} */ (document.createElement("notifyd-push-toggle"));
    toggle.client = this.client;
    return toggle;
  }

  #wantedGlobal() {
    const G = this.#fields.global;
    const days = {};
    this.#fields.days.forEach(({ on, start, end }, i) => {
      if (on.checked) days[i + 1] = { start: start.value, end: end.value };
    });
    const loaded = this.#loaded.global;
    const wanted = {
      all_push_enabled: G.all_push_enabled.checked,
      all_email_enabled: G.all_email_enabled.checked,
      default_digest_frequency: G.default_digest_frequency.value,
      default_digest_time: G.default_digest_time.value,
      default_digest_day: Number(G.default_digest_day.value),
      ...(G.timezone ? { timezone: G.timezone.value } : {}),
    };
    const current = { ...loaded, default_digest_time: loaded.default_digest_time.slice(0, 5) };
    const changes = diff(current, wanted);
    if (JSON.stringify(quietDays(loaded)) !== JSON.stringify(days)) Object.assign(changes, quietChanges(days));
    return changes;
  }

  async #submit() {
    const client = this.client;
    if (!client || !this.#loaded) return;
    const perType = this.#loaded.items.map((item) => {
      const f = this.#fields.types.get(item.notification_type);
      return [item, diff(item, { push_enabled: f.push.checked, email_enabled: f.email.checked, digest_frequency: f.digest.value })];
    }).filter(([, changes]) => Object.keys(changes).length > 0);
    const global = this.#wantedGlobal();
    this.#save.disabled = true;
    this.#status.className = "status";
    this.#status.textContent = "Saving…";
    try {
      const saved = await Promise.all(perType.map(([item, changes]) => client.setPreference(item.notification_type, changes)));
      const savedGlobal = Object.keys(global).length > 0 ? await client.setGlobalPreferences(global) : this.#loaded.global;
      const byType = new Map(saved.map((item) => [item.notification_type, item]));
      this.#loaded = { items: this.#loaded.items.map((item) => byType.get(item.notification_type) ?? item), global: savedGlobal };
      this.#status.className = "status ok";
      this.#status.textContent = perType.length || Object.keys(global).length ? "Saved" : "Nothing to save: no changes";
    } catch (error) {
      this.#status.className = "status error";
      this.#status.textContent = error.message;
    } finally {
      this.#save.disabled = false;
    }
  }
}

customElements.define("notifyd-toasts", NotifydToasts);
customElements.define("notifyd-bell", NotifydBell);
customElements.define("notifyd-inbox", NotifydInbox);
customElements.define("notifyd-push-toggle", NotifydPushToggle);
customElements.define("notifyd-preferences", NotifydPreferences);

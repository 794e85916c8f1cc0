// <notifyd-bell>: a bell button with the count of what the user has not seen yet, a dropdown of the latest notifications, toasts (it adds a
// <notifyd-toasts> unless the page has one) and the count in the page title.

import { NotifydElement, define, h, safeUrl } from "./base.js";
import { newer, notificationView } from "./item.js";
import { NotifydToasts } from "./toasts.js"; // defines <notifyd-toasts>, which the bell adds to the page

/** @typedef {import("../notifyd-client.js").Notification} Notification */
/** @typedef {import("../notifyd-client.js").NotifydClient} NotifydClient */

const BELL_ITEMS = 10;

/**
 * The page title as "(N) Title" while N > 0; the plain title at 0.
 * @param {number} count
 */
function showCountInTitle(count) {
  const plain = document.title.replace(/^\(\d+\) /, "");
  document.title = count > 0 ? `(${count}) ${plain}` : plain;
}

/** A bell button with the unseen (or unread) count and a dropdown of the latest notifications. */
export class NotifydBell extends NotifydElement {
  static observedAttributes = [...NotifydElement.observedAttributes, "inbox-href"];
  /**
   * The badge counts what the user has not seen yet (opening the bell sees it all), as GitHub's and Knock's bells
   * do; badge="unread" makes it count what is not read yet instead.
   */
  get #countsUnseen() { return this.getAttribute("badge") !== "unread"; }
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

  /** @type {Map<string, Notification>} */
  #items = new Map();
  #count = 0;
  /** @type {NotifydToasts | null} the toasts this bell added to the page */
  #toasts = null;
  /** @type {HTMLButtonElement} */
  #button;
  /** @type {HTMLElement} */
  #badge;
  /** @type {HTMLElement} */
  #panel;
  /** @type {HTMLElement} */
  #list;
  /** @type {HTMLButtonElement} */
  #markAll;
  /** @type {HTMLAnchorElement} */
  #seeAll;
  #outside = (/** @type {PointerEvent} */ event) => {
    if (event.composedPath().includes(this)) return;
    this.close(false);
    // Back to the bell, unless the click put the focus somewhere (it moves after pointerdown).
    setTimeout(() => {
      if (document.activeElement === document.body || document.activeElement === null) this.#button.focus();
    });
  };

  /** @param {ShadowRoot} root */
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

  /** @param {string} name */
  attributeChangedCallback(name) {
    if (name === "inbox-href") this.#renderLink();
    else super.attributeChangedCallback(name);
  }

  get isOpen() {
    return Boolean(this.#panel && !this.#panel.hidden);
  }

  open() {
    this.#panel.hidden = false;
    this.#button.setAttribute("aria-expanded", "true");
    document.addEventListener("pointerdown", this.#outside, true);
    const first = this.#list.querySelector(".item") ?? this.#markAll;
    /** @type {HTMLElement} */ (first).focus();
    // Opening the bell is seeing what it holds: the unseen badge (here and in every tab) goes to 0.
    this.client?.markSeen().catch(() => {});
  }

  /** Closes the dropdown and (by default) gives the focus back to the bell. */
  close(focusBell = true) {
    if (!this.isOpen) return;
    this.#panel.hidden = true;
    this.#button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", this.#outside, true);
    if (focusBell) this.#button.focus();
  }

  /** @param {NotifydClient} client */
  attach(client) {
    this.#items.clear();
    const unseen = this.#countsUnseen;
    this.#setCount(unseen ? client.unseenCount : client.unreadCount);
    if (unseen) client.fetchSeenState().then((seen) => this.#setCount(seen.unseen_count), () => {});
    if (this.#toasts?.isConnected) {
      this.#toasts.client = client;
    } else if (this.getAttribute("toasts") !== "off" && !document.querySelector("notifyd-toasts")) {
      this.#toasts = /** @type {NotifydToasts} */ (document.createElement("notifyd-toasts"));
      this.#toasts.client = client;
      document.body.append(this.#toasts);
    }
    this.listen("notification", (event) => this.#merge(event.detail.notification));
    this.listen(unseen ? "unseen_count" : "unread_count", (event) => this.#setCount(event.detail.count));
    this.listen("read_status", (event) => {
      const { notification_id: id, read_at: readAt, unread_count: count } = event.detail;
      const known = this.#items.get(id);
      if (known) this.#items.set(id, { ...known, read_at: readAt });
      if (!unseen) this.#setCount(count);
      this.#renderList();
    });
    this.#renderList();
    client.list({ limit: BELL_ITEMS }).then((page) => {
      if (this.client !== client) return;
      for (const n of page.items) this.#merge(n, false);
      if (!unseen) this.#setCount(page.unread_count);
      this.#renderList();
    }, () => {}); // the live connection reports errors; the list stays empty until events come
  }

  detach() {
    this.close();
    if (this.getAttribute("title-count") !== "off") showCountInTitle(0);
  }

  /** @param {Notification} n */
  #merge(n, render = true) {
    const known = this.#items.get(n.id);
    if (!newer(known, n)) return;
    // The bell shows the inbox: an archived or snoozed notification leaves it.
    if (n.deleted_at || n.archived_at || n.snoozed_until) this.#items.delete(n.id);
    else this.#items.set(n.id, n);
    if (render) this.#renderList();
  }

  /** @param {unknown} count */
  #setCount(count) {
    if (typeof count !== "number") return;
    this.#count = count;
    this.#badge.hidden = count === 0;
    this.#badge.textContent = count > 99 ? "99+" : String(count);
    this.#button.setAttribute("aria-label", `Notifications, ${count} ${this.#countsUnseen ? "new" : "unread"}`);
    if (this.getAttribute("title-count") !== "off") showCountInTitle(count);
  }

  /** The item holding the focus in the dropdown, if any. */
  #focusedItem() {
    return /** @type {HTMLElement | null | undefined} */ (this.shadowRoot?.activeElement?.closest(".item"));
  }

  #renderList() {
    const latest = [...this.#items.values()]
      .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
      .slice(0, BELL_ITEMS);
    const focused = this.#focusedItem()?.dataset.id;
    this.#list.replaceChildren(...latest.map((n) => notificationView(n, {
      tag: "li", compact: true, onRead: (x) => this.#markRead(x), onOpen: (x) => this.#markRead(x),
    })));
    if (latest.length === 0) {
      this.#list.append(h("li", { class: "empty", part: "empty", text: "You're all caught up." }));
    }
    this.#markAll.disabled = this.#count === 0 && latest.every((n) => n.read_at);
    // Keep the keyboard user where they were when an item re-renders.
    if (focused) /** @type {HTMLElement | null} */ (this.#list.querySelector(`[data-id="${CSS.escape(focused)}"]`))?.focus();
  }

  #renderLink() {
    const href = safeUrl(this.getAttribute("inbox-href"));
    if (!this.#seeAll?.parentElement) return;
    this.#seeAll.parentElement.hidden = !href;
    if (href) this.#seeAll.setAttribute("href", href);
  }

  /** @param {Notification} n */
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

  /**
   * Arrow keys move between the items; Escape closes.
   * @param {KeyboardEvent} event
   */
  #onKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      this.close();
      return;
    }
    const items = /** @type {HTMLElement[]} */ ([...this.#list.querySelectorAll(".item")]);
    if (items.length === 0) return;
    const focused = this.#focusedItem();
    const at = focused ? items.indexOf(focused) : -1;
    /** @type {Record<string, number>} */
    const targets = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
    const target = targets[event.key];
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

define("notifyd-bell", NotifydBell);

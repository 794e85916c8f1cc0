// <notifyd-toasts>: new notifications as toasts, bottom right unless the page moves them with
// --notifyd-toasts-inset (the CSS `inset` of the stack: top right bottom left, default "auto 16px 16px auto").

import { NotifydElement, define, h } from "./base.js";
import { notificationUrl } from "./item.js";

/** @typedef {import("../notifyd-client.js").Notification} Notification */
/** @typedef {import("../notifyd-client.js").Priority} Priority */
/**
 * A toast on screen: the milliseconds it has left (null: until closed) and why it is paused.
 * @typedef {{el: HTMLElement, n: Notification, timer: number | undefined, left: number | null, since: number, hold: Set<string>}} Toast
 */

/** @type {Record<Priority, number | null>} */
const TOAST_MS = { low: 4000, normal: 6000, high: 10000, critical: null };
const MAX_TOASTS = 3;

/** New notifications as toasts: at most three at once, the rest queued; critical ones stay until closed. */
export class NotifydToasts extends NotifydElement {
  static css = `
:host { position: fixed; inset: var(--notifyd-toasts-inset, auto 16px 16px auto); z-index: var(--_z); display: flex;
  flex-direction: column; gap: 10px; width: min(360px, calc(100vw - 32px)); pointer-events: none; }
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

  /** @type {Map<string, Toast>} */
  #shown = new Map();
  /** @type {Notification[]} */
  #queue = [];
  /** @type {HTMLElement} */
  #polite;
  /** @type {HTMLElement} */
  #alert;

  /** @param {ShadowRoot} root */
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

  /** @param {Notification} n */
  #offer(n) {
    if (this.#shown.has(n.id) || this.#queue.some((q) => q.id === n.id)) return;
    if (this.#shown.size < MAX_TOASTS) this.#show(n);
    else this.#queue.push(n);
  }

  /**
   * Removes a toast (or its queued place), e.g. once read in another tab.
   * @param {string} id
   */
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

  /** @param {Notification} n */
  #show(n) {
    const url = notificationUrl(n);
    const el = h("div", {
      class: `toast ${n.priority}${url ? " link" : ""}`, part: `toast toast-${n.priority}`, "data-id": n.id,
      onclick: (/** @type {MouseEvent} */ event) => {
        if (/** @type {Element} */ (event.target).closest(".close")) return;
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
    /** @type {Toast} */
    const toast = { el, n, timer: undefined, left, since: 0, hold: new Set() };
    // Pause while the user reads (hovers) or is on it with the keyboard.
    const pause = (/** @type {string} */ why) => { toast.hold.add(why); this.#pause(toast); };
    const resume = (/** @type {string} */ why) => { toast.hold.delete(why); if (toast.hold.size === 0) this.#run(toast); };
    el.addEventListener("mouseenter", () => pause("hover"));
    el.addEventListener("mouseleave", () => resume("hover"));
    el.addEventListener("focusin", () => pause("focus"));
    el.addEventListener("focusout", () => resume("focus"));
    this.#shown.set(n.id, toast);
    (n.priority === "critical" ? this.#alert : this.#polite).append(el);
    this.#run(toast);
  }

  /** @param {Toast} toast */
  #run(toast) {
    if (toast.left === null) return;
    toast.since = Date.now();
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => this.#withdraw(toast.n.id), toast.left);
  }

  /** @param {Toast} toast */
  #pause(toast) {
    if (toast.left === null || toast.timer === undefined) return;
    clearTimeout(toast.timer);
    toast.timer = undefined;
    toast.left = Math.max(1000, toast.left - (Date.now() - toast.since));
  }

  /** @param {Notification} n @param {string | null} url */
  async #open(n, url) {
    this.#withdraw(n.id);
    await this.client?.markRead(n.id).catch(() => {}); // opening it matters more than the read mark
    if (url) location.assign(url);
  }
}

define("notifyd-toasts", NotifydToasts);

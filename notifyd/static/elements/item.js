// One notification as the bell and the inbox show it, and what toasts share with them: its link, its
// priority's label, which of two copies is newer.

import { h, safeUrl, titleCase } from "./base.js";

/** @typedef {import("../notifyd-client.js").Notification} Notification */
/** @typedef {import("../notifyd-client.js").Priority} Priority */

/** @type {Priority[]} */
export const PRIORITIES = ["critical", "high", "normal", "low"];
/** @type {Record<Priority, string>} */
export const PRIORITY_LABEL = { critical: "Critical", high: "High", normal: "Normal", low: "Low" };

/**
 * The http(s) URL a notification points to, or null.
 * @param {Notification} n
 */
export function notificationUrl(n) {
  return safeUrl(n.data?.url) ?? safeUrl(n.data?.action_url);
}

/**
 * Keeps the newer of two versions of a notification (by seq).
 * @param {Notification | undefined} known
 * @param {Notification} incoming
 */
export function newer(known, incoming) {
  return !known || (incoming.seq ?? 0) >= (known.seq ?? 0);
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
/** @type {[Intl.RelativeTimeFormatUnit, number][]} */
const UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];

/** @param {string} iso */
function timeAgo(iso) {
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
  }
  return relative.format(0, "second");
}

/** @param {string} iso */
function timeView(iso) {
  return h("time", { datetime: iso, title: absolute.format(new Date(iso)), text: timeAgo(iso) });
}

/**
 * The row menu's snooze choices: in an hour, tomorrow at 9:00 and next Monday at 9:00, in the user's time zone
 * (the browser's: where the user reads the inbox).
 * @type {{ label: string, text: string, until: (now: Date) => Date }[]}
 */
export const SNOOZE_CHOICES = [
  { label: "Snooze for an hour", text: "For an hour", until: (now) => new Date(now.getTime() + 60 * 60 * 1000) },
  { label: "Snooze until tomorrow 9:00", text: "Tomorrow 9:00", until: (now) => atNine(now, 1) },
  { label: "Snooze until next week", text: "Next week", until: (now) => atNine(now, ((8 - now.getDay()) % 7) || 7) },
];

/**
 * 9:00 local time `days` days after `now` (a calendar day: right across a daylight-saving change).
 * @param {Date} now
 * @param {number} days
 */
function atNine(now, days) {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate() + days, 9, 0, 0, 0);
}

/**
 * The Snooze button and the choices it shows.
 * @param {Notification} n
 * @param {(n: Notification, until: Date) => void} onSnooze
 */
function snoozeMenu(n, onSnooze) {
  const choices = h("div", { class: "snooze-choices", part: "snooze-choices", role: "group",
    "aria-label": `Snooze ${n.title}`, hidden: true },
  SNOOZE_CHOICES.map((c) => {
    const until = c.until(new Date());
    return h("button", { type: "button", class: "link", part: "snooze-choice", "aria-label": `${c.label}: ${n.title}`,
      title: absolute.format(until), text: c.text, onclick: () => onSnooze(n, c.until(new Date())) });
  }));
  const toggle = h("button", { type: "button", class: "link", part: "snooze", "aria-label": `Snooze: ${n.title}`,
    "aria-expanded": "false", text: "Snooze", onclick: () => {
      choices.hidden = !choices.hidden;
      toggle.setAttribute("aria-expanded", String(!choices.hidden));
    } });
  return [toggle, choices];
}

/** @param {Notification} n */
function hasPendingActions(n) {
  return Array.isArray(n.data?.actions) && n.data.actions.length > 0 && !n.action_taken;
}

/**
 * @typedef {object} ItemOptions
 * @property {"li" | "article"} tag
 * @property {boolean} [compact] the bell's short form: no action buttons, not in the tab order
 * @property {(n: Notification) => void} [onRead]
 * @property {(n: Notification) => void} [onDelete]
 * @property {(n: Notification, action: string, button: HTMLButtonElement) => void} [onAct]
 * @property {(n: Notification) => void} [onOpen]
 * @property {(n: Notification) => void} [onArchive] archive, or unarchive an archived one
 * @property {(n: Notification, until: Date) => void} [onSnooze]
 */

/**
 * One notification as an item of the bell's list or the inbox's feed.
 * @param {Notification} n
 * @param {ItemOptions} options
 */
export function notificationView(n, options) {
  const unread = !n.read_at;
  const pending = hasPendingActions(n);
  const titleId = `title-${n.id}`;
  const url = notificationUrl(n);
  const parts = ["item", unread && "unread", pending && "action-required"].filter(Boolean).join(" ");
  const title = url
    ? h("a", { href: url, text: n.title, onclick: () => options.onOpen?.(n) })
    : n.title;
  const actions = Array.isArray(n.data?.actions) ? n.data.actions : [];
  const { onRead, onDelete, onArchive, onSnooze } = options;
  const archived = Boolean(n.archived_at);
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
          onclick: (/** @type {MouseEvent} */ event) =>
            options.onAct?.(n, a.action, /** @type {HTMLButtonElement} */ (event.currentTarget)),
        })))
      : null,
    n.action_taken
      ? h("p", { class: "taken", part: "action-taken",
        text: `Done: ${actions.find((a) => a.action === n.action_taken)?.label || n.action_taken}` })
      : null),
  h("div", { class: "tools" },
    unread && onRead
      ? h("button", { type: "button", class: "link", part: "mark-read", "aria-label": `Mark read: ${n.title}`,
        text: "Mark read", onclick: () => onRead(n) })
      : null,
    onArchive
      ? h("button", { type: "button", class: "link", part: archived ? "unarchive" : "archive",
        "aria-label": `${archived ? "Unarchive" : "Archive"}: ${n.title}`, text: archived ? "Unarchive" : "Archive",
        onclick: () => onArchive(n) })
      : null,
    onSnooze && !archived && !n.snoozed_until ? snoozeMenu(n, onSnooze) : null,
    onDelete
      ? h("button", { type: "button", class: "link danger", part: "delete", "aria-label": `Delete: ${n.title}`,
        text: "Delete", onclick: () => onDelete(n) })
      : null));
}

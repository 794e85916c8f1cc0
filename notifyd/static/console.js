// The operator console at /console: activity, one notification's timeline, dead letters, health and analytics.
//
// It holds an admin token (sessionStorage: gone when the tab closes) and reads only through the REST API, as
// any client would: the database's row-level security decides what it shows. A DBA's token (no org_id claim)
// sees everything, an org admin's their org; any other token is refused by the admin routes, and the console
// says so. Activity is live over the admin's own Server-Sent Events stream (polled while that reconnects); the
// other live views poll every few seconds.

import { lineChart } from "./console-charts.js";

const TOKEN_KEY = "notifyd-console-token";
const POLL_MS = 3000;
const ADMIN = "/api/v1/admin";
// Every channel, in the order notify.channels() lists them (the activity and dead-letter filters, the deliveries chart).
const CHANNELS = ["in_app", "push", "email", "webhook", "chat", "sms"];
const STATUSES = ["pending", "held", "sent", "delivered", "failed", "bounced", "skipped", "suppressed", "cancelled"];
const PRIORITIES = ["critical", "high", "normal", "low"];

/** Attributes, listeners (on…) and `text`. @typedef {Record<string, any>} Props */
/** @typedef {Node | string | null | undefined | false} Child */
/**
 * @typedef {{id: string, user_id: string, type: string, priority: string, title: string | null, created_at: string,
 *   channels: Record<string, string>}} ActivityRow
 * @typedef {{delivery_id: string, notification_id: string, user_id: string, channel: string,
 *   device_kind: string | null, type: string, priority: string, title: string | null, attempts: number,
 *   reason: string | null, error_message: string | null, failed_at: string | null}} DeadLetter
 * @typedef {{at: string, count: number}} Point
 * @typedef {{name: string, labels: Record<string, string>, value: number}} Sample
 * @typedef {{process: string, kind: "serve" | "worker", reported_at: string, samples: Sample[]}} ProcessFigures
 * @typedef {{sends: Point[], deliveries: (Point & {channel: string})[], pending: number,
 *   oldest_pending_seconds: number | null, dead_letters: number, notification_queue_usage: number,
 *   processes: ProcessFigures[]}} Figures
 * @typedef {{channel: string, status: string, reason: string | null, scheduled_for: string | null, attempts: number,
 *   error: string | null, sent_at: string | null, delivered_at: string | null, opened_at: string | null,
 *   clicked_at: string | null, failed_at: string | null, decided_at: string, provider: string | null}} Decision
 * @typedef {{step: number, channel: string, after: string, unless: string, planned_for: string,
 *   scheduled_for: string | null, state: string, reason: string | null, run_at: string | null,
 *   cancelled_at: string | null}} EscalationStep
 * @typedef {{notification_id: string, user_id: string, type: string, priority: string, rule: string,
 *   created_at: string, send_at: string | null, expires_at: string | null, read_at: string | null,
 *   deleted_at: string | null, decisions: Decision[], folds: {title: string, folded_at: string}[],
 *   escalation: EscalationStep[] | null}} Explanation
 * @typedef {{bucket_start: string, notification_type: string, channel: string, sent: number, delivered: number,
 *   opened: number, clicked: number, delivery_rate: string | null, open_rate: string | null,
 *   click_rate: string | null}} AnalyticsRow
 */

class ApiError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// --- DOM and API helpers -------------------------------------------------------------------------------

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag @param {Props} [props] @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, props = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") made.textContent = String(value);
    else if (name.startsWith("on")) made.addEventListener(name.slice(2), value);
    else if (name === "checked" || name === "value") /** @type {any} */ (made)[name] = value;
    else made.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) made.append(child);
  return made;
}

/** @param {string} path @param {{method?: string, body?: unknown}} [init] @returns {Promise<any>} */
async function api(path, { method = "GET", body } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const parsed = await answer.json().catch(() => null);
  if (!answer.ok) throw new ApiError(answer.status, parsed?.error?.message ?? `${answer.status} ${answer.statusText}`);
  return parsed;
}

/** @param {Record<string, string | undefined>} params */
function search(params) {
  const kept = Object.entries(params).filter((entry) => entry[1]);
  return kept.length ? `?${new URLSearchParams(/** @type {[string, string][]} */ (kept))}` : "";
}

/** @param {string | null | undefined} at */
function when(at) {
  return at ? new Date(at).toLocaleString() : "";
}

/** A channel's status at a glance. @param {string} channel @param {string} status */
function badge(channel, status) {
  return h("span", { class: `badge ${status}`, "data-channel": channel, "data-status": status, text: `${channel}: ${status}` });
}

/** The claims of a JWT, unverified: only to say who is signed in (the server checks the token). @param {string} token */
function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return /** @type {Record<string, unknown>} */ (JSON.parse(atob(part)));
  } catch {
    return {};
  }
}

const view = /** @type {HTMLElement} */ (document.getElementById("view"));
/** What the shown view stops when another is shown (its polling). @type {(() => void)[]} */
let stops = [];

/** @param {() => Promise<void>} tick */
function every(tick) {
  let timer = 0;
  let stopped = false;
  const run = async () => {
    await tick().catch(showError);
    if (!stopped) timer = window.setTimeout(run, POLL_MS);
  };
  stops.push(() => {
    stopped = true;
    clearTimeout(timer);
  });
  void run();
}

/** @param {unknown} error */
function showError(error) {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    refused(message);
    return;
  }
  const shown = view.querySelector(".error") ?? view.appendChild(h("p", { class: "error", role: "alert" }));
  shown.textContent = message;
}

/** @param {string} message */
function refused(message) {
  for (const stop of stops) stop();
  stops = [];
  view.replaceChildren(h("section", { class: "refused", role: "alert", "data-refused": "" },
    h("h2", { text: "This console is for admins" }),
    h("p", { text: message }),
    h("button", { onclick: signOut, text: "Sign in with another token" })));
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  show();
}

// --- sign-in ---------------------------------------------------------------------------------------------

function signIn() {
  const token = h("textarea", { name: "token", rows: 4, cols: 70, required: true, "aria-label": "admin token" });
  view.replaceChildren(h("form", {
    class: "sign-in",
    onsubmit: (/** @type {SubmitEvent} */ event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, token.value.trim());
      show();
    },
  },
  h("h2", { text: "Sign in" }),
  h("p", { text: "Paste an admin token: a DBA's (no org_id claim) or an org admin's. `notifyd dev` mints one at /dev/tokens." }),
  token, h("p", {}, h("button", { class: "primary", type: "submit", text: "Sign in" }))));
}

function who() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const shown = /** @type {HTMLElement} */ (document.getElementById("who"));
  if (!token) {
    shown.replaceChildren();
    return;
  }
  const found = claims(token);
  const label = found.role !== "admin" ? `not an admin (${String(found.role ?? "authenticated")})`
    : found.org_id ? `org admin of ${String(found.org_id)}` : "DBA (every org)";
  shown.replaceChildren(h("span", { "data-who": "", text: label }), " ",
    h("button", { onclick: signOut, text: "Sign out" }));
}

// --- Activity --------------------------------------------------------------------------------------------

const ACTIVITY_ROWS = 50; // shown, newest first (the admin route's default page)
const KEPT_ROWS = 200; // held in the page beyond them, for a filter on status that the stream cannot apply
const STREAM_RETRY_MS = 3000; // after a dropped stream, polled meanwhile

/**
 * The events of a Server-Sent Events body as they come (fetch, not EventSource: the token stays in a header).
 * @param {ReadableStream<Uint8Array>} body
 * @param {(kind: string, data: string, id: string | null) => void} onEvent
 */
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let kind = "message";
  let data = "";
  /** @type {string | null} */
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") {
        if (data || id !== null) onEvent(kind, data, id);
        kind = "message";
        data = "";
        id = null;
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "event") kind = text;
        else if (name === "data") data = data ? `${data}\n${text}` : text;
        else if (name === "id") id = text;
      }
    }
  }
}

/** Newest first, as the admin route lists them. @param {ActivityRow} a @param {ActivityRow} b */
function newestFirst(a, b) {
  return Date.parse(b.created_at) - Date.parse(a.created_at) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

function activity() {
  const table = h("tbody");
  const state = h("span", { class: "live-state", "data-live": "off", role: "status" });
  const form = h("form", { class: "filters", onsubmit: (/** @type {Event} */ e) => e.preventDefault() },
    field("user", h("input", { name: "user_id", size: 36, placeholder: "user uuid" })),
    field("type", h("input", { name: "type", size: 14 })),
    field("priority", choice("priority", PRIORITIES)),
    field("channel", choice("channel", CHANNELS)),
    field("status", choice("status", STATUSES)),
    field("from", h("input", { name: "from", type: "datetime-local" })),
    field("to", h("input", { name: "to", type: "datetime-local" })),
    field("live", h("input", { name: "live", type: "checkbox", checked: true })), state);
  view.replaceChildren(h("h2", { text: "Activity" }), form,
    h("table", { "data-view": "activity" },
      h("thead", {}, h("tr", {}, ...["Created", "User", "Type", "Priority", "Title", "Channels"].map((t) => h("th", { text: t })))),
      table));

  /** The rows held, by id: the admin route's answers merged with the stream's rows. @type {Map<string, ActivityRow>} */
  const rows = new Map();
  /** Per load on its way, the ids the stream sent meanwhile: newer than that load's answer. @type {Set<Set<string>>} */
  const loading = new Set();
  // A change of filters starts a new round: streams, polls and loads of an older one do nothing more.
  let round = 0;
  let pollTimer = 0;
  /** @type {AbortController | null} */
  let streaming = null;

  const wanted = () => {
    const data = new FormData(form);
    const value = (/** @type {string} */ name) => String(data.get(name) ?? "") || undefined;
    const time = (/** @type {string} */ name) => (value(name) ? new Date(String(value(name))).toISOString() : undefined);
    return { user_id: value("user_id"), type: value("type"), priority: value("priority"), channel: value("channel"),
      status: value("status"), from: time("from"), to: time("to") };
  };
  const live = () => /** @type {HTMLInputElement} */ (form.elements.namedItem("live")).checked;
  /** @param {"stream" | "polling" | "off"} mode */
  const setState = (mode) => {
    state.dataset.live = mode;
    state.textContent = { stream: "● live", polling: "● live (polling: the stream reconnects)", off: "" }[mode];
  };

  /** What the stream cannot filter: a status changes as a delivery goes, a time range is past. @param {ActivityRow} row */
  const shown = (row) => {
    const { channel, status, from, to } = wanted();
    const created = Date.parse(row.created_at);
    const statuses = channel ? (channel in row.channels ? [row.channels[channel]] : []) : Object.values(row.channels);
    return (!channel || channel in row.channels) && (!status || statuses.includes(status))
      && (!from || created >= Date.parse(from)) && (!to || created < Date.parse(to));
  };
  /** Each shown row's element with the JSON it was made from: an unchanged row keeps its element (and a click on it).
   * @type {Map<string, {made: string, tr: HTMLTableRowElement}>} */
  const made = new Map();
  /** @param {ActivityRow} row */
  const element = (row) => {
    const json = JSON.stringify(row);
    const known = made.get(row.id);
    if (known?.made === json) return known.tr;
    const tr = h("tr", { class: "clickable", "data-id": row.id, onclick: () => { location.hash = `#notification/${row.id}`; } },
      h("td", { text: when(row.created_at) }), h("td", { text: row.user_id }), h("td", { text: row.type }),
      h("td", { text: row.priority }), h("td", { text: row.title ?? "" }),
      h("td", {}, ...Object.entries(row.channels).map(([channel, status]) => badge(channel, status))));
    made.set(row.id, { made: json, tr });
    return tr;
  };
  const render = () => {
    const held = [...rows.values()].sort(newestFirst);
    for (const row of held.slice(KEPT_ROWS)) rows.delete(row.id);
    const wantedRows = held.filter(shown).slice(0, ACTIVITY_ROWS).map(element);
    for (const id of made.keys()) if (!rows.has(id)) made.delete(id);
    const current = [...table.children];
    if (current.length !== wantedRows.length || current.some((tr, i) => tr !== wantedRows[i])) table.replaceChildren(...wantedRows);
  };
  /** @param {ActivityRow} row */
  const streamed = (row) => {
    for (const newer of loading) newer.add(row.id);
    rows.set(row.id, row);
    render();
  };

  const load = async () => {
    const mine = round;
    const newer = new Set();
    loading.add(newer);
    try {
      const answer = await api(`${ADMIN}/notifications${search(wanted())}`);
      if (mine !== round) return;
      for (const row of /** @type {ActivityRow[]} */ (answer.notifications)) if (!newer.has(row.id)) rows.set(row.id, row);
      render();
      view.querySelector(".error")?.remove();
    } finally {
      loading.delete(newer);
    }
  };
  const poll = () => {
    clearTimeout(pollTimer);
    pollTimer = window.setTimeout(() => {
      void load().catch(showError).finally(() => { if (state.dataset.live === "polling") poll(); });
    }, POLL_MS);
  };

  /** The admin stream until the round ends; while it is down, the list is polled. */
  const follow = async () => {
    const mine = round;
    const { user_id, type, priority, channel } = wanted();
    /** @type {string | null} */
    let lastId = null;
    while (mine === round) {
      const controller = new AbortController();
      streaming = controller;
      try {
        /** @type {Record<string, string>} */
        const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ""}` };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const answer = await fetch(`${ADMIN}/activity/stream${search({ user_id, type, priority, channel })}`,
          { headers, signal: controller.signal });
        if (!answer.ok || !answer.body) {
          const parsed = await answer.json().catch(() => null);
          throw new ApiError(answer.status, parsed?.error?.message ?? `${answer.status} ${answer.statusText}`);
        }
        await readEvents(answer.body, (kind, data, id) => {
          if (mine !== round) return;
          if (id !== null) lastId = id;
          if (kind === "activity") streamed(/** @type {ActivityRow} */ (JSON.parse(data)));
          else if (kind === "resumed") {
            clearTimeout(pollTimer);
            setState("stream");
            // From here on the stream has every change: one read covers what came before it.
            void load().catch(showError);
          } else if (kind === "reset") void load().catch(showError);
        });
      } catch (error) {
        if (mine !== round) return;
        // Refused, or a filter the route cannot take: polling would be refused too.
        if (error instanceof ApiError && error.status < 500 && error.status !== 429) {
          setState("off");
          showError(error);
          return;
        }
      }
      if (mine !== round) return;
      setState("polling");
      void load().catch(showError);
      poll();
      await new Promise((resolve) => setTimeout(resolve, STREAM_RETRY_MS));
    }
  };

  const stop = () => {
    following = "";
    round += 1;
    clearTimeout(pollTimer);
    streaming?.abort();
    streaming = null;
    setState("off");
  };
  // The filters the stream was opened with: a change event that changes none of them (a blur) changes nothing.
  let following = "";
  const streamFilters = () => {
    const { user_id, type, priority, channel } = wanted();
    return JSON.stringify([user_id, type, priority, channel, live()]);
  };
  const restart = () => {
    stop();
    following = streamFilters();
    rows.clear(); // the table keeps its rows until the list is read again
    void load().catch(showError);
    if (live()) void follow();
  };
  form.addEventListener("change", () => {
    if (streamFilters() !== following) restart();
    else {
      render(); // a status or a time range: the page's own filters, the stream goes on
      void load().catch(showError);
    }
  });
  stops.push(stop);
  restart();
}

/** @param {string} label @param {HTMLElement} control */
function field(label, control) {
  return h("label", {}, label, control);
}

/** @param {string} name @param {string[]} options */
function choice(name, options) {
  return h("select", { name }, h("option", { value: "", text: "any" }), ...options.map((o) => h("option", { value: o, text: o })));
}

// --- One notification: notify.explain as a timeline ------------------------------------------------------

/** Who answered a delivery: its provider when the worker recorded one. @param {Decision} d */
function by(d) {
  return d.provider ? `the provider (${d.provider})` : "the provider";
}

/** @param {string} id */
async function oneNotification(id) {
  view.replaceChildren(h("h2", { text: `Notification ${id}` }));
  const found = /** @type {Explanation} */ (await api(`/api/v1/notifications/${encodeURIComponent(id)}/explain`));
  /** @type {{at: string, what: string, kind: string}[]} */
  const steps = [{ at: found.created_at, what: `created (${found.type}, ${found.priority}): ${found.rule}`, kind: "created" }];
  if (found.send_at) steps.push({ at: found.send_at, what: "scheduled to send", kind: "held" });
  for (const d of found.decisions) {
    const device = d.channel === "push" ? " (one device)" : "";
    steps.push({ at: d.decided_at, what: `${d.channel}${device} planned; now ${d.status}${d.reason ? ` — ${d.reason}` : ""}`, kind: "planned" });
    if (d.scheduled_for) steps.push({ at: d.decided_at, what: `${d.channel} held until ${when(d.scheduled_for)}`, kind: "held" });
    if (d.sent_at) steps.push({ at: d.sent_at, what: `${d.channel} sent${d.provider ? ` by ${d.provider}` : ""}${d.attempts ? ` (attempt ${d.attempts})` : ""}`, kind: "sent" });
    if (d.delivered_at) steps.push({ at: d.delivered_at, what: `${d.channel} delivered`, kind: "delivered" });
    if (d.opened_at) steps.push({ at: d.opened_at, what: `${d.channel} opened`, kind: "opened" });
    if (d.clicked_at) steps.push({ at: d.clicked_at, what: `${d.channel} clicked`, kind: "clicked" });
    if (d.failed_at) steps.push({ at: d.failed_at, what: `${d.channel} failed for good; ${by(d)} answered: ${d.error ?? d.reason ?? "nothing"}`, kind: "failed" });
  }
  for (const e of found.escalation ?? []) {
    const step = `escalation step ${e.step}: ${e.channel} after ${e.after}${e.unless ? `, unless ${e.unless}` : ""}`;
    steps.push({ at: e.planned_for, what: `${step} planned for ${when(e.scheduled_for ?? e.planned_for)}`, kind: "escalation-planned" });
    if (e.run_at) steps.push({ at: e.run_at, what: `${step} run`, kind: "escalation-run" });
    if (e.cancelled_at) steps.push({ at: e.cancelled_at, what: `${step} ${e.reason ?? "cancelled"}`, kind: "escalation-cancelled" });
  }
  for (const fold of found.folds) steps.push({ at: fold.folded_at, what: `folded in: ${fold.title}`, kind: "folded" });
  if (found.read_at) steps.push({ at: found.read_at, what: "read", kind: "read" });
  if (found.deleted_at) steps.push({ at: found.deleted_at, what: "deleted", kind: "deleted" });
  steps.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  view.append(h("p", { text: `user ${found.user_id}` }),
    h("ol", { class: "timeline", "data-view": "timeline" },
      ...steps.map((s) => h("li", { class: s.kind, "data-kind": s.kind }, h("time", { datetime: s.at, text: when(s.at) }), s.what))));
}

// --- Dead letters and retries ----------------------------------------------------------------------------

function deadLetters() {
  const table = h("tbody");
  const status = h("p", { role: "status", "data-outcome": "" });
  const form = h("form", { class: "filters", onsubmit: (/** @type {Event} */ e) => e.preventDefault() },
    field("channel", choice("channel", CHANNELS)), field("type", h("input", { name: "type", size: 14 })));
  const picked = () => [...table.querySelectorAll("input:checked")].map((box) => /** @type {HTMLInputElement} */ (box).value);
  /** @param {"retry" | "discard"} action */
  const act = async (action) => {
    const ids = picked();
    if (ids.length === 0) return;
    const noun = ids.length === 1 ? "dead letter" : "dead letters";
    if (!(await confirmed(`${action === "retry" ? "Retry" : "Discard"} ${ids.length} ${noun}?`))) return;
    const done = await api(`${ADMIN}/dead-letters/${action}`, { method: "POST", body: { delivery_ids: ids } });
    status.textContent = `${action === "retry" ? "Retried" : "Discarded"} ${done.count}.`;
    await load();
  };
  view.replaceChildren(h("h2", { text: "Dead letters" }), form,
    h("p", {}, h("button", { class: "primary", "data-action": "retry", onclick: () => act("retry").catch(showError), text: "Retry selected" }), " ",
      h("button", { class: "danger", "data-action": "discard", onclick: () => act("discard").catch(showError), text: "Discard selected" })),
    status,
    h("table", { "data-view": "dead-letters" },
      h("thead", {}, h("tr", {}, ...["", "Failed", "Channel", "Type", "Title", "User", "Attempts", "Provider's answer"].map((t) => h("th", { text: t })))),
      table));
  const load = async () => {
    const data = new FormData(form);
    const answer = await api(`${ADMIN}/dead-letters${search({
      channel: String(data.get("channel") ?? "") || undefined, type: String(data.get("type") ?? "") || undefined,
    })}`);
    const rows = /** @type {DeadLetter[]} */ (answer.dead_letters);
    table.replaceChildren(...rows.map((row) => h("tr", { "data-id": row.delivery_id },
      h("td", {}, h("input", { type: "checkbox", value: row.delivery_id, "aria-label": `select ${row.delivery_id}` })),
      h("td", { text: when(row.failed_at) }), h("td", { text: row.device_kind ? `${row.channel} (${row.device_kind})` : row.channel }),
      h("td", { text: row.type }),
      h("td", {}, h("a", { href: `#notification/${row.notification_id}`, text: row.title ?? "(no title)" })),
      h("td", { text: row.user_id }), h("td", { text: String(row.attempts) }),
      h("td", {}, h("details", {}, h("summary", { text: (row.error_message ?? row.reason ?? "").slice(0, 60) }),
        h("div", { class: "answer", text: row.error_message ?? row.reason ?? "" }))))));
  };
  form.addEventListener("change", () => void load().catch(showError));
  void load().catch(showError);
}

/** Asks in the page's dialog; resolves to whether the operator confirmed. @param {string} text */
function confirmed(text) {
  const dialog = /** @type {HTMLDialogElement} */ (document.getElementById("confirm"));
  /** @type {HTMLElement} */ (document.getElementById("confirm-text")).textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// --- Health and analytics --------------------------------------------------------------------------------

const BUCKET_MS = 10_000; // the figures route counts sends and deliveries per 10 s over 5 minutes
const WINDOW_MS = 5 * 60_000;

/** Per 10-s bucket over the last 5 minutes, as counts per second, with the empty buckets as 0. @param {Point[]} points */
function perSecond(points) {
  const counts = new Map(points.map((p) => [Date.parse(p.at), p.count]));
  const last = Math.floor(Date.now() / BUCKET_MS) * BUCKET_MS;
  /** @type {[number, number][]} */
  const series = [];
  for (let at = last - WINDOW_MS + BUCKET_MS; at <= last; at += BUCKET_MS) series.push([at, (counts.get(at) ?? 0) / 10]);
  return series;
}

/** @param {Sample} sample */
function sampleKey(sample) {
  return `${sample.name}${JSON.stringify(sample.labels)}`;
}

/**
 * How much each process's counters grew since the last poll, summed by group (a restarted process counts from 0).
 * @param {Map<string, number>} previous updated in place: process + sample → value
 * @param {ProcessFigures[]} processes
 * @param {(sample: Sample) => string | null} group a sample's group, or null to leave it out
 */
function increments(previous, processes, group) {
  /** @type {Map<string, number>} */
  const grown = new Map();
  for (const process of processes) {
    for (const sample of process.samples) {
      const name = group(sample);
      if (name === null) continue;
      const key = `${process.process} ${sampleKey(sample)}`;
      const before = previous.get(key);
      previous.set(key, sample.value);
      if (before === undefined) continue; // first sight: no interval yet
      grown.set(name, (grown.get(name) ?? 0) + (sample.value >= before ? sample.value - before : sample.value));
    }
  }
  return grown;
}

/**
 * The q-quantile of a histogram's bucket increments (le → cumulative count), as its bucket's upper bound (past the
 * last finite bucket: that bound, a floor).
 * @param {Map<string, number>} buckets @param {number} q
 */
function quantile(buckets, q) {
  const total = buckets.get("+Inf") ?? 0;
  if (total === 0) return null;
  const bounds = [...buckets].filter(([le]) => le !== "+Inf").map(([le, count]) => [Number(le), count]).sort((a, b) => a[0] - b[0]);
  const found = bounds.find(([, count]) => count >= q * total);
  return found ? found[0] : (bounds.at(-1)?.[0] ?? null);
}

/** @param {ProcessFigures[]} processes @param {string} name @returns {Sample[]} */
function samplesNamed(processes, name) {
  return processes.flatMap((p) => p.samples.filter((s) => s.name === name));
}

function health() {
  const tiles = h("div", { class: "tiles", "data-view": "health" });
  const charts = h("div", { class: "charts" });
  const analytics = h("section", { "data-view": "analytics" });
  view.replaceChildren(h("h2", { text: "Health" }), tiles, charts, h("h2", { text: "Analytics (last 7 days)" }), analytics);
  // What the figures route answers is now: the lines below are drawn from the polls since this page opened.
  /** @type {Record<string, [number, number][]>} */
  const since = { pending: [], dead: [], oldest: [], sockets: [], p50: [], p99: [] };
  /** @type {Map<string, [number, number][]>} */
  const errorRates = new Map();
  /** @type {Map<string, number>} */
  const counters = new Map();
  let lastPoll = 0;
  every(async () => {
    const figures = /** @type {Figures} */ (await api(`${ADMIN}/figures`));
    const now = Date.now();
    const seconds = lastPoll ? (now - lastPoll) / 1000 : 0;
    lastPoll = now;
    const live = figures.processes;
    const sockets = samplesNamed(live, "notifyd_open_sockets").reduce((sum, s) => sum + s.value, 0);
    since.pending.push([now, figures.pending]);
    since.dead.push([now, figures.dead_letters]);
    since.oldest.push([now, figures.oldest_pending_seconds ?? 0]);
    since.sockets.push([now, sockets]);
    const lag = increments(counters, live, (s) => (s.name === "notifyd_commit_to_socket_seconds_bucket" ? s.labels.le : null));
    const errors = increments(counters, live, (s) => (s.name === "notifyd_provider_errors_total" ? s.labels.provider : null));
    if (seconds > 0) {
      const p50 = quantile(lag, 0.5);
      const p99 = quantile(lag, 0.99);
      if (p50 !== null) since.p50.push([now, p50]);
      if (p99 !== null) since.p99.push([now, p99]);
      for (const [provider, count] of errors) {
        errorRates.set(provider, [...(errorRates.get(provider) ?? []), [now, count / seconds]]);
      }
    }
    const circuits = samplesNamed(live, "notifyd_provider_circuit_open");
    /** @type {Map<string, boolean>} */
    const open = new Map();
    for (const s of circuits) open.set(s.labels.provider, (open.get(s.labels.provider) ?? false) || s.value === 1);
    const kinds = ["serve", "worker"].map((kind) => `${live.filter((p) => p.kind === kind).length} ${kind}`).join(", ");
    tiles.replaceChildren(
      tile("pending deliveries", String(figures.pending), "pending"),
      tile("oldest due delivery", figures.oldest_pending_seconds === null ? "none" : `${figures.oldest_pending_seconds.toFixed(0)} s`, "oldest"),
      tile("dead letters", String(figures.dead_letters), "dead-letters"),
      tile("LISTEN/NOTIFY queue", `${(figures.notification_queue_usage * 100).toFixed(1)} %`, "queue-usage"),
      tile("processes reporting", live.length ? kinds : "none (DBAs see them)", "processes"),
      tile("open sockets", String(sockets), "sockets"),
      ...[...open].map(([provider, isOpen]) => tile(`circuit: ${provider}`, isOpen ? "open" : "closed", `circuit-${provider}`)));
    const byChannel = CHANNELS.map((channel) => ({
      name: channel, points: perSecond(figures.deliveries.filter((p) => p.channel === channel)),
    }));
    charts.replaceChildren(
      figure("Sends/s (notifications created)", lineChart([{ name: "sends/s", points: perSecond(figures.sends) }], { label: "sends per second" })),
      figure("Deliveries/s by channel", lineChart(byChannel, { label: "deliveries per second by channel" })),
      figure("Commit → WebSocket latency (s), all serve processes", lineChart([{ name: "p50", points: since.p50 }, { name: "p99", points: since.p99 }], { label: "commit to socket latency" })),
      figure("Open WebSocket sessions, all serve processes", lineChart([{ name: "sockets", points: since.sockets }], { label: "open sockets" })),
      figure("Backlog", lineChart([
        { name: "pending", points: since.pending }, { name: "dead letters", points: since.dead },
        { name: "oldest due (s)", points: since.oldest }], { label: "backlog" })),
      figure("Provider errors/s", lineChart([...errorRates].map(([name, points]) => ({ name, points })), { label: "provider errors per second" })));
  });
  void loadAnalytics(analytics).catch(showError);
}

/** @param {string} label @param {string} value @param {string} key */
function tile(label, value, key) {
  return h("div", { class: "tile", "data-figure": key }, label, h("b", { text: value }));
}

/** @param {string} caption @param {Element} chart */
function figure(caption, chart) {
  return h("figure", {}, h("figcaption", { text: caption }), chart);
}

/** @param {HTMLElement} into */
async function loadAnalytics(into) {
  const to = new Date();
  const from = new Date(to.getTime() - 7 * 86_400_000);
  const answer = await api(`/api/v1/notifications/analytics${search({ from: from.toISOString(), to: to.toISOString(), bucket: "day" })}`);
  const rows = /** @type {AnalyticsRow[]} */ (answer.rows);
  const types = [...new Set(rows.map((r) => r.notification_type))];
  const rate = (/** @type {string | null} */ value) => (value === null ? 0 : Number(value));
  const chart = (/** @type {"delivery_rate" | "open_rate" | "click_rate"} */ key) => lineChart(types.map((type) => ({
    name: type, points: rows.filter((r) => r.notification_type === type).map((r) => /** @type {[number, number]} */ ([Date.parse(r.bucket_start), rate(r[key])])),
  })), { label: key, width: 300, height: 180, yMax: 1, dates: true });
  const percent = (/** @type {string | null} */ value) => (value === null ? "–" : `${(Number(value) * 100).toFixed(0)} %`);
  into.replaceChildren(h("div", { class: "beside" },
    h("div", {}, figure("Delivery rate by type", chart("delivery_rate")),
      figure("Open rate by type", chart("open_rate")), figure("Click rate by type", chart("click_rate"))),
    h("table", { "data-analytics": "" },
      h("thead", {}, h("tr", {}, ...["Day", "Type", "Channel", "Sent", "Delivered", "Opened", "Clicked", "Delivery", "Open", "Click"].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...rows.map((r) => h("tr", {},
        ...[new Date(r.bucket_start).toLocaleDateString(), r.notification_type, r.channel, String(r.sent), String(r.delivered),
          String(r.opened), String(r.clicked), percent(r.delivery_rate), percent(r.open_rate), percent(r.click_rate)]
          .map((text) => h("td", { text }))))))));
}

// --- Templates: list, edit with a live preview, test send, history with a diff ----------------------------

const TEMPLATE_FIELDS = /** @type {const} */ ([
  ["title_template", "In-app title"], ["body_template", "In-app body"],
  ["push_title_template", "Push title"], ["push_body_template", "Push body"],
  ["email_subject_template", "E-mail subject"], ["email_html_template", "E-mail HTML"],
  ["email_text_template", "E-mail text"],
]);
const PREVIEW_DELAY_MS = 250; // after the last keystroke
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * @typedef {typeof TEMPLATE_FIELDS[number][0]} TemplateField
 * @typedef {{name: string, type: string, language: string, version: number, default_priority: string,
 *   default_channels: string[], variables: Record<string, string>, sensitive_fields: string[], created_at: string}
 *   & Record<TemplateField, string | null>} TemplateVersion
 * @typedef {{title: string, body: string, rendered: Record<string, Record<string, string>>}} Rendering
 */

async function templateList() {
  const answer = await api(`${ADMIN}/templates`);
  const rows = /** @type {TemplateVersion[]} */ (answer.templates);
  view.replaceChildren(h("h2", { text: "Templates" }),
    h("table", { "data-view": "templates" },
      h("thead", {}, h("tr", {}, ...["Name", "Language", "Version", "Type", "Channels", "Saved"].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...rows.map((t) => h("tr", {
        class: "clickable", "data-template": `${t.name}/${t.language}`,
        onclick: () => { location.hash = `#templates/${encodeURIComponent(t.name)}/${t.language}`; },
      }, h("td", { text: t.name }), h("td", { text: t.language }), h("td", { text: String(t.version) }),
      h("td", { text: t.type }), h("td", { text: t.default_channels.join(", ") }), h("td", { text: when(t.created_at) }))))));
}

/** Line-by-line differences of two texts (longest common subsequence): [" " | "+" | "-", line][]. @param {string} before @param {string} after */
function lineDiff(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  const common = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      common[i][j] = a[i] === b[j] ? common[i + 1][j + 1] + 1 : Math.max(common[i + 1][j], common[i][j + 1]);
    }
  }
  /** @type {[" " | "+" | "-", string][]} */
  const lines = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      lines.push([" ", a[i]]);
      i += 1;
      j += 1;
    } else if (i < a.length && (j === b.length || common[i + 1][j] >= common[i][j + 1])) {
      lines.push(["-", a[i]]);
      i += 1;
    } else {
      lines.push(["+", b[j]]);
      j += 1;
    }
  }
  return lines;
}

/** What changed from one version to the next, field by field. @param {TemplateVersion | undefined} older @param {TemplateVersion} newer */
function versionDiff(older, newer) {
  const shown = h("div", { "data-diff": String(newer.version) });
  /** @type {[string, string, string][]} */
  const fields = [...TEMPLATE_FIELDS.map(([field, label]) => /** @type {[string, string, string]} */ ([label, older?.[field] ?? "", newer[field] ?? ""])),
    ["Variables", JSON.stringify(older?.variables ?? {}, null, 1), JSON.stringify(newer.variables, null, 1)]];
  for (const [label, before, after] of fields) {
    if (before === after) continue;
    shown.append(h("h4", { text: label }), h("pre", { class: "answer" }, ...lineDiff(before, after).map(([mark, line]) =>
      h(mark === "+" ? "ins" : mark === "-" ? "del" : "span", { text: `${mark} ${line}\n` }))));
  }
  if (!shown.childElementCount) shown.append(h("p", { text: "No change to the texts." }));
  return shown;
}

/** @param {Rendering} rendering */
function renderedPreview(rendering) {
  const email = rendering.rendered.email;
  const push = rendering.rendered.push;
  return h("div", { "data-preview": "" },
    h("section", { "data-channel": "in_app" }, h("h4", { text: "In-app" }), h("b", { "data-part": "title", text: rendering.title }),
      h("p", { "data-part": "body", text: rendering.body })),
    push && h("section", { "data-channel": "push" }, h("h4", { text: "Push" }), h("b", { text: push.title }), h("p", { text: push.body })),
    email && h("section", { "data-channel": "email" }, h("h4", { text: "E-mail" }),
      h("p", {}, "Subject: ", h("b", { "data-part": "subject", text: email.subject })),
      // sandbox with no allowances: the e-mail's HTML runs no script and reaches nothing of the console.
      h("iframe", { sandbox: "", title: "e-mail preview", srcdoc: email.html, style: "width:100%;height:160px;border:1px solid #ccc;background:#fff" }),
      h("pre", { class: "answer", text: email.text })));
}

/** @param {string} name @param {string} language */
async function templateEditor(name, language) {
  const path = `${ADMIN}/templates/${encodeURIComponent(name)}`;
  const all = /** @type {TemplateVersion[]} */ ((await api(path)).templates);
  const languages = [...new Set(all.map((t) => t.language))].sort();
  const versions = all.filter((t) => t.language === language).sort((a, b) => b.version - a.version);
  const base = versions[0] ?? all[0];
  const check = h("p", { "data-check": "", role: "status" });
  const preview = h("div", {});
  const outcome = h("p", { "data-saved": "", role: "status" });
  const sentTo = h("p", { "data-test-sent": "", role: "status" });
  const history = h("div", { "data-history": "" });
  /** @type {Record<string, HTMLTextAreaElement>} */
  const boxes = {};
  for (const [field, label] of TEMPLATE_FIELDS) {
    boxes[field] = h("textarea", { name: field, rows: field === "email_html_template" ? 4 : 2, cols: 60, "aria-label": label });
    boxes[field].value = base[field] ?? "";
  }
  const variables = h("textarea", { name: "variables", rows: 3, cols: 60, "aria-label": "Variables (JSON: name → meaning)" });
  variables.value = JSON.stringify(base.variables, null, 1);
  const sample = h("textarea", { name: "sample", rows: 3, cols: 60, "aria-label": "Sample values (JSON)" });
  sample.value = JSON.stringify(Object.fromEntries(Object.keys(base.variables).map((v) => [v, `‹${v}›`])), null, 1);
  const sub = String(claims(sessionStorage.getItem(TOKEN_KEY) ?? "").sub ?? "");
  const recipient = h("input", { name: "recipient", size: 36, placeholder: "user uuid", "aria-label": "test recipient",
    value: UUID.test(sub) ? sub : "" });

  /** The draft as a save would write it, or the reason it cannot be read. */
  const draft = () => {
    /** @type {Record<string, unknown>} */
    const fields = { type: base.type, default_priority: base.default_priority, default_channels: base.default_channels,
      sensitive_fields: base.sensitive_fields };
    for (const [field] of TEMPLATE_FIELDS) fields[field] = boxes[field].value === "" && field !== "title_template" && field !== "body_template" ? null : boxes[field].value;
    fields.variables = JSON.parse(variables.value || "{}");
    return fields;
  };
  let timer = 0;
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    try {
      const rendering = await api(`${path}/${language}/preview`, { method: "POST", body: { ...draft(), sample: JSON.parse(sample.value || "{}") } });
      if (mine !== asked) return; // a later keystroke's answer is the one to show
      check.textContent = "Every variable is declared; the draft renders.";
      check.dataset.check = "ok";
      preview.replaceChildren(renderedPreview(/** @type {Rendering} */ (rendering)));
    } catch (error) {
      if (mine !== asked) return;
      check.textContent = error instanceof Error ? error.message : String(error);
      check.dataset.check = "error";
    }
  };
  const changed = () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => void refresh(), PREVIEW_DELAY_MS);
  };
  const save = async () => {
    try {
      const saved = /** @type {TemplateVersion} */ (await api(`${path}/${language}`, { method: "PUT", body: draft() }));
      outcome.textContent = `Saved version ${saved.version}.`;
      const fresh = /** @type {TemplateVersion[]} */ ((await api(path)).templates).filter((t) => t.language === language);
      showHistory(fresh.sort((a, b) => b.version - a.version));
    } catch (error) {
      outcome.textContent = error instanceof Error ? error.message : String(error);
    }
  };
  const testSend = async () => {
    try {
      const sent = await api("/api/v1/notifications", { method: "POST", body: {
        user_id: recipient.value.trim(), type: base.type, template_id: name, template_vars: JSON.parse(sample.value || "{}"),
      } });
      sentTo.replaceChildren("Sent (the saved version): ", h("a", { href: `#notification/${sent.id}`, text: sent.id }));
    } catch (error) {
      sentTo.textContent = error instanceof Error ? error.message : String(error);
    }
  };
  /** @param {TemplateVersion[]} newestFirst */
  const showHistory = (newestFirst) => {
    const diff = h("div", {});
    const pick = (/** @type {number} */ index) => diff.replaceChildren(versionDiff(newestFirst[index + 1], newestFirst[index]));
    history.replaceChildren(h("ol", {}, ...newestFirst.map((t, index) => h("li", {},
      h("button", { type: "button", "data-version": String(t.version), onclick: () => pick(index), text: `version ${t.version}` }),
      ` ${when(t.created_at)}`))), diff);
    if (newestFirst.length) pick(0);
  };

  view.replaceChildren(h("h2", { text: `Template ${name}` }),
    h("p", {}, "Language: ", h("select", {
      name: "language", "aria-label": "language",
      onchange: (/** @type {Event} */ e) => { location.hash = `#templates/${encodeURIComponent(name)}/${/** @type {HTMLSelectElement} */ (e.target).value}`; },
    }, ...languages.map((l) => h("option", { value: l, text: l, selected: l === language })))),
    h("div", { class: "beside", style: "grid-template-columns: 1fr 1fr" },
      h("form", { "data-editor": "", oninput: changed, onsubmit: (/** @type {Event} */ e) => e.preventDefault() },
        ...TEMPLATE_FIELDS.map(([field, label]) => h("label", { class: "stacked" }, label, boxes[field])),
        h("label", { class: "stacked" }, "Variables (JSON: name → meaning)", variables),
        h("label", { class: "stacked" }, "Sample values (JSON)", sample),
        check,
        h("p", {}, h("button", { class: "primary", type: "button", onclick: () => void save(), text: "Save as a new version" })),
        outcome),
      h("div", {}, h("h3", { text: "Preview" }), preview,
        h("h3", { text: "Test send" }), h("p", {}, recipient, " ",
          h("button", { type: "button", onclick: () => void testSend(), text: "Send a test" })), sentTo)),
    h("h3", { text: "Version history" }), history);
  showHistory(versions);
  await refresh();
}

// --- Policies: the org's defaults and locks; rate limits and retention (DBAs change them) --------------------

const FREQUENCIES = ["instant", "daily", "weekly", "never"];

/** @typedef {"push" | "email" | "sms" | "webhook" | "chat"} OrgChannel */
/** The channels an org sets a default for and may lock: [key prefix, label]. @type {[OrgChannel, string][]} */
const ORG_CHANNELS = [["push", "push"], ["email", "e-mail"], ["sms", "SMS"], ["webhook", "webhooks"], ["chat", "chat"]];

/**
 * Per channel, `*_enabled` (null: no org default) and `*_locked`; on the org's defaults, user_webhook_endpoints
 * (null: the server's webhook.user_endpoints setting decides).
 * @typedef {{push_enabled: boolean | null, email_enabled: boolean | null, sms_enabled: boolean | null,
 *   webhook_enabled: boolean | null, chat_enabled: boolean | null, digest_frequency: string | null,
 *   push_locked: boolean, email_locked: boolean, sms_locked: boolean, webhook_locked: boolean, chat_locked: boolean,
 *   user_webhook_endpoints?: boolean | null}} OrgDefaults
 * @typedef {{key: string, value: unknown, kind: string, description: string}} Setting
 * @typedef {{notification_type: string | null, max_age: string, max_read_per_user: number | null}} Retention
 */

/**
 * A tri-state switch: no org default, on, off.
 * @param {string} name @param {boolean | null | undefined} value @param {string} [unset] what null means
 */
function triState(name, value, unset = "no org default") {
  return h("select", { name, "aria-label": name },
    ...[["", unset], ["true", "on"], ["false", "off"]].map(([v, label]) =>
      h("option", { value: v, text: label, selected: String(value ?? "") === v })));
}

/** @param {FormData} data @param {string} name */
function triValue(data, name) {
  const value = String(data.get(name) ?? "");
  return value === "" ? null : value === "true";
}

async function policiesView() {
  const token = claims(sessionStorage.getItem(TOKEN_KEY) ?? "");
  const isDba = token.org_id === undefined;
  const org = h("input", { name: "org", size: 36, "aria-label": "org id", value: isDba ? "" : String(token.org_id) });
  const orgArea = h("div", { "data-org-policy": "" });
  const loadOrg = async () => {
    const id = org.value.trim();
    if (!id) return;
    let found;
    try {
      found = await api(`${ADMIN}/orgs/${encodeURIComponent(id)}/preferences`);
    } catch (error) {
      orgArea.replaceChildren(h("p", { class: "error", text: error instanceof Error ? error.message : String(error) }));
      return;
    }
    const defaults = /** @type {OrgDefaults} */ (found.global);
    const saved = h("p", { role: "status", "data-org-saved": "" });
    const form = h("form", { class: "filters", onsubmit: async (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      const data = new FormData(form);
      try {
        await api(`${ADMIN}/orgs/${encodeURIComponent(id)}/preferences`, { method: "PUT", body: {
          ...Object.fromEntries(ORG_CHANNELS.flatMap(([c]) =>
            [[`${c}_enabled`, triValue(data, `${c}_enabled`)], [`${c}_locked`, data.get(`${c}_locked`) === "on"]])),
          digest_frequency: String(data.get("digest_frequency") ?? "") || null,
          user_webhook_endpoints: triValue(data, "user_webhook_endpoints"),
        } });
        saved.textContent = "Saved the org's defaults.";
      } catch (error) {
        saved.textContent = error instanceof Error ? error.message : String(error);
      }
    } },
    ...ORG_CHANNELS.flatMap(([c, label]) => [
      field(label, triState(`${c}_enabled`, defaults[`${c}_enabled`])),
      field(`${label} locked`, h("input", { type: "checkbox", name: `${c}_locked`, checked: defaults[`${c}_locked`] })),
    ]),
    field("users' own webhooks", triState("user_webhook_endpoints", defaults.user_webhook_endpoints, "server setting")),
    field("digest", h("select", { name: "digest_frequency", "aria-label": "digest_frequency" },
      h("option", { value: "", text: "no org default" }),
      ...FREQUENCIES.map((f) => h("option", { value: f, text: f, selected: defaults.digest_frequency === f })))),
    h("button", { class: "primary", type: "submit", text: "Save the org's defaults" }));
    const items = /** @type {(OrgDefaults & {notification_type: string})[]} */ (found.items);
    orgArea.replaceChildren(form, saved, items.length ? h("table", {},
      h("thead", {}, h("tr", {}, ...["Type", ...ORG_CHANNELS.map(([, label]) => label), "Digest", "Locked"]
        .map((t) => h("th", { text: t })))),
      h("tbody", {}, ...items.map((i) => h("tr", {}, ...[i.notification_type,
        ...ORG_CHANNELS.map(([c]) => String(i[`${c}_enabled`] ?? "–")), i.digest_frequency ?? "–",
        ORG_CHANNELS.filter(([c]) => i[`${c}_locked`]).map(([, label]) => label).join(", ")]
        .map((text) => h("td", { text })))))) : "");
  };

  const read = await api(`${ADMIN}/policies`);
  const settings = /** @type {Setting[]} */ (read.settings);
  const retention = /** @type {Retention[]} */ (read.retention);
  const changedNote = h("p", { role: "status", "data-policy-saved": "" });
  /** @param {() => Promise<unknown>} change @param {string} done */
  const apply = async (change, done) => {
    try {
      await change();
      changedNote.textContent = done;
    } catch (error) {
      changedNote.textContent = error instanceof Error ? error.message : String(error);
    }
  };
  const settingRows = settings.map((setting) => {
    const box = h("input", { name: setting.key, size: 14, "aria-label": setting.key, value: JSON.stringify(setting.value), disabled: !isDba });
    return h("tr", { "data-setting": setting.key }, h("td", { text: setting.key }), h("td", {}, box),
      h("td", { text: setting.kind }), h("td", { text: setting.description }),
      h("td", {}, isDba && h("button", { type: "button", text: "Save", onclick: () => void apply(async () => {
        let value;
        try {
          value = JSON.parse(box.value);
        } catch {
          throw new Error(`${setting.key}: the value must be JSON (a number, "text", true or false)`);
        }
        await api(`${ADMIN}/settings/${encodeURIComponent(setting.key)}`, { method: "PUT", body: { value } });
      }, `Saved ${setting.key}.`) })));
  });
  const retentionRowsOf = (/** @type {Retention[]} */ rows) => rows.map((r) => h("tr", { "data-retention": r.notification_type ?? "" },
    h("td", { text: r.notification_type ?? "(default)" }), h("td", { text: r.max_age }),
    h("td", { text: r.max_read_per_user === null ? "no cap" : String(r.max_read_per_user) })));
  const retentionRows = h("tbody", {}, ...retentionRowsOf(retention));
  const retentionForm = h("form", { class: "filters", onsubmit: (/** @type {SubmitEvent} */ e) => {
    e.preventDefault();
    const data = new FormData(retentionForm);
    const cap = String(data.get("max_read_per_user") ?? "");
    void apply(async () => {
      await api(`${ADMIN}/retention`, { method: "PUT", body: {
        notification_type: String(data.get("notification_type") ?? "") || null, max_age: String(data.get("max_age") ?? ""),
        max_read_per_user: cap === "" ? null : Number(cap),
      } });
      retentionRows.replaceChildren(...retentionRowsOf(/** @type {Retention[]} */ ((await api(`${ADMIN}/policies`)).retention)));
    }, "Saved the retention policy.");
  } },
  field("type (empty: the default)", h("input", { name: "notification_type", size: 14 })),
  field("keep for", h("input", { name: "max_age", size: 10, placeholder: "90 days", required: true })),
  field("read kept per user", h("input", { name: "max_read_per_user", type: "number", min: 0, size: 6 })),
  h("button", { class: "primary", type: "submit", text: "Set retention" }));

  view.replaceChildren(h("h2", { text: "Policies" }),
    h("h3", { text: "The org's defaults and locks" }),
    h("p", {}, org, " ", h("button", { type: "button", onclick: () => void loadOrg(), text: "Load" })), orgArea,
    h("h3", { text: "Rate limits and other settings" }),
    isDba ? "" : h("p", { "data-dba-only": "", text: "Only a DBA changes these; an org admin reads them." }),
    h("table", { "data-view": "settings" },
      h("thead", {}, h("tr", {}, ...["Setting", "Value", "Kind", "Meaning", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...settingRows)),
    h("h3", { text: "Retention" }),
    h("table", { "data-view": "retention" },
      h("thead", {}, h("tr", {}, ...["Type", "Kept for", "Read kept per user"].map((t) => h("th", { text: t })))),
      retentionRows),
    isDba ? retentionForm : "", changedNote,
    broadcastComposer(isDba, isDba ? "" : String(token.org_id)));
  await loadOrg();
}

// --- Broadcast: the composer, its recipient preview, a confirmation, then the batch's progress ---------------

/**
 * @typedef {{recipients: number, channels: {in_app: number, push: number, email: number, email_digest: number},
 *   global_rate_per_minute: number}} Preview
 * @typedef {{batch_id: string, status: string, counts: {total: number, created: number, read: number,
 *   deliveries: Record<string, number>}}} Batch
 */

/** @param {boolean} isDba @param {string} ownOrg */
function broadcastComposer(isDba, ownOrg) {
  const previewed = h("div", { "data-broadcast-preview": "" });
  const progress = h("p", { role: "status", "data-broadcast-progress": "" });
  // A changed audience needs a new preview: the send goes to the audience previewed and confirmed.
  const form = h("form", { class: "filters", "data-broadcast": "", oninput: () => previewed.replaceChildren(), onsubmit: (/** @type {SubmitEvent} */ e) => {
    e.preventDefault();
    void preview().catch((error) => { previewed.replaceChildren(h("p", { class: "error", text: error.message })); });
  } },
  field("org", h("input", { name: "org_id", size: 36, "aria-label": "broadcast org", value: ownOrg, readonly: !isDba })),
  isDba && field("everyone (every org)", h("input", { name: "everyone", type: "checkbox" })),
  field("topic", h("input", { name: "topic", size: 14, "aria-label": "broadcast topic" })),
  field("language", h("input", { name: "locale", size: 6, placeholder: "de", "aria-label": "broadcast language" })),
  field("time zone", h("input", { name: "timezone", size: 16, placeholder: "Europe/Berlin", "aria-label": "broadcast time zone" })),
  field("type", h("input", { name: "type", size: 12, required: true, value: "system", "aria-label": "broadcast type" })),
  field("priority", h("select", { name: "priority", "aria-label": "broadcast priority" },
    ...PRIORITIES.map((p) => h("option", { value: p, text: p, selected: p === "normal" })))),
  field("title", h("input", { name: "title", size: 30, required: true, "aria-label": "broadcast title" })),
  field("body", h("textarea", { name: "body", rows: 2, cols: 40, "aria-label": "broadcast body" })),
  h("button", { type: "submit", text: "Preview recipients" }));

  /** The audience and notification as the form says them; null org_id is every org (a DBA's "everyone"). */
  const audience = () => {
    const data = new FormData(form);
    const text = (/** @type {string} */ name) => String(data.get(name) ?? "").trim() || null;
    return { org_id: data.get("everyone") === "on" ? null : text("org_id"), topic: text("topic"), locale: text("locale"),
      timezone: text("timezone"), type: text("type") ?? "", priority: text("priority") ?? "normal" };
  };
  const preview = async () => {
    const asked = audience();
    const found = /** @type {Preview} */ (await api(`${ADMIN}/broadcasts/preview`, { method: "POST", body: asked }));
    const split = found.channels;
    const send = async () => {
      if (!(await confirmed(`Send "${String(new FormData(form).get("title") ?? "")}" to ${found.recipients} users?`))) return;
      const data = new FormData(form);
      const sent = await api(`${ADMIN}/broadcasts`, { method: "POST", body: {
        ...asked, title: String(data.get("title") ?? ""), body: String(data.get("body") ?? "") || null,
      } });
      if (!sent.batch_id) {
        progress.textContent = "Nobody matched: nothing was sent.";
        return;
      }
      progress.dataset.batch = sent.batch_id;
      watch(String(sent.batch_id));
    };
    previewed.replaceChildren(h("table", { "data-view": "broadcast-preview" },
      h("thead", {}, h("tr", {}, ...["Recipients", "In-app", "Push", "E-mail now", "E-mail by digest"].map((t) => h("th", { text: t })))),
      h("tbody", {}, h("tr", {}, ...[found.recipients, split.in_app, split.push, split.email, split.email_digest].map((n, i) =>
        h("td", { "data-count": ["recipients", "in_app", "push", "email", "email_digest"][i], text: String(n) }))))),
    h("p", { text: `Push and e-mail go at the global rate: ${found.global_rate_per_minute} a minute.` }),
    h("button", { class: "primary", type: "button", "data-action": "broadcast", disabled: found.recipients === 0,
      onclick: () => void send().catch(showError), text: `Send to ${found.recipients} users` }));
  };
  /** Polls the batch until nothing of it is pending or held. @param {string} batch */
  const watch = (batch) => {
    let timer = 0;
    const tick = async () => {
      const got = /** @type {Batch} */ (await api(`/api/v1/notifications/bulk/${encodeURIComponent(batch)}`));
      const deliveries = Object.entries(got.counts.deliveries).map(([s, n]) => `${n} ${s}`).join(", ") || "none";
      progress.dataset.status = got.status;
      progress.textContent = `Batch ${batch}: ${got.status}; ${got.counts.created} of ${got.counts.total} notifications, ${got.counts.read} read; deliveries: ${deliveries}.`;
      if (got.status === "processing") timer = window.setTimeout(() => void tick().catch(showError), POLL_MS);
    };
    stops.push(() => clearTimeout(timer));
    void tick().catch(showError);
  };
  return h("section", {}, h("h3", { text: "Broadcast" }), form, previewed, progress);
}

// --- routing ---------------------------------------------------------------------------------------------

function show() {
  for (const stop of stops) stop();
  stops = [];
  who();
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    signIn();
    return;
  }
  const [name, id, ...rest] = location.hash.slice(1).split("/");
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.getAttribute("href") === `#${name || "activity"}`;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const views = /** @type {Record<string, () => void | Promise<void>>} */ ({
    "dead-letters": deadLetters,
    health,
    notification: () => oneNotification(id ?? ""),
    templates: () => (id ? templateEditor(decodeURIComponent(id), rest[0] ?? "en") : templateList()),
    policies: policiesView,
  });
  Promise.resolve((views[name] ?? activity)()).catch(showError);
}

window.addEventListener("hashchange", show);
show();

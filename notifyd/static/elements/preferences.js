// <notifyd-preferences>: channel switches per type, digests, quiet hours per weekday, the time zone, and
// browser notifications (a <notifyd-push-toggle>).

import { NotifydElement, define, field, h, messageOf, select, titleCase } from "./base.js";
import { NotifydPushToggle } from "./push-toggle.js"; // defines <notifyd-push-toggle>, which the form holds

/** @typedef {import("../notifyd-client.js").NotifydClient} NotifydClient */
/** @typedef {import("../notifyd-client.js").Preferences} Preferences */
/** @typedef {import("../notifyd-client.js").PreferenceItem} PreferenceItem */
/** @typedef {import("../notifyd-client.js").GlobalPreferences} GlobalPreferences */
/** @typedef {import("../notifyd-client.js").GlobalChanges} GlobalChanges */
/** @typedef {import("../notifyd-client.js").QuietWindow} QuietWindow */
/** @typedef {import("../notifyd-client.js").LockableChannel} LockableChannel */
/** Quiet hours per ISO weekday (1 is Monday), as "HH:MM". @typedef {Record<number, {start: string, end: string}>} QuietDays */
/**
 * The form's controls.
 * @typedef {object} Fields
 * @property {Map<string, {switches: Record<LockableChannel, HTMLInputElement>, digest: HTMLSelectElement}>} types
 * @property {{switches: Record<LockableChannel, HTMLInputElement>,
 *   default_digest_frequency: HTMLSelectElement, default_digest_time: HTMLInputElement,
 *   default_digest_day: HTMLSelectElement, timezone: HTMLSelectElement | null} | null} global
 * @property {{on: HTMLInputElement, start: HTMLInputElement, end: HTMLInputElement}[]} days
 */

/**
 * The switched channels in the order of the grid's columns: [channel, its label in a row, its global switch's label].
 * @type {[LockableChannel, string, string][]}
 */
const CHANNELS = [
  ["push", "push", "Push notifications"],
  ["email", "e-mail", "E-mail notifications"],
  ["sms", "SMS", "SMS (when a sender asks for it)"],
  ["webhook", "webhooks", "Webhooks (yours and your organization's)"],
  ["chat", "chat", "Chat: Slack, Teams, Discord (yours and your organization's)"],
];
const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
/** @type {[string, string][]} */
const FREQUENCIES = [["instant", "Instantly"], ["daily", "Daily digest"], ["weekly", "Weekly digest"], ["never", "Never"]];

/**
 * Per-day quiet hours from the stored windows: {1: {start, end}, ...} (ISO weekdays).
 * @param {GlobalPreferences} prefs
 */
function quietDays(prefs) {
  /** @type {QuietDays} */
  const days = {};
  const windows = [...prefs.quiet_hours_windows];
  if (prefs.quiet_hours_start && prefs.quiet_hours_end) {
    windows.unshift({ start: prefs.quiet_hours_start, end: prefs.quiet_hours_end, days: prefs.quiet_hours_days });
  }
  for (const w of windows) for (const d of w.days) days[d] = { start: w.start.slice(0, 5), end: w.end.slice(0, 5) };
  return days;
}

/**
 * Days with equal times grouped into windows; the first is stored as quiet_hours_start/end/days.
 * @param {QuietDays} days
 * @returns {GlobalChanges}
 */
function quietChanges(days) {
  /** @type {Map<string, QuietWindow>} */
  const groups = new Map();
  for (let d = 1; d <= 7; d++) {
    const day = days[d];
    if (!day) continue;
    const key = `${day.start}-${day.end}`;
    const group = groups.get(key) ?? { start: day.start, end: day.end, days: [] };
    groups.set(key, group);
    group.days.push(d);
  }
  const [first, ...rest] = groups.values();
  return first
    ? { quiet_hours_start: first.start, quiet_hours_end: first.end, quiet_hours_days: first.days, quiet_hours_windows: rest }
    : { quiet_hours_start: null, quiet_hours_end: null, quiet_hours_windows: [] };
}

/**
 * The keys of `wanted` whose values differ from `current` (compared as JSON).
 * @template {object} T
 * @param {object} current
 * @param {T} wanted
 * @returns {Partial<T>}
 */
function diff(current, wanted) {
  const known = /** @type {Record<string, unknown>} */ (current);
  return /** @type {Partial<T>} */ (Object.fromEntries(
    Object.entries(wanted).filter(([key, value]) => JSON.stringify(known[key]) !== JSON.stringify(value))));
}

/**
 * A checkbox per switched channel, checked as `enabled` says; a channel the org locked is disabled.
 * @param {(channel: LockableChannel) => boolean} enabled
 * @param {LockableChannel[]} locked
 * @returns {Record<LockableChannel, HTMLInputElement>}
 */
function switchesOf(enabled, locked) {
  return /** @type {Record<LockableChannel, HTMLInputElement>} */ (Object.fromEntries(CHANNELS.map(([channel]) =>
    [channel, h("input", { type: "checkbox", checked: enabled(channel), disabled: locked.includes(channel) })])));
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

  /** @type {Preferences | null} */
  #loaded = null;
  /** @type {HTMLFormElement} */
  #form;
  /** @type {HTMLElement} */
  #status;
  /** @type {HTMLButtonElement} */
  #save;
  /** @type {Fields} */
  #fields = { types: new Map(), global: null, days: [] };

  /** @param {ShadowRoot} root */
  render(root) {
    this.#status = h("span", { class: "status", part: "status", role: "status" });
    this.#save = h("button", { type: "submit", class: "primary", part: "save", text: "Save preferences", disabled: true });
    this.#form = h("form", { part: "form", "aria-label": "Notification preferences", onsubmit: (/** @type {SubmitEvent} */ event) => {
      event.preventDefault();
      this.#submit();
    } }, h("p", { class: "status", text: "Loading preferences…" }));
    root.append(this.#form);
  }

  /** @param {NotifydClient} client */
  attach(client) {
    client.preferences().then((prefs) => {
      if (this.client === client) this.#build(prefs);
    }, (error) => {
      this.#form.replaceChildren(h("p", { class: "status error", role: "alert", text: `Could not load preferences: ${messageOf(error)}` }));
    });
  }

  /** @param {Preferences} prefs */
  #build(prefs) {
    this.#loaded = prefs;
    const g = prefs.global;
    /** @type {Fields["types"]} */
    const types = new Map();
    const rows = prefs.items.map((item) => {
      const name = titleCase(item.notification_type);
      const switches = switchesOf((channel) => item[`${channel}_enabled`], item.locked);
      const cells = CHANNELS.map(([channel, label]) => {
        const box = switches[channel];
        const locked = item.locked.includes(channel);
        box.setAttribute("aria-label", `${name}: ${label}${locked ? " (locked by your organization)" : ""}`);
        return h("td", {}, box, locked ? h("span", { class: "note", text: "Locked by your organization" }) : null);
      });
      const digest = select({ "aria-label": `${name}: e-mail frequency` }, FREQUENCIES);
      digest.value = item.digest_frequency;
      types.set(item.notification_type, { switches, digest });
      return h("tr", { "data-type": item.notification_type },
        h("th", { scope: "row", text: name }),
        h("td", {}, h("input", { type: "checkbox", checked: true, disabled: true, "aria-label": `${name}: in-app (always on)` })),
        cells, h("td", {}, digest));
    });

    const lockedNote = (/** @type {LockableChannel} */ channelName) =>
      (g.locked.includes(channelName) ? " (locked by your organization)" : "");
    const G = {
      switches: switchesOf((channel) => g[`all_${channel}_enabled`], g.locked),
      default_digest_frequency: select({}, FREQUENCIES),
      default_digest_time: h("input", { type: "time", value: g.default_digest_time.slice(0, 5), required: true }),
      default_digest_day: select({}, WEEKDAYS.map((d, i) => /** @type {[string, string]} */ ([String(i + 1), d]))),
      /** @type {HTMLSelectElement | null} */
      timezone: null,
    };
    G.default_digest_frequency.value = g.default_digest_frequency;
    G.default_digest_day.value = String(g.default_digest_day);
    if ("timezone" in g) {
      const zones = new Set(Intl.supportedValuesOf?.("timeZone") ?? []);
      zones.add(g.timezone);
      G.timezone = select({}, [...zones].sort().map((z) => /** @type {[string, string]} */ ([z, z.replaceAll("_", " ")])));
      G.timezone.value = g.timezone;
    }

    const quiet = quietDays(g);
    /** @type {Fields["days"]} */
    const days = [];
    const dayRows = WEEKDAYS.map((day, i) => {
      const set = quiet[i + 1];
      const on = h("input", { type: "checkbox", checked: Boolean(set) });
      const start = h("input", { type: "time", value: set?.start ?? "22:00", disabled: !set, "aria-label": `${day} quiet hours from` });
      const end = h("input", { type: "time", value: set?.end ?? "07:00", disabled: !set, "aria-label": `${day} quiet hours until` });
      on.addEventListener("change", () => { start.disabled = end.disabled = !on.checked; });
      days.push({ on, start, end });
      return [h("label", { class: "switch" }, on, day),
        h("span", { class: "time" }, "from", start), h("span", { class: "time" }, "until", end)];
    });
    this.#fields = { types, global: G, days };

    this.#form.replaceChildren(
      h("section", { part: "section" },
        h("h2", { text: "What reaches you where" }),
        h("p", { class: "intro", text: "In-app notifications are always on. Choose the other channels per kind of notification." }),
        h("table", { part: "grid" },
          h("thead", {}, h("tr", {}, ["Type", "In-app", "Push", "E-mail", "SMS", "Webhooks", "Chat", "E-mail frequency"]
            .map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, rows))),
      h("section", { part: "section" },
        h("h2", { text: "Everywhere" }),
        h("p", { class: "intro", text: "Switches that apply to every kind of notification, and when digests go out." }),
        h("div", { class: "switches" },
          CHANNELS.map(([channel, , label]) => h("label", { class: "switch" }, G.switches[channel], `${label}${lockedNote(channel)}`))),
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

  /**
   * The global settings the form changes.
   * @param {GlobalPreferences} loaded
   * @returns {GlobalChanges}
   */
  #wantedGlobal(loaded) {
    const G = this.#fields.global;
    if (!G) return {};
    /** @type {QuietDays} */
    const days = {};
    this.#fields.days.forEach(({ on, start, end }, i) => {
      if (on.checked) days[i + 1] = { start: start.value, end: end.value };
    });
    /** @type {GlobalChanges} */
    const wanted = {
      ...Object.fromEntries(CHANNELS.map(([channel]) => [`all_${channel}_enabled`, G.switches[channel].checked])),
      default_digest_frequency: /** @type {GlobalChanges["default_digest_frequency"]} */ (G.default_digest_frequency.value),
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
    const loaded = this.#loaded;
    if (!client || !loaded) return;
    const perType = loaded.items.flatMap((item) => {
      const f = this.#fields.types.get(item.notification_type);
      if (!f) return [];
      const changes = diff(item, {
        ...Object.fromEntries(CHANNELS.map(([channel]) => [`${channel}_enabled`, f.switches[channel].checked])),
        digest_frequency: /** @type {PreferenceItem["digest_frequency"]} */ (f.digest.value),
      });
      return Object.keys(changes).length > 0 ? [/** @type {const} */ ([item, changes])] : [];
    });
    const global = this.#wantedGlobal(loaded.global);
    this.#save.disabled = true;
    this.#status.className = "status";
    this.#status.textContent = "Saving…";
    try {
      const saved = await Promise.all(perType.map(([item, changes]) => client.setPreference(item.notification_type, changes)));
      const savedGlobal = Object.keys(global).length > 0 ? await client.setGlobalPreferences(global) : loaded.global;
      const byType = new Map(saved.map((item) => [item.notification_type, item]));
      this.#loaded = { ...loaded, items: loaded.items.map((item) => byType.get(item.notification_type) ?? item), global: savedGlobal };
      this.#status.className = "status ok";
      this.#status.textContent = perType.length || Object.keys(global).length ? "Saved" : "Nothing to save: no changes";
    } catch (error) {
      this.#status.className = "status error";
      this.#status.textContent = messageOf(error);
    } finally {
      this.#save.disabled = false;
    }
  }
}

define("notifyd-preferences", NotifydPreferences);

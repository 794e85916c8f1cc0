// The shared base of notifyd's custom elements: which client an element uses, its shadow root and styles,
// the small DOM helpers, and a define() that tolerates the module being loaded twice.

import { NotifydClient } from "../notifyd-client.js";

/** @typedef {import("../notifyd-client.js").NotifydClientOptions} NotifydClientOptions */
/** @typedef {import("../notifyd-client.js").NotifydEventMap} NotifydEventMap */
/**
 * Attributes, listeners (on…) and the properties `text`, `value` and `checked` of an element made by h().
 * Any-typed: the listeners take whichever event their name says.
 * @typedef {Record<string, any>} Props
 */
/** A child of an element made by h(): nothing (null, undefined, false) is left out. @typedef {Node | string | null | undefined | false} Child */

const MODULE_ORIGIN = new URL(import.meta.url).origin;

// --- clients ---------------------------------------------------------------------------------------------

/** One client per server + token, whatever the number of elements using it. @type {Map<string, NotifydClient>} */
const sharedClients = new Map();
/** @type {NotifydClient | null} */
let defaultClient = null;
const configured = new EventTarget();

/** @param {string} server @param {string} token */
function sharedClient(server, token) {
  const key = `${new URL(server, location.href).origin}\n${token}`;
  let client = sharedClients.get(key);
  if (!client) {
    client = new NotifydClient({ baseUrl: new URL(server, location.href).origin, token });
    sharedClients.set(key, client);
  }
  return client;
}

/** How many elements use each client: a shared client no element uses any more is closed. @type {Map<NotifydClient, number>} */
const holders = new Map();

/** @param {NotifydClient} client */
function hold(client) {
  holders.set(client, (holders.get(client) ?? 0) + 1);
}

/** @param {NotifydClient} client */
function release(client) {
  holders.set(client, (holders.get(client) ?? 1) - 1);
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
 * @param {NotifydClient | NotifydClientOptions} optionsOrClient
 * @returns {NotifydClient}
 */
export function configure(optionsOrClient) {
  defaultClient = optionsOrClient instanceof NotifydClient ? optionsOrClient : new NotifydClient(optionsOrClient);
  configured.dispatchEvent(new Event("change"));
  return defaultClient;
}

/**
 * Defines a custom element unless that name is taken already: a page that loads these modules twice (from two
 * URLs, say) keeps the first definition instead of failing on the second.
 * @param {string} name
 * @param {CustomElementConstructor} constructor
 */
export function define(name, constructor) {
  if (!customElements.get(name)) customElements.define(name, constructor);
}

// --- small helpers ---------------------------------------------------------------------------------------

/**
 * An element with attributes, listeners (on…) and children; strings become text nodes, never HTML.
 * `text`, `value` and `checked` are set as properties.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...(Child | Child[] | Child[][])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  /** @type {Record<string, unknown>} */
  const properties = {};
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") properties.textContent = value;
    else if (key === "value" || key === "checked") properties[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(.../** @type {(Node | string)[]} */ (children.flat(Infinity).filter((child) => child != null && child !== false)));
  return Object.assign(el, properties);
}

/**
 * A select with its options: [[value, label], ...].
 * @param {Props} props
 * @param {[string, string][]} options
 */
export function select(props, options) {
  return h("select", props, options.map(([value, label]) => h("option", { value, text: label })));
}

let fieldCount = 0;

/**
 * A control with its visible label (by id: a label around a select would name it with its options too).
 * @param {string} label
 * @param {HTMLElement} control
 */
export function field(label, control) {
  control.id ||= `field-${++fieldCount}`;
  return h("div", { class: "field" }, h("label", { class: "label", for: control.id, text: label }), control);
}

/**
 * The URL to open for a notification, only when it is http(s); null otherwise.
 * @param {unknown} value
 * @returns {string | null}
 */
export function safeUrl(value) {
  if (typeof value !== "string" || value === "") return null;
  try {
    const url = new URL(value, document.baseURI);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** @param {string} word */
export function titleCase(word) {
  return word.charAt(0).toUpperCase() + word.slice(1).replaceAll("_", " ");
}

/**
 * The message of a failed call (a NotifydError or whatever else was thrown).
 * @param {unknown} error
 */
export function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
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
.item .snooze-choices { display: flex; flex-direction: column; align-items: flex-end; gap: .2em; }
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

// --- the base element ------------------------------------------------------------------------------------

/** Shadow DOM, client resolution (property > attributes > configure()) and listeners removed on detach. */
export class NotifydElement extends HTMLElement {
  static observedAttributes = ["token", "server"];
  static css = "";
  /** @type {NotifydClient | null} */
  #explicit = null;
  /** @type {NotifydClient | null} */
  #attached = null;
  /** @type {(() => void)[]} */
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
      root.append(h("style", { text: BASE_CSS + /** @type {typeof NotifydElement} */ (this.constructor).css }));
      this.render(root);
    }
    configured.addEventListener("change", this.#onConfigured);
    this.#refresh();
  }

  disconnectedCallback() {
    configured.removeEventListener("change", this.#onConfigured);
    this.#detach();
  }

  /** @param {string} _name */
  attributeChangedCallback(_name) {
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

  /**
   * Listens to the attached client until it is detached (call it from attach()).
   * @template {keyof NotifydEventMap} K
   * @param {K} type
   * @param {(event: NotifydEventMap[K]) => void} listener
   */
  listen(type, listener) {
    if (this.#attached) this.#removers.push(this.#attached.on(type, listener));
  }

  /**
   * Also runs on detach.
   * @param {() => void} remove
   */
  whileAttached(remove) {
    this.#removers.push(remove);
  }

  /** Builds the shadow root's content, once. @param {ShadowRoot} _root */
  render(_root) {}
  /** A client is attached: listen to it. @param {NotifydClient} _client */
  attach(_client) {}
  /** The client is going away: forget what it gave. */
  detach() {}
}

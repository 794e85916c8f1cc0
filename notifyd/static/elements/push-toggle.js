// <notifyd-push-toggle>: the browser-notification permission flow. It says where things stand in plain words
// and turns Web Push on or off for this browser.

import { NotifydElement, define, h, messageOf } from "./base.js";

/** @typedef {import("../notifyd-client.js").NotifydClient} NotifydClient */
/** @typedef {import("../notifyd-client.js").PushState} PushState */

/** @type {Record<PushState, string>} */
const PUSH_TEXT = {
  unsupported: "This browser cannot receive notifications from this site (it needs a secure connection and service workers).",
  "not-configured": "Browser notifications are not set up on this server yet.",
  denied: "Notifications are blocked for this site. To unblock them, click the icon left of the address bar, "
    + "allow Notifications, then reload this page.",
  prompt: "Get notified on this device even when this page is closed. Your browser will ask for permission.",
  subscribed: "Browser notifications are on for this browser.",
  unsubscribed: "Browser notifications are off for this browser.",
};
// A browser that has the APIs may still have no push service (some browsers, private windows, locked-down
// profiles): its own error names an API ("AbortError: Registration failed - push service error"), not a way out.
const NO_PUSH_SERVICE = "This browser cannot receive notifications here: its push service is not available "
  + "(some browsers and private windows turn it off). Try another browser, or keep this page open.";

/**
 * What a failed push call means for the user, in words: the browser's own errors are for developers.
 * @param {unknown} error
 */
function failureText(error) {
  if (error instanceof DOMException) return error.name === "NotAllowedError" ? PUSH_TEXT.denied : NO_PUSH_SERVICE;
  return `Could not change browser notifications: ${messageOf(error)}`;
}

/** The browser-notification permission flow: explains where things stand, turns Web Push on or off. */
export class NotifydPushToggle extends NotifydElement {
  static css = `
:host { display: block; }
.row { display: flex; flex-wrap: wrap; align-items: center; gap: .6em 1em; }
.text { margin: 0; flex: 1; min-width: 16em; color: var(--_muted); }
`;

  /** @type {HTMLElement} */
  #text;
  /** @type {HTMLButtonElement} */
  #button;
  /** @type {PushState | null} */
  #state = null;

  /** @param {ShadowRoot} root */
  render(root) {
    this.#text = h("p", { class: "text", part: "push-state", role: "status", text: "Checking browser notifications…" });
    this.#button = h("button", { type: "button", part: "push-button", hidden: true, onclick: () => this.#toggle() });
    root.append(h("div", { class: "row" }, this.#text, this.#button));
  }

  /** @param {NotifydClient} client */
  attach(client) {
    this.listen("push", (event) => this.#show(event.detail.state));
    client.pushState().then((state) => this.#show(state), (error) => this.#fail(error));
  }

  /** @param {PushState} state */
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

  /** @param {unknown} error */
  #fail(error) {
    this.#text.textContent = failureText(error);
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

define("notifyd-push-toggle", NotifydPushToggle);

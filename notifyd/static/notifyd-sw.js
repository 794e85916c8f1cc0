// notifyd-sw.js: the service worker of notifyd's Web Push (a classic script, no dependencies).
//
// notifyd serves it at its root (/notifyd-sw.js, Service-Worker-Allowed: /) and notifyd-push.js registers
// it with scope "/". A product that has its own service worker imports it there instead:
//     importScripts("https://notifyd.example.com/static/notifyd-sw.js");
// and passes that worker's URL as the client's `serviceWorkerUrl`; notifyd's CORS_ALLOWED_ORIGINS must
// then name the product's origin, since the worker calls notifyd from there.
//
// It shows pushes, reports them received and clicked with the payload's receipt token, takes action
// buttons, and keeps the subscription alive when the browser replaces it or notifyd rotates its VAPID
// key. It never holds a user JWT: notifyd-push.js hands it a device-scoped subscription_token (kept in
// IndexedDB "notifyd", store "push", key "subscription", with baseUrl, vapid_public_key and endpoint),
// which is enough to move that one device to a new subscription (POST push/resubscribe).
//
// The logic is exposed as `self.notifyd` (each function returns a promise) so that tests and a
// product's worker can call it; the event listeners below call the same functions inside waitUntil.
"use strict";

/**
 * What notifyd-push.js stores for the worker, per browser.
 * @typedef {{baseUrl: string, subscription_token: string, vapid_public_key: string, endpoint: string}} StoredSubscription
 */
/** @typedef {{receipt?: string | null, url?: string, id?: string}} ShownData what a shown notification carries */

(() => {
  // This script runs as a service worker: `self` is its global scope.
  const sw = /** @type {ServiceWorkerGlobalScope & {notifyd?: object}} */ (/** @type {unknown} */ (self));
  const API = "/api/v1/notifications";
  const STORE = "push";
  const KEY = "subscription";

  // --- the stored subscription (handed over by notifyd-push.js's messages) -----------------------------

  /**
   * Runs `use(store)` in one transaction of the "notifyd" database; resolves to its request's result.
   * @param {IDBTransactionMode} mode
   * @param {(store: IDBObjectStore) => IDBRequest} use
   * @returns {Promise<any>}
   */
  function withStore(mode, use) {
    return new Promise((resolve, reject) => {
      const open = indexedDB.open("notifyd", 1);
      open.onupgradeneeded = () => open.result.createObjectStore(STORE);
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result;
        const tx = db.transaction(STORE, mode);
        const request = use(tx.objectStore(STORE));
        tx.oncomplete = () => { db.close(); resolve(request.result); };
        tx.onerror = tx.onabort = () => { db.close(); reject(tx.error); };
      };
    });
  }
  /** @returns {Promise<StoredSubscription | undefined>} */
  const stored = () => withStore("readonly", (s) => s.get(KEY));
  const store = (/** @type {StoredSubscription} */ row) => withStore("readwrite", (s) => s.put(row, KEY));
  const forget = () => withStore("readwrite", (s) => s.delete(KEY));

  // --- notifyd's HTTP API (no Authorization header, ever) ---------------------------------------------

  async function baseUrl() {
    const row = await stored();
    return row ? row.baseUrl : sw.location.origin;
  }

  /**
   * JSON in and out; an answer other than 2xx throws an Error carrying its `status`.
   * @param {string} method @param {string} url @param {unknown} [body]
   */
  async function call(method, url, body) {
    const response = await fetch(url, {
      method,
      headers: body === undefined ? {} : {"Content-Type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
    });
    if (!response.ok) {
      throw Object.assign(new Error(`notifyd answered ${response.status} to ${method} ${url}`), {status: response.status});
    }
    return response.status === 204 ? null : response.json();
  }

  /**
   * @param {string | null | undefined} token the payload's receipt token
   * @param {"received" | "clicked" | "action"} event
   * @param {string} [action]
   */
  async function receipt(token, event, action) {
    if (!token) return null; // a payload without a recipient to name carries no receipt
    return call("POST", `${await baseUrl()}${API}/receipts`, action ? {token, event, action} : {token, event});
  }

  /**
   * Best effort: a lost receipt only makes the analytics undercount; each event counts once anyway.
   * @param {string | null | undefined} token @param {"received" | "clicked"} event
   */
  function report(token, event) {
    return receipt(token, event).catch(() => null);
  }

  // --- showing and clicking --------------------------------------------------------------------------

  /** @param {{id?: string, title?: string, body?: string, url?: string, receipt?: string, actions?: unknown[]}} message */
  async function handlePush(message) {
    // showNotification rejects the whole notification for one malformed button: keep the well-formed ones.
    const actions = /** @type {any[]} */ (Array.isArray(message.actions) ? message.actions : [])
      .filter((a) => a && typeof a.action === "string" && typeof a.title === "string")
      .map((a) => ({action: String(a.action), title: String(a.title)}));
    await Promise.all([
      sw.registration.showNotification(message.title || "notifyd", /** @type {NotificationOptions} */ ({
        body: message.body || "",
        tag: message.id, // a notification sent again (changed) replaces the one shown
        data: {url: message.url || "/", id: message.id, receipt: message.receipt || null},
        actions, // not in TypeScript's NotificationOptions yet
      })),
      report(message.receipt, "received"),
    ]);
  }

  /**
   * Focuses a tab already showing `url`, else opens one (allowed only while a notificationclick is handled).
   * @param {string} url
   */
  async function showWindow(url) {
    const windows = await sw.clients.matchAll({type: "window", includeUncontrolled: true});
    const open = windows.find((client) => client.url === url);
    return open ? open.focus() : sw.clients.openWindow(url);
  }

  /**
   * A click on the notification (action "") or on one of its buttons.
   * @param {Notification} notification @param {string} action
   */
  async function handleClick(notification, action) {
    notification.close();
    /** @type {ShownData} */
    const data = notification.data || {};
    if (action) {
      // The button acts in the background as the notification's user; not best effort, so that a failure
      // shows in the worker's console.
      await receipt(data.receipt, "action", action);
      return;
    }
    const url = new URL(data.url || "/", sw.location.origin).href;
    const reported = report(data.receipt, "clicked");
    // Also when no window can be shown, waitUntil has to last until the receipt is sent.
    await showWindow(url).finally(() => reported);
  }

  // --- keeping the subscription alive ------------------------------------------------------------------

  // The page's check, the activate event and pushsubscriptionchange may overlap: one move at a time.
  /** @type {Promise<unknown>} */
  let queue = Promise.resolve();
  /** @template T @param {() => Promise<T>} task @returns {Promise<T>} */
  function serially(task) {
    const run = queue.then(task, task);
    queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Tells notifyd that the device of `row` now receives pushes at `subscription`; keeps the new token.
   * @param {StoredSubscription} row @param {PushSubscription} subscription @param {string} vapidKey
   */
  async function resubscribe(row, subscription, vapidKey) {
    let moved;
    try {
      moved = await call("POST", `${row.baseUrl}${API}/push/resubscribe`, {
        token: row.subscription_token,
        subscription: subscription.toJSON(),
        vapid_public_key: vapidKey,
      });
    } catch (error) {
      const status = /** @type {{status?: number}} */ (error).status;
      if (status !== 401 && status !== 404) throw error;
      // The user removed this device (or its token is no good): nothing will push here any more.
      await subscription.unsubscribe();
      await forget();
      return false;
    }
    await store({...row, subscription_token: moved.subscription_token, vapid_public_key: vapidKey,
                 endpoint: subscription.endpoint});
    return true;
  }

  /** @param {string} vapidKey */
  function subscribe(vapidKey) {
    return sw.registration.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: vapidKey});
  }

  /**
   * The browser replaced (or dropped) the subscription: resolves to whether notifyd now has the new one.
   * @param {PushSubscription | null} oldSubscription @param {PushSubscription | null} newSubscription
   */
  function handleSubscriptionChange(oldSubscription, newSubscription) {
    return serially(async () => {
      const row = await stored();
      if (!row) return false; // not subscribed through notifyd-push.js
      // Browsers renew with the old applicationServerKey, which is the stored one.
      const subscription = newSubscription || (await subscribe(row.vapid_public_key));
      return resubscribe(row, subscription, row.vapid_public_key);
    });
  }

  /** Moves the subscription to notifyd's current VAPID key if it changed: resolves to whether it moved. */
  function checkVapidKey() {
    return serially(async () => {
      const row = await stored();
      if (!row) return false;
      const {public_key: current} = await call("GET", `${row.baseUrl}${API}/vapid-public-key`);
      if (current === row.vapid_public_key) return false;
      // A browser holds one subscription per registration: the old one goes before the new key can be used.
      const old = await sw.registration.pushManager.getSubscription();
      if (old) await old.unsubscribe();
      return resubscribe(row, await subscribe(current), current);
    });
  }

  sw.notifyd = {handlePush, handleClick, handleSubscriptionChange, checkVapidKey};

  // --- events ----------------------------------------------------------------------------------------

  sw.addEventListener("push", (event) => {
    let message;
    try {
      message = /** @type {PushMessageData} */ (event.data).json();
    } catch {
      message = {title: "notifyd", body: event.data ? event.data.text() : ""};
    }
    event.waitUntil(handlePush(message));
  });

  sw.addEventListener("notificationclick", (event) => {
    event.waitUntil(handleClick(event.notification, event.action));
  });

  sw.addEventListener("pushsubscriptionchange", (event) => {
    event.waitUntil(handleSubscriptionChange(event.oldSubscription, event.newSubscription));
  });

  sw.addEventListener("activate", (event) => {
    // A key rotated while no page was open is noticed here at the latest; offline is no failure.
    event.waitUntil(checkVapidKey().catch(() => false));
  });

  // What notifyd-push.js asks of this worker; the answer goes back on the message's port.
  /** @type {Record<string, (data: any) => Promise<unknown>>} */
  const requests = {
    "notifyd:store": (data) => store(data.subscription),
    "notifyd:forget": () => forget(),
    "notifyd:check-vapid": () => checkVapidKey(),
  };
  sw.addEventListener("message", (event) => {
    const handle = event.data ? requests[event.data.type] : undefined;
    if (!handle) return; // a message for a product's own worker
    const [port] = event.ports;
    event.waitUntil(handle(event.data).then(
      (result) => port && port.postMessage({result: result === undefined ? null : result}),
      (error) => port && port.postMessage({error: String((error && error.message) || error)}),
    ));
  });
})();

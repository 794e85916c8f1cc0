// notifyd-push.js: Web Push for a page (an ES module, no dependencies), behind NotifydClient's
// pushState(), subscribePush() and unsubscribePush(), which load it on first use.
//
// Permission flow: call subscribePush() from a user gesture (a click on "Turn on notifications"):
// browsers show the permission prompt only then, and quietly deny it otherwise. It asks first, before
// any network call, because Safari forgets the gesture across an await on the network. pushState()
// never prompts: use it to decide what to show ("prompt" -> the button, "denied" -> how to unblock).
//
// The service worker (notifyd-sw.js, or a product's worker that imports it) keeps what it needs in
// IndexedDB; this module hands it over by message, so the storage layout lives in one file.

const API = "/api/v1/notifications";
const SCOPE = "/";
// A worker that does not import notifyd-sw.js never answers: fail instead of waiting forever.
const ANSWER_TIMEOUT_MS = 10_000;

/** @typedef {import("./notifyd-client.d.ts").PushState} PushState */
/** @typedef {import("./notifyd-client.d.ts").NotifydClient} NotifydClient */
/** @typedef {import("./notifyd-client.d.ts").NotifydError} NotifydError */

function supported() {
  return window.isSecureContext && "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** notifyd's current VAPID public key, or null when Web Push is not configured there (503). */
async function currentKey(/** @type {NotifydClient} */ client) {
  try {
    return (await client.request("GET", `${API}/vapid-public-key`, {auth: false})).public_key;
  } catch (error) {
    if (/** @type {NotifydError} */ (error).status === 503) return null;
    throw error;
  }
}

/** The applicationServerKey a subscription was made with, as base64url (how notifyd names keys). */
function keyOf(/** @type {PushSubscription} */ subscription) {
  const key = subscription.options && subscription.options.applicationServerKey;
  if (!key) return null;
  return btoa(String.fromCharCode(...new Uint8Array(key))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Sends `message` to the active service worker and resolves to its answer.
 * @param {{type: string, [key: string]: unknown}} message
 */
async function ask(message) {
  const worker = /** @type {ServiceWorker} */ ((await navigator.serviceWorker.ready).active); // ready: active
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => reject(new Error(
      `the service worker did not answer ${message.type}: does it import notifyd-sw.js?`)), ANSWER_TIMEOUT_MS);
    channel.port1.onmessage = ({data}) => {
      clearTimeout(timer);
      if ("error" in data) reject(new Error(data.error));
      else resolve(data.result);
    };
    worker.postMessage(message, [channel.port2]);
  });
}

async function currentSubscription() {
  const registration = await navigator.serviceWorker.getRegistration();
  return registration ? registration.pushManager.getSubscription() : null;
}

/**
 * Where Web Push stands here. A subscription on an older VAPID key is moved to the current one by the
 * service worker first.
 * @param {NotifydClient} client
 * @returns {Promise<PushState>}
 */
export async function pushState(client) {
  if (!supported()) return "unsupported";
  const key = await currentKey(client);
  if (key === null) return "not-configured";
  if (Notification.permission === "denied") return "denied";
  if (Notification.permission === "default") return "prompt";
  const subscription = await currentSubscription();
  if (!subscription) return "unsubscribed";
  if (keyOf(subscription) === key) return "subscribed";
  return (await ask({type: "notifyd:check-vapid"})) ? "subscribed" : "unsubscribed";
}

/**
 * Asks permission if needed (call it from a user gesture), registers the service worker and subscribes
 * this browser with notifyd's current VAPID key.
 * @param {NotifydClient} client
 * @returns {Promise<PushState>}
 */
export async function subscribePush(client) {
  if (!supported()) return "unsupported";
  if (Notification.permission === "default") await Notification.requestPermission();
  if (Notification.permission === "denied") return "denied";
  if (Notification.permission !== "granted") return "prompt"; // the prompt was dismissed
  const key = await currentKey(client);
  if (key === null) return "not-configured";
  await navigator.serviceWorker.register(client.serviceWorkerUrl, {scope: SCOPE});
  const {pushManager} = await navigator.serviceWorker.ready;
  let subscription = await pushManager.getSubscription();
  if (subscription && keyOf(subscription) !== key) {
    // Made with a key notifyd no longer hands out: a browser keeps one subscription, so drop it first.
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription = subscription || (await pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key}));
  const created = await client.request("POST", `${API}/push/subscribe`, {
    body: {
      subscription: subscription.toJSON(),
      vapid_public_key: key,
      device_info: {platform: "web", user_agent: navigator.userAgent},
    },
  });
  await ask({
    type: "notifyd:store",
    subscription: {
      baseUrl: client.baseUrl,
      subscription_token: created.subscription_token,
      vapid_public_key: key,
      endpoint: subscription.endpoint,
    },
  });
  return "subscribed";
}

/**
 * Removes this browser's device from notifyd and drops its subscription.
 * @param {NotifydClient} client
 * @returns {Promise<PushState>}
 */
export async function unsubscribePush(client) {
  if (!supported()) return "unsupported";
  const subscription = await currentSubscription();
  if (subscription) {
    try {
      await client.request("DELETE", `${API}/push/unsubscribe`, {body: {endpoint: subscription.endpoint}});
    } catch (error) {
      if (/** @type {NotifydError} */ (error).status !== 404) throw error; // 404: the device was removed already
    }
    await subscription.unsubscribe();
    await ask({type: "notifyd:forget"});
  }
  return pushState(client);
}

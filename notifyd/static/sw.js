// notifyd demo service worker: shows Web Push notifications, opens their link on click, and reports
// both to notifyd with the payload's signed receipt token (it holds no user JWT; the token is enough).
const RECEIPTS = "/api/v1/notifications/receipts";

function report(receipt, event) {
  if (!receipt) return Promise.resolve();
  // Best effort: a lost receipt only makes the analytics undercount; each event counts once anyway.
  return fetch(RECEIPTS, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: receipt, event}),
    keepalive: true,
  }).catch(() => undefined);
}

self.addEventListener("push", (event) => {
  let message = {title: "notifyd", body: ""};
  try { message = event.data.json(); } catch (_) { message.body = event.data ? event.data.text() : ""; }
  event.waitUntil(Promise.all([
    self.registration.showNotification(message.title || "notifyd", {
      body: message.body || "",
      tag: message.id,
      data: {url: message.url || "/", id: message.id, receipt: message.receipt || null},
    }),
    report(message.receipt, "received"),
  ]));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const url = new URL(data.url || "/", self.location.origin).href;
  event.waitUntil(Promise.all([
    report(data.receipt, "clicked"),
    (async () => {
      for (const client of await clients.matchAll({type: "window", includeUncontrolled: true})) {
        if (client.url === url && "focus" in client) return client.focus();
      }
      return clients.openWindow(url);
    })(),
  ]));
});

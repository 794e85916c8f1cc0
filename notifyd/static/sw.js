// notifyd demo service worker: shows Web Push notifications and opens their link on click.
self.addEventListener("push", (event) => {
  let message = {title: "notifyd", body: ""};
  try { message = event.data.json(); } catch (_) { message.body = event.data ? event.data.text() : ""; }
  event.waitUntil(self.registration.showNotification(message.title || "notifyd", {
    body: message.body || "",
    tag: message.id,
    data: {url: message.url || "/", id: message.id},
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data.url || "/", self.location.origin).href;
  event.waitUntil((async () => {
    for (const client of await clients.matchAll({type: "window", includeUncontrolled: true})) {
      if (client.url === url && "focus" in client) return client.focus();
    }
    return clients.openWindow(url);
  })());
});

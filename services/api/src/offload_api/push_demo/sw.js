// The demo's service worker: shows each push message (JSON: title, body, url, icon) as a notification.
"use strict";

self.addEventListener("push", (event) => {
  const message = event.data ? event.data.json() : { title: "(empty push message)" };
  event.waitUntil(
    self.registration.showNotification(message.title, {
      body: message.body || "",
      icon: message.icon,
      data: { url: message.url },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url;
  if (url) {
    event.waitUntil(self.clients.openWindow(url));
  }
});

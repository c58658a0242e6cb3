// The demo page's script: service worker, VAPID key, pushManager.subscribe(), POST to the API.
"use strict";

function step(name, text, kind) {
  const item = document.createElement("li");
  item.dataset.step = name;
  item.className = kind || "ok";
  item.textContent = text;
  document.getElementById("steps").appendChild(item);
}

function keyBytes(base64url) {
  const base64 = (base64url + "=".repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

async function subscribe(event) {
  event.preventDefault();
  const key = document.getElementById("key").value;
  const user = document.getElementById("user").value;
  document.getElementById("steps").replaceChildren();
  let registration;
  try {
    registration = await navigator.serviceWorker.register("/push-demo/sw.js", { scope: "/push-demo" });
    await navigator.serviceWorker.ready;
    step("service-worker", "Service worker registered for " + registration.scope);
  } catch (error) {
    step("service-worker", "Service worker: " + error, "error");
    return;
  }
  const answer = await fetch("/v1/push/vapid-public-key");
  const body = await answer.json();
  if (!answer.ok) {
    step("public-key", "VAPID public key: " + (body.detail || answer.status), "error");
    return;
  }
  step("public-key", "VAPID public key: " + body.public_key);
  let subscription;
  try {
    subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: keyBytes(body.public_key),
    });
    step("subscribe", "Subscribed at " + subscription.endpoint);
  } catch (error) {
    step("subscribe", "pushManager.subscribe(): " + error, "error");
    return;
  }
  const saved = await fetch("/v1/push/subscriptions", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
    body: JSON.stringify({ ...subscription.toJSON(), user_id: user }),
  });
  const record = await saved.json();
  if (saved.ok) {
    step("saved", "Saved as " + record.id + " for " + record.user_id);
  } else {
    step("saved", "The API refused it: " + (record.detail || saved.status), "error");
  }
}

document.getElementById("subscribe").addEventListener("submit", subscribe);

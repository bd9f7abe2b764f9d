/*! retenshun push service worker.
 *
 * Two ways to use it:
 *  1. Serve this file from your app's origin (e.g. as /sw.js) and call
 *     retenshun.push.subscribe({serviceWorkerUrl: "/sw.js"}) — the SDK registers it as
 *     "/sw.js?host=<your retenshun host>", and this worker reads `host` from its own URL.
 *  2. From your app's own worker:
 *       self.RETENSHUN_HOST = "https://engage.example.com";   // optional, see below
 *       importScripts("https://engage.example.com/sdk/sw.js");
 *     The host is taken from, in order: self.RETENSHUN_HOST, the `host` query parameter of
 *     the worker's URL (also set by subscribe() when it registers your worker), and finally
 *     the worker's own origin (when retenshun is reverse-proxied under the app's origin).
 *
 * push:              payload {title, body, url, icon, message_id} -> showNotification.
 * notificationclick: POST {host}/v1/messages/{message_id}/clicked (keepalive), then focus a
 *                    window already showing the url or open it.
 * Pushes without `title` or `message_id` are left alone for the app's own handlers.
 */
(function (self) {
  "use strict";
  if (!self || typeof self.addEventListener !== "function" || self.__retenshunServiceWorker) return;
  self.__retenshunServiceWorker = { version: "0.1.0" };

  function trim(host) {
    return String(host).trim().replace(/\/+$/, "");
  }

  function configuredHost() {
    if (self.RETENSHUN_HOST) return trim(self.RETENSHUN_HOST);
    try {
      const fromUrl = new URL(self.location.href).searchParams.get("host");
      if (fromUrl) return trim(fromUrl);
    } catch (_) {
      /* no URL support */
    }
    try {
      return self.location.origin;
    } catch (_) {
      return "";
    }
  }

  function payloadOf(event) {
    if (!event.data) return null;
    try {
      return event.data.json();
    } catch (_) {
      return null;
    }
  }

  function safeTarget(url) {
    if (typeof url !== "string" || !url) return null;
    try {
      const u = new URL(url, self.location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  self.addEventListener("push", function (event) {
    const p = payloadOf(event);
    if (!p || typeof p !== "object" || (p.title == null && p.message_id == null)) return;
    const options = {
      body: p.body != null ? String(p.body) : "",
      data: {
        retenshun: true,
        message_id: p.message_id != null ? String(p.message_id) : null,
        url: p.url || null,
        host: configuredHost(),
      },
    };
    if (p.icon) options.icon = p.icon;
    if (p.badge) options.badge = p.badge;
    if (p.image) options.image = p.image;
    if (p.message_id != null) options.tag = "retenshun-" + p.message_id; // a resend replaces, not duplicates
    event.waitUntil(self.registration.showNotification(p.title != null ? String(p.title) : "", options));
  });

  function reportClick(host, messageId) {
    if (!host || !messageId || typeof self.fetch !== "function") return Promise.resolve();
    // No body and no custom headers: a CORS "simple" request, so no preflight is needed.
    return self
      .fetch(host + "/v1/messages/" + encodeURIComponent(messageId) + "/clicked", {
        method: "POST",
        keepalive: true,
        mode: "cors",
        credentials: "omit",
      })
      .catch(function () {});
  }

  async function openOrFocus(url) {
    const target = safeTarget(url);
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    if (target) {
      for (const c of windows) if (c.url === target && typeof c.focus === "function") return c.focus();
      if (self.clients.openWindow) return self.clients.openWindow(target);
      return undefined;
    }
    for (const c of windows) if (typeof c.focus === "function") return c.focus();
    if (self.clients.openWindow && self.registration) return self.clients.openWindow(self.registration.scope);
    return undefined;
  }

  self.addEventListener("notificationclick", function (event) {
    const n = event.notification;
    const d = n && n.data;
    if (!d || !d.retenshun) return;
    n.close();
    event.waitUntil(
      Promise.all([reportClick(d.host || configuredHost(), d.message_id), openOrFocus(d.url).catch(function () {})])
    );
  });
})(typeof self !== "undefined" ? self : globalThis);

// retenshun.push.subscribe() with fake browser push APIs, and the service worker in a vm.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import vm from "node:vm";
import { setup, fakeFetch, fakeWindow, SW_PATH, settle } from "./fakes.test.mjs";

const KEY_BYTES = Uint8Array.from({ length: 65 }, (_, i) => (i * 37 + 4) & 255);
const KEY_B64URL = Buffer.from(KEY_BYTES).toString("base64url");

function pushWindow({ permission = "granted", existing = null } = {}) {
  const log = [];
  const win = fakeWindow();
  const sub = {
    endpoint: "https://push.example.net/send/abc",
    toJSON: () => ({ endpoint: "https://push.example.net/send/abc", expirationTime: null, keys: { p256dh: "BNc", auth: "tBH" } }),
  };
  const pushManager = {
    getSubscription: async () => existing,
    subscribe: async (opts) => {
      log.push(["subscribe", opts]);
      return sub;
    },
  };
  win.PushManager = function PushManager() {};
  win.Notification = {
    permission: "default",
    requestPermission: async () => {
      log.push(["permission"]);
      return permission;
    },
  };
  win.navigator.serviceWorker = {
    register: async (url, opts) => {
      log.push(["register", url, opts]);
      return { active: {}, pushManager };
    },
  };
  return { win, log, sub };
}

function pushFetch(log) {
  return fakeFetch((call) => {
    log.push(["fetch", call.method, new URL(call.url).pathname]);
    if (call.url.endsWith("/v1/push/vapid-public-key")) return { status: 200, body: { public_key: KEY_B64URL } };
    if (call.url.endsWith("/v1/push/subscriptions")) return { status: 201, body: { ok: true } };
    return { status: 404, body: { error: { code: "not_found", message: "?" } } };
  });
}

test("subscribe: permission first, then the worker with ?host=, the VAPID key and the subscription POST", async () => {
  const { win, log, sub } = pushWindow();
  const fetch = pushFetch(log);
  const { r } = setup({ fetch, init: { window: win, userToken: "user-tok", inbox: false } });
  const result = await r.push.subscribe();
  assert.equal(result, sub);
  assert.deepEqual(log[0], ["permission"], "the permission prompt comes before anything async");
  const reg = log.find((l) => l[0] === "register");
  assert.equal(reg[1], "/sw.js?host=" + encodeURIComponent("https://engage.example.com"));

  const vapid = fetch.calls.find((c) => c.url.endsWith("/v1/push/vapid-public-key"));
  assert.equal(vapid.method, "GET");
  assert.equal(vapid.headers.get("authorization"), "Basic " + Buffer.from("pk_test_1:").toString("base64"));

  const [, opts] = log.find((l) => l[0] === "subscribe");
  assert.equal(opts.userVisibleOnly, true);
  assert.deepEqual(Array.from(opts.applicationServerKey), Array.from(KEY_BYTES));

  const post = fetch.calls.find((c) => c.url.endsWith("/v1/push/subscriptions"));
  assert.equal(post.method, "POST");
  assert.equal(post.headers.get("authorization"), "Bearer user-tok");
  assert.equal(post.headers.get("content-type"), "application/json");
  assert.deepEqual(post.body, { subscription: sub.toJSON() });
});

test("subscribe keeps a custom worker URL and scope", async () => {
  const { win, log } = pushWindow();
  const { r } = setup({ fetch: pushFetch(log), init: { window: win, userToken: "t", inbox: false } });
  await r.push.subscribe({ serviceWorkerUrl: "/app-worker.js?v=3", scope: "/app/" });
  const reg = log.find((l) => l[0] === "register");
  assert.equal(reg[1], "/app-worker.js?v=3&host=" + encodeURIComponent("https://engage.example.com"));
  assert.deepEqual(reg[2], { scope: "/app/" });
});

test("a denied permission rejects with permission_denied and registers nothing", async () => {
  const { win, log } = pushWindow({ permission: "denied" });
  const fetch = pushFetch(log);
  const { r } = setup({ fetch, init: { window: win, userToken: "t", inbox: false } });
  await assert.rejects(r.push.subscribe(), (e) => e.code === "permission_denied");
  assert.equal(log.filter((l) => l[0] === "register").length, 0);
  assert.equal(fetch.calls.length, 0);
});

test("an existing subscription for the same key is reused; one for another key is replaced", async () => {
  let unsubscribed = 0;
  const same = { options: { applicationServerKey: KEY_BYTES.buffer.slice(0) }, toJSON: () => ({ endpoint: "same" }), unsubscribe: async () => ++unsubscribed };
  const a = pushWindow({ existing: same });
  const ra = setup({ fetch: pushFetch(a.log), init: { window: a.win, userToken: "t", inbox: false } });
  assert.equal(await ra.r.push.subscribe(), same);
  assert.equal(a.log.filter((l) => l[0] === "subscribe").length, 0);
  assert.deepEqual(ra.fetch.calls.at(-1).body, { subscription: { endpoint: "same" } }, "the server is told again anyway");

  const other = { options: { applicationServerKey: new Uint8Array(65).buffer }, toJSON: () => ({}), unsubscribe: async () => ++unsubscribed };
  const b = pushWindow({ existing: other });
  const rb = setup({ fetch: pushFetch(b.log), init: { window: b.win, userToken: "t", inbox: false } });
  assert.equal(await rb.r.push.subscribe(), b.sub);
  assert.equal(unsubscribed, 1);
});

test("subscribe refuses without a user token, without support, and surfaces server errors", async () => {
  const a = pushWindow();
  const ra = setup({ fetch: pushFetch(a.log), init: { window: a.win, inbox: false } });
  await assert.rejects(ra.r.push.subscribe(), (e) => e.code === "no_user_token");
  assert.equal(a.log.length, 0, "not even the permission prompt");

  const rb = setup({ init: { window: fakeWindow(), userToken: "t", inbox: false } });
  assert.equal(rb.r.push.supported, false);
  await assert.rejects(rb.r.push.subscribe(), (e) => e.code === "push_unsupported");

  const c = pushWindow();
  const fetch = fakeFetch((call) =>
    call.url.endsWith("/vapid-public-key")
      ? { status: 200, body: { public_key: KEY_B64URL } }
      : { status: 401, body: { error: { code: "invalid_token", message: "token expired" } } }
  );
  const rc = setup({ fetch, init: { window: c.win, userToken: "t", inbox: false } });
  await assert.rejects(rc.r.push.subscribe(), (e) => e.status === 401 && e.code === "invalid_token");
});

// ---------------------------------------------------------------- service worker

const swSource = fs.readFileSync(SW_PATH, "utf8");

function worker({ href = "https://app.example.com/sw.js?host=https%3A%2F%2Fengage.example.com", windows = [], preset = {} } = {}) {
  const handlers = {};
  const log = { shown: [], fetches: [], opened: [], focused: [] };
  const self = Object.assign(
    {
      URL,
      location: Object.assign(new URL(href), {}),
      addEventListener: (type, fn) => (handlers[type] = (handlers[type] || []).concat(fn)),
      registration: {
        scope: "https://app.example.com/",
        showNotification: async (title, options) => log.shown.push({ title, options }),
      },
      clients: {
        matchAll: async () => windows.map((url) => ({ url, focus: async () => log.focused.push(url) })),
        openWindow: async (url) => log.opened.push(url),
      },
      fetch: async (url, init) => {
        log.fetches.push({ url, init });
        return { ok: true, status: 204 };
      },
    },
    preset
  );
  self.self = self;
  vm.runInNewContext(swSource, self, { filename: "sw.js" });
  const fire = async (type, event) => {
    const waits = [];
    event.waitUntil = (p) => waits.push(p);
    for (const h of handlers[type] || []) h(event);
    await Promise.all(waits);
    await settle();
    return waits.length;
  };
  return { self, handlers, log, fire };
}

const pushEvent = (payload) => ({ data: { json: () => (typeof payload === "string" ? JSON.parse(payload) : payload) } });

test("sw: a push shows the notification with the message data and the host", async () => {
  const w = worker();
  await w.fire("push", pushEvent({ title: "Card expiring", body: "Visa ending 4242 expires 12/26", url: "https://app.example.com/billing", icon: "/i.png", message_id: "msg_1" }));
  assert.equal(w.log.shown.length, 1);
  const { title, options } = w.log.shown[0];
  assert.equal(title, "Card expiring");
  assert.equal(options.body, "Visa ending 4242 expires 12/26");
  assert.equal(options.icon, "/i.png");
  assert.equal(options.tag, "retenshun-msg_1");
  assert.deepEqual(JSON.parse(JSON.stringify(options.data)), {
    retenshun: true,
    message_id: "msg_1",
    url: "https://app.example.com/billing",
    host: "https://engage.example.com",
  });
});

test("sw: pushes that are not retenshun's are left to other handlers", async () => {
  const w = worker();
  assert.equal(await w.fire("push", pushEvent({ kind: "app-sync" })), 0);
  assert.equal(await w.fire("push", { data: { json: () => JSON.parse("not json") } }), 0);
  assert.equal(await w.fire("push", { data: null }), 0);
  assert.equal(w.log.shown.length, 0);
});

test("sw: a click closes, reports /clicked with keepalive and opens the url", async () => {
  const w = worker();
  let closed = 0;
  const data = { retenshun: true, message_id: "msg_1", url: "https://app.example.com/billing", host: "https://engage.example.com" };
  await w.fire("notificationclick", { notification: { data, close: () => closed++ } });
  assert.equal(closed, 1);
  assert.equal(w.log.fetches.length, 1);
  assert.equal(w.log.fetches[0].url, "https://engage.example.com/v1/messages/msg_1/clicked");
  assert.equal(w.log.fetches[0].init.method, "POST");
  assert.equal(w.log.fetches[0].init.keepalive, true);
  assert.deepEqual(w.log.opened, ["https://app.example.com/billing"]);
});

test("sw: a click focuses a window already showing the url instead of opening another", async () => {
  const w = worker({ windows: ["https://app.example.com/", "https://app.example.com/billing"] });
  const data = { retenshun: true, message_id: "m", url: "/billing", host: "https://engage.example.com" };
  await w.fire("notificationclick", { notification: { data, close() {} } });
  assert.deepEqual(w.log.focused, ["https://app.example.com/billing"]);
  assert.deepEqual(w.log.opened, []);
});

test("sw: clicks on other notifications and javascript: urls are ignored", async () => {
  const w = worker();
  await w.fire("notificationclick", { notification: { data: { other: 1 }, close() {} } });
  await w.fire("notificationclick", { notification: { data: { retenshun: true, message_id: "m", url: "javascript:alert(1)", host: "https://e.example.com" }, close() {} } });
  assert.equal(w.log.fetches.length, 1, "only the retenshun notification is reported");
  assert.deepEqual(w.log.opened, ["https://app.example.com/"], "the unsafe url falls back to the app");
});

test("sw: via importScripts the host may come from self.RETENSHUN_HOST; otherwise the origin", async () => {
  const a = worker({ href: "https://app.example.com/app-worker.js", preset: { RETENSHUN_HOST: "https://engage.example.com/" } });
  await a.fire("push", pushEvent({ title: "t", message_id: "m1" }));
  assert.equal(a.log.shown[0].options.data.host, "https://engage.example.com");

  const b = worker({ href: "https://app.example.com/app-worker.js" });
  await b.fire("push", pushEvent({ title: "t", message_id: "m1" }));
  assert.equal(b.log.shown[0].options.data.host, "https://app.example.com");
});

test("sw: importing it twice registers its handlers once", () => {
  const w = worker();
  vm.runInNewContext(swSource, w.self);
  assert.equal(w.handlers.push.length, 1);
  assert.equal(w.handlers.notificationclick.length, 1);
});

test("unsubscribe tells the server and unsubscribes the browser", async () => {
  let unsubscribed = 0;
  const existing = { endpoint: "https://push.example.net/send/abc", unsubscribe: async () => ++unsubscribed > 0 };
  const { win, log } = pushWindow({ existing });
  win.navigator.serviceWorker.getRegistration = async () => ({ pushManager: { getSubscription: async () => existing } });
  const { r, fetch } = setup({ fetch: pushFetch(log), init: { window: win, userToken: "user-tok", inbox: false } });
  assert.equal(await r.push.unsubscribe(), true);
  assert.equal(unsubscribed, 1);
  const del = fetch.calls.at(-1);
  assert.equal(del.method, "DELETE");
  assert.equal(new URL(del.url).pathname, "/v1/push/subscriptions");
  assert.equal(del.headers.get("authorization"), "Bearer user-tok");
  assert.deepEqual(del.body, { endpoint: "https://push.example.net/send/abc" });
});

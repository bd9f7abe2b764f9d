// Test doubles shared by the SDK tests: small real implementations of the interfaces the
// SDK takes by injection (timers + clock, fetch, storage, WebSocket, window, logger).
// This file is also a test file: the doubles' own tests run only when it is the entry point.
import test from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { pathToFileURL, fileURLToPath } from "node:url";
import path from "node:path";

const require = createRequire(import.meta.url);
export const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../web/sdk");
export const SDK_PATH = path.join(SDK_DIR, "retenshun.js");
export const SW_PATH = path.join(SDK_DIR, "sw.js");
export const sdk = require(SDK_PATH);

export const START = Date.parse("2026-11-26T08:00:00.000Z");

// Lets promise chains and I/O callbacks run; no wall-clock waiting is involved.
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock {
  constructor(start = START) {
    this.t = start;
    this.seq = 0;
    this.timers = new Map();
    this.history = []; // every delay ever requested, in order
  }
  now() {
    return this.t;
  }
  setTimeout(fn, ms) {
    const id = ++this.seq;
    const delay = Math.max(0, Number(ms) || 0);
    this.timers.set(id, { id, fn, at: this.t + delay, delay });
    this.history.push(delay);
    return id;
  }
  clearTimeout(id) {
    this.timers.delete(id);
  }
  pending() {
    return [...this.timers.values()].sort((a, b) => a.at - b.at || a.id - b.id);
  }
  delays() {
    return this.pending().map((t) => t.delay);
  }
  // Advance time by ms, firing due timers in order and letting their async work settle.
  async tick(ms) {
    const end = this.t + ms;
    for (;;) {
      const next = this.pending()[0];
      if (!next || next.at > end) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
  // Fire the next timer whatever its delay; returns its delay.
  async next() {
    const t = this.pending()[0];
    if (!t) throw new Error("no pending timer");
    await this.tick(t.at - this.t);
    return t.delay;
  }
}

// A fetch that records requests and answers from a script; when the script is empty it
// answers with fallback(call) or 200 {"success":true}.
export function fakeFetch(fallback) {
  const script = [];
  const calls = [];
  async function fetch(url, init = {}) {
    const headers = new Headers(init.headers || {});
    const call = {
      url: String(url),
      method: init.method || "GET",
      headers,
      init,
      body: typeof init.body === "string" && init.body ? JSON.parse(init.body) : init.body,
    };
    calls.push(call);
    const next = script.length ? script.shift() : fallback || { status: 200, body: { success: true } };
    const r = await (typeof next === "function" ? next(call) : next);
    if (r === "network") throw new TypeError("fetch failed");
    return new Response(r.body === undefined ? null : typeof r.body === "string" ? r.body : JSON.stringify(r.body), {
      status: r.status || 200,
      headers: Object.assign({ "content-type": "application/json" }, r.headers || {}),
    });
  }
  fetch.calls = calls;
  fetch.respond = (...responses) => {
    script.push(...responses);
    return fetch;
  };
  return fetch;
}

export function memoryStorage() {
  const map = new Map();
  return {
    map,
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => void map.set(k, String(v)),
    removeItem: (k) => void map.delete(k),
  };
}

export function recordingLogger() {
  const warnings = [];
  const errors = [];
  return { warnings, errors, warn: (...a) => warnings.push(a.join(" ")), error: (...a) => errors.push(a.join(" ")) };
}

export function fakeWindow({ href = "https://app.example.com/reports/weekly?tab=2#top", title = "Weekly report", referrer = "https://app.example.com/", sendBeacon } = {}) {
  const win = new EventTarget();
  const url = new URL(href);
  win.location = { href: url.href, pathname: url.pathname, search: url.search, hash: url.hash };
  win.document = Object.assign(new EventTarget(), { title, referrer, visibilityState: "visible" });
  win.navigator = { userAgent: "FakeBrowser/1.0", language: "de-CH" };
  if (sendBeacon) win.navigator.sendBeacon = sendBeacon;
  win.hide = () => {
    win.document.visibilityState = "hidden";
    win.document.dispatchEvent(new Event("visibilitychange"));
  };
  return win;
}

// A WebSocket double: the test plays the server.
export function fakeWebSocketClass() {
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      FakeWebSocket.instances.push(this);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("not open");
      this.sent.push(JSON.parse(data));
    }
    close(code = 1000, reason = "") {
      if (this.readyState === 3) return;
      this.closedWith = { code, reason };
      this.readyState = 3;
      this.onclose && this.onclose({ code, reason });
    }
    // server side
    serverOpen() {
      this.readyState = 1;
      this.onopen && this.onopen({});
    }
    serverSend(obj) {
      this.onmessage && this.onmessage({ data: JSON.stringify(obj) });
    }
    serverClose(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose && this.onclose({ code, reason });
    }
  }
  FakeWebSocket.instances = [];
  FakeWebSocket.last = () => FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  return FakeWebSocket;
}

// A browser-style instance wired to fakes.
export function setup(options = {}) {
  const clock = options.clock || new FakeClock();
  const fetch = options.fetch || fakeFetch();
  const storage = options.storage || memoryStorage();
  const logger = options.logger || recordingLogger();
  const r = sdk.createInstance();
  const init = Object.assign(
    {
      host: "https://engage.example.com/",
      writeKey: "pk_test_1",
      timers: clock,
      fetch,
      storage,
      logger,
      window: null,
      random: () => 0.5,
    },
    options.init || {}
  );
  r.init(init);
  return { r, clock, fetch, storage, logger };
}

export const isMain = import.meta.url === pathToFileURL(process.argv[1] || "").href;

if (isMain) {
  test("FakeClock fires timers in due order and only when their time has come", async () => {
    const clock = new FakeClock();
    const fired = [];
    clock.setTimeout(() => fired.push("b"), 200);
    clock.setTimeout(() => fired.push("a"), 100);
    const c = clock.setTimeout(() => fired.push("c"), 150);
    clock.clearTimeout(c);
    await clock.tick(150);
    assert.deepEqual(fired, ["a"]);
    assert.equal(clock.now(), START + 150);
    await clock.tick(50);
    assert.deepEqual(fired, ["a", "b"]);
    assert.equal(clock.pending().length, 0);
  });

  test("fakeFetch follows its script and records the request", async () => {
    const f = fakeFetch().respond({ status: 503, headers: { "retry-after": "3" } }, "network");
    const r1 = await f("https://x/a", { method: "POST", body: '{"a":1}', headers: { Authorization: "Basic eA==" } });
    assert.equal(r1.status, 503);
    assert.equal(r1.headers.get("retry-after"), "3");
    await assert.rejects(f("https://x/b"), TypeError);
    const r3 = await f("https://x/c");
    assert.deepEqual(await r3.json(), { success: true });
    assert.deepEqual(f.calls[0].body, { a: 1 });
    assert.equal(f.calls[0].headers.get("authorization"), "Basic eA==");
  });
}

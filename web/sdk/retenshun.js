/*! retenshun.js — browser SDK, <retenshun-inbox> widget and Node client for retenshun.
 *
 * One file, three ways to load it:
 *   - classic script:  <script src="https://engage.example.com/sdk/retenshun.js"></script>
 *                      defines window.retenshun
 *   - ES module:       import retenshun, { createClient } from "https://engage.example.com/sdk/retenshun.mjs";
 *                      (retenshun.mjs re-exports this file; `import ".../retenshun.js"` on its
 *                      own also works and defines globalThis.retenshun)
 *   - Node 18+:        const retenshun = require("./retenshun.js")  or  import { createClient } from ...
 *
 * The body is a UMD-style wrapper with no import/export syntax, so it parses both as a
 * classic script and as a module. No dependencies, no build step.
 */
(function (root, factory) {
  "use strict";
  var existing = root && root.retenshun;
  // Loaded twice (script tag + module import)? Keep the first instance: one queue, one socket.
  var api = existing && existing.__retenshun === true ? existing : factory(root);
  if (typeof module === "object" && module !== null && typeof module.exports === "object") {
    module.exports = api;
    // Spelled out so Node's ESM loader can see the named exports of this CommonJS file.
    module.exports.createClient = api.createClient;
    module.exports.createInstance = api.createInstance;
    module.exports.RetenshunError = api.RetenshunError;
    module.exports.init = api.init;
    module.exports.track = api.track;
    module.exports.identify = api.identify;
    module.exports.page = api.page;
    module.exports.alias = api.alias;
    module.exports.group = api.group;
    module.exports.reset = api.reset;
    module.exports.flush = api.flush;
    module.exports.setUserToken = api.setUserToken;
    module.exports.inbox = api.inbox;
    module.exports.push = api.push;
    module.exports.version = api.version;
  } else if (root) {
    root.retenshun = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : typeof self !== "undefined" ? self : this, function (root) {
  "use strict";

  const VERSION = "0.1.0";
  const LIBRARY_NAME = "retenshun.js";
  const PREFIX = "retenshun:";
  const MAX_EVENT_BYTES = 32 * 1024; // server limit per event
  const MAX_BATCH_BYTES = 450 * 1000; // server limit is 500 KB per request; keep a margin
  const MAX_KEEPALIVE_BYTES = 60 * 1000; // browsers allow 64 KiB of keepalive/beacon bodies in flight
  const MAX_BATCH_EVENTS = 100;
  const RETRY_BASE_MS = 1000;
  const RETRY_MAX_MS = 5 * 60 * 1000;
  const RETRY_AFTER_MAX_MS = 60 * 60 * 1000;
  const PING_INTERVAL_MS = 25 * 1000;
  const RECONNECT_BASE_MS = 1000;
  const RECONNECT_MAX_MS = 30 * 1000;
  const CATCH_UP_LIMIT = 50;
  const SEEN_CAP = 2000;

  // ------------------------------------------------------------------ helpers

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

  function trimHost(host) {
    return String(host).trim().replace(/\/+$/, "");
  }

  function toISO(t) {
    if (t instanceof Date) return t.toISOString();
    if (typeof t === "number") return new Date(t).toISOString();
    if (typeof t === "string" && t) return t;
    return new Date().toISOString();
  }

  function utf8Length(s) {
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        n += 4;
        i++;
      } else n += 3;
    }
    return n;
  }

  function utf8Bytes(s) {
    const out = [];
    for (let i = 0; i < s.length; i++) {
      let c = s.codePointAt(i);
      if (c > 0xffff) i++;
      if (c < 0x80) out.push(c);
      else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return out;
  }

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  function base64(str) {
    const b = utf8Bytes(str);
    let out = "";
    for (let i = 0; i < b.length; i += 3) {
      const n = (b[i] << 16) | ((b[i + 1] || 0) << 8) | (b[i + 2] || 0);
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      out += i + 1 < b.length ? B64[(n >> 6) & 63] : "=";
      out += i + 2 < b.length ? B64[n & 63] : "=";
    }
    return out;
  }

  function base64UrlToBytes(s) {
    const clean = String(s).replace(/-/g, "+").replace(/_/g, "/").replace(/[=\s]/g, "");
    const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
    let bits = 0;
    let acc = 0;
    let j = 0;
    for (let i = 0; i < clean.length; i++) {
      const v = B64.indexOf(clean[i]);
      if (v < 0) throw new TypeError("invalid base64url string");
      acc = (acc << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[j++] = (acc >> bits) & 255;
      }
    }
    return out.subarray(0, j);
  }

  function cryptoObject() {
    if (root.crypto) return root.crypto;
    try {
      // Node 18 without the global webcrypto.
      if (typeof require === "function") return require("crypto").webcrypto || null;
    } catch (_) {
      /* not Node */
    }
    return null;
  }

  function uuid() {
    const c = cryptoObject();
    if (c && typeof c.randomUUID === "function") {
      try {
        return c.randomUUID();
      } catch (_) {
        /* insecure context: fall through */
      }
    }
    const b = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
    else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => (x + 0x100).toString(16).slice(1)).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function queryString(params) {
    const parts = [];
    for (const k of Object.keys(params || {})) {
      const v = params[k];
      if (v === undefined || v === null || v === "") continue;
      parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(String(v)));
    }
    return parts.length ? "?" + parts.join("&") : "";
  }

  function backoffDelay(attempt, base, max, random) {
    // Exponential backoff with "equal jitter": somewhere in [exp/2, exp].
    const exp = Math.min(max, base * Math.pow(2, Math.max(0, attempt - 1)));
    return Math.round(exp / 2 + (random() * exp) / 2);
  }

  function parseRetryAfter(value, now) {
    if (value === null || value === undefined || value === "") return null;
    const s = String(value).trim();
    if (/^\d+(\.\d+)?$/.test(s)) return Math.round(parseFloat(s) * 1000);
    const at = Date.parse(s);
    return isNaN(at) ? null : Math.max(0, at - now);
  }

  function header(res, name) {
    try {
      return res && res.headers && typeof res.headers.get === "function" ? res.headers.get(name) : null;
    } catch (_) {
      return null;
    }
  }

  function wsBase(host) {
    return host.replace(/^http(s?):\/\//i, (_, s) => "ws" + s + "://");
  }

  function relativeTime(iso, now) {
    const t = typeof iso === "number" ? iso : Date.parse(iso);
    if (isNaN(t)) return "";
    const s = Math.max(0, Math.floor((now - t) / 1000));
    if (s < 60) return "just now";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m ago";
    const h = Math.floor(m / 60);
    if (h < 24) return h + "h ago";
    const d = Math.floor(h / 24);
    if (d < 7) return d + "d ago";
    try {
      return new Date(t).toLocaleDateString(undefined, { month: "short", day: "numeric", year: d > 300 ? "numeric" : undefined });
    } catch (_) {
      return new Date(t).toISOString().slice(0, 10);
    }
  }

  function safeUrl(url, base) {
    if (typeof url !== "string" || !url.trim()) return null;
    try {
      const u = base ? new URL(url, base) : new URL(url);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  // ------------------------------------------------------------------ errors

  class RetenshunError extends Error {
    constructor(message, opts) {
      super(message);
      const o = opts || {};
      this.name = "RetenshunError";
      this.status = typeof o.status === "number" ? o.status : 0;
      this.code = o.code || "error";
      if (o.body !== undefined) this.body = o.body;
      if (o.retryAfter !== undefined && o.retryAfter !== null) this.retryAfter = o.retryAfter;
      if (o.cause !== undefined) this.cause = o.cause;
    }
  }

  async function readBody(res) {
    let text = "";
    try {
      text = await res.text();
    } catch (_) {
      return null;
    }
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  }

  async function errorFromResponse(res, now) {
    const body = await readBody(res);
    const e = isObject(body) && isObject(body.error) ? body.error : {};
    const message =
      typeof e.message === "string" && e.message
        ? e.message
        : "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
    return new RetenshunError(message, {
      status: res.status,
      code: typeof e.code === "string" && e.code ? e.code : "http_" + res.status,
      body,
      retryAfter: parseRetryAfter(header(res, "retry-after"), now),
    });
  }

  function networkError(err) {
    const aborted = err && err.name === "AbortError";
    return new RetenshunError(aborted ? "Request timed out" : "Network error: " + ((err && err.message) || String(err)), {
      status: 0,
      code: aborted ? "timeout" : "network_error",
      cause: err,
    });
  }

  // ------------------------------------------------------------------ environment

  // Everything that touches the outside world goes through here, so tests (and unusual
  // runtimes) can inject fetch, WebSocket, timers, a clock, randomness and a logger.
  function makeEnv(o) {
    const opts = o || {};
    const t = opts.timers || null;
    const injectedFetch = typeof opts.fetch === "function" ? opts.fetch : null;
    return {
      setTimeout: t && t.setTimeout ? (fn, ms) => t.setTimeout(fn, ms) : (fn, ms) => root.setTimeout(fn, ms),
      clearTimeout: t && t.clearTimeout ? (id) => t.clearTimeout(id) : (id) => root.clearTimeout(id),
      now: typeof opts.now === "function" ? opts.now : t && typeof t.now === "function" ? () => t.now() : () => Date.now(),
      random: typeof opts.random === "function" ? opts.random : Math.random,
      fetchInjected: !!injectedFetch,
      fetch:
        injectedFetch ||
        ((input, init) =>
          typeof root.fetch === "function"
            ? root.fetch(input, init)
            : Promise.reject(new TypeError("fetch is not available here; pass options.fetch"))),
      WebSocket: opts.WebSocket || root.WebSocket || null,
      logger: opts.logger || root.console || null,
    };
  }

  function makeWarner(env) {
    const seen = new Set();
    return function warnOnce(key) {
      if (seen.has(key)) return;
      seen.add(key);
      const logger = env().logger;
      if (logger && typeof logger.warn === "function") logger.warn.apply(logger, Array.prototype.slice.call(arguments, 1));
    };
  }

  // ------------------------------------------------------------------ storage and queue

  function memoryStorage() {
    const m = new Map();
    return {
      getItem: (k) => (m.has(k) ? m.get(k) : null),
      setItem: (k, v) => void m.set(k, String(v)),
      removeItem: (k) => void m.delete(k),
    };
  }

  function defaultStorage() {
    try {
      const ls = root.localStorage;
      if (!ls) return null;
      ls.setItem(PREFIX + "probe", "1");
      ls.removeItem(PREFIX + "probe");
      return ls;
    } catch (_) {
      return null; // disabled, sandboxed iframe, private mode quota 0...
    }
  }

  // Prefixed keys; a write that fails (quota) keeps the value in memory instead.
  class Store {
    constructor(backend) {
      this._b = backend || memoryStorage();
      this._mem = new Map();
    }
    get(key) {
      const k = PREFIX + key;
      if (this._mem.has(k)) return this._mem.get(k);
      try {
        return this._b.getItem(k);
      } catch (_) {
        return null;
      }
    }
    set(key, value) {
      const k = PREFIX + key;
      try {
        this._b.setItem(k, value);
        this._mem.delete(k);
      } catch (_) {
        this._mem.set(k, value);
      }
    }
    remove(key) {
      const k = PREFIX + key;
      this._mem.delete(k);
      try {
        this._b.removeItem(k);
      } catch (_) {
        /* ignore */
      }
    }
  }

  // The persisted queue is the source of truth: it is re-read before every change so two
  // tabs appending to the same localStorage do not overwrite each other's events.
  class EventQueue {
    constructor(store, max) {
      this._store = store;
      this._max = max;
      this._raw = undefined;
      this._items = [];
    }
    items() {
      const raw = this._store.get("queue");
      if (raw !== this._raw) {
        this._raw = raw;
        this._items = parseQueue(raw);
      }
      return this._items;
    }
    _write(items) {
      const raw = JSON.stringify(items);
      this._store.set("queue", raw);
      this._raw = raw;
      this._items = items;
    }
    push(ev) {
      const items = this.items().slice();
      items.push(ev);
      let dropped = 0;
      if (items.length > this._max) {
        dropped = items.length - this._max;
        items.splice(0, dropped);
      }
      this._write(items);
      return { length: items.length, dropped };
    }
    remove(ids) {
      const items = this.items();
      const next = items.filter((e) => !ids.has(e.messageId));
      if (next.length !== items.length) this._write(next);
    }
  }

  function parseQueue(raw) {
    if (!raw) return [];
    try {
      const v = JSON.parse(raw);
      return Array.isArray(v) ? v.filter((e) => isObject(e) && typeof e.messageId === "string") : [];
    } catch (_) {
      return [];
    }
  }

  function takeBatch(items, maxBytes, maxCount) {
    const batch = [];
    let bytes = 200; // envelope: {"batch":[...],"sentAt":...,"writeKey":...}
    for (const ev of items) {
      if (batch.length >= maxCount) break;
      const size = utf8Length(JSON.stringify(ev)) + 1;
      if (batch.length && bytes + size > maxBytes) break;
      batch.push(ev);
      bytes += size;
    }
    return batch;
  }

  // ------------------------------------------------------------------ browser client

  const PUBLIC_METHODS = ["init", "track", "identify", "page", "alias", "group", "reset", "flush", "setUserToken", "user", "shutdown"];

  class Retenshun {
    constructor() {
      this._ready = false;
      this._pre = [];
      this._env = makeEnv();
      this._host = null;
      this._writeKey = null;
      this._userId = null;
      this._anonymousId = null;
      this._token = null;
      this._store = null;
      this._queue = null;
      this._win = null;
      this._listeners = [];
      this._flushTimer = null;
      this._retryTimer = null;
      this._draining = null;
      this._attempt = 0;
      this._hideInFlight = new Set();
      this._maxBatchEvents = MAX_BATCH_EVENTS;
      this._replayTime = null;
      this._warnOnce = makeWarner(() => this._env);
      this.version = VERSION;
      this.flushAt = 20;
      this.flushInterval = 1000;
      this.inbox = new Inbox({
        host: () => this._host,
        token: () => this._token,
        env: () => this._env,
      });
      this.push = new Push(this);
      for (const m of PUBLIC_METHODS) this[m] = this[m].bind(this);
    }

    init(options) {
      const o = options || {};
      if (!o.host) throw new TypeError('retenshun.init: "host" is required, e.g. "https://engage.example.com"');
      if (!o.writeKey) throw new TypeError('retenshun.init: "writeKey" (a publishable pk_... key) is required');
      if (this._ready) {
        this._warnOnce("reinit", "retenshun.init was called again; reconfiguring");
        this.shutdown();
      }
      this._epoch = (this._epoch || 0) + 1;
      this._env = makeEnv(o);
      this._host = trimHost(o.host);
      this._writeKey = String(o.writeKey);
      this._win = "window" in o ? o.window : typeof root.window !== "undefined" ? root.window : null;
      this._store = new Store(o.storage === undefined ? defaultStorage() : o.storage);
      this._maxQueue = Math.max(1, o.maxQueueSize || 1000);
      this._queue = new EventQueue(this._store, this._maxQueue);
      this.flushAt = Math.max(1, o.flushAt || 20);
      this.flushInterval = o.flushInterval !== undefined ? Math.max(0, o.flushInterval) : 1000;
      this._retryBase = o.retryBaseMs || RETRY_BASE_MS;
      this._maxBatchEvents = MAX_BATCH_EVENTS;

      this._anonymousId = this._store.get("anonymousId");
      if (!this._anonymousId) {
        this._anonymousId = uuid();
        this._store.set("anonymousId", this._anonymousId);
      }
      if (o.userId !== undefined && o.userId !== null && o.userId !== "") this._setUserId(String(o.userId));
      else this._userId = this._store.get("userId") || null;

      this._token = o.userToken || null;
      this._inboxAuto = o.inbox !== false;
      this._ready = true;
      this._attachListeners();

      const pre = this._pre;
      this._pre = [];
      for (const [name, args, at] of pre) {
        this._replayTime = at;
        try {
          this[name].apply(this, args);
        } finally {
          this._replayTime = null;
        }
      }

      if (this._token && this._inboxAuto && this._env.WebSocket) this.inbox.connect();
      else if (this._token && this.inbox._active) this.inbox._restart();
      if (this._queue.items().length) this._drain(); // events left over from the last page
      return this;
    }

    // Identity -------------------------------------------------------------

    user() {
      return { userId: this._userId, anonymousId: this._anonymousId };
    }

    _setUserId(id) {
      this._userId = id;
      this._store.set("userId", id);
    }

    setUserToken(token) {
      if (this._buffer("setUserToken", arguments)) return;
      this._token = token || null;
      if (!this._token) this.inbox.disconnect();
      else if (this.inbox._active || this.inbox.state === "unauthorized") this.inbox._restart();
      else if (this._inboxAuto && this._env.WebSocket) this.inbox.connect();
    }

    reset() {
      if (this._buffer("reset", arguments)) return;
      this._userId = null;
      this._store.remove("userId");
      this._anonymousId = uuid();
      this._store.set("anonymousId", this._anonymousId);
      this._token = null;
      this.inbox._reset();
    }

    // Events ---------------------------------------------------------------

    track(event, properties, options) {
      if (this._buffer("track", arguments)) return null;
      if (typeof event !== "string" || !event) {
        this._warnOnce("track_name", "retenshun.track: the event name must be a non-empty string");
        return null;
      }
      const props = isObject(properties) ? Object.assign({}, properties) : {};
      const fields = { event, properties: props };
      // Server-side style: retenshun.track("x", {user_id: "u1"}) is about user u1.
      if (props.user_id !== undefined && props.user_id !== null && props.user_id !== "") fields.userId = String(props.user_id);
      return this._enqueue("track", fields, options);
    }

    identify(userId, traits, options) {
      if (this._buffer("identify", arguments)) return null;
      if (isObject(userId)) {
        options = traits;
        traits = userId;
        userId = null;
      }
      if (userId !== undefined && userId !== null && userId !== "") this._setUserId(String(userId));
      // Every event carries anonymousId too, so the server merges the anonymous history.
      return this._enqueue("identify", { traits: isObject(traits) ? Object.assign({}, traits) : {} }, options);
    }

    page(name, properties, options) {
      if (this._buffer("page", arguments)) return null;
      if (isObject(name)) {
        options = properties;
        properties = name;
        name = undefined;
      }
      const props = Object.assign(this._pageContext() || {}, isObject(properties) ? properties : {});
      const fields = { properties: props };
      if (typeof name === "string" && name) {
        fields.name = name;
        if (props.name === undefined) props.name = name;
      }
      return this._enqueue("page", fields, options);
    }

    alias(userId, previousId, options) {
      if (this._buffer("alias", arguments)) return null;
      if (userId === undefined || userId === null || userId === "") {
        this._warnOnce("alias_id", "retenshun.alias: a userId is required");
        return null;
      }
      const prev =
        previousId !== undefined && previousId !== null && previousId !== ""
          ? String(previousId)
          : this._userId || this._anonymousId;
      this._setUserId(String(userId));
      return this._enqueue("alias", { userId: String(userId), previousId: prev }, options);
    }

    group(groupId, traits, options) {
      if (this._buffer("group", arguments)) return null;
      if (groupId === undefined || groupId === null || groupId === "") {
        this._warnOnce("group_id", "retenshun.group: a groupId is required");
        return null;
      }
      return this._enqueue("group", { groupId: String(groupId), traits: isObject(traits) ? Object.assign({}, traits) : {} }, options);
    }

    _buffer(name, args) {
      if (this._ready) return false;
      if (this._pre.length < 100) this._pre.push([name, Array.prototype.slice.call(args), Date.now()]);
      return true;
    }

    _pageContext() {
      const w = this._win;
      if (!w || !w.location) return null;
      try {
        const loc = w.location;
        const doc = w.document || {};
        const href = String(loc.href || "");
        return {
          path: loc.pathname || "",
          referrer: doc.referrer || "",
          search: loc.search || "",
          title: doc.title || "",
          url: href.split("#")[0],
        };
      } catch (_) {
        return null;
      }
    }

    _context() {
      const ctx = { library: { name: LIBRARY_NAME, version: VERSION } };
      const page = this._pageContext();
      if (page) ctx.page = page;
      const nav = (this._win && this._win.navigator) || root.navigator;
      if (nav) {
        if (nav.userAgent) ctx.userAgent = nav.userAgent;
        if (nav.language) ctx.locale = nav.language;
      }
      try {
        const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
        if (tz) ctx.timezone = tz;
      } catch (_) {
        /* no Intl */
      }
      return ctx;
    }

    _enqueue(type, fields, options) {
      const o = isObject(options) ? options : {};
      const ev = Object.assign({ type }, fields);
      if (ev.userId === undefined || ev.userId === null) {
        if (this._userId) ev.userId = this._userId;
        else delete ev.userId;
      }
      ev.anonymousId = this._anonymousId;
      ev.messageId = typeof o.messageId === "string" && o.messageId ? o.messageId : uuid();
      ev.timestamp = toISO(o.timestamp !== undefined ? o.timestamp : this._replayTime !== null ? this._replayTime : this._env.now());
      ev.context = Object.assign(this._context(), isObject(o.context) ? o.context : null);
      if (isObject(o.integrations)) ev.integrations = o.integrations;
      let json;
      try {
        json = JSON.stringify(ev);
      } catch (err) {
        this._warnOnce("serialize", "retenshun: dropped a " + type + " event that cannot be turned into JSON:", err);
        return null;
      }
      if (utf8Length(json) > MAX_EVENT_BYTES) {
        this._warnOnce("event_too_large", "retenshun: dropped a " + type + " event larger than 32 KB (the server limit)");
        return null;
      }
      const queued = JSON.parse(json);
      const r = this._queue.push(queued);
      if (r.dropped) {
        this._warnOnce("queue_full", "retenshun: the event queue is full (" + this._maxQueue + " events); dropping the oldest");
      }
      if (r.length >= this.flushAt) {
        if (this._retryTimer === null) {
          this._clearFlushTimer();
          this._drain();
        }
      } else this._armFlushTimer();
      return JSON.parse(json);
    }

    // Delivery -------------------------------------------------------------

    flush() {
      if (!this._ready) return Promise.resolve();
      this._clearFlushTimer();
      if (this._retryTimer !== null) {
        this._env.clearTimeout(this._retryTimer);
        this._retryTimer = null;
      }
      return this._drain();
    }

    _clearFlushTimer() {
      if (this._flushTimer !== null) {
        this._env.clearTimeout(this._flushTimer);
        this._flushTimer = null;
      }
    }

    _armFlushTimer() {
      if (this._flushTimer !== null || this._retryTimer !== null || this._draining) return;
      this._flushTimer = this._env.setTimeout(() => {
        this._flushTimer = null;
        this._drain();
      }, this.flushInterval);
    }

    // One drain loop at a time; it sends batch after batch until the queue is empty or a
    // retry has been scheduled.
    _drain() {
      if (this._draining) return this._draining;
      let done;
      const p = new Promise((resolve) => (done = resolve));
      const finish = () => {
        if (this._draining === p) this._draining = null;
        done();
      };
      this._draining = p;
      this._loop(finish).catch((err) => {
        this._warnOnce("loop", "retenshun: unexpected error while sending events:", err);
        finish();
      });
      return p;
    }

    async _loop(finish) {
      const epoch = this._epoch;
      for (;;) {
        if (!this._ready || epoch !== this._epoch) return finish();
        const items = this._queue.items().filter((e) => !this._hideInFlight.has(e.messageId));
        if (!items.length) {
          this._attempt = 0;
          return finish();
        }
        const batch = takeBatch(items, MAX_BATCH_BYTES, this._maxBatchEvents);
        const outcome = await this._send(batch, false);
        if (!this._ready || epoch !== this._epoch) return finish(); // shut down or re-initialised meanwhile
        if (outcome.kind === "ok" || outcome.kind === "drop") {
          this._queue.remove(new Set(batch.map((e) => e.messageId)));
          if (outcome.kind === "ok") this._attempt = 0;
          continue;
        }
        if (outcome.kind === "split") {
          this._maxBatchEvents = Math.max(1, Math.floor(batch.length / 2));
          continue;
        }
        this._scheduleRetry(outcome.retryAfterMs);
        return finish();
      }
    }

    _scheduleRetry(retryAfterMs) {
      if (this._retryTimer !== null) return;
      this._attempt++;
      const delay =
        retryAfterMs !== null && retryAfterMs !== undefined
          ? Math.min(retryAfterMs, RETRY_AFTER_MAX_MS)
          : backoffDelay(this._attempt, this._retryBase, RETRY_MAX_MS, this._env.random);
      this._clearFlushTimer();
      this._retryTimer = this._env.setTimeout(() => {
        this._retryTimer = null;
        this._drain();
      }, delay);
    }

    // -> {kind: "ok" | "drop" | "split" | "retry" | "unknown", retryAfterMs?}
    async _send(batch, keepalive) {
      const env = this._env;
      const url = this._host + "/v1/batch";
      const body = JSON.stringify({ batch, sentAt: toISO(env.now()), writeKey: this._writeKey });
      if (keepalive && !this._keepaliveFetchUsable() && this._beacon(url, body)) return { kind: "unknown" };
      let res;
      try {
        res = await env.fetch(url, {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: "Basic " + base64(this._writeKey + ":") },
          body,
          keepalive: !!keepalive,
          credentials: "omit",
        });
      } catch (err) {
        if (keepalive && this._beacon(url, body)) return { kind: "unknown" };
        return { kind: "retry", retryAfterMs: null };
      }
      const status = res.status;
      if (status >= 200 && status < 300) return { kind: "ok" };
      if (status === 408 || status === 429 || status >= 500) {
        return { kind: "retry", retryAfterMs: parseRetryAfter(header(res, "retry-after"), env.now()) };
      }
      if (status === 413 && batch.length > 1) return { kind: "split" };
      const err = await errorFromResponse(res, env.now());
      this._warnOnce(
        "drop_" + status,
        "retenshun: the server rejected " + batch.length + " event(s) with HTTP " + status + " (" + err.code + "): " + err.message + ". They were dropped."
      );
      return { kind: "drop" };
    }

    _keepaliveFetchUsable() {
      if (this._env.fetchInjected) return true;
      if (typeof root.fetch !== "function") return false;
      const R = root.Request;
      return !!(R && R.prototype && "keepalive" in R.prototype);
    }

    // Beacons cannot carry headers: the writeKey travels in the body (the contract allows it),
    // as text/plain so no CORS preflight is needed.
    _beacon(url, body) {
      const nav = (this._win && this._win.navigator) || root.navigator;
      if (!nav || typeof nav.sendBeacon !== "function") return false;
      try {
        return !!nav.sendBeacon(url, body);
      } catch (_) {
        return false;
      }
    }

    // Called on pagehide / visibilitychange=hidden: must start the request synchronously.
    _flushOnHide() {
      if (!this._ready) return;
      const items = this._queue.items().filter((e) => !this._hideInFlight.has(e.messageId));
      if (!items.length) return;
      this._clearFlushTimer();
      const batch = takeBatch(items, MAX_KEEPALIVE_BYTES, this._maxBatchEvents);
      const ids = batch.map((e) => e.messageId);
      for (const id of ids) this._hideInFlight.add(id);
      this._send(batch, true).then(
        (outcome) => {
          for (const id of ids) this._hideInFlight.delete(id);
          if (!this._ready) return;
          if (outcome.kind === "ok" || outcome.kind === "drop") this._queue.remove(new Set(ids));
          else if (outcome.kind === "retry") this._scheduleRetry(outcome.retryAfterMs);
          // "unknown" (beacon): the events stay queued; the server dedupes by messageId.
        },
        () => {
          for (const id of ids) this._hideInFlight.delete(id);
        }
      );
    }

    _attachListeners() {
      const w = this._win;
      if (!w || typeof w.addEventListener !== "function") return;
      const doc = w.document;
      const on = (target, type, fn) => {
        target.addEventListener(type, fn);
        this._listeners.push([target, type, fn]);
      };
      if (doc && typeof doc.addEventListener === "function") {
        on(doc, "visibilitychange", () => {
          if (doc.visibilityState === "hidden") this._flushOnHide();
        });
      }
      on(w, "pagehide", () => this._flushOnHide());
      on(w, "online", () => {
        if (this._retryTimer !== null) this.flush();
        this.inbox._nudge();
      });
    }

    shutdown() {
      for (const [target, type, fn] of this._listeners) {
        try {
          target.removeEventListener(type, fn);
        } catch (_) {
          /* ignore */
        }
      }
      this._listeners = [];
      this._clearFlushTimer();
      if (this._retryTimer !== null) {
        this._env.clearTimeout(this._retryTimer);
        this._retryTimer = null;
      }
      this.inbox.disconnect();
      this._ready = false;
      this._draining = null;
    }
  }

  // ------------------------------------------------------------------ inbox

  class Inbox {
    // source: {host(), token(), env()} — the token may be a string or a function returning one
    // (or a promise of one), called on every connect and request.
    constructor(source) {
      this._src = source;
      this._ws = null;
      this._gen = 0;
      this._state = "idle";
      this._active = false;
      this._unread = 0;
      this._hadCount = false;
      this._countVersion = 0;
      this._seen = new Set();
      this._known = new Map();
      this._helloCount = 0;
      this._baselined = false;
      this._attempt = 0;
      this._reconnectTimer = null;
      this._pingTimer = null;
      this._awaitingPong = false;
      this._cb = { message: new Set(), unread: new Set(), error: new Set(), state: new Set() };
    }

    get unreadCount() {
      return this._unread;
    }
    get state() {
      return this._state;
    }

    onMessage(cb) {
      return this._on("message", cb);
    }
    onUnreadCount(cb) {
      return this._on("unread", cb);
    }
    onError(cb) {
      return this._on("error", cb);
    }
    onStateChange(cb) {
      return this._on("state", cb);
    }

    _on(kind, cb) {
      if (typeof cb !== "function") throw new TypeError("retenshun.inbox: the callback must be a function");
      const entry = (v) => cb(v); // a wrapper, so registering the same function twice works
      this._cb[kind].add(entry);
      return () => {
        this._cb[kind].delete(entry);
      };
    }

    _emit(kind, value) {
      for (const cb of Array.from(this._cb[kind])) {
        try {
          cb(value);
        } catch (err) {
          const logger = this._src.env().logger;
          if (logger && logger.error) logger.error("retenshun.inbox: a listener threw:", err);
        }
      }
    }

    _emitError(err) {
      if (this._cb.error.size) this._emit("error", err);
      else {
        const logger = this._src.env().logger;
        if (logger && logger.warn) logger.warn("retenshun.inbox:", err && err.message ? err.message : err);
      }
    }

    _setState(s) {
      if (s === this._state) return;
      this._state = s;
      this._emit("state", s);
    }

    // Counts: a server frame is the truth; a REST response or an optimistic update only
    // applies if no server frame arrived since the request started (no double decrement).
    _serverCount(n) {
      this._countVersion++;
      this._applyCount(n);
    }
    _guardedCount(n, version) {
      if (version === this._countVersion) this._applyCount(n);
    }
    _applyCount(n) {
      const v = Math.max(0, Math.floor(Number(n) || 0));
      if (this._hadCount && v === this._unread) return;
      this._hadCount = true;
      this._unread = v;
      this._emit("unread", v);
    }

    _remember(m) {
      const id = String(m.id);
      this._seen.add(id);
      this._known.set(id, m);
      if (this._seen.size > SEEN_CAP) this._seen.delete(this._seen.values().next().value);
      if (this._known.size > SEEN_CAP) this._known.delete(this._known.keys().next().value);
    }

    _deliver(m) {
      const fresh = !this._seen.has(String(m.id));
      this._remember(m);
      if (fresh) this._emit("message", m);
    }

    // Connection -----------------------------------------------------------

    connect() {
      this._active = true;
      if (this._ws || this._reconnectTimer !== null || this._state === "connecting") return this;
      this._open();
      return this;
    }

    disconnect() {
      this._active = false;
      this._clearReconnect();
      this._dropSocket(1000, "client disconnect");
      if (this._state !== "unauthorized") this._setState("closed");
    }

    _restart() {
      this._active = true;
      this._clearReconnect();
      this._dropSocket(1000, "reconnecting with a new token");
      this._attempt = 0;
      this._open();
    }

    _nudge() {
      if (this._active && this._reconnectTimer !== null) {
        this._clearReconnect();
        this._open();
      }
    }

    _reset() {
      this.disconnect();
      this._seen.clear();
      this._known.clear();
      this._helloCount = 0;
      this._baselined = false;
      this._state = "idle";
      this._countVersion++;
      this._applyCount(0);
    }

    _clearReconnect() {
      if (this._reconnectTimer !== null) {
        this._src.env().clearTimeout(this._reconnectTimer);
        this._reconnectTimer = null;
      }
    }

    _clearPing() {
      if (this._pingTimer !== null) {
        this._src.env().clearTimeout(this._pingTimer);
        this._pingTimer = null;
      }
    }

    _dropSocket(code, reason) {
      this._gen++; // ignore anything the old socket still says
      this._clearPing();
      const ws = this._ws;
      this._ws = null;
      if (ws) {
        try {
          ws.close(code, reason);
        } catch (_) {
          /* already closed */
        }
      }
    }

    _open() {
      if (!this._active || this._ws) return;
      const env = this._src.env();
      const host = this._src.host();
      const tok = this._src.token();
      if (!host || !tok) {
        this._setState("idle"); // connects once init / setUserToken provide both
        return;
      }
      const WS = env.WebSocket;
      if (typeof WS !== "function") {
        this._setState("closed");
        this._emitError(new RetenshunError("WebSocket is not available here; pass options.WebSocket", { code: "websocket_unavailable" }));
        return;
      }
      this._setState("connecting");
      if (typeof tok === "function") {
        const gen = ++this._gen;
        Promise.resolve()
          .then(tok)
          .then((t) => {
            if (gen !== this._gen || !this._active) return;
            if (!t) throw new RetenshunError("The userToken function returned no token", { code: "no_user_token" });
            this._openWith(WS, host, String(t));
          })
          .catch((err) => {
            if (gen !== this._gen) return;
            this._emitError(err);
            this._scheduleReconnect();
          });
        return;
      }
      this._openWith(WS, host, String(tok));
    }

    _openWith(WS, host, token) {
      const url = wsBase(host) + "/v1/inbox/ws?token=" + encodeURIComponent(token);
      let ws;
      try {
        ws = new WS(url);
      } catch (err) {
        this._emitError(networkError(err));
        this._scheduleReconnect();
        return;
      }
      const gen = ++this._gen;
      this._ws = ws;
      this._awaitingPong = false;
      ws.onopen = () => {
        if (gen !== this._gen) return;
        this._setState("open");
        this._armPing(gen);
      };
      ws.onmessage = (ev) => {
        if (gen !== this._gen) return;
        this._awaitingPong = false; // any frame proves the connection is alive
        this._frame(ev ? ev.data : null);
      };
      ws.onerror = () => {
        /* a close event follows */
      };
      ws.onclose = (ev) => {
        if (gen !== this._gen) return;
        this._onClose(ev && typeof ev.code === "number" ? ev.code : 1006);
      };
    }

    _onClose(code) {
      this._gen++;
      this._ws = null;
      this._clearPing();
      if (code === 4401) {
        this._active = false;
        this._clearReconnect();
        this._setState("unauthorized");
        this._emitError(
          new RetenshunError(
            "The inbox rejected the user token (WebSocket close 4401). Mint a fresh one on your backend (POST /v1/users/{id}/token) and call retenshun.setUserToken(token).",
            { status: 401, code: "invalid_token" }
          )
        );
        return;
      }
      if (!this._active) {
        this._setState("closed");
        return;
      }
      this._scheduleReconnect();
    }

    _scheduleReconnect() {
      if (!this._active || this._reconnectTimer !== null) return;
      const env = this._src.env();
      this._attempt++;
      const delay = backoffDelay(this._attempt, RECONNECT_BASE_MS, RECONNECT_MAX_MS, env.random);
      this._setState("reconnecting");
      this._reconnectTimer = env.setTimeout(() => {
        this._reconnectTimer = null;
        this._open();
      }, delay);
    }

    _armPing(gen) {
      const env = this._src.env();
      this._clearPing();
      this._pingTimer = env.setTimeout(() => {
        this._pingTimer = null;
        if (gen !== this._gen || !this._ws) return;
        if (this._awaitingPong) {
          // Nothing at all since the last ping: the connection is dead without a close.
          this._dropSocket(4000, "heartbeat timeout");
          this._scheduleReconnect();
          return;
        }
        this._awaitingPong = true;
        this._wsSend({ type: "ping" });
        this._armPing(gen);
      }, PING_INTERVAL_MS);
    }

    _wsSend(obj) {
      const ws = this._ws;
      if (!ws || ws.readyState !== 1) return false;
      try {
        ws.send(JSON.stringify(obj));
        return true;
      } catch (_) {
        return false;
      }
    }

    _frame(data) {
      let f;
      try {
        f = JSON.parse(typeof data === "string" ? data : String(data));
      } catch (_) {
        return;
      }
      if (!isObject(f)) return;
      if (f.type === "hello") {
        this._attempt = 0;
        const reconnect = this._helloCount > 0;
        this._helloCount++;
        if (f.unread_count !== undefined) this._serverCount(f.unread_count);
        // First connection: learn what exists (no events). After a reconnect: emit what
        // arrived while we were away and has not been seen.
        this._sync(reconnect && this._baselined);
      } else if (f.type === "message") {
        if (isObject(f.message) && f.message.id !== undefined && f.message.id !== null) this._deliver(f.message);
      } else if (f.type === "unread_count") {
        if (f.count !== undefined) this._serverCount(f.count);
      }
    }

    async _sync(emitNew) {
      const version = this._countVersion;
      let r;
      try {
        r = await this._request("GET", "/v1/inbox", { query: { limit: CATCH_UP_LIMIT } });
      } catch (err) {
        this._emitError(err);
        return;
      }
      const msgs = isObject(r) && Array.isArray(r.messages) ? r.messages.filter((m) => isObject(m) && m.id !== undefined && m.id !== null) : [];
      if (emitNew) {
        for (const m of msgs.slice().reverse()) this._deliver(m); // oldest first
      } else {
        for (const m of msgs) this._remember(m);
      }
      this._baselined = true;
      if (isObject(r) && typeof r.unread_count === "number") this._guardedCount(r.unread_count, version);
    }

    // REST -----------------------------------------------------------------

    async _token() {
      const t = this._src.token();
      const v = typeof t === "function" ? await t() : t;
      if (!v) {
        throw new RetenshunError("No user token: pass userToken to retenshun.init() or call retenshun.setUserToken()", {
          code: "no_user_token",
        });
      }
      return String(v);
    }

    async _request(method, path, opts) {
      const o = opts || {};
      const env = this._src.env();
      const host = this._src.host();
      if (!host) throw new RetenshunError("Call retenshun.init({host, ...}) first", { code: "not_initialized" });
      const token = await this._token();
      const init = {
        method,
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        credentials: "omit",
      };
      if (o.keepalive) init.keepalive = true;
      if (o.body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(o.body);
      }
      let res;
      try {
        res = await env.fetch(host + path + queryString(o.query), init);
      } catch (err) {
        throw networkError(err);
      }
      if (!res.ok) throw await errorFromResponse(res, env.now());
      return readBody(res);
    }

    async list(options) {
      const o = options || {};
      const version = this._countVersion;
      const r = await this._request("GET", "/v1/inbox", {
        query: { limit: o.limit, before: o.before, include_archived: o.includeArchived ? "true" : undefined },
      });
      if (isObject(r)) {
        if (Array.isArray(r.messages)) for (const m of r.messages) if (isObject(m) && m.id !== undefined && m.id !== null) this._remember(m);
        if (typeof r.unread_count === "number") this._guardedCount(r.unread_count, version);
      }
      return r;
    }

    async markRead(id) {
      const key = String(id);
      const version = this._countVersion;
      let r = null;
      try {
        r = await this._request("POST", "/v1/inbox/" + encodeURIComponent(key) + "/read", { keepalive: true });
      } catch (err) {
        // Offline REST but a live socket: the socket can carry the read too.
        if (!(err.code === "network_error" && this._wsSend({ type: "read", id }))) throw err;
      }
      const m = this._known.get(key);
      const wasUnread = !!(m && !m.read_at);
      if (m && !m.read_at) m.read_at = toISO(this._src.env().now());
      if (isObject(r) && typeof r.unread_count === "number") this._guardedCount(r.unread_count, version);
      else if (wasUnread) this._guardedCount(this._unread - 1, version);
      return r;
    }

    async markAllRead() {
      const version = this._countVersion;
      const r = await this._request("POST", "/v1/inbox/read-all", { keepalive: true });
      const now = toISO(this._src.env().now());
      for (const m of this._known.values()) if (!m.read_at) m.read_at = now;
      this._guardedCount(isObject(r) && typeof r.unread_count === "number" ? r.unread_count : 0, version);
      return r;
    }

    async archive(id) {
      const key = String(id);
      const version = this._countVersion;
      const r = await this._request("POST", "/v1/inbox/" + encodeURIComponent(key) + "/archive", { keepalive: true });
      const m = this._known.get(key);
      if (m && !m.archived_at) m.archived_at = toISO(this._src.env().now());
      if (isObject(r) && typeof r.unread_count === "number") this._guardedCount(r.unread_count, version);
      return r;
    }
  }

  // ------------------------------------------------------------------ web push

  function requestPermission(N) {
    try {
      return Promise.resolve(N.requestPermission());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  function sameKey(a, b) {
    if (!a) return false;
    const x = new Uint8Array(a instanceof ArrayBuffer ? a : a.buffer || a);
    if (x.length !== b.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== b[i]) return false;
    return true;
  }

  function waitActive(reg) {
    if (reg.active) return Promise.resolve(reg);
    const sw = reg.installing || reg.waiting;
    if (!sw) return Promise.resolve(reg);
    return new Promise((resolve, reject) => {
      const check = () => {
        if (sw.state === "activated") resolve(reg);
        else if (sw.state === "redundant") reject(new RetenshunError("The service worker failed to install", { code: "service_worker_failed" }));
      };
      sw.addEventListener("statechange", check);
      check();
    });
  }

  function withHostParam(url, host) {
    const s = String(url);
    if (/[?&]host=/.test(s)) return s;
    const hash = s.indexOf("#");
    const base = hash < 0 ? s : s.slice(0, hash);
    return base + (base.indexOf("?") < 0 ? "?" : "&") + "host=" + encodeURIComponent(host) + (hash < 0 ? "" : s.slice(hash));
  }

  class Push {
    constructor(owner) {
      this._o = owner;
    }

    _window() {
      return this._o._win || (typeof root.window !== "undefined" ? root.window : null);
    }

    get supported() {
      const w = this._window();
      return !!(w && w.navigator && w.navigator.serviceWorker && w.PushManager && w.Notification);
    }

    get permission() {
      const w = this._window();
      return w && w.Notification ? w.Notification.permission : "unsupported";
    }

    // Call from a user gesture (click): the permission prompt comes first, before any await.
    async subscribe(options) {
      const o = options || {};
      const owner = this._o;
      if (!owner._ready) throw new RetenshunError("Call retenshun.init({host, writeKey, userToken}) first", { code: "not_initialized" });
      if (!this.supported) throw new RetenshunError("Web push is not supported in this browser", { code: "push_unsupported" });
      if (!owner._token) throw new RetenshunError("Web push needs a user token: pass userToken to retenshun.init()", { code: "no_user_token" });
      const w = this._window();
      const permission = await requestPermission(w.Notification);
      if (permission !== "granted") {
        throw new RetenshunError("Notification permission was " + (permission === "denied" ? "denied" : "not granted"), {
          code: permission === "denied" ? "permission_denied" : "permission_dismissed",
        });
      }
      const swUrl = withHostParam(o.serviceWorkerUrl || "/sw.js", owner._host);
      const [reg, key] = await Promise.all([
        w.navigator.serviceWorker.register(swUrl, o.scope ? { scope: o.scope } : undefined).then(waitActive),
        this._vapidKey(),
      ]);
      let sub = await reg.pushManager.getSubscription();
      if (sub && !sameKey(sub.options && sub.options.applicationServerKey, key)) {
        await sub.unsubscribe(); // made with another server key: it cannot receive our pushes
        sub = null;
      }
      if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
      await owner.inbox._request("POST", "/v1/push/subscriptions", { body: { subscription: sub.toJSON() } });
      return sub;
    }

    async _vapidKey() {
      const owner = this._o;
      const env = owner._env;
      let res;
      try {
        res = await env.fetch(owner._host + "/v1/push/vapid-public-key", {
          method: "GET",
          headers: { Authorization: "Basic " + base64(owner._writeKey + ":"), Accept: "application/json" },
          credentials: "omit",
        });
      } catch (err) {
        throw networkError(err);
      }
      if (!res.ok) throw await errorFromResponse(res, env.now());
      const body = await readBody(res);
      if (!isObject(body) || typeof body.public_key !== "string") {
        throw new RetenshunError("The server did not return a VAPID public key", { code: "bad_response" });
      }
      return base64UrlToBytes(body.public_key);
    }

    // Forgets the browser's subscription, and tells the server when a user token is set
    // (DELETE /v1/push/subscriptions {endpoint}; the server also drops it on the next 404/410).
    async unsubscribe(options) {
      const o = options || {};
      if (!this.supported) return false;
      const reg = await this._window().navigator.serviceWorker.getRegistration(o.scope);
      const sub = reg && (await reg.pushManager.getSubscription());
      if (!sub) return false;
      if (this._o._ready && this._o._token) {
        await this._o.inbox._request("DELETE", "/v1/push/subscriptions", { body: { endpoint: sub.endpoint } }).catch(() => null);
      }
      return sub.unsubscribe();
    }
  }

  // ------------------------------------------------------------------ server client

  function createClient(options) {
    const o = options || {};
    if (!o.host) throw new TypeError('createClient: "host" is required');
    if (!o.secretKey) throw new TypeError('createClient: "secretKey" (sk_...) is required');
    const host = trimHost(o.host);
    const key = String(o.secretKey);
    const env = makeEnv(o);
    const maxRetries = o.maxRetries !== undefined ? Math.max(0, o.maxRetries) : 2;
    const timeout = o.timeout !== undefined ? o.timeout : 30000;
    if (root.document && /^sk_/.test(key) && env.logger) {
      env.logger.warn("retenshun.createClient: a secret key is being used in a browser; secret keys belong on your backend only");
    }
    const sleep = (ms) => new Promise((resolve) => env.setTimeout(resolve, ms));

    async function request(method, path, opts) {
      const ro = opts || {};
      const url = host + path + queryString(ro.query);
      const headers = { Authorization: "Bearer " + key, Accept: "application/json" };
      let body;
      if (ro.body !== undefined) {
        headers["Content-Type"] = "application/json";
        body = JSON.stringify(ro.body);
      }
      if (ro.headers) Object.assign(headers, ro.headers);
      for (let attempt = 0; ; attempt++) {
        const canRetry = !!ro.retry && attempt < maxRetries;
        const ctrl = timeout > 0 && typeof root.AbortController === "function" ? new root.AbortController() : null;
        const timer = ctrl ? env.setTimeout(() => ctrl.abort(), timeout) : null;
        const stop = () => timer !== null && env.clearTimeout(timer);
        let res;
        try {
          res = await env.fetch(url, { method, headers, body, signal: ctrl ? ctrl.signal : undefined });
        } catch (err) {
          stop();
          if (canRetry) {
            await sleep(backoffDelay(attempt + 1, 500, 10000, env.random));
            continue;
          }
          throw networkError(err);
        }
        if (res.ok) {
          const data = await readBody(res);
          stop();
          return data;
        }
        const err = await errorFromResponse(res, env.now());
        stop();
        if (canRetry && (res.status === 408 || res.status === 429 || res.status >= 500)) {
          await sleep(err.retryAfter !== undefined ? Math.min(err.retryAfter, RETRY_AFTER_MAX_MS) : backoffDelay(attempt + 1, 500, 10000, env.random));
          continue;
        }
        throw err;
      }
    }

    function message(kind, m) {
      const e = Object.assign({}, m);
      if (!e.messageId) e.messageId = uuid(); // stable across retries: the server dedupes
      e.timestamp = toISO(e.timestamp !== undefined ? e.timestamp : env.now());
      e.context = Object.assign({ library: { name: LIBRARY_NAME, version: VERSION } }, isObject(e.context) ? e.context : null);
      if (!e.userId && !e.anonymousId) throw new TypeError(kind + ": a userId (or anonymousId) is required");
      if (e.userId !== undefined && e.userId !== null) e.userId = String(e.userId);
      return e;
    }

    const enc = encodeURIComponent;
    const ingest = async (kind, m) => request("POST", "/v1/" + kind, { body: message(kind, m), retry: true });

    return {
      request: (method, path, body) => request(method, path, { body }),
      async track(event, properties, opts) {
        if (isObject(event)) return ingest("track", event);
        const props = isObject(properties) ? properties : {};
        const m = Object.assign({}, isObject(opts) ? opts : null, { event, properties: props });
        if ((m.userId === undefined || m.userId === null) && props.user_id !== undefined && props.user_id !== null) m.userId = String(props.user_id);
        return ingest("track", m);
      },
      async identify(userId, traits, opts) {
        if (isObject(userId)) return ingest("identify", userId);
        return ingest("identify", Object.assign({}, isObject(opts) ? opts : null, { userId, traits: isObject(traits) ? traits : {} }));
      },
      page: (m) => ingest("page", m),
      group: (m) => ingest("group", m),
      alias: (m) => ingest("alias", m),
      async batch(events) {
        const batch = (events || []).map((e) => message(e.type || "batch", e));
        return request("POST", "/v1/batch", { body: { batch, sentAt: toISO(env.now()) }, retry: true });
      },
      messages: {
        send(body, opts) {
          const idempotencyKey = opts && opts.idempotencyKey;
          return request("POST", "/v1/messages/send", {
            body,
            headers: idempotencyKey ? { "Idempotency-Key": String(idempotencyKey) } : undefined,
            // Only safe to resend when the server can recognise the repeat.
            retry: !!(idempotencyKey || (isObject(body) && body.idempotency_key)),
          });
        },
        get: (id) => request("GET", "/v1/messages/" + enc(id), { retry: true }),
      },
      users: {
        async token(userId) {
          const r = await request("POST", "/v1/users/" + enc(userId) + "/token", { retry: true });
          return isObject(r) ? r.token : r;
        },
        get: (userId) => request("GET", "/v1/users/" + enc(userId), { retry: true }),
        events: (userId, q) =>
          request("GET", "/v1/users/" + enc(userId) + "/events", { query: { limit: q && q.limit, before: q && q.before }, retry: true }),
        messages: (userId) => request("GET", "/v1/users/" + enc(userId) + "/messages", { retry: true }),
        delete: (userId) => request("DELETE", "/v1/users/" + enc(userId), { retry: true }),
        setPreferences: (userId, prefs) => request("PUT", "/v1/users/" + enc(userId) + "/preferences", { body: prefs, retry: true }),
      },
    };
  }

  // ------------------------------------------------------------------ <retenshun-inbox>

  const INBOX_CSS = `
:host {
  --_accent: var(--retenshun-accent, #4f46e5);
  --_bg: var(--retenshun-bg, #ffffff);
  --_fg: var(--retenshun-fg, #111827);
  --_muted: var(--retenshun-muted, #6b7280);
  --_border: var(--retenshun-border, #e5e7eb);
  --_radius: var(--retenshun-radius, 10px);
  --_badge-bg: var(--retenshun-badge-bg, #dc2626);
  --_badge-fg: var(--retenshun-badge-fg, #ffffff);
  --_unread-bg: var(--retenshun-unread-bg, rgba(79, 70, 229, 0.07));
  --_hover-bg: var(--retenshun-hover-bg, rgba(0, 0, 0, 0.04));
  --_width: var(--retenshun-width, 360px);
  --_max-height: var(--retenshun-max-height, 480px);
  --_shadow: var(--retenshun-shadow, 0 12px 32px rgba(0, 0, 0, 0.16));
  --_bell: var(--retenshun-bell-color, currentColor);
  position: relative;
  display: inline-block;
  font-family: var(--retenshun-font, inherit);
  font-size: var(--retenshun-font-size, 14px);
  line-height: 1.4;
}
:host([hidden]) { display: none; }
* { box-sizing: border-box; }
button { font: inherit; color: inherit; }
:focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }
.bell {
  position: relative; display: inline-flex; align-items: center; justify-content: center;
  width: 40px; height: 40px; padding: 0; border: 0; border-radius: 50%;
  background: transparent; color: var(--_bell); cursor: pointer;
}
.bell:hover { background: var(--_hover-bg); }
.bell svg { width: 22px; height: 22px; }
.badge {
  position: absolute; top: 2px; right: 2px; min-width: 18px; height: 18px; padding: 0 5px;
  border-radius: 9px; background: var(--_badge-bg); color: var(--_badge-fg);
  font-size: 11px; font-weight: 600; line-height: 18px; text-align: center;
}
.badge[hidden] { display: none; }
.panel {
  position: absolute; top: calc(100% + 8px); right: 0; z-index: var(--retenshun-z-index, 1000);
  display: flex; flex-direction: column;
  width: min(var(--_width), calc(100vw - 16px)); max-height: var(--_max-height);
  background: var(--_bg); color: var(--_fg); border: 1px solid var(--_border);
  border-radius: var(--_radius); box-shadow: var(--_shadow); overflow: hidden; text-align: left;
}
:host([align="left"]) .panel { right: auto; left: 0; }
.panel[hidden] { display: none; }
.panel:focus { outline: none; }
.header {
  display: flex; align-items: center; justify-content: space-between; gap: 8px;
  padding: 10px 12px 10px 16px; border-bottom: 1px solid var(--_border);
}
.heading { margin: 0; font-size: 1em; font-weight: 600; }
.mark-all {
  border: 0; background: transparent; color: var(--_accent); cursor: pointer;
  padding: 4px 6px; border-radius: 6px; font-size: 0.9em;
}
.mark-all:hover:not(:disabled) { background: var(--_hover-bg); }
.mark-all:disabled { color: var(--_muted); cursor: default; opacity: 0.6; }
.list { list-style: none; margin: 0; padding: 0; overflow-y: auto; }
.item { position: relative; display: flex; align-items: flex-start; border-bottom: 1px solid var(--_border); }
.item:last-child { border-bottom: 0; }
.item.unread { background: var(--_unread-bg); }
.main {
  flex: 1; min-width: 0; display: grid; grid-template-columns: 10px 1fr; column-gap: 8px;
  padding: 12px 4px 12px 12px; border: 0; background: transparent; color: inherit;
  text-align: left; text-decoration: none; cursor: pointer;
}
.main:hover { background: var(--_hover-bg); }
.main:focus-visible { outline-offset: -2px; }
.dot { width: 8px; height: 8px; margin-top: 6px; border-radius: 50%; background: transparent; }
.unread .dot { background: var(--_accent); }
.title { grid-column: 2; font-weight: 600; overflow-wrap: anywhere; }
.unread .title { color: var(--_fg); }
.body { grid-column: 2; color: var(--_fg); opacity: 0.85; overflow-wrap: anywhere; white-space: pre-line; }
.time { grid-column: 2; margin-top: 2px; color: var(--_muted); font-size: 0.85em; }
.link-hint { grid-column: 2; margin-top: 2px; color: var(--_accent); font-size: 0.85em; }
.archive {
  flex: none; margin: 8px 8px 0 0; width: 28px; height: 28px; padding: 0; border: 0; border-radius: 6px;
  background: transparent; color: var(--_muted); cursor: pointer; display: inline-flex;
  align-items: center; justify-content: center;
}
.archive:hover { background: var(--_hover-bg); color: var(--_fg); }
.archive svg { width: 14px; height: 14px; }
.status { margin: 0; padding: 28px 16px; text-align: center; color: var(--_muted); }
.status[hidden] { display: none; }
.retry { margin-left: 6px; border: 0; background: transparent; color: var(--_accent); cursor: pointer; text-decoration: underline; }
.sr-only {
  position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
`;

  const BELL_SVG =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
    '<path d="M6 9a6 6 0 0 1 12 0v4.5l1.6 2.7a.6.6 0 0 1-.5.9H4.9a.6.6 0 0 1-.5-.9L6 13.5z"/><path d="M10 20a2.2 2.2 0 0 0 4 0"/></svg>';
  const CLOSE_SVG =
    '<svg viewBox="0 0 16 16" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" aria-hidden="true" focusable="false">' +
    '<path d="M4 4l8 8M12 4l-8 8"/></svg>';

  function defineInboxElement(api) {
    const CE = root.customElements;
    const HE = root.HTMLElement;
    if (!CE || typeof HE !== "function" || CE.get("retenshun-inbox")) return;
    let sheet = null;
    let uid = 0;

    function h(tag, attrs, text) {
      const node = root.document.createElement(tag);
      for (const k of Object.keys(attrs || {})) {
        if (attrs[k] === false || attrs[k] === null || attrs[k] === undefined) continue;
        node.setAttribute(k, attrs[k] === true ? "" : String(attrs[k]));
      }
      if (text !== undefined) node.textContent = text;
      return node;
    }

    function addStyles(shadow) {
      try {
        if (typeof root.CSSStyleSheet === "function" && "adoptedStyleSheets" in shadow) {
          if (!sheet) {
            sheet = new root.CSSStyleSheet();
            sheet.replaceSync(INBOX_CSS); // not subject to a CSP that forbids inline <style>
          }
          shadow.adoptedStyleSheets = [sheet];
          return;
        }
      } catch (_) {
        /* fall back to <style> */
      }
      shadow.appendChild(h("style", {}, INBOX_CSS));
    }

    class RetenshunInboxElement extends HE {
      static get observedAttributes() {
        return ["host", "token"];
      }

      constructor() {
        super();
        const shadow = this.attachShadow({ mode: "open" });
        addStyles(shadow);
        const panelId = "retenshun-inbox-panel-" + ++uid;
        const headingId = panelId + "-heading";
        this._bell = h("button", {
          type: "button",
          class: "bell",
          part: "bell",
          "aria-haspopup": "dialog",
          "aria-expanded": "false",
          "aria-controls": panelId,
          "aria-label": "Notifications",
        });
        this._bell.innerHTML = BELL_SVG;
        this._badge = h("span", { class: "badge", part: "badge", "aria-hidden": "true", hidden: true });
        this._bell.appendChild(this._badge);
        this._panel = h("div", {
          id: panelId,
          class: "panel",
          part: "panel",
          role: "dialog",
          "aria-labelledby": headingId,
          tabindex: "-1",
          hidden: true,
        });
        const head = h("div", { class: "header", part: "header" });
        head.appendChild(h("h2", { id: headingId, class: "heading", part: "heading" }, "Notifications"));
        this._markAll = h("button", { type: "button", class: "mark-all", part: "mark-all" }, "Mark all read");
        head.appendChild(this._markAll);
        this._list = h("ul", { class: "list", part: "list", role: "list" });
        this._status = h("p", { class: "status", part: "status", hidden: true });
        this._panel.append(head, this._list, this._status);
        this._live = h("div", { class: "sr-only", role: "status", "aria-live": "polite" });
        shadow.append(this._bell, this._panel, this._live);

        this._messages = [];
        this._loaded = false;
        this._loading = false;
        this._error = null;
        this._isOpen = false;
        this._inbox = null;
        this._own = null;
        this._unsubs = [];
        this._clock = null;

        this._bell.addEventListener("click", () => this.toggle());
        this._markAll.addEventListener("click", () => this._onMarkAll());
        shadow.addEventListener("keydown", (e) => this._onKeydown(e));
        this._panel.addEventListener("focusout", (e) => {
          const to = e.relatedTarget;
          if (this._isOpen && to && to !== this && !shadow.contains(to) && !this.contains(to)) this.close(false);
        });
        this._outside = (e) => {
          if (!this._isOpen) return;
          const path = typeof e.composedPath === "function" ? e.composedPath() : [];
          if (path.indexOf(this) < 0) this.close(false);
        };
      }

      get inbox() {
        return this._inbox;
      }
      get open() {
        return this._isOpen;
      }

      connectedCallback() {
        this._attach();
        root.document.addEventListener("pointerdown", this._outside, true);
      }

      disconnectedCallback() {
        root.document.removeEventListener("pointerdown", this._outside, true);
        this.close(false);
        this._detach();
      }

      attributeChangedCallback(_name, oldValue, newValue) {
        if (oldValue === newValue || !this.isConnected) return;
        this._detach();
        this._attach();
      }

      _attach() {
        const token = this.getAttribute("token");
        if (token) {
          // A self-contained widget: its own connection with the given token.
          const host = this.getAttribute("host") || api.inbox._src.host();
          const env = makeEnv();
          this._own = new Inbox({ host: () => (host ? trimHost(host) : null), token: () => token, env: () => env });
          this._inbox = this._own;
          this._own.connect();
        } else {
          this._inbox = api.inbox;
        }
        this._messages = [];
        this._loaded = false;
        this._unsubs.push(
          this._inbox.onUnreadCount((n) => this._showCount(n)),
          this._inbox.onMessage((m) => this._onMessage(m))
        );
        this._showCount(this._inbox.unreadCount);
      }

      _detach() {
        for (const u of this._unsubs) u();
        this._unsubs = [];
        if (this._own) this._own.disconnect();
        this._own = null;
      }

      _showCount(n) {
        const count = Math.max(0, Number(n) || 0);
        this.setAttribute("unread", String(count));
        this._badge.textContent = count > 99 ? "99+" : String(count);
        this._badge.hidden = count === 0;
        this._bell.setAttribute("aria-label", count ? "Notifications, " + count + " unread" : "Notifications");
        this._updateMarkAll();
      }

      _onMessage(m) {
        if (this._loaded && !this._messages.some((x) => String(x.id) === String(m.id))) {
          this._messages.unshift(Object.assign({}, m));
          if (this._isOpen) this._render();
        }
        this._live.textContent = "New notification: " + (m.title || "");
      }

      toggle() {
        if (this._isOpen) this.close(true);
        else this.show();
      }

      show() {
        if (this._isOpen) return;
        this._isOpen = true;
        this._panel.hidden = false;
        this._bell.setAttribute("aria-expanded", "true");
        this._render();
        this._panel.focus();
        this._load(); // refresh every time it opens: another tab may have read things
        this._clock = root.setInterval(() => this._refreshTimes(), 30000);
        this.dispatchEvent(new root.CustomEvent("retenshun-inbox-open", { bubbles: true, composed: true }));
      }

      close(returnFocus) {
        if (!this._isOpen) return;
        this._isOpen = false;
        const shadow = this.shadowRoot;
        const hadFocus = shadow.activeElement && this._panel.contains(shadow.activeElement);
        this._panel.hidden = true;
        this._bell.setAttribute("aria-expanded", "false");
        if (this._clock !== null) root.clearInterval(this._clock);
        this._clock = null;
        if (returnFocus !== false || hadFocus) this._bell.focus();
        this.dispatchEvent(new root.CustomEvent("retenshun-inbox-close", { bubbles: true, composed: true }));
      }

      refresh() {
        return this._load();
      }

      async _load() {
        if (this._loading) return;
        this._loading = true;
        this._error = null;
        if (!this._loaded) this._render();
        try {
          const r = await this._inbox.list({ limit: 50 });
          this._messages = (r && Array.isArray(r.messages) ? r.messages : []).map((m) => Object.assign({}, m));
          this._loaded = true;
        } catch (err) {
          this._error = err;
        } finally {
          this._loading = false;
          this._render();
        }
      }

      _visible() {
        return this._messages.filter((m) => !m.archived_at);
      }

      _render() {
        const shadow = this.shadowRoot;
        const active = shadow.activeElement;
        const focusId = active && active.closest && active.closest(".item") ? active.closest(".item").dataset.id : null;
        const focusArchive = !!(active && active.classList && active.classList.contains("archive"));
        this._list.textContent = "";
        const items = this._visible();
        for (const m of items) this._list.appendChild(this._renderItem(m));
        this._status.textContent = "";
        if (!items.length) {
          this._status.hidden = false;
          if (this._loading && !this._loaded) this._status.textContent = "Loading…";
          else if (this._error && !this._loaded) {
            this._status.append("Couldn't load notifications.");
            const retry = h("button", { type: "button", class: "retry" }, "Try again");
            retry.addEventListener("click", () => this._load());
            this._status.appendChild(retry);
          } else this._status.textContent = "You're all caught up";
        } else this._status.hidden = true;
        this._list.hidden = !items.length;
        this._updateMarkAll();
        if (focusId !== null) {
          const li = this._itemNode(focusId);
          const target = li && (focusArchive ? li.querySelector(".archive") : li.querySelector(".main"));
          if (target) target.focus();
        }
      }

      _updateMarkAll() {
        const anyUnread = this._messages.some((m) => !m.read_at && !m.archived_at);
        this._markAll.disabled = !anyUnread && !(this._inbox && this._inbox.unreadCount > 0);
      }

      _itemNode(id) {
        for (const li of this._list.children) if (li.dataset.id === String(id)) return li;
        return null;
      }

      _renderItem(m) {
        const unread = !m.read_at;
        const li = h("li", { class: "item" + (unread ? " unread" : ""), part: unread ? "item item-unread" : "item", "data-id": String(m.id) });
        const href = safeUrl(m.url, root.document.baseURI);
        const main = href ? h("a", { class: "main", href, part: "item-link" }) : h("button", { type: "button", class: "main", part: "item-button" });
        main.appendChild(h("span", { class: "dot", "aria-hidden": "true" }));
        if (unread) main.appendChild(h("span", { class: "sr-only unread-label" }, "Unread: "));
        main.appendChild(h("span", { class: "title", part: "item-title" }, m.title !== undefined && m.title !== null ? String(m.title) : ""));
        if (m.body) main.appendChild(h("span", { class: "body", part: "item-body" }, String(m.body)));
        const when = h("time", { class: "time", part: "item-time" }, relativeTime(m.created_at, Date.now()));
        if (m.created_at) {
          when.setAttribute("datetime", String(m.created_at));
          const t = Date.parse(m.created_at);
          if (!isNaN(t)) when.title = new Date(t).toLocaleString();
        }
        main.appendChild(when);
        main.addEventListener("click", (e) => this._onItemClick(e, m, li));
        const archive = h("button", {
          type: "button",
          class: "archive",
          part: "archive",
          "aria-label": "Archive: " + (m.title || "notification"),
          title: "Archive",
        });
        archive.innerHTML = CLOSE_SVG;
        archive.addEventListener("click", () => this._onArchive(m));
        li.append(main, archive);
        return li;
      }

      _onItemClick(e, m, li) {
        const detail = { message: m };
        const go = this.dispatchEvent(new root.CustomEvent("retenshun-message-click", { detail, bubbles: true, composed: true, cancelable: true }));
        if (!go) e.preventDefault(); // e.g. an SPA router takes over the navigation
        if (m.read_at) return;
        // Update in place: re-rendering would detach the link being followed.
        m.read_at = new Date().toISOString();
        li.classList.remove("unread");
        li.setAttribute("part", "item");
        const label = li.querySelector(".unread-label");
        if (label) label.remove();
        this._updateMarkAll();
        this._inbox.markRead(m.id).catch((err) => this._report(err));
      }

      _onArchive(m) {
        const items = this._visible();
        const idx = items.indexOf(m);
        m.archived_at = new Date().toISOString();
        const next = items[idx + 1] || items[idx - 1] || null;
        const shadow = this.shadowRoot;
        this._render();
        const li = next && this._itemNode(next.id);
        if (li) li.querySelector(".main").focus();
        else if (!shadow.activeElement || !this._panel.contains(shadow.activeElement)) this._panel.focus();
        this._inbox.archive(m.id).catch((err) => {
          m.archived_at = null;
          this._render();
          this._report(err);
        });
      }

      _onMarkAll() {
        const now = new Date().toISOString();
        for (const m of this._messages) if (!m.read_at) m.read_at = now;
        this._render();
        this._inbox.markAllRead().catch((err) => this._report(err));
      }

      _report(err) {
        this.dispatchEvent(new root.CustomEvent("retenshun-error", { detail: { error: err }, bubbles: true, composed: true }));
        if (root.console) root.console.warn("<retenshun-inbox>:", err && err.message ? err.message : err);
      }

      _refreshTimes() {
        for (const t of this._list.querySelectorAll("time[datetime]")) t.textContent = relativeTime(t.getAttribute("datetime"), Date.now());
      }

      _onKeydown(e) {
        if (e.key === "Escape" && this._isOpen) {
          e.preventDefault();
          e.stopPropagation();
          this.close(true);
          return;
        }
        if (!this._isOpen || ["ArrowDown", "ArrowUp", "Home", "End"].indexOf(e.key) < 0) return;
        const mains = Array.from(this._list.querySelectorAll(".main"));
        if (!mains.length) return;
        const i = mains.indexOf(this.shadowRoot.activeElement);
        let j;
        if (e.key === "Home") j = 0;
        else if (e.key === "End") j = mains.length - 1;
        else if (e.key === "ArrowDown") j = i < 0 ? 0 : Math.min(mains.length - 1, i + 1);
        else j = i < 0 ? mains.length - 1 : Math.max(0, i - 1);
        e.preventDefault();
        mains[j].focus();
      }
    }

    CE.define("retenshun-inbox", RetenshunInboxElement);
  }

  // ------------------------------------------------------------------ the public object

  const api = new Retenshun();
  api.createClient = createClient;
  api.createInstance = () => new Retenshun();
  api.RetenshunError = RetenshunError;
  api._util = { relativeTime, safeUrl, base64, base64UrlToBytes, backoffDelay, parseRetryAfter };
  Object.defineProperty(api, "__retenshun", { value: true });

  try {
    defineInboxElement(api);
  } catch (err) {
    if (root.console) root.console.warn("retenshun: could not define <retenshun-inbox>:", err);
  }

  return api;
});

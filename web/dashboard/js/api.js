// The daemon's JSON API, called with the dashboard's session cookie (HttpOnly,
// SameSite=Strict) and the CSRF token on every change.

let csrfToken = null;
const signedOutListeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, method, path) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.method = method;
    this.path = path;
  }
  // The daemon does not serve this endpoint (an older or partial build).
  get unavailable() {
    return this.status === 405 || (this.status === 404 && /^no such endpoint/.test(this.message));
  }
}

export function onSignedOut(cb) {
  signedOutListeners.add(cb);
  return () => signedOutListeners.delete(cb);
}

async function parse(res, method, path) {
  const text = await res.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = text;
    }
  }
  if (res.ok) return body;
  const e = body && typeof body === "object" && body.error ? body.error : {};
  const err = new ApiError(res.status, e.code || "http_" + res.status, e.message || `HTTP ${res.status}`, method, path);
  if (res.status === 401 && path.startsWith("/v1/")) for (const cb of signedOutListeners) cb(err);
  throw err;
}

export async function request(method, path, body, opts = {}) {
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "network_error", "The daemon did not answer (" + (err && err.message ? err.message : err) + ")", method, path);
  }
  return parse(res, method, path);
}

export const get = (path) => request("GET", path);
export const put = (path, body) => request("PUT", path, body);
export const post = (path, body, opts) => request("POST", path, body === undefined ? {} : body, opts);
export const del = (path) => request("DELETE", path);

export function qs(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(String(v)));
  }
  return parts.length ? "?" + parts.join("&") : "";
}

// -------------------------------------------------------------- session

export async function currentSession() {
  const s = await get("/dashboard/session");
  if (!s || !s.signed_in) return null;
  csrfToken = s.csrf_token;
  return s;
}

export async function signIn(secret) {
  const s = await request("POST", "/dashboard/login", { secret });
  csrfToken = s.csrf_token;
  return s;
}

export async function signOut() {
  await request("POST", "/dashboard/logout", {}).catch(() => null);
  csrfToken = null;
}

// -------------------------------------------------------------- live events

// One WebSocket for the whole app; pages subscribe and unsubscribe.
class LiveEvents {
  constructor() {
    this.ws = null;
    this.state = "idle";
    this.rate = null; // the hello frame's per-minute counts
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.attempt = 0;
    this.timer = null;
    this.pinger = null;
    this.recent = []; // newest last, for pages opened later
    this.perMinute = new Map(); // minute (ms) -> events received in it
    this.since = null; // first minute the counts fully cover
  }

  count(frame) {
    if (frame.type === "hello") {
      this.perMinute = new Map();
      this.since = Date.parse(frame.rate.since);
      for (const [at, n] of frame.rate.minutes) this.perMinute.set(Date.parse(at), n);
      return;
    }
    if (frame.type !== "events" || frame.backlog) return;
    for (const e of frame.events) {
      const m = Math.floor(Date.parse(e.received_at) / 60000) * 60000;
      this.perMinute.set(m, (this.perMinute.get(m) || 0) + 1);
    }
    const thinned = (frame.count || 0) - frame.events.length;
    if (thinned > 0) {
      const m = Math.floor(Date.now() / 60000) * 60000;
      this.perMinute.set(m, (this.perMinute.get(m) || 0) + thinned);
    }
    const oldest = Math.floor(Date.now() / 60000) * 60000 - 120 * 60000;
    for (const k of this.perMinute.keys()) if (k < oldest) this.perMinute.delete(k);
  }

  subscribe(onFrame, onState) {
    this.listeners.add(onFrame);
    if (onState) {
      this.stateListeners.add(onState);
      onState(this.state);
    }
    if (!this.ws && !this.timer) this.connect();
    return () => {
      this.listeners.delete(onFrame);
      if (onState) this.stateListeners.delete(onState);
    };
  }

  setState(s) {
    this.state = s;
    for (const cb of this.stateListeners) cb(s);
  }

  connect() {
    this.timer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/dashboard/events/ws?backlog=200`);
    this.ws = ws;
    this.setState("connecting");
    ws.onopen = () => {
      this.attempt = 0;
      this.setState("live");
      this.pinger = setInterval(() => ws.readyState === 1 && ws.send('{"type":"ping"}'), 25000);
    };
    ws.onmessage = (e) => {
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      this.count(frame);
      if (frame.type === "hello") {
        this.rate = frame.rate;
        this.recent = [];
      }
      if (frame.type === "events") {
        this.recent.push(...frame.events);
        if (this.recent.length > 500) this.recent.splice(0, this.recent.length - 500);
      }
      for (const cb of this.listeners) cb(frame);
    };
    ws.onclose = (e) => {
      clearInterval(this.pinger);
      this.ws = null;
      if (e.code === 4401) {
        this.setState("signed out");
        for (const cb of signedOutListeners) cb(new ApiError(401, "not_signed_in", "sign in again", "GET", "/dashboard/events/ws"));
        return;
      }
      this.setState("reconnecting");
      this.attempt++;
      const delay = Math.min(30000, 500 * 2 ** Math.min(this.attempt, 6)) * (0.5 + Math.random() / 2);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  close() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
    clearInterval(this.pinger);
    this.setState("idle");
  }
}

export const live = new LiveEvents();

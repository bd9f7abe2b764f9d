// createClient({host, secretKey}) against a real node:http server.
import test from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { sdk, FakeClock, settle } from "./fakes.test.mjs";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// routes: "METHOD /path" -> array of responses used in turn (the last one repeats).
async function startServer(routes) {
  const requests = [];
  const held = [];
  const server = http.createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      const entry = { method: req.method, url: req.url, headers: req.headers, raw, body: raw ? JSON.parse(raw) : undefined };
      requests.push(entry);
      const key = req.method + " " + req.url.split("?")[0];
      const list = routes[key];
      if (!list) {
        res.writeHead(404, { "content-type": "application/json" });
        return res.end(JSON.stringify({ error: { code: "not_found", message: "no route " + key } }));
      }
      const r = list.length > 1 ? list.shift() : list[0];
      if (r === "hang") return held.push(res);
      const body = r.body === undefined ? "" : typeof r.body === "string" ? r.body : JSON.stringify(r.body);
      res.writeHead(r.status || 200, Object.assign({ "content-type": typeof r.body === "string" ? "text/plain" : "application/json" }, r.headers || {}));
      res.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const host = "http://127.0.0.1:" + server.address().port;
  const close = () =>
    new Promise((resolve) => {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      server.close(resolve);
    });
  return { host, requests, close };
}

// Timers that fire at once but remember what was asked for.
function instantTimers() {
  const delays = [];
  return {
    delays,
    setTimeout: (fn, ms) => {
      delays.push(ms);
      setImmediate(fn);
      return delays.length;
    },
    clearTimeout: () => {},
  };
}

test("messages.send POSTs the body with the secret key and Idempotency-Key and returns the JSON", async (t) => {
  const srv = await startServer({ "POST /v1/messages/send": [{ status: 202, body: { message_id: "msg_1", status: "queued" } }] });
  t.after(srv.close);
  const client = sdk.createClient({ host: srv.host + "/", secretKey: "sk_test_1" });
  const body = { user_id: "user_123", channel: "email", template_id: "milestone_celebration", variables: { milestone: "10,000 messages" } };
  const res = await client.messages.send(body, { idempotencyKey: "milestone-user_123-10k" });
  assert.deepEqual(res, { message_id: "msg_1", status: "queued" });
  assert.equal(srv.requests.length, 1);
  const req = srv.requests[0];
  assert.equal(req.method, "POST");
  assert.equal(req.url, "/v1/messages/send");
  assert.equal(req.headers.authorization, "Bearer sk_test_1");
  assert.equal(req.headers["idempotency-key"], "milestone-user_123-10k");
  assert.match(req.headers["content-type"], /^application\/json/);
  assert.deepEqual(req.body, body);
});

test("error bodies become RetenshunError with .status, .code and the server's message", async (t) => {
  const srv = await startServer({
    "POST /v1/messages/send": [
      { status: 409, body: { error: { code: "idempotency_conflict", message: "Idempotency-Key reused with another body" } } },
      { status: 400, body: { error: { code: "invalid_field", message: "channel: must be email, push or in_app" } } },
      { status: 502, body: "Bad Gateway" },
    ],
  });
  t.after(srv.close);
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1" });
  const e1 = await client.messages.send({ user_id: "u" }, { idempotencyKey: "k" }).catch((e) => e);
  assert.ok(e1 instanceof sdk.RetenshunError);
  assert.ok(e1 instanceof Error);
  assert.equal(e1.status, 409);
  assert.equal(e1.code, "idempotency_conflict");
  assert.equal(e1.message, "Idempotency-Key reused with another body");
  const e2 = await client.messages.send({ user_id: "u", channel: "fax" }).catch((e) => e);
  assert.equal(e2.status, 400);
  assert.equal(e2.code, "invalid_field");
  const e3 = await client.messages.send({ user_id: "u" }).catch((e) => e);
  assert.equal(e3.status, 502);
  assert.equal(e3.code, "http_502");
  assert.equal(e3.body, "Bad Gateway");
  assert.equal(srv.requests.length, 3, "a send without an idempotency key is never retried");
});

test("a send with an idempotency key is retried on 503, honouring Retry-After", async (t) => {
  const srv = await startServer({
    "POST /v1/messages/send": [
      { status: 503, headers: { "retry-after": "2" }, body: { error: { code: "unavailable", message: "draining" } } },
      { status: 202, body: { message_id: "msg_2", status: "queued" } },
    ],
  });
  t.after(srv.close);
  const timers = instantTimers();
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1", timers, timeout: 0 });
  const res = await client.messages.send({ user_id: "u" }, { idempotencyKey: "same-key" });
  assert.equal(res.message_id, "msg_2");
  assert.deepEqual(timers.delays, [2000]);
  assert.equal(srv.requests.length, 2);
  assert.deepEqual(
    srv.requests.map((r) => r.headers["idempotency-key"]),
    ["same-key", "same-key"]
  );
});

test("retries give up after maxRetries and throw the last error", async (t) => {
  const srv = await startServer({ "POST /v1/track": [{ status: 500, body: { error: { code: "internal", message: "oops" } } }] });
  t.after(srv.close);
  const timers = instantTimers();
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1", timers, timeout: 0, maxRetries: 2, random: () => 0.5 });
  const err = await client.track("x", { user_id: "u1" }).catch((e) => e);
  assert.equal(err.status, 500);
  assert.equal(err.code, "internal");
  assert.equal(srv.requests.length, 3);
  assert.deepEqual(timers.delays, [375, 750], "exponential backoff with jitter between attempts");
  const mids = srv.requests.map((r) => r.body.messageId);
  assert.equal(new Set(mids).size, 1, "the same messageId on every attempt, so the server stores it once");
});

test("track and identify POST Segment payloads to /v1/track and /v1/identify", async (t) => {
  const srv = await startServer({ "POST /v1/track": [{ body: { success: true } }], "POST /v1/identify": [{ body: { success: true } }] });
  t.after(srv.close);
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1" });
  assert.deepEqual(await client.track("plan_limit_reached", { user_id: "u1", used: 1000, limit: 1000 }), { success: true });
  await client.identify("u1", { plan: "pro", email: null });
  await client.track({ userId: "u2", event: "order_completed", properties: { total: 60 }, messageId: "fixed-id", timestamp: "2026-01-01T00:00:00.000Z" });

  const [tr, id, tr2] = srv.requests;
  assert.equal(tr.url, "/v1/track");
  assert.equal(tr.headers.authorization, "Bearer sk_test_1");
  assert.equal(tr.body.userId, "u1");
  assert.equal(tr.body.event, "plan_limit_reached");
  assert.deepEqual(tr.body.properties, { user_id: "u1", used: 1000, limit: 1000 });
  assert.match(tr.body.messageId, UUID);
  assert.ok(!isNaN(Date.parse(tr.body.timestamp)));
  assert.equal(tr.body.context.library.name, "retenshun.js");

  assert.equal(id.url, "/v1/identify");
  assert.equal(id.body.userId, "u1");
  assert.deepEqual(id.body.traits, { plan: "pro", email: null });

  assert.equal(tr2.body.userId, "u2");
  assert.equal(tr2.body.messageId, "fixed-id");
  assert.equal(tr2.body.timestamp, "2026-01-01T00:00:00.000Z");
});

test("track without any user is refused before a request is made", async (t) => {
  const srv = await startServer({});
  t.after(srv.close);
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1" });
  await assert.rejects(client.track("x", { plan: "pro" }), TypeError);
  await assert.rejects(client.identify({ traits: { plan: "pro" } }), /userId/);
  assert.equal(srv.requests.length, 0);
});

test("users.token returns the token string from POST /v1/users/{id}/token", async (t) => {
  const srv = await startServer({ "POST /v1/users/user%201%2Fx/token": [{ body: { token: "eyJhbGciOi.x.y" } }] });
  t.after(srv.close);
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1" });
  assert.equal(await client.users.token("user 1/x"), "eyJhbGciOi.x.y");
  assert.equal(srv.requests[0].method, "POST");
  assert.equal(srv.requests[0].headers.authorization, "Bearer sk_test_1");
});

test("users and messages lookups use GET/PUT/DELETE with the right paths", async (t) => {
  const srv = await startServer({
    "GET /v1/users/u1/events": [{ body: { events: [], next_before: null } }],
    "PUT /v1/users/u1/preferences": [{ body: { ok: true } }],
    "DELETE /v1/users/u1": [{ status: 204 }],
    "GET /v1/messages/msg_1": [{ body: { message_id: "msg_1", status: "sent" } }],
  });
  t.after(srv.close);
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1" });
  assert.deepEqual(await client.users.events("u1", { limit: 5, before: "c1" }), { events: [], next_before: null });
  assert.equal(srv.requests[0].url, "/v1/users/u1/events?limit=5&before=c1");
  await client.users.setPreferences("u1", { channels: { email: false } });
  assert.deepEqual(srv.requests[1].body, { channels: { email: false } });
  assert.equal(await client.users.delete("u1"), null);
  assert.equal((await client.messages.get("msg_1")).status, "sent");
});

test("an unreachable server gives status 0 and code network_error", async () => {
  const srv = await startServer({});
  const host = srv.host;
  await srv.close();
  const client = sdk.createClient({ host, secretKey: "sk_test_1", maxRetries: 0 });
  const err = await client.messages.send({ user_id: "u" }).catch((e) => e);
  assert.ok(err instanceof sdk.RetenshunError);
  assert.equal(err.status, 0);
  assert.equal(err.code, "network_error");
});

test("a request that never answers times out through the injected clock", async (t) => {
  const srv = await startServer({ "POST /v1/messages/send": ["hang"] });
  t.after(srv.close);
  const clock = new FakeClock();
  const client = sdk.createClient({ host: srv.host, secretKey: "sk_test_1", timers: clock, timeout: 5000 });
  const p = client.messages.send({ user_id: "u" }).catch((e) => e);
  while (srv.requests.length === 0) await settle(); // until the server has the request
  assert.deepEqual(clock.delays(), [5000]);
  await clock.tick(5000);
  const err = await p;
  assert.equal(err.code, "timeout");
  assert.equal(err.status, 0);
});

test("createClient needs host and secretKey", () => {
  assert.throws(() => sdk.createClient({ secretKey: "sk" }), /host/);
  assert.throws(() => sdk.createClient({ host: "http://x" }), /secretKey/);
});

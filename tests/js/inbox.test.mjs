// retenshun.inbox: WebSocket frames, heartbeat, reconnect + catch-up, 4401, REST calls.
import test from "node:test";
import assert from "node:assert/strict";
import { setup, fakeFetch, fakeWebSocketClass, settle, sdk } from "./fakes.test.mjs";

function msg(id, extra = {}) {
  return Object.assign(
    { id, title: "Title " + id, body: "Body " + id, url: null, data: {}, created_at: "2026-11-26T07:00:00.000Z", read_at: null, archived_at: null },
    extra
  );
}

// A tiny inbox server behind the fake fetch: GET /v1/inbox answers with `state.messages`.
function inboxSetup(options = {}) {
  const state = { messages: options.messages || [], unread: options.unread ?? 0 };
  const fetch = fakeFetch((call) => {
    const u = new URL(call.url);
    if (call.method === "GET" && u.pathname === "/v1/inbox") return { status: 200, body: { messages: state.messages, unread_count: state.unread } };
    return { status: 200, body: { ok: true } };
  });
  const WS = fakeWebSocketClass();
  const env = setup({ fetch, init: Object.assign({ userToken: "tok en/1", WebSocket: WS }, options.init || {}) });
  const seen = { messages: [], counts: [], errors: [] };
  env.r.inbox.onMessage((m) => seen.messages.push(m.id));
  env.r.inbox.onUnreadCount((n) => seen.counts.push(n));
  env.r.inbox.onError((e) => seen.errors.push(e));
  return Object.assign(env, { WS, state, seen, inbox: env.r.inbox });
}

const inboxGets = (fetch) => fetch.calls.filter((c) => c.method === "GET" && new URL(c.url).pathname === "/v1/inbox");

test("init with a userToken connects to wss://host/v1/inbox/ws?token=...", () => {
  const { WS, inbox } = inboxSetup();
  assert.equal(WS.instances.length, 1);
  assert.equal(WS.last().url, "wss://engage.example.com/v1/inbox/ws?token=tok%20en%2F1");
  assert.equal(inbox.state, "connecting");
  WS.last().serverOpen();
  assert.equal(inbox.state, "open");
});

test("http hosts use ws://", () => {
  const { WS } = inboxSetup({ init: { host: "http://localhost:8470" } });
  assert.equal(WS.last().url, "ws://localhost:8470/v1/inbox/ws?token=tok%20en%2F1");
});

test("hello sets the unread count; the first connection learns existing messages without emitting them", async () => {
  const { WS, inbox, seen, fetch } = inboxSetup({ messages: [msg("m2"), msg("m1")], unread: 2 });
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 2 });
  assert.equal(inbox.unreadCount, 2);
  assert.deepEqual(seen.counts, [2]);
  await settle();
  const gets = inboxGets(fetch);
  assert.equal(gets.length, 1);
  assert.equal(new URL(gets[0].url).search, "?limit=50");
  assert.equal(gets[0].headers.get("authorization"), "Bearer tok en/1");
  assert.deepEqual(seen.messages, [], "existing messages are not news");
});

test("message and unread_count frames reach the listeners; unsubscribe works", async () => {
  const { WS, inbox, seen } = inboxSetup();
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 0 });
  await settle();
  const got = [];
  const off = inbox.onMessage((m) => got.push(m));
  ws.serverSend({ type: "message", message: msg("m1") });
  ws.serverSend({ type: "unread_count", count: 1 });
  assert.equal(got.length, 1);
  assert.equal(got[0].title, "Title m1");
  assert.equal(inbox.unreadCount, 1);
  assert.deepEqual(seen.counts, [0, 1]);
  ws.serverSend({ type: "message", message: msg("m1") });
  assert.equal(got.length, 1, "the same message id is not emitted twice");
  off();
  ws.serverSend({ type: "message", message: msg("m2") });
  assert.equal(got.length, 1);
  assert.deepEqual(seen.messages, ["m1", "m2"]);
  ws.serverSend("not json");
  ws.serverSend({ type: "something_new" });
  assert.equal(inbox.state, "open", "unknown or broken frames are ignored");
});

test("a ping is sent every 25 s; a pong keeps the connection", async () => {
  const { WS, clock } = inboxSetup();
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 0 });
  await settle();
  await clock.tick(24_999);
  assert.deepEqual(ws.sent, []);
  await clock.tick(1);
  assert.deepEqual(ws.sent, [{ type: "ping" }]);
  ws.serverSend({ type: "pong" });
  await clock.tick(25_000);
  assert.deepEqual(ws.sent, [{ type: "ping" }, { type: "ping" }]);
  ws.serverSend({ type: "pong" });
  assert.equal(WS.instances.length, 1);
  assert.equal(ws.readyState, 1);
});

test("no answer to a ping: the socket is dropped and a reconnect scheduled", async () => {
  const { WS, clock, inbox } = inboxSetup();
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 0 });
  await settle();
  await clock.tick(25_000); // ping, no pong
  await clock.tick(25_000);
  assert.deepEqual(ws.closedWith, { code: 4000, reason: "heartbeat timeout" });
  assert.equal(inbox.state, "reconnecting");
  await clock.next();
  assert.equal(WS.instances.length, 2);
});

test("after a drop it reconnects with backoff and catches up only on messages not seen before", async () => {
  const { WS, clock, inbox, seen, fetch, state } = inboxSetup({ messages: [msg("m2"), msg("m1")] });
  let ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 2 });
  await settle();
  ws.serverSend({ type: "message", message: msg("m3") });
  assert.deepEqual(seen.messages, ["m3"]);

  ws.serverClose(1006);
  assert.equal(inbox.state, "reconnecting");
  assert.deepEqual(clock.delays(), [750], "1 s base with jitter (random=0.5)");
  await clock.tick(749);
  assert.equal(WS.instances.length, 1);
  await clock.tick(1);
  assert.equal(WS.instances.length, 2);

  // While we were away m4 and m5 arrived; m3, m2 and m1 were already known.
  state.messages = [msg("m5"), msg("m4"), msg("m3"), msg("m2"), msg("m1")];
  state.unread = 5;
  ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 5 });
  await settle();
  assert.equal(inboxGets(fetch).length, 2);
  assert.deepEqual(seen.messages, ["m3", "m4", "m5"], "only the missed ones, oldest first");
  assert.equal(inbox.unreadCount, 5);
});

test("repeated failures back off exponentially; a hello resets the backoff", async () => {
  const { WS, clock } = inboxSetup();
  const delays = [];
  for (let i = 0; i < 4; i++) {
    WS.last().serverClose(1006);
    delays.push(clock.delays()[0]);
    await clock.next();
  }
  assert.deepEqual(delays, [750, 1500, 3000, 6000]);
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 0 });
  await settle();
  ws.serverClose(1011);
  assert.equal(clock.delays().filter((d) => d !== 25_000)[0], 750);
});

test("close code 4401 means a bad token: error, no reconnect; setUserToken connects again", async () => {
  const { WS, clock, inbox, seen, r } = inboxSetup();
  WS.last().serverClose(4401, "bad token");
  assert.equal(inbox.state, "unauthorized");
  assert.equal(seen.errors.length, 1);
  assert.equal(seen.errors[0].code, "invalid_token");
  assert.equal(seen.errors[0].status, 401);
  assert.deepEqual(clock.delays(), []);
  await clock.tick(600_000);
  assert.equal(WS.instances.length, 1);
  r.setUserToken("fresh");
  assert.equal(WS.instances.length, 2);
  assert.equal(WS.last().url, "wss://engage.example.com/v1/inbox/ws?token=fresh");
});

test("disconnect() stops reconnecting", async () => {
  const { WS, clock, inbox } = inboxSetup();
  WS.last().serverOpen();
  inbox.disconnect();
  assert.equal(WS.last().closedWith.code, 1000);
  assert.equal(inbox.state, "closed");
  await clock.tick(600_000);
  assert.equal(WS.instances.length, 1);
});

test("a token function is asked for a token on each connection", async () => {
  let n = 0;
  const WS = fakeWebSocketClass();
  const { clock } = setup({ init: { userToken: async () => "t" + ++n, WebSocket: WS } });
  await settle();
  assert.equal(WS.last().url.endsWith("?token=t1"), true);
  WS.last().serverClose(1006);
  await clock.next();
  await settle();
  assert.equal(WS.instances.length, 2);
  assert.equal(WS.last().url.endsWith("?token=t2"), true);
});

test("list() passes limit, before and include_archived and returns the server's answer", async () => {
  const { inbox, fetch, state } = inboxSetup({ messages: [msg("m1")], unread: 1 });
  const r = await inbox.list({ limit: 10, before: "2026-11-26T07:00:00.000Z", includeArchived: true });
  const call = fetch.calls.at(-1);
  const u = new URL(call.url);
  assert.equal(u.pathname, "/v1/inbox");
  assert.deepEqual(Object.fromEntries(u.searchParams), { limit: "10", before: "2026-11-26T07:00:00.000Z", include_archived: "true" });
  assert.equal(call.headers.get("authorization"), "Bearer tok en/1");
  assert.deepEqual(r, { messages: state.messages, unread_count: 1 });
  assert.equal(inbox.unreadCount, 1);
  await inbox.list();
  assert.equal(new URL(fetch.calls.at(-1).url).search, "");
});

test("markRead, markAllRead and archive POST to their endpoints and update the count", async () => {
  const { inbox, fetch, seen } = inboxSetup({ messages: [msg("m 2"), msg("m1", { read_at: "2026-11-26T07:30:00.000Z" })], unread: 1 });
  await inbox.list();
  assert.equal(inbox.unreadCount, 1);
  await inbox.markRead("m 2");
  let call = fetch.calls.at(-1);
  assert.equal(call.method, "POST");
  assert.equal(call.url, "https://engage.example.com/v1/inbox/m%202/read");
  assert.equal(call.headers.get("authorization"), "Bearer tok en/1");
  assert.equal(inbox.unreadCount, 0, "optimistic decrement");
  await inbox.markRead("m1");
  assert.equal(inbox.unreadCount, 0, "reading a read message does not decrement");
  await inbox.archive("m1");
  call = fetch.calls.at(-1);
  assert.equal(call.url, "https://engage.example.com/v1/inbox/m1/archive");
  assert.equal(call.method, "POST");
  await inbox.markAllRead();
  call = fetch.calls.at(-1);
  assert.equal(call.url, "https://engage.example.com/v1/inbox/read-all");
  assert.equal(call.method, "POST");
  assert.deepEqual(seen.counts, [1, 0]);
});

test("markRead does not decrement twice when the server's count frame came first", async () => {
  let release;
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch((call) =>
    call.method === "GET"
      ? { status: 200, body: { messages: [msg("a"), msg("b")], unread_count: 2 } }
      : new Promise((resolve) => (release = () => resolve({ status: 200, body: {} })))
  );
  const { r } = setup({ fetch, init: { userToken: "t", WebSocket: WS } });
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 2 });
  await settle();
  const p = r.inbox.markRead("a");
  await settle();
  ws.serverSend({ type: "unread_count", count: 1 }); // the server is faster than the HTTP answer
  release();
  await p;
  assert.equal(r.inbox.unreadCount, 1);
});

test("REST errors reject with RetenshunError carrying status and code", async () => {
  const fetch = fakeFetch().respond({ status: 404, body: { error: { code: "not_found", message: "no inbox message m9" } } });
  const { r } = setup({ fetch, init: { userToken: "t", WebSocket: fakeWebSocketClass() } });
  const err = await r.inbox.markRead("m9").then(
    () => null,
    (e) => e
  );
  assert.ok(err instanceof sdk.RetenshunError);
  assert.equal(err.status, 404);
  assert.equal(err.code, "not_found");
  assert.equal(err.message, "no inbox message m9");
});

test("without a token the REST calls reject with no_user_token", async () => {
  const { r } = setup();
  await assert.rejects(r.inbox.list(), (e) => e.code === "no_user_token");
});

test("markRead falls back to the socket's read frame when HTTP is unreachable", async () => {
  const { WS, inbox, fetch } = inboxSetup();
  const ws = WS.last();
  ws.serverOpen();
  fetch.respond("network");
  await inbox.markRead("m1");
  assert.deepEqual(ws.sent, [{ type: "read", id: "m1" }]);
});

test("reset() disconnects the inbox and clears the count", async () => {
  const { WS, inbox, r, clock } = inboxSetup();
  const ws = WS.last();
  ws.serverOpen();
  ws.serverSend({ type: "hello", unread_count: 3 });
  await settle();
  r.reset();
  assert.equal(ws.readyState, 3);
  assert.equal(inbox.unreadCount, 0);
  await clock.tick(600_000);
  assert.equal(WS.instances.length, 1);
  await assert.rejects(inbox.list(), (e) => e.code === "no_user_token");
});

test("inbox: false in init keeps the socket closed until connect()", () => {
  const WS = fakeWebSocketClass();
  const { r } = setup({ init: { userToken: "t", WebSocket: WS, inbox: false } });
  assert.equal(WS.instances.length, 0);
  r.inbox.connect();
  assert.equal(WS.instances.length, 1);
});

test("a listener that throws does not break the others", async () => {
  const { WS, inbox, logger, seen } = inboxSetup();
  inbox.onMessage(() => {
    throw new Error("boom");
  });
  WS.last().serverOpen();
  WS.last().serverSend({ type: "message", message: msg("x") });
  assert.deepEqual(seen.messages, ["x"]);
  assert.equal(logger.errors.length, 1);
});

test("an unread_count in a REST answer is taken as the new count", async () => {
  const WS = fakeWebSocketClass();
  const fetch = fakeFetch((call) =>
    call.method === "GET" ? { status: 200, body: { messages: [msg("a")], unread_count: 7 } } : { status: 200, body: { unread_count: 4 } }
  );
  const { r } = setup({ fetch, init: { userToken: "t", WebSocket: WS } });
  await r.inbox.list();
  assert.equal(r.inbox.unreadCount, 7);
  await r.inbox.archive("a");
  assert.equal(r.inbox.unreadCount, 4, "the server's number, not a local guess");
});

// Browser SDK: event shape, batching, persistence, identity.
import test from "node:test";
import assert from "node:assert/strict";
import { setup, fakeWindow, memoryStorage, FakeClock, fakeFetch, START, settle } from "./fakes.test.mjs";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const BASIC = "Basic " + Buffer.from("pk_test_1:").toString("base64");

test("a tracked event is queued Segment-style with ids, timestamp and context", async () => {
  const win = fakeWindow();
  const { r, fetch } = setup({ init: { window: win, flushAt: 1 } });
  const ev = r.track("report_generated", { report_type: "weekly_summary" });
  await settle();
  assert.equal(fetch.calls.length, 1);
  const sent = fetch.calls[0].body.batch[0];
  assert.deepEqual(sent, ev);
  assert.equal(sent.type, "track");
  assert.equal(sent.event, "report_generated");
  assert.deepEqual(sent.properties, { report_type: "weekly_summary" });
  assert.match(sent.messageId, UUID);
  assert.match(sent.anonymousId, UUID);
  assert.equal(sent.timestamp, new Date(START).toISOString());
  assert.equal(sent.userId, undefined);
  assert.deepEqual(sent.context.page, {
    path: "/reports/weekly",
    referrer: "https://app.example.com/",
    search: "?tab=2",
    title: "Weekly report",
    url: "https://app.example.com/reports/weekly?tab=2",
  });
  assert.equal(sent.context.userAgent, "FakeBrowser/1.0");
  assert.equal(sent.context.locale, "de-CH");
  assert.equal(sent.context.timezone, Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.deepEqual(sent.context.library, { name: "retenshun.js", version: r.version });
});

test("batches go to POST /v1/batch with Basic auth, writeKey and sentAt", async () => {
  const { r, fetch, clock } = setup({ init: { flushAt: 3 } });
  r.track("a");
  r.track("b");
  await settle();
  assert.equal(fetch.calls.length, 0, "below flushAt and before flushInterval nothing is sent");
  await clock.tick(10);
  r.track("c");
  await settle();
  assert.equal(fetch.calls.length, 1);
  const call = fetch.calls[0];
  assert.equal(call.url, "https://engage.example.com/v1/batch");
  assert.equal(call.method, "POST");
  assert.equal(call.headers.get("authorization"), BASIC);
  assert.equal(call.headers.get("content-type"), "application/json");
  assert.equal(call.body.writeKey, "pk_test_1");
  assert.equal(call.body.sentAt, new Date(START + 10).toISOString());
  assert.deepEqual(
    call.body.batch.map((e) => e.event),
    ["a", "b", "c"]
  );
  assert.equal(call.init.keepalive, false);
});

test("a lone event is sent after flushInterval, not before", async () => {
  const { r, fetch, clock } = setup({ init: { flushInterval: 1000 } });
  r.track("lonely");
  await clock.tick(999);
  assert.equal(fetch.calls.length, 0);
  await clock.tick(1);
  assert.equal(fetch.calls.length, 1);
  assert.equal(fetch.calls[0].body.batch[0].event, "lonely");
  await clock.tick(60_000);
  assert.equal(fetch.calls.length, 1, "nothing left to send, no more requests");
});

test("the queue survives a reload and is sent with the same messageIds", async () => {
  const storage = memoryStorage();
  const first = setup({ storage, fetch: fakeFetch().respond("network", "network", "network") });
  const e1 = first.r.track("one");
  const e2 = first.r.identify("user_9", { plan: "pro" });
  await first.clock.tick(1000); // network error, retry scheduled
  assert.equal(first.fetch.calls.length, 1);
  first.r.shutdown(); // the page goes away

  const stored = JSON.parse(storage.getItem("retenshun:queue"));
  assert.deepEqual(stored.map((e) => e.messageId), [e1.messageId, e2.messageId]);

  const second = setup({ storage });
  await settle();
  assert.equal(second.fetch.calls.length, 1, "leftover events are flushed at init");
  assert.deepEqual(second.fetch.calls[0].body.batch.map((e) => e.messageId), [e1.messageId, e2.messageId]);
  assert.deepEqual(JSON.parse(storage.getItem("retenshun:queue")), []);
  assert.equal(second.r.user().userId, "user_9", "the user id is remembered too");
  assert.equal(second.r.user().anonymousId, e1.anonymousId);
});

test("anonymousId is generated once and kept; reset() makes a new one and forgets the user", async () => {
  const storage = memoryStorage();
  const a = setup({ storage });
  const anon = a.r.user().anonymousId;
  a.r.identify("user_1");
  a.r.shutdown();
  const b = setup({ storage });
  assert.equal(b.r.user().anonymousId, anon);
  assert.equal(b.r.user().userId, "user_1");
  b.r.reset();
  const after = b.r.user();
  assert.notEqual(after.anonymousId, anon);
  assert.equal(after.userId, null);
  assert.equal(storage.getItem("retenshun:anonymousId"), after.anonymousId);
  assert.equal(storage.getItem("retenshun:userId"), null);
  const ev = b.r.track("after_reset");
  assert.equal(ev.userId, undefined);
  assert.equal(ev.anonymousId, after.anonymousId);
});

test("identify sends userId and anonymousId together, and later events carry the userId", async () => {
  const { r } = setup();
  const anon = r.user().anonymousId;
  const id = r.identify("user_123", { plan: "pro", email: "a@example.com" });
  assert.equal(id.type, "identify");
  assert.equal(id.userId, "user_123");
  assert.equal(id.anonymousId, anon);
  assert.deepEqual(id.traits, { plan: "pro", email: "a@example.com" });
  const t = r.track("clicked");
  assert.equal(t.userId, "user_123");
  assert.equal(t.anonymousId, anon);
  const traitsOnly = r.identify({ name: "Ann" });
  assert.equal(traitsOnly.userId, "user_123");
  assert.deepEqual(traitsOnly.traits, { name: "Ann" });
});

test("init({userId}) sets the user", () => {
  const { r } = setup({ init: { userId: "user_42" } });
  assert.equal(r.track("x").userId, "user_42");
});

test("a user_id inside track properties is used as the event's userId and kept in properties", () => {
  const { r } = setup();
  r.identify("me");
  const ev = r.track("x", { user_id: "u1", n: 3 });
  assert.equal(ev.userId, "u1");
  assert.deepEqual(ev.properties, { user_id: "u1", n: 3 });
  assert.equal(r.user().userId, "me", "it does not change who the browser is");
  assert.equal(r.track("y", { user_id: 77 }).userId, "77");
});

test("page, alias and group build their Segment payloads", () => {
  const { r } = setup({ init: { window: fakeWindow() } });
  const p = r.page("Weekly", { extra: true });
  assert.equal(p.type, "page");
  assert.equal(p.name, "Weekly");
  assert.equal(p.properties.path, "/reports/weekly");
  assert.equal(p.properties.url, "https://app.example.com/reports/weekly?tab=2");
  assert.equal(p.properties.extra, true);
  assert.equal(p.properties.name, "Weekly");

  const anon = r.user().anonymousId;
  const a = r.alias("user_5");
  assert.deepEqual([a.type, a.userId, a.previousId], ["alias", "user_5", anon]);
  assert.equal(r.user().userId, "user_5");
  const a2 = r.alias("user_6");
  assert.equal(a2.previousId, "user_5");

  const g = r.group("team_1", { name: "Acme" });
  assert.deepEqual([g.type, g.groupId, g.userId], ["group", "team_1", "user_6"]);
  assert.deepEqual(g.traits, { name: "Acme" });
});

test("options override timestamp, messageId and context", () => {
  const { r } = setup();
  const ev = r.track("x", {}, { timestamp: new Date("2020-01-02T03:04:05.000Z"), messageId: "mid-1", context: { ip: "1.2.3.4" } });
  assert.equal(ev.timestamp, "2020-01-02T03:04:05.000Z");
  assert.equal(ev.messageId, "mid-1");
  assert.equal(ev.context.ip, "1.2.3.4");
  assert.equal(ev.context.library.name, "retenshun.js");
});

test("calls made before init are kept and sent after init", async () => {
  const clock = new FakeClock();
  const fetch = fakeFetch();
  const { sdk } = await import("./fakes.test.mjs");
  const r = sdk.createInstance();
  assert.equal(r.track("early", { a: 1 }), null);
  r.identify("early_user");
  r.init({ host: "https://e.example.com", writeKey: "pk_test_1", timers: clock, fetch, storage: memoryStorage(), window: null });
  await r.flush();
  assert.equal(fetch.calls.length, 1);
  const batch = fetch.calls[0].body.batch;
  assert.deepEqual(batch.map((e) => e.type), ["track", "identify"]);
  assert.equal(batch[0].event, "early");
  assert.equal(batch[1].userId, "early_user");
});

test("the queue is capped: the oldest events are dropped and it is logged once", async () => {
  const { r, logger, storage } = setup({ init: { maxQueueSize: 5, flushAt: 100 } });
  const ids = [];
  for (let i = 0; i < 8; i++) ids.push(r.track("e" + i).messageId);
  const queue = JSON.parse(storage.getItem("retenshun:queue"));
  assert.deepEqual(queue.map((e) => e.messageId), ids.slice(3));
  assert.equal(logger.warnings.filter((w) => w.includes("queue is full")).length, 1);
});

test("an event over 32 KB is dropped with a warning instead of poisoning a batch", () => {
  const { r, logger, storage } = setup();
  assert.equal(r.track("big", { blob: "x".repeat(33 * 1024) }), null);
  assert.equal(storage.getItem("retenshun:queue"), null);
  assert.ok(logger.warnings.some((w) => w.includes("32 KB")));
  assert.ok(r.track("small", { blob: "x".repeat(1000) }));
});

test("batches stay under 500 KB and 100 events; the rest goes in the next batch", async () => {
  const { r, fetch } = setup({ init: { flushAt: 1000 } });
  for (let i = 0; i < 40; i++) r.track("fat", { blob: "é".repeat(15000) }); // ~30 KB of UTF-8 each
  for (let i = 0; i < 150; i++) r.track("thin");
  await r.flush();
  const sizes = fetch.calls.map((c) => Buffer.byteLength(c.init.body));
  assert.ok(fetch.calls.length >= 4, "split into several requests, got " + fetch.calls.length);
  for (const s of sizes) assert.ok(s < 500_000, "batch of " + s + " bytes");
  for (const c of fetch.calls) assert.ok(c.body.batch.length <= 100);
  const all = fetch.calls.flatMap((c) => c.body.batch.map((e) => e.messageId));
  assert.equal(all.length, 190);
  assert.equal(new Set(all).size, 190, "each event sent exactly once");
});

test("a storage that throws (quota, disabled) does not break tracking", async () => {
  const broken = {
    getItem: () => {
      throw new Error("SecurityError");
    },
    setItem: () => {
      throw new Error("QuotaExceededError");
    },
    removeItem: () => {
      throw new Error("SecurityError");
    },
  };
  const { r, fetch } = setup({ storage: broken, init: { flushAt: 2 } });
  r.track("a");
  r.track("b");
  await settle();
  assert.equal(fetch.calls.length, 1);
  assert.deepEqual(fetch.calls[0].body.batch.map((e) => e.event), ["a", "b"]);
});

test("two tabs sharing localStorage do not overwrite each other's queued events", async () => {
  const storage = memoryStorage();
  const down = () => fakeFetch().respond("network", "network", "network", "network");
  const tab1 = setup({ storage, fetch: down(), init: { flushAt: 100 } });
  const tab2 = setup({ storage, fetch: down(), init: { flushAt: 100 } });
  tab1.r.track("from_tab1");
  tab2.r.track("from_tab2");
  tab1.r.track("again_tab1");
  const queue = JSON.parse(storage.getItem("retenshun:queue"));
  assert.deepEqual(queue.map((e) => e.event), ["from_tab1", "from_tab2", "again_tab1"]);
});

test("invalid calls warn instead of throwing into the app", () => {
  const { r, logger } = setup();
  assert.equal(r.track(""), null);
  assert.equal(r.group(null), null);
  assert.equal(r.alias(""), null);
  assert.equal(logger.warnings.length, 3);
});

test("init requires host and writeKey", async () => {
  const { sdk } = await import("./fakes.test.mjs");
  const r = sdk.createInstance();
  assert.throws(() => r.init({ writeKey: "pk" }), /host/);
  assert.throws(() => r.init({ host: "https://x" }), /writeKey/);
});

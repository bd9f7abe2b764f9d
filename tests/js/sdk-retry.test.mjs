// Browser SDK delivery: retry with backoff, Retry-After, 4xx drop, no duplicates, page hide.
import test from "node:test";
import assert from "node:assert/strict";
import { setup, fakeWindow, fakeFetch, settle, memoryStorage } from "./fakes.test.mjs";

const ids = (call) => call.body.batch.map((e) => e.messageId);

test("5xx is retried with exponential backoff and jitter, same messageIds, until 2xx", async () => {
  const fetch = fakeFetch().respond({ status: 500 }, { status: 502 }, "network", { status: 200, body: { success: true } });
  const { r, clock, storage } = setup({ fetch, init: { flushAt: 2 } });
  r.track("a");
  r.track("b");
  await settle();
  assert.equal(fetch.calls.length, 1);
  // random() = 0.5 -> delay = exp * 0.75 with exp = 1000, 2000, 4000
  assert.deepEqual(clock.delays(), [750]);
  await clock.tick(749);
  assert.equal(fetch.calls.length, 1, "not before the backoff delay");
  await clock.tick(1);
  assert.equal(fetch.calls.length, 2);
  assert.deepEqual(clock.delays(), [1500]);
  await clock.tick(1500);
  assert.equal(fetch.calls.length, 3);
  assert.deepEqual(clock.delays(), [3000]);
  await clock.tick(3000);
  assert.equal(fetch.calls.length, 4);
  const first = ids(fetch.calls[0]);
  for (const c of fetch.calls) assert.deepEqual(ids(c), first, "every retry carries the same messageIds");
  assert.deepEqual(JSON.parse(storage.getItem("retenshun:queue")), []);
  assert.deepEqual(clock.delays(), [], "nothing scheduled after success");
  await clock.tick(600_000);
  assert.equal(fetch.calls.length, 4, "never sent again once acknowledged");
});

test("jitter spreads the delay within [exp/2, exp]", async () => {
  for (const [random, expected] of [
    [0, 500],
    [0.999999, 1000],
  ]) {
    const fetch = fakeFetch().respond({ status: 503 });
    const { r, clock } = setup({ fetch, init: { flushAt: 1, random: () => random } });
    r.track("x");
    await settle();
    assert.deepEqual(clock.delays(), [expected]);
  }
});

test("backoff is capped", async () => {
  const fetch = fakeFetch().respond(...Array(20).fill({ status: 503 }));
  const { r, clock } = setup({ fetch, init: { flushAt: 1, random: () => 1 } });
  r.track("x");
  await settle();
  let last = 0;
  for (let i = 0; i < 15; i++) last = await clock.next();
  assert.equal(last, 5 * 60 * 1000);
});

test("429 honours Retry-After in seconds", async () => {
  const fetch = fakeFetch().respond({ status: 429, headers: { "retry-after": "7" }, body: { error: { code: "rate_limited", message: "slow down" } } });
  const { r, clock } = setup({ fetch, init: { flushAt: 1 } });
  r.track("x");
  await settle();
  assert.deepEqual(clock.delays(), [7000]);
  await clock.tick(6999);
  assert.equal(fetch.calls.length, 1);
  await clock.tick(1);
  assert.equal(fetch.calls.length, 2);
  assert.deepEqual(ids(fetch.calls[1]), ids(fetch.calls[0]));
});

test("Retry-After as an HTTP date is honoured too", async () => {
  const { START } = await import("./fakes.test.mjs");
  const at = new Date(START + 120_000).toUTCString();
  const fetch = fakeFetch().respond({ status: 503, headers: { "retry-after": at } });
  const { r, clock } = setup({ fetch, init: { flushAt: 1 } });
  r.track("x");
  await settle();
  assert.deepEqual(clock.delays(), [120_000]);
});

test("other 4xx drops the batch, logs once and does not retry", async () => {
  const err = (code) => ({ status: 400, body: { error: { code, message: "properties must be an object" } } });
  const fetch = fakeFetch().respond(err("invalid_properties"), err("invalid_properties"));
  const { r, clock, logger, storage } = setup({ fetch, init: { flushAt: 1 } });
  r.track("bad1");
  await settle();
  r.track("bad2");
  await settle();
  assert.equal(fetch.calls.length, 2);
  assert.deepEqual(clock.delays(), [], "no retry scheduled");
  assert.deepEqual(JSON.parse(storage.getItem("retenshun:queue")), []);
  const drops = logger.warnings.filter((w) => w.includes("HTTP 400"));
  assert.equal(drops.length, 1, "logged once, not per batch");
  assert.match(drops[0], /invalid_properties/);
  r.track("good");
  await settle();
  assert.equal(fetch.calls.length, 3);
  assert.equal(fetch.calls[2].body.batch[0].event, "good");
});

test("401 (bad writeKey) is dropped, not retried", async () => {
  const fetch = fakeFetch().respond({ status: 401, body: { error: { code: "invalid_key", message: "bad key" } } });
  const { r, clock } = setup({ fetch, init: { flushAt: 1 } });
  r.track("x");
  await settle();
  assert.deepEqual(clock.delays(), []);
  await clock.tick(3_600_000);
  assert.equal(fetch.calls.length, 1);
});

test("413 splits the batch instead of dropping it", async () => {
  const fetch = fakeFetch().respond({ status: 413 });
  const { r, storage } = setup({ fetch, init: { flushAt: 100 } });
  for (let i = 0; i < 4; i++) r.track("e" + i);
  await r.flush();
  assert.deepEqual(fetch.calls.map((c) => c.body.batch.length), [4, 2, 2]);
  assert.deepEqual(JSON.parse(storage.getItem("retenshun:queue")), []);
});

test("new events during a backoff wait for it instead of hammering the server", async () => {
  const fetch = fakeFetch().respond({ status: 503 });
  const { r, clock } = setup({ fetch, init: { flushAt: 1 } });
  r.track("first");
  await settle();
  r.track("second");
  r.track("third");
  await settle();
  assert.equal(fetch.calls.length, 1);
  await clock.next();
  assert.equal(fetch.calls.length, 2);
  assert.deepEqual(fetch.calls[1].body.batch.map((e) => e.event), ["first", "second", "third"]);
});

test("flush() sends now even during a backoff and resolves when done", async () => {
  const fetch = fakeFetch().respond("network");
  const { r, clock } = setup({ fetch, init: { flushAt: 1 } });
  r.track("x");
  await settle();
  assert.equal(clock.delays().length, 1);
  await r.flush();
  assert.equal(fetch.calls.length, 2);
  assert.deepEqual(clock.delays(), []);
});

test("only one request is in flight; nothing is sent twice while waiting for an answer", async () => {
  let release;
  const fetch = fakeFetch().respond(() => new Promise((resolve) => (release = resolve)).then(() => ({ status: 200, body: {} })));
  const { r, clock } = setup({ fetch, init: { flushAt: 1 } });
  r.track("a");
  await settle();
  r.track("b");
  await clock.tick(5000);
  assert.equal(fetch.calls.length, 1, "the second event waits for the first request");
  release();
  await settle();
  assert.equal(fetch.calls.length, 2);
  assert.deepEqual(fetch.calls[1].body.batch.map((e) => e.event), ["b"]);
});

test("visibilitychange to hidden flushes with keepalive", async () => {
  const win = fakeWindow();
  const { r, fetch, storage } = setup({ init: { window: win, flushAt: 50 } });
  r.track("before_leaving");
  win.hide();
  assert.equal(fetch.calls.length, 1, "the request starts synchronously in the handler");
  assert.equal(fetch.calls[0].init.keepalive, true);
  assert.equal(fetch.calls[0].body.writeKey, "pk_test_1");
  await settle();
  assert.deepEqual(JSON.parse(storage.getItem("retenshun:queue")), []);
});

test("pagehide flushes with keepalive and does not resend what is already in flight", async () => {
  const win = fakeWindow();
  const { r, fetch } = setup({ init: { window: win, flushAt: 50 } });
  r.track("x");
  win.hide();
  win.dispatchEvent(new Event("pagehide"));
  assert.equal(fetch.calls.length, 1, "the pagehide after visibilitychange does not duplicate the batch");
  r.track("y");
  win.dispatchEvent(new Event("pagehide"));
  assert.equal(fetch.calls.length, 2);
  assert.deepEqual(fetch.calls[1].body.batch.map((e) => e.event), ["y"]);
  assert.equal(fetch.calls[1].init.keepalive, true);
});

test("the page-hide flush stays within the 64 KB keepalive budget", async () => {
  const win = fakeWindow();
  const { r, fetch } = setup({ init: { window: win, flushAt: 500 } });
  for (let i = 0; i < 10; i++) r.track("fat", { blob: "x".repeat(20_000) });
  win.hide();
  assert.equal(fetch.calls.length, 1);
  assert.ok(Buffer.byteLength(fetch.calls[0].init.body) < 64 * 1024);
  assert.ok(fetch.calls[0].body.batch.length >= 1);
});

test("without keepalive fetch, page hide uses sendBeacon with the writeKey in the body; events stay queued", async () => {
  const beacons = [];
  const win = fakeWindow({ sendBeacon: (url, body) => (beacons.push({ url, body: JSON.parse(body) }), true) });
  const fetch = fakeFetch().respond(() => Promise.reject(new TypeError("keepalive quota")));
  const { r, storage } = setup({ fetch, init: { window: win, flushAt: 50 } });
  const ev = r.track("x");
  win.hide();
  await settle();
  assert.equal(beacons.length, 1);
  assert.equal(beacons[0].url, "https://engage.example.com/v1/batch");
  assert.equal(beacons[0].body.writeKey, "pk_test_1");
  assert.deepEqual(beacons[0].body.batch.map((e) => e.messageId), [ev.messageId]);
  // No 2xx was seen: the event is kept; a later send reuses the messageId and the server dedupes.
  assert.deepEqual(JSON.parse(storage.getItem("retenshun:queue")).map((e) => e.messageId), [ev.messageId]);
});

test("a failed page-hide flush schedules a retry if the page lives on", async () => {
  const win = fakeWindow();
  const fetch = fakeFetch().respond({ status: 503 });
  const { r, clock } = setup({ fetch, init: { window: win, flushAt: 50 } });
  r.track("x");
  win.hide();
  await settle();
  assert.deepEqual(clock.delays(), [750]);
  await clock.tick(750);
  assert.equal(fetch.calls.length, 2);
  assert.equal(fetch.calls[1].init.keepalive, false);
});

test("coming back online retries at once", async () => {
  const win = fakeWindow();
  const fetch = fakeFetch().respond("network");
  const { r } = setup({ fetch, init: { window: win, flushAt: 1 } });
  r.track("x");
  await settle();
  assert.equal(fetch.calls.length, 1);
  win.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(fetch.calls.length, 2);
});

test("shutdown removes the page listeners", async () => {
  const win = fakeWindow();
  const { r, fetch } = setup({ init: { window: win, flushAt: 50 } });
  r.track("x");
  r.shutdown();
  win.hide();
  win.dispatchEvent(new Event("pagehide"));
  assert.equal(fetch.calls.length, 0);
});

test("an event acknowledged in one page is not resent by the next", async () => {
  const storage = memoryStorage();
  const a = setup({ storage, init: { flushAt: 1 } });
  a.r.track("once");
  await settle();
  a.r.shutdown();
  const b = setup({ storage });
  await b.clock.tick(10_000);
  assert.equal(a.fetch.calls.length, 1);
  assert.equal(b.fetch.calls.length, 0);
});

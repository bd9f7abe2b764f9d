// The one SDK file loads as a classic script, as an ES module (browser-style and Node), and
// through require().
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import vm from "node:vm";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { SDK_PATH, SDK_DIR, FakeClock, fakeFetch, memoryStorage, settle } from "./fakes.test.mjs";

const source = fs.readFileSync(SDK_PATH, "utf8");
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function minimalWindow() {
  const sandbox = { localStorage: memoryStorage(), navigator: { userAgent: "VM/1", language: "fr-FR" } };
  sandbox.window = sandbox;
  sandbox.self = sandbox;
  return sandbox;
}

test("as a classic script it defines window.retenshun and works end to end", async () => {
  const win = minimalWindow();
  vm.runInNewContext(source, win, { filename: "retenshun.js" });
  const r = win.retenshun;
  assert.equal(typeof r, "object");
  for (const name of ["init", "track", "identify", "page", "alias", "group", "reset", "flush", "createClient"]) {
    assert.equal(typeof r[name], "function", name);
  }
  assert.equal(typeof r.inbox.onMessage, "function");
  assert.equal(typeof r.push.subscribe, "function");
  assert.equal(win.module, undefined);

  const fetch = fakeFetch();
  r.init({ host: "https://engage.example.com", writeKey: "pk_vm", timers: new FakeClock(), fetch, flushAt: 1 });
  const ev = r.track("loaded_as_script");
  await settle();
  assert.equal(fetch.calls.length, 1);
  assert.equal(fetch.calls[0].body.batch[0].messageId, ev.messageId);
  assert.match(ev.messageId, UUID, "a v4 id even without crypto.randomUUID");
  assert.equal(ev.context.locale, "fr-FR");
  assert.ok(win.localStorage.getItem("retenshun:anonymousId"), "window.localStorage is the default storage");
});

test("loading the script twice keeps the first instance", () => {
  const win = minimalWindow();
  vm.runInNewContext(source, win);
  const first = win.retenshun;
  vm.runInNewContext(source, win);
  assert.equal(win.retenshun, first);
});

test("the file contains no import/export syntax a classic script would choke on", () => {
  assert.doesNotThrow(() => new vm.Script(source));
  const wrapper = fs.readFileSync(path.join(SDK_DIR, "retenshun.mjs"), "utf8");
  assert.throws(() => new vm.Script(wrapper), SyntaxError, "the .mjs is a module, which is why it is separate");
});

test("as a browser ES module (no CommonJS), retenshun.mjs re-exports the API", async (t) => {
  // Copy both files under a "type": "module" package so Node evaluates retenshun.js with the
  // Module goal and no `module` binding — exactly what a browser does with <script type=module>.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "retenshun-esm-"));
  t.after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    delete globalThis.retenshun;
  });
  fs.writeFileSync(path.join(dir, "package.json"), '{"type": "module"}');
  fs.copyFileSync(SDK_PATH, path.join(dir, "retenshun.js"));
  fs.copyFileSync(path.join(SDK_DIR, "retenshun.mjs"), path.join(dir, "retenshun.mjs"));
  assert.equal(globalThis.retenshun, undefined);

  const mod = await import(pathToFileURL(path.join(dir, "retenshun.mjs")).href);
  assert.equal(typeof mod.default.init, "function");
  assert.equal(mod.default, globalThis.retenshun, "the module body also sets the global, like the script");
  assert.equal(mod.createClient, mod.default.createClient);
  assert.equal(mod.track, mod.default.track);
  assert.equal(mod.inbox, mod.default.inbox);

  // Named functions are bound: calling them detached works.
  const fetch = fakeFetch();
  mod.init({ host: "https://e.example.com", writeKey: "pk_esm", timers: new FakeClock(), fetch, storage: memoryStorage(), window: null, flushAt: 1 });
  mod.track("detached_call");
  await settle();
  assert.equal(fetch.calls[0].body.batch[0].event, "detached_call");

  const plain = await import(pathToFileURL(path.join(dir, "retenshun.js")).href);
  assert.equal(plain.default, undefined, "retenshun.js itself exports nothing as a module...");
  assert.equal(globalThis.retenshun, mod.default, "...but importing it for its effect gives the global");
});

test("in Node: require(), import of the .js (CommonJS named exports) and the .mjs agree", async () => {
  const require = createRequire(import.meta.url);
  const cjs = require(SDK_PATH);
  const viaJs = await import(pathToFileURL(SDK_PATH).href);
  const viaMjs = await import(pathToFileURL(path.join(SDK_DIR, "retenshun.mjs")).href);
  assert.equal(viaJs.default, cjs);
  assert.equal(viaJs.createClient, cjs.createClient);
  assert.equal(viaJs.init, cjs.init);
  assert.equal(viaMjs.default, cjs);
  assert.equal(viaMjs.createClient, cjs.createClient);
  assert.equal(typeof viaMjs.RetenshunError, "function");
  assert.equal(globalThis.retenshun, undefined, "CommonJS use does not touch globals");
});

test("<retenshun-inbox> is defined where customElements exists, and only once", () => {
  const defined = [];
  const win = minimalWindow();
  win.HTMLElement = class {};
  win.customElements = {
    get: (name) => defined.find((d) => d.name === name)?.cls,
    define: (name, cls) => defined.push({ name, cls }),
  };
  vm.runInNewContext(source, win);
  assert.equal(defined.length, 1);
  assert.equal(defined[0].name, "retenshun-inbox");
  assert.deepEqual([...defined[0].cls.observedAttributes], ["host", "token"]);
  assert.ok(defined[0].cls.prototype instanceof win.HTMLElement);
  delete win.retenshun; // a second copy of the SDK must not redefine the element
  vm.runInNewContext(source, win);
  assert.equal(defined.length, 1);
});

test("widget helpers: relative times and safe links", async () => {
  const require = createRequire(import.meta.url);
  const { relativeTime, safeUrl } = require(SDK_PATH)._util;
  const now = Date.parse("2026-11-26T08:00:00.000Z");
  assert.equal(relativeTime("2026-11-26T07:59:30.000Z", now), "just now");
  assert.equal(relativeTime("2026-11-26T07:57:00.000Z", now), "3m ago");
  assert.equal(relativeTime("2026-11-26T05:00:00.000Z", now), "3h ago");
  assert.equal(relativeTime("2026-11-24T08:00:00.000Z", now), "2d ago");
  assert.equal(relativeTime("not a date", now), "");
  assert.equal(safeUrl("/billing", "https://app.example.com/x"), "https://app.example.com/billing");
  assert.equal(safeUrl("https://example.com/a?b=1"), "https://example.com/a?b=1");
  assert.equal(safeUrl("javascript:alert(1)", "https://app.example.com/"), null);
  assert.equal(safeUrl("data:text/html,hi", "https://app.example.com/"), null);
  assert.equal(safeUrl("", "https://app.example.com/"), null);
});

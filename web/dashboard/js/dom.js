// Small DOM helpers. Text always goes in as text (never as HTML), so data from
// the API cannot inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected") el[k] = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// ---------------------------------------------------------------- formatting

export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtPercent(f, digits = 1) {
  if (f === null || f === undefined || Number.isNaN(f)) return "–";
  return (f * 100).toFixed(digits) + "%";
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms === 0) return "0 ms";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60_000) return (ms / 1000).toFixed(ms < 10_000 ? 2 : 1) + " s";
  if (ms < 3_600_000) return (ms / 60_000).toFixed(1) + " min";
  return (ms / 3_600_000).toFixed(1) + " h";
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtClock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso || "");
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function timeAgo(iso, now = Date.now()) {
  const t = typeof iso === "number" ? iso : Date.parse(iso);
  if (Number.isNaN(t)) return "–";
  const s = Math.round((now - t) / 1000);
  if (s < 0) return "in " + timeAgo(now + (now - t), now).replace(" ago", "");
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return m + " min ago";
  const hr = Math.round(m / 60);
  if (hr < 36) return hr + " h ago";
  const d = Math.round(hr / 24);
  if (d < 60) return d + " d ago";
  return new Date(t).toLocaleDateString();
}

export function timeEl(iso) {
  return h("time", { datetime: iso || "", title: fmtTime(iso) }, iso ? timeAgo(iso) : "–");
}

export function json(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch (_) {
    return String(value);
  }
}

export function compactJson(value, max = 140) {
  let s;
  try {
    s = JSON.stringify(value);
  } catch (_) {
    s = String(value);
  }
  if (s === undefined) return "";
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

// ---------------------------------------------------------------- components

export function badge(status, text) {
  return h("span", { class: "badge " + String(status || "").replace(/[^a-z_]/gi, "") }, text || status || "–");
}

// A message's status, with the reason (why it was suppressed or failed) under it.
export function statusCell(m) {
  return h("span", {}, badge(m.status), m.reason ? h("span", { class: "reason", title: m.reason }, m.reason) : null);
}

export function card(title, ...children) {
  const head = typeof title === "string" ? h("div", { class: "head" }, h("h2", {}, title)) : title;
  return h("section", { class: "card" }, head, ...children);
}

export function cardHead(title, ...right) {
  return h("div", { class: "head" }, h("h2", {}, title), h("span", { class: "spacer" }), ...right);
}

export function tile(label, value, sub, attrs) {
  return h("div", Object.assign({ class: "tile" }, attrs || {}), h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

export function loading(text = "Loading…") {
  return h("div", { class: "loading" }, text);
}

// Shown where the daemon does not have the endpoint a panel needs (yet).
export function unavailable(what, err) {
  return h("div", { class: "unavailable", "data-state": "unavailable" },
    h("strong", {}, what + " is not available on this daemon"),
    h("span", { class: "small" }, err && err.path ? `${err.method || "GET"} ${err.path} is not served by this version.` : "This version does not serve it."));
}

export function errorBanner(err) {
  const msg = err && err.message ? err.message : String(err);
  const code = err && err.code ? ` (${err.code})` : "";
  return h("div", { class: "banner error", role: "alert" }, msg + code);
}

// The right element for a failed load: "not available" for a missing endpoint,
// the error message otherwise.
export function failure(what, err) {
  return err && err.unavailable ? unavailable(what, err) : errorBanner(err);
}

export function table(columns, rows, opts = {}) {
  const thead = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class || "" }, c.label))));
  const tbody = h("tbody", {});
  for (const row of rows) {
    const tr = h("tr", { class: opts.onRow ? "clickable" : "" }, columns.map((c) => h("td", { class: c.class || "" }, c.cell(row))));
    if (opts.onRow) {
      tr.tabIndex = 0;
      tr.addEventListener("click", (e) => {
        if (e.target.closest("a, button, input, select")) return;
        opts.onRow(row, tr);
      });
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && e.target === tr) opts.onRow(row, tr);
      });
    }
    tbody.appendChild(tr);
  }
  const t = h("table", { class: "data" }, thead, tbody);
  return opts.wrap === false ? t : h("div", { class: "table-wrap" }, t);
}

// Toggles a detail row under ``tr`` with the content ``make()`` returns.
export function toggleDetail(tr, colspan, make) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("detail")) {
    next.remove();
    return;
  }
  const td = h("td", { colspan: String(colspan) });
  tr.after(h("tr", { class: "detail" }, td));
  Promise.resolve(make()).then((content) => replace(td, content), (err) => replace(td, errorBanner(err)));
}

export function tabs(names, onSelect, selected) {
  const bar = h("div", { class: "tabs", role: "tablist" });
  const buttons = names.map(([key, label]) => {
    const b = h("button", { type: "button", role: "tab", "aria-selected": String(key === selected), "data-tab": key }, label);
    b.addEventListener("click", () => {
      for (const o of buttons) o.setAttribute("aria-selected", String(o === b));
      onSelect(key);
    });
    return b;
  });
  bar.append(...buttons);
  return bar;
}

export function kv(obj) {
  const dl = h("dl", { class: "kv" });
  const keys = Object.keys(obj || {});
  if (!keys.length) return empty("None");
  for (const k of keys.sort()) {
    const v = obj[k];
    dl.append(h("dt", {}, k), h("dd", {}, v !== null && typeof v === "object" ? h("code", {}, compactJson(v, 400)) : String(v)));
  }
  return dl;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

export function download(filename, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function userLink(userId) {
  if (!userId) return h("span", { class: "muted" }, "–");
  return h("a", { href: "#/users/" + encodeURIComponent(userId) }, userId);
}

export function encodePath(s) {
  return encodeURIComponent(s);
}

// The visual workflow builder: an automation's steps drawn as a flow and edited
// in place. It edits the definition object itself (the API body), so fields it
// has no control for (variables, fallback, where, ...) survive a round trip.
import { compactJson, h, json, replace } from "./dom.js";
import { durationError } from "./durations.js";

export const STEP_KINDS = [
  ["wait", "Wait"],
  ["send", "Send a message"],
  ["wait_for", "Wait for an event"],
  ["if", "If / else"],
  ["webhook", "Call a webhook"],
];
const LABEL = Object.fromEntries(STEP_KINDS.map(([k, label]) => [k, label]));
// Small line icons (SVG paths on a 24 grid): no emoji font needed.
const ICONS = {
  trigger: "M13 2 4 14h7l-1 8 9-12h-7z",
  wait: "M12 7v5l3 2M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z",
  send: "M3 6h18v12H3zM3 7l9 6 9-6",
  wait_for: "M6 3h12M6 21h12M7 3c0 5 10 5 10 9s-10 4-10 9M17 3c0 5-10 5-10 9",
  if: "M6 3v6a6 6 0 0 0 6 6h6M6 9v12M15 12l3 3-3 3",
  webhook: "M10 14a4 4 0 0 0 6 0l3-3a4 4 0 0 0-6-6l-1 1M14 10a4 4 0 0 0-6 0l-3 3a4 4 0 0 0 6 6l1-1",
  unknown: "M12 17h.01M9 9a3 3 0 1 1 4 2.8c-.6.3-1 .9-1 1.6V14",
};

function icon(kind) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "2");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[kind] || ICONS.unknown);
  svg.appendChild(path);
  return svg;
}
const CHANNELS = [["email", "Email"], ["push", "Push"], ["in_app", "In-app"]];
const BRANCHES = { wait_for: [["if_happened", "if it happened", "yes"], ["if_not", "if not (timeout)", "no"]], if: [["then", "then", "yes"], ["else", "else", "no"]] };

export function kindOf(step) {
  if (step === null || typeof step !== "object" || Array.isArray(step)) return "unknown";
  for (const [k] of STEP_KINDS) if (k in step) return k;
  return "unknown";
}

export function newStep(kind, templates) {
  switch (kind) {
    case "wait":
      return { wait: "1h" };
    case "send": {
      const t = templates[0];
      const channel = t ? ["in_app", "email", "push"].find((c) => t[c]) || "in_app" : "in_app";
      return { send: { channel, template_id: t ? t.template_id : "" } };
    }
    case "wait_for":
      return { wait_for: "", timeout: "24h", if_happened: [], if_not: [] };
    case "if":
      return { if: { trait: "plan", op: "eq", value: "pro" }, then: [], else: [] };
    default:
      return { webhook: { url: "https://", body: {} } };
  }
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// Client-side checks, the same rules the daemon applies at save time; the
// daemon stays the authority (its 400 is shown at the step too).
export function validateSteps(steps, templates, listPath = "steps", out = new Map()) {
  if (!Array.isArray(steps)) {
    out.set(listPath, "must be a list of steps");
    return out;
  }
  if (steps.length > 100) out.set(listPath, "at most 100 steps per list");
  const byId = new Map(templates.map((t) => [t.template_id, t]));
  steps.forEach((step, i) => {
    const p = `${listPath}[${i}]`;
    const kind = kindOf(step);
    if (kind === "wait") {
      const e = durationError(step.wait);
      if (e) out.set(`${p}.wait`, e);
    } else if (kind === "send") {
      const s = step.send || {};
      const channels = typeof s.channel === "string" ? [s.channel] : Array.isArray(s.channel) ? s.channel : [];
      if (!channels.length) out.set(`${p}.send.channel`, "choose at least one channel");
      if (!s.template_id) out.set(`${p}.send.template_id`, "choose a template");
      else if (byId.size && !byId.has(s.template_id)) out.set(`${p}.send.template_id`, `no template "${s.template_id}"`);
      else if (byId.size) {
        const missing = channels.filter((c) => !byId.get(s.template_id)[c]);
        if (missing.length) out.set(`${p}.send.template_id`, `template "${s.template_id}" has no ${missing.join(", ")} content`);
      }
    } else if (kind === "wait_for") {
      if (!step.wait_for || typeof step.wait_for !== "string") out.set(`${p}.wait_for`, "name the event to wait for");
      const e = durationError(step.timeout);
      if (e) out.set(`${p}.timeout`, e);
      validateSteps(step.if_happened || [], templates, `${p}.if_happened`, out);
      validateSteps(step.if_not || [], templates, `${p}.if_not`, out);
    } else if (kind === "if") {
      if (!isObj(step.if)) out.set(`${p}.if`, "must be a segment condition object");
      validateSteps(step.then || [], templates, `${p}.then`, out);
      validateSteps(step.else || [], templates, `${p}.else`, out);
    } else if (kind === "webhook") {
      const w = step.webhook || {};
      if (typeof w.url !== "string" || !/^https?:\/\/[^/\s]+/.test(w.url)) out.set(`${p}.webhook.url`, "must be an http(s) URL");
    } else {
      out.set(p, "unknown step; use one of wait, send, wait_for, if, webhook");
    }
  });
  return out;
}

export class Builder {
  constructor({ def, templates, onChange }) {
    this.def = def;
    if (!Array.isArray(this.def.steps)) this.def.steps = [];
    this.templates = templates;
    this.onChange = onChange || (() => {});
    this.errors = new Map();
    this.errorEls = new Map();
    this.el = h("div", { class: "flow-canvas", "data-builder": "" });
    this.openMenu = null;
    this.onDocClick = (e) => {
      if (this.openMenu && !this.openMenu.contains(e.target)) this.closeMenu();
    };
    document.addEventListener("click", this.onDocClick, true);
    this.render();
  }

  destroy() {
    document.removeEventListener("click", this.onDocClick, true);
  }

  changed(structural) {
    if (structural) this.render();
    this.onChange();
  }

  render() {
    this.errorEls = new Map();
    const trigger = this.triggerNode();
    const flow = h("div", { class: "flow" }, trigger, this.list(this.def.steps, "steps", true));
    replace(this.el, flow);
    this.showErrors();
  }

  triggerNode() {
    const t = this.def.trigger || {};
    let summary = "no trigger yet";
    if (t.event) summary = `event “${t.event}”` + (t.where ? ` where ${compactJson(t.where, 60)}` : "");
    else if (t.segment_entered) summary = `enters segment “${t.segment_entered}”`;
    else if (t.segment_exited) summary = `leaves segment “${t.segment_exited}”`;
    else if (t.schedule) summary = `schedule “${t.schedule}” over segment “${t.segment || "?"}”`;
    const exits = (this.def.exit_on || []).length ? h("div", { class: "small muted" }, "exits on: ", this.def.exit_on.join(", ")) : null;
    const goal = this.def.goal && this.def.goal.event ? h("div", { class: "small muted" }, `goal: ${this.def.goal.event} within ${this.def.goal.within || "7d"}`) : null;
    const err = h("div", { class: "step-error", hidden: true });
    this.errorEls.set("trigger", err);
    return h("div", { class: "node trigger", "data-kind": "trigger" },
      h("div", { class: "kind" }, icon("trigger"), "Trigger"), h("div", { class: "body" }, h("div", { class: "summary" }, summary), exits, goal), err);
  }

  // One list of steps (the top level or a branch), with add buttons between.
  list(steps, listPath, top) {
    const col = h("div", { class: "flow", "data-list": listPath });
    col.append(this.edge(false), this.adder(steps, 0, listPath));
    steps.forEach((step, i) => {
      col.append(this.edge(true), this.node(step, steps, i, listPath), this.edge(false), this.adder(steps, i + 1, listPath));
    });
    const err = h("div", { class: "step-error", hidden: true });
    this.errorEls.set(listPath, err);
    col.append(err);
    if (top) col.append(this.edge(true), h("div", { class: "node exit", "data-kind": "exit" }, "End of the automation" + ((this.def.exit_on || []).length ? ` (or earlier on ${this.def.exit_on.join(", ")})` : "")));
    return col;
  }

  edge(arrow) {
    return h("div", { class: "edge" + (arrow ? " arrow" : "") });
  }

  adder(steps, index, listPath) {
    const wrap = h("div", { class: "add-step" });
    const button = h("button", { type: "button", title: "Add a step here", "aria-label": `Add a step at ${listPath}[${index}]`, "data-add": `${listPath}[${index}]` }, "+");
    button.addEventListener("click", (e) => {
      e.stopPropagation();
      if (this.openMenu && this.openMenu.parentElement === wrap) return this.closeMenu();
      this.closeMenu();
      const menu = h("div", { class: "add-menu", role: "menu" }, STEP_KINDS.map(([kind, label]) => h("button", {
        type: "button", role: "menuitem", "data-kind": kind,
        onclick: (ev) => {
          ev.stopPropagation();
          this.closeMenu();
          steps.splice(index, 0, newStep(kind, this.templates));
          this.changed(true);
          const added = this.el.querySelector(`[data-path="${listPath}[${index}]"] input, [data-path="${listPath}[${index}]"] select`);
          if (added) added.focus();
        },
      }, label)));
      wrap.append(menu);
      this.openMenu = menu;
      menu.querySelector("button").focus();
    });
    wrap.append(button);
    return wrap;
  }

  closeMenu() {
    if (this.openMenu) this.openMenu.remove();
    this.openMenu = null;
  }

  node(step, steps, i, listPath) {
    const path = `${listPath}[${i}]`;
    const kind = kindOf(step);
    const label = LABEL[kind] || "Unknown step";
    const tool = (label, text, disabled, fn) => h("button", { type: "button", title: label, "aria-label": `${label}: ${path}`, disabled, onclick: fn }, text);
    const tools = h("span", { class: "tools" },
      tool("Move up", "↑", i === 0, () => { [steps[i - 1], steps[i]] = [steps[i], steps[i - 1]]; this.changed(true); }),
      tool("Move down", "↓", i === steps.length - 1, () => { [steps[i + 1], steps[i]] = [steps[i], steps[i + 1]]; this.changed(true); }),
      tool("Remove", "✕", false, () => { steps.splice(i, 1); this.changed(true); }));
    const err = h("div", { class: "step-error", hidden: true });
    this.errorEls.set(path, err);
    const card = h("div", { class: `node ${kind}`, "data-path": path, "data-kind": kind },
      h("div", { class: "kind" }, icon(kind), label, h("span", { class: "spacer" }), tools),
      h("div", { class: "body" }, this.editor(kind, step, path)), err);
    if (!BRANCHES[kind]) return card;
    const branches = h("div", { class: "branches" }, BRANCHES[kind].map(([key, text, tone]) => {
      if (!Array.isArray(step[key])) step[key] = [];
      return h("div", { class: "branch", "data-branch": key },
        h("div", { class: "bconn top" }), h("span", { class: "branch-label " + tone }, text),
        this.list(step[key], `${path}.${key}`, false), h("div", { class: "fill" }), h("div", { class: "bconn bottom" }));
    }));
    return h("div", { class: "flow" }, card, this.edge(false), branches);
  }

  input(value, onInput, attrs = {}) {
    const el = h("input", { type: "text", value: value ?? "", ...attrs });
    el.addEventListener("input", () => {
      onInput(el.value);
      this.changed(false);
    });
    return el;
  }

  jsonArea(value, onValue, rows = 3, label) {
    const el = h("textarea", { rows: String(rows), "aria-label": label }, json(value ?? {}));
    const bad = h("div", { class: "field-error" });
    el.addEventListener("input", () => {
      try {
        onValue(JSON.parse(el.value));
        bad.textContent = "";
        this.changed(false);
      } catch (e) {
        bad.textContent = "Not valid JSON yet: " + e.message;
      }
    });
    return [el, bad];
  }

  editor(kind, step, path) {
    if (kind === "wait") {
      return h("label", { class: "field" }, "Wait for (e.g. 15m, 1h, 7d)", this.input(step.wait, (v) => (step.wait = v), { "data-field": `${path}.wait`, "aria-label": "Wait duration" }));
    }
    if (kind === "send") {
      const s = isObj(step.send) ? step.send : (step.send = {});
      const chosen = new Set(typeof s.channel === "string" ? [s.channel] : Array.isArray(s.channel) ? s.channel : []);
      const boxes = CHANNELS.map(([c, label]) => {
        const box = h("input", { type: "checkbox", checked: chosen.has(c), "data-channel": c });
        box.addEventListener("change", () => {
          if (box.checked) chosen.add(c);
          else chosen.delete(c);
          const list = CHANNELS.map(([x]) => x).filter((x) => chosen.has(x));
          s.channel = list.length === 1 ? list[0] : list;
          this.changed(false);
        });
        return h("label", { class: "check small" }, box, label);
      });
      const select = h("select", { "data-field": `${path}.send.template_id`, "aria-label": "Template" },
        h("option", { value: "" }, "— template —"),
        this.templates.map((t) => h("option", { value: t.template_id }, t.name && t.name !== t.template_id ? `${t.template_id} — ${t.name}` : t.template_id)));
      if (s.template_id && !this.templates.some((t) => t.template_id === s.template_id)) select.append(h("option", { value: s.template_id }, s.template_id + " (missing)"));
      select.value = s.template_id || "";
      select.addEventListener("change", () => {
        s.template_id = select.value;
        this.changed(false);
      });
      const extra = [];
      if (s.fallback) extra.push(h("div", { class: "small muted" }, `fallback: ${s.fallback.channel} (${s.fallback.template_id}) if unread after ${s.fallback.after}`));
      if (s.variables && Object.keys(s.variables).length) extra.push(h("div", { class: "small muted mono" }, "variables: " + compactJson(s.variables, 80)));
      return [h("div", { class: "row" }, boxes), select, ...extra];
    }
    if (kind === "wait_for") {
      return [
        h("label", { class: "field" }, "Event", this.input(step.wait_for, (v) => (step.wait_for = v), { "data-field": `${path}.wait_for`, placeholder: "order_completed", "aria-label": "Event to wait for" })),
        h("label", { class: "field" }, "At most (timeout)", this.input(step.timeout, (v) => (step.timeout = v), { "data-field": `${path}.timeout`, placeholder: "24h", "aria-label": "Timeout" })),
        step.where ? h("div", { class: "small muted mono" }, "where " + compactJson(step.where, 80)) : null,
      ];
    }
    if (kind === "if") {
      const [area, bad] = this.jsonArea(step.if, (v) => (step.if = v), 3, "Condition (segment condition JSON)");
      return [h("label", { class: "field" }, "Condition (segment condition)", area), bad];
    }
    if (kind === "webhook") {
      const w = isObj(step.webhook) ? step.webhook : (step.webhook = {});
      const [area, bad] = this.jsonArea(w.body, (v) => (w.body = v), 2, "Webhook body (JSON)");
      return [
        h("label", { class: "field" }, "URL", this.input(w.url, (v) => (w.url = v), { "data-field": `${path}.webhook.url`, "aria-label": "Webhook URL" })),
        h("label", { class: "field" }, "Body (JSON)", area), bad,
      ];
    }
    return h("pre", { class: "small" }, json(step));
  }

  // errors: Map("steps[1].send.template_id" -> message); each shown at the
  // closest step (or list) it belongs to.
  setErrors(errors) {
    this.errors = errors;
    this.showErrors();
  }

  showErrors() {
    for (const [, el] of this.errorEls) {
      el.hidden = true;
      el.textContent = "";
      el.closest(".node")?.classList.remove("has-error");
    }
    const unplaced = [];
    for (const [field, message] of this.errors) {
      const owner = this.ownerOf(field);
      if (!owner) {
        unplaced.push([field, message]);
        continue;
      }
      const el = this.errorEls.get(owner);
      const rest = field.slice(owner.length).replace(/^\./, "");
      el.textContent = (el.textContent ? el.textContent + " · " : "") + (rest ? `${rest}: ` : "") + message;
      el.hidden = false;
      el.closest(".node")?.classList.add("has-error");
    }
    return unplaced;
  }

  ownerOf(field) {
    let best = null;
    for (const key of this.errorEls.keys()) {
      if ((field === key || field.startsWith(key + ".") || field.startsWith(key + "[")) && (!best || key.length > best.length)) best = key;
    }
    return best;
  }
}

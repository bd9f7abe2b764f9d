// Automations: the list with on/off, and per automation the visual workflow
// builder, its runs, the holdout report, and the definition file.
import { get, post, put, qs } from "../api.js";
import { Builder, validateSteps } from "../builder.js";
import { groupedBars } from "../charts.js";
import {
  badge, cardHead, compactJson, debounce, download, empty, errorBanner, failure, fmtNumber, fmtPercent, h, loading,
  replace, table, tabs, timeEl, unavailable, userLink,
} from "../dom.js";
import { durationError } from "../durations.js";
import { liftReport, listOf, verdictClass } from "../normalize.js";
import { toJson, toToml } from "../toml.js";

// "steps[2].wait_for.timeout: must be ..." -> the field and the message.
const FIELD_MESSAGE = /^([A-Za-z_]+(?:\[\d+\]|\.[A-Za-z_]+)*)\s*:\s*(.*)$/s;

// The keys of an automation definition (the PUT body and the apply file).
const DEFINITION_KEYS = ["name", "description", "trigger", "steps", "exit_on", "goal", "holdout_percent", "frequency_cap", "quiet_hours", "enabled"];

export function definitionOf(body) {
  const src = body && typeof body.definition === "object" && body.definition ? { ...body.definition, enabled: body.enabled ?? body.definition.enabled } : body || {};
  const def = {};
  for (const k of DEFINITION_KEYS) if (src[k] !== undefined && src[k] !== null) def[k] = structuredClone(src[k]);
  return def;
}

export async function render(root, parts, query) {
  if (parts.length) return detail(root, parts[0], query);
  return list(root);
}

function triggerText(t) {
  if (!t) return "–";
  if (t.event) return `on ${t.event}`;
  if (t.segment_entered) return `enters ${t.segment_entered}`;
  if (t.segment_exited) return `leaves ${t.segment_exited}`;
  if (t.schedule) return `${t.schedule} over ${t.segment || "?"}`;
  return compactJson(t, 60);
}

function countSteps(steps) {
  let n = 0;
  for (const s of steps || []) {
    n++;
    for (const k of ["if_happened", "if_not", "then", "else"]) if (Array.isArray(s[k])) n += countSteps(s[k]);
  }
  return n;
}

async function list(root) {
  const out = h("div", {}, loading());
  const idInput = h("input", { type: "text", placeholder: "new_automation_id", required: true, pattern: "[A-Za-z0-9_.\\-]{1,128}", "aria-label": "New automation id" });
  root.append(
    h("div", { class: "topbar" }, h("h1", {}, "Automations"), h("span", { class: "spacer" }),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = "#/automations/" + encodeURIComponent(idInput.value.trim()) + "?new=1"; } },
        idInput, h("button", { class: "btn primary", type: "submit" }, "New automation"))),
    h("section", { class: "card" }, out));
  let rows;
  try {
    rows = listOf(await get("/v1/automations"), ["automations", "items", "data"]);
  } catch (err) {
    replace(out, failure("Automations", err));
    return;
  }
  if (!rows.length) return replace(out, empty("No automations yet. Create one here, with PUT /v1/automations/{id}, or with `retenshund apply`."));
  const banner = h("div", {});
  replace(out, banner, table([
    { label: "On", cell: (a) => toggle(a, banner) },
    { label: "Automation", cell: (a) => h("a", { href: "#/automations/" + encodeURIComponent(idOf(a)) }, h("strong", {}, definitionOf(a).name || idOf(a)), h("div", { class: "small muted mono" }, idOf(a))) },
    { label: "Trigger", cell: (a) => triggerText(definitionOf(a).trigger) },
    { label: "Steps", class: "right", cell: (a) => String(countSteps(definitionOf(a).steps)) },
    { label: "Holdout", class: "right", cell: (a) => (definitionOf(a).holdout_percent ? definitionOf(a).holdout_percent + "%" : "–") },
    { label: "Runs", class: "right", cell: (a) => runsCell(a) },
    { label: "Version", class: "right", cell: (a) => String(a.version ?? "") },
    { label: "Updated", cell: (a) => timeEl(a.updated_at) },
  ], rows));
}

function idOf(a) {
  return a.automation_id ?? a.id;
}

function runsCell(a) {
  const stats = a.stats || a.runs || a.counts;
  if (typeof stats === "number") return fmtNumber(stats);
  if (stats && typeof stats === "object") {
    const total = stats.total ?? stats.runs ?? Object.values(stats).filter((v) => typeof v === "number").reduce((x, y) => x + y, 0);
    return h("a", { href: `#/automations/${encodeURIComponent(idOf(a))}?tab=runs` }, fmtNumber(total));
  }
  return h("a", { href: `#/automations/${encodeURIComponent(idOf(a))}?tab=runs` }, "view");
}

function toggle(a, banner) {
  const id = idOf(a);
  const box = h("input", { type: "checkbox", checked: definitionOf(a).enabled !== false, "aria-label": `Enable ${id}`, "data-toggle": id });
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      const def = definitionOf(await get("/v1/automations/" + encodeURIComponent(id)));
      def.enabled = box.checked;
      await put("/v1/automations/" + encodeURIComponent(id), def);
      replace(banner, h("div", { class: "banner ok", role: "status" }, `${id} is now ${box.checked ? "on" : "off"}.`));
    } catch (err) {
      box.checked = !box.checked;
      replace(banner, errorBanner(err));
    } finally {
      box.disabled = false;
    }
  });
  return h("label", { class: "switch" }, box, h("span", {}));
}

// ---------------------------------------------------------------- one automation

async function detail(root, id, query) {
  const isNew = query.get("new") === "1";
  let body = null;
  try {
    body = await get("/v1/automations/" + encodeURIComponent(id));
  } catch (err) {
    if (!(err.status === 404 && !err.unavailable && isNew)) {
      root.append(h("div", { class: "topbar" }, h("a", { href: "#/automations", class: "crumbs" }, "Automations"), h("span", { class: "crumbs" }, "/"), h("h1", {}, id)),
        err.status === 404 && !err.unavailable ? h("div", { class: "banner warn" }, `No automation “${id}”.`) : failure("Automations", err));
      return;
    }
  }
  const def = body ? definitionOf(body) : { name: id, trigger: { event: "" }, steps: [], enabled: false };
  let templates = [];
  try {
    templates = (await get("/v1/templates")).templates || [];
  } catch (_) {
    /* the builder still works; template checks are skipped */
  }

  const cleanups = [];
  const status = h("span", { class: "muted small", "data-state": "save-status" }, body ? `version ${body.version ?? "?"}` : "not saved yet");
  const banner = h("div", {});
  const content = h("div", {});
  const title = h("h1", {}, def.name || id);
  root.append(
    h("div", { class: "topbar" }, h("a", { href: "#/automations", class: "crumbs" }, "Automations"), h("span", { class: "crumbs" }, "/"), title, h("span", { class: "muted mono small" }, id),
      h("span", { class: "spacer" }), status),
    banner,
    tabs([["workflow", "Workflow"], ["runs", "Runs"], ["report", "Holdout report"], ["file", "Definition file"]], (k) => show(k), query.get("tab") || "workflow"),
    content);

  let current = null;
  let builder = null;
  function show(tab) {
    while (cleanups.length) cleanups.pop()();
    current = tab;
    replace(content);
    if (tab === "runs") return runs(content, id);
    if (tab === "report") return report(content, id, cleanups);
    if (tab === "file") return file(content, id, def);
    builder = workflow(content, id, def, templates, { status, banner, title, onSaved: (saved) => { body = saved; } });
    cleanups.push(() => builder.destroy());
  }
  show(query.get("tab") || "workflow");
  return () => {
    while (cleanups.length) cleanups.pop()();
    void current;
  };
}

function workflow(content, id, def, templates, ui) {
  const settingsErrors = new Map();
  const fieldErr = (key) => {
    const el = h("div", { class: "field-error", "data-error-for": key });
    settingsErrors.set(key, el);
    return el;
  };
  const saveBtn = h("button", { class: "btn primary", type: "button", "data-action": "save" }, "Save");
  const dirtyNote = h("span", { class: "muted small" });

  const builder = new Builder({
    def, templates, onChange: () => {
      dirtyNote.textContent = "unsaved changes";
      builder.setErrors(localErrors(true));
      checkWithDaemon();
    },
  });

  // The daemon's own check (POST /v1/automations/{id}/validate, a dry run of
  // PUT), a moment after each change; local checks cover daemons without it.
  let serverError = null;
  let validateAvailable = true;
  let checkSeq = 0;
  const checkWithDaemon = debounce(async () => {
    if (!validateAvailable) return;
    const mine = ++checkSeq;
    try {
      await post(`/v1/automations/${encodeURIComponent(id)}/validate`, def);
      serverError = null;
    } catch (err) {
      if (err.unavailable) {
        validateAvailable = false;
        return;
      }
      const m = err.status === 400 ? FIELD_MESSAGE.exec(err.message || "") : null;
      serverError = m ? [m[1], m[2]] : null;
    }
    if (mine !== checkSeq) return;
    const errors = localErrors(true);
    if (serverError && !errors.has(serverError[0]) && (serverError[0] !== "trigger" && !serverError[0].startsWith("trigger.") || triggerMain.value.trim())) {
      errors.set(serverError[0], serverError[1]);
      showSettingsErrors(errors);
    }
    builder.setErrors(errors);
  }, 400);

  // -- settings
  const t = def.trigger || (def.trigger = { event: "" });
  const triggerKind = h("select", { "aria-label": "Trigger type" },
    [["event", "An event"], ["segment_entered", "Enters a segment"], ["segment_exited", "Leaves a segment"], ["schedule", "A schedule over a segment"]].map(([v, l]) => h("option", { value: v }, l)));
  triggerKind.value = t.schedule !== undefined ? "schedule" : t.segment_entered !== undefined ? "segment_entered" : t.segment_exited !== undefined ? "segment_exited" : "event";
  const triggerMain = h("input", { type: "text", "aria-label": "Trigger value" });
  const triggerSegment = h("input", { type: "text", placeholder: "segment id", "aria-label": "Schedule segment" });
  const where = h("textarea", { rows: "2", placeholder: '{"properties.total": {"gt": 50}}', "aria-label": "Where (JSON)" }, t.where ? JSON.stringify(t.where) : "");
  const syncTriggerInputs = () => {
    const k = triggerKind.value;
    triggerMain.value = (k === "schedule" ? t.schedule : t[k]) ?? "";
    triggerMain.placeholder = k === "event" ? "cart_abandoned" : k === "schedule" ? "0 9 * * 1" : "segment id";
    triggerSegment.value = t.segment ?? "";
    triggerSegment.parentElement && (triggerSegment.parentElement.hidden = k !== "schedule");
    where.parentElement && (where.parentElement.hidden = k !== "event");
  };
  const writeTrigger = () => {
    const k = triggerKind.value;
    for (const key of ["event", "segment_entered", "segment_exited", "schedule", "segment"]) if (key !== k) delete t[key];
    if (k !== "event") delete t.where;
    t[k] = triggerMain.value.trim();
    if (k === "schedule") t.segment = triggerSegment.value.trim();
    edited(true);
  };
  triggerKind.addEventListener("change", () => { writeTrigger(); syncTriggerInputs(); });
  triggerMain.addEventListener("input", writeTrigger);
  triggerSegment.addEventListener("input", writeTrigger);
  const whereErr = fieldErr("trigger.where");
  where.addEventListener("input", () => {
    if (!where.value.trim()) { delete t.where; whereErr.textContent = ""; edited(true); return; }
    try { t.where = JSON.parse(where.value); whereErr.textContent = ""; edited(true); } catch (e) { whereErr.textContent = "Not valid JSON yet: " + e.message; }
  });

  const text = (value, onInput, attrs) => {
    const el = h("input", { type: "text", value: value ?? "", ...attrs });
    el.addEventListener("input", () => { onInput(el.value); edited(true); });
    return el;
  };
  const name = text(def.name, (v) => { def.name = v; ui.title.textContent = v || id; }, { "aria-label": "Name" });
  const enabled = h("input", { type: "checkbox", checked: def.enabled !== false, "aria-label": "Enabled" });
  enabled.addEventListener("change", () => { def.enabled = enabled.checked; edited(false); });
  const exitOn = text((def.exit_on || []).join(", "), (v) => { const l = v.split(",").map((s) => s.trim()).filter(Boolean); if (l.length) def.exit_on = l; else delete def.exit_on; }, { placeholder: "order_completed, unsubscribed", "aria-label": "Exit on events" });
  const goalEvent = text(def.goal?.event, (v) => { if (v.trim()) def.goal = { ...(def.goal || {}), event: v.trim() }; else delete def.goal; }, { placeholder: "order_completed", "aria-label": "Goal event" });
  const goalWithin = text(def.goal?.within, (v) => { if (def.goal) { if (v.trim()) def.goal.within = v.trim(); else delete def.goal.within; } }, { placeholder: "7d", "aria-label": "Goal window" });
  const holdout = h("input", { type: "number", min: "0", max: "100", step: "1", value: def.holdout_percent ?? 0, "aria-label": "Holdout percent" });
  holdout.addEventListener("input", () => { const v = Number(holdout.value); if (holdout.value === "" || v === 0) delete def.holdout_percent; else def.holdout_percent = v; edited(true); });
  const capMax = h("input", { type: "number", min: "1", step: "1", value: def.frequency_cap?.max ?? "", placeholder: "max", "aria-label": "Frequency cap: entries" });
  const capPer = text(def.frequency_cap?.per, () => null, { placeholder: "per, e.g. 7d", "aria-label": "Frequency cap: period" });
  const writeCap = () => { if (capMax.value === "" && !capPer.value.trim()) delete def.frequency_cap; else def.frequency_cap = { max: Number(capMax.value), per: capPer.value.trim() }; edited(true); };
  capMax.addEventListener("input", writeCap);
  capPer.addEventListener("input", writeCap);
  const quietStart = text(def.quiet_hours?.start, () => null, { placeholder: "21:00", "aria-label": "Quiet hours start" });
  const quietEnd = text(def.quiet_hours?.end, () => null, { placeholder: "08:00", "aria-label": "Quiet hours end" });
  const writeQuiet = () => { if (!quietStart.value.trim() && !quietEnd.value.trim()) delete def.quiet_hours; else def.quiet_hours = { ...(def.quiet_hours || {}), start: quietStart.value.trim(), end: quietEnd.value.trim() }; edited(true); };
  quietStart.addEventListener("input", writeQuiet);
  quietEnd.addEventListener("input", writeQuiet);

  const field = (label, input, key) => h("label", { class: "field" }, label, input, key ? fieldErr(key) : null);
  const settings = h("section", { class: "card settings", "data-panel": "settings" },
    cardHead("Settings", h("label", { class: "switch", title: "Enabled" }, enabled, h("span", {}))),
    h("div", { class: "stack" },
      field("Name", name, "name"),
      h("fieldset", {}, h("legend", {}, "Trigger"), h("div", { class: "stack" }, triggerKind, field("", triggerMain, "trigger"), h("label", { class: "field" }, "Segment", triggerSegment, fieldErr("trigger.segment")), h("label", { class: "field" }, "Where (JSON, optional)", where, whereErr))),
      h("fieldset", {}, h("legend", {}, "Exit and goal"), h("div", { class: "stack" }, field("Exit when one of these events happens", exitOn, "exit_on"), h("div", { class: "row" }, field("Goal event", goalEvent, "goal.event"), field("within", goalWithin, "goal.within")))),
      h("fieldset", {}, h("legend", {}, "Guards"), h("div", { class: "stack" },
        field("Holdout (% of users who get nothing, for the lift report)", holdout, "holdout_percent"),
        h("div", { class: "row" }, field("Frequency cap: at most", capMax, "frequency_cap.max"), field("entries per", capPer, "frequency_cap.per")),
        h("div", { class: "row" }, field("Quiet hours from", quietStart, "quiet_hours.start"), field("to", quietEnd, "quiet_hours.end")),
        h("div", { class: "small muted" }, "Quiet hours use each user's timezone trait; sends are deferred, not dropped.")))));

  content.append(
    h("div", { class: "row", style: "margin-bottom:12px" }, saveBtn, dirtyNote, h("span", { class: "spacer", style: "flex:1" }),
      h("button", { class: "btn", type: "button", onclick: () => download(`${id}.json`, toJson(def)) }, "Export JSON"),
      h("button", { class: "btn", type: "button", onclick: () => download(`${id}.toml`, toToml(def, `retenshun automation "${id}": retenshund apply <dir> reads this file`), "application/toml") }, "Export TOML")),
    h("div", { class: "builder" }, builder.el, settings));
  syncTriggerInputs();

  function edited(rerenderTrigger) {
    dirtyNote.textContent = "unsaved changes";
    if (rerenderTrigger) builder.render();
    builder.setErrors(localErrors(true));
    checkWithDaemon();
  }

  // The daemon's rules, checked here first (quietly while typing).
  function localErrors(quiet) {
    const errors = validateSteps(def.steps || [], templates);
    const tk = triggerKind.value;
    if (!quiet && !(tk === "schedule" ? t.schedule : t[tk])) {
      errors.set("trigger", tk === "event" ? "name the event that starts a run" : tk === "schedule" ? "a cron expression like \"0 9 * * 1\"" : "name the segment");
    }
    if (tk === "schedule" && !t.segment) errors.set("trigger.segment", "a schedule runs over a segment: name its id");
    if (def.goal && def.goal.within) { const e = durationError(def.goal.within); if (e) errors.set("goal.within", e); }
    if (def.frequency_cap) {
      if (!Number.isInteger(def.frequency_cap.max) || def.frequency_cap.max < 1) errors.set("frequency_cap.max", "a whole number, at least 1");
      const e = durationError(def.frequency_cap.per);
      if (e) errors.set("frequency_cap.per", e);
    }
    if (def.quiet_hours) for (const k of ["start", "end"]) if (!/^([01]\d|2[0-3]):[0-5]\d$/.test(def.quiet_hours[k] || "")) errors.set(`quiet_hours.${k}`, 'a time like "21:00"');
    if (def.holdout_percent !== undefined && !(def.holdout_percent >= 0 && def.holdout_percent <= 100)) errors.set("holdout_percent", "a number from 0 to 100");
    showSettingsErrors(errors);
    return errors;
  }

  function showSettingsErrors(errors) {
    for (const [key, el] of settingsErrors) if (key !== "trigger.where" || !el.textContent.startsWith("Not valid")) el.textContent = "";
    for (const [key, msg] of errors) {
      const el = settingsErrors.get(key) || settingsErrors.get(key.split(".")[0]);
      if (el && !key.startsWith("steps")) el.textContent = msg;
    }
  }

  saveBtn.addEventListener("click", async () => {
    const errors = localErrors(false);
    builder.setErrors(errors);
    if (errors.size) {
      replace(ui.banner, h("div", { class: "banner error", role: "alert" }, `Fix ${errors.size} problem${errors.size === 1 ? "" : "s"} first (shown at the steps and settings).`));
      return;
    }
    saveBtn.disabled = true;
    try {
      const saved = await put("/v1/automations/" + encodeURIComponent(id), def);
      ui.onSaved(saved);
      dirtyNote.textContent = "";
      ui.status.textContent = `version ${saved && saved.version !== undefined ? saved.version : "saved"}`;
      replace(ui.banner, h("div", { class: "banner ok", role: "status" }, `Saved ${id}${saved && saved.version ? ` as version ${saved.version}` : ""}.`));
      if (location.hash.includes("new=1")) history.replaceState(null, "", "#/automations/" + encodeURIComponent(id));
    } catch (err) {
      // "steps[2].wait_for.timeout: ..." -> at that step.
      const m = FIELD_MESSAGE.exec(err.message || "");
      if (err.status === 400 && m) {
        const errors = new Map([[m[1], m[2]]]);
        let placed;
        if (m[1].startsWith("steps")) placed = builder.setErrors(errors).length === 0;
        else {
          showSettingsErrors(errors);
          placed = settingsErrors.has(m[1]) || settingsErrors.has(m[1].split(".")[0]);
        }
        replace(ui.banner, h("div", { class: "banner error", role: "alert" }, (placed ? "The daemon refused the definition (marked below): " : "The daemon refused the definition: ") + err.message));
      } else replace(ui.banner, errorBanner(err));
    } finally {
      saveBtn.disabled = false;
    }
  });

  return builder;
}

async function runs(content, id) {
  const userInput = h("input", { type: "search", placeholder: "Only this user id", "aria-label": "Filter runs by user" });
  const out = h("div", {}, loading());
  content.append(h("section", { class: "card" }, h("div", { class: "row", style: "margin-bottom:12px" }, userInput), out));
  async function load() {
    replace(out, loading());
    try {
      const body = await get(`/v1/automations/${encodeURIComponent(id)}/runs` + qs({ user_id: userInput.value.trim() }));
      const rows = listOf(body, ["runs", "items", "data"]);
      if (!rows.length) return replace(out, empty("No runs yet: nobody has triggered this automation."));
      replace(out, table([
        { label: "Started", cell: (r) => timeEl(r.started_at) },
        { label: "User", cell: (r) => userLink(r.user_id) },
        { label: "Status", cell: (r) => badge(r.status, r.reason ? `${r.status}: ${r.reason}` : r.holdout ? `${r.status} (holdout)` : r.status) },
        { label: "At step", cell: (r) => h("span", { class: "mono small" }, Array.isArray(r.position) ? r.position.join(".") : String(r.position ?? "")) },
        { label: "Waiting", cell: (r) => (r.waiting_for ? `for ${r.waiting_for}` : r.wait_until ? h("span", {}, "until ", timeEl(r.wait_until)) : "–") },
        { label: "Goal", cell: (r) => (r.goal_at ? timeEl(r.goal_at) : "–") },
        { label: "Run", cell: (r) => h("span", { class: "mono small muted" }, r.run_id || "") },
      ], rows));
    } catch (err) {
      replace(out, failure("Automation runs", err));
    }
  }
  userInput.addEventListener("change", load);
  await load();
}

async function report(content, id, cleanups) {
  const out = h("div", { "data-panel": "report" }, loading());
  content.append(out);
  let r;
  try {
    r = liftReport(await get(`/v1/automations/${encodeURIComponent(id)}/report`));
  } catch (err) {
    replace(out, err.unavailable ? unavailable("The holdout report", err) : failure("The holdout report", err));
    return;
  }
  const verdict = r.verdict || "no verdict";
  const ci = r.ciLow !== null && r.ciHigh !== null ? ` (95% CI ${fmtPoints(r.ciLow)} to ${fmtPoints(r.ciHigh)})` : "";
  const convEl = h("div", { class: "chart", "data-chart": "conversion" });
  const hasRetention = r.retention.some((x) => x.treated !== null || x.holdout !== null);
  const retEl = h("div", { class: "chart", "data-chart": "retention" });
  replace(out,
    h("div", { class: "verdict " + verdictClass(verdict), "data-verdict": verdict, style: "margin-bottom:16px" },
      h("div", {}, h("div", { class: "big" }, verdict.charAt(0).toUpperCase() + verdict.slice(1)),
        h("div", {}, r.lift !== null ? `Absolute lift ${fmtPoints(r.lift)}${ci}` : "No lift estimate yet", r.pValue !== null ? ` · ${r.pValue < 0.001 ? "p < 0.001" : "p = " + r.pValue.toFixed(3)}` : ""),
        r.explanation ? h("div", { class: "small", style: "margin-top:4px" }, r.explanation) : null)),
    h("div", { class: "grid cols-2" },
      h("section", { class: "card" }, cardHead("Goal conversion", h("span", { class: "legend-note" }, "treated vs held out")), convEl,
        h("table", { class: "data", style: "margin-top:10px" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "right" }, "Users"), h("th", { class: "right" }, "Converted"), h("th", { class: "right" }, "Rate"))),
          h("tbody", {}, [["Treated", r.treated], ["Holdout", r.holdout]].map(([label, g]) => h("tr", {}, h("td", {}, label), h("td", { class: "right" }, fmtNumber(g.users)), h("td", { class: "right" }, fmtNumber(g.converted)), h("td", { class: "right" }, fmtPercent(g.rate)))))),
        ciBar(r)),
      h("section", { class: "card" }, cardHead("Retention", h("span", { class: "legend-note" }, "active on day 7, 14 and 30 or later")), hasRetention ? retEl : empty("No retention figures yet: users count once they entered 7, 14 or 30 days ago."))));
  cleanups.push(groupedBars(convEl, {
    groups: ["conversion rate"],
    series: [{ label: "treated", color: "#4f46e5" }, { label: "holdout", color: "#9ca3af" }],
    values: [[r.treated.rate ?? 0], [r.holdout.rate ?? 0]],
    yFormat: (v) => fmtPercent(v, 1),
    height: 200,
  }).destroy);
  if (hasRetention) {
    cleanups.push(groupedBars(retEl, {
      groups: r.retention.map((x) => "day " + x.day),
      series: [{ label: "treated", color: "#4f46e5" }, { label: "holdout", color: "#9ca3af" }],
      values: [r.retention.map((x) => x.treated), r.retention.map((x) => x.holdout)],
      yFormat: (v) => fmtPercent(v, 0),
      height: 200,
    }).destroy);
  }
}

function fmtPoints(f) {
  if (f === null || f === undefined) return "–";
  const p = f * 100;
  return (p > 0 ? "+" : "") + p.toFixed(1) + " pts";
}

// The lift's 95% interval on a line through zero.
function ciBar(r) {
  if (r.lift === null || r.ciLow === null || r.ciHigh === null) return null;
  const span = Math.max(Math.abs(r.ciLow), Math.abs(r.ciHigh), 0.01) * 1.2;
  const pos = (v) => `${50 + (v / span) * 50}%`;
  return h("div", { style: "margin-top:16px" }, h("h3", {}, "Absolute lift, 95% confidence interval"),
    h("div", { style: "position:relative;height:34px;border-bottom:1px solid var(--border)" },
      h("div", { style: `position:absolute;left:50%;top:0;bottom:0;border-left:1px dashed #9ca3af` }),
      h("div", { style: `position:absolute;left:${pos(r.ciLow)};width:calc(${pos(r.ciHigh)} - ${pos(r.ciLow)});top:14px;height:6px;background:#c7d2fe;border-radius:3px` }),
      h("div", { style: `position:absolute;left:calc(${pos(r.lift)} - 6px);top:11px;width:12px;height:12px;border-radius:50%;background:#4f46e5` })),
    h("div", { class: "row small muted", style: "justify-content:space-between" }, h("span", {}, fmtPoints(-span)), h("span", {}, "0"), h("span", {}, fmtPoints(span))));
}

function file(content, id, def) {
  const json = toJson(def);
  const toml = toToml(def, `retenshun automation "${id}": retenshund apply <dir> reads this file`);
  let which = "toml";
  const pre = h("pre", { "data-export": "toml" }, toml);
  content.append(h("section", { class: "card export" },
    cardHead("The file `retenshund apply` reads", h("span", { class: "legend-note" }, `save it as automations/${id}.toml (or .json) in your repository`)),
    h("div", { class: "row", style: "margin-bottom:10px" },
      h("button", { class: "btn small", type: "button", onclick: () => { which = "toml"; pre.textContent = toml; pre.dataset.export = "toml"; } }, "TOML"),
      h("button", { class: "btn small", type: "button", onclick: () => { which = "json"; pre.textContent = json; pre.dataset.export = "json"; } }, "JSON"),
      h("span", { style: "flex:1" }),
      h("button", { class: "btn", type: "button", onclick: () => download(`${id}.${which}`, which === "toml" ? toml : json, which === "toml" ? "application/toml" : "application/json") }, "Download")),
    pre,
    h("p", { class: "note" }, "Same shape as the body of PUT /v1/automations/{id}: what you change here and what you apply from code round-trip.")));
}

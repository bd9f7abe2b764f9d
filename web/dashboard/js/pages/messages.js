// Messages log with filters (GET /v1/messages?status=&channel=&template_id=).
import { get, qs } from "../api.js";
import { empty, failure, fmtMs, h, loading, replace, statusCell, table, timeEl, toggleDetail, userLink } from "../dom.js";
import { CHANNELS, STATUSES } from "../normalize.js";
import { messageHistory } from "./users.js";

export async function render(root, _parts, query) {
  const status = h("select", { "aria-label": "Status", name: "status" }, h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  const channel = h("select", { "aria-label": "Channel", name: "channel" }, h("option", { value: "" }, "any channel"), CHANNELS.map((c) => h("option", { value: c }, c)));
  const template = h("select", { "aria-label": "Template", name: "template_id" }, h("option", { value: "" }, "any template"));
  const automation = h("input", { type: "search", name: "automation_id", placeholder: "Automation id", "aria-label": "Automation id", style: "width:170px" });
  const limit = h("select", { "aria-label": "How many", name: "limit" }, [50, 100, 500, 1000].map((n) => h("option", { value: String(n) }, `latest ${n}`)));
  const results = h("div", {}, loading());
  const count = h("span", { class: "muted small" });

  status.value = query.get("status") || "";
  channel.value = query.get("channel") || "";
  automation.value = query.get("automation_id") || "";
  limit.value = query.get("limit") || "100";

  root.append(
    h("div", { class: "topbar" }, h("h1", {}, "Messages"), h("span", { class: "spacer" }), count),
    h("section", { class: "card" }, h("div", { class: "row", style: "margin-bottom:12px" }, status, channel, template, automation, limit), results));

  get("/v1/templates").then((body) => {
    for (const t of body.templates || []) template.append(h("option", { value: t.template_id }, t.template_id));
    template.value = query.get("template_id") || "";
  }, () => null);
  if (query.get("template_id")) template.append(h("option", { value: query.get("template_id") }, query.get("template_id")));
  template.value = query.get("template_id") || "";

  let seq = 0;
  async function load() {
    const params = { status: status.value, channel: channel.value, template_id: template.value, automation_id: automation.value.trim(), limit: limit.value };
    const search = qs(params);
    history.replaceState(null, "", "#/messages" + search);
    const mine = ++seq;
    replace(results, loading());
    try {
      const body = await get("/v1/messages" + search);
      if (mine !== seq) return;
      const list = body.messages || [];
      count.textContent = `${list.length} message${list.length === 1 ? "" : "s"}`;
      if (!list.length) return replace(results, empty("No message matches these filters."));
      replace(results, table([
        { label: "Created", cell: (m) => timeEl(m.created_at) },
        { label: "User", cell: (m) => userLink(m.user_id) },
        { label: "Channel", cell: (m) => m.channel },
        { label: "Template", cell: (m) => m.template_id },
        { label: "Automation", cell: (m) => (m.automation_id ? h("a", { href: "#/automations/" + encodeURIComponent(m.automation_id) }, m.automation_id) : h("span", { class: "muted" }, "–")) },
        { label: "Status", cell: (m) => statusCell(m) },
        { label: "To trigger", class: "right", cell: (m) => fmtMs(m.time_to_trigger_ms) },
      ], list, { onRow: (m, tr) => toggleDetail(tr, 7, () => messageHistory(m)) }));
    } catch (err) {
      if (mine === seq) replace(results, failure("The message log", err));
    }
  }
  for (const el of [status, channel, template, limit]) el.addEventListener("change", load);
  automation.addEventListener("change", load);
  await load();
}

// Overview: events per minute (live), messages by status and channel, time to trigger.
import { get, live } from "../api.js";
import { CHANNEL_COLORS, STATUS_COLORS, groupedBars, stackedBars, timeChart } from "../charts.js";
import { cardHead, empty, failure, fmtMs, fmtNumber, fmtPercent, h, loading, replace } from "../dom.js";
import { STATUSES, groupsFromMessages, messageGroups, timeToTrigger, tttFromMessages } from "../normalize.js";

const MINUTES = 60;

function minuteSeries(perMinute, since) {
  const now = Math.floor(Date.now() / 60000) * 60000;
  const xs = [];
  const ys = [];
  for (let m = now - (MINUTES - 1) * 60000; m <= now; m += 60000) {
    xs.push(m / 1000);
    ys.push(since !== null && m < since ? null : perMinute.get(m) || 0);
  }
  return [xs, ys];
}

// Messages by status and channel: the analytics endpoint, or the latest messages.
async function loadMessageStats() {
  try {
    const body = await get("/v1/analytics/messages?group_by=channel&since=30d");
    const totals = body && body.totals ? messageGroups({ groups: [{ key: "all", ...body.totals }] }, "channel")[0] : null;
    return { groups: messageGroups(body, "channel"), totals, source: "analytics" };
  } catch (err) {
    if (!err.unavailable) throw err;
    const log = await get("/v1/messages?limit=1000");
    return { groups: groupsFromMessages(log.messages || [], "channel"), source: "log", count: (log.messages || []).length, missing: err };
  }
}

async function loadTtt() {
  try {
    return { channels: timeToTrigger(await get("/v1/analytics/time-to-trigger?since=30d")), source: "analytics" };
  } catch (err) {
    if (!err.unavailable) throw err;
    const log = await get("/v1/messages?limit=1000");
    return { channels: tttFromMessages(log.messages || []), source: "log", missing: err };
  }
}

export async function render(root) {
  const charts = [];
  const tiles = {
    rate: h("div", { class: "value" }, "–"),
    hour: h("div", { class: "value" }, "–"),
    messages: h("div", { class: "value" }, "–"),
    delivery: h("div", { class: "value" }, "–"),
    p50: h("div", { class: "value" }, "–"),
  };
  const t = (label, el, sub) => h("div", { class: "tile" }, h("div", { class: "label" }, label), el, h("div", { class: "sub" }, sub));
  const rateChartEl = h("div", { class: "chart", "data-chart": "events-per-minute" });
  const statusEl = h("div", { "data-panel": "messages-by-status" }, loading());
  const tttEl = h("div", { "data-panel": "time-to-trigger" }, loading());
  const state = h("span", { class: "pill" }, "connecting");

  root.append(
    h("div", { class: "topbar" }, h("h1", {}, "Overview"), h("span", { class: "spacer" }), state),
    h("div", { class: "grid cols-5", style: "margin-bottom:16px" },
      t("Events / minute", tiles.rate, "last full minute"),
      t("Events, last hour", tiles.hour, "received"),
      t("Messages", tiles.messages, "all channels"),
      t("Delivery rate", tiles.delivery, "delivered of attempted"),
      t("Time to trigger, p50", tiles.p50, "event received → delivered")),
    h("div", { class: "grid cols-2" },
      h("section", { class: "card span-2" }, cardHead("Events per minute", h("span", { class: "legend-note" }, "live, last 60 minutes")), rateChartEl),
      h("section", { class: "card" }, cardHead("Messages by status and channel"), statusEl),
      h("section", { class: "card" }, cardHead("Time to trigger", h("span", { class: "legend-note" }, "p50 / p90 / p99 per channel")), tttEl)),
  );

  // -- events per minute, live
  const rateChart = timeChart(rateChartEl, {
    series: [{ label: "events", color: "#4f46e5", bars: true }],
    data: minuteSeries(live.perMinute, live.since),
    height: 220,
  });
  charts.push(rateChart);
  const refreshRate = () => {
    const data = minuteSeries(live.perMinute, live.since);
    rateChart.update(data);
    const ys = data[1];
    tiles.rate.textContent = fmtNumber(ys[ys.length - 2] ?? 0);
    tiles.hour.textContent = fmtNumber(ys.reduce((a, b) => a + (b || 0), 0));
  };
  refreshRate();
  let pending = false;
  const unsubscribe = live.subscribe(
    (frame) => {
      if (frame.type !== "hello" && frame.type !== "events") return;
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        refreshRate();
      });
    },
    (s) => {
      state.className = "pill " + (s === "live" ? "live" : s === "reconnecting" ? "down" : "");
      state.textContent = s;
    },
  );
  const minuteTimer = setInterval(refreshRate, 10000);

  // -- messages by status and channel
  loadMessageStats().then(
    ({ groups, totals, source, count }) => {
      const all = totals || null;
      const total = groups.reduce((a, g) => a + g.total, 0);
      tiles.messages.textContent = fmtNumber(total);
      let delivery = all && all.rates ? all.rates.delivery : null;
      if (delivery === null || delivery === undefined) {
        const c = (list) => groups.reduce((a, g) => a + list.reduce((x, s) => x + (g.counts[s] || 0), 0), 0);
        const delivered = c(["sent", "delivered", "opened", "clicked"]);
        const attempted = delivered + c(["failed", "bounced"]);
        delivery = attempted ? delivered / attempted : null;
      }
      tiles.delivery.textContent = fmtPercent(delivery);
      if (!groups.length || !total) {
        replace(statusEl, empty("No messages yet. Send one with POST /v1/messages/send or from Templates."));
        return;
      }
      const used = STATUSES.filter((s) => groups.some((g) => g.counts[s]));
      const extra = [...new Set(groups.flatMap((g) => Object.keys(g.counts)))].filter((s) => !STATUSES.includes(s) && s !== "total");
      const statuses = [...used, ...extra];
      const chartEl = h("div", { class: "chart", "data-chart": "messages-by-status" });
      const rates = h("table", { class: "data", style: "margin-top:10px" },
        h("thead", {}, h("tr", {}, h("th", {}, "Channel"), h("th", { class: "right" }, "Messages"), h("th", { class: "right" }, "Delivery"), h("th", { class: "right" }, "Open"), h("th", { class: "right" }, "Click"))),
        h("tbody", {}, groups.map((g) => h("tr", {}, h("td", {}, g.key), h("td", { class: "right" }, fmtNumber(g.total)),
          h("td", { class: "right" }, fmtPercent(g.rates.delivery)), h("td", { class: "right" }, fmtPercent(g.rates.open)), h("td", { class: "right" }, fmtPercent(g.rates.click))))));
      replace(statusEl, chartEl, rates,
        h("div", { class: "note" }, source === "analytics" ? "Last 30 days, from GET /v1/analytics/messages (each message under the status it has now)." : `Counted from the latest ${fmtNumber(count)} messages (the analytics endpoint is not available on this daemon).`));
      charts.push(stackedBars(chartEl, {
        groups: groups.map((g) => g.key),
        series: statuses.map((s) => ({ label: s, color: STATUS_COLORS[s] })),
        values: statuses.map((s) => groups.map((g) => g.counts[s] || 0)),
        height: 240,
      }));
    },
    (err) => replace(statusEl, failure("Message analytics", err)),
  );

  // -- time to trigger
  loadTtt().then(
    ({ channels, source }) => {
      const withData = channels.filter((c) => c.p50 !== null);
      const all = withData.find((c) => c.channel === "all") || withData.slice().sort((a, b) => (b.count || 0) - (a.count || 0))[0];
      tiles.p50.textContent = all ? fmtMs(all.p50) : "–";
      if (!withData.length) {
        replace(tttEl, empty("No delivered messages yet: time to trigger is measured from the event to delivery."));
        return;
      }
      const chartEl = h("div", { class: "chart", "data-chart": "time-to-trigger" });
      const rows = h("table", { class: "data" },
        h("thead", {}, h("tr", {}, h("th", {}, "Channel"), h("th", { class: "right" }, "p50"), h("th", { class: "right" }, "p90"), h("th", { class: "right" }, "p99"), h("th", { class: "right" }, "Messages"))),
        h("tbody", {}, withData.map((c) => h("tr", {}, h("td", {}, c.channel), h("td", { class: "right" }, fmtMs(c.p50)), h("td", { class: "right" }, fmtMs(c.p90)), h("td", { class: "right" }, fmtMs(c.p99)), h("td", { class: "right" }, fmtNumber(c.count))))));
      replace(tttEl, chartEl, rows,
        h("div", { class: "note" }, source === "analytics" ? "From GET /v1/analytics/time-to-trigger." : "Computed from the latest messages (the analytics endpoint is not available on this daemon)."));
      charts.push(groupedBars(chartEl, {
        groups: ["p50", "p90", "p99"],
        series: withData.map((c) => ({ label: c.channel, color: CHANNEL_COLORS[c.channel] })),
        values: withData.map((c) => [c.p50, c.p90, c.p99]),
        yFormat: (v) => fmtMs(v),
        height: 200,
      }));
    },
    (err) => replace(tttEl, failure("Time-to-trigger analytics", err)),
  );

  return () => {
    unsubscribe();
    clearInterval(minuteTimer);
    for (const c of charts) c.destroy();
  };
}


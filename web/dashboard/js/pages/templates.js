// Templates: list, and an editor with a live preview per channel against a
// real user, and "send me a test".
import { del, get, post, put, qs } from "../api.js";
import { badge, cardHead, debounce, empty, errorBanner, failure, h, json, loading, replace, table, tabs, timeEl } from "../dom.js";

const CHANNEL_LABELS = { email: "Email", push: "Push", in_app: "In-app" };
const FIELDS = {
  email: [["subject", "Subject", "input"], ["html", "HTML", "textarea", 10], ["text", "Text (optional: made from the HTML when empty)", "textarea", 4]],
  push: [["title", "Title", "input"], ["body", "Body", "textarea", 3], ["url", "URL opened on click", "input"], ["icon", "Icon URL (optional)", "input"]],
  in_app: [["title", "Title", "input"], ["body", "Body", "textarea", 3], ["url", "URL", "input"], ["data", "Data (JSON, optional)", "json", 3]],
};
const CATEGORIES = ["transactional", "product_updates", "marketing", "billing"];
const ME_KEY = "retenshun.dashboard.testUser";

export async function render(root, parts) {
  if (parts[0] === "new") return editor(root, null);
  if (parts.length) return editor(root, parts[0]);
  return list(root);
}

async function list(root) {
  const out = h("div", {}, loading());
  const idInput = h("input", { type: "text", placeholder: "new_template_id", pattern: "[A-Za-z0-9_.\\-]{1,128}", required: true, "aria-label": "New template id" });
  root.append(
    h("div", { class: "topbar" }, h("h1", {}, "Templates"), h("span", { class: "spacer" }),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = "#/templates/" + encodeURIComponent(idInput.value.trim()); } },
        idInput, h("button", { class: "btn primary", type: "submit" }, "New template"))),
    h("section", { class: "card" }, out));
  try {
    const body = await get("/v1/templates");
    const rows = body.templates || [];
    if (!rows.length) return replace(out, empty("No templates yet. Create one above or with PUT /v1/templates/{id}."));
    replace(out, table([
      { label: "Id", cell: (t) => h("a", { href: "#/templates/" + encodeURIComponent(t.template_id) }, t.template_id) },
      { label: "Name", cell: (t) => t.name || "" },
      { label: "Category", cell: (t) => t.category || "transactional" },
      { label: "Channels", cell: (t) => Object.keys(CHANNEL_LABELS).filter((c) => t[c]).map((c) => h("span", { class: "chip" }, CHANNEL_LABELS[c])) },
      { label: "Version", class: "right", cell: (t) => String(t.version ?? "") },
      { label: "Updated", cell: (t) => timeEl(t.updated_at) },
    ], rows, { onRow: (t) => (location.hash = "#/templates/" + encodeURIComponent(t.template_id)) }));
  } catch (err) {
    replace(out, failure("Templates", err));
  }
}

async function editor(root, templateId) {
  const isNew = templateId === null;
  let saved = null;
  if (!isNew) {
    try {
      saved = await get("/v1/templates/" + encodeURIComponent(templateId));
    } catch (err) {
      if (err.status !== 404) {
        root.append(failure("Templates", err));
        return;
      }
    }
  }
  const spec = saved ? structuredClone(saved) : { name: templateId || "", category: "transactional", in_app: { title: "", body: "" } };
  for (const k of ["template_id", "version", "created_at", "updated_at"]) delete spec[k];
  let dirty = !saved;
  let channel = ["email", "push", "in_app"].find((c) => spec[c]) || "in_app";

  const status = h("span", { class: "muted small", "data-state": "save-status" }, saved ? `version ${saved.version}, saved` : "not saved yet");
  const banner = h("div", {});
  const fieldErrors = new Map(); // "email.html" -> element

  // -- the form
  const name = h("input", { type: "text", value: spec.name || "", "aria-label": "Name" });
  const category = h("input", { type: "text", value: spec.category || "transactional", list: "categories", "aria-label": "Category" });
  const channelPanes = {};
  const includes = {};
  for (const c of Object.keys(FIELDS)) {
    const include = h("input", { type: "checkbox", checked: !!spec[c] });
    includes[c] = include;
    const fields = FIELDS[c].map(([key, label, kind, rows]) => {
      const current = spec[c] ? spec[c][key] : undefined;
      const value = kind === "json" ? (current === undefined ? "" : json(current)) : current ?? "";
      const input = kind === "input"
        ? h("input", { type: "text", value, "data-field": `${c}.${key}` })
        : h("textarea", { rows: String(rows || 3), "data-field": `${c}.${key}` }, value);
      const err = h("div", { class: "field-error" });
      fieldErrors.set(`${c}.${key}`, err);
      input.addEventListener("input", () => {
        setField(c, key, kind, input.value, err);
        changed();
      });
      return h("label", { class: "field" }, label, input, err);
    });
    const body = h("div", { class: "stack" }, fields);
    body.hidden = !include.checked;
    include.addEventListener("change", () => {
      if (include.checked) {
        spec[c] = spec[c] || {};
        for (const el of body.querySelectorAll("[data-field]")) {
          const key = el.dataset.field.split(".")[1];
          const kind = FIELDS[c].find((f) => f[0] === key)[2];
          setField(c, key, kind, el.value, fieldErrors.get(el.dataset.field));
        }
      } else delete spec[c];
      body.hidden = !include.checked;
      changed();
    });
    const err = h("div", { class: "field-error" });
    fieldErrors.set(c, err);
    channelPanes[c] = h("div", { "data-channel": c, hidden: c !== channel }, h("label", { class: "check", style: "margin-bottom:10px" }, include, `Send on ${CHANNEL_LABELS[c]}`), err, body);
  }
  function setField(c, key, kind, value, err) {
    spec[c] = spec[c] || {};
    if (kind === "json") {
      if (!value.trim()) delete spec[c][key];
      else {
        try {
          spec[c][key] = JSON.parse(value);
          err.textContent = "";
        } catch (e) {
          err.textContent = "Not valid JSON: " + e.message;
          return;
        }
      }
    } else if (value === "" && key !== "title" && key !== "subject" && key !== "html" && key !== "body") delete spec[c][key];
    else spec[c][key] = value;
  }
  name.addEventListener("input", () => { spec.name = name.value; changed(); });
  category.addEventListener("input", () => { spec.category = category.value || undefined; changed(); });

  const idField = isNew ? h("input", { type: "text", placeholder: "template_id", "aria-label": "Template id" }) : null;
  const saveBtn = h("button", { class: "btn primary", type: "button" }, "Save");
  const deleteBtn = isNew ? null : h("button", { class: "btn danger", type: "button" }, "Delete");

  // -- the preview
  const savedTest = localStorage.getItem(ME_KEY) || "";
  const userInput = h("input", { type: "text", list: "preview-users", placeholder: "user id", value: savedTest, "aria-label": "Preview as user" });
  const usersList = h("datalist", { id: "preview-users" });
  const variables = h("textarea", { rows: "4", "aria-label": "Variables (JSON)", placeholder: '{"milestone": "10,000 messages"}' }, "{}");
  const eventProps = h("textarea", { rows: "2", "aria-label": "Triggering event properties (JSON)", placeholder: '{"last4": "4242"}' }, "");
  const previewOut = h("div", { "data-panel": "preview" }, empty("Pick a user to preview against (or leave empty)."));
  const previewNote = h("div", { class: "note" });
  const testResult = h("div", { class: "small", "data-state": "test-send" });
  const testBtn = h("button", { class: "btn", type: "button" }, "Send me a test");

  const channelTabs = tabs(Object.entries(CHANNEL_LABELS), (c) => {
    channel = c;
    for (const [k, pane] of Object.entries(channelPanes)) pane.hidden = k !== c;
    refreshPreview();
  }, channel);

  root.append(
    h("datalist", { id: "categories" }, CATEGORIES.map((c) => h("option", { value: c }))),
    usersList,
    h("div", { class: "topbar" }, h("a", { href: "#/templates", class: "crumbs" }, "Templates"), h("span", { class: "crumbs" }, "/"),
      h("h1", {}, isNew ? "New template" : templateId), h("span", { class: "spacer" }), status, deleteBtn, saveBtn),
    banner,
    h("div", { class: "editor" },
      h("section", { class: "card" },
        h("div", { class: "grid cols-2", style: "margin-bottom:12px" },
          idField ? h("label", { class: "field" }, "Id", idField) : null,
          h("label", { class: "field" }, "Name", name),
          h("label", { class: "field" }, "Category (what users opt out of)", category)),
        channelTabs, ...Object.values(channelPanes),
        h("p", { class: "muted small" }, "Liquid: ", h("code", {}, "{{ user.name }}"), ", ", h("code", {}, "{{ event.last4 }}"), ", ", h("code", {}, "{{ milestone }}"), " (the send's variables). Errors are reported with their line when you save.")),
      h("section", { class: "card" },
        cardHead("Preview", h("span", { class: "legend-note" }, "rendered by the daemon")),
        h("div", { class: "grid cols-2", style: "margin-bottom:10px" },
          h("label", { class: "field" }, "As user", userInput),
          h("label", { class: "field" }, "Event properties (JSON)", eventProps)),
        h("label", { class: "field", style: "margin-bottom:10px" }, "Variables (JSON)", variables),
        previewOut, previewNote,
        h("div", { class: "row", style: "margin-top:14px;border-top:1px solid var(--border);padding-top:12px" }, testBtn,
          h("span", { class: "muted small" }, "sends the saved template to the user above on the selected channel"), testResult))));

  function changed() {
    dirty = true;
    status.textContent = "unsaved changes";
    refreshPreview();
  }

  function parseJson(el, what) {
    const text = el.value.trim();
    if (!text) return {};
    try {
      const v = JSON.parse(text);
      if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("expected an object");
      return v;
    } catch (e) {
      throw new Error(`${what}: ${e.message}`);
    }
  }

  let previewSeq = 0;
  const refreshPreview = debounce(async () => {
    const mine = ++previewSeq;
    if (!spec[channel]) {
      replace(previewOut, empty(`This template has no ${CHANNEL_LABELS[channel]} content.`));
      previewNote.textContent = "";
      return;
    }
    let body;
    try {
      body = { channel, user_id: userInput.value.trim() || null, variables: parseJson(variables, "variables") };
      const ev = parseJson(eventProps, "event properties");
      if (Object.keys(ev).length) body.event = ev;
    } catch (e) {
      replace(previewOut, errorBanner(e));
      return;
    }
    try {
      let r;
      if (dirty || isNew) {
        r = await post("/dashboard/templates/preview", { ...body, template: spec });
        previewNote.textContent = "Live preview of your unsaved edits.";
      } else {
        r = await post(`/v1/templates/${encodeURIComponent(templateId)}/preview`, body);
        previewNote.textContent = `Saved version ${saved.version}, via POST /v1/templates/{id}/preview.`;
      }
      if (mine !== previewSeq) return;
      clearErrors();
      replace(previewOut, renderPreview(channel, r.rendered || {}));
    } catch (err) {
      if (mine !== previewSeq) return;
      showError(err, previewOut);
    }
  }, 250);

  function clearErrors() {
    for (const el of fieldErrors.values()) if (!el.textContent.startsWith("Not valid JSON")) el.textContent = "";
  }

  // "email.html: line 2: ..." -> under the email HTML field.
  function showError(err, fallback) {
    clearErrors();
    const m = /^([a-z_]+(?:\.[a-z_]+)?):\s*(.*)$/s.exec(err.message || "");
    const target = m && (fieldErrors.get(m[1]) || fieldErrors.get(m[1].split(".")[0]));
    if (target) {
      target.textContent = m[2];
      const ch = m[1].split(".")[0];
      if (channelPanes[ch] && channelPanes[ch].hidden) channelTabs.querySelector(`[data-tab="${ch}"]`).click();
    }
    replace(fallback, errorBanner(err));
  }

  async function save() {
    const id = isNew ? idField.value.trim() : templateId;
    if (!id) {
      replace(banner, errorBanner(new Error("Give the template an id first.")));
      return;
    }
    saveBtn.disabled = true;
    try {
      saved = await put("/v1/templates/" + encodeURIComponent(id), spec);
      replace(banner, h("div", { class: "banner ok", role: "status" }, `Saved version ${saved.version}.`));
      if (isNew) {
        location.hash = "#/templates/" + encodeURIComponent(id);
        return;
      }
      dirty = false;
      status.textContent = `version ${saved.version}, saved`;
      clearErrors();
      refreshPreview();
    } catch (err) {
      showError(err, banner);
    } finally {
      saveBtn.disabled = false;
    }
  }

  saveBtn.addEventListener("click", save);
  const onKey = (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "s") {
      e.preventDefault();
      save();
    }
  };
  document.addEventListener("keydown", onKey);
  if (deleteBtn) {
    deleteBtn.addEventListener("click", async () => {
      if (!confirm(`Delete template ${templateId}? Sends that use it will fail with template_not_found.`)) return;
      try {
        await del("/v1/templates/" + encodeURIComponent(templateId));
        location.hash = "#/templates";
      } catch (err) {
        replace(banner, errorBanner(err));
      }
    });
  }

  for (const el of [variables, eventProps]) el.addEventListener("input", refreshPreview);
  userInput.addEventListener("input", () => {
    refreshPreview();
    suggestUsers();
  });
  const suggestUsers = debounce(async () => {
    try {
      const r = await get("/v1/users" + qs({ query: userInput.value.trim(), limit: 20 }));
      replace(usersList, r.users.map((u) => h("option", { value: u.user_id }, u.traits.email || "")));
    } catch (_) {
      /* suggestions are optional */
    }
  }, 200);
  suggestUsers();

  testBtn.addEventListener("click", async () => {
    const userId = userInput.value.trim();
    if (!userId) {
      replace(testResult, h("span", { class: "field-error" }, "Enter your user id above first."));
      return;
    }
    if (isNew || !saved) {
      replace(testResult, h("span", { class: "field-error" }, "Save the template first."));
      return;
    }
    localStorage.setItem(ME_KEY, userId);
    testBtn.disabled = true;
    try {
      const idem = "dashboard-test-" + crypto.randomUUID();
      const r = await post("/v1/messages/send", {
        user_id: userId, channel, template_id: templateId, variables: parseJson(variables, "variables"),
      }, { headers: { "Idempotency-Key": idem } });
      const statusEl = badge(r.status);
      replace(testResult, "Sent ", h("a", { href: "#/messages?template_id=" + encodeURIComponent(templateId) }, r.message_id), " ", statusEl);
      follow(r.message_id, statusEl);
    } catch (err) {
      replace(testResult, h("span", { class: "field-error" }, err.message));
    } finally {
      testBtn.disabled = false;
    }
  });

  // Shows a test message's status as it moves (for a few seconds).
  let following = null;
  function follow(messageId, el) {
    clearInterval(following);
    let tries = 0;
    following = setInterval(async () => {
      tries++;
      try {
        const m = await get("/v1/messages/" + encodeURIComponent(messageId));
        replace(el, m.reason ? `${m.status}: ${m.reason}` : m.status);
        el.className = "badge " + m.status;
        if (["delivered", "opened", "clicked", "failed", "bounced", "suppressed"].includes(m.status) || tries > 20) clearInterval(following);
      } catch (_) {
        clearInterval(following);
      }
    }, 500);
  }

  refreshPreview();
  return () => {
    document.removeEventListener("keydown", onKey);
    clearInterval(following);
  };
}

function renderPreview(channel, r) {
  if (channel === "email") {
    const frame = h("iframe", { class: "preview-frame", sandbox: "", title: "Email preview", referrerpolicy: "no-referrer" });
    frame.srcdoc = r.html || `<pre>${escapeHtml(r.text || "")}</pre>`;
    const text = h("details", { style: "margin-top:8px" }, h("summary", { class: "small muted" }, "Text part"), h("pre", { class: "small" }, r.text || ""));
    return h("div", { "data-preview": "email" }, h("div", { class: "email-head" }, h("span", { class: "muted" }, "Subject: "), h("strong", { "data-preview-field": "subject" }, r.subject || "")), frame, text);
  }
  if (channel === "push") {
    return h("div", { "data-preview": "push" }, h("div", { class: "push-preview" }, h("div", { class: "icon" }),
      h("div", {}, h("div", { class: "t", "data-preview-field": "title" }, r.title || ""), h("div", { "data-preview-field": "body" }, r.body || ""), r.url ? h("div", { class: "u" }, r.url) : null)));
  }
  return h("div", { "data-preview": "in_app" }, h("div", { class: "inapp-preview" },
    h("div", { class: "t", "data-preview-field": "title" }, r.title || ""), h("div", { "data-preview-field": "body" }, r.body || ""),
    r.url ? h("div", { class: "u" }, r.url) : null,
    r.data && Object.keys(r.data).length ? h("pre", { class: "small muted", style: "margin-top:6px" }, json(r.data)) : null));
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// The dashboard shell: sign-in, navigation, and a hash router over the pages.
import { currentSession, live, onSignedOut, signIn, signOut } from "./api.js";
import { errorBanner, h, replace } from "./dom.js";
import * as automations from "./pages/automations.js";
import * as liveEvents from "./pages/live.js";
import * as messages from "./pages/messages.js";
import * as overview from "./pages/overview.js";
import * as segments from "./pages/segments.js";
import * as templates from "./pages/templates.js";
import * as users from "./pages/users.js";

const ICONS = {
  overview: "M3 13h4v8H3zM10 8h4v13h-4zM17 3h4v18h-4z",
  live: "M3 12h4l3-8 4 16 3-8h4",
  users: "M16 20v-1a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v1M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM22 20v-1a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8",
  messages: "M4 4h16v12H7l-3 3z",
  templates: "M4 4h16v16H4zM4 9h16M9 9v11",
  automations: "M6 3v6M6 15v6M18 9v6M6 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6zM18 3a3 3 0 1 0 0 6 3 3 0 0 0 0-6zM18 15a3 3 0 1 0 0 6 3 3 0 0 0 0-6zM9 12h6",
  segments: "M12 3a9 9 0 1 0 9 9h-9z M14 3.2A9 9 0 0 1 20.8 10H14z",
};

const PAGES = [
  ["overview", "Overview", overview],
  ["live", "Live events", liveEvents],
  ["users", "Users", users],
  ["messages", "Messages", messages],
  ["templates", "Templates", templates],
  ["automations", "Automations", automations],
  ["segments", "Segments", segments],
];

function icon(path) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "1.8");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  svg.setAttribute("aria-hidden", "true");
  const p = document.createElementNS(ns, "path");
  p.setAttribute("d", path);
  svg.appendChild(p);
  return svg;
}

function logo() {
  const img = h("img", { src: "favicon.svg", alt: "", width: "22", height: "22" });
  return h("div", { class: "brand" }, img, "retenshun");
}

const app = document.getElementById("app");
let session = null;
let cleanup = null;
let renderToken = 0;

function showSignIn(message) {
  live.close();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const input = h("input", { type: "password", name: "secret", autocomplete: "current-password", required: true, placeholder: "sk_… or the admin password", "aria-label": "Secret key or admin password" });
  const error = h("div", { class: "field-error", role: "alert" }, message || "");
  const button = h("button", { class: "btn primary", type: "submit" }, "Sign in");
  const form = h("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true;
      error.textContent = "";
      try {
        session = await signIn(input.value);
        input.value = "";
        start();
      } catch (err) {
        error.textContent = err.message;
        button.disabled = false;
        input.focus();
      }
    },
  },
  h("label", { class: "field" }, "Secret key or admin password", input),
  error,
  button,
  h("p", { class: "muted small" }, "The key never leaves this page except to sign in: the dashboard keeps an HttpOnly session cookie instead."));
  replace(app, h("div", { class: "signin" }, h("div", { class: "card" }, logo(), h("h1", {}, "Sign in"), h("p", { class: "muted" }, "to your retenshun daemon"), form)));
  document.title = "Sign in · retenshun";
  input.focus();
}

function shell() {
  const nav = h("nav", { class: "nav", "aria-label": "Dashboard" },
    PAGES.map(([key, label]) => h("a", { href: "#/" + key, "data-page": key }, icon(ICONS[key]), label)));
  const main = h("main", { class: "main", id: "main", tabindex: "-1" });
  const signOutButton = h("button", {
    type: "button",
    onclick: async () => {
      await signOut();
      session = null;
      location.hash = "#/overview";
      showSignIn("Signed out.");
    },
  }, "Sign out");
  const who = session.method === "admin_password" ? "Signed in with the admin password" : "Signed in with a secret key";
  replace(app, h("div", { class: "shell" }, h("aside", { class: "side" }, logo(), nav, h("div", { class: "foot" }, who, signOutButton)), main));
  return { nav, main };
}

let layout = null;

function route() {
  if (!session) return;
  const raw = location.hash.replace(/^#\/?/, "");
  const [pathPart, queryPart] = raw.split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  const key = parts[0] || "overview";
  const page = PAGES.find((p) => p[0] === key);
  if (!page) {
    location.hash = "#/overview";
    return;
  }
  for (const a of layout.nav.querySelectorAll("a")) {
    if (a.dataset.page === key) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (cleanup) {
    try {
      cleanup();
    } catch (_) {
      /* a page's cleanup failing must not block navigation */
    }
    cleanup = null;
  }
  const token = ++renderToken;
  const container = h("div", { "data-page": key });
  replace(layout.main, container);
  document.title = page[1] + " · retenshun";
  const query = new URLSearchParams(queryPart || "");
  Promise.resolve()
    .then(() => page[2].render(container, parts.slice(1), query))
    .then((done) => {
      if (token === renderToken) cleanup = typeof done === "function" ? done : null;
      else if (typeof done === "function") done();
    })
    .catch((err) => {
      if (token === renderToken) container.append(errorBanner(err));
    });
}

function start() {
  layout = shell();
  if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/overview";
  route();
}

window.addEventListener("hashchange", route);
onSignedOut(() => {
  if (session) {
    session = null;
    showSignIn("Your session ended; sign in again.");
  }
});

(async () => {
  try {
    session = await currentSession();
  } catch (err) {
    replace(app, errorBanner(err));
    return;
  }
  if (session) start();
  else showSignIn();
})();

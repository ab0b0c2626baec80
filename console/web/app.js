// The console's shell: navigation, the admin token box, and a hash router (#/overview,
// #/views/NAME, #/alerts, #/jobs). Pages read only the public API.
import { el, api, token, setToken } from "./lib.js";
import { overview } from "./overview.js";
import { viewPage } from "./view.js";
import { alertsPage } from "./alerts.js";
import { jobsPage } from "./jobs.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const tokenBox = document.getElementById("token");

let views = [];
let leaving = [];

function tokenControls() {
  if (token()) {
    tokenBox.replaceChildren(
      el("span", { class: "token-set", id: "token-state" }, "admin token set for this tab"),
      el("button", { type: "button", onclick: () => setToken("") }, "forget"),
    );
  } else {
    const input = el("input", { type: "password", id: "token-input", placeholder: "admin token", autocomplete: "off" });
    tokenBox.replaceChildren(
      el(
        "form",
        {
          id: "token-form",
          onsubmit: (event) => {
            event.preventDefault();
            setToken(input.value.trim());
          },
        },
        input,
        el("button", { type: "submit" }, "use"),
      ),
    );
  }
}

function navigation(current) {
  const link = (href, text) => el("a", { href, class: current === href ? "active" : null }, text);
  nav.replaceChildren(
    link("#/overview", "Overview"),
    ...views.map((v) => link(`#/views/${encodeURIComponent(v.name)}`, v.name)),
    link("#/alerts", "Alerts"),
    link("#/jobs", "Jobs & replays"),
  );
}

function route() {
  for (const leave of leaving) leave();
  leaving = [];
  const page = { onLeave: (f) => leaving.push(f) };
  const hash = location.hash || "#/overview";
  const [, kind, name] = hash.split("/");
  navigation(kind === "views" ? `#/views/${name}` : `#/${kind}`);
  main.replaceChildren();
  document.body.dataset.page = kind || "overview";
  if (kind === "views") {
    const view = views.find((v) => v.name === decodeURIComponent(name || ""));
    if (view) viewPage(main, page, view);
    else main.append(el("p", { class: "error" }, "No such view."));
  } else if (kind === "alerts") alertsPage(main, page);
  else if (kind === "jobs") jobsPage(main, page);
  else overview(main, page, views);
}

async function start() {
  tokenControls();
  document.addEventListener("braid-token", () => {
    tokenControls();
    route();
  });
  try {
    views = (await api("/v1/views")).views;
  } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, `The API did not answer: ${error.message}`));
    return;
  }
  window.addEventListener("hashchange", route);
  route();
}

start();

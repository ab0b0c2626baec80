// Jobs and replays: start a batch run, a compaction, a vacuum or a republish of an event-time
// range with the admin token, and follow the job's progress.
import { el, api, poll, section, token, errorText } from "./lib.js";
import { jobTable } from "./overview.js";

/** The fraction done of a job run, if it reports one (a republish: sent of to_send). */
function fraction(run) {
  const p = run.progress;
  if (run.status !== "running") return 1;
  if (p && Number.isFinite(p.to_send) && p.to_send > 0) return Math.min(1, p.sent / p.to_send);
  return null;
}

function progressText(run) {
  const p = run.progress;
  const seconds = ((run.finished_at ? Date.parse(run.finished_at) : Date.now()) - Date.parse(run.started_at)) / 1000;
  const counted = p && Number.isFinite(p.to_send) ? ` · ${p.sent} of ${p.to_send} records sent` : "";
  const outcome = run.status === "failed" ? ` · ${run.error || "failed"}` : "";
  return `job #${run.id} ${run.job}: ${run.status}${counted} · ${seconds.toFixed(1)} s${outcome}`;
}

export function jobsPage(main, page) {
  main.append(el("h1", {}, "Jobs & replays"));
  if (!token()) {
    main.append(el("p", { class: "hint", id: "needs-token" }, "Starting jobs and reading their history needs the admin token (BRAID_ADMIN_TOKEN of `braid serve`). Enter it at the top right; it is kept in this tab's session storage only."));
    return;
  }
  const bar = el("div", { class: "bar", id: "progress-bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 });
  const progress = el("div", { class: "progress", hidden: true }, bar);
  const progressLabel = el("p", { class: "progress-label", id: "progress-label" }, "");
  const message = el("div", { id: "job-message" });
  let following = null;

  async function follow(id) {
    following = id;
    progress.hidden = false;
    const step = async () => {
      if (following !== id) return;
      let run;
      try {
        run = await api(`/v1/jobs/${id}`, { admin: true });
      } catch (error) {
        message.replaceChildren(errorText(error));
        return;
      }
      const done = fraction(run);
      progress.classList.toggle("indeterminate", done === null);
      bar.style.width = done === null ? "30%" : `${(done * 100).toFixed(1)}%`;
      bar.setAttribute("aria-valuenow", done === null ? "" : Math.round(done * 100));
      progress.dataset.status = run.status;
      progress.dataset.fraction = done === null ? "" : String(done);
      progressLabel.textContent = progressText(run);
      if (run.status === "running") setTimeout(step, 300);
    };
    page.onLeave(() => (following = null));
    step();
  }

  async function start(job, body) {
    message.replaceChildren();
    try {
      const started = await api(`/v1/admin/jobs/${job}`, { admin: true, method: "POST", body });
      follow(started.id);
    } catch (error) {
      message.replaceChildren(errorText(error));
    }
  }

  const now = new Date();
  const hourAgo = new Date(now.getTime() - 3600 * 1000);
  const input = (id, value, attrs = {}) => el("input", { id, name: id, value, ...attrs });
  const from = input("replay-from", hourAgo.toISOString());
  const to = input("replay-to", now.toISOString());
  const topic = input("replay-topic", "", { placeholder: "target topic" });
  const rate = input("replay-rate", "1000", { type: "number", min: 1 });
  main.append(
    el(
      "section",
      { id: "actions" },
      el("h2", {}, "Start"),
      el(
        "div",
        { class: "buttons" },
        el("button", { type: "button", id: "start-batch", onclick: () => start("batch", {}) }, "Batch run now"),
        el("button", { type: "button", id: "start-compact", onclick: () => start("compact", {}) }, "Compact the table"),
        el("button", { type: "button", id: "start-vacuum", onclick: () => start("vacuum", {}) }, "Vacuum the table"),
      ),
      el(
        "form",
        {
          class: "controls",
          id: "replay-form",
          onsubmit: (e) => {
            e.preventDefault();
            start("replay_publish", { from: from.value.trim(), to: to.value.trim(), topic: topic.value.trim(), rate: Number(rate.value) || undefined });
          },
        },
        el("strong", {}, "Republish the lake's records "),
        el("label", {}, "from ", from),
        el("label", {}, "to ", to),
        el("label", {}, "into topic ", topic),
        el("label", {}, "at most ", rate, " records/s"),
        el("button", { type: "submit", id: "start-replay" }, "Replay"),
      ),
      message,
      progress,
      progressLabel,
    ),
  );
  const history = section("Job history", "job-history");
  main.append(history.node);
  poll(page, 2000, async () => {
    try {
      history.set(jobTable((await api("/v1/jobs?limit=30", { admin: true })).jobs));
    } catch (error) {
      history.set(errorText(error));
    }
  });
}

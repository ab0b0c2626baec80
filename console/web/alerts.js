// Alerts: the rules' instances (firing and pending first) and the latest transitions.
import { el, api, poll, table, section, badge, num, time, errorText } from "./lib.js";

const ORDER = { firing: 0, pending: 1, resolved: 2, inactive: 3 };

function labels(value) {
  if (!value || typeof value !== "object") return "";
  return Object.entries(value).map(([k, v]) => `${k}=${v}`).join(", ");
}

export function alertsPage(main, page) {
  const instances = section("Instances", "alert-instances");
  const history = section("History", "alert-history");
  const updated = el("p", { class: "updated" }, "");
  main.append(el("h1", {}, "Alerts"), updated, instances.node, history.node);
  poll(page, 2000, async () => {
    try {
      const [current, past] = await Promise.all([api("/v1/alerts"), api("/v1/alerts/history?limit=50")]);
      updated.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
      const silenced = new Map(current.rules.map((r) => [r.rule, r.silenced_until]));
      const rows = [...current.alerts].sort((a, b) => (ORDER[a.state] ?? 9) - (ORDER[b.state] ?? 9));
      instances.set(
        table(
          [
            { title: "rule", value: (i) => i.rule },
            { title: "key", value: (i) => labels(i.labels) },
            { title: "state", key: "state", value: (i) => badge(i.state) },
            { title: "value", num: true, value: (i) => num(i.value) },
            { title: "active since", value: (i) => time(i.active_since) },
            { title: "evaluated", value: (i) => time(i.evaluated_at) },
            { title: "silenced until", value: (i) => time(silenced.get(i.rule)) },
          ],
          rows,
          { id: "instances-table" },
        ),
      );
      history.set(
        table(
          [
            { title: "at", value: (t) => time(t.at) },
            { title: "rule", value: (t) => t.rule },
            { title: "key", value: (t) => labels(t.labels) },
            { title: "transition", value: (t) => `${t.from} → ${t.to}` },
            { title: "value", num: true, value: (t) => num(t.value) },
            { title: "deliveries", value: (t) => (Array.isArray(t.deliveries) ? t.deliveries : []).map((d) => `${d.receiver}: ${d.status}`).join(", ") },
          ],
          past.transitions,
          { id: "history-table" },
        ),
      );
    } catch (error) {
      instances.set(errorText(error));
    }
  });
}

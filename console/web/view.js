// A view: a live chart of any metric (shaded by provenance), group-by and filter controls,
// the latest buckets, the rolling totals, the top keys and, for a view with sample(K), the
// records sampled over the chart's range.
import { el, api, poll, table, section, num, time, errorText } from "./lib.js";
import { drawChart, legend } from "./chart.js";

const UNITS = { s: 1, m: 60, h: 3600, d: 86400 };

export function seconds(text) {
  const match = /^(\d+)([smhd])$/.exec(text);
  return match ? Number(match[1]) * UNITS[match[2]] : NaN;
}

function durationText(total) {
  for (const unit of ["d", "h", "m"]) {
    if (total % UNITS[unit] === 0) return `${total / UNITS[unit]}${unit}`;
  }
  return `${total}s`;
}

/** The query string of `params` (arrays repeat the parameter). */
function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    // An empty value is sent: `group_by=` asks for one total.
    if (value === undefined || value === null) continue;
    for (const one of Array.isArray(value) ? value : [value]) search.append(name, one);
  }
  return search.toString();
}

export function viewPage(main, page, view) {
  const bucket = seconds(view.bucket);
  // The numbers a chart can draw: each metric's answer columns (a quantile metric's levels),
  // not a sample's records.
  const sampled = view.metrics.find((m) => m.kind === "sample");
  const metrics = view.metrics
    .filter((m) => m.kind !== "sample")
    .flatMap((m) => m.answers || [m.column])
    .concat(view.averages);
  const groups = view.group_by.map((g) => g.name).concat(view.attributes.map((a) => a.name));
  const granularities = [bucket, 60, 300, 900, 3600].filter((g, i, all) => g >= bucket && g % bucket === 0 && all.indexOf(g) === i);
  const state = {
    metric: metrics[0],
    range: 3600,
    granularity: bucket,
    groupBy: groups.length ? groups[0] : "",
    filterField: groups[0] || "",
    filterValue: "",
  };
  const select = (id, options, value, onchange) =>
    el(
      "select",
      { id, onchange: (e) => onchange(e.target.value) },
      options.map(([v, text]) => el("option", { value: v, selected: String(v) === String(value) }, text)),
    );
  const refreshNow = () => load();
  const filterInput = el("input", { id: "filter-value", placeholder: "value, or several comma-separated", value: "" });
  const controls = el(
    "form",
    {
      class: "controls",
      id: "view-controls",
      onsubmit: (e) => {
        e.preventDefault();
        state.filterValue = filterInput.value.trim();
        refreshNow();
      },
    },
    el("label", {}, "metric ", select("metric", metrics.map((m) => [m, m]), state.metric, (v) => ((state.metric = v), refreshNow()))),
    el("label", {}, "last ", select("range", [[900, "15 min"], [3600, "1 h"], [21600, "6 h"], [86400, "24 h"]], state.range, (v) => ((state.range = Number(v)), refreshNow()))),
    el("label", {}, "granularity ", select("granularity", granularities.map((g) => [g, durationText(g)]), state.granularity, (v) => ((state.granularity = Number(v)), refreshNow()))),
    el("label", {}, "group by ", select("group-by", [["", "(total)"], ...groups.map((g) => [g, g])], state.groupBy, (v) => ((state.groupBy = v), refreshNow()))),
    groups.length
      ? el("label", {}, "filter ", select("filter-field", groups.map((g) => [g, g]), state.filterField, (v) => (state.filterField = v)), " = ", filterInput, el("button", { type: "submit" }, "apply"))
      : null,
  );
  const status = el("p", { class: "updated", id: "live" }, "");
  const provenance = el("p", { class: "provenance", id: "provenance" }, "");
  const holder = el("div", { class: "chart", id: "chart" });
  const latest = section("Latest buckets", "latest");
  const rolling = section("Rolling totals", "rolling");
  const top = section("Top keys", "top");
  const sample = section("Sampled records", "sample");
  main.append(el("h1", {}, view.name), controls, status, holder, legend(), provenance, ...(sampled ? [sample.node] : []), latest.node, rolling.node, top.node);

  let updates = 0;
  let chart = null;
  const rollingWindow = durationText(Math.max(bucket, Math.ceil(300 / bucket) * bucket));
  const topWindow = durationText(Math.max(bucket, Math.ceil(3600 / bucket) * bucket));

  async function load() {
    const filters = {};
    if (state.filterValue && state.filterField) filters[`filter.${state.filterField}`] = state.filterValue.split(",").map((v) => v.trim());
    const from = new Date(Date.now() - state.range * 1000).toISOString();
    const seriesPath = `/v1/views/${encodeURIComponent(view.name)}?${query({ from, granularity: durationText(state.granularity), group_by: state.groupBy, parts: "true", ...filters })}`;
    let answer;
    try {
      answer = await api(seriesPath);
    } catch (error) {
      holder.replaceChildren(errorText(error));
      return;
    }
    updates += 1;
    status.textContent = `live · updated ${new Date().toISOString().slice(11, 19)} UTC · update ${updates}${answer.truncated ? " · truncated: narrow the range" : ""}`;
    status.dataset.updates = updates;
    renderChart(answer, seriesPath);
    renderProvenance(answer.provenance);
    latest.set(latestTable(answer));
    const metricColumn = state.metric;
    if (sampled) {
      try {
        const samplePath = `/v1/views/${encodeURIComponent(view.name)}/sample?${query({ from, ...filters })}`;
        sample.node.dataset.query = samplePath;
        const sampleAnswer = await api(samplePath);
        sample.set(el("p", { class: "hint" }, `${sampleAnswer.sample.records.length} of the records over the chart's range (the ${sampleAnswer.sample.k} with the smallest hash of their Kafka position, the same whichever layer counted them)`), sampleTable(sampleAnswer.sample.records));
      } catch (error) {
        sample.set(errorText(error));
      }
    }
    try {
      const rollingAnswer = await api(`/v1/views/${encodeURIComponent(view.name)}/rolling?${query({ window: rollingWindow, group_by: state.groupBy, order: `${metricColumn}:desc`, limit: 20, ...filters })}`);
      rolling.set(el("p", { class: "hint" }, `over the last ${rollingWindow}`), rowsTable(rollingAnswer.rows, rollingAnswer.columns, "rolling-table"));
    } catch (error) {
      rolling.set(errorText(error));
    }
    try {
      const topAnswer = await api(`/v1/views/${encodeURIComponent(view.name)}/top?${query({ window: topWindow, metric: metricColumn, k: 10, group_by: state.groupBy, ...filters })}`);
      top.set(el("p", { class: "hint" }, `by ${metricColumn} over the last ${topWindow}`), rowsTable(topAnswer.rows, topAnswer.columns, "top-table"));
    } catch (error) {
      top.set(errorText(error));
    }
  }

  function renderChart(answer, seriesPath) {
    const key = (row) => (state.groupBy ? row[state.groupBy] : null);
    const xsSet = new Set();
    const totals = new Map();
    for (const row of answer.rows) {
      xsSet.add(Date.parse(row.bucket_start) / 1000);
      const k = JSON.stringify(key(row));
      totals.set(k, (totals.get(k) || 0) + (Number(row[state.metric]) || 0));
    }
    const xs = [...xsSet].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const shown = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k]) => k);
    const series = shown.map((k) => ({ label: state.groupBy ? `${state.groupBy}=${JSON.parse(k) ?? "(none)"}` : state.metric, values: xs.map(() => null) }));
    const parts = xs.map(() => null);
    let points = 0;
    let total = 0;
    for (const row of answer.rows) {
      const i = index.get(Date.parse(row.bucket_start) / 1000);
      const part = row.speed_part ? "speed" : row.batch_part ? "batch" : null;
      if (part === "speed" || !parts[i]) parts[i] = part;
      const s = shown.indexOf(JSON.stringify(key(row)));
      if (s < 0 || row[state.metric] === null) continue;
      series[s].values[i] = Number(row[state.metric]);
      points += 1;
      total += Number(row[state.metric]);
    }
    holder.dataset.query = seriesPath;
    holder.dataset.points = points;
    holder.dataset.series = series.length;
    holder.dataset.total = total;
    holder.dataset.batchBuckets = parts.filter((p) => p === "batch").length;
    holder.dataset.speedBuckets = parts.filter((p) => p === "speed").length;
    if (chart) chart.destroy();
    chart = null;
    if (xs.length === 0) {
      holder.replaceChildren(el("p", { class: "empty" }, "No rows in this range yet."));
      return;
    }
    chart = drawChart(holder, { xs, series, parts, width: state.granularity, metric: state.metric });
    if (totals.size > shown.length) holder.append(el("p", { class: "hint" }, `the ${shown.length} largest of ${totals.size} keys are drawn; the tables below have all`));
  }

  function renderProvenance(p) {
    if (!p) return;
    const batch = p.batch ? `batch run #${p.batch.run_id} (covers epochs below ${p.batch.covered_epoch}, Delta version ${p.batch.delta_version ?? "—"})` : "no batch run yet";
    const positions = (p.speed.positions || []).map((q) => `${q.partition}:${q.next_offset}`).join(" ");
    provenance.textContent = `Merged from ${batch} ⊕ speed rows up to positions ${positions || "—"}; newest event ${time(p.speed.newest_event_time)}; ${num(p.speed.offset_lag)} records not yet in the speed layer.`;
  }

  function latestTable(answer) {
    const rows = [...answer.rows].sort((a, b) => Date.parse(b.bucket_start) - Date.parse(a.bucket_start)).slice(0, 20);
    return rowsTable(rows, answer.columns, "latest-table");
  }

  poll(page, 2000, load);
  page.onLeave(() => chart && chart.destroy());
}

/** A sample's records: their Kafka position, then their fields (an omitted record's size). */
function sampleTable(records) {
  const fields = [...new Set(records.flatMap((r) => Object.keys(r.f || {})))];
  const cell = (text) => el("span", { "data-value": text }, text);
  return table(
    [
      { title: "partition", key: "p", num: true, value: (r) => cell(String(r.p)) },
      { title: "offset", key: "o", num: true, value: (r) => cell(String(r.o)) },
      ...fields.map((f) => ({
        title: f,
        key: f,
        value: (r) => cell(r.f ? (r.f[f] === undefined ? "" : String(r.f[f])) : `(${r.n} bytes, over the bound)`),
      })),
    ],
    records,
    { id: "sample-table" },
  );
}

function rowsTable(rows, columns, id) {
  return table(
    columns.map((c) => ({
      title: c,
      key: c,
      num: !["bucket_start", "batch_part", "speed_part"].includes(c) && rows.some((r) => typeof r[c] === "number"),
      value: (r) =>
        el(
          "span",
          { "data-value": r[c] === null ? "null" : String(r[c]) },
          c === "bucket_start" ? time(r[c]) : typeof r[c] === "number" ? num(r[c]) : r[c] === null ? "(none)" : String(r[c]),
        ),
    })),
    rows,
    { id },
  );
}

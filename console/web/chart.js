// A time-series chart (uPlot) whose background is shaded by provenance: grey where a bucket's
// value comes from the active batch run only, blue where the speed layer contributed.
import { el } from "./lib.js";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
export const SHADES = { batch: "rgba(100, 116, 139, 0.16)", speed: "rgba(37, 99, 235, 0.14)" };

/**
 * Draws `series` ([{ label, values }]) over `xs` (Unix seconds) into `holder`, shading each
 * bucket of `width` seconds by `parts[i]` ("batch", "speed" or "both").
 */
export function drawChart(holder, { xs, series, parts, width, metric }) {
  holder.replaceChildren();
  if (typeof uPlot === "undefined") {
    holder.append(el("p", { class: "error" }, "The chart library did not load."));
    return null;
  }
  const shade = (u) => {
    const { ctx } = u;
    const top = u.bbox.top;
    const height = u.bbox.height;
    ctx.save();
    xs.forEach((x, i) => {
      const part = parts[i];
      if (!part) return;
      const left = u.valToPos(x, "x", true);
      const right = u.valToPos(x + width, "x", true);
      ctx.fillStyle = part === "batch" ? SHADES.batch : SHADES.speed;
      ctx.fillRect(left, top, Math.max(1, right - left), height);
    });
    ctx.restore();
  };
  const options = {
    width: Math.max(320, holder.clientWidth || 900),
    height: 300,
    scales: { x: { time: true } },
    axes: [{}, { label: metric, size: 70 }],
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: xs.length < 120 } }))],
    hooks: { drawClear: [shade] },
    legend: { live: true },
  };
  return new uPlot(options, [xs, ...series.map((s) => s.values)], holder);
}

export function legend() {
  return el(
    "p",
    { class: "provenance-legend" },
    el("span", { class: "swatch swatch-batch" }),
    " batch run only ",
    el("span", { class: "swatch swatch-speed" }),
    " speed layer contributed (with or without batch rows)",
  );
}

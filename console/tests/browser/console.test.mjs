// The console in Debian's headless Chromium, driven through the DevTools protocol by
// playwright-core (no browser of its own). Run by tests/integration/console/, which starts a
// real pipeline and answers this script's "WAITING" lines on stdin. Each check compares what
// the page shows with what the public API answers; a failure exits non-zero naming it.
//
// Environment: BRAID_URL, BRAID_ADMIN_TOKEN, BRAID_CHROMIUM, BRAID_SCREENSHOTS (a folder),
// BRAID_HOSTILE_PAGE and BRAID_HOSTILE_PAYLOAD (record contents holding HTML and script),
// BRAID_REPLAY_TOPIC.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("BRAID_URL");
const token = env("BRAID_ADMIN_TOKEN");
const shots = env("BRAID_SCREENSHOTS");
const hostilePage = env("BRAID_HOSTILE_PAGE");
const hostilePayload = env("BRAID_HOSTILE_PAYLOAD");
const replayTopic = env("BRAID_REPLAY_TOPIC");
mkdirSync(shots, { recursive: true });

const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
/** Asks the test harness to do `what` and waits for its answer. */
async function harness(what) {
  console.log(`WAITING ${what}`);
  const answer = await lines.next();
  if (answer.done) throw new Error(`the harness closed stdin while asked for ${what}`);
}

function check(condition, what, detail) {
  if (!condition) throw new Error(`${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  console.error(`ok: ${what}`);
}

async function until(what, condition, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: env("BRAID_CHROMIUM"),
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const figures = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  const foreign = [];
  page.on("console", (m) => {
    if (m.type() === "error" || /Content Security Policy/i.test(m.text())) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith("data:")) foreign.push(r.url());
  });
  const api = (path, admin = false) =>
    page.evaluate(
      async ([p, t]) => {
        const r = await fetch(p, { headers: t ? { Authorization: `Bearer ${t}` } : {}, cache: "no-store" });
        return r.json();
      },
      [path, admin ? token : ""],
    );
  const text = (selector) => page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));
  const digits = (s) => Number(String(s).replace(/,/g, ""));

  // ---- First load: what travels over the wire, and the security header.
  const loaded = [];
  page.on("requestfinished", async (r) => {
    const sizes = await r.sizes().catch(() => null);
    if (sizes) loaded.push(sizes.responseBodySize + sizes.responseHeadersSize);
  });
  const first = await page.goto(`${base}/`, { waitUntil: "networkidle" });
  const csp = first.headers()["content-security-policy"] || "";
  check(csp.includes("default-src 'none'") && csp.includes("script-src 'self'"), "the page has a Content-Security-Policy", csp);
  await page.waitForSelector("#components-table");
  figures.first_load_bytes = loaded.reduce((a, b) => a + b, 0);
  figures.first_load_requests = loaded.length;
  check(figures.first_load_bytes < 300 * 1024, "the first load is under 300 kB over the wire", figures.first_load_bytes);

  // ---- Overview: the numbers equal the API's (the pipeline is quiet now).
  await until("a refresh after the pipeline went quiet", async () => Number(await page.getAttribute("#updated", "data-refreshes")) >= 2);
  const status = await api("/v1/status");
  const components = await text("#components-table tbody td:first-child");
  check(["database", "kafka", "speed", "sink", "scheduler", "alerts"].every((c) => components.includes(c)), "every component is listed", components);
  const statuses = await text("#components-table tbody td[data-col=status]");
  check(statuses[components.indexOf("speed")] === "ok", "the speed layer is ok", statuses);
  const ends = (await text("#lag-table td[data-col=high]")).map(digits);
  check(JSON.stringify(ends) === JSON.stringify(status.speed.partitions.map((p) => p.high_watermark)), "end offsets per partition equal /v1/status", { ends, api: status.speed.partitions });
  const speedNext = (await text("#lag-table td[data-col=speed-next]")).map(digits);
  check(JSON.stringify(speedNext) === JSON.stringify(status.speed.partitions.map((p) => p.next_offset)), "speed positions equal /v1/status", speedNext);
  const sinkNext = (await text("#lag-table td[data-col=sink-next]")).map(digits);
  check(JSON.stringify(sinkNext) === JSON.stringify(status.sink.partitions.map((p) => p.next_offset)), "sink positions equal /v1/status", sinkNext);
  const runs = (await text("#batch-table td[data-col=run]")).map(digits);
  check(runs.length > 0 && JSON.stringify(runs) === JSON.stringify(status.batch_runs.map((r) => r.run_id)), "batch runs equal /v1/status", runs);
  const letters = await api("/v1/dead-letters");
  const counts = (await text("#dead-letter-counts td[data-col=count]")).map(digits);
  check(counts.length > 0 && JSON.stringify(counts) === JSON.stringify(letters.counts.map((c) => c.count)), "dead-letter counts equal /v1/dead-letters", counts);

  // The token, entered once, unlocks samples and job history; the hostile payload is text.
  await page.fill("#token-input", token);
  await page.click("#token-form button");
  await page.waitForSelector("#dead-letter-samples");
  await page.waitForSelector("#job-history table");
  const payloads = await text("#dead-letter-samples pre.payload");
  check(payloads.some((p) => p.includes(hostilePayload)), "the hostile dead letter's payload is shown as text", payloads.slice(0, 3));
  figures.token_in_session_storage = await page.evaluate(() => sessionStorage.getItem("braid.adminToken") !== null);
  await page.screenshot({ path: join(shots, "overview.png"), fullPage: true });

  // ---- A view: the chart has points, its total equals the API's, shaded by provenance.
  await page.goto(`${base}/#/views/page_views`);
  await page.waitForSelector("#chart canvas");
  await until("the chart's first update", async () => Number(await page.getAttribute("#live", "data-updates")) >= 1);
  await page.screenshot({ path: join(shots, "view.png"), fullPage: false });
  await page.selectOption("#group-by", "");
  await page.selectOption("#range", "86400");
  const settled = async () => {
    const before = await page.getAttribute("#live", "data-updates");
    await until("a newer update", async () => (await page.getAttribute("#live", "data-updates")) !== before);
  };
  await settled();
  const chartQuery = await page.getAttribute("#chart", "data-query");
  check(chartQuery.includes("parts=true") && chartQuery.includes("group_by=&"), "the chart asks for the total with provenance", chartQuery);
  const answer = await api(chartQuery);
  const points = Number(await page.getAttribute("#chart", "data-points"));
  const total = Number(await page.getAttribute("#chart", "data-total"));
  const apiTotal = answer.rows.reduce((s, r) => s + r.count, 0);
  figures.chart_points = points;
  check(points > 0 && points === answer.rows.length, "the chart has one point per row of the API", { points, rows: answer.rows.length });
  check(total === apiTotal, "the chart's total equals the API's", { total, apiTotal });
  const batchOnly = answer.rows.filter((r) => r.batch_part && !r.speed_part).length;
  const withSpeed = answer.rows.filter((r) => r.speed_part).length;
  check(answer.rows.some((r) => r.batch_part), "the answer merges a batch run", answer.provenance.batch);
  check(Number(await page.getAttribute("#chart", "data-batch-buckets")) === batchOnly, "batch-only buckets are shaded as batch", batchOnly);
  check(Number(await page.getAttribute("#chart", "data-speed-buckets")) === withSpeed, "buckets with speed rows are shaded as speed", withSpeed);
  const rolling = await api(`/v1/views/page_views/rolling?window=5m&group_by=&order=count:desc&limit=20`);
  const rollingShown = (await text("#rolling-table td[data-col=count] span")).map(digits);
  check(JSON.stringify(rollingShown) === JSON.stringify(rolling.rows.map((r) => r.count)), "the rolling table equals the API's", { rollingShown, api: rolling.rows });
  const top = await api(`/v1/views/page_views/top?window=1h&metric=count&k=10&group_by=`);
  const topShown = (await text("#top-table td[data-col=count] span")).map(digits);
  check(JSON.stringify(topShown) === JSON.stringify(top.rows.map((r) => r.count)), "the top table equals the API's", { topShown, api: top.rows });

  // ---- A live update arrives without a reload.
  await page.evaluate(() => (window.__sameDocument = true));
  await harness("live"); // answered once the new records are in the speed layer
  const updatesAt = Number(await page.getAttribute("#live", "data-updates"));
  // The second update from here started after the answer, so it holds every new record.
  await until("two more updates", async () => Number(await page.getAttribute("#live", "data-updates")) >= updatesAt + 2);
  const liveTotal = Number(await page.getAttribute("#chart", "data-total"));
  const liveAnswer = await api(await page.getAttribute("#chart", "data-query"));
  figures.live_total_before = total;
  figures.live_total_after = liveTotal;
  check(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");
  check(liveTotal > total, "the chart's total grew with the new records", { before: total, after: liveTotal });
  check(liveTotal === liveAnswer.rows.reduce((s, r) => s + r.count, 0), "the updated total equals the API's", liveTotal);

  // ---- Records holding HTML and script are shown as text, group by and filter included.
  await page.selectOption("#group-by", "page");
  await page.selectOption("#filter-field", "page");
  await page.fill("#filter-value", hostilePage);
  await page.click("#view-controls button[type=submit]");
  await until("the filtered table", async () => (await text("#latest-table td[data-col=page] span")).includes(hostilePage));
  const injected = await page.evaluate(() => ({
    xss: window.__xss,
    scripts: document.querySelectorAll("main script").length,
    images: document.querySelectorAll("main img").length,
  }));
  check(injected.xss === undefined && injected.scripts === 0 && injected.images === 0, "nothing in a record runs or renders as HTML", injected);
  await page.screenshot({ path: join(shots, "view-hostile.png"), fullPage: true });

  // ---- A view with quantiles and a sample: each level is a chart metric, the sample is not,
  // and the sampled records beside the chart are the API's.
  await page.goto(`${base}/#/views/page_latency`);
  await page.waitForSelector("#sample-table");
  const chartMetrics = await page.$$eval("#metric option", (options) => options.map((o) => o.value));
  check(chartMetrics.includes("quantile_duration_ms_p99") && !chartMetrics.includes("sample"), "quantile levels are chart metrics, the sample is not", chartMetrics);
  const sampleAnswer = await api(await page.getAttribute("#sample", "data-query"));
  const sampledOffsets = (await text("#sample-table td[data-col=o] span")).map(digits);
  figures.sampled_records = sampledOffsets.length;
  check(sampledOffsets.length > 0 && JSON.stringify(sampledOffsets) === JSON.stringify(sampleAnswer.sample.records.map((r) => r.o)), "the sample table equals /sample", { sampledOffsets, api: sampleAnswer.sample.records.map((r) => r.o) });
  await page.selectOption("#metric", "quantile_duration_ms_p99");
  await until("the p99 chart", async () => Number(await page.getAttribute("#chart", "data-points")) > 0);
  await page.screenshot({ path: join(shots, "view-quantiles.png"), fullPage: true });

  // ---- Alerts: the instances equal /v1/alerts.
  await page.goto(`${base}/#/alerts`);
  await page.waitForSelector("#instances-table");
  const alerts = await api("/v1/alerts");
  await until("the instances", async () => (await text("#instances-table td[data-col=state]")).length === alerts.alerts.length);
  const states = await text("#instances-table td[data-col=state]");
  check(states.includes("firing"), "a firing instance is shown", states);
  check(JSON.stringify([...states].sort()) === JSON.stringify(alerts.alerts.map((a) => a.state).sort()), "the states equal /v1/alerts", states);
  await page.screenshot({ path: join(shots, "alerts.png"), fullPage: true });

  // ---- Jobs: a republish started from the page shows its progress to the end.
  await page.goto(`${base}/#/jobs`);
  await page.waitForSelector("#replay-form");
  await page.fill("#replay-from", new Date(Date.now() - 3 * 3600 * 1000).toISOString());
  await page.fill("#replay-to", new Date(Date.now() + 3600 * 1000).toISOString());
  await page.fill("#replay-topic", replayTopic);
  await page.fill("#replay-rate", "800");
  await page.click("#start-replay");
  const seen = new Set();
  await until(
    "the republish to finish",
    async () => {
      const fraction = await page.getAttribute(".progress", "data-fraction");
      const state = await page.getAttribute(".progress", "data-status");
      if (fraction) seen.add(Number(fraction).toFixed(2));
      if (state === "running" && fraction && Number(fraction) > 0.05 && Number(fraction) < 0.95 && !figures.progress_screenshot) {
        figures.progress_screenshot = true;
        await page.screenshot({ path: join(shots, "jobs-progress.png"), fullPage: false });
      }
      if (state === "failed") throw new Error(`the republish failed: ${await page.textContent("#progress-label")}`);
      return state === "succeeded";
    },
    120000,
  );
  const partway = [...seen].map(Number).filter((f) => f > 0 && f < 1);
  figures.progress_values_seen = seen.size;
  check(partway.length >= 2, "the bar showed the republish part way, more than once", [...seen]);
  check((await page.getAttribute(".progress", "data-fraction")) === "1", "the bar ends full");
  const label = await page.textContent("#progress-label");
  check(/succeeded/.test(label) && /sent/.test(label), "the label says it succeeded and what was sent", label);
  await page.click("#start-batch");
  await until("the batch run started from the page to succeed", async () => {
    const l = await page.textContent("#progress-label");
    if (/failed/.test(l)) throw new Error(l);
    return /batch: succeeded/.test(l);
  }, 120000);
  await page.screenshot({ path: join(shots, "jobs.png"), fullPage: true });

  check(foreign.length === 0, "no request left the server's origin", foreign);
  check(problems.length === 0, "no console errors or CSP violations", problems);
  console.log(`RESULT ${JSON.stringify(figures)}`);
} finally {
  await browser.close();
  stdin.close();
}

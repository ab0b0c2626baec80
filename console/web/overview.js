// The overview: components' health, lag per partition and freshness of the speed layer and the
// sink, the latest batch runs, job history and dead letters.
import { el, api, poll, table, badge, section, num, ago, time, token, errorText } from "./lib.js";

export function overview(main, page, views) {
  const health = section("Components", "components");
  const lag = section("Lag per partition", "lag");
  const batch = section("Latest batch runs", "batch-runs");
  const jobs = section("Job history", "job-history");
  const dead = section("Dead letters", "dead-letters");
  const served = section("Views", "views");
  const updated = el("p", { class: "updated", id: "updated" }, "");
  main.append(el("h1", {}, "Overview"), updated, health.node, lag.node, batch.node, jobs.node, dead.node, served.node);

  served.set(
    table(
      [
        { title: "view", value: (v) => el("a", { href: `#/views/${encodeURIComponent(v.name)}` }, v.name) },
        { title: "group by", value: (v) => v.group_by.map((g) => g.name).concat(v.attributes.map((a) => a.name)).join(", ") },
        { title: "bucket", value: (v) => v.bucket },
        { title: "metrics", value: (v) => v.metrics.map((m) => m.column).join(", ") },
        { title: "active batch run", value: (v) => (v.batch ? `#${v.batch.run_id}, covers epochs < ${v.batch.covered_epoch}` : "none yet") },
      ],
      views,
    ),
  );

  let refreshes = 0;
  poll(page, 2000, async () => {
    const status = await api("/v1/status");
    refreshes += 1;
    updated.textContent = `updated ${time(status.checked_at)} · refresh ${refreshes}`;
    updated.dataset.refreshes = refreshes;
    health.set(
      table(
        [
          { title: "component", key: "component", value: (c) => c.name },
          { title: "status", key: "status", value: (c) => badge(c.status) },
          { title: "detail", value: (c) => c.detail },
        ],
        status.components,
        { id: "components-table" },
      ),
    );
    const sink = new Map(status.sink.partitions.map((p) => [p.partition, p]));
    lag.set(
      el(
        "p",
        { class: "freshness" },
        `Speed: ${num(status.speed.offset_lag)} records behind, newest event ${time(status.speed.newest_event_time)} (${num(status.speed.event_lag_seconds)} s behind now), last flush ${ago(status.speed.last_flush_at)}. `,
        `Sink: ${num(status.sink.offset_lag)} records behind, last commit ${ago(status.sink.seconds_since_commit)}.`,
      ),
      table(
        [
          { title: "partition", key: "partition", num: true, value: (p) => p.partition },
          { title: "end offset", key: "high", num: true, value: (p) => num(p.high_watermark) },
          { title: "speed next", key: "speed-next", num: true, value: (p) => num(p.next_offset) },
          { title: "speed lag", key: "speed-lag", num: true, value: (p) => num(p.lag) },
          { title: "speed commit", value: (p) => ago(p.committed_at) },
          { title: "sink next", key: "sink-next", num: true, value: (p) => num(sink.get(p.partition)?.next_offset) },
          { title: "sink lag", key: "sink-lag", num: true, value: (p) => num(sink.get(p.partition)?.lag) },
          { title: "sink commit", value: (p) => ago(sink.get(p.partition)?.committed_at) },
        ],
        status.speed.partitions,
        { id: "lag-table" },
      ),
    );
    batch.set(
      table(
        [
          { title: "run", key: "run", num: true, value: (r) => r.run_id },
          { title: "view", value: (r) => r.view_name },
          { title: "status", value: (r) => badge(r.status) },
          { title: "cut epoch", num: true, value: (r) => num(r.cut_epoch) },
          { title: "covered epoch", key: "covered", num: true, value: (r) => num(r.covered_epoch) },
          { title: "Delta version", num: true, value: (r) => num(r.delta_version) },
          { title: "rows read", num: true, value: (r) => num(r.rows_read) },
          { title: "finished", value: (r) => time(r.finished_at) },
        ],
        status.batch_runs,
        { id: "batch-table" },
      ),
    );
    if (token()) {
      try {
        const history = await api("/v1/jobs?limit=10", { admin: true });
        jobs.set(jobTable(history.jobs));
      } catch (error) {
        jobs.set(errorText(error));
      }
    } else {
      jobs.set(el("p", { class: "hint" }, "Enter the admin token (top right) to see the job history."));
    }
    const letters = await api("/v1/dead-letters?recent=10", { admin: Boolean(token()) });
    dead.set(
      table(
        [
          { title: "layer", value: (c) => c.layer },
          { title: "reason", value: (c) => c.reason_code },
          { title: "records", key: "count", num: true, value: (c) => num(c.count) },
          { title: "newest", value: (c) => time(c.newest) },
        ],
        letters.counts,
        { id: "dead-letter-counts" },
      ),
      letters.recent
        ? [
            el("h3", {}, "Most recent"),
            table(
              [
                { title: "layer", value: (d) => d.layer },
                { title: "position", value: (d) => `${d.partition}:${d.offset}` },
                { title: "reason", value: (d) => d.reason },
                { title: "payload (as text)", value: (d) => el("pre", { class: "payload" }, d.payload_text + (d.payload_shown_in_part ? " …" : "")) },
              ],
              letters.recent,
              { id: "dead-letter-samples" },
            ),
          ]
        : el("p", { class: "hint" }, "Enter the admin token to see recent payloads."),
    );
  });
}

export function jobTable(jobs) {
  return table(
    [
      { title: "id", num: true, value: (j) => j.id },
      { title: "job", value: (j) => j.job },
      { title: "trigger", value: (j) => j.trigger },
      { title: "status", value: (j) => badge(j.status) },
      { title: "started", value: (j) => time(j.started_at) },
      { title: "finished", value: (j) => time(j.finished_at) },
      { title: "rows read", num: true, value: (j) => num(j.rows_read) },
      { title: "rows written", num: true, value: (j) => num(j.rows_written) },
      { title: "error", value: (j) => j.error || "" },
    ],
    jobs,
    { class: "jobs-table" },
  );
}

// The accuracy panel: how production did on data that arrived after its training, one point
// per accuracy record (`forecast evaluate`, GET /v1/models/{name} lists the latest 30), the
// model's MASE beside the naive's and the seasonal naive's, the version each record scored,
// where that version changed, and whether production still holds.

import { api, enc } from "../api.js";
import { COLORS, destroyCharts, drawChart, line, verticalMarkers } from "../charts.js";
import { $, el, fillSelect, showError } from "../dom.js";
import { fmt, fmtCreated, tsSeconds } from "../format.js";
import { modelByName, modelOptions, state } from "../state.js";

// Records arrive a few times a day at most: the panel asks again when the registry changed (a
// new version, a moved alias), when another model is chosen, and otherwise this often.
const REFRESH_MS = 30000;
// One line per version evaluated, so that a line never joins two versions' scores.
const VERSION_COLORS = ["#2563eb", "#7c3aed", "#059669", "#db2777", "#0891b2", "#4f46e5"];
const STATUS = {
  holds: { badge: "Holds", kind: "holds" },
  degraded: { badge: "Degraded", kind: "degraded" },
  loses_to_seasonal_naive: { badge: "Loses to the seasonal naive", kind: "loses" },
};

const mase = (record, method) => record.metrics?.[method]?.mase ?? null;

// x is the record's data.last_timestamp, the latest actual it scored, not its created_at: a
// record describes the data up to that instant, so the chart reads in the series' own time
// (the time of the version's training data and of the forecasts), whenever the evaluation job
// happened to run; a late, re-run or backfilled evaluation lands where its data belongs. Two
// records of the same data (a new version scored on the window the old one was) share an x;
// each version has its own line, so they show as two points there, not as a jump in one line.
function recordX(record) {
  return tsSeconds(record.data.last_timestamp);
}

// The records in the chart's order (by x, then by record number) with the versions' lines.
function chartData(records) {
  const sorted = [...records].sort((a, b) => recordX(a) - recordX(b) || a.record - b.record);
  const versions = [...new Set(records.map((r) => r.version))];
  const modelLines = versions.map((version) => sorted.map((r) => (r.version === version ? mase(r, "model") : null)));
  return {
    sorted,
    versions,
    data: [sorted.map(recordX), ...modelLines, sorted.map((r) => mase(r, "naive")), sorted.map((r) => mase(r, "seasonal_naive"))],
  };
}

// The records (in record order, the order they were written) whose version differs from the
// record before: the first one, then every change of the version evaluated (a promotion, or a
// rollback).
function versionChanges(records) {
  return records.filter((record, index) => index === 0 || record.version !== records[index - 1].version);
}

function renderChart(records) {
  const container = $("accuracy-chart");
  const { sorted, versions, data } = chartData(records);
  const changes = versionChanges(records);
  const modelSeries = versions.map((version, index) => line(`model v${version} MASE`, VERSION_COLORS[index % VERSION_COLORS.length], { points: { show: true, size: 7 } }));
  // MASE from 0, so that the lines' heights compare as ratios; the x range padded, so that the
  // first and last records (and a marker on them) sit inside the plot. Both ranges are set, not
  // found by uPlot, which leaves out a last point that shares its x with the one before.
  const xs = data[0];
  const span = xs.at(-1) - xs[0];
  const margin = span > 0 ? span * 0.04 : 43200;
  const top = Math.max(1, ...data.slice(1).flat().filter((v) => v !== null && Number.isFinite(v)));
  drawChart(container, {
    yLabel: "MASE",
    data,
    scales: { x: { range: () => [xs[0] - margin, xs.at(-1) + margin] }, y: { range: () => [0, top * 1.1] } },
    series: [
      ...modelSeries,
      line("naive MASE", COLORS.naive, { dash: [6, 4], points: { show: true, size: 5 } }),
      line("seasonal naive MASE", COLORS.seasonalNaive, { dash: [6, 4], points: { show: true, size: 5 } }),
    ],
    plugins: [verticalMarkers(changes.slice(1).map((r) => ({ x: recordX(r), label: `v${r.version}` })))],
  });
  container.dataset.versions = sorted.map((r) => r.version).join("|");
  container.dataset.promotions = changes.slice(1).map((r) => `${r.record}:v${r.version}`).join("|");
  const latest = records.at(-1);
  container.setAttribute("aria-label", `MASE on fresh data over ${records.length} accuracy records, versions ${versions.join(", ")}; the latest, record ${latest.record} of version ${latest.version}: model ${fmt(mase(latest, "model"))}, naive ${fmt(mase(latest, "naive"))}, seasonal naive ${fmt(mase(latest, "seasonal_naive"))}`);
  const moved = changes.length > 1 ? ` Dashed vertical lines mark where the version evaluated changed (${changes.slice(1).map((r) => `version ${r.version} from record ${r.record}`).join(", ")}).` : "";
  $("accuracy-caption").textContent = `One point per record, at the last timestamp of the data it scored (UTC); lower is better, and the model must stay under the seasonal naive.${moved} Drag to zoom, double-click to reset.`;
}

function ratioCell(label, value, title) {
  return el("td", { class: "num", dataset: { label }, title, text: value === null || value === undefined ? "–" : `${fmt(value)}×` });
}

function renderTable(records) {
  const body = $("accuracy-table").tBodies[0];
  const changed = new Set(versionChanges(records).slice(1).map((r) => r.record));
  body.replaceChildren();
  // Newest first, as the models table lists versions.
  for (const record of [...records].reverse()) {
    const status = STATUS[record.status] || { badge: record.status, kind: "unknown" };
    const versionCell = el("td", { dataset: { label: "Version" }, class: "version-cell" }, `v${record.version}`);
    if (changed.has(record.record)) versionCell.append(" ", el("span", { class: "badge promotion", title: "the version evaluated changed here: production was promoted (or rolled back) since the record before", text: "new version" }));
    const model = mase(record, "model");
    const seasonal = mase(record, "seasonal_naive");
    const wins = model !== null && seasonal !== null && model < seasonal;
    body.append(el("tr", { dataset: { record: String(record.record), version: String(record.version), status: record.status } },
      el("th", { scope: "row", dataset: { label: "Record" } }, `#${record.record}`,
        el("span", { class: "evaluated" }, "evaluated ", el("time", { datetime: record.created_at, text: fmtCreated(record.created_at) }))),
      el("td", { dataset: { label: "Data to (UTC)" } }, el("time", { datetime: record.data.last_timestamp, text: fmtCreated(record.data.last_timestamp) })),
      versionCell,
      el("td", { class: "num", dataset: { label: "Forecasts" }, title: `${record.data.n_series} series`, text: String(record.data.windows) }),
      el("td", { class: "num", dataset: { label: "Model MASE" } }, el("span", { class: `model-value ${wins ? "win" : "lose"}`, text: fmt(model) })),
      el("td", { class: "num", dataset: { label: "Naive MASE" }, text: fmt(mase(record, "naive")) }),
      el("td", { class: "num", dataset: { label: "Seasonal naive MASE" }, text: fmt(seasonal) }),
      ratioCell("vs seasonal naive", record.ratio_to_seasonal_naive, "model MASE / seasonal naive MASE: 1 or more, the model loses to it"),
      ratioCell("vs its test", record.ratio_to_test, `model MASE / the version's test MASE (${fmt(record.test_mase)}): above ${fmt(record.degradation_ratio)}, degraded`),
      el("td", { dataset: { label: "Status" } }, el("span", { class: `badge status-${status.kind}`, text: status.badge }))));
  }
}

// What the latest record says, in words, with what to do about it.
function renderStatus(model, records) {
  const box = $("accuracy-status");
  const latest = records.at(-1);
  const status = STATUS[latest.status] || { badge: latest.status, kind: "unknown" };
  const scored = `Record #${latest.record}, version ${latest.version} on ${latest.data.windows} forecasts up to ${fmtCreated(latest.data.last_timestamp)} UTC`;
  const ours = fmt(mase(latest, "model"));
  const seasonal = fmt(mase(latest, "seasonal_naive"));
  const words = {
    loses: `${scored}: MASE ${ours}, the seasonal naive's ${seasonal}. Production no longer beats the seasonal naive: retrain on the new data (forecast train --retrain --if-degraded); until then the seasonal naive forecasts as well.`,
    degraded: `${scored}: MASE ${ours}, ${fmt(latest.ratio_to_test)} times its test MASE ${fmt(latest.test_mase)} (limit ${fmt(latest.degradation_ratio)}); it still beats the seasonal naive (${seasonal}). Retrain on the new data.`,
    holds: `${scored}: MASE ${ours}, within ${fmt(latest.degradation_ratio)} times its test MASE ${fmt(latest.test_mase)}, and better than the seasonal naive (${seasonal}).`,
    unknown: `${scored}: status ${latest.status}.`,
  }[status.kind];
  box.dataset.status = latest.status;
  box.className = `accuracy-status ${status.kind}`;
  box.replaceChildren(
    el("span", { class: `badge status-${status.kind}`, "data-testid": "accuracy-badge", text: status.badge }),
    " ",
    el("span", { text: words }),
  );
  const production = model?.aliases?.production;
  if (production !== undefined && production !== latest.version) {
    box.append(" ", el("span", { class: "accuracy-note", text: `Production is now version ${production}; the next forecast evaluate scores it.` }));
  }
  box.hidden = false;
}

function renderAccuracy(name, records) {
  const model = modelByName(name);
  const empty = $("accuracy-empty");
  const content = $("accuracy-content");
  $("accuracy").dataset.shown = name;
  $("accuracy").dataset.records = String(records.length);
  if (!records.length) {
    destroyCharts(content);
    $("accuracy-status").hidden = true;
    $("accuracy-status").dataset.status = "none";
    content.hidden = true;
    empty.textContent = `No accuracy records yet for ${name}: schedule \`forecast evaluate --data RECENT.csv --name ${name}\` to score production on the data that arrives after its training.`;
    empty.hidden = false;
    return;
  }
  empty.hidden = true;
  content.hidden = false; // before drawing: the chart takes its container's width
  renderStatus(model, records);
  renderChart(records);
  renderTable(records);
}

async function loadAccuracy(name) {
  const token = ++state.accuracyToken;
  state.accuracyLoadedAt = Date.now();
  try {
    const summary = await api(`/v1/models/${enc(name)}`);
    if (token !== state.accuracyToken) return;
    showError($("accuracy-error"), "");
    const records = summary.accuracy || [];
    // The model's aliases are part of the key: a promotion changes the status's note.
    const json = JSON.stringify([name, summary.aliases, records]);
    if (json === state.accuracyJson) return;
    state.accuracyJson = json;
    renderAccuracy(name, records);
  } catch (error) {
    if (token === state.accuracyToken) showError($("accuracy-error"), `The accuracy records of ${name} are unavailable: ${error.message}`);
  }
}

export function refreshAccuracySelect() {
  fillSelect($("accuracy-model"), modelOptions());
}

// Called after each answer of the poll: `registryChanged` when the listing changed.
export function refreshAccuracy(registryChanged) {
  const name = $("accuracy-model").value;
  if (!name) {
    state.accuracyJson = "";
    return;
  }
  if (registryChanged || name !== $("accuracy").dataset.shown || Date.now() - state.accuracyLoadedAt >= REFRESH_MS) loadAccuracy(name);
}

export function initAccuracyPanel() {
  $("accuracy-model").addEventListener("change", (event) => loadAccuracy(event.target.value));
  $("accuracy-form").addEventListener("submit", (event) => event.preventDefault());
}

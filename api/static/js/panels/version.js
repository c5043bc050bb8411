// The version panel: one version's hyperparameters, loss per epoch, interval coverage and the
// actual-vs-forecast charts its training job stored.

import { api, enc } from "../api.js";
import { COLORS, bandEdges, destroyCharts, drawChart, line, pad } from "../charts.js";
import { $, el, fillSelect, showError } from "../dom.js";
import { fmt, fmtCreated, tsSeconds } from "../format.js";
import { defaultVersion, modelByName, modelOptions, state, versionKey } from "../state.js";

function versionLabel(model, version) {
  const aliases = version.aliases.length ? ` (${version.aliases.join(", ")})` : "";
  return `version ${version.version}${aliases}`;
}

export function refreshVersionSelects() {
  const modelSelect = $("version-model");
  const name = fillSelect(modelSelect, modelOptions(), state.shownVersion?.name);
  const model = modelByName(name);
  const versions = model ? [...model.versions].sort((a, b) => b.version - a.version) : [];
  fillSelect($("version-number"), versions.map((v) => [String(v.version), versionLabel(model, v)]), state.shownVersion ? String(state.shownVersion.version) : undefined);
}

export function selectVersion(name, version) {
  state.shownVersion = { name, version };
  refreshVersionSelects();
  loadVersion(name, version);
}

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", { text: value === undefined || value === null || value === "" ? "–" : String(value) })];
}

function renderHyperparameters(manifest) {
  const training = manifest.training || {};
  const network = training.network || {};
  const data = manifest.data || {};
  const timings = manifest.timings || {};
  const list = $("hyperparameters");
  list.replaceChildren(
    ...fact("Architecture", (network.arch || "").toUpperCase()),
    ...fact("Hidden size", network.hidden_size),
    ...fact("Layers", network.num_layers),
    ...fact("Dropout", network.dropout),
    ...fact("Linear skip", network.linear_skip === undefined ? undefined : network.linear_skip ? "yes" : "no"),
    ...fact("Input size", network.input_size),
    ...fact("Horizon", network.horizon),
    ...fact("Frequency", manifest.freq),
    ...fact("Calendar features", (manifest.features || []).join(", ") || "none"),
    ...fact("Scaling", [manifest.scaling?.mode, manifest.scaling?.scaler].filter(Boolean).join(" / ")),
    ...fact("Learning rate", training.learning_rate),
    ...fact("Batch size", training.batch_size),
    ...fact("Weight decay", training.weight_decay),
    ...fact("Gradient clip norm", training.clip_norm),
    ...fact("Epochs run / max (per member)", `${manifest.epochs_run} / ${training.max_epochs}`),
    ...fact("Best epoch", manifest.best_epoch),
    ...fact("Patience", training.patience),
    ...fact("Seed", training.seed),
    ...fact("Training data", `${data.n_series} series, ${data.n_points} points`),
    ...fact("Data span", data.first_timestamp ? `${fmtCreated(data.first_timestamp)} – ${fmtCreated(data.last_timestamp)}` : undefined),
    ...fact("Training time", timings.train_s === undefined ? undefined : `${fmt(timings.train_s)} s`),
    ...fact("Trained on", manifest.provenance?.device),
    ...fact("Parent version", manifest.parent_version),
    ...fact("Created (UTC)", fmtCreated(manifest.created_at)),
  );
}

function renderLoss(epochs, bestEpoch, members = 1) {
  const container = $("loss-chart");
  if (!epochs.length) {
    destroyCharts(container);
    container.replaceChildren(el("p", { class: "empty", text: "No epochs recorded." }));
    return;
  }
  const x = epochs.map((e) => e.epoch);
  const train = epochs.map((e) => e.train_loss);
  const validation = epochs.map((e) => e.val_loss);
  drawChart(container, {
    time: false,
    xLabel: "epoch",
    yLabel: "loss",
    data: [x, train, validation],
    series: [line("train loss", COLORS.train, { points: { show: true } }), line("validation loss", COLORS.validation, { points: { show: true } })],
  });
  container.setAttribute("aria-label", `Loss per epoch over ${epochs.length} epochs: train ${fmt(train.at(-1))}, validation ${fmt(validation.at(-1))} at the last epoch`);
  const whose = members > 1 ? ` of the first of ${members} ensemble members` : "";
  $("loss-caption").textContent = `${epochs.length} epochs${whose}; the weights kept are those of epoch ${bestEpoch} (lowest validation loss). Drag to zoom, double-click to reset.`;
}

function renderCoverage(intervals) {
  const body = $("coverage-table").tBodies[0];
  const coverage = intervals?.coverage || {};
  const levels = Object.keys(coverage).sort((a, b) => Number(a) - Number(b));
  body.replaceChildren();
  if (!levels.length) {
    body.append(el("tr", {}, el("td", { colspan: 4, class: "empty", text: "No coverage recorded." })));
    return;
  }
  for (const level of levels) {
    const nominal = Number(level) / 100;
    const empirical = coverage[level];
    const gap = empirical - nominal;
    const verdict = Math.abs(gap) <= 0.05 ? "ok" : gap < 0 ? "under" : "over";
    const words = { ok: "close to nominal", under: "too narrow", over: "wider than needed" }[verdict];
    const bar = el("div", { class: "coverage-bar", "aria-hidden": "true" },
      el("span", { class: `fill ${verdict}`, style: `width:${Math.max(0, Math.min(1, empirical)) * 100}%` }),
      el("span", { class: "nominal", style: `left:${nominal * 100}%` }));
    body.append(el("tr", { dataset: { level } },
      el("th", { scope: "row", text: `${level}%` }),
      el("td", { class: "num", text: `${(nominal * 100).toFixed(0)}%` }),
      el("td", { class: `num coverage-${verdict}`, title: words, text: `${(empirical * 100).toFixed(1)}%` }, el("span", { class: "visually-hidden", text: ` (${words})` })),
      el("td", { class: "bar-cell" }, bar)));
  }
  const caption = $("coverage-table").caption;
  caption.textContent = `Share of actual test values inside the interval (${intervals.n_windows ?? "?"} calibration windows); the tick marks the nominal level.`;
}

function renderReport(samples) {
  const grid = $("report-charts");
  destroyCharts(grid);
  grid.replaceChildren();
  if (!samples.length) {
    grid.append(el("p", { class: "empty", text: "This version stored no test samples." }));
    return;
  }
  for (const sample of samples) {
    const chartBox = el("div", { class: "chart", role: "img" });
    const title = `series ${sample.series_id}, forecast from ${fmtCreated(sample.origin)}`;
    chartBox.setAttribute("aria-label", `Actual versus forecast for ${title}`);
    grid.append(el("figure", { class: "chart-figure card", dataset: { seriesId: sample.series_id } }, el("figcaption", { text: title }), chartBox));
    const nHistory = sample.history.length;
    const nFuture = sample.timestamps.length;
    drawChart(chartBox, {
      height: 200,
      data: [
        [...sample.history_timestamps, ...sample.timestamps].map(tsSeconds),
        pad(sample.history, 0, nFuture),
        pad(sample.actual, nHistory, 0),
        pad(sample.forecast, nHistory, 0),
        pad(sample.upper_80, nHistory, 0),
        pad(sample.lower_80, nHistory, 0),
      ],
      series: [line("history", COLORS.history, { width: 1.5 }), line("actual", COLORS.actual), line("forecast", COLORS.forecast), ...bandEdges(80)],
      bands: [{ series: [4, 5], fill: COLORS.band }],
    });
  }
}

async function loadVersion(name, version) {
  const token = ++state.versionToken;
  showError($("version-error"), "");
  try {
    const base = `/v1/models/${enc(name)}/versions/${version}`;
    const [manifest, report] = await Promise.all([api(base), api(`${base}/report`).catch((error) => ({ error }))]);
    if (token !== state.versionToken) return;
    renderHyperparameters(manifest);
    renderCoverage(manifest.intervals);
    if (report.error) {
      showError($("version-error"), `The version's report is unavailable: ${report.error.message}`);
      renderLoss([], 0);
      renderReport([]);
    } else {
      // An ensemble's members train one after the other; the curve is the first member's, whose
      // best epoch the manifest records.
      const members = (manifest.training && manifest.training.network && manifest.training.network.ensemble) || 1;
      renderLoss((report.epochs || []).filter((e) => (e.member || 0) === 0), manifest.best_epoch, members);
      renderReport(report.samples || []);
    }
    $("version").dataset.shown = versionKey(name, version);
  } catch (error) {
    if (token === state.versionToken) showError($("version-error"), error.message);
  }
}

export function initVersionPanel() {
  $("version-model").addEventListener("change", (event) => {
    const model = modelByName(event.target.value);
    if (!model) return;
    selectVersion(model.name, defaultVersion(model));
  });
  $("version-number").addEventListener("change", (event) => selectVersion($("version-model").value, Number(event.target.value)));
  $("version-form").addEventListener("submit", (event) => event.preventDefault());
}

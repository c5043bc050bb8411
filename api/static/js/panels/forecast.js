// The forecast panel: a model, a version or alias and a CSV in; the API's forecast drawn with
// its intervals and offered as a CSV download; the API's errors shown next to the input.

import { api } from "../api.js";
import { COLORS, bandEdges, destroyCharts, drawChart, line, pad } from "../charts.js";
import { buildRequest, forecastCsv } from "../csv.js";
import { $, el, fillSelect, showError } from "../dom.js";
import { tsSeconds } from "../format.js";
import { modelByName, modelOptions, state } from "../state.js";
import { logForecast } from "./live.js";

const SAMPLES = [
  { file: "samples/etth1-ot.csv", id: "etth1-ot", label: "ETTh1 oil temperature, hourly, 400 rows" },
  { file: "samples/synthetic-two-series.csv", id: "synthetic", label: "Two synthetic hourly series (long format)" },
];
const FIELD_ERRORS = { csv: "fc-csv-error", horizon: "fc-horizon-error", levels: "fc-levels-error", target: "fc-target-error" };
const FIELD_INPUTS = { csv: "fc-csv", horizon: "fc-horizon", levels: "fc-levels", target: "fc-target" };

export function refreshForecastSelects() {
  const name = fillSelect($("fc-model"), modelOptions());
  const model = modelByName(name);
  const targets = [];
  if (model) {
    for (const [alias, version] of Object.entries(model.aliases).sort()) targets.push([`alias:${alias}`, `alias ${alias} → version ${version}`]);
    for (const version of [...model.versions].sort((a, b) => b.version - a.version)) targets.push([`version:${version.version}`, `version ${version.version}`]);
  }
  const target = $("fc-target");
  const fallback = targets.some(([v]) => v === "alias:production") ? "alias:production" : targets[0]?.[0];
  const current = targets.some(([v]) => v === target.value) ? target.value : fallback;
  fillSelect(target, targets, current);
  const horizon = servedManifestSummary(model, target.value)?.horizon;
  const input = $("fc-horizon");
  if (horizon) {
    input.max = String(horizon);
    input.placeholder = String(horizon);
  }
}

// The version summary a forecast target points at (by the registry's aliases).
function servedManifestSummary(model, target) {
  if (!model || !target) return undefined;
  const [kind, value] = target.split(":");
  const number = kind === "alias" ? model.aliases[value] : Number(value);
  return model.versions.find((v) => v.version === number);
}

function clearFieldErrors() {
  for (const [field, id] of Object.entries(FIELD_ERRORS)) {
    showError($(id), "");
    $(FIELD_INPUTS[field]).removeAttribute("aria-invalid");
  }
}

// Which input an API error is about: the request field it names, else the series (the CSV).
function fieldOfError(body) {
  const location = (body.detail?.[0]?.loc || []).map(String);
  const message = body.message || "";
  if (location.includes("horizon") || /^horizon\b/i.test(message)) return "horizon";
  if (location.includes("levels") || /interval level/i.test(message)) return "levels";
  if (location.includes("version") || location.includes("alias") || location.includes("model") || body.error === "not_found") return "target";
  return "csv";
}

function showFieldError(field, message, meta) {
  const box = $(FIELD_ERRORS[field]);
  box.replaceChildren(el("span", { class: "api-message", text: message }));
  if (meta) box.append(el("span", { class: "error-meta", text: meta }));
  box.hidden = false;
  $(FIELD_INPUTS[field]).setAttribute("aria-invalid", "true");
}

function formRequest() {
  const fields = {
    model: $("fc-model").value,
    target: $("fc-target").value,
    horizon: $("fc-horizon").value,
    levels: $("fc-levels").value,
    csv: $("fc-csv").value,
  };
  // The chosen version says which covariate columns it reads, and of which kind.
  const kinds = servedManifestSummary(modelByName(fields.model), fields.target)?.covariates || {};
  return buildRequest(fields, state.sourceName || "series", kinds);
}

function showUnusedColumns(unused) {
  const note = $("fc-csv-note");
  note.textContent = unused.length ? `Columns not used by this model (not sent): ${unused.join(", ")}.` : "";
  note.hidden = !unused.length;
}

async function submitForecast(event) {
  event.preventDefault();
  clearFieldErrors();
  let request;
  try {
    const built = formRequest();
    request = built.request;
    showUnusedColumns(built.unused);
  } catch (error) {
    showFieldError("csv", error.message, "checked in the browser before sending");
    return;
  }
  const asked = request.version ? `version ${request.version}` : `alias ${request.alias}`;
  const button = $("fc-submit");
  button.disabled = true;
  $("fc-busy").hidden = false;
  const started = performance.now();
  try {
    const response = await api("/v1/forecast", { method: "POST", body: JSON.stringify(request) });
    const latency = Math.round(performance.now() - started);
    state.lastForecast = { request, response };
    logForecast({ model: request.model, asked, served: `${response.model.name} v${response.model.version} (${response.model.arch})`, series: request.series.length, result: `ok, ${latency} ms`, ok: true });
    renderForecast();
  } catch (error) {
    const body = error.body || { message: error.message };
    const field = fieldOfError(body);
    const meta = [error.status ? `HTTP ${error.status}` : "", body.error, body.series_id ? `series ${body.series_id}` : ""].filter(Boolean).join(" · ");
    showFieldError(field, body.message, meta);
    logForecast({ model: request.model, asked, served: "–", series: request.series.length, result: `${error.status || "error"}: ${body.error || ""}`, ok: false });
  } finally {
    button.disabled = false;
    $("fc-busy").hidden = true;
  }
}

function renderForecast() {
  const { request, response } = state.lastForecast;
  const result = $("fc-result");
  result.hidden = false;
  const served = response.model;
  const asked = request.version ? `version ${request.version}` : `alias ${request.alias}`;
  $("fc-served").replaceChildren(
    "Served by ", el("strong", { text: `${served.name} version ${served.version}` }), ` (${served.arch.toUpperCase()}), asked for ${asked}. `,
    `${response.forecasts.length} series, ${response.forecasts[0]?.mean.length ?? 0} steps.`,
    paddingNote(response.forecasts),
  );
  result.dataset.servedVersion = String(served.version);

  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  state.downloadUrl = URL.createObjectURL(new Blob([forecastCsv(response)], { type: "text/csv" }));
  const link = $("fc-download");
  link.href = state.downloadUrl;
  link.download = `forecast-${served.name}-v${served.version}.csv`;

  const grid = $("fc-charts");
  destroyCharts(grid);
  grid.replaceChildren();
  const inputs = new Map(request.series.map((s) => [s.id, s]));
  const inputSize = servedInputSize(served);
  const fullHistory = $("fc-full-history").checked;
  for (const forecast of response.forecasts) {
    const chartBox = el("div", { class: "chart", role: "img" });
    const figure = el("figure", { class: "chart-figure card", dataset: { seriesId: forecast.id } }, el("figcaption", { text: seriesCaption(forecast) }), chartBox);
    grid.append(figure);
    const input = inputs.get(forecast.id);
    const keep = drawForecast(chartBox, input, forecast, fullHistory ? Infinity : Math.max(inputSize, 4 * forecast.mean.length));
    for (const [name, column] of Object.entries(input.future_covariates || {})) {
      const covariateBox = el("div", { class: "chart covariate-chart", role: "img", dataset: { covariate: name } });
      figure.append(covariateBox);
      drawFutureCovariate(covariateBox, input, forecast, name, column, keep);
    }
  }
}

// The series' id, and what the server filled in: left padding for a history shorter than the
// model's input, and the gaps inside it.
function seriesCaption(forecast) {
  const filled = [];
  if (forecast.padded) filled.push(`padded with ${forecast.padded} point${forecast.padded === 1 ? "" : "s"} (shorter than the model's input)`);
  if (forecast.missing) filled.push(`${forecast.missing} missing point${forecast.missing === 1 ? "" : "s"} filled`);
  return [`series ${forecast.id}`, ...filled].join(" · ");
}

function paddingNote(forecasts) {
  const padded = forecasts.filter((f) => f.padded).length;
  return padded ? ` ${padded} series ${padded === 1 ? "was" : "were"} shorter than the model's input and padded (marked below).` : "";
}

// A future-known covariate under its forecast: over the history shown and the horizon, on the
// same time axis.
function drawFutureCovariate(container, input, forecast, name, column, keep) {
  const nFuture = forecast.timestamps.length;
  const nValues = input.values.length;
  const times = [...input.timestamps.slice(-keep), ...forecast.timestamps].map(tsSeconds);
  const number = (v) => (typeof v === "number" ? v : null);
  const past = column.slice(nValues - keep, nValues).map(number);
  const ahead = column.slice(nValues, nValues + nFuture).map(number);
  const data = [times, pad(past, 0, nFuture), pad(ahead, keep, 0)];
  const series = [line(`${name} (observed)`, COLORS.history, { width: 1 }), line(`${name} (known ahead)`, COLORS.validation, { width: 1.5 })];
  drawChart(container, { height: 140, data, series, yLabel: name });
  container.setAttribute("aria-label", `Future-known covariate ${name} of series ${forecast.id}: the last ${keep} observed points and the ${nFuture} steps of the horizon`);
}

function servedInputSize(served) {
  const version = modelByName(served.name)?.versions.find((v) => v.version === served.version);
  return version?.input_size ?? 0;
}

function drawForecast(container, input, forecast, historyPoints) {
  const keep = Math.min(input.values.length, historyPoints);
  const historyTimes = input.timestamps.slice(-keep);
  const history = input.values.slice(-keep).map((v) => (typeof v === "number" ? v : null));
  const nFuture = forecast.timestamps.length;
  const data = [[...historyTimes, ...forecast.timestamps].map(tsSeconds), pad(history, 0, nFuture), pad(forecast.mean, keep, 0)];
  const series = [line("history", COLORS.history, { width: 1.5 }), line("forecast", COLORS.forecast)];
  const bands = [];
  const levels = Object.keys(forecast.intervals || {}).sort((a, b) => Number(b) - Number(a)); // widest first
  for (const level of levels) {
    data.push(pad(forecast.intervals[level].upper, keep, 0), pad(forecast.intervals[level].lower, keep, 0));
    series.push(...bandEdges(level));
    bands.push({ series: [series.length - 1, series.length], fill: COLORS.band });
  }
  drawChart(container, { height: 280, data, series, bands });
  container.dataset.historyPoints = String(keep);
  container.dataset.forecastPoints = String(nFuture);
  const intervalText = levels.length ? ` with ${levels.map((l) => `${l}%`).join(" and ")} intervals shaded` : "";
  container.setAttribute("aria-label", `Series ${forecast.id}: the last ${keep} points of history and a ${nFuture}-step forecast${intervalText}`);
  return keep;
}

async function loadSample() {
  const sample = SAMPLES.find((s) => s.file === $("fc-sample").value);
  if (!sample) return;
  clearFieldErrors();
  try {
    const response = await fetch(sample.file);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    $("fc-csv").value = await response.text();
    state.sourceName = sample.id;
  } catch (error) {
    showFieldError("csv", `The sample ${sample.file} could not be loaded: ${error.message}`);
  }
}

async function loadFile(event) {
  const file = event.target.files?.[0];
  if (!file) return;
  clearFieldErrors();
  $("fc-csv").value = await file.text();
  state.sourceName = file.name.replace(/\.[^.]+$/, "") || "series";
}

export function initForecastPanel() {
  fillSelect($("fc-sample"), SAMPLES.map((s) => [s.file, s.label]));
  $("fc-model").addEventListener("change", () => {
    $("fc-target").value = "alias:production";
    refreshForecastSelects();
  });
  $("fc-target").addEventListener("change", refreshForecastSelects);
  $("forecast-form").addEventListener("submit", submitForecast);
  $("fc-load-sample").addEventListener("click", loadSample);
  $("fc-file").addEventListener("change", loadFile);
  $("fc-full-history").addEventListener("change", () => state.lastForecast && renderForecast());
  $("fc-download").addEventListener("click", (event) => {
    if (!state.lastForecast) event.preventDefault();
  });
}

// The forecast service's dashboard. It uses only the public API (GET /v1/models..., POST
// /v1/forecast) so it works against any deployment; ?api=https://host points it at another
// origin (that API must list this page's origin in FORECAST_CORS_ORIGINS).

const API_BASE = (new URLSearchParams(location.search).get("api") || "").replace(/\/+$/, "");
const POLL_MS = 3000;
const SAMPLES = [
  { file: "samples/etth1-ot.csv", id: "etth1-ot", label: "ETTh1 oil temperature, hourly, 400 rows" },
  { file: "samples/synthetic-two-series.csv", id: "synthetic", label: "Two synthetic hourly series (long format)" },
];
const METRICS = [["mae", "MAE"], ["rmse", "RMSE"], ["smape", "sMAPE %"], ["mase", "MASE"]];
const BASELINES = [["naive", "naive"], ["seasonal_naive", "seasonal"]];
const COLORS = {
  history: "#64748b",
  actual: "#0f172a",
  forecast: "#2563eb",
  band: "rgba(37, 99, 235, 0.16)",
  bandEdge: "rgba(37, 99, 235, 0.45)",
  train: "#2563eb",
  validation: "#d97706",
};
const MAX_LOG_ROWS = 50;

const state = {
  models: [],          // the last GET /v1/models answer, models sorted by name
  modelsJson: "",      // its serialisation, to skip re-rendering when nothing changed
  fresh: new Set(),    // "name/version" keys that appeared while the page was open
  shownVersion: null,  // {name, version} in the version panel
  versionToken: 0,
  lastForecast: null,  // {request, response, inputs, modelSummary}
  downloadUrl: null,
  sourceName: null,    // id for a single series loaded from a file or sample
  connected: false,    // the first GET /v1/models has succeeded
};

// ---------------------------------------------------------------- small helpers

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function fmt(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const size = Math.abs(value);
  if (size !== 0 && (size >= 1e6 || size < 1e-3)) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

function fmtTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtCreated(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toISOString().slice(0, 16).replace("T", " ");
}

// Timestamps without a zone are read as UTC and the charts draw in UTC, so what the chart
// shows is what the CSV and the API say, whatever the browser's time zone.
function tsSeconds(text) {
  let iso = String(text).trim().replace(" ", "T");
  if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) iso += "T00:00:00";
  if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(iso)) iso += "Z";
  return Date.parse(iso) / 1000;
}

function versionKey(name, version) {
  return `${name}/${version}`;
}

function modelByName(name) {
  return state.models.find((model) => model.name === name);
}

function showError(node, message) {
  node.textContent = message;
  node.hidden = !message;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    super(body.message);
    this.status = status;
    this.body = body;
  }
}

async function api(path, init = {}) {
  const headers = { Accept: "application/json" };
  if (init.body) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API_BASE + path, { ...init, headers });
  } catch (error) {
    // A browser reports a refused CORS request like a network failure; say both.
    const cors = API_BASE ? ` or does not allow this page's origin ${location.origin} (FORECAST_CORS_ORIGINS)` : "";
    throw new ApiError(0, { error: "network", message: `The API at ${API_BASE || location.origin} is unreachable${cors} (${error.message}).` });
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const wellFormed = body && typeof body.message === "string";
    throw new ApiError(response.status, wellFormed ? body : { error: "http", message: `HTTP ${response.status}: ${text.slice(0, 300)}` });
  }
  return body;
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- charts (uPlot)

const charts = new Map(); // container element -> uPlot instance
const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = charts.get(entry.target);
    const width = Math.floor(entry.contentRect.width);
    if (chart && width > 0 && Math.abs(chart.width - width) > 1) chart.setSize({ width, height: chart.height });
  }
});

function destroyCharts(root) {
  for (const [container, chart] of charts) {
    if (root.contains(container)) {
      chart.destroy();
      resizer.unobserve(container);
      charts.delete(container);
    }
  }
}

const utcDate = (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC");

// Time ticks in UTC, 24-hour clock, the date under the first tick and under each midnight.
function timeTicks(u, splits, axisIndex, space, increment) {
  return splits.map((seconds, index) => {
    const iso = new Date(seconds * 1000).toISOString();
    const day = iso.slice(5, 10);
    const clock = iso.slice(11, 16);
    if (increment >= 86400) return index === 0 ? `${day}\n${iso.slice(0, 4)}` : day;
    return index === 0 || clock === "00:00" ? `${clock}\n${day}` : clock;
  });
}

function drawChart(container, { series, data, bands = [], time = true, height = 240, xLabel, yLabel }) {
  destroyCharts(container);
  container.replaceChildren();
  const width = Math.max(240, Math.floor(container.getBoundingClientRect().width));
  const xAxis = { label: xLabel, labelSize: xLabel ? 20 : 0, stroke: "#334155", grid: { stroke: "#e2e8f0" } };
  if (time) xAxis.values = timeTicks;
  else xAxis.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500];
  const options = {
    width,
    height,
    series: [{ label: time ? "time (UTC)" : xLabel }, ...series],
    bands,
    scales: { x: { time } },
    tzDate: utcDate,
    axes: [xAxis, { label: yLabel, labelSize: yLabel ? 20 : 0, size: 56, stroke: "#334155", grid: { stroke: "#e2e8f0" } }],
    cursor: { drag: { x: true, y: false } },
    legend: { live: false, markers: { fill: (u, index) => series[index - 1]?.legendFill ?? "transparent" } },
  };
  const chart = new uPlot(options, data, container);
  container.dataset.points = String(data[0].length);
  container.dataset.series = series.map((s) => s.label).join("|");
  container.dataset.bands = String(bands.length);
  charts.set(container, chart);
  resizer.observe(container);
  return chart;
}

function line(label, stroke, extra = {}) {
  return { label, stroke, legendFill: stroke, width: 2, points: { show: false }, spanGaps: false, ...extra };
}

// An interval is two dashed edge series with a band between them; the legend names it once.
function bandEdges(level) {
  const edge = { stroke: COLORS.bandEdge, legendFill: COLORS.band, width: 1, dash: [4, 3], points: { show: false } };
  return [{ ...edge, label: `${level}% interval` }, { ...edge, label: `${level}% lower`, class: "legend-hidden" }];
}

const pad = (values, before, after) => [...Array(before).fill(null), ...values, ...Array(after).fill(null)];

// ---------------------------------------------------------------- models panel

function metricCell(label, metrics, key) {
  const value = metrics.model?.[key];
  const cell = el("td", { class: "metric", dataset: { label } });
  if (value === undefined) {
    cell.textContent = "–";
    return cell;
  }
  const comparisons = BASELINES.map(([method, name]) => {
    const baseline = metrics[method]?.[key];
    return { name, baseline, wins: baseline !== undefined && value < baseline };
  });
  const winsAll = comparisons.every((c) => c.wins);
  const winsSome = comparisons.some((c) => c.wins);
  const verdict = winsAll ? "beats both baselines" : winsSome ? "beats one baseline" : "beats neither baseline";
  cell.append(
    el("span", { class: `model-value ${winsAll ? "win" : winsSome ? "partial" : "lose"}`, title: `model ${value} (${verdict})`, text: fmt(value) }),
    el("span", { class: "visually-hidden", text: ` (${verdict})` }),
  );
  const chips = el("span", { class: "baselines" });
  for (const c of comparisons) {
    chips.append(
      el("span", {
        class: `chip ${c.wins ? "win" : "lose"}`,
        title: `${c.name}: ${c.baseline}${c.wins ? " (the model is better)" : " (the model is not better)"}`,
      }, `${c.wins ? "✓" : "✗"} ${c.name} ${fmt(c.baseline)}`),
    );
  }
  cell.append(chips);
  return cell;
}

function aliasCell(model, version) {
  const cell = el("td", { class: "aliases", dataset: { label: "Aliases" } });
  const served = model.served || {};
  for (const alias of version.aliases) {
    const badge = el("span", { class: `badge alias ${alias === "production" ? "production" : ""}`, dataset: { alias }, text: alias });
    if (served[alias] === version.version) {
      badge.title = `the server answers ${alias} with this version`;
      badge.append(el("span", { class: "served-dot", "aria-hidden": "true" }), el("span", { class: "visually-hidden", text: " (served)" }));
    } else if (served[alias] !== undefined) {
      badge.title = `the server still answers ${alias} with version ${served[alias]}; it switches on its next reload`;
      badge.append(el("span", { class: "pending", text: " (loading)" }));
    }
    cell.append(badge, " ");
  }
  // An alias that moved away while the server still answers it with this version.
  for (const [alias, number] of Object.entries(served)) {
    if (number === version.version && !version.aliases.includes(alias)) {
      cell.append(el("span", { class: "badge served", title: `the server still answers ${alias} with this version until its next reload`, text: `serving ${alias}` }), " ");
    }
  }
  if (state.fresh.has(versionKey(model.name, version.version))) cell.append(el("span", { class: "badge new", text: "new" }));
  if (!cell.childNodes.length) cell.textContent = "–";
  return cell;
}

function versionRow(model, version) {
  const key = versionKey(model.name, version.version);
  const row = el("tr", { dataset: { model: model.name, version: String(version.version) }, class: state.fresh.has(key) ? "fresh" : "" });
  row.append(
    el("th", { scope: "row", dataset: { label: "Model" }, text: model.name }),
    el("td", { dataset: { label: "Version" }, class: "version-cell" }, inspectButton(model.name, version.version)),
    aliasCell(model, version),
    el("td", { dataset: { label: "Arch" }, text: version.arch.toUpperCase() }),
    el("td", { dataset: { label: "Input" }, class: "num", text: String(version.input_size) }),
    el("td", { dataset: { label: "Horizon" }, class: "num", text: String(version.horizon) }),
    el("td", { dataset: { label: "Freq" }, text: version.freq }),
    el("td", { dataset: { label: "Created (UTC)" } }, el("time", { datetime: version.created_at, text: fmtCreated(version.created_at) })),
    ...METRICS.map(([metric, label]) => metricCell(label, version.test_metrics || {}, metric)),
  );
  return row;
}

function inspectButton(name, version) {
  const label = `Inspect ${name} version ${version}`;
  const button = el("button", { type: "button", class: "secondary small", "aria-label": label, title: label }, `v${version}`, el("span", { "aria-hidden": "true", text: " ›" }));
  button.addEventListener("click", () => {
    selectVersion(name, version);
    $("version-heading").focus({ preventScroll: true });
    $("version").scrollIntoView({ block: "start" });
  });
  return button;
}

function renderModels() {
  const body = $("models-body");
  body.replaceChildren();
  if (!state.models.length) {
    body.append(el("tr", {}, el("td", { colspan: 12, class: "empty", text: "The registry holds no models yet. Train one with `forecast train …`; it appears here by itself." })));
    return;
  }
  for (const model of state.models) {
    for (const version of [...model.versions].sort((a, b) => b.version - a.version)) body.append(versionRow(model, version));
  }
}

// ---------------------------------------------------------------- selects shared by panels

function fillSelect(select, options, preferred) {
  const previous = preferred ?? select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
  if (options.some(([value]) => value === previous)) select.value = previous;
  return select.value;
}

function modelOptions() {
  return state.models.map((model) => [model.name, model.name]);
}

function versionLabel(model, version) {
  const aliases = version.aliases.length ? ` (${version.aliases.join(", ")})` : "";
  return `version ${version.version}${aliases}`;
}

function refreshVersionSelects() {
  const modelSelect = $("version-model");
  const name = fillSelect(modelSelect, modelOptions(), state.shownVersion?.name);
  const model = modelByName(name);
  const versions = model ? [...model.versions].sort((a, b) => b.version - a.version) : [];
  fillSelect($("version-number"), versions.map((v) => [String(v.version), versionLabel(model, v)]), state.shownVersion ? String(state.shownVersion.version) : undefined);
}

function refreshForecastSelects() {
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

// ---------------------------------------------------------------- version panel

function selectVersion(name, version) {
  state.shownVersion = { name, version };
  refreshVersionSelects();
  loadVersion(name, version);
}

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", { text: value === undefined || value === null || value === "" ? "–" : String(value) })];
}

function renderHyperparameters(manifest) {
  const network = manifest.network || {};
  const training = manifest.training || {};
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
    ...fact("Epochs run / max", `${manifest.epochs_run} / ${training.max_epochs}`),
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

function renderLoss(epochs, bestEpoch) {
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
  $("loss-caption").textContent = `${epochs.length} epochs; the weights kept are those of epoch ${bestEpoch} (lowest validation loss). Drag to zoom, double-click to reset.`;
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
      renderLoss(report.epochs || [], manifest.best_epoch);
      renderReport(report.samples || []);
    }
    $("version").dataset.shown = versionKey(name, version);
  } catch (error) {
    if (token === state.versionToken) showError($("version-error"), error.message);
  }
}

// ---------------------------------------------------------------- CSV in, CSV out

const ID_NAMES = ["series_id", "id", "series", "unique_id", "item_id"];
const TIME_NAMES = ["timestamp", "time", "date", "datetime", "ds"];
const VALUE_NAMES = ["value", "y", "target", "ot"];

function splitLine(text, delimiter) {
  return text.split(delimiter).map((field) => field.trim().replace(/^"(.*)"$/, "$1"));
}

// Values are passed to the API as written (numbers as numbers, anything else as the text), so
// the API, the one judge of valid input, words the error.
function valueOf(text) {
  return text !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
}

function parseCsv(text, singleId) {
  const lines = text.split(/\r?\n/).map((l, i) => ({ text: l.trim(), number: i + 1 })).filter((l) => l.text && !l.text.startsWith("#"));
  if (!lines.length) throw new Error("The CSV is empty: paste rows of timestamp,value, upload a file or load a sample.");
  const first = lines[0].text;
  const delimiter = first.includes(",") ? "," : first.includes("\t") ? "\t" : first.includes(";") ? ";" : ",";
  const head = splitLine(first, delimiter).map((name) => name.toLowerCase());
  const known = [...ID_NAMES, ...TIME_NAMES, ...VALUE_NAMES];
  const hasHeader = head.some((name) => known.includes(name)) || (head.length > 1 && Number.isNaN(tsSeconds(head[head.length - 2])) && !Number.isFinite(Number(head.at(-1))));
  const width = head.length;
  if (width !== 2 && width !== 3) {
    throw new Error(`line ${lines[0].number}: expected 2 columns (timestamp,value) or 3 (series_id,timestamp,value), found ${width}.`);
  }
  let columns = width === 2 ? { id: -1, time: 0, value: 1 } : { id: 0, time: 1, value: 2 };
  if (hasHeader) {
    const find = (names) => head.findIndex((name) => names.includes(name));
    const byName = { id: find(ID_NAMES), time: find(TIME_NAMES), value: find(VALUE_NAMES) };
    if (byName.time >= 0 && byName.value >= 0 && (width === 2 || byName.id >= 0)) columns = byName;
  }
  const series = new Map();
  for (const line of hasHeader ? lines.slice(1) : lines) {
    const fields = splitLine(line.text, delimiter);
    if (fields.length !== width) throw new Error(`line ${line.number}: expected ${width} fields like the first line, found ${fields.length}: "${line.text.slice(0, 80)}"`);
    const id = columns.id >= 0 ? fields[columns.id] : singleId;
    if (!series.has(id)) series.set(id, { id, timestamps: [], values: [] });
    const entry = series.get(id);
    entry.timestamps.push(fields[columns.time]);
    entry.values.push(valueOf(fields[columns.value]));
  }
  if (!series.size) throw new Error("The CSV has a header but no rows.");
  return [...series.values()];
}

function csvField(text) {
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// Numbers are written with JavaScript's shortest round-trip form, so each one parses back to
// exactly the double the API sent.
function forecastCsv(response) {
  const levels = [...new Set(response.forecasts.flatMap((f) => Object.keys(f.intervals || {})))].sort((a, b) => Number(a) - Number(b));
  const header = ["series_id", "timestamp", "mean", ...levels.flatMap((level) => [`lower_${level}`, `upper_${level}`])];
  const rows = [header.join(",")];
  for (const forecast of response.forecasts) {
    forecast.timestamps.forEach((timestamp, step) => {
      const bounds = levels.flatMap((level) => {
        const interval = forecast.intervals?.[level];
        return interval ? [String(interval.lower[step]), String(interval.upper[step])] : ["", ""];
      });
      rows.push([csvField(forecast.id), timestamp, String(forecast.mean[step]), ...bounds].join(","));
    });
  }
  return rows.join("\n") + "\n";
}

// ---------------------------------------------------------------- forecast panel

const FIELD_ERRORS = { csv: "fc-csv-error", horizon: "fc-horizon-error", levels: "fc-levels-error", target: "fc-target-error" };
const FIELD_INPUTS = { csv: "fc-csv", horizon: "fc-horizon", levels: "fc-levels", target: "fc-target" };

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

function parseLevels(text) {
  return text.split(/[\s,;]+/).filter(Boolean).map(valueOf);
}

function buildRequest() {
  const model = $("fc-model").value;
  const [kind, value] = ($("fc-target").value || "alias:production").split(":");
  const request = { model };
  if (kind === "version") request.version = Number(value);
  else request.alias = value;
  const horizon = $("fc-horizon").value.trim();
  if (horizon) request.horizon = valueOf(horizon);
  request.levels = parseLevels($("fc-levels").value);
  request.series = parseCsv($("fc-csv").value, state.sourceName || "series");
  return request;
}

async function submitForecast(event) {
  event.preventDefault();
  clearFieldErrors();
  let request;
  try {
    request = buildRequest();
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
    grid.append(el("figure", { class: "chart-figure card", dataset: { seriesId: forecast.id } }, el("figcaption", { text: `series ${forecast.id}` }), chartBox));
    drawForecast(chartBox, inputs.get(forecast.id), forecast, fullHistory ? Infinity : Math.max(inputSize, 4 * forecast.mean.length));
  }
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

// ---------------------------------------------------------------- live panel

function logEvent(text, kind = "change") {
  const list = $("live-events");
  list.prepend(el("li", { class: kind }, el("time", { text: fmtTime(new Date()) }), " ", el("span", { text })));
  while (list.children.length > MAX_LOG_ROWS) list.lastElementChild.remove();
}

function logForecast({ model, asked, served, series, result, ok }) {
  const body = $("live-forecasts").tBodies[0];
  body.prepend(el("tr", { class: ok ? "ok" : "failed" },
    el("td", { dataset: { label: "Time" }, text: fmtTime(new Date()) }),
    el("td", { dataset: { label: "Model" }, text: model }),
    el("td", { dataset: { label: "Asked for" }, text: asked }),
    el("td", { dataset: { label: "Served by" }, class: "served-by", text: served }),
    el("td", { dataset: { label: "Series" }, class: "num", text: String(series) }),
    el("td", { dataset: { label: "Result" }, text: result })));
  while (body.rows.length > MAX_LOG_ROWS) body.lastElementChild.remove();
}

function diffModels(previous, next) {
  const changes = [];
  const before = new Map(previous.map((m) => [m.name, m]));
  for (const model of next) {
    const old = before.get(model.name);
    const known = new Set(old ? old.versions.map((v) => v.version) : []);
    for (const version of model.versions) {
      if (!known.has(version.version)) {
        state.fresh.add(versionKey(model.name, version.version));
        changes.push(`${model.name}: version ${version.version} (${version.arch.toUpperCase()}) appeared in the registry`);
      }
    }
    const oldAliases = old?.aliases || {};
    for (const [alias, version] of Object.entries(model.aliases)) {
      if (oldAliases[alias] === undefined && old) changes.push(`${model.name}: alias ${alias} now points to version ${version}`);
      else if (old && oldAliases[alias] !== version) changes.push(`${model.name}: alias ${alias} moved from version ${oldAliases[alias]} to version ${version}`);
    }
    for (const alias of Object.keys(oldAliases)) if (!(alias in model.aliases)) changes.push(`${model.name}: alias ${alias} was removed`);
    const oldServed = old?.served || {};
    for (const [alias, version] of Object.entries(model.served || {})) {
      if (old && oldServed[alias] !== version) changes.push(`${model.name}: the server now answers ${alias} with version ${version}`);
    }
  }
  for (const old of previous) if (!next.some((m) => m.name === old.name)) changes.push(`${old.name} is no longer in the registry`);
  return changes;
}

function setLiveStatus(kind, text) {
  $("live-status").dataset.state = kind;
  $("live-status-text").textContent = text;
}

async function poll() {
  try {
    const answer = await api("/v1/models");
    const first = !state.connected;
    state.connected = true;
    const models = [...answer.models].sort((a, b) => a.name.localeCompare(b.name));
    const json = JSON.stringify(models);
    if (json !== state.modelsJson) {
      const changes = first ? [] : diffModels(state.models, models);
      state.models = models;
      state.modelsJson = json;
      renderModels();
      refreshVersionSelects();
      refreshForecastSelects();
      for (const change of changes) logEvent(change);
      if (first) {
        const count = models.reduce((n, m) => n + m.versions.length, 0);
        logEvent(`Connected: ${models.length} models, ${count} versions.`, "info");
        const initial = models[0];
        if (initial) selectVersion(initial.name, initial.aliases.production ?? Math.max(...initial.versions.map((v) => v.version)));
      }
    }
    const where = API_BASE ? ` · API ${API_BASE}` : "";
    setLiveStatus("live", `Live${where} · checked ${fmtTime(new Date())} · every ${POLL_MS / 1000} s`);
  } catch (error) {
    setLiveStatus("offline", `Offline: ${error.message} Retrying every ${POLL_MS / 1000} s.`);
    if (!state.connected) {
      $("models-body").replaceChildren(el("tr", {}, el("td", { colspan: 12, class: "empty", text: `No answer from the API yet: ${error.message}` })));
    }
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// ---------------------------------------------------------------- wiring

function init() {
  fillSelect($("fc-sample"), SAMPLES.map((s) => [s.file, s.label]));
  $("version-model").addEventListener("change", (event) => {
    const model = modelByName(event.target.value);
    if (!model) return;
    selectVersion(model.name, model.aliases.production ?? Math.max(...model.versions.map((v) => v.version)));
  });
  $("version-number").addEventListener("change", (event) => selectVersion($("version-model").value, Number(event.target.value)));
  $("version-form").addEventListener("submit", (event) => event.preventDefault());
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
  poll();
}

init();

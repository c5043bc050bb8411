// CSV in, CSV out: the pasted or uploaded series parsed into a forecast request, and the API's
// forecast written as a CSV for download.

import { tsSeconds } from "./format.js";

const ID_NAMES = ["series_id", "id", "series", "unique_id", "item_id"];
const TIME_NAMES = ["timestamp", "time", "date", "datetime", "ds"];
const VALUE_NAMES = ["value", "y", "target", "ot"];

// Rows of trimmed fields as RFC 4180 reads them (quoted fields may hold the delimiter, doubled
// quotes and line breaks; the delimiter is detected: comma, tab, semicolon, ...), each with
// its line number; blank rows and # comments left out. Papa Parse (vendor/papaparse) reads it.
function csvRows(text) {
  const rows = [];
  let line = 1;
  for (const raw of globalThis.Papa.parse(text).data) {
    const fields = raw.map((field) => field.trim());
    if (!fields.every((field) => field === "") && !fields[0].startsWith("#")) rows.push({ fields, number: line, text: raw.join(",") });
    line += 1 + raw.reduce((breaks, field) => breaks + (field.match(/\n/g) || []).length, 0);
  }
  return rows;
}

// Values are passed to the API as written (numbers as numbers, anything else as the text), so
// the API, the one judge of valid input, words the error.
function valueOf(text) {
  return text !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
}

// A value of the series or of a covariate: as valueOf, but an empty cell, NaN, NA or null is a
// gap, posted as null.
const MISSING = new Set(["", "nan", "na", "null"]);
function seriesValueOf(text) {
  return MISSING.has(text.toLowerCase()) ? null : valueOf(text);
}

// Rows of timestamp,value (and series_id); with a header, every other column is a covariate,
// named as the header writes it. An empty value is a gap (posted as null); with covariate
// columns, the empty rows after a series' last value carry future-known covariates over the
// horizon instead.
export function parseCsv(text, singleId) {
  const lines = csvRows(text);
  if (!lines.length) throw new Error("The CSV is empty: paste rows of timestamp,value, upload a file or load a sample.");
  const names = lines[0].fields;
  const head = names.map((name) => name.toLowerCase());
  const known = [...ID_NAMES, ...TIME_NAMES, ...VALUE_NAMES];
  const hasHeader = head.some((name) => known.includes(name)) || (head.length > 1 && Number.isNaN(tsSeconds(head[head.length - 2])) && !Number.isFinite(Number(head.at(-1))));
  const width = head.length;
  let columns = width === 2 ? { id: -1, time: 0, value: 1 } : { id: 0, time: 1, value: 2 };
  if (hasHeader) {
    const find = (list) => head.findIndex((name) => list.includes(name));
    const byName = { id: find(ID_NAMES), time: find(TIME_NAMES), value: find(VALUE_NAMES) };
    if (byName.time >= 0 && byName.value >= 0) columns = byName;
    else if (width > 3) throw new Error(`line ${lines[0].number}: with covariate columns the header must name the timestamp and value columns (e.g. timestamp,value,temperature).`);
  } else if (width !== 2 && width !== 3) {
    throw new Error(`line ${lines[0].number}: expected 2 columns (timestamp,value) or 3 (series_id,timestamp,value), found ${width}; covariate columns need a header row.`);
  }
  const extra = hasHeader ? names.map((name, index) => [name, index]).filter(([, index]) => ![columns.id, columns.time, columns.value].includes(index)) : [];
  const series = new Map();
  for (const line of hasHeader ? lines.slice(1) : lines) {
    const fields = line.fields;
    if (fields.length !== width) throw new Error(`line ${line.number}: expected ${width} fields like the first line, found ${fields.length}: "${line.text.slice(0, 80)}"`);
    const id = columns.id >= 0 ? fields[columns.id] : singleId;
    if (!series.has(id)) series.set(id, { id, timestamps: [], values: [], covariates: Object.fromEntries(extra.map(([name]) => [name, []])), futureTimestamps: [] });
    const entry = series.get(id);
    const value = seriesValueOf(fields[columns.value]);
    if (value === null && extra.length) {
      entry.futureTimestamps.push(fields[columns.time]); // the horizon's row, unless a value follows
    } else {
      // Empty rows followed by a value were gaps, not the horizon.
      for (const timestamp of entry.futureTimestamps.splice(0)) {
        entry.timestamps.push(timestamp);
        entry.values.push(null);
      }
      entry.timestamps.push(fields[columns.time]);
      entry.values.push(value);
    }
    for (const [name, index] of extra) entry.covariates[name].push(seriesValueOf(fields[index]));
  }
  if (!series.size) throw new Error("The CSV has a header but no rows.");
  return { series: [...series.values()], covariateColumns: extra.map(([name]) => name) };
}

// The posted series: each covariate column under the kind the model reads it as (past: the
// rows with values; future-known: every row, the horizon's included; static: the first row's).
export function postedSeries(parsed, kinds) {
  const byKind = { past: new Set(kinds?.past || []), future: new Set(kinds?.future || []), static: new Set(kinds?.static || []) };
  return parsed.series.map((entry) => {
    const posted = { id: entry.id, timestamps: entry.timestamps, values: entry.values };
    for (const [name, column] of Object.entries(entry.covariates)) {
      if (byKind.past.has(name)) (posted.past_covariates ??= {})[name] = column.slice(0, entry.values.length);
      else if (byKind.future.has(name)) (posted.future_covariates ??= {})[name] = column;
      else if (byKind.static.has(name)) (posted.static_covariates ??= {})[name] = column[0];
    }
    return posted;
  });
}

// The CSV's covariate columns the model does not read: shown, never sent.
export function unusedColumns(parsed, kinds) {
  const read = new Set([...(kinds?.past || []), ...(kinds?.future || []), ...(kinds?.static || [])]);
  return parsed.covariateColumns.filter((name) => !read.has(name));
}

function parseLevels(text) {
  return text.split(/[\s,;]+/).filter(Boolean).map(valueOf);
}

// The POST /v1/forecast body from the form's text: target is "alias:NAME" or "version:N"; a
// CSV without series ids becomes one series named singleId; `kinds` ({past, future, static}) are
// the covariates the chosen version reads. Throws on a CSV it cannot read.
export function buildRequest({ model, target, horizon, levels, csv }, singleId, kinds) {
  const [kind, value] = (target || "alias:production").split(":");
  const request = { model };
  if (kind === "version") request.version = Number(value);
  else request.alias = value;
  if (horizon.trim()) request.horizon = valueOf(horizon.trim());
  request.levels = parseLevels(levels);
  const parsed = parseCsv(csv, singleId);
  request.series = postedSeries(parsed, kinds);
  return { request, unused: unusedColumns(parsed, kinds), parsed };
}

function csvField(text) {
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// Numbers are written with JavaScript's shortest round-trip form, so each one parses back to
// exactly the double the API sent.
export function forecastCsv(response) {
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

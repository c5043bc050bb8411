// The models panel: every version in the registry with its aliases and its test metrics beside
// the baselines, and a button to inspect it in the version panel.

import { $, el } from "../dom.js";
import { fmt, fmtCreated } from "../format.js";
import { state, versionKey } from "../state.js";
import { selectVersion } from "./version.js";

const METRICS = [["mae", "MAE"], ["rmse", "RMSE"], ["smape", "sMAPE %"], ["mase", "MASE"]];
const BASELINES = [["naive", "naive"], ["seasonal_naive", "seasonal"]];

function metricCell(label, metrics, key) {
  const value = metrics.model?.[key];
  const cell = el("td", { class: "metric", dataset: { label } });
  if (value === undefined || value === null) { // null: undefined metric (MASE of constant series)
    cell.textContent = "–";
    return cell;
  }
  const comparisons = BASELINES.map(([method, name]) => {
    const baseline = metrics[method]?.[key];
    return { name, baseline, wins: baseline !== undefined && baseline !== null && value < baseline };
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

export function renderModels() {
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

// Before the first answer from the API, the table says why it is empty.
export function renderModelsUnavailable(message) {
  $("models-body").replaceChildren(el("tr", {}, el("td", { colspan: 12, class: "empty", text: `No answer from the API yet: ${message}` })));
}

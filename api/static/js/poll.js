// Keeps the page live: asks the API for its models every few seconds, re-renders the panels
// when the registry changed, logs what changed, and shows the connection in the top bar. The
// accuracy panel asks for its model's records on a change and every half minute.
// Refused for want of a key (401, 403), it waits for the user's key instead of retrying.

import { API_BASE, api } from "./api.js";
import { $ } from "./dom.js";
import { fmtTime } from "./format.js";
import { refreshAccuracy, refreshAccuracySelect } from "./panels/accuracy.js";
import { refreshForecastSelects } from "./panels/forecast.js";
import { logEvent } from "./panels/live.js";
import { renderModels, renderModelsUnavailable } from "./panels/models.js";
import { refreshVersionSelects, selectVersion } from "./panels/version.js";
import { defaultVersion, state, versionKey } from "./state.js";

const POLL_MS = 3000;
let timer = null;
let generation = 0; // a new key starts a new round; an older round's answer schedules nothing

// The changes from one answer to the next, worded for the log; new versions are marked fresh.
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

// Every page of GET /v1/models (1,000 models each).
async function allModels() {
  const models = [];
  let after = null;
  do {
    const answer = await api(after === null ? "/v1/models" : `/v1/models?after=${encodeURIComponent(after)}`);
    models.push(...answer.models);
    after = answer.next_after ?? null;
  } while (after !== null);
  return models;
}

export async function poll() {
  clearTimeout(timer);
  const round = ++generation;
  let again = true;
  try {
    const listed = await allModels();
    const first = !state.connected;
    state.connected = true;
    const models = [...listed].sort((a, b) => a.name.localeCompare(b.name));
    const json = JSON.stringify(models);
    const changed = json !== state.modelsJson;
    if (changed) {
      const changes = first ? [] : diffModels(state.models, models);
      state.models = models;
      state.modelsJson = json;
      renderModels();
      refreshVersionSelects();
      refreshForecastSelects();
      refreshAccuracySelect();
      for (const change of changes) logEvent(change);
      if (first) {
        const count = models.reduce((n, m) => n + m.versions.length, 0);
        logEvent(`Connected: ${models.length} models, ${count} versions.`, "info");
        const initial = models[0];
        if (initial) selectVersion(initial.name, defaultVersion(initial));
      }
    }
    refreshAccuracy(changed);
    const where = API_BASE ? ` · API ${API_BASE}` : "";
    setLiveStatus("live", `Live${where} · checked ${fmtTime(new Date())} · every ${POLL_MS / 1000} s`);
  } catch (error) {
    again = error.status !== 401 && error.status !== 403;
    if (again) setLiveStatus("offline", `Offline: ${error.message} Retrying every ${POLL_MS / 1000} s.`);
    else setLiveStatus("locked", "Waiting for an API key.");
    if (!state.connected) renderModelsUnavailable(error.message);
  } finally {
    if (again && round === generation) timer = setTimeout(poll, POLL_MS);
  }
}

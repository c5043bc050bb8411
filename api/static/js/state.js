// The page's state shared by the panels: the registry as last polled, what is shown, the last
// forecast; and the look-ups on it.

export const state = {
  models: [],          // the last GET /v1/models answer, models sorted by name
  modelsJson: "",      // its serialisation, to skip re-rendering when nothing changed
  fresh: new Set(),    // "name/version" keys that appeared while the page was open
  shownVersion: null,  // {name, version} in the version panel
  versionToken: 0,
  accuracyToken: 0,    // the accuracy panel's latest request; older answers are dropped
  accuracyJson: "",    // what the accuracy panel shows, to skip redrawing when nothing changed
  accuracyLoadedAt: 0, // when the accuracy panel last asked (Date.now())
  lastForecast: null,  // {request, response, inputs, modelSummary}
  downloadUrl: null,
  sourceName: null,    // id for a single series loaded from a file or sample
  connected: false,    // the first GET /v1/models has succeeded
};

export function versionKey(name, version) {
  return `${name}/${version}`;
}

export function modelByName(name) {
  return state.models.find((model) => model.name === name);
}

// [value, label] pairs for a select of model names.
export function modelOptions() {
  return state.models.map((model) => [model.name, model.name]);
}

// The version a model opens on: the one its production alias points to, else the newest.
export function defaultVersion(model) {
  return model.aliases.production ?? Math.max(...model.versions.map((v) => v.version));
}

// The API key: asked for when the API answers 401 (or 403, a key without the scope), kept for
// this browser tab in sessionStorage (gone when the tab closes, never written to disk by the
// page), and sent as `Authorization: Bearer KEY` on every call (js/api.js).

import { $ } from "./dom.js";

const STORAGE_KEY = "forecast-api-key";
let current = readStored();
let onNewKey = () => {};

function readStored() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch {
    return ""; // storage turned off: the key lives as long as the page
  }
}

function store(key) {
  current = key;
  try {
    if (key) sessionStorage.setItem(STORAGE_KEY, key);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage turned off: kept in memory only
  }
  $("key-forget").hidden = !key;
}

export function apiKey() {
  return current;
}

// Show the prompt with why it is shown. A refused key is forgotten, so that it is not sent
// again; a key without the scope is kept (it may still forecast) until another replaces it.
export function askForKey(status, message) {
  const hadKey = Boolean(current);
  if (status === 401) store("");
  const reason = status === 403
    ? `This key may not read the registry (${message}). Enter a key with the read scope to use the dashboard.`
    : hadKey
      ? `The API refused the key (${message}). Enter another one.`
      : "This API needs a key. Enter yours below.";
  $("access-reason").textContent = reason;
  const panel = $("access");
  if (panel.hidden) {
    panel.hidden = false;
    $("api-key").focus({ preventScroll: true });
    panel.scrollIntoView({ block: "start" });
  }
}

// Wire the prompt; `newKey` runs when the user gives a key or forgets one.
export function initKeyPrompt(newKey) {
  onNewKey = newKey;
  $("key-forget").hidden = !current;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      $("access-reason").textContent = "Enter the key you were given; it is sent as Authorization: Bearer KEY.";
      $("api-key").focus();
      return;
    }
    store(key);
    $("api-key").value = "";
    $("access").hidden = true;
    onNewKey();
  });
  $("key-forget").addEventListener("click", () => {
    store("");
    onNewKey();
  });
}

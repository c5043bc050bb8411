// Calls to the forecast API, which may live on another origin (?api=https://host), with the
// user's API key when there is one (js/auth.js), and the error every failed call throws.

import { apiKey, askForKey } from "./auth.js";

export const API_BASE = (new URLSearchParams(location.search).get("api") || "").replace(/\/+$/, "");

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, init = {}) {
  const headers = { Accept: "application/json" };
  if (init.body) headers["Content-Type"] = "application/json";
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
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
    const error = new ApiError(response.status, wellFormed ? body : { error: "http", message: `HTTP ${response.status}: ${text.slice(0, 300)}` });
    if (response.status === 401 || response.status === 403) askForKey(response.status, error.message);
    throw error;
  }
  return body;
}

export const enc = encodeURIComponent;

// The forecast service's dashboard. It uses only the public API (GET /v1/models..., POST
// /v1/forecast) so it works against any deployment; ?api=https://host points it at another
// origin (that API must list this page's origin in FORECAST_CORS_ORIGINS).
// This entry module wires the panels (js/panels/) and the API key prompt (js/auth.js), and
// starts polling the API (js/poll.js); a new key polls at once.

import { initKeyPrompt } from "./js/auth.js";
import { initAccuracyPanel } from "./js/panels/accuracy.js";
import { initForecastPanel } from "./js/panels/forecast.js";
import { initVersionPanel } from "./js/panels/version.js";
import { poll } from "./js/poll.js";

initKeyPrompt(poll);
initForecastPanel();
initVersionPanel();
initAccuracyPanel();
poll();

// The live panel's two logs: changes seen in the registry, and the forecasts asked for from
// this page.

import { $, el } from "../dom.js";
import { fmtTime } from "../format.js";

const MAX_LOG_ROWS = 50;

export function logEvent(text, kind = "change") {
  const list = $("live-events");
  list.prepend(el("li", { class: kind }, el("time", { text: fmtTime(new Date()) }), " ", el("span", { text })));
  while (list.children.length > MAX_LOG_ROWS) list.lastElementChild.remove();
}

export function logForecast({ model, asked, served, series, result, ok }) {
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

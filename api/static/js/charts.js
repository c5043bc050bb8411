// Line charts with uPlot (vendored as the global `uPlot`, loaded before this module): drawing,
// resizing with their container, time axes in UTC, shaded prediction-interval bands and
// labelled vertical markers.

export const COLORS = {
  history: "#64748b",
  actual: "#0f172a",
  forecast: "#2563eb",
  band: "rgba(37, 99, 235, 0.16)",
  bandEdge: "rgba(37, 99, 235, 0.45)",
  train: "#2563eb",
  validation: "#d97706",
  naive: "#64748b",
  seasonalNaive: "#d97706",
  marker: "#475569",
};

const charts = new Map(); // container element -> uPlot instance
const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = charts.get(entry.target);
    const width = Math.floor(entry.contentRect.width);
    if (chart && width > 0 && Math.abs(chart.width - width) > 1) chart.setSize({ width, height: chart.height });
  }
});

export function destroyCharts(root) {
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

export function drawChart(container, { series, data, bands = [], time = true, height = 240, xLabel, yLabel, scales = {}, plugins = [] }) {
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
    scales: { ...scales, x: { time, ...scales.x } },
    tzDate: utcDate,
    axes: [xAxis, { label: yLabel, labelSize: yLabel ? 20 : 0, size: 56, stroke: "#334155", grid: { stroke: "#e2e8f0" } }],
    cursor: { drag: { x: true, y: false } },
    legend: { live: false, markers: { fill: (u, index) => series[index - 1]?.legendFill ?? "transparent" } },
    plugins,
  };
  const chart = new uPlot(options, data, container);
  container.dataset.points = String(data[0].length);
  container.dataset.series = series.map((s) => s.label).join("|");
  container.dataset.bands = String(bands.length);
  charts.set(container, chart);
  resizer.observe(container);
  return chart;
}

export function line(label, stroke, extra = {}) {
  return { label, stroke, legendFill: stroke, width: 2, points: { show: false }, spanGaps: false, ...extra };
}

// An interval is two dashed edge series with a band between them; the legend names it once.
export function bandEdges(level) {
  const edge = { stroke: COLORS.bandEdge, legendFill: COLORS.band, width: 1, dash: [4, 3], points: { show: false } };
  return [{ ...edge, label: `${level}% interval` }, { ...edge, label: `${level}% lower`, class: "legend-hidden" }];
}

// A plugin drawing a dashed vertical line at each marker's x, its label at the top.
export function verticalMarkers(markers, color = COLORS.marker) {
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        const { top, height } = u.bbox;
        const ratio = uPlot.pxRatio;
        ctx.save();
        ctx.strokeStyle = color;
        ctx.fillStyle = color;
        ctx.lineWidth = 1.5 * ratio;
        ctx.setLineDash([5 * ratio, 4 * ratio]);
        ctx.font = `600 ${Math.round(11 * ratio)}px system-ui, sans-serif`;
        ctx.textBaseline = "top";
        for (const { x, label } of markers) {
          const left = Math.round(u.valToPos(x, "x", true));
          if (left < u.bbox.left - 1 || left > u.bbox.left + u.bbox.width + 1) continue; // zoomed out of view
          ctx.beginPath();
          ctx.moveTo(left, top);
          ctx.lineTo(left, top + height);
          ctx.stroke();
          // The label on the line's right, or on its left near the plot's right edge.
          const onLeft = left + ctx.measureText(label).width + 6 * ratio > u.bbox.left + u.bbox.width;
          ctx.textAlign = onLeft ? "right" : "left";
          ctx.fillText(label, left + (onLeft ? -4 : 4) * ratio, top + 2 * ratio);
        }
        ctx.restore();
      }],
    },
  };
}

export const pad = (values, before, after) => [...Array(before).fill(null), ...values, ...Array(after).fill(null)];

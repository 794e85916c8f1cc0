// The console's charts: small SVG line charts drawn from the figures the console polls (no library, no build).

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fdb", "#d9822b", "#2e9e5b", "#a34fd1", "#c23b3b", "#5a6b85"];

/** One line: its name and its [x, y] points, x in milliseconds. @typedef {{name: string, points: [number, number][]}} Series */

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @param {string} [text]
 */
function svg(tag, attrs, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) made.setAttribute(name, String(value));
  if (text !== undefined) made.textContent = text;
  return made;
}

/** @param {number} value */
function short(value) {
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

/**
 * A line chart of the series over time, with its y range from 0 (to yMax if given) and a legend; each point is
 * marked too, so that a series of one point shows.
 * @param {Series[]} series
 * @param {{width?: number, height?: number, label: string, yMax?: number, dates?: boolean}} options
 */
export function lineChart(series, { width = 460, height = 200, label, yMax: fixedMax, dates = false }) {
  const pad = { left: 44, right: 10, top: 10, bottom: 38 };
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  const points = series.flatMap((s) => s.points);
  const xs = points.map(([x]) => x);
  const xMin = Math.min(...xs, Date.now() - 60_000);
  const xMax = Math.max(...xs, xMin + 1);
  const yMax = fixedMax ?? (Math.max(...points.map(([, y]) => y), 0) * 1.1 || 1);
  const x = (/** @type {number} */ v) => pad.left + ((v - xMin) / (xMax - xMin)) * (width - pad.left - pad.right);
  const y = (/** @type {number} */ v) => height - pad.bottom - (v / yMax) * (height - pad.top - pad.bottom);
  chart.append(svg("line", { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), stroke: "#8894aa" }));
  for (const tick of [0, yMax / 2, yMax]) {
    chart.append(svg("text", { x: pad.left - 4, y: y(tick) + 4, "text-anchor": "end", "font-size": 10 }, short(tick)));
  }
  for (const at of [xMin, xMax]) {
    const when = dates ? new Date(at).toLocaleDateString() : new Date(at).toLocaleTimeString();
    chart.append(svg("text", { x: x(at), y: height - pad.bottom + 12, "text-anchor": at === xMin ? "start" : "end",
      "font-size": 10 }, when));
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const sorted = [...s.points].sort((a, b) => a[0] - b[0]);
    if (sorted.length > 0) {
      const path = sorted.map(([px, py], j) => `${j === 0 ? "M" : "L"}${x(px).toFixed(1)},${y(py).toFixed(1)}`);
      chart.append(svg("path", { d: path.join(" "), fill: "none", stroke: color, "stroke-width": 2,
        "data-series": s.name }));
    }
    for (const [px, py] of sorted) chart.append(svg("circle", { cx: x(px), cy: y(py), r: 2.5, fill: color }));
    const legendX = pad.left + i * 110;
    chart.append(svg("rect", { x: legendX, y: height - 14, width: 10, height: 10, fill: color }));
    chart.append(svg("text", { x: legendX + 14, y: height - 5, "font-size": 11 }, s.name));
  });
  return chart;
}

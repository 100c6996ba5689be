// Hand-written SVG charts. Every label is set with textContent (never parsed as markup),
// and every value arrives as a string from the API and is drawn from Number(value).

const SVG_NS = "http://www.w3.org/2000/svg";
export const SERIES_COLOURS_MAX = 8; // s0…s7 in dashboard.css; beyond that, "other"

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = String(text);
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function formatAmount(value) {
  if (value === 0) return "0";
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

// Keep the biggest series, fold the rest into "other" so colours stay distinct.
export function foldSeries(series) {
  const sorted = [...series].sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
  if (sorted.length <= SERIES_COLOURS_MAX) return sorted;
  const kept = sorted.slice(0, SERIES_COLOURS_MAX - 1);
  const other = { name: "other", total: 0, values: new Map() };
  for (const item of sorted.slice(SERIES_COLOURS_MAX - 1)) {
    other.total += item.total;
    for (const [day, value] of item.values) other.values.set(day, (other.values.get(day) || 0) + value);
  }
  return [...kept, other];
}

// days: ["2026-12-01", …]; series: [{name, total, values: Map(day -> number)}]
export function stackedBars(container, { days, series, unit }) {
  container.replaceChildren();
  const width = 900;
  const height = 300;
  const margin = { top: 28, right: 12, bottom: 36, left: 64 };
  const legendRowHeight = 18;
  const folded = foldSeries(series);
  const legendRows = Math.ceil(folded.length / 4);
  const fullHeight = height + legendRows * legendRowHeight + 8;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${fullHeight}`,
    role: "img",
    "aria-label": `spend per day (${unit})`,
    "data-series": folded.length,
    "data-days": days.length,
  });
  root.appendChild(svg("title", {}, `Spend per day in ${unit}`));
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  if (days.length === 0 || folded.length === 0) {
    root.appendChild(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" },
      "No spend in this range"));
    container.appendChild(root);
    return root;
  }
  const totals = days.map((day) => folded.reduce((sum, item) => sum + (item.values.get(day) || 0), 0));
  const top = niceMax(Math.max(...totals));
  const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;
  const band = plotWidth / days.length;
  const barWidth = Math.max(2, Math.min(48, band * 0.7));

  for (let index = 0; index <= 4; index += 1) {
    const value = (top * index) / 4;
    root.appendChild(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value), class: "axis" }));
    root.appendChild(svg("text", { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end", class: "tick" },
      formatAmount(value)));
  }
  const labelEvery = Math.max(1, Math.ceil(days.length / 10));
  days.forEach((day, dayIndex) => {
    const x = margin.left + dayIndex * band + (band - barWidth) / 2;
    let stacked = 0;
    folded.forEach((item, seriesIndex) => {
      const value = item.values.get(day) || 0;
      if (value <= 0) return;
      const rect = svg("rect", {
        x: x.toFixed(2),
        y: y(stacked + value).toFixed(2),
        width: barWidth.toFixed(2),
        height: Math.max(0.5, y(stacked) - y(stacked + value)).toFixed(2),
        class: `bar s${seriesIndex}`,
        "data-series": item.name,
        "data-day": day,
        "data-value": String(value),
      });
      rect.appendChild(svg("title", {}, `${day} · ${item.name}: ${formatAmount(value)} ${unit}`));
      root.appendChild(rect);
      stacked += value;
    });
    if (dayIndex % labelEvery === 0) {
      root.appendChild(svg("text", { x: x + barWidth / 2, y: height - margin.bottom + 16, "text-anchor": "middle", class: "tick" },
        day.slice(5)));
    }
  });
  root.appendChild(svg("text", { x: margin.left - 6, y: 12, "text-anchor": "end", class: "tick" }, unit));

  folded.forEach((item, seriesIndex) => {
    const column = seriesIndex % 4;
    const row = Math.floor(seriesIndex / 4);
    const x = margin.left + column * (plotWidth / 4);
    const yTop = height + row * legendRowHeight;
    root.appendChild(svg("rect", { x, y: yTop, width: 10, height: 10, class: `s${seriesIndex}` }));
    const label = item.name.length > 38 ? `${item.name.slice(0, 37)}…` : item.name;
    root.appendChild(svg("text", { x: x + 16, y: yTop + 9, class: "legend" }, label));
  });
  container.appendChild(root);
  return root;
}

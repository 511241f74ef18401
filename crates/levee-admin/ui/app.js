// Levee's operator dashboard, served at /ui by the admin API.
//
// Plain JavaScript with no build step and no dependencies. Each view reads
// the admin API (/api/v1/... and /metrics) every 2 seconds while the tab is
// visible, renders a fresh DOM tree and patches it into the page (`morph`),
// so focus, open <details> and scroll positions survive a refresh. Charts
// are hand-written SVG; each has a summary for screen readers, a readout of
// the figures under the pointer or the keyboard cursor, and its figures in
// a table. Figures are shown as the API gives them: an endpoint this
// gateway does not have (404) shows a muted note instead.

const POLL_MS = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const HISTORY_API = '/api/v1/history/routes';

// ---------------------------------------------------------------- DOM

function build(ns, tag, props, kids) {
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      el.setAttribute(k === 'testid' ? 'data-testid' : k, v === true ? '' : String(v));
    }
  }
  appendKids(el, kids);
  return el;
}

function appendKids(el, kids) {
  for (const k of kids) {
    if (k === null || k === undefined || k === false || k === '') continue;
    if (Array.isArray(k)) appendKids(el, k);
    else if (k instanceof Node) el.appendChild(k);
    else el.appendChild(document.createTextNode(String(k)));
  }
}

/** An HTML element. */
const h = (tag, props, ...kids) => build(null, tag, props, kids);
/** An SVG element. */
const s = (tag, props, ...kids) => build(SVG_NS, tag, props, kids);

/**
 * Makes `from` look like `to`, changing only what differs, so the element
 * that has focus, an open <details> and a chart's cursor stay. A subtree
 * whose `data-sig` is unchanged is left alone (charts whose data did not
 * change).
 */
function morph(from, to) {
  if (from.nodeType !== to.nodeType || from.nodeName !== to.nodeName) {
    from.replaceWith(to);
    return;
  }
  if (from.nodeType === Node.TEXT_NODE) {
    if (from.data !== to.data) from.data = to.data;
    return;
  }
  if (from.nodeType !== Node.ELEMENT_NODE) {
    from.replaceWith(to);
    return;
  }
  const sig = to.getAttribute('data-sig');
  if (sig !== null && sig === from.getAttribute('data-sig')) return;
  for (const a of [...from.attributes]) {
    // The reader opens and closes <details>; a refresh keeps that.
    if (a.name === 'open' && from.nodeName === 'DETAILS') continue;
    if (!to.hasAttribute(a.name)) from.removeAttribute(a.name);
  }
  for (const a of [...to.attributes]) {
    if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
  }
  const olds = [...from.childNodes];
  const news = [...to.childNodes];
  news.forEach((n, i) => (i < olds.length ? morph(olds[i], n) : from.appendChild(n)));
  for (let i = news.length; i < olds.length; i++) olds[i].remove();
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(path, status, message) {
    super(`${path}: ${message}`);
    this.path = path;
    this.status = status;
  }
}

/** What an optional endpoint this gateway does not have returns. */
const MISSING = Object.freeze({ missing: true });

async function fetchApi(path, { optional = false, text = false } = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { accept: text ? 'text/plain' : 'application/json' },
    });
  } catch {
    throw new ApiError(path, 0, 'the admin API did not answer');
  }
  if (resp.status === 401) {
    sessionEnded();
    throw new ApiError(path, 401, 'the session has ended');
  }
  if (resp.status === 404 && optional) return MISSING;
  if (!resp.ok) throw new ApiError(path, resp.status, `answered ${resp.status} ${resp.statusText}`);
  return text ? resp.text() : resp.json();
}

/** The session expired or was closed: back to the login form. */
function sessionEnded() {
  if (app.leaving) return;
  app.leaving = true;
  location.assign('/ui/');
}

/**
 * Whether this gateway has the history API: asked once per visit to a
 * route page (so a missing API costs one request, not one every 2 s).
 */
async function historyRoutes() {
  if (app.history === false) return MISSING;
  const routes = await fetchApi(HISTORY_API, { optional: true });
  app.history = routes !== MISSING;
  return routes;
}

/** Prometheus text exposition into `{name, labels, value}` samples. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      }
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function samples(metrics, name, match = {}) {
  return metrics.filter(
    (x) => x.name === name && Object.entries(match).every(([k, v]) => x.labels[k] === v),
  );
}

function sampleValue(metrics, name, match = {}) {
  const found = samples(metrics, name, match);
  return found.length ? found.reduce((a, x) => a + x.value, 0) : null;
}

// ---------------------------------------------------------------- formats

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

const fmt = {
  /** A ratio as a percentage floored to `digits` decimals, so any failure shows below 100%. */
  pctFloor(r, digits = 3) {
    if (!isNum(r)) return '—';
    const scale = 10 ** (digits + 2);
    return `${(Math.floor(r * scale + 1e-6) / 10 ** digits).toFixed(digits)}%`;
  },
  pct(r, digits = 1) {
    if (!isNum(r)) return '—';
    const v = (r * 100).toFixed(digits);
    return `${v.replace('-', '−')}%`;
  },
  num(n) {
    if (!isNum(n)) return '—';
    return Number.isInteger(n) ? n.toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 2 });
  },
  ms(v) {
    if (!isNum(v)) return '—';
    if (v < 1) return `${v.toFixed(2)} ms`;
    if (v < 10) return `${v.toFixed(1)} ms`;
    if (v < 1000) return `${Math.round(v)} ms`;
    return `${(v / 1000).toFixed(v < 10000 ? 1 : 0)} s`;
  },
  burn(b) {
    return isNum(b) ? `${b.toFixed(2)}×` : '—';
  },
  /** "850 ms", "4.2 s", "12 s", "3m 05s", "2h 10m", "1d 4h". */
  dur(sec) {
    if (!isNum(sec)) return '—';
    const neg = sec < 0;
    let x = Math.abs(sec);
    let out;
    if (x < 1) out = `${Math.round(x * 1000)} ms`;
    else if (x < 10) out = `${x.toFixed(1)} s`;
    else if (x < 60) out = `${Math.round(x)} s`;
    else if (x < 3600) out = `${Math.floor(x / 60)}m ${String(Math.round(x % 60)).padStart(2, '0')}s`;
    else if (x < 86400) out = `${Math.floor(x / 3600)}h ${String(Math.floor((x % 3600) / 60)).padStart(2, '0')}m`;
    else out = `${Math.floor(x / 86400)}d ${Math.floor((x % 86400) / 3600)}h`;
    return neg ? `−${out}` : out;
  },
  /** "14:05:09 UTC" for times today, "3 Dec 14:05 UTC" otherwise. */
  time(rfc) {
    const d = parseTime(rfc);
    if (!d) return '—';
    const now = new Date();
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (d.toISOString().slice(0, 10) === now.toISOString().slice(0, 10)) {
      return `${hm}:${pad(d.getUTCSeconds())} UTC`;
    }
    return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${hm} UTC`;
  },
  clock(ms) {
    const d = new Date(ms);
    return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  },
  clockSeconds(ms) {
    const d = new Date(ms);
    return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  },
  day(ms) {
    const d = new Date(ms);
    return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
  },
};

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n) => String(n).padStart(2, '0');

function parseTime(rfc) {
  if (typeof rfc !== 'string' || !rfc) return null;
  const d = new Date(rfc);
  return Number.isNaN(d.getTime()) ? null : d;
}

const timeMs = (rfc) => parseTime(rfc)?.getTime() ?? null;

/** A round upper bound for an axis. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

// ---------------------------------------------------------------- status

// Every status has a colour, an icon and a word: colour is never alone.
const STATUS = {
  ok: ['s-ok', '✓', 'OK'],
  operational: ['s-ok', '✓', 'Operational'],
  healthy: ['s-ok', '✓', 'Healthy'],
  passed: ['s-ok', '✓', 'Passed'],
  promoted: ['s-ok', '✓', 'Promoted'],
  closed: ['s-ok', '✓', 'Closed'],
  resolved: ['s-ok', '✓', 'Resolved'],
  inactive: ['s-neutral', '○', 'Inactive'],
  no_data: ['s-neutral', '○', 'No data yet'],
  unlimited: ['s-neutral', '∞', 'No limit set'],
  idle: ['s-neutral', '○', 'Idle'],
  waiting: ['s-neutral', '…', 'Waiting'],
  not_enough_data: ['s-neutral', '…', 'Not enough data'],
  pending: ['s-warn', '◔', 'Pending'],
  warning: ['s-warn', '▲', 'Warning'],
  degraded: ['s-warn', '▲', 'Degraded'],
  burning: ['s-warn', '▲', 'Burning'],
  half_open: ['s-warn', '◐', 'Half open'],
  paused: ['s-warn', '❚❚', 'Paused'],
  recovered: ['s-warn', '▲', 'Recovered, alert firing'],
  alert_resolved: ['s-warn', '▲', 'Alert resolved, not recovered'],
  ejected: ['s-warn', '▲', 'Ejected'],
  firing: ['s-bad', '✕', 'Firing'],
  open: ['s-bad', '✕', 'Open'],
  exhausted: ['s-bad', '✕', 'Budget exhausted'],
  critical: ['s-bad', '✕', 'Critical'],
  outage: ['s-bad', '✕', 'Outage'],
  failed: ['s-bad', '✕', 'Failed'],
  unhealthy: ['s-bad', '✕', 'Unhealthy'],
  rolled_back: ['s-bad', '↶', 'Rolled back'],
  progressing: ['s-info', '▶', 'Progressing'],
  switched: ['s-info', '⇄', 'Switched'],
};

function badge(state, label, testid) {
  const [cls, icon, text] = STATUS[state] ?? ['s-neutral', '○', String(state ?? 'unknown').replace(/_/g, ' ')];
  return h(
    'span',
    { class: `badge ${cls}`, testid, 'data-value': state },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, icon),
    label ?? text,
  );
}

// ---------------------------------------------------------------- layout helpers

function section(title, ...kids) {
  return h('section', { 'aria-label': title }, h('h2', null, title), ...kids);
}

function note(text, testid) {
  return h('p', { class: 'note', testid }, text);
}

function figures(pairs) {
  return h(
    'dl',
    { class: 'figures' },
    pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]),
  );
}

/** A table inside a scrollable region (wide tables scroll at 390 px). */
function table(caption, head, rows, { numeric = [], testid } = {}) {
  // Wide tables become one block per row on narrow screens (app.css), each
  // cell labelled with its column.
  const t = h(
    'table',
    { testid, class: head.length > 4 ? 'stack' : null },
    caption ? h('caption', null, caption) : null,
    h('thead', null, h('tr', null, head.map((c, i) => h('th', { scope: 'col', class: numeric.includes(i) ? 'num' : null }, c)))),
    h(
      'tbody',
      null,
      rows.map((r) => h('tr', null, r.map((c, i) => h('td', { class: numeric.includes(i) ? 'num' : null, 'data-label': head[i] }, c)))),
    ),
  );
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': caption || head.join(', '), tabindex: '0' }, t);
}

/** Width available to a chart placed directly in the page's main column. */
function mainWidth() {
  const main = document.getElementById('main');
  const cs = getComputedStyle(main);
  const w = main.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  return Math.max(260, Math.floor(w));
}

/** Width available inside a card spanning the page. */
const cardWidth = () => mainWidth() - 30;

// ---------------------------------------------------------------- charts

/** Charts on the page by id: how to place the cursor and read a column. */
const charts = new Map();
/** The cursor column of each chart the reader pointed at or focused. */
const cursors = new Map();

const DEFAULT_READOUT = 'Point at the chart, or focus it and use the arrow keys, to read its figures.';

/**
 * A chart's frame: a focusable box with `role="img"` and a summary, the
 * readout line, and its figures in a table.
 */
function chartFigure({ id, title, summary, svg, legend, details, sig }) {
  return h(
    'figure',
    { class: 'chart', 'data-sig': sig, testid: `chart-${id}` },
    h('figcaption', null, title),
    legend ?? null,
    h('div', { class: 'chart-box', tabindex: '0', role: 'img', 'aria-label': summary, 'data-chart': id }, svg),
    h('p', { class: 'readout', 'aria-live': 'polite', 'data-readout': id }, DEFAULT_READOUT),
    details ? h('details', null, h('summary', null, `Figures: ${title}`), details) : null,
  );
}

function legendKey(k, name) {
  return h(
    'span',
    { class: 'key' },
    s('svg', { width: 26, height: 10, 'aria-hidden': 'true' }, s('line', { class: `series series-${k} dash-${k}`, x1: 0, x2: 26, y1: 5, y2: 5 })),
    name,
  );
}

function pathD(values, x, y) {
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (!isNum(v)) {
      pen = false;
      return;
    }
    // A value with no numeric neighbour (one busy step among idle ones)
    // would draw nothing: a short dash makes it a visible dot.
    const alone = !isNum(values[i - 1]) && !isNum(values[i + 1]);
    if (alone) {
      d += `M${(x(i) - 2).toFixed(1)},${y(v).toFixed(1)}L${(x(i) + 2).toFixed(1)},${y(v).toFixed(1)}`;
    } else {
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    }
    pen = !alone;
  });
  return d || 'M0,0';
}

function timeLabels(timesMs, x, yPos) {
  const n = timesMs.length;
  if (!n) return [];
  const idx = n < 3 ? [0, n - 1] : [0, Math.floor(n / 2), n - 1];
  return idx.map((i, k) =>
    s('text', { x: x(i), y: yPos, 'text-anchor': k === 0 ? 'start' : k === idx.length - 1 ? 'end' : 'middle' }, fmt.clock(timesMs[i])),
  );
}

/**
 * Lines over time (one per series, each with its own dash as well as its
 * colour), with a y axis from 0.
 */
function lineChart({ id, title, width, height = 150, timesMs, series, yFormat, describe, summary, details }) {
  const m = { l: 58, r: 12, t: 10, b: 22 };
  const pw = Math.max(40, width - m.l - m.r);
  const ph = height - m.t - m.b;
  const n = timesMs.length;
  const top = niceMax(Math.max(0, ...series.flatMap((x) => x.values.filter(isNum))));
  const x = (i) => m.l + ((i + 0.5) * pw) / Math.max(1, n);
  const y = (v) => m.t + ph - (v / top) * ph;
  const body = [];
  for (const f of [0, 0.5, 1]) {
    const yy = y(top * f);
    body.push(s('line', { class: f === 0 ? 'axis' : 'gridline', x1: m.l, x2: m.l + pw, y1: yy, y2: yy }));
    body.push(s('text', { x: m.l - 6, y: yy + 4, 'text-anchor': 'end' }, yFormat(top * f)));
  }
  body.push(...timeLabels(timesMs, x, height - 6));
  series.forEach((sr, k) => {
    const d = pathD(sr.values, x, y);
    body.push(s('path', { class: 'halo', d }), s('path', { class: `series series-${k} dash-${k}`, d }));
  });
  body.push(s('line', { class: 'cursor', x1: -99, x2: -99, y1: m.t, y2: m.t + ph, 'data-cursor': '' }));
  charts.set(id, { n, left: m.l, width: pw, x, describe });
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false' }, body);
  const legend = series.length > 1 ? h('div', { class: 'legend', 'aria-hidden': 'true' }, series.map((sr, k) => legendKey(k, sr.name))) : null;
  return chartFigure({ id, title, summary, svg, legend, details, sig: `${id}|${width}|${JSON.stringify(series.map((q) => q.values))}|${timesMs[0]}` });
}

// Viridis, dark purple to yellow.
const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725'];

function viridis(t) {
  const x = clamp(t, 0, 1) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  const mix = (k) => Math.round(parseInt(a.slice(k, k + 2), 16) * (1 - f) + parseInt(b.slice(k, k + 2), 16) * f);
  return `#${[1, 3, 5].map((k) => mix(k).toString(16).padStart(2, '0')).join('')}`;
}

const darkMode = () => matchMedia('(prefers-color-scheme: dark)').matches;

/**
 * The heatmap colour of intensity `t` in (0, 1]: darker is more on a light
 * page; on a dark page brighter is more (dark cells would vanish).
 */
function heat(t) {
  const v = 0.1 + 0.9 * clamp(t, 0, 1);
  return darkMode() ? viridis(v) : viridis(1 - v);
}

function heatLegend(maxLabel, unit) {
  const steps = 8;
  return h(
    'div',
    { class: 'legend' },
    h('span', null, `fewer ${unit}`),
    s(
      'svg',
      { width: steps * 14, height: 12, 'aria-hidden': 'true' },
      Array.from({ length: steps }, (_, i) => s('rect', { x: i * 14, y: 0, width: 14, height: 12, fill: heat((i + 1) / steps) })),
    ),
    h('span', null, `more ${unit} (up to ${maxLabel})`),
  );
}

/**
 * Latency heatmap: one column per step, one row per latency bucket (rows
 * from `rows_ms`, fastest at the bottom), darker for more requests (log
 * scale), with the p50, p95 and p99 lines over it.
 */
function latencyHeatmap({ id, title, width, points, rowsMs }) {
  const m = { l: 64, r: 12, t: 8, b: 22 };
  const nRows = rowsMs.length;
  const n = points.length;
  const rowH = clamp(Math.floor(240 / Math.max(1, nRows)), 6, 16);
  const ph = rowH * nRows;
  const height = ph + m.t + m.b;
  const pw = Math.max(40, width - m.l - m.r);
  const colW = pw / Math.max(1, n);
  let max = 0;
  for (const p of points) for (const c of p.counts ?? []) max = Math.max(max, c);
  const logMax = Math.log1p(max);
  const body = [s('rect', { class: 'cell-outline', x: m.l, y: m.t, width: pw, height: ph })];
  points.forEach((p, i) => {
    (p.counts ?? []).forEach((c, r) => {
      if (!(c > 0)) return;
      body.push(
        s('rect', {
          x: (m.l + i * colW).toFixed(2),
          y: m.t + ph - (r + 1) * rowH,
          width: (colW + 0.4).toFixed(2),
          height: rowH,
          fill: heat(Math.log1p(c) / logMax),
          'data-col': i,
          'data-row': r,
          'data-count': c,
          'data-t': p.t_ns,
        }),
      );
    });
  });
  // Row labels: the upper bound of every few rows.
  const every = Math.ceil(nRows / Math.max(1, Math.floor(ph / 14)));
  rowsMs.forEach((ub, r) => {
    if (r % every !== 0 && r !== nRows - 1) return;
    const label = ub === null ? `> ${fmt.ms(rowsMs[r - 1])}` : `≤ ${fmt.ms(ub)}`;
    body.push(s('text', { x: m.l - 6, y: m.t + ph - r * rowH - rowH / 2 + 4, 'text-anchor': 'end' }, label));
  });
  const x = (i) => m.l + (i + 0.5) * colW;
  const yOfMs = (v) => {
    let r = rowsMs.findIndex((ub) => ub === null || v <= ub);
    if (r < 0) r = nRows - 1;
    const upper = rowsMs[r];
    const lower = r === 0 ? 0 : rowsMs[r - 1];
    let frac = 0.5;
    if (upper !== null && upper > 0) {
      frac = lower > 0 ? Math.log(v / lower) / Math.log(upper / lower) : v / upper;
    }
    return m.t + ph - (r + clamp(frac, 0, 1)) * rowH;
  };
  const times = points.map((p) => p.t_ns / 1e6);
  body.push(...timeLabels(times, x, height - 6));
  const lines = [
    ['p50', 'p50_ms'],
    ['p95', 'p95_ms'],
    ['p99', 'p99_ms'],
  ];
  lines.forEach(([, key], k) => {
    const d = pathD(points.map((p) => p[key]), x, yOfMs);
    body.push(s('path', { class: 'halo', d }), s('path', { class: `series series-${k} dash-${k}`, d, 'data-line': key }));
  });
  body.push(s('line', { class: 'cursor', x1: -99, x2: -99, y1: m.t, y2: m.t + ph, 'data-cursor': '' }));
  const describe = (i) => {
    const p = points[i];
    const busiest = (p.counts ?? []).reduce((best, c, r) => (c > (p.counts[best] ?? 0) ? r : best), 0);
    const bucket = p.requests > 0 ? `, most in ${rowsMs[busiest] === null ? `> ${fmt.ms(rowsMs[busiest - 1])}` : `≤ ${fmt.ms(rowsMs[busiest])}`} (${fmt.num(p.counts[busiest])})` : '';
    return `${fmt.clockSeconds(p.t_ns / 1e6)} UTC: ${fmt.num(p.requests)} requests${bucket}; p50 ${fmt.ms(p.p50_ms)}, p95 ${fmt.ms(p.p95_ms)}, p99 ${fmt.ms(p.p99_ms)}`;
  };
  charts.set(id, { n, left: m.l, width: pw, x, describe });
  const busy = points.filter((p) => p.requests > 0);
  const worst = busy.reduce((a, p) => Math.max(a, p.p99_ms ?? 0), 0);
  const summary = busy.length
    ? `Latency heatmap, ${points.length} steps: ${fmt.num(busy.reduce((a, p) => a + p.requests, 0))} requests; highest p99 ${fmt.ms(worst)}; latest p50 ${fmt.ms(busy[busy.length - 1].p50_ms)}.`
    : 'Latency heatmap: no requests in this window.';
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false' }, body);
  const legend = h(
    'div',
    { class: 'legend', 'aria-hidden': 'true' },
    legendKey(0, 'p50'),
    legendKey(1, 'p95'),
    legendKey(2, 'p99'),
    heatLegend(fmt.num(max), 'requests'),
  );
  const rows = busy.map((p) => [fmt.clockSeconds(p.t_ns / 1e6), fmt.num(p.requests), fmt.num(p.errors), fmt.ms(p.p50_ms), fmt.ms(p.p95_ms), fmt.ms(p.p99_ms)]);
  const details = busy.length
    ? table('Steps with requests (idle steps left out)', ['Time (UTC)', 'Requests', 'Errors', 'p50', 'p95', 'p99'], rows, { numeric: [1, 2, 3, 4, 5] })
    : note('No requests in this window.');
  return chartFigure({ id, title, summary, svg, legend, details, sig: `${id}|${width}|${darkMode()}|${points[0]?.t_ns}|${JSON.stringify(points.map((p) => [p.counts, p.p50_ms, p.p95_ms, p.p99_ms]))}` });
}

/** A horizontal bar from 0 to `max` with optional threshold ticks. */
function bar({ value, max = 1, width = 160, height = 12, cls = 'bar', ticks = [], label }) {
  const w = Math.max(0, Math.min(1, (isNum(value) ? value : 0) / max)) * width;
  return s(
    'svg',
    { width, height: height + 4, role: 'img', 'aria-label': label, class: 'inline-bar' },
    s('title', null, label),
    s('rect', { class: 'bar-bg', x: 0, y: 2, width, height, rx: 2 }),
    s('rect', { class: cls, x: 0, y: 2, width: w.toFixed(1), height, rx: 2 }),
    ticks.map((t) => s('line', { class: t.cls, x1: (clamp(t.at / max, 0, 1) * width).toFixed(1), x2: (clamp(t.at / max, 0, 1) * width).toFixed(1), y1: 0, y2: height + 4 })),
  );
}

function statusBarClass(status) {
  return { ok: 'bar-ok', warning: 'bar-warn', critical: 'bar-bad' }[status] ?? 'bar';
}

// ---------------------------------------------------------------- chart interaction

function setCursor(id, i) {
  const chart = charts.get(id);
  if (!chart || chart.n === 0) return;
  const col = clamp(i, 0, chart.n - 1);
  cursors.set(id, col);
  showCursor(id);
}

function showCursor(id) {
  const chart = charts.get(id);
  const col = cursors.get(id);
  const box = document.querySelector(`[data-chart="${CSS.escape(id)}"]`);
  const readout = document.querySelector(`[data-readout="${CSS.escape(id)}"]`);
  if (!chart || col === undefined || !box || !readout || col >= chart.n) return;
  const line = box.querySelector('[data-cursor]');
  const x = chart.x(col).toFixed(1);
  line?.setAttribute('x1', x);
  line?.setAttribute('x2', x);
  readout.textContent = chart.describe(col);
}

function restoreCursors() {
  for (const id of cursors.keys()) showCursor(id);
}

function chartAt(target) {
  return target instanceof Element ? target.closest('[data-chart]') : null;
}

document.addEventListener('mousemove', (e) => {
  const box = chartAt(e.target);
  if (!box) return;
  const id = box.getAttribute('data-chart');
  const chart = charts.get(id);
  if (!chart) return;
  const rect = box.querySelector('svg').getBoundingClientRect();
  const col = Math.floor(((e.clientX - rect.left - chart.left) / chart.width) * chart.n);
  if (col >= 0 && col < chart.n) setCursor(id, col);
});

document.addEventListener('focusin', (e) => {
  const box = chartAt(e.target);
  if (box && box === e.target) {
    const id = box.getAttribute('data-chart');
    if (!cursors.has(id)) setCursor(id, (charts.get(id)?.n ?? 1) - 1);
  }
});

document.addEventListener('keydown', (e) => {
  const box = chartAt(e.target);
  if (!box || box !== e.target) return;
  const id = box.getAttribute('data-chart');
  const chart = charts.get(id);
  if (!chart) return;
  const at = cursors.get(id) ?? chart.n - 1;
  const step = e.shiftKey ? 10 : 1;
  const moves = { ArrowLeft: at - step, ArrowRight: at + step, Home: 0, End: chart.n - 1 };
  if (e.key in moves) {
    e.preventDefault();
    setCursor(id, moves[e.key]);
  }
});

// ---------------------------------------------------------------- overview

const overview = {
  title: 'Overview',
  async load() {
    const [slos, incidents, status, rollouts, faults, config] = await Promise.all([
      fetchApi('/api/v1/slos'),
      fetchApi('/api/v1/incidents'),
      fetchApi('/api/v1/status'),
      fetchApi('/api/v1/rollouts'),
      fetchApi('/api/v1/faults'),
      fetchApi('/api/v1/config'),
    ]);
    return { slos, incidents, status, rollouts, faults, config };
  },
  render(d) {
    return [
      h('h1', { tabindex: '-1' }, 'Overview'),
      h(
        'p',
        { class: 'lede' },
        'SLOs evaluated ',
        h('span', { testid: 'evaluated-at', 'data-value': d.slos.evaluated_at ?? '' }, d.slos.evaluated_at ? fmt.time(d.slos.evaluated_at) : 'not yet'),
        '.',
      ),
      tiersSection(d.status),
      sloSection(d.slos.slos),
      openIncidentsSection(d.incidents.incidents),
      changesSection(d.rollouts, d.faults.faults, d.config),
    ];
  },
};

function tiersSection(status) {
  const tiers = status.tiers ?? [];
  return section(
    'Uptime by tier',
    tiers.length
      ? h(
          'div',
          { class: 'cards' },
          tiers.map((t) =>
            h(
              'article',
              { class: 'card', testid: `tier-${t.tier}` },
              h('div', { class: 'card-head' }, h('h3', null, t.name), badge(t.status)),
              h('p', { class: 'big', testid: `tier-${t.tier}-uptime`, 'data-value': t.uptime ?? '' }, t.uptime_text),
              figures([
                ['Objective', t.objective_text],
                ['Period', t.period],
                ['Error budget', h('span', { testid: `tier-${t.tier}-budget`, 'data-value': t.budget_remaining_ratio ?? '' }, t.budget_text)],
              ]),
            ),
          ),
        )
      : note('No tier has routes or traffic yet.'),
  );
}

function sloSection(slos) {
  return section(
    'Service level objectives',
    slos.length ? h('div', { class: 'cards' }, slos.map(sloCard)) : note('No SLOs are configured ([[slos]] in the config).'),
  );
}

function sloCard(slo) {
  const b = slo.budget ?? {};
  const t = (k) => `slo-${slo.id}-${k}`;
  const ratio = b.remaining_ratio;
  const barCls = !isNum(ratio) ? 'bar' : ratio <= 0 ? 'bar-bad' : ratio < 0.25 ? 'bar-warn' : 'bar-ok';
  const budgetText = isNum(ratio) ? `${fmt.pct(ratio)} left${b.remaining_text ? ` · ${b.remaining_text.replace(/^-/, '−')}` : ''}` : 'No events yet';
  const windows = slo.windows ?? [];
  const threshold = slo.threshold ? ` under ${slo.threshold}` : '';
  return h(
    'article',
    { class: 'card', testid: `slo-${slo.id}` },
    h('div', { class: 'card-head' }, h('h3', null, slo.id), badge(slo.status, null, t('status'))),
    slo.description ? h('p', { class: 'muted' }, slo.description) : null,
    figures([
      ['Objective', `${slo.objective_text}${threshold} over ${slo.period}`],
      ['SLI', h('span', { testid: t('sli'), 'data-value': slo.sli_value ?? '' }, fmt.pctFloor(slo.sli_value))],
      [
        'Events',
        h('span', { testid: t('events'), 'data-value': slo.events }, `${fmt.num(slo.events)} (${fmt.num(slo.bad_events)} bad)`),
      ],
      [
        'Error budget',
        h(
          'span',
          null,
          bar({ value: Math.max(0, ratio ?? 0), cls: barCls, width: 120, label: `Error budget left: ${budgetText}` }),
          ' ',
          h('span', { testid: t('budget'), 'data-value': ratio ?? '' }, budgetText),
        ),
      ],
      b.exhaustion && !['never', 'exhausted'].includes(b.exhaustion) ? ['Runs out', `in ${b.exhaustion} at the current burn`] : null,
      slo.budgeting && slo.budgeting !== 'occurrences'
        ? ['Slices', `${fmt.num(slo.bad_slices)} bad of ${fmt.num(slo.slices)} (${fmt.num(slo.allowed_bad_slices)} allowed)`]
        : null,
    ]),
    windows.length
      ? table(
          `Burn rate by alert window, ${slo.id}`,
          ['Window', 'Burn rate', 'SLI', 'Bad / all'],
          windows.map((w) => [
            w.window,
            h('span', { testid: t(`burn-${w.window}`), 'data-value': w.burn_rate ?? '' }, burnText(w.burn_rate)),
            fmt.pctFloor(w.sli),
            `${fmt.num(w.bad_events)} / ${fmt.num(w.events)}`,
          ]),
          { numeric: [1, 2, 3] },
        )
      : null,
    h(
      'p',
      { class: 'kv' },
      (slo.alerts ?? []).map((a) =>
        h('span', null, `${a.severity} alert: `, badge(a.state, null, t(`alert-${a.severity}`)), a.since ? ` since ${fmt.time(a.since)}` : ''),
      ),
    ),
  );
}

/** A burn rate, with a marker above 1 (spending faster than the period allows). */
function burnText(b) {
  if (!isNum(b)) return '—';
  return b > 1 ? `▲ ${fmt.burn(b)}` : fmt.burn(b);
}

const OPEN_STATES = new Set(['open', 'recovered', 'alert_resolved']);

function openIncidentsSection(incidents) {
  const open = incidents.filter((i) => OPEN_STATES.has(i.state));
  return section(
    'Open incidents',
    h('p', { class: 'lede' }, h('span', { testid: 'open-incidents-count', 'data-value': open.length }, `${open.length} open`), ` of ${incidents.length} recorded. `, h('a', { href: '#/incidents' }, 'All incidents')),
    open.length
      ? table(
          'Open incidents',
          ['Incident', 'SLO', 'State', 'Started', 'Detected after', 'Bad events', 'Budget spent'],
          open.map((i) => [
            h('a', { href: `#/incidents/${i.id}` }, `#${i.id}`),
            i.slo,
            badge(i.state),
            fmt.time(i.start),
            fmt.dur(i.time_to_detect_seconds),
            fmt.num(i.bad_events),
            fmt.pct(i.budget_spent_ratio, 2),
          ]),
          { numeric: [4, 5, 6], testid: 'open-incidents' },
        )
      : null,
  );
}

const ACTIVE_PHASES = new Set(['waiting', 'progressing', 'paused', 'switched']);

/** Configured faults of routes and clusters, from the running config. */
function configuredFaults(config) {
  const out = [];
  for (const r of config.routes ?? []) for (const f of r.faults ?? []) out.push({ on: 'route', target: r.name, fault: f, what: routeFaultText(f) });
  for (const c of config.clusters ?? []) for (const f of c.faults ?? []) out.push({ on: 'cluster', target: c.name, fault: f, what: upstreamFaultText(f.kind) });
  return out;
}

function routeFaultText(f) {
  const parts = [];
  if (f.delay) parts.push(`delay ${f.delay}`);
  if (f.abort !== null && f.abort !== undefined) parts.push(`abort ${typeof f.abort === 'object' ? JSON.stringify(f.abort) : f.abort}`);
  if (f.bandwidth) parts.push(`${fmt.num(f.bandwidth)} B/s`);
  return parts.join(', ') || 'fault';
}

function upstreamFaultText(kind) {
  if (typeof kind === 'string') return kind.replace(/_/g, ' ');
  if (kind && typeof kind === 'object') {
    const [name, v] = Object.entries(kind)[0] ?? ['fault', {}];
    return `${name.replace(/_/g, ' ')} ${Object.values(v ?? {}).join(' ')}`.trim();
  }
  return 'fault';
}

function changesSection(rollouts, faults, config, title = 'Rollouts, experiments and faults', empty = 'No rollout, split, experiment or fault is active.') {
  const active = (rollouts.rollouts ?? []).filter((r) => ACTIVE_PHASES.has(r.phase));
  const splits = rollouts.splits ?? [];
  const configured = configuredFaults(config);
  const parts = [];
  if (active.length) {
    parts.push(
      table(
        'Active rollouts',
        ['Route', 'Phase', 'From', 'To', 'Canary weight', 'Step'],
        active.map((r) => [
          h('a', { href: '#/rollouts' }, r.route),
          badge(r.phase),
          r.stable,
          r.canary ?? '—',
          `${fmt.num(r.weight_percent)}%`,
          r.steps_percent ? `${r.step + 1} of ${r.steps_percent.length}` : String(r.step),
        ]),
        { numeric: [4], testid: 'active-rollouts' },
      ),
    );
  }
  if (splits.length) {
    parts.push(
      table('Traffic splits', ['Route', 'Stable', 'Canary', 'Canary share'], splits.map((x) => [x.route, x.stable, x.canary, `${fmt.num(x.canary_percent)}%`]), { numeric: [3] }),
    );
  }
  if (faults.length) {
    parts.push(
      table(
        'Experiments: runtime faults',
        ['Id', 'On', 'Fault', 'Injected', 'Active now', 'Expires in'],
        faults.map((f) => [String(f.id), `${f.on} ${f.target}`, f.name, fmt.num(f.injected), fmt.num(f.active), fmt.dur(f.expires_in_seconds)]),
        { numeric: [3, 4, 5], testid: 'runtime-faults' },
      ),
    );
  }
  if (configured.length) {
    parts.push(
      table(
        'Faults in the config',
        ['On', 'Fault', 'What', 'Share'],
        configured.map((c) => [`${c.on} ${c.target}`, c.fault.name, c.what, `${fmt.num(c.fault.weight / 100)}%`]),
        { numeric: [3] },
      ),
    );
  }
  return section(title, parts.length ? parts : note(empty, 'no-changes'));
}

// ---------------------------------------------------------------- routes

const routesPage = {
  title: 'Routes',
  async load() {
    const [history, config, metricsText] = await Promise.all([
      historyRoutes(),
      fetchApi('/api/v1/config'),
      fetchApi('/metrics', { text: true }),
    ]);
    return { history, config, metrics: parseMetrics(metricsText) };
  },
  render(d) {
    const historyMissing = d.history === MISSING;
    const releases = new Map((d.history.routes ?? []).map((r) => [r.route, r]));
    const rows = (d.config.routes ?? []).map((r) => {
      const byClass = (cls) => sampleValue(d.metrics, 'levee_requests_total', { route: r.name, code: cls }) ?? 0;
      const total = ['1xx', '2xx', '3xx', '4xx', '5xx'].reduce((a, c) => a + byClass(c), 0);
      const count = sampleValue(d.metrics, 'levee_request_duration_seconds_count', { route: r.name });
      const sum = sampleValue(d.metrics, 'levee_request_duration_seconds_sum', { route: r.name });
      const release = r.rollout ? 'rollout' : r.split ? 'split' : releases.get(r.name)?.has_release ? 'yes' : '—';
      return [
        historyMissing ? r.name : h('a', { href: `#/routes/${encodeURIComponent(r.name)}` }, r.name),
        r.tier,
        r.cluster,
        release,
        h('span', { testid: `route-${r.name}-requests`, 'data-value': total }, fmt.num(total)),
        fmt.num(byClass('5xx')),
        fmt.num(byClass('4xx')),
        count ? fmt.ms((sum / count) * 1000) : '—',
      ];
    });
    return [
      h('h1', { tabindex: '-1' }, 'Routes'),
      historyMissing
        ? note(
            'Request history is not available from this gateway (GET /api/v1/history/routes answered 404), so there are no rate, error or latency charts. The table shows totals since the gateway started, from /metrics.',
            'history-unavailable',
          )
        : h('p', { class: 'lede' }, 'Choose a route for its request rate, errors and latency over the last hour or day.'),
      table(
        'Routes, with totals since the gateway started',
        ['Route', 'Tier', 'Cluster', 'Release', 'Requests', '5xx', '4xx', 'Mean latency'],
        rows,
        { numeric: [4, 5, 6, 7], testid: 'routes' },
      ),
    ];
  },
};

const routePage = {
  title: 'Route',
  async load(route) {
    const list = await historyRoutes();
    if (list === MISSING) return { missing: true };
    const window = route.window === '1d' ? '1d' : '1h';
    const history = await fetchApi(`${HISTORY_API}/${encodeURIComponent(route.route)}?window=${window}`, { optional: true });
    const meta = (list.routes ?? []).find((r) => r.route === route.route) ?? {};
    return { history, window, meta };
  },
  render(d, route) {
    const title = h('h1', { tabindex: '-1' }, `Route ${route.route}`);
    const back = h('p', null, h('a', { href: '#/routes' }, '← All routes'));
    if (d.missing) {
      return [title, back, note('Request history is not available from this gateway (GET /api/v1/history/routes answered 404).', 'history-unavailable')];
    }
    if (d.history === MISSING) return [title, back, note(`No history for a route named “${route.route}”.`)];
    const hist = d.history;
    const href = (w) => `#/routes/${encodeURIComponent(route.route)}?window=${w}`;
    const toggle = h(
      'div',
      { class: 'toolbar' },
      h('span', { id: 'window-label' }, 'Window:'),
      h(
        'div',
        { class: 'segmented', role: 'group', 'aria-labelledby': 'window-label' },
        h('a', { href: href('1h'), 'aria-current': d.window === '1h' ? 'true' : null, testid: 'window-1h' }, 'Last hour'),
        h('a', { href: href('1d'), 'aria-current': d.window === '1d' ? 'true' : null, testid: 'window-1d' }, 'Last day'),
      ),
      h('span', { class: 'muted' }, `${fmt.dur(hist.step_seconds)} steps, ${fmt.time(hist.from)} to ${fmt.time(hist.to)}`),
    );
    const width = mainWidth();
    const points = hist.points ?? [];
    const versions = hist.versions ? Object.entries(hist.versions).filter(([, pts]) => Array.isArray(pts) && pts.length) : [];
    const timesMs = points.map((p) => p.t_ns / 1e6);
    const perSecond = (p) => p.requests / hist.step_seconds;
    const errRatio = (p) => (p.requests > 0 ? p.errors / p.requests : null);
    const rateSeries = versions.length
      ? [{ name: 'all', values: points.map(perSecond) }, ...versions.map(([v, pts]) => ({ name: v, values: pts.map(perSecond) }))]
      : [{ name: 'requests/s', values: points.map(perSecond) }];
    const errSeries = versions.length
      ? [{ name: 'all', values: points.map(errRatio) }, ...versions.map(([v, pts]) => ({ name: v, values: pts.map(errRatio) }))]
      : [{ name: 'errors', values: points.map(errRatio) }];
    const describeSeries = (series, f) => (i) =>
      `${fmt.clockSeconds(timesMs[i])} UTC: ${series.map((sr) => `${sr.name} ${f(sr.values[i])}`).join(', ')}`;
    const rate = (v) => (isNum(v) ? `${v === 0 ? '0' : v.toFixed(v < 1 ? 2 : v < 10 ? 1 : 0)}/s` : '—');
    const totalReq = points.reduce((a, p) => a + p.requests, 0);
    const totalErr = points.reduce((a, p) => a + p.errors, 0);
    // Both charts get the same figures (a DOM node can sit in one place only).
    const figuresTable = () =>
      table(
        'Requests and errors by step (idle steps left out)',
        ['Time (UTC)', 'Requests', 'Requests/s', 'Errors', 'Error rate'],
        points.filter((p) => p.requests > 0).map((p) => [fmt.clockSeconds(p.t_ns / 1e6), fmt.num(p.requests), rate(perSecond(p)), fmt.num(p.errors), fmt.pct(errRatio(p), 2)]),
        { numeric: [1, 2, 3, 4] },
      );
    const out = [
      title,
      back,
      toggle,
      figures([
        ['Requests', h('span', { testid: 'route-requests', 'data-value': totalReq }, fmt.num(totalReq))],
        ['Errors', `${fmt.num(totalErr)} (${fmt.pct(totalReq ? totalErr / totalReq : null, 2)})`],
        ['Cluster', d.meta.cluster ?? '—'],
        ['Listener', d.meta.listener ?? '—'],
      ]),
      lineChart({
        id: 'rate',
        title: 'Request rate',
        width,
        timesMs,
        series: rateSeries,
        yFormat: rate,
        describe: describeSeries(rateSeries, rate),
        summary: `Request rate over the last ${d.window === '1d' ? 'day' : 'hour'}: ${fmt.num(totalReq)} requests, latest ${rate(perSecond(points[points.length - 1] ?? { requests: 0 }))}.`,
        details: figuresTable(),
      }),
      lineChart({
        id: 'errors',
        title: 'Error rate',
        width,
        timesMs,
        series: errSeries,
        yFormat: (v) => fmt.pct(v, v < 0.1 ? 2 : 1),
        describe: describeSeries(errSeries, (v) => fmt.pct(v, 2)),
        summary: `Error rate: ${fmt.num(totalErr)} errors of ${fmt.num(totalReq)} requests (${fmt.pct(totalReq ? totalErr / totalReq : null, 2)}).`,
        details: figuresTable(),
      }),
      latencyHeatmap({ id: 'latency', title: 'Latency (all versions)', width, points, rowsMs: hist.rows_ms ?? [] }),
    ];
    for (const [v, pts] of versions) {
      out.push(latencyHeatmap({ id: `latency-${v}`, title: `Latency: ${v}`, width, points: pts, rowsMs: hist.rows_ms ?? [] }));
    }
    return out;
  },
};

// ---------------------------------------------------------------- incidents

const incidentsPage = {
  title: 'Incidents',
  async load() {
    const [incidents, slos] = await Promise.all([fetchApi('/api/v1/incidents'), fetchApi('/api/v1/slos')]);
    return { incidents, slos };
  },
  render(d, route) {
    const list = d.incidents.incidents ?? [];
    const scopes = new Map((d.slos.slos ?? []).map((x) => [x.id, scopeName(x.scope)]));
    const width = cardWidth();
    const open = list.filter((i) => OPEN_STATES.has(i.state)).length;
    return [
      h('h1', { tabindex: '-1' }, 'Incidents'),
      h('p', { class: 'lede' }, `${list.length} recorded, ${open} open.`),
      section(
        'Time to detect, acknowledge and recover',
        h(
          'div',
          { class: 'cards' },
          distributionCard('mttd', 'Time to detect', 'From the start of the failures to the page.', d.incidents.mttd, list.map((i) => i.time_to_detect_seconds)),
          distributionCard(
            'mtta',
            'Time to acknowledge',
            'From the page to an operator’s acknowledgement.',
            d.incidents.mtta,
            list.map((i) => ackSeconds(i)),
            !('mtta' in d.incidents),
            'No acknowledged incident yet.',
          ),
          distributionCard('mttr', 'Time to recover', 'From the start of the failures to recovery.', d.incidents.mttr, list.map((i) => i.time_to_recover_seconds)),
        ),
      ),
      section('Incidents by day', incidentHeatmap(list, scopes, mainWidth())),
      section(
        'Incident timelines',
        list.length ? h('div', { class: 'cards' }, list.map((i) => incidentCard(i, scopes, width, route.incident))) : note('No incidents recorded.'),
      ),
    ];
  },
  focus(route) {
    if (!route.incident) return null;
    return document.getElementById(`incident-${route.incident}`);
  },
};

function scopeName(scope) {
  if (!scope) return 'all routes';
  if (scope.route) return `route ${scope.route}`;
  if (scope.cluster) return `cluster ${scope.cluster}`;
  if (scope.tier) return `${scope.tier} tier`;
  if (scope.tenant) return `tenant ${scope.tenant}`;
  return 'all routes';
}

/** When an operator acknowledged the incident, in whichever shape the API gives it. */
function ackTime(i) {
  const a = i.acknowledged;
  if (typeof a === 'string') return a;
  if (a && typeof a === 'object') return a.at ?? a.time ?? null;
  return i.acknowledged_at ?? null;
}

function ackSeconds(i) {
  if (isNum(i.time_to_acknowledge_seconds)) return i.time_to_acknowledge_seconds;
  const at = timeMs(ackTime(i));
  const detect = timeMs(i.detect);
  return at !== null && detect !== null ? (at - detect) / 1000 : null;
}

function distributionCard(key, title, what, summary, values, unsupported = false, empty = 'No closed incident yet.') {
  const vals = values.filter(isNum);
  const body = [];
  if (unsupported) {
    body.push(note('Not available from this gateway: incidents carry no acknowledgements.'));
  } else if (!summary) {
    body.push(note(empty));
  } else {
    body.push(
      figures([
        ['Median', h('span', { testid: `${key}-median`, 'data-value': summary.median_seconds }, fmt.dur(summary.median_seconds))],
        ['p90', fmt.dur(summary.p90_seconds)],
        ['Max', fmt.dur(summary.max_seconds)],
        ['Incidents', fmt.num(summary.count)],
      ]),
    );
    body.push(stripPlot(`${key}-dist`, title, vals, summary, 300));
  }
  return h('article', { class: 'card', testid: `dist-${key}` }, h('h3', null, title), h('p', { class: 'muted' }, what), body);
}

/** Each incident's value as a dot on one axis, with the median and p90 marked. */
function stripPlot(id, title, values, summary, width) {
  const height = 46;
  const m = { l: 8, r: 8 };
  const max = niceMax(Math.max(summary.max_seconds ?? 0, ...values));
  const x = (v) => m.l + (v / max) * (width - m.l - m.r);
  const body = [s('line', { class: 'axis', x1: m.l, x2: width - m.r, y1: 30, y2: 30 })];
  values.forEach((v, k) => body.push(s('circle', { class: 'dot', cx: x(v).toFixed(1), cy: 14 + ((k * 7) % 14), r: 3.5 }, s('title', null, fmt.dur(v)))));
  if (isNum(summary.median_seconds)) body.push(s('line', { class: 'stat-median', x1: x(summary.median_seconds), x2: x(summary.median_seconds), y1: 8, y2: 32 }, s('title', null, `median ${fmt.dur(summary.median_seconds)}`)));
  if (isNum(summary.p90_seconds)) body.push(s('line', { class: 'stat-p90', x1: x(summary.p90_seconds), x2: x(summary.p90_seconds), y1: 8, y2: 32 }, s('title', null, `p90 ${fmt.dur(summary.p90_seconds)}`)));
  body.push(s('text', { x: m.l, y: 44 }, '0'), s('text', { x: width - m.r, y: 44, 'text-anchor': 'end' }, fmt.dur(max)));
  const label = `${title}: median ${fmt.dur(summary.median_seconds)}, p90 ${fmt.dur(summary.p90_seconds)}, max ${fmt.dur(summary.max_seconds)} over ${summary.count} incidents.`;
  return h(
    'div',
    { class: 'chart-box', role: 'img', 'aria-label': label, tabindex: '0' },
    s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false' }, s('title', null, label), body),
    h('p', { class: 'legend', 'aria-hidden': 'true' }, '● one incident · solid line median · dashed line p90'),
  );
}

const DAY_MS = 86400000;
const HEATMAP_DAYS = 14;

/** Days × scopes, colour = share of the error budget the day's incidents spent. */
function incidentHeatmap(list, scopes, width) {
  const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
  const days = Array.from({ length: HEATMAP_DAYS }, (_, k) => today - (HEATMAP_DAYS - 1 - k) * DAY_MS);
  const cells = new Map();
  const rowNames = [];
  for (const i of list) {
    const start = timeMs(i.start);
    if (start === null || start < days[0]) continue;
    const row = scopes.get(i.slo) ?? `SLO ${i.slo}`;
    if (!rowNames.includes(row)) rowNames.push(row);
    const key = `${row}|${Math.floor(start / DAY_MS) * DAY_MS}`;
    const c = cells.get(key) ?? { spent: 0, count: 0, ids: [] };
    c.spent += i.budget_spent_ratio ?? 0;
    c.count += 1;
    c.ids.push(i.id);
    cells.set(key, c);
  }
  if (!rowNames.length) return note(`No incidents in the last ${HEATMAP_DAYS} days.`, 'incident-heatmap-empty');
  rowNames.sort();
  const m = { l: Math.min(160, 12 + 7 * Math.max(...rowNames.map((r) => r.length))), r: 8, t: 6, b: 22 };
  const rowH = 26;
  const pw = Math.max(100, width - m.l - m.r);
  const colW = pw / HEATMAP_DAYS;
  const height = m.t + rowH * rowNames.length + m.b;
  const maxSpent = Math.max(...[...cells.values()].map((c) => c.spent), 1e-9);
  const body = [];
  rowNames.forEach((row, r) => {
    body.push(s('text', { x: m.l - 6, y: m.t + r * rowH + rowH / 2 + 4, 'text-anchor': 'end' }, row.length > 22 ? `${row.slice(0, 21)}…` : row));
    days.forEach((day, k) => {
      const c = cells.get(`${row}|${day}`);
      const x = m.l + k * colW;
      const y = m.t + r * rowH;
      const label = c
        ? `${row}, ${fmt.day(day)}: ${c.count} incident${c.count > 1 ? 's' : ''} (#${c.ids.join(', #')}), ${fmt.pct(c.spent, 2)} of the error budget`
        : `${row}, ${fmt.day(day)}: no incident`;
      body.push(
        s(
          'rect',
          { x: x + 1, y: y + 1, width: Math.max(1, colW - 2), height: rowH - 2, rx: 2, class: c ? null : 'empty-cell', fill: c ? heat(c.spent / maxSpent) : null, 'data-spent': c ? c.spent : 0 },
          s('title', null, label),
        ),
      );
    });
  });
  const labelEvery = colW < 34 ? 2 : 1;
  days.forEach((day, k) => {
    if ((HEATMAP_DAYS - 1 - k) % labelEvery) return;
    const date = new Date(day).getUTCDate();
    body.push(s('text', { x: m.l + k * colW + colW / 2, y: height - 6, 'text-anchor': 'middle' }, k === 0 || date === 1 ? fmt.day(day) : String(date)));
  });
  const summary = `Incidents by day over the last ${HEATMAP_DAYS} days: ${[...cells.values()].reduce((a, c) => a + c.count, 0)} incidents on ${rowNames.length} ${rowNames.length > 1 ? 'scopes' : 'scope'}; the worst day spent ${fmt.pct(maxSpent, 2)} of an error budget.`;
  const rows = [];
  for (const row of rowNames) {
    for (const day of days) {
      const c = cells.get(`${row}|${day}`);
      if (c) rows.push([row, fmt.day(day), fmt.num(c.count), fmt.pct(c.spent, 2)]);
    }
  }
  return h(
    'figure',
    { class: 'chart', testid: 'incident-heatmap' },
    h('figcaption', null, `Budget spent by incidents, per day (UTC), last ${HEATMAP_DAYS} days`),
    heatLegend(fmt.pct(maxSpent, 2), 'budget spent'),
    h('div', { class: 'chart-box', role: 'img', 'aria-label': summary, tabindex: '0' }, s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false' }, body)),
    h('details', null, h('summary', null, 'Figures: incidents by day'), table('Days with incidents', ['Scope', 'Day (UTC)', 'Incidents', 'Budget spent'], rows, { numeric: [2, 3] })),
  );
}

/** An operator's note, a string or an object with its time and author, whichever the API gives. */
function noteText(n) {
  if (typeof n === 'string') return n;
  if (n && typeof n === 'object') {
    const at = n.at ?? n.time ?? null;
    const by = n.by ?? n.author ?? null;
    const text = n.text ?? n.note ?? n.body ?? JSON.stringify(n);
    return `${at ? `${fmt.time(at)} · ` : ''}${by ? `${by}: ` : ''}${text}`;
  }
  return String(n);
}

function incidentCard(i, scopes, width, focusId) {
  const start = timeMs(i.start);
  const ack = ackTime(i);
  const events = [
    { key: 'start', label: 'Failures began', at: i.start, shape: 'circle' },
    { key: 'detected', label: 'Detected (page fired)', at: i.detect, shape: 'triangle' },
    { key: 'acknowledged', label: 'Acknowledged', at: ack, shape: 'square' },
    { key: 'recovered', label: 'Recovered (SLI back)', at: i.recover, shape: 'diamond' },
    { key: 'resolved', label: 'Alert resolved', at: i.resolve, shape: 'bar' },
    { key: 'operator-resolved', label: 'Resolved by an operator', at: typeof i.resolved === 'string' ? i.resolved : i.resolved_at, shape: 'bar' },
  ].filter((e) => timeMs(e.at) !== null);
  const deploys = Array.isArray(i.deploys) ? i.deploys : [];
  const notes = Array.isArray(i.notes) ? i.notes : [];
  return h(
    'article',
    { class: 'card wide', id: `incident-${i.id}`, tabindex: '-1', testid: `incident-${i.id}`, 'aria-current': String(focusId) === String(i.id) ? 'true' : null },
    h('div', { class: 'card-head' }, h('h3', null, `#${i.id} ${i.slo}`), badge(i.state, null, `incident-${i.id}-state`)),
    h(
      'p',
      { class: 'kv' },
      h('span', null, `${i.severity} on ${scopes.get(i.slo) ?? 'a retired SLO'}`),
      h('span', null, `${fmt.num(i.bad_events)} bad events`),
      h('span', null, `${fmt.pct(i.budget_spent_ratio, 2)} of the budget`),
      h('span', null, `detected after ${fmt.dur(i.time_to_detect_seconds)}`),
      h('span', null, isNum(i.time_to_recover_seconds) ? `recovered after ${fmt.dur(i.time_to_recover_seconds)}` : 'not recovered yet'),
      i.runbook ? h('a', { href: i.runbook, rel: 'noreferrer noopener' }, 'Runbook') : null,
    ),
    incidentTimeline(i, events, deploys, width),
    h(
      'ol',
      { class: 'events' },
      events.map((e) => h('li', null, `${fmt.time(e.at)} · ${e.label}${start !== null && e.key !== 'start' ? ` (+${fmt.dur((timeMs(e.at) - start) / 1000)})` : ''}`)),
      deploys.map((dep) => h('li', null, `${fmt.time(dep.started)} · Deploy of route ${dep.route}: ${dep.from} → ${dep.to} (${String(dep.phase).replace(/_/g, ' ')}${dep.ended ? `, ended ${fmt.time(dep.ended)}` : ''})`)),
    ),
    notes.length ? [h('h4', { class: 'notes-title' }, 'Notes'), h('ul', { class: 'notes', testid: `incident-${i.id}-notes` }, notes.map((n) => h('li', null, noteText(n))))] : null,
  );
}

const MARKERS = {
  circle: (x, y) => s('circle', { class: 'marker', cx: x, cy: y, r: 6 }),
  triangle: (x, y) => s('path', { class: 'marker', d: `M${x},${y - 7}L${x + 7},${y + 6}L${x - 7},${y + 6}Z` }),
  square: (x, y) => s('rect', { class: 'marker', x: x - 5.5, y: y - 5.5, width: 11, height: 11 }),
  diamond: (x, y) => s('path', { class: 'marker', d: `M${x},${y - 7}L${x + 7},${y}L${x},${y + 7}L${x - 7},${y}Z` }),
  bar: (x, y) => s('rect', { class: 'marker', x: x - 2, y: y - 8, width: 4, height: 16 }),
};

/** Start, detection, acknowledgement, recovery and resolution on one time axis, with the alert and deploys. */
function incidentTimeline(i, events, deploys, width) {
  const now = Date.now();
  const times = events.map((e) => timeMs(e.at));
  for (const dep of deploys) {
    for (const t of [dep.started, dep.ended]) if (timeMs(t) !== null) times.push(timeMs(t));
  }
  const open = OPEN_STATES.has(i.state);
  if (open) times.push(now);
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (t1 - t0 < 10000) t1 = t0 + 10000;
  const padT = (t1 - t0) * 0.04;
  t0 -= padT;
  t1 += padT;
  const m = { l: 70, r: 12 };
  const height = 118;
  const pw = Math.max(60, width - m.l - m.r);
  const x = (t) => m.l + ((t - t0) / (t1 - t0)) * pw;
  const startMs = timeMs(i.start);
  const recoverMs = timeMs(i.recover) ?? (open ? now : null);
  const detectMs = timeMs(i.detect);
  const resolveMs = timeMs(i.resolve) ?? (open ? now : null);
  const body = [
    s('text', { x: 0, y: 20 }, 'Impact'),
    s('text', { x: 0, y: 44 }, 'Alert'),
    s('text', { x: 0, y: 68 }, 'Events'),
    s('line', { class: 'axis', x1: m.l, x2: m.l + pw, y1: 100, y2: 100 }),
  ];
  if (startMs !== null && recoverMs !== null) body.push(s('rect', { class: 'span-impact', x: x(startMs), y: 10, width: Math.max(2, x(recoverMs) - x(startMs)), height: 14 }, s('title', null, `Failures ${fmt.time(i.start)} to ${i.recover ? fmt.time(i.recover) : 'now'}`)));
  if (detectMs !== null && resolveMs !== null) body.push(s('rect', { class: 'span-alert', x: x(detectMs), y: 34, width: Math.max(2, x(resolveMs) - x(detectMs)), height: 14 }, s('title', null, `Page firing ${fmt.time(i.detect)} to ${i.resolve ? fmt.time(i.resolve) : 'now'}`)));
  for (const dep of deploys) {
    const ds = timeMs(dep.started);
    if (ds === null) continue;
    body.push(s('line', { class: 'deploy', x1: x(ds), x2: x(ds), y1: 4, y2: 100 }, s('title', null, `Deploy ${dep.route}: ${dep.from} → ${dep.to} started ${fmt.time(dep.started)}`)));
  }
  // Events close together go on separate lanes rather than on top of each other.
  const lanes = [];
  for (const e of events) {
    const ex = x(timeMs(e.at));
    let lane = lanes.findIndex((lastX) => ex - lastX >= 16);
    if (lane < 0) lane = lanes.length < 3 ? lanes.length : 0;
    lanes[lane] = ex;
    const mk = MARKERS[e.shape](Math.round(ex * 10) / 10, 64 + lane * 14);
    mk.appendChild(s('title', null, `${e.label}: ${fmt.time(e.at)}`));
    body.push(mk);
  }
  body.push(
    s('text', { x: m.l, y: 114 }, fmt.clockSeconds(t0)),
    s('text', { x: m.l + pw, y: 114, 'text-anchor': 'end' }, fmt.clockSeconds(t1)),
  );
  const label = `Timeline of incident ${i.id}: ${events.map((e) => `${e.label.toLowerCase()} ${fmt.time(e.at)}`).join(', ')}${deploys.length ? `; ${deploys.length} deploy${deploys.length > 1 ? 's' : ''} around it` : ''}.`;
  return h(
    'div',
    { class: 'chart' },
    h(
      'div',
      { class: 'legend', 'aria-hidden': 'true' },
      h('span', { class: 'key' }, s('svg', { width: 14, height: 14 }, MARKERS.circle(7, 7)), 'began'),
      h('span', { class: 'key' }, s('svg', { width: 16, height: 14 }, MARKERS.triangle(8, 7)), 'detected'),
      h('span', { class: 'key' }, s('svg', { width: 14, height: 14 }, MARKERS.square(7, 7)), 'acknowledged'),
      h('span', { class: 'key' }, s('svg', { width: 16, height: 16 }, MARKERS.diamond(8, 8)), 'recovered'),
      h('span', { class: 'key' }, s('svg', { width: 8, height: 16 }, MARKERS.bar(4, 8)), 'resolved'),
      h('span', { class: 'key' }, s('svg', { width: 14, height: 14 }, s('line', { class: 'deploy', x1: 7, x2: 7, y1: 0, y2: 14 })), 'deploy'),
    ),
    h('div', { class: 'chart-box', role: 'img', 'aria-label': label, tabindex: '0' }, s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false' }, body)),
  );
}

// ---------------------------------------------------------------- clusters

const clustersPage = {
  title: 'Clusters',
  async load() {
    const [clusters, capacity, metricsText] = await Promise.all([
      fetchApi('/api/v1/clusters'),
      fetchApi('/api/v1/capacity'),
      fetchApi('/metrics', { text: true }),
    ]);
    return { clusters, capacity, metrics: parseMetrics(metricsText) };
  },
  render(d) {
    const cap = d.capacity;
    const thresholds = `Capacity is a warning from ${fmt.pct(cap.warn_at, 0)} of a limit (dashed mark on the bars) and critical from ${fmt.pct(cap.critical_at, 0)} (solid mark).`;
    return [
      h('h1', { tabindex: '-1' }, 'Clusters'),
      h('p', { class: 'lede' }, thresholds),
      (d.clusters.clusters ?? []).map((c) => clusterSection(c, (cap.clusters ?? []).find((x) => x.name === c.name), cap, d.metrics)),
      rateLimitSection(cap),
    ];
  },
};

function capacityTicks(cap, limit = 1) {
  return [
    { at: cap.warn_at * limit, cls: 'threshold-warn' },
    { at: cap.critical_at * limit, cls: 'threshold-crit' },
  ];
}

function clusterSection(c, ccap, cap, metrics) {
  const m = (name) => sampleValue(metrics, name, { cluster: c.name });
  const limit = m('levee_cluster_concurrency_limit');
  const sheds = samples(metrics, 'levee_cluster_shed_total', { cluster: c.name }).filter((x) => x.value > 0);
  const refusals = samples(metrics, 'levee_errors_total', { cluster: c.name }).filter((x) => x.value > 0);
  const capByAddr = new Map((ccap?.endpoints ?? []).map((e) => [e.address, e]));
  const t = (k) => `cluster-${c.name}-${k}`;
  return h(
    'section',
    { class: 'card wide', 'aria-label': `Cluster ${c.name}`, testid: `cluster-${c.name}` },
    h('div', { class: 'card-head' }, h('h2', null, `Cluster ${c.name}`), badge(ccap?.status ?? 'unlimited', null, t('capacity'))),
    h(
      'p',
      { class: 'kv' },
      h('span', null, `Balancer: ${c.balancer ?? '—'}`),
      h('span', null, 'Panic mode: ', c.panic_mode ? badge('warning', 'on') : 'off'),
      h('span', null, 'Cluster breaker: ', c.circuit_breaker ? badge(c.circuit_breaker, c.circuit_breaker.replace(/_/g, ' ')) : 'none'),
    ),
    figures([
      ['Connections', fmt.num(c.bulkheads?.connections)],
      ['Requests in flight', c.bulkheads?.requests_in_flight === null ? 'not limited' : fmt.num(c.bulkheads?.requests_in_flight)],
      ['Waiting for a slot', fmt.num(c.bulkheads?.pending)],
      ['Retries in flight', fmt.num(c.bulkheads?.retries_in_flight)],
      ['Concurrency limit', limit === null ? 'none (no adaptive limit)' : h('span', { testid: t('limit') }, fmt.num(limit))],
      limit === null ? null : ['Admitted in flight', fmt.num(m('levee_cluster_admitted_in_flight'))],
      limit === null ? null : ['Queued', h('span', { testid: t('queued') }, fmt.num(m('levee_cluster_queued_requests')))],
      ['Shed by the queue', sheds.length ? sheds.map((x) => `${x.labels.reason} ${fmt.num(x.value)}`).join(', ') : 'none'],
      ['Refused by the gateway', refusals.length ? refusals.map((x) => `${x.labels.reason} ${fmt.num(x.value)}`).join(', ') : 'none'],
    ]),
    ccap && ccap.resources.length
      ? table(
          'Capacity in use',
          ['Resource', 'Used', 'Limit', 'Utilisation', 'Status'],
          ccap.resources.map((r) => [
            r.resource,
            fmt.num(r.used),
            fmt.num(r.limit),
            h('span', null, bar({ value: r.utilisation, cls: statusBarClass(r.status), ticks: capacityTicks(cap), label: `${r.resource}: ${fmt.pct(r.utilisation, 0)} of the limit` }), ` ${fmt.pct(r.utilisation, 0)}`),
            badge(r.status),
          ]),
          { numeric: [1, 2] },
        )
      : note('No capacity limit is set on this cluster (limits.max_requests, max_pending, max_connections or a concurrency limit).'),
    table(
      `Endpoints of ${c.name}`,
      ['Endpoint', 'Zone', 'Health', 'Breaker', 'Ejection', 'In flight', 'Share of limit', 'Latency (EWMA)', 'Idle conns', 'Weight'],
      (c.endpoints ?? []).map((e) => {
        const ec = capByAddr.get(e.address);
        return [
          h('span', { class: 'mono' }, e.configured ?? e.address),
          e.zone ?? '—',
          e.healthy ? badge('healthy') : badge('unhealthy'),
          e.circuit_breaker ? badge(e.circuit_breaker, e.circuit_breaker.replace(/_/g, ' ')) : '—',
          e.ejected ? badge('ejected', `ejected: ${e.ejection_cause ?? 'cause unknown'}`) : 'no',
          h('span', { testid: `endpoint-${e.address}-in-flight` }, fmt.num(e.in_flight)),
          ec && isNum(ec.utilisation)
            ? h('span', null, bar({ value: ec.utilisation, width: 80, cls: statusBarClass(ec.status), ticks: capacityTicks(cap), label: `${fmt.pct(ec.utilisation, 0)} of its share of ${fmt.num(ec.limit)}` }), ` ${fmt.pct(ec.utilisation, 0)}`)
            : 'no limit',
          fmt.ms(e.ewma_latency_seconds * 1000),
          fmt.num(e.idle_connections),
          fmt.num(e.weight),
        ];
      }),
      { numeric: [5, 7, 8, 9], testid: `endpoints-${c.name}` },
    ),
  );
}

function rateLimitSection(cap) {
  const limits = cap.rate_limits ?? [];
  if (!limits.length) return section('Rate limits', note('No route has a rate limit.'));
  return section(
    'Rate limits',
    table(
      'Rate limits in use',
      ['Route', 'Limit', 'Rate', 'Limit rate', 'Utilisation', 'Status'],
      limits.map((r) => [
        r.route,
        `${r.limit}${r.keyed ? ' (per key)' : ''}`,
        `${fmt.num(r.rate_per_second)}/s`,
        `${fmt.num(r.limit_per_second)}/s`,
        h('span', null, bar({ value: r.utilisation, cls: statusBarClass(r.status), ticks: capacityTicks(cap), label: `${fmt.pct(r.utilisation, 0)} ${r.keyed ? 'refused' : 'of the limit'}` }), ` ${fmt.pct(r.utilisation, 0)}`),
        badge(r.status),
      ]),
      { numeric: [2, 3] },
    ),
  );
}

// ---------------------------------------------------------------- rollouts

const rolloutsPage = {
  title: 'Rollouts and experiments',
  async load() {
    const [rollouts, faults, config] = await Promise.all([fetchApi('/api/v1/rollouts'), fetchApi('/api/v1/faults'), fetchApi('/api/v1/config')]);
    return { rollouts, faults, config };
  },
  render(d) {
    const list = d.rollouts.rollouts ?? [];
    return [
      h('h1', { tabindex: '-1' }, 'Rollouts and experiments'),
      section(
        'Rollouts',
        list.length
          ? list.map((r) => rolloutCard(r, cardWidth()))
          : note('No rollout has run. A rollout starts when a route with a rollout policy changes cluster in the config.', 'no-rollouts'),
      ),
      changesSection({ rollouts: [], splits: d.rollouts.splits ?? [] }, d.faults.faults ?? [], d.config, 'Splits, experiments and faults', 'No split, experiment or fault is active.'),
    ];
  },
};

/** Canary progress: the weight now against each step's weight. */
function progressBar(r, width) {
  const steps = r.steps_percent ?? [];
  const height = 40;
  const m = { l: 4, r: 30 };
  const pw = width - m.l - m.r;
  const x = (p) => m.l + (clamp(p, 0, 100) / 100) * pw;
  const body = [
    s('rect', { class: 'bar-bg', x: m.l, y: 8, width: pw, height: 14, rx: 2 }),
    s('rect', { class: 'bar', x: m.l, y: 8, width: Math.max(0, x(r.weight_percent) - m.l), height: 14, rx: 2 }),
  ];
  steps.forEach((p, k) => {
    body.push(s('line', { class: k === r.step ? 'threshold' : 'threshold-warn', x1: x(p), x2: x(p), y1: 4, y2: 26 }, s('title', null, `step ${k + 1}: ${p}%`)));
    body.push(s('text', { x: x(p), y: 38, 'text-anchor': 'middle' }, `${p}%`));
  });
  const label = `Canary weight ${fmt.num(r.weight_percent)}%${steps.length ? `, step ${r.step + 1} of ${steps.length} (${steps.join('%, ')}%)` : ''}.`;
  return h('div', { class: 'chart-box', role: 'img', 'aria-label': label, tabindex: '0' }, s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false' }, body));
}

function checkRows(checks) {
  return checks.map((c) => {
    // The bar runs from 0; a value at or below 0 leaves it empty.
    const scale = Math.max(c.value, c.threshold, 1e-9) * 1.25;
    return [
      c.name.replace(/_/g, ' '),
      h('span', null, bar({ value: Math.max(0, c.value), max: scale, width: 110, cls: c.outcome === 'failed' ? 'bar-bad' : 'bar', ticks: [{ at: Math.max(0, c.threshold), cls: 'threshold' }], label: `${c.name}: ${num4(c.value)} against a threshold of ${num4(c.threshold)}` }), ` ${num4(c.value)}`),
      num4(c.threshold),
      isNum(c.statistic) ? num4(c.statistic) : '—',
      badge(c.outcome),
    ];
  });
}

const num4 = (v) => {
  if (!isNum(v)) return '—';
  const text = Math.abs(v) >= 1000 || Number.isInteger(v) ? fmt.num(v) : v.toPrecision(4).replace(/\.?0+$/, '');
  return text.replace('-', '−');
};

function rolloutCard(r, width) {
  const traffic = r.traffic ?? {};
  const versions = ['stable', 'baseline', 'canary'].filter((v) => traffic[v]);
  const decisions = [...(r.decisions ?? [])].reverse();
  return h(
    'article',
    { class: 'card wide', testid: `rollout-${r.route}` },
    h('div', { class: 'card-head' }, h('h3', null, `Route ${r.route}: ${r.stable} → ${r.canary ?? '—'}`), badge(r.phase, null, `rollout-${r.route}-phase`)),
    h(
      'p',
      { class: 'kv' },
      h('span', null, `Strategy: ${r.strategy}`),
      r.started ? h('span', null, `started ${fmt.time(r.started)}`) : null,
      h('span', null, `updated ${fmt.time(r.updated)}`),
      r.paused_by ? h('span', null, `paused by ${r.paused_by}`) : null,
      r.serving ? h('span', null, `serving canary ${fmt.num(r.serving.canary_percent)}%, baseline ${fmt.num(r.serving.baseline_percent)}%`) : null,
      h('span', null, `budget spent ${fmt.pct(r.budget_spent_ratio, 2)}`),
    ),
    r.reason ? h('p', { class: 'muted' }, r.reason) : null,
    progressBar(r, width),
    versions.length
      ? table(
          'Traffic by version',
          ['Version', 'Requests', 'Bad', 'p50', 'p99'],
          versions.map((v) => [v, fmt.num(traffic[v].requests), fmt.num(traffic[v].bad), fmt.ms(traffic[v].p50_ms), fmt.ms(traffic[v].p99_ms)]),
          { numeric: [1, 2, 3, 4] },
        )
      : null,
    (r.analysis ?? []).length
      ? table('Analysis: each value against its threshold', ['Check', 'Value', 'Threshold', 'Statistic', 'Outcome'], checkRows(r.analysis), { numeric: [2, 3], testid: `rollout-${r.route}-analysis` })
      : note('No analysis yet.'),
    table(
      `Decision log, newest first (${decisions.length})`,
      ['When', 'Step', 'Weight', 'Decision', 'Why'],
      decisions.map((dcs) => [fmt.time(dcs.at), String(dcs.step + 1), `${fmt.num(dcs.weight_percent)}%`, badge(decisionState(dcs.outcome), dcs.outcome), dcs.reason]),
      { numeric: [1, 2], testid: `rollout-${r.route}-decisions` },
    ),
  );
}

function decisionState(outcome) {
  return { begin: 'progressing', start: 'progressing', advance: 'progressing', resume: 'progressing', hold: 'waiting', pause: 'paused', switch: 'switched', promote: 'promoted', rollback: 'rolled_back', abort: 'rolled_back', undo: 'rolled_back' }[outcome] ?? 'idle';
}

// ---------------------------------------------------------------- app

const PAGES = { overview, routes: routesPage, route: routePage, incidents: incidentsPage, clusters: clustersPage, rollouts: rolloutsPage };

const app = {
  route: null,
  generation: 0,
  timer: null,
  running: false,
  leaving: false,
  history: undefined,
  focusPending: false,
  lastError: null,
};

function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  switch (parts[0]) {
    case 'routes':
      return parts[1] ? { page: 'route', route: parts[1], window: params.get('window') ?? '1h', nav: 'routes' } : { page: 'routes', nav: 'routes' };
    case 'incidents':
      return { page: 'incidents', incident: parts[1] ?? null, nav: 'incidents' };
    case 'clusters':
    case 'rollouts':
      return { page: parts[0], nav: parts[0] };
    default:
      return { page: 'overview', nav: 'overview' };
  }
}

function markNav(route) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.getAttribute('data-nav') === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function errorBanner(err) {
  return h(
    'p',
    { class: 'notice', role: 'status', testid: 'api-error' },
    `Could not refresh: ${err.message}. Showing the last figures; trying again every ${POLL_MS / 1000} s.`,
  );
}

async function refresh() {
  const route = app.route;
  const gen = app.generation;
  const page = PAGES[route.page];
  let data;
  try {
    data = await page.load(route);
  } catch (err) {
    if (gen !== app.generation || app.leaving) return;
    const main = document.getElementById('main');
    const old = main.querySelector('[data-testid="api-error"]');
    const banner = errorBanner(err);
    if (old) morph(old, banner);
    else main.prepend(banner);
    return;
  }
  if (gen !== app.generation || app.leaving) return;
  charts.clear();
  let view;
  try {
    view = h('div', { class: 'page', 'data-page': route.page }, page.render(data, route));
  } catch (err) {
    // A bug, not a state of the gateway: say so on the page and in the console.
    console.error('dashboard render failed', err);
    view = h('div', { class: 'page' }, h('h1', null, page.title), h('p', { class: 'notice', testid: 'render-error' }, `This page failed to render: ${err.message}`));
  }
  const main = document.getElementById('main');
  const current = main.firstElementChild;
  if (current && current.getAttribute('data-page') === route.page && !app.focusPending) morph(current, view);
  else main.replaceChildren(view);
  restoreCursors();
  document.title = `${route.page === 'route' ? `Route ${route.route}` : page.title} · Levee`;
  const updated = document.getElementById('updated');
  updated.textContent = `Updated ${fmt.clockSeconds(Date.now())} UTC.`;
  updated.setAttribute('data-value', String(Date.now()));
  if (app.focusPending) {
    app.focusPending = false;
    const target = page.focus?.(route) ?? main.querySelector('h1');
    target?.focus();
    target?.scrollIntoView?.({ block: 'start' });
  }
}

async function tick() {
  clearTimeout(app.timer);
  app.timer = null;
  if (document.hidden || app.running || app.leaving) return;
  app.running = true;
  try {
    await refresh();
  } finally {
    app.running = false;
  }
  // Paused while hidden: `visibilitychange` starts it again.
  if (!document.hidden && !app.leaving) app.timer = setTimeout(tick, POLL_MS);
}

function navigate(moveFocus) {
  app.route = parseHash();
  app.generation += 1;
  if (app.route.page === 'routes' || app.route.page === 'route') app.history = undefined;
  cursors.clear();
  app.focusPending = moveFocus;
  markNav(app.route);
  if (!app.running) tick();
  else {
    // A refresh of the previous page is in flight; go on when it ends.
    const waitThenTick = () => (app.running ? setTimeout(waitThenTick, 20) : tick());
    waitThenTick();
  }
}

window.addEventListener('hashchange', () => navigate(true));
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) tick();
});

let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (!app.running) tick();
  }, 150);
});

// The skip link moves focus without touching the hash the pages live in.
document.addEventListener('click', (e) => {
  const link = e.target instanceof Element ? e.target.closest('.skip-link') : null;
  if (!link) return;
  e.preventDefault();
  const main = document.getElementById('main');
  main.focus();
  main.scrollIntoView({ block: 'start' });
});

navigate(false);

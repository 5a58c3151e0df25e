/* gpu-mnist serve: the Training panel of a live run: the /api/events stream
 * (run, report, done), progress text, the stop button, refreshing the
 * weights as they change, and the loss and accuracy curves.
 */
'use strict';

// ---------- the Training panel ----------

function connectEvents() {
  const source = new EventSource('/api/events');
  const on = (name, handler) => source.addEventListener(name, (e) => {
    let data = null;
    try { data = JSON.parse(e.data); } catch (err) { return; }
    if (data) handler(data);
  });
  source.addEventListener('open', () => {
    state.reports = []; // the server replays the whole history now
    window.gpuMnist.reports = 0;
    scheduleCurves();
  });
  source.addEventListener('error', () => {
    if (state.done) return;
    const closed = source.readyState === EventSource.CLOSED;
    $('run-status').textContent = closed ? 'lost the connection to the training run' : 'connection lost, reconnecting…';
  });
  on('run', onRun);
  on('report', onReport);
  on('done', onDone);
}

function onRun(run) {
  state.run = run;
  $('run-info').textContent = `model ${run.model} \u00b7 backend ${run.backend} \u00b7 ${run.steps} iterations \u00b7 batches ${run.batches}`;
  if (!state.done && $('run-status').textContent.startsWith('connection')) $('run-status').textContent = '';
}

function onReport(r) {
  if (typeof r.iteration !== 'number') return;
  const list = state.reports;
  const last = list[list.length - 1];
  if (!last || last.iteration < r.iteration) list.push(r);
  else {
    const i = list.findIndex((x) => x.iteration >= r.iteration);
    if (list[i].iteration === r.iteration) list[i] = r; else list.splice(i, 0, r);
  }
  window.gpuMnist.reports = list.length;
  if (r === list[list.length - 1]) showLatest(r);
  scheduleCurves();
  if (typeof r.version === 'number') {
    state.latestVersion = Math.max(state.latestVersion, r.version);
    if (state.weights && r.version > state.weights.version) requestWeights();
  }
}

function showLatest(r) {
  const steps = state.run && state.run.steps;
  let progress = `iteration ${r.iteration}` + (steps ? ` of ${steps}` : '');
  if (r.epoch !== null && r.epoch !== undefined) progress += ` (epoch ${r.epoch})`;
  $('progress').textContent = progress;
  const ips = r.iterations_per_second;
  $('speed').textContent = `${typeof ips === 'number' ? ips.toFixed(1) : '?'} iterations/s \u00b7 ${Number(r.seconds || 0).toFixed(1)} s`;
  const parts = [];
  for (const key of ['train', 'validation', 'test']) {
    if (r[key]) parts.push(`${key} loss ${Number(r[key].loss).toFixed(4)}, accuracy ${percent(Number(r[key].accuracy), 2)}`);
  }
  $('latest').textContent = parts.join(' \u00b7 ');
}

function onDone(d) {
  $('run-status').textContent = d.message || (d.stopped ? 'training stopped' : 'training done');
  $('stop').disabled = true;
  if (state.done) return; // a replay after a reconnection
  state.done = true;
  clearTimeout(weightsRefresh.timer); // the final weights now, not after the usual wait
  weightsRefresh.timer = null;
  requestWeights();
  loadSummary();
}

async function stopRun() {
  $('stop').disabled = true;
  try {
    await api('/api/stop', { method: 'POST' });
    if (!state.done) $('run-status').textContent = 'stopping…';
  } catch (err) {
    $('run-status').textContent = err.message;
    if (!state.done) $('stop').disabled = false;
  }
}

/* While a run trains on the same machine, every millisecond the page spends competing for a core
 * stalls a training step, so the page refetches and redraws the weights at most once per second
 * and never spends more than WEIGHTS_SHARE of the time doing so; the curves are redrawn at most
 * every CURVES_GAP ms. */
const WEIGHTS_SHARE = 0.01;
const weightsRefresh = { last: -Infinity, cost: 0, timer: null, busy: false };

/** Refetch the weights soon (see WEIGHTS_SHARE). */
function requestWeights() {
  if (weightsRefresh.timer !== null || weightsRefresh.busy) return;
  const gap = Math.max(1000, weightsRefresh.cost / WEIGHTS_SHARE);
  const wait = state.done ? 0 : Math.max(0, weightsRefresh.last + gap - performance.now());
  weightsRefresh.timer = setTimeout(refreshWeights, wait);
}

async function refreshWeights() {
  weightsRefresh.timer = null;
  weightsRefresh.busy = true;
  const started = performance.now();
  const before = state.weights ? state.weights.version : null;
  try {
    await loadWeights();
    if (state.weights.version !== before) reanalyse();
  } catch (err) {
    showMessage(`could not refresh the weights: ${err.message}`);
  }
  weightsRefresh.last = performance.now();
  weightsRefresh.cost = weightsRefresh.last - started;
  weightsRefresh.busy = false;
  if (state.weights && state.latestVersion > state.weights.version) requestWeights();
}

// ---------- charts ----------

const CURVES_GAP = 500;
let curvesQueued = false;
let curvesDrawn = -Infinity;
function scheduleCurves() {
  if (curvesQueued) return;
  curvesQueued = true;
  const wait = state.done ? 0 : Math.max(0, curvesDrawn + CURVES_GAP - performance.now());
  setTimeout(() => requestAnimationFrame(() => {
    curvesQueued = false;
    curvesDrawn = performance.now();
    drawCurves();
  }), wait);
}

function drawCurves() {
  const canvas = $('curve');
  if ($('training-panel').hidden) return;
  const width = canvas.clientWidth || 800;
  const stacked = width < 560; // a phone: one chart above the other
  const height = stacked ? 440 : 240;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const reports = state.reports;
  const lastIteration = reports.length ? reports[reports.length - 1].iteration : 0;
  const xMax = Math.max(1, lastIteration, (state.run && state.run.steps) || 0);
  const series = (key, field, colour) => ({ name: key, colour,
    points: reports.filter((r) => r[key] && Number.isFinite(r[key][field])).map((r) => [r.iteration, r[key][field]]) });
  const loss = [series('train', 'loss', '#2563eb')];
  const maxLoss = Math.max(0.1, ...loss[0].points.map((p) => p[1]));
  const half = stacked ? { w: width, h: height / 2 } : { w: width / 2, h: height };
  chart(ctx, { x: 0, y: 0, ...half }, 'loss', loss, xMax, [0, maxLoss], (v) => v.toFixed(2));
  const acc = [series('train', 'accuracy', '#2563eb'), series('validation', 'accuracy', '#d97706'), series('test', 'accuracy', '#16a34a')];
  const minAcc = Math.min(0.9, ...acc.flatMap((s) => s.points.map((p) => p[1])));
  chart(ctx, { x: stacked ? 0 : width / 2, y: stacked ? height / 2 : 0, ...half }, 'accuracy', acc, xMax,
    [Math.max(0, Math.floor(minAcc * 10) / 10), 1], (v) => `${Math.round(v * 100)}%`);
}

function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / count || 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  const ticks = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-6; v += step) ticks.push(v);
  return ticks;
}

function chart(ctx, box, title, series, xMax, [yLo, yHi], yLabel) {
  const plot = { x: box.x + 52, y: box.y + 26, w: box.w - 68, h: box.h - 56 };
  const X = (v) => plot.x + (v / xMax) * plot.w;
  const Y = (v) => plot.y + plot.h - ((v - yLo) / (yHi - yLo)) * plot.h;
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillStyle = '#111827';
  ctx.textAlign = 'left';
  ctx.fillText(title, plot.x, box.y + 14);
  ctx.strokeStyle = '#e5e7eb';
  ctx.fillStyle = '#6b7280';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  for (const v of niceTicks(yLo, yHi, 4)) {
    ctx.beginPath(); ctx.moveTo(plot.x, Y(v)); ctx.lineTo(plot.x + plot.w, Y(v)); ctx.stroke();
    ctx.fillText(yLabel(v), plot.x - 6, Y(v) + 4);
  }
  ctx.textAlign = 'center';
  for (const v of niceTicks(0, xMax, 5)) ctx.fillText(String(Math.round(v)), X(v), plot.y + plot.h + 16);
  ctx.fillText('iteration', plot.x + plot.w / 2, plot.y + plot.h + 30);
  ctx.strokeStyle = '#9ca3af';
  ctx.strokeRect(plot.x, plot.y, plot.w, plot.h);
  let legendX = plot.x + plot.w;
  ctx.textAlign = 'right';
  for (const s of series.filter((s) => s.points.length).reverse()) {
    ctx.strokeStyle = ctx.fillStyle = s.colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    if (s.points.length === 1) ctx.fillRect(X(s.points[0][0]) - 2, Y(s.points[0][1]) - 2, 4, 4);
    ctx.fillText(s.name, legendX, box.y + 14);
    legendX -= ctx.measureText(s.name).width + 24;
    ctx.fillRect(legendX + 6, box.y + 9, 12, 3);
  }
}

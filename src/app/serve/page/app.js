/* gpu-mnist serve: the browser page.
 *
 * Shows what the network learns: a drawing pad analysed live as you draw (the
 * prediction, the 28x28 image the network reads, the class probabilities and
 * the hidden layers' activations), the model (sizes, metadata, first-layer
 * weight tiles), the test set (accuracy, confusion matrix, confident mistakes)
 * and, while a training run is live, its loss and accuracy curves.
 *
 * API calls (same origin): GET /api/model, GET /api/weights, POST /api/analyse
 * (PNG or uploaded image as the body), GET /api/test/random, GET /api/test/{i},
 * GET /api/test/summary, GET /api/events (Server-Sent Events: run, report,
 * done) and POST /api/stop.
 */
'use strict';

const $ = (id) => document.getElementById(id);
const SIZE = 280; // the pad's backing store, always 280x280
const BLUE = [33, 102, 172];
const RED = [178, 24, 43];
const INK = [30, 41, 120];
const MINUS = '\u2212';

window.gpuMnist = { ready: false, analyses: 0, lastLatencyMs: null, reports: 0, version: null };

const state = {
  model: null,
  weights: null, // /api/weights plus `data`, the decoded Float32Array
  analysis: null, // the Analysis shown in the Answer panel
  source: null, // {kind: 'pad'} | {kind: 'test', index} | {kind: 'upload', file}
  sort: 'contribution',
  pinnedUnit: null,
  tiles: null, // layout and base image of the tile canvas
  summary: null,
  filter: null, // {label, prediction}: the confusion cell picked
  run: null,
  reports: [],
  latestVersion: -1,
  done: false,
};

// ---------- helpers ----------

async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error(`server unreachable (${url})`);
  }
  let body = null;
  try { body = await response.json(); } catch (err) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `${url}: HTTP ${response.status}`);
  if (body === null) throw new Error(`${url}: the answer is not JSON`);
  return body;
}

function showMessage(text) {
  $('message').textContent = text || '';
  $('message').hidden = !text;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const className = (i) => (state.model && state.model.classes[i]) || String(i);
const percent = (p, digits = 1) => `${(100 * p).toFixed(digits)}%`;
const signed = (v) => (v < 0 ? MINUS : '+') + Math.abs(v).toFixed(3);
const range = (n) => Array.from({ length: n }, (_, i) => i);
const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * t));

/** Diverging colour map: -1 blue, 0 white, +1 red. */
function diverging(t) {
  t = Math.max(-1, Math.min(1, t || 0));
  return t < 0 ? mix([255, 255, 255], BLUE, -t) : mix([255, 255, 255], RED, t);
}

/** Grey levels (0 = black) as white ink on black, into a 28x28 canvas. */
function drawGrey(canvas, pixels, side = 28) {
  canvas.width = side;
  canvas.height = side;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(side, side);
  for (let i = 0; i < side * side; i++) {
    const g = pixels[i] | 0;
    img.data.set([g, g, g, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}

// ---------- the drawing pad ----------

const pad = { ctx: null, drawing: false, last: null, mid: null, version: 0, sentVersion: -1,
  hasInk: false, inFlight: 0, upAt: null, upPending: false };

function initPad() {
  const canvas = $('pad');
  canvas.width = SIZE;
  canvas.height = SIZE;
  pad.ctx = canvas.getContext('2d');
  clearPad();
  canvas.addEventListener('pointerdown', onPointerDown);
  canvas.addEventListener('pointermove', onPointerMove);
  canvas.addEventListener('pointerup', onPointerUp);
  canvas.addEventListener('pointercancel', onPointerUp);
}

function clearPad() {
  const ctx = pad.ctx;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, SIZE, SIZE);
  ctx.strokeStyle = ctx.fillStyle = '#111';
  ctx.lineWidth = 18;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  pad.hasInk = false;
  pad.version++;
}

function padPoint(event) {
  const canvas = $('pad');
  const rect = canvas.getBoundingClientRect();
  return {
    x: (event.clientX - rect.left - canvas.clientLeft) * SIZE / canvas.clientWidth,
    y: (event.clientY - rect.top - canvas.clientTop) * SIZE / canvas.clientHeight,
  };
}

function onPointerDown(event) {
  if (event.pointerType === 'mouse' && event.button !== 0) return;
  event.preventDefault();
  try { event.target.setPointerCapture(event.pointerId); } catch (err) { /* synthetic */ }
  if (!state.source || state.source.kind !== 'pad') {
    state.source = { kind: 'pad' };
    requests.shown = requests.seq; // drop answers still on their way for something else
  }
  const p = padPoint(event);
  pad.drawing = true;
  pad.last = pad.mid = p;
  pad.ctx.beginPath();
  pad.ctx.arc(p.x, p.y, pad.ctx.lineWidth / 2, 0, 2 * Math.PI);
  pad.ctx.fill();
  markInk();
}

function onPointerMove(event) {
  if (!pad.drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) strokeTo(padPoint(e));
  markInk();
  if (pad.inFlight === 0) sendPad();
}

function onPointerUp(event) {
  if (!pad.drawing) return;
  strokeTo(padPoint(event));
  pad.ctx.beginPath();
  pad.ctx.moveTo(pad.mid.x, pad.mid.y);
  pad.ctx.lineTo(pad.last.x, pad.last.y);
  pad.ctx.stroke();
  pad.drawing = false;
  markInk();
  pad.upAt = performance.now();
  pad.upPending = true;
  sendPad();
}

/** Smooth line: a quadratic curve through the midpoints of the samples. */
function strokeTo(p) {
  const { last, mid, ctx } = pad;
  if (Math.hypot(p.x - last.x, p.y - last.y) < 0.5) return;
  const next = { x: (last.x + p.x) / 2, y: (last.y + p.y) / 2 };
  ctx.beginPath();
  ctx.moveTo(mid.x, mid.y);
  ctx.quadraticCurveTo(last.x, last.y, next.x, next.y);
  ctx.stroke();
  pad.last = p;
  pad.mid = next;
}

function markInk() {
  pad.hasInk = true;
  pad.version++;
}

// ---------- analyses ----------

const requests = { seq: 0, shown: 0 }; // answers older than the one shown are dropped

function sendPad() {
  if (!pad.hasInk) return;
  const seq = ++requests.seq;
  const sentAt = performance.now();
  pad.sentVersion = pad.version;
  pad.inFlight++;
  const answer = api('/api/analyse', { method: 'POST', body: padPng() });
  showAnswer(seq, sentAt, answer, true).finally(() => {
    pad.inFlight--;
    const isPad = state.source && state.source.kind === 'pad';
    if (pad.inFlight === 0 && isPad && pad.version !== pad.sentVersion) sendPad();
  });
}

/** The pad as a PNG file. toDataURL encodes at once, where toBlob may wait for an idle moment. */
function padPng() {
  const base64 = $('pad').toDataURL('image/png').split(',')[1];
  return new Blob([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], { type: 'image/png' });
}

function analyseTest(url) {
  const seq = ++requests.seq;
  return showAnswer(seq, performance.now(), api(url), false);
}

function analyseFile(file) {
  const seq = ++requests.seq;
  return showAnswer(seq, performance.now(), api('/api/analyse', { method: 'POST', body: file }), false);
}

async function showAnswer(seq, sentAt, answer, fromPad) {
  let analysis = null;
  let error = null;
  try { analysis = await answer; } catch (err) { error = err; }
  if (seq <= requests.shown) return;
  requests.shown = seq;
  try {
    if (error) renderError(error.message);
    else renderAnalysis(analysis);
  } catch (err) {
    renderError(`could not show the answer: ${err.message}`);
  }
  if (fromPad && pad.upPending && sentAt >= pad.upAt) {
    pad.upPending = false;
    window.gpuMnist.lastLatencyMs = performance.now() - pad.upAt;
    $('timing').textContent = `answered ${Math.round(window.gpuMnist.lastLatencyMs)} ms after the last stroke`;
  }
}

/** Analyse again whatever is shown, e.g. after the weights changed. */
function reanalyse() {
  const source = state.source;
  if (!source) return;
  if (source.kind === 'pad' && pad.hasInk) sendPad();
  if (source.kind === 'test' && source.index != null) analyseTest(`/api/test/${source.index}`);
  if (source.kind === 'upload') analyseFile(source.file);
}

function showTest(url) {
  clearPad();
  state.source = { kind: 'test', index: null };
  requests.shown = requests.seq; // drop answers still on their way for the pad
  $('timing').textContent = '';
  return analyseTest(url);
}

// ---------- the Answer panel ----------

function renderAnalysis(a) {
  state.analysis = a;
  if (state.source && state.source.kind === 'test' && a.index != null) state.source.index = a.index;
  let text = `${a.class} \u2014 ${percent(a.probabilities[a.prediction])}`;
  if (a.label !== null && a.label !== undefined) text += ` (label ${className(a.label)})`;
  $('prediction').textContent = text;
  $('prediction').classList.remove('idle');
  $('prediction').classList.toggle('wrong', a.label !== null && a.label !== undefined && a.label !== a.prediction);
  $('answer-panel').classList.remove('stale', 'failed');
  drawGrey($('seen'), a.image);
  renderBars(a.probabilities, a.prediction);
  renderActivations(a.layers || []);
  drawTileOverlay();
  window.gpuMnist.analyses++;
}

function renderError(message) {
  const text = /^\d/.test(message) ? `error: ${message}` : message;
  $('prediction').textContent = text;
  $('prediction').classList.remove('idle', 'wrong');
  $('answer-panel').classList.add('stale', 'failed');
}

function initBars() {
  const bars = $('bars');
  bars.textContent = '';
  state.model.classes.forEach((name) => {
    const row = el('div', 'bar');
    row.append(el('span', 'name', name), el('span', 'track'), el('span', 'value', ''));
    row.children[1].append(el('span', 'fill'));
    bars.append(row);
  });
}

function renderBars(probabilities, winner) {
  [...$('bars').children].forEach((row, i) => {
    const p = probabilities[i] || 0;
    row.classList.toggle('win', i === winner);
    row.querySelector('.fill').style.width = percent(p);
    row.querySelector('.value').textContent = percent(p);
  });
}

/** Colour of one activation: sequential for relu/sigmoid, diverging for tanh. */
function activationColour(v, max) {
  const act = state.model.activation;
  if (act === 'tanh') return diverging(v);
  const t = act === 'sigmoid' ? v : (max > 0 ? v / max : 0);
  return mix([236, 240, 245], INK, Math.max(0, Math.min(1, t)));
}

function renderActivations(layers) {
  const box = $('activations');
  if (!layers.length) {
    box.textContent = 'This model has no hidden layer.';
    return;
  }
  if (box.children.length !== layers.length || !box.querySelector('canvas')) {
    box.textContent = '';
    layers.forEach(() => {
      const block = el('div', 'layer');
      block.append(el('div', 'layer-label'), el('canvas'));
      block.lastChild.addEventListener('mousemove', onActivationHover);
      box.append(block);
    });
  }
  layers.forEach((values, l) => drawLayer(box.children[l], values, l));
}

function drawLayer(block, values, l) {
  const pitch = 10;
  const cols = Math.max(1, Math.min(values.length, Math.floor(block.parentElement.clientWidth / pitch)));
  const canvas = block.querySelector('canvas');
  canvas.width = cols * pitch;
  canvas.height = Math.ceil(values.length / cols) * pitch;
  canvas.dataset.cols = cols;
  canvas.dataset.layer = l;
  const ctx = canvas.getContext('2d');
  const max = Math.max(0, ...values);
  values.forEach((v, i) => {
    ctx.fillStyle = `rgb(${activationColour(v, max).join(',')})`;
    ctx.fillRect((i % cols) * pitch, Math.floor(i / cols) * pitch, pitch - 1, pitch - 1);
  });
  const extra = state.model.activation === 'relu' ? ` \u00b7 ${state.model.activation}, darkest = ${max.toFixed(2)}` : '';
  block.firstChild.textContent = `hidden layer ${l + 1} (${values.length} units)${extra}`;
}

function onActivationHover(event) {
  const canvas = event.target;
  const l = Number(canvas.dataset.layer);
  const i = Math.floor(event.offsetY / 10) * Number(canvas.dataset.cols) + Math.floor(event.offsetX / 10);
  const values = state.analysis && state.analysis.layers[l];
  if (values && i < values.length) canvas.title = `unit ${i}: ${values[i].toFixed(3)}`;
}

// ---------- the Model panel ----------

function renderModel() {
  const m = state.model;
  const facts = [
    ['layers', m.widths.join(' \u2192 ')],
    ['activation', m.activation],
    ['bias', m.bias ? 'yes' : 'no'],
    ['parameters', Number(m.parameters).toLocaleString('en-US')],
    ['file', m.name],
    ['version', String(m.version)],
  ];
  const dl = $('model-facts');
  dl.textContent = '';
  for (const [key, value] of facts) dl.append(el('dt', '', key), el('dd', key === 'version' ? 'version' : '', value));
  const made = $('made');
  made.textContent = '';
  const entries = Object.entries(m.made || {});
  if (!entries.length) made.append(el('caption', 'small', 'no metadata in the file'));
  for (const [key, value] of entries) {
    const row = el('tr');
    row.append(el('th', '', key), el('td', '', String(value)));
    made.append(row);
  }
}

function decodeF32(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer, 0, bytes.length >> 2);
}

async function loadWeights() {
  const w = await api('/api/weights');
  w.data = decodeF32(w.tiles || '');
  if (w.data.length < w.units * w.inputs) throw new Error('the weights are shorter than units × inputs');
  if (!(w.scale > 0)) w.scale = w.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
  state.weights = w;
  window.gpuMnist.version = w.version;
  const version = document.querySelector('#model-facts dd.version');
  if (version) version.textContent = String(w.version);
  drawColourBar(w.scale);
  drawTiles();
}

function drawColourBar(scale) {
  const canvas = $('colorbar');
  const ctx = canvas.getContext('2d');
  const gradient = ctx.createLinearGradient(0, 0, canvas.width, 0);
  gradient.addColorStop(0, `rgb(${BLUE})`);
  gradient.addColorStop(0.5, '#fff');
  gradient.addColorStop(1, `rgb(${RED})`);
  ctx.fillStyle = gradient;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  $('scale').textContent = `blue ${MINUS}${scale.toFixed(3)} \u00b7 white 0 \u00b7 red +${scale.toFixed(3)}`;
}

function tileOrder() {
  const w = state.weights;
  const ok = state.sort === 'contribution' && Array.isArray(w.order) && w.order.length === w.units;
  return ok ? w.order : range(w.units);
}

function tileLayout() {
  const w = state.weights;
  const s = w.units > 256 ? 2 : 3;
  const tile = w.side * s;
  const gap = 4;
  const margin = 3;
  const width = $('tiles').parentElement.clientWidth || 800;
  const cols = Math.max(1, Math.min(w.units, Math.floor((width - 2 * margin + gap) / (tile + gap))));
  return { s, tile, gap, margin, cols, rows: Math.ceil(w.units / cols), order: tileOrder() };
}

function drawTiles() {
  const w = state.weights;
  if (!w || !w.units) {
    $('tile-info').textContent = 'no weights to show';
    return;
  }
  const L = tileLayout();
  const canvas = $('tiles');
  canvas.width = 2 * L.margin + L.cols * (L.tile + L.gap) - L.gap;
  canvas.height = 2 * L.margin + L.rows * (L.tile + L.gap) - L.gap;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(canvas.width, canvas.height);
  L.order.forEach((unit, k) => paintTile(img, L, unit, k));
  state.tiles = { ...L, img };
  drawTileOverlay();
}

function paintTile(img, L, unit, k) {
  const w = state.weights;
  const x0 = L.margin + (k % L.cols) * (L.tile + L.gap);
  const y0 = L.margin + Math.floor(k / L.cols) * (L.tile + L.gap);
  fillImage(img, x0 - 1, y0 - 1, L.tile + 2, L.tile + 2, [203, 213, 225]); // a thin frame
  for (let i = 0; i < w.side * w.side; i++) {
    const rgb = diverging(w.data[unit * w.inputs + i] / w.scale);
    const px = x0 + (i % w.side) * L.s;
    const py = y0 + Math.floor(i / w.side) * L.s;
    for (let dy = 0; dy < L.s; dy++) {
      for (let dx = 0; dx < L.s; dx++) img.data.set(rgb, 4 * ((py + dy) * img.width + px + dx));
    }
  }
}

function fillImage(img, x, y, w, h, rgb) {
  for (let row = y; row < y + h; row++) {
    for (let col = x; col < x + w; col++) img.data.set([...rgb, 255], 4 * (row * img.width + col));
  }
}

/** The base tiles, outlined: the most active units (green) and the picked one (dark). */
function drawTileOverlay() {
  const T = state.tiles;
  if (!T) return;
  const ctx = $('tiles').getContext('2d');
  ctx.putImageData(T.img, 0, 0);
  const layer = state.analysis && state.analysis.layers && state.analysis.layers[0];
  if (layer && layer.length === state.weights.units) {
    const top = range(layer.length).sort((a, b) => layer[b] - layer[a]).slice(0, 8);
    top.forEach((unit) => outlineTile(ctx, T, unit, '#16a34a'));
  }
  if (state.pinnedUnit !== null) outlineTile(ctx, T, state.pinnedUnit, '#111');
}

function outlineTile(ctx, T, unit, colour) {
  const k = T.order.indexOf(unit);
  if (k < 0) return;
  const x = T.margin + (k % T.cols) * (T.tile + T.gap);
  const y = T.margin + Math.floor(k / T.cols) * (T.tile + T.gap);
  ctx.strokeStyle = colour;
  ctx.lineWidth = 2;
  ctx.strokeRect(x - 1.5, y - 1.5, T.tile + 3, T.tile + 3);
}

function tileAt(event) {
  const T = state.tiles;
  if (!T) return null;
  const col = Math.floor((event.offsetX - T.margin + T.gap / 2) / (T.tile + T.gap));
  const row = Math.floor((event.offsetY - T.margin + T.gap / 2) / (T.tile + T.gap));
  const k = row * T.cols + col;
  return col >= 0 && col < T.cols && row >= 0 && k < T.order.length ? { unit: T.order[k], k } : null;
}

function describeUnit(unit) {
  if (unit === null) return 'hover over or click a tile';
  const w = state.weights;
  const k = state.tiles.order.indexOf(unit);
  const c = w.contribution && w.contribution[unit];
  let text = `unit ${unit}`;
  if (typeof c === 'number') text += ` \u00b7 contribution ${c.toFixed(4)}`;
  text += ` \u00b7 tile ${k + 1} of ${w.units}`;
  const layer = state.analysis && state.analysis.layers && state.analysis.layers[0];
  if (layer && unit < layer.length) text += ` \u00b7 activation now ${layer[unit].toFixed(3)}`;
  return text;
}

function wireTiles() {
  const canvas = $('tiles');
  canvas.addEventListener('mousemove', (e) => {
    const hit = tileAt(e);
    $('tile-info').textContent = describeUnit(hit ? hit.unit : state.pinnedUnit);
  });
  canvas.addEventListener('mouseleave', () => { $('tile-info').textContent = describeUnit(state.pinnedUnit); });
  canvas.addEventListener('click', (e) => {
    const hit = tileAt(e);
    state.pinnedUnit = hit && hit.unit !== state.pinnedUnit ? hit.unit : null;
    $('tile-info').textContent = describeUnit(hit ? hit.unit : null);
    drawTileOverlay();
  });
  $('sort').addEventListener('change', (e) => {
    state.sort = e.target.value;
    if (state.weights) drawTiles();
  });
}

// ---------- the Test set panel ----------

async function loadSummary() {
  const panel = $('test-panel');
  let summary;
  try {
    summary = await api('/api/test/summary');
  } catch (err) {
    if (!panel.hidden) $('test-accuracy').textContent = err.message;
    else panel.hidden = true;
    return;
  }
  panel.hidden = !summary.n;
  if (!summary.n) return;
  state.summary = summary;
  $('test-accuracy').textContent =
    `test accuracy ${percent(summary.accuracy, 2)} on ${summary.n.toLocaleString('en-US')} images (model version ${summary.version})`;
  renderConfusion();
  renderMistakes();
}

function renderConfusion() {
  const m = state.summary.confusion;
  const table = $('confusion');
  table.textContent = '';
  const head = el('tr');
  head.append(el('th', 'corner', 'true \\ predicted'));
  m.forEach((_, j) => { const th = el('th', 'col', String(j)); th.title = className(j); head.append(th); });
  table.append(head);
  let maxDiag = 1;
  let maxOff = 1;
  m.forEach((row, i) => row.forEach((c, j) => {
    if (i === j) maxDiag = Math.max(maxDiag, c); else maxOff = Math.max(maxOff, c);
  }));
  m.forEach((row, i) => {
    const tr = el('tr');
    tr.append(el('th', 'row', className(i) === String(i) ? String(i) : `${i} ${className(i)}`));
    row.forEach((c, j) => tr.append(confusionCell(i, j, c, i === j ? c / maxDiag : c / maxOff)));
    table.append(tr);
  });
}

function confusionCell(i, j, count, t) {
  const td = el('td', i === j ? 'diag' : 'off', String(count));
  td.title = `true ${className(i)}, predicted ${className(j)}: ${count}`;
  if (i === j) {
    td.style.background = `rgba(22, 163, 74, ${0.12 + 0.6 * t})`;
  } else if (count > 0) {
    td.style.background = `rgba(220, 38, 38, ${0.08 + 0.8 * Math.sqrt(t)})`;
    td.classList.add('pick');
    if (t > 0.5) td.style.color = '#fff';
    td.addEventListener('click', () => pickCell(i, j));
  }
  const f = state.filter;
  if (f && f.label === i && f.prediction === j) td.classList.add('selected');
  return td;
}

function pickCell(label, prediction) {
  const f = state.filter;
  state.filter = f && f.label === label && f.prediction === prediction ? null : { label, prediction };
  renderConfusion();
  renderMistakes();
}

function renderMistakes() {
  const all = state.summary.mistakes || [];
  const f = state.filter;
  const list = f ? all.filter((m) => m.label === f.label && m.prediction === f.prediction) : all;
  const title = f
    ? `true ${className(f.label)} \u2192 predicted ${className(f.prediction)}: ` +
      `${state.summary.confusion[f.label][f.prediction]} in the test set, ${list.length} among the ${all.length} most confident mistakes`
    : `Most confident mistakes (${all.length})`;
  $('mistakes-title').textContent = title;
  $('show-all').hidden = !f;
  const box = $('mistakes');
  box.textContent = '';
  if (!list.length) box.append(el('p', 'small', f ? 'none of them is among the listed mistakes' : 'no mistakes listed'));
  for (const m of list) box.append(mistakeThumb(m));
}

function mistakeThumb(m) {
  const button = el('button', 'thumb');
  button.type = 'button';
  const canvas = el('canvas');
  drawGrey(canvas, m.image);
  button.append(canvas, el('span', '', `${className(m.label)} \u2192 ${className(m.prediction)} (${percent(m.confidence, 0)})`));
  button.title = `test image ${m.index}`;
  button.addEventListener('click', () => {
    showTest(`/api/test/${m.index}`);
    $('answer-panel').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  });
  return button;
}

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

const weightsRefresh = { last: -Infinity, timer: null, busy: false };

/** Refetch the weights soon, at most once per second. */
function requestWeights() {
  if (weightsRefresh.timer !== null || weightsRefresh.busy) return;
  const wait = Math.max(0, weightsRefresh.last + 1000 - performance.now());
  weightsRefresh.timer = setTimeout(refreshWeights, wait);
}

async function refreshWeights() {
  weightsRefresh.timer = null;
  weightsRefresh.busy = true;
  weightsRefresh.last = performance.now();
  const before = state.weights ? state.weights.version : null;
  try {
    await loadWeights();
    if (state.weights.version !== before) reanalyse();
  } catch (err) {
    showMessage(`could not refresh the weights: ${err.message}`);
  }
  weightsRefresh.busy = false;
  if (state.weights && state.latestVersion > state.weights.version) requestWeights();
}

// ---------- charts ----------

let curvesQueued = false;
function scheduleCurves() {
  if (curvesQueued) return;
  curvesQueued = true;
  requestAnimationFrame(() => { curvesQueued = false; drawCurves(); });
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

// ---------- start ----------

function wireControls() {
  $('clear').addEventListener('click', () => {
    clearPad();
    state.source = null;
    requests.shown = requests.seq;
    $('prediction').textContent = 'draw on the paper, or pick a test digit';
    $('prediction').className = 'prediction idle';
    $('timing').textContent = '';
    $('answer-panel').classList.add('stale');
    $('answer-panel').classList.remove('failed');
  });
  $('random').addEventListener('click', () => showTest('/api/test/random'));
  $('upload').addEventListener('change', (e) => {
    const file = e.target.files && e.target.files[0];
    e.target.value = '';
    if (!file) return;
    clearPad();
    state.source = { kind: 'upload', file };
    requests.shown = requests.seq;
    $('timing').textContent = `uploaded ${file.name}`;
    analyseFile(file);
  });
  $('refresh-test').addEventListener('click', loadSummary);
  $('show-all').addEventListener('click', () => {
    state.filter = null;
    renderConfusion();
    renderMistakes();
  });
  $('stop').addEventListener('click', stopRun);
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(onResize, 150);
  });
}

function onResize() {
  if (state.weights) drawTiles();
  if (state.analysis) renderActivations(state.analysis.layers || []);
  scheduleCurves();
}

async function init() {
  initPad();
  wireControls();
  wireTiles();
  try {
    state.model = await api('/api/model');
    renderModel();
    initBars();
    loadSummary();
    if (state.model.live) {
      $('training-panel').hidden = false;
      connectEvents();
      scheduleCurves();
    }
    await loadWeights();
    window.gpuMnist.ready = true;
    if (state.latestVersion > state.weights.version) requestWeights();
  } catch (err) {
    showMessage(`could not load the model: ${err.message}`);
  }
}

init();

/* gpu-mnist serve: the Model panel: model facts and metadata, loading
 * /api/weights, the colour bar and the first-layer weight tiles (sort,
 * outlines, hover and click).
 */
'use strict';

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
  if (Uint8Array.fromBase64) {
    const bytes = Uint8Array.fromBase64(base64);
    return new Float32Array(bytes.buffer, 0, bytes.length >> 2);
  }
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
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
  // One 32-bit write per pixel from a table of the colour map: the tiles are redrawn at every
  // report point of a live run, and that must cost the training machine little.
  const pixels = new Uint32Array(img.data.buffer);
  const lut = divergingTable();
  L.order.forEach((unit, k) => paintTile(pixels, img.width, lut, L, unit, k));
  state.tiles = { ...L, img, outlined: [] };
  ctx.putImageData(img, 0, 0);
  drawTileOverlay();
}

/** The colour map as packed RGBA (little-endian, as ImageData is on every browser's
 * platforms), for t = -1 .. 1 in TABLE_STEPS steps each side. */
const TABLE_STEPS = 255;
function divergingTable() {
  const lut = new Uint32Array(2 * TABLE_STEPS + 1);
  for (let i = 0; i < lut.length; i++) lut[i] = packRgb(diverging(i / TABLE_STEPS - 1));
  return lut;
}

function packRgb(rgb) {
  return ((255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]) >>> 0;
}

function paintTile(pixels, width, lut, L, unit, k) {
  const w = state.weights;
  const x0 = L.margin + (k % L.cols) * (L.tile + L.gap);
  const y0 = L.margin + Math.floor(k / L.cols) * (L.tile + L.gap);
  const frame = packRgb([203, 213, 225]); // a thin frame
  for (let row = y0 - 1; row < y0 + L.tile + 1; row++) {
    pixels.fill(frame, row * width + x0 - 1, row * width + x0 + L.tile + 1);
  }
  const base = unit * w.inputs;
  for (let r = 0; r < w.side; r++) {
    for (let c = 0; c < w.side; c++) {
      const t = Math.max(-1, Math.min(1, w.data[base + r * w.side + c] / w.scale || 0));
      const colour = lut[Math.round((t + 1) * TABLE_STEPS)];
      let at = (y0 + r * L.s) * width + x0 + c * L.s;
      for (let dy = 0; dy < L.s; dy++, at += width) {
        for (let dx = 0; dx < L.s; dx++) pixels[at + dx] = colour;
      }
    }
  }
}

/** The base tiles, outlined: the most active units (green) and the picked one (dark). Only the
 * outlines drawn last time are painted over from the base image: every answer redraws them, and
 * a whole canvas of hundreds of tiles costs tens of milliseconds on a software canvas. */
function drawTileOverlay() {
  const T = state.tiles;
  if (!T) return;
  const ctx = $('tiles').getContext('2d');
  T.outlined.forEach(([x, y, w, h]) => ctx.putImageData(T.img, 0, 0, x, y, w, h));
  T.outlined = [];
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
  // The outline's pixels, with a pixel to spare for anti-aliasing.
  T.outlined.push([x - 3, y - 3, T.tile + 6, T.tile + 6]);
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

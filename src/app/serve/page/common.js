/* gpu-mnist serve: the browser page, shared part (load first).
 *
 * Shows what the network learns: a drawing pad analysed live as you draw (the
 * prediction, the 28x28 image the network reads, the class probabilities and
 * the hidden layers' activations), the model (sizes, metadata, first-layer
 * weight tiles), the test set (accuracy, confusion matrix, confident mistakes)
 * and, while a training run is live, its loss and accuracy curves.
 *
 * The page is split into classic scripts, loaded in this order (see index.html):
 * common.js (this file: constants, window.gpuMnist, the page state, fetch and
 * drawing helpers), pad.js, answer.js, model.js, testset.js, training.js and
 * main.js (starts everything). Their top-level names are shared globals.
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

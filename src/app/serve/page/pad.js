/* gpu-mnist serve: the drawing pad (pointer strokes on a 280x280 canvas) and
 * the analyses: sending the pad, a test image or an uploaded file to
 * /api/analyse or /api/test/..., dropping stale answers and timing the reply.
 */
'use strict';

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

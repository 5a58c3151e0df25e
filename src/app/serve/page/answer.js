/* gpu-mnist serve: the Answer panel: prediction text, the 28x28 image the
 * network sees, the probability bars and the hidden layers' activations.
 */
'use strict';

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

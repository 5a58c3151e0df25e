/* gpu-mnist serve: the Test set panel: accuracy from /api/test/summary, the
 * confusion matrix (click a cell to filter) and the most confident mistakes.
 */
'use strict';

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

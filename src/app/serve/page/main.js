/* gpu-mnist serve: start the page (load last): wire the buttons and the
 * resize handler, load the model, the test summary and the weights, and
 * follow a live run.
 */
'use strict';

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

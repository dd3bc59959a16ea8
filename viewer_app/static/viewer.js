// The viewer page: builds the domain sliders from /api/domains and keeps two images up to date
// through /api/render (the base-subspace image and the current one). Hand-written, no libraries.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { seed: 0, trunc: 1, photo: null, info: null, domains: [] };

function setStatus(text, isError) {
  $('status').textContent = text;
  $('status').className = 'small' + (isError ? ' error' : '');
}

async function errorText(response) {
  try { return (await response.json()).error; } catch (e) { return `HTTP ${response.status}`; }
}

// The name a render query uses for a domain: its name, or its dimension when the name holds ',' or ':'.
function domainKey(domain) {
  return /[,:]/.test(domain.name) ? String(domain.dimension) : domain.name;
}

function sourceQuery() {
  if (state.photo !== null) return `photo=${encodeURIComponent(state.photo)}`;
  return `seed=${state.seed}&trunc=${state.trunc}`;
}

function domainsQuery() {
  const parts = [];
  for (const slider of document.querySelectorAll('input.domain-slider')) {
    const strength = Number(slider.value);
    if (strength !== 0) parts.push(`${slider.dataset.key}:${strength}`);
  }
  return parts.length ? `&domains=${encodeURIComponent(parts.join(','))}` : '';
}

// One image kept up to date: at most one request in flight; moves made meanwhile coalesce into
// one follow-up request for the latest position.
function makeView(img, buildQuery, onRendered) {
  let busy = false;
  let dirty = false;
  let url = null;
  return async function update() {
    if (busy) { dirty = true; return; }
    busy = true;
    try {
      do {
        dirty = false;
        const query = buildQuery();
        const response = await fetch(`/api/render?${query}`);
        if (!response.ok) { setStatus(await errorText(response), true); break; }
        const blob = await response.blob();
        const previous = url;
        url = URL.createObjectURL(blob);
        await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = url; });
        img.dataset.query = query;
        img.dataset.renders = String(Number(img.dataset.renders || 0) + 1);
        if (previous) URL.revokeObjectURL(previous);
        if (onRendered) onRendered(response, url, query);
      } while (dirty);
    } catch (err) {
      setStatus(`render failed: ${err}`, true);
    } finally {
      busy = false;
    }
  };
}

const updateBase = makeView($('base-image'), () => sourceQuery());
const updateCurrent = makeView($('current-image'), () => sourceQuery() + domainsQuery(), (response, url, query) => {
  $('command').textContent = response.headers.get('X-Viewer-Command') || '';
  const save = $('save');
  save.href = url;
  save.download = (state.photo !== null ? state.photo : `seed${String(state.seed).padStart(4, '0')}`) +
    domainsQuery().replace(/^&domains=/, '_').replace(/%2C|%3A|[^A-Za-z0-9_.-]/g, '_') + '.png';
  setStatus('');
});

function updateAll() { updateBase(); updateCurrent(); }

function buildSliders(domains) {
  const box = $('domains');
  box.textContent = '';
  if (domains.length === 0) {
    $('domains-box').querySelector('p').textContent = 'This is a plain generator: no domain sliders.';
    $('reset').hidden = true;
    return;
  }
  const [lo, hi] = state.info.strength_range;
  for (const domain of domains) {
    const row = document.createElement('div');
    row.className = 'domain';
    const id = `domain-${domain.dimension}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = `${domain.name} (dim ${domain.dimension}) `;
    const value = document.createElement('output');
    value.textContent = '0.00';
    label.appendChild(value);
    const slider = document.createElement('input');
    Object.assign(slider, { id, type: 'range', min: String(lo), max: String(hi), step: '0.01', value: '0' });
    slider.className = 'domain-slider';
    slider.dataset.name = domain.name;
    slider.dataset.dimension = String(domain.dimension);
    slider.dataset.key = domainKey(domain);
    slider.addEventListener('input', () => { value.textContent = Number(slider.value).toFixed(2); updateCurrent(); });
    row.append(label, slider);
    box.appendChild(row);
  }
}

function setSeed(seed) {
  state.seed = seed;
  $('seed').value = String(seed);
  usePhoto(null);
  updateAll();
}

function usePhoto(photo) {
  state.photo = photo;
  $('use-seeds').hidden = photo === null;
  $('trunc').disabled = photo !== null;
  $('current-caption').textContent = photo === null ? 'current' : `current (${photo})`;
}

async function pollProjection(job) {
  const status = $('project-status');
  for (;;) {
    const response = await fetch(`/api/project/${job}`);
    if (!response.ok) { status.textContent = await errorText(response); status.dataset.state = 'error'; return; }
    const info = await response.json();
    $('progress').max = info.num_steps;
    $('progress').value = info.step;
    status.dataset.state = info.state;
    status.className = 'small' + (info.state === 'error' ? ' error' : '');
    if (info.state === 'error') { status.textContent = info.error; return; }
    const dist = info.dist === null ? '' : `, distance ${info.dist.toFixed(4)}`;
    status.textContent = `${info.state}: step ${info.step} / ${info.num_steps}${dist}`;
    if (info.state === 'done') { usePhoto(info.photo); updateAll(); return; }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function startProjection() {
  const file = $('photo-file').files[0];
  const status = $('project-status');
  if (!file) { status.textContent = 'choose an image file first'; status.dataset.state = 'error'; return; }
  $('project').disabled = true;
  try {
    status.textContent = 'uploading...';
    status.dataset.state = 'uploading';
    const response = await fetch(`/api/project?steps=${encodeURIComponent($('steps').value)}`, {
      method: 'POST', body: file,
      headers: { 'Content-Type': file.type || 'application/octet-stream', 'X-Filename': encodeURIComponent(file.name) },
    });
    if (!response.ok) {
      status.textContent = await errorText(response);
      status.dataset.state = 'error';
      status.className = 'small error';
      return;
    }
    await pollProjection((await response.json()).job);
  } finally {
    $('project').disabled = false;
  }
}

function sizeImages(resolution) {
  // Small generators: integer nearest-neighbour upscaling to about 384 px; large ones: at most 512 px.
  const size = resolution >= 384 ? Math.min(resolution, 512) : resolution * Math.floor(384 / resolution);
  for (const img of [$('base-image'), $('current-image')]) {
    img.width = size;
    img.height = size;
    img.classList.toggle('pixelated', size > resolution);
  }
}

async function init() {
  const [info, domains] = await Promise.all([
    fetch('/api/info').then((r) => r.json()), fetch('/api/domains').then((r) => r.json())]);
  state.info = info;
  state.domains = domains.domains;
  $('network').textContent = `${info.network}: ${info.resolution}x${info.resolution}, ` +
    (info.expanded ? `${domains.domains.length} domain(s), subspace distance ${info.subspace_distance}` :
      'plain generator') + (info.names_note ? ` (${info.names_note})` : '');
  $('distance').textContent = info.expanded ? String(info.subspace_distance) : 's';
  $('trunc').max = String(Math.min(1, info.trunc_range[1]));
  $('steps').value = String(info.default_projection_steps);
  $('steps').max = String(info.max_projection_steps);
  $('seed').max = String(info.max_seed);
  sizeImages(domains.resolution);
  buildSliders(domains.domains);

  $('seed').addEventListener('change', () => {
    const seed = Number($('seed').value);
    if (Number.isInteger(seed) && seed >= 0 && seed <= info.max_seed) setSeed(seed);
    else setStatus(`seed: use an integer from 0 to ${info.max_seed}`, true);
  });
  $('random').addEventListener('click', () => setSeed(Math.floor(Math.random() * 1000000)));
  $('trunc').addEventListener('input', () => {
    state.trunc = Number($('trunc').value);
    $('trunc-value').textContent = state.trunc.toFixed(2);
    updateAll();
  });
  $('reset').addEventListener('click', () => {
    for (const slider of document.querySelectorAll('input.domain-slider')) {
      slider.value = '0';
      slider.dispatchEvent(new Event('input'));
    }
  });
  $('project').addEventListener('click', startProjection);
  $('use-seeds').addEventListener('click', () => setSeed(state.seed));
  $('copy').addEventListener('click', () => navigator.clipboard.writeText($('command').textContent));
  document.body.dataset.ready = 'true';
  updateAll();
}

init().catch((err) => setStatus(`could not load the viewer: ${err}`, true));

// linesight status page: polls the JSON API and draws everything itself (no library, no
// build step, nothing fetched from anywhere but linesight).
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const RATE_WINDOW = 50;

let refreshMs = 1000;
let runId = null;
let lastSeq = 0;
let lastRejectSeq = -1;
let parts = [];
let keepParts = 600;
let writes = false;
let infoLoaded = false;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? '—' : Number(v).toFixed(d));
const reasonText = (r) => String(r).replace(/_/g, ' ');
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

function setPhase(phase, stale) {
  const p = $('phase');
  const text = stale ? 'no news' : phase;
  p.textContent = text;
  p.className = 'pill ' + (stale ? 'pill-bad' : phase === 'running' ? 'pill-run' : 'pill-wait');
  p.dataset.value = text;
}

function renderLast(st) {
  const p = st.last_part;
  const v = $('verdict');
  if (!p) return;
  v.textContent = p.verdict === 'pass' ? 'PASS' : 'REJECT';
  v.className = 'verdict verdict-' + p.verdict;
  v.dataset.value = p.verdict;
  $('score').textContent = fmt(p.score);
  $('threshold').textContent = fmt(p.threshold);
  $('last-id').textContent = `#${p.id} (seq ${p.seq})`;
  $('last-reason').textContent = reasonText(p.reason) + (p.detail ? ` — ${p.detail}` : '');
  $('last-reason').className = p.verdict === 'pass' ? 'ok' : 'bad';
  $('last-latency').textContent = `${fmt(p.latency.total_ms, 1)} ms`;
  $('last-time').textContent = clock(p.unix_ms);
}

function renderFrame(st) {
  const p = st.last_image;
  const fig = $('frame');
  if (!p) {
    $('frame-empty').textContent = st.images
      ? 'no image saved yet'
      : 'no images: record.save = "none" (set "rejects" or "all")';
    return;
  }
  const img = $('frame-img');
  if (img.dataset.seq !== String(p.seq)) {
    img.dataset.seq = String(p.seq);
    img.src = p.image_url;
  }
  fig.classList.remove('empty');
  $('frame-caption').textContent =
    `part #${p.id} · ${p.verdict} · ${reasonText(p.reason)} · score ${fmt(p.score)} (threshold ${fmt(p.threshold)})`;
}

function renderCounters(st) {
  const a = st.counters.since_start;
  const b = st.counters.since_reset;
  const body = $('counters');
  body.replaceChildren();
  const row = (cls, name, x, y, id) => {
    const tr = el('tr', { class: cls }, el('td', {}, name));
    for (const [which, v] of [['start', x], ['reset', y]]) {
      const td = el('td', { 'data-value': String(v) }, typeof v === 'number' ? v.toLocaleString() : v);
      if (id) td.id = `c-${which}-${id}`;
      tr.append(td);
    }
    body.append(tr);
  };
  row('total', 'parts', a.parts, b.parts, 'parts');
  row('', 'passed', a.passed, b.passed, 'passed');
  row('', 'rejected', a.rejected, b.rejected, 'rejected');
  const reasons = Object.keys(a.by_reason).filter((r) => r !== 'below_threshold').sort();
  for (const r of reasons) row('reason', reasonText(r), a.by_reason[r] || 0, b.by_reason[r] || 0, r);
  const pct = (c) => (c.parts ? `${((100 * c.rejected) / c.parts).toFixed(1)} %` : '—');
  row('rate', 'reject rate', pct(a), pct(b), 'rate');
  $('reset-since').textContent = `since reset: ${clock(b.since_unix_ms)}`;
}

function renderHealth(st) {
  const h = $('health');
  h.replaceChildren();
  const line = st.line;
  const age = line ? (st.now_unix_ms - line.unix_ms) / 1000 : null;
  const item = (k, v, cls) => h.append(el('dt', {}, k), el('dd', cls ? { class: cls } : {}, v));
  item('line', line ? `${st.phase}, ${fmt(line.parts_per_second, 1)} parts/s` : st.phase, st.phase === 'running' ? 'ok' : 'warn');
  const c = st.camera;
  if (c) {
    const since = `since ${clock(c.since_unix_ms)}`;
    const losses = c.losses ? ` · lost ${c.losses}×, last: ${c.last_error}` : '';
    if (c.up) item('camera', `up ${since}${losses}`, 'ok');
    else item('camera', `DOWN ${since}: ${c.last_error}`, 'bad');
  } else {
    item('camera', 'not open yet');
  }
  item('model', `${st.model.name} · sha256 ${st.model.sha256.slice(0, 12)}…`);
  item('provider', st.provider);
  item('reject output', st.reject_output);
  if (line && line.latency_ms) {
    for (const [stage, { p50, p99, max }] of Object.entries(line.latency_ms)) {
      item(`${stage} ms`, `p50 ${fmt(p50)} · p99 ${fmt(p99)} · max ${fmt(max)}`);
    }
  }
  const t = st.threshold;
  item('threshold', `${fmt(t.now, 3)} now · ${fmt(t.at_start, 3)} at start`, t.now !== t.at_start ? 'warn' : '');
  item('page feed', st.dropped_events ? `${st.dropped_events} events dropped (page behind)` : 'no events dropped', st.dropped_events ? 'warn' : 'ok');
  if (age !== null) item('last state', `${fmt(age, 1)} s ago`, age > 5 ? 'warn' : '');
}

function renderControls(st) {
  writes = st.writes;
  $('writes-off').hidden = writes;
  $('threshold-form').hidden = !writes;
  $('reset').hidden = !writes;
  const [lo, hi] = st.threshold.range;
  $('range').hidden = !writes;
  $('range').textContent = `Sane range ${fmt(lo, 2)} to ${fmt(hi, 2)} (${st.threshold.range_source}). ` +
    'The token also resets the "since reset" counters. Every change, done or refused, goes to the audit log.';
  const input = $('threshold-input');
  input.min = lo;
  input.max = hi;
  if (document.activeElement !== input && !input.value) input.value = st.threshold.now;
}

function mergeParts(got) {
  for (const p of got.parts) if (p.seq > lastSeq) parts.push(p);
  if (parts.length) lastSeq = parts[parts.length - 1].seq;
  if (parts.length > keepParts) parts = parts.slice(parts.length - keepParts);
}

function drawTrend() {
  const chart = $('trend');
  const rate = $('rate');
  chart.replaceChildren();
  rate.replaceChildren();
  // Drawn at the chart's own pixel size, so that dots stay round and labels unstretched.
  const W = Math.max(300, Math.round(chart.getBoundingClientRect().width) || 1000);
  const H = 220, RH = 110, L = 34, R = 8, T = 8, B = 18;
  chart.setAttribute('viewBox', `0 0 ${W} ${H}`);
  rate.setAttribute('viewBox', `0 0 ${W} ${RH}`);
  const n = parts.length;
  $('trend-hint').textContent = n ? `last ${n} parts, #${parts[0].id} to #${parts[n - 1].id}` : '';
  if (!n) return;
  // Scores on a log scale: good parts crowd just under the threshold, defects reach far
  // above it; parts with no score (fail-safe rejects) sit on the top edge.
  const scores = parts.map((p) => p.score).filter((v) => v !== null && Number.isFinite(v) && v > 0);
  const thr = parts.map((p) => p.threshold);
  const hi = Math.max(...scores, ...thr) * 1.15;
  const lo = Math.max(Math.min(...scores, ...thr) / 1.3, hi / 1e4);
  const x = (i) => L + ((W - L - R) * (n === 1 ? 0.5 : i / (n - 1)));
  const y = (v) => T + (H - T - B) * (1 - (Math.log(Math.min(Math.max(v, lo), hi)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)));
  const ticks = [];
  for (let m = Math.pow(10, Math.floor(Math.log10(lo))); m <= hi; m *= 10) {
    for (const k of [1, 2, 5]) if (k * m >= lo && k * m <= hi) ticks.push(k * m);
  }
  for (const v of ticks) {
    chart.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    const t = svg('text', { x: 4, y: y(v) + 4, class: 'axis-label' });
    t.textContent = v >= 1 ? String(v) : v.toPrecision(1);
    chart.append(t);
  }
  let d = '';
  parts.forEach((p, i) => { d += `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(p.threshold).toFixed(1)}`; });
  chart.append(svg('path', { d, class: 'thr' }));
  parts.forEach((p, i) => {
    const scored = p.score !== null && Number.isFinite(p.score);
    const cy = scored ? y(p.score) : T + 2;
    const r = p.verdict === 'reject' ? 3.6 : 2.4;
    if (scored) {
      chart.append(svg('circle', { cx: x(i).toFixed(1), cy: cy.toFixed(1), r, class: p.verdict }));
    } else {
      // no score: a hollow marker on the top edge
      chart.append(svg('rect', { x: (x(i) - 3).toFixed(1), y: cy.toFixed(1), width: 6, height: 6, class: 'noscore' }));
    }
  });
  // reject rate over the last RATE_WINDOW parts at each part
  const shares = [];
  let rejected = 0;
  parts.forEach((p, i) => {
    rejected += p.verdict === 'reject' ? 1 : 0;
    if (i >= RATE_WINDOW) rejected -= parts[i - RATE_WINDOW].verdict === 'reject' ? 1 : 0;
    shares.push(rejected / Math.min(i + 1, RATE_WINDOW));
  });
  const rtop = Math.min(1, Math.max(0.2, ...shares) * 1.15);
  const ry = (v) => 6 + (RH - 6 - 14) * (1 - v / rtop);
  for (const v of [0, rtop / 2, rtop]) {
    rate.append(svg('line', { x1: L, x2: W - R, y1: ry(v), y2: ry(v), class: 'grid' }));
    const t = svg('text', { x: 4, y: ry(v) + 4, class: 'axis-label' });
    t.textContent = `${Math.round(v * 100)}%`;
    rate.append(t);
  }
  let line = '';
  shares.forEach((v, i) => { line += `${i ? 'L' : 'M'}${x(i).toFixed(1)},${ry(v).toFixed(1)}`; });
  rate.append(svg('path', { d: `${line}L${x(n - 1).toFixed(1)},${ry(0)}L${x(0).toFixed(1)},${ry(0)}Z`, class: 'rate-area' }));
  rate.append(svg('path', { d: line, class: 'rate-line' }));
}

function openLightbox(p) {
  $('lightbox-img').src = p.image_url;
  $('lightbox-caption').textContent =
    `part #${p.id} · ${reasonText(p.reason)} · score ${fmt(p.score)} (threshold ${fmt(p.threshold)}) · ${clock(p.unix_ms)}`;
  $('lightbox').hidden = false;
}

function renderGallery(rejects) {
  const g = $('gallery');
  const newest = rejects.slice().reverse();
  if (!newest.length) return;
  const have = new Map([...g.querySelectorAll('.tile')].map((t) => [t.dataset.seq, t]));
  const tiles = newest.map((p) => {
    const old = have.get(String(p.seq));
    if (old) return old;
    const pic = p.image_url
      ? el('img', { src: p.image_url, alt: `reject overlay of part ${p.id}` })
      : el('div', { class: 'noimg' }, el('span', {}, 'no image'), el('b', {}, reasonText(p.reason)));
    if (p.image_url) pic.addEventListener('load', () => pic.classList.add('loaded'));
    const tile = el('figure', { class: 'tile', 'data-seq': String(p.seq) }, pic,
      el('figcaption', {}, el('b', {}, `#${p.id}`), el('span', {}, p.score === null ? 'no score' : fmt(p.score))));
    if (p.image_url) tile.addEventListener('click', () => openLightbox(p));
    return tile;
  });
  g.replaceChildren(...tiles);
}

async function loadInfo() {
  const info = await getJSON('/api/info');
  $('config').textContent = info.config_text;
  $('config-sha').textContent = `sha256 ${info.config_sha256.slice(0, 16)}…`;
  infoLoaded = true;
}

async function tick() {
  try {
    const st = await getJSON('/api/state');
    refreshMs = st.refresh_ms || refreshMs;
    if (st.run_id !== runId || st.last_seq < lastSeq) {
      runId = st.run_id;
      parts = [];
      lastSeq = 0;
      lastRejectSeq = -1;
      infoLoaded = false;
    }
    if (!infoLoaded) await loadInfo();
    document.title = `${st.title || st.model.name} · linesight`;
    $('title').textContent = st.title || st.model.name;
    const age = st.line ? st.now_unix_ms - st.line.unix_ms : 0;
    setPhase(st.phase, st.phase === 'running' && age > 5000);
    renderLast(st);
    renderFrame(st);
    renderCounters(st);
    renderHealth(st);
    renderControls(st);
    if (st.last_seq !== lastSeq) {
      mergeParts(await getJSON(`/api/parts?since=${lastSeq}`));
      drawTrend();
    }
    if (st.last_reject_seq !== lastRejectSeq) {
      renderGallery((await getJSON('/api/rejects')).rejects);
      lastRejectSeq = st.last_reject_seq;
    }
    $('updated').textContent = `updated ${clock(Date.now())}`;
    $('updated').className = 'muted';
  } catch (e) {
    setPhase('offline', true);
    $('updated').textContent = `linesight does not answer (${e.message})`;
    $('updated').className = 'bad';
  }
  setTimeout(tick, refreshMs);
}

async function write(url, body) {
  const out = $('write-result');
  const token = $('token').value.trim();
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const r = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body || {}) });
    const j = await r.json().catch(() => ({}));
    out.className = 'write-result ' + (r.ok ? 'ok' : 'bad');
    out.textContent = r.ok ? `done: ${JSON.stringify(j)}` : `refused (HTTP ${r.status}): ${j.error || ''}`;
  } catch (e) {
    out.className = 'write-result bad';
    out.textContent = `not sent: ${e.message}`;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('threshold-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    write('/api/threshold', { threshold: Number($('threshold-input').value) });
  });
  $('reset').addEventListener('click', () => write('/api/reset'));
  $('lightbox').addEventListener('click', () => { $('lightbox').hidden = true; });
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') $('lightbox').hidden = true; });
  tick();
});

// The cluster2 dashboard: renders the monitor's overview, kept live by
// server-sent events from /debug/events. Hand-written, no dependencies.
'use strict';

const $ = (sel, el) => (el || document).querySelector(sel);
const SVG = 'http://www.w3.org/2000/svg';
let token = sessionStorage.getItem('cluster2-token') || '';
let last = null;       // the latest overview
let snapshots = 0;     // overviews rendered (exposed for tests as data-snapshots)
let feed = null;       // EventSource of the chosen cache's key changes

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
  }
  for (const k of kids) e.append(k);
  return e;
}

function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
}

function dur(s) {
  if (s < 60) return s.toFixed(0) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd' + Math.floor(s % 86400 / 3600) + 'h';
}

function clock(t) { return new Date(t).toLocaleTimeString(); }

function withToken(url) {
  return token ? url + (url.includes('?') ? '&' : '?') + 'access_token=' + encodeURIComponent(token) : url;
}

// spark draws values as a small line chart.
function spark(kind, values) {
  const w = 90, h = 22;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'spark ' + kind);
  svg.setAttribute('width', w); svg.setAttribute('height', h); svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  const line = document.createElementNS(SVG, 'polyline');
  const max = Math.max(1e-9, ...values);
  const n = Math.max(values.length - 1, 1);
  line.setAttribute('points', values.map((v, i) => `${(i * (w - 2) / n + 1).toFixed(1)},${(h - 1 - v / max * (h - 2)).toFixed(1)}`).join(' '));
  const title = document.createElementNS(SVG, 'title');
  title.textContent = values.length ? `last ${values.length} heartbeats, max ${kind === 'rss' ? bytes(max) : max.toFixed(1)}` : 'no heartbeat yet';
  svg.append(title, line);
  return svg;
}

function toast(msg, error) {
  const t = $('#toast');
  t.textContent = msg; t.className = error ? 'error' : ''; t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

// act POSTs an action; a 401 asks for the bearer token once and retries.
async function act(url, what) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    let r;
    try { r = await fetch(url, { method: 'POST', headers }); } catch (e) { toast(what + ': ' + e, true); return; }
    if (r.status === 401 && attempt === 0) {
      const t = prompt('This monitor needs its bearer token for actions:');
      if (!t) return;
      token = t; sessionStorage.setItem('cluster2-token', t); $('#token').value = t;
      continue;
    }
    const text = await r.text();
    let msg = text;
    try { const j = JSON.parse(text); msg = j.error || (j.action ? j.action + ' ' + (j.pid || '') : text); } catch (e) { /* plain text */ }
    toast(what + ': ' + (r.ok ? 'done' : msg.trim()), !r.ok);
    return;
  }
}

function workerRow(w) {
  const tr = el('tr', { 'data-pid': w.pid });
  tr.append(
    el('td', { class: 'pid' }), el('td', { class: 'slot' }), el('td', { class: 'state' }), el('td', { class: 'version' }),
    el('td', { class: 'uptime' }),
    el('td', { class: 'rps' }), el('td', { class: 'rps-chart' }), el('td', { class: 'cpu' }), el('td', { class: 'rss' }),
    el('td', { class: 'rss-chart' }), el('td', { class: 'gc' }), el('td', { class: 'goroutines' }), el('td', { class: 'conns' }),
    el('td', { class: 'accepts' }), el('td', { class: 'requests' }), el('td', { class: 'hb' }), el('td', { class: 'actions' }), el('td', { class: 'profiles' }));
  const base = `/debug/api/workers/${w.pid}/`;
  const actions = $('.actions', tr);
  for (const a of ['pause', 'resume', 'replace']) {
    const b = el('button', { type: 'button', 'data-action': a, 'data-pid': w.pid, textContent: a });
    b.addEventListener('click', () => act(base + a, a + ' ' + w.pid));
    actions.append(b);
  }
  return tr;
}

function profileLinks(td, pid) {
  td.textContent = '';
  if (!last.profiles) { td.append(el('span', { class: 'muted', textContent: 'off' })); return; }
  const p = `/debug/workers/${pid}/pprof/`;
  for (const [label, path, file] of [['cpu', 'profile?seconds=10', 'cpu'], ['heap', 'heap', 'heap'],
    ['goroutines', 'goroutine?debug=2', null], ['trace', 'trace?seconds=2', 'trace']]) {
    const a = el('a', { href: withToken(p + path), textContent: label, 'data-profile': label });
    if (file) a.download = `${file}-${pid}.pprof`; else a.target = '_blank';
    td.append(a);
  }
}

function renderWorkers(ws) {
  const tbody = $('#workers tbody');
  const accepts = ws.reduce((n, w) => n + w.acceptsTotal, 0);
  const rows = new Map([...tbody.rows].map(r => [Number(r.dataset.pid), r]));
  for (const w of ws) {
    let tr = rows.get(w.pid);
    if (!tr) { tr = workerRow(w); tbody.append(tr); }
    rows.delete(w.pid);
    tbody.append(tr); // keep slot order
    tr.dataset.state = w.state;
    $('.pid', tr).textContent = w.pid;
    $('.slot', tr).textContent = w.slot;
    $('.state', tr).replaceChildren(el('span', { class: w.state, textContent: w.state }));
    const bi = w.build || {};
    $('.version', tr).textContent = bi.version || '–';
    $('.version', tr).title = [bi.revision, bi.go].filter(Boolean).join(' · ');
    $('.uptime', tr).textContent = dur(w.uptimeSeconds);
    $('.rps', tr).textContent = w.rps.toFixed(1);
    $('.rps-chart', tr).replaceChildren(spark('rps', w.history.rps));
    $('.cpu', tr).textContent = w.cpuPercent.toFixed(1) + '%';
    $('.rss', tr).textContent = bytes(w.rssBytes);
    $('.rss-chart', tr).replaceChildren(spark('rss', w.history.rss));
    $('.gc', tr).textContent = `${w.gcCyclesTotal} (${w.gcPauseMs.toFixed(2)} ms)`;
    $('.goroutines', tr).textContent = w.goroutines;
    $('.conns', tr).textContent = `${w.openConns} / ${w.totalConns}`;
    $('.accepts', tr).textContent = `${w.acceptsTotal} (${accepts ? Math.round(100 * w.acceptsTotal / accepts) : 0}%)`;
    $('.requests', tr).textContent = w.requestsTotal;
    $('.hb', tr).textContent = w.lastHeartbeat.startsWith('0001') ? '–' : dur(w.heartbeatAgeSeconds) + ' ago';
    for (const b of tr.querySelectorAll('button')) {
      const a = b.dataset.action;
      b.disabled = (a === 'pause' && w.state !== 'active') || (a === 'resume' && w.state !== 'paused') ||
        (a === 'replace' && !['active', 'paused'].includes(w.state));
    }
    if (!tr.dataset.linked || tr.dataset.linked !== String(last.profiles) + token) {
      profileLinks($('.profiles', tr), w.pid);
      tr.dataset.linked = String(last.profiles) + token;
    }
  }
  for (const tr of rows.values()) tr.remove();
  $('#worker-count').textContent = `(${ws.length})`;
}

function renderCaches(cs) {
  const tbody = $('#caches tbody');
  $('#no-caches').hidden = cs.length > 0;
  tbody.replaceChildren(...cs.map(c => {
    const watch = el('button', { type: 'button', textContent: 'watch' });
    watch.addEventListener('click', () => { $('#feed-cache').value = c.name; follow(c.name); });
    return el('tr', { 'data-cache': c.name },
      el('td', { class: 'name', textContent: c.name }), el('td', { textContent: c.entries }),
      el('td', { textContent: bytes(c.bytes) }), el('td', { textContent: (c.hitRatio * 100).toFixed(1) + '%' }),
      el('td', { textContent: c.evictions }), el('td', { textContent: c.expirations }),
      el('td', { textContent: c.counterOps + ' / ' + c.casFailures }), el('td', { textContent: c.tagInvalidations + ' / ' + c.clears }),
      el('td', { textContent: [c.staleServes, c.failSafeServes, c.refreshes, c.negativeHits].join(' / ') }),
      el('td', { textContent: c.persist ? 'yes' : 'no' }), el('td', { textContent: c.expire ? dur(c.expire / 1e9) : 'never' }),
      el('td', {}, watch));
  }));
  const sel = $('#feed-cache');
  const have = new Set([...sel.options].map(o => o.value));
  for (const c of cs) if (!have.has(c.name)) sel.append(el('option', { value: c.name, textContent: c.name }));
}

function renderECV(e) {
  const b = $('#ecv');
  b.textContent = e.up ? 'ECV UP' : (e.markedDown && e.reason === 'marked down' ? 'ECV DISABLED' : 'ECV DOWN: ' + e.reason);
  b.className = 'badge ' + (e.up ? 'up' : e.reason === 'marked down' ? 'disabled' : 'down');
  $('#ecv-actions').hidden = e.mode !== 'control';
  $('#mark-up').disabled = !e.markedDown;
  $('#mark-down').disabled = e.markedDown;
}

// renderPersist shows a red badge while the cache's log cannot be written
// (persistent Sets are refused then).
function renderPersist(p) {
  const b = $('#persist');
  b.hidden = !(p && p.failing);
  if (b.hidden) return;
  b.textContent = 'LOG FAILING: ' + p.error + (p.since ? ' since ' + clock(p.since) : '');
  b.title = 'the log writer cannot write its log: Sets of persistent caches are refused; it retries by itself';
}

// renderBridge shows the bridge to Redis: up (green), or connecting / down
// (red: distributed entries are marked stale, writes fail), with its figures
// in the title.
function renderBridge(r) {
  const b = $('#bridge');
  b.hidden = !r;
  if (!r) return;
  b.className = 'badge ' + (r.state === 'up' ? 'up' : 'down');
  b.textContent = r.state === 'up' ? 'redis up' : 'REDIS ' + r.state.toUpperCase() + ' since ' + clock(r.since);
  b.title = [r.addr + ' · caches ' + (r.caches || []).join(', '), r.error,
    'invalidations ' + r.invalidations + ' · reconnects ' + r.reconnects + ' · stale serves ' + r.staleServes +
    ' · flushes ' + r.flushes + ' · messages ' + r.messages].filter(Boolean).join('\n');
}

function renderUpgrade(u) {
  const b = $('#upgrade');
  b.hidden = !u;
  if (!u) return;
  const running = u.state !== 'done' && u.state !== 'failed';
  b.className = 'badge' + (u.state === 'failed' ? ' down' : running ? ' warn' : ' up');
  b.textContent = running ? 'UPGRADE IN PROGRESS: ' + u.state : u.state === 'done' ? 'upgraded' : 'UPGRADE FAILED';
  b.title = [u.from && 'from ' + u.from, u.to && 'to ' + u.to, u.started && 'started ' + clock(u.started),
    u.ended && 'ended ' + clock(u.ended), u.error].filter(Boolean).join('\n');
}

// renderScaling shows the target worker count and the ceiling next to the
// workers' count, and the − / + buttons within the bounds.
function renderScaling(s, n) {
  $('#scale-actions').hidden = !s;
  if (!s) return;
  $('#worker-count').textContent = `(${n}; target ${s.target}, max ${s.max})`;
  $('#scale-down').disabled = s.target <= 1;
  $('#scale-up').disabled = s.target >= s.max;
}

function scaleBy(d) {
  if (!last || !last.scaling) return;
  const n = last.scaling.target + d;
  act('/debug/api/scale?workers=' + n, 'scale to ' + n);
}

function eventItem(ev) {
  const li = el('li', {}, el('span', { class: 't', textContent: clock(ev.time) }), ev.name);
  if (ev.error) li.append(' ', el('span', { class: 'err', textContent: ev.error }));
  return li;
}

function render(o) {
  last = o;
  $('#master-pid').textContent = o.masterPid;
  const mb = o.masterBuild || {};
  $('#master-version').textContent = mb.version || '–';
  $('#master-version').title = [mb.revision && mb.revision.slice(0, 12), mb.go, mb.os && mb.os + '/' + mb.arch].filter(Boolean).join(' · ');
  $('#token-box').hidden = !o.tokenRequired;
  renderECV(o.ecv);
  renderPersist(o.persist);
  renderUpgrade(o.upgrade);
  renderBridge(o.bridge);
  renderWorkers(o.workers);
  renderScaling(o.scaling, o.workers.length);
  renderCaches(o.caches);
  if (snapshots === 0) $('#events').replaceChildren(...o.events.map(eventItem).reverse());
  snapshots++;
  document.body.dataset.snapshots = snapshots;
}

function follow(name) {
  if (feed) { feed.close(); feed = null; }
  const list = $('#feed');
  list.replaceChildren();
  if (!name) return;
  feed = new EventSource(withToken(`/debug/api/caches/${encodeURIComponent(name)}/changes`));
  feed.addEventListener('change', m => {
    const c = JSON.parse(m.data);
    list.prepend(el('li', {}, el('span', { class: 't', textContent: clock(c.time) }),
      `${c.op} ${c.key}` + (c.op === 'set' ? ' = ' + c.value : '')));
    while (list.children.length > 200) list.lastChild.remove();
  });
  feed.addEventListener('lost', m => list.prepend(el('li', { class: 'err', textContent: `… ${JSON.parse(m.data).count} changes not shown` })));
  feed.onerror = () => { if (feed && feed.readyState === EventSource.CLOSED) toast('key feed closed (token?)', true); };
}

function start() {
  $('#token').value = token;
  $('#token').addEventListener('change', e => {
    token = e.target.value; sessionStorage.setItem('cluster2-token', token);
    if (last) renderWorkers(last.workers);
  });
  $('#mark-up').addEventListener('click', () => act('/debug/api/ecv/markUp', 'mark up'));
  $('#mark-down').addEventListener('click', () => act('/debug/api/ecv/markDown', 'mark down'));
  $('#rolling-restart').addEventListener('click', () => {
    if (confirm('Replace every worker, one at a time?')) act('/debug/api/rolling-restart', 'rolling restart');
  });
  $('#upgrade-master').addEventListener('click', () => {
    if (confirm('Upgrade the master in place to the binary on disk (same pid), then replace every worker?')) act('/debug/api/upgrade', 'upgrade');
  });
  $('#scale-down').addEventListener('click', () => scaleBy(-1));
  $('#scale-up').addEventListener('click', () => scaleBy(1));
  $('#feed-cache').addEventListener('change', e => follow(e.target.value));
  const es = new EventSource('/debug/events');
  es.addEventListener('snapshot', m => render(JSON.parse(m.data)));
  es.addEventListener('lifecycle', m => {
    const list = $('#events');
    list.prepend(eventItem(JSON.parse(m.data)));
    while (list.children.length > 100) list.lastChild.remove();
  });
  es.onopen = () => { $('#conn').textContent = 'live'; };
  es.onerror = () => { $('#conn').textContent = 'reconnecting…'; };
}

document.addEventListener('DOMContentLoaded', start);

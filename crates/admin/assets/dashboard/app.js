// shoal dashboard. Hand-written, no build step, no dependencies, nothing loaded from
// elsewhere. It follows GET /api/v1/stream (server-sent events: one snapshot of every
// service a second, plus the events logged since the last one; the first one also brings
// the server's samples of the last minutes, which seed the charts), computes rates from
// the differences between snapshots, and updates the page in place (no re-render from scratch,
// so a service with 50 replicas costs 50 rows touched a second).
'use strict';

(function () {
  const HISTORY_MS = 5 * 60 * 1000; // what the charts show at most
  const MIN_SPAN_MS = 60 * 1000; // and at least, while the history is shorter
  const RATE_WINDOW_MS = 5500; // rates shown as numbers are averaged over this (5 snapshots)
  const MAX_EVENTS = 200; // events kept in the feed
  const STALE_MS = 3500; // no snapshot for this long: say so
  const NOTE_MS = 10000; // how long a scale answer stays shown
  const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2',
    '#65a30d', '#dc2626', '#4b5563', '#ca8a04'];
  const REPLICA_COLUMNS = [
    ['#', 'num'], ['state', ''], ['health', ''], ['pid', 'num'], ['port', 'num'],
    ['restarts', 'num'], ['uptime', 'num'], ['CPU', 'num'], ['memory', 'num'],
    ['in flight', 'num'], ['req/s', 'num'], ['version', ''], ['message', ''],
  ];

  const token = takeToken();
  const views = new Map(); // service name -> view (its DOM, kept between snapshots)
  const colors = new Map(); // service name -> chart colour
  const history = []; // [{t, per: {name: {rps, err, p95, ready}}}]
  const past = []; // the counters of the snapshots of the last RATE_WINDOW_MS, for rates
  let lastMessageAt = 0;
  let source = null;
  let lastEventId = '';
  // For tests and the curious: how long updating the page takes.
  const stats = { snapshots: 0, lastRenderMs: 0, maxRenderMs: 0, seeded: 0 };
  window.shoalDashboard = { stats, history };

  const $ = (id) => document.getElementById(id);
  const charts = [
    { canvas: $('chart-rps'), key: 'rps', unit: '/s', floor: 1 },
    { canvas: $('chart-p95'), key: 'p95', unit: ' ms', floor: 1 },
    { canvas: $('chart-err'), key: 'err', unit: '%', floor: 1 },
    { canvas: $('chart-ready'), key: 'ready', unit: '', floor: 1 },
  ];

  // ---- access -------------------------------------------------------------------------

  // The token comes once in the URL (?token=…); it is kept for this tab only and taken
  // out of the address bar so it is not bookmarked, shared or shown on screen.
  function takeToken() {
    const url = new URL(window.location.href);
    const given = url.searchParams.get('token');
    if (given !== null) {
      try { window.sessionStorage.setItem('shoal-token', given); } catch (_) { /* private mode */ }
      url.searchParams.delete('token');
      window.history.replaceState(null, '', url.pathname + url.search + url.hash);
      return given;
    }
    try { return window.sessionStorage.getItem('shoal-token') || ''; } catch (_) { return ''; }
  }

  // API paths are relative to the page (/dashboard/), so a proxy may mount it elsewhere.
  function apiUrl(path) {
    return new URL('../api/v1/' + path, window.location.href);
  }

  function api(path, init) {
    const opts = Object.assign({}, init || {});
    opts.headers = Object.assign({}, opts.headers || {});
    if (token) opts.headers.Authorization = 'Bearer ' + token;
    return fetch(apiUrl(path), opts);
  }

  // ---- the stream ---------------------------------------------------------------------

  function connect() {
    const url = apiUrl('stream');
    if (token) url.searchParams.set('token', token);
    // A new connection after a refused one: carry on after the last event shown (the
    // browser does this itself, with Last-Event-ID, when it reconnects on its own).
    if (lastEventId) url.searchParams.set('since', lastEventId);
    source = new EventSource(url);
    source.onopen = () => setConn('live', 'live');
    source.onmessage = (m) => {
      let snap;
      try { snap = JSON.parse(m.data); } catch (_) { return; }
      lastMessageAt = Date.now();
      if (m.lastEventId) lastEventId = m.lastEventId;
      setConn('live', 'live');
      hideNotice();
      onSnapshot(snap);
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (e.g. 401): the browser will not retry by itself.
        setConn('down', 'disconnected');
        source.close();
        // Try again unless the token is the problem (that needs the page opened anew).
        checkAccess().then((refused) => { if (!refused) window.setTimeout(connect, 3000); });
      } else {
        setConn('connecting', 'reconnecting…');
      }
    };
  }

  // Why the stream was refused; true when it is the token.
  async function checkAccess() {
    try {
      const r = await api('health');
      if (r.status === 401) {
        showNotice(token
          ? 'The admin API refused the token. Open the dashboard as /dashboard/?token=TOKEN with the admin.token of the stack file.'
          : 'The admin API needs a token (admin.token). Open the dashboard as /dashboard/?token=TOKEN.');
        return true;
      }
    } catch (_) {
      showNotice('Cannot reach the admin API — is shoal up still running?');
    }
    return false;
  }

  window.setInterval(() => {
    if (lastMessageAt && Date.now() - lastMessageAt > STALE_MS && source
      && source.readyState === EventSource.OPEN) {
      setConn('stale', 'no update for ' + Math.round((Date.now() - lastMessageAt) / 1000) + 's');
    }
  }, 1000);

  function setConn(kind, text) {
    const el = $('conn');
    setClass(el, 'conn conn-' + kind);
    setText(el, text);
  }

  function showNotice(text) {
    const el = $('notice');
    setText(el, text);
    el.hidden = false;
  }

  function hideNotice() {
    $('notice').hidden = true;
  }

  // ---- one snapshot -------------------------------------------------------------------

  function onSnapshot(snap) {
    const t0 = performance.now();
    const services = Array.isArray(snap.services) ? snap.services : [];
    const events = Array.isArray(snap.events) ? snap.events : [];
    const at = typeof snap.at_ms === 'number' ? snap.at_ms : Date.now();
    if (!history.length && Array.isArray(snap.history)) seedHistory(snap.history, at);
    const rates = computeRates(services, at);
    for (const s of services) colorOf(s.name);
    record(at, services, rates);
    renderServices(services, rates);
    renderTotals(services, rates);
    renderEvents(events);
    renderLegend(services);
    drawCharts();
    setText($('updated'), 'updated ' + clock(at));
    if (events.some((e) => e.kind === 'reloaded' || e.kind === 'weighted')) loadRoutes();
    const ms = performance.now() - t0;
    stats.snapshots += 1;
    stats.lastRenderMs = ms;
    stats.maxRenderMs = Math.max(stats.maxRenderMs, ms);
  }

  // Requests/s and error rate from the counters' growth: over the last second for the
  // charts, over the last RATE_WINDOW_MS for the numbers shown (a replica that gets one
  // request every other second reads 0.5/s, not 0 and 1 in turn).
  function computeRates(services, at) {
    const now = { at, services: new Map(), replicas: new Map() };
    for (const s of services) {
      const t = s.traffic || {};
      now.services.set(s.name, { req: num(t.requests_total), err: num(t.server_errors_total) });
      for (const r of s.replicas || []) {
        now.replicas.set(s.name + '/' + r.index, r.traffic ? num(r.traffic.requests_total) : null);
      }
    }
    const last = past.length ? past[past.length - 1] : null;
    const out = { services: new Map(), replicas: new Map() };
    for (const [name, c] of now.services) {
      const second = last ? serviceRate(last, name, c, at) : null;
      const windowed = windowRate((p) => serviceRate(p, name, c, at));
      out.services.set(name, {
        rps: second ? second.rps : null,
        err: second ? second.err : null,
        rpsAvg: windowed ? windowed.rps : null,
        errAvg: windowed ? windowed.err : null,
      });
    }
    for (const [key, req] of now.replicas) {
      out.replicas.set(key, windowRate((p) => {
        const before = p.replicas.get(key);
        const dt = (at - p.at) / 1000;
        return req !== null && typeof before === 'number' && req >= before && dt > 0 ? (req - before) / dt : null;
      }));
    }
    past.push(now);
    while (past.length && past[0].at < at - RATE_WINDOW_MS) past.shift();
    return out;
  }

  // The rate from the oldest snapshot in the window that gives one (counters can restart).
  function windowRate(rateSince) {
    for (const p of past) {
      const r = rateSince(p);
      if (r !== null) return r;
    }
    return null;
  }

  function serviceRate(p, name, c, at) {
    const before = p.services.get(name);
    const dt = (at - p.at) / 1000;
    if (!before || dt <= 0 || c.req === null || before.req === null || c.req < before.req) return null;
    const dReq = c.req - before.req;
    const dErr = c.err !== null && before.err !== null ? Math.max(0, c.err - before.err) : 0;
    return { rps: dReq / dt, err: dReq > 0 ? Math.min(100, (100 * dErr) / dReq) : 0 };
  }

  // A fresh page: the server's recent samples (oldest first, one a second) become the
  // charts' history, and the last few the window of the rates shown as numbers, as if the
  // page had been open all along. A reconnecting page keeps what it has.
  function seedHistory(samples, before) {
    let prev = null;
    for (const sample of samples) {
      if (!sample || typeof sample.at_ms !== 'number' || sample.at_ms >= before
        || !Array.isArray(sample.services)) continue;
      const now = { at: sample.at_ms, services: new Map(), replicas: new Map() };
      for (const s of sample.services) {
        now.services.set(s.name, { req: num(s.requests_total), err: num(s.server_errors_total) });
      }
      const per = {};
      for (const s of sample.services) {
        const r = prev ? serviceRate(prev, s.name, now.services.get(s.name), now.at) : null;
        per[s.name] = {
          rps: r ? r.rps : null,
          err: r ? r.err : null,
          p95: typeof s.latency_p95_ms === 'number' ? s.latency_p95_ms : null,
          ready: s.ready,
        };
        colorOf(s.name);
      }
      history.push({ t: now.at, per });
      if (now.at >= before - RATE_WINDOW_MS) past.push(now);
      prev = now;
    }
    stats.seeded = history.length;
  }

  function record(at, services, rates) {
    const per = {};
    for (const s of services) {
      const r = rates.services.get(s.name) || {};
      const p95 = s.traffic && typeof s.traffic.latency_p95_ms === 'number' ? s.traffic.latency_p95_ms : null;
      per[s.name] = { rps: r.rps, err: r.err, p95, ready: inRotation(s) };
    }
    history.push({ t: at, per });
    while (history.length && history[0].t < at - HISTORY_MS - 2000) history.shift();
  }

  // ---- services -----------------------------------------------------------------------

  function renderServices(services, rates) {
    const box = $('services');
    const seen = new Set();
    if (!services.length) {
      if (!box.querySelector('.empty')) box.replaceChildren(el('p', { class: 'empty' }, 'no services'));
      for (const v of views.values()) v.root.remove();
      views.clear();
      return;
    }
    const empty = box.querySelector('.empty');
    if (empty) empty.remove();
    services.forEach((s, i) => {
      seen.add(s.name);
      let v = views.get(s.name);
      if (!v) {
        v = serviceView(s.name);
        views.set(s.name, v);
      }
      if (box.children[i] !== v.root) box.insertBefore(v.root, box.children[i] || null);
      updateService(v, s, rates);
    });
    for (const [name, v] of views) {
      if (!seen.has(name)) {
        v.root.remove();
        views.delete(name);
      }
    }
  }

  function serviceView(name) {
    const v = { name, desired: 0, rows: new Map(), dirty: false, noteTimer: 0 };
    v.badge = el('span', { class: 'badge' });
    v.count = el('span', { class: 'count' });
    v.stats = el('span', { class: 'stats' });
    v.minus = el('button', { type: 'button', class: 'scale-minus', title: 'one replica less' }, '−');
    v.input = el('input', {
      type: 'number', min: '0', max: '1000', step: '1', class: 'scale-input',
      'aria-label': 'replicas of ' + name,
    });
    v.set = el('button', { type: 'button', class: 'scale-set', title: 'scale to this many replicas' }, 'Scale');
    v.plus = el('button', { type: 'button', class: 'scale-plus', title: 'one replica more' }, '+');
    v.scale = el('div', { class: 'scale' }, el('label', {}, 'replicas'), v.minus, v.input, v.plus, v.set);
    v.autoscale = el('div', { class: 'autoscale' });
    v.autoscale.hidden = true;
    v.note = el('p', { class: 'note', role: 'status' });
    v.note.hidden = true;
    const head = el('tr', {});
    for (const [label, cls] of REPLICA_COLUMNS) head.append(el('th', { class: (cls + ' ' + columnClass(label)).trim() }, label));
    v.tbody = el('tbody', {});
    const table = el('table', { class: 'replicas' }, el('thead', {}, head), v.tbody);
    v.root = el('article', { class: 'service', 'data-service': name },
      el('div', { class: 'service-head' }, el('h2', {}, name), v.badge, v.count, v.stats, v.scale),
      v.autoscale, v.note, el('div', { class: 'table-wrap' }, table));

    v.minus.addEventListener('click', () => scale(v, Math.max(0, v.desired - 1)));
    v.plus.addEventListener('click', () => scale(v, v.desired + 1));
    v.set.addEventListener('click', () => scale(v, Number(v.input.value)));
    v.input.addEventListener('input', () => { v.dirty = true; });
    v.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') scale(v, Number(v.input.value));
      if (e.key === 'Escape') { v.dirty = false; v.input.value = String(v.desired); }
    });
    return v;
  }

  // Replicas ready *and* in the gateway's rotation: an ejected or unhealthy replica is
  // running but gets no requests, so it is not counted as ready (the server's history
  // counts the same way). A replica the gateway does not route to (a worker) counts when
  // it is ready. Without a replica list, the service's own count.
  function inRotation(s) {
    if (!Array.isArray(s.replicas) || !s.replicas.length) return s.ready;
    return s.replicas.filter((r) => r.state === 'ready' && (!r.traffic || r.traffic.health === 'healthy')).length;
  }

  // Ready replicas the gateway does not send to, by why: `1 ejected`, `1 unhealthy`.
  function outOfRotation(s) {
    const out = new Map();
    for (const r of s.replicas || []) {
      if (r.state === 'ready' && r.traffic && r.traffic.health !== 'healthy') {
        out.set(r.traffic.health, (out.get(r.traffic.health) || 0) + 1);
      }
    }
    return [...out].map(([why, n]) => n + ' ' + why).join(', ');
  }

  function updateService(v, s, rates) {
    const ready = inRotation(s);
    v.desired = s.desired;
    v.root.dataset.state = s.state;
    v.root.dataset.desired = String(s.desired);
    v.root.dataset.ready = String(ready);
    // A worker has no port, no readiness check and no requests: its line says what it
    // consumes instead, and its table leaves out the request columns.
    v.root.dataset.kind = s.worker ? 'worker' : 'web';
    setText(v.badge, s.state);
    setClass(v.badge, 'badge s-' + s.state);
    const out = outOfRotation(s);
    setText(v.count, ready + '/' + s.desired + ' ready' + (out ? ' (' + out + ')' : ''));
    const r = rates.services.get(s.name) || {};
    const t = s.traffic;
    const queue = s.autoscale && s.autoscale.backlog;
    const parts = s.worker
      ? [count(ready, 'consumer', 'consumers')]
      : [fmtRate(r.rpsAvg) + ' req/s', (typeof r.errAvg === 'number' ? r.errAvg.toFixed(1) + '%' : '—') + ' 5xx'];
    if (queue) parts.push(backlogText(queue));
    if (t) {
      parts.push('p95 ' + (typeof t.latency_p95_ms === 'number' ? fmtMs(t.latency_p95_ms) : '—'));
      if (t.retries_total) parts.push(count(t.retries_total, 'retry', 'retries'));
      if (t.hedges_total) parts.push(count(t.hedges_total, 'hedge', 'hedges'));
      if (t.ejections_total) parts.push(count(t.ejections_total, 'ejection', 'ejections'));
      if (t.breaker) parts.push('breaker ' + t.breaker);
      if (t.held) parts.push(t.held + ' held');
    }
    const ro = rolloutText(s.rollout);
    if (ro) parts.push(ro);
    setText(v.stats, parts.join(' · '));

    const isStatic = s.replicas.length > 0 && s.replicas.every((x) => x.pid == null && x.endpoint == null
      && typeof x.message === 'string' && x.message.startsWith('static server'));
    v.scale.hidden = isStatic;
    if (!v.dirty && document.activeElement !== v.input) v.input.value = String(s.desired);

    const a = s.autoscale;
    v.autoscale.hidden = !a;
    if (a) setText(v.autoscale, autoscaleText(a));

    renderReplicas(v, s, rates);
  }

  // A rollout under way or rolled back, in a few words; nothing once complete (the
  // replicas' version column tells).
  function rolloutText(r) {
    if (!r || r.state === 'complete') return '';
    if (r.state === 'rolledback') {
      return 'rollout to ' + r.version + ' rolled back' + (r.previous ? ' to ' + r.previous : '')
        + (r.message ? ': ' + r.message : '');
    }
    return 'rollout to ' + r.version + ': ' + r.updated + '/' + r.desired + ' updated, '
      + r.updated_ready + ' ready';
  }

  // The queue behind a backlog target: `backlog 1,234 · 48.2/s per replica`, or why it is
  // unknown.
  function backlogText(b) {
    if (b.failures > 0) {
      return 'backlog unknown: ' + count(b.failures, 'failed read', 'failed reads')
        + (b.fallback ? ' (fallback count in force)' : '');
    }
    if (typeof b.messages !== 'number') return 'backlog not read yet';
    const parts = ['backlog ' + b.messages.toLocaleString('en-US')];
    if (typeof b.rate_per_replica === 'number') parts.push(fmtRate(b.rate_per_replica) + '/s per replica');
    if (typeof b.partitions === 'number') parts.push(count(b.partitions, 'partition', 'partitions'));
    return parts.join(' · ');
  }

  function autoscaleText(a) {
    const parts = ['autoscaled ' + a.min + '–' + a.max, 'wants ' + a.desired];
    const readings = (a.readings || []).map((r) => r.name + ' ' + fmtReading(r.name, r.value) + ' / ' + fmtReading(r.name, r.target));
    if (readings.length) parts.push(readings.join(', '));
    else if (a.targets) parts.push(a.targets);
    if (a.panic) parts.push('PANIC (burst: scaling up, no scale-down)');
    if (a.reason) parts.push(a.reason);
    if (a.limited_by) parts.push('limited by ' + a.limited_by);
    if (a.last_scaled_ms) parts.push('last scaled ' + ago(a.last_scaled_ms) + ' ago');
    if (a.held) parts.push(count(a.held, 'request', 'requests') + ' held');
    if (a.backlog) {
      parts.push('queue: ' + a.backlog.source);
      if (a.backlog.error) parts.push(a.backlog.error);
    }
    return parts.join(' · ');
  }

  function renderReplicas(v, s, rates) {
    const seen = new Set();
    s.replicas.forEach((r, i) => {
      seen.add(r.index);
      let row = v.rows.get(r.index);
      if (!row) {
        row = replicaRow(s.name, r.index);
        v.rows.set(r.index, row);
      }
      if (v.tbody.children[i] !== row.tr) v.tbody.insertBefore(row.tr, v.tbody.children[i] || null);
      updateReplica(row, r, rates.replicas.get(s.name + '/' + r.index));
    });
    for (const [index, row] of v.rows) {
      if (!seen.has(index)) {
        row.tr.remove();
        v.rows.delete(index);
      }
    }
  }

  function replicaRow(service, index) {
    const tr = el('tr', { 'data-replica': service + '/' + index });
    const cells = REPLICA_COLUMNS.map(([label, cls]) => {
      const td = el('td', { class: (cls + ' ' + columnClass(label)).trim() });
      tr.append(td);
      return td;
    });
    const state = el('span', { class: 'badge' });
    const health = el('span', { class: 'badge' });
    const message = el('span', { class: 'message' });
    cells[1].append(state);
    cells[2].append(health);
    cells[12].append(message);
    setText(cells[0], String(index));
    return { tr, cells, state, health, message };
  }

  // `c-port`, `c-inflight`…: a column's cells and header share it (CSS hides a worker's
  // request columns).
  function columnClass(label) {
    return 'c-' + (label === '#' ? 'index' : label.replace(/[^a-z]/gi, ''));
  }

  function updateReplica(row, r, rps) {
    const c = row.cells;
    row.tr.dataset.state = r.state;
    row.tr.dataset.pid = r.pid == null ? '' : String(r.pid);
    setText(row.state, r.state);
    setClass(row.state, 'badge s-' + r.state);
    const t = r.traffic;
    setText(row.health, t ? t.health : '—');
    setClass(row.health, 'badge s-' + (t ? t.health : 'none'));
    row.health.title = t && t.reason ? t.reason : '';
    // A pod (Kubernetes mode) in place of a process: its name, and its node on hover.
    setText(c[3], r.pod ? r.pod.name : r.pid == null ? '—' : String(r.pid));
    c[3].title = r.pod && r.pod.node ? 'node ' + r.pod.node : '';
    setText(c[4], r.port == null ? '—' : String(r.port));
    setText(c[5], String(r.restarts));
    setText(c[6], r.pid == null ? '—' : fmtDuration(r.uptime_secs));
    setText(c[7], typeof r.cpu_percent === 'number' ? r.cpu_percent.toFixed(1) + '%' : '—');
    setText(c[8], typeof r.rss_bytes === 'number' ? fmtBytes(r.rss_bytes) : '—');
    setText(c[9], t ? String(t.in_flight) : '—');
    setText(c[10], fmtRate(rps));
    setText(c[11], r.version || '—');
    const msg = [];
    if (r.message) msg.push(r.message);
    if (t && t.reason && t.reason !== r.message) msg.push(t.reason);
    if (r.last_exit && r.state !== 'ready') msg.push('last exit: ' + fmtExit(r.last_exit));
    // Wrapped, at most two lines (CSS); the whole text on hover.
    const text = msg.join(' · ');
    setText(row.message, text);
    row.message.title = text;
  }

  async function scale(v, n) {
    if (!Number.isInteger(n) || n < 0 || n > 1000) {
      note(v, 'replicas: a whole number from 0 to 1000', true);
      return;
    }
    for (const b of [v.minus, v.plus, v.set]) b.disabled = true;
    try {
      const r = await api('services/' + encodeURIComponent(v.name) + '/scale', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ replicas: n }),
      });
      const body = await r.json().catch(() => ({}));
      if (r.ok) {
        v.desired = body.replicas;
        v.dirty = false;
        v.input.value = String(body.replicas);
        note(v, body.note || 'scaled to ' + body.replicas + (body.replicas === 1 ? ' replica' : ' replicas'), false);
      } else {
        note(v, body.error || 'scale refused: HTTP ' + r.status, true);
      }
    } catch (e) {
      note(v, 'scale failed: ' + e.message, true);
    } finally {
      for (const b of [v.minus, v.plus, v.set]) b.disabled = false;
    }
  }

  function note(v, text, isError) {
    setText(v.note, text);
    setClass(v.note, isError ? 'note error' : 'note');
    v.note.hidden = false;
    window.clearTimeout(v.noteTimer);
    v.noteTimer = window.setTimeout(() => { v.note.hidden = true; }, NOTE_MS);
  }

  function renderTotals(services, rates) {
    let ready = 0;
    let desired = 0;
    let rps = 0;
    let known = false;
    for (const s of services) {
      ready += inRotation(s);
      desired += s.desired;
      const r = rates.services.get(s.name);
      if (r && typeof r.rpsAvg === 'number') { rps += r.rpsAvg; known = true; }
    }
    setText($('totals'), services.length + (services.length === 1 ? ' service' : ' services') + ' · '
      + ready + '/' + desired + ' replicas ready · ' + (known ? fmtRate(rps) : '—') + ' req/s');
  }

  // ---- events and routes --------------------------------------------------------------

  function renderEvents(events) {
    if (!events.length) return;
    const list = $('events');
    const frag = document.createDocumentFragment();
    // Newest first.
    for (let i = events.length - 1; i >= 0 && i >= events.length - MAX_EVENTS; i--) {
      const e = events[i];
      const who = !e.service ? 'shoal' : e.replica == null ? e.service : e.service + '/' + e.replica;
      frag.append(el('li', { 'data-kind': e.kind, 'data-who': who },
        el('span', { class: 't' }, clock(e.at_ms)),
        el('span', { class: 'who', title: who }, who),
        el('span', { class: 'kind k-' + e.kind }, e.kind),
        el('span', { class: 'msg' }, e.message || '')));
    }
    list.prepend(frag);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  async function loadRoutes() {
    let routes;
    try {
      const r = await api('routes');
      if (!r.ok) return;
      routes = await r.json();
    } catch (_) {
      return;
    }
    const body = $('routes').tBodies[0];
    const rows = (Array.isArray(routes) ? routes : []).map((rt) => {
      const extra = [];
      if (rt.middlewares && rt.middlewares.length) extra.push(rt.middlewares.join(', '));
      if (rt.entrypoints) extra.push('entrypoints: ' + rt.entrypoints.join(', '));
      const rule = el('td', { title: rt.name }, rt.rule);
      if (extra.length) rule.append(el('div', { class: 'stats' }, extra.join(' · ')));
      // A split: each service with its weight now in force.
      const to = rt.weights && rt.weights.length
        ? rt.weights.map(([service, weight]) => service + ' ' + weight).join(' · ')
        : rt.service;
      const target = el('td', {}, to);
      if (rt.mirror) target.append(el('div', { class: 'stats' }, 'mirror ' + rt.mirror[1] + '% to ' + rt.mirror[0]));
      return el('tr', { 'data-route': rt.name }, rule, target, el('td', { class: 'num' }, String(rt.priority)));
    });
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: '3', class: 'empty' }, 'no routes')));
    body.replaceChildren(...rows);
  }

  // ---- charts -------------------------------------------------------------------------

  function colorOf(name) {
    if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
    return colors.get(name);
  }

  function renderLegend(services) {
    const names = services.map((s) => s.name).join('\n');
    const legend = $('legend');
    if (legend.dataset.names === names) return;
    legend.dataset.names = names;
    legend.replaceChildren(...services.map((s) => {
      const sw = el('span', { class: 'swatch' });
      sw.style.background = colorOf(s.name);
      return el('span', {}, sw, s.name);
    }));
  }

  function drawCharts() {
    const css = getComputedStyle(document.documentElement);
    const theme = {
      grid: css.getPropertyValue('--grid').trim() || '#ddd',
      muted: css.getPropertyValue('--muted').trim() || '#666',
      font: '11px ' + (css.getPropertyValue('--font').trim() || 'sans-serif'),
    };
    for (const c of charts) drawChart(c, theme);
  }

  function drawChart(chart, theme) {
    const canvas = chart.canvas;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h || !history.length) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    const now = history[history.length - 1].t;
    const span = Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, now - history[0].t));
    const t0 = now - span;
    let max = 0;
    for (const sample of history) {
      for (const name in sample.per) {
        const val = sample.per[name][chart.key];
        if (typeof val === 'number' && val > max) max = val;
      }
    }
    const top = niceCeil(Math.max(max, chart.floor));
    const left = 40;
    const right = 6;
    const topPad = 6;
    const bottom = 16;
    const pw = w - left - right;
    const ph = h - topPad - bottom;
    const x = (t) => left + ((t - t0) / span) * pw;
    const y = (val) => topPad + ph - (val / top) * ph;

    ctx.font = theme.font;
    ctx.lineWidth = 1;
    ctx.strokeStyle = theme.grid;
    ctx.fillStyle = theme.muted;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 3; i++) {
      const val = (top * i) / 3;
      const yy = Math.round(y(val)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(w - right, yy);
      ctx.stroke();
      ctx.fillText(fmtAxis(val) + (i === 3 ? chart.unit : ''), left - 4, yy);
    }
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    ctx.fillText('−' + (span / 60000).toFixed(1).replace(/\.0$/, '') + ' min', left, h - 3);
    ctx.textAlign = 'right';
    ctx.fillText('now', w - right, h - 3);

    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    for (const [name, color] of colors) {
      ctx.strokeStyle = color;
      ctx.beginPath();
      let pen = false;
      for (const sample of history) {
        const s = sample.per[name];
        const val = s ? s[chart.key] : null;
        if (typeof val !== 'number' || sample.t < t0) { pen = false; continue; }
        if (pen) ctx.lineTo(x(sample.t), y(val));
        else { ctx.moveTo(x(sample.t), y(val)); pen = true; }
      }
      ctx.stroke();
    }
  }

  window.addEventListener('resize', drawCharts);

  // ---- helpers ------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    for (const c of children) node.append(c);
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setClass(node, cls) {
    if (node.className !== cls) node.className = cls;
  }

  function count(n, one, many) {
    return n + ' ' + (n === 1 ? one : many);
  }

  function num(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.5, 2, 3, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmtAxis(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, '') + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(1).replace(/\.0$/, '') + 'k';
    return v >= 10 || v === 0 ? String(Math.round(v)) : v.toFixed(1).replace(/\.0$/, '');
  }

  function fmtRate(v) {
    if (typeof v !== 'number') return '—';
    return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }

  function fmtMs(v) {
    return v >= 100 ? v.toFixed(0) + ' ms' : v.toFixed(1) + ' ms';
  }

  function fmtBytes(b) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i === 0 ? String(b) : b.toFixed(1)) + ' ' + units[i];
  }

  function fmtDuration(secs) {
    const s = Math.max(0, Math.floor(secs || 0));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60) + 's';
    return Math.floor(s / 3600) + 'h' + Math.floor((s % 3600) / 60) + 'm';
  }

  function fmtExit(e) {
    if (e && typeof e.code === 'number') return 'exit code ' + e.code;
    if (e && typeof e.signal === 'number') return 'signal ' + e.signal;
    return '?';
  }

  function fmtReading(name, v) {
    if (typeof v !== 'number') return '?';
    if (name === 'cpu') return Math.round(v * 100) + '%';
    if (name === 'memory') return fmtBytes(Math.round(v));
    if (name === 'latency_p95') return fmtMs(v);
    if (Number.isInteger(v)) return String(v);
    return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }

  function ago(ms) {
    return fmtDuration((Date.now() - ms) / 1000);
  }

  function clock(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, '0');
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  loadRoutes();
  connect();
})();

// cairn's status page: reads GET /v1/cluster/status and GET /v1/stats
// from the member that served it, every REFRESH_MS, with the signed-in
// user's bearer token when access control is on (docs/ui.md). Everything
// shown is built with DOM calls and textContent: no markup from the API is
// ever parsed.
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const TIMEOUT_MS = 5000;
  const TOKEN_KEY = 'cairn-token';
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  let paused = false;
  let timer = null;
  let lastAnnounced = '';
  let lastGood = null; // when the cluster status last loaded
  let signinShown = false;
  // needSignin stops the refreshes until the user signs in.
  let needSignin = false;
  // memoryToken keeps the token when sessionStorage refuses it.
  let memoryToken = '';

  // ---- API -------------------------------------------------------------

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  function setToken(t) {
    try {
      if (t) {
        sessionStorage.setItem(TOKEN_KEY, t);
      } else {
        sessionStorage.removeItem(TOKEN_KEY);
      }
    } catch (e) {
      // Storage refused (private mode): the token lasts until the page
      // is left, in memory only.
    }
    memoryToken = t;
  }

  // call fetches path from this member and decodes its JSON answer:
  // {status, body} (body null when the answer is not JSON). The signed-in
  // user's token goes with it unless anonymous is set.
  async function call(path, init, anonymous) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    const headers = Object.assign({ 'Accept': 'application/json' }, (init && init.headers) || {});
    const tok = currentToken();
    if (tok && !anonymous) {
      headers.Authorization = 'Bearer ' + tok;
    }
    try {
      const resp = await fetch(path, Object.assign({}, init, { headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit' }));
      let body = null;
      try {
        body = await resp.json();
      } catch (e) {
        body = null;
      }
      return { status: resp.status, body };
    } finally {
      clearTimeout(t);
    }
  }

  function errorMessage(r) {
    if (r.body && r.body.error && r.body.error.message) {
      return r.body.error.message;
    }
    return 'HTTP ' + r.status;
  }

  // ---- helpers -----------------------------------------------------------

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) {
      e.textContent = String(text);
    }
    if (cls) {
      e.className = cls;
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) {
      e.setAttribute(k, String(attrs[k]));
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) {
      node.removeChild(node.firstChild);
    }
  }

  function clock(t) {
    const d = new Date(t);
    if (isNaN(d.getTime())) {
      return String(t);
    }
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  function bytes(n) {
    if (!n) {
      return '—';
    }
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i];
  }

  function num(v, digits) {
    if (!isFinite(v)) {
      return '0';
    }
    if (v === 0) {
      return '0';
    }
    if (Math.abs(v) >= 100) {
      return v.toFixed(0);
    }
    return v.toFixed(digits === undefined ? 1 : digits);
  }

  function announce(text) {
    // The live region speaks only when what it says changes.
    if (text !== lastAnnounced) {
      lastAnnounced = text;
      $('status').textContent = text;
    }
  }

  // ---- sign-in -----------------------------------------------------------

  function currentToken() {
    return token() || memoryToken;
  }

  function showSignin(message) {
    needSignin = true;
    clearTimeout(timer);
    $('signin').hidden = false;
    $('cluster').hidden = true;
    $('traffic').hidden = true;
    $('signout').hidden = true;
    $('signin-error').textContent = message || '';
    announce(message || 'Access control is on: sign in to see the cluster.');
    if (!signinShown) {
      signinShown = true;
      $('user').focus();
    }
  }

  async function signin(ev) {
    ev.preventDefault();
    const user = $('user').value;
    const password = $('password').value;
    if (!user || !password) {
      $('signin-error').textContent = 'Enter a user name and a password.';
      return;
    }
    let r;
    try {
      r = await call('/v1/auth/authenticate', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user, password }),
      }, true);
    } catch (e) {
      $('signin-error').textContent = 'Could not reach the member: ' + e.message;
      return;
    }
    if (r.status !== 200 || !r.body || !r.body.token) {
      $('signin-error').textContent = 'Sign-in failed: ' + errorMessage(r);
      return;
    }
    $('password').value = '';
    $('signin-error').textContent = '';
    setToken(r.body.token);
    needSignin = false;
    $('signin').hidden = true;
    signinShown = false;
    $('main').focus();
    refreshNow();
  }

  function signout() {
    setToken('');
    showSignin('Signed out.');
  }

  // ---- the cluster ---------------------------------------------------------

  function renderCluster(cs) {
    $('signin').hidden = true;
    $('cluster').hidden = false;
    $('signout').hidden = !currentToken();
    const members = cs.members || [];
    const reachable = members.filter((m) => m.reachable).length;
    const leader = members.find((m) => m.leader) || members.find((m) => m.id === cs.leader);

    $('served-by').textContent = 'Served by ' + cs.node;
    $('leader').textContent = cs.leader || 'none known';
    $('term').textContent = String(cs.term);
    $('member-count').textContent = members.length + ' (' + reachable + ' reachable)';
    const head = $('chain-head');
    clear(head);
    if (leader && leader.status) {
      head.appendChild(document.createTextNode('revision ' + leader.status.revision + ', hash '));
      head.appendChild(el('code', leader.status.hash, 'hash'));
    } else {
      head.textContent = 'unknown (no leader answered)';
    }

    const tbody = $('members').tBodies[0];
    clear(tbody);
    const alarms = [];
    for (const m of members) {
      const s = m.status;
      const tr = document.createElement('tr');
      tr.dataset.member = m.id;
      if (m.leader) {
        tr.className = 'leader';
      }
      const th = el('th', m.id);
      th.scope = 'row';
      if (m.id === cs.node) {
        th.appendChild(el('span', ' (this page)', 'muted'));
      }
      tr.appendChild(th);
      tr.appendChild(el('td', m.role));
      tr.appendChild(el('td', s ? s.state : 'unknown'));
      const health = el('td', m.health || (m.reachable ? 'unknown' : 'unreachable'), m.health === 'ready' ? 'ok' : 'bad');
      if (m.error) {
        health.appendChild(el('span', m.error, 'detail'));
      }
      tr.appendChild(health);
      tr.appendChild(el('td', s ? s.revision : 'unknown', 'num'));
      tr.appendChild(el('td', s ? m.lag : 'unknown', 'num'));
      tr.appendChild(el('td', s ? s.last_contact || 'never' : 'unknown'));
      tr.appendChild(el('td', s ? s.version || 'unknown' : 'unknown'));
      tr.appendChild(el('td', s ? bytes(s.store_bytes) : 'unknown', 'num'));
      tr.appendChild(el('td', s ? s.watchers : 'unknown', 'num'));
      const memberAlarms = (s && s.alarms) || [];
      tr.appendChild(el('td', !s ? 'unknown' : memberAlarms.length ? memberAlarms.map((a) => a.type).join(', ') : 'none', memberAlarms.length ? 'bad' : ''));
      for (const a of memberAlarms) {
        alarms.push(a);
      }
      tr.appendChild(scrubCell(s));
      tbody.appendChild(tr);
    }

    const list = $('alarms');
    clear(list);
    for (const a of alarms) {
      list.appendChild(el('li', (a.member || '?') + ': ' + a.type + ' since ' + clock(a.since) + ' — ' + a.message, 'bad'));
    }
    $('no-alarms').hidden = alarms.length > 0;

    const mirror = renderMirror(leader && leader.status ? leader.status.mirror : null);

    lastGood = new Date();
    $('updated').textContent = 'Updated at ' + clock(lastGood) + '.';
    let text = 'Leader ' + (cs.leader || 'unknown') + ', term ' + cs.term + '; ' + reachable + ' of ' + members.length + ' members reachable';
    if (alarms.length) {
      text += '; ' + alarms.length + (alarms.length === 1 ? ' alarm' : ' alarms') + ' raised';
    }
    if (mirror) {
      text += '; ' + mirror;
    }
    announce(text + '.');
  }

  // renderMirror shows the cluster's mirror state (as the leader applied
  // it): as a standby (its source and lag) and as a source (its mirrors'
  // checkpoints). The section stays hidden on a primary that has neither.
  // It returns a sentence for the status line, or '' when hidden.
  function renderMirror(m) {
    const section = $('mirror');
    const checkpoints = (m && m.checkpoints) || [];
    const standby = m && m.state && m.state !== 'primary';
    if (!m || (!standby && !checkpoints.length && !m.promoted_at)) {
      section.hidden = true;
      return '';
    }
    section.hidden = false;
    const dl = $('mirror-summary');
    clear(dl);
    const row = (term, value, cls) => {
      dl.appendChild(el('dt', term));
      dl.appendChild(el('dd', String(value), cls));
    };
    row('State', m.state, standby && m.state !== 'following' ? 'bad' : '');
    let sentence = '';
    if (standby) {
      row('Source', m.source ? m.source + ' (streaming)' : (m.sources || []).join(', ') || 'none');
      if (m.source_cluster_id) {
        row('Source cluster', m.source_cluster_id);
      }
      if (m.filtered) {
        row('Filter', 'include ' + ((m.include || []).join(', ') || 'all') + '; exclude ' + ((m.exclude || []).join(', ') || 'none'));
      }
      row('Head', m.head);
      row('Source head', m.source_head);
      row('Lag', m.lag_revisions + ' revisions, ' + num(m.lag_seconds, 1) + ' s', m.lag_revisions > 0 ? 'bad' : 'ok');
      if (m.max_rate) {
        row('Max rate', bytes(m.max_rate) + '/s');
      }
      sentence = 'standby ' + m.state + ', ' + m.lag_revisions + ' revisions behind its source';
    }
    if (m.message) {
      row('Message', m.message, 'bad');
    }
    if (m.last_error) {
      row('Last error', m.last_error, 'bad');
    }
    if (m.diverged_file) {
      row('Diverged transactions', m.diverged_file + (m.diverged_member ? ' on member ' + m.diverged_member : ''));
    }
    if (m.promoted_at) {
      row('Promoted', 'at revision ' + m.promoted_at + (m.promoted_time ? ', ' + clock(m.promoted_time) : '') + ', from ' + (m.promoted_from || 'unknown'));
    }
    $('checkpoints-wrap').hidden = checkpoints.length === 0;
    const tbody = $('checkpoints').tBodies[0];
    clear(tbody);
    for (const cp of checkpoints) {
      const tr = document.createElement('tr');
      const th = el('th', cp.id);
      th.scope = 'row';
      tr.appendChild(th);
      tr.appendChild(el('td', cp.revision, 'num'));
      tr.appendChild(el('td', clock(cp.last_progress)));
      tr.appendChild(el('td', cp.window));
      tr.appendChild(el('td', cp.released ? 'no: released (no progress within its window)' : 'yes', cp.released ? 'bad' : 'ok'));
      tbody.appendChild(tr);
    }
    if (checkpoints.length) {
      sentence += (sentence ? '; ' : '') + checkpoints.length + (checkpoints.length === 1 ? ' mirror' : ' mirrors') + ' of this cluster';
    }
    return sentence;
  }

  function scrubCell(s) {
    if (!s) {
      return el('td', 'unknown');
    }
    const sc = s.last_scrub;
    if (!sc) {
      return el('td', 'none since start');
    }
    if (sc.ok) {
      return el('td', 'OK at revision ' + sc.revision + ', ' + clock(sc.time), 'ok');
    }
    return el('td', 'FAILED at ' + clock(sc.time) + ': ' + (sc.error || 'no reason given'), 'bad');
  }

  // ---- the plots -----------------------------------------------------------

  const W = 480;
  const H = 180;
  const PAD = { l: 44, r: 10, t: 10, b: 28 };
  // A plot spans at least this long, ending at its last point.
  const MIN_WINDOW_MS = 5 * 60 * 1000;

  function niceMax(v) {
    if (!(v > 0)) {
      return 1;
    }
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (v <= m * p) {
        return m * p;
      }
    }
    return 10 * p;
  }

  // plot draws series ({name, cls, values}) over times (ms) into figure:
  // a line each, and a dot on its latest value.
  function plot(figure, id, title, unit, times, series, summary) {
    clear(figure);
    figure.appendChild(el('figcaption', title + ' (' + unit + ')', 'plot-title'));
    let top = 0;
    for (const s of series) {
      for (const v of s.values) {
        top = Math.max(top, v);
      }
    }
    top = niceMax(top);
    const t1 = times.length ? times[times.length - 1] : Date.now();
    const t0 = Math.min(times.length ? times[0] : t1, t1 - MIN_WINDOW_MS);
    const span = t1 - t0;
    const x = (t) => PAD.l + ((t - t0) / span) * (W - PAD.l - PAD.r);
    const y = (v) => PAD.t + (1 - v / top) * (H - PAD.t - PAD.b);

    const g = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': id + '-title ' + id + '-desc', 'class': 'plot' });
    const tt = svg('title', { id: id + '-title' });
    tt.textContent = title;
    const desc = svg('desc', { id: id + '-desc' });
    desc.textContent = summary;
    g.appendChild(tt);
    g.appendChild(desc);
    for (const f of [0, 0.5, 1]) {
      const v = top * f;
      g.appendChild(svg('line', { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), 'class': 'grid' }));
      const label = svg('text', { x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end', 'class': 'axis' });
      label.textContent = num(v, 1);
      g.appendChild(label);
    }
    const minutes = Math.round(span / 60000);
    const left = svg('text', { x: PAD.l, y: H - 8, 'text-anchor': 'start', 'class': 'axis' });
    left.textContent = minutes >= 1 ? minutes + ' min ago' : Math.round(span / 1000) + ' s ago';
    const right = svg('text', { x: W - PAD.r, y: H - 8, 'text-anchor': 'end', 'class': 'axis' });
    right.textContent = times.length ? clock(t1) : 'no data yet';
    g.appendChild(left);
    g.appendChild(right);
    for (const s of series) {
      if (!s.values.length) {
        continue;
      }
      const pts = s.values.map((v, i) => x(times[i]).toFixed(1) + ',' + y(v).toFixed(1)).join(' ');
      g.appendChild(svg('polyline', { points: pts, 'class': 'series ' + s.cls }));
      const last = s.values.length - 1;
      g.appendChild(svg('circle', { cx: x(times[last]).toFixed(1), cy: y(s.values[last]).toFixed(1), r: 3, 'class': 'dot ' + s.cls }));
    }
    figure.appendChild(g);
    const legend = el('ul', null, 'legend');
    legend.setAttribute('aria-hidden', 'true'); // the summary below says it all
    for (const s of series) {
      const li = el('li');
      li.appendChild(el('span', null, 'swatch ' + s.cls));
      li.appendChild(document.createTextNode(s.name));
      legend.appendChild(li);
    }
    figure.appendChild(legend);
    figure.appendChild(el('p', summary, 'plot-summary'));
  }

  function describe(name, unit, values, times) {
    if (!values.length) {
      return name + ': no data yet.';
    }
    let peak = 0;
    let at = 0;
    let sum = 0;
    values.forEach((v, i) => {
      sum += v;
      if (v > peak) {
        peak = v;
        at = i;
      }
    });
    const last = values[values.length - 1];
    let s = name + ': latest ' + num(last, 2) + ' ' + unit + ', average ' + num(sum / values.length, 2) + ' ' + unit;
    if (peak > 0) {
      s += ', highest ' + num(peak, 2) + ' ' + unit + ' at ' + clock(times[at]);
    }
    return s + '.';
  }

  function renderStats(st) {
    $('traffic').hidden = false;
    const pts = st.points || [];
    const secs = st.interval_seconds || 5;
    const times = pts.map((p) => new Date(p.time).getTime());
    const span = pts.length ? Math.round((pts.length * secs) / 60) : 0;
    $('traffic-about').textContent = 'Requests answered by ' + st.node + ' (the member serving this page), in ' + secs +
      '-second intervals' + (pts.length ? ' over the last ' + (span >= 1 ? span + ' min' : pts.length * secs + ' s') : ': the first interval has not ended yet') + '.';

    const writes = pts.map((p) => p.writes / secs);
    const reads = pts.map((p) => p.reads / secs);
    const errors = pts.map((p) => p.errors / secs);
    plot($('plot-rate'), 'rate', 'Request rate on ' + st.node, 'requests per second', times, [
      { name: 'writes per second', cls: 's1', values: writes },
      { name: 'reads per second', cls: 's2', values: reads },
      { name: 'failed per second', cls: 's3', values: errors },
    ], [describe('Writes', 'per second', writes, times), describe('Reads', 'per second', reads, times),
      describe('Failed requests', 'per second', errors, times)].join(' '));

    const lat = (kind, label) => {
      const p50 = pts.map((p) => p[kind + '_p50_ms']);
      const p99 = pts.map((p) => p[kind + '_p99_ms']);
      plot($('plot-' + kind), kind, label + ' latency on ' + st.node, 'ms', times, [
        { name: '50th percentile', cls: 's1', values: p50 },
        { name: '99th percentile', cls: 's4', values: p99 },
      ], [describe(label + ' latency, 50th percentile', 'ms', p50, times), describe('99th percentile', 'ms', p99, times)].join(' '));
    };
    lat('write', 'Write');
    lat('read', 'Read');
  }

  // ---- the loop --------------------------------------------------------------

  async function refresh() {
    const sent = currentToken();
    let r;
    try {
      r = await call('/v1/cluster/status');
    } catch (e) {
      const since = lastGood ? ' Last update at ' + clock(lastGood) + '.' : '';
      announce('Cannot reach the member serving this page (' + location.host + '): ' + (e.name === 'AbortError' ? 'no answer in ' + TIMEOUT_MS / 1000 + ' s' : e.message) + '.' + since);
      return;
    }
    if (currentToken() !== sent) {
      return; // signed in or out meanwhile: this answer is for the old user
    }
    if (r.status === 401) {
      setToken('');
      showSignin(sent ? 'Your session ended (' + errorMessage(r) + '): sign in again.' : '');
      return;
    }
    if (r.status === 403) {
      // Refreshing would only be refused again (and logged as such):
      // stop until another user signs in.
      needSignin = true;
      $('cluster').hidden = true;
      $('traffic').hidden = true;
      $('signout').hidden = false;
      announce('This user may not see the cluster status (it needs an admin role): ' + errorMessage(r) + '. Sign out and sign in as another user.');
      return;
    }
    if (r.status !== 200 || !r.body) {
      announce('The cluster status is not available: ' + errorMessage(r) + '.');
      return;
    }
    renderCluster(r.body);
    try {
      const s = await call('/v1/stats');
      if (s.status === 200 && s.body) {
        renderStats(s.body);
      }
    } catch (e) {
      // The cluster's status above says whether the member answers.
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused && !needSignin) {
      timer = setTimeout(refreshNow, REFRESH_MS);
    }
  }

  let running = false;
  async function refreshNow() {
    if (running) {
      return;
    }
    running = true;
    try {
      await refresh();
    } finally {
      running = false;
      schedule();
    }
  }

  function togglePause() {
    paused = !paused;
    const b = $('pause');
    b.setAttribute('aria-pressed', String(paused));
    b.textContent = paused ? 'Resume updates' : 'Pause updates';
    if (paused) {
      clearTimeout(timer);
      announce('Updates paused.');
    } else {
      lastAnnounced = '';
      refreshNow();
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', signin);
    $('signout').addEventListener('click', signout);
    $('pause').addEventListener('click', togglePause);
    refreshNow();
  });
})();

// UGRO dashboard: keeps the server-rendered page live over Server-Sent Events (no reloads).
// Everything shown is set with textContent, never as markup. Served by controller/observability/web/server.ts.

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const data = JSON.parse($('#ugro-data').textContent);
  const live = $('#live');
  const fmtDuration = (s) => {
    if (s === undefined || s === null || !Number.isFinite(s)) return '-';
    const r = Math.round(s);
    const pad = (n) => String(n).padStart(2, '0');
    if (r < 60) return `${r}s`;
    if (r < 3600) return `${Math.floor(r / 60)}m${pad(r % 60)}s`;
    if (r < 86400) return `${Math.floor(r / 3600)}h${pad(Math.floor((r % 3600) / 60))}m`;
    return `${Math.floor(r / 86400)}d${pad(Math.floor((r % 86400) / 3600))}h`;
  };
  const fmtRate = (v) => {
    if (v === undefined || !Number.isFinite(v)) return '-';
    if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
    return String(Number(v.toPrecision(3)));
  };
  const percentText = (r) => {
    if (r.percent === undefined) return r.step !== undefined ? `step ${r.step}` : '-';
    const steps = r.step !== undefined && r.totalSteps !== undefined ? ` (${r.step}/${r.totalSteps})` : '';
    return `${r.percent.toFixed(r.percent < 10 ? 1 : 0)}%${steps}`;
  };
  // The same cells as html.ts's rowCells.
  const cells = (r) => ({
    phase: r.phase,
    progress: percentText(r),
    eta: r.etaSeconds !== undefined ? fmtDuration(r.etaSeconds) : '-',
    rate: r.samplesPerS !== undefined ? `${fmtRate(r.samplesPerS)}/s` : '-',
    loss: r.loss !== undefined ? String(Number(r.loss.toPrecision(4))) : '-',
    owner: r.owner ?? '-',
    revision: r.revision ?? '-',
    restarts: r.infraRestarts ? `${r.restarts} (${r.infraRestarts} infra)` : String(r.restarts),
    nodes: r.nodes,
    reason: [r.reason, r.message].filter(Boolean).join(': ') || '-',
    attempt: String(r.attempt),
  });
  const fill = (root, r) => {
    const c = cells(r);
    for (const el of root.querySelectorAll('[data-k]')) {
      const k = el.dataset.k;
      if (!(k in c)) continue;
      const span = k === 'progress' && el.querySelector('span');
      (span || el).textContent = c[k];
      if (k === 'phase') el.className = `phase ${r.phase}`;
      if (k === 'progress') {
        const bar = el.querySelector('progress');
        if (bar) bar.value = r.percent ?? 0;
      }
    }
  };

  function jobsPage() {
    const tbody = $('#jobs tbody');
    const columns = [...document.querySelectorAll('#jobs thead th[data-k]')].map((th) => th.dataset.k);
    const rowOf = (name) => [...tbody.rows].find((tr) => tr.dataset.job === name);
    const newRow = (r) => {
      const tr = document.createElement('tr');
      tr.dataset.job = r.name;
      const td = document.createElement('td');
      const a = document.createElement('a');
      a.href = `/jobs/${encodeURIComponent(r.name)}`;
      a.textContent = r.name;
      td.append(a);
      tr.append(td);
      for (const k of columns) {
        const c = document.createElement('td');
        c.dataset.k = k;
        if (k === 'progress') c.append(document.createElement('progress'), ' ', document.createElement('span'));
        if (k === 'progress') c.querySelector('progress').max = 100;
        tr.append(c);
      }
      const next = [...tbody.rows].find((x) => x.dataset.job > r.name);
      tbody.insertBefore(tr, next ?? null);
      return tr;
    };
    const count = () => {
      $('#job-count').textContent = String(tbody.rows.length);
    };
    return {
      job(r) {
        fill(rowOf(r.name) ?? newRow(r), r);
        count();
      },
      removed({ name }) {
        rowOf(name)?.remove();
        count();
      },
      nodes(list) {
        for (const n of list) {
          const sec = document.querySelector(`[data-node="${CSS.escape(n.name)}"]`);
          if (!sec) continue;
          sec.className = `node ${n.status}`;
          $('.status', sec).textContent = n.status;
          for (const g of n.gpus) {
            const li = sec.querySelector(`[data-gpu="${g.index}"]`);
            if (!li) continue;
            const set = (k, v) => {
              const el = li.querySelector(`[data-k="${k}"]`);
              if (el) el.textContent = v;
            };
            set('util', g.utilizationPct !== undefined ? `${Math.round(g.utilizationPct)}%` : '-');
            const gib = (m) => (m / 1024).toFixed(1);
            set('mem', g.memoryUsedMiB !== undefined ? `${gib(g.memoryUsedMiB)}/${gib(g.memoryTotalMiB)} GiB` : '-');
            set('temp', g.temperatureC !== undefined ? `${Math.round(g.temperatureC)}°C` : '-');
            set('power', g.powerW !== undefined ? `${Math.round(g.powerW)} W` : '-');
            const line = li.querySelector('polyline');
            if (line && g.spark.length) {
              const end = g.spark[g.spark.length - 1][0];
              const pts = g.spark
                .filter(([, v]) => Number.isFinite(v))
                .map(([t, v]) => {
                  const x = Math.max(0, 120 - ((end - t) / 3600000) * 120);
                  return `${x.toFixed(1)},${(28 - (Math.max(0, Math.min(100, v)) / 100) * 28).toFixed(1)}`;
                });
              line.setAttribute('points', pts.join(' '));
            }
          }
        }
      },
    };
  }

  // Which points to draw: per column of x, the first, last, lowest and highest (the same as thin.ts).
  // Loops only: Math.min(...big) overflows the stack past ~125k points.
  const thin = (steps, loss, buckets) => {
    const n = steps.length;
    if (n <= 4 * buckets) return steps.map((_, i) => i);
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const x of steps) {
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    const span = hi - lo;
    const pick = new Map();
    for (let i = 0; i < n; i++) {
      const k = span > 0 ? Math.min(buckets - 1, Math.floor(((steps[i] - lo) / span) * buckets)) : 0;
      const y = loss[i];
      const b = pick.get(k) ?? { first: i, last: i, low: -1, high: -1, gap: -1 };
      pick.set(k, b);
      b.last = i;
      if (y === null || !Number.isFinite(y)) {
        if (b.gap < 0) b.gap = i;
        continue;
      }
      if (b.low < 0 || y < loss[b.low]) b.low = i;
      if (b.high < 0 || y > loss[b.high]) b.high = i;
    }
    const keep = new Set();
    for (const b of pick.values()) for (const i of [b.first, b.last, b.low, b.high, b.gap]) if (i >= 0) keep.add(i);
    return [...keep].sort((a, b) => a - b);
  };

  function lossChart(el, series) {
    // One x (steps) shared by every attempt, each attempt its own series; restarts marked. Each
    // attempt: `total` points in all, of which those drawn (`idx`: which ones), a few thousand at most.
    const attempts = series.map((s) => ({
      attempt: s.attempt,
      total: s.total,
      steps: [...s.steps],
      loss: [...s.loss],
      idx: [...s.idx],
    }));
    let plot;
    const build = () => {
      const xs = [...new Set(attempts.flatMap((a) => a.steps))].sort((a, b) => a - b);
      const index = new Map(xs.map((x, i) => [x, i]));
      const ys = attempts.map((a) => {
        const y = new Array(xs.length).fill(null);
        a.steps.forEach((s, i) => {
          y[index.get(s)] = a.loss[i];
        });
        return y;
      });
      el.dataset.points = String(attempts.reduce((n, a) => n + a.total, 0));
      el.dataset.drawn = String(attempts.reduce((n, a) => n + a.steps.length, 0));
      return [xs, ...ys];
    };
    const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
    const restarts = {
      hooks: {
        draw: [
          (u) => {
            const ctx = u.ctx;
            attempts.slice(1).forEach((a, i) => {
              if (!a.steps.length) return;
              const x = u.valToPos(a.steps[0], 'x', true);
              ctx.save();
              ctx.strokeStyle = colors[(i + 1) % colors.length];
              ctx.setLineDash([4, 3]);
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
              ctx.restore();
            });
          },
        ],
      },
    };
    const make = () => {
      el.textContent = '';
      const opts = {
        width: Math.min(900, el.clientWidth || 720),
        height: 320,
        scales: { x: { time: false } },
        axes: [{ label: 'step' }, { label: 'loss' }],
        series: [
          { label: 'step' },
          ...attempts.map((a, i) => ({
            label: `attempt ${a.attempt}`,
            stroke: colors[i % colors.length],
            width: 1.5,
            spanGaps: false,
            points: { show: false },
          })),
        ],
        plugins: [restarts],
      };
      plot = new window.uPlot(opts, build(), el);
    };
    if (window.uPlot) make();
    return {
      add(msg) {
        let a = attempts.find((x) => x.attempt === msg.attempt);
        const isNew = !a;
        if (!a) {
          a = { attempt: msg.attempt, total: 0, steps: [], loss: [], idx: [] };
          attempts.push(a);
          attempts.sort((x, y) => x.attempt - y.attempt);
        }
        // Points from msg.from on are replaced (a reconnect sends again what came since the page loaded).
        let keep = a.idx.length;
        while (keep > 0 && a.idx[keep - 1] >= msg.from) keep--;
        for (const k of ['steps', 'loss', 'idx']) a[k].length = keep;
        for (let i = 0; i < msg.steps.length; i++) {
          a.steps.push(msg.steps[i]);
          a.loss.push(msg.loss[i]);
          a.idx.push(msg.idx[i]);
        }
        a.total = msg.total;
        if (a.steps.length > 8000) {
          const kept = thin(a.steps, a.loss, 1200);
          for (const k of ['steps', 'loss', 'idx']) a[k] = kept.map((i) => a[k][i]);
        }
        if (!window.uPlot) return;
        if (isNew || !plot) make();
        else plot.setData(build());
      },
      have: () => attempts.map((a) => `${a.attempt}:${a.total}`).join(','),
    };
  }

  function jobPage() {
    const chart = lossChart($('#loss'), data.series);
    const log = $('#log');
    const atBottom = () => window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    const addLines = (lines) => {
      const follow = atBottom();
      for (const l of lines) {
        const span = document.createElement('span');
        span.textContent = `${l}\n`;
        log.append(span);
      }
      while (log.childNodes.length > 2000) log.firstChild.remove();
      if (follow) log.lastChild?.scrollIntoView({ block: 'end' });
    };
    const events = $('#events');
    return {
      query: () => {
        const q = new URLSearchParams({ job: data.job, rank: String(data.rank), from: String(data.logOffset) });
        q.set('have', chart.have());
        if (data.runId) q.set('run', data.runId);
        return q;
      },
      job(msg) {
        fill(document, msg.row);
        const tb = $('#job-nodes');
        if (tb && msg.status) {
          tb.textContent = '';
          for (const n of msg.status.nodes) {
            const tr = document.createElement('tr');
            for (const v of [n.host, n.nodeRank, n.globalRanks.join(', '), n.state, n.exitCode ?? '']) {
              const td = document.createElement('td');
              td.textContent = String(v);
              tr.append(td);
            }
            tb.append(tr);
          }
        }
      },
      loss: (msg) => chart.add(msg),
      log: (msg) => addLines(msg.lines),
      'log-reset': () => {
        log.textContent = '';
      },
      'log-error': (msg) => addLines([`(${msg.message})`]),
      event(e) {
        const tr = document.createElement('tr');
        tr.className = e.type;
        for (const v of [e.time, e.type, e.reason, e.message]) {
          const td = document.createElement('td');
          td.textContent = v;
          tr.append(td);
        }
        events.prepend(tr);
      },
      removed() {
        live.textContent = 'job deleted';
      },
    };
  }

  // A sweep's page is drawn whole by the server: the stream only says whether it is live.
  const handlers = data.page === 'job' ? jobPage() : data.page === 'sweep' ? {} : jobsPage();
  const q = handlers.query ? handlers.query() : new URLSearchParams();
  const es = new EventSource(`/api/stream?${q}`);
  es.onopen = () => {
    live.textContent = 'live';
    live.className = 'live on';
  };
  es.onerror = () => {
    // Closed for good: the server refused the stream (too many live views: 429/503) or is gone.
    live.textContent = es.readyState === EventSource.CLOSED ? 'offline (reload later)' : 'reconnecting';
    live.className = 'live';
  };
  for (const [name, fn] of Object.entries(handlers)) {
    if (name === 'query') continue;
    es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
  }
  window.ugro = { data, es };
})();

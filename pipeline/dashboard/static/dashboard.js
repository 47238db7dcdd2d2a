// The frontend-pulse dashboard: plain JS, no build step. Fetches /api/dashboard (and the health
// score from /api/report) every few seconds and renders the panels; charts are Chart.js (vendor/).
// Everything from the API is rendered as text (textContent), never as markup: issue titles and
// alert summaries come from browsers and services.
//
// For tests and curious people: window.pulseDashboard = {ready, lastUpdate, panels: {errorRate,
// topIssues, vitals, clicks, alerts}, rendered: {...}, error, needsToken, health, refreshSeconds}.
(() => {
  "use strict";

  const PERIODS = ["15m", "1h", "6h", "24h", "7d"];
  const REFRESH_CHOICES = [5, 10, 30, 60, 0];
  const TOKEN_KEY = "pulseDashboard.token";
  const REFRESH_KEY = "pulseDashboard.refreshSeconds";
  const API_TIMEOUT_MS = 30000;
  const REPORT_TIMEOUT_MS = 8000;
  const REPORT_EVERY_MS = 30000;  // the health report is heavier and moves slowly: at most this often
  const COLORS = { poor: "#c0262d", ni: "#e3a008", accent: "rgba(53, 89, 224, 0.18)", grid: "#eceef2" };

  const $ = (id) => document.getElementById(id);
  const store = {
    get(key) { try { return window.localStorage.getItem(key); } catch (e) { return null; } },
    set(key, value) { try { window.localStorage.setItem(key, value); } catch (e) { /* private mode */ } },
    remove(key) { try { window.localStorage.removeItem(key); } catch (e) { /* private mode */ } },
  };

  const params = new URLSearchParams(window.location.search);
  const initialRefresh = Number(params.get("refresh") ?? store.get(REFRESH_KEY) ?? 10);
  const state = {
    period: PERIODS.includes(params.get("period")) ? params.get("period") : "1h",
    project: params.get("project") || "",
    refreshSeconds: Number.isFinite(initialRefresh) && initialRefresh >= 0 ? initialRefresh : 10,
    timer: null,
    inFlight: false,
    pending: false,
    pendingForce: false,
    charts: {},
    lastSuccess: null,
    reportKey: null,
    reportAt: 0,
  };

  const dash = {
    ready: false,
    lastUpdate: null,
    panels: { errorRate: 0, topIssues: 0, vitals: 0, clicks: 0, alerts: 0 },
    rendered: { summary: false, errorRate: false, topIssues: false, vitals: false, clicks: false, alerts: false },
    error: null,
    needsToken: false,
    health: null,
    healthChecked: false,
    refreshSeconds: state.refreshSeconds,
    period: state.period,
    project: state.project,
    updates: 0,
  };
  window.pulseDashboard = dash;

  // ------------------------------------------------------------ formatting

  const intFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const fmtInt = (n) => (n === null || n === undefined ? "–" : intFormat.format(n));
  const fmtPct = (r, digits = 1) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(digits)} %`);
  const fmtMs = (ms) => {
    if (ms === null || ms === undefined) return "–";
    return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${intFormat.format(ms)} ms`;
  };
  const fmtVital = (v) => (v.p75 === null ? "no data" : v.unit === "ms" ? fmtMs(v.p75) : v.p75.toFixed(3));
  const fmtThreshold = (v, x) => (v.unit === "ms" ? `${intFormat.format(x)} ms` : String(x));
  const fmtClock = (d) => d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }

  function bucketLabel(ms, bucketS) {
    const d = new Date(ms);
    if (bucketS >= 3600) return d.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
    return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function showEmpty(panelId, empty) {
    const panel = $(panelId);
    const note = panel.querySelector(".empty");
    if (note) note.hidden = !empty;
    return panel;
  }

  // ------------------------------------------------------------ panels

  function renderSummary(s) {
    $("kpi-error-rate").textContent = fmtPct(s.error_rate, 2);
    $("kpi-errors").textContent = fmtInt(s.errors);
    $("kpi-pageviews").textContent = `${fmtInt(s.pageviews)} page views`;
    $("kpi-api-failure-rate").textContent = fmtPct(s.api_failure_rate, 1);
    $("kpi-api-calls").textContent = `${fmtInt(s.api_failures)} of ${fmtInt(s.api_calls)} calls`;
    $("kpi-api-p95").textContent = fmtMs(s.api_p95_ms);
    dash.rendered.summary = true;
  }

  function renderHealth(result) {
    const box = $("kpi-health");
    box.classList.remove("healthy", "degraded", "unhealthy");
    const check = result && result.ok && result.body && result.body.monitoring_health_check;
    // null = no data for a score (Number(null) would read as 0)
    const score = check && check.health_score != null ? Number(check.health_score) : NaN;
    if (check && Number.isFinite(score)) {
      const status = String(check.health_status || "");
      $("health-score").textContent = String(Math.round(score));
      $("health-status").textContent = status || "reported";
      if (["healthy", "degraded", "unhealthy"].includes(status)) box.classList.add(status);
      box.title = "GET /api/report: monitoring health check (0-100)";
      dash.health = { score, status };
    } else {
      $("health-score").textContent = "n/a";
      const why = !result ? "report not reachable"
        : result.status === 400 ? "no report for this period"
        : result.status ? `report answered ${result.status}` : "not reported";
      $("health-status").textContent = why;
      const detail = result && result.body && result.body.error ? `: ${result.body.error}` : "";
      box.title = `GET /api/report: ${why}${detail}`;
      dash.health = null;
    }
    dash.healthChecked = true;
  }

  function renderErrorRate(series) {
    const points = series.points || [];
    const labels = points.map((p) => bucketLabel(p.t, series.bucket_s));
    const rates = points.map((p) => p.rate);
    const views = points.map((p) => p.pageviews);
    const withData = rates.filter((r) => r !== null).length;
    const per = series.bucket_s === 60 ? "minute" : series.bucket_s === 3600 ? "hour" : `${series.bucket_s / 60} minutes`;
    $("error-rate-sub").textContent = `errors per page view, per ${per}`;
    let chart = state.charts.errorRate;
    if (!chart) {
      chart = state.charts.errorRate = new window.Chart($("error-rate-chart"), {
        type: "bar",
        data: {
          labels: [],
          datasets: [
            { type: "line", label: "errors per page view", data: [], yAxisID: "y", order: 0, borderColor: COLORS.poor,
              backgroundColor: "rgba(192, 38, 45, 0.10)", fill: true, tension: 0.25, pointRadius: 2, spanGaps: true },
            { type: "bar", label: "page views", data: [], yAxisID: "y1", order: 1, backgroundColor: COLORS.accent },
          ],
        },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: {
            x: { grid: { color: COLORS.grid }, ticks: { autoSkip: true, maxTicksLimit: 12, maxRotation: 0 } },
            y: { beginAtZero: true, grid: { color: COLORS.grid },
                 title: { display: true, text: "errors / page view" }, ticks: { callback: (v) => fmtPct(v, 0) } },
            y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                  title: { display: true, text: "page views" }, ticks: { precision: 0 } },
          },
          plugins: {
            legend: { position: "bottom" },
            tooltip: { callbacks: { label: (ctx) => {
              const p = (chart.$points || [])[ctx.dataIndex] || {};
              return ctx.datasetIndex === 0
                ? `error rate ${fmtPct(p.rate, 2)} (${fmtInt(p.errors)} errors)`
                : `${fmtInt(p.pageviews)} page views`;
            } } },
          },
        },
      });
    }
    chart.$points = points;
    chart.data.labels = labels;
    chart.data.datasets[0].data = rates;
    chart.data.datasets[1].data = views;
    chart.update("none");
    showEmpty("panel-error-rate", withData === 0);
    dash.panels.errorRate = chart.data.datasets[0].data.filter((r) => r !== null && r !== undefined).length;
    dash.rendered.errorRate = true;
  }

  function renderVitals(vitals) {
    const box = $("vitals");
    const cards = vitals.map((v) => {
      const card = el("div", `vital ${v.rating || "nodata"}`);
      card.dataset.vital = v.name;
      const head = el("div", "name", v.name);
      card.append(head, el("div", "value", fmtVital(v)));
      if (v.rating) card.append(el("span", `badge ${v.rating}`, v.rating.replace("-", " ")));
      const dist = el("div", "distribution");
      if (v.samples > 0) {
        for (const [key, cls] of [["good", "good"], ["needs_improvement", "needs-improvement"], ["poor", "poor"]]) {
          const part = el("span", cls);
          part.style.width = `${(100 * v[key]) / v.samples}%`;
          part.title = `${cls.replace("-", " ")}: ${fmtInt(v[key])}`;
          dist.append(part);
        }
      }
      card.append(dist);
      card.append(el("div", "meta", `${fmtInt(v.samples)} samples · good ≤ ${fmtThreshold(v, v.thresholds.good)} · ` +
                                    `poor > ${fmtThreshold(v, v.thresholds.poor)}`));
      return card;
    });
    box.replaceChildren(...cards);
    dash.panels.vitals = box.querySelectorAll(".vital:not(.nodata)").length;
    dash.rendered.vitals = true;
  }

  function renderIssues(issues) {
    const body = $("issues-table").querySelector("tbody");
    const rows = issues.map((i) => {
      const tr = el("tr");
      tr.dataset.fingerprint = i.fingerprint;
      const what = el("td");
      what.append(el("div", "title", i.title));
      const sub = [i.culprit, state.project ? "" : i.project].filter(Boolean).join(" · ");
      if (sub) what.append(el("div", "sub", sub));
      const status = el("td");
      status.append(el("span", `badge ${i.status}`, i.status));
      const seen = el("td", "when", ago(i.last_seen));
      seen.title = i.last_seen || "";
      tr.append(what, status, el("td", "num", fmtInt(i.events)), el("td", "num", fmtInt(i.users)), seen);
      return tr;
    });
    body.replaceChildren(...rows);
    $("issues-table").hidden = rows.length === 0;
    showEmpty("panel-issues", rows.length === 0);
    dash.panels.topIssues = body.querySelectorAll("tr").length;
    dash.rendered.topIssues = true;
  }

  function renderClicks(pages) {
    let chart = state.charts.clicks;
    if (!chart) {
      chart = state.charts.clicks = new window.Chart($("clicks-chart"), {
        type: "bar",
        data: { labels: [], datasets: [
          { label: "rage clicks", data: [], backgroundColor: COLORS.poor },
          { label: "dead clicks", data: [], backgroundColor: COLORS.ni },
        ] },
        options: {
          indexAxis: "y", animation: false, responsive: true, maintainAspectRatio: false,
          scales: { x: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: COLORS.grid } }, y: { grid: { display: false } } },
          plugins: { legend: { position: "bottom" } },
        },
      });
    }
    chart.data.labels = pages.map((p) => p.page || "(no page)");
    chart.data.datasets[0].data = pages.map((p) => p.rage_clicks);
    chart.data.datasets[1].data = pages.map((p) => p.dead_clicks);
    chart.update("none");
    showEmpty("panel-clicks", pages.length === 0);
    dash.panels.clicks = chart.data.labels.length;
    dash.rendered.clicks = true;
  }

  function renderAlerts(alerts) {
    const body = $("alerts-table").querySelector("tbody");
    const rows = alerts.map((a) => {
      const tr = el("tr");
      tr.dataset.fingerprint = a.fingerprint;
      const sev = el("td");
      sev.append(el("span", `badge ${a.severity}`, a.severity || "?"));
      const what = el("td");
      what.append(el("div", "title", a.rule));
      if (a.summary) what.append(el("div", "sub", a.summary));
      const since = el("td", "when", ago(a.starts_at));
      since.title = a.starts_at || "";
      tr.append(sev, what, since);
      return tr;
    });
    body.replaceChildren(...rows);
    $("alerts-table").hidden = rows.length === 0;
    $("alerts-count").textContent = rows.length ? `${rows.length} firing` : "";
    showEmpty("panel-alerts", rows.length === 0);
    dash.panels.alerts = body.querySelectorAll("tr").length;
    dash.rendered.alerts = true;
  }

  function renderProjects(projects) {
    const select = $("project");
    const wanted = new Set(projects);
    if (state.project) wanted.add(state.project);
    const names = [...wanted].sort();
    const shown = [...select.options].slice(1).map((o) => o.value);
    if (shown.join("\n") === names.join("\n")) return;  // unchanged: leave an open picker alone
    const options = [el("option", "", "all projects")];
    options[0].value = "";
    for (const p of names) {
      const o = el("option", "", p);
      o.value = p;
      options.push(o);
    }
    select.replaceChildren(...options);
    select.value = state.project;
  }

  function render(doc) {
    renderSummary(doc.summary);
    renderErrorRate(doc.error_rate);
    renderVitals(doc.vitals);
    renderIssues(doc.top_issues);
    renderClicks(doc.clicks);
    renderAlerts(doc.alerts);
    renderProjects(doc.projects || []);
  }

  // ------------------------------------------------------------ status, errors, token

  function setStatus() {
    const dot = $("status-dot");
    const every = state.refreshSeconds > 0 ? `refreshing every ${state.refreshSeconds} s` : "auto-refresh off";
    dot.className = `dot ${dash.error ? "failing" : state.lastSuccess ? "ok" : ""}`;
    const when = state.lastSuccess ? `updated ${fmtClock(state.lastSuccess)}`
      : dash.needsToken ? "waiting for an access token" : "not updated yet";
    $("last-updated").textContent = `${when} · ${every}`;
    $("last-updated").title = state.lastSuccess ? state.lastSuccess.toISOString() : "";
  }

  function showError(message) {
    dash.error = message;
    const banner = $("error-banner");
    banner.textContent = state.lastSuccess
      ? `${message} — showing data from ${fmtClock(state.lastSuccess)}; retrying.`
      : `${message} — retrying.`;
    banner.hidden = false;
    setStatus();
  }

  function clearError() {
    dash.error = null;
    $("error-banner").hidden = true;
  }

  function askForToken(message) {
    dash.needsToken = true;
    $("token-panel").hidden = false;
    $("token-message").textContent = message;
    $("token-input").focus();
  }

  function saveToken() {
    const token = $("token-input").value.trim();
    if (!token) {
      $("token-message").textContent = "Paste the token first.";
      return;
    }
    store.set(TOKEN_KEY, token);
    $("token-input").value = "";
    $("token-panel").hidden = true;
    dash.needsToken = false;
    $("token-forget").hidden = false;
    refresh(true);
  }

  // ------------------------------------------------------------ fetching

  async function fetchJSON(url, timeoutMs) {
    const headers = { Accept: "application/json" };
    const token = store.get(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      const resp = await fetch(url, { headers, cache: "no-store", signal: abort.signal });
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      return { ok: resp.ok, status: resp.status, body };
    } finally {
      clearTimeout(timer);
    }
  }

  function query(extra) {
    const q = new URLSearchParams({ period: state.period, ...extra });
    if (state.project) q.set("project", state.project);
    return q.toString();
  }

  function fetchReport(force) {
    // same period (and project) as the panels; when nothing changed, at most every REPORT_EVERY_MS
    const key = query({});
    if (!force && key === state.reportKey && Date.now() - state.reportAt < REPORT_EVERY_MS) return null;
    state.reportKey = key;
    state.reportAt = Date.now();
    return fetchJSON(`/api/report?${key}`, REPORT_TIMEOUT_MS);
  }

  async function refresh(force = false) {
    if (state.inFlight) {
      state.pending = true;
      state.pendingForce = state.pendingForce || force;
      return;
    }
    state.inFlight = true;
    clearTimeout(state.timer);
    try {
      const asked = query({});
      const reportCall = fetchReport(force);
      const [main, report] = await Promise.allSettled([
        fetchJSON(`/api/dashboard?${asked}`, API_TIMEOUT_MS), reportCall || Promise.resolve(null)]);
      if (asked !== query({})) {
        // the period or project changed meanwhile: this answer is stale; the queued refresh asks again
        state.pending = true;
        state.pendingForce = true;
        return;
      }
      if (reportCall) {
        const answer = report.status === "fulfilled" ? report.value : null;
        if (!answer || answer.status === 401 || answer.status >= 500) state.reportAt = 0;  // ask again next time
        renderHealth(answer);
      }
      if (main.status === "rejected") {
        showError(main.reason && main.reason.name === "AbortError"
          ? "The dashboard API did not answer in time" : "The collector is not reachable");
      } else if (main.value.status === 401) {
        const hadToken = Boolean(store.get(TOKEN_KEY));
        clearError();  // not a failure: the token panel says what is needed
        askForToken(hadToken ? "The stored token was refused; paste the current one." : "");
      } else if (!main.value.ok) {
        const detail = (main.value.body && main.value.body.error) || "no details";
        showError(`Dashboard API error ${main.value.status}: ${detail}`);
      } else {
        render(main.value.body);
        state.lastSuccess = new Date();
        dash.lastUpdate = state.lastSuccess.toISOString();
        dash.updates += 1;
        dash.needsToken = false;
        $("token-panel").hidden = true;
        clearError();
        dash.ready = true;
      }
    } catch (err) {
      // a bug in rendering: say so on the page instead of dying silently
      showError(`The dashboard could not show the data (${err && err.message ? err.message : err})`);
      throw err;
    } finally {
      state.inFlight = false;
      setStatus();
      if (state.pending) {
        const again = state.pendingForce;
        state.pending = false;
        state.pendingForce = false;
        refresh(again);
      } else {
        schedule();
      }
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    if (state.refreshSeconds > 0 && !dash.needsToken && document.visibilityState !== "hidden") {
      state.timer = setTimeout(() => refresh(), state.refreshSeconds * 1000);
    }
  }

  function syncUrl() {
    const q = new URLSearchParams({ period: state.period });
    if (state.project) q.set("project", state.project);
    if (params.has("refresh")) q.set("refresh", String(state.refreshSeconds));
    window.history.replaceState(null, "", `${window.location.pathname}?${q}`);
    dash.period = state.period;
    dash.project = state.project;
  }

  // ------------------------------------------------------------ wiring

  function init() {
    if (typeof window.Chart !== "function") {
      showError("Chart.js did not load (/dashboard/static/vendor/chart.umd.js)");
      return;
    }
    $("period").value = state.period;
    const refreshSelect = $("refresh");
    if (!REFRESH_CHOICES.includes(state.refreshSeconds)) {
      const o = el("option", "", `every ${state.refreshSeconds} s`);
      o.value = String(state.refreshSeconds);
      refreshSelect.append(o);
    }
    refreshSelect.value = String(state.refreshSeconds);
    $("token-forget").hidden = !store.get(TOKEN_KEY);

    $("period").addEventListener("change", (e) => { state.period = e.target.value; syncUrl(); refresh(); });
    $("project").addEventListener("change", (e) => { state.project = e.target.value; syncUrl(); refresh(); });
    refreshSelect.addEventListener("change", (e) => {
      state.refreshSeconds = Number(e.target.value);
      dash.refreshSeconds = state.refreshSeconds;
      store.set(REFRESH_KEY, String(state.refreshSeconds));
      syncUrl();
      setStatus();
      schedule();
    });
    $("refresh-now").addEventListener("click", () => refresh(true));
    $("token-save").addEventListener("click", saveToken);
    $("token-input").addEventListener("keydown", (e) => { if (e.key === "Enter") saveToken(); });
    $("token-forget").addEventListener("click", () => {
      store.remove(TOKEN_KEY);
      $("token-forget").hidden = true;
      refresh(true);
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") refresh();
      else clearTimeout(state.timer);
    });
    setStatus();
    refresh();
  }

  init();
})();

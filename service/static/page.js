// vidlstm's try-it page: GET /model (and /models), POST /classify, nothing else.
// The API key lives in `state.key` only: never in storage, never in the curl text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    for (const child of children) node.append(child);
    return node;
  };

  const PALETTE = ["#1f77b4", "#e8710a", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#5f6b7a", "#bcbd22", "#17becf"];
  const SEGMENT_WINDOW_S = Number(document.body.dataset.segmentWindowS) || 2;

  const state = {
    key: "",          // the API key, in memory only
    model: null,      // GET /model's answer for the default model
    labels: [],       // labels of the model the request goes to
    models: null,     // ready entries of GET /models, when there is a choice
    file: null,
    previewUrl: null,
    segmentsTouched: false,
    topKTouched: false,
    busy: false,
    timer: 0,
    result: null,
  };

  // -- talking to the API -----------------------------------------------------

  async function api(path, init = {}) {
    const headers = new Headers(init.headers || {});
    if (state.key) headers.set("X-API-Key", state.key);
    const response = await fetch(path, { ...init, headers, cache: "no-store" });
    const type = response.headers.get("Content-Type") || "";
    let body = null;
    if (type.includes("json")) {
      try { body = await response.json(); } catch { body = null; }
    } else {
      body = await response.text();
    }
    return { response, body };
  }

  function problemOf({ response, body }) {
    if (body && typeof body === "object" && body.title) return body;
    const text = typeof body === "string" ? body.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim() : "";
    return {
      title: response.statusText || "Request failed",
      status: response.status,
      detail: text.slice(0, 300) || "The server answered without a problem description.",
    };
  }

  function showProblem(problem, retryAfter) {
    $("problem-title").textContent = problem.title || "Error";
    $("problem-status").textContent = problem.status ? `(${problem.status})` : "";
    $("problem-detail").textContent = problem.detail || "";
    const retry = $("problem-retry");
    retry.hidden = !retryAfter;
    retry.textContent = retryAfter ? `Retry after ${retryAfter} s.` : "";
    $("problem").hidden = false;
  }

  function clearProblem() { $("problem").hidden = true; }

  function needKey(message) {
    const card = $("key-card");
    card.hidden = false;
    if (message) $("key-note").textContent = message;
  }

  // -- the model --------------------------------------------------------------

  async function loadModel() {
    let answer;
    try { answer = await api("/model"); } catch (err) {
      $("model-empty").textContent = `Cannot reach the service: ${err.message}`;
      return;
    }
    if (answer.response.status === 401) {
      needKey();
      $("model-empty").textContent = "Enter the API key to see the model.";
      return;
    }
    if (!answer.response.ok) {
      const p = problemOf(answer);
      $("model-empty").textContent = `${p.title}: ${p.detail}`;
      return;
    }
    state.model = answer.body;
    renderModel(state.model);
    await loadModels();
  }

  async function loadModels() {
    let answer;
    try { answer = await api("/models"); } catch { return; }
    const body = answer.body;
    const ok = answer.response.status === 200 && body && typeof body === "object" &&
      Array.isArray(body.models);
    const ready = ok ? body.models.filter((m) => m && m.state === "ready" &&
      typeof m.name === "string" && typeof m.version === "string") : [];
    if (ready.length < 2) {
      state.models = null;
      $("model-field").hidden = true;
      return;
    }
    state.models = ready;
    const select = $("model-select");
    const fallback = ready.find((m) => m.default === true);
    const name = fallback ? `${fallback.name} ${fallback.version}` : body.default || "the service's choice";
    select.replaceChildren(el("option", { value: "", textContent: `Default (${name})` }));
    ready.forEach((m, i) => select.append(el("option", { value: String(i), textContent: `${m.name} ${m.version}` })));
    $("model-field").hidden = false;
  }

  function chosenModel() {
    const value = $("model-select").value;
    return state.models && value !== "" ? state.models[Number(value)] : null;
  }

  // The panel follows the chooser: GET /model for the version picked (its metrics too).
  async function showChosenModel() {
    const chosen = chosenModel();
    if (chosen) setLabels(Array.isArray(chosen.labels) ? chosen.labels : state.labels);
    const query = chosen ? `?${new URLSearchParams({ model: chosen.name, version: chosen.version })}` : "";
    try {
      const answer = await api(`/model${query}`);
      if (answer.response.ok) renderModel(answer.body);
    } catch {
      // The chooser's labels stand; the panel keeps what it showed.
    }
  }

  function setLabels(labels) {
    state.labels = labels;
    const topK = $("top-k");
    topK.max = String(labels.length);
    if (!state.topKTouched) topK.value = String(Math.min(5, labels.length));
    else if (Number(topK.value) > labels.length) topK.value = String(labels.length);
  }

  function renderModel(info) {
    const facts = $("model-facts");
    facts.replaceChildren();
    const input = info.input || {};
    addFacts(facts, [
      ["Name", info.name],
      ["Version", info.version],
      ["Input", `${input.num_frames} frames × ${input.height}×${input.width} px`],
      ["Sampling", info.sampling],
      ["Runs on", info.provider],
      ["Created", info.created],
    ]);
    $("labels").replaceChildren(...info.labels.map((l) => el("li", { textContent: l })));
    setLabels(info.labels);
    renderMetrics(info.metrics || {}, info.labels);
    $("model-empty").hidden = true;
    $("model").hidden = false;
  }

  function addFacts(dl, pairs) {
    for (const [name, value] of pairs) {
      if (value === undefined || value === null || value === "") continue;
      dl.append(el("dt", { textContent: name }), el("dd", { textContent: String(value) }));
    }
  }

  function formatMetric(value) {
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
    if (value === null) return "—";
    return String(value);
  }

  function isMatrix(value, size) {
    return Array.isArray(value) && value.length === size && value.length > 0 &&
      value.every((row) => Array.isArray(row) && row.length === size &&
        row.every((x) => typeof x === "number"));
  }

  // Scalars go to a table (nested objects flattened to dotted names); a square matrix
  // the size of the label list, under any key, is drawn as a heat map.
  function renderMetrics(metrics, labels) {
    const rows = [];
    let confusion = null;
    const walk = (prefix, value) => {
      if (isMatrix(value, labels.length)) {
        if (!confusion || /confusion/i.test(prefix)) confusion = value;
      } else if (value && typeof value === "object" && !Array.isArray(value)) {
        if (isMatrix(value.matrix, labels.length)) { confusion = value.matrix; return; }
        for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
      } else if (!Array.isArray(value)) {
        rows.push([prefix, value]);
      }
    };
    walk("", metrics);
    const body = $("metrics").tBodies[0];
    body.replaceChildren(...rows.map(([k, v]) => el("tr", {}, [
      el("th", { scope: "row", textContent: k.replace(/_/g, " ") }),
      el("td", { textContent: formatMetric(v) }),
    ])));
    $("metrics-box").hidden = rows.length === 0;
    $("confusion-box").hidden = !confusion;
    if (confusion) drawConfusion(confusion, labels);
  }

  function drawConfusion(matrix, labels) {
    const table = $("confusion");
    const head = el("tr", {}, [el("td")]);
    labels.forEach((l) => head.append(el("th", { scope: "col", textContent: l })));
    const rows = matrix.map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      const tr = el("tr", {}, [el("th", { scope: "row", textContent: labels[i] })]);
      row.forEach((n, j) => {
        const share = n / total;
        const cell = el("td", { textContent: String(n) });
        cell.title = `true ${labels[i]}, predicted ${labels[j]}: ${n} (${(share * 100).toFixed(1)}% of the row)`;
        // Light to dark blue by the row's share; white text where the cell is dark.
        const lightness = 97 - share * 67;
        cell.style.backgroundColor = `hsl(212, 70%, ${lightness}%)`;
        cell.style.color = lightness < 58 ? "#ffffff" : "#1b1f24";
        tr.append(cell);
      });
      return tr;
    });
    table.replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
  }

  // -- the video ----------------------------------------------------------------

  function setFile(file) {
    if (!file) return;
    state.file = file;
    state.segmentsTouched = false;
    $("file-name").textContent = `${file.name} — ${sizeText(file.size)}`;
    const video = $("preview");
    const note = $("preview-note");
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    note.hidden = true;
    const type = file.type || "";
    if (type && !type.startsWith("video/")) {
      video.hidden = true;
      video.removeAttribute("src");
      showNote(`This is not a video file (${type}); the service will say so.`);
      $("segments").checked = false;
    } else if (type && video.canPlayType(type) === "") {
      video.hidden = true;
      video.removeAttribute("src");
      cannotPlay();
    } else {
      video.hidden = false;
      video.src = state.previewUrl;
    }
    $("classify").disabled = state.busy;
    updateCurl();
  }

  function sizeText(bytes) {
    if (bytes < 1024) return `${bytes} bytes`;
    const kb = bytes / 1024;
    return kb < 1024 ? `${kb.toFixed(0)} KB` : `${(kb / 1024).toFixed(1)} MB`;
  }

  function showNote(text) {
    const note = $("preview-note");
    note.textContent = text;
    note.hidden = false;
  }

  function cannotPlay() {
    const what = state.file && state.file.type ? state.file.type : "this format";
    showNote(`This browser cannot preview ${what}; the service can still classify it.`);
    $("preview").hidden = true;
    // The length is unknown here: segments on, so a long video gets its timeline.
    if (!state.segmentsTouched) $("segments").checked = true;
    updateCurl();
  }

  function onMetadata() {
    const duration = $("preview").duration;
    if (!state.segmentsTouched && Number.isFinite(duration)) {
      $("segments").checked = duration > SEGMENT_WINDOW_S;
      updateCurl();
    }
  }

  function bindDrop() {
    const zone = $("drop");
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
    }
    for (const name of ["dragleave", "drop"]) {
      zone.addEventListener(name, () => zone.classList.remove("over"));
    }
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) setFile(file);
    });
    // A file dropped beside the zone would make the browser leave the page.
    for (const name of ["dragover", "drop"]) document.addEventListener(name, (e) => e.preventDefault());
  }

  // -- the request --------------------------------------------------------------

  function requestQuery() {
    const params = new URLSearchParams();
    const topK = $("top-k").value.trim();
    if (topK) params.set("top_k", topK);
    if ($("segments").checked) {
      params.set("segments", "true");
      const windowS = $("window").value.trim();
      if (windowS) params.set("window_s", windowS);
    }
    const chosen = chosenModel();
    if (chosen) {
      params.set("model", chosen.name);
      params.set("version", chosen.version);
    }
    const query = params.toString();
    return query ? `/classify?${query}` : "/classify";
  }

  // The service reads video/* as said; anything else is sent as bytes for it to judge.
  function uploadType(file) {
    return file.type && file.type.startsWith("video/") ? file.type : "application/octet-stream";
  }

  const shellQuote = (s) => `'${s.replace(/'/g, "'\\''")}'`;

  function updateCurl() {
    const file = state.file;
    const lines = [
      `curl -X POST ${shellQuote(location.origin + requestQuery())}`,
      `  -H ${shellQuote(`Content-Type: ${file ? uploadType(file) : "video/mp4"}`)}`,
    ];
    if (state.key) lines.push(`  -H "X-API-Key: $VIDLSTM_API_KEY"`);
    lines.push(`  --data-binary @${shellQuote(file ? file.name : "video.mp4")}`);
    $("curl").textContent = lines.join(" \\\n");
  }

  async function copyCurl() {
    const text = $("curl").textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const range = document.createRange();
      range.selectNodeContents($("curl"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    $("copied").textContent = "Copied.";
    setTimeout(() => { $("copied").textContent = ""; }, 2000);
  }

  function setBusy(on) {
    state.busy = on;
    const busy = $("busy");
    $("classify").disabled = on || !state.file;
    $("result-card").setAttribute("aria-busy", String(on));
    busy.classList.toggle("on", on);
    if (on) {
      const start = performance.now();
      const tick = () => { busy.textContent = `Uploading and classifying… ${((performance.now() - start) / 1000).toFixed(1)} s`; };
      tick();
      state.timer = setInterval(tick, 100);
    } else {
      clearInterval(state.timer);
      busy.textContent = "";
    }
  }

  async function classify(event) {
    event.preventDefault();
    if (!state.file || state.busy) return;
    clearProblem();
    // The last answer was for another request: it goes, whatever this one brings.
    $("result").hidden = true;
    $("result-empty").hidden = true;
    setBusy(true);
    try {
      const answer = await api(requestQuery(), {
        method: "POST",
        headers: { "Content-Type": uploadType(state.file) },
        body: state.file,
      });
      if (answer.response.ok) {
        renderResult(answer.body);
      } else {
        if (answer.response.status === 401) needKey();
        showProblem(problemOf(answer), answer.response.headers.get("Retry-After"));
      }
    } catch (err) {
      showProblem({ title: "Network error", detail: `The request did not complete: ${err.message}` });
    } finally {
      setBusy(false);
    }
  }

  // -- the result ---------------------------------------------------------------

  const percent = (score) => `${(score * 100).toFixed(1)}%`;

  function colourOf(label) {
    const index = state.labels.indexOf(label);
    const i = index < 0 ? 0 : index;
    // Past the palette, hues spaced by the golden angle stay distinct.
    return i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360}, 60%, 45%)`;
  }

  function renderResult(r) {
    state.result = r;
    $("result-empty").hidden = true;
    $("bars").replaceChildren(...r.top.map(({ label, score }) => {
      const fill = el("div", { className: "bar-fill" });
      fill.style.width = `${Math.max(0, Math.min(100, score * 100))}%`;
      const track = el("div", { className: "bar-track" }, [fill]);
      track.setAttribute("aria-hidden", "true");
      return el("li", {}, [
        el("span", { className: "bar-label", textContent: label }),
        track,
        el("span", { className: "bar-pct", textContent: percent(score) }),
      ]);
    }));
    const v = r.video || {};
    const t = r.timing_ms || {};
    const ms = (x) => (typeof x === "number" ? `${x.toFixed(1)} ms` : undefined);
    const facts = $("facts");
    facts.replaceChildren();
    addFacts(facts, [
      ["Model", r.model ? `${r.model.name} ${r.model.version}` : undefined],
      ["Video", `${(v.duration_s ?? 0).toFixed(2)} s, ${v.width}×${v.height}, ${(v.fps ?? 0).toFixed(2)} fps, ${v.codec}`],
      ["Frames used", v.frames_used],
      ["Upload", ms(t.upload)],
      ["Decode", ms(t.decode)],
      ["Queue", ms(t.queue)],
      ["Inference", ms(t.inference)],
      ["Total", ms(t.total)],
    ]);
    renderTimeline(r);
    $("result").hidden = false;
  }

  function renderTimeline(r) {
    const box = $("timeline-box");
    const segments = r.segments || [];
    if (!segments.length) { box.hidden = true; return; }
    const end = Math.max(r.video.duration_s || 0, ...segments.map((s) => s.end_s)) || 1;
    const timeline = $("timeline");
    timeline.querySelectorAll(".seg").forEach((n) => n.remove());
    const seen = [];
    segments.forEach((s, i) => {
      const best = s.top[0];
      const text = `${s.start_s.toFixed(1)}–${s.end_s.toFixed(1)} s: ${best.label} ${percent(best.score)}`;
      const button = el("button", { type: "button", className: "seg", title: text });
      button.setAttribute("aria-label", `Segment ${i + 1}, ${text}. Play from here.`);
      button.dataset.start = String(s.start_s);
      button.dataset.end = String(s.end_s);
      button.style.left = `${(s.start_s / end) * 100}%`;
      button.style.width = `${((s.end_s - s.start_s) / end) * 100}%`;
      button.style.backgroundColor = colourOf(best.label);
      button.addEventListener("click", () => seek(s.start_s));
      timeline.append(button);
      if (!seen.includes(best.label)) seen.push(best.label);
    });
    $("axis-end").textContent = `${end.toFixed(1)} s`;
    $("legend").replaceChildren(...seen.map((label) => {
      const swatch = el("span", { className: "swatch" });
      swatch.style.backgroundColor = colourOf(label);
      swatch.setAttribute("aria-hidden", "true");
      return el("li", {}, [swatch, label]);
    }));
    box.hidden = false;
    movePlayhead();
  }

  function seek(seconds) {
    const video = $("preview");
    if (video.hidden || !video.src) return;
    video.currentTime = seconds;
    movePlayhead(seconds);
  }

  function movePlayhead(at) {
    const r = state.result;
    const video = $("preview");
    if (!r || !r.segments) return;
    const time = at ?? video.currentTime ?? 0;
    const end = Math.max(r.video.duration_s || 0, ...r.segments.map((s) => s.end_s)) || 1;
    $("playhead").style.left = `${Math.min(100, (time / end) * 100)}%`;
    $("timeline").querySelectorAll(".seg").forEach((b) => {
      b.classList.toggle("current", time >= Number(b.dataset.start) && time < Number(b.dataset.end));
    });
  }

  // -- wiring -------------------------------------------------------------------

  function init() {
    $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
    bindDrop();
    const video = $("preview");
    video.addEventListener("error", () => { if (state.file) cannotPlay(); });
    video.addEventListener("loadedmetadata", onMetadata);
    video.addEventListener("timeupdate", () => movePlayhead());
    $("segments").addEventListener("change", () => { state.segmentsTouched = true; updateCurl(); });
    $("top-k").addEventListener("input", () => { state.topKTouched = true; updateCurl(); });
    $("window").addEventListener("input", updateCurl);
    $("model-select").addEventListener("change", () => {
      updateCurl();
      showChosenModel();
    });
    $("options").addEventListener("submit", classify);
    $("copy").addEventListener("click", copyCurl);
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.key = $("api-key").value.trim();
      $("key-note").textContent = state.key
        ? "Key set for this page; it is gone when you reload."
        : "No key set.";
      clearProblem();
      updateCurl();
      loadModel();
    });
    updateCurl();
    loadModel();
  }

  init();
})();

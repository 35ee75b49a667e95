// The model panel: GET /model (and /models for the chooser), its metrics and heat map.

import { api, needKey, problemOf } from "./api.js";
import { $, addFacts, el } from "./dom.js";
import { state } from "./state.js";

export async function loadModel() {
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

export function chosenModel() {
  const value = $("model-select").value;
  return state.models && value !== "" ? state.models[Number(value)] : null;
}

// The panel follows the chooser: GET /model for the version picked (its metrics too).
export async function showChosenModel() {
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
  $("confusion").replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
}

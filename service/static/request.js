// The request the page makes: its path and query, the same thing as a curl command,
// and the busy line while it uploads.

import { $ } from "./dom.js";
import { chosenModel } from "./model.js";
import { state } from "./state.js";

// Whether Classify submits a job (POST /jobs) rather than waiting on POST /classify.
export const asJob = () => state.jobs && !$("as-job").disabled && $("as-job").checked;

export function requestPath(job = asJob()) {
  const params = new URLSearchParams();
  const topK = $("top-k").value.trim();
  if (topK) params.set("top_k", topK);
  if ($("segments").checked) {
    params.set("segments", "true");
    const windowS = $("window").value.trim();
    if (windowS) params.set("window_s", windowS);
  } else if (job) {
    params.set("segments", "false"); // a job's segments default to on
  }
  const chosen = chosenModel();
  if (chosen) {
    params.set("model", chosen.name);
    params.set("version", chosen.version);
  }
  const path = job ? "/jobs" : "/classify";
  const query = params.toString();
  return query ? `${path}?${query}` : path;
}

// The service reads video/* as said; anything else is sent as bytes for it to judge.
export function uploadType(file) {
  return file.type && file.type.startsWith("video/") ? file.type : "application/octet-stream";
}

const shellQuote = (s) => `'${s.replace(/'/g, "'\\''")}'`;

export function updateCurl() {
  const file = state.file;
  const job = asJob();
  const lines = [
    `curl -X POST ${shellQuote(location.origin + requestPath(job))}`,
    `  -H ${shellQuote(`Content-Type: ${file ? uploadType(file) : "video/mp4"}`)}`,
  ];
  if (job) lines.push(`  -H "Idempotency-Key: $(uuidgen)"`);
  if (state.key) lines.push(`  -H "X-API-Key: $VIDLSTM_API_KEY"`);
  lines.push(`  --data-binary @${shellQuote(file ? file.name : "video.mp4")}`);
  let text = lines.join(" \\\n");
  if (job) {
    const id = state.jobId || "<id>";
    const key = state.key ? ` -H "X-API-Key: $VIDLSTM_API_KEY"` : "";
    text += "\n# then poll the job until its status is succeeded, failed or canceled:\n" +
      `curl${key} ${shellQuote(`${location.origin}/jobs/${id}`)}`;
  }
  $("curl").textContent = text;
}

export async function copyCurl() {
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

export function setBusy(on, what = "Uploading and classifying…") {
  state.busy = on;
  const busy = $("busy");
  $("classify").disabled = on || !state.file;
  $("result-card").setAttribute("aria-busy", String(on));
  busy.classList.toggle("on", on);
  clearInterval(state.timer);
  if (on) {
    const start = performance.now();
    const tick = () => { busy.textContent = `${what} ${((performance.now() - start) / 1000).toFixed(1)} s`; };
    tick();
    state.timer = setInterval(tick, 100);
  } else {
    busy.textContent = "";
  }
}

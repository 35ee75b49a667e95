// Long videos as jobs: POST /jobs, then GET /jobs/{id} every half second until the job
// ends, with a progress bar and a Cancel button (DELETE /jobs/{id}).

import { api, clearProblem, problemOf, showNetworkError, showProblem, showRefusal } from "./api.js";
import { $ } from "./dom.js";
import { requestPath, setBusy, updateCurl, uploadType } from "./request.js";
import { renderResult } from "./results.js";
import { state } from "./state.js";

const POLL_MS = 500;
const OPEN = ["queued", "running"];

// The job the page follows: {id, key, fraction, segments, status, turn}. Moving on (a
// new file, a new request) replaces it, and an answer for a job no longer `current` is
// dropped; so is a poll's answer that comes after Cancel was pressed (`turn` counts them).
let current = null;
let timer = 0;

// GET /jobs answers 404 jobs-disabled where the service keeps none; 401 asks for a key.
export async function probeJobs() {
  let answer;
  try { answer = await api("/jobs?limit=1"); } catch { return; }
  const status = answer.response.status;
  state.jobs = status === 200 || status === 401;
  $("as-job").disabled = !state.jobs;
  $("job-field").hidden = !state.jobs;
  updateCurl();
}

export function forgetJob() {
  clearTimeout(timer);
  current = null;
  state.jobId = null;
  $("job").hidden = true;
  $("result-card").setAttribute("aria-busy", "false");
  // Never a blank result card: the hint comes back when nothing else is shown.
  if ($("result").hidden && $("problem").hidden) $("result-empty").hidden = false;
}

export async function submitJob(file) {
  forgetJob();
  $("result-empty").hidden = true;
  const job = { id: null, key: newKey(), fraction: 0, segments: "", status: "", turn: 0 };
  current = job;
  showProgress(job, { status: "uploading", progress: { fraction: 0 } });
  setBusy(true, "Uploading the job…");
  let answer;
  try {
    answer = await post(file, job.key);
  } catch (err) {
    if (current === job) { forgetJob(); showNetworkError(err); }
    return;
  } finally {
    setBusy(false);
  }
  if (current !== job) return;
  if (!answer.response.ok) {
    forgetJob();
    showRefusal(answer);
    return;
  }
  job.id = answer.body.id;
  state.jobId = job.id;
  updateCurl();
  follow(job, answer.body);
}

// One retry with the same key where the connection failed: the service answers the job
// it already made for these bytes rather than a second one.
async function post(file, key) {
  const init = { method: "POST", headers: { "Content-Type": uploadType(file), "Idempotency-Key": key }, body: file };
  const path = requestPath(true);
  try {
    return await api(path, init);
  } catch {
    return await api(path, init);
  }
}

// crypto.randomUUID needs a secure context (https or localhost); getRandomValues does not.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Show what the service said of the job, then poll again while it is open.
function follow(job, body) {
  clearTimeout(timer);
  showProgress(job, body);
  const open = OPEN.includes(body.status);
  $("cancel").hidden = !open;
  $("result-card").setAttribute("aria-busy", String(open));
  if (open) {
    timer = setTimeout(() => poll(job), POLL_MS);
  } else if (body.status === "succeeded" && body.result) {
    renderResult(body.result);
  } else if (body.status === "failed") {
    showProblem(body.error || { title: "Job failed", detail: "The job ended without a problem description." });
  }
}

async function poll(job) {
  const turn = job.turn;
  let answer;
  try {
    answer = await api(`/jobs/${job.id}`);
  } catch {
    // The service may be restarting; the job is on its disk. Try again.
    if (current === job && turn === job.turn) timer = setTimeout(() => poll(job), POLL_MS * 4);
    return;
  }
  if (current !== job || turn !== job.turn) return;
  if (answer.response.ok) {
    follow(job, answer.body);
  } else {
    showRefusal(answer);
    stopped(job, "stopped following");
  }
}

async function cancel() {
  const job = current;
  if (!job || !job.id) return;
  clearTimeout(timer);
  const turn = ++job.turn;
  const button = $("cancel");
  button.disabled = true;
  let answer;
  try {
    answer = await api(`/jobs/${job.id}`, { method: "DELETE" });
  } catch (err) {
    if (current === job && turn === job.turn) {
      showNetworkError(err);
      follow(job, { status: job.status, progress: {} });
    }
    return;
  } finally {
    button.disabled = false;
  }
  if (current !== job || turn !== job.turn) return;
  if (answer.response.ok) {
    clearProblem();
    follow(job, answer.body);
  } else {
    showProblem(problemOf(answer));
    follow(job, { status: job.status, progress: {} });
  }
}

function stopped(job, status) {
  showProgress(job, { status, progress: {} });
  $("cancel").hidden = true;
  $("result-card").setAttribute("aria-busy", "false");
}

// The bar never goes back, whatever order answers come in.
function showProgress(job, body) {
  const p = body.progress || {};
  const fraction = Math.max(job.fraction, Math.min(1, Number(p.fraction) || 0));
  job.fraction = fraction;
  $("job-progress").value = fraction;
  if (Number.isInteger(p.segments_total) && p.segments_total > 0) {
    job.segments = `segments ${p.segments_done ?? 0}/${p.segments_total}`;
  }
  const parts = [`${Math.floor(fraction * 100)}%`, job.segments, body.status].filter(Boolean);
  $("job-label").textContent = `Job ${parts.join(" · ")}`;
  if (body.status !== job.status) $("job-status").textContent = `Job ${body.status}.`;
  job.status = body.status;
  $("job").hidden = false;
}

export function bindJobs() {
  $("cancel").addEventListener("click", cancel);
  $("as-job").addEventListener("change", () => { state.jobTouched = true; updateCurl(); });
}

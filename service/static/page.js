// vidlstm's try-it page: GET /model (and /models), POST /classify, and POST /jobs with
// GET and DELETE /jobs/{id} for long videos. Each module holds one part of the page:
// api.js (fetch, problems, key), model.js, video.js, request.js, results.js, jobs.js.

import { api, clearProblem, showNetworkError, showRefusal } from "./api.js";
import { $ } from "./dom.js";
import { bindJobs, forgetJob, probeJobs, submitJob } from "./jobs.js";
import { loadModel, showChosenModel } from "./model.js";
import { asJob, copyCurl, requestPath, setBusy, updateCurl, uploadType } from "./request.js";
import { clearResult, movePlayhead, renderResult } from "./results.js";
import { state } from "./state.js";
import { bindDrop, cannotPlay, onMetadata, setFile } from "./video.js";

async function classify(event) {
  event.preventDefault();
  if (!state.file || state.busy) return;
  clearProblem();
  clearResult();
  if (asJob()) {
    await submitJob(state.file);
    return;
  }
  forgetJob();
  $("result-empty").hidden = true;
  setBusy(true);
  try {
    const answer = await api(requestPath(false), {
      method: "POST",
      headers: { "Content-Type": uploadType(state.file) },
      body: state.file,
    });
    if (answer.response.ok) renderResult(answer.body);
    else showRefusal(answer);
  } catch (err) {
    showNetworkError(err);
  } finally {
    setBusy(false);
  }
}

function useKey(event) {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  $("key-note").textContent = state.key
    ? "Key set for this page; it is gone when you reload."
    : "No key set.";
  clearProblem();
  updateCurl();
  loadModel();
  probeJobs(); // with the key, the service's own answer rather than a 401
}

function init() {
  $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
  bindDrop();
  bindJobs();
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
  $("key-form").addEventListener("submit", useKey);
  updateCurl();
  loadModel();
  probeJobs();
}

init();

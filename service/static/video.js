// The video: the file chosen or dropped, its preview, and the defaults its length sets.

import { $ } from "./dom.js";
import { forgetJob } from "./jobs.js";
import { updateCurl } from "./request.js";
import { state } from "./state.js";

const SEGMENT_WINDOW_S = Number(document.body.dataset.segmentWindowS) || 2;
// Past this, a request would hold its connection for long: a job by default.
const JOB_FROM_S = 60;

export function setFile(file) {
  if (!file) return;
  forgetJob();
  state.file = file;
  state.segmentsTouched = false;
  state.jobTouched = false;
  $("as-job").checked = false;
  $("file-name").textContent = `${file.name} — ${sizeText(file.size)}`;
  const video = $("preview");
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  $("preview-note").hidden = true;
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

export function cannotPlay() {
  const what = state.file && state.file.type ? state.file.type : "this format";
  showNote(`This browser cannot preview ${what}; the service can still classify it.`);
  $("preview").hidden = true;
  // The length is unknown here: segments on, so a long video gets its timeline.
  if (!state.segmentsTouched) $("segments").checked = true;
  updateCurl();
}

export function onMetadata() {
  const duration = $("preview").duration;
  if (!Number.isFinite(duration)) return;
  if (!state.segmentsTouched) $("segments").checked = duration > SEGMENT_WINDOW_S;
  if (!state.jobTouched) $("as-job").checked = duration > JOB_FROM_S;
  updateCurl();
}

export function bindDrop() {
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

// The result: bars for the top labels, facts, and the timeline of segments with its
// legend. POST /classify's body, whether it came from /classify or a finished job.

import { $, addFacts, el } from "./dom.js";
import { state } from "./state.js";

const PALETTE = ["#1f77b4", "#e8710a", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#5f6b7a", "#bcbd22", "#17becf"];

const percent = (score) => `${(score * 100).toFixed(1)}%`;

function colourOf(label) {
  const index = state.labels.indexOf(label);
  const i = index < 0 ? 0 : index;
  // Past the palette, hues spaced by the golden angle stay distinct.
  return i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360}, 60%, 45%)`;
}

// The last answer was for another request: it goes, whatever the next one brings.
export function clearResult() {
  $("result").hidden = true;
  $("result-empty").hidden = true;
}

export function renderResult(r) {
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

const endOf = (r) => Math.max(r.video.duration_s || 0, ...r.segments.map((s) => s.end_s)) || 1;

function renderTimeline(r) {
  const box = $("timeline-box");
  const segments = r.segments || [];
  if (!segments.length) { box.hidden = true; return; }
  const end = endOf(r);
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

export function movePlayhead(at) {
  const r = state.result;
  const video = $("preview");
  if (!r || !r.segments) return;
  const time = at ?? video.currentTime ?? 0;
  $("playhead").style.left = `${Math.min(100, (time / endOf(r)) * 100)}%`;
  $("timeline").querySelectorAll(".seg").forEach((b) => {
    b.classList.toggle("current", time >= Number(b.dataset.start) && time < Number(b.dataset.end));
  });
}

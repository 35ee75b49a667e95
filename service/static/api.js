// Talking to the API: fetch with the key, and the problems it answers.

import { $ } from "./dom.js";
import { state } from "./state.js";

export async function api(path, init = {}) {
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

export function problemOf({ response, body }) {
  if (body && typeof body === "object" && body.title) return body;
  const text = typeof body === "string" ? body.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim() : "";
  return {
    title: response.statusText || "Request failed",
    status: response.status,
    detail: text.slice(0, 300) || "The server answered without a problem description.",
  };
}

export function showProblem(problem, retryAfter) {
  $("problem-title").textContent = problem.title || "Error";
  $("problem-status").textContent = problem.status ? `(${problem.status})` : "";
  $("problem-detail").textContent = problem.detail || "";
  const retry = $("problem-retry");
  retry.hidden = !retryAfter;
  retry.textContent = retryAfter ? `Retry after ${retryAfter} s.` : "";
  $("problem").hidden = false;
}

// A refusal as the API gave it; a 401 also opens the key card.
export function showRefusal(answer) {
  if (answer.response.status === 401) needKey();
  showProblem(problemOf(answer), answer.response.headers.get("Retry-After"));
}

export function showNetworkError(err) {
  showProblem({ title: "Network error", detail: `The request did not complete: ${err.message}` });
}

export function clearProblem() { $("problem").hidden = true; }

export function needKey(message) {
  $("key-card").hidden = false;
  if (message) $("key-note").textContent = message;
}

"""Results: what the suite measured, summarised into the document ``latest.json`` holds.

Throughput is the median over repeats; latency percentiles pool every request
of every repeat; each ratio is the median of the ratios taken within one round
(the contenders of a round ran back to back, under the same outside load).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.client import RunResult
from bench.floor import Floor
from bench.suite import Measured

# Targets (issues 5, 21 and 23): (ratio or figure, comparison, goal).
TARGETS = (
    ("service_vs_floor", ">=", 0.85),
    ("service_vs_naive", ">=", 4.0),
    ("service_vs_idiomatic", ">=", 1.5),
    ("long_vs_short", "<=", 2.0),
    ("peak_rss_mb", "<=", 1024.0),
    ("service_vs_litserve_style_c1_p50", "<=", 0.75),
    ("batcher_no_wait_c1_p50", "<=", 0.95),
    ("ingress_processes_vs_1", ">=", 1.3),
    ("bulk_local_vs_floor", ">=", 0.9),
    ("bulk_ray_vs_floor", ">=", 0.7),
    ("bulk_local_w2_peak_rss_mb", "<=", 1536.0),
)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def run_summary(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Median throughput over repeats, pooled latency percentiles, summed errors."""
    latencies = [x for r in runs for x in r.latencies_s]
    pct = (lambda q: float(np.percentile(latencies, q)) * 1000) if latencies else lambda q: None
    rates = [r.videos_per_s for r in runs]
    server = [t["total"] - t.get("upload", 0.0) for r in runs for t in r.server_timings]
    return {
        "concurrency": runs[0].concurrency,
        "repeats": len(runs),
        "requests": sum(r.requests for r in runs),
        "videos_per_s": _median(rates),
        "videos_per_s_range": [min(rates), max(rates)],
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "server_p50_ms": _median(server),
        "errors": sum(r.errors for r in runs),
        "error_samples": [e for r in runs for e in r.error_samples][:5],
    }


def floor_summary(floors: Sequence[Floor]) -> dict[str, Any]:
    return {
        "videos_per_s": _median([f.videos_per_s for f in floors]),
        "decode_videos_per_s": _median([f.decode_videos_per_s for f in floors]),
        "infer_clips_per_s": _median([f.infer_clips_per_s for f in floors]),
        "decoded_frames_per_video": _median([f.decoded_frames_per_video for f in floors]),
        "repeats": len(floors),
    }


def summarise(m: Measured) -> dict[str, Any]:
    """The measured part of ``latest.json`` (the caller adds machine, model and settings)."""
    by_server: dict[str, dict[str, Any]] = {"service": {}, "naive": {}, "idiomatic": {}}
    idiomatic_long: dict[str, Any] = {}
    for key, runs in m.runs.items():
        server, workload, conc = key.split("/")
        name = conc if workload == "w1" else f"{workload}_{conc}"
        if server == "idiomatic" and workload != "w1":
            idiomatic_long[name] = run_summary(runs)
        else:
            by_server.setdefault(server, {})[name] = run_summary(runs)
    service = by_server["service"]
    length = {
        "w3_p50_ms": service.get("w3_c1", {}).get("p50_ms"),
        "w1_10s_p50_ms": service.get("w1_10s_c1", {}).get("p50_ms"),
        "w3_server_ms": service.get("w3_c1", {}).get("server_p50_ms"),
        "w1_10s_server_ms": service.get("w1_10s_c1", {}).get("server_p50_ms"),
        "client": "raw socket (sendall), one request at a time",
        "w3_httpx_p50_ms": service.get("w3_httpx_c1", {}).get("p50_ms"),
        "w1_10s_httpx_p50_ms": service.get("w1_10s_httpx_c1", {}).get("p50_ms"),
    }
    ratios: dict[str, float | None] = {k: _median(v) for k, v in m.ratios.items()}
    for name, _, _ in TARGETS:
        if not name.endswith("peak_rss_mb"):
            ratios.setdefault(name, None)
    ratios["long_vs_short"] = _ratio(length["w3_p50_ms"], length["w1_10s_p50_ms"])
    ratios["long_vs_short_in_server"] = _ratio(length["w3_server_ms"], length["w1_10s_server_ms"])
    ratios["long_vs_short_httpx"] = _ratio(length["w3_httpx_p50_ms"], length["w1_10s_httpx_p50_ms"])
    w2_floor = m.floor.get("w2")
    if w2_floor and "w2_c2" in service:
        ratios["service_vs_floor_w2"] = _ratio(
            service["w2_c2"]["videos_per_s"], floor_summary(w2_floor)["videos_per_s"]
        )
    usage = m.usage_c8
    doc: dict[str, Any] = {
        "ratios": ratios,
        "floor": {k: floor_summary(v) for k, v in m.floor.items()},
        "service": service,
        "naive": by_server["naive"],
        "idiomatic": by_server["idiomatic"],
        "idiomatic_long": idiomatic_long,
        "litserve_style": by_server.get("litserve-style", {}),
        "scale": {
            name: runs
            for name, runs in by_server.items()
            if name.startswith(("service-", "ingress-"))
        },
        "front_cpu_ms": {k: _median(v) for k, v in m.front_ms.items()},
        "bulk": m.bulk,
        "length": length,
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "peak_rss_hwm_mb": round(m.hwm_mb, 1),
        "cpu": {
            "service_cores_c8": _median([u.tree_cores for u in usage]),
            "machine_busy_c8": _median([u.machine_busy for u in usage]),
        },
    }
    doc["targets"] = targets(doc)
    return doc


def targets(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, op, goal in TARGETS:
        value = _figure(doc, name)
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out[name] = {"value": value, "goal": f"{op} {goal:g}", "met": met}
    return out


def _figure(doc: dict[str, Any], name: str) -> float | None:
    if name == "peak_rss_mb":
        return float(doc["peak_rss_mb"])
    if name == "bulk_local_w2_peak_rss_mb":
        rss = doc.get("bulk", {}).get("local_w2", {}).get("peak_rss_mb")
        return None if rss is None else float(rss)
    value = doc["ratios"].get(name)
    return None if value is None else float(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b

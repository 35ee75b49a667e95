"""Report: the machine's description, and the results as JSON and as a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import av

PACKAGES = ("av", "onnxruntime-gpu", "onnxruntime", "numpy", "fastapi", "uvicorn", "httpx")


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, load average and the versions that shape the numbers."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "ffmpeg (libavcodec)": _libavcodec()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "versions": versions,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _libavcodec() -> str:
    version = av.library_versions.get("libavcodec", ())
    return ".".join(str(v) for v in version)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip()


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``latest.json`` and ``latest.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "latest.json", out / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _row(name: str, load: str, run: dict[str, Any] | None) -> str:
    if not run:
        return f"| {name} | {load} | – | – | – | – | – |"
    return (
        f"| {name} | {load} | {_f(run.get('videos_per_s'), 2)} | {_f(run.get('p50_ms'))} | "
        f"{_f(run.get('p95_ms'))} | {_f(run.get('p99_ms'))} | {_f(run.get('errors'))} |"
    )


def _bulk(r: dict[str, Any]) -> str:
    runs = r.get("bulk", {})
    if not runs:
        return "not measured"
    parts = [
        f"{name} {_f(run.get('files_per_s'), 1)} files/s (start-up {_f(run.get('startup_s'), 1)} s)"
        for name, run in runs.items()
        if "files_per_s" in run
    ]
    if "local_w2" in runs:
        parts.append(f"local on W2 peak RSS {_f(runs['local_w2']['peak_rss_mb'], 0)} MB")
    return ", ".join(parts)


def _front(figures: dict[str, float | None]) -> str:
    if not figures:
        return "not measured"
    return ", ".join(f"{key} {_f(ms, 2)} ms" for key, ms in figures.items())


def markdown(r: dict[str, Any]) -> str:
    """The results as a Markdown page: machine, throughput/latency table, ratios, targets."""
    m = r["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        "# vidlstm benchmark",
        "",
        f"`{r['command']}` — {r['created']}{' (quick)' if r['quick'] else ''}",
        "",
        f"- Machine: {m['cpu']}, {m['cores_usable']} usable cores, {m['memory_gb']} GB; "
        f"{m['os']}; commit {m['commit'] or '?'}{' + changes' if m['dirty'] else ''}",
        f"- Load average (1/5/15 min): {r['load_average']['start']} at start, "
        f"{r['load_average']['end']} at end (others' work included)",
        f"- Versions: {versions}",
        f"- Model: {r['model']['name']} {r['model']['version']} {r['model']['clip_shape']}"
        f"{'' if r['model']['trained'] else ' (untrained weights: cost is what is measured)'}",
        f"- Service settings: {json.dumps(r['settings'])}",
        f"- Repeats: {r['repeats']}; throughput is the median over repeats, latency "
        "percentiles pool every request of every repeat.",
        "- Client: every server is loaded by the same raw-socket HTTP/1.1 client (threads, "
        "kept-alive connections, `sendall`); the service at W1 concurrency 8 also by httpx "
        "(asyncio), for reference: it shares the 2 cores with the server under test.",
        "",
        "| server | workload, concurrency | videos/s | p50 ms | p95 ms | p99 ms | errors |",
        "| --- | --- | --: | --: | --: | --: | --: |",
    ]
    floor = r["floor"].get("w1")
    if floor:
        lines.append(
            f"| floor (no HTTP) | W1, all cores | {_f(floor['videos_per_s'], 2)} | – | – | – | – |"
        )
    for key, label in (("c1", "W1, 1"), ("c8", "W1, 8"), ("c32", "W1, 32")):
        lines.append(_row("service", label, r["service"].get(key)))
    if "w1_httpx_c8" in r["service"]:
        lines.append(_row("service", "W1 (httpx client), 8", r["service"]["w1_httpx_c8"]))
    for name in ("idiomatic", "naive", "litserve_style"):
        for key, run in r.get(name, {}).items():
            lines.append(_row(name.replace("_", "-"), f"W1, {key[1:]}", run))
    for name, runs in r.get("scale", {}).items():
        for key, run in runs.items():
            workload, conc = key.rsplit("_", 1) if "_" in key else ("w1", key)
            lines.append(_row(name, f"{workload.upper()}, {conc[1:]}", run))
    for key, run in r["service"].items():
        if key.startswith(("w2", "w3")):
            workload, conc = key.rsplit("_", 1)
            client = " (httpx client)" if workload.endswith("_httpx") else ""
            name = workload.removesuffix("_httpx").upper()
            lines.append(_row("service", f"{name}{client}, {conc[1:]}", run))
    for key, run in r["idiomatic_long"].items():
        workload, conc = key.split("_")
        lines.append(_row("idiomatic", f"{workload.upper()}, {conc[1:]}", run))
    lines += ["", "| ratio | value | target | met |", "| --- | --: | --: | --- |"]
    for name, target in r["targets"].items():
        met = "yes" if target["met"] else ("–" if target["met"] is None else "no")
        lines.append(f"| {name} | {_f(target['value'], 2)} | {target['goal']} | {met} |")
    lines += [
        "",
        f"- Floor (W1): decode {_f(floor and floor['decode_videos_per_s'], 1)} videos/s on "
        f"all cores ({_f(floor and floor['decoded_frames_per_video'], 0)} frames decoded per "
        f"video), inference {_f(floor and floor['infer_clips_per_s'], 0)} clips/s at batch "
        f"{r['settings'].get('max_batch_size')}.",
        f"- Length (one request at a time, raw-socket client): W3 10-minute video p50 "
        f"{_f(r['length'].get('w3_p50_ms'))} ms, 10-s W1 clip "
        f"p50 {_f(r['length'].get('w1_10s_p50_ms'))} ms; inside the server (decode + queue + "
        f"inference, upload excluded) {_f(r['length'].get('w3_server_ms'))} ms vs "
        f"{_f(r['length'].get('w1_10s_server_ms'))} ms; with the httpx client "
        f"{_f(r['length'].get('w3_httpx_p50_ms'))} ms vs "
        f"{_f(r['length'].get('w1_10s_httpx_p50_ms'))} ms (its upload path is the bottleneck "
        "for a 70 MB body).",
        f"- Bulk on W1 (`python -m bulk`, files/s beyond start-up; start-up s): {_bulk(r)}.",
        f"- Front CPU per request (serving processes less ONNX Runtime, decode workers "
        f"apart): {_front(r.get('front_cpu_ms', {}))}.",
        f"- Service process tree (server + decode workers): peak RSS {_f(r['peak_rss_mb'], 0)} MB "
        f"(sum of per-process peaks {_f(r['peak_rss_hwm_mb'], 0)} MB); at W1 concurrency 8 it "
        f"used {_f(r['cpu'].get('service_cores_c8'), 2)} cores while the machine was "
        f"{_f(100 * (r['cpu'].get('machine_busy_c8') or 0), 0)}% busy (client and others "
        "included).",
        "",
    ]
    return "\n".join(lines)

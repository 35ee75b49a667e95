"""Profile: where the service's CPU goes under W1 load, by pipeline stage and by function.

    python -m bench.profile [--seconds 20] [--concurrency 8] [--label after]

Starts ``python -m service``, drives W1 at a fixed concurrency and samples the
server and its decode workers with py-spy (``pip install py-spy``) in native
mode: without it, py-spy loses samples while PyAV has released the GIL (that
is, while libavcodec decodes) and overstates everything else. Threads waiting
(epoll, poll, futex, sleep) are set apart, so the shares are of busy samples;
native code without symbols counts for the Python line that called it.
Writes ``bench/results/profile-<label>.md`` (a table of stages and the top
functions) and the raw collapsed stacks, for a flame graph, to
``bench/cache/profile-<label>.txt``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from bench import client, servers, workloads
from bench.client import Upload

log = logging.getLogger("bench.profile")

REPO = Path(__file__).resolve().parents[1]
# A sample goes to the stage of its innermost frame that matches a rule (first rule wins).
# Native code (libavcodec, swscale, ONNX Runtime) shows as the Python line that called it.
STAGES = (
    ("decode: codec (libavcodec)", ("_decode (service/media/", "next_frame (service/media/cursor")),
    ("decode: resize + RGB (swscale)", ("_convert (service/media/",)),
    ("decode: open + probe", ("open_video", "open_probed", "_probe", "video_stream", "_info")),
    ("decode: read-ahead, seek", ("keyframe_ahead", "_packet_at", "_demux", "seek", "restart")),
    ("decode: sampler (Python)", ("service/media/",)),
    ("inference (ONNX Runtime)", ("run (service/pipeline/inference.py", "onnxruntime")),
    ("worker IPC (pebble, pickle)", ("pebble", "multiprocessing", "pickle", "connection.py")),
    (
        "upload (spool to disk)",
        ("service/pipeline/upload.py", "service/pipeline/spool.py", "service/pipeline/body.py"),
    ),
    ("batcher", ("service/pipeline/batcher.py",)),
    (
        "HTTP + app (uvicorn, starlette, pydantic)",
        ("uvicorn", "httptools", "h11", "starlette", "fastapi", "pydantic", "service/"),
    ),
    ("event loop, threads", ("asyncio", "uvloop", "selectors", "threading", "concurrent")),
)


# Innermost native frames that mean a thread is waiting, not working. An address
# without a symbol inside libc is its futex wait (what Lock.acquire ends in).
IDLE_LEAVES = (
    "epoll_pwait",
    "epoll_wait",
    "poll ",
    "select",
    "clock_nanosleep",
    "nanosleep",
    "pthread_cond",
    "sem_wait",
    "futex",
)


def stage_of(frames: list[str]) -> str:
    leaf = frames[-1] if frames else ""
    if (
        any(leaf.startswith(w.strip()) for w in IDLE_LEAVES)
        or (leaf.startswith("0x") and "(libc" in leaf)
        or any("resource_tracker" in f for f in frames)  # multiprocessing's, blocked in read
    ):
        return "idle"
    for frame in reversed(frames):
        for stage, needles in STAGES:
            if any(n in frame for n in needles):
                return stage
    if any("onnxruntime" in f for f in frames):
        return "inference (ONNX Runtime)"
    return "other"


def summarise(raw: Path, top: int = 12) -> str:
    """Per-process-role table of stages (share of busy samples) and the top Python lines."""
    stages: Counter[tuple[str, str]] = Counter()
    lines_: Counter[str] = Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        procs = [f for f in frames if f.startswith("process ")]
        role = "decode worker" if len(procs) > 1 else "server"
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        stage = stage_of(frames)
        n = int(count)
        stages[(role, stage)] += n
        if stage != "idle":
            busy += n
            python = [f for f in frames if ".py:" in f or "<frozen" in f]
            if python:
                lines_[python[-1]] += n
    out = ["| process | stage | share of busy samples |", "| --- | --- | --: |"]
    out += [
        f"| {role} | {stage} | {100 * n / busy:.1f}% |"
        for (role, stage), n in stages.most_common()
        if stage != "idle"
    ]
    idle = {role: n for (role, stage), n in stages.items() if stage == "idle"}
    out += ["", "| innermost Python line | share of busy samples |", "| --- | --: |"]
    out += [f"| `{f}` | {100 * n / busy:.1f}% |" for f, n in lines_.most_common(top)]
    out += ["", f"{busy} busy samples; idle samples (waiting threads) by process: {idle}."]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--label", default="after")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "cache")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--set", action="append", default=[], metavar="VIDLSTM_X=V")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    (w1,) = workloads.ensure([workloads.spec("w1")], args.cache, workers=2)
    uploads = [Upload.of(p) for p in w1.paths]
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.cache / f"profile-{args.label}.txt"  # megabytes: kept out of git
    env = dict(item.split("=", 1) for item in args.set)
    with servers.running("service", args.model, env=env) as service:
        client.run(service.base_url, uploads[:8], concurrency=2)  # warm up
        stop = threading.Event()
        served = [0]

        def load() -> None:
            step = 2 * args.concurrency  # small runs, so that stopping is quick
            for start in itertools.cycle(range(0, len(uploads), step)):
                if stop.is_set():
                    return
                chunk = uploads[start : start + step]
                run = client.run(service.base_url, chunk, concurrency=args.concurrency)
                served[0] += len(run.latencies_s)

        driver = threading.Thread(target=load, daemon=True)
        driver.start()
        time.sleep(1.0)
        start = time.perf_counter()
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(service.pid),
                "--subprocesses",
                "--native",
                "--idle",
                "--rate",
                "100",
                "--duration",
                str(int(args.seconds)),
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            check=True,
            capture_output=True,
        )
        elapsed = time.perf_counter() - start
        stop.set()
        driver.join()
    text = (
        f"# Service profile ({args.label})\n\nW1 at concurrency {args.concurrency}, "
        f"{served[0]} videos served, {elapsed:.0f} s sampled with py-spy "
        "(native stacks; waiting threads set apart), "
        f"settings {env or 'defaults'}.\n\n{summarise(raw)}\n"
    )
    (args.out / f"profile-{args.label}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

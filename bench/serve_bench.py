"""Latency and throughput of the service, beside the same work done in-process.

    .venv/bin/python -m bench.serve_bench [--model models/vidlstm.onnx] [--concurrency 8]

Workload: a 10 s 320x240 H.264 clip at 25 fps (made here with PyAV). Reports
1. in-process, no HTTP: ``decode_clip`` alone, and decode + one ONNX run;
2. in-process decode throughput with one process per decode worker;
3. HTTP against a real ``python -m service``: one request at a time, then
   ``--concurrency`` requests in flight, with the batch sizes the server formed.
Without ``--model`` it exports the default architecture (untrained: the cost
is what is measured) at 16x64x64 into bench/cache/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from model_export.export import ModelMetadata, export_onnx
from model_export.model import ModelConfig, build_model
from service.decode import decode_clip
from service.model import load_model
from tests.media import H264_MP4, moving_square_frames, noise_frames, write_video

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / "cache"


def make_clip(path: Path) -> Path:
    """10 s of 320x240 at 25 fps: a moving square over noise (a realistic bitrate)."""
    if not path.exists():
        frames = moving_square_frames(250, 240, 320)
        noise = noise_frames(250, 240, 320, seed=1) // 4
        write_video(path, (frames // 4 * 3 + noise).astype(np.uint8), fmt=H264_MP4, gop=50)
    return path


def make_model(path: Path, *, num_frames: int, size: int) -> Path:
    if path.exists():
        return path
    labels = [f"class_{i}" for i in range(8)]
    model = build_model(ModelConfig(num_classes=len(labels), height=size, width=size)).eval()
    meta = ModelMetadata(
        labels=labels, num_frames=num_frames, height=size, width=size, name="bench", version="0"
    )
    return export_onnx(model, path, metadata=meta)


def _decode(args: tuple[str, int, int, int]) -> float:
    path, t, h, w = args
    start = time.perf_counter()
    decode_clip(path, num_frames=t, height=h, width=w)
    return time.perf_counter() - start


def in_process(clip: Path, model_path: Path, *, workers: int, n: int) -> None:
    model = load_model(model_path, intra_op_threads=0)
    t, h, w = model.info.num_frames, model.info.height, model.info.width
    decode_s = [_decode((str(clip), t, h, w)) for _ in range(n)]
    frames = decode_clip(clip, num_frames=t, height=h, width=w).frames[None]
    model.run(frames)
    infer_s = []
    for _ in range(n):
        start = time.perf_counter()
        model.run(frames)
        infer_s.append(time.perf_counter() - start)
    batch = np.repeat(frames, 8, axis=0)
    model.run(batch)
    start = time.perf_counter()
    model.run(batch)
    batch8 = time.perf_counter() - start
    print(f"in-process decode_clip            median {_ms(decode_s)} ms  (T={t}, {h}x{w})")
    print(f"in-process ONNX run, batch 1      median {_ms(infer_s)} ms on {model.provider}")
    print(f"in-process ONNX run, batch 8      {batch8 * 1000:.1f} ms")
    both = float(np.median(decode_s) + np.median(infer_s))
    print(f"in-process decode + infer         {both * 1000:.1f} ms")
    jobs = [(str(clip), t, h, w)] * (4 * workers)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode, jobs[:workers]))  # start the workers
        start = time.perf_counter()
        list(pool.map(_decode, jobs))
        elapsed = time.perf_counter() - start
    print(
        f"in-process decode throughput      {len(jobs) / elapsed:.1f} clips/s ({workers} processes)"
    )


async def over_http(base: str, clip: Path, *, concurrency: int, n: int) -> None:
    data = clip.read_bytes()
    headers = {"Content-Type": "video/mp4"}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for _ in range(3):
            (await client.post("/classify", content=data, headers=headers)).raise_for_status()
        single, parts = [], []
        for _ in range(n):
            start = time.perf_counter()
            r = await client.post("/classify", content=data, headers=headers)
            single.append(time.perf_counter() - start)
            parts.append(r.json()["timing_ms"])
        print(
            f"HTTP one at a time                median {_ms(single)} ms, p95 {_ms(single, 95)} ms"
        )
        for key in ("upload", "decode", "queue", "inference", "total"):
            median = statistics.median(p[key] for p in parts)
            print(f"    server timing {key:<10} median {median:.1f} ms")

        before = (await client.get("/metrics")).text
        latencies: list[float] = []

        async def one() -> None:
            start = time.perf_counter()
            r = await client.post("/classify", content=data, headers=headers)
            r.raise_for_status()
            latencies.append(time.perf_counter() - start)

        total = concurrency * 4
        sem = asyncio.Semaphore(concurrency)

        async def bounded() -> None:
            async with sem:
                await one()

        start = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(total)))
        elapsed = time.perf_counter() - start
        after = (await client.get("/metrics")).text
    runs = _metric(after, "vidlstm_onnx_runs_total") - _metric(before, "vidlstm_onnx_runs_total")
    print(
        f"HTTP concurrency {concurrency:<3}             {total / elapsed:.1f} req/s, "
        f"median {_ms(latencies)} ms, p95 {_ms(latencies, 95)} ms, "
        f"{total} clips in {runs:.0f} ONNX runs"
    )


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _ms(values: list[float], pct: float = 50) -> str:
    return f"{float(np.percentile(values, pct)) * 1000:.1f}"


def serve(model: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VIDLSTM_MODEL_PATH": str(model),
        "VIDLSTM_PORT": str(port),
        "VIDLSTM_DECODE_WORKERS": str(workers),
        "VIDLSTM_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--n", type=int, default=10, help="repetitions for medians")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    clip = make_clip(CACHE / "clip-10s-320x240.mp4")
    model = args.model or make_model(CACHE / "bench-16x64x64.onnx", num_frames=16, size=64)
    print(
        f"clip {clip.name} ({clip.stat().st_size / 1e6:.2f} MB), model {model.name}, "
        f"{args.workers} decode workers, {os.cpu_count()} CPUs"
    )
    in_process(clip, model, workers=args.workers, n=args.n)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = serve(model, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("service did not start")
            time.sleep(0.2)
        asyncio.run(over_http(base, clip, concurrency=args.concurrency, n=args.n))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()

"""The bulk line of ``make bench``: files/s of ``python -m bulk`` on W1, each engine.

A job pays a start-up (the local engine ~1 s: decode workers and warm-up; Ray
~8 s: the cluster, the actors, their sessions) that an archive of 50,000 files
does not notice and 200 files do. So each engine runs twice, on W1 and on W1
twice over (links under other names, so every path is new): the rate is the
difference of files over the difference of time, and the start-up is what is
left. Both times are the job's own (its summary line), not the interpreter's.
The local engine on W2 (HD) is also watched for its peak memory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import TreeMonitor

REPO = Path(__file__).resolve().parents[1]
_SUMMARY = re.compile(r"this run (\d+) files in ([\d.]+) s")


@dataclass(frozen=True, slots=True)
class BulkRate:
    engine: str
    files_per_s: float
    startup_s: float
    peak_rss_mb: float

    def summary(self) -> dict[str, float | str]:
        return {
            "engine": self.engine,
            "files_per_s": round(self.files_per_s, 2),
            "startup_s": round(self.startup_s, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


def job(
    paths: Sequence[Path], model: Path, work: Path, engine: str, name: str
) -> tuple[int, float, float]:
    """One ``python -m bulk`` run: (files, seconds by its own summary, peak RSS MB of its tree)."""
    listing = work / f"{name}.txt"
    listing.write_text("\n".join(str(p) for p in paths) + "\n")
    out = work / f"{name}.parquet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDLSTM_")}
    command = [sys.executable, "-m", "bulk", str(listing), "--out", str(out), "--engine", engine]
    proc = subprocess.Popen(
        [*command, "--model", str(model)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with TreeMonitor(proc.pid) as monitor:
        _, stderr = proc.communicate(timeout=1800)
    found = _SUMMARY.search(stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"bulk ({engine}) failed: {stderr[-2000:]}")
    return int(found.group(1)), float(found.group(2)), monitor.peak_rss_mb


def doubled(paths: Sequence[Path], work: Path) -> list[Path]:
    """The paths twice: themselves and links to them under new names."""
    links = work / "again"
    links.mkdir(exist_ok=True)
    again = []
    for path in paths:
        link = links / path.name
        if not link.exists():
            link.symlink_to(path)
        again.append(link)
    return [*paths, *again]


def measure(engine: str, paths: Sequence[Path], model: Path, work: Path) -> BulkRate:
    """The engine's files/s beyond its start-up, and that start-up."""
    work.mkdir(parents=True, exist_ok=True)
    n1, s1, rss1 = job(paths, model, work, engine, f"{engine}-once")
    n2, s2, rss2 = job(doubled(paths, work), model, work, engine, f"{engine}-twice")
    rate = (n2 - n1) / (s2 - s1) if s2 > s1 else n2 / s2
    return BulkRate(engine, rate, max(0.0, s1 - n1 / rate), max(rss1, rss2))


def peak_rss_mb(paths: Sequence[Path], model: Path, work: Path) -> float:
    """The local engine's peak memory (its whole process tree) on ``paths``."""
    work.mkdir(parents=True, exist_ok=True)
    return job(paths, model, work, "local", "local-rss")[2]

"""Values the settings object is built from: defaults that depend on the machine,
ONNX Runtime's provider names, and lists given in the environment."""

from __future__ import annotations

import json
import os
from typing import Any

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def cpu_count() -> int:
    """The CPUs this process may run on (a container's quota), not the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_server_processes(workers: int) -> int:
    """1 below 8 decode workers, else one serving process per 4 workers.

    On 2 cores a second process bought no throughput and cost more front CPU per
    request (bench/README.md, scale-up): one process's front takes ~1.2 ms of CPU
    a request, a ceiling that only a node with many decode workers comes near.
    """
    return 1 if workers < 8 else workers // 4


def split_list(value: Any) -> Any:
    """Accept ``a,b`` or a JSON list from the environment, or a real sequence."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def check_providers(value: tuple[str, ...]) -> tuple[str, ...]:
    """``auto``, or the full names of known providers (short names accepted), each once."""
    names = [v.strip() for v in value]
    if not names or names == ["auto"]:
        return ("auto",)
    known = {**PROVIDER_NAMES, **{v.lower(): v for v in PROVIDER_NAMES.values()}}
    unknown = [n for n in names if n.lower() not in known]
    if unknown:
        raise ValueError(f"unknown providers {unknown}; use auto or {sorted(PROVIDER_NAMES)}")
    return tuple(dict.fromkeys(known[n.lower()] for n in names))

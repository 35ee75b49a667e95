"""Values the settings object is built from: defaults that depend on the machine,
ONNX Runtime's provider names, and lists given in the environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
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


def with_keys_file(data: Any) -> Any:
    """The raw settings with the keys of ``api_keys_file`` (one per line, ``#`` comments)
    added to ``api_keys``; a file that cannot be read, or holds none, is an error."""
    if not isinstance(data, dict) or not data.get("api_keys_file"):
        return data
    path = Path(data["api_keys_file"])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise ValueError(f"api_keys_file {path} cannot be read: {reason}") from err
    stripped = (line.strip() for line in lines)
    keys = [key for key in stripped if key and not key.startswith("#")]
    if not keys:
        raise ValueError(f"api_keys_file {path} holds no key")
    return {**data, "api_keys": [*split_list(data.get("api_keys") or []), *keys]}

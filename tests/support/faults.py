"""Fault injection for the decode workers: ``create_app(..., decode_hook=inject)``.

``python -m tests.support.faulty_service`` serves with it in a process of its own.

The hook runs in the worker before each decode and acts on a marker at the
start of the uploaded file, so a test chooses the fault by what it uploads.
``VIDLSTM_TEST_DECODE_DELAY_S`` slows every decode down (drain tests);
``VIDLSTM_TEST_KEEP_UPLOADS_DIR`` gets a copy of every spooled upload.
:func:`require_clip_block` and :func:`tiny_files` are hooks of their own for the
clips' shared-memory blocks.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import time
from pathlib import Path

from service.pipeline import clip_block

CRASH = b"VIDLSTM-FAULT-SIGKILL"
SEGFAULT = b"VIDLSTM-FAULT-SEGV"
HANG = b"VIDLSTM-FAULT-HANG"
RAISE = b"VIDLSTM-FAULT-RAISE"
DELAY_ENV = "VIDLSTM_TEST_DECODE_DELAY_S"
KEEP_ENV = "VIDLSTM_TEST_KEEP_UPLOADS_DIR"


def inject(path: str) -> None:
    keep = os.environ.get(KEEP_ENV)
    if keep:
        shutil.copyfile(path, Path(keep) / f"{time.time_ns()}.upload")
    head = Path(path).read_bytes()[:64]
    if head.startswith(CRASH):
        os.kill(os.getpid(), signal.SIGKILL)
    if head.startswith(SEGFAULT):
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if head.startswith(RAISE):
        raise RuntimeError("unexpected failure inside the decoder at /secret/path")
    if head.startswith(HANG):
        while True:
            time.sleep(1)
    delay = float(os.environ.get(DELAY_ENV, "0"))
    if delay > 0:
        time.sleep(delay)


def require_clip_block(path: str) -> None:
    """Fails the decode unless the server made its clips' block before the decode started."""
    if not clip_block.leftovers(clip_block.SHM_DIR, pid=os.getppid()):
        raise RuntimeError("no block was made for this decode")


def tiny_files(path: str) -> None:
    """The worker may write no file over 4 KiB, so no clip fits in its block."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

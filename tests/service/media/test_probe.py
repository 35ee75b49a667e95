"""The pixel cap holds before anything is decoded: while FFmpeg probes the streams, when a
stream switches to a bigger size mid-way, and every time (not only the first)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.core.errors import FrameTooLargeError
from service.media.clip import decode_clip
from tests.support import hostile
from tests.support.observe import REPO

# What a decode may peak at here (PyAV, numpy, tiny frames: ~60 MB), below the
# ~140 MB an 8192x4320 H.264 frame or the ~600 MB a 14000x14000 PNG costs decoded.
PEAK_MB = 100


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    made = {}
    for case in hostile.FILE_CASES:
        if case.name in ("png-claims-14000x14000", "mjpeg-claims-16000x16000", "h264-8192x4320"):
            made[case.name] = folder / f"{case.name}.upload"
            made[case.name].write_bytes(case.make(folder))
    made["switch"] = folder / "switch.upload"
    made["switch"].write_bytes(hostile.size_switch(folder))
    return made


@pytest.mark.parametrize("name", ["png-claims-14000x14000", "mjpeg-claims-16000x16000"])
def test_refused_size_is_reported_every_time(bombs: dict[str, Path], name: str) -> None:
    """FFmpeg names a refused size only in its log, and PyAV drops repeated messages."""
    for _ in range(3):
        with pytest.raises(FrameTooLargeError, match="000x"):
            decode_clip(bombs[name], num_frames=8, height=32, width=32)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_no_oversized_frame_is_ever_decoded(bombs: dict[str, Path]) -> None:
    """Peak memory of a process that probes and decodes every bomb stays small."""
    script = """
import json, sys
from pathlib import Path
from service.media.clip import decode_clip
from service.core.errors import VidlstmError
outcomes = {}
for path in sys.argv[1:]:
    try:
        clip = decode_clip(path, num_frames=8, height=32, width=32)
        outcomes[path] = f"{clip.info.width}x{clip.info.height}"
    except VidlstmError as err:
        outcomes[path] = err.slug
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
hwm = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
print(json.dumps({"peak_mb": int(hwm.split()[1]) / 1024, "outcomes": outcomes}))
"""
    paths = [str(p) for p in bombs.values()]
    result = subprocess.run(
        [sys.executable, "-c", script, *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(result.stdout)

    assert report["peak_mb"] < PEAK_MB, report
    outcomes = {Path(p).stem: v for p, v in report["outcomes"].items()}
    assert outcomes == {
        "png-claims-14000x14000": "frame-too-large",
        "mjpeg-claims-16000x16000": "frame-too-large",
        "h264-8192x4320": "frame-too-large",
        "switch": "64x48",  # the 8192x4320 frames in the middle are refused, not decoded
    }

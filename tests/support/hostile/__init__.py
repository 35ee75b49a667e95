"""Hostile uploads, made in code: every case is a file (or a request) and its expected answer.

Nothing binary is checked in. Media cases encode a tiny video with PyAV and,
where the attack needs it, patch bytes afterwards (a header that claims a
16000x16000 frame, a container that claims ten hours). Each case names the one
outcome the service must give: 200 with a valid result, or a problem+json 4xx
with a stable ``type``. The cases are split by kind: :mod:`.files` (uploads,
encoded by :mod:`.encoding`) and :mod:`.protocol` (requests); :mod:`.outcomes` holds
the answers and the check.
"""

from tests.support.hostile.encoding import VPX, X264, encode, square
from tests.support.hostile.files import (
    CANARY_HOST,
    FILE_CASES,
    FileCase,
    playlist_cases,
    size_switch,
)
from tests.support.hostile.outcomes import OK, Expected, Reply, mismatch
from tests.support.hostile.protocol import ProtocolCase, Target, protocol_cases

__all__ = [
    "CANARY_HOST",
    "FILE_CASES",
    "OK",
    "VPX",
    "X264",
    "Expected",
    "FileCase",
    "ProtocolCase",
    "Reply",
    "Target",
    "encode",
    "mismatch",
    "playlist_cases",
    "protocol_cases",
    "size_switch",
    "square",
]

"""``python -m service`` with the batcher as it was before it learnt to run at once when
no other request can join a batch: every batch waits out ``VIDLSTM_MAX_DELAY_MS``.

The baseline of the batcher's concurrency-1 figure (``batcher_no_wait_c1_p50``): the
same server, settings and client, only that one decision reverted.

    VIDLSTM_MODEL_PATH=models/vidlstm.onnx python -m bench.waiting_batcher_server
"""

from __future__ import annotations

from service.pipeline.batcher import Batcher
from service.server import main


def _always_wait(self: Batcher) -> bool:
    return False


if __name__ == "__main__":
    Batcher._none_coming = _always_wait  # type: ignore[method-assign]
    main()

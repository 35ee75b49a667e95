"""The local engine: one process, a decode worker per core, one inference thread.

Files go to the shared :class:`~bulk.classifier.Classifier` a few per worker at
a time; rows go to the part writer as they finish, with a progress bar (files,
ok, failed, files/s, ETA). Ctrl-C writes what is finished before it stops.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from bulk.classifier import Classifier, JobOptions
from bulk.table import OK, PartWriter, Row
from service.core.settings import Settings
from service.pipeline.decode_pool import DecodeHook


async def _run(
    paths: Sequence[Path],
    settings: Settings,
    writer: PartWriter,
    options: JobOptions,
    decode_hook: DecodeHook | None,
) -> Counter[str]:
    statuses: Counter[str] = Counter()
    todo = iter(paths)
    with tqdm(total=len(paths), unit="file", desc="bulk (local)", smoothing=0.05) as bar:
        classifier = Classifier(
            settings, top_k=options.top_k, segments=options.segments, decode_hook=decode_hook
        )
        async with classifier:

            async def feed() -> None:
                for path in todo:  # the one iterator, shared: each file goes to one feeder
                    row: Row = await classifier.classify(path)
                    writer.add(row)
                    statuses[row["status"]] += 1
                    failed = sum(statuses.values()) - statuses[OK]
                    bar.set_postfix(ok=statuses[OK], failed=failed, refresh=False)
                    bar.update()

            await asyncio.gather(*(feed() for _ in range(classifier.in_flight)))
    return statuses


def run(
    paths: Sequence[Path],
    settings: Settings,
    out: Path,
    options: JobOptions,
    *,
    decode_hook: DecodeHook | None = None,
) -> Counter[str]:
    """Classify ``paths`` into parts under ``out``; the count of rows by status.

    ``decode_hook``: fault injection in the decode workers (tests only).
    """
    writer = PartWriter(out, rows=options.part_rows)
    try:
        return asyncio.run(_run(paths, settings, writer, options, decode_hook))
    finally:
        writer.flush()  # on Ctrl-C too: what is finished is kept for --resume

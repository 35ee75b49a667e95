"""Bulk: classify a whole video archive offline, one row per file in a Parquet table.

``python -m bulk SRC... --out OUT.parquet`` reads the files where they lie and
runs them through the service's own pipeline without HTTP: the same decode
workers (crash-isolated, time-limited), the same sampling and limits, the same
error classes, the same batcher and ONNX Runtime session, the same response
builder. Two engines share all of that and differ only in scheduling: ``local``
(one process, a decode worker per core) and ``ray`` (Ray Data actors, the same
script on a laptop or a cluster).
"""

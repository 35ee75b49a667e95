"""Prometheus metrics, in a registry of the app's own (tests run many apps at once).

With several serving processes (``VIDLSTM_SERVER_PROCESSES``) the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before it starts them: every process writes its
counters and histograms there, and whichever process answers ``/metrics`` sums
them all (prometheus_client's multiprocess mode), so a scrape through the one
port sees the whole service. Gauges sum over live processes; the model's info
is the same in each and comes from the answering one.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Every metric the service exports, named ``vidlstm_*``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vidlstm_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "vidlstm_request_duration_seconds",
            "Time from request start to response end",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "vidlstm_requests_in_flight",
            "Classify requests being served",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.rejections = Counter(
            "vidlstm_rejections", "Problem responses, by problem type", ["reason"], registry=r
        )
        self.upload_bytes = Histogram(
            "vidlstm_upload_bytes",
            "Size of accepted uploads",
            buckets=tuple(2.0**k for k in range(10, 31, 2)),
            registry=r,
        )
        self.decode_seconds = Histogram(
            "vidlstm_decode_seconds",
            "Decode & sample time per video",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_restarts = Counter(
            "vidlstm_decode_worker_restarts",
            "Decode workers replaced, by cause",
            ["cause"],
            registry=r,
        )
        self.inference_seconds = Histogram(
            "vidlstm_inference_seconds",
            "Time of one ONNX Runtime run",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_cpu_seconds = Counter(
            "vidlstm_inference_cpu_seconds",
            "CPU time of ONNX Runtime runs on the calling thread (all of it with one intra-op"
            " thread, as by default)",
            registry=r,
        )
        self.batch_size = Histogram(
            "vidlstm_batch_size", "Clips per ONNX Runtime run", buckets=BATCH_BUCKETS, registry=r
        )
        self.onnx_runs = Counter("vidlstm_onnx_runs", "ONNX Runtime runs", registry=r)
        self.clips = Counter("vidlstm_clips_inferred", "Clips given a prediction", registry=r)
        self.queue_depth = Gauge(
            "vidlstm_queue_depth",
            "Clips waiting for inference",
            multiprocess_mode="livesum",
            registry=r,
        )
        # Info has no multiprocess form: it lives in a registry rendered as it is.
        self._info_registry = CollectorRegistry(auto_describe=True)
        self.model = Info("vidlstm_model", "The model being served", registry=self._info_registry)
        self.model_ready = Gauge(
            "vidlstm_model_ready",
            "1 while a model version is routed to, 0 once it failed or was removed",
            ["model", "version", "provider"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_requests = Counter(
            "vidlstm_model_requests",
            "Requests served, by model name and version",
            ["model", "version"],
            registry=r,
        )
        self.jobs = Counter("vidlstm_jobs", "Jobs finished, by outcome", ["outcome"], registry=r)
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        if self.multiprocess_dir is None:
            body = generate_latest(self.registry)
        else:
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            body = generate_latest(merged)
        return body + generate_latest(self._info_registry), CONTENT_TYPE_LATEST

"""API conformance: schemathesis generates requests from the service's own OpenAPI document
(valid ones and invalid ones) against a real server, and runs every check it has
(``--checks all``): no 5xx, a documented status and content type, a body that matches
its schema, invalid requests refused and valid ones accepted.

Bounded for CI: ``VIDLSTM_SCHEMA_EXAMPLES`` examples per operation and mode (default 100).
Driven through hypothesis directly: schemathesis' pytest plugin does not run on pytest 9.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from service.app import create_app
from service.core.settings import Settings
from tests.conftest import make_test_settings
from tests.support.serving import Served, serve_in_thread

EXAMPLES = int(os.environ.get("VIDLSTM_SCHEMA_EXAMPLES", "100"))
# Any bytes are a schema-valid upload, but only a video gets a 200: refusing other bytes
# (415 not-a-video, 422 no-video-stream, ...) is the one refusal of a valid request a
# schema cannot rule out (it cannot say "a video"). Any other refusal of a valid request
# fails the run (_refused_only_for_its_bytes): a 422 invalid-parameter, say, means the
# document promised what the server does not take.
ACCEPTED = ["2xx", "401", "404", "415", "422"]
CONTENT_REFUSALS = {
    "idempotency-key-reused",  # a key used before with other bytes: state, not schema
    "not-a-video",
    "decode-failed",
    "no-video-stream",
    "limit-exceeded",
    "frame-too-large",
    "decoder-crashed",
}
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}}
)
# The document only: the app is not started, so the model file need not exist.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(model_path=Path("unused.onnx"))).openapi(), config=CONFIG
)


def _operations() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for result in SCHEMA.get_all_operations():
        if isinstance(result, schemathesis.core.result.Err):
            raise AssertionError(f"our own OpenAPI document is invalid: {result.err()}")
        found[result.ok().label] = result.ok()
    return found


OPERATIONS = _operations()
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Invalid requests exist only where there is something to get wrong: parameters, a body.
RUNS = [(label, POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, NEGATIVE) for label in ("POST /classify", "POST /jobs", "GET /jobs")
]


@pytest.fixture(scope="module")
def api_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = make_test_settings(
        tiny_model,
        tmp_path_factory.mktemp("schema-spool"),
        jobs_dir=tmp_path_factory.mktemp("schema-jobs"),
    )
    with serve_in_thread(create_app(settings)) as served:
        yield served


def test_schema_lists_every_route() -> None:
    assert set(OPERATIONS) == {
        "POST /classify",
        "GET /health",
        "GET /health/live",
        "GET /metrics",
        "GET /model",
        "GET /models",
        "POST /jobs",
        "GET /jobs",
        "GET /jobs/{job_id}",
        "DELETE /jobs/{job_id}",
    }


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{op}-{m.value}" for op, m in RUNS])
def test_operation_conforms_to_the_schema(api_server: Served, label: str, mode: Any) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(OPERATIONS[label].as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate(
            base_url=api_server.base_url,
            timeout=30,
            additional_checks=[_refused_only_for_its_bytes],
        )

    check()


def _refused_only_for_its_bytes(ctx: Any, response: Any, case: Any) -> None:
    """A schema-valid request's 415 or 422 must be about its bytes (or a key already
    used for others), not its parameters."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and response.status_code in (415, 422):
        slug = response.json()["type"].rsplit("/", 1)[-1]
        assert slug in CONTENT_REFUSALS, f"a schema-valid request was refused: {response.text}"

"""API conformance: schemathesis generates requests from the service's own OpenAPI document
(valid ones and invalid ones) against a real server, and checks every answer: no 5xx, a
documented status and content type, a body that matches its schema.

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

from service.app import create_app
from service.core.settings import Settings
from tests.conftest import make_test_settings
from tests.support.serving import Served, serve_in_thread

EXAMPLES = int(os.environ.get("VIDLSTM_SCHEMA_EXAMPLES", "100"))
# The document only: the app is not started, so the model file need not exist.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(model_path=Path("unused.onnx"))).openapi()
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
RUNS = [(label, POSITIVE) for label in sorted(OPERATIONS)] + [("POST /classify", NEGATIVE)]
# Any bytes are a schema-valid upload, but only a video gets a 200: the 415 that other
# bytes get is a semantic refusal, not a schema violation.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture(scope="module")
def api_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = make_test_settings(tiny_model, tmp_path_factory.mktemp("schema-spool"))
    with serve_in_thread(create_app(settings)) as served:
        yield served


def test_schema_lists_every_route() -> None:
    assert set(OPERATIONS) == {
        "POST /classify",
        "GET /health",
        "GET /health/live",
        "GET /metrics",
        "GET /model",
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
        case.call_and_validate(base_url=api_server.base_url, timeout=30, excluded_checks=EXCLUDED)

    check()

"""API keys: from a setting or a file, one refusal for every failure, compared in constant
time, never logged; health probes and (by default) metrics stay open."""

from __future__ import annotations

import contextlib
import hmac
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.datastructures import Headers

from service.api import auth
from service.app import create_app
from service.core.errors import PROBLEM_BASE, UnauthorizedError
from service.core.settings import Settings
from tests.conftest import MakeSettings
from tests.support.observe import REPO, run_service
from tests.support.serving import asgi_client

ENV_KEY = "env-key-7f3a9c51d2e84b60"
FILE_KEY = "file-key-0b8e4d2c7a9f1356"
WRONG_KEY = "wrong-key-5c1e8a3f9d7b2046"


def settings_of(**values: Any) -> Settings:
    """Settings from raw values, as the environment would give them (keys as one string)."""
    return Settings(**values)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys"
    path.write_text(f"# rotated 2024-05\n\n  {FILE_KEY}  \nsecond-file-key\n")
    return path


def test_keys_come_from_the_setting_and_the_file(keys_file: Path) -> None:
    settings = settings_of(api_keys=ENV_KEY, api_keys_file=keys_file)

    assert [k.get_secret_value() for k in settings.api_keys] == [
        ENV_KEY,
        FILE_KEY,
        "second-file-key",
    ]
    assert ENV_KEY not in repr(settings) and FILE_KEY not in repr(settings)


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot be read"), ("# only a comment\n\n", "holds no key")]
)
def test_a_bad_keys_file_stops_start_up(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError, match=message) as caught:
        settings_of(api_keys=ENV_KEY, api_keys_file=path)
    assert ENV_KEY not in str(caught.value)


async def test_either_header_with_either_key_source(
    make_settings: MakeSettings, keys_file: Path, mp4: Path
) -> None:
    app = create_app(make_settings(api_keys=ENV_KEY, api_keys_file=keys_file))
    video = {"Content-Type": "video/mp4"}
    async with asgi_client(app) as client:
        statuses = [
            (await client.get("/model", headers=headers)).status_code
            for headers in (
                {"Authorization": f"Bearer {FILE_KEY}"},
                {"Authorization": f"bearer {ENV_KEY}"},
                {"X-API-Key": FILE_KEY},
                {"X-API-Key": ENV_KEY},
            )
        ]
        keyed = await client.post(
            "/classify", content=mp4.read_bytes(), headers={**video, "X-API-Key": FILE_KEY}
        )
        keyless = await client.post("/classify", content=mp4.read_bytes(), headers=video)
    assert statuses == [200] * 4
    assert (keyed.status_code, keyless.status_code) == (200, 401)


async def test_every_refusal_is_the_same_401(make_settings: MakeSettings) -> None:
    """No key, a malformed header or a wrong key: one answer, which says nothing more."""
    app = create_app(make_settings(api_keys=ENV_KEY))
    attempts = [
        {},
        {"Authorization": f"Bearer {WRONG_KEY}"},
        {"Authorization": f"Basic {ENV_KEY}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {ENV_KEY[:-1]}"},
        {"X-API-Key": WRONG_KEY},
        {"X-API-Key": ENV_KEY + "x"},
        {"X-API-Key": ""},
    ]
    async with asgi_client(app) as client:
        responses = [await client.get("/model", headers=headers) for headers in attempts]

    assert {r.status_code for r in responses} == {401}
    bodies = {(r.json()["type"], r.json()["title"], r.json()["detail"]) for r in responses}
    assert bodies == {
        (PROBLEM_BASE + "unauthorized", "Missing or invalid credentials", auth.REFUSAL)
    }
    assert {r.headers["www-authenticate"] for r in responses} == {'Bearer realm="vidlstm"'}


async def test_probes_and_scrapers_stay_open(make_settings: MakeSettings) -> None:
    async with asgi_client(create_app(make_settings(api_keys=ENV_KEY))) as client:
        open_ = [(await client.get(p)).status_code for p in ("/health", "/health/live", "/metrics")]
    async with asgi_client(
        create_app(make_settings(api_keys=ENV_KEY, protect_metrics=True))
    ) as client:
        scrape = (await client.get("/metrics")).status_code
        keyed = (await client.get("/metrics", headers={"X-API-Key": ENV_KEY})).status_code
        probes = [(await client.get(p)).status_code for p in ("/health", "/health/live")]

    assert open_ == [200, 200, 200]
    assert (scrape, keyed) == (401, 200)
    assert probes == [200, 200]


def test_comparison_does_not_depend_on_which_key_or_its_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every configured key is compared, as equal-length digests, whether or not one matches."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = settings_of(api_keys="k,a-much-longer-key-than-the-first,third").api_keys
    for sent in ("k", "third", "nope", "x" * 500):
        compared.clear()
        with contextlib.suppress(UnauthorizedError):
            auth.check_api_key(keys, Headers({"x-api-key": sent}))
        assert compared == [(32, 32)] * 3


def test_keys_never_reach_the_logs(tiny_model: Path, tmp_path: Path, mp4: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(FILE_KEY + "\n")
    env = {
        "VIDLSTM_API_KEYS": ENV_KEY,
        "VIDLSTM_API_KEYS_FILE": str(keys_file),
        "VIDLSTM_LOG_LEVEL": "debug",
        "VIDLSTM_DECODE_WORKERS": "1",
    }
    with run_service(tiny_model, tmp_path, env) as service:
        url = service.base_url
        video = {"Content-Type": "video/mp4"}
        statuses = [
            httpx.post(
                f"{url}/classify",
                content=mp4.read_bytes(),
                headers={**video, "Authorization": f"Bearer {ENV_KEY}"},
                timeout=30,
            ).status_code,
            httpx.post(
                f"{url}/classify",
                content=mp4.read_bytes(),
                headers={**video, "X-API-Key": FILE_KEY},
                timeout=30,
            ).status_code,
            httpx.post(
                f"{url}/classify", content=b"junk", headers={**video, "X-API-Key": FILE_KEY}
            ).status_code,
            httpx.get(f"{url}/model", headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code,
            httpx.get(f"{url}/nowhere", headers={"X-API-Key": ENV_KEY}).status_code,
        ]
        service.proc.terminate()
        service.proc.wait(30)
        log = service.log_path.read_text()

    assert statuses == [200, 200, 415, 401, 404]
    assert '"path": "/classify"' in log  # the access log did write its lines
    for secret in (ENV_KEY, FILE_KEY, WRONG_KEY):
        assert secret not in log


def test_invalid_settings_do_not_echo_the_keys() -> None:
    """pydantic puts a model's whole input in its errors, keys included, unless told not to."""
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        check=False,
        cwd=REPO,
        env={**os.environ, "VIDLSTM_API_KEYS": ENV_KEY, "VIDLSTM_MIN_WINDOW_S": "100"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "min_window_s" in result.stderr
    assert ENV_KEY not in result.stderr + result.stdout

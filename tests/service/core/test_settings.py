"""Settings, the model-file contract, execution providers and API keys."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
from pydantic import ValidationError

from service.app import create_app
from service.errors import PROBLEM_BASE
from service.model import ModelFileError, _with_options, load_model
from service.settings import Settings, get_settings
from tests.conftest import MakeSettings
from tests.serving import asgi_client

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDLSTM_PROVIDERS", "cuda, cpu")
    monkeypatch.setenv("VIDLSTM_API_KEYS", "k1,k2")
    monkeypatch.setenv("VIDLSTM_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("VIDLSTM_TEMP_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert get_settings() is settings
    finally:
        get_settings.cache_clear()

    assert settings.provider_chain == (CUDA, CPU)
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings)
    assert settings.max_batch_size == 16
    assert settings.temp_dir == tmp_path


def test_settings_defaults_are_documented() -> None:
    settings = Settings()
    assert settings.provider_chain == (CUDA, CPU)
    assert settings.max_upload_bytes == 256 * 1024 * 1024
    assert settings.max_pixels == 4096 * 4096
    assert settings.decode_workers >= 1
    assert settings.debug_decode_hook is None
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"


@pytest.mark.parametrize(
    "bad",
    [
        {"providers": "gpu"},
        {"max_batch_size": 0},
        {"max_queue": 4, "max_segments": 8},
        {"segment_window_s": 0.1},
        {"max_upload_bytes": -1},
    ],
)
def test_invalid_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def rewrite_metadata(src: Path, dst: Path, **changes: str | None) -> Path:
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(f"vidlstm.{key}", None)
        else:
            props[f"vidlstm.{key}"] = value
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": None}, "lacks vidlstm.labels"),
        ({"labels": "move_left,move_right"}, "not valid JSON"),
        ({"labels": '["a", "a"]'}, "distinct"),
        ({"labels": '["a", "b"]'}, "classes"),
        ({"num_frames": "eight"}, "integer"),
        ({"height": "0"}, ">= 1"),
        ({"width": "64"}, "disagrees"),
        ({"sampling": "random"}, "samples 'tsn-centre'"),
        ({"metrics": "[]"}, "JSON object"),
    ],
)
def test_model_contract_is_checked(
    tiny_model: Path, tmp_path: Path, changes: dict[str, str | None], message: str
) -> None:
    bad = rewrite_metadata(tiny_model, tmp_path / "bad.onnx", **changes)
    with pytest.raises(ModelFileError, match=message):
        load_model(bad)


def test_missing_or_broken_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\0" * 100)
    with pytest.raises(ModelFileError, match="onnxruntime cannot load"):
        load_model(tmp_path / "junk.onnx")


def test_auto_providers_fall_back_to_cpu_quietly(
    tiny_model: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.WARNING):
        model = load_model(tiny_model, providers=(CUDA, CPU))

    if model.provider == CUDA:
        pytest.skip("CUDA really loads here")
    assert model.provider == CPU
    assert len(caplog.records) <= 1
    assert "ONNXRuntimeError" not in capfd.readouterr().err


def test_gpu_only_providers_fail_without_a_gpu(tiny_model: Path) -> None:
    try:
        model = load_model(tiny_model, providers=(CUDA,))
    except ModelFileError as err:
        assert "loaded" in str(err) or "onnxruntime build" in str(err)
    else:
        assert model.provider == CUDA


def test_cuda_keeps_full_float32_unless_tf32_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # TF32 moved the shipped model's probabilities 1.24e-3 off the CPU's on an H200 (5.4e-6
    # without it): the service turns ONNX Runtime's default off.
    assert _with_options(CUDA, cuda_tf32=False) == (CUDA, {"use_tf32": "0"})
    assert _with_options(CUDA, cuda_tf32=True) == (CUDA, {"use_tf32": "1"})
    assert _with_options(CPU, cuda_tf32=True) == CPU
    assert Settings().cuda_tf32 is False
    monkeypatch.setenv("VIDLSTM_CUDA_TF32", "true")
    assert Settings().cuda_tf32 is True


async def test_api_keys(make_settings: MakeSettings, mp4: Path) -> None:
    settings = make_settings(api_keys="k1,k2")
    video = {"Content-Type": "video/mp4"}
    async with asgi_client(create_app(settings)) as client:
        missing = await client.post("/classify", content=mp4.read_bytes(), headers=video)
        wrong = await client.post(
            "/classify", content=mp4.read_bytes(), headers={**video, "X-API-Key": "k3"}
        )
        bearer = await client.post(
            "/classify", content=mp4.read_bytes(), headers={**video, "Authorization": "Bearer k2"}
        )
        header = await client.post(
            "/classify", content=mp4.read_bytes(), headers={**video, "X-API-Key": "k1"}
        )
        model_info = await client.get("/model")
        open_paths = [
            (await client.get(p)).status_code for p in ("/health", "/health/live", "/metrics")
        ]

    assert missing.status_code == 401
    assert missing.json()["type"] == PROBLEM_BASE + "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert bearer.status_code == 200
    assert header.status_code == 200
    assert model_info.status_code == 401
    assert open_paths == [200, 200, 200]


async def test_metrics_can_be_protected(make_settings: MakeSettings) -> None:
    settings = make_settings(api_keys="k1", protect_metrics=True)
    async with asgi_client(create_app(settings)) as client:
        refused = await client.get("/metrics")
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer k1"})

    assert refused.status_code == 401
    assert allowed.status_code == 200

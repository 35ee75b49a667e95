"""Settings: read once from the environment, documented, validated at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.core.settings import Settings, get_settings

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

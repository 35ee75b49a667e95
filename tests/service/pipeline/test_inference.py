"""The inference session: the model-file contract, execution providers, CUDA options."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest

from service.core.settings import Settings
from service.pipeline.inference import ModelFileError, _with_options, load_model

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


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
    # TF32 moves probabilities further off the CPU's than full float32 does
    # (bench/README.md, GPU): the service turns ONNX Runtime's default off.
    assert _with_options(CUDA, cuda_tf32=False) == (CUDA, {"use_tf32": "0"})
    assert _with_options(CUDA, cuda_tf32=True) == (CUDA, {"use_tf32": "1"})
    assert _with_options(CPU, cuda_tf32=True) == CPU
    assert Settings().cuda_tf32 is False
    monkeypatch.setenv("VIDLSTM_CUDA_TF32", "true")
    assert Settings().cuda_tf32 is True

